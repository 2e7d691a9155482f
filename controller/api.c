#include "api_priv.h"
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
			log_error("API key file is missing, unreadable or empty", "file",
				  a->cfg.api_key_file);
			api_free(a);
			return NULL;
		}
	}
	a->logs = logstore_new(&(struct logstore_cfg){ .max_per_task = cfg->log_max_per_task,
						       .max_total = cfg->log_max_total,
						       .max_tasks = cfg->log_max_tasks,
						       .dir = cfg->log_dir,
						       .notify = api_wake,
						       .ud = a });
	a->events = events_new(&(struct events_cfg){
		.max_events = cfg->event_buffer, .notify = api_wake, .ud = a });
	a->metrics = metrics_new();
	if (!a->logs || !a->events || !a->metrics) {
		api_free(a);
		return NULL;
	}
	if (cfg->sources)
		api_set_sources(a, cfg->sources);
	else
		metrics_set_sources(a->metrics, &(struct metrics_sources){ .events = a->events,
									   .logs = a->logs });
	a->cfg.sources = NULL; /* copied; the caller's may not outlive this call */
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

struct metrics *api_metrics(struct api *a) { return a->metrics; }

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
		log_info("dropped the stored logs of tasks deleted while the controller was away",
			 "logs", n);
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
	static const char *const copy[] = { "reason",    "message",        "attempts",
					    "runner",    "exitCode",       "httpStatus",
					    "startTime", "completionTime", "nextRetryTime" };
	char when[40], key[512];

	metrics_observe_status(a->metrics, task, status);
	if (!ns || !name || !uid)
		return;
	util_rfc3339_ms(util_now_ms(), when, sizeof(when));
	ev = json_pack("{ss ss ss ss ss ss* ss* ss}", "type", "status", "namespace", ns, "name",
		       name, "uid", uid, "queue", task_queue(task), "phase", phase, "previousPhase",
		       prev, "time", when);
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
	e = json_pack("{ss ss ss ss ss ss* ss}", "type",
		      ev == INFORMER_ADDED ? "created" : "deleted", "namespace", ns, "name",
		      json_string_value(json_object_get(md, "name")) ?: "", "uid", uid, "queue",
		      task_queue(obj), "phase", phase, "time", when);
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

int api_headers(struct lws *wsi, unsigned code, const char *ctype, lws_filepos_t len,
		const char *const *extra)
{
	unsigned char hdr[LWS_PRE + 2048], *start = hdr + LWS_PRE, *p = start,
					   *end = hdr + sizeof(hdr) - 1;
	if (lws_add_http_common_headers(wsi, code, ctype, len, &p, end) ||
	    lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
					(const unsigned char *)"no-store", 8, &p, end) ||
	    lws_add_http_header_by_name(wsi, (const unsigned char *)"x-content-type-options:",
					(const unsigned char *)"nosniff", 7, &p, end))
		return -1;
	for (; extra && extra[0]; extra += 2)
		if (lws_add_http_header_by_name(wsi, (const unsigned char *)extra[0],
						(const unsigned char *)extra[1],
						(int)strlen(extra[1]), &p, end))
			return -1;
	return lws_finalize_write_http_header(wsi, start, &p, end) ? -1 : 0;
}

/* Sends body (taken over) with the given type; the bytes go out in WRITEABLE. */
int api_send(struct api *a, struct lws *wsi, struct api_sess *s, unsigned code, const char *ctype,
	     char *body, size_t len, const char *const *extra)
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

int api_reply_json(struct api *a, struct lws *wsi, struct api_sess *s, unsigned code, json_t *body,
		   const char *const *extra)
{
	char *txt = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!txt)
		return -1;
	return api_send(a, wsi, s, code, "application/json", txt, strlen(txt), extra);
}

int api_error(struct api *a, struct lws *wsi, struct api_sess *s, unsigned code, const char *err,
	      const char *msg)
{
	return api_reply_json(a, wsi, s, code, json_pack("{ssss}", "error", err, "message", msg),
			      NULL);
}

/* Writes up to n bytes: at most API_CHUNK (which bounds what lws buffers when the socket
 * is full) and at most what an HTTP/2 peer's window allows. final marks the end of the body
 * when all n bytes go. Returns the bytes written, or -1. */
long api_write_some(struct lws *wsi, const char *p, size_t n, int final)
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
void api_arg(struct lws *wsi, const char *name, char *out, size_t outsz)
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
int api_valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 253)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' ||
		      *s == '.'))
			return 0;
	return 1;
}

int api_wants_json(struct lws *wsi)
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
	if (c->ns[0] &&
	    strcmp(c->ns, json_string_value(json_object_get(md, "namespace")) ?: "") != 0)
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
		return api_error(a, wsi, s, 400, "BadRequest",
				 "limit must be an integer from 1 to 5000");
	if (ns[0] && !api_valid_name(ns))
		return api_error(a, wsi, s, 400, "BadRequest",
				 "namespace is not a valid Kubernetes name");
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
		json_object_set_new(md, "remainingItemCount",
				    json_integer((json_int_t)(c.n - take)));
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

static int api_get_task(struct api *a, struct lws *wsi, struct api_sess *s, const char *ns,
			const char *name)
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

/* --- routing --------------------------------------------------------------------------------- */

static int api_route(struct api *a, struct lws *wsi, struct api_sess *s, const char *uri)
{
	char path[512], *seg[8], *save = NULL, *p, follow[16], attempt_s[24];
	int n = 0;
	long attempt = 0;

	if (strncmp(uri, "/api/v1/", 8) != 0 || strlen(uri) >= sizeof(path))
		return api_error(a, wsi, s, 404, "NotFound", "no such endpoint");
	snprintf(path, sizeof(path), "%s", uri + 8);
	for (p = strtok_r(path, "/", &save); p && n < (int)UTIL_ARRAY_SIZE(seg);
	     p = strtok_r(NULL, "/", &save))
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
		return api_error(a, wsi, s, 400, "BadRequest",
				 "namespace and task name must be valid Kubernetes names");
	if (n == 3)
		return api_list_tasks(a, wsi, s, seg[1]);
	if (n == 4)
		return api_get_task(a, wsi, s, seg[1], seg[3]);
	if (n == 5 && strcmp(seg[4], "logs") == 0) {
		api_arg(wsi, "follow", follow, sizeof(follow));
		api_arg(wsi, "attempt", attempt_s, sizeof(attempt_s));
		if (attempt_s[0] && util_parse_long(attempt_s, 1, 1000000, &attempt) < 0)
			return api_error(a, wsi, s, 400, "BadRequest",
					 "attempt must be a positive integer");
		if (strcmp(follow, "true") == 0 || strcmp(follow, "1") == 0)
			return api_follow_logs(a, wsi, s, seg[1], seg[3], attempt);
		if (follow[0] && strcmp(follow, "false") != 0 && strcmp(follow, "0") != 0)
			return api_error(a, wsi, s, 400, "BadRequest",
					 "follow must be true or false");
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
	return api_send(a, wsi, s, 200, "text/plain; version=0.0.4; charset=utf-8", body, len,
			NULL);
}

/* Requests that need no key. Returns 1 when the request was not one of them. */
static int api_public(struct api *a, struct lws *wsi, struct api_sess *s, const char *uri, int *ret)
{
	char why[256] = "";
	if (strcmp(uri, "/healthz") == 0) {
		*ret = api_reply_json(a, wsi, s, 200, json_pack("{ss}", "status", "ok"), NULL);
	} else if (strcmp(uri, "/readyz") == 0) {
		int ok = a->cfg.ready ? a->cfg.ready(a->cfg.ud, why, sizeof(why)) : 1;
		*ret = ok ? api_reply_json(a, wsi, s, 200, json_pack("{ss}", "status", "ready"),
					   NULL)
			  : api_error(a, wsi, s, 503, "NotReady", why);
	} else if (strcmp(uri, "/metrics") == 0) {
		*ret = api_metrics_reply(a, wsi, s);
	} else {
		return 1;
	}
	return 0;
}

static int api_is_get(struct lws *wsi) { return lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0; }

static int api_refuse_method(struct api *a, struct lws *wsi, struct api_sess *s)
{
	const char *allow[] = { "allow:", "GET", NULL };
	s->close_after = 1; /* do not try to read past a body we ignore */
	return api_reply_json(
		a, wsi, s, 405,
		json_pack("{ssss}", "error", "MethodNotAllowed", "message", "only GET is served"),
		allow);
}

static void api_capture_ctx(struct api *a, struct lws *wsi)
{
	struct lws_context *ctx = lws_get_context(wsi);
	if (!atomic_load(&a->ctx)) {
		atomic_store(&a->ctx, ctx);
		lws_sul_schedule(ctx, 0, &a->sweep, api_sse_sweep, LWS_USEC_PER_SEC);
		a->sweep_on = 1;
	}
}

static void api_sess_end(struct api *a, struct api_sess *s)
{
	if (!s)
		return;
	api_sse_unlink(a, s);
	sess_reset(s);
	s->kind = SK_NONE;
}

/* Some callbacks (e.g. LWS_CALLBACK_GET_THREAD_ID) come with a wsi that has no vhost. */
static struct api *api_of(struct lws *wsi)
{
	struct lws_vhost *vh = wsi ? lws_get_vhost(wsi) : NULL;
	return vh ? lws_get_vhost_user(vh) : NULL;
}

static int api_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		  size_t len)
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
			server_tls_http1_only(a->ssl_ctx);
		}
		return 0;
	case LWS_CALLBACK_PROTOCOL_DESTROY:
		if (a && a->sweep_on) {
			lws_sul_cancel(&a->sweep);
			a->sweep_on = 0;
		}
		return 0;
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return -1; /* no WebSockets here */
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
			const char *hdr[] = { "www-authenticate:", "Bearer realm=\"tasked\"",
					      NULL };
			OPENSSL_cleanse(key, sizeof(key));
			metrics_auth_failure(a->metrics);
			lws_get_peer_simple(wsi, peer, sizeof(peer));
			log_warn("API request refused", "reason", "missing or wrong API key",
				 "peer", peer, "path", uri);
			return api_reply_json(
				a, wsi, s, 401,
				json_pack(
					"{ssss}", "error", "Unauthorized", "message",
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
			return api_sse_writeable(a, wsi, s);
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
static int api_metrics_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
			  size_t len)
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
		return api_error(a, wsi, s, 404, "NotFound",
				 "this listener serves /metrics, /healthz and /readyz");
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
	{ "http", api_cb, sizeof(struct api_sess), 0, 0, NULL, 0 }, { NULL, NULL, 0, 0, 0, NULL, 0 }
};

static const struct lws_protocols api_metrics_protos[] = {
	{ "http", api_metrics_cb, sizeof(struct api_sess), 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

const struct lws_protocols *api_protocols(void) { return api_protos; }

int api_start(struct api *a)
{
	int r;

	if (a->cfg.server && a->cfg.listen &&
	    (r = server_listen(a->cfg.server, "api", a->cfg.listen, api_protos, a)) < 0)
		return r;
	if (!a->cfg.metrics_listen)
		return 0;
	if ((r = server_new(a->cfg.tls_cert, a->cfg.tls_key, &a->msrv)) < 0 ||
	    (r = server_listen(a->msrv, "metrics", a->cfg.metrics_listen, api_metrics_protos, a)) <
		    0)
		return r;
	return server_start_thread(a->msrv);
}
