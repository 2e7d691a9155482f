/* http and remote executors. See http.h; the policy itself is common/ssrf.c. */
#include "http.h"
#include "executor.h"
#include "jscan.h"
#include "log.h"
#include "mask.h"
#include "ssrf.h"
#include "util.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTPX_CONNECT_TIMEOUT_MS 10000
#define HTTPX_TOKEN_TIMEOUT_MS 30000
#define HTTPX_TOKEN_SKEW_S 30 /* a cached token is dropped this long before it expires */
#define HTTPX_TOKEN_CACHE 64
#define HTTPX_TOKEN_LEN_MAX 8192
#define HTTPX_EXPANDED_MAX (1024 * 1024)
#define HTTPX_SHOWN_URL 256 /* bytes of a (redacted) URL quoted in notes and messages */

struct httpx_header {
	char *name, *value;
	int secret;
};

struct httpx_spec {
	enum proto_executor kind;
	char *method; /* NULL: POST with a body, else GET */
	char *url;
	struct httpx_header *headers;
	size_t nheaders;
	char *body;    /* explicit body or NULL */
	json_t *input; /* the task's input or NULL */
	int codes[PROTO_MAX_CODES];
	size_t ncodes;
	int follow, max_redirects;
	int64_t max_response, timeout_ms;
	char *token_url, *client_id, *client_secret, *scope; /* oauth2 when token_url */
	json_t *task; /* remote: {namespace, name, uid, attempt, env (non-secret)} */
	struct ssrf_policy *policy;
	const char **secrets;
	size_t nsecrets;
	char spec_error[256];
};

/* ---- spec ---------------------------------------------------------------------------------- */

static char *httpx_strdup(const char *s) { return s ? strdup(s) : NULL; }

static int httpx_copy_headers(json_t *a, struct httpx_spec *s)
{
	size_t i;
	json_t *v;

	s->nheaders = json_array_size(a);
	s->headers = calloc(s->nheaders + 1, sizeof(*s->headers));
	if (!s->headers)
		return -ENOMEM;
	json_array_foreach(a, i, v) {
		s->headers[i].name = strdup(json_string_value(json_object_get(v, "name")));
		s->headers[i].value = strdup(json_string_value(json_object_get(v, "value")));
		s->headers[i].secret = json_is_true(json_object_get(v, "secret"));
		if (!s->headers[i].name || !s->headers[i].value)
			return -ENOMEM;
	}
	return 0;
}

static void httpx_policy(const struct proto_msg *m, struct httpx_spec *s, int64_t *max_resp,
			 int64_t *max_redir)
{
	json_t *h = json_object_get(m->policy, "http"), *c;
	size_t i;

	s->policy->allow_private = json_is_true(json_object_get(h, "allowPrivateNetworks"));
	json_array_foreach(json_object_get(h, "allowedCIDRs"), i, c) {
		if (ssrf_policy_allow(s->policy, json_string_value(c)) < 0 && !s->spec_error[0])
			snprintf(s->spec_error, sizeof(s->spec_error),
				 "policy.http.allowedCIDRs[%zu] is not a CIDR such as 10.0.0.0/8",
				 i);
	}
	*max_resp = json_integer_value(json_object_get(h, "maxResponseBytes"));
	*max_redir = json_is_integer(json_object_get(h, "maxRedirects"))
			     ? json_integer_value(json_object_get(h, "maxRedirects"))
			     : -1;
}

int httpx_spec_new(const struct proto_msg *m, struct httpx_spec **ret)
{
	struct httpx_spec *s = calloc(1, sizeof(*s));
	json_t *h = m->executor == PROTO_EXEC_HTTP ? m->http : m->remote, *v, *env;
	int64_t pol_resp = 0, pol_redir = -1, n;
	size_t i, nsec = 0;

	*ret = NULL;
	if (!s || !(s->policy = malloc(sizeof(*s->policy))))
		goto oom;
	ssrf_policy_init(s->policy);
	s->kind = m->executor;
	s->url = strdup(json_string_value(json_object_get(h, "url")));
	if (!s->url || httpx_copy_headers(json_object_get(h, "headers"), s) < 0)
		goto oom;
	if (m->input && !(s->input = json_deep_copy(m->input)))
		goto oom;
	httpx_policy(m, s, &pol_resp, &pol_redir);

	/* Limits: the task's own, never above the queue's. */
	s->max_response = HTTPX_DEFAULT_MAX_RESPONSE;
	if (pol_resp > 0)
		s->max_response = pol_resp;
	n = json_integer_value(json_object_get(h, "maxResponseBytes"));
	if (n > 0 && n < s->max_response)
		s->max_response = n;
	s->max_redirects = HTTPX_DEFAULT_MAX_REDIRECTS;
	if (json_is_integer(json_object_get(h, "maxRedirects")))
		s->max_redirects = (int)json_integer_value(json_object_get(h, "maxRedirects"));
	if (pol_redir >= 0 && pol_redir < s->max_redirects)
		s->max_redirects = (int)pol_redir;
	s->follow = !json_is_false(json_object_get(h, "followRedirects"));
	s->timeout_ms = (json_is_integer(json_object_get(h, "timeoutSeconds"))
				 ? json_integer_value(json_object_get(h, "timeoutSeconds"))
				 : HTTPX_DEFAULT_TIMEOUT_S) *
			1000;

	if (m->executor == PROTO_EXEC_HTTP) {
		json_t *o = json_object_get(h, "oauth2");
		s->method = httpx_strdup(json_string_value(json_object_get(h, "method")));
		s->body = httpx_strdup(json_string_value(json_object_get(h, "body")));
		json_array_foreach(json_object_get(h, "successCodes"), i, v)
			s->codes[s->ncodes++] = (int)json_integer_value(v);
		if (o) {
			struct buf scope;
			buf_init(&scope, 64 * 1024);
			json_array_foreach(json_object_get(o, "scopes"), i, v) {
				if (i)
					(void)buf_append(&scope, " ", 1);
				(void)buf_append(&scope, json_string_value(v),
						 json_string_length(v));
			}
			(void)buf_append(&scope, "", 0);
			s->scope = scope.data ? scope.data : strdup("");
			s->token_url = strdup(json_string_value(json_object_get(o, "tokenURL")));
			s->client_id = httpx_strdup(
				json_string_value(json_object_get(o, "clientID")));
			s->client_secret = httpx_strdup(
				json_string_value(json_object_get(o, "clientSecret")));
			if (!s->scope || !s->token_url)
				goto oom;
		}
	} else {
		/* What the remote service learns about the task: never the remote URL or headers,
		 * never an env entry marked secret. */
		json_t *renv = json_array();
		env = m->env;
		json_array_foreach(env, i, v)
			if (!json_is_true(json_object_get(v, "secret")))
				json_array_append_new(renv,
						      json_pack("{sOsO}", "name",
								json_object_get(v, "name"), "value",
								json_object_get(v, "value")));
		s->task = json_pack("{sssssssIso}", "namespace", m->namespace_, "name", m->name,
				    "uid", m->task_uid, "attempt", (json_int_t)m->attempt, "env",
				    renv);
		if (!s->task)
			goto oom;
	}

	/* Secret values the spec itself carries, for masking. */
	s->secrets = calloc(s->nheaders + 2, sizeof(char *));
	if (!s->secrets)
		goto oom;
	for (i = 0; i < s->nheaders; i++)
		if (s->headers[i].secret)
			s->secrets[nsec++] = s->headers[i].value;
	if (s->client_secret)
		s->secrets[nsec++] = s->client_secret;
	s->nsecrets = nsec;
	*ret = s;
	return 0;
oom:
	httpx_spec_free(s);
	return -ENOMEM;
}

static void httpx_wipe_free(char *p)
{
	if (p) {
		OPENSSL_cleanse(p, strlen(p));
		free(p);
	}
}

void httpx_spec_free(struct httpx_spec *s)
{
	if (!s)
		return;
	free(s->method);
	free(s->url);
	for (size_t i = 0; s->headers && i < s->nheaders; i++) {
		free(s->headers[i].name);
		httpx_wipe_free(s->headers[i].value);
	}
	free(s->headers);
	free(s->body);
	json_decref(s->input);
	free(s->token_url);
	free(s->client_id);
	httpx_wipe_free(s->client_secret);
	free(s->scope);
	json_decref(s->task);
	free(s->policy);
	free(s->secrets);
	free(s);
}

size_t httpx_spec_secrets(const struct httpx_spec *s, const char *const **ret)
{
	*ret = (const char *const *)s->secrets;
	return s->nsecrets;
}

/* ---- one run -------------------------------------------------------------------------------- */

struct httpx_run {
	struct httpx_spec *s;
	const struct httpx_io *io;
	struct exec_result *res;
	CURL *h;
	CURLM *m;
	int64_t end_ms;      /* wall clock end of the attempt's HTTP work */
	int end_is_deadline; /* end_ms is the task's deadline (else http.timeoutSeconds) */
	int started;
	/* the current transfer */
	char blocked[256]; /* why the SSRF policy refused a connection */
	char errbuf[CURL_ERROR_SIZE];
	int64_t received, cap;
	int too_big, log_body, skip_redirect_body;
	struct buf keep; /* the beginning of the body, for JSON output */
};

static void httpx_set(struct exec_result *r, const char *phase, const char *reason, const char *fmt,
		      ...) __attribute__((format(printf, 4, 5)));
static void httpx_set(struct exec_result *r, const char *phase, const char *reason, const char *fmt,
		      ...)
{
	va_list ap;
	r->phase = phase;
	r->reason = reason;
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof(r->message), fmt, ap);
	va_end(ap);
}

static void httpx_note(struct httpx_run *x, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void httpx_note(struct httpx_run *x, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	if (x->io->out)
		x->io->out(x->io->ud, 1, line, (size_t)n);
}

/* scheme://host[:port]/path of u, without user info, query or fragment: what notes and
 * messages may quote (a query string often carries credentials). */
static void httpx_shown(CURLU *u, char *out, size_t outsz)
{
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
	(void)curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
	(void)curl_url_get(u, CURLUPART_HOST, &host, 0);
	(void)curl_url_get(u, CURLUPART_PORT, &port, 0);
	(void)curl_url_get(u, CURLUPART_PATH, &path, 0);
	snprintf(out, outsz, "%s://%s%s%s%.*s", scheme ? scheme : "?", host ? host : "?",
		 port ? ":" : "", port ? port : "", HTTPX_SHOWN_URL, path ? path : "");
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
}

static int httpx_killed(struct httpx_run *x)
{
	struct pollfd p = { .fd = x->io->killfd, .events = POLLIN };
	return x->io->killfd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

static void httpx_set_killed(struct httpx_run *x)
{
	int why = x->io->kill_why ? x->io->kill_why(x->io->ud) : EXEC_KILL_CANCEL;
	if (why == EXEC_KILL_SHUTDOWN)
		httpx_set(x->res, "Failed", "RunnerShutdown",
			  "runner shutting down: request aborted");
	else
		httpx_set(x->res, "Cancelled", "Cancelled", "cancelled: request aborted");
}

/* The SSRF check on the address curl is about to connect to, after DNS: DNS rebinding and odd
 * spellings of an address all end here as the same sockaddr. */
static curl_socket_t httpx_opensocket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct httpx_run *x = ud;
	char why[sizeof(x->blocked) - 64];
	int fd;

	if (purpose != CURLSOCKTYPE_IPCXN) {
		snprintf(x->blocked, sizeof(x->blocked), "socket purpose %d refused", (int)purpose);
		return CURL_SOCKET_BAD;
	}
	if (ssrf_check_sockaddr(x->s->policy, &a->addr, a->addrlen, why, sizeof(why)) < 0) {
		if (!x->blocked[0])
			snprintf(x->blocked, sizeof(x->blocked), "%s", why);
		return CURL_SOCKET_BAD;
	}
	fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	return fd < 0 ? CURL_SOCKET_BAD : fd;
}

/* Second look, on the address the connection actually has, right before the request is sent. */
static int httpx_prereq(void *ud, char *primary_ip, char *local_ip, int primary_port,
			int local_port)
{
	struct httpx_run *x = ud;
	struct ssrf_addr a;
	char why[sizeof(x->blocked) - 64];

	if (ssrf_parse_ip(primary_ip, &a) < 0) {
		snprintf(x->blocked, sizeof(x->blocked), "connected address %.64s not understood",
			 primary_ip);
		return CURL_PREREQFUNC_ABORT;
	}
	if (ssrf_check(x->s->policy, &a, why, sizeof(why)) < 0) {
		snprintf(x->blocked, sizeof(x->blocked), "%s", why);
		return CURL_PREREQFUNC_ABORT;
	}
	return CURL_PREREQFUNC_OK;
}

static size_t httpx_write(char *p, size_t sz, size_t n, void *ud)
{
	struct httpx_run *x = ud;
	size_t len = sz * n;

	/* Streaming cap: Content-Length was checked by CURLOPT_MAXFILESIZE before any byte; this
	 * catches chunked and lying responses. Returning short aborts the transfer. */
	if (x->received + (int64_t)len > x->cap) {
		x->too_big = 1;
		return 0;
	}
	x->received += (int64_t)len;
	if (x->keep.len < x->keep.max)
		(void)buf_append(&x->keep, p,
				 len < x->keep.max - x->keep.len ? len : x->keep.max - x->keep.len);
	if (x->log_body && x->io->out) {
		long code = 0;
		/* The body of a redirect we follow is noise, not the task's output. */
		if (x->skip_redirect_body)
			curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
		if (!(x->skip_redirect_body &&
		      (code == 301 || code == 302 || code == 303 || code == 307 || code == 308)))
			x->io->out(x->io->ud, 0, p, len);
	}
	return len;
}

/* Literal addresses are judged before any connection is tried; names are judged after DNS, in
 * httpx_opensocket. Returns 0 or -EACCES with the result set. */
static int httpx_precheck(struct httpx_run *x, CURLU *u, const char *what)
{
	char *scheme = NULL, *host = NULL, why[192];
	struct ssrf_addr a;
	int r = 0;

	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)) {
		httpx_set(x->res, "Failed", "SSRFBlocked",
			  "%s: scheme %.32s is not allowed (only http and https)", what,
			  scheme ? scheme : "?");
		r = -EACCES;
	} else if (curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
		   ssrf_parse_ip(host, &a) == 0 &&
		   ssrf_check(x->s->policy, &a, why, sizeof(why)) < 0) {
		httpx_set(x->res, "Failed", "SSRFBlocked", "%s: blocked by the SSRF policy: %s",
			  what, why);
		r = -EACCES;
	}
	curl_free(scheme);
	curl_free(host);
	return r;
}

/* Parses a URL the way the transfer will use it (the same CURLU goes to curl: no parser
 * differential). Returns NULL with the result set. */
static CURLU *httpx_parse(struct httpx_run *x, const char *url, const char *what)
{
	CURLU *u = curl_url();
	CURLUcode uc;

	if (!u) {
		httpx_set(x->res, "Failed", "Internal", "out of memory");
		return NULL;
	}
	uc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
	if (uc != CURLUE_OK) {
		httpx_set(x->res, "Failed", "InvalidSpec", "%s is not a valid URL: %s", what,
			  curl_url_strerror(uc));
		curl_url_cleanup(u);
		return NULL;
	}
	if (httpx_precheck(x, u, what) < 0) {
		curl_url_cleanup(u);
		return NULL;
	}
	return u;
}

/* One request. Returns 0 with *code (and *location for a redirect, new string) set, or a
 * negative errno with the result set. */
static int httpx_transfer(struct httpx_run *x, CURLU *u, const char *method, const char *body,
			  struct curl_slist *hdrs, int64_t cap, size_t keep_max, int log_body,
			  long *code, char **location, const char *what)
{
	CURLcode rc = CURLE_OK;
	CURLMsg *msg;
	int running = 1, left;
	int64_t now = util_now_ms(), remain = x->end_ms - now;
	char shown[HTTPX_SHOWN_URL + 128];

	*code = 0;
	if (location)
		*location = NULL;
	if (remain <= 0) {
		httpx_set(x->res, "Failed", "TimedOut",
			  x->end_is_deadline ? "deadline exceeded before the request"
					     : "http.timeoutSeconds exceeded before the request");
		return -ETIMEDOUT;
	}
	if (!x->started) {
		x->started = 1;
		if (x->io->started)
			x->io->started(x->io->ud);
	}
	x->blocked[0] = x->errbuf[0] = '\0';
	x->received = 0;
	x->cap = cap;
	x->too_big = 0;
	x->log_body = log_body;
	buf_free(&x->keep);
	buf_init(&x->keep, keep_max);
	httpx_shown(u, shown, sizeof(shown));
	httpx_note(x, "> %s %s\n", method, shown);

	curl_easy_reset(x->h);
	curl_easy_setopt(x->h, CURLOPT_CURLU, u);
	curl_easy_setopt(x->h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(x->h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(x->h, CURLOPT_FOLLOWLOCATION, 0L); /* we follow, re-checking each hop */
	curl_easy_setopt(x->h, CURLOPT_PROXY, "");          /* never the runner's *_proxy env */
	curl_easy_setopt(x->h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(x->h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(x->h, CURLOPT_OPENSOCKETFUNCTION, httpx_opensocket);
	curl_easy_setopt(x->h, CURLOPT_OPENSOCKETDATA, x);
	curl_easy_setopt(x->h, CURLOPT_PREREQFUNCTION, httpx_prereq);
	curl_easy_setopt(x->h, CURLOPT_PREREQDATA, x);
	curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, httpx_write);
	curl_easy_setopt(x->h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->h, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(x->h, CURLOPT_USERAGENT, "tasked-runner/" TASKED_VERSION);
	curl_easy_setopt(x->h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cap);
	curl_easy_setopt(x->h, CURLOPT_TIMEOUT_MS, (long)remain);
	curl_easy_setopt(
		x->h, CURLOPT_CONNECTTIMEOUT_MS,
		(long)(remain < HTTPX_CONNECT_TIMEOUT_MS ? remain : HTTPX_CONNECT_TIMEOUT_MS));
	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(x->h, CURLOPT_NOBODY, 1L);
	} else {
		/* POST, PUT and PATCH always send a body (maybe empty: Content-Length: 0). */
		if (!body && (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
			      strcmp(method, "PATCH") == 0))
			body = "";
		if (body) {
			curl_easy_setopt(x->h, CURLOPT_POSTFIELDSIZE_LARGE,
					 (curl_off_t)strlen(body));
			curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, body);
		}
		if (strcmp(method, "POST") != 0 && !(strcmp(method, "GET") == 0 && !body))
			curl_easy_setopt(x->h, CURLOPT_CUSTOMREQUEST, method);
	}

	curl_multi_add_handle(x->m, x->h);
	while (running) {
		if (curl_multi_perform(x->m, &running) != CURLM_OK)
			break;
		if (!running)
			break;
		/* The kill eventfd wakes the poll: a cancel does not wait for the network. */
		struct curl_waitfd w = { .fd = x->io->killfd, .events = CURL_WAIT_POLLIN };
		(void)curl_multi_poll(x->m, x->io->killfd >= 0 ? &w : NULL,
				      x->io->killfd >= 0 ? 1 : 0, 1000, NULL);
		if (httpx_killed(x)) {
			curl_multi_remove_handle(x->m, x->h);
			httpx_set_killed(x);
			return -EINTR;
		}
	}
	while ((msg = curl_multi_info_read(x->m, &left)))
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == x->h)
			rc = msg->data.result;
	curl_multi_remove_handle(x->m, x->h);
	curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, code);

	/* A refused address only matters when nothing else connected (happy eyeballs may have
	 * refused a blocked address and used an allowed one). */
	if (rc != CURLE_OK && x->blocked[0]) {
		httpx_note(x, "! connection refused by the SSRF policy: %s\n", x->blocked);
		httpx_set(x->res, "Failed", "SSRFBlocked",
			  "%s: connection to %s refused by the SSRF policy: %s", what, shown,
			  x->blocked);
		return -EACCES;
	}
	if (x->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
		httpx_note(x, "! response body exceeds %lld bytes: aborted\n", (long long)cap);
		httpx_set(x->res, "Failed", "ResponseTooLarge",
			  "%s: response body exceeds the %lld byte cap%s", what, (long long)cap,
			  x->too_big ? " (stopped while streaming)"
				     : " (Content-Length checked before reading)");
		x->res->http_status = (int)*code;
		return -EFBIG;
	}
	if (rc == CURLE_OPERATION_TIMEDOUT) {
		httpx_set(x->res, "Failed", "TimedOut", "%s: %s after %lld ms", what,
			  x->end_is_deadline ? "deadline exceeded" : "http.timeoutSeconds exceeded",
			  (long long)(util_now_ms() - now));
		return -ETIMEDOUT;
	}
	if (rc != CURLE_OK) {
		httpx_set(x->res, "Failed", "RequestFailed", "%s: %s: %s", what,
			  curl_easy_strerror(rc), x->errbuf[0] ? x->errbuf : "no details");
		return -EIO;
	}
	if (location && *code >= 300 && *code < 400) {
		char *loc = NULL;
		if (curl_easy_getinfo(x->h, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc)
			*location = strdup(loc);
	}
	httpx_note(x, "< %ld (%lld bytes)\n", *code, (long long)x->received);
	return 0;
}

/* ---- headers ------------------------------------------------------------------------------- */

static int httpx_sensitive(const char *name)
{
	return strcasecmp(name, "authorization") == 0 ||
	       strcasecmp(name, "proxy-authorization") == 0 || strcasecmp(name, "cookie") == 0;
}

/* The request headers for one hop. Credentials (Authorization, Cookie, headers marked secret,
 * the OAuth2 token) only go to the origin the task named, never to a redirect elsewhere. */
static struct curl_slist *httpx_headers(struct httpx_run *x, char **vals, int with_creds,
					const char *bearer, int json_body, int *err)
{
	struct curl_slist *l = NULL, *n;
	struct buf line;
	int have_ct = 0;

	*err = 0;
	buf_init(&line, 2 * HTTPX_EXPANDED_MAX);
	for (size_t i = 0; i < x->s->nheaders; i++) {
		const struct httpx_header *h = &x->s->headers[i];
		if (!with_creds && (h->secret || httpx_sensitive(h->name)))
			continue;
		if (bearer && strcasecmp(h->name, "authorization") == 0)
			continue;
		have_ct |= strcasecmp(h->name, "content-type") == 0;
		buf_reset(&line);
		/* "Name;" is curl's way to send an empty value ("Name:" would remove the header). */
		if (buf_append(&line, h->name, strlen(h->name)) < 0 ||
		    buf_append(&line, vals[i][0] ? ": " : ";", vals[i][0] ? 2 : 1) < 0 ||
		    buf_append(&line, vals[i], strlen(vals[i])) < 0 || buf_append(&line, "", 0) < 0)
			goto fail;
		if (!(n = curl_slist_append(l, line.data)))
			goto fail;
		l = n;
	}
	if (bearer && with_creds) {
		buf_reset(&line);
		if (buf_append(&line, "Authorization: Bearer ", 22) < 0 ||
		    buf_append(&line, bearer, strlen(bearer)) < 0 || buf_append(&line, "", 0) < 0 ||
		    !(n = curl_slist_append(l, line.data)))
			goto fail;
		l = n;
	}
	if (json_body && !have_ct) {
		if (!(n = curl_slist_append(l, "Content-Type: application/json")))
			goto fail;
		l = n;
	}
	/* No "Expect: 100-continue" round trip for larger bodies. */
	if (!(n = curl_slist_append(l, "Expect:")))
		goto fail;
	l = n;
	if (line.data)
		OPENSSL_cleanse(line.data, line.cap);
	buf_free(&line);
	return l;
fail:
	if (line.data)
		OPENSSL_cleanse(line.data, line.cap);
	buf_free(&line);
	curl_slist_free_all(l);
	*err = -ENOMEM;
	return NULL;
}

static int httpx_same_origin(CURLU *a, CURLU *b)
{
	static const CURLUPart parts[] = { CURLUPART_SCHEME, CURLUPART_HOST, CURLUPART_PORT };
	int same = 1;
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]) && same; i++) {
		char *pa = NULL, *pb = NULL;
		(void)curl_url_get(a, parts[i], &pa, CURLU_DEFAULT_PORT);
		(void)curl_url_get(b, parts[i], &pb, CURLU_DEFAULT_PORT);
		same = pa && pb && strcasecmp(pa, pb) == 0;
		curl_free(pa);
		curl_free(pb);
	}
	return same;
}

/* ---- OAuth2 client credentials ------------------------------------------------------------- */

struct httpx_token {
	unsigned char key[SHA256_DIGEST_LENGTH];
	char *token;
	int64_t expires_ms; /* monotonic; the token is not used past this */
	int64_t stamp;      /* for eviction */
};

static pthread_mutex_t httpx_token_lock = PTHREAD_MUTEX_INITIALIZER;

/* A runner on ws:// sets libcurl (and with it OpenSSL) up only for its first HTTP task. */
static pthread_once_t httpx_curl_once = PTHREAD_ONCE_INIT;
static CURLcode httpx_curl_rc;
static void httpx_curl_init(void) { httpx_curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }
static struct httpx_token httpx_tokens[HTTPX_TOKEN_CACHE];
static int64_t httpx_token_clock;

static void httpx_token_key(const struct httpx_spec *s, unsigned char *key)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	const char *parts[] = { s->token_url, s->client_id ? s->client_id : "",
				s->client_secret ? s->client_secret : "",
				s->scope ? s->scope : "" };
	unsigned int n = 0;

	memset(key, 0, SHA256_DIGEST_LENGTH);
	if (!c)
		return;
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		EVP_DigestUpdate(c, parts[i], strlen(parts[i]) + 1); /* with the NUL: unambiguous */
	EVP_DigestFinal_ex(c, key, &n);
	EVP_MD_CTX_free(c);
}

static void httpx_token_drop_locked(struct httpx_token *t)
{
	httpx_wipe_free(t->token);
	memset(t, 0, sizeof(*t));
}

void httpx_token_cache_clear(void)
{
	pthread_mutex_lock(&httpx_token_lock);
	for (size_t i = 0; i < HTTPX_TOKEN_CACHE; i++)
		httpx_token_drop_locked(&httpx_tokens[i]);
	pthread_mutex_unlock(&httpx_token_lock);
}

static char *httpx_token_get(const unsigned char *key)
{
	char *tok = NULL;
	int64_t now = util_mono_ms();

	pthread_mutex_lock(&httpx_token_lock);
	for (size_t i = 0; i < HTTPX_TOKEN_CACHE; i++) {
		struct httpx_token *t = &httpx_tokens[i];
		if (!t->token || CRYPTO_memcmp(t->key, key, sizeof(t->key)) != 0)
			continue;
		if (now >= t->expires_ms)
			httpx_token_drop_locked(t);
		else
			tok = strdup(t->token);
		break;
	}
	pthread_mutex_unlock(&httpx_token_lock);
	return tok;
}

static void httpx_token_put(const unsigned char *key, const char *token, int64_t expires_ms)
{
	struct httpx_token *slot = NULL;

	pthread_mutex_lock(&httpx_token_lock);
	/* the same client's entry, else a free one, else the least recently stored */
	for (size_t i = 0; i < HTTPX_TOKEN_CACHE && !slot; i++)
		if (httpx_tokens[i].token &&
		    CRYPTO_memcmp(httpx_tokens[i].key, key, SHA256_DIGEST_LENGTH) == 0)
			slot = &httpx_tokens[i];
	for (size_t i = 0; i < HTTPX_TOKEN_CACHE && !slot; i++)
		if (!httpx_tokens[i].token)
			slot = &httpx_tokens[i];
	if (!slot) {
		slot = &httpx_tokens[0];
		for (size_t i = 1; i < HTTPX_TOKEN_CACHE; i++)
			if (httpx_tokens[i].stamp < slot->stamp)
				slot = &httpx_tokens[i];
	}
	httpx_token_drop_locked(slot);
	slot->token = strdup(token);
	if (slot->token) {
		memcpy(slot->key, key, sizeof(slot->key));
		slot->expires_ms = expires_ms;
		slot->stamp = ++httpx_token_clock;
	}
	pthread_mutex_unlock(&httpx_token_lock);
}

static void httpx_token_forget(const unsigned char *key)
{
	pthread_mutex_lock(&httpx_token_lock);
	for (size_t i = 0; i < HTTPX_TOKEN_CACHE; i++)
		if (httpx_tokens[i].token &&
		    CRYPTO_memcmp(httpx_tokens[i].key, key, SHA256_DIGEST_LENGTH) == 0)
			httpx_token_drop_locked(&httpx_tokens[i]);
	pthread_mutex_unlock(&httpx_token_lock);
}

/* Basic credentials per RFC 6749 2.3.1: both parts form-encoded, then base64. */
static char *httpx_basic(CURL *h, const char *id, const char *secret)
{
	char *eid = curl_easy_escape(h, id, 0), *esec = curl_easy_escape(h, secret, 0), *raw = NULL,
	     *out = NULL;
	size_t n;

	if (eid && esec && asprintf(&raw, "%s:%s", eid, esec) >= 0) {
		n = strlen(raw);
		out = malloc(4 * ((n + 2) / 3) + 32);
		if (out) {
			memcpy(out, "Authorization: Basic ", 21);
			EVP_EncodeBlock((unsigned char *)out + 21, (const unsigned char *)raw,
					(int)n);
		}
	}
	if (esec)
		OPENSSL_cleanse(esec, strlen(esec));
	if (raw)
		OPENSSL_cleanse(raw, strlen(raw));
	curl_free(eid);
	curl_free(esec);
	free(raw);
	return out;
}

/* Gets a token for the spec's client, from the cache or the token endpoint (checked by the same
 * SSRF policy; redirects refused). Returns 0 with *ret (new string) and *cached, or a negative
 * errno with the result set. */
static int httpx_oauth_token(struct httpx_run *x, const unsigned char *key, char **ret, int *cached)
{
	struct httpx_spec *s = x->s;
	struct curl_slist *hdrs = NULL, *n;
	char *basic = NULL, *body = NULL, *escope = NULL, *tok;
	json_t *j = NULL, *at, *tt, *ei;
	json_error_t jerr;
	CURLU *u;
	long code;
	int64_t expires_in = 0, saved_end = x->end_ms;
	int r;

	*ret = NULL;
	*cached = 0;
	if ((tok = httpx_token_get(key))) {
		*ret = tok;
		*cached = 1;
		return 0;
	}
	if (!(u = httpx_parse(x, s->token_url, "oauth2.tokenURL")))
		return -EINVAL;
	escope = curl_easy_escape(x->h, s->scope ? s->scope : "", 0);
	if (!escope || asprintf(&body, "grant_type=client_credentials%s%s",
				s->scope && s->scope[0] ? "&scope=" : "",
				s->scope && s->scope[0] ? escope : "") < 0) {
		body = NULL;
		r = -ENOMEM;
		httpx_set(x->res, "Failed", "Internal", "out of memory");
		goto out;
	}
	if (s->client_id &&
	    !(basic = httpx_basic(x->h, s->client_id, s->client_secret ? s->client_secret : ""))) {
		r = -ENOMEM;
		httpx_set(x->res, "Failed", "Internal", "out of memory");
		goto out;
	}
	if ((basic && !(hdrs = curl_slist_append(hdrs, basic))) ||
	    !(n = curl_slist_append(hdrs, "Accept: application/json"))) {
		r = -ENOMEM;
		httpx_set(x->res, "Failed", "Internal", "out of memory");
		goto out;
	}
	hdrs = n;
	if (x->end_ms - util_now_ms() > HTTPX_TOKEN_TIMEOUT_MS)
		x->end_ms = util_now_ms() + HTTPX_TOKEN_TIMEOUT_MS;
	/* The token response is a credential: never streamed to the logs. */
	r = httpx_transfer(x, u, "POST", body, hdrs, HTTPX_TOKEN_MAX, HTTPX_TOKEN_MAX, 0, &code,
			   NULL, "oauth2 token request");
	x->end_ms = saved_end;
	if (r < 0) {
		if (strcmp(x->res->reason, "RequestFailed") == 0 ||
		    strcmp(x->res->reason, "ResponseTooLarge") == 0)
			x->res->reason = "OAuth2Failed";
		goto out;
	}
	if (code != 200) {
		r = -EACCES;
		httpx_set(x->res, "Failed", "OAuth2Failed",
			  "oauth2 token endpoint answered HTTP %ld%s", code,
			  code >= 300 && code < 400
				  ? " (redirects are not followed for token requests)"
				  : "");
		goto out;
	}
	j = json_loadb(x->keep.data ? x->keep.data : "", x->keep.len, 0, &jerr);
	at = json_object_get(j, "access_token");
	tt = json_object_get(j, "token_type");
	ei = json_object_get(j, "expires_in");
	if (!json_is_string(at) || json_string_length(at) == 0 ||
	    json_string_length(at) > HTTPX_TOKEN_LEN_MAX ||
	    strlen(json_string_value(at)) != json_string_length(at) ||
	    strpbrk(json_string_value(at), "\r\n")) {
		r = -EBADMSG;
		httpx_set(x->res, "Failed", "OAuth2Failed",
			  "oauth2 token response has no usable access_token");
		goto out;
	}
	if (tt && (!json_is_string(tt) || strcasecmp(json_string_value(tt), "bearer") != 0)) {
		r = -EBADMSG;
		httpx_set(x->res, "Failed", "OAuth2Failed", "oauth2 token_type is not Bearer");
		goto out;
	}
	if (json_is_integer(ei))
		expires_in = json_integer_value(ei);
	else if (json_is_string(ei))
		expires_in = strtoll(json_string_value(ei), NULL, 10);
	if (!(*ret = strdup(json_string_value(at)))) {
		r = -ENOMEM;
		httpx_set(x->res, "Failed", "Internal", "out of memory");
		goto out;
	}
	/* Cached until shortly before it expires; a token without expires_in is used once. */
	if (expires_in > 0) {
		int64_t skew = expires_in / 2 < HTTPX_TOKEN_SKEW_S ? expires_in / 2
								   : HTTPX_TOKEN_SKEW_S;
		if (expires_in - skew > 0)
			httpx_token_put(key, *ret, util_mono_ms() + (expires_in - skew) * 1000);
	}
	r = 0;
out:
	if (j) {
		/* scrub the token from the parsed copy and the receive buffer */
		if (json_is_string(json_object_get(j, "access_token")))
			OPENSSL_cleanse((char *)(uintptr_t)json_string_value(
						json_object_get(j, "access_token")),
					json_string_length(json_object_get(j, "access_token")));
		json_decref(j);
	}
	if (x->keep.data)
		OPENSSL_cleanse(x->keep.data, x->keep.len);
	if (basic)
		OPENSSL_cleanse(basic, strlen(basic));
	free(basic);
	free(body);
	curl_free(escope);
	curl_slist_free_all(hdrs);
	curl_url_cleanup(u);
	return r;
}

/* ---- the http executor --------------------------------------------------------------------- */

static int httpx_code_ok(const struct httpx_spec *s, long code)
{
	if (s->ncodes == 0)
		return code >= 200 && code <= 299;
	for (size_t i = 0; i < s->ncodes; i++)
		if (s->codes[i] == code)
			return 1;
	return 0;
}

static int httpx_is_redirect(long code)
{
	return code == 301 || code == 302 || code == 303 || code == 307 || code == 308;
}

/* The body, if it is JSON of at most HTTPX_OUTPUT_MAX bytes, becomes output. */
static void httpx_output(struct httpx_run *x)
{
	json_error_t jerr;
	size_t ml;
	int deep;

	if (x->received == 0 || !x->keep.data)
		return;
	if (x->received > HTTPX_OUTPUT_MAX) {
		ml = strlen(x->res->message);
		snprintf(x->res->message + ml, sizeof(x->res->message) - ml,
			 "; response body over %d bytes is not kept as output", HTTPX_OUTPUT_MAX);
		return;
	}
	x->res->output = proto_load_output(x->keep.data, x->keep.len, &deep, &jerr);
	if (deep && strcmp(x->res->phase, "Succeeded") == 0) {
		httpx_set(x->res, "Failed", "OutputTooDeep",
			  "HTTP %d, but the JSON response nests deeper than %d levels",
			  x->res->http_status, PROTO_MAX_OUTPUT_DEPTH);
	} else if (deep) {
		ml = strlen(x->res->message);
		snprintf(
			x->res->message + ml, sizeof(x->res->message) - ml,
			"; the JSON response nests deeper than %d levels and is not kept as output",
			PROTO_MAX_OUTPUT_DEPTH);
	}
}

static int httpx_run_http(struct httpx_run *x, char *url, char **hvals, const char *body)
{
	struct httpx_spec *s = x->s;
	const char *method = s->method ? s->method : (body ? "POST" : "GET");
	CURLU *origin = NULL, *u = NULL;
	struct curl_slist *hdrs = NULL;
	unsigned char key[SHA256_DIGEST_LENGTH];
	char *token = NULL, *loc = NULL;
	int hops = 0, cached = 0, retried = 0, json_body = body && !s->body, r, err;
	long code = 0;

	if (!(origin = httpx_parse(x, url, "http.url")))
		return -EINVAL;
	if (!(u = curl_url_dup(origin))) {
		curl_url_cleanup(origin);
		httpx_set(x->res, "Failed", "Internal", "out of memory");
		return -ENOMEM;
	}
	if (s->token_url)
		httpx_token_key(s, key);
	for (;;) {
		int same = httpx_same_origin(origin, u);
		if (s->token_url && same && !token &&
		    (r = httpx_oauth_token(x, key, &token, &cached)) < 0)
			break;
		curl_slist_free_all(hdrs);
		hdrs = httpx_headers(x, hvals, same, same ? token : NULL, json_body && body, &err);
		if (err < 0) {
			r = err;
			httpx_set(x->res, "Failed", "Internal", "out of memory");
			break;
		}
		x->skip_redirect_body = s->follow;
		r = httpx_transfer(x, u, method, body, hdrs, s->max_response, HTTPX_OUTPUT_MAX + 1,
				   1, &code, &loc, hops ? "redirect" : "http.url");
		x->skip_redirect_body = 0;
		if (r < 0)
			break;
		/* A cached token the API no longer takes: fetch a fresh one once. */
		if (code == 401 && token && cached && same && !retried) {
			retried = 1;
			httpx_token_forget(key);
			OPENSSL_cleanse(token, strlen(token));
			free(token);
			token = NULL;
			continue;
		}
		if (s->follow && httpx_is_redirect(code) && loc) {
			CURLU *next;
			char shown[HTTPX_SHOWN_URL + 128];
			if (hops >= s->max_redirects) {
				r = -ELOOP;
				httpx_set(x->res, "Failed", "TooManyRedirects",
					  "more than %d redirects", s->max_redirects);
				x->res->http_status = (int)code;
				break;
			}
			/* Every hop passes the same checks as the first: scheme, literal address
			 * here, the connected address in httpx_opensocket. */
			if (!(next = httpx_parse(x, loc, "redirect"))) {
				r = -EACCES;
				x->res->http_status = (int)code;
				break;
			}
			httpx_shown(next, shown, sizeof(shown));
			/* 307 and 308 repeat the request with its body. The body may carry what the
			 * task only meant for the origin it named (a $(SECRET) from a queue secret, a
			 * dependency's output), and the server picks where it goes next: like the
			 * credentials, it stays with that origin. Dropping it would send a different
			 * request than the one asked for, so the redirect is refused instead. */
			if ((code == 307 || code == 308) && body &&
			    !httpx_same_origin(origin, next)) {
				httpx_set(
					x->res, "Failed", "RedirectRefused",
					"HTTP %ld to another origin (%s) would resend the request body there; not "
					"followed (use the final URL, or followRedirects: false)",
					code, shown);
				x->res->http_status = (int)code;
				curl_url_cleanup(next);
				r = 0;
				break;
			}
			httpx_note(x, "< redirect to %s\n", shown);
			curl_url_cleanup(u);
			u = next;
			free(loc);
			loc = NULL;
			hops++;
			/* Browsers' rules: 303 becomes GET, and so does a POST answered with 301/302. */
			if ((code == 303 && strcmp(method, "HEAD") != 0) ||
			    ((code == 301 || code == 302) && strcmp(method, "POST") == 0)) {
				method = "GET";
				body = NULL;
			}
			continue;
		}
		x->res->http_status = (int)code;
		if (httpx_code_ok(s, code))
			httpx_set(x->res, "Succeeded", "Succeeded", "HTTP %ld", code);
		else
			httpx_set(x->res, "Failed", "HTTPStatus",
				  "HTTP %ld is not a success code%s", code,
				  httpx_is_redirect(code) && s->follow && !loc
					  ? " (redirect without Location)"
					  : "");
		if (strcmp(method, "HEAD") != 0)
			httpx_output(x);
		r = 0;
		break;
	}
	if (token)
		OPENSSL_cleanse(token, strlen(token));
	free(token);
	free(loc);
	curl_slist_free_all(hdrs);
	curl_url_cleanup(u);
	curl_url_cleanup(origin);
	return r;
}

/* ---- the remote executor ------------------------------------------------------------------- */

/* Replaces every occurrence of every secret in s by "***" (new string, NULL when that failed:
 * the caller then has no masked value and sends nothing). */
static char *httpx_mask_str(const char *s, const char *const *secrets, size_t n)
{
	char *m = NULL;
	return mask_string(s, secrets, n, &m) < 0 ? NULL : m;
}

/* Walks a JSON value and masks secret values inside every string (keys included); NULL when
 * any part could not be masked (fail closed: the request is not sent). */
static json_t *httpx_mask_json(json_t *v, const char *const *secrets, size_t n)
{
	json_t *out, *e;
	const char *k;
	size_t i;

	switch (json_typeof(v)) {
	case JSON_STRING: {
		_cleanup_free_ char *m = httpx_mask_str(json_string_value(v), secrets, n);
		return m ? json_string(m) : NULL;
	}
	case JSON_ARRAY:
		out = json_array();
		json_array_foreach(v, i, e)
			if (!out || json_array_append_new(out, httpx_mask_json(e, secrets, n)) < 0)
				goto fail;
		return out;
	case JSON_OBJECT:
		out = json_object();
		json_object_foreach(v, k, e) {
			_cleanup_free_ char *mk = httpx_mask_str(k, secrets, n);
			if (!out || !mk ||
			    json_object_set_new(out, mk, httpx_mask_json(e, secrets, n)) < 0)
				goto fail;
		}
		return out;
	default:
		return json_incref(v);
	}
fail:
	json_decref(out);
	return NULL;
}

static int httpx_loopback_host(CURLU *u)
{
	char *host = NULL;
	struct ssrf_addr a;
	int lb = 0;
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
		lb = strcasecmp(host, "localhost") == 0 ||
		     (ssrf_parse_ip(host, &a) == 0 && ssrf_classify(&a, NULL) == SSRF_LOOPBACK);
	}
	curl_free(host);
	return lb;
}

static int httpx_run_remote(struct httpx_run *x, char *url, char **hvals)
{
	struct httpx_spec *s = x->s;
	json_t *req, *masked = NULL, *resp = NULL, *st, *er, *rt;
	struct curl_slist *hdrs = NULL, *n;
	char *body = NULL, *scheme = NULL;
	json_error_t jerr;
	CURLU *u;
	long code = 0;
	int r, err;
	int64_t cap = s->max_response < HTTPX_REMOTE_MAX ? s->max_response : HTTPX_REMOTE_MAX;

	if (!(u = httpx_parse(x, url, "remote.url")))
		return -EINVAL;
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    strcasecmp(scheme, "http") == 0 && !httpx_loopback_host(u))
		log_warn(
			"remote executor endpoint uses plain http:// to a non-loopback host: the task's "
			"input and result travel unencrypted; use https://");
	curl_free(scheme);

	req = json_pack("{sOsO}", "task", s->task, "input", s->input ? s->input : json_null());
	if (req)
		masked = httpx_mask_json(req, x->io->secrets, x->io->nsecrets);
	json_decref(req);
	body = masked ? json_dumps(masked, JSON_COMPACT) : NULL;
	json_decref(masked);
	hdrs = body ? httpx_headers(x, hvals, 1, NULL, 1, &err) : NULL;
	if (!body || !hdrs || !(n = curl_slist_append(hdrs, "Accept: application/json"))) {
		httpx_set(x->res, "Failed", "Internal", "out of memory");
		r = -ENOMEM;
		goto out;
	}
	hdrs = n;
	r = httpx_transfer(x, u, "POST", body, hdrs, cap, (size_t)cap, 1, &code, NULL,
			   "remote.url");
	if (r < 0)
		goto out;
	x->res->http_status = (int)code;
	resp = json_loadb(x->keep.data ? x->keep.data : "", x->keep.len,
			  JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	er = json_object_get(resp, "error");
	if (code < 200 || code > 299) {
		httpx_set(x->res, "Failed", "HTTPStatus",
			  "remote executor answered HTTP %ld%s%.512s", code,
			  json_is_string(er) ? ": " : "",
			  json_is_string(er) ? json_string_value(er) : "");
		if (httpx_is_redirect(code))
			strncat(x->res->message,
				" (redirects are not followed for remote executors)",
				sizeof(x->res->message) - strlen(x->res->message) - 1);
		r = 0;
		goto out;
	}
	st = json_object_get(resp, "status");
	rt = json_object_get(resp, "retryable");
	if (!json_is_object(resp) || !json_is_string(st) ||
	    (er && !json_is_string(er) && !json_is_null(er)) || (rt && !json_is_boolean(rt))) {
		httpx_set(
			x->res, "Failed", "InvalidResponse",
			"remote executor response is not {status, output, error, retryable} JSON");
		r = 0;
		goto out;
	}
	if (rt)
		x->res->retryable = json_is_true(rt);
	if (json_object_get(resp, "output") && !json_is_null(json_object_get(resp, "output"))) {
		char *o = json_dumps(json_object_get(resp, "output"),
				     JSON_COMPACT | JSON_ENCODE_ANY);
		if (o &&
		    jscan_depth(o, strlen(o), PROTO_MAX_OUTPUT_DEPTH) > PROTO_MAX_OUTPUT_DEPTH) {
			free(o);
			httpx_set(x->res, "Failed", "OutputTooDeep",
				  "the remote executor's output nests deeper than %d levels",
				  PROTO_MAX_OUTPUT_DEPTH);
			r = 0;
			goto out;
		}
		if (o && strlen(o) <= HTTPX_OUTPUT_MAX)
			x->res->output = json_incref(json_object_get(resp, "output"));
		free(o);
	}
	if (strcasecmp(json_string_value(st), "Succeeded") == 0) {
		httpx_set(x->res, "Succeeded", "Succeeded", "remote executor succeeded");
	} else if (strcasecmp(json_string_value(st), "Failed") == 0) {
		httpx_set(x->res, "Failed", "RemoteFailed", "remote executor failed%s%.900s",
			  json_is_string(er) ? ": " : "",
			  json_is_string(er) ? json_string_value(er) : "");
	} else {
		httpx_set(x->res, "Failed", "InvalidResponse",
			  "remote executor status must be Succeeded or Failed");
		json_decref(x->res->output);
		x->res->output = NULL;
	}
	r = 0;
out:
	json_decref(resp);
	free(body);
	curl_slist_free_all(hdrs);
	curl_url_cleanup(u);
	return r;
}

/* ---- entry --------------------------------------------------------------------------------- */

static int httpx_expand(struct httpx_run *x, const char *in, const char *what, char **ret)
{
	int r = x->io->lookup
			? expand_vars(in, x->io->lookup, x->io->lookup_ud, HTTPX_EXPANDED_MAX, ret)
			: ((*ret = strdup(in)) ? 0 : -ENOMEM);
	if (r == -E2BIG)
		httpx_set(x->res, "Failed", "InvalidSpec", "%s expands past %d bytes", what,
			  HTTPX_EXPANDED_MAX);
	else if (r < 0)
		httpx_set(x->res, "Failed", "Internal", "out of memory");
	return r;
}

int httpx_run(struct httpx_spec *s, const struct httpx_io *io, struct exec_result *res)
{
	struct httpx_run x;
	char *url = NULL, *body = NULL, **hvals = NULL;
	int64_t now = util_now_ms();
	size_t i;

	memset(&x, 0, sizeof(x));
	x.s = s;
	x.io = io;
	x.res = res;
	res->http_status = 0;
	res->retryable = -1;
	x.end_ms = now + s->timeout_ms;
	if (io->deadline_ms > 0 && io->deadline_ms < x.end_ms) {
		x.end_ms = io->deadline_ms;
		x.end_is_deadline = 1;
	}
	if (s->spec_error[0]) {
		httpx_set(res, "Failed", "InvalidSpec", "%s", s->spec_error);
		return 0;
	}
	/* $(VAR) from the task's env; header values are checked again after expansion, since an
	 * env value may carry a CR or LF (header injection). */
	if (httpx_expand(&x, s->url, "the URL", &url) < 0)
		goto out;
	if (!(hvals = calloc(s->nheaders + 1, sizeof(char *)))) {
		httpx_set(res, "Failed", "Internal", "out of memory");
		goto out;
	}
	for (i = 0; i < s->nheaders; i++) {
		if (httpx_expand(&x, s->headers[i].value, "a header value", &hvals[i]) < 0)
			goto out;
		if (strpbrk(hvals[i], "\r\n")) {
			httpx_set(res, "Failed", "InvalidSpec",
				  "header %.64s: value contains CR or LF after $(VAR) expansion",
				  s->headers[i].name);
			goto out;
		}
	}
	if (s->kind == PROTO_EXEC_HTTP) {
		const char *m = s->method;
		int may_body = !m || strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 ||
			       strcmp(m, "PATCH") == 0;
		if (s->body) {
			if (httpx_expand(&x, s->body, "http.body", &body) < 0)
				goto out;
		} else if (s->input && may_body) {
			/* No body given: the task's input, as JSON. */
			if (!(body = json_dumps(s->input, JSON_COMPACT | JSON_ENCODE_ANY))) {
				httpx_set(res, "Failed", "Internal", "out of memory");
				goto out;
			}
		}
	}
	pthread_once(&httpx_curl_once, httpx_curl_init);
	x.h = httpx_curl_rc == CURLE_OK ? curl_easy_init() : NULL;
	x.m = x.h ? curl_multi_init() : NULL;
	if (!x.h || !x.m) {
		httpx_set(res, "Failed", "Internal", "libcurl setup failed");
		goto out;
	}
	if (s->kind == PROTO_EXEC_HTTP)
		(void)httpx_run_http(&x, url, hvals, body);
	else
		(void)httpx_run_remote(&x, url, hvals);
out:
	if (x.h)
		curl_easy_cleanup(x.h);
	if (x.m)
		curl_multi_cleanup(x.m);
	buf_free(&x.keep);
	for (i = 0; hvals && i < s->nheaders; i++)
		httpx_wipe_free(hvals[i]);
	free(hvals);
	httpx_wipe_free(url);
	httpx_wipe_free(body);
	return 0;
}
