/* Log store: ordering, duplicates, per-task and total bounds with eviction, offsets that let a
 * follower resume and notice what was dropped, UTF-8-safe cuts. */
#include "logstore.h"
#include "tap.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static int collect(void *ud, const struct logstore_chunk *c)
{
	return buf_append(ud, c->data, c->len) < 0;
}

static int count_chunks(void *ud, const struct logstore_chunk *c)
{
	(*(int *)ud)++;
	return 0;
}

static int notified;
static void on_notify(void *ud) { notified++; }

/* Everything the store holds for uid, as text. */
static char *text_of(struct logstore *ls, const char *uid, const char *key, int64_t attempt,
		     uint64_t from, struct logstore_pos *pos)
{
	struct buf b;
	char *s;
	buf_init(&b, 1 << 24);
	logstore_read(ls, uid, key, attempt, from, SIZE_MAX, collect, &b, pos);
	s = strdup(b.data ? b.data : "");
	buf_free(&b);
	return s;
}

int main(void)
{
	struct logstore *ls = logstore_new(&(struct logstore_cfg){
		.max_per_task = 4096, .max_total = 16384, .max_tasks = 3, .notify = on_notify });
	struct logstore_pos pos;
	struct logstore_stats st;
	char *t, big[10000];
	int n;

	is_int(logstore_append(ls, "u1", "ns/a", 1, 0, "stdout", "hello ", 6), 1,
	       "a chunk is stored");
	is_int(logstore_append(ls, "u1", "ns/a", 1, 1, "stderr", "world\n", 6), 1,
	       "a second chunk is stored");
	is_int(logstore_append(ls, "u1", "ns/a", 1, 1, "stderr", "world\n", 6), 0,
	       "a repeated seq is ignored");
	is_int(logstore_append(ls, "u1", "ns/a", 1, 0, "stdout", "hello ", 6), 0,
	       "an older seq is ignored");
	ok(notified == 2, "stored chunks notify (%d)", notified);
	t = text_of(ls, "u1", NULL, 0, 0, &pos);
	is_str(t, "hello world\n", "the log reads back in order");
	free(t);
	ok(pos.found && !pos.finished && pos.end == 12 && pos.next == 12 && pos.dropped == 0,
	   "positions: end 12, next 12, nothing dropped");
	t = text_of(ls, NULL, "ns/a", 0, 6, &pos);
	is_str(t, "world\n", "a read from an offset (by key) continues there");
	free(t);
	t = text_of(ls, "u1", NULL, 0, 12, &pos);
	is_str(t, "", "a read at the end returns nothing");
	free(t);

	/* A new attempt appends; an attempt filter picks one. */
	is_int(logstore_append(ls, "u1", "ns/a", 2, 0, "stdout", "second\n", 7), 1,
	       "a new attempt restarts seq");
	is_int(logstore_append(ls, "u1", "ns/a", 1, 5, "stdout", "late\n", 5), 0,
	       "output of an older attempt is ignored");
	t = text_of(ls, "u1", NULL, 2, 0, &pos);
	is_str(t, "second\n", "attempt filter");
	free(t);
	is_int(pos.last_attempt, 2, "the newest attempt is reported");

	logstore_finish(ls, "u1", "ns/a");
	logstore_read(ls, "u1", NULL, 0, 0, SIZE_MAX, NULL, NULL, &pos);
	ok(pos.finished, "finish marks the log complete");
	logstore_finish(ls, "u2", "ns/b");
	logstore_read(ls, "u2", NULL, 0, 0, SIZE_MAX, NULL, NULL, &pos);
	ok(pos.found && pos.finished && pos.end == 0,
	   "finishing a task without output creates a complete, empty log");
	logstore_read(ls, "nope", "ns/nope", 0, 0, SIZE_MAX, NULL, NULL, &pos);
	ok(!pos.found, "an unknown task is not found");

	/* Per-task bound: the oldest chunks go, offsets keep counting. */
	memset(big, 'x', sizeof(big));
	for (int i = 0; i < 20; i++) {
		char line[600];
		memset(line, 'a' + i, sizeof(line));
		logstore_append(ls, "u3", "ns/c", 1, i, "stdout", line, sizeof(line));
	}
	n = 0;
	logstore_read(ls, "u3", NULL, 0, 0, SIZE_MAX, count_chunks, &n, &pos);
	ok(pos.end == 20 * 600, "end counts every byte given (%llu)", (unsigned long long)pos.end);
	ok(pos.first > 0 && pos.dropped == pos.first, "the oldest bytes were dropped (first %llu)",
	   (unsigned long long)pos.first);
	ok(n > 0 && n * 600 <= 4096, "what is held fits the per-task bound (%d chunks)", n);
	t = text_of(ls, "u3", NULL, 0, 0, &pos);
	ok(t[strlen(t) - 1] == 'a' + 19, "the end of the log is kept");
	free(t);
	{
		struct logstore_pos b;
		logstore_bounds(ls, NULL, "ns/c", &b);
		ok(b.found && b.first == pos.first && b.end == pos.end, "bounds agree with a read");
	}

	/* A single chunk larger than the bound keeps its end, cut on a character boundary. */
	{
		char u[6000];
		for (size_t i = 0; i < sizeof(u); i += 3)
			memcpy(u + i, "\xe2\x82\xac", 3); /* the euro sign */
		logstore_append(ls, "u3", "ns/c", 1, 100, "stdout", u, sizeof(u));
		t = text_of(ls, "u3", NULL, 0, 0, &pos);
		ok(strlen(t) < 4096 && strlen(t) % 3 == 0 && (unsigned char)t[0] == 0xe2,
		   "an oversized chunk keeps its end, starting on a character (%zu bytes)",
		   strlen(t));
		free(t);
		ok(pos.end == 12000 + 6000, "offsets still count the cut bytes");
	}

	/* Task count bound: finished tasks are evicted first. */
	logstore_append(ls, "u4", "ns/d", 1, 0, "stdout", "four", 4);
	logstore_read(ls, "u2", NULL, 0, 0, SIZE_MAX, NULL, NULL, &pos);
	logstore_stats_get(ls, &st);
	ok(st.tasks <= 3, "never more than max_tasks logs (%llu)", (unsigned long long)st.tasks);
	logstore_read(ls, "u1", NULL, 0, 0, SIZE_MAX, NULL, NULL, &pos);
	ok(!pos.found, "the least recently written finished log was evicted");
	logstore_read(ls, "u3", NULL, 0, 0, SIZE_MAX, NULL, NULL, &pos);
	ok(pos.found, "a running task's log is kept while finished ones can go");
	ok(st.evicted_tasks >= 1, "evictions are counted");

	/* Total bound. */
	for (int i = 0; i < 50; i++) {
		char uid[16];
		snprintf(uid, sizeof(uid), "t%d", i);
		logstore_append(ls, uid, NULL, 1, 0, "stdout", big, 3000);
	}
	logstore_stats_get(ls, &st);
	ok(st.bytes <= 16384, "the total stays within its bound (%llu)",
	   (unsigned long long)st.bytes);

	logstore_forget(ls, "t49");
	logstore_read(ls, "t49", NULL, 0, 0, SIZE_MAX, NULL, NULL, &pos);
	ok(!pos.found, "forget removes a log");
	is_int(logstore_append(ls, "", NULL, 1, 0, "stdout", "x", 1), -22,
	       "an empty uid is refused");
	logstore_free(ls);
	return done_testing();
}
