/* tasked-network-gate [--timeout-ms MS] [--rounds N] [--connect-ms MS] [HOST:PORT ...]
 *
 * The init container of a container task's pod without network (docs/security.md). A
 * NetworkPolicy implementation programs the deny-all for a new pod a moment after the pod has
 * its address; until then the pod's connections go through. This program runs before any of
 * the task's code: it opens TCP connections to targets a pod reaches when nothing filters it
 * (default: the kubernetes Service from $KUBERNETES_SERVICE_HOST/_PORT, which the kubelet sets
 * in every pod, and each nameserver of /etc/resolv.conf on port 53) and exits 0 only after
 * N consecutive rounds (default 2) in which every connection failed (refused, unreachable or
 * timed out). If a connection still succeeds when the bound passes (default 60 s), or no target
 * is known, it exits 1 with the reason in /dev/termination-log: the task fails instead of
 * running with network. Static, no allocation; it needs nothing from the image. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_TARGETS 8
#define TERM_LOG "/dev/termination-log"

struct target {
	struct sockaddr_in addr;
	char text[64];
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* IPv4 literal and port: 1 on success. Names are never resolved (no DNS before the gate). */
static int target_set(struct target *t, const char *host, const char *port)
{
	char *end;
	long p;

	if (!host || !port || strlen(host) > 15)
		return 0;
	errno = 0;
	p = strtol(port, &end, 10);
	if (errno || *end || end == port || p < 1 || p > 65535)
		return 0;
	memset(t, 0, sizeof(*t));
	t->addr.sin_family = AF_INET;
	t->addr.sin_port = htons((unsigned short)p);
	if (inet_pton(AF_INET, host, &t->addr.sin_addr) != 1)
		return 0;
	snprintf(t->text, sizeof(t->text), "%s:%ld", host, p);
	return 1;
}

static int target_parse(struct target *t, const char *arg)
{
	char host[64];
	const char *colon = strrchr(arg, ':');

	if (!colon || (size_t)(colon - arg) >= sizeof(host))
		return 0;
	memcpy(host, arg, (size_t)(colon - arg));
	host[colon - arg] = '\0';
	return target_set(t, host, colon + 1);
}

/* The nameservers of /etc/resolv.conf (IPv4), port 53. */
static int resolv_targets(struct target *t, int max)
{
	char line[256], addr[64];
	int n = 0;
	FILE *f = fopen("/etc/resolv.conf", "re");

	if (!f)
		return 0;
	while (n < max && fgets(line, sizeof(line), f))
		if (sscanf(line, "nameserver %63s", addr) == 1 && target_set(&t[n], addr, "53"))
			n++;
	fclose(f);
	return n;
}

/* One round: a non-blocking connect to every target at once. The number that connected
 * (the first of them into open, in target order when they connect at once), or -1 on a local error. */
static int round_open(const struct target *t, int n, int connect_ms, char *open, size_t opensz)
{
	struct pollfd pfd[MAX_TARGETS];
	int connected = 0, pending = 0;
	long long deadline = now_ms() + connect_ms;

	open[0] = '\0';

	for (int i = 0; i < n; i++) {
		pfd[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		pfd[i].events = POLLOUT;
		pfd[i].revents = 0;
		if (pfd[i].fd < 0) {
			for (int k = 0; k < i; k++)
				close(pfd[k].fd);
			return -1;
		}
		if (connect(pfd[i].fd, (const struct sockaddr *)&t[i].addr, sizeof(t[i].addr)) ==
		    0) {
			if (!connected++)
				snprintf(open, opensz, "%s", t[i].text);
			close(pfd[i].fd);
			pfd[i].fd = -1;
		} else if (errno == EINPROGRESS) {
			pending++;
		} else {
			close(pfd[i].fd);
			pfd[i].fd = -1;
		}
	}
	while (pending > 0) {
		long long left = deadline - now_ms();
		int r = left > 0 ? poll(pfd, (nfds_t)n, (int)left) : 0;
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (int i = 0; i < n; i++) {
			int err = 0;
			socklen_t len = sizeof(err);
			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			if (getsockopt(pfd[i].fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
			    err == 0) {
				if (!connected++)
					snprintf(open, opensz, "%s", t[i].text);
			}
			close(pfd[i].fd);
			pfd[i].fd = -1;
			pending--;
		}
	}
	for (int i = 0; i < n; i++)
		if (pfd[i].fd >= 0)
			close(pfd[i].fd); /* timed out: dropped */
	return connected;
}

static void report(const char *msg)
{
	int fd = open(TERM_LOG, O_WRONLY | O_TRUNC | O_CLOEXEC);
	fprintf(stderr, "%s\n", msg);
	if (fd >= 0) {
		if (write(fd, msg, strlen(msg)) < 0) {
			/* stderr has it; the kubelet falls back to the log */
		}
		close(fd);
	}
}

static long opt_num(const char *s, long lo, long hi)
{
	char *end;
	long v;
	errno = 0;
	v = strtol(s ? s : "", &end, 10);
	return errno || !s || *end || end == s || v < lo || v > hi ? -1 : v;
}

int main(int argc, char **argv)
{
	struct target t[MAX_TARGETS];
	char msg[512], open[64] = "";
	long timeout_ms = 60000, rounds = 2, connect_ms = 300;
	int n = 0, blocked = 0, probes = 0;
	long long start = now_ms();

	for (int i = 1; i < argc; i++) {
		long *dst = strcmp(argv[i], "--timeout-ms") == 0   ? &timeout_ms
			    : strcmp(argv[i], "--rounds") == 0     ? &rounds
			    : strcmp(argv[i], "--connect-ms") == 0 ? &connect_ms
								   : NULL;
		if (dst) {
			*dst = opt_num(i + 1 < argc ? argv[++i] : NULL, 1, 3600000);
			if (*dst < 0 || (dst == &rounds && *dst > 100)) {
				report("tasked-network-gate: bad option value");
				return 2;
			}
		} else if (n < MAX_TARGETS && target_parse(&t[n], argv[i])) {
			n++;
		} else {
			snprintf(msg, sizeof(msg), "tasked-network-gate: bad target %.100s",
				 argv[i]);
			report(msg);
			return 2;
		}
	}
	if (n == 0) {
		if (target_set(&t[0], getenv("KUBERNETES_SERVICE_HOST"),
			       getenv("KUBERNETES_SERVICE_PORT")))
			n++;
		n += resolv_targets(t + n, MAX_TARGETS - n);
	}
	if (n == 0) {
		report("the network gate found no address to probe (no KUBERNETES_SERVICE_HOST, "
		       "no IPv4 nameserver): the deny-all NetworkPolicy cannot be confirmed");
		return 1;
	}
	while (blocked < rounds) {
		int c = round_open(t, n, (int)connect_ms, open, sizeof(open));
		probes++;
		if (c < 0) {
			report("the network gate could not open a socket");
			return 1;
		}
		blocked = c == 0 ? blocked + 1 : 0;
		if (blocked >= rounds)
			break;
		if (now_ms() - start >= timeout_ms) {
			snprintf(msg, sizeof(msg),
				 "the deny-all NetworkPolicy was not in force after %ld ms: %s was "
				 "still reachable from the pod (%d probes); the task did not run "
				 "(is there a NetworkPolicy implementation, or does another policy "
				 "allow this pod's egress?)",
				 timeout_ms, open, probes);
			report(msg);
			return 1;
		}
		usleep(100 * 1000); /* also between blocked rounds: one instant is no proof */
	}
	snprintf(msg, sizeof(msg), "network blocked after %lld ms (%d probes of %d addresses)",
		 now_ms() - start, probes, n);
	report(msg);
	return 0;
}
