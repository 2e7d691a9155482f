/* The runner's own directory below --work-dir (runner/workroot.c): stale directories of runners
 * that are gone are removed at start, live ones (their lock held by another process) are not. */
#include "log.h"
#include "tap.h"
#include "util.h"
#include "workroot.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char root[64];

static void mk(const char *rel)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	mkdir(p, 0700);
}

static void put(const char *rel)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	util_write_file(p, "x", 1, 0600);
}

static int exists(const char *rel)
{
	char p[256];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	return lstat(p, &st) == 0;
}

static void age(const char *rel, int seconds)
{
	char p[256];
	struct timespec ts[2];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[0].tv_sec -= seconds;
	ts[1] = ts[0];
	utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW);
}

int main(void)
{
	char path[512], lock[600];
	int removed = -1, p[2], fd;
	pid_t holder;
	struct stat st;

	log_init("test", LOG_LVL_ERROR);
	snprintf(root, sizeof(root), "/tmp/tasked-wr-XXXXXX");
	if (!mkdtemp(root))
		return 1;
	/* A runner that died mid-task: its lock is free, a task's files are left. */
	mk("tasked-runner-dead01");
	put("tasked-runner-dead01/lock");
	mk("tasked-runner-dead01/tasked-abc123");
	mk("tasked-runner-dead01/tasked-abc123/deep");
	put("tasked-runner-dead01/tasked-abc123/deep/file");
	{
		char q[256];
		snprintf(q, sizeof(q), "%s/tasked-runner-dead01/tasked-abc123/deep", root);
		chmod(q, 0); /* a task made it unreadable */
	}
	/* A live runner: another process holds its lock. */
	mk("tasked-runner-live01");
	put("tasked-runner-live01/lock");
	mk("tasked-runner-live01/tasked-def456");
	if (pipe(p) < 0)
		return 1;
	holder = fork();
	if (holder == 0) {
		char l[256];
		snprintf(l, sizeof(l), "%s/tasked-runner-live01/lock", root);
		fd = open(l, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || flock(fd, LOCK_EX) < 0)
			_exit(1);
		(void)!write(p[1], "k", 1);
		pause();
		_exit(0);
	}
	{
		char c;
		(void)!read(p[0], &c, 1);
	}
	/* Set-ups interrupted before the rename: a fresh one is left alone, an old one removed. */
	mk(".tasked-runner-fresh1");
	mk(".tasked-runner-old001");
	age(".tasked-runner-old001", 300);
	/* Not a runner directory. */
	mk("tasked-abcdef");
	mk("other");

	ok(wr_open(root, path, sizeof(path), &removed) == 0,
	   "wr_open makes the runner's directory");
	ok(removed == 2, "two stale directories were removed (%d)", removed);
	ok(!exists("tasked-runner-dead01"),
	   "a dead runner's directory is gone, unreadable subdirs and all");
	ok(exists("tasked-runner-live01/tasked-def456"), "a live runner's directory is kept");
	ok(exists(".tasked-runner-fresh1"), "a runner still setting up is left alone");
	ok(!exists(".tasked-runner-old001"), "a set-up interrupted long ago is removed");
	ok(exists("tasked-abcdef") && exists("other"), "other entries are not touched");
	ok(strncmp(path, root, strlen(root)) == 0 && strstr(path, "/tasked-runner-") != NULL,
	   "the directory is WORK/tasked-runner-XXXXXX (%s)", path);
	ok(stat(path, &st) == 0 && (st.st_mode & 07777) == 0711,
	   "mode 0711 (tasks reach their own dirs, list nothing)");
	snprintf(lock, sizeof(lock), "%s/lock", path);
	fd = open(lock, O_RDONLY | O_CLOEXEC);
	ok(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK, "its lock is held");
	if (fd >= 0)
		close(fd);

	/* A second runner sharing the work dir keeps the first one's directory. */
	{
		pid_t second = fork();
		int st2 = 0;
		if (second == 0) {
			char p2[512];
			int rm = -1;
			/* Its own state overwrites the inherited copy; the parent's lock stays with
			 * the parent's open file (flock locks belong to an open file, not a process). */
			_exit(wr_open(root, p2, sizeof(p2), &rm) == 0 && rm == 0 ? 0 : 1);
		}
		waitpid(second, &st2, 0);
		ok(WIFEXITED(st2) && WEXITSTATUS(st2) == 0,
		   "a second runner removes nothing that is in use");
	}
	ok(stat(path, &st) == 0, "... and the first runner's directory is still there");

	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	wr_close();
	ok(stat(path, &st) < 0 && errno == ENOENT, "wr_close removes the directory");
	{
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
		(void)!system(cmd);
	}
	return done_testing();
}
