#include "plainhttp.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PH_STEP_MS 200

static int ph_hdr_is(const char *line, size_t n, const char *name)
{
	size_t k = strlen(name);
	return n > k && line[k] == ':' && strncasecmp(line, name, k) == 0;
}

int ph_parse_response(const char *data, size_t len, long *status, const char **body,
		      size_t *body_len)
{
	const char *end = NULL, *p, *eol;
	size_t hlen, clen = 0;
	int have_clen = 0;

	for (size_t i = 0; i + 4 <= len && i < PH_HEAD_MAX; i++) {
		if (memcmp(data + i, "\r\n\r\n", 4) == 0) {
			end = data + i;
			break;
		}
	}
	if (!end)
		return -EPROTO;
	hlen = (size_t)(end - data);
	/* "HTTP/1.x NNN" then a space or the end of the line */
	if (hlen < 12 || memcmp(data, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)data[7]) ||
	    data[8] != ' ' || !isdigit((unsigned char)data[9]) ||
	    !isdigit((unsigned char)data[10]) || !isdigit((unsigned char)data[11]) ||
	    data[9] == '0' || (hlen > 12 && data[12] != ' ' && data[12] != '\r'))
		return -EPROTO;
	*status = (data[9] - '0') * 100 + (data[10] - '0') * 10 + (data[11] - '0');
	for (p = memchr(data, '\n', hlen); p && p < end; p = eol) {
		size_t n;
		p++;
		eol = memchr(p, '\n', (size_t)(end + 2 - p));
		if (!eol)
			break;
		n = (size_t)(eol - p);
		if (n && p[n - 1] == '\r')
			n--;
		if (ph_hdr_is(p, n, "transfer-encoding"))
			return -EPROTO;
		if (ph_hdr_is(p, n, "content-length")) {
			size_t i = 15, v = 0;
			while (i < n && (p[i] == ' ' || p[i] == '\t'))
				i++;
			if (i == n || have_clen)
				return -EPROTO;
			for (; i < n && isdigit((unsigned char)p[i]); i++) {
				if (v > (SIZE_MAX - 9) / 10)
					return -EPROTO;
				v = v * 10 + (size_t)(p[i] - '0');
			}
			while (i < n && (p[i] == ' ' || p[i] == '\t'))
				i++;
			if (i != n)
				return -EPROTO;
			clen = v;
			have_clen = 1;
		}
	}
	*body = end + 4;
	*body_len = len - hlen - 4;
	if (have_clen) {
		if (clen > *body_len)
			return -EPROTO;
		*body_len = clen;
	}
	return 0;
}

static int64_t ph_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd until the deadline, checking cancel between steps. */
static int ph_wait(int fd, short events, int64_t deadline, int (*cancel)(void *), void *ud)
{
	for (;;) {
		struct pollfd pf = { .fd = fd, .events = events };
		int64_t left = deadline - ph_now_ms();
		int r;
		if (cancel && cancel(ud))
			return -ECANCELED;
		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&pf, 1, (int)(left < PH_STEP_MS ? left : PH_STEP_MS));
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

static int ph_connect(const char *host, int port, int64_t deadline, int (*cancel)(void *), void *ud)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV },
			*res = NULL, *ai;
	char portstr[8];
	int fd = -1, r = -EHOSTUNREACH;

	snprintf(portstr, sizeof(portstr), "%d", port);
	if (getaddrinfo(host, portstr, &hints, &res) != 0)
		return -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		int err = 0;
		socklen_t el = sizeof(err);
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			r = -errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		r = errno == EINPROGRESS ? ph_wait(fd, POLLOUT, deadline, cancel, ud) : -errno;
		if (r == 0)
			r = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 ? -errno : -err;
		if (r == 0)
			break;
		close(fd);
		fd = -1;
		if (r == -ETIMEDOUT || r == -ECANCELED)
			break;
	}
	freeaddrinfo(res);
	return fd >= 0 ? fd : r;
}

static int ph_send(int fd, const char *p, size_t n, int64_t deadline, int (*cancel)(void *),
		   void *ud)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			int r = ph_wait(fd, POLLOUT, deadline, cancel, ud);
			if (r < 0)
				return r;
			continue;
		}
		if (w <= 0)
			return w < 0 ? -errno : -EPIPE;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int ph_post(const char *host, int port, const char *path, const char *body, int connect_ms,
	    int timeout_ms, int (*cancel)(void *), void *ud, struct buf *resp, long *status)
{
	int64_t start = ph_now_ms(), deadline = start + timeout_ms;
	int64_t cdeadline = start + (connect_ms < timeout_ms ? connect_ms : timeout_ms);
	size_t cap = PH_HEAD_MAX + resp->max, len = 0, blen = strlen(body);
	char head[1024], *in = NULL;
	const char *b;
	size_t bl;
	int fd, n, r;

	n = snprintf(head, sizeof(head),
		     "POST %s HTTP/1.1\r\nHost: %s%s%s:%d\r\nContent-Type: application/json\r\n"
		     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
		     path, strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", port,
		     blen);
	if (n < 0 || (size_t)n >= sizeof(head))
		return -ENAMETOOLONG;
	in = malloc(cap);
	if (!in)
		return -ENOMEM;
	fd = ph_connect(host, port, cdeadline, cancel, ud);
	if (fd < 0) {
		free(in);
		return fd;
	}
	r = ph_send(fd, head, (size_t)n, deadline, cancel, ud);
	if (r == 0)
		r = ph_send(fd, body, blen, deadline, cancel, ud);
	/* Connection: close: the answer ends where the stream does. */
	while (r == 0) {
		ssize_t got = recv(fd, in + len, cap - len, 0);
		if (got == 0)
			break;
		if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
			r = ph_wait(fd, POLLIN, deadline, cancel, ud);
			continue;
		}
		if (got < 0) {
			r = -errno;
			break;
		}
		len += (size_t)got;
		if (len == cap)
			r = -ENOBUFS;
	}
	close(fd);
	if (r == 0)
		r = ph_parse_response(in, len, status, &b, &bl);
	if (r == 0)
		r = buf_append(resp, b, bl);
	explicit_bzero(in, len); /* the grant */
	free(in);
	return r;
}
