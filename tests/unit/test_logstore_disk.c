/* Log store on disk (--log-dir): a log comes back whole after a restart, with its offsets,
 * attempts and finished mark; bounds hold on disk; a deleted or swept task's file goes; and
 * hostile directory contents (a file cut mid-record, a huge length header, a bad CRC, a
 * symlink, a stray name, a leftover .tmp) never crash the store, follow a link or forge output. */
#include "logfile.h"
#include "logstore.h"
#include "tap.h"
#include "util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static int collect(void *ud, const struct logstore_chunk *c)
{
	return buf_append(ud, c->data, c->len) < 0;
}

static char *text_of(struct logstore *ls, const char *uid, const char *key,
		     struct logstore_pos *pos)
{
	struct buf b;
	char *s;
	buf_init(&b, 1 << 24);
	logstore_read(ls, uid, key, 0, 0, SIZE_MAX, collect, &b, pos);
	s = strdup(b.data ? b.data : "");
	buf_free(&b);
	return s;
}

static struct logstore *open_store(size_t per_task, size_t total)
{
	return logstore_new(
		&(struct logstore_cfg){ .max_per_task = per_task, .max_total = total, .dir = dir });
}

static long file_size(const char *name)
{
	char p[512];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return lstat(p, &st) == 0 ? (long)st.st_size : -1;
}

static int exists_none(void *ud, const char *uid) { return strcmp(uid, (const char *)ud) == 0; }

static void write_file(const char *name, const void *data, size_t len, int append)
{
	char p[512];
	FILE *f;
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	f = fopen(p, append ? "ab" : "wb");
	fwrite(data, 1, len, f);
	fclose(f);
}

int main(void)
{
	struct logstore *ls;
	struct logstore_pos pos;
	struct logstore_stats st;
	char *t, line[1000], expect[14000], p[512];
	size_t elen = 0;
	long sz;

	snprintf(dir, sizeof(dir), "%s/tasked-logdir-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir))
		return 1;

	/* A 13,893-byte log survives a restart whole. */
	ls = open_store(1024 * 1024, 64 * 1024 * 1024);
	ok(ls != NULL, "a store with a directory");
	for (int i = 0; elen < 13893; i++) {
		size_t n = 13893 - elen < 999 ? 13893 - elen : 999;
		memset(line, 'a' + i % 26, n);
		line[n - 1] = '\n';
		memcpy(expect + elen, line, n);
		elen += n;
		logstore_append(ls, "uid-1", "ns/big", 1, i, i % 2 ? "stderr" : "stdout", line, n);
	}
	expect[elen] = '\0';
	logstore_finish(ls, "uid-1", "ns/big");
	logstore_free(ls);
	ok(file_size("uid-1.log") > 13893, "the log is in uid-1.log (%ld bytes)",
	   file_size("uid-1.log"));
	ls = open_store(1024 * 1024, 64 * 1024 * 1024);
	t = text_of(ls, "uid-1", NULL, &pos);
	is_int((int)strlen(t), 13893, "after a restart all 13893 bytes come back");
	ok(strcmp(t, expect) == 0, "... byte for byte");
	free(t);
	ok(pos.found && pos.finished && pos.dropped == 0 && pos.first == 0 && pos.end == 13893,
	   "... finished, nothing dropped, offsets 0..13893");
	t = text_of(ls, NULL, "ns/big", &pos);
	is_int((int)strlen(t), 13893, "... and found by its key");
	free(t);
	is_int(logstore_append(ls, "uid-1", "ns/big", 1, 3, "stdout", "dup", 3), 0,
	       "a chunk the runner sends again after the restart is still a duplicate");
	is_int(logstore_append(ls, "uid-1", "ns/big", 2, 0, "stdout", "retry\n", 6), 1,
	       "a new attempt appends");
	logstore_free(ls);
	ls = open_store(1024 * 1024, 64 * 1024 * 1024);
	t = text_of(ls, "uid-1", NULL, &pos);
	ok(strlen(t) == 13899 && strcmp(t + 13893, "retry\n") == 0 && !pos.finished &&
		   pos.last_attempt == 2,
	   "appends after a reload persist too (attempt 2, no longer finished)");
	free(t);

	/* Forget (the Task was deleted) removes the file. */
	logstore_forget(ls, "uid-1");
	is_int((int)file_size("uid-1.log"), -1, "a forgotten log's file is deleted");
	logstore_free(ls);

	/* Per-task bound: honest offsets after a reload, the file stays bounded. */
	ls = open_store(4096, 64 * 1024 * 1024);
	for (int i = 0; i < 40; i++) {
		memset(line, 'A' + i % 26, 600);
		logstore_append(ls, "uid-2", "ns/cap", 1, i, "stdout", line, 600);
	}
	sz = file_size("uid-2.log");
	ok(sz > 0 && sz <= 4096 + 4096 / 2 + 700,
	   "the file stays within 1.5 x the per-task bound (%ld)", sz);
	logstore_free(ls);
	ls = open_store(4096, 64 * 1024 * 1024);
	t = text_of(ls, "uid-2", NULL, &pos);
	ok(pos.end == 24000 && pos.first > 0 && pos.dropped == pos.first &&
		   pos.first + strlen(t) == 24000,
	   "after a reload: end 24000, %llu bytes dropped and said so",
	   (unsigned long long)pos.dropped);
	ok(t[strlen(t) - 1] == 'A' + 39 % 26, "... the end of the log is kept");
	free(t);
	logstore_free(ls);

	/* Sweep: logs of tasks that no longer exist go, with their files. */
	ls = open_store(4096, 64 * 1024 * 1024);
	is_int((int)logstore_sweep(ls, exists_none, "nothing"), 1,
	       "the sweep drops the log of a task that is gone");
	is_int((int)file_size("uid-2.log"), -1, "... and its file");
	logstore_append(ls, "uid-3", "ns/keep", 1, 0, "stdout", "keep\n", 5);
	is_int((int)logstore_sweep(ls, exists_none, "uid-3"), 0,
	       "a task that exists keeps its log");
	ok(file_size("uid-3.log") > 0, "... and its file");
	logstore_free(ls);

	/* Hostile: a file cut mid-record. */
	ls = open_store(4096, 64 * 1024 * 1024);
	logstore_append(ls, "uid-4", "ns/cut", 1, 0, "stdout", "one\n", 4);
	logstore_append(ls, "uid-4", "ns/cut", 1, 1, "stdout", "two\n", 4);
	logstore_free(ls);
	sz = file_size("uid-4.log");
	snprintf(p, sizeof(p), "%s/uid-4.log", dir);
	ok(truncate(p, sz - 2) == 0, "cut the last record short");
	ls = open_store(4096, 64 * 1024 * 1024);
	t = text_of(ls, "uid-4", NULL, &pos);
	is_str(t, "one\n", "a record cut short is dropped, the ones before it kept");
	free(t);
	is_int((int)file_size("uid-4.log"), (int)(sz - LOGFILE_HDR - 4),
	       "... and the file cut back to them");
	logstore_append(ls, "uid-4", "ns/cut", 1, 2, "stdout", "three\n", 6);
	logstore_free(ls);
	ls = open_store(4096, 64 * 1024 * 1024);
	t = text_of(ls, "uid-4", NULL, &pos);
	is_str(t, "one\nthree\n", "appending after the cut gives a readable file");
	free(t);
	logstore_free(ls);

	/* Hostile: a huge length header, and a record whose CRC does not match. */
	{
		unsigned char hdr[LOGFILE_HDR];
		struct logfile_rec r = { .type = LOGFILE_CHUNK,
					 .off = 100,
					 .attempt = 1,
					 .seq = 9,
					 .data = "x",
					 .len = 1 };
		logfile_encode(&r, hdr);
		hdr[8] = hdr[9] = hdr[10] = 0xff;
		hdr[11] = 0x7f;
		write_file("uid-4.log", hdr, sizeof(hdr), 1);
		write_file("uid-4.log", "x", 1, 1);
		ls = open_store(4096, 64 * 1024 * 1024);
		t = text_of(ls, "uid-4", NULL, &pos);
		is_str(t, "one\nthree\n", "a header claiming 2 GiB of data is not believed");
		free(t);
		logstore_free(ls);
		r.data = "forged";
		r.len = 6;
		r.off = 10;
		logfile_encode(&r, hdr);
		write_file("uid-4.log", hdr, sizeof(hdr), 1);
		write_file("uid-4.log", "FORGED", 6, 1);
		ls = open_store(4096, 64 * 1024 * 1024);
		t = text_of(ls, "uid-4", NULL, &pos);
		is_str(t, "one\nthree\n", "a record whose CRC does not match is not read");
		free(t);
		logstore_free(ls);
	}

	/* Hostile: garbage, a symlink, names that are no UID, a leftover .tmp. */
	write_file("uid-5.log", "not a log file at all", 21, 0);
	{
		char target[512], link[512];
		snprintf(target, sizeof(target), "%s/outside", dir);
		snprintf(link, sizeof(link), "%s/uid-6.log", dir);
		write_file("outside", "precious", 8, 0);
		ok(symlink(target, link) == 0, "a symlink uid-6.log -> outside");
	}
	write_file("Evil.log", "x", 1, 0);
	write_file("uid-7.tmp", "partial", 7, 0);
	ls = open_store(4096, 64 * 1024 * 1024);
	ok(ls != NULL, "the store starts with all that in its directory");
	logstore_read(ls, "uid-5", NULL, 0, 0, SIZE_MAX, NULL, NULL, &pos);
	ok(!pos.found, "a file without the header yields no log");
	is_int((int)file_size("uid-5.log"), -1, "... and is removed");
	logstore_read(ls, "uid-6", NULL, 0, 0, SIZE_MAX, NULL, NULL, &pos);
	ok(!pos.found, "a symlink is not followed");
	is_int((int)file_size("uid-6.log"), -1, "... the link is removed");
	is_int((int)file_size("outside"), 8, "... and what it pointed to is untouched");
	is_int((int)file_size("Evil.log"), 1, "a name that is no UID is left alone");
	is_int((int)file_size("uid-7.tmp"), -1, "a leftover .tmp is removed");
	is_int(logstore_append(ls, "../escape", NULL, 1, 0, "stdout", "x", 1), 1,
	       "a UID that cannot be a file name is kept in memory");
	snprintf(p, sizeof(p), "%s/../escape.log", dir);
	ok(access(p, F_OK) != 0, "... and never written outside the directory");

	/* A second store on the same directory (e.g. a surge pod) stays in memory. */
	{
		struct logstore *ls2 = open_store(4096, 64 * 1024 * 1024);
		logstore_append(ls2, "uid-8", NULL, 1, 0, "stdout", "second\n", 7);
		logstore_stats_get(ls2, &st);
		ok(ls2 && st.disk_bytes == 0 && file_size("uid-8.log") == -1,
		   "a second store on a locked directory writes nothing there");
		logstore_free(ls2);
	}
	logstore_free(ls);

	/* Total bound on disk: whole logs go, least recently written first, with their files. */
	ls = open_store(4096, 16384);
	for (int i = 0; i < 30; i++) {
		char uid[16];
		snprintf(uid, sizeof(uid), "tot-%d", i);
		memset(line, 'z', 900);
		logstore_append(ls, uid, NULL, 1, 0, "stdout", line, 900);
	}
	logstore_stats_get(ls, &st);
	ok(st.disk_bytes <= 16384, "files stay within the total bound (%llu bytes)",
	   (unsigned long long)st.disk_bytes);
	is_int((int)file_size("tot-0.log"), -1, "the oldest log's file was evicted");
	ok(file_size("tot-29.log") > 0, "the newest is there");
	logstore_free(ls);

	/* A missing directory is an error, not a silent memory-only store. */
	ok(logstore_new(&(struct logstore_cfg){ .dir = "/nonexistent/tasked-logs" }) == NULL,
	   "a directory that cannot be opened fails the store");

	snprintf(p, sizeof(p), "rm -rf '%s'", dir);
	if (system(p) != 0)
		diag("could not remove %s", dir);
	return done_testing();
}
