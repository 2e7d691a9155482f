/* Memory and cpuacct cgroups per shell task (cgroup.h). */
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

#define CG_RMDIR_TRIES 50 /* × 10 ms: the last exiting process leaves the cgroup asynchronously */

enum { CG_MEM, CG_CPU, CG_N };
static const struct {
	const char *ctl, *mount, *probe;
} cg_ctl[CG_N] = {
	{ "memory", "/sys/fs/cgroup/memory", "memory.limit_in_bytes" },
	{ "cpuacct", "/sys/fs/cgroup/cpuacct", "cpuacct.usage" },
};
static char cg_root[CG_N][PATH_MAX]; /* .../tasked-runner-PID; empty: not in use */

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

/* The runner's v1 cgroup of a controller, from /proc/self/cgroup ("N:a,ctl,b:/path"). */
static int cg_own_dir(int k, char *out, size_t outsz)
{
	char *data = NULL, *save = NULL;
	size_t len = 0;
	int r = util_read_file("/proc/self/cgroup", 64 * 1024, &data, &len), found = -ENOENT;

	if (r < 0)
		return r;
	for (char *line = strtok_r(data, "\n", &save); line && found < 0;
	     line = strtok_r(NULL, "\n", &save)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL, *ctl,
		     *save2 = NULL;
		if (!c2)
			continue;
		*c2 = '\0';
		for (ctl = strtok_r(c1 + 1, ",", &save2); ctl; ctl = strtok_r(NULL, ",", &save2))
			if (strcmp(ctl, cg_ctl[k].ctl) == 0)
				break;
		if (!ctl)
			continue;
		found = (size_t)snprintf(out, outsz, "%s%s", cg_ctl[k].mount,
					 strcmp(c2 + 1, "/") == 0 ? "" : c2 + 1) < outsz
				? 0
				: -ENAMETOOLONG;
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
		if (strncmp(e->d_name, "tasked-runner-", 14) != 0 ||
		    util_parse_long(e->d_name + 14, 1, INT32_MAX, &pid) < 0 ||
		    kill((pid_t)pid, 0) == 0 || errno != ESRCH ||
		    (size_t)snprintf(sub, sizeof(sub), "%s/%s", own, e->d_name) >=
			    sizeof(sub) - NAME_MAX - 2)
			continue;
		k = opendir(sub);
		while (k && (ke = readdir(k))) {
			char task[PATH_MAX];
			if (ke->d_type == DT_DIR && ke->d_name[0] != '.' &&
			    (size_t)snprintf(task, sizeof(task), "%s/%s", sub, ke->d_name) <
				    sizeof(task))
				(void)rmdir(task);
		}
		if (k)
			closedir(k);
		(void)rmdir(sub);
	}
	if (d)
		closedir(d);
}

static int cg_init_one(int k)
{
	char own[PATH_MAX], probe[PATH_MAX + 64];
	struct stat st;

	if (cg_own_dir(k, own, sizeof(own)) < 0 ||
	    (size_t)snprintf(probe, sizeof(probe), "%s/%s", own, cg_ctl[k].probe) >=
		    sizeof(probe) ||
	    stat(probe, &st) < 0)
		return 0;
	cg_remove_stale(own);
	if ((size_t)snprintf(cg_root[k], sizeof(cg_root[k]), "%s/tasked-runner-%d", own,
			     (int)getpid()) >= sizeof(cg_root[k]) ||
	    (mkdir(cg_root[k], 0755) < 0 && errno != EEXIST)) {
		cg_root[k][0] = '\0';
		return 0;
	}
	return 1;
}

int cg_init(void)
{
	int mem, cpu;

	if (cg_root[CG_MEM][0] || cg_root[CG_CPU][0])
		return 1;
	mem = cg_init_one(CG_MEM);
	cpu = cg_init_one(CG_CPU);
	if (mem)
		log_info("each task gets a memory cgroup", "cgroup", cg_root[CG_MEM]);
	else
		log_info(
			"no writable memory cgroup: task memory limits are per-process rlimits (RLIMIT_DATA)");
	if (cpu)
		log_info("each task gets a cpuacct cgroup: its CPU seconds count all its processes",
			 "cgroup", cg_root[CG_CPU]);
	else
		log_info(
			"no writable cpuacct cgroup: task CPU seconds are per-process rlimits (RLIMIT_CPU)");
	return mem || cpu;
}

int cg_available(void) { return cg_root[CG_MEM][0] != '\0'; }

int cg_cpu_available(void) { return cg_root[CG_CPU][0] != '\0'; }

void cg_cleanup(void)
{
	for (int k = 0; k < CG_N; k++)
		if (cg_root[k][0])
			(void)rmdir(cg_root[k]);
}

/* mkdir root/name (the root again, should something have removed it while it was empty) and
 * open its cgroup.procs. */
static int cg_make(int k, const char *name, char *dir, size_t dirsz, int *fd)
{
	char path[PATH_MAX + 64];
	int r;

	if ((size_t)snprintf(dir, dirsz, "%s/%s", cg_root[k], name) >= dirsz) {
		dir[0] = '\0';
		return -ENAMETOOLONG;
	}
	if ((mkdir(cg_root[k], 0755) < 0 && errno != EEXIST) || mkdir(dir, 0755) < 0) {
		r = -errno;
		dir[0] = '\0';
		return r;
	}
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	*fd = open(path, O_WRONLY | O_CLOEXEC);
	if (*fd < 0) {
		r = -errno;
		(void)rmdir(dir);
		dir[0] = '\0';
		return r;
	}
	return 0;
}

static void cg_unmake(char *dir, int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
	if (dir[0])
		(void)rmdir(dir);
	dir[0] = '\0';
}

int cg_task_create(struct cg_task *c, const char *name, int64_t memory_bytes, int cpu)
{
	char val[32];
	int r = 0, e;

	if (memory_bytes > 0 && cg_root[CG_MEM][0]) {
		snprintf(val, sizeof(val), "%lld", (long long)memory_bytes);
		if ((e = cg_make(CG_MEM, name, c->mem_dir, sizeof(c->mem_dir), &c->mem_fd)) < 0) {
			r = e;
		} else if ((e = cg_write(c->mem_dir, "memory.limit_in_bytes", val)) < 0 ||
			   /* memory first: memsw may never be below it; no swap accounting: nothing
			    * to extend the limit with */
			   ((e = cg_write(c->mem_dir, "memory.memsw.limit_in_bytes", val)) < 0 &&
			    e != -ENOENT)) {
			cg_unmake(c->mem_dir, &c->mem_fd);
			r = e;
		} else {
			c->limit = memory_bytes;
		}
	}
	if (cpu && cg_root[CG_CPU][0] &&
	    (e = cg_make(CG_CPU, name, c->cpu_dir, sizeof(c->cpu_dir), &c->cpu_fd)) < 0 && r == 0)
		r = e;
	return r;
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

int64_t cg_task_cpu_ns(const struct cg_task *c)
{
	return c->cpu_dir[0] ? cg_read_key(c->cpu_dir, "cpuacct.usage", "") : -1;
}

int64_t cg_task_oom_kills(const struct cg_task *c, int64_t *max_usage)
{
	int64_t n;

	if (max_usage)
		*max_usage = 0;
	if (!c->mem_dir[0])
		return 0;
	n = cg_read_key(c->mem_dir, "memory.oom_control", "oom_kill");
	if (max_usage)
		*max_usage = cg_read_key(c->mem_dir, "memory.max_usage_in_bytes", "");
	return n > 0 ? n : 0;
}

static void cg_remove_dir(char *dir, int *fd)
{
	struct timespec ms10 = { 0, 10 * 1000000L };

	if (*fd >= 0)
		close(*fd);
	*fd = -1;
	if (!dir[0])
		return;
	for (int i = 0; i < CG_RMDIR_TRIES; i++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			break;
		if (errno != EBUSY || i == CG_RMDIR_TRIES - 1) {
			log_warn("could not remove a task's cgroup", "cgroup", dir, "error",
				 strerrordesc_np(errno) ? strerrordesc_np(errno) : "?");
			break;
		}
		nanosleep(&ms10, NULL);
	}
	dir[0] = '\0';
}

void cg_task_remove(struct cg_task *c)
{
	cg_remove_dir(c->mem_dir, &c->mem_fd);
	cg_remove_dir(c->cpu_dir, &c->cpu_fd);
}
