/* A private /tmp, /dev/shm and System V IPC per shell task, or cleanup after tasks (isolate.h). */
#include "isolate.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mount.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define ISO_TASK_UID 65532     /* the dedicated task uid (exec.h's EXEC_TASK_UID) */
#define ISO_PROC_MAX (1 << 20) /* bytes of a /proc/sysvipc file read */
#define ISO_MAX_PROTECT 4

enum { ISO_SHM, ISO_SEM, ISO_MSG, ISO_NIPC };
static const char *const iso_ipc_files[ISO_NIPC] = { "/proc/sysvipc/shm", "/proc/sysvipc/sem",
						     "/proc/sysvipc/msg" };
/* Columns (from 0) of the id, the owner's and the creator's uid in each file. */
static const int iso_ipc_cols[ISO_NIPC][3] = { { 1, 7, 9 }, { 1, 4, 6 }, { 1, 7, 9 } };
static const char *const iso_dirs[2] = { "/dev/shm", "/tmp" };

struct iso_snapshot {
	int *ids[ISO_NIPC];
	size_t nids[ISO_NIPC];
	char **names[2];
	size_t nnames[2];
	int full; /* something did not fit: no cleanup this time */
};

static pthread_mutex_t iso_lock = PTHREAD_MUTEX_INITIALIZER;
static int iso_ns = -1;
static uid_t iso_uid;
static int iso_running;
static struct iso_snapshot iso_snap;
static struct iso_stats iso_last;
static char iso_protected[ISO_MAX_PROTECT][NAME_MAX + 1];
static size_t iso_nprotected;

/* ---- namespaces -------------------------------------------------------------------------- */

/* The child of the probe: everything a task's init will do, on throwaway namespaces. */
static __attribute__((noreturn)) void iso_probe_child(void)
{
	if (unshare(CLONE_NEWNS | CLONE_NEWIPC) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("/tmp", "/tmp", NULL, MS_BIND, NULL) < 0 ||
	    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=4k") < 0)
		_exit(1);
	_exit(0);
}

int iso_init(uid_t task_uid)
{
	int st = 0;
	pid_t pid;

	iso_uid = task_uid;
	if (iso_ns >= 0)
		return iso_ns;
	iso_ns = 0;
	pid = fork();
	if (pid == 0)
		iso_probe_child();
	if (pid > 0) {
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		iso_ns = WIFEXITED(st) && WEXITSTATUS(st) == 0;
	}
	if (iso_ns)
		log_info("each task gets private /tmp, /dev/shm and IPC namespaces");
	else
		log_info(
			"no mount/IPC namespaces for tasks: they get TMPDIR in their work dir, and what they "
			"leave in /tmp, /dev/shm and System V IPC is removed whenever the runner is idle",
			"cleanup",
			task_uid == ISO_TASK_UID ? "on" : "off (tasks do not run as 65532)");
	return iso_ns;
}

int iso_namespaces(void) { return iso_ns > 0; }

void iso_force_namespaces(int on) { iso_ns = on ? 1 : 0; }

void iso_protect(const char *path)
{
	const char *slash = path ? strrchr(path, '/') : NULL;
	const char *base = slash ? slash + 1 : path;

	if (!base || !*base || strlen(base) > NAME_MAX || iso_nprotected == ISO_MAX_PROTECT)
		return;
	memcpy(iso_protected[iso_nprotected++], base, strlen(base) + 1);
}

void iso_set_shm(struct iso_task *it, int64_t shm_bytes)
{
	if (it->ns)
		snprintf(it->shm_opts, sizeof(it->shm_opts), "mode=1777,size=%lld",
			 (long long)(shm_bytes > 0 ? shm_bytes : ISO_SHM_DEFAULT));
}

int iso_prepare(struct iso_task *it, int dirfd, const char *work_path, int64_t shm_bytes, char *err,
		size_t errsz)
{
	char tmp_real[PATH_MAX];
	size_t tl;
	int cur, r = 0;

	memset(it, 0, sizeof(*it));
	if (mkdirat(dirfd, ISO_TMP_NAME, 0700) < 0 || fchmodat(dirfd, ISO_TMP_NAME, 01777, 0) < 0) {
		r = -errno;
		snprintf(err, errsz, "work dir: %s: %s", ISO_TMP_NAME, strerrordesc_np(-r));
		return r;
	}
	if (!realpath(work_path, it->work) ||
	    (size_t)snprintf(it->tmp, sizeof(it->tmp), "%s/%s", it->work, ISO_TMP_NAME) >=
		    sizeof(it->tmp)) {
		r = errno ? -errno : -ENAMETOOLONG;
		snprintf(err, errsz, "work dir: %s", strerrordesc_np(-r));
		return r;
	}
	if (!iso_namespaces())
		return 0;
	it->ns = 1;
	iso_set_shm(it, shm_bytes);
	/* W below /tmp disappears under the new /tmp: its path is made again inside the private
	 * tmp (root-owned directories) and W is bound there. */
	if (!realpath("/tmp", tmp_real))
		return 0;
	tl = strlen(tmp_real);
	if (strncmp(it->work, tmp_real, tl) != 0 || it->work[tl] != '/')
		return 0;
	it->rebind = 1;
	cur = openat(dirfd, ISO_TMP_NAME, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	for (const char *p = it->work + tl + 1; cur >= 0 && *p;) {
		char comp[NAME_MAX + 1];
		size_t len = strcspn(p, "/");
		int next;
		if (len > NAME_MAX) {
			errno = ENAMETOOLONG;
			close(cur);
			cur = -1;
			break;
		}
		memcpy(comp, p, len);
		comp[len] = '\0';
		p += len + (p[len] == '/');
		if (mkdirat(cur, comp, 0755) < 0 && errno != EEXIST) {
			close(cur);
			cur = -1;
			break;
		}
		next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(cur);
		cur = next;
	}
	if (cur < 0) {
		r = -errno;
		snprintf(err, errsz, "work dir: private /tmp: %s", strerrordesc_np(-r));
		return r;
	}
	close(cur);
	return 0;
}

/* iso_enter() is in child.c: it runs after fork. */

/* ---- cleanup without namespaces -------------------------------------------------------- */

/* Splits a line into at most n whitespace-separated fields (in place). */
static size_t iso_fields(char *line, char **f, size_t n)
{
	size_t k = 0;
	char *save = NULL;
	for (char *t = strtok_r(line, " \t", &save); t && k < n; t = strtok_r(NULL, " \t", &save))
		f[k++] = t;
	return k;
}

/* Calls fn(id, owner, creator) for every object listed in a /proc/sysvipc file. */
static int iso_ipc_each(int kind, void (*fn)(int kind, long id, long uid, long cuid, void *ud),
			void *ud)
{
	char *data = NULL, *save = NULL;
	size_t len = 0;
	int r = util_read_file(iso_ipc_files[kind], ISO_PROC_MAX, &data, &len);

	if (r < 0)
		return r == -ENOENT ? 0 : r;
	for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *f[12], *end;
		long v[3];
		int okv = 1;
		if (iso_fields(line, f, 12) < 10)
			continue;
		for (int c = 0; c < 3; c++) {
			errno = 0;
			v[c] = strtol(f[iso_ipc_cols[kind][c]], &end, 10);
			okv &= errno == 0 && *end == '\0' && end != f[iso_ipc_cols[kind][c]];
		}
		if (okv)
			fn(kind, v[0], v[1], v[2], ud);
	}
	free(data);
	return 0;
}

static void iso_snap_ipc(int kind, long id, long uid, long cuid, void *ud)
{
	struct iso_snapshot *s = ud;
	if (s->nids[kind] == ISO_MAX_SNAPSHOT) {
		s->full = 1;
		return;
	}
	s->ids[kind][s->nids[kind]++] = (int)id;
}

static void iso_snapshot_free(struct iso_snapshot *s)
{
	for (int k = 0; k < ISO_NIPC; k++)
		free(s->ids[k]);
	for (int d = 0; d < 2; d++) {
		for (size_t i = 0; i < s->nnames[d]; i++)
			free(s->names[d][i]);
		free(s->names[d]);
	}
	memset(s, 0, sizeof(*s));
}

static void iso_snapshot_take(struct iso_snapshot *s)
{
	memset(s, 0, sizeof(*s));
	for (int k = 0; k < ISO_NIPC; k++) {
		s->ids[k] = calloc(ISO_MAX_SNAPSHOT, sizeof(int));
		if (!s->ids[k] || iso_ipc_each(k, iso_snap_ipc, s) < 0)
			s->full = 1;
	}
	for (int d = 0; d < 2; d++) {
		DIR *dir = opendir(iso_dirs[d]);
		struct dirent *de;
		s->names[d] = calloc(ISO_MAX_SNAPSHOT, sizeof(char *));
		if (!s->names[d]) {
			s->full = 1;
			if (dir)
				closedir(dir);
			continue;
		}
		while (dir && (de = readdir(dir))) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if (s->nnames[d] == ISO_MAX_SNAPSHOT ||
			    !(s->names[d][s->nnames[d]] = strdup(de->d_name))) {
				s->full = 1;
				break;
			}
			s->nnames[d]++;
		}
		if (dir)
			closedir(dir);
	}
}

static void iso_clean_ipc(int kind, long id, long uid, long cuid, void *ud)
{
	struct iso_snapshot *s = ud;
	int r;

	if (uid != (long)iso_uid && cuid != (long)iso_uid)
		return;
	for (size_t i = 0; i < s->nids[kind]; i++)
		if (s->ids[kind][i] == (int)id)
			return;
	r = kind == ISO_SHM   ? shmctl((int)id, IPC_RMID, NULL)
	    : kind == ISO_SEM ? semctl((int)id, 0, IPC_RMID)
			      : msgctl((int)id, IPC_RMID, NULL);
	if (r == 0) {
		if (kind == ISO_SHM)
			iso_last.shm++;
		else if (kind == ISO_SEM)
			iso_last.sem++;
		else
			iso_last.msg++;
	}
}

static int iso_kept(const struct iso_snapshot *s, int d, const char *name)
{
	for (size_t i = 0; i < s->nnames[d]; i++)
		if (strcmp(s->names[d][i], name) == 0)
			return 1;
	if (strncmp(name, "tasked-runner-", 14) == 0 || strncmp(name, ".tasked-runner-", 15) == 0)
		return 1; /* work roots of runners (workroot.c): locked while in use */
	for (size_t i = 0; i < iso_nprotected; i++)
		if (strncmp(name, iso_protected[i], strlen(iso_protected[i])) == 0)
			return 1;
	return 0;
}

/* Top-level entries of dir owned by the tasks' uid and new since the snapshot. */
static void iso_clean_dir(struct iso_snapshot *s, int d)
{
	int dfd = open(iso_dirs[d], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = dfd < 0 ? NULL : fdopendir(dfd);
	struct dirent *de;
	char(*victims)[NAME_MAX + 1] = NULL;
	size_t nv = 0;

	if (!dir) {
		if (dfd >= 0)
			close(dfd);
		return;
	}
	victims = calloc(ISO_MAX_SNAPSHOT, sizeof(*victims));
	while (victims && nv < ISO_MAX_SNAPSHOT && (de = readdir(dir))) {
		struct stat st;
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    iso_kept(s, d, de->d_name) ||
		    fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_uid != iso_uid)
			continue;
		memcpy(victims[nv++], de->d_name, strlen(de->d_name) + 1);
	}
	for (size_t i = 0; i < nv; i++) {
		int sub = openat(dfd, victims[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0) {
			(void)util_rm_contents(sub);
			close(sub);
		}
		if (unlinkat(dfd, victims[i], sub >= 0 ? AT_REMOVEDIR : 0) == 0) {
			if (d == 0)
				iso_last.devshm++;
			else
				iso_last.tmp++;
		}
	}
	free(victims);
	closedir(dir);
}

void iso_begin(void)
{
	if (iso_namespaces())
		return;
	pthread_mutex_lock(&iso_lock);
	if (iso_running++ == 0 && iso_uid == ISO_TASK_UID)
		iso_snapshot_take(&iso_snap);
	pthread_mutex_unlock(&iso_lock);
}

void iso_end(void)
{
	int cleaned = 0, full = 0;

	if (iso_namespaces())
		return;
	pthread_mutex_lock(&iso_lock);
	if (iso_running > 0 && --iso_running == 0 && iso_uid == ISO_TASK_UID) {
		if (!iso_snap.full) {
			unsigned long runs = iso_last.runs;
			memset(&iso_last, 0, sizeof(iso_last));
			iso_last.runs = runs + 1;
			for (int k = 0; k < ISO_NIPC; k++)
				(void)iso_ipc_each(k, iso_clean_ipc, &iso_snap);
			iso_clean_dir(&iso_snap, 0);
			iso_clean_dir(&iso_snap, 1);
			cleaned = iso_last.shm + iso_last.sem + iso_last.msg + iso_last.devshm +
					  iso_last.tmp >
				  0;
		} else {
			full = 1;
		}
		iso_snapshot_free(&iso_snap);
	}
	pthread_mutex_unlock(&iso_lock);
	if (cleaned)
		log_info("removed what tasks left behind", "where", "System V IPC, /dev/shm, /tmp");
	if (full)
		log_warn(
			"too many entries in /tmp, /dev/shm or System V IPC to tell what tasks left: no cleanup "
			"this time");
}

void iso_stats(struct iso_stats *out)
{
	pthread_mutex_lock(&iso_lock);
	*out = iso_last;
	pthread_mutex_unlock(&iso_lock);
}
