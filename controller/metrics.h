#pragma once
/* Prometheus metrics (text exposition format 0.0.4) for GET /metrics.
 *
 * Counters and histograms are updated by observers (status writes, API requests, SSE
 * connections, auth failures) from any thread; gauges that describe state (tasks by phase and
 * queue, queue depth, runners, workqueue, informer) are read from their owners at scrape time,
 * so they are never stale and cost nothing between scrapes. */
#include "util.h"

#include <jansson.h>
#include <stdint.h>

struct metrics;
struct informer;
struct broker;
struct kube_client;
struct wq;
struct events;
struct logstore;

/* Everything is optional and borrowed; set what exists once it exists. */
struct metrics_sources {
	struct informer *inf;
	struct informer *queues_inf, *flows_inf; /* TaskQueue and Flow caches */
	struct broker *broker;
	struct kube_client *kc;
	struct wq *queue;
	struct events *events;
	struct logstore *logs;
	const char *instance; /* --instance-id (NULL: none); outlives the metrics */
};

enum metrics_sse_kind { METRICS_SSE_EVENTS, METRICS_SSE_LOGS, METRICS_SSE_KINDS };
enum metrics_sse_end { METRICS_SSE_CLIENT, METRICS_SSE_SLOW, METRICS_SSE_DONE, METRICS_SSE_ENDS };

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);
void metrics_set_sources(struct metrics *m, const struct metrics_sources *src);

/* taskctl's on_status observer: task as cached before the write, status as written (both
 * borrowed). Feeds the dispatch-latency and run-time histograms and the finish counters. */
void metrics_observe_status(struct metrics *m, json_t *task, json_t *status);
/* The informer delivered a new task (after the first sync) / a deletion: first-seen times
 * make the dispatch latency precise where creationTimestamp has whole seconds. */
void metrics_task_seen(struct metrics *m, const char *uid, int64_t now_ms);
void metrics_task_gone(struct metrics *m, const char *uid);
/* One API answer with its status code (codes outside 100-599 are counted as 0). */
void metrics_api_request(struct metrics *m, unsigned code);
void metrics_auth_failure(struct metrics *m);
/* SSE connection accounting: opened, refused at the cap, and closed for a reason. */
void metrics_sse_opened(struct metrics *m, enum metrics_sse_kind k);
void metrics_sse_rejected(struct metrics *m);
void metrics_sse_closed(struct metrics *m, enum metrics_sse_kind k, enum metrics_sse_end why);
/* For a future kube.c hook: one API-server request (verb "get", "list", ...; code 0 when no
 * answer arrived) and how long it took. */
void metrics_kube_observe(struct metrics *m, const char *verb, long code, double seconds);
/* The same with the metrics as a void *, the shape of a callback kube.c could take. */
void metrics_kube_observer(void *m, const char *verb, long code, double seconds);

/* Renders every metric into out. Returns 0 or a negative errno (-ENOBUFS past out's max). */
int metrics_render(struct metrics *m, struct buf *out);

/* Exposed for unit tests: a fixed-bucket histogram. */
#define METRICS_MAX_BUCKETS 20
struct metrics_hist {
	const double *bounds; /* upper bounds, ascending, without +Inf */
	int nbounds;
	uint64_t counts[METRICS_MAX_BUCKETS + 1]; /* per bucket, last is +Inf; not cumulative */
	uint64_t count;
	double sum;
};
void metrics_hist_observe(struct metrics_hist *h, double v);
/* Appends the _bucket/_sum/_count lines of h for metric `name` with extra labels (may be ""). */
int metrics_hist_render(const struct metrics_hist *h, const char *name, const char *labels,
			struct buf *out);
/* Escapes a label value (backslash, double quote, newline) into out; -ENOBUFS if too small. */
int metrics_escape_label(const char *v, char *out, size_t outsz);
