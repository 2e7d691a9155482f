/* probe: what can a task do? Run it as a task (or in a container) and it reports, as JSON:
 * identity, NoNewPrivs, seccomp mode, capabilities, rlimits, open fds, and the outcome (errno)
 * of attempts a hostile task would make — read the runner's /proc/PID/{environ,mem}, ptrace it,
 * read its memory, unshare namespaces, mount, bpf, keyctl, perf_event_open, userfaultfd,
 * io_uring, ioctl(TIOCSTI), write to / and /tmp, read a file given with --read-file (or
 * $TASKED_PROBE_READ_FILE), and write then read back a file in its working directory.
 *
 *   probe [--runner-pid PID] [--read-file PATH] [--out FILE]
 *
 * Resource modes (docs/runner.md), each reporting into $TASKED_OUTPUT as well:
 *   probe alloc MIB        allocate and touch MIB MiB, 1 MiB at a time; exit 3 when one fails
 *   probe burn [N]         spin on the CPU until killed, in N processes (default 1)
 *   probe leave NAME [S]   create a SysV shm segment, semaphore set and message queue (key from
 *                          NAME), /dev/shm/tasked-probe-NAME and /tmp/tasked-probe-NAME, then wait
 *                          S seconds (with all of them in place)
 *   probe look NAME        whether those objects of NAME are visible from here
 *   probe limits           RLIMIT_CPU, RLIMIT_DATA, its memory cgroup's limit, /dev/shm's size
 *
 * One JSON line per fact on stdout; the same facts as one JSON object in FILE, or in
 * $TASKED_OUTPUT when set (so a Tasked task's status.output holds the report). The runner's pid
 * comes from --runner-pid, else $TASKED_PROBE_RUNNER_PID, else the grandparent (runner → init →
 * task). Self-contained and meant to be linked statically (no library beyond libc), so the same
 * binary runs inside any image. Exit status 0 unless the probe itself failed.
 *
 *   probe [--runner-pid PID] [--out FILE] --try ACTION [--try ACTION ...]
 *
 * runs only the given attempts (after pids, ids, status and the AppArmor label), each reported
 * under its ACTION as key: read:PATH, write:PATH, copyexec:PATH (copy this binary to PATH and
 * execute it), copymmap:PATH (copy, then map it executable), ptrace-child, mount:DIR,
 * umount:DIR, and
 * socket:KIND (inet-raw, inet6-raw, packet, netlink-route, tcp, udp, unix, unixpair). In PATH,
 * %r is the runner's pid and %s this process's (tests/vm/ uses them under AppArmor). */
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/keyctl.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/statvfs.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include <dirent.h>

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_clone3
#define __NR_clone3 435
#endif

static char report[64 * 1024];
static size_t rlen;
static int first = 1;

/* Appends "key":<value> to the report object and prints {"fact":key,...} on stdout. */
static void fact(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fact(const char *key, const char *fmt, ...)
{
	char val[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	printf("{\"fact\":\"%s\",\"value\":%s}\n", key, val);
	fflush(stdout);
	if (rlen < sizeof(report))
		rlen += (size_t)snprintf(report + rlen, sizeof(report) - rlen, "%s\"%s\":%s",
					 first ? "{" : ",", key, val);
	first = 0;
}

static const char *errname(int e)
{
	static char buf[16];
	const char *n = strerrorname_np(e);
	if (n)
		return n;
	snprintf(buf, sizeof(buf), "E%d", e);
	return buf;
}

/* An attempt: ok when r >= 0; otherwise its errno. */
static void attempt(const char *what, long r, int err)
{
	if (r >= 0)
		fact(what, "{\"ok\":true}");
	else
		fact(what, "{\"ok\":false,\"errno\":%d,\"error\":\"%s\"}", err, errname(err));
}

static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512], *p;
	int fd, n;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = (int)read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p || strlen(p) < 4)
		return -1;
	return (pid_t)strtol(p + 4, NULL, 10);
}

static void status_fields(void)
{
	char buf[8192], out[1024] = "{";
	const char *want[] = { "NoNewPrivs", "Seccomp", "CapEff", "CapPrm", "CapBnd", "CapAmb" };
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC), n;
	size_t ol = 1;

	if (fd < 0)
		return;
	n = (int)read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		char key[32], *p, *e;
		snprintf(key, sizeof(key), "\n%s:", want[i]);
		p = strstr(buf, key);
		if (!p)
			continue;
		p += strlen(key);
		while (*p == ' ' || *p == '\t')
			p++;
		e = strchr(p, '\n');
		if (!e)
			continue;
		if (i < 2)
			ol += (size_t)snprintf(out + ol, sizeof(out) - ol, "%s\"%s\":%.*s",
					       ol > 1 ? "," : "", want[i], (int)(e - p), p);
		else
			ol += (size_t)snprintf(out + ol, sizeof(out) - ol, "%s\"%s\":\"%.*s\"",
					       ol > 1 ? "," : "", want[i], (int)(e - p), p);
	}
	snprintf(out + ol, sizeof(out) - ol, "}");
	fact("status", "%s", out);
}

static void rlimits(void)
{
	static const struct {
		const char *name;
		int res;
	} rl[] = {
		{ "core", RLIMIT_CORE },   { "nofile", RLIMIT_NOFILE }, { "nproc", RLIMIT_NPROC },
		{ "fsize", RLIMIT_FSIZE }, { "as", RLIMIT_AS },         { "cpu", RLIMIT_CPU },
		{ "data", RLIMIT_DATA },
	};
	char out[1024] = "{";
	size_t ol = 1;
	for (size_t i = 0; i < sizeof(rl) / sizeof(rl[0]); i++) {
		struct rlimit r;
		if (getrlimit(rl[i].res, &r) < 0)
			continue;
		ol += (size_t)snprintf(out + ol, sizeof(out) - ol, "%s\"%s\":[%lld,%lld]",
				       ol > 1 ? "," : "", rl[i].name,
				       r.rlim_cur == RLIM_INFINITY ? -1LL : (long long)r.rlim_cur,
				       r.rlim_max == RLIM_INFINITY ? -1LL : (long long)r.rlim_max);
	}
	snprintf(out + ol, sizeof(out) - ol, "}");
	fact("rlimits", "%s", out);
}

/* Open fds, without the one used to list them. */
static void fds(void)
{
	char out[4096] = "[";
	size_t ol = 1;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	if (!d)
		return;
	while ((e = readdir(d))) {
		int fd;
		if (e->d_name[0] == '.')
			continue;
		fd = (int)strtol(e->d_name, NULL, 10);
		if (fd == dirfd(d))
			continue;
		ol += (size_t)snprintf(out + ol, sizeof(out) - ol, "%s%d", ol > 1 ? "," : "", fd);
		if (ol >= sizeof(out) - 16)
			break;
	}
	closedir(d);
	snprintf(out + ol, sizeof(out) - ol, "]");
	fact("fds", "%s", out);
}

static void try_open(const char *key, pid_t pid, const char *file)
{
	char path[64];
	char buf[64];
	int fd, err = 0;
	long r;
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		attempt(key, -1, errno);
		return;
	}
	/* Opening is not enough for mem: reading at an address proves it. */
	r = strcmp(file, "mem") == 0 ? pread(fd, buf, sizeof(buf), 0x400000)
				     : read(fd, buf, sizeof(buf));
	if (r < 0)
		err = errno;
	close(fd);
	/* An open that succeeded is a failure of the sandbox even if this read missed a mapping. */
	if (r < 0 && strcmp(file, "mem") == 0 && err == EIO)
		r = 0;
	attempt(key, r, err);
}

static void try_ptrace(const char *key, pid_t pid)
{
	long r = ptrace(PTRACE_ATTACH, pid, NULL, NULL);
	int err = errno;
	if (r == 0) {
		waitpid(pid, NULL, __WALL);
		ptrace(PTRACE_DETACH, pid, NULL, NULL);
	}
	attempt(key, r, err);
}

static void try_vm_read(const char *key, pid_t pid)
{
	char buf[16];
	struct iovec l = { buf, sizeof(buf) }, rm = { (void *)0x400000, sizeof(buf) };
	long r = syscall(SYS_process_vm_readv, pid, &l, 1UL, &rm, 1UL, 0UL);
	attempt(key, r < 0 && errno == EFAULT ? 0 : r, errno);
}

static void try_write(const char *key, const char *dir)
{
	char path[256];
	int fd;
	snprintf(path, sizeof(path), "%s/.tasked-probe-%d", dir, (int)getpid());
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
	attempt(key, fd, errno);
}

/* Runs one attempt in a child, so a success (as root outside any sandbox) changes nothing of
 * the probe's own namespaces, root or credentials. */
enum { A_UNSHARE_USER_MOUNT, A_UNSHARE_USER, A_MOUNT, A_CHROOT, A_SETUID0 };
static void isolated(const char *key, int which)
{
	int p[2];
	long res[2] = { -1, 0 };
	pid_t pid;

	if (pipe(p) < 0) {
		attempt(key, -1, errno);
		return;
	}
	pid = fork();
	if (pid == 0) {
		long r = -1;
		close(p[0]);
		switch (which) {
		case A_UNSHARE_USER_MOUNT:
			r = unshare(CLONE_NEWUSER | CLONE_NEWNS);
			break;
		case A_UNSHARE_USER:
			r = unshare(CLONE_NEWUSER);
			break;
		case A_MOUNT:
			/* Harmless even for root outside any sandbox: a private mount namespace
			 * when it can have one, and a target that does not exist (the kernel
			 * looks the path up first, so an allowed mount says ENOENT and only a
			 * filter says EPERM). */
			(void)unshare(CLONE_NEWNS);
			r = mount("none", "/nonexistent/tasked-probe", "tmpfs", 0, NULL);
			break;
		case A_CHROOT:
			r = chroot("/");
			break;
		case A_SETUID0:
			r = setuid(0);
			break;
		}
		res[0] = r;
		res[1] = errno;
		if (write(p[1], res, sizeof(res)) < 0)
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	if (pid < 0 || read(p[0], res, sizeof(res)) != (ssize_t)sizeof(res)) {
		res[0] = -1;
		res[1] = pid < 0 ? errno : EIO;
	}
	close(p[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	attempt(key, res[0], (int)res[1]);
}

static void try_clone_ns(const char *key, unsigned long flags)
{
	long r = syscall(SYS_clone, flags | SIGCHLD, 0UL, 0UL, 0UL, 0UL);
	int err = errno;
	if (r == 0)
		_exit(0);
	if (r > 0)
		waitpid((pid_t)r, NULL, 0);
	attempt(key, r, err);
}

/* --- --try: one attempt each ------------------------------------------------------------- */

/* PATH with %r (the runner's pid) and %s (ours) expanded; -ENAMETOOLONG past out's size. */
static int expand(const char *in, pid_t runner, char *out, size_t outsz)
{
	size_t o = 0;
	for (const char *p = in; *p; p++) {
		int n;
		if (p[0] == '%' && (p[1] == 'r' || p[1] == 's')) {
			n = snprintf(out + o, outsz - o, "%d",
				     (int)(p[1] == 'r' ? runner : getpid()));
			p++;
		} else {
			n = snprintf(out + o, outsz - o, "%c", *p);
		}
		if (n < 0 || (size_t)n >= outsz - o)
			return -ENAMETOOLONG;
		o += (size_t)n;
	}
	return 0;
}

/* Copies this binary to path (0755): something to execute or map from a scratch directory. */
static int copy_self(const char *path)
{
	char buf[65536];
	int in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC), out, rc = 0;
	ssize_t n;
	if (in < 0)
		return -errno;
	out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	if (out < 0) {
		rc = -errno;
		close(in);
		return rc;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n) {
			rc = -EIO;
			break;
		}
	if (n < 0)
		rc = -errno;
	close(in);
	if (close(out) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* execve(path) in a child; the errno of a failed execve comes back through a CLOEXEC pipe.
 * What runs is this probe with a bad flag: it exits 2 at once. */
static long try_exec(const char *path, int *err)
{
	int p[2], e = 0;
	pid_t pid;
	if (pipe2(p, O_CLOEXEC) < 0) {
		*err = errno;
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		char prog[512], flag[] = "--exec-check";
		char *av[] = { prog, flag, NULL }, *ev[] = { NULL };
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
		snprintf(prog, sizeof(prog), "%s", path);
		close(p[0]);
		if (null >= 0) { /* its usage message is not a fact */
			dup2(null, STDOUT_FILENO);
			dup2(null, STDERR_FILENO);
		}
		execve(path, av, ev);
		e = errno;
		if (write(p[1], &e, sizeof(e)) < 0)
			_exit(126);
		_exit(127);
	}
	close(p[1]);
	if (pid < 0) {
		*err = errno;
		close(p[0]);
		return -1;
	}
	if (read(p[0], &e, sizeof(e)) != (ssize_t)sizeof(e))
		e = 0;
	close(p[0]);
	waitpid(pid, NULL, 0);
	*err = e;
	return e ? -1 : 0;
}

static long try_socket(const char *kind, int *err)
{
	static const struct {
		const char *name;
		int family, type, proto;
	} k[] = {
		{ "inet-raw", AF_INET, SOCK_RAW, IPPROTO_ICMP },
		{ "inet6-raw", AF_INET6, SOCK_RAW, IPPROTO_ICMPV6 },
		{ "packet", AF_PACKET, SOCK_RAW, 0 },
		{ "netlink-route", AF_NETLINK, SOCK_RAW, NETLINK_ROUTE },
		{ "tcp", AF_INET, SOCK_STREAM, 0 },
		{ "udp", AF_INET, SOCK_DGRAM, 0 },
		{ "unix", AF_UNIX, SOCK_STREAM, 0 },
	};
	int fd, sv[2];
	if (strcmp(kind, "unixpair") == 0) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
			*err = errno;
			return -1;
		}
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
		if (strcmp(kind, k[i].name) != 0)
			continue;
		fd = socket(k[i].family, k[i].type | SOCK_CLOEXEC, k[i].proto);
		*err = errno;
		if (fd >= 0)
			close(fd);
		return fd;
	}
	*err = EINVAL;
	return -1;
}

/* mount(tmpfs) on dir (or, with umount, unmount dir) in a child with a private mount namespace
 * when it may have one (root): an allowed mount changes nothing outside it. */
static long try_mount(const char *dir, int umount, int *err)
{
	long res[2] = { -1, EIO };
	int p[2];
	pid_t child;
	if (pipe2(p, O_CLOEXEC) < 0 || (child = fork()) < 0) {
		*err = errno;
		return -1;
	}
	if (child == 0) {
		close(p[0]);
		(void)unshare(CLONE_NEWNS);
		(void)mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
		res[0] = umount ? umount2(dir, 0) : mount("none", dir, "tmpfs", 0, NULL);
		res[1] = errno;
		if (write(p[1], res, sizeof(res)) < 0)
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	if (read(p[0], res, sizeof(res)) != (ssize_t)sizeof(res))
		res[0] = -1;
	close(p[0]);
	waitpid(child, NULL, 0);
	*err = (int)res[1];
	return res[0];
}

static void try_action(const char *spec, pid_t runner)
{
	const char *arg = strchr(spec, ':');
	char path[512];
	long r = -1;
	int err = EINVAL, fd;

	/* The spec is the report's key: nothing a JSON string would need to escape. */
	for (const char *c = spec; *c; c++)
		if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) {
			fprintf(stderr,
				"probe: --try %s: no quotes, backslashes or control characters\n",
				spec);
			return;
		}
	arg = arg ? arg + 1 : "";
	if (expand(arg, runner, path, sizeof(path)) < 0) {
		attempt(spec, -1, ENAMETOOLONG);
		return;
	}
	if (strncmp(spec, "read:", 5) == 0) {
		char c;
		fd = open(path, O_RDONLY | O_CLOEXEC);
		err = errno;
		if (fd >= 0) {
			r = read(fd, &c, 1);
			err = errno;
			close(fd);
		}
	} else if (strncmp(spec, "write:", 6) == 0) {
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		err = errno;
		if (fd >= 0) {
			r = write(fd, "x", 1);
			err = errno;
			close(fd);
			unlink(path);
		}
	} else if (strncmp(spec, "copyexec:", 9) == 0 || strncmp(spec, "copymmap:", 9) == 0) {
		/* The copy must work (the directory is writable): only running it may fail. */
		int c = copy_self(path);
		if (c < 0) {
			fact(spec, "{\"ok\":false,\"copied\":false,\"errno\":%d,\"error\":\"%s\"}",
			     -c, errname(-c));
			return;
		}
		if (spec[4] == 'e') {
			r = try_exec(path, &err);
		} else {
			void *m = MAP_FAILED;
			fd = open(path, O_RDONLY | O_CLOEXEC);
			err = errno;
			if (fd >= 0) {
				m = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
				err = errno;
				close(fd);
			}
			r = m == MAP_FAILED ? -1 : 0;
			if (m != MAP_FAILED)
				munmap(m, 4096);
		}
		unlink(path);
	} else if (strcmp(spec, "ptrace-child") == 0) {
		/* Our own child: no Yama scope and no dumpable flag in the way, only the policy. */
		pid_t child = fork();
		if (child == 0) {
			pause();
			_exit(0);
		}
		err = errno;
		if (child > 0) {
			r = ptrace(PTRACE_ATTACH, child, NULL, NULL);
			err = errno;
			kill(child, SIGKILL);
			waitpid(child, NULL, __WALL);
		}
	} else if (strncmp(spec, "mount:", 6) == 0 || strncmp(spec, "umount:", 7) == 0) {
		r = try_mount(path, spec[0] == 'u', &err);
	} else if (strncmp(spec, "socket:", 7) == 0) {
		r = try_socket(arg, &err);
	}
	attempt(spec, r, err);
}

/* The AppArmor label this process runs under ("unconfined", "tasked-runner (enforce)"). */
static void label(void)
{
	char buf[256];
	int fd = open("/proc/self/attr/current", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	int err = errno;
	if (fd >= 0)
		close(fd);
	if (n < 0) {
		attempt("label", -1, err);
		return;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\n\"\\")] = '\0';
	fact("label", "\"%s\"", buf);
}

/* SysV key of NAME: a stable hash, so another task can look for the same objects. */
static key_t probe_key(const char *name)
{
	uint32_t h = 2166136261u;
	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return (key_t)(0x7a000000 | (h & 0xffffff));
}

static void out_json(const char *json)
{
	const char *out = getenv("TASKED_OUTPUT");
	FILE *f = out ? fopen(out, "we") : NULL;
	printf("%s\n", json);
	if (f) {
		fputs(json, f);
		fclose(f);
	}
	fflush(stdout);
}

static int mode_alloc(long mib)
{
	char js[256];
	long i;
	for (i = 0; i < mib; i++) {
		char *p = malloc(1 << 20);
		if (!p) {
			int e = errno;
			snprintf(js, sizeof(js), "{\"allocatedMiB\":%ld,\"error\":\"%s\"}", i,
				 strerror(e));
			fprintf(stderr, "allocation failed after %ld MiB: %s\n", i, strerror(e));
			out_json(js);
			return 3;
		}
		memset(p, 0x5a, 1 << 20);
	}
	snprintf(js, sizeof(js), "{\"allocatedMiB\":%ld}", i);
	out_json(js);
	return 0;
}

static __attribute__((noreturn)) void mode_burn(long n)
{
	volatile unsigned long x = 0;
	for (long i = 1; i < n && i < 64; i++)
		if (fork() == 0)
			break;
	printf("burning\n");
	fflush(stdout);
	for (;;)
		x++;
}

static const char *errstr(int found, int e)
{
	return found ? "found" : e == ENOENT ? "ENOENT" : strerror(e);
}

static int mode_look(const char *name)
{
	char js[1024], path[2][256];
	key_t k = probe_key(name);
	int e[5], f[5];
	f[0] = shmget(k, 0, 0) >= 0, e[0] = errno;
	f[1] = semget(k, 0, 0) >= 0, e[1] = errno;
	f[2] = msgget(k, 0) >= 0, e[2] = errno;
	snprintf(path[0], sizeof(path[0]), "/dev/shm/tasked-probe-%s", name);
	snprintf(path[1], sizeof(path[1]), "/tmp/tasked-probe-%s", name);
	f[3] = access(path[0], F_OK) == 0, e[3] = errno;
	f[4] = access(path[1], F_OK) == 0, e[4] = errno;
	snprintf(js, sizeof(js),
		 "{\"shm\":\"%s\",\"sem\":\"%s\",\"msg\":\"%s\",\"devshm\":\"%s\",\"tmp\":\"%s\"}",
		 errstr(f[0], e[0]), errstr(f[1], e[1]), errstr(f[2], e[2]), errstr(f[3], e[3]),
		 errstr(f[4], e[4]));
	out_json(js);
	return 0;
}

static int mode_leave(const char *name, long secs)
{
	char js[1024], path[256];
	key_t k = probe_key(name);
	int shm = shmget(k, 4096, IPC_CREAT | 0600), sem = semget(k, 1, IPC_CREAT | 0600);
	int msg = msgget(k, IPC_CREAT | 0600), fd, made = 0;
	snprintf(path, sizeof(path), "/dev/shm/tasked-probe-%s", name);
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	made += fd >= 0;
	if (fd >= 0)
		close(fd);
	snprintf(path, sizeof(path), "/tmp/tasked-probe-%s", name);
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	made += fd >= 0;
	if (fd >= 0)
		close(fd);
	snprintf(js, sizeof(js), "{\"shmid\":%d,\"semid\":%d,\"msgid\":%d,\"files\":%d,\"key\":%d}",
		 shm, sem, msg, made, (int)k);
	out_json(js);
	if (secs > 0)
		sleep((unsigned)secs);
	return shm >= 0 && sem >= 0 && msg >= 0 && made == 2 ? 0 : 1;
}

static long long rl_soft(int res)
{
	struct rlimit r;
	return getrlimit(res, &r) < 0 || r.rlim_cur == RLIM_INFINITY ? -1LL : (long long)r.rlim_cur;
}

/* memory.limit_in_bytes of this process's v1 memory cgroup, -1 when there is none. */
static long long cgroup_limit(void)
{
	char buf[4096], path[4200], *p, *e;
	long long v = -1;
	int fd = open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strstr(buf, ":memory:");
	if (!p)
		return -1;
	p += 8;
	e = strchr(p, '\n');
	if (e)
		*e = '\0';
	snprintf(path, sizeof(path), "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", p);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	if (fd >= 0)
		close(fd);
	if (n > 0) {
		buf[n] = '\0';
		v = strtoll(buf, NULL, 10);
	}
	return v;
}

static int mode_limits(void)
{
	char js[512];
	struct statvfs sv;
	long long shm = statvfs("/dev/shm", &sv) == 0
				? (long long)sv.f_blocks * (long long)sv.f_frsize
				: -1;
	snprintf(
		js, sizeof(js),
		"{\"cpuSeconds\":%lld,\"dataBytes\":%lld,\"asBytes\":%lld,\"cgroupMemoryBytes\":%lld,"
		"\"devShmBytes\":%lld,\"tmpdir\":\"%s\"}",
		rl_soft(RLIMIT_CPU), rl_soft(RLIMIT_DATA), rl_soft(RLIMIT_AS), cgroup_limit(), shm,
		getenv("TMPDIR") ? getenv("TMPDIR") : "");
	out_json(js);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "limits") == 0)
		return mode_limits();
	if (argc >= 3 && strcmp(argv[1], "alloc") == 0)
		return mode_alloc(strtol(argv[2], NULL, 10));
	if (argc >= 2 && strcmp(argv[1], "burn") == 0)
		mode_burn(argc >= 3 ? strtol(argv[2], NULL, 10) : 1);
	if (argc >= 3 && strcmp(argv[1], "leave") == 0)
		return mode_leave(argv[2], argc >= 4 ? strtol(argv[3], NULL, 10) : 0);
	if (argc == 3 && strcmp(argv[1], "look") == 0)
		return mode_look(argv[2]);

	const char *out = getenv("TASKED_OUTPUT"), *rp = getenv("TASKED_PROBE_RUNNER_PID");
	const char *rf = getenv("TASKED_PROBE_READ_FILE");
	pid_t runner = rp ? (pid_t)strtol(rp, NULL, 10) : 0, parent = getppid();
	gid_t groups[64];
	const char *tries[64];
	int ng, ntries = 0;
	long r;
	int err;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--runner-pid") == 0 && i + 1 < argc)
			runner = (pid_t)strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
			out = argv[++i];
		else if (strcmp(argv[i], "--read-file") == 0 && i + 1 < argc)
			rf = argv[++i];
		else if (strcmp(argv[i], "--try") == 0 && i + 1 < argc && ntries < 64)
			tries[ntries++] = argv[++i];
		else {
			fprintf(stderr,
				"usage: probe [--runner-pid PID] [--read-file PATH] [--out FILE] [--try ACTION ...]\n");
			return 2;
		}
	}
	if (runner <= 0)
		runner = parent_of(parent);

	fact("pids", "{\"self\":%d,\"parent\":%d,\"runner\":%d}", (int)getpid(), (int)parent,
	     (int)runner);
	ng = getgroups(64, groups);
	{
		char g[512] = "[";
		size_t gl = 1;
		for (int i = 0; i < ng; i++)
			gl += (size_t)snprintf(g + gl, sizeof(g) - gl, "%s%u", i ? "," : "",
					       (unsigned)groups[i]);
		snprintf(g + gl, sizeof(g) - gl, "]");
		fact("ids", "{\"uid\":%u,\"euid\":%u,\"gid\":%u,\"egid\":%u,\"groups\":%s}",
		     (unsigned)getuid(), (unsigned)geteuid(), (unsigned)getgid(),
		     (unsigned)getegid(), g);
	}
	fact("dumpable", "%d", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
	status_fields();
	if (ntries > 0) {
		label();
		for (int i = 0; i < ntries; i++)
			try_action(tries[i], runner);
		goto write_report;
	}
	rlimits();
	fds();

	/* The runner, and the process between it and us. */
	try_open("runnerEnviron", runner, "environ");
	try_open("runnerMem", runner, "mem");
	try_ptrace("runnerPtrace", runner);
	try_vm_read("runnerVmRead", runner);
	try_open("parentEnviron", parent, "environ");
	try_open("parentMem", parent, "mem");
	try_ptrace("parentPtrace", parent);
	r = kill(runner, 0);
	attempt("runnerSignal0", r, errno);

	/* Namespaces and mounts. */
	isolated("unshareUserMount", A_UNSHARE_USER_MOUNT);
	isolated("unshareUser", A_UNSHARE_USER);
	try_clone_ns("cloneNewUser", CLONE_NEWUSER);
	r = syscall(__NR_clone3, NULL, 0UL);
	attempt("clone3", r, errno);
	isolated("mount", A_MOUNT);
	isolated("chroot", A_CHROOT);

	/* Kernel interfaces. Where the kernel itself would answer EINVAL or EOPNOTSUPP (invalid
	 * commands), EPERM can only come from the filter. */
	r = syscall(SYS_bpf, 0x7fff, NULL, 0);
	attempt("bpfInvalidCmd", r, errno);
	{
		union bpf_attr a;
		memset(&a, 0, sizeof(a));
		a.map_type = BPF_MAP_TYPE_ARRAY;
		a.key_size = 4;
		a.value_size = 4;
		a.max_entries = 1;
		r = syscall(SYS_bpf, BPF_MAP_CREATE, &a, sizeof(a));
		err = errno;
		if (r >= 0)
			close((int)r);
		attempt("bpfMapCreate", r, err);
	}
	r = syscall(SYS_keyctl, 0x7fff, 0, 0, 0, 0);
	attempt("keyctlInvalidCmd", r, errno);
	r = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0, 0, 0);
	attempt("keyctlSessionKeyring", r, errno);
	r = syscall(SYS_add_key, "user", "tasked-probe", "x", 1, KEY_SPEC_PROCESS_KEYRING);
	attempt("addKey", r, errno);
	{
		struct perf_event_attr pa;
		memset(&pa, 0, sizeof(pa));
		pa.type = PERF_TYPE_SOFTWARE;
		pa.size = sizeof(pa);
		pa.config = PERF_COUNT_SW_CPU_CLOCK;
		pa.disabled = 1;
		pa.exclude_kernel = 1;
		r = syscall(SYS_perf_event_open, &pa, 0, -1, -1, 0UL);
		err = errno;
		if (r >= 0)
			close((int)r);
		attempt("perfEventOpen", r, err);
	}
	r = syscall(SYS_userfaultfd, O_CLOEXEC);
	err = errno;
	if (r >= 0)
		close((int)r);
	attempt("userfaultfd", r, err);
	{
		char params[120];
		memset(params, 0, sizeof(params));
		r = syscall(__NR_io_uring_setup, 1, params);
		err = errno;
		if (r >= 0)
			close((int)r);
		attempt("ioUringSetup", r, err);
	}
	{
		char c = 'x';
		/* stdin is /dev/null: the kernel says ENOTTY, the filter EPERM; the second call
		 * sets high bits the kernel ignores. */
		r = ioctl(0, TIOCSTI, &c);
		attempt("ioctlTiocsti", r, errno);
		r = syscall(SYS_ioctl, 0, (unsigned long)TIOCSTI | (1UL << 32), &c);
		attempt("ioctlTiocstiHighBits", r, errno);
	}
	r = syscall(SYS_init_module, NULL, 0UL, "");
	attempt("initModule", r, errno);
	r = syscall(SYS_reboot, 0, 0, 0, NULL); /* invalid magic: the kernel says EINVAL */
	attempt("reboot", r, errno);
	isolated("setuid0", A_SETUID0);

	/* Files. */
	try_write("writeRoot", "");
	try_write("writeTmp", "/tmp");
	if (rf && *rf) {
		int fd = open(rf, O_RDONLY | O_CLOEXEC);
		err = errno;
		if (fd >= 0)
			close(fd);
		attempt("readFile", fd, err);
	}
	{
		/* A file of its own, in its working directory: written, then opened for reading. */
		int fd = open("probe-own-file", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		r = fd >= 0 && write(fd, "x", 1) == 1 ? 0 : -1;
		err = errno;
		if (fd >= 0)
			close(fd);
		if (r == 0) {
			fd = open("probe-own-file", O_RDONLY | O_CLOEXEC);
			r = fd;
			err = errno;
			if (fd >= 0)
				close(fd);
		}
		attempt("readOwnFile", r, err);
		(void)unlink("probe-own-file");
	}
	{
		int fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
		err = errno;
		if (fd >= 0)
			close(fd);
		attempt("readEtcPasswd", fd, err);
	}

write_report:
	if (rlen < sizeof(report))
		rlen += (size_t)snprintf(report + rlen, sizeof(report) - rlen, "}\n");
	if (out && *out) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 || write(fd, report, rlen) != (ssize_t)rlen) {
			perror("probe: write report");
			return 1;
		}
		close(fd);
	}
	return 0;
}
