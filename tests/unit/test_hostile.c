/* Hostile input: the bounded scanner, decoding what the API server accepts, an informer that
 * skips (and reports once) what does not decode, NUL bytes, output depth, escaping, SSE ids
 * and log records at their cap. */
#include "api.h"
#include "informer.h"
#include "jscan.h"
#include "kube.h"
#include "log.h"
#include "proto.h"
#include "taskctl.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

static char *deep(size_t n, const char *pre, const char *post)
{
	size_t lp = strlen(pre), lq = strlen(post);
	char *s = malloc(lp + 2 * n + lq + 1);
	memcpy(s, pre, lp);
	memset(s + lp, '[', n);
	memset(s + lp + n, ']', n);
	memcpy(s + lp + 2 * n, post, lq + 1);
	return s;
}

static char *task_text(const char *name, const char *uid, const char *input)
{
	char *s = NULL;
	if (asprintf(
		    &s,
		    "{\"apiVersion\":\"tasked.dev/v1alpha1\",\"kind\":\"Task\",\"metadata\":{\"name\":\"%s\","
		    "\"namespace\":\"ns\",\"uid\":\"%s\",\"resourceVersion\":\"7\"},\"spec\":{\"shell\":{\"command\":"
		    "[\"true\"]},\"input\":%s}}",
		    name, uid, input) < 0)
		abort();
	return s;
}

struct seen {
	int added, updated, deleted, bad;
	char bad_name[64], bad_uid[64], bad_error[200];
};

static void on_event(enum informer_event ev, const char *key, json_t *obj, void *ud)
{
	struct seen *s = ud;
	if (ev == INFORMER_ADDED)
		s->added++;
	else if (ev == INFORMER_UPDATED)
		s->updated++;
	else if (ev == INFORMER_DELETED)
		s->deleted++;
}

static void on_bad(const struct informer_bad *b, void *ud)
{
	struct seen *s = ud;
	s->bad++;
	snprintf(s->bad_name, sizeof(s->bad_name), "%s", b->name);
	snprintf(s->bad_uid, sizeof(s->bad_uid), "%s", b->uid);
	snprintf(s->bad_error, sizeof(s->bad_error), "%s", b->error);
}

static void test_jscan(void)
{
	const char *doc =
		"{ \"a\" : {\"b\\u0022\":1, \"b\": \"x\\u00e9\\ud83d\\ude00\\n\"}, \"arr\": [1, {\"q\":[]}, \"s]\"] }";
	static const char *const p_ab[] = { "a", "b", NULL }, *const p_arr[] = { "arr", NULL };
	static const char *const p_missing[] = { "a", "c", NULL };
	size_t vs, ve, pos;
	char out[64];
	int n = 0;

	ok(jscan_path(doc, strlen(doc), 0, p_ab, &vs, &ve) == 0,
	   "scanner finds a.b (past a key with an escaped quote)");
	is_int(jscan_string(doc, vs, ve, out, sizeof(out)), 0, "and decodes it");
	is_str(out, "x\xc3\xa9\xf0\x9f\x98\x80\n", "escapes and a surrogate pair become UTF-8");
	is_int(jscan_path(doc, strlen(doc), 0, p_missing, &vs, &ve), -ENOENT,
	       "a missing member is -ENOENT");
	ok(jscan_path(doc, strlen(doc), 0, p_arr, &vs, &ve) == 0, "finds the array");
	{
		size_t end = ve, es, ee;
		pos = vs;
		while (jscan_next(doc, end, &pos, &es, &ee) == 1)
			n++;
	}
	is_int(n, 3, "iterates its three elements (a bracket inside a string is not one)");
	is_int(jscan_string("\"a\\u0000b\"", 0, 10, out, sizeof(out)), -EILSEQ,
	       "a NUL never reaches a C string");
	is_str(out, "", "and the output is empty");
	is_int(jscan_string("\"abcdef\"", 0, 8, out, 4), -ENOBUFS, "too long for the buffer");
	is_int(jscan_string("\"\\ud800x\"", 0, 9, out, sizeof(out)), -EBADMSG,
	       "a lone surrogate is refused");
	{
		char *d = deep(100000, "{\"x\":", ",\"metadata\":{\"name\":\"n\"}}");
		static const char *const p_name[] = { "metadata", "name", NULL };
		ok(jscan_path(d, strlen(d), 0, p_name, &vs, &ve) == 0 &&
			   jscan_string(d, vs, ve, out, sizeof(out)) == 0 && strcmp(out, "n") == 0,
		   "a name after a 100000-deep member is found (no recursion)");
		is_int((long long)jscan_depth(d, strlen(d), 64), 65,
		       "depth counting stops past the limit");
		is_int((long long)jscan_depth(d, strlen(d), 1000000), 100001,
		       "and counts exactly below it");
		free(d);
	}
	is_int((long long)jscan_depth("[\"[[[[\"]", 8, 64), 1,
	       "brackets inside strings are not nesting");
	pos = 0;
	is_int(jscan_skip("[[[", 3, &pos), -EBADMSG, "a truncated value is refused");
	pos = 0;
	is_int(jscan_next("[1,", 3, &pos, &vs, &ve), 1, "a truncated array yields what is whole");
	is_int(jscan_next("[1,", 3, &pos, &vs, &ve), -EBADMSG, "then is refused");
}

static void test_loadb(void)
{
	json_error_t e;
	const char *txt = "{\"s\":\"a\\u0000b\",\"big\":100000000000000000000,\"g\":3}";
	json_t *j = kube_json_loadb(txt, strlen(txt), &e);
	char *d;

	ok(j != NULL,
	   "NUL in a string and an integer past 64 bits decode (the API server accepts both)");
	is_int((long long)json_string_length(json_object_get(j, "s")), 3,
	       "the NUL string keeps its length");
	ok(json_is_real(json_object_get(j, "big")), "the huge integer is a real");
	ok(json_is_integer(json_object_get(j, "g")) &&
		   json_integer_value(json_object_get(j, "g")) == 3,
	   "a small integer in the same object stays an integer");
	json_decref(j);
	d = deep(2048, "", "");
	j = kube_json_loadb(d, strlen(d), &e);
	ok(j != NULL, "2048 levels decode");
	json_decref(j);
	free(d);
	d = deep(3000, "", "");
	j = kube_json_loadb(d, strlen(d), &e);
	ok(j == NULL && json_error_code(&e) == json_error_stack_overflow,
	   "3000 levels do not (jansson's limit)");
	free(d);
}

static void test_escape(void)
{
	char out[8];
	is_int(kube_escape("a b", out, sizeof(out)), 0, "escape");
	is_str(out, "a%20b", "escaped");
	is_int(kube_escape("abcdefgh", out, sizeof(out)), -ENOBUFS, "overflow fails");
	is_str(out, "", "and leaves an empty string, not a cut-off one");
	is_int(kube_escape("a%", out, 4), -ENOBUFS, "an escape that would not fit fails");
	is_str(out, "", "empty again");
	is_int(kube_escape(NULL, out, sizeof(out)), -EINVAL, "NULL is refused");
	is_int(kube_escape("", out, sizeof(out)), -EINVAL, "an empty name is refused");
}

static void test_informer(void)
{
	struct seen s = { 0 };
	struct informer *inf = informer_new(NULL, "/apis/tasked.dev/v1alpha1/tasks", 0, on_event,
					    &s);
	struct informer_stats st;
	char *ok1 = task_text("ok1", "u-ok1", "{}"), *ok2 = task_text("ok2", "u-ok2", "{}");
	char *d3000 = deep(3000, "{\"x\":", "}"), *bad = task_text("bad", "u-bad", d3000), *page,
	     *line;
	char *nul = task_text("nul", "u-nul", "{\"k\":\"a\\u0000b\"}");
	json_t *o;

	informer_set_undecodable(inf, on_bad, &s);
	if (asprintf(
		    &page,
		    "{\"kind\":\"TaskList\",\"metadata\":{\"resourceVersion\":\"9\"},\"items\":[%s,%s,%s,%s]}",
		    ok1, bad, ok2, nul) < 0)
		abort();
	informer_feed_list_page(inf, page, strlen(page));
	is_int((long long)informer_count(inf), 3,
	       "a list page with one 3000-deep item caches the other three");
	is_int(s.bad, 1, "the deep item is reported once");
	is_str(s.bad_name, "bad", "by name");
	is_str(s.bad_uid, "u-bad", "and uid");
	ok(strstr(s.bad_error, "depth") != NULL, "with the parser's reason (%s)", s.bad_error);
	informer_stats_get(inf, &st);
	is_int((long long)st.undecodable, 1, "and counted");
	o = informer_get(inf, "ns/nul");
	ok(o && json_string_length(json_object_get(
			json_object_get(json_object_get(o, "spec"), "input"), "k")) == 3,
	   "a NUL string survives the cache (deflate, inflate, parse)");
	json_decref(o);

	if (asprintf(&line, "{\"type\":\"MODIFIED\",\"object\":%s}", bad) < 0)
		abort();
	informer_feed_watch_line(inf, line, strlen(line));
	free(line);
	is_int(s.bad, 1, "the same object again is not reported twice");
	informer_stats_get(inf, &st);
	is_int((long long)st.undecodable, 1, "nor counted twice");

	/* A cached object that turns undecodable leaves the cache as a deletion. */
	free(bad);
	bad = task_text("ok1", "u-ok1", d3000);
	if (asprintf(&line, "{\"type\":\"MODIFIED\",\"object\":%s}", bad) < 0)
		abort();
	s.deleted = 0;
	informer_feed_watch_line(inf, line, strlen(line));
	free(line);
	ok(informer_get(inf, "ns/ok1") == NULL,
	   "a cached object that no longer decodes is dropped");
	is_int(s.deleted, 1, "and delivered as deleted");
	is_int(s.bad, 2, "and reported");

	if (asprintf(&line, "{\"type\":\"DELETED\",\"object\":%s}", bad) < 0)
		abort();
	informer_feed_watch_line(inf, line, strlen(line));
	informer_feed_watch_line(inf, line, strlen(line));
	free(line);
	is_int(s.bad, 2, "its deletion is not a new report");

	/* 2047 levels inside a watch event: the event is one level too many, the object is not. */
	free(d3000);
	d3000 = deep(2045, "", "");
	free(bad);
	bad = task_text("d2047", "u-2047", d3000);
	if (asprintf(&line, "{\"type\":\"ADDED\",\"object\":%s}", bad) < 0)
		abort();
	informer_feed_watch_line(inf, line, strlen(line));
	free(line);
	o = informer_get(inf, "ns/d2047");
	ok(o != NULL,
	   "an object exactly at the parser's limit is cached although its event is past it");
	json_decref(o);

	informer_free(inf);
	free(ok1);
	free(ok2);
	free(bad);
	free(nul);
	free(page);
	free(d3000);

	is_int(informer_stall_rule(0, 600000 + 60000, 600000), 0,
	       "a watch within its timeout and grace is not stalled");
	ok(informer_stall_rule(0, 600000 + 60001, 600000) > 0,
	   "one that delivered nothing for longer is");
}

static void test_nul_spec(void)
{
	json_error_t e;
	json_t *task = json_loads(
		"{\"metadata\":{\"name\":\"t\",\"namespace\":\"n\",\"uid\":\"u\"},\"spec\":{\"shell\":"
		"{\"command\":[\"echo\",\"a\\u0000b\"]}}}",
		JSON_ALLOW_NUL, &e);
	json_t *task2 = json_loads(
		"{\"metadata\":{\"name\":\"t\",\"namespace\":\"n\",\"uid\":\"u\"},\"spec\":{\"shell\":"
		"{\"command\":[\"cat\"]},\"input\":{\"k\":\"a\\u0000b\"}}}",
		JSON_ALLOW_NUL, &e);
	char err[256];
	json_t *msg = taskctl_build_dispatch(task, 1, 0, err, sizeof(err));

	ok(msg == NULL, "a command argument with a NUL is refused (InvalidSpec)");
	ok(strstr(err, "spec.shell.command[1]") != NULL, "naming the field: %s", err);
	msg = taskctl_build_dispatch(task2, 1, 0, err, sizeof(err));
	ok(msg != NULL, "a NUL inside spec.input is passed on");
	ok(msg && json_string_length(json_object_get(json_object_get(msg, "input"), "k")) == 3,
	   "faithfully");
	json_decref(msg);
	json_decref(task);
	json_decref(task2);
}

static void test_output_depth(void)
{
	json_error_t e;
	int too;
	char *d = deep(64, "", "");
	json_t *j = proto_load_output(d, strlen(d), &too, &e);
	ok(j && !too, "output 64 levels deep is taken");
	json_decref(j);
	free(d);
	d = deep(65, "", "");
	j = proto_load_output(d, strlen(d), &too, &e);
	ok(!j && too, "65 levels are refused as too deep");
	free(d);
	d = deep(3000, "", "");
	j = proto_load_output(d, strlen(d), &too, &e);
	ok(!j && too, "3000 levels (past the parser) are refused as too deep, not as invalid");
	free(d);
	j = proto_load_output("[[[[", 4, &too, &e);
	ok(!j && !too, "truncated JSON is invalid, not too deep");
	j = proto_load_output("\"a\\u0000b\"", 10, &too, &e);
	ok(j && json_string_length(j) == 3, "a NUL in output is kept");
	json_decref(j);
}

static void test_event_id(void)
{
	uint64_t id = 7;
	is_int(api_parse_event_id("-5", &id), -EINVAL,
	       "lastEventId=-5 is refused (strtoull would wrap it)");
	is_int(api_parse_event_id("18446744073709551616", &id), -EINVAL, "2^64 overflows");
	is_int(api_parse_event_id(" 1", &id), -EINVAL, "leading space");
	is_int(api_parse_event_id("", &id), -EINVAL, "empty");
	ok(api_parse_event_id("18446744073709551615", &id) == 0 && id == UINT64_MAX,
	   "2^64-1 is the largest");
	ok(api_parse_event_id("42", &id) == 0 && id == 42, "42");
}

/* Reads what one log_kv call wrote to stderr. */
static char *log_capture(const char *value)
{
	int p[2], saved = dup(STDERR_FILENO);
	static char buf[16384];
	ssize_t n;
	if (pipe2(p, O_CLOEXEC) < 0)
		abort();
	dup2(p[1], STDERR_FILENO);
	log_info("a record", "key", value, "after", "x");
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(p[1]);
	n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static void test_log(void)
{
	char *big = malloc(20001), *line;
	json_t *j;
	size_t n;

	log_init("test", LOG_LVL_INFO);
	memset(big, 'v', 20000);
	big[20000] = '\0';
	line = log_capture(big);
	n = strlen(line);
	ok(n > 0 && n <= 8192 && line[n - 1] == '\n',
	   "a record over the cap is one line, at most 8 KiB, with its newline");
	j = json_loads(line, JSON_DISABLE_EOF_CHECK, NULL);
	ok(j != NULL, "and valid JSON");
	ok(json_is_true(json_object_get(j, "truncated")), "marked truncated");
	ok(json_string_length(json_object_get(j, "key")) > 7000, "keeping most of the value");
	json_decref(j);
	/* Two-byte characters cut at the cap must not leave half a character (invalid UTF-8). */
	for (size_t i = 0; i + 1 < 20000; i += 2) {
		big[i] = (char)0xc3;
		big[i + 1] = (char)0xa9;
	}
	for (int shift = 0; shift < 2; shift++) {
		line = log_capture(big + shift * 2);
		j = json_loads(line, JSON_DISABLE_EOF_CHECK, NULL);
		ok(j != NULL && json_is_true(json_object_get(j, "truncated")),
		   "multi-byte text cut at the cap is still valid JSON (%d)", shift);
		json_decref(j);
	}
	memset(big, '"', 20000);
	line = log_capture(big);
	j = json_loads(line, JSON_DISABLE_EOF_CHECK, NULL);
	ok(j != NULL, "escapes cut at the cap stay whole");
	json_decref(j);
	line = log_capture("short");
	j = json_loads(line, JSON_DISABLE_EOF_CHECK, NULL);
	ok(j && !json_object_get(j, "truncated") &&
		   strcmp(json_string_value(json_object_get(j, "after")), "x") == 0,
	   "a short record is whole and unmarked");
	json_decref(j);
	free(big);
}

int main(void)
{
	log_init("test", LOG_LVL_ERROR);
	test_jscan();
	test_loadb();
	test_escape();
	test_informer();
	test_nul_spec();
	test_output_depth();
	test_event_id();
	test_log();
	return done_testing();
}
