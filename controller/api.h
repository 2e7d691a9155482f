#pragma once
/* The controller's HTTP API (docs/api.md), served as a listener of the main server (server.h),
 * next to the broker's: /healthz, /readyz and /metrics without a key; /api/v1/tasks, .../logs and the SSE
 * /api/v1/events behind the API key. Optionally /metrics (and the health endpoints) on a
 * listener of their own (--metrics-listen), served by a small loop on its own thread.
 *
 * The API owns the task log store, the event ring and the metrics, and fans out taskctl's
 * observer hooks: status writes become events in the SSE ring, finish task logs in the log
 * store and feed the metrics; streamed output goes to the log store. Those hooks run on worker
 * and broker threads and only record and wake the loop. */
#include "informer.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct lws_protocols;
struct api;
struct metrics;

struct api_cfg {
	const char *api_key;      /* static key (flag or TASKED_API_KEY); may be NULL */
	const char *api_key_file; /* re-read when it changes; may be NULL */
	int (*ready)(void *ud, char *why, size_t whysz); /* 1 when ready, else 0 and a reason */
	void *ud;
	size_t log_max_per_task; /* log store bounds (logstore.h); 0 = defaults */
	size_t log_max_total;
	size_t log_max_tasks;
	const char *log_dir; /* --log-dir: the log store's files (NULL = memory only) */
	size_t event_buffer; /* events kept for Last-Event-ID resume; 0 = 4096 */
	int max_sse;         /* concurrent SSE streams (events + log follows); 0 = 100 */
	int sse_keepalive_s; /* keep-alive comment interval; 0 = 15 */
	int sse_stall_s; /* drop a stream whose pending output made no progress this long; 0 = 60 */
	size_t sse_max_lag; /* drop a stream that owes its client more bytes than this; 0 = 1 MiB */
	struct server *server;          /* serves the API listener; NULL = none (unit tests) */
	const char *listen;             /* "HOST:PORT" of the API listener */
	const char *metrics_listen;     /* "HOST:PORT" for a separate /metrics listener, or NULL */
	const char *tls_cert, *tls_key; /* TLS for the separate metrics listener */
	/* What the API reads tasks from and the metrics describe (copied; its pointers borrowed);
	 * NULL = nothing yet (unit tests). */
	const struct metrics_sources *sources;
};

/* Returns NULL on allocation failure, or when api_key_file is set but cannot be read or is
 * empty (a configured key file that yields no key must not leave the API open). */
struct api *api_new(const struct api_cfg *cfg);
void api_free(struct api *a);
const struct lws_protocols *api_protocols(void);
struct metrics_sources;
/* The API's metrics (borrowed), e.g. for a kube request hook. */
struct metrics *api_metrics(struct api *a);
/* Once the Task cache has synced: drops reloaded logs whose task no longer exists. Returns 1
 * when done (the cache had synced), 0 to be called again later. */
int api_sweep_logs(struct api *a);
/* Opens the API listener on the server and starts the separate metrics listener when
 * configured; 0 or a negative errno. */
int api_start(struct api *a);

/* 1 when the presented key matches (constant time, by SHA-256 digest), or no key is configured. */
int api_check_key(struct api *a, const char *presented);
int api_has_key(struct api *a);

/* Observer hooks for taskctl_cfg (ud is the struct api *). */
void api_on_status(void *ud, json_t *task, json_t *status);
void api_on_log(void *ud, const char *key, const char *uid, int64_t attempt, int64_t seq,
		const char *stream, const char *data);
/* A Task informer handler (register it after the reconcilers'): publishes task creation and
 * deletion (after the first sync) and remembers when each new task was first seen, which gives
 * the dispatch latency millisecond precision. */
void api_on_informer_event(enum informer_event ev, const char *key, json_t *obj, void *ud);
/* Parses a Last-Event-ID / lastEventId: decimal digits only (no sign, no space), at most
 * 2^64 - 1. 0 with *ret, or -EINVAL (strtoull alone would read "-5" as 2^64 - 5). Pure. */
int api_parse_event_id(const char *s, uint64_t *ret);
/* How far behind a stream is, in bytes (pure; unit-tested). The backlog is the stored output a
 * log follow has not taken yet (api_sse_backlog: from its cursor, or the oldest byte still held,
 * to the end); queued is what was written for the client and not taken by it. Output stored
 * before a follow began is its replay allowance: it may read that at its own pace, and once
 * the backlog shrinks below the allowance, the allowance shrinks with it for good. A stream
 * whose lag passes api_cfg.sse_max_lag is dropped. */
struct logstore_pos;
uint64_t api_sse_backlog(const struct logstore_pos *pos, uint64_t cursor);
uint64_t api_sse_lag(uint64_t *replay_allow, uint64_t backlog, uint64_t queued);

/* Wakes the loop so SSE streams pick up new events or output; any thread (ud: struct api *). */
void api_wake(void *ud);
