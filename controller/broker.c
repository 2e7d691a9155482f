#include "broker.h"
#include "server.h"
#include "log.h"
#include "proto.h"
#include "util.h"
#include "wsguard.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define BROKER_MAX_GRANTS 64
#define BROKER_GRANT_TTL_MS 30000
#define BROKER_MAX_AUTH_BODY 4096
#define BROKER_MAX_OUTBOX 4096
#define BROKER_HELLO_TIMEOUT_S 10
#define BROKER_AUTH_BURST 10.0     /* failed attempts allowed at once, per peer */
#define BROKER_AUTH_REFILL 1.0     /* ... and per second after that */
#define BROKER_AUTH_PEERS 256      /* peers tracked; the most rested one makes room */
#define BROKER_DROP_LOG_EVERY 1000 /* after the first, log every this many dropped messages */
#define BROKER_MAX_POOLS 4096      /* RunnerPool tokens known at once */
#define BROKER_POOL_KEY 256        /* "namespace/name" of a RunnerPool, NUL included */

struct outmsg {
	struct outmsg *next;
	size_t len;
	unsigned char data[]; /* LWS_PRE headroom + payload */
};

struct runner {
	struct runner *next;
	char id[64];
	struct lws *wsi; /* NULL while disconnected */
	json_t *labels;
	int capacity;
	json_t *inflight;   /* "uid/attempt" -> {uid, attempt}: dispatched here, or confirmed */
	json_t *unverified; /* held per its hello, but not ours to accept: results are dropped */
	struct outmsg *out_head, *out_tail;
	size_t out_count;
	int64_t gone_ms;            /* when it disconnected (monotonic), 0 while connected */
	char pool[BROKER_POOL_KEY]; /* RunnerPool whose token it authenticated with; "" = global */
	int draining;               /* a pool's scale-down chose it: no new work */
};

struct rsess { /* per WebSocket, zeroed by lws */
	struct runner *r;
	char pool[BROKER_POOL_KEY]; /* from the grant the connection presented */
	struct buf rx;
	int rx_init;
	int64_t last_rx_ms;
};

struct hsess { /* per HTTP request on the broker listener */
	struct buf body;
	int body_init;
	char *resp;
	size_t resp_len;
};

struct grant {
	char hex[65];
	int64_t expires_ms;
	char pool[BROKER_POOL_KEY]; /* the token's RunnerPool, "" for the global token */
};

struct pool_token {
	char pool[BROKER_POOL_KEY];
	char token[128];
};

/* Failed authentications are limited per peer, so one peer's failures never lock out another's
 * valid token. IPv6 peers count per /64 (what one host usually controls). */
struct auth_peer {
	unsigned char addr[16]; /* IPv4 as v4-mapped */
	int used;
	double tokens;
	int64_t last_ms;
};

struct broker {
	struct broker_cfg cfg;
	struct broker_ops ops;
	void *ud;
	struct lws_context *ctx; /* the server's */
	pthread_mutex_t lock;    /* guards runners, grants, token */
	struct runner *runners;
	struct grant grants[BROKER_MAX_GRANTS];
	struct auth_peer peers[BROKER_AUTH_PEERS];
	char *token;
	struct timespec token_mtime;
	struct pool_token *pools; /* RunnerPool tokens (broker_pool_set) */
	size_t npools;
	atomic_ullong dropped[3];   /* messages refused per type: started, log, result */
	atomic_ullong auth_limited; /* authentications refused by the per-peer limit */
	int listening;
	lws_sorted_usec_list_t sweep;
};

/* --- token and grants ------------------------------------------------------------------- */

/* Re-reads the token file when its mtime changed, so the token can rotate. Caller holds lock. */
static void broker_token_refresh(struct broker *b)
{
	struct stat st;
	char *t = NULL;
	if (!b->cfg.token_file || stat(b->cfg.token_file, &st) < 0)
		return;
	if (b->token && st.st_mtim.tv_sec == b->token_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == b->token_mtime.tv_nsec)
		return;
	if (util_read_file(b->cfg.token_file, 4096, &t, NULL) < 0)
		return;
	util_rstrip(t);
	free(b->token);
	b->token = t;
	b->token_mtime = st.st_mtim;
}

static double broker_peer_tokens(const struct auth_peer *p, int64_t now)
{
	double t = p->tokens + (double)(now - p->last_ms) * BROKER_AUTH_REFILL / 1000.0;
	return t > BROKER_AUTH_BURST ? BROKER_AUTH_BURST : t;
}

/* The peer's bucket, refilled; a new peer takes a free slot or the most rested one's (a full
 * bucket is the same as none, so evicting never refuses anyone). Caller holds lock. */
static struct auth_peer *broker_peer_locked(struct broker *b, const unsigned char addr[16],
					    int64_t now)
{
	struct auth_peer *p = NULL, *best = NULL;
	double best_t = -1;

	for (int i = 0; i < BROKER_AUTH_PEERS; i++) {
		struct auth_peer *x = &b->peers[i];
		double t;
		if (x->used && memcmp(x->addr, addr, 16) == 0) {
			p = x;
			break;
		}
		t = x->used ? broker_peer_tokens(x, now) : BROKER_AUTH_BURST + 1;
		if (t > best_t || (t == best_t && best && x->last_ms < best->last_ms)) {
			best = x;
			best_t = t;
		}
	}
	if (!p) {
		p = best;
		memcpy(p->addr, addr, 16);
		p->used = 1;
		p->tokens = BROKER_AUTH_BURST;
		p->last_ms = now;
	}
	p->tokens = broker_peer_tokens(p, now);
	p->last_ms = now;
	return p;
}

/* The peer of a connection as 16 bytes (IPv4 v4-mapped, IPv6 cut to its /64). */
static void broker_peer_addr(struct lws *wsi, unsigned char out[16])
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	int fd = (int)lws_get_socket_fd(wsi);

	memset(out, 0, 16);
	if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &l) < 0)
		return; /* unknown peers share one bucket */
	if (ss.ss_family == AF_INET) {
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &((const struct sockaddr_in *)&ss)->sin_addr, 4);
	} else if (ss.ss_family == AF_INET6) {
		const unsigned char *a = ((const struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;
		static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		memcpy(out, a, memcmp(a, mapped, 12) == 0 ? 16 : 8);
	}
}

/* Returns 0 and a fresh grant, -EACCES for a wrong token, -EAGAIN when this peer is rate
 * limited (checked before the token, so a limited peer learns nothing). */
static int broker_auth(struct broker *b, const unsigned char peer[16], const char *token,
		       char *grant_out)
{
	int64_t now = util_mono_ms();
	struct auth_peer *p;
	int ok, r = 0, slot = -1;
	size_t tlen = token ? strlen(token) : 0, pool = (size_t)-1;

	pthread_mutex_lock(&b->lock);
	p = broker_peer_locked(b, peer, now);
	if (p->tokens < 1.0) {
		pthread_mutex_unlock(&b->lock);
		atomic_fetch_add(&b->auth_limited, 1);
		return -EAGAIN;
	}
	broker_token_refresh(b);
	ok = b->token && b->token[0] && token &&
	     util_ct_equal(token, strlen(token), b->token, strlen(b->token));
	/* Every pool token is compared (no early exit), so timing says nothing about which. */
	for (size_t i = 0; token && i < b->npools; i++) {
		if (util_ct_equal(token, tlen, b->pools[i].token, strlen(b->pools[i].token)) &&
		    !ok) {
			ok = 1;
			pool = i;
		}
	}
	if (!ok) {
		p->tokens -= 1.0;
		r = -EACCES;
		goto out;
	}
	for (int i = 0; i < BROKER_MAX_GRANTS; i++) {
		if (b->grants[i].expires_ms <= now) {
			slot = i;
			break;
		}
	}
	if (slot < 0) {
		r = -EAGAIN;
		goto out;
	}
	if (util_random_hex(b->grants[slot].hex, 32) < 0) {
		r = -EIO;
		goto out;
	}
	b->grants[slot].expires_ms = now + BROKER_GRANT_TTL_MS;
	snprintf(b->grants[slot].pool, sizeof(b->grants[slot].pool), "%s",
		 pool == (size_t)-1 ? "" : b->pools[pool].pool);
	memcpy(grant_out, b->grants[slot].hex, 65);
out:
	pthread_mutex_unlock(&b->lock);
	return r;
}

/* Consumes a grant: valid once, within its TTL. Its pool goes to pool_out. */
static int broker_take_grant(struct broker *b, const char *grant, char pool_out[BROKER_POOL_KEY])
{
	int64_t now = util_mono_ms();
	int found = 0;
	pthread_mutex_lock(&b->lock);
	for (int i = 0; i < BROKER_MAX_GRANTS; i++) {
		struct grant *g = &b->grants[i];
		/* Compare every live slot in constant time; do not stop early. */
		if (g->expires_ms > now && util_ct_equal(g->hex, 64, grant, strlen(grant)) &&
		    !found) {
			found = 1;
			g->expires_ms = 0;
			memcpy(pool_out, g->pool, BROKER_POOL_KEY);
			OPENSSL_cleanse(g->hex, sizeof(g->hex));
		}
	}
	pthread_mutex_unlock(&b->lock);
	return found ? 0 : -EACCES;
}

/* --- outbox ------------------------------------------------------------------------------ */

/* Queues a serialised message for a runner. Caller holds lock. */
static int broker_queue_locked(struct broker *b, struct runner *r, const json_t *msg)
{
	size_t max = b->cfg.max_message ? b->cfg.max_message : PROTO_MAX_MESSAGE_DEFAULT;
	char *s;
	size_t n;
	struct outmsg *m;
	int rc;

	if (!r->wsi)
		return -ENOTCONN;
	if (r->out_count >= BROKER_MAX_OUTBOX)
		return -ENOBUFS;
	rc = proto_encode(msg, max, &s, &n);
	if (rc < 0)
		return rc;
	m = malloc(sizeof(*m) + LWS_PRE + n);
	if (!m) {
		free(s);
		return -ENOMEM;
	}
	m->next = NULL;
	m->len = n;
	memcpy(m->data + LWS_PRE, s, n);
	free(s);
	if (r->out_tail)
		r->out_tail->next = m;
	else
		r->out_head = m;
	r->out_tail = m;
	r->out_count++;
	return 0;
}

static void broker_outbox_clear(struct runner *r)
{
	while (r->out_head) {
		struct outmsg *m = r->out_head;
		r->out_head = m->next;
		free(m);
	}
	r->out_tail = NULL;
	r->out_count = 0;
}

static struct runner *broker_find(struct broker *b, const char *id)
{
	for (struct runner *r = b->runners; r; r = r->next)
		if (strcmp(r->id, id) == 0)
			return r;
	return NULL;
}

static void broker_inflight_key(const char *uid, int64_t attempt, char *out, size_t outsz)
{
	snprintf(out, outsz, "%s/%lld", uid, (long long)attempt);
}

/* Unverified attempts occupy the runner's slots too, until it reports them done. */
static int broker_free_slots(const struct runner *r)
{
	return r->capacity - (int)json_object_size(r->inflight) -
	       (int)json_object_size(r->unverified);
}

static void broker_runner_free(struct runner *r)
{
	broker_outbox_clear(r);
	json_decref(r->labels);
	json_decref(r->inflight);
	json_decref(r->unverified);
	free(r);
}

/* --- public, thread-safe ----------------------------------------------------------------- */

static int broker_labels_match(json_t *labels, json_t *selector)
{
	const char *k;
	json_t *v;
	json_object_foreach(selector, k, v) {
		const char *have = json_string_value(json_object_get(labels, k));
		if (!have || !json_is_string(v) || strcmp(have, json_string_value(v)) != 0)
			return 0;
	}
	return 1;
}

int broker_dispatch(struct broker *b, const char *uid, int64_t attempt, const char *pool,
		    json_t *selector, json_t *msg, char *runner_out, size_t outsz)
{
	struct runner *best = NULL;
	int matched = 0, best_free = 0, r;
	char key[192];

	pthread_mutex_lock(&b->lock);
	broker_inflight_key(uid, attempt, key, sizeof(key));
	for (struct runner *x = b->runners; x; x = x->next) {
		int free_slots;
		/* A pool's tasks go to its runners only, and theirs to no one else. */
		if (!x->wsi || x->draining || strcmp(x->pool, pool ? pool : "") != 0 ||
		    !broker_labels_match(x->labels, selector))
			continue;
		matched = 1;
		/* A runner still holding this key from before would ignore the dispatch. */
		if (json_object_get(x->unverified, key))
			continue;
		free_slots = broker_free_slots(x);
		if (free_slots > best_free) {
			best = x;
			best_free = free_slots;
		}
	}
	if (!best) {
		pthread_mutex_unlock(&b->lock);
		return matched ? -EAGAIN : -ENODEV;
	}
	r = broker_queue_locked(b, best, msg);
	if (r == 0) {
		json_object_set_new(
			best->inflight, key,
			json_pack("{sssI}", "uid", uid, "attempt", (json_int_t)attempt));
		snprintf(runner_out, outsz, "%s", best->id);
	}
	pthread_mutex_unlock(&b->lock);
	if (r == 0)
		lws_cancel_service(b->ctx);
	return r;
}

static int broker_send_task(struct broker *b, enum proto_type t, const char *runner,
			    const char *uid, int64_t attempt)
{
	json_t *msg = proto_new_task(t, uid, attempt);
	struct runner *r;
	int rc = -ENOTCONN;

	if (!msg)
		return -ENOMEM;
	pthread_mutex_lock(&b->lock);
	r = broker_find(b, runner);
	if (r)
		rc = broker_queue_locked(b, r, msg);
	pthread_mutex_unlock(&b->lock);
	json_decref(msg);
	if (rc == 0)
		lws_cancel_service(b->ctx);
	return rc;
}

int broker_cancel(struct broker *b, const char *runner, const char *uid, int64_t attempt)
{
	return broker_send_task(b, PROTO_CANCEL, runner, uid, attempt);
}

int broker_ack(struct broker *b, const char *runner, const char *uid, int64_t attempt)
{
	return broker_send_task(b, PROTO_ACK, runner, uid, attempt);
}

void broker_counts(struct broker *b, int *runners, int *free_slots)
{
	int n = 0, f = 0;
	pthread_mutex_lock(&b->lock);
	for (struct runner *r = b->runners; r; r = r->next) {
		if (!r->wsi)
			continue;
		n++;
		f += broker_free_slots(r);
	}
	pthread_mutex_unlock(&b->lock);
	*runners = n;
	*free_slots = f;
}

int broker_has_runner(struct broker *b, json_t *selector)
{
	int found = 0;
	pthread_mutex_lock(&b->lock);
	for (struct runner *r = b->runners; r && !found; r = r->next)
		found = r->wsi && !r->pool[0] && broker_labels_match(r->labels, selector);
	pthread_mutex_unlock(&b->lock);
	return found;
}

int broker_pool_set(struct broker *b, const char *pool, const char *token)
{
	size_t i;
	int r = 0;

	if (!pool || !pool[0] || strlen(pool) >= BROKER_POOL_KEY || !token || strlen(token) < 32 ||
	    strlen(token) >= sizeof(b->pools[0].token))
		return -EINVAL;
	pthread_mutex_lock(&b->lock);
	for (i = 0; i < b->npools && strcmp(b->pools[i].pool, pool) != 0; i++)
		;
	if (i == b->npools) {
		struct pool_token *n = NULL;
		if (b->npools >= BROKER_MAX_POOLS ||
		    !(n = realloc(b->pools, (b->npools + 1) * sizeof(*n)))) {
			r = n ? -ENOSPC : -ENOMEM;
			goto out;
		}
		b->pools = n;
		b->npools++;
		snprintf(b->pools[i].pool, sizeof(b->pools[i].pool), "%s", pool);
	}
	snprintf(b->pools[i].token, sizeof(b->pools[i].token), "%s", token);
out:
	pthread_mutex_unlock(&b->lock);
	return r;
}

void broker_pool_remove(struct broker *b, const char *pool)
{
	pthread_mutex_lock(&b->lock);
	for (size_t i = 0; i < b->npools; i++) {
		if (strcmp(b->pools[i].pool, pool) != 0)
			continue;
		OPENSSL_cleanse(&b->pools[i], sizeof(b->pools[i]));
		b->pools[i] = b->pools[b->npools - 1];
		b->npools--;
		break;
	}
	pthread_mutex_unlock(&b->lock);
}

void broker_pool_counts(struct broker *b, const char *pool, struct broker_pool_counts *ret)
{
	memset(ret, 0, sizeof(*ret));
	pthread_mutex_lock(&b->lock);
	for (struct runner *r = b->runners; r; r = r->next) {
		int busy;
		if (!r->wsi || strcmp(r->pool, pool) != 0)
			continue;
		busy = (int)json_object_size(r->inflight) + (int)json_object_size(r->unverified);
		if (r->draining) {
			ret->draining++;
		} else {
			ret->runners++;
			ret->slots += r->capacity;
		}
		ret->busy += busy;
	}
	pthread_mutex_unlock(&b->lock);
}

int broker_pool_drain(struct broker *b, const char *pool, int n, char (*ids)[64], int max)
{
	int k = 0;
	pthread_mutex_lock(&b->lock);
	for (struct runner *r = b->runners; r && k < n && k < max; r = r->next) {
		if (!r->wsi || r->draining || strcmp(r->pool, pool) != 0 ||
		    json_object_size(r->inflight) || json_object_size(r->unverified))
			continue;
		r->draining = 1;
		snprintf(ids[k++], 64, "%s", r->id);
	}
	pthread_mutex_unlock(&b->lock);
	return k;
}

int broker_pool_undrain(struct broker *b, const char *pool, const char *id)
{
	int woke = 0;
	pthread_mutex_lock(&b->lock);
	for (struct runner *r = b->runners; r; r = r->next) {
		if (r->draining && r->wsi && strcmp(r->pool, pool) == 0 && strcmp(r->id, id) == 0) {
			r->draining = 0;
			woke = 1;
		}
	}
	pthread_mutex_unlock(&b->lock);
	if (woke && b->ops.capacity)
		b->ops.capacity(b->ud);
	return woke;
}

int broker_listening(struct broker *b) { return b->listening; }

void broker_stats(struct broker *b, struct broker_stats *ret)
{
	ret->dropped_started = atomic_load(&b->dropped[0]);
	ret->dropped_log = atomic_load(&b->dropped[1]);
	ret->dropped_result = atomic_load(&b->dropped[2]);
	ret->auth_limited = atomic_load(&b->auth_limited);
	ret->bad_mask = wsguard_refused_total();
}

/* --- HTTP: POST /runners/auth ------------------------------------------------------------ */

static int broker_http_reply(struct lws *wsi, struct hsess *hs, unsigned int status, json_t *body)
{
	unsigned char hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *p = start,
					   *end = hdr + sizeof(hdr) - 1;
	char *s = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (!s)
		return -1;
	free(hs->resp);
	hs->resp_len = strlen(s);
	hs->resp = malloc(LWS_PRE + hs->resp_len);
	if (!hs->resp) {
		free(s);
		return -1;
	}
	memcpy(hs->resp + LWS_PRE, s, hs->resp_len);
	free(s);
	if (lws_add_http_common_headers(wsi, status, "application/json", hs->resp_len, &p, end) ||
	    lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
					(const unsigned char *)"no-store", 8, &p, end) ||
	    lws_finalize_write_http_header(wsi, start, &p, end))
		return -1;
	lws_callback_on_writable(wsi);
	return 0;
}

/* Refusals can come in floods: one line per refusal would be an easy way to fill a disk. */
static void broker_log_refusal(const char *msg, const char *reason)
{
	static struct log_limit limit = LOG_LIMIT_INIT;
	unsigned long long suppressed;
	char n[24];

	if (!log_limit_allow(&limit, 20, 1, &suppressed))
		return;
	snprintf(n, sizeof(n), "%llu", suppressed);
	log_warn(msg, "reason", reason, suppressed ? "suppressedBefore" : NULL, n);
}

static json_t *broker_err(const char *err, const char *msg)
{
	return json_pack("{ssss}", "error", err, "message", msg);
}

static int broker_http_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
			  size_t len)
{
	struct lws_vhost *vh = wsi ? lws_get_vhost(wsi) : NULL;
	struct broker *b = vh ? lws_get_vhost_user(vh) : NULL;
	struct hsess *hs = user;

	if (!b)
		return lws_callback_http_dummy(wsi, reason, user, in, len);

	switch (reason) {
	case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
		/* Every broker connection is watched from its first byte (wsguard.h): lws 4.1
		 * accepts unmasked client frames. */
		if (wsguard_watch((int)(intptr_t)in, 1) < 0) {
			broker_log_refusal("runner connection refused", "cannot watch its frames");
			return -1;
		}
		return 0;
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return -1; /* WebSocket upgrades must name our subprotocol */
	case LWS_CALLBACK_HTTP: {
		const char *uri = in;
		if (strcmp(uri, "/runners/auth") == 0 &&
		    lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0) {
			buf_init(&hs->body, BROKER_MAX_AUTH_BODY);
			hs->body_init = 1;
			return 0; /* wait for the body */
		}
		if (strcmp(uri, "/runners/ws") == 0)
			return broker_http_reply(
				wsi, hs, 400,
				broker_err("BadRequest",
					   "WebSocket upgrade with subprotocol " PROTO_SUBPROTOCOL
					   " required"));
		return broker_http_reply(wsi, hs, 404, broker_err("NotFound", "no such endpoint"));
	}
	case LWS_CALLBACK_HTTP_BODY:
		if (hs->body_init && buf_append(&hs->body, in, len) < 0) {
			hs->body_init = 0;
			buf_free(&hs->body);
			return broker_http_reply(
				wsi, hs, 413, broker_err("PayloadTooLarge", "auth body too large"));
		}
		return 0;
	case LWS_CALLBACK_HTTP_BODY_COMPLETION: {
		json_t *req;
		char grant[65];
		int r;
		if (!hs->body_init)
			return 0;
		req = json_loadb(hs->body.data ? hs->body.data : "", hs->body.len, 0, NULL);
		buf_free(&hs->body);
		hs->body_init = 0;
		{
			unsigned char peer[16];
			broker_peer_addr(wsi, peer);
			r = broker_auth(b, peer, json_string_value(json_object_get(req, "token")),
					grant);
		}
		json_decref(req);
		if (r == -EAGAIN) {
			broker_log_refusal("runner auth rate limited",
					   "too many failed authentications from this address");
			return broker_http_reply(
				wsi, hs, 429,
				broker_err("TooManyRequests",
					   "too many failed runner authentications; retry later"));
		}
		if (r < 0) {
			broker_log_refusal("runner auth refused", "invalid token");
			return broker_http_reply(wsi, hs, 403,
						 broker_err("Forbidden", "invalid runner token"));
		}
		r = broker_http_reply(wsi, hs, 200,
				      json_pack("{sssi}", "grant", grant, "expiresInSeconds",
						BROKER_GRANT_TTL_MS / 1000));
		OPENSSL_cleanse(grant, sizeof(grant));
		return r;
	}
	case LWS_CALLBACK_HTTP_WRITEABLE:
		if (!hs->resp)
			return 0;
		if (lws_write(wsi, (unsigned char *)hs->resp + LWS_PRE, hs->resp_len,
			      LWS_WRITE_HTTP_FINAL) < 0)
			return -1;
		free(hs->resp);
		hs->resp = NULL;
		return lws_http_transaction_completed(wsi) ? -1 : 0;
	case LWS_CALLBACK_CLOSED_HTTP:
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		if (reason == LWS_CALLBACK_CLOSED_HTTP)
			wsguard_forget(lws_get_socket_fd(wsi));
		if (hs) {
			if (hs->body_init)
				buf_free(&hs->body);
			hs->body_init = 0;
			free(hs->resp);
			hs->resp = NULL;
		}
		return 0;
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		return 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* --- WebSocket: runners ------------------------------------------------------------------ */

static int broker_close(struct lws *wsi, int code, const char *why)
{
	unsigned char reason[124];
	size_t n = strlen(why) < sizeof(reason) ? strlen(why) : sizeof(reason);
	memcpy(reason, why, n);
	lws_close_reason(wsi, (enum lws_close_status)code, reason, n);
	return -1;
}

/* A message for an attempt this runner may not speak for: counted, and logged the first time
 * and then every BROKER_DROP_LOG_EVERY times (a hostile runner could send many). */
static void broker_note_drop(struct broker *b, const char *runner, enum proto_type t,
			     const char *uid, int64_t attempt, const char *why)
{
	int i = t == PROTO_STARTED ? 0 : t == PROTO_LOG ? 1 : 2;
	unsigned long long n = atomic_fetch_add(&b->dropped[i], 1) + 1;
	char at[24], cnt[24];

	if (n != 1 && n % BROKER_DROP_LOG_EVERY != 0)
		return;
	snprintf(at, sizeof(at), "%lld", (long long)attempt);
	snprintf(cnt, sizeof(cnt), "%llu", n);
	log_warn("runner message dropped", "runner", runner, "type", proto_type_name(t), "taskUid",
		 uid, "attempt", at, "reason", why, "droppedOfType", cnt);
}

static int broker_on_hello(struct broker *b, struct lws *wsi, struct rsess *s, struct proto_msg *m)
{
	struct runner *r;
	json_t *keep = json_object(), *declared = json_object(), *confirmed = json_object();
	json_t *lost = json_array(), *welcome, *v;
	const char *k;
	char key[192], id[64], n[16];
	size_t i;
	int refused = 0, ret = 0;

	if (!keep || !declared || !confirmed || !lost) {
		ret = -1;
		goto out;
	}
	if (b->cfg.admit && !b->cfg.admit(b->cfg.admit_ud)) {
		log_info("runner sent away: this controller is standing by or not synced yet",
			 "runner", m->runner_id);
		ret = broker_close(wsi, PROTO_CLOSE_STANDBY,
				   "standby: not the leader or not ready");
		goto out;
	}
	pthread_mutex_lock(&b->lock);
	r = broker_find(b, m->runner_id);
	if (r && r->wsi && r->wsi != wsi) {
		pthread_mutex_unlock(&b->lock);
		log_warn("runner id already connected", "runner", m->runner_id);
		ret = broker_close(wsi, PROTO_CLOSE_POLICY, "runner id already connected");
		goto out;
	}
	/* An id stays with the token it first came with: a runner of another pool (or of none)
	 * must not inherit what a runner of that id held. */
	if (r && strcmp(r->pool, s->pool) != 0) {
		pthread_mutex_unlock(&b->lock);
		log_warn("runner id belongs to another runner pool", "runner", m->runner_id, "pool",
			 s->pool);
		ret = broker_close(wsi, PROTO_CLOSE_POLICY,
				   "runner id belongs to another runner pool");
		goto out;
	}
	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r || !(r->inflight = json_object()) || !(r->unverified = json_object())) {
			pthread_mutex_unlock(&b->lock);
			if (r)
				json_decref(r->inflight);
			free(r);
			ret = -1;
			goto out;
		}
		snprintf(r->id, sizeof(r->id), "%s", m->runner_id);
		snprintf(r->pool, sizeof(r->pool), "%s", s->pool);
		r->next = b->runners;
		b->runners = r;
	}
	r->wsi = wsi;
	r->gone_ms = 0;
	r->capacity = (int)m->capacity;
	json_decref(r->labels);
	r->labels = m->labels ? json_deep_copy(m->labels) : json_object();
	/* What we gave this runner and it still holds stays ours; what it holds that we did not
	 * give it on this run must be confirmed by the controller's records first. */
	json_array_foreach(m->running, i, v) {
		broker_inflight_key(json_string_value(json_object_get(v, "taskUid")),
				    json_integer_value(json_object_get(v, "attempt")), key,
				    sizeof(key));
		json_object_set_new(json_object_get(r->inflight, key) ? keep : declared, key,
				    json_pack("{sOsO}", "uid", json_object_get(v, "taskUid"),
					      "attempt", json_object_get(v, "attempt")));
	}
	/* What we had given this runner but it no longer holds is lost. */
	json_object_foreach(r->inflight, k, v) {
		if (!json_object_get(keep, k))
			json_array_append(lost, v);
	}
	json_decref(r->inflight);
	r->inflight = json_incref(keep);
	json_decref(r->unverified);
	r->unverified = json_copy(declared);
	s->r = r;
	snprintf(id, sizeof(id), "%s", r->id);
	welcome = json_pack(
		"{sssssisi}", "type", "welcome", "runnerId", r->id, "heartbeatSeconds",
		b->cfg.heartbeat_s, "maxMessageBytes",
		(int)(b->cfg.max_message ? b->cfg.max_message : PROTO_MAX_MESSAGE_DEFAULT));
	broker_queue_locked(b, r, welcome);
	json_decref(welcome);
	pthread_mutex_unlock(&b->lock);

	/* The controller's records answer without our lock held (it takes its own). A pool's
	 * runner may keep only its pool's tasks. */
	json_object_foreach(declared, k, v) {
		const char *uid = json_string_value(json_object_get(v, "uid"));
		if (s->pool[0] && (!b->ops.in_pool || b->ops.in_pool(b->ud, uid, s->pool) != 1))
			continue;
		if (b->ops.held(b->ud, uid, json_integer_value(json_object_get(v, "attempt")),
				id) == 1)
			json_object_set(confirmed, k, v);
	}
	pthread_mutex_lock(&b->lock);
	json_object_foreach(declared, k, v) {
		if (json_object_get(confirmed, k)) {
			json_object_set(r->inflight, k, v);
			json_object_del(r->unverified, k);
			continue;
		}
		/* Not this runner's to run (or no longer): stop it; its result will be dropped. */
		json_t *cancel = proto_new_task(PROTO_CANCEL,
						json_string_value(json_object_get(v, "uid")),
						json_integer_value(json_object_get(v, "attempt")));
		if (cancel)
			broker_queue_locked(b, r, cancel);
		json_decref(cancel);
		refused++;
	}
	pthread_mutex_unlock(&b->lock);
	if (refused) {
		snprintf(n, sizeof(n), "%d", refused);
		log_warn("runner holds attempts the controller did not give it; cancelling them",
			 "runner", id, "count", n);
	}
	json_array_foreach(lost, i, v)
		b->ops.lost(b->ud, json_string_value(json_object_get(v, "uid")),
			    json_integer_value(json_object_get(v, "attempt")), id);
	snprintf(n, sizeof(n), "%d", (int)m->capacity);
	log_info("runner connected", "runner", id, "version", m->version, "capacity", n);
	lws_callback_on_writable(wsi);
	b->ops.capacity(b->ud);
out:
	json_decref(keep);
	json_decref(declared);
	json_decref(confirmed);
	json_decref(lost);
	return ret;
}

/* A result is accepted only for an attempt in the runner's in-flight set. Anything else is
 * dropped, and acknowledged so the runner forgets it instead of resending it. */
static void broker_on_result(struct broker *b, struct runner *r, const char *uid, int64_t attempt,
			     json_t *msg)
{
	char key[192];
	int ours;

	broker_inflight_key(uid, attempt, key, sizeof(key));
	pthread_mutex_lock(&b->lock);
	ours = json_object_get(r->inflight, key) != NULL;
	if (ours) {
		json_object_del(r->inflight, key);
	} else {
		json_t *ack = proto_new_task(PROTO_ACK, uid, attempt);
		json_object_del(r->unverified, key);
		if (ack)
			broker_queue_locked(b, r, ack);
		json_decref(ack);
		if (r->wsi)
			lws_callback_on_writable(r->wsi);
	}
	pthread_mutex_unlock(&b->lock);
	if (ours)
		b->ops.result(b->ud, uid, attempt, r->id, msg);
	else
		broker_note_drop(b, r->id, PROTO_RESULT, uid, attempt,
				 "attempt not in flight on this runner");
	b->ops.capacity(b->ud);
}

static int broker_in_flight(struct broker *b, struct runner *r, const char *uid, int64_t attempt)
{
	char key[192];
	int ours;

	broker_inflight_key(uid, attempt, key, sizeof(key));
	pthread_mutex_lock(&b->lock);
	ours = json_object_get(r->inflight, key) != NULL;
	pthread_mutex_unlock(&b->lock);
	return ours;
}

/* A message the strict decoder refused but whose envelope names a task: it is that attempt's
 * problem, not the connection's. A result fails the attempt as InvalidResult (and is
 * acknowledged); started and log are dropped. Returns 1 when handled. */
static int broker_on_bad_message(struct broker *b, struct rsess *s, const char *data, size_t len,
				 const char *err)
{
	enum proto_type t;
	char uid[PROTO_MAX_ID + 1], at[24], msg[256];
	int64_t attempt;
	json_t *fake;

	if (!s->r || proto_envelope(data, len, &t, uid, sizeof(uid), &attempt) < 0 ||
	    (t != PROTO_RESULT && t != PROTO_STARTED && t != PROTO_LOG))
		return 0;
	snprintf(at, sizeof(at), "%lld", (long long)attempt);
	if (t != PROTO_RESULT) {
		broker_note_drop(b, s->r->id, t, uid, attempt, err);
		return 1;
	}
	log_warn("runner sent a result the controller cannot decode; failing the attempt", "runner",
		 s->r->id, "taskUid", uid, "attempt", at, "error", err);
	snprintf(msg, sizeof(msg), "the runner's result could not be decoded: %s", err);
	fake = json_pack("{sssssIssssss}", "type", "result", "taskUid", uid, "attempt",
			 (json_int_t)attempt, "phase", "Failed", "reason", "InvalidResult",
			 "message", msg);
	if (!fake)
		return 0;
	broker_on_result(b, s->r, uid, attempt, fake);
	json_decref(fake);
	return 1;
}

static int broker_on_message(struct broker *b, struct lws *wsi, struct rsess *s)
{
	size_t max = b->cfg.max_message ? b->cfg.max_message : PROTO_MAX_MESSAGE_DEFAULT;
	struct proto_msg m;
	char err[160];
	int r = 0;

	r = proto_decode(s->rx.data, s->rx.len, max, PROTO_FROM_RUNNER, &m, err, sizeof(err));
	if (r == -EBADMSG &&
	    broker_on_bad_message(b, s, s->rx.data ? s->rx.data : "", s->rx.len, err)) {
		buf_reset(&s->rx);
		return 0;
	}
	buf_reset(&s->rx);
	if (r < 0) {
		log_warn("closing runner connection: malformed message", "runner",
			 s->r ? s->r->id : "", "reason", err);
		return broker_close(
			wsi, r == -EMSGSIZE ? PROTO_CLOSE_TOO_BIG : PROTO_CLOSE_MALFORMED, err);
	}
	if (!s->r && m.type != PROTO_HELLO) {
		proto_msg_free(&m);
		log_warn("closing runner connection: message before hello");
		return broker_close(wsi, PROTO_CLOSE_MALFORMED, "hello expected first");
	}
	switch (m.type) {
	case PROTO_HELLO:
		if (s->r) {
			r = broker_close(wsi, PROTO_CLOSE_MALFORMED, "duplicate hello");
			break;
		}
		r = broker_on_hello(b, wsi, s, &m);
		break;
	case PROTO_STARTED:
		if (broker_in_flight(b, s->r, m.task_uid, m.attempt))
			b->ops.started(b->ud, m.task_uid, m.attempt, m.start_ms, s->r->id);
		else
			broker_note_drop(b, s->r->id, m.type, m.task_uid, m.attempt,
					 "attempt not in flight on this runner");
		break;
	case PROTO_RESULT:
		broker_on_result(b, s->r, m.task_uid, m.attempt, m.root);
		break;
	case PROTO_LOG:
		if (!broker_in_flight(b, s->r, m.task_uid, m.attempt))
			broker_note_drop(b, s->r->id, m.type, m.task_uid, m.attempt,
					 "attempt not in flight on this runner");
		else if (b->ops.log)
			b->ops.log(b->ud, m.task_uid, m.attempt, m.seq, m.stream, m.data, s->r->id);
		break;
	case PROTO_READY:
	case PROTO_PONG:
		break;
	default:
		r = broker_close(wsi, PROTO_CLOSE_MALFORMED, "unexpected message type");
	}
	proto_msg_free(&m);
	return r;
}

static int broker_ws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
			size_t len)
{
	struct lws_vhost *vh = wsi ? lws_get_vhost(wsi) : NULL;
	struct broker *b = vh ? lws_get_vhost_user(vh) : NULL;
	struct rsess *s = user;
	size_t max;

	if (!b)
		return 0;
	max = b->cfg.max_message ? b->cfg.max_message : PROTO_MAX_MESSAGE_DEFAULT;

	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
		char auth[256], uri[64];
		/* What was read must end exactly with this request's head (a client may not send
		 * frames before the 101): else its frames could not be judged from their first byte. */
		if (wsguard_upgrade(lws_get_socket_fd(wsi)) < 0) {
			broker_log_refusal(
				"runner WebSocket refused",
				"data after the upgrade request or an earlier request on the connection");
			return -1;
		}
		if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 ||
		    strcmp(uri, "/runners/ws") != 0)
			return -1;
		if (lws_hdr_copy(wsi, auth, sizeof(auth), WSI_TOKEN_HTTP_AUTHORIZATION) <= 0 ||
		    strncmp(auth, "Bearer ", 7) != 0 || !s ||
		    broker_take_grant(b, auth + 7, s->pool) < 0) {
			OPENSSL_cleanse(auth, sizeof(auth));
			broker_log_refusal("runner WebSocket refused",
					   "missing, expired or replayed grant");
			return -1;
		}
		OPENSSL_cleanse(auth, sizeof(auth));
		return 0;
	}
	case LWS_CALLBACK_ESTABLISHED:
		buf_init(&s->rx, max);
		s->rx_init = 1;
		s->last_rx_ms = util_mono_ms();
		lws_set_timer_usecs(wsi, (lws_usec_t)BROKER_HELLO_TIMEOUT_S * LWS_USEC_PER_SEC);
		return 0;
	case LWS_CALLBACK_RECEIVE:
		s->last_rx_ms = util_mono_ms();
		if (lws_frame_is_binary(wsi))
			return broker_close(wsi, PROTO_CLOSE_MALFORMED,
					    "binary frames are not accepted");
		if (buf_append(&s->rx, in, len) < 0) {
			log_warn("closing runner connection: message too large", "runner",
				 s->r ? s->r->id : "");
			return broker_close(wsi, PROTO_CLOSE_TOO_BIG,
					    "message exceeds the size cap");
		}
		if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0)
			return broker_on_message(b, wsi, s);
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE: {
		struct outmsg *m;
		pthread_mutex_lock(&b->lock);
		m = s->r ? s->r->out_head : NULL;
		if (m) {
			s->r->out_head = m->next;
			if (!s->r->out_head)
				s->r->out_tail = NULL;
			s->r->out_count--;
		}
		pthread_mutex_unlock(&b->lock);
		if (!m)
			return 0;
		if (lws_write(wsi, m->data + LWS_PRE, m->len, LWS_WRITE_TEXT) < (int)m->len) {
			free(m);
			return -1;
		}
		free(m);
		pthread_mutex_lock(&b->lock);
		if (s->r && s->r->out_head)
			lws_callback_on_writable(wsi);
		pthread_mutex_unlock(&b->lock);
		return 0;
	}
	case LWS_CALLBACK_TIMER: {
		int64_t silent = util_mono_ms() - s->last_rx_ms;
		json_t *ping;
		if (!s->r)
			return broker_close(wsi, PROTO_CLOSE_POLICY, "no hello in time");
		if (silent > (int64_t)b->cfg.heartbeat_s * 3000) {
			log_warn("runner missed heartbeats; closing", "runner", s->r->id);
			return broker_close(wsi, PROTO_CLOSE_POLICY, "heartbeat timeout");
		}
		ping = proto_new(PROTO_PING);
		pthread_mutex_lock(&b->lock);
		broker_queue_locked(b, s->r, ping);
		pthread_mutex_unlock(&b->lock);
		json_decref(ping);
		lws_callback_on_writable(wsi);
		lws_set_timer_usecs(wsi, (lws_usec_t)b->cfg.heartbeat_s * LWS_USEC_PER_SEC);
		return 0;
	}
	case LWS_CALLBACK_CLOSED:
		if (wsguard_forget(lws_get_socket_fd(wsi)))
			broker_log_refusal("runner connection failed (1002)",
					   "a frame without the client mask (RFC 6455 5.1)");
		if (s->rx_init)
			buf_free(&s->rx);
		s->rx_init = 0;
		if (s->r) {
			pthread_mutex_lock(&b->lock);
			s->r->wsi = NULL;
			s->r->gone_ms = util_mono_ms();
			broker_outbox_clear(s->r);
			pthread_mutex_unlock(&b->lock);
			/* The record and its in-flight attempts stay: a runner that reconnects
			 * reports what it still holds. */
			log_info("runner disconnected", "runner", s->r->id);
			s->r = NULL;
		}
		return 0;
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		pthread_mutex_lock(&b->lock);
		for (struct runner *r = b->runners; r; r = r->next)
			if (r->wsi && r->out_head)
				lws_callback_on_writable(r->wsi);
		pthread_mutex_unlock(&b->lock);
		return 0;
	default:
		break;
	}
	return 0;
}

static const struct lws_protocols broker_protocols[] = {
	{ "http", broker_http_cb, sizeof(struct hsess), 0, 0, NULL, 0 },
	{ PROTO_SUBPROTOCOL, broker_ws_cb, sizeof(struct rsess), 16 * 1024, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* Runs every second on the loop: a runner that stayed away longer than the grace period has
 * lost what it held; its attempts are reported so they can run elsewhere. */
static void broker_sweep(lws_sorted_usec_list_t *sul)
{
	struct broker *b = lws_container_of(sul, struct broker, sweep);
	int64_t now = util_mono_ms(), grace = (int64_t)b->cfg.heartbeat_s * 3000;
	json_t *lost = json_array(), *v;
	char ids[1024] = "";
	size_t i;

	pthread_mutex_lock(&b->lock);
	for (struct runner **pp = &b->runners; *pp;) {
		struct runner *r = *pp;
		const char *k;
		if (r->wsi || now - r->gone_ms < grace) {
			pp = &r->next;
			continue;
		}
		json_object_foreach(r->inflight, k, v) {
			json_object_set_new(v, "runner", json_string(r->id));
			json_array_append(lost, v);
		}
		snprintf(ids + strlen(ids), sizeof(ids) - strlen(ids), "%s%s", ids[0] ? "," : "",
			 r->id);
		*pp = r->next;
		broker_runner_free(r);
	}
	pthread_mutex_unlock(&b->lock);
	if (ids[0])
		log_warn("runner did not come back; its attempts are lost", "runners", ids);
	json_array_foreach(lost, i, v)
		b->ops.lost(b->ud, json_string_value(json_object_get(v, "uid")),
			    json_integer_value(json_object_get(v, "attempt")),
			    json_string_value(json_object_get(v, "runner")));
	json_decref(lost);
	lws_sul_schedule(b->ctx, 0, &b->sweep, broker_sweep, LWS_USEC_PER_SEC);
}

void broker_subscribe(struct broker *b, const struct broker_ops *ops, void *ud)
{
	b->ops = *ops;
	b->ud = ud;
}

int broker_new(const struct broker_cfg *cfg, struct broker **ret)
{
	struct broker *b = calloc(1, sizeof(*b));
	int r;

	if (!b)
		return -ENOMEM;
	b->cfg = *cfg;
	if (b->cfg.heartbeat_s <= 0)
		b->cfg.heartbeat_s = 10;
	b->ctx = server_context(cfg->server);
	pthread_mutex_init(&b->lock, NULL);
	broker_token_refresh(b);
	if (!b->token || !b->token[0]) {
		log_error("runner token file is missing or empty", "file",
			  cfg->token_file ? cfg->token_file : "");
		broker_free(b);
		return -ENOENT;
	}
	r = server_listen(cfg->server, "broker", cfg->broker_addr, broker_protocols, b);
	if (r < 0) {
		broker_free(b);
		return r;
	}
	b->listening = 1;
	lws_sul_schedule(b->ctx, 0, &b->sweep, broker_sweep, LWS_USEC_PER_SEC);
	*ret = b;
	return 0;
}

void broker_free(struct broker *b)
{
	if (!b)
		return;
	while (b->runners) {
		struct runner *r = b->runners;
		b->runners = r->next;
		broker_runner_free(r);
	}
	if (b->token)
		OPENSSL_cleanse(b->token, strlen(b->token));
	free(b->token);
	if (b->pools)
		OPENSSL_cleanse(b->pools, b->npools * sizeof(*b->pools));
	free(b->pools);
	pthread_mutex_destroy(&b->lock);
	free(b);
}
