#include "server.h"
#include "log.h"
#include "util.h"

#include <stdatomic.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#define SERVER_MAX_FDS 8192 /* lws fd tables: runners, API and SSE clients, kube sockets */

struct server {
	struct lws_context *ctx;
	char *tls_cert, *tls_key;
	atomic_int stop;
	int listeners;
	pthread_t thread;
	int thread_on;
};

/* Binding a vhost to exactly one address: prepare sets iface and the options (IPv6 off for an
 * IPv4 address, else lws binds [::]) and notes the listening sockets that exist; verify, after
 * lws_create_vhost, checks with getsockname that the new ones are bound to what was asked. */
struct server_bind {
	char host[64];
	int port, v6;
	int before[32], nbefore;
};

int server_parse_addr(const char *s, char *host, size_t hostsz, int *port)
{
	const char *colon;
	long p;
	size_t hl;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return -EINVAL;
		hl = (size_t)(close - s - 1);
		if (hl >= hostsz)
			return -EINVAL;
		memcpy(host, s + 1, hl);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - s);
		if (hl >= hostsz)
			return -EINVAL;
		memcpy(host, s, hl);
	}
	host[hl] = '\0';
	if (util_parse_long(colon + 1, 1, 65535, &p) < 0)
		return -EINVAL;
	if (host[0] == '\0')
		snprintf(host, hostsz, "0.0.0.0");
	{
		unsigned char a[16];
		/* Only an address says exactly what to bind (a name or interface could mean several). */
		if (inet_pton(AF_INET, host, a) != 1 && inet_pton(AF_INET6, host, a) != 1)
			return -EINVAL;
	}
	*port = (int)p;
	return 0;
}

/* --- listeners: bind exactly what was asked ----------------------------------------------- */

/* Listening TCP sockets of this process, as fds (at most max). */
static int server_listen_fds(int *out, int max)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -errno;
	while ((e = readdir(d)) && n < max) {
		long fd;
		int on = 0;
		socklen_t l = sizeof(on);
		if (util_parse_long(e->d_name, 0, INT32_MAX, &fd) < 0 || fd == dirfd(d))
			continue;
		if (getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &l) == 0 && on)
			out[n++] = (int)fd;
	}
	closedir(d);
	return n;
}

static int bind_prepare(const char *addr, struct server_bind *bb, const char **iface,
			uint64_t *options)
{
	memset(bb, 0, sizeof(*bb));
	if (server_parse_addr(addr, bb->host, sizeof(bb->host), &bb->port) < 0)
		return -EINVAL;
	bb->v6 = strchr(bb->host, ':') != NULL;
	*iface = strcmp(bb->host, "0.0.0.0") == 0 || strcmp(bb->host, "::") == 0 ? NULL : bb->host;
	/* With IPv6 on, lws opens a dual-stack socket bound to [::] whatever iface says. */
	if (!bb->v6)
		*options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	*options |= LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
	bb->nbefore = server_listen_fds(bb->before, (int)UTIL_ARRAY_SIZE(bb->before));
	return bb->nbefore < 0 ? bb->nbefore : 0;
}

static int bind_verify(const struct server_bind *bb)
{
	int fds[UTIL_ARRAY_SIZE(bb->before) + 8],
		n = server_listen_fds(fds, (int)UTIL_ARRAY_SIZE(fds)), found = 0;
	unsigned char want[16];

	if (n < 0)
		return n;
	if (inet_pton(bb->v6 ? AF_INET6 : AF_INET, bb->host, want) != 1)
		return -EINVAL;
	for (int i = 0; i < n; i++) {
		struct sockaddr_storage ss;
		socklen_t l = sizeof(ss);
		int old = 0, ok;
		for (int j = 0; j < bb->nbefore; j++)
			old |= bb->before[j] == fds[i];
		if (old || getsockname(fds[i], (struct sockaddr *)&ss, &l) < 0)
			continue;
		if (ss.ss_family == AF_INET) {
			const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
			ok = !bb->v6 && ntohs(a->sin_port) == bb->port &&
			     memcmp(&a->sin_addr, want, 4) == 0;
		} else if (ss.ss_family == AF_INET6) {
			const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
			ok = bb->v6 && ntohs(a->sin6_port) == bb->port &&
			     memcmp(&a->sin6_addr, want, 16) == 0;
		} else {
			continue;
		}
		if (!ok) {
			char got[INET6_ADDRSTRLEN] = "?";
			if (ss.ss_family == AF_INET)
				inet_ntop(AF_INET, &((const struct sockaddr_in *)&ss)->sin_addr,
					  got, sizeof(got));
			else
				inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&ss)->sin6_addr,
					  got, sizeof(got));
			log_error("listener bound to another address than asked; refusing to start",
				  "asked", bb->host, "bound", got);
			return -EADDRNOTAVAIL;
		}
		found = 1;
	}
	if (!found) {
		log_error("no listening socket for the address asked", "asked", bb->host);
		return -EADDRNOTAVAIL;
	}
	return 0;
}

static int listen_vhost(struct server *s, const char *name, const char *addr,
			const struct lws_protocols *protos, void *user, const char *cert_pem,
			const char *key_pem)
{
	struct lws_context_creation_info vi;
	struct server_bind bb;
	uint64_t opts = LWS_SERVER_OPTION_VALIDATE_UTF8;
	const char *iface;
	int r;

	if (!addr || bind_prepare(addr, &bb, &iface, &opts) < 0) {
		log_error("invalid listen address", "addr", addr ? addr : "", "listener", name);
		return -EINVAL;
	}
	memset(&vi, 0, sizeof(vi));
	vi.vhost_name = name;
	vi.port = bb.port;
	vi.iface = iface;
	vi.protocols = protos;
	vi.user = user;
	vi.options = opts;
	/* HTTP/1.1 only: lws 4.1 loses custom headers (X-API-Key) and truncates large bodies on h2. */
	vi.alpn = "http/1.1";
	if (cert_pem && key_pem) {
		vi.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		vi.server_ssl_cert_mem = cert_pem;
		vi.server_ssl_cert_mem_len = (unsigned int)strlen(cert_pem);
		vi.server_ssl_private_key_mem = key_pem;
		vi.server_ssl_private_key_mem_len = (unsigned int)strlen(key_pem);
	} else if (s->tls_cert && s->tls_key) {
		vi.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		vi.ssl_cert_filepath = s->tls_cert;
		vi.ssl_private_key_filepath = s->tls_key;
	}
	if (!lws_create_vhost(s->ctx, &vi)) {
		log_error("cannot listen", "addr", addr, "listener", name);
		return -EADDRINUSE;
	}
	if ((r = bind_verify(&bb)) < 0)
		return r;
	s->listeners++;
	log_info("listening", "addr", addr, "listener", name);
	return 0;
}

int server_listen(struct server *s, const char *name, const char *addr,
		  const struct lws_protocols *protos, void *user)
{
	return listen_vhost(s, name, addr, protos, user, NULL, NULL);
}

int server_listen_tls(struct server *s, const char *name, const char *addr,
		      const struct lws_protocols *protos, void *user, const char *cert_pem,
		      const char *key_pem)
{
	if (!cert_pem || !key_pem)
		return -EINVAL;
	return listen_vhost(s, name, addr, protos, user, cert_pem, key_pem);
}

int server_new(const char *tls_cert, const char *tls_key, struct server **ret)
{
	struct lws_context_creation_info info;
	struct server *s = calloc(1, sizeof(*s));

	*ret = NULL;
	if (!s)
		return -ENOMEM;
	if ((tls_cert && !(s->tls_cert = strdup(tls_cert))) ||
	    (tls_key && !(s->tls_key = strdup(tls_key)))) {
		server_free(s);
		return -ENOMEM;
	}
	lws_set_log_level(LLL_ERR | LLL_WARN, log_lws);
	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.alpn = "http/1.1";
	if (tls_cert && tls_key)
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	/* lws sizes two tables by the highest fd number it may see, zeroed at start: the open
	 * file limit by default (2 x 160 KiB resident at 20000, 2 x 8 MiB at a pod's 1048576). */
	{
		struct rlimit rl;
		unsigned int lim = SERVER_MAX_FDS;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
		    rl.rlim_cur < lim)
			lim = (unsigned int)rl.rlim_cur;
		info.fd_limit_per_thread = lim;
	}
	s->ctx = lws_create_context(&info);
	if (!s->ctx) {
		server_free(s);
		return -ENOMEM;
	}
	*ret = s;
	return 0;
}

static int server_alpn_h1(SSL *ssl, const unsigned char **out, unsigned char *outlen,
			  const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char h1[] = "\x08http/1.1";
	unsigned char *sel = NULL;
	if (SSL_select_next_proto(&sel, outlen, h1, sizeof(h1) - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

void server_tls_http1_only(void *ssl_ctx)
{
	if (ssl_ctx)
		SSL_CTX_set_alpn_select_cb(ssl_ctx, server_alpn_h1, NULL);
}

int server_listening(struct server *s) { return s ? s->listeners : 0; }
struct lws_context *server_context(struct server *s) { return s->ctx; }

int server_run(struct server *s)
{
	while (!s->stop)
		if (lws_service(s->ctx, 0) < 0)
			return -EIO;
	return 0;
}

static void *server_loop(void *p)
{
	(void)server_run(p);
	return NULL;
}

int server_start_thread(struct server *s)
{
	if (pthread_create(&s->thread, NULL, server_loop, s) != 0)
		return -EAGAIN;
	s->thread_on = 1;
	return 0;
}

void server_stop(struct server *s)
{
	s->stop = 1;
	if (s->ctx)
		lws_cancel_service(s->ctx);
}

void server_free(struct server *s)
{
	if (!s)
		return;
	if (s->thread_on) {
		server_stop(s);
		pthread_join(s->thread, NULL);
	}
	if (s->ctx)
		lws_context_destroy(s->ctx);
	free(s->tls_cert);
	free(s->tls_key);
	free(s);
}
