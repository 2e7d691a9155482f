/* The code between fork() and execve(): the per-task init and the task. It runs in a copy of a
 * multithreaded process, so it only makes async-signal-safe calls on data prepared before the
 * fork: no allocation, no stdio, no locks. The build checks it: this file is compiled on its
 * own and its undefined symbols must be in runner/child.allow (see the Makefile); keep it free
 * of calls into other modules except the post-fork functions at its end. */
#include "child.h"
#include "cgroup.h"
#include "isolate.h"
#include "landlock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <linux/seccomp.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHILD_SWEEP_ROUNDS 5000 /* the init's kill-and-reap rounds, ~1 ms each */

static void child_put_msg(int fd, int kind, pid_t pid, int step, int val)
{
	struct child_msg m = { kind, (int32_t)pid, step, val };
	while (write(fd, &m, sizeof(m)) < 0 && errno == EINTR)
		;
}

static __attribute__((noreturn)) void child_fail(int fd, int step, int err)
{
	struct child_status s = { step, err };
	(void)!write(fd, &s, sizeof(s));
	_exit(127);
}

static void child_close_from(unsigned from, unsigned max_fd)
{
	if (syscall(SYS_close_range, from, ~0U, 0U) < 0)
		for (unsigned fd = from; fd < max_fd; fd++)
			(void)close((int)fd);
}

/* The kernel's struct sigaction, all zeros here (SIG_DFL, no flags, an empty mask) in any
 * architecture's layout: glibc's sigaction() refuses its own
 * two internal signals (32 and 33), which a parent that ignores them (make does) passes on
 * through execve, so every disposition is reset with the system call itself. */
struct child_ksigaction {
	void (*handler)(int);
	unsigned long flags;
	void (*restorer)(void);
	unsigned long mask;
};

void child_signals_default(void)
{
	struct child_ksigaction dfl;

	memset(&dfl, 0, sizeof(dfl));
	dfl.handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(dfl.mask));
}

/* The task: from the init's fork to execve. */
static __attribute__((noreturn)) void child_task(const struct child *c, pid_t init, int sfd)
{
	/* 1. Die with the init (which outlives the task unless killed itself). */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		child_fail(sfd, STEP_PDEATHSIG, errno);
	if (getppid() != init)
		_exit(127);
	/* 2. Own process group in the init's session: kill(-pgid) reaches the whole task and not
	 *    the init. */
	if (setpgid(0, 0) < 0)
		child_fail(sfd, STEP_PGID, errno);
	/* 3. Resource limits (hard = soft, so the task cannot raise them back; CPU: soft gives
	 *    SIGXCPU, hard one second later SIGKILL). */
	for (size_t i = 0; i < c->nrl; i++)
		if (setrlimit((__rlimit_resource_t)c->rl[i].res, &c->rl[i].lim) < 0)
			child_fail(sfd, STEP_RLIMIT, errno);
	/* 4. fds 0-2 are /dev/null and the capture pipes already (the init's). The status pipe
	 *    moves to 3 (close-on-exec), over the init's pipe to the runner, and everything above
	 *    is closed. */
	if (sfd != 3) {
		if (dup3(sfd, 3, O_CLOEXEC) < 0)
			child_fail(sfd, STEP_FDS, errno);
		sfd = 3;
	}
	child_close_from(c->ll_fd >= 0 ? 5 : 4, c->max_fd);
	/* 5. Default signal dispositions and an empty mask (ignored signals survive execve). From
	 *    the spawner they are all default already: 64 system calls saved. */
	if (!c->sigs_dfl)
		child_signals_default();
	if (sigprocmask(SIG_SETMASK, &c->empty, NULL) < 0)
		child_fail(sfd, STEP_SIGNALS, errno);
	/* 6. Never run a task as root. Raw syscalls: only this thread exists in the child. A
	 *    credential change clears PDEATHSIG, so set it again. */
	if (c->drop_uid) {
		if (syscall(SYS_setgroups, 0, NULL) < 0 ||
		    syscall(SYS_setresgid, CHILD_TASK_GID, CHILD_TASK_GID, CHILD_TASK_GID) < 0 ||
		    syscall(SYS_setresuid, CHILD_TASK_UID, CHILD_TASK_UID, CHILD_TASK_UID) < 0)
			child_fail(sfd, STEP_UID, errno);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
			child_fail(sfd, STEP_PDEATHSIG, errno);
		if (getppid() != init)
			_exit(127);
	}
	/* 7. No setuid binary or file capability can give privileges back (and seccomp needs it). */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		child_fail(sfd, STEP_NNP, errno);
	/* 7b. A Landlock domain of its own (the ruleset is on fd 4, from the init): no reach
	 *     into other tasks' or the runner's /proc, no token file. */
	if (c->ll_fd >= 0) {
		int e = ll_restrict(4);
		if (e < 0)
			child_fail(sfd, STEP_LANDLOCK, -e);
		(void)close(4);
	}
	/* 8. The task's working directory, checked with the task's own credentials. */
	if (chdir(c->cwd) < 0)
		child_fail(sfd, STEP_CHDIR, errno);
	/* 9. The seccomp filter, compiled by the runner before fork, loaded last: after it
	 *    nothing but execve (and the failure report). */
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, c->filter, 0, 0) < 0)
		child_fail(sfd, STEP_SECCOMP, errno);
	/* 10. execve: a success closes the status pipe (O_CLOEXEC) and the init reads EOF. */
	execve(c->path, c->argv, c->envp);
	child_fail(sfd, STEP_EXEC, errno);
}

/* Decimal for paths, without stdio (not async-signal-safe). */
static char *child_utoa(char *end, unsigned long v)
{
	*--end = '\0';
	do
		*--end = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	return end;
}

static void child_init_kill_one(pid_t pid)
{
	/* pid is our unreaped child, so neither it nor a group it leads can be a reused id. */
	if (pid > 1) {
		(void)kill(pid, SIGKILL);
		(void)kill(-pid, SIGKILL);
	}
}

/* Fallback when /proc/PID/task/TID/children is missing: every /proc/N/stat whose ppid is ours. */
static void child_init_scan_proc(pid_t self)
{
	char dents[4096], path[64], stat[512], num[24];
	int dfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	long n;

	if (dfd < 0)
		return;
	while ((n = syscall(SYS_getdents64, dfd, dents, sizeof(dents))) > 0) {
		for (long off = 0; off < n;) {
			struct {
				uint64_t ino;
				int64_t off;
				unsigned short reclen;
				unsigned char type;
				char name[];
			} *d = (void *)(dents + off);
			unsigned long pid = 0, ppid = 0;
			const char *q;
			int fd, ok = d->name[0] != '\0';
			ssize_t len;

			off += d->reclen;
			for (q = d->name; *q && ok; q++)
				ok = *q >= '0' && *q <= '9';
			if (!ok)
				continue;
			for (q = d->name; *q; q++)
				pid = pid * 10 + (unsigned long)(*q - '0');
			memcpy(path, "/proc/", 6);
			q = child_utoa(num + sizeof(num), pid);
			memcpy(path + 6, q, strlen(q));
			memcpy(path + 6 + strlen(q), "/stat", 6);
			fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			len = read(fd, stat, sizeof(stat) - 1);
			close(fd);
			if (len <= 0)
				continue;
			stat[len] = '\0';
			q = strrchr(stat, ')'); /* comm may hold spaces and parentheses */
			if (!q || q[1] != ' ' || !q[2] || q[3] != ' ')
				continue;
			for (q += 4; *q >= '0' && *q <= '9'; q++)
				ppid = ppid * 10 + (unsigned long)(*q - '0');
			if (ppid == (unsigned long)self)
				child_init_kill_one((pid_t)pid);
		}
	}
	close(dfd);
}

/* SIGKILL to every child of the init: the task's processes that left its group and orphans
 * reparented to the init as subreaper. */
static void child_init_kill_children(pid_t self)
{
	char path[80], buf[4096], num[24];
	const char *s = child_utoa(num + sizeof(num), (unsigned long)self);
	size_t sl = strlen(s);
	unsigned long cur = 0;
	int fd, in = 0;
	ssize_t n;

	memcpy(path, "/proc/self/task/", 16);
	memcpy(path + 16, s, sl);
	memcpy(path + 16 + sl, "/children", 10);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		child_init_scan_proc(self);
		return;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] >= '0' && buf[i] <= '9') {
				cur = cur * 10 + (unsigned long)(buf[i] - '0');
				in = 1;
			} else if (in) {
				child_init_kill_one((pid_t)cur);
				cur = 0;
				in = 0;
			}
		}
	if (in)
		child_init_kill_one((pid_t)cur);
	close(fd);
}

/* Kills and reaps everything the task left. Returns once the init has no child, or after
 * CHILD_SWEEP_ROUNDS rounds (processes stuck in the kernel go to the runner, which reaps). */
static void child_init_sweep(pid_t self, pid_t task, int *task_status)
{
	struct timespec ms = { 0, 1000000L };
	pid_t r;
	int st;

	/* The task's group first, while its leader is unreaped: the pgid cannot be reused yet. */
	(void)kill(-task, SIGKILL);
	for (int round = 0; round < CHILD_SWEEP_ROUNDS; round++) {
		child_init_kill_children(self);
		while ((r = waitpid(-1, &st, WNOHANG)) > 0)
			if (r == task)
				*task_status = st;
		if (r < 0 && errno == ECHILD)
			return;
		(void)nanosleep(&ms, NULL);
	}
}

/* Reads the task's exec status (a record: it failed; EOF: it exec'd) and tells the runner. */
static void child_init_report(int tst, int sfd, pid_t task)
{
	struct child_status cs;
	ssize_t n;
	do
		n = read(tst, &cs, sizeof(cs));
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof(cs))
		child_put_msg(sfd, INIT_FAILED, task, cs.step, cs.err);
	else
		child_put_msg(sfd, INIT_STARTED, task, 0, 0);
}

struct child_task_arg {
	const struct child *c;
	pid_t init;
	int tp_r, tp_w;
};

static int child_task_entry(void *arg)
{
	const struct child_task_arg *a = arg;
	close(a->tp_r);
	child_task(a->c, a->init, a->tp_w);
}

/* The task's stack while it shares the init's memory. Each init is a process of its own (a copy
 * of the runner), so each has its own copy of this buffer; the runner never touches it. The
 * task's setup is shallow: a few hundred bytes of frames (more with the sanitizers). */
static char child_stack[64 * 1024] __attribute__((aligned(64)));

static pid_t child_vfork(int (*fn)(void *), void *arg)
{
	/* All signals are blocked in the init (step 1), so no handler can run on the shared
	 * stack before the task resets its dispositions. */
	return (pid_t)clone(fn, child_stack + sizeof(child_stack), CLONE_VM | CLONE_VFORK | SIGCHLD,
			    arg);
}

/* The init's steps that do not depend on the task: 1-4 and, with namespaces, the new mount and
 * IPC namespaces. Returns 0, or a negative errno with *step set. */
int child_init_begin(pid_t parent, int ns, const sigset_t *all, int *step)
{
	/* 1. Every signal blocked: SIGTERM and SIGCHLD are read from a signalfd. */
	(void)sigprocmask(SIG_SETMASK, all, NULL);
	/* 2. The runner's death (its forking thread's, or with the spawner its main thread's)
	 *    arrives as SIGTERM, catchable, so the task tree is killed before the init goes; then
	 *    close the race with the parent dying before prctl(). */
	*step = STEP_PDEATHSIG;
	if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) < 0)
		return -errno;
	if (getppid() != parent)
		_exit(127);
	/* 3. Own session: no terminal, and away from the runner's process group. */
	*step = STEP_SETSID;
	if (setsid() < 0)
		return -errno;
	/* 4. Orphans of the task come back here rather than to the runner. */
	*step = STEP_INIT;
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		return -errno;
	/* 4a. Private mount and IPC namespaces (isolate.h); their mounts come with the task. */
	*step = STEP_ISOLATE;
	if (ns && (unshare(CLONE_NEWNS | CLONE_NEWIPC) < 0 ||
		   mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0))
		return -errno;
	return 0;
}

/* The per-task init: from the runner's fork (or the spawner's clone) to _exit. */
void child_init_run(const struct child *c)
{
	int sfd = c->status_w, sigfd, tp[2], killreq = 0, texited = 0,
	    tstatus = (128 + SIGKILL) << 8;
	pid_t self, task;

	/* 1-4a, unless a warm init of the spawner did them ahead (then c->begin_err says how). */
	{
		int step = c->begin_step,
		    e = c->begun ? -c->begin_err
				 : child_init_begin(c->parent, c->iso->ns, &c->all, &step);
		if (e < 0) {
			child_put_msg(sfd, INIT_FAILED, 0, step, -e);
			_exit(127);
		}
	}
	/* 4b. The task's memory cgroup: the init and everything it forks count against it. */
	{
		int e = cg_task_join(c->cg);
		if (e < 0) {
			child_put_msg(sfd, INIT_FAILED, 0, STEP_CGROUP, -e);
			_exit(127);
		}
	}
	/* 4c. Private /tmp, /dev/shm and IPC, shared by the init and the task, gone with both. */
	{
		int e = iso_enter(c->iso);
		if (e < 0) {
			child_put_msg(sfd, INIT_FAILED, 0, STEP_ISOLATE, -e);
			_exit(127);
		}
	}
	/* 5. The task's stdio on 0-2, the pipe to the runner on 3, nothing else: this copy of the
	 *    runner holds its sockets and other tasks' pipes, and O_CLOEXEC does not help a
	 *    process that never execs. The task's Landlock ruleset, if any, on 4 (it is numbered
	 *    10 or more, so none of these dup2 calls overwrites it). */
	if (dup2(c->null_r, STDIN_FILENO) < 0 || dup2(c->out_w, STDOUT_FILENO) < 0 ||
	    dup2(c->err_w, STDERR_FILENO) < 0 || (sfd != 3 && dup2(sfd, 3) < 0) ||
	    (c->ll_fd >= 0 && dup2(c->ll_fd, 4) < 0)) {
		child_put_msg(sfd, INIT_FAILED, 0, STEP_STDIO, errno);
		_exit(127);
	}
	sfd = 3;
	child_close_from(c->ll_fd >= 0 ? 5 : 4, c->max_fd);
	sigfd = signalfd(-1, &c->initsigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0 || pipe2(tp, O_CLOEXEC) < 0) {
		child_put_msg(sfd, INIT_FAILED, 0, STEP_INIT, errno);
		_exit(127);
	}
	self = getpid();
	/* 6. The task, started the way posix_spawn does: clone(CLONE_VM | CLONE_VFORK) on a
	 *    stack of its own. It shares the init's memory until execve (no page tables to copy:
	 *    the init is a copy of the whole runner), and the init sleeps meanwhile. Not glibc's
	 *    fork(): its atfork handlers may take locks some runner thread held at our fork. */
	{
		struct child_task_arg a = { c, self, tp[0], tp[1] };
		task = child_vfork(child_task_entry, &a);
	}
	if (task < 0) {
		child_put_msg(sfd, INIT_FAILED, 0, STEP_INIT, errno);
		_exit(127);
	}
	close(tp[1]);
	/* No end of the capture pipes stays here: the runner sees EOF once the task's processes
	 * are gone. */
	(void)dup2(STDIN_FILENO, STDOUT_FILENO);
	(void)dup2(STDIN_FILENO, STDERR_FILENO);

	/* 7. Wait: for the exec status, then for the task's exit or a SIGTERM. */
	for (int tst = tp[0];;) {
		struct pollfd p[2] = { { .fd = sigfd, .events = POLLIN },
				       { .fd = tst, .events = POLLIN } };
		struct signalfd_siginfo si;

		if (poll(p, tst >= 0 ? 2 : 1, -1) < 0 && errno != EINTR)
			_exit(126);
		if (tst >= 0 && p[1].revents) {
			child_init_report(tst, sfd, task);
			close(tst);
			tst = -1;
		}
		while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
			if (si.ssi_signo == SIGTERM)
				killreq = 1;
		/* Reap the others as they go; the task itself stays unreaped (so its pgid stays
		 * valid for the sweep) and is only noted. */
		for (;;) {
			siginfo_t wi;
			memset(&wi, 0, sizeof(wi));
			if (waitid(P_ALL, 0, &wi, WEXITED | WNOHANG | WNOWAIT) < 0 ||
			    wi.si_pid == 0)
				break;
			if (wi.si_pid == task) {
				texited = 1;
				break;
			}
			(void)waitpid(wi.si_pid, NULL, WNOHANG);
		}
		if (killreq || (texited && tst < 0)) {
			child_init_sweep(self, task, &tstatus);
			if (tst >= 0) /* killed before the exec was reported: nobody waits for it */
				child_init_report(tst, sfd, task);
			child_put_msg(sfd, INIT_EXIT, task, 0, tstatus);
			_exit(0);
		}
	}
}

/* ---- post-fork halves of other modules --------------------------------------------------- */

/* These belong to cgroup.h, isolate.h and landlock.h but run in the init or the task, so they
 * live here, under the same symbol check. */

int cg_task_join(const struct cg_task *c)
{
	/* "0": the writing process */
	if (c->mem_fd >= 0 && write(c->mem_fd, "0", 1) != 1)
		return -errno;
	if (c->cpu_fd >= 0 && write(c->cpu_fd, "0", 1) != 1)
		return -errno;
	return 0;
}

int ll_restrict(int ruleset_fd)
{
	return syscall(SYS_landlock_restrict_self, ruleset_fd, 0U) < 0 ? -errno : 0;
}

int iso_enter(const struct iso_task *it)
{
	char fdpath[40], num[16];
	int wfd = -1;

	if (!it->ns)
		return 0;
	/* (the namespaces themselves: child_init_begin) */
	if (it->rebind && (wfd = open(it->work, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -errno;
	if (mount(it->tmp, "/tmp", NULL, MS_BIND, NULL) < 0)
		goto fail;
	if (wfd >= 0) {
		/* "/proc/self/fd/N" */
		const char *n = child_utoa(num + sizeof(num), (unsigned long)wfd);
		memcpy(fdpath, "/proc/self/fd/", 14);
		memcpy(fdpath + 14, n, strlen(n) + 1);
		if (mount(fdpath, it->work, NULL, MS_BIND, NULL) < 0)
			goto fail;
		close(wfd);
	}
	/* A system without /dev/shm has nothing to share there. */
	if (mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, it->shm_opts) < 0 &&
	    errno != ENOENT)
		return -errno;
	return 0;
fail : {
	int e = errno;
	if (wfd >= 0)
		close(wfd);
	return -e;
}
}
