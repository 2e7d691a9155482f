#include "conn.h"
#include "exec.h"
#include "health.h"
#include "log.h"
#include "plainhttp.h"
#include "proto.h"
#include "util.h"
#include "wsguard.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define CONN_BACKOFF_BASE_MS 250
#define CONN_BACKOFF_MAX_MS 10000
#define CONN_STABLE_MS 30000 /* a connection that lived this long resets the backoff */
#define CONN_TICK_US (200 * 1000)
#define CONN_AUTH_TIMEOUT_MS 10000
#define CONN_AUTH_CONNECT_MS 5000
#define CONN_AUTH_BODY_MAX (64 * 1024)
#define CONN_LOG_BUDGET (4 * 1024 * 1024) /* log messages queued at most */
#define CONN_FLUSH_MS 5000                /* on exit, wait this long for acks of the last results */
#define CONN_FDS_BASE 256                 /* lws's fd tables: the runner's own fds, then per slot */
#define CONN_FDS_PER_SLOT 16     /* pipes, pidfd, cgroup and work dirs, an http task's sockets */
#define CONN_FORCE_EXIT_MS 10000 /* after killing, give workers this long to report */
#define CONN_RX_KEEP (64 * 1024) /* reassembly memory kept between messages */
#define CONN_MAX_MESSAGE_CEILING (16 * 1024 * 1024)
#define CONN_WELCOME_TIMEOUT_MS 30000

enum conn_state { CONN_IDLE, CONN_CONNECTING, CONN_HELLO, CONN_ONLINE };

struct conn {
	struct conn_config cfg;
	struct conn_url url;
	struct reg *reg;
	struct lws_context *ctx;
	struct lws *wsi;
	enum conn_state state;
	lws_sorted_usec_list_t sul_tick, sul_retry;
	int failures;
	int64_t online_since, last_rx;
	int64_t heartbeat_ms;
	atomic_size_t max_message;
	int hello_pending;
	char grant[CONN_GRANT_MAX + 1];
	struct buf rx;
	unsigned char *tx;
	size_t tx_cap;
	/* shutdown */
	atomic_int stop;
	int draining, killed, done;
	int64_t grace_deadline, kill_time, flush_deadline;
	atomic_int workers;
	int64_t health_at; /* when --health-file was last written (monotonic ms) */
	int health_err;    /* the last write error, logged once */
	char proxy[300];   /* --broker-proxy as host:port for libwebsockets, or "" */
	/* The last result written on this connection: if the controller closes the connection
	 * over it (4400/1009), it is replaced instead of being resent forever. */
	char last_uid[PROTO_MAX_ID + 1];
	int64_t last_attempt;
};

static const char *conn_strerror(int err)
{
	const char *s = strerrordesc_np(err);
	return s ? s : "Unknown error";
}

/* ---- URL and backoff helpers ------------------------------------------------------------- */

int conn_parse_url(const char *url, struct conn_url *ret)
{
	const char *p, *hend, *port = NULL;
	size_t hlen;

	memset(ret, 0, sizeof(*ret));
	if (strncmp(url, "ws://", 5) == 0) {
		p = url + 5;
	} else if (strncmp(url, "wss://", 6) == 0) {
		p = url + 6;
		ret->tls = 1;
	} else {
		return -EINVAL;
	}
	if (*p == '[') {
		hend = strchr(p, ']');
		if (!hend)
			return -EINVAL;
		p++;
		hlen = (size_t)(hend - p);
		ret->ipv6 = 1;
		hend++;
		if (*hend == ':')
			port = hend + 1;
		else if (*hend != '\0' && *hend != '/')
			return -EINVAL;
	} else {
		hlen = strcspn(p, ":/");
		hend = p + hlen;
		if (*hend == ':')
			port = hend + 1;
	}
	if (hlen == 0 || hlen >= sizeof(ret->host))
		return -EINVAL;
	memcpy(ret->host, p, hlen);
	ret->host[hlen] = '\0';
	for (const char *h = ret->host; *h; h++)
		if (!(((*h | 0x20) >= 'a' && (*h | 0x20) <= 'z') || (*h >= '0' && *h <= '9') ||
		      *h == '-' || *h == '.' || *h == '_' ||
		      (ret->ipv6 && (*h == ':' || *h == '%'))))
			return -EINVAL;
	ret->port = ret->tls ? 443 : 80;
	if (port) {
		char num[8];
		size_t n = strcspn(port, "/");
		long v;
		if (n == 0 || n >= sizeof(num))
			return -EINVAL;
		memcpy(num, port, n);
		num[n] = '\0';
		if (util_parse_long(num, 1, 65535, &v) < 0)
			return -EINVAL;
		ret->port = (int)v;
		hend = port + n;
	}
	if (strcmp(hend, "") != 0 && strcmp(hend, "/") != 0)
		return -EINVAL;
	return 0;
}

int conn_parse_proxy(const char *url, char *out, size_t outsz)
{
	struct conn_url u;
	int n;

	/* Same shape as a broker URL, with the http scheme. */
	if (strncmp(url, "http://", 7) != 0 || strlen(url) > 300)
		return -EINVAL;
	{
		char ws[310];
		snprintf(ws, sizeof(ws), "ws://%s", url + 7);
		if (conn_parse_url(ws, &u) < 0 || !strchr(url + 7, ':'))
			return -EINVAL;
	}
	n = snprintf(out, outsz, "%s%s%s:%d", u.ipv6 ? "[" : "", u.host, u.ipv6 ? "]" : "", u.port);
	return n < 0 || (size_t)n >= outsz ? -EINVAL : 0;
}

int64_t conn_backoff_ms(int failures, int64_t base_ms, int64_t max_ms)
{
	int64_t d = base_ms;
	uint32_t rnd = 0;

	for (int i = 0; i < failures && d < max_ms; i++)
		d *= 2;
	if (d > max_ms)
		d = max_ms;
	(void)util_random(&rnd, sizeof(rnd));
	/* uniform in [0.75 d, 1.25 d] */
	return d * 3 / 4 + (int64_t)(rnd % (uint32_t)(d / 2 + 1));
}

/* ---- sending --------------------------------------------------------------------------- */

static void conn_wake(void *userdata)
{
	struct conn *c = userdata;
	if (c->ctx)
		lws_cancel_service(c->ctx);
}

static size_t conn_max_message(struct conn *c) { return atomic_load(&c->max_message); }

/* Encodes and queues msg (borrowed). */
static int conn_push(struct conn *c, enum reg_kind kind, json_t *msg)
{
	char *text;
	size_t len;
	int r;

	if (!msg)
		return -ENOMEM;
	r = proto_encode(msg, conn_max_message(c), &text, &len);
	if (r < 0)
		return r;
	return reg_push(c->reg, kind, text, len);
}

/* A result for an attempt this runner does not run (refusals, unknown cancels). */
static void conn_refuse(struct conn *c, const char *uid, int64_t attempt, const char *phase,
			const char *reason, const char *message)
{
	json_t *o = proto_new_task(PROTO_RESULT, uid, attempt);
	char *text;
	size_t len;

	if (!o)
		return;
	json_object_set_new(o, "phase", json_string(phase));
	json_object_set_new(o, "reason", json_string(reason));
	json_object_set_new(o, "message", json_string(message));
	json_object_set_new(o, "completionTime", json_integer(util_now_ms()));
	if (proto_encode(o, conn_max_message(c), &text, &len) == 0)
		(void)reg_finish(c->reg, uid, attempt, text, len);
	json_decref(o);
}

/* The controller refused this attempt's kept result (or it cannot be sent): replace it with a
 * minimal one it can decode, so the attempt fails with a reason instead of being resent
 * forever. */
static void conn_replace_invalid(struct conn *c, const char *uid, int64_t attempt, const char *why)
{
	json_t *o = proto_new_task(PROTO_RESULT, uid, attempt);
	char *text, msg[256], at[24];
	size_t len;

	if (!o)
		return;
	snprintf(msg, sizeof(msg), "the controller could not accept this attempt's result: %s",
		 why);
	json_object_set_new(o, "phase", json_string("Failed"));
	json_object_set_new(o, "reason", json_string("InvalidResult"));
	json_object_set_new(o, "message", json_string(msg));
	json_object_set_new(o, "completionTime", json_integer(util_now_ms()));
	snprintf(at, sizeof(at), "%" PRId64, attempt);
	log_warn("replacing a result the controller refused", "taskUid", uid, "attempt", at,
		 "reason", why);
	if (proto_encode(o, conn_max_message(c), &text, &len) == 0)
		(void)reg_replace(c->reg, uid, attempt, text, len);
	json_decref(o);
}

/* ---- worker threads -------------------------------------------------------------------- */

struct conn_worker {
	struct conn *c;
	struct exec_task *t;
	char uid[PROTO_MAX_ID + 1], ns[254], name[254];
	int64_t attempt;
};

static void conn_worker_started(void *ud, int64_t start_ms)
{
	struct conn_worker *w = ud;
	json_t *o = proto_new_task(PROTO_STARTED, w->uid, w->attempt);
	if (o)
		json_object_set_new(o, "startTime", json_integer(start_ms));
	(void)conn_push(w->c, REG_MSG_CONTROL, o);
	json_decref(o);
}

static int conn_worker_log(void *ud, const char *stream, int64_t seq, const char *data, size_t len)
{
	struct conn_worker *w = ud;
	json_t *o = proto_new_task(PROTO_LOG, w->uid, w->attempt);
	int r;

	if (!o)
		return -ENOMEM;
	json_object_set_new(o, "seq", json_integer(seq));
	json_object_set_new(o, "stream", json_string(stream));
	json_object_set_new(o, "data", json_stringn(data, len));
	r = json_object_get(o, "data") ? conn_push(w->c, REG_MSG_LOG, o) : -EINVAL;
	json_decref(o);
	return r;
}

static void *conn_worker_main(void *p)
{
	struct conn_worker *w = p;
	struct conn *c = w->c;
	struct exec_hooks hooks = { conn_worker_started, conn_worker_log, w };
	struct exec_result res;
	json_t *o;
	char *text = NULL, code[16], attempt[24];
	size_t len = 0;
	int r;

	exec_task_run(w->t, &hooks, &res);
	o = exec_result_json(w->uid, w->attempt, &res);
	r = o ? proto_encode(o, conn_max_message(c), &text, &len) : -ENOMEM;
	if (r < 0 && o) {
		/* Too large for the peer's cap: keep the verdict, drop the bulk. */
		json_object_del(o, "output");
		json_object_set_new(o, "logTail", json_string(""));
		json_object_set_new(o, "truncated", json_true());
		r = proto_encode(o, conn_max_message(c), &text, &len);
	}
	if (r == 0) {
		/* Never keep (and resend) what our own decoder, which the controller shares, refuses. */
		struct proto_msg m;
		char err[160];
		if (proto_decode(text, len, conn_max_message(c), PROTO_FROM_RUNNER, &m, err,
				 sizeof(err)) == 0) {
			proto_msg_free(&m);
		} else {
			char msg[256];
			free(text);
			text = NULL;
			r = -EBADMSG;
			snprintf(msg, sizeof(msg),
				 "the result could not be encoded as a valid message: %s", err);
			log_warn("result refused by the protocol decoder", "taskUid", w->uid,
				 "error", err);
			conn_refuse(c, w->uid, w->attempt, "Failed", "InvalidResult", msg);
		}
	}
	snprintf(code, sizeof(code), "%d", res.exit_code);
	snprintf(attempt, sizeof(attempt), "%" PRId64, w->attempt);
	log_info("attempt finished", "taskUid", w->uid, "attempt", attempt, "namespace", w->ns,
		 "name", w->name, "phase", res.phase, "reason", res.reason, "exitCode", code);
	if (r == 0) {
		(void)reg_finish(c->reg, w->uid, w->attempt, text, len);
	} else if (r != -EBADMSG) {
		/* The slot must be freed and the verdict reported whatever happens. */
		log_error("could not encode result", "taskUid", w->uid, "error", conn_strerror(-r));
		conn_refuse(c, w->uid, w->attempt, res.phase, res.reason,
			    "the full result could not be encoded");
	}
	json_decref(o);
	exec_result_free(&res);
	if (!atomic_load(&c->stop))
		exec_task_after(w->t);
	exec_task_free(w->t);
	free(w);
	atomic_fetch_sub(&c->workers, 1);
	return NULL;
}

static void conn_on_dispatch(struct conn *c, const struct proto_msg *m)
{
	struct exec_opts opts = { .work_root = c->cfg.work_dir, .drop_uid = c->cfg.drop_uid };
	struct conn_worker *w;
	struct exec_task *t = NULL;
	pthread_attr_t attr;
	pthread_t th;
	char attempt[24], msg[128];
	int r;

	snprintf(attempt, sizeof(attempt), "%" PRId64, m->attempt);
	if (exec_task_new(m, &opts, &t) < 0) {
		conn_refuse(c, m->task_uid, m->attempt, "Failed", "Internal",
			    "runner out of memory");
		return;
	}
	r = reg_begin(c->reg, m->task_uid, m->attempt, t);
	if (r == -EEXIST) {
		log_debug("duplicate dispatch ignored", "taskUid", m->task_uid, "attempt", attempt);
		exec_task_free(t);
		return;
	}
	if (r < 0) {
		exec_task_free(t);
		snprintf(msg, sizeof(msg),
			 r == -ESHUTDOWN ? "runner is draining"
					 : "runner has no free slot (capacity %d)",
			 c->cfg.capacity);
		log_info("dispatch refused", "taskUid", m->task_uid, "attempt", attempt, "reason",
			 msg);
		conn_refuse(c, m->task_uid, m->attempt, "Failed",
			    r == -ESHUTDOWN ? "RunnerDraining" : "RunnerFull", msg);
		return;
	}
	log_info("attempt dispatched", "taskUid", m->task_uid, "attempt", attempt, "namespace",
		 m->namespace_, "name", m->name);
	w = calloc(1, sizeof(*w));
	if (w) {
		w->c = c;
		w->t = t;
		memcpy(w->uid, m->task_uid, strlen(m->task_uid) + 1);
		snprintf(w->ns, sizeof(w->ns), "%s", m->namespace_);
		snprintf(w->name, sizeof(w->name), "%s", m->name);
		w->attempt = m->attempt;
	}
	atomic_fetch_add(&c->workers, 1);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = w ? pthread_create(&th, &attr, conn_worker_main, w) : ENOMEM;
	pthread_attr_destroy(&attr);
	if (r != 0) {
		atomic_fetch_sub(&c->workers, 1);
		log_error("could not start worker thread", "taskUid", m->task_uid, "error",
			  conn_strerror(r));
		free(w);
		/* reg_finish frees the slot first, so the exec task is no longer referenced. */
		conn_refuse(c, m->task_uid, m->attempt, "Failed", "Internal",
			    "runner could not start a thread");
		exec_task_free(t);
	}
}

/* ---- receiving ------------------------------------------------------------------------- */

static int conn_close(struct conn *c, struct lws *wsi, int code, const char *reason)
{
	size_t n = strlen(reason);
	if (n > 120)
		n = 120;
	lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)(uintptr_t)reason, n);
	return -1;
}

/* A dispatch whose envelope is sound (type, taskUid, attempt) but whose task fields the decoder
 * refuses is the task's problem, not the connection's: it fails as InvalidSpec instead of
 * closing the connection (which would only bring the same dispatch back). Returns 1 when
 * handled. */
static int conn_refuse_bad_dispatch(struct conn *c, const char *data, size_t len, const char *err)
{
	json_t *o = c->state == CONN_ONLINE ? json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL)
					    : NULL;
	json_t *uid = json_object_get(o, "taskUid"), *at = json_object_get(o, "attempt");
	char msg[256], attempt[24];
	int r, handled = 0;

	if (json_is_string(json_object_get(o, "type")) &&
	    strcmp(json_string_value(json_object_get(o, "type")), "dispatch") == 0 &&
	    json_is_string(uid) && json_string_length(uid) > 0 &&
	    json_string_length(uid) <= PROTO_MAX_ID &&
	    strlen(json_string_value(uid)) == json_string_length(uid) && json_is_integer(at) &&
	    json_integer_value(at) >= 1 && json_integer_value(at) <= 1000000) {
		handled = 1;
		snprintf(attempt, sizeof(attempt), "%" PRId64, (int64_t)json_integer_value(at));
		log_warn("invalid dispatch refused", "taskUid", json_string_value(uid), "attempt",
			 attempt, "error", err);
		/* Claim-and-finish like any refusal; an attempt already held here is left alone. */
		r = reg_begin(c->reg, json_string_value(uid), json_integer_value(at), NULL);
		if (r != -EEXIST) {
			snprintf(msg, sizeof(msg), "the runner refused the dispatch: %s", err);
			conn_refuse(c, json_string_value(uid), json_integer_value(at), "Failed",
				    "InvalidSpec", msg);
		}
	}
	json_decref(o);
	return handled;
}

static int conn_handle(struct conn *c, struct lws *wsi, const char *data, size_t len)
{
	struct proto_msg m;
	char err[160], attempt[24];
	int r;

	r = proto_decode(data, len, conn_max_message(c), PROTO_FROM_CONTROLLER, &m, err,
			 sizeof(err));
	if (r == -EBADMSG && conn_refuse_bad_dispatch(c, data, len, err)) {
		c->last_rx = util_mono_ms();
		return 0;
	}
	if (r < 0) {
		log_warn("protocol error from controller; closing", "error", err);
		return conn_close(
			c, wsi, r == -EMSGSIZE ? PROTO_CLOSE_TOO_BIG : PROTO_CLOSE_MALFORMED, err);
	}
	c->last_rx = util_mono_ms();
	if (c->state != CONN_ONLINE && m.type != PROTO_WELCOME) {
		log_warn("protocol error from controller; closing", "error", "expected welcome",
			 "type", proto_type_name(m.type));
		proto_msg_free(&m);
		return conn_close(c, wsi, PROTO_CLOSE_MALFORMED, "expected welcome");
	}
	snprintf(attempt, sizeof(attempt), "%" PRId64, m.attempt);
	switch (m.type) {
	case PROTO_WELCOME:
		if (c->state == CONN_ONLINE) {
			proto_msg_free(&m);
			return conn_close(c, wsi, PROTO_CLOSE_MALFORMED, "duplicate welcome");
		}
		c->state = CONN_ONLINE;
		c->health_at = 0; /* ready now: say so at the next tick */
		c->online_since = util_mono_ms();
		c->heartbeat_ms = m.heartbeat_s * 1000;
		/* Our own ceiling on what the controller may ask us to buffer. */
		atomic_store(&c->max_message, (size_t)(m.max_message > CONN_MAX_MESSAGE_CEILING
							       ? CONN_MAX_MESSAGE_CEILING
							       : m.max_message));
		c->rx.max = conn_max_message(c);
		log_info("connected to controller", "runnerId", m.runner_id);
		reg_online(c->reg);
		if (c->draining) {
			json_t *o = json_pack("{sssi}", "type", "ready", "slots", 0);
			(void)conn_push(c, REG_MSG_CONTROL, o);
			json_decref(o);
		}
		break;
	case PROTO_PING: {
		json_t *o = proto_new(PROTO_PONG);
		(void)conn_push(c, REG_MSG_CONTROL, o);
		json_decref(o);
		break;
	}
	case PROTO_DISPATCH:
		conn_on_dispatch(c, &m);
		break;
	case PROTO_CANCEL:
		r = reg_kill(c->reg, m.task_uid, m.attempt, EXEC_KILL_CANCEL);
		log_info("cancel", "taskUid", m.task_uid, "attempt", attempt, "state",
			 r == 0           ? "running"
			 : r == -EALREADY ? "finished"
					  : "unknown");
		if (r == -ENOENT)
			conn_refuse(c, m.task_uid, m.attempt, "Cancelled", "Cancelled",
				    "cancelled: the attempt was not running on this runner");
		break;
	case PROTO_ACK:
		if (reg_ack(c->reg, m.task_uid, m.attempt) < 0)
			log_debug("ack for an attempt not held", "taskUid", m.task_uid, "attempt",
				  attempt);
		break;
	case PROTO_DRAIN:
		log_info("controller asked to drain: taking no new work");
		reg_set_draining(c->reg);
		break;
	default:
		break;
	}
	proto_msg_free(&m);
	return 0;
}

/* Writes one text message (borrowed) with LWS_PRE headroom. */
static int conn_write(struct conn *c, struct lws *wsi, const char *msg, size_t len)
{
	int n;

	if (LWS_PRE + len > c->tx_cap) {
		size_t cap = LWS_PRE + len + 1024;
		unsigned char *nt = realloc(c->tx, cap);
		if (!nt)
			return -ENOMEM;
		c->tx = nt;
		c->tx_cap = cap;
	}
	memcpy(c->tx + LWS_PRE, msg, len);
	n = lws_write(wsi, c->tx + LWS_PRE, len, LWS_WRITE_TEXT);
	if (c->tx_cap > CONN_RX_KEEP + LWS_PRE) { /* don't keep a 1 MiB buffer around */
		free(c->tx);
		c->tx = NULL;
		c->tx_cap = 0;
	}
	if (n < (int)len) {
		log_warn("websocket write failed; reconnecting");
		return -EIO;
	}
	return 0;
}

/* One message per writable callback: hello first, then the outbox once welcomed. */
static int conn_writable(struct conn *c, struct lws *wsi)
{
	char *msg;
	size_t len;
	int r;

	if (c->hello_pending) {
		json_t *o = proto_new(PROTO_HELLO),
		       *exe = json_pack("[sss]", "shell", "http", "remote");
		c->hello_pending = 0;
		if (!o || !exe) {
			json_decref(o);
			json_decref(exe);
			return -1;
		}
		json_object_set_new(o, "runnerId", json_string(c->cfg.runner_id));
		json_object_set_new(o, "version", json_string(TASKED_VERSION));
		json_object_set_new(o, "labels", json_deep_copy(c->cfg.labels));
		json_object_set_new(o, "executors", exe);
		json_object_set_new(o, "capacity", json_integer(c->cfg.capacity));
		json_object_set_new(o, "running", reg_held_json(c->reg));
		r = proto_encode(o, conn_max_message(c), &msg, &len);
		json_decref(o);
		if (r < 0) {
			log_error("could not encode hello", "error", conn_strerror(-r));
			return -1;
		}
		r = conn_write(c, wsi, msg, len);
		free(msg);
		return r < 0 ? -1 : 0;
	}
	if (c->state != CONN_ONLINE || !reg_pop(c->reg, &msg, &len))
		return 0;
	{
		enum proto_type t;
		char uid[PROTO_MAX_ID + 1];
		int64_t at;
		int is_result = proto_envelope(msg, len, &t, uid, sizeof(uid), &at) == 0 &&
				t == PROTO_RESULT;
		if (len > conn_max_message(c)) {
			log_error("dropping a message over the controller's size cap");
			if (is_result)
				conn_replace_invalid(
					c, uid, at,
					"it is larger than the controller's message cap");
			r = 0;
		} else {
			r = conn_write(c, wsi, msg, len);
			if (r == 0 && is_result) {
				memcpy(c->last_uid, uid, strlen(uid) + 1);
				c->last_attempt = at;
			}
		}
	}
	free(msg);
	if (r < 0)
		return -1;
	if (reg_has_pending(c->reg))
		lws_callback_on_writable(wsi);
	return 0;
}

static void conn_schedule_retry(struct conn *c);

static void conn_lost(struct conn *c, const char *why)
{
	int64_t lived = c->online_since ? util_mono_ms() - c->online_since : 0;

	reg_offline(c->reg);
	explicit_bzero(c->grant, sizeof(c->grant));
	c->wsi = NULL;
	c->state = CONN_IDLE;
	c->health_at = 0;
	c->online_since = 0;
	buf_free(&c->rx);
	if (lived >= CONN_STABLE_MS)
		c->failures = 0;
	if (c->done) {
		log_info("connection closed");
		return;
	}
	log_warn("disconnected from controller", "reason", why);
	conn_schedule_retry(c);
}

static int conn_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
			 size_t len)
{
	struct conn *c = lws_context_user(lws_get_context(wsi));

	switch (reason) {
	case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
		unsigned char **p = (unsigned char **)in, *end = (*p) + len;
		char v[CONN_GRANT_MAX + 16];
		int n = snprintf(v, sizeof(v), "Bearer %s", c->grant);
		int r = lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_AUTHORIZATION,
						     (unsigned char *)v, n, p, end);
		explicit_bzero(v, sizeof(v));
		explicit_bzero(c->grant, sizeof(c->grant)); /* single use */
		/* lws 4.1 takes masked frames from a server (RFC 6455 5.1 says fail): wsguard.h.
		 * The request is not sent yet, so the response is read from its first byte. */
		if (!r && wsguard_watch(lws_get_socket_fd(wsi), 0) < 0)
			return -1;
		return r ? -1 : 0;
	}
	case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH:
		if (wsguard_upgrade(lws_get_socket_fd(wsi)) < 0) {
			log_warn("protocol error from controller; closing", "error",
				 "data after the handshake response");
			return -1;
		}
		break;
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		if (wsi != c->wsi)
			return -1;
		c->state = CONN_HELLO;
		c->last_rx = util_mono_ms();
		c->last_uid[0] = '\0';
		buf_free(&c->rx);
		buf_init(&c->rx, PROTO_MAX_MESSAGE_DEFAULT);
		atomic_store(&c->max_message, (size_t)PROTO_MAX_MESSAGE_DEFAULT);
		c->hello_pending = 1;
		lws_callback_on_writable(wsi);
		break;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		if (wsi != c->wsi)
			return -1;
		if (lws_is_first_fragment(wsi))
			buf_reset(&c->rx);
		if (lws_frame_is_binary(wsi)) {
			log_warn("protocol error from controller; closing", "error",
				 "binary message");
			return conn_close(c, wsi, PROTO_CLOSE_MALFORMED, "binary message");
		}
		if (buf_append(&c->rx, in, len) < 0) {
			char e[80];
			snprintf(e, sizeof(e), "message exceeds the %zu byte cap", c->rx.max);
			log_warn("protocol error from controller; closing", "error", e);
			return conn_close(c, wsi, PROTO_CLOSE_TOO_BIG, e);
		}
		if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
			int r = conn_handle(c, wsi, c->rx.data ? c->rx.data : "", c->rx.len);
			if (c->rx.cap > CONN_RX_KEEP) {
				size_t max = c->rx.max;
				buf_free(&c->rx);
				buf_init(&c->rx, max);
			} else {
				buf_reset(&c->rx);
			}
			if (r < 0)
				return -1;
			if (reg_has_pending(c->reg))
				lws_callback_on_writable(wsi);
		}
		break;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		if (wsi != c->wsi)
			return -1;
		return conn_writable(c, wsi);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (len >= 2) {
			char code[8], why[128];
			const unsigned char *b = in;
			size_t n = len - 2 < sizeof(why) - 1 ? len - 2 : sizeof(why) - 1;
			snprintf(code, sizeof(code), "%u", (unsigned)(b[0] << 8 | b[1]));
			memcpy(why, b + 2, n);
			why[n] = '\0';
			log_warn("controller closed the connection", "code", code, "reason", why);
			/* An older controller closes over a result it cannot decode: do not resend it. */
			if ((b[0] << 8 | b[1]) == PROTO_CLOSE_MALFORMED ||
			    (b[0] << 8 | b[1]) == PROTO_CLOSE_TOO_BIG) {
				if (c->last_uid[0])
					conn_replace_invalid(c, c->last_uid, c->last_attempt, why);
				c->last_uid[0] = '\0';
			}
		}
		break;
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (wsi == c->wsi || c->state == CONN_CONNECTING)
			conn_lost(c, in ? (const char *)in : "connection error");
		break;
	case LWS_CALLBACK_CLIENT_CLOSED:
		if (wsguard_forget(lws_get_socket_fd(wsi)))
			log_warn("protocol error from controller; closed", "error",
				 "masked frame from the server (RFC 6455 5.1)");
		if (wsi == c->wsi)
			conn_lost(c, "closed");
		break;
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		if (c && c->wsi && c->state == CONN_ONLINE && reg_has_pending(c->reg))
			lws_callback_on_writable(c->wsi);
		break;
	default:
		break;
	}
	(void)user;
	return 0;
}

static const struct lws_protocols conn_protocols[] = {
	{ PROTO_SUBPROTOCOL, conn_callback, 0, 64 * 1024, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

/* ---- auth ------------------------------------------------------------------------------ */

static size_t conn_curl_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct buf *b = userdata;
	return buf_append(b, ptr, size * nmemb) == 0 ? size * nmemb : 0;
}

static int conn_auth_cancelled(void *ud)
{
	struct conn *c = ud;
	return atomic_load(&c->stop) >= 2 || c->done;
}

static int conn_curl_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c2, curl_off_t d)
{
	return conn_auth_cancelled(ud);
}

/* POST the token, get a grant. 0, -EACCES (403), -EAGAIN (429 or transport), -EPROTO. */
static int conn_auth(struct conn *c)
{
	char url[400], *token = NULL, *body = NULL, status[8];
	struct curl_slist *hdrs = NULL;
	struct buf resp;
	json_t *req, *j = NULL;
	json_error_t jerr;
	CURL *h = NULL;
	long code = 0;
	size_t tlen = 0;
	int r;

	r = util_read_file(c->cfg.token_file, CONN_TOKEN_MAX, &token, &tlen);
	if (r < 0) {
		log_error("cannot read the token file", "path", c->cfg.token_file, "error",
			  conn_strerror(-r));
		return -EAGAIN;
	}
	util_rstrip(token);
	req = json_pack("{ss}", "token", token);
	explicit_bzero(token, tlen);
	free(token);
	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req); /* jansson frees the copy; its bytes are not wiped (library limitation) */
	if (!body)
		return -ENOMEM;
	snprintf(url, sizeof(url), "%s://%s%s%s:%d%s", c->url.tls ? "https" : "http",
		 c->url.ipv6 ? "[" : "", c->url.host, c->url.ipv6 ? "]" : "", c->url.port,
		 CONN_AUTH_PATH);
	buf_init(&resp, CONN_AUTH_BODY_MAX);
	if (!c->url.tls && !c->cfg.broker_proxy) {
		/* ws://: plain HTTP without libcurl, so no TLS library is set up (plainhttp.h) */
		r = ph_post(c->url.host, c->url.port, CONN_AUTH_PATH, body, CONN_AUTH_CONNECT_MS,
			    CONN_AUTH_TIMEOUT_MS, conn_auth_cancelled, c, &resp, &code);
		if (r < 0) {
			log_warn("runner auth failed", "url", url, "error", conn_strerror(-r));
			r = -EAGAIN;
			goto out;
		}
		goto answered;
	}
	h = curl_easy_init();
	hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	if (!h || !hdrs) {
		r = -ENOMEM;
		goto out;
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	/* The token goes to the controller only: no proxy from the environment. */
	curl_easy_setopt(h, CURLOPT_PROXY, c->cfg.broker_proxy ? c->cfg.broker_proxy : "");
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)CONN_AUTH_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)CONN_AUTH_CONNECT_MS);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, conn_curl_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, conn_curl_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (c->cfg.ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->cfg.ca_file);
	{
		CURLcode cc = curl_easy_perform(h);
		if (cc != CURLE_OK) {
			log_warn("runner auth failed", "url", url, "error", curl_easy_strerror(cc));
			r = -EAGAIN;
			goto out;
		}
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
answered:
	snprintf(status, sizeof(status), "%ld", code);
	if (code == 403 || code == 401) {
		log_error("runner auth refused: check --token-file", "url", url, "status", status);
		r = -EACCES;
		goto out;
	}
	if (code != 200) {
		log_warn("runner auth failed", "url", url, "status", status);
		r = -EAGAIN;
		goto out;
	}
	j = resp.data ? json_loadb(resp.data, resp.len, 0, &jerr) : NULL;
	{
		const char *g = json_string_value(json_object_get(j, "grant"));
		size_t gl = g ? strlen(g) : 0;
		if (!g || gl == 0 || gl > CONN_GRANT_MAX ||
		    strspn(g, "0123456789abcdefABCDEF") != gl) {
			log_warn("runner auth: response has no valid grant", "url", url);
			r = -EPROTO;
			goto out;
		}
		memcpy(c->grant, g, gl + 1);
	}
	r = 0;
out:
	if (j) {
		const char *g = json_string_value(json_object_get(j, "grant"));
		if (g)
			explicit_bzero((char *)(uintptr_t)g, strlen(g));
		json_decref(j);
	}
	if (resp.data)
		explicit_bzero(resp.data, resp.len);
	buf_free(&resp);
	explicit_bzero(body, strlen(body));
	free(body);
	curl_slist_free_all(hdrs);
	if (h)
		curl_easy_cleanup(h);
	return r;
}

/* ---- connect, retry, tick -------------------------------------------------------------- */

static void conn_connect(struct conn *c)
{
	struct lws_client_connect_info ci;
	char hosthdr[300];
	int r;

	if (c->done || c->wsi)
		return;
	r = conn_auth(c);
	if (r < 0) {
		c->failures++;
		conn_schedule_retry(c);
		return;
	}
	snprintf(hosthdr, sizeof(hosthdr), "%s%s%s:%d", c->url.ipv6 ? "[" : "", c->url.host,
		 c->url.ipv6 ? "]" : "", c->url.port);
	memset(&ci, 0, sizeof(ci));
	ci.context = c->ctx;
	ci.address = c->url.host;
	ci.port = c->url.port;
	ci.ssl_connection = c->url.tls ? LCCSCF_USE_SSL : 0;
	ci.path = CONN_WS_PATH;
	ci.host = hosthdr;
	ci.protocol = PROTO_SUBPROTOCOL;
	ci.pwsi = &c->wsi;
	c->state = CONN_CONNECTING;
	c->failures++; /* reset once the connection has proven stable */
	if (!lws_client_connect_via_info(&ci) && c->state == CONN_CONNECTING) {
		/* failed synchronously without a callback */
		c->wsi = NULL;
		c->state = CONN_IDLE;
		explicit_bzero(c->grant, sizeof(c->grant));
		log_warn("websocket connect failed", "host", hosthdr);
		conn_schedule_retry(c);
	}
}

static void conn_retry_cb(lws_sorted_usec_list_t *sul)
{
	struct conn *c = lws_container_of(sul, struct conn, sul_retry);
	conn_connect(c);
}

static void conn_schedule_retry(struct conn *c)
{
	int64_t d = conn_backoff_ms(c->failures > 0 ? c->failures - 1 : 0, CONN_BACKOFF_BASE_MS,
				    CONN_BACKOFF_MAX_MS);
	char ms[24];
	snprintf(ms, sizeof(ms), "%" PRId64, d);
	log_debug("reconnecting", "inMs", ms);
	lws_sul_schedule(c->ctx, 0, &c->sul_retry, conn_retry_cb, (lws_usec_t)d * 1000);
}

static void conn_tick(struct conn *c)
{
	int64_t now = util_mono_ms();
	int stop = atomic_load(&c->stop);

	exec_reap_strays();
	/* The exec probes' evidence that this loop runs (health.h). */
	if (c->cfg.health_file && now - c->health_at >= HEALTH_EVERY_MS) {
		int r = health_write(c->cfg.health_file, c->state == CONN_ONLINE, util_now_ms());
		c->health_at = now;
		if (r < 0 && r != c->health_err)
			log_warn("cannot write the health file", "path", c->cfg.health_file,
				 "error", conn_strerror(-r));
		c->health_err = r;
	}
	/* A silent controller is a dead connection: three missed heartbeats. */
	if (c->wsi && c->state == CONN_ONLINE && c->heartbeat_ms > 0 &&
	    now - c->last_rx > 3 * c->heartbeat_ms + 1000) {
		log_warn("no message from the controller for three heartbeats; reconnecting");
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		c->last_rx = now;
	}
	if (c->wsi && c->state == CONN_HELLO && now - c->last_rx > CONN_WELCOME_TIMEOUT_MS) {
		log_warn("no welcome from the controller; reconnecting");
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		c->last_rx = now;
	}
	if (stop >= 1 && !c->draining) {
		char g[16];
		snprintf(g, sizeof(g), "%d", c->cfg.grace_seconds);
		log_info("draining: taking no new work", "graceSeconds", g);
		c->draining = 1;
		reg_set_draining(c->reg);
		c->grace_deadline = now + (int64_t)c->cfg.grace_seconds * 1000;
		if (c->state == CONN_ONLINE) {
			json_t *o = json_pack("{sssi}", "type", "ready", "slots", 0);
			(void)conn_push(c, REG_MSG_CONTROL, o);
			json_decref(o);
		}
	}
	if (!c->draining)
		return;
	if (reg_running(c->reg) > 0 || atomic_load(&c->workers) > 0) {
		if (!c->killed && (now >= c->grace_deadline || stop >= 2)) {
			char n[16];
			snprintf(n, sizeof(n), "%d", reg_kill_all(c->reg, EXEC_KILL_SHUTDOWN));
			log_warn("grace period over: killing running attempts", "count", n);
			c->killed = 1;
			c->kill_time = now;
		}
		if (c->killed && now - c->kill_time > CONN_FORCE_EXIT_MS) {
			log_error("attempts did not finish after being killed; exiting anyway");
			c->done = 1;
		}
		return;
	}
	if (!c->flush_deadline)
		c->flush_deadline = now + CONN_FLUSH_MS;
	if (c->state != CONN_ONLINE || (reg_unacked(c->reg) == 0 && !reg_has_pending(c->reg)) ||
	    now >= c->flush_deadline || stop >= 2)
		c->done = 1;
}

static void conn_tick_cb(lws_sorted_usec_list_t *sul)
{
	struct conn *c = lws_container_of(sul, struct conn, sul_tick);
	conn_tick(c);
	if (!c->done)
		lws_sul_schedule(c->ctx, 0, &c->sul_tick, conn_tick_cb, CONN_TICK_US);
	else
		lws_cancel_service(c->ctx);
}

int conn_new(const struct conn_config *cfg, struct reg *reg, struct conn **ret)
{
	struct lws_context_creation_info info;
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->cfg = *cfg;
	c->reg = reg;
	atomic_init(&c->stop, 0);
	atomic_init(&c->workers, 0);
	atomic_init(&c->max_message, (size_t)PROTO_MAX_MESSAGE_DEFAULT);
	buf_init(&c->rx, PROTO_MAX_MESSAGE_DEFAULT);
	if (conn_parse_url(cfg->url, &c->url) < 0) {
		free(c);
		return -EINVAL;
	}
	if (!c->url.tls && !util_host_is_loopback(c->url.host))
		log_warn(
			"ws:// to a non-loopback address: the token, grant and task data travel in "
			"clear text; use wss://",
			"host", c->url.host);

	if (cfg->broker_proxy &&
	    conn_parse_proxy(cfg->broker_proxy, c->proxy, sizeof(c->proxy)) < 0) {
		free(c);
		return -EINVAL;
	}
	if (!cfg->broker_proxy) {
		/* libwebsockets takes http_proxy from the environment for the WebSocket (and the
		 * grant would go to the proxy); tasks never see the runner's environment. This runs
		 * before any other thread exists. */
		static const char *const vars[] = { "http_proxy",  "HTTP_PROXY", "https_proxy",
						    "HTTPS_PROXY", "all_proxy",  "ALL_PROXY" };
		for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
			unsetenv(vars[i]);
	}
	lws_set_log_level(LLL_ERR, log_lws);
	memset(&info, 0, sizeof(info));
	if (c->proxy[0])
		info.http_proxy_address = c->proxy;
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = conn_protocols;
	/* lws sizes two tables by the highest fd number it may see, zeroed at start: the open
	 * file limit by default, which is 2 x 8 MiB resident with a pod's 1048576. fds are
	 * numbered lowest free first, so a bound on what the runner holds open is enough. */
	{
		struct rlimit rl;
		unsigned int need = CONN_FDS_BASE + CONN_FDS_PER_SLOT * (unsigned int)cfg->capacity;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
		    rl.rlim_cur < need)
			need = (unsigned int)rl.rlim_cur;
		info.fd_limit_per_thread = need;
	}
	/* ws:// (a sidecar on loopback) needs no TLS: without the global init lws makes no client
	 * SSL_CTX, whose cipher and provider tables are most of an idle runner's heap. */
	if (c->url.tls) {
		info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.client_ssl_ca_filepath = cfg->ca_file;
	}
	info.user = c;
	info.gid = -1;
	info.uid = -1;
	c->ctx = lws_create_context(&info);
	if (!c->ctx) {
		free(c);
		return -EIO;
	}
	reg_set_wake(reg, conn_wake, c);
	*ret = c;
	return 0;
}

int conn_run(struct conn *c)
{
	lws_sul_schedule(c->ctx, 0, &c->sul_tick, conn_tick_cb, CONN_TICK_US);
	lws_sul_schedule(c->ctx, 0, &c->sul_retry, conn_retry_cb, 1);
	while (!c->done) {
		if (lws_service(c->ctx, 0) < 0)
			break;
		if (atomic_load(&c->stop) && !c->draining)
			conn_tick(c);
	}
	log_info("runner stopped");
	return atomic_load(&c->workers) > 0 ? 1 : 0;
}

void conn_stop(struct conn *c, int level)
{
	int cur = atomic_load(&c->stop);
	while (cur < level && !atomic_compare_exchange_weak(&c->stop, &cur, level))
		;
	if (c->ctx)
		lws_cancel_service(c->ctx);
}

void conn_free(struct conn *c)
{
	if (!c)
		return;
	reg_set_wake(c->reg, NULL, NULL);
	/* A worker that outlived the forced exit may still touch the context: leave it to exit. */
	if (c->ctx && atomic_load(&c->workers) == 0) {
		lws_sul_cancel(&c->sul_tick);
		lws_sul_cancel(&c->sul_retry);
		lws_context_destroy(c->ctx);
	}
	buf_free(&c->rx);
	free(c->tx);
	explicit_bzero(c->grant, sizeof(c->grant));
	free(c);
}
