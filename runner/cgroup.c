/* A memory cgroup per shell task (cgroup.h). */
#include "cgroup.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CG_V1_MEMORY "/sys/fs/cgroup/memory"
#define CG_RMDIR_TRIES 50 /* × 10 ms: the last exiting process leaves the cgroup asynchronously */

static char cg_root[PATH_MAX]; /* .../tasked-runner-PID; empty: not in use */

static int cg_write(const char *dir, const char *file, const char *val)
{
	char path[PATH_MAX + 64];
	int fd, r = 0;
	size_t len = strlen(val);

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, val, len) != (ssize_t)len)
		r = -errno;
	close(fd);
	return r;
}

/* The runner's v1 memory cgroup, from /proc/self/cgroup ("N:a,memory,b:/path"). */
static int cg_own_dir(char *out, size_t outsz)
{
	char *data = NULL, *save = NULL;
	size_t len = 0;
	int r = util_read_file("/proc/self/cgroup", 64 * 1024, &data, &len), found = -ENOENT;

	if (r < 0)
		return r;
	for (char *line = strtok_r(data, "\n", &save); line && found < 0; line = strtok_r(NULL, "\n", &save)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL, *ctl, *save2 = NULL;
		if (!c2)
			continue;
		*c2 = '\0';
		for (ctl = strtok_r(c1 + 1, ",", &save2); ctl; ctl = strtok_r(NULL, ",", &save2))
			if (strcmp(ctl, "memory") == 0)
				break;
		if (!ctl)
			continue;
		found = (size_t)snprintf(out, outsz, "%s%s", CG_V1_MEMORY, strcmp(c2 + 1, "/") == 0 ? "" : c2 + 1) <
				outsz ? 0 : -ENAMETOOLONG;
	}
	free(data);
	return found;
}

/* Directories of runners that are gone (SIGKILL leaves them): their task cgroups, then them. */
static void cg_remove_stale(const char *own)
{
	DIR *d = opendir(own);
	struct dirent *e;

	while (d && (e = readdir(d))) {
		char sub[PATH_MAX];
		long pid;
		DIR *k;
		struct dirent *ke;
		if (strncmp(e->d_name, "tasked-runner-", 14) != 0 || util_parse_long(e->d_name + 14, 1, INT32_MAX, &pid) < 0 ||
		    kill((pid_t)pid, 0) == 0 || errno != ESRCH ||
		    (size_t)snprintf(sub, sizeof(sub), "%s/%s", own, e->d_name) >= sizeof(sub) - NAME_MAX - 2)
			continue;
		k = opendir(sub);
		while (k && (ke = readdir(k))) {
			char task[PATH_MAX];
			if (ke->d_type == DT_DIR && ke->d_name[0] != '.' &&
			    (size_t)snprintf(task, sizeof(task), "%s/%s", sub, ke->d_name) < sizeof(task))
				(void)rmdir(task);
		}
		if (k)
			closedir(k);
		(void)rmdir(sub);
	}
	if (d)
		closedir(d);
}

int cg_init(void)
{
	char own[PATH_MAX], probe[PATH_MAX + 64];
	struct stat st;

	if (cg_root[0])
		return 1;
	if (cg_own_dir(own, sizeof(own)) < 0 || snprintf(probe, sizeof(probe), "%s/memory.limit_in_bytes", own) < 0 ||
	    stat(probe, &st) < 0)
		goto none;
	cg_remove_stale(own);
	if ((size_t)snprintf(cg_root, sizeof(cg_root), "%s/tasked-runner-%d", own, (int)getpid()) >= sizeof(cg_root) ||
	    (mkdir(cg_root, 0755) < 0 && errno != EEXIST))
		goto none;
	log_info("each task gets a memory cgroup", "cgroup", cg_root);
	return 1;
none:
	cg_root[0] = '\0';
	log_info("no writable memory cgroup: task memory limits are per-process rlimits (RLIMIT_DATA)");
	return 0;
}

int cg_available(void)
{
	return cg_root[0] != '\0';
}

void cg_cleanup(void)
{
	if (cg_root[0])
		(void)rmdir(cg_root);
}

int cg_task_create(struct cg_task *c, const char *name, int64_t memory_bytes)
{
	char val[32], path[PATH_MAX + 64];
	int r;

	memset(c, 0, sizeof(*c));
	c->procs_fd = -1;
	if (!cg_root[0] || memory_bytes <= 0)
		return -EOPNOTSUPP;
	if ((size_t)snprintf(c->dir, sizeof(c->dir), "%s/%s", cg_root, name) >= sizeof(c->dir)) {
		c->dir[0] = '\0';
		return -ENAMETOOLONG;
	}
	/* the runner's directory again, should something have removed it while it was empty */
	if ((mkdir(cg_root, 0755) < 0 && errno != EEXIST) || mkdir(c->dir, 0755) < 0) {
		r = -errno;
		c->dir[0] = '\0';
		return r;
	}
	snprintf(val, sizeof(val), "%lld", (long long)memory_bytes);
	/* memory first: memsw may never be below it */
	if ((r = cg_write(c->dir, "memory.limit_in_bytes", val)) < 0)
		goto fail;
	r = cg_write(c->dir, "memory.memsw.limit_in_bytes", val);
	if (r < 0 && r != -ENOENT) /* no swap accounting: nothing to extend the limit with */
		goto fail;
	snprintf(path, sizeof(path), "%s/cgroup.procs", c->dir);
	c->procs_fd = open(path, O_WRONLY | O_CLOEXEC);
	if (c->procs_fd < 0) {
		r = -errno;
		goto fail;
	}
	c->limit = memory_bytes;
	return 0;
fail:
	(void)rmdir(c->dir);
	c->dir[0] = '\0';
	return r;
}

int cg_task_join(const struct cg_task *c)
{
	if (c->procs_fd < 0)
		return 0;
	/* "0": the writing process */
	return write(c->procs_fd, "0", 1) == 1 ? 0 : -errno;
}

static int64_t cg_read_key(const char *dir, const char *file, const char *key)
{
	char path[PATH_MAX + 64], *data = NULL, *p;
	size_t len = 0, kl = strlen(key);
	int64_t v = -1;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if (util_read_file(path, 64 * 1024, &data, &len) < 0)
		return -1;
	for (p = data; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if ((kl == 0 || (strncmp(p, key, kl) == 0 && p[kl] == ' '))) {
			v = strtoll(p + (kl ? kl + 1 : 0), NULL, 10);
			break;
		}
	free(data);
	return v;
}

int64_t cg_task_oom_kills(const struct cg_task *c, int64_t *max_usage)
{
	int64_t n;

	if (max_usage)
		*max_usage = 0;
	if (!c->dir[0])
		return 0;
	n = cg_read_key(c->dir, "memory.oom_control", "oom_kill");
	if (max_usage)
		*max_usage = cg_read_key(c->dir, "memory.max_usage_in_bytes", "");
	return n > 0 ? n : 0;
}

void cg_task_remove(struct cg_task *c)
{
	struct timespec ms10 = { 0, 10 * 1000000L };

	if (c->procs_fd >= 0)
		close(c->procs_fd);
	c->procs_fd = -1;
	if (!c->dir[0])
		return;
	for (int i = 0; i < CG_RMDIR_TRIES; i++) {
		if (rmdir(c->dir) == 0 || errno == ENOENT)
			break;
		if (errno != EBUSY || i == CG_RMDIR_TRIES - 1) {
			log_warn("could not remove a task's cgroup", "cgroup", c->dir, "error", strerrordesc_np(errno) ? strerrordesc_np(errno) : "?");
			break;
		}
		nanosleep(&ms10, NULL);
	}
	c->dir[0] = '\0';
}
