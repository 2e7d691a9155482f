/* API key handling (flag, file, rotation, fail-closed) and the observer fan-out. The HTTP
 * side is tested against the real controller in tests/integration/7*.t. */
#include "api.h"
#include "logstore.h"
#include "metrics.h"
#include "tap.h"
#include "util.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void write_key(const char *path, const char *key)
{
	static int n;
	struct timespec ts[2];
	util_write_file(path, key, strlen(key), 0600);
	/* Successive writes can share a coarse kernel timestamp: make every mtime distinct. */
	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[0].tv_sec += ++n;
	ts[1] = ts[0];
	utimensat(AT_FDCWD, path, ts, 0);
}

/* The slow-consumer arithmetic: how many bytes a stream owes its client. */
static void test_sse_lag(void)
{
	struct logstore_pos pos = { .found = 1, .first = 1000, .end = 5000 };
	uint64_t allow;

	ok(api_sse_backlog(&pos, 4000) == 1000, "backlog: from the cursor to the end");
	ok(api_sse_backlog(&pos, 0) == 4000,
	   "backlog: a cursor before the oldest byte counts from it");
	ok(api_sse_backlog(&pos, 6000) == 0, "backlog: a cursor past the end owes nothing");
	pos.found = 0;
	ok(api_sse_backlog(&pos, 0) == 0, "backlog: an unknown task owes nothing");

	allow = 0;
	ok(api_sse_lag(&allow, 0, 0) == 0, "a caught-up stream with nothing queued has no lag");
	ok(api_sse_lag(&allow, 300, 700) == 1000, "lag is the backlog plus what is queued");

	/* A follow that joined with 4000 stored bytes replays them at its own pace. */
	allow = 4000;
	ok(api_sse_lag(&allow, 4000, 0) == 0,
	   "the replay allowance covers output stored before the follow");
	ok(api_sse_lag(&allow, 3000, 500) == 500 && allow == 3000,
	   "reading the replay shrinks the allowance");
	ok(api_sse_lag(&allow, 10, 0) == 0 && allow == 10,
	   "caught up: the allowance is what is left");
	ok(api_sse_lag(&allow, 5000, 100) == 5090,
	   "... and it does not grow back when the client stalls");

	/* A client that never reads while the task keeps printing. */
	allow = 2000;
	ok(api_sse_lag(&allow, 2000 + (2u << 20), 65536) == (2u << 20) + 65536,
	   "output after the follow began counts in full");
}

static double metric(struct api *a, const char *prefix)
{
	struct buf out;
	const char *p;
	char nl[256];
	double v = -1;
	buf_init(&out, 1 << 20);
	metrics_render(api_metrics(a), &out);
	snprintf(nl, sizeof(nl), "\n%s", prefix); /* a sample line, not the HELP line */
	p = strstr(out.data, nl);
	if (p)
		v = strtod(p + strlen(nl), NULL);
	buf_free(&out);
	return v;
}

int main(void)
{
	char dir[] = "/tmp/test_api.XXXXXX", path[256];
	struct api *a;

	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof(path), "%s/api-key", dir);

	a = api_new(&(struct api_cfg){ 0 });
	ok(a && !api_has_key(a) && api_check_key(a, NULL), "without a key every request passes");
	api_free(a);

	a = api_new(&(struct api_cfg){ .api_key = "s3cret-key" });
	ok(api_has_key(a), "a static key is configured");
	ok(!api_check_key(a, NULL), "no key: refused");
	ok(!api_check_key(a, "wrong"), "a wrong key: refused");
	ok(!api_check_key(a, "s3cret-kez"), "a key differing in the last byte: refused");
	ok(!api_check_key(a, "s3cret-key "), "a longer key: refused");
	ok(!api_check_key(a, "s3cret-ke"), "a prefix: refused");
	ok(!api_check_key(a, ""), "an empty key: refused");
	ok(api_check_key(a, "s3cret-key"), "the key: accepted");
	api_free(a);

	a = api_new(&(struct api_cfg){ .api_key_file = path });
	ok(a == NULL, "a missing key file refuses to start (fail closed)");
	write_key(path, "\n");
	a = api_new(&(struct api_cfg){ .api_key_file = path });
	ok(a == NULL, "an empty key file refuses to start");

	write_key(path, "first-key\n");
	a = api_new(&(struct api_cfg){ .api_key_file = path, .api_key = "static" });
	ok(a != NULL, "a key file is read");
	ok(api_check_key(a, "first-key"), "the file's key (trailing newline stripped) is accepted");
	ok(!api_check_key(a, "static"), "the file's key wins over the static one");
	write_key(path, "second-key\n");
	ok(api_check_key(a, "second-key") && !api_check_key(a, "first-key"),
	   "a rotated file is re-read");
	write_key(path, "");
	ok(api_check_key(a, "second-key"), "a file emptied while rotating keeps the last key");
	unlink(path);
	ok(api_check_key(a, "second-key") && !api_check_key(a, NULL),
	   "a removed file keeps the last key");
	write_key(path, "third-key");
	ok(api_check_key(a, "third-key"), "a recreated file is read again");

	/* Observers: a status write becomes an event and finishes the task's log. */
	{
		json_t *task = json_pack("{s{ssssssss}s{ss}s{ss}}", "metadata", "namespace", "ns",
					 "name", "t1", "uid", "uid-1", "creationTimestamp",
					 "2026-01-01T00:00:00Z", "spec", "queue", "q1", "status",
					 "phase", "Running");
		json_t *st = json_pack("{sssssi}", "phase", "Succeeded", "reason", "Succeeded",
				       "exitCode", 0);
		api_on_log(a, "ns/t1", "uid-1", 1, 0, "stdout", "hello\n");
		api_on_log(a, "ns/t1", "uid-1", 1, 0, "stdout", "hello\n");
		api_on_status(a, task, st);
		ok(metric(a, "tasked_events_published_total ") == 1,
		   "a status write publishes one event");
		ok(metric(a, "tasked_logstore_tasks ") == 1,
		   "streamed output lands in the log store");
		ok(metric(a, "tasked_tasks_finished_total{phase=\"Succeeded\"} ") == 1,
		   "and feeds the metrics");
		json_decref(task);
		json_decref(st);
	}
	api_free(a);
	unlink(path);
	rmdir(dir);
	test_sse_lag();
	return done_testing();
}
