#include "metrics.h"
#include "broker.h"
#include "events.h"
#include "informer.h"
#include "kube.h"
#include "logstore.h"
#include "task.h"
#include "workqueue.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define METRICS_MAX_RUNNING 100000 /* tasks whose Running time is remembered for run time */
#define METRICS_MAX_CODES 256      /* distinct (verb, code) pairs from the kube hook */

static const double latency_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
					 1,     2.5,  5,     10,   30,  60,   300 };
static const double runtime_bounds[] = { 0.01, 0.05, 0.1, 0.5,  1,    5,    10,   30,
					 60,   300,  900, 1800, 3600, 7200, 21600 };
static const double kube_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
				      0.5,   1,      2.5,   5,    10,    30,   60 };

static const char *const kube_verbs[] = { "get",    "list",  "watch",  "create",
					  "update", "patch", "delete", "other" };
#define KUBE_VERBS ((int)UTIL_ARRAY_SIZE(kube_verbs))

static const char *const sse_kinds[METRICS_SSE_KINDS] = { "events", "logs" };
static const char *const sse_ends[METRICS_SSE_ENDS] = { "client", "slow", "done" };

/* Everything the observers update, copied whole for a consistent scrape. */
struct metrics_counters {
	struct metrics_hist dispatch, runtime;
	uint64_t finished[4]; /* Succeeded, Failed, Skipped, Cancelled */
	uint64_t retries;
	uint64_t auth_failures;
	int64_t sse_open[METRICS_SSE_KINDS];
	uint64_t sse_opened[METRICS_SSE_KINDS], sse_rejected;
	uint64_t sse_closed[METRICS_SSE_KINDS][METRICS_SSE_ENDS];
	int kube_hooked;
	struct metrics_hist kube_latency[KUBE_VERBS];
};

struct metrics {
	pthread_mutex_t lock;
	struct metrics_sources src;
	int64_t start_ms;
	json_t *running;     /* uid -> ms when Running was written */
	json_t *seen;        /* uid -> ms when the informer first delivered it */
	json_t *api_by_code; /* "code" -> count */
	json_t *kube_codes;  /* "verb code" -> count */
	struct metrics_counters c;
};

/* Indexes of metrics_counters.finished. */
static const char *const final_phases[4] = TASK_TERMINAL_PHASES;

struct metrics *metrics_new(void)
{
	struct metrics *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	pthread_mutex_init(&m->lock, NULL);
	m->start_ms = util_now_ms();
	m->c.dispatch = (struct metrics_hist){ .bounds = latency_bounds,
					       .nbounds = (int)UTIL_ARRAY_SIZE(latency_bounds) };
	m->c.runtime = (struct metrics_hist){ .bounds = runtime_bounds,
					      .nbounds = (int)UTIL_ARRAY_SIZE(runtime_bounds) };
	for (int i = 0; i < KUBE_VERBS; i++)
		m->c.kube_latency[i] = (struct metrics_hist){
			.bounds = kube_bounds, .nbounds = (int)UTIL_ARRAY_SIZE(kube_bounds)
		};
	m->running = json_object();
	m->seen = json_object();
	m->api_by_code = json_object();
	m->kube_codes = json_object();
	if (!m->running || !m->seen || !m->api_by_code || !m->kube_codes) {
		metrics_free(m);
		return NULL;
	}
	return m;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	json_decref(m->running);
	json_decref(m->seen);
	json_decref(m->api_by_code);
	json_decref(m->kube_codes);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

void metrics_set_sources(struct metrics *m, const struct metrics_sources *src)
{
	pthread_mutex_lock(&m->lock);
	m->src = *src;
	pthread_mutex_unlock(&m->lock);
}

void metrics_hist_observe(struct metrics_hist *h, double v)
{
	int i = 0;
	if (v < 0)
		v = 0;
	while (i < h->nbounds && v > h->bounds[i])
		i++;
	h->counts[i]++;
	h->count++;
	h->sum += v;
}

/* --- observers ----------------------------------------------------------------------------- */

static int64_t ts_ms(json_t *v)
{
	int64_t ms;
	const char *s = json_string_value(v);
	return s && util_parse_rfc3339(s, &ms) == 0 ? ms : -1;
}

static int final_index(const char *phase)
{
	for (int i = 0; phase && i < 4; i++)
		if (strcmp(phase, final_phases[i]) == 0)
			return i;
	return -1;
}

void metrics_observe_status(struct metrics *m, json_t *task, json_t *status)
{
	json_t *md = json_object_get(task, "metadata");
	const char *uid = json_string_value(json_object_get(md, "uid"));
	const char *prev = json_string_value(
		json_object_get(json_object_get(task, "status"), "phase"));
	const char *phase = json_string_value(json_object_get(status, "phase"));
	const char *reason = json_string_value(json_object_get(status, "reason"));
	int64_t now = util_now_ms(), created = ts_ms(json_object_get(md, "creationTimestamp")),
		seen;
	json_int_t attempts = json_integer_value(json_object_get(status, "attempts"));
	int fi = final_index(phase), was_final = final_index(prev) >= 0;
	int was_running = prev && strcmp(prev, "Running") == 0;

	if (!phase || !uid)
		return;
	pthread_mutex_lock(&m->lock);
	seen = json_integer_value(json_object_get(m->seen, uid));
	/* creationTimestamp has whole seconds: when the informer saw the task arrive, that time
	 * (a few ms after the create) is the better start. */
	if (seen > 0 && (created <= 0 || (seen >= created && seen < created + 2000)))
		created = seen;
	if (strcmp(phase, "Running") == 0 && !was_running) {
		if (created > 0 && attempts <= 1)
			metrics_hist_observe(&m->c.dispatch, (double)(now - created) / 1000.0);
		if (json_object_size(m->running) < METRICS_MAX_RUNNING)
			json_object_set_new(m->running, uid, json_integer(now));
	} else if (fi >= 0 && !was_final) {
		json_t *since = json_object_get(m->running, uid);
		int64_t start = ts_ms(json_object_get(status, "startTime"));
		int64_t end = ts_ms(json_object_get(status, "completionTime"));
		m->c.finished[fi]++;
		if (!was_running && start > 0 && created > 0 && attempts <= 1) {
			/* The result arrived before Running was written. startTime has whole
			 * seconds: the start lies in [start, min(now, start + 1s)). */
			int64_t at = now < start + 1000 ? now : start + 500;
			metrics_hist_observe(&m->c.dispatch, (double)(at - created) / 1000.0);
		}
		if (since)
			metrics_hist_observe(&m->c.runtime,
					     (double)(now - json_integer_value(since)) / 1000.0);
		else if (start > 0 && end >= start)
			metrics_hist_observe(&m->c.runtime, (double)(end - start) / 1000.0);
		json_object_del(m->running, uid);
		json_object_del(m->seen, uid);
	} else if (strcmp(phase, "Queued") == 0 && reason && strcmp(reason, "Retrying") == 0 &&
		   !(prev && strcmp(prev, "Queued") == 0 &&
		     json_string_value(json_object_get(json_object_get(task, "status"), "reason")) &&
		     strcmp(json_string_value(
				    json_object_get(json_object_get(task, "status"), "reason")),
			    "Retrying") == 0)) {
		m->c.retries++;
		json_object_del(m->running, uid);
	}
	pthread_mutex_unlock(&m->lock);
}

void metrics_task_seen(struct metrics *m, const char *uid, int64_t now_ms)
{
	pthread_mutex_lock(&m->lock);
	if (json_object_size(m->seen) < METRICS_MAX_RUNNING && !json_object_get(m->seen, uid))
		json_object_set_new(m->seen, uid, json_integer(now_ms));
	pthread_mutex_unlock(&m->lock);
}

void metrics_task_gone(struct metrics *m, const char *uid)
{
	pthread_mutex_lock(&m->lock);
	json_object_del(m->seen, uid);
	json_object_del(m->running, uid);
	pthread_mutex_unlock(&m->lock);
}

void metrics_api_request(struct metrics *m, unsigned code)
{
	char k[8];
	json_t *v;
	if (code < 100 || code > 599)
		code = 0;
	snprintf(k, sizeof(k), "%u", code);
	pthread_mutex_lock(&m->lock);
	v = json_object_get(m->api_by_code, k);
	if (v)
		json_integer_set(v, json_integer_value(v) + 1);
	else if (json_object_size(m->api_by_code) < 64)
		json_object_set_new(m->api_by_code, k, json_integer(1));
	pthread_mutex_unlock(&m->lock);
}

void metrics_auth_failure(struct metrics *m)
{
	pthread_mutex_lock(&m->lock);
	m->c.auth_failures++;
	pthread_mutex_unlock(&m->lock);
}

void metrics_sse_opened(struct metrics *m, enum metrics_sse_kind k)
{
	pthread_mutex_lock(&m->lock);
	m->c.sse_open[k]++;
	m->c.sse_opened[k]++;
	pthread_mutex_unlock(&m->lock);
}

void metrics_sse_rejected(struct metrics *m)
{
	pthread_mutex_lock(&m->lock);
	m->c.sse_rejected++;
	pthread_mutex_unlock(&m->lock);
}

void metrics_sse_closed(struct metrics *m, enum metrics_sse_kind k, enum metrics_sse_end why)
{
	pthread_mutex_lock(&m->lock);
	m->c.sse_open[k]--;
	m->c.sse_closed[k][why]++;
	pthread_mutex_unlock(&m->lock);
}

void metrics_kube_observe(struct metrics *m, const char *verb, long code, double seconds)
{
	int vi = KUBE_VERBS - 1;
	char k[48];
	json_t *v;

	for (int i = 0; verb && i < KUBE_VERBS - 1; i++)
		if (strcmp(verb, kube_verbs[i]) == 0)
			vi = i;
	if (code < 0 || code > 599)
		code = 0;
	snprintf(k, sizeof(k), "%s %ld", kube_verbs[vi], code);
	pthread_mutex_lock(&m->lock);
	m->c.kube_hooked = 1;
	metrics_hist_observe(&m->c.kube_latency[vi], seconds);
	v = json_object_get(m->kube_codes, k);
	if (v)
		json_integer_set(v, json_integer_value(v) + 1);
	else if (json_object_size(m->kube_codes) < METRICS_MAX_CODES)
		json_object_set_new(m->kube_codes, k, json_integer(1));
	pthread_mutex_unlock(&m->lock);
}

void metrics_kube_observer(void *m, const char *verb, long code, double seconds)
{
	metrics_kube_observe(m, verb, code, seconds);
}

/* --- rendering ----------------------------------------------------------------------------- */

static int mput(struct buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int mput(struct buf *out, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= sizeof(line))
		return -ENAMETOOLONG;
	return buf_append(out, line, (size_t)n);
}

static int mhead(struct buf *out, const char *name, const char *type, const char *help)
{
	return mput(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int metrics_escape_label(const char *v, char *out, size_t outsz)
{
	size_t o = 0;
	for (; v && *v; v++) {
		const char *rep = NULL;
		char c[2] = { *v, 0 };
		if (*v == '\\')
			rep = "\\\\";
		else if (*v == '"')
			rep = "\\\"";
		else if (*v == '\n')
			rep = "\\n";
		else
			rep = c;
		if (o + strlen(rep) >= outsz)
			return -ENOBUFS;
		memcpy(out + o, rep, strlen(rep));
		o += strlen(rep);
	}
	if (o >= outsz)
		return -ENOBUFS;
	out[o] = '\0';
	return 0;
}

/* Prometheus floats: integers print without a fraction, others with enough digits. */
static void fmt_float(double v, char *out, size_t outsz) { snprintf(out, outsz, "%.15g", v); }

int metrics_hist_render(const struct metrics_hist *h, const char *name, const char *labels,
			struct buf *out)
{
	uint64_t cum = 0;
	char le[32], sum[40];
	const char *sep = labels && labels[0] ? "," : "";
	int r = 0;

	for (int i = 0; r == 0 && i < h->nbounds; i++) {
		cum += h->counts[i];
		fmt_float(h->bounds[i], le, sizeof(le));
		r = mput(out, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels ? labels : "", sep,
			 le, (unsigned long long)cum);
	}
	cum += h->counts[h->nbounds];
	fmt_float(h->sum, sum, sizeof(sum));
	if (r == 0)
		r = mput(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels ? labels : "", sep,
			 (unsigned long long)cum);
	if (r == 0)
		r = mput(out, "%s_sum%s%s%s %s\n", name, labels && labels[0] ? "{" : "",
			 labels ? labels : "", labels && labels[0] ? "}" : "", sum);
	if (r == 0)
		r = mput(out, "%s_count%s%s%s %llu\n", name, labels && labels[0] ? "{" : "",
			 labels ? labels : "", labels && labels[0] ? "}" : "",
			 (unsigned long long)h->count);
	return r;
}

/* Counting tasks runs under the informer's cache lock: only tally here. */
struct task_tally {
	json_t *by_phase; /* "ns\037queue\037phase" -> count */
	json_t *keys;     /* array of keys, for the workqueue requeue gauge */
};

static int render_tasks(struct metrics *m, const struct metrics_sources *src, struct buf *out)
{
	struct task_tally t = { json_object(), json_array() };
	json_t *depth = json_object(), *v;
	const char *k;
	int r = 0;
	long long requeues = 0, retrying = 0;

	if (!t.by_phase || !t.keys || !depth) {
		r = -ENOMEM;
		goto out;
	}
	/* Counts come from the cache's per-task tags ("ns/queue|phase"), kept up to date as events
	 * arrive: a scrape never walks (or inflates) the whole cache. */
	if (src->inf) {
		json_t *tags = informer_tag_counts(src->inf), *tv;
		const char *tk;
		json_object_foreach(tags, tk, tv) {
			char tns[256], tq[256], tph[64], kk[600];
			if (sscanf(tk, "%255[^/]/%255[^|]|%63s", tns, tq, tph) != 3)
				continue;
			snprintf(kk, sizeof(kk), "%s\037%s\037%s", tns, tq, tph);
			json_object_set(t.by_phase, kk, tv);
		}
		json_decref(tags);
	}
	r = mhead(
		out, "tasked_tasks", "gauge",
		"Tasks in the controller's cache by namespace, queue and phase (no status yet counts as Pending).");
	json_object_foreach(t.by_phase, k, v) {
		char ns[256], q[256], ph[64], ens[512], eq[512], eph[128];
		if (r < 0)
			break;
		if (sscanf(k, "%255[^\037]\037%255[^\037]\037%63s", ns, q, ph) != 3)
			continue;
		if (metrics_escape_label(ns, ens, sizeof(ens)) < 0 ||
		    metrics_escape_label(q, eq, sizeof(eq)) < 0 ||
		    metrics_escape_label(ph, eph, sizeof(eph)) < 0)
			continue;
		r = mput(out, "tasked_tasks{namespace=\"%s\",queue=\"%s\",phase=\"%s\"} %lld\n",
			 ens, eq, eph, (long long)json_integer_value(v));
		/* Every queue that has tasks gets a depth, zero included. */
		{
			char dk[600];
			snprintf(dk, sizeof(dk), "%s\037%s", ns, q);
			if (!json_object_get(depth, dk))
				json_object_set_new(
					depth, dk, json_pack("[II]", (json_int_t)0, (json_int_t)0));
		}
		if (strcmp(ph, "Queued") == 0 || strcmp(ph, "Pending") == 0) {
			char dk[600];
			json_t *d;
			snprintf(dk, sizeof(dk), "%s\037%s", ns, q);
			d = json_object_get(depth, dk);
			json_array_set_new(
				d, strcmp(ph, "Queued") == 0 ? 0 : 1,
				json_integer(json_integer_value(json_array_get(
						     d, strcmp(ph, "Queued") == 0 ? 0 : 1)) +
					     json_integer_value(v)));
		}
	}
	if (r == 0)
		r = mhead(
			out, "tasked_queue_depth", "gauge",
			"Tasks ready to run and waiting for a runner slot (phase Queued), by namespace and queue.");
	json_object_foreach(depth, k, v) {
		char ns[256], q[256], ens[512], eq[512];
		if (r < 0)
			break;
		if (sscanf(k, "%255[^\037]\037%255s", ns, q) != 2 ||
		    metrics_escape_label(ns, ens, sizeof(ens)) < 0 ||
		    metrics_escape_label(q, eq, sizeof(eq)) < 0)
			continue;
		r = mput(out, "tasked_queue_depth{namespace=\"%s\",queue=\"%s\"} %lld\n", ens, eq,
			 (long long)json_integer_value(json_array_get(v, 0)));
	}
	if (r == 0)
		r = mhead(
			out, "tasked_queue_waiting", "gauge",
			"Tasks waiting for dependencies or their condition (phase Pending), by namespace and queue.");
	json_object_foreach(depth, k, v) {
		char ns[256], q[256], ens[512], eq[512];
		if (r < 0)
			break;
		if (sscanf(k, "%255[^\037]\037%255s", ns, q) != 2 ||
		    metrics_escape_label(ns, ens, sizeof(ens)) < 0 ||
		    metrics_escape_label(q, eq, sizeof(eq)) < 0)
			continue;
		r = mput(out, "tasked_queue_waiting{namespace=\"%s\",queue=\"%s\"} %lld\n", ens, eq,
			 (long long)json_integer_value(json_array_get(v, 1)));
	}
	if (src->queue) {
		int ready, delayed;
		wq_len(src->queue, &ready, &delayed);
		retrying = delayed;
		requeues = (long long)wq_retries_total(src->queue);
	}
	if (r == 0)
		r = mhead(
			out, "tasked_workqueue_delayed_keys", "gauge",
			"Task keys waiting in the workqueue for a delay (backoff after an error, or a timer).");
	if (r == 0)
		r = mput(out, "tasked_workqueue_delayed_keys %lld\n", retrying);
	if (r == 0)
		r = mhead(out, "tasked_workqueue_retries_total", "counter",
			  "Times a key was queued again with backoff after a failed reconcile.");
	if (r == 0)
		r = mput(out, "tasked_workqueue_retries_total %lld\n", requeues);
	(void)m;
out:
	json_decref(t.by_phase);
	json_decref(t.keys);
	json_decref(depth);
	return r;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;
	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

static long rss_bytes(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "re");
	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = -1;
	fclose(f);
	return rss < 0 ? -1 : rss * sysconf(_SC_PAGESIZE);
}

static int render_process(struct metrics *m, struct buf *out)
{
	struct rusage ru;
	struct rlimit rl;
	char v[40];
	int r = 0, fds = count_fds();
	long rss = rss_bytes();

	getrusage(RUSAGE_SELF, &ru);
	fmt_float((double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
			  (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6,
		  v, sizeof(v));
	r = mhead(out, "process_cpu_seconds_total", "counter",
		  "Total user and system CPU time spent in seconds.");
	if (r == 0)
		r = mput(out, "process_cpu_seconds_total %s\n", v);
	if (r == 0 && rss >= 0)
		r = mhead(out, "process_resident_memory_bytes", "gauge",
			  "Resident memory size in bytes.")
			    ?: mput(out, "process_resident_memory_bytes %ld\n", rss);
	if (r == 0 && fds >= 0)
		r = mhead(out, "process_open_fds", "gauge", "Number of open file descriptors.")
			    ?: mput(out, "process_open_fds %d\n", fds);
	if (r == 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		r = mhead(out, "process_max_fds", "gauge",
			  "Maximum number of open file descriptors.")
			    ?: mput(out, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
	fmt_float((double)m->start_ms / 1000.0, v, sizeof(v));
	if (r == 0)
		r = mhead(out, "process_start_time_seconds", "gauge",
			  "Start time of the process since unix epoch in seconds.")
			    ?: mput(out, "process_start_time_seconds %s\n", v);
	return r;
}

/* Part of metrics_render; r is the result so far (rendering stops at the first error). */
static int render_kube(const struct metrics_sources *src, const struct metrics_counters *snap,
		       json_t *kube_codes, struct buf *out, int r)
{
	const char *k;
	json_t *v;

	if (src->kc) {
		struct kube_stats ks;
		uint64_t by[KUBE_VERBS] = { 0 };
		kube_stats_get(src->kc, &ks);
		by[0] = ks.get, by[1] = ks.list, by[2] = ks.watch, by[3] = ks.create;
		by[4] = ks.update, by[5] = ks.patch, by[6] = ks.delete_;
		if (r == 0)
			r = mhead(out, "tasked_kube_requests_total", "counter",
				  "Requests to the Kubernetes API server, by verb.");
		for (int i = 0; r == 0 && i < KUBE_VERBS - 1; i++)
			r = mput(out, "tasked_kube_requests_total{verb=\"%s\"} %llu\n",
				 kube_verbs[i], (unsigned long long)by[i]);
	}
	if (snap->kube_hooked) {
		if (r == 0)
			r = mhead(
				out, "tasked_kube_responses_total", "counter",
				"Answers from the Kubernetes API server by verb and HTTP code (0: no answer).");
		json_object_foreach(kube_codes, k, v) {
			char verb[16];
			long code;
			if (r < 0)
				break;
			if (sscanf(k, "%15s %ld", verb, &code) == 2)
				r = mput(
					out,
					"tasked_kube_responses_total{verb=\"%s\",code=\"%ld\"} %lld\n",
					verb, code, (long long)json_integer_value(v));
		}
		if (r == 0)
			r = mhead(out, "tasked_kube_request_duration_seconds", "histogram",
				  "Latency of requests to the Kubernetes API server, by verb.");
		for (int i = 0; r == 0 && i < KUBE_VERBS; i++) {
			char lb[32];
			snprintf(lb, sizeof(lb), "verb=\"%s\"", kube_verbs[i]);
			r = metrics_hist_render(&snap->kube_latency[i],
						"tasked_kube_request_duration_seconds", lb, out);
		}
	}

	return r;
}

/* Part of metrics_render; r is the result so far (rendering stops at the first error). */
static int render_informers(const struct metrics_sources *src, struct buf *out, int r)
{
	if (src->inf) {
		struct informer_stats is;
		informer_stats_get(src->inf, &is);
		if (r == 0)
			r = mhead(out, "tasked_informer_synced", "gauge",
				  "1 once the task cache has completed its first list.")
				    ?: mput(out, "tasked_informer_synced %d\n",
					    informer_synced(src->inf) ? 1 : 0);
		if (r == 0)
			r = mhead(out, "tasked_informer_lists_total", "counter",
				  "Full lists of tasks (the first and every relist).")
				    ?: mput(out, "tasked_informer_lists_total %llu\n",
					    (unsigned long long)is.lists);
		if (r == 0)
			r = mhead(out, "tasked_informer_relists_total", "counter",
				  "Relists forced by an expired resourceVersion (410 Gone).")
				    ?: mput(out, "tasked_informer_relists_total %llu\n",
					    (unsigned long long)is.relists_expired);
		if (r == 0)
			r = mhead(out, "tasked_informer_watches_total", "counter",
				  "Watches started (the first and every restart).")
				    ?: mput(out, "tasked_informer_watches_total %llu\n",
					    (unsigned long long)is.watches);
		if (r == 0)
			r = mhead(out, "tasked_informer_watch_restarts_total", "counter",
				  "Watches started after the first, i.e. restarts after an end, error or relist.")
				    ?: mput(out, "tasked_informer_watch_restarts_total %llu\n",
					    (unsigned long long)(is.watches > 0 ? is.watches - 1
										: 0));
		if (r == 0)
			r = mhead(out, "tasked_informer_watch_errors_total", "counter",
				  "Watches that ended with an error.")
				    ?: mput(out, "tasked_informer_watch_errors_total %llu\n",
					    (unsigned long long)is.watch_errors);
		if (r == 0)
			r = mhead(out, "tasked_informer_events_total", "counter",
				  "Watch events applied to the cache.")
				    ?: mput(out, "tasked_informer_events_total %llu\n",
					    (unsigned long long)is.events);
		if (r == 0)
			r = mhead(out, "tasked_informer_undecodable_objects_total", "counter",
				  "Objects skipped because they do not decode (e.g. nested deeper than 2048 levels), "
				  "counted once per object, by resource.")
				    ?: mput(out,
					    "tasked_informer_undecodable_objects_total{resource=\"tasks\"} %llu\n",
					    (unsigned long long)is.undecodable);
		for (int i = 0; i < 2 && r == 0; i++) {
			struct informer *o = i == 0 ? src->queues_inf : src->flows_inf;
			if (!o)
				continue;
			informer_stats_get(o, &is);
			r = mput(
				out,
				"tasked_informer_undecodable_objects_total{resource=\"%s\"} %llu\n",
				i == 0 ? "taskqueues" : "flows",
				(unsigned long long)is.undecodable);
		}
	}

	return r;
}

/* Part of metrics_render; r is the result so far (rendering stops at the first error). */
static int render_api(const struct metrics_counters *snap, json_t *api_by_code, struct buf *out,
		      int r)
{
	const char *k;
	json_t *v;

	if (r == 0)
		r = mhead(out, "tasked_api_requests_total", "counter",
			  "Answers of the controller's HTTP API, by status code.");
	json_object_foreach(api_by_code, k, v) {
		if (r < 0)
			break;
		r = mput(out, "tasked_api_requests_total{code=\"%s\"} %lld\n", k,
			 (long long)json_integer_value(v));
	}
	if (r == 0)
		r = mhead(out, "tasked_api_auth_failures_total", "counter",
			  "API requests refused for a missing or wrong API key.")
			    ?: mput(out, "tasked_api_auth_failures_total %llu\n",
				    (unsigned long long)snap->auth_failures);
	if (r == 0)
		r = mhead(out, "tasked_sse_connections", "gauge", "Open SSE streams, by kind.");
	for (int i = 0; r == 0 && i < METRICS_SSE_KINDS; i++)
		r = mput(out, "tasked_sse_connections{kind=\"%s\"} %lld\n", sse_kinds[i],
			 (long long)snap->sse_open[i]);
	if (r == 0)
		r = mhead(out, "tasked_sse_connections_opened_total", "counter",
			  "SSE streams accepted, by kind.");
	for (int i = 0; r == 0 && i < METRICS_SSE_KINDS; i++)
		r = mput(out, "tasked_sse_connections_opened_total{kind=\"%s\"} %llu\n",
			 sse_kinds[i], (unsigned long long)snap->sse_opened[i]);
	if (r == 0)
		r = mhead(out, "tasked_sse_rejected_total", "counter",
			  "SSE streams refused with 503 because --max-sse-connections were open.")
			    ?: mput(out, "tasked_sse_rejected_total %llu\n",
				    (unsigned long long)snap->sse_rejected);
	if (r == 0)
		r = mhead(
			out, "tasked_sse_connections_closed_total", "counter",
			"SSE streams closed, by kind and reason (client: the client left; slow: dropped for "
			"falling behind; done: the stream ended).");
	for (int i = 0; r == 0 && i < METRICS_SSE_KINDS; i++)
		for (int j = 0; r == 0 && j < METRICS_SSE_ENDS; j++)
			r = mput(
				out,
				"tasked_sse_connections_closed_total{kind=\"%s\",reason=\"%s\"} %llu\n",
				sse_kinds[i], sse_ends[j],
				(unsigned long long)snap->sse_closed[i][j]);

	return r;
}

/* Part of metrics_render; r is the result so far (rendering stops at the first error). */
static int render_stores(const struct metrics_sources *src, struct buf *out, int r)
{
	if (src->events) {
		struct events_stats es;
		events_stats_get(src->events, &es);
		if (r == 0)
			r = mhead(out, "tasked_events_published_total", "counter",
				  "Task events published to the SSE ring.")
				    ?: mput(out, "tasked_events_published_total %llu\n",
					    (unsigned long long)es.published);
		if (r == 0)
			r = mhead(out, "tasked_events_buffered", "gauge",
				  "Events held in the ring for Last-Event-ID resume.")
				    ?: mput(out, "tasked_events_buffered %llu\n",
					    (unsigned long long)es.held);
		if (r == 0)
			r = mhead(out, "tasked_events_buffered_bytes", "gauge",
				  "Bytes of events held in the ring.")
				    ?: mput(out, "tasked_events_buffered_bytes %llu\n",
					    (unsigned long long)es.bytes);
	}
	if (src->logs) {
		struct logstore_stats ls;
		logstore_stats_get(src->logs, &ls);
		if (r == 0)
			r = mhead(out, "tasked_logstore_tasks", "gauge",
				  "Tasks whose output the log store holds.")
				    ?: mput(out, "tasked_logstore_tasks %llu\n",
					    (unsigned long long)ls.tasks);
		if (r == 0)
			r = mhead(out, "tasked_logstore_bytes", "gauge",
				  "Bytes the log store uses, overhead included.")
				    ?: mput(out, "tasked_logstore_bytes %llu\n",
					    (unsigned long long)ls.bytes);
		if (r == 0)
			r = mhead(out, "tasked_logstore_disk_bytes", "gauge",
				  "Bytes of the log store's files in --log-dir (0 without).")
				    ?: mput(out, "tasked_logstore_disk_bytes %llu\n",
					    (unsigned long long)ls.disk_bytes);
		if (r == 0)
			r = mhead(out, "tasked_logstore_disk_errors_total", "counter",
				  "Log file writes that failed (that log stayed in memory only).")
				    ?: mput(out, "tasked_logstore_disk_errors_total %llu\n",
					    (unsigned long long)ls.disk_errors);
		if (r == 0)
			r = mhead(out, "tasked_logstore_evicted_tasks_total", "counter",
				  "Whole task logs evicted to stay within the total or task-count bound.")
				    ?: mput(out, "tasked_logstore_evicted_tasks_total %llu\n",
					    (unsigned long long)ls.evicted_tasks);
		if (r == 0)
			r = mhead(out, "tasked_logstore_dropped_bytes_total", "counter",
				  "Bytes of task output dropped by the log store's bounds.")
				    ?: mput(out, "tasked_logstore_dropped_bytes_total %llu\n",
					    (unsigned long long)ls.dropped_bytes);
	}
	return r;
}

int metrics_render(struct metrics *m, struct buf *out)
{
	struct metrics_sources src;
	struct metrics_counters snap;
	json_t *api_by_code, *kube_codes;
	int r, runners = 0, free_slots = 0, ready = 0, delayed = 0;

	pthread_mutex_lock(&m->lock);
	src = m->src;
	pthread_mutex_unlock(&m->lock);

	r = mhead(out, "tasked_build_info", "gauge", "Build information; the value is always 1.")
		    ?: mput(out, "tasked_build_info{version=\"%s\",instance=\"%s\"} 1\n",
			    TASKED_VERSION, src.instance ? src.instance : "");
	if (r == 0)
		r = render_tasks(m, &src, out);

	/* Copy what the observers update, then render without the lock. */
	pthread_mutex_lock(&m->lock);
	snap = m->c;
	api_by_code = json_deep_copy(m->api_by_code);
	kube_codes = json_deep_copy(m->kube_codes);
	pthread_mutex_unlock(&m->lock);

	if (r == 0)
		r = mhead(out, "tasked_task_dispatch_latency_seconds", "histogram",
			  "Time from a task's creation (as first seen by the controller) to its first attempt running.")
			    ?: metrics_hist_render(&snap.dispatch,
						   "tasked_task_dispatch_latency_seconds", "", out);
	if (r == 0)
		r = mhead(out, "tasked_task_run_duration_seconds", "histogram",
			  "Time from Running to a final phase, per task.")
			    ?: metrics_hist_render(&snap.runtime,
						   "tasked_task_run_duration_seconds", "", out);
	if (r == 0)
		r = mhead(out, "tasked_tasks_finished_total", "counter",
			  "Tasks this controller moved to a final phase, by phase.");
	for (int i = 0; r == 0 && i < 4; i++)
		r = mput(out, "tasked_tasks_finished_total{phase=\"%s\"} %llu\n", final_phases[i],
			 (unsigned long long)snap.finished[i]);
	if (r == 0)
		r = mhead(out, "tasked_task_retries_total", "counter",
			  "Attempts that failed and were queued again.")
			    ?: mput(out, "tasked_task_retries_total %llu\n",
				    (unsigned long long)snap.retries);

	if (src.broker)
		broker_counts(src.broker, &runners, &free_slots);
	if (r == 0)
		r = mhead(out, "tasked_runners_connected", "gauge",
			  "Runners connected to the broker.")
			    ?: mput(out, "tasked_runners_connected %d\n", runners);
	if (r == 0)
		r = mhead(out, "tasked_runner_slots_free", "gauge",
			  "Free task slots across connected runners.")
			    ?: mput(out, "tasked_runner_slots_free %d\n", free_slots);
	if (src.broker) {
		struct broker_stats bs;
		broker_stats(src.broker, &bs);
		if (r == 0)
			r = mhead(out, "tasked_broker_messages_dropped_total", "counter",
				  "Runner messages dropped, by type: for an attempt not in flight on that runner, or undecodable started and log messages.")
				    ?: mput(out,
					    "tasked_broker_messages_dropped_total{type=\"started\"} %llu\n"
					    "tasked_broker_messages_dropped_total{type=\"log\"} %llu\n"
					    "tasked_broker_messages_dropped_total{type=\"result\"} %llu\n",
					    bs.dropped_started, bs.dropped_log, bs.dropped_result);
		if (r == 0)
			r = mhead(out, "tasked_runner_auth_limited_total", "counter",
				  "Runner authentications refused because their peer address failed too often.")
				    ?: mput(out, "tasked_runner_auth_limited_total %llu\n",
					    bs.auth_limited);
		if (r == 0)
			r = mhead(out, "tasked_broker_unmasked_frames_total", "counter",
				  "Runner connections failed with 1002 for a frame without the client mask (RFC 6455 5.1).")
				    ?: mput(out, "tasked_broker_unmasked_frames_total %llu\n",
					    bs.bad_mask);
	}

	if (src.queue)
		wq_len(src.queue, &ready, &delayed);
	if (r == 0)
		r = mhead(out, "tasked_workqueue_depth", "gauge",
			  "Keys ready for a reconcile worker.")
			    ?: mput(out, "tasked_workqueue_depth %d\n", ready);
	if (r == 0)
		r = mhead(out, "tasked_workqueue_delayed", "gauge",
			  "Keys waiting for a delay or a backoff to pass.")
			    ?: mput(out, "tasked_workqueue_delayed %d\n", delayed);

	r = render_kube(&src, &snap, kube_codes, out, r);
	r = render_informers(&src, out, r);
	r = render_api(&snap, api_by_code, out, r);
	r = render_stores(&src, out, r);
	if (r == 0)
		r = render_process(m, out);
	json_decref(api_by_code);
	json_decref(kube_codes);
	return r;
}
