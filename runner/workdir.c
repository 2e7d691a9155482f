/* Per-attempt work dirs: made below the work root without following links, owned by the task's
 * uid, with $TASKED_INPUT written before the task exists; $TASKED_OUTPUT read back through the
 * dir's fd. */
#include "workdir.h"
#include "exec.h"
#include "log.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *wd_strerror(int err)
{
	const char *s = strerrordesc_np(err);
	return s ? s : "Unknown error";
}

/* The part of a work dir that does not depend on the task: the dir (0700, the runner's), its
 * private /tmp and, with namespaces, the directories the /tmp bind needs (isolate.h). */
static int wd_make_dir(struct wd *w, const char *root, char *err, size_t errsz)
{
	char tmpl[PATH_MAX];
	int n, r;
	const char *slash;

	w->rootfd = w->dirfd = -1;
	n = snprintf(tmpl, sizeof(tmpl), "%s/tasked-XXXXXX", root);
	if (n < 0 || (size_t)n >= sizeof(tmpl) - 64) {
		snprintf(err, errsz, "work dir: path too long");
		return -ENAMETOOLONG;
	}
	if (!mkdtemp(tmpl)) {
		r = -errno;
		snprintf(err, errsz, "work dir: mkdtemp in %s: %s", root, wd_strerror(-r));
		return r;
	}
	memcpy(w->path, tmpl, (size_t)n + 1);
	slash = strrchr(w->path, '/');
	snprintf(w->name, sizeof(w->name), "%s", slash + 1);
	w->rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	w->dirfd = w->rootfd < 0 ? -1
				 : openat(w->rootfd, w->name,
					  O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (w->dirfd < 0 || fchmod(w->dirfd, 0700) < 0) {
		r = -errno;
		snprintf(err, errsz, "work dir: %s", wd_strerror(-r));
		return r;
	}
	return iso_prepare(&w->iso, w->dirfd, w->path, 0, err, errsz);
}

/* ---- spare work dirs ------------------------------------------------------------------------ */

/* Made after an attempt (wd_spare_add), taken by the next one: mkdir on a disk file system is
 * tens of microseconds each, and a work dir below /tmp with namespaces takes four. A spare is
 * the runner's, mode 0700, until taken: no task can reach it before. */
#define WD_SPARE_MAX 8

struct wd_spare {
	char name[32];
	char *root, *work; /* work: the real path (isolate.h) */
	int ns, rebind;
};

static pthread_mutex_t wd_spare_lock = PTHREAD_MUTEX_INITIALIZER;
static struct wd_spare wd_spares[WD_SPARE_MAX];
static size_t wd_nspare;

static void wd_spare_free(struct wd_spare *s)
{
	free(s->root);
	free(s->work);
	memset(s, 0, sizeof(*s));
}

/* Fills w from a spare made below root, with fds open; 0 when there is none. */
static int wd_spare_take(struct wd *w, const char *root)
{
	struct wd_spare s = { .root = NULL };
	int found = 0;

	pthread_mutex_lock(&wd_spare_lock);
	for (size_t i = wd_nspare; i-- > 0 && !found;)
		if (strcmp(wd_spares[i].root, root) == 0) {
			s = wd_spares[i];
			wd_spares[i] = wd_spares[--wd_nspare];
			found = 1;
		}
	pthread_mutex_unlock(&wd_spare_lock);
	if (!found)
		return 0;
	memset(&w->iso, 0, sizeof(w->iso));
	snprintf(w->name, sizeof(w->name), "%s", s.name);
	found = s.ns == iso_namespaces() &&
		(size_t)snprintf(w->path, sizeof(w->path), "%s/%s", root, s.name) <
			sizeof(w->path) - 64 &&
		(size_t)snprintf(w->iso.work, sizeof(w->iso.work), "%s", s.work) <
			sizeof(w->iso.work) &&
		(size_t)snprintf(w->iso.tmp, sizeof(w->iso.tmp), "%s/%s", s.work, ISO_TMP_NAME) <
			sizeof(w->iso.tmp);
	w->iso.ns = s.ns;
	w->iso.rebind = s.rebind;
	w->rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	w->dirfd = w->rootfd < 0 ? -1
				 : openat(w->rootfd, w->name,
					  O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	wd_spare_free(&s);
	if (!found || w->dirfd < 0) {
		/* stale (namespaces switched, or gone): make a fresh one */
		wd_remove(w, "");
		w->rootfd = w->dirfd = -1;
		return 0;
	}
	return 1;
}

void wd_spare_add(const char *root)
{
	struct wd w;
	struct wd_spare s = { .root = NULL };
	char err[256];
	int keep;

	pthread_mutex_lock(&wd_spare_lock);
	keep = wd_nspare < WD_SPARE_MAX;
	pthread_mutex_unlock(&wd_spare_lock);
	if (!keep)
		return;
	if (wd_make_dir(&w, root, err, sizeof(err)) < 0) {
		wd_remove(&w, "");
		return;
	}
	snprintf(s.name, sizeof(s.name), "%s", w.name);
	s.root = strdup(root);
	s.work = strdup(w.iso.work);
	s.ns = w.iso.ns;
	s.rebind = w.iso.rebind;
	pthread_mutex_lock(&wd_spare_lock);
	keep = s.root && s.work && wd_nspare < WD_SPARE_MAX;
	if (keep)
		wd_spares[wd_nspare++] = s;
	pthread_mutex_unlock(&wd_spare_lock);
	if (keep) {
		close(w.dirfd);
		close(w.rootfd);
	} else {
		wd_spare_free(&s);
		wd_remove(&w, "");
	}
}

void wd_spare_clear(void)
{
	for (;;) {
		struct wd w = { .rootfd = -1, .dirfd = -1 };
		pthread_mutex_lock(&wd_spare_lock);
		if (wd_nspare == 0) {
			pthread_mutex_unlock(&wd_spare_lock);
			return;
		}
		{
			struct wd_spare *s = &wd_spares[--wd_nspare];
			snprintf(w.name, sizeof(w.name), "%s", s->name);
			snprintf(w.path, sizeof(w.path), "%s/%s", s->root, s->name);
			w.rootfd = open(s->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			w.dirfd = w.rootfd < 0
					  ? -1
					  : openat(w.rootfd, s->name,
						   O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			wd_spare_free(s);
		}
		pthread_mutex_unlock(&wd_spare_lock);
		wd_remove(&w, "");
	}
}

/* ---- one attempt's work dir ------------------------------------------------------------------ */

int wd_make(struct wd *w, const struct wd_spec *t, char *err, size_t errsz)
{
	int n, fd, r;

	if (!wd_spare_take(w, t->root) && (r = wd_make_dir(w, t->root, err, errsz)) < 0)
		return r;
	if (t->drop_uid && fchown(w->dirfd, EXEC_TASK_UID, EXEC_TASK_GID) < 0)
		goto fail;
	iso_set_shm(&w->iso, t->memory_bytes);
	snprintf(w->input, sizeof(w->input), "%s/%s", w->path, EXEC_INPUT_NAME);
	snprintf(w->output, sizeof(w->output), "%s/%s", w->path, EXEC_OUTPUT_NAME);

	/* $TASKED_INPUT, written before the task exists, owned by the task's uid. */
	fd = openat(w->dirfd, EXEC_INPUT_NAME, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    0600);
	if (fd < 0)
		goto fail;
	for (size_t off = 0, len = strlen(t->input); off < len;) {
		ssize_t k = write(fd, t->input + off, len - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = -errno;
			close(fd);
			errno = -r;
			goto fail;
		}
		off += (size_t)k;
	}
	if ((t->drop_uid && fchown(fd, EXEC_TASK_UID, EXEC_TASK_GID) < 0) || close(fd) < 0)
		goto fail;

	/* workingDir: created component by component below the work dir, never through a link. */
	n = snprintf(w->cwd, sizeof(w->cwd), "%s%s%s", w->path, t->working_dir ? "/" : "",
		     t->working_dir ? t->working_dir : "");
	if (n < 0 || (size_t)n >= sizeof(w->cwd)) {
		errno = ENAMETOOLONG;
		goto fail;
	}
	if (t->working_dir) {
		char comp[NAME_MAX + 1];
		int cur = fcntl(w->dirfd, F_DUPFD_CLOEXEC, 3);
		const char *p = t->working_dir;
		if (cur < 0)
			goto fail;
		while (*p) {
			size_t len = strcspn(p, "/");
			int next;
			if (len > NAME_MAX) {
				close(cur);
				errno = ENAMETOOLONG;
				goto fail;
			}
			memcpy(comp, p, len);
			comp[len] = '\0';
			p += len;
			while (*p == '/')
				p++;
			if (len == 0)
				continue;
			if (mkdirat(cur, comp, 0700) == 0) {
				if (t->drop_uid && fchownat(cur, comp, EXEC_TASK_UID, EXEC_TASK_GID,
							    AT_SYMLINK_NOFOLLOW) < 0) {
					close(cur);
					goto fail;
				}
			} else if (errno != EEXIST) {
				close(cur);
				goto fail;
			}
			next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			close(cur);
			if (next < 0)
				goto fail;
			cur = next;
		}
		close(cur);
	}
	return 0;
fail:
	r = -errno;
	snprintf(err, errsz, "work dir: %s", wd_strerror(-r));
	return r < 0 ? r : -EIO;
}

void wd_remove(struct wd *w, const char *task_uid)
{
	int r = 0;

	if (w->dirfd >= 0) {
		(void)fchmod(w->dirfd, 0700);
		r = util_rm_contents(w->dirfd);
		close(w->dirfd);
		w->dirfd = -1;
	}
	if (w->rootfd >= 0 && w->name[0]) {
		if (unlinkat(w->rootfd, w->name, AT_REMOVEDIR) < 0 && r == 0)
			r = -errno;
		close(w->rootfd);
		w->rootfd = -1;
	}
	if (r < 0)
		log_warn("could not remove work dir", "taskUid", task_uid, "path", w->path, "error",
			 wd_strerror(-r));
}

/* Reads $TASKED_OUTPUT through the work dir fd: no symlink, a regular file the task owns,
 * at most EXEC_OUTPUT_MAX bytes of JSON. Sets *ret or writes why not into msg. Returns 1 when
 * the output is JSON nested deeper than PROTO_MAX_OUTPUT_DEPTH (the task fails), else 0. */
int wd_read_output(const struct wd *w, int drop_uid, json_t **ret, char *msg, size_t msgsz)
{
	char data[EXEC_OUTPUT_MAX + 1];
	size_t len = 0;
	struct stat st;
	json_error_t jerr;
	int fd, deep;

	*ret = NULL;
	msg[0] = '\0';
	fd = openat(w->dirfd, EXEC_OUTPUT_NAME,
		    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			snprintf(msg, msgsz, "output: cannot open: %s",
				 errno == ELOOP ? "is a symbolic link" : wd_strerror(errno));
		return 0;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
	    st.st_uid != (drop_uid ? (uid_t)EXEC_TASK_UID : geteuid())) {
		snprintf(msg, msgsz, "output: not a regular file owned by the task");
		close(fd);
		return 0;
	}
	while (len < sizeof(data)) {
		ssize_t n = read(fd, data + len, sizeof(data) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(msg, msgsz, "output: read: %s", wd_strerror(errno));
			close(fd);
			return 0;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len > EXEC_OUTPUT_MAX) {
		snprintf(msg, msgsz, "output exceeds %d bytes", EXEC_OUTPUT_MAX);
		return 0;
	}
	if (strspn(data, " \t\r\n") >= len && memchr(data, '\0', len) == NULL)
		return 0; /* empty: no output */
	*ret = proto_load_output(data, len, &deep, &jerr);
	if (deep) {
		snprintf(msg, msgsz, "output nests deeper than %d levels", PROTO_MAX_OUTPUT_DEPTH);
		return 1;
	}
	if (!*ret)
		snprintf(msg, msgsz, "output: invalid JSON at line %d column %d", jerr.line,
			 jerr.column);
	return 0;
}
