/* Output capture (runner/capture.c) as pure code: chunks, UTF-8, masking across chunk
 * boundaries, the output cap, the tail and the flush timer, with a hook that records what
 * would be sent and a clock the test sets. */
#include "capture.h"
#include "tap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct sent {
	char all[2][256 * 1024];
	size_t len[2];
	int chunks, max_chunk, bad, fail;
	int64_t next_seq;
};

static int rec_log(void *ud, const char *stream, int64_t seq, const char *data, size_t len)
{
	struct sent *s = ud;
	int i = strcmp(stream, "stderr") == 0;
	if (seq != s->next_seq++ || memchr(data, '\0', len) || len > EXEC_LOG_CHUNK_MAX)
		s->bad++;
	if (s->fail)
		return -ENOBUFS;
	if (s->len[i] + len < sizeof(s->all[i])) {
		memcpy(s->all[i] + s->len[i], data, len);
		s->len[i] += len;
		s->all[i][s->len[i]] = '\0';
	}
	s->chunks++;
	if ((int)len > s->max_chunk)
		s->max_chunk = (int)len;
	return 0;
}

static struct sent S;
static const struct exec_hooks H = { NULL, rec_log, &S };

static void reset(void) { memset(&S, 0, sizeof(S)); }

int main(void)
{
	static const char *const secrets[] = { "hunter22", "abc" };
	static char big[100 * 1024];
	struct capture c;
	char *tail;

	/* stdout and stderr keep their streams; nothing is sent before a flush or a full chunk */
	reset();
	ok(capture_init(&c, &H, 1 << 20, 64, NULL, 0) == 0, "init");
	capture_add(&c, 0, "hello ", 6, 1000);
	capture_add(&c, 1, "oops\n", 5, 1001);
	capture_add(&c, 0, "world\n", 6, 1002);
	ok(S.chunks == 0, "nothing sent before the flush is due");
	ok(capture_flush_due(&c, 1010, 50) == 40,
	   "the first flush is due 50 ms after the oldest byte");
	ok(capture_flush_due(&c, 1050, 50) == 1 && S.chunks == 1,
	   "at 50 ms stdout is sent; stderr is due in 1 ms");
	ok(capture_flush_due(&c, 1051, 50) == -1 && S.chunks == 2,
	   "then stderr; nothing is pending");
	is_str(S.all[0], "hello world\n", "stdout in order");
	is_str(S.all[1], "oops\n", "stderr apart");
	tail = capture_tail(&c);
	is_str(tail, "hello oops\nworld\n", "the tail is the combined stream");
	free(tail);
	capture_free(&c);

	/* a multi-byte character split between two reads is sent whole; invalid bytes and NUL
	 * become U+FFFD */
	reset();
	capture_init(&c, &H, 1 << 20, 0, NULL, 0);
	capture_add(&c, 0, "caf\xc3", 4, 0);
	capture_flush(&c, 0, 0, 0);
	is_str(S.all[0], "caf", "an incomplete character waits for its end");
	capture_add(&c, 0, "\xa9 \xff\x00!", 5, 1);
	capture_flush(&c, 0, 1, 1);
	is_str(S.all[0], "caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd!",
	       "completed; 0xff and NUL replaced");
	ok(S.bad == 0, "sequence numbers in order, no NUL, no oversized chunk");
	capture_free(&c);

	/* secrets are masked, also when written in two pieces; short ones are not */
	reset();
	capture_init(&c, &H, 1 << 20, 128, secrets, 2);
	capture_add(&c, 0, "pw=hunt", 7, 0);
	capture_flush(&c, 0, 0, 0);
	is_str(S.all[0], "pw=", "the possible start of a secret is held back");
	capture_add(&c, 0, "er22 abc\n", 9, 1);
	capture_flush(&c, 0, 1, 1);
	is_str(S.all[0], "pw=*** ***\n", "the secret is masked whole; a 3-byte one is masked too");
	tail = capture_tail(&c);
	ok(tail && !strstr(tail, "hunter22") && strstr(tail, "***"), "the tail is masked too (%s)",
	   tail ? tail : "NULL");
	free(tail);
	capture_free(&c);

	/* the output cap: what is past it is counted and marks the result truncated; the tail
	 * still shows the end */
	reset();
	memset(big, 'a', sizeof(big));
	memcpy(big + sizeof(big) - 4, "END\n", 4);
	capture_init(&c, &H, 70 * 1024, 16, NULL, 0);
	capture_add(&c, 0, big, sizeof(big), 0);
	capture_flush(&c, 0, 1, 0);
	ok(S.len[0] == 70 * 1024, "exactly maxOutputBytes sent (%zu)", S.len[0]);
	ok(c.truncated, "truncated");
	ok(S.max_chunk <= EXEC_LOG_CHUNK_MAX && S.chunks >= 3,
	   "in chunks of at most %d (%d chunks)", EXEC_LOG_CHUNK_MAX, S.chunks);
	tail = capture_tail(&c);
	ok(tail && strlen(tail) == 16 && strcmp(tail + 12, "END\n") == 0,
	   "the tail ends the stream");
	free(tail);
	capture_free(&c);

	/* replacement characters grow a chunk past the cap: it is split on a character boundary */
	reset();
	memset(big, 0xff, EXEC_LOG_CHUNK_MAX);
	capture_init(&c, &H, 1 << 20, 0, NULL, 0);
	capture_add(&c, 1, big, EXEC_LOG_CHUNK_MAX, 0);
	capture_flush(&c, 1, 1, 0);
	ok(S.len[1] == 3 * (size_t)EXEC_LOG_CHUNK_MAX && S.bad == 0,
	   "every byte replaced, sent in valid pieces (%zu bytes)", S.len[1]);
	capture_free(&c);

	/* a hook that drops chunks marks the result truncated */
	reset();
	S.fail = 1;
	capture_init(&c, &H, 1 << 20, 0, NULL, 0);
	capture_add(&c, 0, "x\n", 2, 0);
	capture_flush(&c, 0, 1, 0);
	ok(c.truncated, "a dropped chunk marks the capture truncated");
	capture_free(&c);

	/* the tail starting inside a character or a secret */
	reset();
	capture_init(&c, NULL, 1 << 20, 8, secrets, 1);
	capture_add(&c, 0, "xx\xc3\xa9hunter22", 12, 0);
	tail = capture_tail(&c);
	ok(tail && !strstr(tail, "unter22") && strstr(tail, "***"),
	   "a tail that begins inside a secret masks its end (%s)", tail ? tail : "NULL");
	free(tail);
	capture_free(&c);

	/* capture_mask and capture_utf8_sanitize */
	{
		struct buf b;
		buf_init(&b, 64);
		buf_append(&b, "a hunter22 b hunter22", 22);
		capture_mask(secrets, 2, &b);
		is_str(b.data, "a *** b ***", "capture_mask replaces every occurrence");
		buf_reset(&b);
		ok(capture_utf8_sanitize("\xed\xa0\x80"
					 "ok",
					 5, &b) == 0 &&
			   b.len == 3 * 3 + 2,
		   "a surrogate is three replacement characters");
		buf_free(&b);
	}
	return done_testing();
}
