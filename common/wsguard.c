/* This file defines recv() itself: glibc's fortified inline recv() must not be declared here. */
#undef _FORTIFY_SOURCE
#include "wsguard.h"
#include "wsframe.h"

#include <dlfcn.h>
#include <errno.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>

struct wsguard_conn {
	dev_t dev;
	ino_t ino;
	int framing; /* 0: HTTP head; 1: frames */
	int bad;     /* broke the masking rule: every later read is end-of-file */
	struct wsframe_http http;
	struct wsframe frame;
};

static pthread_mutex_t wsguard_lock = PTHREAD_MUTEX_INITIALIZER;
static struct wsguard_conn *wsguard_tab[WSGUARD_MAX_FD];
/* wsguard_tab[fd] is set: read without the lock, so every other socket's recv() (libcurl's, the
 * API's) passes without taking it. */
static atomic_uchar wsguard_on[WSGUARD_MAX_FD];
static atomic_ullong wsguard_refused;

int wsguard_watch(int fd, int mask)
{
	struct wsguard_conn *c;
	struct stat st;

	if (fd < 0 || fd >= WSGUARD_MAX_FD)
		return -EMFILE;
	if (fstat(fd, &st) < 0)
		return -errno;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	wsframe_http_init(&c->http);
	wsframe_init(&c->frame, mask);
	pthread_mutex_lock(&wsguard_lock);
	free(wsguard_tab[fd]);
	wsguard_tab[fd] = c;
	atomic_store(&wsguard_on[fd], 1);
	pthread_mutex_unlock(&wsguard_lock);
	return 0;
}

int wsguard_upgrade(int fd)
{
	int r = -ENOENT;

	if (fd < 0 || fd >= WSGUARD_MAX_FD)
		return r;
	pthread_mutex_lock(&wsguard_lock);
	if (wsguard_tab[fd]) {
		r = wsframe_http_done(&wsguard_tab[fd]->http);
		if (r == 0)
			wsguard_tab[fd]->framing = 1;
	}
	pthread_mutex_unlock(&wsguard_lock);
	return r;
}

int wsguard_forget(int fd)
{
	struct wsguard_conn *c = NULL;
	int bad;

	if (fd < 0 || fd >= WSGUARD_MAX_FD)
		return 0;
	pthread_mutex_lock(&wsguard_lock);
	c = wsguard_tab[fd];
	wsguard_tab[fd] = NULL;
	atomic_store(&wsguard_on[fd], 0);
	pthread_mutex_unlock(&wsguard_lock);
	bad = c && c->bad;
	free(c);
	return bad;
}

unsigned long long wsguard_refused_total(void) { return atomic_load(&wsguard_refused); }

/* Judges n bytes just read from fd into buf; returns how many of them lws gets. */
static ssize_t wsguard_judge(int fd, unsigned char *buf, ssize_t n)
{
	struct wsguard_conn *c;
	struct stat st;
	long first = -1;

	if (fd < 0 || fd >= WSGUARD_MAX_FD || !atomic_load(&wsguard_on[fd]))
		return n;
	pthread_mutex_lock(&wsguard_lock);
	c = wsguard_tab[fd];
	/* A number lws closed (an entry nobody forgot) and another socket got since is not ours to
	 * judge. The caller holds fd open, so no new watch can be taking the number: drop it. */
	if (c && fstat(fd, &st) < 0) {
		c = NULL;
	} else if (c && (st.st_dev != c->dev || st.st_ino != c->ino)) {
		wsguard_tab[fd] = NULL;
		atomic_store(&wsguard_on[fd], 0);
		free(c);
		c = NULL;
	}
	if (!c || n < 0) {
		pthread_mutex_unlock(&wsguard_lock);
		return n;
	}
	if (c->bad) {
		n = 0;
	} else if (!c->framing) {
		wsframe_http_feed(&c->http, buf, (size_t)n);
	} else if (wsframe_feed(&c->frame, buf, (size_t)n, &first) == WSFRAME_BAD_MASK) {
		c->bad = 1;
		atomic_fetch_add(&wsguard_refused, 1);
		if (first >= 0) {
			/* FIN + reserved opcode 3: lws closes with 1002 on this byte, before the
			 * frame's payload; the rest of what was read is dropped. */
			buf[first] = 0x83;
			n = first + 1;
		} else {
			n = 0;
		}
	}
	pthread_mutex_unlock(&wsguard_lock);
	return n;
}

/* --- the read hooks ---------------------------------------------------------------------- */

typedef ssize_t (*wsguard_recv_fn)(int, void *, size_t, int);
typedef int (*wsguard_ssl_read_fn)(SSL *, void *, int);
static wsguard_recv_fn wsguard_real_recv;
static wsguard_ssl_read_fn wsguard_real_ssl_read;
static pthread_once_t wsguard_once = PTHREAD_ONCE_INIT;

/* Defined only when the link wraps SSL_read (the static image); null otherwise. */
extern int __real_SSL_read(SSL *ssl, void *buf, int num) __attribute__((weak));

static void wsguard_resolve(void)
{
	wsguard_real_recv = (wsguard_recv_fn)dlsym(RTLD_NEXT, "recv");
	wsguard_real_ssl_read = __real_SSL_read ? __real_SSL_read
						: (wsguard_ssl_read_fn)dlsym(RTLD_NEXT, "SSL_read");
}

ssize_t recv(int fd, void *buf, size_t len, int flags);
ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	ssize_t n;

	pthread_once(&wsguard_once, wsguard_resolve);
	if (!wsguard_real_recv) {
		errno = ENOSYS;
		return -1;
	}
	n = wsguard_real_recv(fd, buf, len, flags);
	/* Peeks and flags are not lws reading a connection's stream. */
	return flags == 0 && n > 0 ? wsguard_judge(fd, buf, n) : n;
}

static int wsguard_ssl_read(SSL *ssl, void *buf, int num)
{
	int n;

	pthread_once(&wsguard_once, wsguard_resolve);
	if (!wsguard_real_ssl_read)
		return -1;
	n = wsguard_real_ssl_read(ssl, buf, num);
	return n > 0 ? (int)wsguard_judge(SSL_get_fd(ssl), buf, n) : n;
}

/* Weak: a static libssl's own definition wins there, and the wrap takes over. */
__attribute__((weak)) int SSL_read(SSL *ssl, void *buf, int num)
{
	return wsguard_ssl_read(ssl, buf, num);
}

int __wrap_SSL_read(SSL *ssl, void *buf, int num);
int __wrap_SSL_read(SSL *ssl, void *buf, int num) { return wsguard_ssl_read(ssl, buf, num); }
