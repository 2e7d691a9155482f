/* The spawner process (spawner.h): its start, the runner's side of a request, and its loop. */
#include "spawner.h"
#include "cgroup.h"
#include "child.h"
#include "isolate.h"
#include "log.h"
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#define SPW_MAGIC 0x73707731u
#define SPW_MAX_BLOB (16u << 20) /* argv, envp and paths; larger requests fork in the runner */
#define SPW_MAX_STRV 65536u      /* argv or envp entries */
#define SPW_IO_TIMEOUT_S 10      /* the runner never waits longer for the spawner */
#define SPW_MIN_LL_FD 10         /* child.c: the Landlock fd survives the init's dup2 calls */
#define SPW_REFILL_MS 1 /* the next warm init waits this long for the last one's task to start */

enum {
	SPW_FD_NULL,
	SPW_FD_OUT,
	SPW_FD_ERR,
	SPW_FD_STATUS,
	SPW_FD_LL,
	SPW_FD_MEM,
	SPW_FD_CPU,
	SPW_NFD
};

/* runner -> spawner: this, then blob bytes of NUL-terminated strings (path, cwd, argv, envp);
 * SPW_NFD fds ride on it, -1 entries left out (flags say which are there). */
struct spw_head {
	uint32_t magic, flags, nargv, nenvp, blob;
	struct child c; /* scalars only: the pointers and fds are the runner's */
	struct iso_task iso;
};

static int spw_fd = -1; /* the runner's end */
static pid_t spw_owner; /* the runner: a process forked from it must not use spw_fd */
static pid_t spw_pid;
static char spw_comm[17]; /* the runner's name, which the inits keep (ps shows them as before) */
static int spw_ns; /* the warm inits make namespaces (isolate.h), as the runner's tasks get them */

/* ---- the spawner ------------------------------------------------------------------------- */

static int spw_read_full(int fd, void *p, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, (char *)p + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

/* Reads one header and its fds. 0, or -1 on EOF or a malformed request. */
static int spw_recv_head(int sock, struct spw_head *h, int fds[SPW_NFD])
{
	union {
		char buf[CMSG_SPACE(SPW_NFD * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { h, sizeof(*h) };
	struct msghdr m = { .msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm;
	ssize_t n;
	int nfd = 0, want = 0;

	for (int i = 0; i < SPW_NFD; i++)
		fds[i] = -1;
	do
		n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return -1;
	for (cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			int got[SPW_NFD];
			size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			memcpy(got, CMSG_DATA(cm), k * sizeof(int));
			for (size_t i = 0; i < k; i++)
				if (nfd < SPW_NFD)
					fds[nfd++] = got[i];
				else
					close(got[i]);
		}
	if ((size_t)n < sizeof(*h) &&
	    spw_read_full(sock, (char *)h + n, sizeof(*h) - (size_t)n) < 0)
		return -1;
	/* Spread the fds over their slots: the first four always, then those flagged. */
	{
		int tmp[SPW_NFD], j = 0;
		memcpy(tmp, fds, sizeof(tmp));
		for (int i = 0; i < SPW_NFD; i++) {
			int have = i < SPW_FD_LL || (h->flags & (1u << i));
			want += have;
			fds[i] = have && j < nfd ? tmp[j++] : -1;
		}
	}
	if (m.msg_flags & MSG_CTRUNC || h->magic != SPW_MAGIC || nfd != want ||
	    h->blob > SPW_MAX_BLOB || h->nargv == 0 || h->nargv > SPW_MAX_STRV ||
	    h->nenvp > SPW_MAX_STRV)
		return -1;
	return 0;
}

/* Points *v at n NUL-terminated strings from *p (before end). 0, or -1 if they do not fit. */
static int spw_strv(char **p, const char *end, uint32_t n, char **v)
{
	for (uint32_t i = 0; i < n; i++) {
		char *z = memchr(*p, '\0', (size_t)(end - *p));
		if (!z)
			return -1;
		v[i] = *p;
		*p = z + 1;
	}
	v[n] = NULL;
	return 0;
}

/* A warm init: an init cloned ahead of time (as the runner's child, CLONE_PARENT) that has done
 * the steps that do not depend on the task (child_init_begin: its session, PDEATHSIG, the
 * namespaces), takes the next request itself, tells the spawner (which clones the next one) and
 * runs as that task's init. Two wake-ups and a clone fewer between a dispatch and its execve. */
static __attribute__((noreturn)) void spw_warm(int sock, int go, pid_t runner)
{
	struct spw_head *h = malloc(sizeof(*h));
	struct cg_task cg = { .mem_fd = -1, .cpu_fd = -1 };
	char *blob = NULL, *p, *path[2], *cwd[2], **argv = NULL, **envp = NULL;
	int fds[SPW_NFD], step = 0, e;
	int32_t reply;
	sigset_t all;

	sigfillset(&all);
	if (spw_comm[0])
		(void)prctl(PR_SET_NAME, spw_comm, 0, 0, 0);
	e = child_init_begin(runner, spw_ns, &all, &step);
	if (!h || spw_recv_head(sock, h, fds) < 0)
		_exit(0); /* the runner is gone */
	blob = malloc((size_t)h->blob + 1);
	argv = calloc((size_t)h->nargv + 1, sizeof(char *));
	envp = calloc((size_t)h->nenvp + 1, sizeof(char *));
	if (!blob || !argv || !envp || spw_read_full(sock, blob, h->blob) < 0)
		_exit(0);
	(void)send(go, "", 1, MSG_NOSIGNAL);
	close(go);
	blob[h->blob] = '\0';
	p = blob;
	if (spw_strv(&p, blob + h->blob, 1, path) < 0 || spw_strv(&p, blob + h->blob, 1, cwd) < 0 ||
	    spw_strv(&p, blob + h->blob, h->nargv, argv) < 0 ||
	    spw_strv(&p, blob + h->blob, h->nenvp, envp) < 0)
		_exit(0);
	h->c.path = path[0];
	h->c.cwd = cwd[0];
	h->c.argv = argv;
	h->c.envp = envp;
	h->c.iso = &h->iso;
	cg.mem_fd = fds[SPW_FD_MEM];
	cg.cpu_fd = fds[SPW_FD_CPU];
	h->c.cg = &cg;
	h->c.filter = sbx_filter();
	h->c.sigs_dfl = 1;
	h->c.begun = 1;
	h->c.begin_step = step;
	h->c.begin_err = e < 0 ? -e : 0;
	h->c.null_r = fds[SPW_FD_NULL];
	h->c.out_w = fds[SPW_FD_OUT];
	h->c.err_w = fds[SPW_FD_ERR];
	h->c.status_w = fds[SPW_FD_STATUS];
	h->c.ll_fd = fds[SPW_FD_LL];
	if (h->c.ll_fd >= 0 && h->c.ll_fd < SPW_MIN_LL_FD) {
		int hi = fcntl(h->c.ll_fd, F_DUPFD_CLOEXEC, SPW_MIN_LL_FD);
		close(h->c.ll_fd);
		h->c.ll_fd = hi;
	}
	/* Namespaces switched since the spawner started (tests): the runner forks this one. */
	if (h->iso.ns != spw_ns)
		reply = -ESTALE;
	else if (h->c.ll_fd < 0 && (h->flags & (1u << SPW_FD_LL)))
		reply = -EMFILE;
	else
		reply = (int32_t)getpid();
	if (send(sock, &reply, sizeof(reply), MSG_NOSIGNAL) != (ssize_t)sizeof(reply) || reply < 0)
		_exit(0);
	child_init_run(&h->c);
}

/* Keeps one warm init waiting; returns when the runner is gone. After a warm init has taken a
 * request, the next is cloned once the next request arrives or SPW_REFILL_MS have passed. */
static void spw_serve(int sock, pid_t runner)
{
	for (;;) {
		int go[2];
		long pid;
		ssize_t n = 0;
		char b;

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, go) < 0)
			return;
		/* Not glibc's fork(): the init's code needs none of its atfork work, and this process
		 * is single-threaded. */
		pid = syscall(SYS_clone, (unsigned long)(CLONE_PARENT | SIGCHLD), NULL, NULL, NULL,
			      0UL);
		if (pid == 0) {
			close(go[0]);
			spw_warm(sock, go[1], runner);
		}
		close(go[1]);
		do
			n = pid < 0 ? 0 : read(go[0], &b, 1);
		while (n < 0 && errno == EINTR);
		close(go[0]);
		if (n == 1) {
			/* The init that took the request now starts its task; the next warm init's
			 * clone and namespaces would compete with it for the CPUs. Wait until the
			 * task has most likely exec'd, unless the next request is already there. */
			struct pollfd pf = { .fd = sock, .events = POLLIN };
			(void)poll(&pf, 1, SPW_REFILL_MS);
		} else {
			/* It left without a request: the runner is gone (EOF), or it was killed. */
			struct pollfd pf = { .fd = sock, .events = POLLRDHUP };
			struct timespec pause = { 0, 100 * 1000000L };
			if (getppid() != runner ||
			    (poll(&pf, 1, 0) > 0 && (pf.revents & (POLLHUP | POLLRDHUP | POLLERR))))
				return;
			(void)nanosleep(&pause, NULL);
		}
	}
}

static __attribute__((noreturn)) void spw_main(int sock, pid_t runner)
{
	sigset_t all;

	/* Die with the runner (its main thread forked us); signals meant for the runner's process
	 * group are not ours. */
	sigfillset(&all);
	(void)sigprocmask(SIG_SETMASK, &all, NULL);
	/* Default dispositions once here (the runner ignores SIGPIPE), so that the tasks need not
	 * reset them one by one (child.c). */
	child_signals_default();
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != runner)
		_exit(0);
	(void)prctl(PR_SET_NAME, "tasked-spawner", 0, 0, 0);
	/* Nothing of the runner's but stdio and the socket. */
	if (sock != 3) {
		if (dup3(sock, 3, O_CLOEXEC) < 0)
			_exit(1);
		sock = 3;
	}
	if (syscall(SYS_close_range, 4U, ~0U, 0U) < 0)
		for (int fd = 4; fd < 1024; fd++)
			(void)close(fd);
	spw_serve(sock, runner);
	_exit(0);
}

int spw_start(void)
{
	int sv[2];
	pid_t runner = getpid(), pid;
	struct timeval tv = { SPW_IO_TIMEOUT_S, 0 };

	if (spw_fd >= 0 && spw_owner == runner)
		return 0;
	if (spw_fd >= 0) { /* a process forked from the runner: the spawner is not ours */
		close(spw_fd);
		spw_fd = -1;
	}
	spw_ns = iso_namespaces();
	if (prctl(PR_GET_NAME, spw_comm, 0, 0, 0) < 0)
		spw_comm[0] = '\0';
	if (!sbx_filter())
		return -ENOSYS;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		spw_main(sv[1], runner);
	}
	close(sv[1]);
	if (pid < 0) {
		int e = errno;
		close(sv[0]);
		return -e;
	}
	(void)setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	spw_fd = sv[0];
	spw_owner = runner;
	spw_pid = pid;
	return 0;
}

pid_t spw_process(void) { return spw_fd >= 0 && getpid() == spw_owner ? spw_pid : 0; }

void spw_stop(void)
{
	if (spw_fd < 0 || getpid() != spw_owner)
		return;
	close(spw_fd);
	spw_fd = -1;
	while (waitpid(spw_pid, NULL, 0) < 0 && errno == EINTR)
		;
}

/* ---- the runner's side ------------------------------------------------------------------- */

static void spw_broken(int err)
{
	log_warn("the spawner is gone: the runner forks each task's init itself from now on",
		 "error", strerrordesc_np(err) ? strerrordesc_np(err) : "?");
	close(spw_fd);
	spw_fd = -1;
}

static int spw_write_full(const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(spw_fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static size_t spw_strv_len(char *const *v, uint32_t *n)
{
	size_t len = 0;
	*n = 0;
	for (; v && *v; v++, (*n)++)
		len += strlen(*v) + 1;
	return len;
}

/* The request's strings in one buffer; NULL if too large or out of memory. */
static char *spw_blob(const struct child *c, struct spw_head *h)
{
	size_t len = strlen(c->path) + 1 + strlen(c->cwd) + 1,
	       an = spw_strv_len(c->argv, &h->nargv), en = spw_strv_len(c->envp, &h->nenvp);
	char *b, *p;

	if (len + an + en > SPW_MAX_BLOB || h->nargv == 0 || h->nargv > SPW_MAX_STRV ||
	    h->nenvp > SPW_MAX_STRV || !(b = malloc(len + an + en)))
		return NULL;
	p = b;
	p = mempcpy(p, c->path, strlen(c->path) + 1);
	p = mempcpy(p, c->cwd, strlen(c->cwd) + 1);
	for (char *const *v = c->argv; *v; v++)
		p = mempcpy(p, *v, strlen(*v) + 1);
	for (char *const *v = c->envp; v && *v; v++)
		p = mempcpy(p, *v, strlen(*v) + 1);
	h->blob = (uint32_t)(p - b);
	return b;
}

pid_t spw_spawn(const struct child *c)
{
	int fds[SPW_NFD] = { c->null_r, c->out_w,      c->err_w,     c->status_w,
			     c->ll_fd,  c->cg->mem_fd, c->cg->cpu_fd };
	union {
		char buf[CMSG_SPACE(SPW_NFD * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct spw_head *h;
	struct iovec iov;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf };
	struct cmsghdr *cm;
	char *blob;
	int n = 0, r;
	ssize_t sent;
	int32_t reply;

	if (spw_fd < 0 || getpid() != spw_owner)
		return -ENOTCONN;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOTCONN;
	blob = spw_blob(c, h);
	if (!blob) {
		free(h);
		return -ENOTCONN;
	}
	h->magic = SPW_MAGIC;
	h->c = *c;
	h->iso = *c->iso;
	memset(u.buf, 0, sizeof(u.buf));
	for (int i = 0; i < SPW_NFD; i++)
		if (fds[i] >= 0) {
			if (i >= SPW_FD_LL)
				h->flags |= 1u << i;
			fds[n++] = fds[i];
		}
	m.msg_controllen = CMSG_SPACE((size_t)n * sizeof(int));
	cm = CMSG_FIRSTHDR(&m);
	if (!cm) { /* cannot happen (the buffer fits SPW_NFD fds); nothing was sent: fork */
		r = -ENOTCONN;
		goto out;
	}
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
	memcpy(CMSG_DATA(cm), fds, (size_t)n * sizeof(int));
	iov = (struct iovec){ h, sizeof(*h) };
	do
		sent = sendmsg(spw_fd, &m, MSG_NOSIGNAL);
	while (sent < 0 && errno == EINTR);
	if (sent <= 0) {
		/* Nothing reached the spawner: the runner may fork the init itself. */
		spw_broken(sent < 0 ? errno : EPIPE);
		r = -ENOTCONN;
		goto out;
	}
	/* From here on an init may exist: a failure fails the attempt rather than risk two. */
	r = spw_write_full((char *)h + sent, sizeof(*h) - (size_t)sent);
	if (r == 0)
		r = spw_write_full(blob, h->blob);
	if (r == 0)
		r = spw_read_full(spw_fd, &reply, sizeof(reply)) < 0 ? -EIO : 0;
	if (r < 0) {
		spw_broken(-r);
		r = r == -ENOTCONN ? -EIO : r;
		goto out;
	}
	/* -ESTALE: the warm init could not take it and exited; nothing runs, so fork. */
	r = reply > 0 ? reply : reply == -ESTALE ? -ENOTCONN : reply < 0 ? reply : -EIO;
out:
	free(blob);
	free(h);
	return r;
}
