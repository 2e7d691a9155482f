#pragma once
/* Inside the API module (api.c: routing, keys, plain JSON answers; api_sse.c: the event and log
 * streams; api_logs.c: GET .../log): the shared state and helpers. Loop thread only unless
 * marked. Not for other modules: they use api.h. */
#include "api.h"
#include "logstore.h"
#include "metrics.h"
#include "util.h"

#include <libwebsockets.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#define API_CHUNK 16384           /* bytes per lws_write: bounds lws' own buffering */
#define API_SSE_BATCH (64 * 1024) /* bytes of frames gathered per refill */
#define API_MAX_RESPONSE (64u * 1024 * 1024)
#define API_LIST_DEFAULT 500
#define API_LIST_MAX 5000
#define API_ARG_MAX 256
#define API_KEY_MAX 4096
#define API_LOG_CHECK_MS 1000         /* how often a log follow re-checks its task */
#define API_SSE_MAX_LAG (1024 * 1024) /* default bound on what a stream may owe its client */

enum sess_kind { SK_NONE, SK_PLAIN, SK_EVENTS, SK_LOGS };

struct api_sess {                     /* per HTTP transaction; zeroed by lws */
	struct api_sess *prev, *next; /* open SSE streams (loop thread only) */
	struct lws *wsi;
	enum sess_kind kind;
	int linked;
	/* plain answers */
	char *body;
	size_t body_len, body_off;
	int close_after;
	/* SSE */
	struct buf out;
	size_t out_off;
	int out_init;
	uint64_t cursor; /* events: last id sent; logs: next byte offset */
	char ns[API_ARG_MAX], queue[API_ARG_MAX], key[512], uid[64];
	int64_t attempt;
	uint64_t replay_allow; /* logs: output stored before the follow began (api_sse_lag) */
	int first_read, task_final, ending, keepalive_due;
	int64_t last_progress_ms, last_check_ms;
	enum metrics_sse_end end_why;
};

struct api {
	struct api_cfg cfg;
	pthread_mutex_t lock; /* guards the key state */
	char *file_key;
	struct timespec file_mtime;
	ino_t file_ino;
	off_t file_size;
	struct logstore *logs;
	struct events *events;
	struct metrics *metrics;
	_Atomic(struct informer *) inf;
	_Atomic(struct lws_context *) ctx;
	atomic_int wake_pending;
	/* loop thread only */
	struct api_sess *sse;
	int sse_count;
	lws_sorted_usec_list_t sweep;
	int sweep_on;
	SSL_CTX *ssl_ctx;    /* the API vhost's, when it serves TLS */
	struct server *msrv; /* the separate metrics listener, on its own thread */
};

/* api.c: answers and request helpers */
int api_headers(struct lws *wsi, unsigned code, const char *ctype, lws_filepos_t len,
		const char *const *extra);
int api_send(struct api *a, struct lws *wsi, struct api_sess *s, unsigned code, const char *ctype,
	     char *body, size_t len, const char *const *extra);
int api_reply_json(struct api *a, struct lws *wsi, struct api_sess *s, unsigned code, json_t *body,
		   const char *const *extra);
int api_error(struct api *a, struct lws *wsi, struct api_sess *s, unsigned code, const char *err,
	      const char *msg);
long api_write_some(struct lws *wsi, const char *p, size_t n, int final);
void api_arg(struct lws *wsi, const char *name, char *out, size_t outsz);
int api_valid_name(const char *s);
int api_wants_json(struct lws *wsi);

/* api_logs.c */
int api_get_logs(struct api *a, struct lws *wsi, struct api_sess *s, const char *ns,
		 const char *name, int64_t attempt);

/* api_sse.c */
int api_events(struct api *a, struct lws *wsi, struct api_sess *s);
int api_follow_logs(struct api *a, struct lws *wsi, struct api_sess *s, const char *ns,
		    const char *name, int64_t attempt);
int api_sse_writeable(struct api *a, struct lws *wsi, struct api_sess *s);
void api_sse_unlink(struct api *a, struct api_sess *s);
void api_sse_sweep(lws_sorted_usec_list_t *sul);
