/* The runner's plain-HTTP auth POST (runner/plainhttp.c): the answer parser, and a POST against
 * a one-shot server on loopback (what it sends, what it returns, its deadline). */
#include "plainhttp.h"
#include "tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int parse(const char *s, long *st, const char **b, size_t *bl)
{
	return ph_parse_response(s, strlen(s), st, b, bl);
}

static void test_parse(void)
{
	const char *b;
	size_t bl;
	long st = 0;

	is_int(parse("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: "
		     "5\r\n\r\nhelloXX",
		     &st, &b, &bl),
	       0, "a 200 with Content-Length parses");
	is_int(st, 200, "status 200");
	ok(bl == 5 && memcmp(b, "hello", 5) == 0, "the body stops at Content-Length");
	is_int(parse("HTTP/1.0 403 Forbidden\r\n\r\nno", &st, &b, &bl), 0,
	       "no Content-Length: the rest is the body");
	ok(st == 403 && bl == 2, "status 403, body of 2");
	is_int(parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", &st, &b, &bl), -EPROTO,
	       "a cut-off body");
	is_int(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", &st, &b,
		     &bl),
	       -EPROTO, "chunked is refused");
	is_int(parse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", &st, &b,
		     &bl),
	       -EPROTO, "two Content-Lengths are refused");
	is_int(parse("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", &st, &b,
		     &bl),
	       -EPROTO, "an overflowing Content-Length is refused");
	is_int(parse("HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nx", &st, &b, &bl), -EPROTO,
	       "junk after the length");
	is_int(parse("HTTP/1.1 2000\r\n\r\n", &st, &b, &bl), -EPROTO, "a four-digit status");
	is_int(parse("HTTP/1.1 099 x\r\n\r\n", &st, &b, &bl), -EPROTO, "a status below 100");
	is_int(parse("HTTP/1.1 200 OK\r\n", &st, &b, &bl), -EPROTO, "no end of the headers");
	is_int(parse("SSH-2.0-x\r\n\r\n", &st, &b, &bl), -EPROTO, "not HTTP");
}

struct srv {
	int lfd, port, reply;
	char req[4096];
};

static void *serve(void *ud)
{
	struct srv *s = ud;
	size_t len = 0;
	int fd = accept(s->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	while (len < sizeof(s->req) - 1) {
		ssize_t n = read(fd, s->req + len, sizeof(s->req) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		s->req[len] = '\0';
		if (strstr(s->req, "\r\n\r\n") && strstr(s->req, "}"))
			break;
	}
	if (s->reply) {
		static const char a[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
					"Content-Length: 16\r\n\r\n{\"grant\":\"abcd\"}";
		(void)!write(fd, a, sizeof(a) - 1);
	} else {
		sleep(2); /* never answers within the client's deadline */
	}
	close(fd);
	return NULL;
}

static int start(struct srv *s, pthread_t *th)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(s->lfd, 1) < 0 || getsockname(s->lfd, (struct sockaddr *)&sa, &sl) < 0)
		return -1;
	s->port = ntohs(sa.sin_port);
	return pthread_create(th, NULL, serve, s) == 0 ? 0 : -1;
}

static void test_post(void)
{
	struct srv s = { .reply = 1 };
	struct buf resp;
	pthread_t th;
	long st = 0;

	buf_init(&resp, 64 * 1024);
	if (!ok(start(&s, &th) == 0, "a server on loopback"))
		return;
	is_int(ph_post("127.0.0.1", s.port, "/runners/auth", "{\"token\":\"t\"}", 2000, 5000, NULL,
		       NULL, &resp, &st),
	       0, "the POST succeeds");
	pthread_join(th, NULL);
	close(s.lfd);
	is_int(st, 200, "its status");
	is_str(resp.data ? resp.data : "", "{\"grant\":\"abcd\"}", "its body");
	ok(strncmp(s.req, "POST /runners/auth HTTP/1.1\r\n", 29) == 0, "the request line");
	ok(strstr(s.req, "\r\nHost: 127.0.0.1:") != NULL, "a Host header");
	ok(strstr(s.req, "\r\nContent-Length: 13\r\n") != NULL, "the body's length");
	ok(strstr(s.req, "\r\nConnection: close\r\n") != NULL, "Connection: close");
	ok(strstr(s.req, "\r\n\r\n{\"token\":\"t\"}") != NULL, "the body after the headers");
	buf_free(&resp);
}

static void test_timeout(void)
{
	struct srv s = { .reply = 0 };
	struct buf resp;
	pthread_t th;
	long st = 0;

	buf_init(&resp, 1024);
	if (!ok(start(&s, &th) == 0, "a silent server on loopback"))
		return;
	is_int(ph_post("127.0.0.1", s.port, "/x", "{}", 200, 300, NULL, NULL, &resp, &st),
	       -ETIMEDOUT, "no answer within the deadline: -ETIMEDOUT");
	pthread_join(th, NULL);
	close(s.lfd);
	buf_free(&resp);
}

static int cancel_now(void *ud) { return 1; }

static void test_cancel(void)
{
	struct srv s = { .reply = 0 };
	struct buf resp;
	pthread_t th;
	long st = 0;

	buf_init(&resp, 1024);
	if (!ok(start(&s, &th) == 0, "another silent server on loopback"))
		return;
	is_int(ph_post("127.0.0.1", s.port, "/x", "{}", 5000, 5000, cancel_now, NULL, &resp, &st),
	       -ECANCELED, "cancelled while it waits for the answer: -ECANCELED");
	pthread_join(th, NULL);
	close(s.lfd);
	buf_free(&resp);
}

int main(void)
{
	test_parse();
	test_post();
	test_timeout();
	test_cancel();
	return done_testing();
}
