/* kubectl-tasked: the `kubectl tasked` plugin. Reads tasks, logs and events from the Tasked
 * controller's API (docs/api.md) and cancels tasks through the Kubernetes API (kubectl).
 *
 * Where the API is: --api-url, else $TASKED_API_URL, else an `api-url` file next to the
 * kubeconfig (the local cluster's state directory writes one) or in $TASKED_STATE_DIR, else a
 * `kubectl port-forward` to the controller's Service in the kubeconfig's cluster
 * (--service, default tasked/tasked:8080). The key: --api-key-file, else $TASKED_API_KEY,
 * else an `api-key` file beside that api-url file, else (with a port-forward) the Secret
 * (--api-key-secret, default tasked/tasked-api-key:api-key). The key never goes on a command
 * line and is never printed. */
#include "phase.h"
#include "util.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KT_MAX_BODY (256u * 1024 * 1024)
#define KT_MAX_SSE_LINE (4u * 1024 * 1024)
#define KT_PF_TIMEOUT_MS 20000

struct opts {
	const char *ns, *api_url, *key_file, *kubeconfig, *context, *cacert, *service, *key_secret;
	const char *output, *phase, *queue, *since;
	int all_ns, follow, insecure, verbose;
	long attempt, timeout_s;
};

struct client {
	char url[1024];
	char *key;
	struct opts *o;
	pid_t pf_pid; /* our kubectl port-forward, 0 when none */
};

static struct client g_client;
static volatile sig_atomic_t g_interrupted;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void pf_stop(void)
{
	if (g_client.pf_pid > 0) {
		kill(g_client.pf_pid, SIGTERM);
		waitpid(g_client.pf_pid, NULL, 0);
		g_client.pf_pid = 0;
	}
}

static void die(const char *fmt, ...)
{
	va_list ap;
	fputs("error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	pf_stop();
	exit(1);
}

static void on_signal(int sig)
{
	(void)sig;
	g_interrupted = 1;
}

static void usage(FILE *f)
{
	fputs("Usage: kubectl tasked COMMAND [options]\n"
	      "\n"
	      "Commands:\n"
	      "  get [TASK]            list tasks (or show one); -A, --phase P, --queue Q, -o "
	      "wide|json|name\n"
	      "  logs [-f] TASK        the task's output; -f follows it until the task finishes\n"
	      "                        (--attempt N: one attempt only)\n"
	      "  wait TASK             wait until the task finishes, with a progress line; exit 0 "
	      "when it\n"
	      "                        Succeeded (or was Skipped), 1 otherwise (--timeout "
	      "SECONDS)\n"
	      "  cancel TASK           set spec.cancel=true (through kubectl)\n"
	      "  events                stream task events; -A, --queue Q, --since ID, -o json\n"
	      "\n"
	      "Options:\n"
	      "  -n, --namespace NS        namespace (default: the kubeconfig context's, else "
	      "default)\n"
	      "  -A, --all-namespaces\n"
	      "  --api-url URL             the controller API (else $TASKED_API_URL, an api-url "
	      "file next to\n"
	      "                            the kubeconfig or in $TASKED_STATE_DIR, else a "
	      "port-forward)\n"
	      "  --api-key-file FILE       the API key (else $TASKED_API_KEY, an api-key file next "
	      "to\n"
	      "                            api-url, else the Secret given by --api-key-secret)\n"
	      "  --service NS/NAME:PORT    Service to port-forward to (default "
	      "tasked/tasked:8080)\n"
	      "  --api-key-secret NS/NAME:KEY  (default tasked/tasked-api-key:api-key)\n"
	      "  --kubeconfig FILE, --context NAME   passed to kubectl\n"
	      "  --cacert FILE, --insecure-skip-tls-verify   for an https API\n",
	      f);
}

/* --- helpers -------------------------------------------------------------------------------- */

/* execvp takes char *const[]; our argument vectors are built from const strings. */
static void exec_argv(const char *file, const char *const *argv)
{
	char *av[64];
	size_t i;
	for (i = 0; i < UTIL_ARRAY_SIZE(av) - 1 && argv[i]; i++)
		av[i] = (char *)(uintptr_t)argv[i];
	av[i] = NULL;
	execvp(file, av);
	_exit(127);
}

/* Runs kubectl with args (NULL-terminated), capturing up to outsz-1 bytes of stdout. Returns the
 * exit status, or -1 when it could not run. stderr passes through unless quiet. */
static int run_kubectl(const char *const *args, char *out, size_t outsz, int quiet)
{
	const char *kubectl = getenv("TASKED_KUBECTL") ? getenv("TASKED_KUBECTL") : "kubectl";
	const char *argv[64];
	int n = 0, p[2], st;
	size_t got = 0;
	pid_t pid;

	argv[n++] = kubectl;
	if (g_client.o->kubeconfig) {
		argv[n++] = "--kubeconfig";
		argv[n++] = g_client.o->kubeconfig;
	}
	if (g_client.o->context) {
		argv[n++] = "--context";
		argv[n++] = g_client.o->context;
	}
	for (; *args && n < 62; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(p[1], 1);
		if (quiet) {
			int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
			if (null >= 0)
				dup2(null, 2);
		}
		exec_argv(kubectl, argv);
	}
	close(p[1]);
	for (;;) {
		char tmp[4096];
		ssize_t r = read(p[0], tmp, sizeof(tmp));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (out && got + 1 < outsz) {
			size_t take = (size_t)r < outsz - 1 - got ? (size_t)r : outsz - 1 - got;
			memcpy(out + got, tmp, take);
			got += take;
		}
	}
	close(p[0]);
	if (out)
		out[got] = '\0';
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *read_trimmed(const char *path)
{
	char *s = NULL;
	if (util_read_file(path, 4096, &s, NULL) < 0)
		return NULL;
	util_rstrip(s);
	if (!s[0]) {
		free(s);
		return NULL;
	}
	return s;
}

/* The first kubeconfig kubectl would read. */
static void kubeconfig_path(struct opts *o, char *out, size_t outsz)
{
	const char *kc = o->kubeconfig ? o->kubeconfig : getenv("KUBECONFIG");
	out[0] = '\0';
	if (kc && kc[0]) {
		const char *colon = strchr(kc, ':');
		size_t n = colon ? (size_t)(colon - kc) : strlen(kc);
		if (n < outsz) {
			memcpy(out, kc, n);
			out[n] = '\0';
		}
	} else if (getenv("HOME")) {
		snprintf(out, outsz, "%s/.kube/config", getenv("HOME"));
	}
}

/* A directory holding api-url (and api-key): next to the kubeconfig, or $TASKED_STATE_DIR. */
static int state_dir(struct opts *o, char *out, size_t outsz)
{
	char kc[PATH_MAX], probe[PATH_MAX + 16];
	const char *sd = getenv("TASKED_STATE_DIR");
	kubeconfig_path(o, kc, sizeof(kc));
	if (kc[0]) {
		char *slash = strrchr(kc, '/');
		if (slash)
			*slash = '\0';
		else
			snprintf(kc, sizeof(kc), ".");
		snprintf(probe, sizeof(probe), "%s/api-url", kc);
		if (access(probe, R_OK) == 0) {
			snprintf(out, outsz, "%s", kc);
			return 1;
		}
	}
	if (sd && sd[0]) {
		snprintf(probe, sizeof(probe), "%s/api-url", sd);
		if (access(probe, R_OK) == 0) {
			snprintf(out, outsz, "%s", sd);
			return 1;
		}
	}
	return 0;
}

/* Splits "NS/NAME:EXTRA" into its parts. */
static int split_ref(const char *s, char *ns, char *name, char *extra, size_t sz)
{
	const char *slash = strchr(s, '/'), *colon = strrchr(s, ':');
	if (!slash || !colon || colon < slash || (size_t)(slash - s) >= sz ||
	    (size_t)(colon - slash - 1) >= sz || strlen(colon + 1) >= sz)
		return -1;
	snprintf(ns, sz, "%.*s", (int)(slash - s), s);
	snprintf(name, sz, "%.*s", (int)(colon - slash - 1), slash + 1);
	snprintf(extra, sz, "%s", colon + 1);
	return ns[0] && name[0] && extra[0] ? 0 : -1;
}

static void *pf_drain(void *p)
{
	int fd = *(int *)p;
	char sink[4096];
	while (read(fd, sink, sizeof(sink)) > 0)
		;
	return NULL;
}

/* Starts `kubectl port-forward` to the Service and returns the local URL. */
static void port_forward(struct client *c)
{
	const char *kubectl = getenv("TASKED_KUBECTL") ? getenv("TASKED_KUBECTL") : "kubectl";
	char ns[256], name[256], port[32], svc[300], target[64], buf[4096] = "";
	const char *argv[16];
	int n = 0, p[2];
	size_t got = 0;
	int64_t deadline = util_mono_ms() + KT_PF_TIMEOUT_MS;

	if (split_ref(c->o->service, ns, name, port, sizeof(ns)) < 0)
		die("--service takes NAMESPACE/NAME:PORT, not %s", c->o->service);
	snprintf(svc, sizeof(svc), "svc/%s", name);
	snprintf(target, sizeof(target), ":%s", port);
	argv[n++] = kubectl;
	if (c->o->kubeconfig) {
		argv[n++] = "--kubeconfig";
		argv[n++] = c->o->kubeconfig;
	}
	if (c->o->context) {
		argv[n++] = "--context";
		argv[n++] = c->o->context;
	}
	argv[n++] = "port-forward";
	argv[n++] = "--namespace";
	argv[n++] = ns;
	argv[n++] = "--address";
	argv[n++] = "127.0.0.1";
	argv[n++] = svc;
	argv[n++] = target;
	argv[n] = NULL;
	if (pipe2(p, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	c->pf_pid = fork();
	if (c->pf_pid < 0)
		die("fork: %s", strerror(errno));
	if (c->pf_pid == 0) {
		dup2(p[1], 1);
		exec_argv(kubectl, argv);
	}
	close(p[1]);
	/* kubectl prints "Forwarding from 127.0.0.1:PORT -> TARGET" once it listens. */
	while (got + 1 < sizeof(buf)) {
		struct pollfd pf = { p[0], POLLIN, 0 };
		int64_t left = deadline - util_mono_ms();
		ssize_t r;
		char *f;
		if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
			break;
		r = read(p[0], buf + got, sizeof(buf) - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		buf[got] = '\0';
		if ((f = strstr(buf, "Forwarding from 127.0.0.1:"))) {
			long lport = strtol(f + strlen("Forwarding from 127.0.0.1:"), NULL, 10);
			if (lport > 0 && lport < 65536 && strchr(f, '\n')) {
				snprintf(c->url, sizeof(c->url), "http://127.0.0.1:%ld", lport);
				/* kubectl prints a line per connection: keep reading its output so it
				 * never blocks on a full pipe (or dies of SIGPIPE). */
				static int pf_fd;
				pthread_t th;
				pf_fd = p[0];
				if (pthread_create(&th, NULL, pf_drain, &pf_fd) == 0)
					pthread_detach(th);
				return;
			}
		}
	}
	close(p[0]);
	pf_stop();
	die("could not port-forward to service %s/%s:%s (is Tasked installed in this cluster? "
	    "else give --api-url or set TASKED_API_URL)",
	    ns, name, port);
}

static void client_init(struct client *c, struct opts *o)
{
	char dir[PATH_MAX], path[PATH_MAX + 16];
	int have_dir;
	const char *env;

	c->o = o;
	have_dir = state_dir(o, dir, sizeof(dir));
	if (o->api_url) {
		snprintf(c->url, sizeof(c->url), "%s", o->api_url);
	} else if ((env = getenv("TASKED_API_URL")) && env[0]) {
		snprintf(c->url, sizeof(c->url), "%s", env);
	} else if (have_dir) {
		char *u;
		snprintf(path, sizeof(path), "%s/api-url", dir);
		u = read_trimmed(path);
		if (!u)
			die("cannot read %s", path);
		snprintf(c->url, sizeof(c->url), "%s", u);
		free(u);
	} else {
		port_forward(c);
	}
	while (strlen(c->url) > 0 && c->url[strlen(c->url) - 1] == '/')
		c->url[strlen(c->url) - 1] = '\0';

	if (o->key_file) {
		if (!(c->key = read_trimmed(o->key_file)))
			die("cannot read the API key from %s", o->key_file);
	} else if ((env = getenv("TASKED_API_KEY")) && env[0]) {
		c->key = strdup(env);
	} else if (have_dir && !o->api_url && !getenv("TASKED_API_URL")) {
		snprintf(path, sizeof(path), "%s/api-key", dir);
		c->key = read_trimmed(path);
	} else if (c->pf_pid > 0) {
		char ns[256], name[256], key[256], jp[300], out[8192];
		const char *args[] = { "get", "secret", "--namespace", ns, name, "-o", jp, NULL };
		if (split_ref(o->key_secret, ns, name, key, sizeof(ns)) < 0)
			die("--api-key-secret takes NAMESPACE/NAME:KEY");
		snprintf(jp, sizeof(jp), "jsonpath={.data.%s}", key);
		if (run_kubectl(args, out, sizeof(out), 1) == 0 && out[0] &&
		    util_base64_decode(out, &c->key, NULL) < 0)
			c->key = NULL;
		OPENSSL_cleanse(out, sizeof(out));
	}
}

/* --- HTTP ----------------------------------------------------------------------------------- */

static size_t to_buf(char *p, size_t sz, size_t n, void *ud)
{
	return buf_append(ud, p, sz * n) < 0 ? 0 : sz * n;
}

static CURL *easy_for(struct client *c, const char *path, struct curl_slist **hdrs)
{
	CURL *h = curl_easy_init();
	char url[4096], auth[4200];
	if (!h)
		die("out of memory");
	snprintf(url, sizeof(url), "%s%s", c->url, path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	if (c->o->cacert)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->o->cacert);
	if (c->o->insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (c->key) {
		snprintf(auth, sizeof(auth), "X-API-Key: %s", c->key);
		*hdrs = curl_slist_append(*hdrs, auth);
		OPENSSL_cleanse(auth, sizeof(auth));
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, *hdrs);
	return h;
}

/* Dies with the API's {error, message} for a failed answer. */
static void api_fail(long code, const char *body)
{
	json_t *j = json_loads(body ? body : "", 0, NULL);
	const char *msg = json_string_value(json_object_get(j, "message"));
	if (code == 401)
		die("the API refused the key (401): give --api-key-file or set TASKED_API_KEY");
	die("%s (HTTP %ld)", msg ? msg : "unexpected answer", code);
}

/* GET path; returns the body (caller frees) and the status in *code. */
static char *http_get(struct client *c, const char *path, const char *accept, long *code)
{
	struct curl_slist *hdrs = NULL;
	struct buf b;
	CURL *h;
	CURLcode rc;
	char acc[128];

	buf_init(&b, KT_MAX_BODY);
	if (accept) {
		snprintf(acc, sizeof(acc), "Accept: %s", accept);
		hdrs = curl_slist_append(hdrs, acc);
	}
	h = easy_for(c, path, &hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, to_buf);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 60000L);
	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, code);
	curl_easy_cleanup(h);
	curl_slist_free_all(hdrs);
	if (rc != CURLE_OK)
		die("cannot reach the Tasked API at %s: %s", c->url, curl_easy_strerror(rc));
	if (!b.data)
		return strdup("");
	return b.data;
}

static json_t *get_json(struct client *c, const char *path)
{
	long code = 0;
	char *body = http_get(c, path, "application/json", &code);
	json_t *j;
	if (code != 200)
		api_fail(code, body);
	j = json_loads(body, 0, NULL);
	free(body);
	if (!j)
		die("the API answered with invalid JSON");
	return j;
}

/* --- SSE ------------------------------------------------------------------------------------ */

enum { SSE_CONT = 0, SSE_STOP = 1 };

struct sse {
	struct buf line;
	struct buf data;
	char event[64];
	char id[64];
	char last_id[64];
	int (*on_event)(void *ud, const char *event, const char *id, const char *data);
	void *ud;
	int stopped;
	long code;
	struct buf err; /* the body of a refusal */
	int opened;
};

static void sse_dispatch(struct sse *s)
{
	if (s->id[0])
		snprintf(s->last_id, sizeof(s->last_id), "%s", s->id);
	if (s->data.len || s->event[0]) {
		if (s->on_event(s->ud, s->event[0] ? s->event : "message", s->id,
				s->data.data ? s->data.data : "") == SSE_STOP)
			s->stopped = 1;
	}
	buf_reset(&s->data);
	s->event[0] = s->id[0] = '\0';
}

static void sse_line(struct sse *s, char *l)
{
	char *v;
	if (!l[0]) {
		sse_dispatch(s);
		return;
	}
	if (l[0] == ':')
		return;
	v = strchr(l, ':');
	if (v) {
		*v++ = '\0';
		if (*v == ' ')
			v++;
	} else {
		v = l + strlen(l);
	}
	if (strcmp(l, "data") == 0) {
		/* A failed append empties the buffer: never hand on a cut event. */
		if ((s->data.len && buf_append(&s->data, "\n", 1) < 0) ||
		    buf_append(&s->data, v, strlen(v)) < 0)
			die("an event from the API exceeds %zu bytes", s->data.max);
	} else if (strcmp(l, "event") == 0) {
		snprintf(s->event, sizeof(s->event), "%s", v);
	} else if (strcmp(l, "id") == 0) {
		snprintf(s->id, sizeof(s->id), "%s", v);
	}
}

static size_t sse_write(char *p, size_t sz, size_t n, void *ud)
{
	struct sse *s = ud;
	size_t len = sz * n;
	if (s->code != 200)
		return buf_append(&s->err, p, len) < 0 ? 0 : len;
	for (size_t i = 0; i < len && !s->stopped; i++) {
		if (p[i] == '\n') {
			char *l = s->line.data ? s->line.data : (char *)"";
			if (s->line.len && l[s->line.len - 1] == '\r')
				l[--s->line.len] = '\0';
			sse_line(s, l);
			buf_reset(&s->line);
		} else if (buf_append(&s->line, p + i, 1) < 0) {
			return 0;
		}
	}
	return s->stopped || g_interrupted ? 0 : len;
}

static size_t sse_header(char *p, size_t sz, size_t n, void *ud)
{
	struct sse *s = ud;
	int code;
	if (sscanf(p, "HTTP/%*s %d", &code) == 1)
		s->code = code;
	if (sz * n <= 2 && (p[0] == '\r' || p[0] == '\n'))
		s->opened = 1;
	return sz * n;
}

/* Streams path until on_event says stop, the deadline passes (returns 2), or the interrupt.
 * A dropped stream is reopened with Last-Event-ID. on_open (may be NULL) runs once the first
 * stream's headers arrived, so a caller can read the current state without missing a change;
 * it may stop the stream too. Returns 0 when stopped by a handler. */
static int sse_run(struct client *c, const char *path, const char *since, int (*on_open)(void *ud),
		   int (*on_event)(void *, const char *, const char *, const char *), void *ud,
		   int64_t deadline)
{
	struct sse s = { .on_event = on_event, .ud = ud };
	int first = 1, backoff = 500;

	buf_init(&s.line, KT_MAX_SSE_LINE);
	buf_init(&s.data, KT_MAX_SSE_LINE);
	buf_init(&s.err, 65536);
	if (since)
		snprintf(s.last_id, sizeof(s.last_id), "%s", since);
	while (!g_interrupted) {
		struct curl_slist *hdrs = NULL;
		char lei[128];
		CURLM *m = curl_multi_init();
		CURL *h;
		int running = 1, opened_called = 0;

		hdrs = curl_slist_append(hdrs, "Accept: text/event-stream");
		if (s.last_id[0]) {
			snprintf(lei, sizeof(lei), "Last-Event-ID: %s", s.last_id);
			hdrs = curl_slist_append(hdrs, lei);
		}
		h = easy_for(c, path, &hdrs);
		s.code = 0;
		s.opened = 0;
		buf_reset(&s.line);
		buf_reset(&s.err);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sse_write);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, sse_header);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, &s);
		curl_multi_add_handle(m, h);
		while (running && !s.stopped && !g_interrupted) {
			curl_multi_perform(m, &running);
			if (first && s.opened && s.code == 200 && !opened_called) {
				opened_called = 1;
				first = 0;
				if (on_open && on_open(ud) == SSE_STOP)
					s.stopped = 1;
			}
			if (deadline && util_mono_ms() >= deadline)
				break;
			if (running)
				curl_multi_poll(m, NULL, 0, 200, NULL);
		}
		curl_multi_remove_handle(m, h);
		curl_easy_cleanup(h);
		curl_multi_cleanup(m);
		curl_slist_free_all(hdrs);
		if (s.stopped)
			break;
		if (s.code && s.code != 200) {
			if (s.code == 503) {
				fprintf(stderr, "warning: the API refused the stream (503: too "
						"many streams); retrying\n");
			} else {
				api_fail(s.code, s.err.data); /* NUL-terminated, or NULL */
			}
		}
		if (deadline && util_mono_ms() >= deadline) {
			buf_free(&s.line);
			buf_free(&s.data);
			buf_free(&s.err);
			return 2;
		}
		if (g_interrupted)
			break;
		/* The stream ended without a final event (controller restart, slow-client drop):
		 * come back where we were. */
		usleep((useconds_t)backoff * 1000);
		backoff = backoff < 8000 ? backoff * 2 : 8000;
	}
	buf_free(&s.line);
	buf_free(&s.data);
	buf_free(&s.err);
	return s.stopped ? 0 : 130;
}

/* --- commands ------------------------------------------------------------------------------- */

static const char *sget(json_t *o, const char *a, const char *b)
{
	const char *v = json_string_value(json_object_get(json_object_get(o, a), b));
	return v ? v : "";
}

static void fmt_age(const char *ts, char *out, size_t outsz)
{
	int64_t ms, now = util_now_ms(), s;
	if (!ts[0] || util_parse_rfc3339(ts, &ms) < 0) {
		snprintf(out, outsz, "<unknown>");
		return;
	}
	s = (now - ms) / 1000;
	if (s < 0)
		s = 0;
	if (s < 120)
		snprintf(out, outsz, "%llds", (long long)s);
	else if (s < 7200)
		snprintf(out, outsz, "%lldm", (long long)(s / 60));
	else if (s < 172800)
		snprintf(out, outsz, "%lldh", (long long)(s / 3600));
	else
		snprintf(out, outsz, "%lldd", (long long)(s / 86400));
}

static void out_text(FILE *f, const char *s, size_t len);

static void print_row(json_t *t, int with_ns, int wide)
{
	json_t *st = json_object_get(t, "status");
	char exitc[16] = "", attempts[16] = "", age[32];
	if (json_is_integer(json_object_get(st, "exitCode")))
		snprintf(exitc, sizeof(exitc), "%lld",
			 (long long)json_integer_value(json_object_get(st, "exitCode")));
	if (json_is_integer(json_object_get(st, "attempts")))
		snprintf(attempts, sizeof(attempts), "%lld",
			 (long long)json_integer_value(json_object_get(st, "attempts")));
	fmt_age(sget(t, "metadata", "creationTimestamp"), age, sizeof(age));
	if (with_ns)
		printf("%-20s ", sget(t, "metadata", "namespace"));
	printf("%-30s %-10s %-5s %-8s %-20s %-6s", sget(t, "metadata", "name"),
	       sget(t, "status", "phase")[0] ? sget(t, "status", "phase") : "Pending", exitc,
	       attempts, sget(t, "status", "runner"), age);
	if (wide) {
		const char *q = sget(t, "spec", "queue");
		printf(" %-12s %-16s ", q[0] ? q : "default", sget(t, "status", "reason"));
		out_text(stdout, sget(t, "status", "message"),
			 strlen(sget(t, "status", "message")));
	}
	putchar('\n');
}

static void esc(const char *in, char *out, size_t outsz)
{
	size_t o = 0;
	for (; *in && o + 4 < outsz; in++) {
		unsigned char ch = (unsigned char)*in;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_') {
			out[o++] = (char)ch;
		} else {
			snprintf(out + o, outsz - o, "%%%02X", ch);
			o += 3;
		}
	}
	out[o] = '\0';
	/* A cut name would address another object (a prefix of the one meant). */
	if (*in) {
		fprintf(stderr, "error: name too long\n");
		exit(2);
	}
}

static int cmd_get(struct client *c, const char *name)
{
	struct opts *o = c->o;
	char path[2048], ns[512], cont[1024] = "", q[256], ph[128];
	int wide = o->output && strcmp(o->output, "wide") == 0;
	int json = o->output && strcmp(o->output, "json") == 0;
	int names = o->output && strcmp(o->output, "name") == 0;
	json_t *all = json_array();

	esc(o->ns, ns, sizeof(ns));
	if (name) {
		char nm[512];
		json_t *t;
		esc(name, nm, sizeof(nm));
		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/tasks/%s", ns, nm);
		t = get_json(c, path);
		if (json) {
			json_dumpf(t, stdout, JSON_INDENT(2));
			putchar('\n');
		} else if (names)
			printf("task/%s\n", name);
		else {
			printf("%-30s %-10s %-5s %-8s %-20s %-6s%s\n", "NAME", "PHASE", "EXIT",
			       "ATTEMPTS", "RUNNER", "AGE",
			       wide ? " QUEUE        REASON           MESSAGE" : "");
			print_row(t, 0, wide);
		}
		json_decref(t);
		json_decref(all);
		return 0;
	}
	esc(o->queue ? o->queue : "", q, sizeof(q));
	esc(o->phase ? o->phase : "", ph, sizeof(ph));
	do {
		json_t *list, *items, *v;
		size_t i;
		char ce[1024];
		esc(cont, ce, sizeof(ce));
		snprintf(path, sizeof(path), "/api/v1/tasks?limit=500%s%s%s%s%s%s%s%s",
			 o->all_ns ? "" : "&namespace=", o->all_ns ? "" : ns, q[0] ? "&queue=" : "",
			 q, ph[0] ? "&phase=" : "", ph, cont[0] ? "&continue=" : "", ce);
		list = get_json(c, path);
		items = json_object_get(list, "items");
		json_array_foreach(items, i, v)
			json_array_append(all, v);
		snprintf(cont, sizeof(cont), "%s", sget(list, "metadata", "continue"));
		json_decref(list);
	} while (cont[0]);
	if (json) {
		json_t *l = json_pack("{sssss{}so}", "apiVersion", "tasked.dev/v1alpha1", "kind",
				      "TaskList", "metadata", "items", all);
		json_dumpf(l, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(l);
		return 0;
	}
	if (json_array_size(all) == 0) {
		if (o->all_ns)
			fprintf(stderr, "No tasks found.\n");
		else
			fprintf(stderr, "No tasks found in %s namespace.\n", o->ns);
	} else if (names) {
		size_t i;
		json_t *v;
		json_array_foreach(all, i, v)
			printf("task/%s\n", sget(v, "metadata", "name"));
	} else {
		size_t i;
		json_t *v;
		if (o->all_ns)
			printf("%-20s ", "NAMESPACE");
		printf("%-30s %-10s %-5s %-8s %-20s %-6s%s\n", "NAME", "PHASE", "EXIT", "ATTEMPTS",
		       "RUNNER", "AGE", wide ? " QUEUE        REASON           MESSAGE" : "");
		json_array_foreach(all, i, v)
			print_row(v, o->all_ns, wide);
	}
	json_decref(all);
	return 0;
}

struct logs_ctx {
	int rc;
};

/* Task output and task-supplied text on a terminal: control characters other than \n and \t
 * are shown (^[, ^M, \u009b), not obeyed, so a task cannot move the cursor, rewrite lines it
 * printed earlier, retitle the window or write the clipboard (OSC 52). Only on a terminal: a
 * pipe or a file gets the bytes exactly as the task wrote them, like kubectl logs. */
static void out_text(FILE *f, const char *s, size_t len)
{
	if (!isatty(fileno(f))) {
		fwrite(s, 1, len, f);
		return;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == 0xc2 && i + 1 < len && (unsigned char)s[i + 1] >= 0x80 &&
		    (unsigned char)s[i + 1] <= 0x9f) {
			fprintf(f, "\\u%04x", (unsigned char)s[i + 1]); /* a C1 control, e.g. CSI */
			i++;
		} else if (ch == 0x7f) {
			fputs("^?", f);
		} else if (ch < 0x20 && ch != '\n' && ch != '\t') {
			putc('^', f);
			putc(ch + 0x40, f);
		} else {
			putc(ch, f);
		}
	}
}

static int logs_event(void *ud, const char *event, const char *id, const char *data)
{
	struct logs_ctx *l = ud;
	json_t *j = json_loads(data, 0, NULL);
	if (strcmp(event, "log") == 0) {
		json_t *d = json_object_get(j, "data");
		const char *st = json_string_value(json_object_get(j, "stream"));
		FILE *f = st && strcmp(st, "stderr") == 0 ? stderr : stdout;
		if (json_is_string(d)) {
			out_text(f, json_string_value(d), json_string_length(d));
			fflush(f);
		}
	} else if (strcmp(event, "truncated") == 0) {
		fprintf(stderr,
			"[tasked: %lld earlier bytes are no longer held by the controller]\n",
			(long long)json_integer_value(json_object_get(j, "droppedBytes")));
	} else if (strcmp(event, "end") == 0) {
		json_decref(j);
		l->rc = 0;
		return SSE_STOP;
	}
	json_decref(j);
	return SSE_CONT;
}

static int cmd_logs(struct client *c, const char *name)
{
	char path[2048], ns[512], nm[512], att[64] = "";
	esc(c->o->ns, ns, sizeof(ns));
	esc(name, nm, sizeof(nm));
	if (c->o->attempt > 0)
		snprintf(att, sizeof(att), "%sattempt=%ld", c->o->follow ? "&" : "?",
			 c->o->attempt);
	if (c->o->follow) {
		struct logs_ctx l = { 1 };
		int r;
		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/tasks/%s/logs?follow=true%s",
			 ns, nm, att);
		r = sse_run(c, path, NULL, NULL, logs_event, &l, 0);
		return r == 0 ? l.rc : r;
	} else {
		long code = 0;
		char *body;
		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/tasks/%s/logs%s", ns, nm, att);
		body = http_get(c, path, "text/plain", &code);
		if (code != 200)
			api_fail(code, body);
		out_text(stdout, body, strlen(body));
		free(body);
		return 0;
	}
}

struct wait_ctx {
	struct client *c;
	const char *name;
	char uid[64];
	char last_line[512];
	int64_t start;
	int tty, done, rc;
};

/* Shows the task's state: one line rewritten in place on a terminal, a line per change else. */
static void wait_progress(struct wait_ctx *w, const char *phase, const char *reason,
			  json_int_t attempts, const char *runner)
{
	char line[512];
	double el = (double)(util_mono_ms() - w->start) / 1000.0;
	snprintf(line, sizeof(line), "task %s/%s: %s%s%s%s", w->c->o->ns, w->name,
		 phase && phase[0] ? phase : "Pending",
		 reason && reason[0] && (!phase || strcmp(reason, phase) != 0) ? " (" : "",
		 reason && reason[0] && (!phase || strcmp(reason, phase) != 0) ? reason : "",
		 reason && reason[0] && (!phase || strcmp(reason, phase) != 0) ? ")" : "");
	if (attempts > 0)
		snprintf(line + strlen(line), sizeof(line) - strlen(line), ", attempt %lld",
			 (long long)attempts);
	if (runner && runner[0])
		snprintf(line + strlen(line), sizeof(line) - strlen(line), " on %s", runner);
	if (w->tty) {
		fprintf(stderr, "\r\033[K%s  [%.1fs]", line, el);
	} else if (strcmp(line, w->last_line) != 0) {
		fprintf(stderr, "%s  [%.1fs]\n", line, el);
	}
	snprintf(w->last_line, sizeof(w->last_line), "%s", line);
	fflush(stderr);
}

static int wait_apply(struct wait_ctx *w, const char *phase, const char *reason,
		      json_int_t attempts, const char *runner)
{
	wait_progress(w, phase, reason, attempts, runner);
	if (phase_terminal(phase)) {
		if (w->tty)
			fputc('\n', stderr);
		w->done = 1;
		w->rc = phase_ok(phase) ? 0 : 1;
		return SSE_STOP;
	}
	return SSE_CONT;
}

static int wait_open(void *ud)
{
	struct wait_ctx *w = ud;
	char path[2048], ns[512], nm[512];
	json_t *t, *st;
	long code = 0;
	char *body;

	esc(w->c->o->ns, ns, sizeof(ns));
	esc(w->name, nm, sizeof(nm));
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/tasks/%s", ns, nm);
	body = http_get(w->c, path, "application/json", &code);
	if (code == 404) {
		free(body);
		fprintf(stderr, "task %s/%s not found yet; waiting for it\n", w->c->o->ns, w->name);
		return SSE_CONT;
	}
	if (code != 200)
		api_fail(code, body);
	t = json_loads(body, 0, NULL);
	free(body);
	st = json_object_get(t, "status");
	snprintf(w->uid, sizeof(w->uid), "%s", sget(t, "metadata", "uid"));
	{
		int r = wait_apply(w, json_string_value(json_object_get(st, "phase")),
				   json_string_value(json_object_get(st, "reason")),
				   json_integer_value(json_object_get(st, "attempts")),
				   json_string_value(json_object_get(st, "runner")));
		json_decref(t);
		return r;
	}
}

static int wait_event(void *ud, const char *event, const char *id, const char *data)
{
	struct wait_ctx *w = ud;
	json_t *j;
	int r = SSE_CONT;
	const char *type;

	if (strcmp(event, "gap") == 0)
		return wait_open(ud); /* events were missed: look at the task again */
	if (strcmp(event, "task") != 0)
		return SSE_CONT;
	j = json_loads(data, 0, NULL);
	if (strcmp(json_string_value(json_object_get(j, "name")) ?: "", w->name) != 0) {
		json_decref(j);
		return SSE_CONT;
	}
	type = json_string_value(json_object_get(j, "type")) ?: "";
	if (strcmp(type, "deleted") == 0) {
		if (w->tty)
			fputc('\n', stderr);
		fprintf(stderr, "task %s/%s was deleted\n", w->c->o->ns, w->name);
		w->done = 1;
		w->rc = 1;
		r = SSE_STOP;
	} else if (strcmp(type, "status") == 0) {
		r = wait_apply(w, json_string_value(json_object_get(j, "phase")),
			       json_string_value(json_object_get(j, "reason")),
			       json_integer_value(json_object_get(j, "attempts")),
			       json_string_value(json_object_get(j, "runner")));
	}
	json_decref(j);
	return r;
}

static int cmd_wait(struct client *c, const char *name)
{
	struct wait_ctx w = {
		.c = c, .name = name, .start = util_mono_ms(), .tty = isatty(2), .rc = 1
	};
	char path[1024], ns[512];
	int64_t deadline = c->o->timeout_s > 0 ? util_mono_ms() + c->o->timeout_s * 1000 : 0;
	int r;

	esc(c->o->ns, ns, sizeof(ns));
	snprintf(path, sizeof(path), "/api/v1/events?namespace=%s", ns);
	r = sse_run(c, path, NULL, wait_open, wait_event, &w, deadline);
	if (r == 2) {
		if (w.tty)
			fputc('\n', stderr);
		fprintf(stderr, "error: timed out after %lds waiting for task %s/%s\n",
			c->o->timeout_s, c->o->ns, name);
		return 2;
	}
	return w.done ? w.rc : r;
}

static int cmd_cancel(struct client *c, const char *name)
{
	const char *args[] = { "patch",
			       "tasks.tasked.dev",
			       name,
			       "--namespace",
			       c->o->ns,
			       "--type",
			       "merge",
			       "-p",
			       "{\"spec\":{\"cancel\":true}}",
			       NULL };
	char out[1024];
	int r = run_kubectl(args, out, sizeof(out), 0);
	if (r != 0)
		return 1;
	printf("task %s/%s cancel requested\n", c->o->ns, name);
	return 0;
}

static int events_event(void *ud, const char *event, const char *id, const char *data)
{
	struct client *c = ud;
	json_t *j;
	if (c->o->output && strcmp(c->o->output, "json") == 0) {
		if (strcmp(event, "gap") == 0)
			printf("{\"event\":\"gap\",\"data\":%s}\n", data);
		else
			printf("{\"id\":\"%s\",\"event\":\"%s\",\"data\":%s}\n", id, event, data);
		fflush(stdout);
		return SSE_CONT;
	}
	j = json_loads(data, 0, NULL);
	if (strcmp(event, "gap") == 0) {
		fprintf(stderr, "warning: %s\n",
			json_string_value(json_object_get(j, "message")) ?: "events were missed");
	} else if (strcmp(event, "task") == 0) {
		char who[512];
		snprintf(who, sizeof(who), "%s/%s",
			 json_string_value(json_object_get(j, "namespace")) ?: "",
			 json_string_value(json_object_get(j, "name")) ?: "");
		printf("%-18s %-24s %-8s %-40s %-10s %-16s %s\n", id,
		       json_string_value(json_object_get(j, "time")) ?: "",
		       json_string_value(json_object_get(j, "type")) ?: "", who,
		       json_string_value(json_object_get(j, "phase")) ?: "",
		       json_string_value(json_object_get(j, "reason")) ?: "",
		       json_string_value(json_object_get(j, "message")) ?: "");
		fflush(stdout);
	}
	json_decref(j);
	return SSE_CONT;
}

static int cmd_events(struct client *c)
{
	char path[2048], ns[512], q[512];
	esc(c->o->ns, ns, sizeof(ns));
	esc(c->o->queue ? c->o->queue : "", q, sizeof(q));
	snprintf(path, sizeof(path), "/api/v1/events?%s%s%s%s",
		 c->o->all_ns ? "" : "namespace=", c->o->all_ns ? "" : ns, q[0] ? "&queue=" : "",
		 q);
	if (!c->o->output || strcmp(c->o->output, "json") != 0)
		printf("%-18s %-24s %-8s %-40s %-10s %-16s %s\n", "ID", "TIME", "TYPE", "TASK",
		       "PHASE", "REASON", "MESSAGE");
	fflush(stdout);
	return sse_run(c, path, c->o->since, NULL, events_event, c, 0) == 130 ? 0 : 1;
}

/* --- main ------------------------------------------------------------------------------------ */

static void default_namespace(struct opts *o, char *out, size_t outsz)
{
	const char *args[] = { "config", "view", "--minify", "-o", "jsonpath={..namespace}", NULL };
	if (run_kubectl(args, out, outsz, 1) != 0 || !out[0])
		snprintf(out, outsz, "default");
	util_rstrip(out);
	if (!out[0])
		snprintf(out, outsz, "default");
}

int main(int argc, char **argv)
{
	enum {
		O_URL = 256,
		O_KEYFILE,
		O_KC,
		O_CTX,
		O_CACERT,
		O_INSEC,
		O_SVC,
		O_SECRET,
		O_PHASE,
		O_QUEUE,
		O_SINCE,
		O_ATTEMPT,
		O_TIMEOUT,
		O_HELP
	};
	static const struct option lo[] = {
		{ "namespace", required_argument, NULL, 'n' },
		{ "all-namespaces", no_argument, NULL, 'A' },
		{ "follow", no_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'o' },
		{ "api-url", required_argument, NULL, O_URL },
		{ "api-key-file", required_argument, NULL, O_KEYFILE },
		{ "kubeconfig", required_argument, NULL, O_KC },
		{ "context", required_argument, NULL, O_CTX },
		{ "cacert", required_argument, NULL, O_CACERT },
		{ "insecure-skip-tls-verify", no_argument, NULL, O_INSEC },
		{ "service", required_argument, NULL, O_SVC },
		{ "api-key-secret", required_argument, NULL, O_SECRET },
		{ "phase", required_argument, NULL, O_PHASE },
		{ "queue", required_argument, NULL, O_QUEUE },
		{ "since", required_argument, NULL, O_SINCE },
		{ "attempt", required_argument, NULL, O_ATTEMPT },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .service = "tasked/tasked:8080",
			  .key_secret = "tasked/tasked-api-key:api-key" };
	char nsbuf[256];
	const char *cmd, *arg;
	int c, rc;

	while ((c = getopt_long(argc, argv, "n:Afo:h", lo, NULL)) != -1) {
		switch (c) {
		case 'n':
			o.ns = optarg;
			break;
		case 'A':
			o.all_ns = 1;
			break;
		case 'f':
			o.follow = 1;
			break;
		case 'o':
			o.output = optarg;
			break;
		case O_URL:
			o.api_url = optarg;
			break;
		case O_KEYFILE:
			o.key_file = optarg;
			break;
		case O_KC:
			o.kubeconfig = optarg;
			break;
		case O_CTX:
			o.context = optarg;
			break;
		case O_CACERT:
			o.cacert = optarg;
			break;
		case O_INSEC:
			o.insecure = 1;
			break;
		case O_SVC:
			o.service = optarg;
			break;
		case O_SECRET:
			o.key_secret = optarg;
			break;
		case O_PHASE:
			o.phase = optarg;
			break;
		case O_QUEUE:
			o.queue = optarg;
			break;
		case O_SINCE:
			o.since = optarg;
			break;
		case O_ATTEMPT:
			if (util_parse_long(optarg, 1, 1000000, &o.attempt) < 0)
				die("--attempt takes a positive number");
			break;
		case O_TIMEOUT:
			if (util_parse_long(optarg, 1, 7 * 86400, &o.timeout_s) < 0)
				die("--timeout takes seconds");
			break;
		case 'h':
		case O_HELP:
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind];
	arg = optind + 1 < argc ? argv[optind + 1] : NULL;
	if (arg && strncmp(arg, "task/", 5) == 0)
		arg += 5;
	if (optind + 2 < argc)
		die("unexpected argument %s", argv[optind + 2]);
	g_client.o = &o;
	if (!o.ns) {
		default_namespace(&o, nsbuf, sizeof(nsbuf));
		o.ns = nsbuf;
	}
	if (strcmp(cmd, "cancel") == 0) {
		if (!arg)
			die("cancel needs a TASK");
		return cmd_cancel(&g_client, arg);
	}
	if (strcmp(cmd, "get") && strcmp(cmd, "logs") && strcmp(cmd, "wait") &&
	    strcmp(cmd, "events")) {
		usage(stderr);
		return 2;
	}
	if ((strcmp(cmd, "logs") == 0 || strcmp(cmd, "wait") == 0) && !arg)
		die("%s needs a TASK", cmd);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	client_init(&g_client, &o);
	if (strcmp(cmd, "get") == 0)
		rc = cmd_get(&g_client, arg);
	else if (strcmp(cmd, "logs") == 0)
		rc = cmd_logs(&g_client, arg);
	else if (strcmp(cmd, "wait") == 0)
		rc = cmd_wait(&g_client, arg);
	else
		rc = cmd_events(&g_client);
	pf_stop();
	if (g_client.key) {
		OPENSSL_cleanse(g_client.key, strlen(g_client.key));
		free(g_client.key);
	}
	curl_global_cleanup();
	return rc;
}
