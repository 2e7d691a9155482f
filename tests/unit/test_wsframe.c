/* The masking rule (RFC 6455 §5.1) enforced under libwebsockets: the frame-header tracker, the
 * opening-handshake boundary, and the recv() hook on a real socket pair. */
#include "tap.h"
#include "wsframe.h"
#include "wsguard.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A frame header (+ key if masked) and n payload bytes 'a' into out; returns its length. */
static size_t frame(unsigned char *out, int opcode, int masked, uint64_t n)
{
	size_t h = 0;
	out[h++] = (unsigned char)(0x80 | opcode);
	if (n < 126) {
		out[h++] = (unsigned char)((masked ? 0x80 : 0) | n);
	} else if (n < 65536) {
		out[h++] = (unsigned char)((masked ? 0x80 : 0) | 126);
		out[h++] = (unsigned char)(n >> 8);
		out[h++] = (unsigned char)n;
	} else {
		out[h++] = (unsigned char)((masked ? 0x80 : 0) | 127);
		for (int i = 7; i >= 0; i--)
			out[h++] = (unsigned char)(n >> (8 * i));
	}
	if (masked) {
		memcpy(out + h, "\x01\x02\x03\x04", 4);
		h += 4;
	}
	memset(out + h, 'a', (size_t)n);
	return h + (size_t)n;
}

static void test_tracker(void)
{
	static unsigned char buf[200000];
	struct wsframe f;
	size_t n = 0, a, b;
	long first = 7;

	/* Masked frames of every length form, a ping, and a zero-length frame: all fine. */
	n += frame(buf + n, 1, 1, 5);
	n += frame(buf + n, 1, 1, 300);
	n += frame(buf + n, 2, 1, 70000);
	n += frame(buf + n, 9, 1, 0);
	n += frame(buf + n, 1, 1, 0);
	wsframe_init(&f, 1);
	is_int(wsframe_feed(&f, buf, n, &first), WSFRAME_OK, "masked frames from a client pass");
	is_int((int)f.frames, 5, "... all five headers were judged");

	/* The same, byte by byte: header state carries across calls. */
	wsframe_init(&f, 1);
	for (size_t i = 0; i < n; i++)
		if (wsframe_feed(&f, buf + i, 1, &first) != WSFRAME_OK)
			break;
	ok(f.verdict == WSFRAME_OK && f.frames == 5, "... also fed one byte at a time");

	/* An unmasked frame after a good one: its first byte is named. */
	a = frame(buf, 1, 1, 10);
	b = frame(buf + a, 1, 0, 10);
	wsframe_init(&f, 1);
	is_int(wsframe_feed(&f, buf, a + b, &first), WSFRAME_BAD_MASK,
	       "an unmasked client frame is refused");
	is_int((int)first, (int)a, "... and its first header byte located");
	is_int(wsframe_feed(&f, buf, a, &first), WSFRAME_BAD_MASK, "... the verdict sticks");

	/* Split between two reads right after the first header byte. */
	wsframe_init(&f, 1);
	is_int(wsframe_feed(&f, buf, a + 1, &first), WSFRAME_OK,
	       "first header byte alone: no verdict yet");
	is_int(wsframe_feed(&f, buf + a + 1, b - 1, &first), WSFRAME_BAD_MASK,
	       "second byte: refused");
	is_int((int)first, -1, "... the first byte came in the earlier read");

	/* A mask bit inside a payload is not a header. */
	a = frame(buf, 1, 1, 4);
	memset(buf + a - 4, 0x81, 4); /* payload bytes that look like an unmasked header */
	wsframe_init(&f, 1);
	is_int(wsframe_feed(&f, buf, a, &first), WSFRAME_OK,
	       "payload bytes are skipped, not judged");

	/* The client side: a masked frame from a server is refused, an unmasked one passes. */
	a = frame(buf, 1, 0, 3);
	b = frame(buf + a, 1, 1, 3);
	wsframe_init(&f, 0);
	is_int(wsframe_feed(&f, buf, a, &first), WSFRAME_OK, "unmasked server frame passes");
	is_int(wsframe_feed(&f, buf + a, b, &first), WSFRAME_BAD_MASK,
	       "masked server frame is refused");
	is_int((int)first, 0, "... at offset 0 of that read");

	/* A 64-bit length with bit 63 set: lws kills the connection itself; judging stops. */
	memcpy(buf, "\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00", 10);
	wsframe_init(&f, 1);
	is_int(wsframe_feed(&f, buf, 10, &first), WSFRAME_UNTRACKED, "length bit 63: untracked");
}

static void test_http(void)
{
	static const char req[] =
		"GET /runners/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";
	struct wsframe_http h;

	wsframe_http_init(&h);
	wsframe_http_feed(&h, (const unsigned char *)req, 10);
	is_int(wsframe_http_done(&h), -EPROTO, "half a head is not a head");
	wsframe_http_feed(&h, (const unsigned char *)req + 10, sizeof(req) - 11);
	is_int(wsframe_http_done(&h), 0, "exactly one head, nothing after it");

	wsframe_http_init(&h);
	wsframe_http_feed(&h, (const unsigned char *)req, sizeof(req) - 1);
	wsframe_http_feed(&h, (const unsigned char *)"\x81\x05", 2);
	is_int(wsframe_http_done(&h), -EPROTO, "frame bytes pipelined after the head are refused");

	wsframe_http_init(&h);
	wsframe_http_feed(&h, (const unsigned char *)"POST /runners/auth HTTP/1.1\r\n\r\n", 31);
	wsframe_http_feed(&h, (const unsigned char *)req, sizeof(req) - 1);
	is_int(wsframe_http_done(&h), -EPROTO, "an earlier request on the connection is refused");

	wsframe_http_init(&h);
	wsframe_http_feed(&h, (const unsigned char *)"GET / HTTP/1.1\nHost: x\n\n", 24);
	is_int(wsframe_http_done(&h), 0, "bare LF line ends count (lenient parsers accept them)");
	wsframe_http_init(&h);
	wsframe_http_feed(&h, (const unsigned char *)"GET / HTTP/1.1\n\n\n", 17);
	is_int(wsframe_http_done(&h), -EPROTO, "two empty lines are two candidate ends");
}

/* The recv() hook on a socket pair: what a server built on lws would read. */
static void test_guard(void)
{
	static const char req[] = "GET /runners/ws HTTP/1.1\r\nHost: x\r\n\r\n";
	unsigned char out[256], in[256];
	size_t a, b;
	ssize_t n;
	int sv[2];
	unsigned long long before = wsguard_refused_total();

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		ok(0, "socketpair: %s", strerror(errno));
		return;
	}
	is_int(wsguard_watch(sv[0], 1), 0, "watching a connection");
	is_int(wsguard_upgrade(sv[1]), -ENOENT, "an unwatched descriptor cannot be upgraded");
	(void)!write(sv[1], req, sizeof(req) - 1);
	n = recv(sv[0], in, sizeof(in), 0);
	is_int((int)n, (int)sizeof(req) - 1, "the head passes through unchanged");
	is_int(wsguard_upgrade(sv[0]), 0, "... and ends exactly where lws switches to frames");

	a = frame(out, 1, 1, 5);
	b = frame(out + a, 1, 0, 5);
	(void)!write(sv[1], out, a + b);
	n = recv(sv[0], in, sizeof(in), 0);
	is_int((int)n, (int)a + 1, "the read stops just after the unmasked frame's first byte");
	ok(memcmp(in, out, a) == 0, "... the masked frame before it is delivered intact");
	is_int(in[a], 0x83,
	       "... the offending byte became a reserved opcode (lws fails with 1002)");
	is_int((int)(wsguard_refused_total() - before), 1, "... counted once");
	(void)!write(sv[1], out, a);
	is_int((int)recv(sv[0], in, sizeof(in), 0), 0, "every later read is end-of-file");
	is_int(wsguard_forget(sv[0]), 1, "forget reports the broken rule");
	(void)!write(sv[1], out, a);
	is_int((int)recv(sv[0], in, sizeof(in), 0), (int)a, "forgotten: reads pass through again");
	close(sv[0]);
	close(sv[1]);

	/* Frame bytes sent together with the head: the upgrade is refused. */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return;
	wsguard_watch(sv[0], 1);
	memcpy(out, req, sizeof(req) - 1);
	a = frame(out + sizeof(req) - 1, 1, 0, 5);
	(void)!write(sv[1], out, sizeof(req) - 1 + a);
	n = recv(sv[0], in, sizeof(in), 0);
	is_int((int)n, (int)(sizeof(req) - 1 + a), "pipelined frames are read with the head");
	is_int(wsguard_upgrade(sv[0]), -EPROTO, "... and the upgrade is refused");
	is_int(wsguard_forget(sv[0]), 0, "... not counted as a masking failure");
	close(sv[0]);
	close(sv[1]);

	/* An entry nobody forgot, its number now another socket's: that socket passes untouched. */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return;
	wsguard_watch(sv[0], 1);
	(void)!write(sv[1], req, sizeof(req) - 1);
	(void)!recv(sv[0], in, sizeof(in), 0);
	wsguard_upgrade(sv[0]);
	{
		int fd = sv[0], other[2], mine, peer;
		close(sv[0]);
		close(sv[1]);
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, other) < 0)
			return;
		ok(other[0] == fd || other[1] == fd, "the number was reused (%d)", fd);
		mine = other[0] == fd ? other[0] : other[1];
		peer = mine == other[0] ? other[1] : other[0];
		a = frame(out, 1, 0, 5); /* unmasked: the old connection would refuse it */
		(void)!write(peer, out, a);
		n = recv(mine, in, sizeof(in), 0);
		ok(n == (ssize_t)a && memcmp(in, out, a) == 0,
		   "a reused descriptor number is not judged");
		is_int(wsguard_upgrade(mine), -ENOENT, "... and its stale entry is gone");
		close(other[0]);
		close(other[1]);
	}

	is_int(wsguard_watch(WSGUARD_MAX_FD, 1), -EMFILE,
	       "a descriptor beyond the table is refused");
}

int main(void)
{
	test_tracker();
	test_http();
	test_guard();
	return done_testing();
}
