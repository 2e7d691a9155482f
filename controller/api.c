#include "api.h"
#include "server.h"
#include "task.h"
#include "broker.h"
#include "events.h"
#include "informer.h"
#include "log.h"
#include "logstore.h"
#include "metrics.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <linux/sockios.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define API_CHUNK 16384                 /* bytes per lws_write: bounds lws' own buffering */
#define API_SSE_BATCH (64 * 1024)       /* bytes of frames gathered per refill */
#define API_MAX_RESPONSE (64u * 1024 * 1024)
#define API_LIST_DEFAULT 500
#define API_LIST_MAX 5000
#define API_ARG_MAX 256
#define API_KEY_MAX 4096
#define API_LOG_CHECK_MS 1000           /* how often a log follow re-checks its task */
#define API_SSE_MAX_LAG (1024 * 1024)   /* default bound on what a stream may owe its client */

enum sess_kind { SK_NONE, SK_PLAIN, SK_EVENTS, SK_LOGS };

struct api_sess {                       /* per HTTP transaction; zeroed by lws */
	struct api_sess *prev, *next;   /* open SSE streams (loop thread only) */
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
	uint64_t cursor;                /* events: last id sent; logs: next byte offset */
	char ns[API_ARG_MAX], queue[API_ARG_MAX], key[512], uid[64];
	int64_t attempt;
	uint64_t replay_allow;          /* logs: output stored before the follow began (api_sse_lag) */
	int first_read, task_final, ending, keepalive_due;
	int64_t last_progress_ms, last_check_ms;
	enum metrics_sse_end end_why;
};

struct api {
	struct api_cfg cfg;
	pthread_mutex_t lock;           /* guards the key state */
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
	SSL_CTX *ssl_ctx;               /* the API vhost's, when it serves TLS */
	struct server *msrv;            /* the separate metrics listener, on its own thread */
};

/* --- keys ---------------------------------------------------------------------------------- */

static void api_key_cleanse_free(char *k)
{
	if (k)
		OPENSSL_cleanse(k, strlen(k));
	free(k);
}

/* Caller holds lock. Re-reads the key file when its mtime changed, so keys can rotate. An
 * unreadable or empty file keeps the previous key (a writer that truncates before writing
 * must not open the API for a moment); the file is tried again on the next request. */
static void api_refresh_file_key(struct api *a)
{
	struct stat st;
	char *k = NULL;

	if (!a->cfg.api_key_file || stat(a->cfg.api_key_file, &st) < 0)
		return;
	/* mtime alone can miss a quick rewrite (coarse timestamps); a rename changes the inode. */
	if (a->file_key && st.st_mtim.tv_sec == a->file_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == a->file_mtime.tv_nsec && st.st_ino == a->file_ino &&
	    st.st_size == a->file_size)
		return;
	if (util_read_file(a->cfg.api_key_file, API_KEY_MAX, &k, NULL) < 0)
		return;
	util_rstrip(k);
	if (!k[0]) {
		free(k);
		return;
	}
	api_key_cleanse_free(a->file_key);
	a->file_key = k;
	a->file_mtime = st.st_mtim;
	a->file_ino = st.st_ino;
	a->file_size = st.st_size;
}

/* Caller holds lock. The file's key wins over the static one. */
static const char *api_current_key(struct api *a)
{
	api_refresh_file_key(a);
	if (a->file_key)
		return a->file_key;
	return a->cfg.api_key && a->cfg.api_key[0] ? a->cfg.api_key : NULL;
}

int api_has_key(struct api *a)
{
	int has;
	pthread_mutex_lock(&a->lock);
	has = api_current_key(a) != NULL;
	pthread_mutex_unlock(&a->lock);
	return has;
}

int api_check_key(struct api *a, const char *presented)
{
	const char *key;
	int ok;
	pthread_mutex_lock(&a->lock);
	key = api_current_key(a);
	/* util_ct_equal compares SHA-256 digests: neither content nor length leaks. */
	ok = !key || (presented && util_ct_equal(presented, strlen(presented), key, strlen(key)));
	pthread_mutex_unlock(&a->lock);
	return ok;
}

/* --- lifecycle ------------------------------------------------------------------------------ */

static void api_set_sources(struct api *a, const struct metrics_sources *src);

struct api *api_new(const struct api_cfg *cfg)
{
	struct api *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->cfg = *cfg;
	if (a->cfg.max_sse <= 0)
		a->cfg.max_sse = 100;
	if (a->cfg.sse_keepalive_s <= 0)
		a->cfg.sse_keepalive_s = 15;
	if (a->cfg.sse_stall_s <= 0)
		a->cfg.sse_stall_s = 60;
	if (a->cfg.sse_max_lag == 0)
		a->cfg.sse_max_lag = API_SSE_MAX_LAG;
	pthread_mutex_init(&a->lock, NULL);
	if (a->cfg.api_key_file) {
		api_refresh_file_key(a);
		if (!a->file_key) {
			log_error("API key file is missing, unreadable or empty", "file", a->cfg.api_key_file);
			api_free(a);
			return NULL;
		}
	}
	a->logs = logstore_new(&(struct logstore_cfg){ .max_per_task = cfg->log_max_per_task,
						       .max_total = cfg->log_max_total,
						       .max_tasks = cfg->log_max_tasks,
						       .dir = cfg->log_dir,
						       .notify = api_wake, .ud = a });
	a->events = events_new(&(struct events_cfg){ .max_events = cfg->event_buffer,
						     .notify = api_wake, .ud = a });
	a->metrics = metrics_new();
	if (!a->logs || !a->events || !a->metrics) {
		api_free(a);
		return NULL;
	}
	if (cfg->sources)
		api_set_sources(a, cfg->sources);
	else
		metrics_set_sources(a->metrics, &(struct metrics_sources){ .events = a->events, .logs = a->logs });
	a->cfg.sources = NULL;   /* copied; the caller's may not outlive this call */
	return a;
}

void api_free(struct api *a)
{
	if (!a)
		return;
	server_free(a->msrv);
	api_key_cleanse_free(a->file_key);
	logstore_free(a->logs);
	events_free(a->events);
	metrics_free(a->metrics);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

static void api_set_sources(struct api *a, const struct metrics_sources *src)
{
	struct metrics_sources s = *src;
	s.events = a->events;
	s.logs = a->logs;
	atomic_store(&a->inf, src->inf);
	metrics_set_sources(a->metrics, &s);
}

struct metrics *api_metrics(struct api *a)
{
	return a->metrics;
}

static int api_task_exists(void *ud, const char *uid)
{
	char *key = informer_key_by_uid(ud, uid);
	free(key);
	return key != NULL;
}

int api_sweep_logs(struct api *a)
{
	struct informer *inf = atomic_load(&a->inf);
	size_t gone;
	if (!inf || !informer_synced(inf))
		return 0;
	gone = logstore_sweep(a->logs, api_task_exists, inf);
	if (gone) {
		char n[32];
		snprintf(n, sizeof(n), "%zu", gone);
		log_info("dropped the stored logs of tasks deleted while the controller was away", "logs", n);
	}
	return 1;
}

void api_wake(void *ud)
{
	struct api *a = ud;
	struct lws_context *ctx = atomic_load(&a->ctx);
	/* One wake-up per loop turn is enough; the loop looks at every stream. */
	if (ctx && !atomic_exchange(&a->wake_pending, 1))
		lws_cancel_service(ctx);
}

/* --- observers (worker and broker threads) --------------------------------------------------- */

static const char *task_queue(json_t *task)
{
	const char *q = json_string_value(json_object_get(task_spec(task), "queue"));
	return q && q[0] ? q : "default";
}

void api_on_status(void *ud, json_t *task, json_t *status)
{
	struct api *a = ud;
	json_t *md = task_metadata(task), *ev, *v;
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));
	const char *uid = json_string_value(json_object_get(md, "uid"));
	const char *phase = json_string_value(json_object_get(status, "phase"));
	const char *prev = task_phase(task);
	static const char *const copy[] = { "reason", "message", "attempts", "runner", "exitCode",
					    "httpStatus", "startTime", "completionTime", "nextRetryTime" };
	char when[40], key[512];

	metrics_observe_status(a->metrics, task, status);
	if (!ns || !name || !uid)
		return;
	util_rfc3339_ms(util_now_ms(), when, sizeof(when));
	ev = json_pack("{ss ss ss ss ss ss* ss* ss}", "type", "status", "namespace", ns, "name", name, "uid", uid,
		       "queue", task_queue(task), "phase", phase, "previousPhase", prev, "time", when);
	if (!ev)
		return;
	for (size_t i = 0; i < UTIL_ARRAY_SIZE(copy); i++)
		if ((v = json_object_get(status, copy[i])) && !json_is_null(v))
			json_object_set(ev, copy[i], v);
	events_publish(a->events, "task", ns, task_queue(task), ev);
	json_decref(ev);
	if (task_phase_terminal(phase)) {
		snprintf(key, sizeof(key), "%s/%s", ns, name);
		logstore_finish(a->logs, uid, key);
	}
}

void api_on_informer_event(enum informer_event ev, const char *key, json_t *obj, void *ud)
{
	struct api *a = ud;
	struct informer *inf = atomic_load(&a->inf);
	json_t *md = task_metadata(obj), *e;
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *uid = json_string_value(json_object_get(md, "uid"));
	const char *phase = task_phase(obj);
	char when[40];

	if ((ev != INFORMER_ADDED && ev != INFORMER_DELETED) || !uid || !ns)
		return;
	/* The first list (and a relist) delivers every existing task as added: not news. */
	if (ev == INFORMER_ADDED && (!inf || !informer_synced(inf)))
		return;
	if (ev == INFORMER_ADDED)
		metrics_task_seen(a->metrics, uid, util_now_ms());
	else
		metrics_task_gone(a->metrics, uid);
	util_rfc3339_ms(util_now_ms(), when, sizeof(when));
	e = json_pack("{ss ss ss ss ss ss* ss}", "type", ev == INFORMER_ADDED ? "created" : "deleted",
		      "namespace", ns, "name", json_string_value(json_object_get(md, "name")) ?: "",
		      "uid", uid, "queue", task_queue(obj), "phase", phase, "time", when);
	if (e)
		events_publish(a->events, "task", ns, task_queue(obj), e);
	json_decref(e);
	if (ev == INFORMER_DELETED)
		logstore_forget(a->logs, uid);
}

void api_on_log(void *ud, const char *key, const char *uid, int64_t attempt, int64_t seq,
		const char *stream, const char *data)
{
	struct api *a = ud;
	if (!uid || !data)
		return;
	logstore_append(a->logs, uid, key, attempt, seq, stream, data, strlen(data));
}

/* --- answers --------------------------------------------------------------------------------- */

static void sess_reset(struct api_sess *s)
{
	free(s->body);
	s->body = NULL;
	s->body_len = s->body_off = 0;
	if (s->out_init)
		buf_free(&s->out);
	s->out_init = 0;
}

static int api_headers(struct lws *wsi, unsigned code, const char *ctype, lws_filepos_t len,
		       const char *const *extra)
{
	unsigned char hdr[LWS_PRE + 2048], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;
	if (lws_add_http_common_headers(wsi, code, ctype, len, &p, end) ||
	    lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
					(const unsigned char *)"no-store", 8, &p, end) ||
	    lws_add_http_header_by_name(wsi, (const unsigned char *)"x-content-type-options:",
					(const unsigned char *)"nosniff", 7, &p, end))
		return -1;
	for (; extra && extra[0]; extra += 2)
		if (lws_add_http_header_by_name(wsi, (const unsigned char *)extra[0],
						(const unsigned char *)extra[1], (int)strlen(extra[1]), &p, end))
			return -1;
	return lws_finalize_write_http_header(wsi, start, &p, end) ? -1 : 0;
}

/* Sends body (taken over) with the given type; the bytes go out in WRITEABLE. */
static int api_send(struct api *a, struct lws *wsi, struct api_sess *s, unsigned code,
		    const char *ctype, char *body, size_t len, const char *const *extra)
{
	sess_reset(s);
	s->kind = SK_PLAIN;
	s->body = body;
	s->body_len = len;
	s->body_off = 0;
	metrics_api_request(a->metrics, code);
	if (api_headers(wsi, code, ctype, len, extra) < 0)
		return -1;
	lws_callback_on_writable(wsi);
	return 0;
}

static int api_reply_json(struct api *a, struct lws *wsi, struct api_sess *s, unsigned code,
			  json_t *body, const char *const *extra)
{
	char *txt = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!txt)
		return -1;
	return api_send(a, wsi, s, code, "application/json", txt, strlen(txt), extra);
}

static int api_error(struct api *a, struct lws *wsi, struct api_sess *s, unsigned code,
		     const char *err, const char *msg)
{
	return api_reply_json(a, wsi, s, code, json_pack("{ssss}", "error", err, "message", msg), NULL);
}

/* Writes up to n bytes: at most API_CHUNK (which bounds what lws buffers when the socket
 * is full) and at most what an HTTP/2 peer's window allows. final marks the end of the body
 * when all n bytes go. Returns the bytes written, or -1. */
static long api_write_some(struct lws *wsi, const char *p, size_t n, int final)
{
	unsigned char tmp[LWS_PRE + API_CHUNK];
	lws_fileofs_t allow = lws_get_peer_write_allowance(wsi);

	if (n > API_CHUNK) {
		n = API_CHUNK;
		final = 0;
	}
	if (allow >= 0 && (lws_fileofs_t)n > allow) {
		n = (size_t)allow;
		final = 0;
	}
	if (n == 0 && !final)
		return 0;
	if (n)
		memcpy(tmp + LWS_PRE, p, n);
	if (lws_write(wsi, tmp + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < 0)
		return -1;
	return (long)n;
}

/* Writes the next piece of a plain answer. */
static int api_write_plain(struct lws *wsi, struct api_sess *s)
{
	long n;

	if (!s->body && s->body_len)
		return 0;
	n = api_write_some(wsi, s->body + s->body_off, s->body_len - s->body_off, 1);
	if (n < 0)
		return -1;
	s->body_off += (size_t)n;
	if (s->body_off < s->body_len || (n == 0 && s->body_len)) {
		lws_callback_on_writable(wsi);
		return 0;
	}
	sess_reset(s);
	s->kind = SK_NONE;
	if (s->close_after)
		return -1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* --- request helpers ------------------------------------------------------------------------- */

/* Query argument value into out ("" when absent). lws has already URL-decoded it. */
static void api_arg(struct lws *wsi, const char *name, char *out, size_t outsz)
{
	char buf[API_ARG_MAX + 64], nm[64];
	const char *v;
	snprintf(nm, sizeof(nm), "%s=", name);
	out[0] = '\0';
	v = lws_get_urlarg_by_name(wsi, nm, buf, (int)sizeof(buf));
	if (v)
		snprintf(out, outsz, "%s", v);
}

/* DNS-1123 subdomain-ish: what Kubernetes accepts for namespaces and names. */
static int api_valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 253)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '.'))
			return 0;
	return 1;
}

static int api_wants_json(struct lws *wsi)
{
	char acc[256] = "", fmt[16];
	api_arg(wsi, "format", fmt, sizeof(fmt));
	if (fmt[0])
		return strcmp(fmt, "json") == 0;
	if (lws_hdr_copy(wsi, acc, sizeof(acc), WSI_TOKEN_HTTP_ACCEPT) <= 0)
		return 0;
	return strstr(acc, "application/json") != NULL && !strstr(acc, "text/plain");
}

/* The presented key from "Authorization: Bearer K" or "X-API-Key: K" into out. */
static void api_presented_key(struct lws *wsi, char *out, size_t outsz)
{
	out[0] = '\0';
	if (lws_hdr_copy(wsi, out, (int)outsz, WSI_TOKEN_HTTP_AUTHORIZATION) > 7 &&
	    strncasecmp(out, "Bearer ", 7) == 0) {
		memmove(out, out + 7, strlen(out + 7) + 1);
		return;
	}
	/* HTTP/1 keeps custom header names with their colon, HPACK without. */
	if (lws_hdr_custom_copy(wsi, out, (int)outsz, "x-api-key:", 10) <= 0 &&
	    lws_hdr_custom_copy(wsi, out, (int)outsz, "x-api-key", 9) <= 0)
		out[0] = '\0';
}

/* --- GET /api/v1/tasks ----------------------------------------------------------------------- */

struct list_item {
	char *key;
	json_t *obj;
};

struct list_ctx {
	const char *ns, *phase, *queue, *after;
	struct list_item *items;
	size_t n, cap;
	int oom;
};

static void list_collect(const char *key, json_t *obj, void *ud)
{
	struct list_ctx *c = ud;
	json_t *md = task_metadata(obj);
	const char *ph = task_phase(obj);

	if (c->oom)
		return;
	if (c->ns[0] && strcmp(c->ns, json_string_value(json_object_get(md, "namespace")) ?: "") != 0)
		return;
	if (c->queue[0] && strcmp(c->queue, task_queue(obj)) != 0)
		return;
	if (c->phase[0] && strcmp(c->phase, ph && ph[0] ? ph : "Pending") != 0)
		return;
	if (c->after[0] && strcmp(key, c->after) <= 0)
		return;
	if (c->n == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 64;
		struct list_item *ni = realloc(c->items, nc * sizeof(*ni));
		if (!ni) {
			c->oom = 1;
			return;
		}
		c->items = ni;
		c->cap = nc;
	}
	c->items[c->n].key = strdup(key);
	if (!c->items[c->n].key) {
		c->oom = 1;
		return;
	}
	c->items[c->n].obj = json_incref(obj);
	c->n++;
}

static int list_cmp(const void *x, const void *y)
{
	return strcmp(((const struct list_item *)x)->key, ((const struct list_item *)y)->key);
}

static int api_list_tasks(struct api *a, struct lws *wsi, struct api_sess *s, const char *path_ns)
{
	struct informer *inf = atomic_load(&a->inf);
	char ns[API_ARG_MAX], phase[64], queue[API_ARG_MAX], limit_s[32], cont[600];
	struct list_ctx c = { 0 };
	json_t *items, *out;
	long limit = API_LIST_DEFAULT;
	size_t take;
	int r;

	api_arg(wsi, "namespace", ns, sizeof(ns));
	api_arg(wsi, "phase", phase, sizeof(phase));
	api_arg(wsi, "queue", queue, sizeof(queue));
	api_arg(wsi, "limit", limit_s, sizeof(limit_s));
	api_arg(wsi, "continue", cont, sizeof(cont));
	if (path_ns)
		snprintf(ns, sizeof(ns), "%s", path_ns);
	if (limit_s[0] && util_parse_long(limit_s, 1, API_LIST_MAX, &limit) < 0)
		return api_error(a, wsi, s, 400, "BadRequest", "limit must be an integer from 1 to 5000");
	if (ns[0] && !api_valid_name(ns))
		return api_error(a, wsi, s, 400, "BadRequest", "namespace is not a valid Kubernetes name");
	if (!inf)
		return api_error(a, wsi, s, 503, "NotReady", "the task cache is not running yet");
	c.ns = ns;
	c.phase = phase;
	c.queue = queue;
	c.after = cont;
	informer_foreach(inf, list_collect, &c);
	if (c.oom) {
		r = api_error(a, wsi, s, 500, "InternalError", "out of memory listing tasks");
		goto out;
	}
	qsort(c.items, c.n, sizeof(*c.items), list_cmp);
	take = c.n < (size_t)limit ? c.n : (size_t)limit;
	items = json_array();
	for (size_t i = 0; items && i < take; i++)
		json_array_append(items, c.items[i].obj);
	out = json_pack("{ss ss so s{}}", "apiVersion", "tasked.dev/v1alpha1", "kind", "TaskList",
			"items", items, "metadata");
	if (out && take < c.n) {
		json_t *md = json_object_get(out, "metadata");
		json_object_set_new(md, "continue", json_string(c.items[take - 1].key));
		json_object_set_new(md, "remainingItemCount", json_integer((json_int_t)(c.n - take)));
	}
	r = out ? api_reply_json(a, wsi, s, 200, out, NULL)
		: api_error(a, wsi, s, 500, "InternalError", "out of memory listing tasks");
out:
	for (size_t i = 0; i < c.n; i++) {
		free(c.items[i].key);
		json_decref(c.items[i].obj);
	}
	free(c.items);
	return r;
}

static int api_get_task(struct api *a, struct lws *wsi, struct api_sess *s, const char *ns, const char *name)
{
	struct informer *inf = atomic_load(&a->inf);
	char key[512], msg[600];
	json_t *t;

	if (!inf)
		return api_error(a, wsi, s, 503, "NotReady", "the task cache is not running yet");
	snprintf(key, sizeof(key), "%s/%s", ns, name);
	t = informer_get(inf, key);
	if (!t) {
		snprintf(msg, sizeof(msg), "task %s not found", key);
		return api_error(a, wsi, s, 404, "NotFound", msg);
	}
	return api_reply_json(a, wsi, s, 200, t, NULL);
}

/* --- logs ------------------------------------------------------------------------------------ */

/* status.logTail holds at most 4096 bytes, cut on a character: from this length on it may be
 * the end of a longer log. */
#define API_LOG_TAIL_FULL (4096 - 3)

static int collect_text(void *ud, const struct logstore_chunk *c)
{
	struct buf *b = ud;
	/* Stop before the chunk that does not fit: a failed append would drop what is there. */
	return b->len + c->len > b->max || buf_append(b, c->data, c->len) < 0;
}

static int api_get_logs(struct api *a, struct lws *wsi, struct api_sess *s, const char *ns,
			const char *name, int64_t attempt)
{
	struct informer *inf = atomic_load(&a->inf);
	char key[512], msg[600];
	const char *uid = NULL, *source = "store";
	json_t *t;
	struct logstore_pos pos;
	struct buf text;
	int r, complete, truncated, unknown = 0;

	if (!inf)
		return api_error(a, wsi, s, 503, "NotReady", "the task cache is not running yet");
	snprintf(key, sizeof(key), "%s/%s", ns, name);
	t = informer_get(inf, key);
	uid = task_uid(t);
	buf_init(&text, API_MAX_RESPONSE);
	logstore_read(a->logs, uid, t ? NULL : key, attempt, 0, SIZE_MAX, collect_text, &text, &pos);
	if (!pos.found && !t) {
		buf_free(&text);
		snprintf(msg, sizeof(msg), "task %s not found", key);
		return api_error(a, wsi, s, 404, "NotFound", msg);
	}
	complete = pos.finished ||
		   task_terminal(t);
	truncated = pos.dropped > 0;
	if (!pos.found || (pos.end == 0 && complete)) {
		/* Nothing streamed (e.g. the controller restarted without --log-dir): the status keeps
		 * the end. A full tail may have had more before it, how much is unknown: say so. */
		const char *tail = json_string_value(json_object_get(task_status(t), "logTail"));
		buf_reset(&text);
		if (tail)
			buf_append(&text, tail, strlen(tail));
		source = "logTail";
		truncated = text.len >= API_LOG_TAIL_FULL;
		unknown = truncated;
	}
	if (api_wants_json(wsi)) {
		json_t *o = json_pack("{ss ss ss* ss sb sb so ss#}", "namespace", ns, "name", name, "uid", uid,
				      "source", source, "complete", complete,
				      "truncated", truncated,
				      "droppedBytes", unknown ? json_null() : json_integer((json_int_t)pos.dropped),
				      "log", text.data ? text.data : "", (int)text.len);
		if (o && attempt)
			json_object_set_new(o, "attempt", json_integer(attempt));
		buf_free(&text);
		json_decref(t);
		return o ? api_reply_json(a, wsi, s, 200, o, NULL)
			 : api_error(a, wsi, s, 500, "InternalError", "could not encode the log");
	}
	{
		char dropped[32];
		const char *extra[] = { "x-tasked-log-source:", source,
					"x-tasked-log-truncated:", truncated ? "true" : "false",
					"x-tasked-log-dropped-bytes:", dropped,
					"x-tasked-log-complete:", complete ? "true" : "false", NULL };
		char *body = text.data;
		size_t len = text.len;
		if (unknown)
			snprintf(dropped, sizeof(dropped), "unknown");
		else
			snprintf(dropped, sizeof(dropped), "%llu", (unsigned long long)pos.dropped);
		text.data = NULL;   /* api_send takes the bytes over */
		buf_free(&text);
		json_decref(t);
		r = api_send(a, wsi, s, 200, "text/plain; charset=utf-8", body ? body : strdup(""), len, extra);
	}
	return r;
}

/* --- SSE ------------------------------------------------------------------------------------- */

static void sse_link(struct api *a, struct api_sess *s)
{
	s->prev = NULL;
	s->next = a->sse;
	if (a->sse)
		a->sse->prev = s;
	a->sse = s;
	s->linked = 1;
	a->sse_count++;
}

/* Called when the stream's transaction ends, however it ends. */
static void sse_unlink(struct api *a, struct api_sess *s)
{
	if (!s->linked)
		return;
	if (s->prev)
		s->prev->next = s->next;
	else
		a->sse = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	s->linked = 0;
	a->sse_count--;
	metrics_sse_closed(a->metrics, s->kind == SK_LOGS ? METRICS_SSE_LOGS : METRICS_SSE_EVENTS, s->end_why);
}

/* Starts an SSE answer. Everything from the request must be read before: marking the stream
 * as SSE releases the request headers. */
static int sse_start(struct api *a, struct lws *wsi, struct api_sess *s, enum sess_kind kind)
{
	static const char hello[] = "retry: 3000\n: stream open\n\n";
	const char *extra[] = { "x-accel-buffering:", "no", NULL };

	if (a->sse_count >= a->cfg.max_sse) {
		char msg[160];
		const char *ra[] = { "retry-after:", "5", NULL };
		json_t *body;
		metrics_sse_rejected(a->metrics);
		snprintf(msg, sizeof(msg), "too many open event streams (--max-sse-connections=%d); retry later",
			 a->cfg.max_sse);
		body = json_pack("{ssss}", "error", "ServiceUnavailable", "message", msg);
		return api_reply_json(a, wsi, s, 503, body, ra);
	}
	s->kind = kind;
	s->wsi = wsi;
	buf_init(&s->out, API_SSE_BATCH + 4096);
	s->out_init = 1;
	s->out_off = 0;
	s->first_read = 1;
	s->end_why = METRICS_SSE_CLIENT;
	s->last_progress_ms = util_mono_ms();
	buf_append(&s->out, hello, sizeof(hello) - 1);
	metrics_api_request(a->metrics, 200);
	if (api_headers(wsi, 200, "text/event-stream", LWS_ILLEGAL_HTTP_CONTENT_LEN, extra) < 0)
		return -1;
	if (lws_get_network_wsi(wsi) != wsi) {
		lws_http_mark_sse(wsi);   /* an HTTP/2 stream: keep its connection immortal too */
	} else {
		/* What lws_http_mark_sse() does for HTTP/1 (without its h2-only complaint in
		 * 4.1): release the request headers and lift the idle timeout. */
		lws_http_headers_detach(wsi);
		lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
	}
	sse_link(a, s);
	metrics_sse_opened(a->metrics, kind == SK_LOGS ? METRICS_SSE_LOGS : METRICS_SSE_EVENTS);
	lws_callback_on_writable(wsi);
	return 0;
}

int api_parse_event_id(const char *s, uint64_t *ret)
{
	unsigned long long v;
	char *end;

	if (!s || !*s || strspn(s, "0123456789") != strlen(s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*ret = (uint64_t)v;
	return 0;
}

static int api_events(struct api *a, struct lws *wsi, struct api_sess *s)
{
	char ns[API_ARG_MAX], queue[API_ARG_MAX], last[64] = "", q_last[64];
	uint64_t id = 0;

	api_arg(wsi, "namespace", ns, sizeof(ns));
	api_arg(wsi, "queue", queue, sizeof(queue));
	api_arg(wsi, "lastEventId", q_last, sizeof(q_last));
	if (lws_hdr_custom_copy(wsi, last, sizeof(last), "last-event-id:", 14) <= 0)
		snprintf(last, sizeof(last), "%s", q_last);
	if (ns[0] && !api_valid_name(ns))
		return api_error(a, wsi, s, 400, "BadRequest", "namespace is not a valid Kubernetes name");
	if (strlen(queue) >= sizeof(s->queue) || strlen(ns) >= sizeof(s->ns))
		return api_error(a, wsi, s, 400, "BadRequest", "filter too long");
	if (last[0] && api_parse_event_id(last, &id) < 0)
		return api_error(a, wsi, s, 400, "BadRequest", "Last-Event-ID must be an event id (decimal digits)");
	snprintf(s->ns, sizeof(s->ns), "%s", ns);
	snprintf(s->queue, sizeof(s->queue), "%s", queue);
	/* Without Last-Event-ID the stream starts now; an id from the future also means now (a
	 * cursor past the last event would hide every event until the ids caught up). */
	s->cursor = last[0] && id <= events_last_id(a->events) ? id : events_last_id(a->events);
	return sse_start(a, wsi, s, SK_EVENTS);
}

static int api_follow_logs(struct api *a, struct lws *wsi, struct api_sess *s, const char *ns,
			   const char *name, int64_t attempt)
{
	struct informer *inf = atomic_load(&a->inf);
	char key[512], msg[600], last[32] = "";
	json_t *t;
	const char *uid;

	if (!inf)
		return api_error(a, wsi, s, 503, "NotReady", "the task cache is not running yet");
	snprintf(key, sizeof(key), "%s/%s", ns, name);
	t = informer_get(inf, key);
	if (!t) {
		snprintf(msg, sizeof(msg), "task %s not found", key);
		return api_error(a, wsi, s, 404, "NotFound", msg);
	}
	uid = task_uid(t);
	snprintf(s->key, sizeof(s->key), "%s", key);
	snprintf(s->uid, sizeof(s->uid), "%s", uid ? uid : "");
	s->attempt = attempt;
	/* A reconnecting EventSource sends the offset it got to as Last-Event-ID. */
	if (lws_hdr_custom_copy(wsi, last, sizeof(last), "last-event-id:", 14) > 0) {
		uint64_t off;
		if (api_parse_event_id(last, &off) < 0)
			return api_error(a, wsi, s, 400, "BadRequest", "Last-Event-ID must be a log offset (decimal digits)");
		s->cursor = off;
	}
	s->task_final = task_terminal(t);
	json_decref(t);
	{
		struct logstore_pos pos;
		logstore_bounds(a->logs, s->uid[0] ? s->uid : NULL, s->key, &pos);
		s->replay_allow = api_sse_backlog(&pos, s->cursor);
	}
	return sse_start(a, wsi, s, SK_LOGS);
}

struct frame_ctx {
	struct buf *out;
	size_t limit;
};

static int log_frame(void *ud, const struct logstore_chunk *c)
{
	struct frame_ctx *f = ud;
	json_t *o = json_pack("{sIsIssss#}", "attempt", (json_int_t)c->attempt, "seq", (json_int_t)c->seq,
			      "stream", c->stream, "data", c->data, (int)c->len);
	char *js = o ? json_dumps(o, JSON_COMPACT) : NULL, head[64];
	int stop = 0;

	json_decref(o);
	if (!js)
		return 1;
	snprintf(head, sizeof(head), "id: %llu\nevent: log\ndata: ", (unsigned long long)(c->off + c->len));
	if (f->out->len > 0 && f->out->len + strlen(head) + strlen(js) + 2 > f->limit)
		stop = 1;
	else if (buf_append(f->out, head, strlen(head)) < 0 || buf_append(f->out, js, strlen(js)) < 0 ||
		 buf_append(f->out, "\n\n", 2) < 0)
		stop = 1;
	free(js);
	return stop;
}

/* The final frames of a log follow when the store never saw the task's output. */
static void sse_logs_from_status(struct api *a, struct api_sess *s)
{
	struct informer *inf = atomic_load(&a->inf);
	json_t *t = inf ? informer_get(inf, s->key) : NULL;
	const char *tail = json_string_value(json_object_get(task_status(t), "logTail"));
	if (tail && tail[0]) {
		struct frame_ctx f = { &s->out, API_SSE_BATCH };
		struct logstore_chunk c = { .off = 0, .attempt = task_attempts(t),
					    .seq = 0, .stream = "stdout", .data = tail, .len = strlen(tail) };
		static const char note[] = ": the controller holds no streamed output for this task; this is status.logTail\n\n";
		buf_append(&s->out, note, sizeof(note) - 1);
		log_frame(&f, &c);
	}
	json_decref(t);
}

/* The last frame of a log follow: the task's phase as the cache has it, when it has it. */
static void sse_end_frame(struct api *a, struct api_sess *s)
{
	struct informer *inf = atomic_load(&a->inf);
	json_t *t = inf ? informer_get(inf, s->key) : NULL, *st = task_status(t);
	const char *uid = task_uid(t);
	json_t *o = json_pack("{sb}", "complete", 1);
	char *js;

	if (o && t && uid && strcmp(uid, s->uid) == 0) {
		static const char *const copy[] = { "phase", "reason", "exitCode", "attempts" };
		for (size_t i = 0; i < UTIL_ARRAY_SIZE(copy); i++)
			if (json_object_get(st, copy[i]))
				json_object_set(o, copy[i], json_object_get(st, copy[i]));
	} else if (o) {
		json_object_set_new(o, "message", json_string("the task was deleted"));
	}
	js = o ? json_dumps(o, JSON_COMPACT) : NULL;
	buf_append(&s->out, "event: end\ndata: ", 17);
	buf_append(&s->out, js ? js : "{\"complete\":true}", js ? strlen(js) : 17);
	buf_append(&s->out, "\n\n", 2);
	free(js);
	json_decref(o);
	json_decref(t);
}

/* Drops a slow stream at once. On HTTP/1 the connection is reset (SO_LINGER 0), rather than
 * flushed first: the client is not reading, and a graceful close would keep its unread bytes
 * and the slot until lws' flush timeouts ran out. */
static void sse_drop(struct api_sess *s, const char *reason, uint64_t lag)
{
	char lag_s[24];
	snprintf(lag_s, sizeof(lag_s), "%llu", (unsigned long long)lag);
	s->end_why = METRICS_SSE_SLOW;
	log_warn("dropping a slow SSE client", "stream", s->kind == SK_LOGS ? "logs" : "events",
		 "task", s->key, "reason", reason, "lagBytes", lag_s);
	if (lws_get_network_wsi(s->wsi) == s->wsi) {
		int fd = lws_get_socket_fd(s->wsi);
		struct linger l = { .l_onoff = 1, .l_linger = 0 };
		if (fd >= 0) {
			(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
			(void)shutdown(fd, SHUT_RDWR);
		}
	}
	lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* Refills s->out; returns 1 when more may be ready right away. */
static int sse_fill(struct api *a, struct api_sess *s)
{
	int more = 0;

	if (s->kind == SK_EVENTS) {
		struct events_gap gap;
		struct events_filter f = { s->ns, s->queue };
		events_read(a->events, &s->cursor, &f, &s->out, API_SSE_BATCH, &gap);
		more = s->out.len >= API_SSE_BATCH / 2;
	} else if (s->kind == SK_LOGS && !s->ending) {
		struct frame_ctx f = { &s->out, API_SSE_BATCH };
		struct logstore_pos pos;
		logstore_read(a->logs, s->uid[0] ? s->uid : NULL, s->key, s->attempt, s->cursor,
			      API_SSE_BATCH, log_frame, &f, &pos);
		if (pos.dropped) {
			char note[160];
			if (!s->first_read) {
				/* The store dropped output this client had not read yet: it is too slow. */
				sse_drop(s, "fell behind the stored output", pos.end - s->cursor);
				return -1;
			}
			snprintf(note, sizeof(note), "event: truncated\ndata: {\"droppedBytes\":%llu}\n\n",
				 (unsigned long long)pos.dropped);
			buf_append(&s->out, note, strlen(note));
		}
		s->first_read = 0;
		s->cursor = pos.next;
		more = pos.next < pos.end;
		if (!more && (pos.finished || s->task_final)) {
			/* Nothing streamed reached this controller (it restarted since): the
			 * status keeps the end of the output. */
			if (!pos.found || pos.end == 0)
				sse_logs_from_status(a, s);
			sse_end_frame(a, s);
			s->ending = 1;
		}
	}
	if (s->out.len == 0 && s->keepalive_due)
		buf_append(&s->out, ": keep-alive\n\n", 14);
	s->keepalive_due = 0;
	return more;
}

static int sse_writeable(struct api *a, struct lws *wsi, struct api_sess *s)
{
	long n;
	int more = 0;

	if (s->out_off >= s->out.len) {
		if (s->ending) {
			/* Everything was written: end the stream (an HTTP/2 stream ends cleanly, an
			 * HTTP/1 answer without a length ends with the connection). */
			s->end_why = METRICS_SSE_DONE;
			if (api_write_some(wsi, "", 0, 1) < 0)
				return -1;
			return lws_http_transaction_completed(wsi) ? -1 : 0;
		}
		buf_reset(&s->out);
		s->out_off = 0;
		more = sse_fill(a, s);
		if (more < 0)
			return -1;
	}
	if (s->out_off >= s->out.len)
		return 0;
	n = api_write_some(wsi, s->out.data + s->out_off, s->out.len - s->out_off, 0);
	if (n < 0)
		return -1;
	if (n > 0)
		s->last_progress_ms = util_mono_ms();
	s->out_off += (size_t)n;
	/* Come back: to write the rest, or to look for more once this was written. */
	if (n > 0 || more || s->ending)
		lws_callback_on_writable(wsi);
	return 0;
}

/* lws 4.1 does not read an HTTP/1 connection while its answer is in progress, so it only
 * notices a client that left an SSE stream when a write fails (the next keep-alive). Ask the
 * socket instead: POLLRDHUP says the peer closed its side, even with unread bytes queued. */
static int sse_peer_gone(struct lws *wsi)
{
	struct pollfd p = { .fd = lws_get_socket_fd(lws_get_network_wsi(wsi)), .events = POLLRDHUP };
	if (p.fd < 0)
		return 1;
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

uint64_t api_sse_backlog(const struct logstore_pos *pos, uint64_t cursor)
{
	uint64_t from = cursor > pos->first ? cursor : pos->first;
	return pos->found && pos->end > from ? pos->end - from : 0;
}

uint64_t api_sse_lag(uint64_t *replay_allow, uint64_t backlog, uint64_t queued)
{
	if (*replay_allow > backlog)
		*replay_allow = backlog;   /* caught up on the replay: the allowance shrinks for good */
	return backlog - *replay_allow + queued;
}

/* Bytes written for the client that it has not taken yet: our frames not yet handed over,
 * what lws keeps of a partial write, and the socket's send queue (unsent and unacknowledged).
 * A client that stops reading shows here once its receive window closes. */
static uint64_t sse_queued(struct api_sess *s)
{
	uint64_t q = s->out.len - s->out_off;
	int outq = 0;

	if (lws_partial_buffered(s->wsi))
		q += API_CHUNK;   /* at most one write's worth (api_write_some) */
	/* The socket is this stream's own only on HTTP/1. */
	if (lws_get_network_wsi(s->wsi) == s->wsi &&
	    ioctl(lws_get_socket_fd(s->wsi), SIOCOUTQ, &outq) == 0 && outq > 0)
		q += (uint64_t)outq;
	return q;
}

/* Once a second on the loop: keep-alives, slow and stalled streams, log follows whose task
 * finished or went away. */
static void api_sweep(lws_sorted_usec_list_t *sul)
{
	struct api *a = lws_container_of(sul, struct api, sweep);
	struct informer *inf = atomic_load(&a->inf);
	int64_t now = util_mono_ms();
	struct lws_context *ctx = atomic_load(&a->ctx);

	for (struct api_sess *s = a->sse; s; s = s->next) {
		uint64_t queued, backlog = 0, lag;
		if (sse_peer_gone(s->wsi)) {
			lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
			continue;
		}
		queued = sse_queued(s);
		if (s->kind == SK_LOGS) {
			struct logstore_pos pos;
			logstore_bounds(a->logs, s->uid[0] ? s->uid : NULL, s->key, &pos);
			/* The store already dropped output this client had not read: it would miss data. */
			if (!s->first_read && pos.found && s->cursor < pos.first && s->cursor <= pos.end) {
				sse_drop(s, "fell behind the stored output", pos.end - s->cursor + queued);
				continue;
			}
			backlog = api_sse_backlog(&pos, s->cursor);
		} else if (events_backlog(a->events, s->cursor) == UINT64_MAX) {
			sse_drop(s, "fell behind the event ring", queued);
			continue;
		}
		lag = api_sse_lag(&s->replay_allow, backlog, queued);
		if (lag > a->cfg.sse_max_lag) {
			sse_drop(s, "owes its client more than the lag bound", lag);
			continue;
		}
		if (queued > 0 && now - s->last_progress_ms > (int64_t)a->cfg.sse_stall_s * 1000) {
			sse_drop(s, "no write progress", lag);
			continue;
		}
		if (s->kind == SK_LOGS && !s->task_final && inf && now - s->last_check_ms >= API_LOG_CHECK_MS) {
			json_t *t = informer_get(inf, s->key);
			const char *uid = task_uid(t);
			s->last_check_ms = now;
			/* Deleted, or replaced by a new task of the same name: this log is complete. */
			if (!t || !uid || strcmp(uid, s->uid) != 0 ||
			    task_terminal(t)) {
				s->task_final = 1;
				lws_callback_on_writable(s->wsi);
			}
			json_decref(t);
		}
		if (now - s->last_progress_ms >= (int64_t)a->cfg.sse_keepalive_s * 1000) {
			s->keepalive_due = 1;
			lws_callback_on_writable(s->wsi);
		}
	}
	if (ctx)
		lws_sul_schedule(ctx, 0, &a->sweep, api_sweep, LWS_USEC_PER_SEC);
}

/* --- routing --------------------------------------------------------------------------------- */

static int api_route(struct api *a, struct lws *wsi, struct api_sess *s, const char *uri)
{
	char path[512], *seg[8], *save = NULL, *p, follow[16], attempt_s[24];
	int n = 0;
	long attempt = 0;

	if (strncmp(uri, "/api/v1/", 8) != 0 || strlen(uri) >= sizeof(path))
		return api_error(a, wsi, s, 404, "NotFound", "no such endpoint");
	snprintf(path, sizeof(path), "%s", uri + 8);
	for (p = strtok_r(path, "/", &save); p && n < (int)UTIL_ARRAY_SIZE(seg); p = strtok_r(NULL, "/", &save))
		seg[n++] = p;
	if (p)
		return api_error(a, wsi, s, 404, "NotFound", "no such endpoint");
	if (n == 1 && strcmp(seg[0], "tasks") == 0)
		return api_list_tasks(a, wsi, s, NULL);
	if (n == 1 && strcmp(seg[0], "events") == 0)
		return api_events(a, wsi, s);
	if (n < 3 || strcmp(seg[0], "namespaces") != 0 || strcmp(seg[2], "tasks") != 0)
		return api_error(a, wsi, s, 404, "NotFound", "no such endpoint");
	if (!api_valid_name(seg[1]) || (n >= 4 && !api_valid_name(seg[3])))
		return api_error(a, wsi, s, 400, "BadRequest", "namespace and task name must be valid Kubernetes names");
	if (n == 3)
		return api_list_tasks(a, wsi, s, seg[1]);
	if (n == 4)
		return api_get_task(a, wsi, s, seg[1], seg[3]);
	if (n == 5 && strcmp(seg[4], "logs") == 0) {
		api_arg(wsi, "follow", follow, sizeof(follow));
		api_arg(wsi, "attempt", attempt_s, sizeof(attempt_s));
		if (attempt_s[0] && util_parse_long(attempt_s, 1, 1000000, &attempt) < 0)
			return api_error(a, wsi, s, 400, "BadRequest", "attempt must be a positive integer");
		if (strcmp(follow, "true") == 0 || strcmp(follow, "1") == 0)
			return api_follow_logs(a, wsi, s, seg[1], seg[3], attempt);
		if (follow[0] && strcmp(follow, "false") != 0 && strcmp(follow, "0") != 0)
			return api_error(a, wsi, s, 400, "BadRequest", "follow must be true or false");
		return api_get_logs(a, wsi, s, seg[1], seg[3], attempt);
	}
	return api_error(a, wsi, s, 404, "NotFound", "no such endpoint");
}

static int api_metrics_reply(struct api *a, struct lws *wsi, struct api_sess *s)
{
	struct buf out;
	char *body;
	size_t len;

	buf_init(&out, API_MAX_RESPONSE);
	if (metrics_render(a->metrics, &out) < 0) {
		buf_free(&out);
		return api_error(a, wsi, s, 500, "InternalError", "could not render the metrics");
	}
	body = out.data ? out.data : strdup("");
	len = out.len;
	out.data = NULL;
	buf_free(&out);
	return api_send(a, wsi, s, 200, "text/plain; version=0.0.4; charset=utf-8", body, len, NULL);
}

/* Requests that need no key. Returns 1 when the request was not one of them. */
static int api_public(struct api *a, struct lws *wsi, struct api_sess *s, const char *uri, int *ret)
{
	char why[256] = "";
	if (strcmp(uri, "/healthz") == 0) {
		*ret = api_reply_json(a, wsi, s, 200, json_pack("{ss}", "status", "ok"), NULL);
	} else if (strcmp(uri, "/readyz") == 0) {
		int ok = a->cfg.ready ? a->cfg.ready(a->cfg.ud, why, sizeof(why)) : 1;
		*ret = ok ? api_reply_json(a, wsi, s, 200, json_pack("{ss}", "status", "ready"), NULL)
			  : api_error(a, wsi, s, 503, "NotReady", why);
	} else if (strcmp(uri, "/metrics") == 0) {
		*ret = api_metrics_reply(a, wsi, s);
	} else {
		return 1;
	}
	return 0;
}

static int api_is_get(struct lws *wsi)
{
	return lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
}

static int api_refuse_method(struct api *a, struct lws *wsi, struct api_sess *s)
{
	const char *allow[] = { "allow:", "GET", NULL };
	s->close_after = 1;   /* do not try to read past a body we ignore */
	return api_reply_json(a, wsi, s, 405,
			      json_pack("{ssss}", "error", "MethodNotAllowed", "message", "only GET is served"), allow);
}

static void api_capture_ctx(struct api *a, struct lws *wsi)
{
	struct lws_context *ctx = lws_get_context(wsi);
	if (!atomic_load(&a->ctx)) {
		atomic_store(&a->ctx, ctx);
		lws_sul_schedule(ctx, 0, &a->sweep, api_sweep, LWS_USEC_PER_SEC);
		a->sweep_on = 1;
	}
}

static void api_sess_end(struct api *a, struct api_sess *s)
{
	if (!s)
		return;
	sse_unlink(a, s);
	sess_reset(s);
	s->kind = SK_NONE;
}

/* Some callbacks (e.g. LWS_CALLBACK_GET_THREAD_ID) come with a wsi that has no vhost. */
static struct api *api_of(struct lws *wsi)
{
	struct lws_vhost *vh = wsi ? lws_get_vhost(wsi) : NULL;
	return vh ? lws_get_vhost_user(vh) : NULL;
}

/* ALPN for the API: HTTP/1.1 only. lws 4.1 passes no custom headers (X-API-Key) through
 * HTTP/2 and its h2 flow control would need more care for long SSE streams, so a client that
 * offers h2 is answered in HTTP/1.1, as when no ALPN is offered. */
static int api_alpn_h1(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char h1[] = "\x08http/1.1";
	unsigned char *sel = NULL;
	if (SSL_select_next_proto(&sel, outlen, h1, sizeof(h1) - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

static int api_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct api *a = api_of(wsi);
	struct api_sess *s = user;

	switch (reason) {
	case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
		/* The vhost's TLS context; lws installs its own ALPN choice right after this. */
		if (a)
			a->ssl_ctx = user;
		return 0;
	case LWS_CALLBACK_PROTOCOL_INIT:
		if (a) {
			api_capture_ctx(a, wsi);
			if (a->ssl_ctx)
				SSL_CTX_set_alpn_select_cb(a->ssl_ctx, api_alpn_h1, NULL);
		}
		return 0;
	case LWS_CALLBACK_PROTOCOL_DESTROY:
		if (a && a->sweep_on) {
			lws_sul_cancel(&a->sweep);
			a->sweep_on = 0;
		}
		return 0;
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return -1;  /* no WebSockets here */
	case LWS_CALLBACK_HTTP: {
		const char *uri = in;
		char key[API_KEY_MAX + 16], peer[64] = "";
		int ret = 0;

		if (!a || !s)
			return -1;
		api_sess_end(a, s);
		memset(s, 0, sizeof(*s));
		api_capture_ctx(a, wsi);
		if (!api_is_get(wsi))
			return api_refuse_method(a, wsi, s);
		if (!api_public(a, wsi, s, uri, &ret))
			return ret;
		api_presented_key(wsi, key, sizeof(key));
		if (!api_check_key(a, key[0] ? key : NULL)) {
			const char *hdr[] = { "www-authenticate:", "Bearer realm=\"tasked\"", NULL };
			OPENSSL_cleanse(key, sizeof(key));
			metrics_auth_failure(a->metrics);
			lws_get_peer_simple(wsi, peer, sizeof(peer));
			log_warn("API request refused", "reason", "missing or wrong API key", "peer", peer, "path", uri);
			return api_reply_json(a, wsi, s, 401,
					      json_pack("{ssss}", "error", "Unauthorized", "message",
							"a valid API key is required (Authorization: Bearer KEY or X-API-Key: KEY)"),
					      hdr);
		}
		OPENSSL_cleanse(key, sizeof(key));
		return api_route(a, wsi, s, uri);
	}
	case LWS_CALLBACK_HTTP_BODY:
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		return 0;
	case LWS_CALLBACK_HTTP_WRITEABLE:
		if (!s || !a)
			return 0;
		if (s->kind == SK_PLAIN)
			return api_write_plain(wsi, s);
		if (s->kind == SK_EVENTS || s->kind == SK_LOGS)
			return sse_writeable(a, wsi, s);
		return 0;
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		if (!a)
			return 0;
		atomic_store(&a->wake_pending, 0);
		for (struct api_sess *x = a->sse; x; x = x->next)
			lws_callback_on_writable(x->wsi);
		return 0;
	case LWS_CALLBACK_CLOSED_HTTP:
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		if (a)
			api_sess_end(a, s);
		return 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* The separate metrics listener: /metrics, /healthz and /readyz only. */
static int api_metrics_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct api *a = api_of(wsi);
	struct api_sess *s = user;

	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return -1;
	case LWS_CALLBACK_HTTP: {
		int ret = 0;
		if (!a || !s)
			return -1;
		sess_reset(s);
		memset(s, 0, sizeof(*s));
		if (!api_is_get(wsi))
			return api_refuse_method(a, wsi, s);
		if (!api_public(a, wsi, s, in, &ret))
			return ret;
		return api_error(a, wsi, s, 404, "NotFound", "this listener serves /metrics, /healthz and /readyz");
	}
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return s && s->kind == SK_PLAIN ? api_write_plain(wsi, s) : 0;
	case LWS_CALLBACK_CLOSED_HTTP:
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		if (s)
			sess_reset(s);
		return 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols api_protos[] = {
	{ "http", api_cb, sizeof(struct api_sess), 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

static const struct lws_protocols api_metrics_protos[] = {
	{ "http", api_metrics_cb, sizeof(struct api_sess), 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

const struct lws_protocols *api_protocols(void)
{
	return api_protos;
}

int api_start(struct api *a)
{
	int r;

	if (a->cfg.server && a->cfg.listen && (r = server_listen(a->cfg.server, "api", a->cfg.listen, api_protos, a)) < 0)
		return r;
	if (!a->cfg.metrics_listen)
		return 0;
	if ((r = server_new(a->cfg.tls_cert, a->cfg.tls_key, &a->msrv)) < 0 ||
	    (r = server_listen(a->msrv, "metrics", a->cfg.metrics_listen, api_metrics_protos, a)) < 0)
		return r;
	return server_start_thread(a->msrv);
}
