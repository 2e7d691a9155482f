#include "workroot.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WR_PREFIX "tasked-runner-"
#define WR_HIDDEN ".tasked-runner-" /* being set up: not yet locked */
#define WR_LOCK "lock"
#define WR_HIDDEN_STALE_S 60 /* a hidden one this old was left by a crash in set-up */
#define WR_MAX_SCAN 4096     /* entries looked at in --work-dir */

static int wr_lock_fd = -1;
static char wr_path[PATH_MAX];

/* Removes the runner directory `name` below rootfd if its lock is free. 1 removed, 0 in use
 * (or not ours to judge), negative errno on failure. */
static int wr_reap(int rootfd, const char *name)
{
	int dfd, lfd, r;

	dfd = openat(rootfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return errno == ENOENT ? 0 : -errno;
	lfd = openat(dfd, WR_LOCK, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (lfd < 0 && errno != ENOENT) {
		close(dfd);
		return 0; /* another uid's: its runner (or one of its uid) cleans it */
	}
	if (lfd >= 0 && flock(lfd, LOCK_EX | LOCK_NB) < 0) {
		close(lfd);
		close(dfd);
		return 0; /* held: that runner is alive */
	}
	/* Free, or never locked (a hidden one old enough): its runner is gone. Keep holding the
	 * lock while removing, so two starting runners do not both work on it. */
	r = util_rm_contents(dfd);
	close(dfd);
	if (unlinkat(rootfd, name, AT_REMOVEDIR) < 0 && r == 0)
		r = -errno;
	if (lfd >= 0)
		close(lfd);
	return r < 0 ? r : 1;
}

static int wr_sweep(int rootfd, int *removed)
{
	int lfd = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), n = 0;
	DIR *d;
	struct dirent *e;
	time_t now = time(NULL);

	if (lfd < 0)
		return -errno;
	d = fdopendir(lfd);
	if (!d) {
		close(lfd);
		return -errno;
	}
	while (n++ < WR_MAX_SCAN && (e = readdir(d))) {
		struct stat st;
		int r;
		if (strncmp(e->d_name, WR_HIDDEN, strlen(WR_HIDDEN)) == 0) {
			if (fstatat(rootfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISDIR(st.st_mode) || now - st.st_mtime < WR_HIDDEN_STALE_S)
				continue;
		} else if (strncmp(e->d_name, WR_PREFIX, strlen(WR_PREFIX)) != 0) {
			continue;
		}
		r = wr_reap(rootfd, e->d_name);
		if (r > 0)
			(*removed)++;
		else if (r < 0)
			log_warn("could not remove a stale runner work dir", "name", e->d_name,
				 "error", strerror(-r));
	}
	closedir(d);
	return 0;
}

int wr_open(const char *work_dir, char *out, size_t outsz, int *removed)
{
	char tmpl[PATH_MAX], final[PATH_MAX];
	const char *base;
	int rootfd, dfd = -1, r;

	*removed = 0;
	rootfd = open(work_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return -errno;
	(void)wr_sweep(rootfd, removed);
	r = snprintf(tmpl, sizeof(tmpl), "%s/" WR_HIDDEN "XXXXXX", work_dir);
	if (r < 0 || (size_t)r >= sizeof(tmpl) - 64) {
		close(rootfd);
		return -ENAMETOOLONG;
	}
	if (!mkdtemp(tmpl)) {
		r = -errno;
		close(rootfd);
		return r;
	}
	base = strrchr(tmpl, '/') + 1;
	/* 0711: tasks (65532 under a root runner) reach their own dirs inside, list nothing. */
	dfd = openat(rootfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0 || fchmod(dfd, 0711) < 0)
		goto fail;
	wr_lock_fd = openat(dfd, WR_LOCK, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (wr_lock_fd < 0 || flock(wr_lock_fd, LOCK_EX | LOCK_NB) < 0)
		goto fail;
	snprintf(final, sizeof(final), "%s/" WR_PREFIX "%s", work_dir, base + strlen(WR_HIDDEN));
	if (renameat(rootfd, base, rootfd, strrchr(final, '/') + 1) < 0)
		goto fail;
	close(dfd);
	close(rootfd);
	if (strlen(final) >= outsz) {
		wr_close();
		return -ENAMETOOLONG;
	}
	snprintf(wr_path, sizeof(wr_path), "%s", final);
	snprintf(out, outsz, "%s", final);
	return 0;
fail:
	r = -errno;
	if (wr_lock_fd >= 0)
		close(wr_lock_fd);
	wr_lock_fd = -1;
	if (dfd >= 0) {
		(void)util_rm_contents(dfd);
		close(dfd);
	}
	(void)unlinkat(rootfd, base, AT_REMOVEDIR);
	close(rootfd);
	return r < 0 ? r : -EIO;
}

void wr_close(void)
{
	if (wr_path[0]) {
		int dfd = open(wr_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (dfd >= 0) {
			(void)util_rm_contents(dfd);
			close(dfd);
		}
		(void)rmdir(wr_path);
		wr_path[0] = '\0';
	}
	if (wr_lock_fd >= 0)
		close(wr_lock_fd);
	wr_lock_fd = -1;
}
