/* The runner's connection against a scripted fake broker (a libwebsockets server on loopback in
 * this process): auth, Bearer grant, hello, ping/pong, dispatch -> started/log/result, duplicate
 * dispatch, RunnerFull, cancel, resend of unacknowledged results after a reconnect, fragmented
 * messages, and the close codes for malformed and oversized messages. Also the pure helpers
 * (URL parsing, loopback check, backoff) and the registry. */
#include "conn.h"
#include "exec.h"
#include "log.h"
#include "proto.h"
#include "registry.h"
#include "tap.h"
#include "util.h"

#include <curl/curl.h>
#include <errno.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOKEN "test-runner-token"
#define GRANT "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

/* ---- fake broker ------------------------------------------------------------------------- */

#define SRV_RAW (-1) /* frame flags: the bytes go to the socket as they are, past lws */

struct frame {
	struct frame *next;
	unsigned char *data; /* LWS_PRE headroom */
	size_t len;
	int flags;
};

static struct srv {
	pthread_mutex_t lock;
	struct lws_context *ctx;
	struct lws *ws;
	int port;
	int auths, bad_tokens, upgrades, bad_bearer, conns, closes;
	int peer_close_code;
	json_t *rx; /* every message the runner sent, in order */
	struct frame *q, *qtail;
	int kick;                    /* close the current connection */
	const char *close_on_result; /* close with 4400 when a result for this task arrives */
	atomic_int stop;
} S = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* Drops the queued frames; S.lock held. */
static void srv_purge(void)
{
	while (S.q) {
		struct frame *f = S.q;
		S.q = f->next;
		free(f->data);
		free(f);
	}
	S.qtail = NULL;
}

struct hsess {
	char body[1024];
	size_t len;
	unsigned char resp[LWS_PRE + 256];
	size_t resp_len;
};

static int srv_http_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		       size_t len)
{
	struct hsess *hs = user;

	switch (reason) {
	case LWS_CALLBACK_HTTP:
		if (strcmp(in, "/runners/auth") == 0 &&
		    lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0) {
			hs->len = 0;
			return 0;
		}
		lws_return_http_status(wsi, 404, NULL);
		return -1;
	case LWS_CALLBACK_HTTP_BODY:
		if (hs->len + len < sizeof(hs->body)) {
			memcpy(hs->body + hs->len, in, len);
			hs->len += len;
		}
		return 0;
	case LWS_CALLBACK_HTTP_BODY_COMPLETION: {
		unsigned char hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *p = start,
						  *end = hdr + sizeof(hdr) - 1;
		json_t *req = json_loadb(hs->body, hs->len, 0, NULL);
		const char *tok = json_string_value(json_object_get(req, "token"));
		int good = tok && strcmp(tok, TOKEN) == 0;
		const char *body =
			good ? "{\"grant\":\"" GRANT "\",\"expiresInSeconds\":30}"
			     : "{\"error\":\"Forbidden\",\"message\":\"invalid runner token\"}";
		pthread_mutex_lock(&S.lock);
		S.auths++;
		S.bad_tokens += !good;
		pthread_mutex_unlock(&S.lock);
		json_decref(req);
		hs->resp_len = strlen(body);
		memcpy(hs->resp + LWS_PRE, body, hs->resp_len);
		if (lws_add_http_common_headers(wsi, good ? 200 : 403, "application/json",
						hs->resp_len, &p, end) ||
		    lws_finalize_write_http_header(wsi, start, &p, end))
			return -1;
		lws_callback_on_writable(wsi);
		return 0;
	}
	case LWS_CALLBACK_HTTP_WRITEABLE:
		if (!hs->resp_len)
			return 0;
		if (lws_write(wsi, hs->resp + LWS_PRE, hs->resp_len, LWS_WRITE_HTTP_FINAL) < 0)
			return -1;
		hs->resp_len = 0;
		return lws_http_transaction_completed(wsi) ? -1 : 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static int srv_ws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		     size_t len)
{
	static struct buf rx;
	static int rx_init;

	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
		char auth[256] = "";
		lws_hdr_copy(wsi, auth, sizeof(auth), WSI_TOKEN_HTTP_AUTHORIZATION);
		pthread_mutex_lock(&S.lock);
		S.upgrades++;
		if (strcmp(auth, "Bearer " GRANT) != 0)
			S.bad_bearer++;
		pthread_mutex_unlock(&S.lock);
		return strcmp(auth, "Bearer " GRANT) != 0;
	}
	case LWS_CALLBACK_ESTABLISHED:
		pthread_mutex_lock(&S.lock);
		srv_purge(); /* anything still queued was for the previous connection */
		S.ws = wsi;
		S.conns++;
		pthread_mutex_unlock(&S.lock);
		if (!rx_init) {
			buf_init(&rx, 4 * 1024 * 1024);
			rx_init = 1;
		}
		buf_reset(&rx);
		break;
	case LWS_CALLBACK_RECEIVE:
		if (lws_is_first_fragment(wsi))
			buf_reset(&rx);
		(void)buf_append(&rx, in, len);
		if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
			json_t *j = json_loadb(rx.data, rx.len, 0, NULL);
			int refuse;
			pthread_mutex_lock(&S.lock);
			/* only that task's result: others may be resent unacknowledged results */
			refuse = S.close_on_result && j &&
				 strcmp(json_string_value(json_object_get(j, "type")) ?: "",
					"result") == 0 &&
				 strcmp(json_string_value(json_object_get(j, "taskUid")) ?: "",
					S.close_on_result) == 0;
			if (refuse)
				S.close_on_result = NULL;
			json_array_append_new(S.rx, j ? j : json_string("<invalid>"));
			pthread_mutex_unlock(&S.lock);
			buf_reset(&rx);
			if (refuse) {
				/* what an older controller did with a result it could not decode */
				lws_close_reason(wsi, (enum lws_close_status)PROTO_CLOSE_MALFORMED,
						 (unsigned char *)"bad result", 10);
				return -1;
			}
		}
		break;
	case LWS_CALLBACK_SERVER_WRITEABLE: {
		struct frame *f;
		int kick;
		pthread_mutex_lock(&S.lock);
		kick = S.kick && S.ws == wsi;
		if (kick)
			S.kick = 0;
		f = kick ? NULL : S.q;
		if (f) {
			S.q = f->next;
			if (!S.q)
				S.qtail = NULL;
		}
		pthread_mutex_unlock(&S.lock);
		if (kick) {
			lws_close_reason(wsi, LWS_CLOSE_STATUS_GOINGAWAY, (unsigned char *)"bye",
					 3);
			return -1;
		}
		if (!f)
			break;
		if (f->flags == SRV_RAW)
			(void)!send(lws_get_socket_fd(wsi), f->data + LWS_PRE, f->len,
				    MSG_NOSIGNAL);
		else
			lws_write(wsi, f->data + LWS_PRE, f->len,
				  (enum lws_write_protocol)f->flags);
		free(f->data);
		free(f);
		pthread_mutex_lock(&S.lock);
		if (S.q)
			lws_callback_on_writable(wsi);
		pthread_mutex_unlock(&S.lock);
		break;
	}
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (len >= 2) {
			const unsigned char *b = in;
			pthread_mutex_lock(&S.lock);
			S.peer_close_code = b[0] << 8 | b[1];
			pthread_mutex_unlock(&S.lock);
		}
		break;
	case LWS_CALLBACK_CLOSED:
		pthread_mutex_lock(&S.lock);
		if (S.ws == wsi)
			S.ws = NULL;
		S.closes++;
		/* Frames were for that connection, unless the runner has already reconnected: on a
		 * busy machine the old connection's close can be seen after the new one is up and
		 * the test has queued its welcome. */
		if (!S.ws)
			srv_purge();
		pthread_mutex_unlock(&S.lock);
		break;
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		pthread_mutex_lock(&S.lock);
		if (S.ws && (S.q || S.kick))
			lws_callback_on_writable(S.ws);
		pthread_mutex_unlock(&S.lock);
		break;
	default:
		break;
	}
	(void)user;
	return 0;
}

static const struct lws_protocols srv_protocols[] = {
	{ "http", srv_http_cb, sizeof(struct hsess), 0, 0, NULL, 0 },
	{ PROTO_SUBPROTOCOL, srv_ws_cb, 0, 65536, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

static void *srv_main(void *p)
{
	while (!atomic_load(&S.stop))
		lws_service(S.ctx, 0);
	return NULL;
}

static void srv_send_frame(const char *data, size_t len, int flags)
{
	struct frame *f = calloc(1, sizeof(*f));
	f->data = malloc(LWS_PRE + len + 1);
	memcpy(f->data + LWS_PRE, data, len);
	f->len = len;
	f->flags = flags;
	pthread_mutex_lock(&S.lock);
	if (S.qtail)
		S.qtail->next = f;
	else
		S.q = f;
	S.qtail = f;
	pthread_mutex_unlock(&S.lock);
	lws_cancel_service(S.ctx);
}

static void srv_send(const char *text) { srv_send_frame(text, strlen(text), LWS_WRITE_TEXT); }

/* Sends text in fragments of at most n bytes. */
static void srv_send_fragmented(const char *text, size_t total, size_t n)
{
	for (size_t off = 0; off < total; off += n) {
		size_t m = total - off < n ? total - off : n;
		int flags = off == 0 ? LWS_WRITE_TEXT : LWS_WRITE_CONTINUATION;
		if (off + m < total)
			flags |= LWS_WRITE_NO_FIN;
		srv_send_frame(text + off, m, flags);
	}
}

static void srv_kick(void)
{
	pthread_mutex_lock(&S.lock);
	S.kick = 1;
	pthread_mutex_unlock(&S.lock);
	lws_cancel_service(S.ctx);
}

/* Index of the first received message from index `from` matching type (and uid/attempt when
 * given); -1 if none. */
static int rx_find(int from, const char *type, const char *uid, int64_t attempt)
{
	int found = -1;
	pthread_mutex_lock(&S.lock);
	for (size_t i = (size_t)from; i < json_array_size(S.rx); i++) {
		json_t *m = json_array_get(S.rx, i);
		if (strcmp(json_string_value(json_object_get(m, "type")) ?: "", type) != 0)
			continue;
		if (uid &&
		    (strcmp(json_string_value(json_object_get(m, "taskUid")) ?: "", uid) != 0 ||
		     json_integer_value(json_object_get(m, "attempt")) != attempt))
			continue;
		found = (int)i;
		break;
	}
	pthread_mutex_unlock(&S.lock);
	return found;
}

static json_t *rx_get(int i)
{
	json_t *m;
	pthread_mutex_lock(&S.lock);
	m = json_incref(json_array_get(S.rx, (size_t)i));
	pthread_mutex_unlock(&S.lock);
	return m;
}

static int rx_count(void)
{
	int n;
	pthread_mutex_lock(&S.lock);
	n = (int)json_array_size(S.rx);
	pthread_mutex_unlock(&S.lock);
	return n;
}

static int wait_rx(int from, const char *type, const char *uid, int64_t attempt, int ms)
{
	int64_t until = util_mono_ms() + ms;
	int i;
	while ((i = rx_find(from, type, uid, attempt)) < 0 && util_mono_ms() < until)
		usleep(5000);
	return i;
}

static int srv_get(int *field)
{
	int v;
	pthread_mutex_lock(&S.lock);
	v = *field;
	pthread_mutex_unlock(&S.lock);
	return v;
}

static int wait_int(int *field, int want, int ms)
{
	int64_t until = util_mono_ms() + ms;
	while (srv_get(field) < want && util_mono_ms() < until)
		usleep(5000);
	return srv_get(field) >= want;
}

static void dispatch(const char *uid, int64_t attempt, const char *cmd0, const char *cmd1)
{
	char text[512];
	snprintf(text, sizeof(text),
		 "{\"type\":\"dispatch\",\"taskUid\":\"%s\",\"attempt\":%lld,\"namespace\":\"ns\","
		 "\"name\":\"%s\",\"shell\":{\"command\":[\"%s\",\"%s\"]}}",
		 uid, (long long)attempt, uid, cmd0, cmd1);
	srv_send(text);
}

static void ack(const char *uid, int64_t attempt)
{
	char text[256];
	snprintf(text, sizeof(text), "{\"type\":\"ack\",\"taskUid\":\"%s\",\"attempt\":%lld}", uid,
		 (long long)attempt);
	srv_send(text);
}

static const char *str(json_t *m, const char *k)
{
	return json_string_value(json_object_get(m, k));
}

/* ---- pure helpers ------------------------------------------------------------------------ */

static void test_helpers(void)
{
	struct conn_url u;

	ok(conn_parse_url("ws://127.0.0.1:8081", &u) == 0 && !u.tls &&
		   strcmp(u.host, "127.0.0.1") == 0 && u.port == 8081,
	   "ws://127.0.0.1:8081");
	ok(conn_parse_url("wss://broker.example.com", &u) == 0 && u.tls && u.port == 443 &&
		   strcmp(u.host, "broker.example.com") == 0,
	   "wss:// defaults to 443");
	ok(conn_parse_url("ws://[::1]:9000/", &u) == 0 && u.ipv6 && strcmp(u.host, "::1") == 0 &&
		   u.port == 9000,
	   "IPv6 literal in brackets");
	ok(conn_parse_url("http://x:1", &u) < 0, "http:// refused");
	ok(conn_parse_url("ws://x:0", &u) < 0 && conn_parse_url("ws://x:70000", &u) < 0,
	   "bad ports refused");
	ok(conn_parse_url("ws://x:1/path", &u) < 0, "a path is refused");
	ok(conn_parse_url("ws://us er@x:1", &u) < 0 && conn_parse_url("ws://:1", &u) < 0,
	   "userinfo and empty host refused");
	ok(util_host_is_loopback("127.0.0.1") && util_host_is_loopback("127.9.9.9") &&
		   util_host_is_loopback("::1") && util_host_is_loopback("localhost"),
	   "loopback addresses");
	ok(!util_host_is_loopback("10.0.0.1") && !util_host_is_loopback("example.com") &&
		   !util_host_is_loopback("128.0.0.1"),
	   "non-loopback addresses");
	{
		int good = 1;
		for (int f = 0; f < 12; f++) {
			int64_t d = conn_backoff_ms(f, 250, 10000), base = 250;
			for (int i = 0; i < f && base < 10000; i++)
				base *= 2;
			if (base > 10000)
				base = 10000;
			good &= d >= base * 3 / 4 && d <= base * 5 / 4;
		}
		ok(good, "backoff doubles from 250 ms to 10 s with +-25 %% jitter");
	}
}

static void test_registry(void)
{
	struct reg *r;
	char *m;
	size_t n;
	json_t *held;

	reg_new(2, 100, &r);
	is_int(reg_begin(r, "a", 1, NULL), 0, "reg: begin a/1");
	is_int(reg_begin(r, "a", 1, NULL), -EEXIST, "reg: duplicate refused");
	is_int(reg_begin(r, "b", 1, NULL), 0, "reg: begin b/1");
	is_int(reg_begin(r, "c", 1, NULL), -EBUSY, "reg: full at capacity");
	is_int(reg_push(r, REG_MSG_CONTROL, strdup("x"), 1), -ENOTCONN,
	       "reg: offline refuses messages");
	reg_finish(r, "a", 1, strdup("result-a"), 8);
	is_int(reg_running(r), 1, "reg: finish frees the slot");
	is_int(reg_unacked(r), 1, "reg: result held until ack");
	reg_online(r);
	ok(reg_pop(r, &m, &n) == 1 && strcmp(m, "result-a") == 0,
	   "reg: welcome resends unacked results");
	free(m);
	is_int(reg_push(r, REG_MSG_LOG, strdup("0123456789"), 10), 0, "reg: log within budget");
	is_int(reg_push(r, REG_MSG_LOG, malloc(95), 95), -ENOBUFS, "reg: log over budget dropped");
	held = reg_held_json(r);
	is_int((long long)json_array_size(held), 2, "reg: hello lists running and unacked");
	json_decref(held);
	is_int(reg_ack(r, "b", 1), -EBUSY, "reg: ack of a running attempt refused");
	is_int(reg_ack(r, "a", 1), 0, "reg: ack forgets the result");
	is_int(reg_ack(r, "a", 1), -ENOENT, "reg: second ack unknown");
	reg_set_draining(r);
	is_int(reg_begin(r, "d", 1, NULL), -ESHUTDOWN, "reg: draining refuses new attempts");
	reg_free(r);
}

/* ---- the connection ---------------------------------------------------------------------- */

struct runner_thread {
	struct conn *c;
	struct reg *reg;
	pthread_t th;
};

static void *runner_main(void *p)
{
	struct runner_thread *rt = p;
	conn_run(rt->c);
	return NULL;
}

static void test_conn(void)
{
	struct lws_context_creation_info info;
	char dir[] = "/tmp/tasked-conn-test-XXXXXX", token_file[128], url[64];
	struct runner_thread rt;
	struct conn_config cfg;
	json_t *labels = json_pack("{ss}", "pool", "test"), *m;
	pthread_t sth;
	int i, from, base;

	if (!mkdtemp(dir) || chmod(dir, 0711) < 0)
		abort();
	snprintf(token_file, sizeof(token_file), "%s/token", dir);
	util_write_file(token_file, TOKEN "\n", strlen(TOKEN) + 1, 0600);

	S.rx = json_array();
	memset(&info, 0, sizeof(info));
	info.port = 0;
	info.iface = "127.0.0.1";
	info.protocols = srv_protocols;
	info.gid = -1;
	info.uid = -1;
	S.ctx = lws_create_context(&info);
	if (!S.ctx)
		abort();
	S.port = lws_get_vhost_listen_port(lws_get_vhost_by_name(S.ctx, "default"));
	pthread_create(&sth, NULL, srv_main, NULL);
	ok(S.port > 0, "fake broker listening on 127.0.0.1:%d", S.port);

	snprintf(url, sizeof(url), "ws://127.0.0.1:%d", S.port);
	memset(&cfg, 0, sizeof(cfg));
	cfg.url = url;
	cfg.token_file = token_file;
	cfg.runner_id = "unit-runner";
	cfg.labels = labels;
	cfg.capacity = 1;
	cfg.grace_seconds = 1;
	cfg.work_dir = dir;
	cfg.drop_uid = geteuid() == 0;
	reg_new(cfg.capacity, 1 << 20, &rt.reg);
	if (conn_new(&cfg, rt.reg, &rt.c) < 0)
		abort();
	pthread_create(&rt.th, NULL, runner_main, &rt);

	/* auth + upgrade + hello */
	i = wait_rx(0, "hello", NULL, 0, 5000);
	ok(i >= 0, "hello received");
	is_int(srv_get(&S.bad_tokens), 0, "token read from the file, trailing newline stripped");
	is_int(srv_get(&S.bad_bearer), 0, "upgrade carries Authorization: Bearer <grant>");
	m = rx_get(i);
	is_str(str(m, "runnerId"), "unit-runner", "hello.runnerId");
	ok(json_integer_value(json_object_get(m, "capacity")) == 1, "hello.capacity");
	{
		json_t *want = json_pack("[sss]", "shell", "http", "remote");
		ok(json_equal(json_object_get(m, "executors"), want),
		   "hello.executors [shell, http, remote]");
		json_decref(want);
	}
	is_str(str(json_object_get(m, "labels"), "pool"), "test", "hello.labels");
	ok(json_array_size(json_object_get(m, "running")) == 0, "hello.running empty at start");
	json_decref(m);

	srv_send("{\"type\":\"welcome\",\"runnerId\":\"unit-runner\",\"heartbeatSeconds\":10}");
	srv_send("{\"type\":\"ping\"}");
	ok(wait_rx(0, "pong", NULL, 0, 3000) >= 0, "ping answered with pong");

	/* dispatch -> started, log, result */
	dispatch("t1", 1, "echo", "hi");
	i = wait_rx(0, "result", "t1", 1, 5000);
	ok(i >= 0, "result for t1");
	ok(rx_find(0, "started", "t1", 1) >= 0 && rx_find(0, "started", "t1", 1) < i,
	   "started before result");
	{
		int l = rx_find(0, "log", "t1", 1);
		json_t *lm = l >= 0 ? rx_get(l) : NULL;
		ok(lm && strcmp(str(lm, "data"), "hi\n") == 0 &&
			   strcmp(str(lm, "stream"), "stdout") == 0,
		   "log message carries the output");
		json_decref(lm);
	}
	m = rx_get(i);
	is_str(str(m, "phase"), "Succeeded", "t1 Succeeded");
	is_str(str(m, "logTail"), "hi\n", "t1 logTail");
	json_decref(m);

	/* duplicate dispatch of a held (unacknowledged) attempt is ignored */
	from = rx_count();
	dispatch("t1", 1, "echo", "again");
	usleep(300 * 1000);
	ok(rx_find(from, "started", "t1", 1) < 0 && rx_find(from, "result", "t1", 1) < 0,
	   "duplicate dispatch ignored");

	/* capacity 1: a second attempt while one runs is refused with RunnerFull */
	dispatch("t2", 1, "sleep", "30");
	ok(wait_rx(0, "started", "t2", 1, 5000) >= 0, "t2 started");
	dispatch("t3", 1, "echo", "x");
	i = wait_rx(0, "result", "t3", 1, 3000);
	m = i >= 0 ? rx_get(i) : NULL;
	ok(m && strcmp(str(m, "phase"), "Failed") == 0 &&
		   strcmp(str(m, "reason"), "RunnerFull") == 0,
	   "no slot: Failed/RunnerFull");
	json_decref(m);

	/* cancel */
	srv_send("{\"type\":\"cancel\",\"taskUid\":\"t2\",\"attempt\":1}");
	i = wait_rx(0, "result", "t2", 1, 5000);
	m = i >= 0 ? rx_get(i) : NULL;
	ok(m && strcmp(str(m, "phase"), "Cancelled") == 0 &&
		   strcmp(str(m, "reason"), "Cancelled") == 0,
	   "cancel: Cancelled result");
	json_decref(m);

	/* reconnect: unacknowledged results are listed in hello and resent after welcome */
	ack("t3", 1);
	usleep(200 * 1000);
	base = srv_get(&S.conns);
	from = rx_count();
	srv_kick();
	ok(wait_int(&S.conns, base + 1, 5000), "runner reconnects after the server closes");
	i = wait_rx(from, "hello", NULL, 0, 5000);
	m = i >= 0 ? rx_get(i) : NULL;
	{
		json_t *run = json_object_get(m, "running"), *v;
		size_t k;
		int t1 = 0, t2 = 0, t3 = 0;
		json_array_foreach(run, k, v) {
			t1 |= strcmp(str(v, "taskUid"), "t1") == 0;
			t2 |= strcmp(str(v, "taskUid"), "t2") == 0;
			t3 |= strcmp(str(v, "taskUid"), "t3") == 0;
		}
		ok(t1 && t2 && !t3,
		   "hello.running lists unacknowledged attempts, not acknowledged ones");
	}
	json_decref(m);
	ok(srv_get(&S.auths) >= 2, "a fresh grant for every connection");
	srv_send("{\"type\":\"welcome\",\"runnerId\":\"unit-runner\"}");
	ok(wait_rx(from, "result", "t1", 1, 3000) >= 0 &&
		   wait_rx(from, "result", "t2", 1, 3000) >= 0,
	   "unacknowledged results resent after welcome");
	ack("t1", 1);
	ack("t2", 1);

	/* a dispatch in fragments is reassembled */
	{
		const char *d =
			"{\"type\":\"dispatch\",\"taskUid\":\"t4\",\"attempt\":1,\"namespace\":\"ns\","
			"\"name\":\"t4\",\"shell\":{\"command\":[\"echo\",\"fragments\"]}}";
		srv_send_fragmented(d, strlen(d), 7);
		i = wait_rx(0, "result", "t4", 1, 5000);
		m = i >= 0 ? rx_get(i) : NULL;
		ok(m && strcmp(str(m, "logTail"), "fragments\n") == 0,
		   "fragmented dispatch reassembled");
		json_decref(m);
		ack("t4", 1);
	}

	/* a dispatch with a sound envelope but invalid task fields: InvalidSpec, no reconnect */
	{
		int conns = srv_get(&S.conns);
		srv_send(
			"{\"type\":\"dispatch\",\"taskUid\":\"t4b\",\"attempt\":1,\"namespace\":\"ns\","
			"\"name\":\"t4b\",\"http\":{\"url\":\"http://example.com/\",\"method\":\"BREW\"}}");
		i = wait_rx(0, "result", "t4b", 1, 5000);
		m = i >= 0 ? rx_get(i) : NULL;
		ok(m && strcmp(str(m, "reason"), "InvalidSpec") == 0 &&
			   strstr(str(m, "message"), "http.method"),
		   "invalid dispatch fields: Failed/InvalidSpec naming the field");
		json_decref(m);
		usleep(200 * 1000);
		is_int(srv_get(&S.conns), conns, "... and the connection stays up");
		ack("t4b", 1);
	}

	/* malformed JSON: close 4400, then a reconnect */
	usleep(100 * 1000);
	base = srv_get(&S.conns);
	srv_send("{not json");
	ok(wait_int(&S.conns, base + 1, 5000), "reconnects after a malformed message");
	is_int(srv_get(&S.peer_close_code), PROTO_CLOSE_MALFORMED, "malformed message: close 4400");
	srv_send("{\"type\":\"welcome\",\"runnerId\":\"unit-runner\"}");
	usleep(100 * 1000);

	/* a message from the wrong direction */
	pthread_mutex_lock(&S.lock);
	S.peer_close_code = 0;
	pthread_mutex_unlock(&S.lock);
	base = srv_get(&S.conns);
	srv_send("{\"type\":\"hello\",\"runnerId\":\"x\",\"version\":\"1\",\"capacity\":1}");
	ok(wait_int(&S.conns, base + 1, 5000) &&
		   srv_get(&S.peer_close_code) == PROTO_CLOSE_MALFORMED,
	   "runner-direction message: close 4400");
	srv_send("{\"type\":\"welcome\",\"runnerId\":\"unit-runner\"}");
	usleep(100 * 1000);

	/* over 1 MiB in fragments: close 1009 */
	{
		size_t big = PROTO_MAX_MESSAGE_DEFAULT + 1000;
		char *blob = malloc(big);
		memset(blob, ' ', big);
		blob[0] = '{';
		blob[big - 1] = '}';
		base = srv_get(&S.conns);
		srv_send_fragmented(blob, big, 64 * 1024);
		free(blob);
		ok(wait_int(&S.conns, base + 1, 5000), "reconnects after an oversized message");
		is_int(srv_get(&S.peer_close_code), PROTO_CLOSE_TOO_BIG,
		       "oversized message: close 1009");
		srv_send("{\"type\":\"welcome\",\"runnerId\":\"unit-runner\"}");
	}

	/* a result the controller closed the connection over is replaced, not resent as it was */
	usleep(100 * 1000);
	pthread_mutex_lock(&S.lock);
	S.close_on_result = "t5b";
	pthread_mutex_unlock(&S.lock);
	base = srv_get(&S.conns);
	dispatch("t5b", 1, "echo", "refused");
	ok(wait_int(&S.conns, base + 1, 15000),
	   "reconnects after the controller closed over a result");
	from = rx_count();
	srv_send("{\"type\":\"welcome\",\"runnerId\":\"unit-runner\"}");
	i = wait_rx(from, "result", "t5b", 1, 15000);
	m = i >= 0 ? rx_get(i) : NULL;
	ok(m && strcmp(str(m, "reason"), "InvalidResult") == 0 &&
		   strcmp(str(m, "phase"), "Failed") == 0,
	   "the refused result comes back as Failed/InvalidResult");
	json_decref(m);
	ack("t5b", 1);

	/* still works afterwards */
	usleep(100 * 1000);
	dispatch("t5", 1, "echo", "still");
	ok(wait_rx(0, "result", "t5", 1, 5000) >= 0, "runner still serves after protocol errors");
	ack("t5", 1);

	/* RFC 6455 5.1: a masked frame from the server fails the connection (lws 4.1 would take
	 * it; common/wsguard.c refuses it), and its dispatch is never run */
	{
		static const char d[] =
			"{\"type\":\"dispatch\",\"taskUid\":\"tmask\",\"attempt\":1,"
			"\"namespace\":\"ns\",\"name\":\"tmask\",\"shell\":{\"command\":[\"echo\",\"x\"]}}";
		unsigned char f[sizeof(d) + 8];
		size_t n = sizeof(d) - 1;
		f[0] = 0x81;
		f[1] = (unsigned char)(0x80 | 126);
		f[2] = (unsigned char)(n >> 8);
		f[3] = (unsigned char)n;
		memcpy(f + 4, "\x5a\x17\x00\xc3", 4);
		for (size_t k = 0; k < n; k++)
			f[8 + k] = (unsigned char)(d[k] ^ f[4 + (k & 3)]);
		pthread_mutex_lock(&S.lock);
		S.peer_close_code = 0;
		pthread_mutex_unlock(&S.lock);
		base = srv_get(&S.conns);
		from = rx_count();
		srv_send_frame((const char *)f, n + 8, SRV_RAW);
		/* lws' client fails it without a close status ("illegal opcode") */
		ok(wait_int(&S.conns, base + 1, 15000),
		   "a masked frame from the server: the runner drops the connection and reconnects (after its backoff)");
		srv_send("{\"type\":\"welcome\",\"runnerId\":\"unit-runner\"}");
		is_int(wait_rx(from, "started", "tmask", 1, 1500), -1,
		       "... and the masked dispatch never ran");
	}

	/* drain: stop taking work */
	usleep(100 * 1000);
	srv_send("{\"type\":\"drain\"}");
	usleep(100 * 1000);
	dispatch("t6", 1, "echo", "no");
	i = wait_rx(0, "result", "t6", 1, 3000);
	m = i >= 0 ? rx_get(i) : NULL;
	ok(m && strcmp(str(m, "reason"), "RunnerDraining") == 0, "after drain: dispatch refused");
	json_decref(m);
	ack("t6", 1);
	usleep(100 * 1000);

	conn_stop(rt.c, 1);
	pthread_join(rt.th, NULL);
	conn_free(rt.c);
	reg_free(rt.reg);
	atomic_store(&S.stop, 1);
	lws_cancel_service(S.ctx);
	pthread_join(sth, NULL);
	lws_context_destroy(S.ctx);
	json_decref(S.rx);
	json_decref(labels);
	unlink(token_file);
	rmdir(dir);
	ok(1, "runner stopped on request");
}

int main(void)
{
	log_init("test",
		 getenv("TASKED_TEST_LOG") ? LOG_LVL_DEBUG : (enum log_level)(LOG_LVL_ERROR + 1));
	signal(SIGPIPE, SIG_IGN);
	lws_set_log_level(LLL_ERR, NULL);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (exec_init() < 0)
		return 1;
	test_helpers();
	test_registry();
	test_conn();
	curl_global_cleanup();
	return done_testing();
}
