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
	pthread_mutex_t lock; /* guards cfg.token, token_read_ms and stats */
	int64_t token_read_ms;
	pthread_key_t handle_key;
	struct kube_stats stats;
	void (*observe)(void *ud, const char *verb, long code, double seconds);
	void *observe_ud;
};

void kube_client_set_observer(struct kube_client *c,
			      void (*observe)(void *ud, const char *verb, long code,
					      double seconds),
			      void *ud)
{
	c->observe = observe;
	c->observe_ud = ud;
}

/* Kubernetes' verb for a request. */
static const char *kube_verb(const char *method, const char *path)
{
	if (strcmp(method, "GET") == 0)
		return strstr(path, "watch=1")                              ? "watch"
		       : strchr(path, '?') || path[strlen(path) - 1] == 's' ? "list"
									    : "get";
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

static void kube_observe(struct kube_client *c, const char *method, const char *path, long code,
			 int64_t start_ms)
{
	if (c->observe)
		c->observe(c->observe_ud, kube_verb(method, path), code,
			   (double)(util_mono_ms() - start_ms) / 1000.0);
}

static void kube_handle_free(void *h) { curl_easy_cleanup(h); }

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
	free(r->raw);
	r->raw = NULL;
	r->raw_len = 0;
}

/* Reals that hold a whole number jansson's integers can carry exactly become integers again
 * (metadata.generation and friends), after a parse that had to read every integer as a real. */
static void kube_integralize(json_t *j)
{
	const char *k;
	json_t *v;
	size_t i;
	void *tmp;

	if (json_is_object(j)) {
		json_object_foreach_safe(j, tmp, k, v) {
			if (json_is_real(v)) {
				double d = json_real_value(v);
				if (d == (double)(json_int_t)d && d > -9007199254740992.0 &&
				    d < 9007199254740992.0)
					json_object_set_new(j, k, json_integer((json_int_t)d));
			} else {
				kube_integralize(v);
			}
		}
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, v) {
			if (json_is_real(v)) {
				double d = json_real_value(v);
				if (d == (double)(json_int_t)d && d > -9007199254740992.0 &&
				    d < 9007199254740992.0)
					json_array_set_new(j, i, json_integer((json_int_t)d));
			} else {
				kube_integralize(v);
			}
		}
	}
}

json_t *kube_json_loadb(const char *data, size_t len, json_error_t *err)
{
	json_error_t e;
	json_t *j = json_loadb(data, len, JSON_ALLOW_NUL, &e);

	/* The API server keeps an integer past int64 as a float64 and writes it back as digits
	 * (1e20 comes back as 100000000000000000000), which jansson calls an overflow. Reading
	 * every number as a real and restoring the exact ones keeps such an object; only integers
	 * beyond 2^53 in that same object lose precision, and they already did in the server. The
	 * recursion is bounded by the parser's own depth limit. */
	if (!j && json_error_code(&e) == json_error_numeric_overflow) {
		j = json_loadb(data, len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &e);
		if (j)
			kube_integralize(j);
	}
	if (err)
		*err = e;
	return j;
}

int kube_escape(const char *s, char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	if (outsz == 0)
		return -ENOBUFS;
	out[0] = '\0';
	if (!s || !*s)
		return -EINVAL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' ||
			    *p == '~';
		if (o + (plain ? 1 : 3) >= outsz) {
			out[0] = '\0';
			return -ENOBUFS;
		}
		if (plain) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
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
	if (c->cfg.token_file &&
	    (force || util_mono_ms() - c->token_read_ms > KUBE_TOKEN_REREAD_MS)) {
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
		struct curl_blob b = { .data = c->cfg.ca_pem,
				       .len = c->cfg.ca_len,
				       .flags = CURL_BLOB_COPY };
		curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &b);
	}
	if (c->cfg.cert_pem) {
		struct curl_blob cb = { .data = c->cfg.cert_pem,
					.len = c->cfg.cert_len,
					.flags = CURL_BLOB_COPY };
		struct curl_blob kb = { .data = c->cfg.key_pem,
					.len = c->cfg.key_len,
					.flags = CURL_BLOB_COPY };
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
	/* The smallest libcurl takes (default 64 KiB): each thread's handle that has sent a body
	 * keeps this buffer for good, and a larger body is sent in more pieces. */
	curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
	return h;
}

/* Gives a handle taken out of the thread's slot back, unless a callback made the thread a new
 * one meanwhile. */
static void kube_handle_put(struct kube_client *c, CURL *h)
{
	if (pthread_getspecific(c->handle_key))
		curl_easy_cleanup(h);
	else
		pthread_setspecific(c->handle_key, h);
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
		snprintf(ctype, sizeof(ctype), "Content-Type: %s",
			 content_type ? content_type : "application/json");
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
		snprintf(ret->message, sizeof(ret->message), "%s %s: %s", method, path,
			 curl_easy_strerror(cc));
		return cc == CURLE_WRITE_ERROR ? -EFBIG : -ECONNREFUSED;
	}
	return 0;
}

int kube_request(struct kube_client *c, const char *method, const char *path,
		 const char *content_type, const json_t *body, struct kube_resp *ret)
{
	_cleanup_free_ char *payload = NULL;
	_cleanup_buf_ struct buf out = { 0 };
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
	if (r == 0 && out.len > 0) {
		json_error_t jerr;
		ret->body = kube_json_loadb(out.data, out.len, &jerr);
		kube_parse_status(ret);
		if (!ret->body && ret->status < 300) {
			snprintf(ret->message, sizeof(ret->message), "%s %s: undecodable JSON: %s",
				 method, path, jerr.text);
			r = -EBADMSG;
			/* Hand the text over (no copy) for a caller that can salvage parts of it. */
			ret->raw = out.data;
			ret->raw_len = out.len;
			buf_init(&out, KUBE_MAX_RESPONSE);
		}
	}
	if (r == 0 && ret->status >= 300 && !ret->message[0])
		snprintf(ret->message, sizeof(ret->message), "%s %s: HTTP %ld", method, path,
			 ret->status);
	return r;
}

int kube_get_text(struct kube_client *c, const char *path, struct buf *out, struct kube_resp *ret)
{
	CURL *h;
	int r;

	memset(ret, 0, sizeof(*ret));
	h = kube_handle(c);
	if (!h)
		return -ENOMEM;
	r = kube_perform(c, h, "GET", path, NULL, NULL, 0, out, ret);
	if (r == 0 && ret->status >= 300)
		snprintf(ret->message, sizeof(ret->message), "GET %s: HTTP %ld", path, ret->status);
	return r;
}

struct kube_watch_ctx {
	struct buf line;
	kube_event_fn fn;
	void *userdata;
	const atomic_int *stop;
	int stopped;
	int overlong; /* the current line passed the cap: drop the rest of it */
	long status;
	CURL *h;
	struct buf errbody;
};

/* One complete line: an event, or an undecodable line handed over for reporting. Returns
 * nonzero when the callback asked to stop. */
static int kube_watch_line(struct kube_watch_ctx *w, const char *error)
{
	json_error_t jerr;
	json_t *ev = error ? NULL : kube_json_loadb(w->line.data, w->line.len, &jerr);
	int stop;

	/* One object the parser cannot take must not end the watch: the informer re-watching
	 * from the same resourceVersion would get the same line forever. The callback names it
	 * and skips it. */
	if (!ev)
		stop = w->fn(NULL, w->line.data, w->line.len, error ? error : jerr.text,
			     w->userdata);
	else
		stop = w->fn(ev, NULL, 0, NULL, w->userdata);
	json_decref(ev);
	buf_reset(&w->line);
	return stop;
}

static size_t kube_watch_write(char *p, size_t sz, size_t n, void *ud)
{
	struct kube_watch_ctx *w = ud;
	size_t len = sz * n, off = 0;

	if (!w->status)
		curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &w->status);
	if (w->status != 200) /* an error Status body: keep it for the caller */
		return buf_append(&w->errbody, p, len) < 0 ? 0 : len;
	while (off < len) {
		char *nl = memchr(p + off, '\n', len - off);
		size_t chunk = nl ? (size_t)(nl - (p + off)) : len - off;
		/* Past the cap the rest of the line is dropped; its start (which names the object:
		 * metadata comes before spec) is reported when the line ends. */
		if (!w->overlong) {
			size_t room = w->line.max > w->line.len ? w->line.max - w->line.len : 0;
			/* A failed append keeps nothing (buf_append): fill up to the cap instead. */
			if (buf_append(&w->line, p + off, room < chunk ? room : chunk) < 0 ||
			    chunk > room)
				w->overlong = 1;
		}
		off += chunk;
		if (nl) {
			const char *error = w->overlong ? "watch event exceeds the 16 MiB line cap"
							: NULL;
			off++;
			w->overlong = 0;
			if (w->line.len == 0) {
				buf_reset(&w->line); /* also clears an out-of-memory failure */
				continue;
			}
			if (kube_watch_line(w, error)) {
				w->stopped = 1;
				return 0;
			}
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
	       const atomic_int *stop, struct kube_resp *ret)
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
	/* The watch runs on the thread's own handle, so it reuses the connection the list (or
	 * the previous watch) left open instead of holding a second TLS connection (its own
	 * SSL_CTX, certificate store and buffers) idle beside it. The handle is taken out of the
	 * thread's slot meanwhile: a request made from an event callback gets a handle of its
	 * own rather than re-entering this one. */
	w.h = kube_handle(c);
	if (!w.h)
		return -ENOMEM;
	pthread_setspecific(c->handle_key, NULL);
	buf_init(&w.line, KUBE_MAX_WATCH_LINE);
	buf_init(&w.errbody, 64 * 1024);
	kube_auth_header(c, 0, auth, sizeof(auth));
	if (auth[0])
		hdrs = curl_slist_append(hdrs, auth);
	OPENSSL_cleanse(auth, sizeof(auth));
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	curl_easy_setopt(w.h, CURLOPT_URL, url);
	curl_easy_setopt(w.h, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(w.h, CURLOPT_HTTPHEADER, hdrs);
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
		ret->body = kube_json_loadb(w.errbody.data, w.errbody.len, NULL);
		kube_parse_status(ret);
	}
	if (stop && *stop) {
		r = -ECANCELED;
	} else if (w.stopped) {
		r = 0;
	} else if (cc != CURLE_OK) {
		snprintf(ret->message, sizeof(ret->message), "watch: %s", curl_easy_strerror(cc));
		r = ret->status >= 300                                     ? 0
		    : cc == CURLE_OPERATION_TIMEDOUT && ret->status == 200 ? -ETIMEDOUT
									   : -ECONNRESET;
	}
	curl_easy_reset(w.h); /* drops the pointers to hdrs and w; keeps the connection */
	curl_slist_free_all(hdrs);
	kube_handle_put(c, w.h);
	buf_free(&w.line);
	buf_free(&w.errbody);
	return r;
}

int kube_path(char *buf, size_t size, const char *gv, const char *resource, const char *ns,
	      const char *name, const char *subresource)
{
	char ens[256] = "", ename[512] = "";
	int n;

	if (size)
		buf[0] = '\0';
	if (!gv || !*gv || !resource || !*resource)
		return -EINVAL;
	if ((ns && *ns && kube_escape(ns, ens, sizeof(ens)) < 0) ||
	    (name && *name && kube_escape(name, ename, sizeof(ename)) < 0))
		return -ENAMETOOLONG;
	n = snprintf(buf, size, "%s%s%s%s%s%s%s%s%s%s", strcmp(gv, "v1") == 0 ? "/api/" : "/apis/",
		     gv, ens[0] ? "/namespaces/" : "", ens, "/", resource, ename[0] ? "/" : "",
		     ename, ename[0] && subresource && *subresource ? "/" : "",
		     ename[0] && subresource ? subresource : "");
	if (n < 0 || (size_t)n >= size) {
		if (size)
			buf[0] = '\0';
		return -ENAMETOOLONG;
	}
	return 0;
}

int kube_patch_status(struct kube_client *c, const char *gv, const char *resource, json_t *obj,
		      json_t *patch, struct kube_resp *resp)
{
	json_t *md = json_object_get(obj, "metadata");
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));
	char path[1024];
	int r;

	memset(resp, 0, sizeof(*resp));
	if (!name || !*name || kube_path(path, sizeof(path), gv, resource, ns, name, "status") < 0)
		return -EINVAL;
	json_object_set_new(patch, "metadata",
			    json_pack("{sO}", "uid", json_object_get(md, "uid")));
	r = kube_request(c, "PATCH", path, "application/merge-patch+json", patch, resp);
	if (r == -EBADMSG && resp->status >= 200 && resp->status < 300)
		return 0; /* written; only the answer (too deep for the parser) did not decode */
	if (r < 0) {
		log_warn("status write failed", "resource", resource, "namespace", ns, "name", name,
			 "error", resp->message);
		return -EAGAIN;
	}
	if (resp->status == 404 || (resp->status == 409 && strstr(resp->message, "UID")))
		return -ENOENT;
	if (resp->status >= 300) {
		log_warn("status write refused", "resource", resource, "namespace", ns, "name",
			 name, "reason", resp->reason, "error", resp->message);
		return resp->status == 422 || resp->status == 400 ? -EINVAL : -EAGAIN;
	}
	return 0;
}
