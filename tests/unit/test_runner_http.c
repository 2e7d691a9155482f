/* The http and remote executors against build/tools/httpcount on 127.0.0.1, 127.0.0.2,
 * 127.0.0.3 and ::1 (real sockets). Loopback is blocked by default, so the "allowed" host is
 * 127.0.0.2 (or 127.0.0.2-3) through the queue policy's allowedCIDRs; 127.0.0.1 and ::1 must see
 * zero requests. */
#include "exec.h"
#include "http.h"
#include "log.h"
#include "proto.h"
#include "tap.h"
#include "util.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define HTTPCOUNT "build/tools/httpcount"

static char dir[64], logpath[128];
static int port;
static pid_t server;

struct seen {
	struct buf logs;
	int started;
};

static void on_started(void *ud, int64_t ms)
{
	struct seen *s = ud;
	s->started++;
	(void)ms;
}

static int on_log(void *ud, const char *stream, int64_t seq, const char *data, size_t len)
{
	struct seen *s = ud;
	(void)stream;
	(void)seq;
	(void)buf_append(&s->logs, data, len);
	return 0;
}

static int start_server(void)
{
	char portfile[128], *txt = NULL;
	snprintf(logpath, sizeof(logpath), "%s/requests.log", dir);
	snprintf(portfile, sizeof(portfile), "%s/port", dir);
	server = fork();
	if (server == 0) {
		execl(HTTPCOUNT, HTTPCOUNT, "--listen", "127.0.0.1", "--listen", "127.0.0.2",
		      "--listen", "127.0.0.3", "--listen", "::1", "--log", logpath, "--port-file",
		      portfile, "--max-seconds", "300", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200; i++) {
		if (util_read_file(portfile, 64, &txt, NULL) == 0 && atoi(txt) > 0) {
			port = atoi(txt);
			free(txt);
			return 0;
		}
		free(txt);
		txt = NULL;
		usleep(10 * 1000);
	}
	return -1;
}

/* Requests the server got on addr whose path starts with prefix (NULL: any). */
static int count(const char *addr, const char *prefix)
{
	char *txt = NULL, *line, *save = NULL;
	int n = 0;
	if (util_read_file(logpath, 64 * 1024 * 1024, &txt, NULL) < 0)
		return 0;
	for (line = strtok_r(txt, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(line, 0, NULL);
		const char *a = json_string_value(json_object_get(j, "addr"));
		const char *p = json_string_value(json_object_get(j, "path"));
		if (a && p && (!addr || strcmp(a, addr) == 0) &&
		    (!prefix || strncmp(p, prefix, strlen(prefix)) == 0))
			n++;
		json_decref(j);
	}
	free(txt);
	return n;
}

/* The last request's headers object (new reference) on addr with path prefix. */
static json_t *last_request(const char *addr, const char *prefix)
{
	char *txt = NULL, *line, *save = NULL;
	json_t *last = NULL;
	if (util_read_file(logpath, 64 * 1024 * 1024, &txt, NULL) < 0)
		return NULL;
	for (line = strtok_r(txt, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(line, 0, NULL);
		const char *a = json_string_value(json_object_get(j, "addr"));
		const char *p = json_string_value(json_object_get(j, "path"));
		if (a && p && strcmp(a, addr) == 0 && strncmp(p, prefix, strlen(prefix)) == 0) {
			json_decref(last);
			last = json_incref(j);
		}
		json_decref(j);
	}
	free(txt);
	return last;
}

static char *url(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *url(const char *fmt, ...)
{
	static char bufs[8][1024];
	static int k;
	char tmp[1024], *out = bufs[k++ % 8];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	/* PORT stands for the server's port, wherever it appears */
	out[0] = '\0';
	for (char *p = tmp, *q; *p; p = q + 4) {
		size_t ol = strlen(out);
		if (!(q = strstr(p, "PORT"))) {
			snprintf(out + ol, 1024 - ol, "%s", p);
			break;
		}
		snprintf(out + ol, 1024 - ol, "%.*s%d", (int)(q - p), p, port);
	}
	return out;
}

struct run_opts {
	json_t *policy, *env, *input, *limits;
	int64_t deadline_ms;
	int cancel_after_ms;
};

struct canceller {
	struct exec_task *t;
	int ms;
};

static void *cancel_later(void *p)
{
	struct canceller *c = p;
	usleep((useconds_t)c->ms * 1000);
	exec_task_kill(c->t, EXEC_KILL_CANCEL);
	return NULL;
}

/* Runs a dispatch with the executor object kind: spec (stolen) and the options (stolen). */
static void run(const char *kind, json_t *spec, struct run_opts *o, struct seen *s,
		struct exec_result *res)
{
	json_t *d = json_pack("{sssssIssss}", "type", "dispatch", "taskUid", "uid-h", "attempt",
			      (json_int_t)1, "namespace", "default", "name", "h");
	struct run_opts none = { 0 };
	struct proto_msg m;
	struct exec_task *t = NULL;
	struct exec_opts eo = { .work_root = dir, .drop_uid = geteuid() == 0 };
	struct exec_hooks hooks = { on_started, on_log, s };
	char err[256], *text;
	size_t len;
	pthread_t th;

	if (!o)
		o = &none;
	json_object_set_new(d, kind, spec);
	if (o->policy)
		json_object_set_new(d, "policy", o->policy);
	if (o->env)
		json_object_set_new(d, "env", o->env);
	if (o->input)
		json_object_set_new(d, "input", o->input);
	if (o->limits)
		json_object_set_new(d, "limits", o->limits);
	if (o->deadline_ms)
		json_object_set_new(d, "deadline", json_integer(o->deadline_ms));
	o->policy = o->env = o->input = o->limits = NULL; /* stolen */
	buf_free(&s->logs);
	buf_init(&s->logs, 64 * 1024 * 1024);
	s->started = 0;
	if (proto_encode(d, PROTO_MAX_MESSAGE_DEFAULT, &text, &len) < 0)
		abort();
	json_decref(d);
	if (proto_decode(text, len, PROTO_MAX_MESSAGE_DEFAULT, PROTO_FROM_CONTROLLER, &m, err,
			 sizeof(err)) < 0) {
		diag("decode: %s", err);
		abort();
	}
	free(text);
	if (exec_task_new(&m, &eo, &t) < 0)
		abort();
	proto_msg_free(&m);
	if (o->cancel_after_ms) {
		struct canceller *c = malloc(sizeof(*c));
		c->t = t;
		c->ms = o->cancel_after_ms;
		pthread_create(&th, NULL, cancel_later, c);
		exec_task_run(t, &hooks, res);
		pthread_join(th, NULL);
		free(c);
	} else {
		exec_task_run(t, &hooks, res);
	}
	exec_task_free(t);
	(void)buf_append(&s->logs, "", 0);
}

static json_t *allow(const char *cidr)
{
	return json_pack("{s{s[s]}}", "http", "allowedCIDRs", cidr);
}

static int logs_have(struct seen *s, const char *needle)
{
	return s->logs.data && strstr(s->logs.data, needle) != NULL;
}

static void test_blocked_matrix(void)
{
	const char *urls[] = {
		"http://127.0.0.1:PORT/",
		"http://[::1]:PORT/",
		"http://localhost:PORT/",
		"http://127.1:PORT/",
		"http://0x7f000001:PORT/",
		"http://2130706433:PORT/",
		"http://0177.0.0.1:PORT/",
		"http://0x7f.1:PORT/",
		"http://[::ffff:127.0.0.1]:PORT/",
		"http://[::ffff:7f00:1]:PORT/",
		"http://[0:0:0:0:0:ffff:127.0.0.1]:PORT/",
		"http://0.0.0.0:PORT/",
		"http://0:PORT/",
		"http://169.254.169.254/latest/meta-data/",
		"http://[fd00:ec2::254]/",
		"http://10.0.0.1:PORT/",
		"http://[64:ff9b::7f00:1]:PORT/",
		"http://user:pw@127.0.0.1:PORT/x?token=abc",
		"https://127.0.0.1:PORT/",
		"HTTP://LOCALHOST:PORT/",
		"http://127.0.0.1:PORT/redirect?to=http://8.8.8.8/",
		"file:///etc/passwd",
		"gopher://127.0.0.1:PORT/_GET%20/",
		"ftp://127.0.0.1:PORT/",
		"dict://127.0.0.1:PORT/",
		"ldap://127.0.0.1:PORT/",
		"telnet://127.0.0.1:PORT/",
	};
	struct seen s = { 0 };
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		struct exec_result r;
		run("http", json_pack("{ss}", "url", url("%s", urls[i])), NULL, &s, &r);
		ok(strcmp(r.phase, "Failed") == 0 && strcmp(r.reason, "SSRFBlocked") == 0,
		   "%s: Failed/SSRFBlocked (%s: %s)", urls[i], r.reason, r.message);
		if (strstr(urls[i], "token=abc"))
			ok(!strstr(r.message, "token=abc") && !strstr(r.message, "pw@") &&
				   !logs_have(&s, "token=abc"),
			   "the query string and user info are never quoted");
		exec_result_free(&r);
	}
	buf_free(&s.logs);
	is_int(count("127.0.0.1", NULL), 0, "127.0.0.1 received zero requests");
	is_int(count("::1", NULL), 0, "::1 received zero requests");
}

/* A JSON response nested past the output limit fails the attempt, whether the parser could
 * take it (2047) or not (3000); 64 levels are output as usual. */
static void test_deep_output(void)
{
	static const struct {
		const char *path, *phase, *reason;
	} cases[] = {
		{ "/deep?n=64", "Succeeded", "Succeeded" },
		{ "/deep?n=65", "Failed", "OutputTooDeep" },
		{ "/deep?n=2047", "Failed", "OutputTooDeep" },
		{ "/deep?n=3000", "Failed", "OutputTooDeep" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct seen s = { 0 };
		struct exec_result r;
		struct run_opts o = { 0 };
		o.policy = allow("127.0.0.2/32");
		run("http", json_pack("{ss}", "url", url("http://127.0.0.2:PORT%s", cases[i].path)),
		    &o, &s, &r);
		ok(strcmp(r.phase, cases[i].phase) == 0 && strcmp(r.reason, cases[i].reason) == 0 &&
			   (strcmp(cases[i].phase, "Succeeded") == 0) == (r.output != NULL),
		   "GET %s: %s/%s (%s)", cases[i].path, cases[i].phase, cases[i].reason, r.message);
		exec_result_free(&r);
		buf_free(&s.logs);
	}
}

static void test_allowed(void)
{
	struct seen s = { 0 };
	struct exec_result r;
	struct run_opts o = { 0 };
	json_t *req;

	o.policy = allow("127.0.0.2/32");
	run("http", json_pack("{ss}", "url", url("http://127.0.0.2:PORT/json")), &o, &s, &r);
	ok(strcmp(r.phase, "Succeeded") == 0 && r.http_status == 200,
	   "allowedCIDRs 127.0.0.2/32: GET /json succeeds (%s)", r.message);
	ok(r.output && json_is_true(json_object_get(r.output, "ok")),
	   "the JSON body is the output");
	ok(s.started == 1, "started reported once");
	ok(logs_have(&s, "\"ok\":true") && logs_have(&s, "> GET http://127.0.0.2:"),
	   "body and request line in the logs");
	ok(r.exit_code == -1, "no exit code for http tasks");
	{
		json_t *j = exec_result_json("uid-h", 1, &r);
		ok(j && json_integer_value(json_object_get(j, "httpStatus")) == 200 &&
			   !json_object_get(j, "exitCode"),
		   "the result message carries httpStatus");
		json_decref(j);
	}
	exec_result_free(&r);

	/* input becomes the body of a POST, as JSON */
	o.policy = allow("127.0.0.2/32");
	o.input = json_pack("{si}", "n", 7);
	run("http", json_pack("{ss}", "url", url("http://127.0.0.2:PORT/echo")), &o, &s, &r);
	o.input = NULL;
	ok(r.output &&
		   strcmp(json_string_value(json_object_get(r.output, "method")), "POST") == 0 &&
		   strcmp(json_string_value(json_object_get(r.output, "body")), "{\"n\":7}") == 0 &&
		   strcmp(json_string_value(json_object_get(json_object_get(r.output, "headers"),
							    "content-type")),
			  "application/json") == 0,
	   "no method and no body: POST of the input as application/json");
	exec_result_free(&r);

	/* non-success codes */
	o.policy = allow("127.0.0.2/32");
	run("http", json_pack("{ss}", "url", url("http://127.0.0.2:PORT/status/404")), &o, &s, &r);
	ok(strcmp(r.phase, "Failed") == 0 && strcmp(r.reason, "HTTPStatus") == 0 &&
		   r.http_status == 404,
	   "404: Failed/HTTPStatus, httpStatus 404 (%s)", r.message);
	exec_result_free(&r);
	o.policy = allow("127.0.0.2/32");
	run("http",
	    json_pack("{sss[i]}", "url", url("http://127.0.0.2:PORT/status/404"), "successCodes",
		      404),
	    &o, &s, &r);
	ok(strcmp(r.phase, "Succeeded") == 0, "successCodes [404]: 404 succeeds");
	exec_result_free(&r);

	/* methods and explicit bodies */
	o.policy = allow("127.0.0.2/32");
	o.env = json_pack("[{ssss}]", "name", "WHO", "value", "world");
	run("http",
	    json_pack("{sssssss[{ssss}]}", "url", url("http://127.0.0.2:PORT/echo"), "method",
		      "PUT", "body", "hello $(WHO)", "headers", "name", "X-Who", "value", "$(WHO)"),
	    &o, &s, &r);
	req = r.output;
	ok(req && strcmp(json_string_value(json_object_get(req, "method")), "PUT") == 0 &&
		   strcmp(json_string_value(json_object_get(req, "body")), "hello world") == 0 &&
		   strcmp(json_string_value(
				  json_object_get(json_object_get(req, "headers"), "x-who")),
			  "world") == 0,
	   "PUT with $(VAR) expanded in body and header from the task's env");
	exec_result_free(&r);

	/* header injection through an env value */
	o.policy = allow("127.0.0.2/32");
	o.env = json_pack("[{ssss}]", "name", "X", "value", "a\r\nEvil: 1");
	run("http",
	    json_pack("{sss[{ssss}]}", "url", url("http://127.0.0.2:PORT/echo?inject"), "headers",
		      "name", "X-A", "value", "$(X)"),
	    &o, &s, &r);
	ok(strcmp(r.reason, "InvalidSpec") == 0 && count("127.0.0.2", "/echo?inject") == 0,
	   "a CR/LF in an expanded header value: InvalidSpec, nothing sent (%s)", r.message);
	exec_result_free(&r);
	buf_free(&s.logs);
}

static void test_redirects_and_caps(void)
{
	struct seen s = { 0 };
	struct exec_result r;
	struct run_opts o = { 0 };
	int before1 = count("127.0.0.1", NULL), before6 = count("::1", NULL);
	json_t *h;

	o.policy = allow("127.0.0.2/32");
	run("http",
	    json_pack(
		    "{ss}", "url",
		    url("http://127.0.0.2:PORT/redirect?to=http%%3A%%2F%%2F127.0.0.1%%3APORT%%2Fjson")),
	    &o, &s, &r);
	ok(strcmp(r.reason, "SSRFBlocked") == 0 && strstr(r.message, "redirect"),
	   "allowed host redirecting to 127.0.0.1: SSRFBlocked (%s)", r.message);
	ok(count("127.0.0.2", "/redirect") >= 1, "the allowed host got the first request");
	exec_result_free(&r);
	o.policy = allow("127.0.0.2/32");
	run("http",
	    json_pack(
		    "{ss}", "url",
		    url("http://127.0.0.2:PORT/redirect?to=http%%3A%%2F%%2Flocalhost%%3APORT%%2Fjson")),
	    &o, &s, &r);
	ok(strcmp(r.reason, "SSRFBlocked") == 0,
	   "redirect to localhost (a name): refused at connect (%s)", r.message);
	exec_result_free(&r);
	o.policy = allow("127.0.0.2/32");
	run("http",
	    json_pack(
		    "{ss}", "url",
		    url("http://127.0.0.2:PORT/redirect?to=http%%3A%%2F%%2F%%5B%%3A%%3A1%%5D%%3APORT%%2F")),
	    &o, &s, &r);
	ok(strcmp(r.reason, "SSRFBlocked") == 0, "redirect to [::1]: SSRFBlocked (%s)", r.message);
	exec_result_free(&r);
	o.policy = allow("127.0.0.2/32");
	run("http",
	    json_pack("{ss}", "url",
		      url("http://127.0.0.2:PORT/redirect?to=file%%3A%%2F%%2F%%2Fetc%%2Fpasswd")),
	    &o, &s, &r);
	ok(strcmp(r.reason, "SSRFBlocked") == 0 && strstr(r.message, "scheme"),
	   "redirect to file://: SSRFBlocked (%s)", r.message);
	exec_result_free(&r);
	is_int(count("127.0.0.1", NULL) - before1, 0,
	       "127.0.0.1 received zero requests from the redirects");
	is_int(count("::1", NULL) - before6, 0, "::1 received zero requests from the redirects");

	/* redirects inside what is allowed; the limit */
	o.policy = allow("127.0.0.2/32");
	run("http", json_pack("{ss}", "url", url("http://127.0.0.2:PORT/redirect?to=%%2Fjson")), &o,
	    &s, &r);
	ok(strcmp(r.phase, "Succeeded") == 0 && r.output,
	   "relative redirect on the same host is followed (%s)", r.message);
	ok(!logs_have(&s, "moved"), "the redirect's own body is not logged");
	exec_result_free(&r);
	o.policy = allow("127.0.0.2/32");
	run("http",
	    json_pack("{sssi}", "url", url("http://127.0.0.2:PORT/redirect?to=%%2Fjson"),
		      "maxRedirects", 0),
	    &o, &s, &r);
	ok(strcmp(r.reason, "TooManyRedirects") == 0, "maxRedirects 0: TooManyRedirects (%s)",
	   r.message);
	exec_result_free(&r);
	o.policy = json_pack("{s{s[s]si}}", "http", "allowedCIDRs", "127.0.0.2/32", "maxRedirects",
			     0);
	run("http",
	    json_pack("{sssi}", "url", url("http://127.0.0.2:PORT/redirect?to=%%2Fjson"),
		      "maxRedirects", 5),
	    &o, &s, &r);
	ok(strcmp(r.reason, "TooManyRedirects") == 0,
	   "the queue's maxRedirects 0 wins over the task's 5");
	exec_result_free(&r);
	o.policy = allow("127.0.0.2/32");
	run("http",
	    json_pack("{sssb}", "url", url("http://127.0.0.2:PORT/redirect?to=%%2Fjson"),
		      "followRedirects", 0),
	    &o, &s, &r);
	ok(strcmp(r.reason, "HTTPStatus") == 0 && r.http_status == 302,
	   "followRedirects false: the 302 is the answer");
	exec_result_free(&r);

	/* credentials never follow a redirect to another origin */
	o.policy = allow("127.0.0.0/29");
	o.env = json_pack("[{sssssb}]", "name", "TOKEN", "value", "s3cr3t-token-value", "secret",
			  1);
	run("http",
	    json_pack(
		    "{sss[{ssss}{ssss}]}", "url",
		    url("http://127.0.0.2:PORT/redirect?to=http%%3A%%2F%%2F127.0.0.3%%3APORT%%2Fecho%%3Fcreds"),
		    "headers", "name", "Authorization", "value", "Bearer $(TOKEN)", "name",
		    "X-Plain", "value", "plain"),
	    &o, &s, &r);
	h = last_request("127.0.0.3", "/echo?creds");
	ok(strcmp(r.phase, "Succeeded") == 0 && h, "cross-origin redirect followed (%s)",
	   r.message);
	ok(h && !json_object_get(json_object_get(h, "headers"), "authorization") &&
		   json_object_get(json_object_get(h, "headers"), "x-plain"),
	   "Authorization dropped on the cross-origin hop, other headers kept");
	json_decref(h);
	h = last_request("127.0.0.2", "/redirect");
	ok(h && json_object_get(json_object_get(h, "headers"), "authorization"),
	   "the first origin got Authorization");
	json_decref(h);
	exec_result_free(&r);

	/* 307/308 would resend the body: never to another origin */
	for (int code = 307; code <= 308; code++) {
		int before = count("127.0.0.3", "/echo?body");
		o.policy = allow("127.0.0.0/29");
		o.env = json_pack("[{sssssb}]", "name", "TOKEN", "value", "s3cr3t-body-value",
				  "secret", 1);
		run("http",
		    json_pack(
			    "{sssssss[{ssss}]}", "url",
			    url("http://127.0.0.2:PORT/redirect?code=%d&to=http%%3A%%2F%%2F127.0.0.3%%3APORT%%2Fecho%%3Fbody",
				code),
			    "method", "POST", "body", "token=$(TOKEN)", "headers", "name",
			    "Content-Type", "value", "text/plain"),
		    &o, &s, &r);
		ok(strcmp(r.phase, "Failed") == 0 && strcmp(r.reason, "RedirectRefused") == 0 &&
			   r.http_status == code,
		   "a cross-origin %d with a body is refused (%s: %s)", code, r.reason, r.message);
		is_int(count("127.0.0.3", "/echo?body") - before, 0,
		       "... the other origin received nothing");
		h = last_request("127.0.0.2", "/redirect");
		ok(h && strstr(json_string_value(json_object_get(h, "body")), "s3cr3t-body-value"),
		   "... while the origin the task named got the body");
		json_decref(h);
		exec_result_free(&r);
	}
	o.policy = allow("127.0.0.0/29");
	o.env = json_pack("[{sssssb}]", "name", "TOKEN", "value", "s3cr3t-body-value", "secret", 1);
	run("http",
	    json_pack("{sssssss[{ssss}]}", "url",
		      url("http://127.0.0.2:PORT/redirect?code=307&to=%%2Fecho%%3Fsame"), "method",
		      "POST", "body", "token=$(TOKEN)", "headers", "name", "Content-Type", "value",
		      "text/plain"),
	    &o, &s, &r);
	h = last_request("127.0.0.2", "/echo?same");
	ok(strcmp(r.phase, "Succeeded") == 0 && h && json_is_string(json_object_get(h, "body")) &&
		   strcmp(json_string_value(json_object_get(h, "body")),
			  "token=s3cr3t-body-value") == 0,
	   "a same-origin 307 still resends the body (%s)", r.message);
	json_decref(h);
	exec_result_free(&r);
	o.policy = allow("127.0.0.0/29");
	run("http",
	    json_pack(
		    "{ss}", "url",
		    url("http://127.0.0.2:PORT/redirect?code=307&to=http%%3A%%2F%%2F127.0.0.3%%3APORT%%2Fjson")),
	    &o, &s, &r);
	ok(strcmp(r.phase, "Succeeded") == 0, "a cross-origin 307 without a body is followed (%s)",
	   r.message);
	exec_result_free(&r);

	/* body caps */
	o.policy = allow("127.0.0.2/32");
	run("http",
	    json_pack("{sssI}", "url", url("http://127.0.0.2:PORT/big?n=2000000"),
		      "maxResponseBytes", (json_int_t)100000),
	    &o, &s, &r);
	ok(strcmp(r.reason, "ResponseTooLarge") == 0 && strstr(r.message, "Content-Length"),
	   "Content-Length over maxResponseBytes: refused before the body (%s)", r.message);
	ok(s.logs.len < 2000, "no body bytes were logged (%zu)", s.logs.len);
	exec_result_free(&r);
	o.policy = allow("127.0.0.2/32");
	run("http",
	    json_pack("{sssI}", "url", url("http://127.0.0.2:PORT/chunked?n=5000000"),
		      "maxResponseBytes", (json_int_t)100000),
	    &o, &s, &r);
	ok(strcmp(r.reason, "ResponseTooLarge") == 0 && strstr(r.message, "streaming"),
	   "chunked body over maxResponseBytes: stopped while streaming (%s)", r.message);
	ok(s.logs.len <= 100000 + 2000, "at most the cap was read (%zu bytes logged)", s.logs.len);
	exec_result_free(&r);
	o.policy = json_pack("{s{s[s]sI}}", "http", "allowedCIDRs", "127.0.0.2/32",
			     "maxResponseBytes", (json_int_t)1000);
	run("http",
	    json_pack("{sssI}", "url", url("http://127.0.0.2:PORT/big?n=5000"), "maxResponseBytes",
		      (json_int_t)1000000),
	    &o, &s, &r);
	ok(strcmp(r.reason, "ResponseTooLarge") == 0,
	   "the queue's maxResponseBytes wins over a larger task value");
	exec_result_free(&r);
	o.policy = allow("127.0.0.2/32");
	run("http", json_pack("{ss}", "url", url("http://127.0.0.2:PORT/big?n=40000")), &o, &s, &r);
	ok(strcmp(r.phase, "Succeeded") == 0 && !r.output &&
		   strstr(r.message, "not kept as output"),
	   "a 40 KB body: succeeds, not kept as output (%s)", r.message);
	exec_result_free(&r);
	buf_free(&s.logs);
}

static void test_oauth(void)
{
	struct seen s = { 0 };
	struct exec_result r;
	struct run_opts o = { 0 };
	int t0;
	json_t *spec;

	httpx_token_cache_clear();
	t0 = count("127.0.0.2", "/token");
#define OAUTH_SPEC(expires)                                                                    \
	json_pack("{sss{sssssss[ss]}}", "url", url("http://127.0.0.2:PORT/api"), "oauth2",     \
		  "tokenURL", url("http://127.0.0.2:PORT/token?expires=" expires), "clientID", \
		  "client-1", "clientSecret", "client-secret-value", "scopes", "read", "write")
	o.policy = allow("127.0.0.2/32");
	run("http", OAUTH_SPEC("3600"), &o, &s, &r);
	ok(strcmp(r.phase, "Succeeded") == 0 && r.output &&
		   strncmp(json_string_value(json_object_get(r.output, "auth")), "Bearer tok-",
			   11) == 0,
	   "oauth2: the API got the token as a Bearer (%s)", r.message);
	is_int(count("127.0.0.2", "/token") - t0, 1, "one token request");
	ok(!logs_have(&s, "access_token") && !logs_have(&s, "client-secret-value"),
	   "the token response is not logged");
	exec_result_free(&r);
	{
		json_t *tr = last_request("127.0.0.2", "/token");
		const char *body = json_string_value(json_object_get(tr, "body"));
		ok(body && strstr(body, "grant_type=client_credentials") &&
			   strstr(body, "scope=read%20write"),
		   "client_credentials grant with the scopes (%s)", body ? body : "");
		ok(tr && strncmp(json_string_value(json_object_get(json_object_get(tr, "headers"),
								   "authorization")),
				 "Basic ", 6) == 0,
		   "client authenticates with HTTP Basic");
		json_decref(tr);
	}
	o.policy = allow("127.0.0.2/32");
	run("http", OAUTH_SPEC("3600"), &o, &s, &r);
	ok(strcmp(r.phase, "Succeeded") == 0, "second run succeeds");
	is_int(count("127.0.0.2", "/token") - t0, 1,
	       "the cached token was used: still one token request");
	exec_result_free(&r);
	/* expires_in 2: cached for 1 s (shortly before expiry), then fetched again */
	o.policy = allow("127.0.0.2/32");
	run("http", OAUTH_SPEC("2"), &o, &s, &r);
	is_int(count("127.0.0.2", "/token") - t0, 2,
	       "another client (other token URL): its own token");
	exec_result_free(&r);
	usleep(1200 * 1000);
	o.policy = allow("127.0.0.2/32");
	run("http", OAUTH_SPEC("2"), &o, &s, &r);
	ok(strcmp(r.phase, "Succeeded") == 0 && count("127.0.0.2", "/token") - t0 == 3,
	   "a token near its expiry is not reused (%d token requests)",
	   count("127.0.0.2", "/token") - t0);
	exec_result_free(&r);

	/* the token URL passes the same policy */
	spec = json_pack("{sss{ssss}}", "url", url("http://127.0.0.2:PORT/api"), "oauth2",
			 "tokenURL", url("http://127.0.0.1:PORT/token"), "clientID", "c");
	o.policy = allow("127.0.0.2/32");
	run("http", spec, &o, &s, &r);
	ok(strcmp(r.reason, "SSRFBlocked") == 0 && strstr(r.message, "oauth2"),
	   "token URL on 127.0.0.1: SSRFBlocked (%s)", r.message);
	ok(count("127.0.0.2", "/api?never") == 0 && count("127.0.0.1", NULL) == 0,
	   "no request went out");
	exec_result_free(&r);
	spec = json_pack("{sss{ssss}}", "url", url("http://127.0.0.2:PORT/api"), "oauth2",
			 "tokenURL", url("http://127.0.0.2:PORT/redirect?to=%%2Ftoken"), "clientID",
			 "c");
	o.policy = allow("127.0.0.2/32");
	run("http", spec, &o, &s, &r);
	ok(strcmp(r.reason, "OAuth2Failed") == 0 && strstr(r.message, "not followed"),
	   "a redirecting token endpoint is not followed (%s)", r.message);
	exec_result_free(&r);
	buf_free(&s.logs);
}

static void test_remote(void)
{
	struct seen s = { 0 };
	struct exec_result r;
	struct run_opts o = { 0 };
	json_t *got, *env;
	char *dump;

	o.policy = allow("127.0.0.2/32");
	o.env = json_pack("[{ssss}{sssssb}]", "name", "PLAIN", "value", "visible", "name",
			  "API_KEY", "value", "key-6f1e2d3c", "secret", 1);
	o.input = json_pack("{sss[s]}", "note", "carries key-6f1e2d3c inside", "list",
			    "key-6f1e2d3c");
	run("remote",
	    json_pack("{sss[{sssssb}]}", "url", url("http://127.0.0.2:PORT/remote"), "headers",
		      "name", "X-Remote-Auth", "value", "remote-header-secret", "secret", 1),
	    &o, &s, &r);
	ok(strcmp(r.phase, "Succeeded") == 0 && r.http_status == 200, "remote: Succeeded (%s)",
	   r.message);
	got = json_object_get(r.output, "got");
	dump = got ? json_dumps(got, JSON_COMPACT) : NULL;
	ok(got && json_is_object(json_object_get(got, "task")) && json_object_get(got, "input"),
	   "the service received {task, input}");
	env = json_object_get(json_object_get(got, "task"), "env");
	ok(json_array_size(env) == 1 &&
		   strcmp(json_string_value(json_object_get(json_array_get(env, 0), "name")),
			  "PLAIN") == 0,
	   "only the non-secret env entry was sent");
	ok(dump && !strstr(dump, "key-6f1e2d3c") && strstr(dump, "carries *** inside"),
	   "a secret value inside the input is replaced by ***");
	ok(dump && !strstr(dump, "remote-header-secret") && !strstr(dump, "/remote") &&
		   !strstr(dump, "X-Remote"),
	   "the remote URL and headers are not in the body");
	free(dump);
	{
		json_t *h = last_request("127.0.0.2", "/remote");
		ok(h && strcmp(json_string_value(json_object_get(json_object_get(h, "headers"),
								 "x-remote-auth")),
			       "remote-header-secret") == 0,
		   "the remote's own header authenticates the call");
		json_decref(h);
	}
	exec_result_free(&r);

	o.policy = allow("127.0.0.2/32");
	run("remote", json_pack("{ss}", "url", url("http://127.0.0.2:PORT/remote-fail")), &o, &s,
	    &r);
	ok(strcmp(r.phase, "Failed") == 0 && strcmp(r.reason, "RemoteFailed") == 0 &&
		   strstr(r.message, "boom") && r.retryable == 1,
	   "remote failure: reason RemoteFailed, error in message, retryable (%s)", r.message);
	{
		json_t *j = exec_result_json("uid-h", 1, &r);
		ok(j && json_is_true(json_object_get(j, "retryable")),
		   "the result message carries retryable");
		json_decref(j);
	}
	exec_result_free(&r);
	o.policy = allow("127.0.0.2/32");
	run("remote", json_pack("{ss}", "url", url("http://127.0.0.2:PORT/status/503")), &o, &s,
	    &r);
	ok(strcmp(r.reason, "HTTPStatus") == 0 && r.http_status == 503,
	   "remote answering 503: HTTPStatus");
	exec_result_free(&r);
	o.policy = allow("127.0.0.2/32");
	run("remote", json_pack("{ss}", "url", url("http://127.0.0.2:PORT/json")), &o, &s, &r);
	ok(strcmp(r.reason, "InvalidResponse") == 0,
	   "remote answering something else: InvalidResponse (%s)", r.message);
	exec_result_free(&r);
	run("remote", json_pack("{ss}", "url", url("http://127.0.0.1:PORT/remote")), NULL, &s, &r);
	ok(strcmp(r.reason, "SSRFBlocked") == 0 && count("127.0.0.1", NULL) == 0,
	   "remote URL on 127.0.0.1 without an exception: SSRFBlocked, nothing sent");
	exec_result_free(&r);
	buf_free(&s.logs);
}

static void test_secrets_and_time(void)
{
	struct seen s = { 0 };
	struct exec_result r;
	struct run_opts o = { 0 };
	int64_t t0;

	/* A server echoing a secret: logs, logTail and output never show it. */
	o.policy = allow("127.0.0.2/32");
	o.env = json_pack("[{sssssb}]", "name", "TOKEN", "value", "s3cr3t-token-value", "secret",
			  1);
	run("http",
	    json_pack("{sssss[{ssss}]}", "url", url("http://127.0.0.2:PORT/echo"), "method", "GET",
		      "headers", "name", "X-Token", "value", "$(TOKEN)"),
	    &o, &s, &r);
	ok(strcmp(r.phase, "Succeeded") == 0, "echo of a secret header: Succeeded");
	ok(!logs_have(&s, "s3cr3t-token-value") && logs_have(&s, "***"),
	   "the streamed logs mask the secret");
	ok(r.log_tail && !strstr(r.log_tail, "s3cr3t-token-value"), "logTail masks the secret");
	ok(!r.output && strstr(r.message, "withheld"),
	   "an output holding the secret is withheld (%s)", r.message);
	exec_result_free(&r);

	/* timeouts and cancel */
	t0 = util_mono_ms();
	o.policy = allow("127.0.0.2/32");
	run("http",
	    json_pack("{sssi}", "url", url("http://127.0.0.2:PORT/slow?ms=5000"), "timeoutSeconds",
		      1),
	    &o, &s, &r);
	ok(strcmp(r.reason, "TimedOut") == 0 && util_mono_ms() - t0 < 3000,
	   "timeoutSeconds 1: TimedOut (%s)", r.message);
	exec_result_free(&r);
	t0 = util_mono_ms();
	o.policy = allow("127.0.0.2/32");
	o.deadline_ms = util_now_ms() + 700;
	run("http", json_pack("{ss}", "url", url("http://127.0.0.2:PORT/slow?ms=5000")), &o, &s,
	    &r);
	o.deadline_ms = 0;
	ok(strcmp(r.reason, "TimedOut") == 0 && strstr(r.message, "deadline") &&
		   util_mono_ms() - t0 < 3000,
	   "the task's deadline: TimedOut (%s)", r.message);
	exec_result_free(&r);
	t0 = util_mono_ms();
	o.policy = allow("127.0.0.2/32");
	o.cancel_after_ms = 300;
	run("http", json_pack("{ss}", "url", url("http://127.0.0.2:PORT/slow?ms=5000")), &o, &s,
	    &r);
	o.cancel_after_ms = 0;
	ok(strcmp(r.phase, "Cancelled") == 0 && util_mono_ms() - t0 < 2000,
	   "cancel aborts the request at once (%lld ms)", (long long)(util_mono_ms() - t0));
	exec_result_free(&r);

	/* bad policy */
	o.policy = allow("not-a-cidr");
	run("http", json_pack("{ss}", "url", url("http://127.0.0.2:PORT/json")), &o, &s, &r);
	ok(strcmp(r.reason, "InvalidSpec") == 0 && strstr(r.message, "allowedCIDRs"),
	   "a bad CIDR: InvalidSpec (%s)", r.message);
	exec_result_free(&r);
	run("http", json_pack("{ss}", "url", "http://exa mple.com/"), NULL, &s, &r);
	ok(strcmp(r.reason, "InvalidSpec") == 0, "an invalid URL: InvalidSpec (%s)", r.message);
	exec_result_free(&r);
	buf_free(&s.logs);
}

int main(void)
{
	log_init("test", LOG_LVL_ERROR);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	snprintf(dir, sizeof(dir), "/tmp/tasked-http-XXXXXX");
	if (!mkdtemp(dir) || chmod(dir, 0711) < 0 || exec_init() < 0) {
		perror("setup");
		return 1;
	}
	if (access(HTTPCOUNT, X_OK) < 0 || start_server() < 0) {
		skip("build/tools/httpcount is not available");
		return done_testing();
	}
	test_blocked_matrix();
	test_allowed();
	test_deep_output();
	test_redirects_and_caps();
	test_oauth();
	test_remote();
	test_secrets_and_time();
	kill(server, SIGTERM);
	waitpid(server, NULL, 0);
	unlink(logpath);
	{
		char pf[128];
		snprintf(pf, sizeof(pf), "%s/port", dir);
		unlink(pf);
	}
	rmdir(dir);
	return done_testing();
}
