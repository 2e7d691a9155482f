#include "kube.h"
#include "log.h"
#include "util.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KUBE_TOKEN_REREAD_MS 60000

struct kube_client {
	struct kube_config cfg;
	pthread_mutex_t lock;   /* guards cfg.token, token_read_ms and stats */
	int64_t token_read_ms;
	pthread_key_t handle_key;
	struct kube_stats stats;
	void (*observe)(void *ud, const char *verb, long code, double seconds);
	void *observe_ud;
};

void kube_client_set_observer(struct kube_client *c, void (*observe)(void *ud, const char *verb, long code,
								      double seconds), void *ud)
{
	c->observe = observe;
	c->observe_ud = ud;
}

/* Kubernetes' verb for a request. */
static const char *kube_verb(const char *method, const char *path)
{
	if (strcmp(method, "GET") == 0)
		return strstr(path, "watch=1") ? "watch" : strchr(path, '?') || path[strlen(path) - 1] == 's' ? "list" : "get";
	if (strcmp(method, "POST") == 0)
		return "create";
	if (strcmp(method, "PUT") == 0)
		return "update";
	if (strcmp(method, "PATCH") == 0)
		return "patch";
	if (strcmp(method, "DELETE") == 0)
		return "delete";
	return "unknown";
}

static void kube_observe(struct kube_client *c, const char *method, const char *path, long code, int64_t start_ms)
{
	if (c->observe)
		c->observe(c->observe_ud, kube_verb(method, path), code, (double)(util_mono_ms() - start_ms) / 1000.0);
}

static void kube_handle_free(void *h)
{
	curl_easy_cleanup(h);
}

struct kube_client *kube_client_new(struct kube_config *cfg)
{
	struct kube_client *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	pthread_mutex_init(&c->lock, NULL);
	pthread_key_create(&c->handle_key, kube_handle_free);
	c->token_read_ms = util_mono_ms();
	return c;
}

void kube_client_free(struct kube_client *c)
{
	CURL *h;
	if (!c)
		return;
	h = pthread_getspecific(c->handle_key);
	if (h)
		curl_easy_cleanup(h);
	pthread_key_delete(c->handle_key);
	kubeconfig_free(&c->cfg);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

void kube_resp_free(struct kube_resp *r)
{
	json_decref(r->body);
	r->body = NULL;
}

int kube_escape(const char *s, char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~';
		if (o + (plain ? 1 : 3) >= outsz)
			return -ENOBUFS;
		if (plain) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	if (o >= outsz)
		return -ENOBUFS;
	out[o] = '\0';
	return 0;
}

void kube_stats_get(struct kube_client *c, struct kube_stats *ret)
{
	pthread_mutex_lock(&c->lock);
	*ret = c->stats;
	pthread_mutex_unlock(&c->lock);
}

static void kube_count(struct kube_client *c, const char *method, const char *path)
{
	pthread_mutex_lock(&c->lock);
	if (strcmp(method, "GET") == 0) {
		if (strstr(path, "watch=1"))
			c->stats.watch++;
		else if (strchr(path, '?') || path[strlen(path) - 1] == 's')
			c->stats.list++;
		else
			c->stats.get++;
	} else if (strcmp(method, "POST") == 0) {
		c->stats.create++;
	} else if (strcmp(method, "PUT") == 0) {
		c->stats.update++;
	} else if (strcmp(method, "PATCH") == 0) {
		c->stats.patch++;
	} else if (strcmp(method, "DELETE") == 0) {
		c->stats.delete_++;
	}
	pthread_mutex_unlock(&c->lock);
}

/* Re-reads the token file when due (or forced after a 401). Returns the header to use. */
static void kube_auth_header(struct kube_client *c, int force, char *out, size_t outsz)
{
	out[0] = '\0';
	pthread_mutex_lock(&c->lock);
	if (c->cfg.token_file && (force || util_mono_ms() - c->token_read_ms > KUBE_TOKEN_REREAD_MS)) {
		char *t = NULL;
		if (util_read_file(c->cfg.token_file, 64 * 1024, &t, NULL) == 0) {
			util_rstrip(t);
			free(c->cfg.token);
			c->cfg.token = t;
		}
		c->token_read_ms = util_mono_ms();
	}
	if (c->cfg.token && *c->cfg.token)
		snprintf(out, outsz, "Authorization: Bearer %s", c->cfg.token);
	pthread_mutex_unlock(&c->lock);
}

static void kube_setup_tls(struct kube_client *c, CURL *h)
{
	if (c->cfg.ca_pem) {
		struct curl_blob b = { .data = c->cfg.ca_pem, .len = c->cfg.ca_len, .flags = CURL_BLOB_COPY };
		curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &b);
	}
	if (c->cfg.cert_pem) {
		struct curl_blob cb = { .data = c->cfg.cert_pem, .len = c->cfg.cert_len, .flags = CURL_BLOB_COPY };
		struct curl_blob kb = { .data = c->cfg.key_pem, .len = c->cfg.key_len, .flags = CURL_BLOB_COPY };
		curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cb);
		curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
		curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &kb);
		curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
	}
	if (c->cfg.insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
}

static CURL *kube_handle(struct kube_client *c)
{
	CURL *h = pthread_getspecific(c->handle_key);
	if (h) {
		curl_easy_reset(h);
	} else {
		h = curl_easy_init();
		if (!h)
			return NULL;
		pthread_setspecific(c->handle_key, h);
	}
	kube_setup_tls(c, h);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_USERAGENT, "tasked-controller/" TASKED_VERSION);
	return h;
}

static size_t kube_write_buf(char *p, size_t sz, size_t n, void *ud)
{
	struct buf *b = ud;
	return buf_append(b, p, sz * n) < 0 ? 0 : sz * n;
}

static void kube_parse_status(struct kube_resp *ret)
{
	const char *reason, *msg;
	if (!json_is_object(ret->body))
		return;
	reason = json_string_value(json_object_get(ret->body, "reason"));
	msg = json_string_value(json_object_get(ret->body, "message"));
	if (reason && ret->status >= 300)
		snprintf(ret->reason, sizeof(ret->reason), "%s", reason);
	if (msg && ret->status >= 300)
		snprintf(ret->message, sizeof(ret->message), "%s", msg);
}

static int kube_perform(struct kube_client *c, CURL *h, const char *method, const char *path,
			const char *content_type, const char *body, int force_token,
			struct buf *out, struct kube_resp *ret)
{
	char url[4096], auth[8192], ctype[128];
	struct curl_slist *hdrs = NULL;
	CURLcode cc;
	int64_t start_ms;
	int n;

	n = snprintf(url, sizeof(url), "%s%s", c->cfg.server, path);
	if (n < 0 || (size_t)n >= sizeof(url))
		return -ENAMETOOLONG;
	kube_auth_header(c, force_token, auth, sizeof(auth));
	if (auth[0])
		hdrs = curl_slist_append(hdrs, auth);
	OPENSSL_cleanse(auth, sizeof(auth));
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (body) {
		snprintf(ctype, sizeof(ctype), "Content-Type: %s", content_type ? content_type : "application/json");
		hdrs = curl_slist_append(hdrs, ctype);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	if (strcmp(method, "GET") == 0)
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, kube_write_buf);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
	kube_count(c, method, path);
	start_ms = util_mono_ms();
	cc = curl_easy_perform(h);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdrs);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ret->status);
	kube_observe(c, method, path, cc == CURLE_OK ? ret->status : 0, start_ms);
	if (cc != CURLE_OK) {
		snprintf(ret->message, sizeof(ret->message), "%s %s: %s", method, path, curl_easy_strerror(cc));
		return cc == CURLE_WRITE_ERROR ? -EFBIG : -ECONNREFUSED;
	}
	return 0;
}

int kube_request(struct kube_client *c, const char *method, const char *path,
		 const char *content_type, const json_t *body, struct kube_resp *ret)
{
	char *payload = NULL;
	struct buf out;
	CURL *h;
	int r, attempt;

	memset(ret, 0, sizeof(*ret));
	h = kube_handle(c);
	if (!h)
		return -ENOMEM;
	if (body && !(payload = json_dumps(body, JSON_COMPACT)))
		return -ENOMEM;
	buf_init(&out, KUBE_MAX_RESPONSE);
	for (attempt = 0; attempt < 2; attempt++) {
		buf_reset(&out);
		memset(ret, 0, sizeof(*ret));
		r = kube_perform(c, h, method, path, content_type, payload, attempt > 0, &out, ret);
		/* A 401 may mean a rotated token: re-read the file once and retry. */
		if (r < 0 || ret->status != 401 || !c->cfg.token_file)
			break;
		h = kube_handle(c);
	}
	free(payload);
	if (r == 0 && out.len > 0) {
		json_error_t jerr;
		ret->body = json_loadb(out.data, out.len, 0, &jerr);
		kube_parse_status(ret);
		if (!ret->body && ret->status < 300) {
			snprintf(ret->message, sizeof(ret->message), "%s %s: invalid JSON: %s", method, path, jerr.text);
			r = -EBADMSG;
		}
	}
	if (r == 0 && ret->status >= 300 && !ret->message[0])
		snprintf(ret->message, sizeof(ret->message), "%s %s: HTTP %ld", method, path, ret->status);
	buf_free(&out);
	return r;
}

struct kube_watch_ctx {
	struct buf line;
	kube_event_fn fn;
	void *userdata;
	volatile int *stop;
	int stopped;
	long status;
	CURL *h;
	struct buf errbody;
};

static size_t kube_watch_write(char *p, size_t sz, size_t n, void *ud)
{
	struct kube_watch_ctx *w = ud;
	size_t len = sz * n, off = 0;

	if (!w->status)
		curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &w->status);
	if (w->status != 200)   /* an error Status body: keep it for the caller */
		return buf_append(&w->errbody, p, len) < 0 ? 0 : len;
	while (off < len) {
		char *nl = memchr(p + off, '\n', len - off);
		size_t chunk = nl ? (size_t)(nl - (p + off)) : len - off;
		if (buf_append(&w->line, p + off, chunk) < 0) {
			log_error("watch event exceeds the line cap", "cap", "16MiB");
			return 0;
		}
		off += chunk;
		if (nl) {
			json_error_t jerr;
			json_t *ev;
			off++;
			if (w->line.len == 0)
				continue;
			ev = json_loadb(w->line.data, w->line.len, 0, &jerr);
			buf_reset(&w->line);
			if (!ev) {
				log_error("watch sent invalid JSON", "error", jerr.text);
				return 0;
			}
			if (w->fn(ev, w->userdata)) {
				w->stopped = 1;
				json_decref(ev);
				return 0;
			}
			json_decref(ev);
		}
	}
	return len;
}

static int kube_watch_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct kube_watch_ctx *w = ud;
	return w->stop && *w->stop ? 1 : 0;
}

int kube_watch(struct kube_client *c, const char *path, kube_event_fn fn, void *userdata,
	       volatile int *stop, struct kube_resp *ret)
{
	struct kube_watch_ctx w = { .fn = fn, .userdata = userdata, .stop = stop };
	char url[4096], auth[8192];
	struct curl_slist *hdrs = NULL;
	CURLcode cc;
	int n, r = 0;

	memset(ret, 0, sizeof(*ret));
	n = snprintf(url, sizeof(url), "%s%s", c->cfg.server, path);
	if (n < 0 || (size_t)n >= sizeof(url))
		return -ENAMETOOLONG;
	w.h = curl_easy_init();
	if (!w.h)
		return -ENOMEM;
	buf_init(&w.line, KUBE_MAX_WATCH_LINE);
	buf_init(&w.errbody, 64 * 1024);
	kube_setup_tls(c, w.h);
	kube_auth_header(c, 0, auth, sizeof(auth));
	if (auth[0])
		hdrs = curl_slist_append(hdrs, auth);
	OPENSSL_cleanse(auth, sizeof(auth));
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	curl_easy_setopt(w.h, CURLOPT_URL, url);
	curl_easy_setopt(w.h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(w.h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(w.h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(w.h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(w.h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(w.h, CURLOPT_USERAGENT, "tasked-controller/" TASKED_VERSION);
	curl_easy_setopt(w.h, CURLOPT_WRITEFUNCTION, kube_watch_write);
	curl_easy_setopt(w.h, CURLOPT_WRITEDATA, &w);
	curl_easy_setopt(w.h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(w.h, CURLOPT_XFERINFOFUNCTION, kube_watch_progress);
	curl_easy_setopt(w.h, CURLOPT_XFERINFODATA, &w);
	/* A dead connection shows as no bytes (events or bookmarks) for a long time. */
	curl_easy_setopt(w.h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(w.h, CURLOPT_LOW_SPEED_TIME, 120L);
	kube_count(c, "GET", path);
	{
		int64_t start_ms = util_mono_ms();
		cc = curl_easy_perform(w.h);
		curl_easy_getinfo(w.h, CURLINFO_RESPONSE_CODE, &ret->status);
		kube_observe(c, "GET", path, ret->status, start_ms);
	}
	if (w.errbody.len) {
		ret->body = json_loadb(w.errbody.data, w.errbody.len, 0, NULL);
		kube_parse_status(ret);
	}
	if (stop && *stop) {
		r = -ECANCELED;
	} else if (w.stopped) {
		r = 0;
	} else if (cc != CURLE_OK) {
		snprintf(ret->message, sizeof(ret->message), "watch: %s", curl_easy_strerror(cc));
		r = ret->status >= 300 ? 0 : -ECONNRESET;
	}
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(w.h);
	buf_free(&w.line);
	buf_free(&w.errbody);
	return r;
}
