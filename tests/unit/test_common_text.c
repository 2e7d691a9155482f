/* common/mask, common/utf8 and the bounded buffer (common/util): the one secret masker, the
 * UTF-8 functions both binaries use, and a buffer that keeps nothing after a failed append. */
#include "mask.h"
#include "tap.h"
#include "utf8.h"
#include "util.h"

#include <errno.h>

static void test_buf(void)
{
	struct buf b;
	char *s;
	size_t n;

	buf_init(&b, 8);
	is_int(buf_puts(&b, "abc"), 0, "append within the maximum");
	is_int(buf_printf(&b, "%d%s", 12, "x"), 0, "printf within the maximum");
	is_str(b.data, "abc12x", "printf appends");
	is_int(buf_puts(&b, "too long"), -ENOBUFS, "past the maximum fails");
	ok(b.data == NULL && b.len == 0, "a failed append frees what was there");
	is_int(buf_puts(&b, "z"), -ENOBUFS, "and every later append fails");
	ok(buf_take(&b, &n) == NULL, "buf_take after a failure gives nothing");
	is_int(buf_puts(&b, "ok"), 0, "buf_take makes the buffer usable again");
	s = buf_take(&b, &n);
	is_str(s, "ok", "buf_take hands the bytes over");
	is_int((long long)n, 2, "with their length");
	ok(b.data == NULL && b.len == 0, "and leaves the buffer empty");
	free(s);
	s = buf_take(&b, NULL);
	is_str(s, "", "an empty buffer gives \"\"");
	free(s);
	is_int(buf_printf(&b, "%s", "123456789"), -ENOBUFS, "printf past the maximum fails");
	buf_reset(&b);
	is_int(buf_puts(&b, "1"), 0, "buf_reset clears the failure");
	buf_free(&b);
}

static void test_utf8(void)
{
	struct buf b;
	char enc[4];

	ok(utf8_valid("h\xc3\xa9llo \xf0\x9f\x98\x80", 11), "valid text");
	ok(!utf8_valid("\xc0\xaf", 2), "overlong refused");
	ok(!utf8_valid("\xed\xa0\x80", 3), "surrogate refused");
	ok(!utf8_valid("\xf4\x90\x80\x80", 4), "past U+10FFFF refused");
	ok(!utf8_valid("\xe2\x82", 2), "truncated refused");
	is_int((long long)utf8_count("h\xc3\xa9", 3), 2, "count code points");
	is_int((long long)utf8_put(0x1f600, enc), 4, "encode a 4-byte code point");
	ok(memcmp(enc, "\xf0\x9f\x98\x80", 4) == 0, "encoded bytes");
	is_int((long long)utf8_put(0xd800, enc), 0, "a surrogate does not encode");
	is_int((long long)utf8_complete("ab\xe2\x82", 4), 2,
	       "complete prefix stops before a partial character");
	is_str(utf8_tail("x\xc3\xa9y", 2), "y", "tail never starts inside a character");
	buf_init(&b, 64);
	is_int(utf8_sanitize("a\0b\xff", 4, &b), 0, "sanitize");
	is_str(b.data,
	       "a\xef\xbf\xbd"
	       "b\xef\xbf\xbd",
	       "NUL and invalid bytes become U+FFFD");
	buf_free(&b);
	buf_init(&b, 4);
	is_int(utf8_sanitize("\xff\xff", 2, &b), -ENOBUFS, "sanitize past the maximum fails");
	ok(b.data == NULL, "and leaves nothing");
	buf_free(&b);
}

static void test_mask(void)
{
	const char *sec[] = { "hunter2", "hunter22", "ab", "", "x" };
	struct buf b;
	char *m;

	is_int(mask_string("pw=hunter22;", sec, 2, &m), 1, "one secret replaced");
	is_str(m, "pw=***;", "the longest secret wins");
	free(m);
	is_int(mask_string("ab-x-abab", sec, 5, &m), 4, "short secrets are masked too");
	is_str(m, "***-***-******", "one- and two-byte secrets, empty ignored");
	free(m);
	is_int(mask_string("nothing", sec, 2, &m), 0, "no match");
	is_str(m, "nothing", "text unchanged");
	free(m);
	buf_init(&b, 16);
	is_int(buf_puts(&b, "x ab x"), 0, "fill");
	is_int(mask_buf(&b, sec, 5), 3, "mask in place");
	is_str(b.data, "*** *** ***", "in place, growing past the text");
	is_int((long long)b.max, 16, "the buffer keeps its maximum");
	buf_free(&b);
	buf_init(&b, 4);
	is_int(mask_text("abab", 4, sec, 3, &b), -ENOBUFS, "masked text past the maximum fails");
	ok(b.data == NULL, "fail closed: nothing kept");
	buf_free(&b);
	is_int((long long)mask_pending("out: hunt", 9, sec, 2, 4096), 4,
	       "a secret's beginning is held back");
	is_int((long long)mask_pending("out: hunter2", 12, sec, 1, 4096), 0,
	       "a whole secret is not held");
	is_int((long long)mask_pending("out: hunt", 9, sec, 2, 4), 0,
	       "secrets longer than the hold are not held");
}

int main(void)
{
	test_buf();
	test_utf8();
	test_mask();
	return done_testing();
}
