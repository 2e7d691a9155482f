/* imgprobe: reports, as key=value lines, what a task can do inside a runner container.
 * Built static (no libc in the image needed) and baked into a TEST image layered on the runner
 * image (tests/integration/65-images.t); never shipped.
 *
 *   imgprobe [--read PATH]... [--canary STRING]
 *
 * Lines (values are "ok" or an errno name, or a number):
 *   uid, gid, euid          ids the task runs with
 *   capeff, capprm, capbnd  /proc/self/status capability sets, hex
 *   nonewprivs, seccomp     /proc/self/status NoNewPrivs and Seccomp
 *   write_root              creating /imgprobe.test
 *   write_usr               creating /usr/local/bin/imgprobe.test
 *   write_tmp               create, write, read back, unlink a file under $TMPDIR or /tmp
 *   read_pid1_environ       reading /proc/1/environ (the runner, PID 1 of the container)
 *   read_pid1_mounts        reading /proc/1/mounts
 *   ptrace_pid1             PTRACE_ATTACH to PID 1
 *   setuid0                 setuid(0)
 *   environ_readable        how many /proc/PID/environ files (other than our own) it could read
 *   canary_seen             "yes" when STRING occurs in any readable /proc/PID/environ, in a
 *                           /proc/PID/cmdline, or in our own environment; else "no"
 *   read:PATH               reading PATH (for each --read)
 *   has_shell               "yes" if /bin/sh exists */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

static const char *errname(int e)
{
	switch (e) {
	case 0:
		return "ok";
	case EACCES:
		return "EACCES";
	case EPERM:
		return "EPERM";
	case EROFS:
		return "EROFS";
	case ENOENT:
		return "ENOENT";
	case ESRCH:
		return "ESRCH";
	case EINVAL:
		return "EINVAL";
	case ENOSPC:
		return "ENOSPC";
	case EIO:
		return "EIO";
	default: {
		static char buf[32];
		snprintf(buf, sizeof(buf), "errno%d", e);
		return buf;
	}
	}
}

/* Reads up to cap bytes of path into buf; returns bytes read or -errno. */
static ssize_t slurp(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t n = 0;
	ssize_t r;

	if (fd < 0)
		return -errno;
	while (n < cap && (r = read(fd, buf + n, cap - n)) != 0) {
		if (r < 0) {
			int e = errno;
			if (e == EINTR)
				continue;
			close(fd);
			return -e;
		}
		n += (size_t)r;
	}
	close(fd);
	return (ssize_t)n;
}

static int contains(const char *buf, size_t n, const char *needle)
{
	return needle && *needle && memmem(buf, n, needle, strlen(needle)) != NULL;
}

static void status_field(const char *status, const char *field, const char *key)
{
	const char *p = strstr(status, field);
	char val[64] = "?";

	if (p) {
		p += strlen(field);
		while (*p == ' ' || *p == '\t')
			p++;
		snprintf(val, sizeof(val), "%.*s", (int)strcspn(p, "\n"), p);
	}
	printf("%s=%s\n", key, val);
}

static void try_create(const char *key, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0) {
		printf("%s=%s\n", key, errname(errno));
		return;
	}
	close(fd);
	unlink(path);
	printf("%s=ok\n", key);
}

static void try_tmp(void)
{
	const char *dir = getenv("TMPDIR");
	char path[4096], back[8] = "";
	int fd, e = 0;

	if (!dir || !*dir)
		dir = "/tmp";
	snprintf(path, sizeof(path), "%s/imgprobe.XXXXXX", dir);
	fd = mkstemp(path);
	if (fd < 0) {
		printf("write_tmp=%s\n", errname(errno));
		return;
	}
	if (write(fd, "probe", 5) != 5 || lseek(fd, 0, SEEK_SET) != 0 || read(fd, back, 5) != 5)
		e = errno ? errno : EIO;
	else if (memcmp(back, "probe", 5) != 0)
		e = EIO;
	close(fd);
	if (unlink(path) < 0 && !e)
		e = errno;
	printf("write_tmp=%s\n", errname(e));
}

int main(int argc, char **argv)
{
	static char buf[1 << 16];
	const char *canary = NULL;
	char path[512];
	ssize_t n;
	DIR *d;
	struct dirent *de;
	int environ_readable = 0, seen = 0;
	pid_t self = getpid();

	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--canary") == 0 && i + 1 < argc)
			canary = argv[++i];

	printf("uid=%u\ngid=%u\neuid=%u\n", (unsigned)getuid(), (unsigned)getgid(),
	       (unsigned)geteuid());
	n = slurp("/proc/self/status", buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	status_field(buf, "CapEff:", "capeff");
	status_field(buf, "CapPrm:", "capprm");
	status_field(buf, "CapBnd:", "capbnd");
	status_field(buf, "NoNewPrivs:", "nonewprivs");
	status_field(buf, "Seccomp:", "seccomp");

	try_create("write_root", "/imgprobe.test");
	try_create("write_usr", "/usr/local/bin/imgprobe.test");
	try_tmp();

	n = slurp("/proc/1/environ", buf, sizeof(buf));
	printf("read_pid1_environ=%s\n", errname(n < 0 ? (int)-n : 0));
	n = slurp("/proc/1/mounts", buf, sizeof(buf));
	printf("read_pid1_mounts=%s\n", errname(n < 0 ? (int)-n : 0));
	if (ptrace(PTRACE_ATTACH, 1, NULL, NULL) == 0) {
		printf("ptrace_pid1=ok\n");
		ptrace(PTRACE_DETACH, 1, NULL, NULL);
	} else {
		printf("ptrace_pid1=%s\n", errname(errno));
	}
	printf("setuid0=%s\n", errname(setuid(0) == 0 ? 0 : errno));

	/* Every process we can see: can we read its environment, does the canary show? */
	d = opendir("/proc");
	while (d && (de = readdir(d)) != NULL) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/environ", pid);
		n = slurp(path, buf, sizeof(buf));
		if (n >= 0 && pid != self) {
			environ_readable++;
			seen |= contains(buf, (size_t)n, canary);
		}
		snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
		n = slurp(path, buf, sizeof(buf));
		if (n > 0 && pid != self)
			seen |= contains(buf, (size_t)n, canary);
	}
	if (d)
		closedir(d);
	for (char **e = environ; *e; e++)
		seen |= contains(*e, strlen(*e), canary);
	printf("environ_readable=%d\ncanary_seen=%s\n", environ_readable, seen ? "yes" : "no");

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--read") == 0 && i + 1 < argc) {
			n = slurp(argv[++i], buf, sizeof(buf));
			printf("read:%s=%s\n", argv[i], errname(n < 0 ? (int)-n : 0));
		} else if (strcmp(argv[i], "--canary") == 0) {
			i++;
		}
	}
	printf("has_shell=%s\n", access("/bin/sh", F_OK) == 0 ? "yes" : "no");
	return 0;
}
