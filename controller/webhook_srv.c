#include "webhook_srv.h"
#include "certs.h"
#include "log.h"
#include "server.h"
#include "util.h"

#include <errno.h>
#include <libwebsockets.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WEBHOOK_PATH "/validate"
#define WEBHOOK_CHUNK 16384

struct webhook_srv {
	struct webhook_srv_cfg cfg;
	struct server *server;
	pthread_mutex_t lock; /* guards x and k only */
	X509 *x;
	EVP_PKEY *k;
	SSL_CTX *ssl_ctx; /* the vhost's, set while lws creates it (main thread) */
};

struct wh_sess {
	struct buf in;
	int in_init;
	char *out;
	size_t out_len, out_off;
	int close_after;
};

static void sess_free(struct wh_sess *s)
{
	if (!s)
		return;
	if (s->in_init)
		buf_free(&s->in);
	free(s->out);
	memset(s, 0, sizeof(*s));
}

/* --- certificate per handshake ----------------------------------------------------------------- */

static int wh_cert_cb(SSL *ssl, void *arg)
{
	struct webhook_srv *w = arg;
	X509 *x;
	EVP_PKEY *k;
	int ok;

	pthread_mutex_lock(&w->lock);
	x = w->x;
	k = w->k;
	if (x) {
		X509_up_ref(x);
		EVP_PKEY_up_ref(k);
	}
	pthread_mutex_unlock(&w->lock);
	if (!x)
		return 0; /* no certificate yet: fail the handshake */
	ok = SSL_use_cert_and_key(ssl, x, k, NULL, 1) == 1;
	X509_free(x);
	EVP_PKEY_free(k);
	return ok;
}

int webhook_srv_set_cert(struct webhook_srv *w, const char *crt, const char *key)
{
	BIO *bc = BIO_new_mem_buf(crt, -1), *bk = BIO_new_mem_buf(key, -1);
	X509 *x = bc ? PEM_read_bio_X509(bc, NULL, NULL, NULL) : NULL;
	EVP_PKEY *k = bk ? PEM_read_bio_PrivateKey(bk, NULL, NULL, NULL) : NULL;
	X509 *oldx;
	EVP_PKEY *oldk;

	BIO_free(bc);
	BIO_free(bk);
	if (!x || !k || X509_check_private_key(x, k) != 1) {
		X509_free(x);
		EVP_PKEY_free(k);
		return -EINVAL;
	}
	pthread_mutex_lock(&w->lock);
	oldx = w->x;
	oldk = w->k;
	w->x = x;
	w->k = k;
	pthread_mutex_unlock(&w->lock);
	X509_free(oldx);
	EVP_PKEY_free(oldk);
	log_info("webhook serving certificate loaded");
	return 0;
}

/* --- HTTP -------------------------------------------------------------------------------------- */

static struct webhook_srv *wh_of(struct lws *wsi)
{
	struct lws_vhost *vh = wsi ? lws_get_vhost(wsi) : NULL;
	return vh ? lws_get_vhost_user(vh) : NULL;
}

static int wh_reply(struct lws *wsi, struct wh_sess *s, int status, const char *ctype, char *body,
		    size_t len)
{
	unsigned char hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *p = start,
					  *end = hdr + sizeof(hdr) - 1;

	free(s->out);
	s->out = body;
	s->out_len = body ? len : 0;
	s->out_off = 0;
	/* After a refusal the rest of the request (a body not read) is no next request. */
	s->close_after = status != 200;
	if (lws_add_http_common_headers(wsi, (unsigned)status, ctype, s->out_len, &p, end) ||
	    lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
					(const unsigned char *)"no-store", 8, &p, end) ||
	    lws_finalize_write_http_header(wsi, start, &p, end))
		return -1;
	lws_callback_on_writable(wsi);
	return 0;
}

static int wh_reply_text(struct lws *wsi, struct wh_sess *s, int status, const char *msg)
{
	char *b = strdup(msg);
	return b ? wh_reply(wsi, s, status, "text/plain", b, strlen(b)) : -1;
}

static int wh_write(struct lws *wsi, struct wh_sess *s)
{
	unsigned char tmp[LWS_PRE + WEBHOOK_CHUNK];
	size_t n = s->out_len - s->out_off;
	int final = 1, close;

	if (n > WEBHOOK_CHUNK) {
		n = WEBHOOK_CHUNK;
		final = 0;
	}
	if (n)
		memcpy(tmp + LWS_PRE, s->out + s->out_off, n);
	if (lws_write(wsi, tmp + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < 0)
		return -1;
	s->out_off += n;
	if (!final) {
		lws_callback_on_writable(wsi);
		return 0;
	}
	close = s->close_after;
	sess_free(s);
	if (close)
		return -1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* A request line arrived: only POST /validate with a Content-Length within the cap. */
static int wh_begin(struct lws *wsi, struct wh_sess *s, const char *uri)
{
	char cl[32] = "";
	long n;

	sess_free(s);
	if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) <= 0)
		return wh_reply_text(wsi, s, 405, "POST an AdmissionReview to " WEBHOOK_PATH "\n");
	if (strcmp(uri, WEBHOOK_PATH) != 0)
		return wh_reply_text(wsi, s, 404, "not found\n");
	if (lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0 ||
	    util_parse_long(cl, 0, WEBHOOK_MAX_BODY, &n) < 0)
		return wh_reply_text(wsi, s, 413,
				     "a Content-Length of at most 4 MiB is required\n");
	buf_init(&s->in, WEBHOOK_MAX_BODY);
	s->in_init = 1;
	return 0;
}

static int wh_body_done(struct webhook_srv *w, struct lws *wsi, struct wh_sess *s)
{
	size_t outlen = 0;
	int status = 400;
	char *out;

	if (!s->in_init)
		return 0; /* already answered (a refusal in wh_begin) */
	if (s->in.err)
		return wh_reply_text(wsi, s, 413, "the review is too large\n");
	out = webhook_handle(s->in.data ? s->in.data : "", s->in.len, w->cfg.queue, w->cfg.queue_ud,
			     &status, &outlen);
	buf_free(&s->in);
	s->in_init = 0;
	if (!out)
		return wh_reply_text(wsi, s, 500, "out of memory\n");
	return wh_reply(wsi, s, status, status == 200 ? "application/json" : "text/plain", out,
			outlen);
}

static int wh_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		 size_t len)
{
	struct webhook_srv *w = wh_of(wsi);
	struct wh_sess *s = user;

	switch (reason) {
	case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
		/* user is the vhost's SSL_CTX: the certificate comes from wh_cert_cb per handshake. */
		if (w) {
			w->ssl_ctx = user;
			SSL_CTX_set_cert_cb(user, wh_cert_cb, w);
			SSL_CTX_set_min_proto_version(user, TLS1_2_VERSION);
		}
		return 0;
	case LWS_CALLBACK_PROTOCOL_INIT:
		/* lws sets its own ALPN choice after LOAD_EXTRA_SERVER_VERIFY_CERTS. */
		if (w)
			server_tls_http1_only(w->ssl_ctx);
		return 0;
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return -1; /* no WebSockets */
	case LWS_CALLBACK_HTTP:
		if (!w || !s)
			return -1;
		return wh_begin(wsi, s, in);
	case LWS_CALLBACK_HTTP_BODY:
		if (s && s->in_init)
			(void)buf_append(&s->in, in,
					 len); /* past the cap: s->in.err, answered 413 */
		return 0;
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		if (!w || !s)
			return -1;
		return wh_body_done(w, wsi, s);
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return s && s->out ? wh_write(wsi, s) : 0;
	case LWS_CALLBACK_CLOSED_HTTP:
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		sess_free(s);
		return 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols wh_protos[] = {
	{ "http", wh_cb, sizeof(struct wh_sess), 0, 0, NULL, 0 }, { NULL, NULL, 0, 0, 0, NULL, 0 }
};

int webhook_srv_new(const struct webhook_srv_cfg *cfg, struct webhook_srv **ret)
{
	const char *names[] = { "127.0.0.1" };
	struct webhook_srv *w;
	struct certs boot = { 0 };
	char why[64];
	int r;

	*ret = NULL;
	if (!(w = calloc(1, sizeof(*w))))
		return -ENOMEM;
	w->cfg = *cfg;
	pthread_mutex_init(&w->lock, NULL);
	/* lws needs a certificate to open a TLS vhost; this one is never presented (wh_cert_cb
	 * picks the real one, or fails the handshake while there is none). */
	r = certs_ensure(&boot, names, 1, 3600, why, sizeof(why));
	if (r >= 0)
		r = server_new(NULL, NULL, &w->server);
	if (r >= 0)
		r = server_listen_tls(w->server, "webhook", cfg->listen, wh_protos, w, boot.tls_crt,
				      boot.tls_key);
	certs_clear(&boot);
	if (r < 0) {
		webhook_srv_free(w);
		return r;
	}
	*ret = w;
	return 0;
}

int webhook_srv_start(struct webhook_srv *w) { return server_start_thread(w->server); }

void webhook_srv_free(struct webhook_srv *w)
{
	if (!w)
		return;
	server_free(w->server);
	X509_free(w->x);
	EVP_PKEY_free(w->k);
	pthread_mutex_destroy(&w->lock);
	free(w);
}
