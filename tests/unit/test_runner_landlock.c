/* The tasks' Landlock domains (runner/landlock.c) against the real kernel: a child process
 * enters a domain the way a task's child does and reports, through a pipe, what it could still
 * open or reach. */
#include "landlock.h"
#include "tap.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];

enum { R_TOKEN, R_OTHER, R_SUBDIR, R_WORK_NEW, R_LATER, R_ETC, R_PARENT_ENV, R_PARENT_SIG, R_N };
static const char *const what[R_N] = {
	"the hidden token",
	"a file beside it",
	"a file in a directory beside it",
	"a file the task creates in its work dir",
	"a file created beside the token after set-up",
	"/etc/passwd",
	"the parent's /proc/PID/environ",
	"signal 0 to the parent",
};

static int try_open(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

/* Enters a domain built for work_dir in a child; res[i] is 0 (allowed) or the errno. */
static int run_child(const char *work_dir, int res[R_N])
{
	int p[2], st = 0;
	pid_t pid;
	char path[256];

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		int out[R_N] = { 0 }, fd, e = 0;
		pid_t parent = getppid();
		close(p[0]);
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			_exit(2);
		/* Tasks hold no capabilities; a root test run drops its own like a task has (with
		 * them, the kernel lets it read a process's environ past Landlock's scope). */
		{
			cap_t c = cap_init(); /* all clear */
			if (!c || cap_set_proc(c) < 0)
				_exit(5);
			cap_free(c);
		}
		fd = ll_ruleset(work_dir, NULL);
		if (fd < 0 || ll_restrict(fd) < 0)
			_exit(3);
		close(fd);
		snprintf(path, sizeof(path), "%s/token", dir);
		out[R_TOKEN] = try_open(path);
		snprintf(path, sizeof(path), "%s/other", dir);
		out[R_OTHER] = try_open(path);
		snprintf(path, sizeof(path), "%s/sub/file", dir);
		out[R_SUBDIR] = try_open(path);
		snprintf(path, sizeof(path), "%s/new", work_dir);
		fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (fd >= 0)
			close(fd);
		out[R_WORK_NEW] = try_open(path);
		snprintf(path, sizeof(path), "%s/later", dir);
		out[R_LATER] = try_open(path);
		out[R_ETC] = try_open("/etc/passwd");
		snprintf(path, sizeof(path), "/proc/%d/environ", (int)parent);
		out[R_PARENT_ENV] = try_open(path);
		out[R_PARENT_SIG] = kill(parent, 0) < 0 ? errno : 0;
		e = write(p[1], out, sizeof(out)) == (ssize_t)sizeof(out) ? 0 : 4;
		_exit(e);
	}
	close(p[1]);
	if (pid < 0 || read(p[0], res, sizeof(int) * R_N) != (ssize_t)(sizeof(int) * R_N)) {
		close(p[0]);
		if (pid > 0)
			waitpid(pid, &st, 0);
		return -1;
	}
	close(p[0]);
	waitpid(pid, &st, 0);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static void touch(const char *name, mode_t mode)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	util_write_file(path, "x\n", 2, mode);
	chmod(path, mode);
}

int main(void)
{
	char token[256], work[256], sub[256];
	int res[R_N], abi;

	snprintf(dir, sizeof(dir), "/tmp/tasked-ll-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	snprintf(token, sizeof(token), "%s/token", dir);
	snprintf(work, sizeof(work), "%s/work", dir);
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	mkdir(work, 0700);
	mkdir(sub, 0700);
	touch("token", 0600);
	touch("other", 0600);
	touch("sub/file", 0600);
	/* The parent is what a task must not reach: make it readable by uid alone. */
	(void)prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);

	abi = ll_init(NULL, geteuid(), getegid());
	ok(abi > 0, "the kernel has Landlock (ABI %d)", abi);
	ok(!ll_hides_file(), "without a file to hide, nothing is hidden");
	ok(run_child(work, res) == 0, "a child enters a domain with nothing hidden");
	ok(res[R_TOKEN] == 0 && res[R_OTHER] == 0 && res[R_ETC] == 0,
	   "... and reads files as before");
	ok(res[R_PARENT_ENV] == EACCES || res[R_PARENT_ENV] == EPERM,
	   "... but not the /proc/PID/environ of a same-uid process outside its domain (%s)",
	   strerror(res[R_PARENT_ENV]));
	if (abi >= 6)
		ok(res[R_PARENT_SIG] == EPERM, "... nor signal it (ABI %d scopes signals)", abi);
	else
		ok(res[R_PARENT_SIG] == 0,
		   "... signals still reach it (ABI %d has no signal scope)", abi);

	/* The token is readable by our uid: it is hidden. */
	ok(ll_init(token, geteuid(), getegid()) == abi && ll_hides_file(),
	   "a token the tasks can read is hidden");
	touch("later", 0600); /* after set-up: not covered by any rule */
	ok(run_child(work, res) == 0, "a child enters the domain");
	for (int i = 0; i < R_N; i++) {
		int want = i == R_TOKEN || i == R_LATER ? EACCES : 0;
		if (i == R_PARENT_ENV || i == R_PARENT_SIG)
			continue;
		ok(res[i] == want, "%s: %s", what[i], want ? "refused" : "readable");
	}

	/* Other credentials, by mode: 0600 of another uid is unreadable, 0644 is readable. */
	ok(ll_init(token, 65534, 65534) == abi && !ll_hides_file(),
	   "a 0600 token of another uid is not hidden (the tasks' uid cannot read it)");
	chmod(token, 0644);
	ok(ll_init(token, 65534, 65534) == abi && ll_hides_file(),
	   "a 0644 token is hidden from another uid");
	{
		int fd = ll_ruleset(NULL, NULL);
		ok(fd >= 10, "rulesets are numbered 10 or more (%d)", fd);
		if (fd >= 0)
			close(fd);
	}

	/* More entries beside the token than rules allowed: not hidden, said why, domains kept. */
	for (int i = 0; i < 1100; i++) {
		char name[32];
		snprintf(name, sizeof(name), "many-%04d", i);
		touch(name, 0600);
	}
	chmod(token, 0600);
	ok(ll_init(token, geteuid(), getegid()) == abi && !ll_hides_file() &&
		   ll_hide_error() == -E2BIG,
	   "too many entries beside the token: not hidden, and ll_hide_error says why");
	{
		int fd = ll_ruleset(work, NULL);
		ok(fd >= 0, "... tasks still get a domain");
		if (fd >= 0)
			close(fd);
	}

	ll_free();
	ok(ll_ruleset(work, NULL) == -EOPNOTSUPP, "after ll_free no ruleset is made");
	{
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		(void)!system(cmd);
	}
	return done_testing();
}
