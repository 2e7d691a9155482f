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
void api_sse_unlink(struct api *a, struct api_sess *s)
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
	metrics_sse_closed(a->metrics, s->kind == SK_LOGS ? METRICS_SSE_LOGS : METRICS_SSE_EVENTS,
			   s->end_why);
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
		snprintf(msg, sizeof(msg),
			 "too many open event streams (--max-sse-connections=%d); retry later",
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
		lws_http_mark_sse(wsi); /* an HTTP/2 stream: keep its connection immortal too */
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

int api_events(struct api *a, struct lws *wsi, struct api_sess *s)
{
	char ns[API_ARG_MAX], queue[API_ARG_MAX], last[64] = "", q_last[64];
	uint64_t id = 0;

	api_arg(wsi, "namespace", ns, sizeof(ns));
	api_arg(wsi, "queue", queue, sizeof(queue));
	api_arg(wsi, "lastEventId", q_last, sizeof(q_last));
	if (lws_hdr_custom_copy(wsi, last, sizeof(last), "last-event-id:", 14) <= 0)
		snprintf(last, sizeof(last), "%s", q_last);
	if (ns[0] && !api_valid_name(ns))
		return api_error(a, wsi, s, 400, "BadRequest",
				 "namespace is not a valid Kubernetes name");
	if (strlen(queue) >= sizeof(s->queue) || strlen(ns) >= sizeof(s->ns))
		return api_error(a, wsi, s, 400, "BadRequest", "filter too long");
	if (last[0] && api_parse_event_id(last, &id) < 0)
		return api_error(a, wsi, s, 400, "BadRequest",
				 "Last-Event-ID must be an event id (decimal digits)");
	snprintf(s->ns, sizeof(s->ns), "%s", ns);
	snprintf(s->queue, sizeof(s->queue), "%s", queue);
	/* Without Last-Event-ID the stream starts now; an id from the future also means now (a
	 * cursor past the last event would hide every event until the ids caught up). */
	s->cursor = last[0] && id <= events_last_id(a->events) ? id : events_last_id(a->events);
	return sse_start(a, wsi, s, SK_EVENTS);
}

int api_follow_logs(struct api *a, struct lws *wsi, struct api_sess *s, const char *ns,
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
			return api_error(a, wsi, s, 400, "BadRequest",
					 "Last-Event-ID must be a log offset (decimal digits)");
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
	json_t *o = json_pack("{sIsIssss#}", "attempt", (json_int_t)c->attempt, "seq",
			      (json_int_t)c->seq, "stream", c->stream, "data", c->data,
			      (int)c->len);
	char *js = o ? json_dumps(o, JSON_COMPACT) : NULL, head[64];
	int stop = 0;

	json_decref(o);
	if (!js)
		return 1;
	snprintf(head, sizeof(head),
		 "id: %llu\nevent: log\ndata: ", (unsigned long long)(c->off + c->len));
	if (f->out->len > 0 && f->out->len + strlen(head) + strlen(js) + 2 > f->limit)
		stop = 1;
	else if (buf_append(f->out, head, strlen(head)) < 0 ||
		 buf_append(f->out, js, strlen(js)) < 0 || buf_append(f->out, "\n\n", 2) < 0)
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
		struct logstore_chunk c = { .off = 0,
					    .attempt = task_attempts(t),
					    .seq = 0,
					    .stream = "stdout",
					    .data = tail,
					    .len = strlen(tail) };
		static const char note[] = ": the controller holds no streamed output for this "
					   "task; this is status.logTail\n\n";
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
			snprintf(note, sizeof(note),
				 "event: truncated\ndata: {\"droppedBytes\":%llu}\n\n",
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

int api_sse_writeable(struct api *a, struct lws *wsi, struct api_sess *s)
{
	long n;
	int more = 0;

	/* A failed append emptied the batch (buf_append): end the stream rather than skip what
	 * the cursor already passed. */
	if (s->out.err) {
		log_warn("ending an SSE stream: cannot build its frames", "task", s->key);
		return -1;
	}
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
		if (s->out.err) {
			log_warn("ending an SSE stream: cannot build its frames", "task", s->key);
			return -1;
		}
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
	struct pollfd p = { .fd = lws_get_socket_fd(lws_get_network_wsi(wsi)),
			    .events = POLLRDHUP };
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
		*replay_allow =
			backlog; /* caught up on the replay: the allowance shrinks for good */
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
		q += API_CHUNK; /* at most one write's worth (api_write_some) */
	/* The socket is this stream's own only on HTTP/1. */
	if (lws_get_network_wsi(s->wsi) == s->wsi &&
	    ioctl(lws_get_socket_fd(s->wsi), SIOCOUTQ, &outq) == 0 && outq > 0)
		q += (uint64_t)outq;
	return q;
}

/* Once a second on the loop: keep-alives, slow and stalled streams, log follows whose task
 * finished or went away. */
void api_sse_sweep(lws_sorted_usec_list_t *sul)
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
			if (!s->first_read && pos.found && s->cursor < pos.first &&
			    s->cursor <= pos.end) {
				sse_drop(s, "fell behind the stored output",
					 pos.end - s->cursor + queued);
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
		if (s->kind == SK_LOGS && !s->task_final && inf &&
		    now - s->last_check_ms >= API_LOG_CHECK_MS) {
			json_t *t = informer_get(inf, s->key);
			const char *uid = task_uid(t);
			s->last_check_ms = now;
			/* Deleted, or replaced by a new task of the same name: this log is complete. */
			if (!t || !uid || strcmp(uid, s->uid) != 0 || task_terminal(t)) {
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
		lws_sul_schedule(ctx, 0, &a->sweep, api_sse_sweep, LWS_USEC_PER_SEC);
}
