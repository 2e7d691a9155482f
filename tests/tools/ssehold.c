/* ssehold: opens many HTTP requests to an SSE endpoint at once and holds them, for the API's
 * connection-cap and slow-consumer tests. It never reuses a connection and never parses more
 * than the status line.
 *
 *   ssehold HOST PORT PATH [options]
 *     --key-file F     send X-API-Key with the key read from F (keeps it off the command line)
 *     --count N        connections to open (default 1)
 *     --hold-ms MS     how long to hold them after they are open (default: until SIGTERM/SIGINT)
 *     --rcvbuf BYTES   shrink the socket receive buffer before connecting (a slow client)
 *     --no-read        after the status line, read nothing while holding
 *     --drain-ms MS    after holding, read what is left for up to MS and report how each
 *                      connection ended (default 0: just close)
 *     --until-closed   stop holding early once the server has closed or reset every
 *                      connection (seen without reading, from POLLRDHUP/POLLHUP/POLLERR)
 *
 * Output: "status CODE COUNT" per distinct status, then "ready"; after holding, with
 * --drain-ms, "closed-by-server N", "still-open N" and "bytes N", and "held-ms N" (how long
 * the hold lasted). Exit status 0 unless the tool itself failed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONN 2000

static volatile sig_atomic_t stop;

static void on_sig(int sig)
{
	(void)sig;
	stop = 1;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A decimal option value, or exit: a typo must not silently become 0. */
static long num(const char *s)
{
	char *end;
	long v;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < 0) {
		fprintf(stderr, "ssehold: not a number: %s\n", s);
		exit(2);
	}
	return v;
}

static int dial(const char *host, int port, int rcvbuf)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads byte by byte up to the end of the headers (at most 8 KiB, 5 s); returns the status. */
static int read_status(int fd)
{
	char h[8192];
	size_t n = 0;
	int64_t deadline = now_ms() + 5000;
	int code = 0;

	while (n < sizeof(h) - 1) {
		struct pollfd p = { fd, POLLIN, 0 };
		int64_t left = deadline - now_ms();
		ssize_t r;
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		r = read(fd, h + n, 1);
		if (r <= 0)
			break;
		n++;
		if (n >= 4 && memcmp(h + n - 4, "\r\n\r\n", 4) == 0)
			break;
	}
	h[n] = '\0';
	if (sscanf(h, "HTTP/1.%*d %d", &code) != 1)
		code = 0;
	return code;
}

int main(int argc, char **argv)
{
	const char *host, *path;
	char key[1024] = "";
	int port, count = 1, rcvbuf = 0, no_read = 0, until_closed = 0, codes[600] = { 0 };
	static int gone[MAX_CONN];
	long hold_ms = -1, drain_ms = 0;
	static int fds[MAX_CONN];
	char req[8192];
	long long bytes = 0;

	if (argc < 4) {
		fprintf(stderr,
			"usage: ssehold HOST PORT PATH [--key-file F] [--count N] [--hold-ms MS] [--rcvbuf B] [--no-read] [--drain-ms MS]\n");
		return 2;
	}
	host = argv[1];
	port = (int)num(argv[2]);
	path = argv[3];
	for (int i = 4; i < argc; i++) {
		if (strcmp(argv[i], "--key-file") == 0 && i + 1 < argc) {
			FILE *f = fopen(argv[++i], "re");
			if (!f || !fgets(key, sizeof(key), f)) {
				fprintf(stderr, "ssehold: cannot read %s\n", argv[i]);
				return 2;
			}
			fclose(f);
			key[strcspn(key, "\r\n")] = '\0';
		} else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
			count = (int)num(argv[++i]);
		else if (strcmp(argv[i], "--hold-ms") == 0 && i + 1 < argc)
			hold_ms = num(argv[++i]);
		else if (strcmp(argv[i], "--rcvbuf") == 0 && i + 1 < argc)
			rcvbuf = (int)num(argv[++i]);
		else if (strcmp(argv[i], "--no-read") == 0)
			no_read = 1;
		else if (strcmp(argv[i], "--until-closed") == 0)
			until_closed = 1;
		else if (strcmp(argv[i], "--drain-ms") == 0 && i + 1 < argc)
			drain_ms = num(argv[++i]);
		else {
			fprintf(stderr, "ssehold: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (count < 1 || count > MAX_CONN) {
		fprintf(stderr, "ssehold: --count must be 1..%d\n", MAX_CONN);
		return 2;
	}
	signal(SIGTERM, on_sig);
	signal(SIGINT, on_sig);
	signal(SIGPIPE, SIG_IGN);
	snprintf(req, sizeof(req),
		 "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n%s%s%s\r\n", path,
		 host, port, key[0] ? "X-API-Key: " : "", key, key[0] ? "\r\n" : "");
	/* Open them all first, then read the answers: the server sees them at once. */
	for (int i = 0; i < count; i++) {
		fds[i] = dial(host, port, rcvbuf);
		if (fds[i] < 0) {
			perror("ssehold: connect");
			return 1;
		}
		if (write(fds[i], req, strlen(req)) != (ssize_t)strlen(req)) {
			perror("ssehold: write");
			return 1;
		}
	}
	for (int i = 0; i < count; i++) {
		int c = read_status(fds[i]);
		codes[c >= 0 && c < 600 ? c : 0]++;
	}
	for (int c = 0; c < 600; c++)
		if (codes[c])
			printf("status %d %d\n", c, codes[c]);
	printf("ready\n");
	fflush(stdout);

	{
		int64_t start = now_ms(), end = hold_ms >= 0 ? start + hold_ms : INT64_MAX;
		while (!stop && now_ms() < end) {
			if (no_read) {
				/* Watch for the server closing (FIN) or resetting (RST) without reading. */
				struct pollfd p[MAX_CONN];
				int ngone = 0;
				for (int i = 0; i < count; i++)
					p[i] = (struct pollfd){ fds[i], POLLRDHUP, 0 };
				poll(p, (nfds_t)count, 50);
				for (int i = 0; i < count; i++) {
					if (p[i].revents & (POLLRDHUP | POLLHUP | POLLERR))
						gone[i] = 1;
					ngone += gone[i];
				}
				if (until_closed && ngone == count)
					break;
				continue;
			}
			/* Keep reading so the server never sees a slow client. */
			struct pollfd p[MAX_CONN];
			for (int i = 0; i < count; i++)
				p[i] = (struct pollfd){ fds[i], POLLIN, 0 };
			if (poll(p, (nfds_t)count, 100) > 0) {
				char buf[16384];
				for (int i = 0; i < count; i++)
					if (p[i].revents & (POLLIN | POLLHUP | POLLERR)) {
						ssize_t r = read(fds[i], buf, sizeof(buf));
						if (r > 0)
							bytes += r;
					}
			}
		}
		printf("held-ms %lld\n", (long long)(now_ms() - start));
	}
	if (drain_ms > 0) {
		int closed = 0, open_ = 0;
		int64_t end = now_ms() + drain_ms;
		for (int i = 0; i < count; i++) {
			char buf[65536];
			int done = 0;
			for (;;) {
				struct pollfd p = { fds[i], POLLIN, 0 };
				int64_t left = end - now_ms();
				ssize_t r;
				if (left <= 0 || poll(&p, 1, (int)left) <= 0)
					break;
				r = read(fds[i], buf, sizeof(buf));
				if (r <= 0) {
					done = 1; /* EOF or reset: the server closed it */
					break;
				}
				bytes += r;
			}
			if (done || gone[i]) /* gone: seen closed while holding */
				closed++;
			else
				open_++;
		}
		printf("closed-by-server %d\nstill-open %d\n", closed, open_);
	}
	printf("bytes %lld\n", bytes);
	for (int i = 0; i < count; i++)
		close(fds[i]);
	return 0;
}
