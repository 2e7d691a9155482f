/* httpcount: a tiny HTTP/1.1 server for SSRF and http-executor tests. It listens on every
 * --listen address (same port), logs each request it receives as one JSON line, and answers
 * according to the path. "Zero requests" assertions count lines in the log.
 *
 *   httpcount --listen 127.0.0.1 [--listen ::1 ...] [--port N] --log FILE [--port-file FILE]
 *             [--max-seconds N]
 *
 * Routes (query parameters are URL-decoded):
 *   /redirect?to=URL[&code=302]   redirect
 *   /big?n=N                      N bytes with Content-Length
 *   /chunked?n=N                  N bytes, chunked (no Content-Length)
 *   /json                         {"ok":true,"n":1}
 *   /deep?n=N                     a JSON array nested N levels (N <= 10000)
 *   /status/NNN                   status NNN with {"status":NNN}
 *   /token?expires=S              OAuth2 token endpoint: needs Basic auth; a new token each call
 *   /api                          needs "Authorization: Bearer tok-..." (else 401); echoes it
 *   /echo                         {"method","path","headers":{...},"body":"..."}
 *   /remote                       remote executor: {"status":"Succeeded","output":{"got":BODY}}
 *   /remote-fail                  {"status":"Failed","error":"boom","retryable":true}
 *   /remote-final                 {"status":"Failed","error":"bad input","retryable":false}
 *   /slow?ms=N                    answers after N ms
 *   anything else                 200 "hello\n"
 * Log line: {"addr":"127.0.0.1","method":"GET","path":"/x","headers":{...},"body":"..."}.
 * One process per connection; exits after --max-seconds (default 600) or on SIGTERM. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_LISTEN 8
#define REQ_MAX (4 * 1024 * 1024)

static int log_fd = -1;

struct req {
	char method[16], path[8192], addr[64];
	char *head; /* raw header block */
	char *body;
	size_t body_len;
};

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("httpcount: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

/* Appends s (n bytes) as a JSON string body to out. */
static size_t jesc(char *out, size_t pos, size_t cap, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < n && pos + 8 < cap; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			out[pos++] = '\\';
			out[pos++] = (char)c;
		} else if (c < 0x20 || c >= 0x7f) {
			out[pos++] = '\\';
			out[pos++] = 'u';
			out[pos++] = '0';
			out[pos++] = '0';
			out[pos++] = hex[c >> 4];
			out[pos++] = hex[c & 15];
		} else {
			out[pos++] = (char)c;
		}
	}
	return pos;
}

static size_t put(char *out, size_t pos, size_t cap, const char *s)
{
	size_t n = strlen(s);
	if (pos + n >= cap)
		n = cap - pos - 1;
	memcpy(out + pos, s, n);
	return pos + n;
}

/* {"name":"value",...} of the header block (names lowercased). */
static size_t headers_json(char *out, size_t pos, size_t cap, const char *head)
{
	const char *p = strstr(head, "\r\n");
	int first = 1;
	pos = put(out, pos, cap, "{");
	while (p && p[2] && !(p[2] == '\r' && p[3] == '\n')) {
		const char *line = p + 2, *eol = strstr(line, "\r\n"), *colon;
		char name[256];
		size_t nl;
		if (!eol)
			break;
		colon = memchr(line, ':', (size_t)(eol - line));
		if (colon && (nl = (size_t)(colon - line)) < sizeof(name)) {
			const char *v = colon + 1;
			for (size_t i = 0; i < nl; i++)
				name[i] = (char)((line[i] >= 'A' && line[i] <= 'Z') ? line[i] + 32
										    : line[i]);
			while (v < eol && *v == ' ')
				v++;
			pos = put(out, pos, cap, first ? "\"" : ",\"");
			pos = jesc(out, pos, cap, name, nl);
			pos = put(out, pos, cap, "\":\"");
			pos = jesc(out, pos, cap, v, (size_t)(eol - v));
			pos = put(out, pos, cap, "\"");
			first = 0;
		}
		p = eol;
	}
	return put(out, pos, cap, "}");
}

static char *header(const char *head, const char *name)
{
	static char val[8192];
	size_t nl = strlen(name);
	for (const char *p = strstr(head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
		const char *line = p + 2, *eol = strstr(line, "\r\n");
		if (!eol || eol == line)
			break;
		if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0 &&
		    line[nl] == ':') {
			const char *v = line + nl + 1;
			size_t n;
			while (*v == ' ')
				v++;
			n = (size_t)(eol - v) < sizeof(val) - 1 ? (size_t)(eol - v)
								: sizeof(val) - 1;
			memcpy(val, v, n);
			val[n] = '\0';
			return val;
		}
	}
	return NULL;
}

static void log_req(const struct req *r)
{
	static char line[256 * 1024];
	size_t pos = 0, cap = sizeof(line) - 2;
	pos = put(line, pos, cap, "{\"addr\":\"");
	pos = jesc(line, pos, cap, r->addr, strlen(r->addr));
	pos = put(line, pos, cap, "\",\"method\":\"");
	pos = jesc(line, pos, cap, r->method, strlen(r->method));
	pos = put(line, pos, cap, "\",\"path\":\"");
	pos = jesc(line, pos, cap, r->path, strlen(r->path));
	pos = put(line, pos, cap, "\",\"headers\":");
	pos = headers_json(line, pos, cap, r->head);
	pos = put(line, pos, cap, ",\"body\":\"");
	pos = jesc(line, pos, cap, r->body ? r->body : "",
		   r->body_len > 65536 ? 65536 : r->body_len);
	pos = put(line, pos, cap, "\"}");
	line[pos++] = '\n';
	if (write(log_fd, line, pos) < 0)
		perror("httpcount: log");
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			_exit(0); /* the client went away (e.g. it capped the body) */
		p += w;
		n -= (size_t)w;
	}
}

static void respond(int fd, int code, const char *extra_headers, const char *body)
{
	char head[16384];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n",
			 code, strlen(body), extra_headers ? extra_headers : "");
	write_all(fd, head, (size_t)n);
	write_all(fd, body, strlen(body));
}

/* Value of query parameter k in path (URL-decoded), or NULL. */
static char *query(const char *path, const char *k)
{
	static char val[8192];
	const char *q = strchr(path, '?');
	size_t kl = strlen(k);
	while (q && *q) {
		q++;
		if (strncmp(q, k, kl) == 0 && q[kl] == '=') {
			const char *v = q + kl + 1;
			size_t o = 0;
			while (*v && *v != '&' && o < sizeof(val) - 1) {
				if (*v == '%' && v[1] && v[2]) {
					char h[3] = { v[1], v[2], 0 };
					val[o++] = (char)strtol(h, NULL, 16);
					v += 3;
				} else {
					val[o++] = *v == '+' ? ' ' : *v;
					v++;
				}
			}
			val[o] = '\0';
			return val;
		}
		q = strchr(q, '&');
	}
	return NULL;
}

static void serve(int fd, const char *addr)
{
	static char buf[REQ_MAX + 1];
	size_t len = 0, need = 0;
	char *end = NULL, *cl;
	struct req r;
	struct timeval tv = { 5, 0 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	memset(&r, 0, sizeof(r));
	snprintf(r.addr, sizeof(r.addr), "%s", addr);
	for (;;) {
		ssize_t n = read(fd, buf + len, REQ_MAX - len);
		if (n <= 0)
			_exit(0);
		len += (size_t)n;
		buf[len] = '\0';
		if (!end && (end = strstr(buf, "\r\n\r\n"))) {
			cl = strcasestr(buf, "\r\ncontent-length:");
			need = (size_t)(end + 4 - buf) +
			       (cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
		}
		if (end && len >= need)
			break;
		if (len == REQ_MAX)
			_exit(0);
	}
	end[2] = '\0';
	r.head = buf;
	r.body = end + 4;
	r.body_len = len - (size_t)(end + 4 - buf);
	if (sscanf(buf, "%15s %8191s", r.method, r.path) != 2)
		_exit(0);
	log_req(&r);

	if (strncmp(r.path, "/redirect", 9) == 0) {
		char h[8300];
		const char *to = query(r.path, "to"), *code;
		snprintf(h, sizeof(h), "Location: %s\r\n", to ? to : "/");
		code = query(r.path,
			     "code"); /* after `to` is used: query() returns one static buffer */
		respond(fd, code ? (int)strtol(code, NULL, 10) : 302, h, "moved\n");
	} else if (strncmp(r.path, "/big", 4) == 0 || strncmp(r.path, "/chunked", 8) == 0) {
		const char *nq = query(r.path, "n");
		unsigned long long n = nq ? strtoull(nq, NULL, 10) : 0;
		char chunk[65536], head[256];
		int chunked = r.path[1] == 'c';
		memset(chunk, 'x', sizeof(chunk));
		if (chunked)
			snprintf(
				head, sizeof(head),
				"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
		else
			snprintf(
				head, sizeof(head),
				"HTTP/1.1 200 OK\r\nContent-Length: %llu\r\nConnection: close\r\n\r\n",
				n);
		write_all(fd, head, strlen(head));
		while (n > 0) {
			size_t k = n < sizeof(chunk) ? (size_t)n : sizeof(chunk);
			if (chunked) {
				char ch[32];
				int cn = snprintf(ch, sizeof(ch), "%zx\r\n", k);
				write_all(fd, ch, (size_t)cn);
			}
			write_all(fd, chunk, k);
			if (chunked)
				write_all(fd, "\r\n", 2);
			n -= k;
		}
		if (chunked)
			write_all(fd, "0\r\n\r\n", 5);
	} else if (strncmp(r.path, "/deep", 5) == 0) {
		static char body[20001];
		const char *nq = query(r.path, "n");
		unsigned long n = nq ? strtoul(nq, NULL, 10) : 0;
		if (n > 10000)
			n = 10000;
		memset(body, '[', n);
		memset(body + n, ']', n);
		body[2 * n] = '\0';
		respond(fd, 200, "Content-Type: application/json\r\n", body);
	} else if (strcmp(r.path, "/json") == 0) {
		respond(fd, 200, "Content-Type: application/json\r\n", "{\"ok\":true,\"n\":1}");
	} else if (strncmp(r.path, "/status/", 8) == 0) {
		char body[64];
		int code = (int)strtol(r.path + 8, NULL, 10);
		snprintf(body, sizeof(body), "{\"status\":%d}", code);
		respond(fd, code, "Content-Type: application/json\r\n", body);
	} else if (strncmp(r.path, "/token", 6) == 0) {
		const char *auth = header(r.head, "authorization"), *exp = query(r.path, "expires");
		char body[256];
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		if (!auth || strncmp(auth, "Basic ", 6) != 0) {
			respond(fd, 401, NULL, "{\"error\":\"invalid_client\"}");
			return;
		}
		snprintf(
			body, sizeof(body),
			"{\"access_token\":\"tok-%ld%09ld\",\"token_type\":\"Bearer\",\"expires_in\":%s}",
			(long)ts.tv_sec, ts.tv_nsec, exp ? exp : "3600");
		respond(fd, 200, "Content-Type: application/json\r\n", body);
	} else if (strcmp(r.path, "/api") == 0) {
		const char *auth = header(r.head, "authorization");
		char body[9000];
		if (!auth || strncmp(auth, "Bearer tok-", 11) != 0) {
			respond(fd, 401, NULL, "{\"error\":\"unauthorized\"}");
			return;
		}
		snprintf(body, sizeof(body), "{\"auth\":\"%s\"}", auth);
		respond(fd, 200, "Content-Type: application/json\r\n", body);
	} else if (strcmp(r.path, "/echo") == 0) {
		static char body[256 * 1024];
		size_t pos = 0, cap = sizeof(body);
		pos = put(body, pos, cap, "{\"method\":\"");
		pos = jesc(body, pos, cap, r.method, strlen(r.method));
		pos = put(body, pos, cap, "\",\"headers\":");
		pos = headers_json(body, pos, cap, r.head);
		pos = put(body, pos, cap, ",\"body\":\"");
		pos = jesc(body, pos, cap, r.body, r.body_len > 65536 ? 65536 : r.body_len);
		pos = put(body, pos, cap, "\"}");
		body[pos] = '\0';
		respond(fd, 200, "Content-Type: application/json\r\n", body);
	} else if (strcmp(r.path, "/remote") == 0) {
		static char body[REQ_MAX + 128];
		snprintf(body, sizeof(body),
			 "{\"status\":\"Succeeded\",\"output\":{\"got\":%.*s},\"error\":null}",
			 (int)r.body_len, r.body_len ? r.body : "null");
		respond(fd, 200, "Content-Type: application/json\r\n", body);
	} else if (strcmp(r.path, "/remote-fail") == 0) {
		respond(fd, 200, "Content-Type: application/json\r\n",
			"{\"status\":\"Failed\",\"error\":\"boom\",\"retryable\":true}");
	} else if (strcmp(r.path, "/remote-final") == 0) {
		respond(fd, 200, "Content-Type: application/json\r\n",
			"{\"status\":\"Failed\",\"error\":\"bad input\",\"retryable\":false}");
	} else if (strncmp(r.path, "/slow", 5) == 0) {
		const char *ms = query(r.path, "ms");
		struct timespec ts = { 0, 0 };
		long v = ms ? strtol(ms, NULL, 10) : 1000;
		ts.tv_sec = v / 1000;
		ts.tv_nsec = (v % 1000) * 1000000L;
		nanosleep(&ts, NULL);
		respond(fd, 200, NULL, "slow\n");
	} else {
		respond(fd, 200, NULL, "hello\n");
	}
}

int main(int argc, char **argv)
{
	const char *addrs[MAX_LISTEN], *log_path = NULL, *port_file = NULL;
	int nl = 0, port = 0, fds[MAX_LISTEN], max_seconds = 600;
	struct pollfd p[MAX_LISTEN];
	time_t until;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc && nl < MAX_LISTEN)
			addrs[nl++] = argv[++i];
		else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
			port = (int)strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--log") == 0 && i + 1 < argc)
			log_path = argv[++i];
		else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc)
			port_file = argv[++i];
		else if (strcmp(argv[i], "--max-seconds") == 0 && i + 1 < argc)
			max_seconds = (int)strtol(argv[++i], NULL, 10);
		else
			die("usage: httpcount --listen ADDR [--listen ADDR...] [--port N] --log FILE [--port-file FILE]");
	}
	if (nl == 0 || !log_path)
		die("--listen and --log are required");
	log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (log_fd < 0)
		die("cannot open %s: %s", log_path, strerror(errno));
	signal(SIGPIPE, SIG_IGN);
	signal(SIGCHLD, SIG_IGN); /* no zombies from the per-connection children */
	for (int i = 0; i < nl; i++) {
		struct sockaddr_storage ss;
		socklen_t sl;
		int one = 1, v6 = strchr(addrs[i], ':') != NULL;
		memset(&ss, 0, sizeof(ss));
		if (v6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons((uint16_t)port);
			if (inet_pton(AF_INET6, addrs[i], &s6->sin6_addr) != 1)
				die("bad address %s", addrs[i]);
			sl = sizeof(*s6);
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
			s4->sin_family = AF_INET;
			s4->sin_port = htons((uint16_t)port);
			if (inet_pton(AF_INET, addrs[i], &s4->sin_addr) != 1)
				die("bad address %s", addrs[i]);
			sl = sizeof(*s4);
		}
		fds[i] = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		setsockopt(fds[i], SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (v6)
			setsockopt(fds[i], IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&ss, sl) < 0 ||
		    listen(fds[i], 64) < 0)
			die("cannot listen on %s port %d: %s", addrs[i], port, strerror(errno));
		if (port == 0) {
			sl = sizeof(ss);
			getsockname(fds[i], (struct sockaddr *)&ss, &sl);
			port = ntohs(ss.ss_family == AF_INET6
					     ? ((struct sockaddr_in6 *)&ss)->sin6_port
					     : ((struct sockaddr_in *)&ss)->sin_port);
		}
		p[i].fd = fds[i];
		p[i].events = POLLIN;
	}
	if (port_file) {
		FILE *f = fopen(port_file, "w");
		if (!f)
			die("cannot write %s", port_file);
		fprintf(f, "%d\n", port);
		fclose(f);
	}
	until = time(NULL) + max_seconds;
	while (time(NULL) < until) {
		if (poll(p, (nfds_t)nl, 1000) <= 0)
			continue;
		for (int i = 0; i < nl; i++) {
			int c;
			if (!(p[i].revents & POLLIN))
				continue;
			c = accept4(fds[i], NULL, NULL, SOCK_CLOEXEC);
			if (c < 0)
				continue;
			if (fork() == 0) {
				for (int j = 0; j < nl; j++)
					close(fds[j]);
				serve(c, addrs[i]);
				shutdown(c, SHUT_WR);
				_exit(0);
			}
			close(c);
		}
	}
	return 0;
}
