#include "landlock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/landlock.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define LL_MAX_RULES 1024           /* directory entries granted around the hidden file */
#define LL_MAX_DEPTH 64             /* components of the hidden file's real path */
#define LL_FD_MIN 10                /* rulesets live above the fds a task child rearranges */
#define LL_SCOPE_SIGNAL (1ULL << 1) /* LANDLOCK_SCOPE_SIGNAL (ABI 6), newer than some headers */

/* The ruleset attribute as of ABI 6; older kernels get a prefix of it (the size says which). */
struct ll_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net;
	uint64_t scoped;
};

static int ll_abi_v;
static int ll_fds[LL_MAX_RULES];
static size_t ll_nfds;
static int ll_hide;
static int ll_hide_err;

int ll_abi(void) { return ll_abi_v; }

int ll_hides_file(void) { return ll_hide; }

int ll_hide_error(void) { return ll_hide_err; }

void ll_free(void)
{
	for (size_t i = 0; i < ll_nfds; i++)
		close(ll_fds[i]);
	ll_nfds = 0;
	ll_hide = 0;
	ll_hide_err = 0;
	ll_abi_v = 0;
}

static int ll_add_fd(int fd)
{
	if (ll_nfds == LL_MAX_RULES) {
		close(fd);
		return -E2BIG;
	}
	ll_fds[ll_nfds++] = fd;
	return 0;
}

/* Would credentials uid/gid (no supplementary groups) be allowed to read st by its mode? */
static int ll_mode_readable(const struct stat *st, uid_t uid, gid_t gid)
{
	if (uid == 0)
		return 1;
	if (st->st_uid == uid)
		return !!(st->st_mode & S_IRUSR);
	if (st->st_gid == gid)
		return !!(st->st_mode & S_IRGRP);
	return !!(st->st_mode & S_IROTH);
}

/* Grants every entry of the directory dfd except `skip` (symlinks are left out: what they
 * point to is granted, or not, where it lives). */
static int ll_grant_siblings(int dfd, const char *skip)
{
	DIR *d;
	struct dirent *e;
	int lfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

	if (lfd < 0)
		return -errno;
	d = fdopendir(lfd);
	if (!d) {
		r = -errno;
		close(lfd);
		return r;
	}
	while (r == 0 && (errno = 0, e = readdir(d))) {
		struct stat st;
		int fd;
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
		    strcmp(e->d_name, skip) == 0)
			continue;
		fd = openat(dfd, e->d_name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue; /* gone meanwhile, or not ours to see: nothing to grant */
		if (fstat(fd, &st) < 0 || S_ISLNK(st.st_mode)) {
			close(fd);
			continue;
		}
		r = ll_add_fd(fd);
	}
	if (r == 0 && errno)
		r = -errno;
	closedir(d);
	return r;
}

/* Opens, for the rules, every directory entry beside the real path of file, level by level. */
static int ll_prepare_hide(const char *file)
{
	char real[PATH_MAX], *comp[LL_MAX_DEPTH], *save = NULL;
	size_t n = 0;
	int dfd, r = 0;

	if (!realpath(file, real))
		return -errno;
	for (char *p = strtok_r(real, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
		if (n == LL_MAX_DEPTH)
			return -ENAMETOOLONG;
		comp[n++] = p;
	}
	if (n == 0)
		return -EISDIR;
	dfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	for (size_t i = 0; i < n && r == 0; i++) {
		r = ll_grant_siblings(dfd, comp[i]);
		if (r == 0 && i + 1 < n) {
			int next = openat(dfd, comp[i],
					  O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (next < 0)
				r = -errno;
			close(dfd);
			dfd = next;
		}
	}
	if (dfd >= 0)
		close(dfd);
	return r;
}

int ll_init(const char *deny_file, uid_t task_uid, gid_t task_gid)
{
	long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	struct stat st;
	int r, fd;

	ll_free();
	/* ENOSYS: too old; EOPNOTSUPP: not enabled; EPERM: a container's seccomp profile. */
	if (v <= 0)
		return 0;
	ll_abi_v = (int)v;
	/* Tasks with the runner's credentials read what the runner can (supplementary groups
	 * included); dropped ones have only 65532:65532. */
	if (deny_file && stat(deny_file, &st) == 0 &&
	    (task_uid == geteuid() ? faccessat(AT_FDCWD, deny_file, R_OK, AT_EACCESS) == 0
				   : ll_mode_readable(&st, task_uid, task_gid))) {
		r = ll_prepare_hide(deny_file);
		if (r == 0) {
			ll_hide = 1;
			return ll_abi_v;
		}
		/* Too many entries on the way, or a path gone meanwhile: the domains still keep
		 * tasks apart; only the token stays readable (the caller says so). */
		ll_free();
		ll_abi_v = (int)v;
		ll_hide_err = r;
	}
	fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return ll_add_fd(fd) < 0 ? -E2BIG : ll_abi_v;
}

int ll_ruleset(const char *work_dir, const char *tmp_dir)
{
	struct ll_attr attr = { .handled_access_fs = LANDLOCK_ACCESS_FS_READ_FILE };
	size_t size = sizeof(attr.handled_access_fs);
	int rs, r = 0;

	if (ll_abi_v <= 0 || ll_nfds == 0)
		return -EOPNOTSUPP;
	if (ll_abi_v >= 6) {
		attr.scoped = LL_SCOPE_SIGNAL;
		size = sizeof(attr);
	}
	rs = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0U);
	if (rs < 0)
		return -errno;
	for (size_t i = 0; i < ll_nfds + 2 && r == 0; i++) {
		struct landlock_path_beneath_attr pb = {
			.allowed_access = LANDLOCK_ACCESS_FS_READ_FILE
		};
		int own = -1;
		if (i < ll_nfds) {
			pb.parent_fd = ll_fds[i];
		} else if ((i == ll_nfds ? work_dir : tmp_dir) && ll_hide) {
			/* the private /tmp too: bound on /tmp, the path to it no longer passes W */
			own = open(i == ll_nfds ? work_dir : tmp_dir,
				   O_PATH | O_DIRECTORY | O_CLOEXEC);
			if (own < 0) {
				r = -errno;
				break;
			}
			pb.parent_fd = own;
		} else {
			continue;
		}
		if (syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0U) < 0)
			r = -errno;
		if (own >= 0)
			close(own);
	}
	if (r == 0 && rs < LL_FD_MIN) {
		int hi = fcntl(rs, F_DUPFD_CLOEXEC, LL_FD_MIN);
		if (hi < 0)
			r = -errno;
		close(rs);
		rs = hi;
	}
	if (r < 0) {
		if (rs >= 0)
			close(rs);
		return r;
	}
	return rs;
}
