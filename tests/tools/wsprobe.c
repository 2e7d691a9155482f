/* wsprobe: a deliberately small, raw WebSocket client for broker tests. It can send what a
 * well-behaved runner never would (garbage, oversized frames, replayed grants) and reports
 * exactly what the server did.
 *
 *   wsprobe HOST PORT [options] [--send TEXT | --send-size N]...
 *     --token T        POST /runners/auth with token T first and use the grant
 *     --grant G        use this grant (e.g. one already used)
 *     --print-grant    print the grant obtained with --token
 *     --proto P        subprotocol (default tasked.runner.v1; "" for none)
 *     --wait-ms N      how long to read after the last send (default 2000)
 *     --source ADDR    connect from this local IPv4 address (e.g. 127.0.0.2)
 *     --auth-only      stop after POST /runners/auth (prints "auth <status>")
 *     --unmasked       send frames without the client mask (RFC 6455 forbids it)
 *     --early TEXT     send TEXT as a frame in the same write as the upgrade request, before
 *                      the 101 (RFC 6455 4.1 forbids it)
 *     --pause-ms N     (between sends) read until nothing arrived for N ms
 *     --send-unmasked TEXT  (between sends) one frame without the client mask
 *     --expect T N     (between sends) read until N received messages in all contained T
 *                      (at most 60 s)
 *
 * Output lines: "auth <status>", "grant <hex>", "upgrade <status>", "recv <text>",
 * "close <code> <reason>", "eof". Exit status 0 unless the tool itself failed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *source;
static int unmasked;
static const char *expect_text;
static int expect_seen, expect_want;

static int dial(const char *host, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct sockaddr_in src = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && source &&
	    (inet_pton(AF_INET, source, &src.sin_addr) != 1 ||
	     bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)) {
		perror("bind");
		exit(1);
	}
	if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("connect");
		exit(1);
	}
	return fd;
}

static void write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			printf("write-error %s\n", strerror(errno));
			return;
		}
		c += w;
		n -= (size_t)w;
	}
}

/* Reads until the end of HTTP headers (and, for auth, the body); returns bytes read. */
static size_t read_http(int fd, char *buf, size_t cap, int want_body)
{
	size_t len = 0;
	while (len + 1 < cap) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;
		char *end;
		if (poll(&p, 1, 5000) <= 0)
			break;
		n = read(fd, buf + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (end && !want_body)
			break;
		if (end && want_body) {
			char *cl = strcasestr(buf, "content-length:");
			if (cl && strlen(end + 4) >= (size_t)strtol(cl + 15, NULL, 10))
				break;
		}
	}
	buf[len] = '\0';
	return len;
}

static int get_grant(const char *host, int port, const char *token, char *grant, size_t gsz)
{
	char req[2048], resp[8192], body[1024], *g;
	int fd = dial(host, port), code = 0;
	snprintf(body, sizeof(body), "{\"token\":\"%s\"}", token);
	snprintf(req, sizeof(req),
		 "POST /runners/auth HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
		 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
		 host, strlen(body), body);
	write_all(fd, req, strlen(req));
	read_http(fd, resp, sizeof(resp), 1);
	close(fd);
	sscanf(resp, "HTTP/1.1 %d", &code);
	printf("auth %d\n", code);
	g = strstr(resp, "\"grant\":\"");
	if (!g)
		return -1;
	g += 9;
	snprintf(grant, gsz, "%.*s", (int)strcspn(g, "\""), g);
	return 0;
}

/* One text frame (header and payload) into a new buffer; *len its length. */
static unsigned char *build_frame(const char *data, size_t n, int masked, size_t *len)
{
	unsigned char hdr[14], mask[4] = { 0x12, 0x34, 0x56, 0x78 };
	unsigned char mbit = masked ? 0x80 : 0;
	size_t h = 0;
	unsigned char *m = malloc(n + sizeof(hdr));
	if (!m) {
		perror("malloc");
		exit(1);
	}
	hdr[h++] = 0x81; /* FIN + text */
	if (n < 126) {
		hdr[h++] = (unsigned char)(mbit | n);
	} else if (n < 65536) {
		hdr[h++] = mbit | 126;
		hdr[h++] = (unsigned char)(n >> 8);
		hdr[h++] = (unsigned char)n;
	} else {
		hdr[h++] = mbit | 127;
		for (int i = 7; i >= 0; i--)
			hdr[h++] = (unsigned char)((uint64_t)n >> (8 * i));
	}
	if (mbit) {
		memcpy(hdr + h, mask, 4);
		h += 4;
	}
	memcpy(m, hdr, h);
	for (size_t i = 0; i < n; i++)
		m[h + i] = (unsigned char)(mbit ? data[i] ^ mask[i & 3] : data[i]);
	*len = h + n;
	return m;
}

static void send_frame_masked(int fd, const char *data, size_t n, int masked)
{
	size_t len;
	unsigned char *m = build_frame(data, n, masked, &len);
	write_all(fd, m, len);
	free(m);
}

static void send_frame(int fd, const char *data, size_t n)
{
	send_frame_masked(fd, data, n, !unmasked);
}

/* Prints frames until close, EOF or the deadline (or, with quiet_timeout, until nothing came
 * for wait_ms, or until the expected messages came: returns 0 then, 1 after close or EOF). */
static int read_frames(int fd, int wait_ms, int quiet_timeout)
{
	static unsigned char buf[1 << 21];
	static size_t len;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;
		if (poll(&p, 1, wait_ms) <= 0) {
			if (quiet_timeout)
				return 0;
			printf("timeout\n");
			return 1;
		}
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n <= 0) {
			printf("eof\n");
			return 1;
		}
		len += (size_t)n;
		while (len >= 2) {
			size_t plen = buf[1] & 0x7f, off = 2;
			int op = buf[0] & 0x0f;
			if (plen == 126) {
				if (len < 4)
					break;
				plen = (size_t)buf[2] << 8 | buf[3];
				off = 4;
			} else if (plen == 127) {
				if (len < 10)
					break;
				plen = 0;
				for (int i = 2; i < 10; i++)
					plen = plen << 8 | buf[i];
				off = 10;
			}
			if (len < off + plen)
				break;
			if (op == 1) {
				printf("recv %.*s\n", (int)plen, buf + off);
				if (expect_text &&
				    memmem(buf + off, plen, expect_text, strlen(expect_text)))
					expect_seen++;
			} else if (op == 8) {
				int code = plen >= 2 ? buf[off] << 8 | buf[off + 1] : 0;
				printf("close %d %.*s\n", code, plen > 2 ? (int)(plen - 2) : 0,
				       buf + off + 2);
				fflush(stdout);
				return 1;
			}
			memmove(buf, buf + off + plen, len - off - plen);
			len -= off + plen;
		}
		fflush(stdout);
		if (expect_text && expect_seen >= expect_want)
			return 0;
	}
}

int main(int argc, char **argv)
{
	const char *host, *proto = "tasked.runner.v1", *grant_arg = NULL, *token = NULL,
			  *early = NULL;
	char grant[256] = "", req[4096], resp[8192];
	int port, fd, code = 0, wait_ms = 2000, print_grant = 0, auth_only = 0, closed = 0, i;

	if (argc < 3) {
		fprintf(stderr,
			"usage: wsprobe HOST PORT [--token T|--grant G] [--send TEXT|--send-size N]...\n");
		return 2;
	}
	host = argv[1];
	port = (int)strtol(argv[2], NULL, 10);
	for (i = 3; i < argc; i++) {
		if (strcmp(argv[i], "--token") == 0 && i + 1 < argc)
			token = argv[++i];
		else if (strcmp(argv[i], "--grant") == 0 && i + 1 < argc)
			grant_arg = argv[++i];
		else if (strcmp(argv[i], "--proto") == 0 && i + 1 < argc)
			proto = argv[++i];
		else if (strcmp(argv[i], "--wait-ms") == 0 && i + 1 < argc)
			wait_ms = (int)strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--print-grant") == 0)
			print_grant = 1;
		else if (strcmp(argv[i], "--source") == 0 && i + 1 < argc)
			source = argv[++i];
		else if (strcmp(argv[i], "--auth-only") == 0)
			auth_only = 1;
		else if (strcmp(argv[i], "--unmasked") == 0)
			unmasked = 1;
		else if (strcmp(argv[i], "--early") == 0 && i + 1 < argc)
			early = argv[++i];
		else if (strcmp(argv[i], "--send") == 0 ||
			 strcmp(argv[i], "--send-unmasked") == 0 ||
			 strcmp(argv[i], "--send-size") == 0 || strcmp(argv[i], "--pause-ms") == 0)
			i++;
		else if (strcmp(argv[i], "--expect") == 0 && i + 2 < argc)
			i += 2;
		else {
			fprintf(stderr, "wsprobe: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (token && (get_grant(host, port, token, grant, sizeof(grant)) < 0 || auth_only))
		return 0;
	if (grant_arg)
		snprintf(grant, sizeof(grant), "%s", grant_arg);
	if (print_grant)
		printf("grant %s\n", grant);
	fd = dial(host, port);
	snprintf(
		req, sizeof(req),
		"GET /runners/ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
		"%s%s%s%s%s%s\r\n",
		host, port, proto[0] ? "Sec-WebSocket-Protocol: " : "", proto,
		proto[0] ? "\r\n" : "", grant[0] ? "Authorization: Bearer " : "", grant,
		grant[0] ? "\r\n" : "");
	if (early) {
		size_t flen, rlen = strlen(req);
		unsigned char *f = build_frame(early, strlen(early), 1, &flen);
		if (rlen + flen < sizeof(req))
			memcpy(req + rlen, f, flen);
		free(f);
		write_all(fd, req, rlen + flen < sizeof(req) ? rlen + flen : rlen);
	} else {
		write_all(fd, req, strlen(req));
	}
	read_http(fd, resp, sizeof(resp), 0);
	sscanf(resp, "HTTP/1.1 %d", &code);
	printf("upgrade %d\n", code);
	fflush(stdout);
	if (code != 101) {
		close(fd);
		return 0;
	}
	for (i = 3; i < argc && !closed; i++) {
		if (strcmp(argv[i], "--pause-ms") == 0) {
			closed = read_frames(fd, (int)strtol(argv[++i], NULL, 10), 1);
		} else if (strcmp(argv[i], "--expect") == 0) {
			expect_text = argv[++i];
			expect_want = (int)strtol(argv[++i], NULL, 10);
			if (expect_seen < expect_want)
				closed = read_frames(fd, 60000, 1);
			expect_text = NULL;
			expect_seen = 0;
		} else if (strcmp(argv[i], "--send") == 0) {
			send_frame(fd, argv[i + 1], strlen(argv[i + 1]));
			i++;
		} else if (strcmp(argv[i], "--send-unmasked") == 0) {
			send_frame_masked(fd, argv[i + 1], strlen(argv[i + 1]), 0);
			i++;
		} else if (strcmp(argv[i], "--send-size") == 0) {
			size_t n = (size_t)strtoull(argv[++i], NULL, 10);
			char *big = malloc(n);
			memset(big, 'a', n);
			send_frame(fd, big, n);
			free(big);
		} else if (strcmp(argv[i], "--token") == 0 || strcmp(argv[i], "--grant") == 0 ||
			   strcmp(argv[i], "--proto") == 0 || strcmp(argv[i], "--wait-ms") == 0 ||
			   strcmp(argv[i], "--source") == 0 || strcmp(argv[i], "--early") == 0) {
			i++;
		}
	}
	if (!closed)
		read_frames(fd, wait_ms, 0);
	close(fd);
	return 0;
}
