#include "logstore.h"
#include "logfile.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define LS_BUCKETS 1024
#define LS_UID_MAX 63
#define LS_EVICT_SCAN 64 /* how far from the LRU end eviction looks for a finished task */

struct ls_chunk {
	struct ls_chunk *next;
	uint64_t off;
	int64_t attempt, seq;
	char stream[8];
	size_t len;
	char data[];
};

/* What a chunk costs beyond its bytes, so many tiny chunks cannot bypass the bounds. */
#define LS_CHUNK_COST(len) (sizeof(struct ls_chunk) + (len))

struct ls_entry {
	struct ls_entry *hnext;               /* hash chain */
	struct ls_entry *lru_prev, *lru_next; /* lru_prev towards the least recently written */
	char uid[LS_UID_MAX + 1];
	char *key;
	struct ls_chunk *head, *tail;
	size_t bytes; /* sum of LS_CHUNK_COST */
	uint64_t first, end;
	int64_t attempt, last_seq;
	int finished;
	uint64_t disk; /* bytes in its file; 0 = no file */
};

struct logstore {
	struct logstore_cfg cfg;
	pthread_mutex_t lock;
	struct ls_entry *buckets[LS_BUCKETS];
	struct ls_entry *lru_old, *lru_new;
	size_t count, total;
	uint64_t chunks, evicted, dropped;
	int dirfd, lockfd; /* -1 without --log-dir */
	int closing;       /* logstore_free: keep the files */
	uint64_t disk_total, disk_errors;
};

static unsigned ls_hash(const char *s)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % LS_BUCKETS;
}

static int ls_open_dir(struct logstore *ls, const char *dir);
static void ls_load(struct logstore *ls);

struct logstore *logstore_new(const struct logstore_cfg *cfg)
{
	struct logstore *ls = calloc(1, sizeof(*ls));
	if (!ls)
		return NULL;
	ls->cfg = *cfg;
	ls->dirfd = ls->lockfd = -1;
	if (!ls->cfg.max_per_task)
		ls->cfg.max_per_task = 1024 * 1024;
	if (!ls->cfg.max_total)
		ls->cfg.max_total = 64u * 1024 * 1024;
	if (!ls->cfg.max_tasks)
		ls->cfg.max_tasks = 10000;
	if (ls->cfg.max_per_task > ls->cfg.max_total)
		ls->cfg.max_per_task = ls->cfg.max_total;
	/* Room for at least one small chunk, or nothing could ever be stored. */
	if (ls->cfg.max_per_task < LS_CHUNK_COST(64))
		ls->cfg.max_per_task = LS_CHUNK_COST(64);
	pthread_mutex_init(&ls->lock, NULL);
	if (cfg->dir && cfg->dir[0]) {
		if (ls_open_dir(ls, cfg->dir) < 0) {
			logstore_free(ls);
			return NULL;
		}
		if (ls->dirfd >= 0)
			ls_load(ls);
	}
	ls->cfg.dir = NULL; /* the caller's string need not outlive this call */
	return ls;
}

static void ls_drop_head(struct logstore *ls, struct ls_entry *e)
{
	struct ls_chunk *c = e->head;
	e->head = c->next;
	if (!e->head)
		e->tail = NULL;
	e->bytes -= LS_CHUNK_COST(c->len);
	ls->total -= LS_CHUNK_COST(c->len);
	ls->chunks--;
	ls->dropped += c->len;
	e->first = e->head ? e->head->off : e->end;
	free(c);
}

static void ls_lru_unlink(struct logstore *ls, struct ls_entry *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		ls->lru_old = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		ls->lru_new = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void ls_lru_push_new(struct logstore *ls, struct ls_entry *e)
{
	e->lru_prev = ls->lru_new;
	e->lru_next = NULL;
	if (ls->lru_new)
		ls->lru_new->lru_next = e;
	else
		ls->lru_old = e;
	ls->lru_new = e;
}

static void ls_disk_drop(struct logstore *ls, struct ls_entry *e);

static void ls_remove(struct logstore *ls, struct ls_entry *e)
{
	struct ls_entry **pp = &ls->buckets[ls_hash(e->uid)];

	if (!ls->closing)
		ls_disk_drop(ls, e);
	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	ls_lru_unlink(ls, e);
	while (e->head)
		ls_drop_head(ls, e);
	ls->total -= sizeof(*e);
	ls->count--;
	free(e->key);
	free(e);
}

static void ls_free_all(struct logstore *ls)
{
	while (ls->lru_old)
		ls_remove(ls, ls->lru_old);
}

void logstore_free(struct logstore *ls)
{
	if (!ls)
		return;
	ls->closing = 1;
	ls_free_all(ls);
	if (ls->dirfd >= 0)
		close(ls->dirfd);
	if (ls->lockfd >= 0)
		close(ls->lockfd);
	pthread_mutex_destroy(&ls->lock);
	free(ls);
}

static struct ls_entry *ls_find_uid(struct logstore *ls, const char *uid)
{
	if (!uid)
		return NULL;
	for (struct ls_entry *e = ls->buckets[ls_hash(uid)]; e; e = e->hnext)
		if (strcmp(e->uid, uid) == 0)
			return e;
	return NULL;
}

/* The most recently written entry with this key (a re-created task has a new uid). */
static struct ls_entry *ls_find_key(struct logstore *ls, const char *key)
{
	if (!key)
		return NULL;
	for (struct ls_entry *e = ls->lru_new; e; e = e->lru_prev)
		if (e->key && strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

/* Evicts one whole log other than keep: a finished one among the least recently written if
 * there is one, else the least recently written. Returns 0 when nothing could go. */
static int ls_evict_one(struct logstore *ls, struct ls_entry *keep)
{
	struct ls_entry *victim = NULL, *e = ls->lru_old;
	for (int i = 0; e && i < LS_EVICT_SCAN; e = e->lru_next, i++) {
		if (e == keep)
			continue;
		if (e->finished) {
			victim = e;
			break;
		}
		if (!victim)
			victim = e;
	}
	if (!victim)
		return 0;
	ls->evicted++;
	ls_remove(ls, victim);
	return 1;
}

static void ls_set_key(struct ls_entry *e, const char *key)
{
	char *k;
	if (!key || (e->key && strcmp(e->key, key) == 0))
		return;
	k = strdup(key);
	if (!k)
		return;
	free(e->key);
	e->key = k;
}

static struct ls_entry *ls_get_or_create(struct logstore *ls, const char *uid, const char *key)
{
	struct ls_entry *e = ls_find_uid(ls, uid);
	unsigned h;

	if (e) {
		ls_set_key(e, key);
		return e;
	}
	if (strlen(uid) > LS_UID_MAX)
		return NULL;
	while (ls->count >= ls->cfg.max_tasks && ls_evict_one(ls, NULL))
		;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	memcpy(e->uid, uid, strlen(uid) + 1);
	ls_set_key(e, key);
	e->last_seq = -1;
	h = ls_hash(uid);
	e->hnext = ls->buckets[h];
	ls->buckets[h] = e;
	ls_lru_push_new(ls, e);
	ls->count++;
	ls->total += sizeof(*e);
	return e;
}

/* Length of a UTF-8 continuation run at the start of p, so a cut never starts mid-character. */
static size_t ls_skip_continuation(const char *p, size_t len)
{
	size_t i = 0;
	while (i < len && i < 3 && ((unsigned char)p[i] & 0xc0) == 0x80)
		i++;
	return i;
}

/* Stores a chunk whose first byte has offset base (the caller checked attempt and seq); a chunk
 * larger than the per-task bound keeps its end. Drops the task's oldest chunks beyond that
 * bound. Returns the chunk as stored, or NULL without memory. */
static struct ls_chunk *ls_store(struct logstore *ls, struct ls_entry *e, uint64_t base,
				 int64_t attempt, int64_t seq, const char *stream, const char *data,
				 size_t len)
{
	struct ls_chunk *c;
	size_t keep = len, skip = 0, room = ls->cfg.max_per_task - sizeof(struct ls_chunk);

	if (attempt > e->attempt) {
		e->attempt = attempt;
		e->finished = 0;
	}
	e->last_seq = seq;
	if (keep > room) {
		skip = len - room;
		skip += ls_skip_continuation(data + skip, len - skip);
		keep = len - skip;
		ls->dropped += skip;
	}
	c = malloc(sizeof(*c) + keep);
	if (!c)
		return NULL;
	c->next = NULL;
	c->off = base + skip;
	c->attempt = attempt;
	c->seq = seq;
	snprintf(c->stream, sizeof(c->stream), "%s",
		 stream && strcmp(stream, "stderr") == 0 ? "stderr" : "stdout");
	c->len = keep;
	memcpy(c->data, data + skip, keep);
	if (e->tail)
		e->tail->next = c;
	else
		e->head = c;
	e->tail = c;
	e->end = base + len;
	e->bytes += LS_CHUNK_COST(keep);
	ls->total += LS_CHUNK_COST(keep);
	ls->chunks++;
	while (e->bytes > ls->cfg.max_per_task && e->head != e->tail)
		ls_drop_head(ls, e);
	e->first = e->head->off;
	return c;
}

/* The total bounds (memory and disk): whole logs other than e go, least recently written
 * first; then e becomes the most recently written. */
static void ls_enforce_total(struct logstore *ls, struct ls_entry *e)
{
	while ((ls->total > ls->cfg.max_total || ls->disk_total > ls->cfg.max_total) &&
	       ls_evict_one(ls, e))
		;
	ls_lru_unlink(ls, e);
	ls_lru_push_new(ls, e);
}

static void ls_disk_append(struct logstore *ls, struct ls_entry *e, const struct ls_chunk *c);

int logstore_append(struct logstore *ls, const char *uid, const char *key, int64_t attempt,
		    int64_t seq, const char *stream, const char *data, size_t len)
{
	struct ls_entry *e;
	struct ls_chunk *c;
	int r = 1;

	if (!uid || !uid[0] || !data)
		return -EINVAL;
	pthread_mutex_lock(&ls->lock);
	e = ls_get_or_create(ls, uid, key);
	if (!e) {
		r = -ENOMEM;
		goto out;
	}
	if (attempt < e->attempt || (attempt == e->attempt && seq <= e->last_seq)) {
		r = 0;
		goto out;
	}
	if (len == 0) {
		if (attempt > e->attempt) {
			e->attempt = attempt;
			e->finished = 0;
		}
		e->last_seq = seq;
		r = 0;
		goto out;
	}
	c = ls_store(ls, e, e->end, attempt, seq, stream, data, len);
	if (!c) {
		r = -ENOMEM;
		goto out;
	}
	ls_disk_append(ls, e, c);
	ls_enforce_total(ls, e);
out:
	pthread_mutex_unlock(&ls->lock);
	if (r > 0 && ls->cfg.notify)
		ls->cfg.notify(ls->cfg.ud);
	return r;
}

static void ls_disk_finish(struct logstore *ls, struct ls_entry *e);

void logstore_finish(struct logstore *ls, const char *uid, const char *key)
{
	struct ls_entry *e;
	int changed = 0;
	if (!uid || !uid[0])
		return;
	pthread_mutex_lock(&ls->lock);
	e = ls_get_or_create(ls, uid, key);
	if (e && !e->finished) {
		e->finished = 1;
		changed = 1;
		ls_disk_finish(ls, e);
	}
	pthread_mutex_unlock(&ls->lock);
	if (changed && ls->cfg.notify)
		ls->cfg.notify(ls->cfg.ud);
}

void logstore_forget(struct logstore *ls, const char *uid)
{
	struct ls_entry *e;
	pthread_mutex_lock(&ls->lock);
	e = ls_find_uid(ls, uid);
	if (e)
		ls_remove(ls, e);
	pthread_mutex_unlock(&ls->lock);
	if (e && ls->cfg.notify)
		ls->cfg.notify(ls->cfg.ud);
}

void logstore_read(struct logstore *ls, const char *uid, const char *key, int64_t attempt,
		   uint64_t from, size_t max_bytes,
		   int (*fn)(void *ud, const struct logstore_chunk *c), void *ud,
		   struct logstore_pos *pos)
{
	struct ls_entry *e;
	size_t passed = 0;
	int n = 0;

	memset(pos, 0, sizeof(*pos));
	pos->next = from;
	pthread_mutex_lock(&ls->lock);
	e = ls_find_uid(ls, uid);
	if (!e)
		e = ls_find_key(ls, key);
	if (!e)
		goto out;
	pos->found = 1;
	pos->finished = e->finished;
	pos->first = e->first;
	pos->end = e->end;
	pos->last_attempt = e->attempt;
	if (from > e->end) /* an offset from an evicted, re-created entry: start over */
		from = 0;
	if (from < e->first) {
		pos->dropped = e->first - from;
		from = e->first;
	}
	pos->next = from;
	for (struct ls_chunk *c = e->head; c; c = c->next) {
		struct logstore_chunk lc;
		size_t skip;
		if (c->off + c->len <= from)
			continue;
		if (attempt && c->attempt != attempt) {
			pos->next = c->off + c->len;
			continue;
		}
		skip = from > c->off ? (size_t)(from - c->off) : 0;
		skip += ls_skip_continuation(c->data + skip, c->len - skip);
		if (n > 0 && passed + (c->len - skip) > max_bytes)
			break;
		lc = (struct logstore_chunk){ .off = c->off + skip,
					      .attempt = c->attempt,
					      .seq = c->seq,
					      .stream = c->stream,
					      .data = c->data + skip,
					      .len = c->len - skip };
		if (fn && fn(ud, &lc))
			break;
		passed += lc.len;
		n++;
		pos->next = c->off + c->len;
	}
out:
	pthread_mutex_unlock(&ls->lock);
}

void logstore_bounds(struct logstore *ls, const char *uid, const char *key,
		     struct logstore_pos *pos)
{
	struct ls_entry *e;
	memset(pos, 0, sizeof(*pos));
	pthread_mutex_lock(&ls->lock);
	e = ls_find_uid(ls, uid);
	if (!e)
		e = ls_find_key(ls, key);
	if (e) {
		pos->found = 1;
		pos->finished = e->finished;
		pos->first = e->first;
		pos->end = pos->next = e->end;
		pos->last_attempt = e->attempt;
	}
	pthread_mutex_unlock(&ls->lock);
}

void logstore_stats_get(struct logstore *ls, struct logstore_stats *ret)
{
	pthread_mutex_lock(&ls->lock);
	ret->tasks = ls->count;
	ret->bytes = ls->total;
	ret->chunks = ls->chunks;
	ret->evicted_tasks = ls->evicted;
	ret->dropped_bytes = ls->dropped;
	ret->disk_bytes = ls->disk_total;
	ret->disk_errors = ls->disk_errors;
	pthread_mutex_unlock(&ls->lock);
}

/* --- on disk (--log-dir) ------------------------------------------------------------------------
 * Write-through: every stored chunk is appended to UID.log as one record (logfile.h), so the file
 * holds what memory holds plus what the per-task bound dropped since the file was last
 * rewritten. Once a file passes 1.5 times the per-task bound it is rewritten from memory
 * (compaction), so a file stays below that and the files together below the total bound (which
 * evicts whole logs, and their files, as it does in memory). No fsync on append: the records
 * are in the page cache the moment write returns, so a killed or crashed controller loses
 * nothing; only a crash of the node can lose the last seconds of output (what the kernel had not
 * written back) or leave a partial record, which the next start cuts off. A compaction replaces a
 * file that had data, so it is synced before the rename: a node crash leaves the old file or the
 * new one, never an empty one. Logs are best effort; the bytes written are the bytes stored,
 * masked by the runner exactly as in memory. */

#define LS_NAME_MAX 80

static void ls_file_name(const char *uid, const char *suffix, char *out)
{
	snprintf(out, LS_NAME_MAX, "%s%s", uid, suffix);
}

static void ls_disk_drop(struct logstore *ls, struct ls_entry *e)
{
	char name[LS_NAME_MAX];
	if (ls->dirfd < 0 || !e->disk)
		return;
	ls_file_name(e->uid, ".log", name);
	if (unlinkat(ls->dirfd, name, 0) < 0 && errno != ENOENT)
		ls->disk_errors++;
	ls->disk_total -= e->disk;
	e->disk = 0;
}

static int ls_write_all(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t w = writev(fd, iov, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

static int ls_write_rec(int fd, const struct logfile_rec *r, uint64_t *written)
{
	unsigned char hdr[LOGFILE_HDR];
	struct iovec iov[2];
	int rc;

	logfile_encode(r, hdr);
	iov[0] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
	iov[1] = (struct iovec){ .iov_base = (void *)(uintptr_t)r->data, .iov_len = r->len };
	rc = ls_write_all(fd, iov, r->len ? 2 : 1);
	if (rc == 0)
		*written += LOGFILE_HDR + r->len;
	return rc;
}

static struct logfile_rec ls_chunk_rec(const struct ls_chunk *c)
{
	return (struct logfile_rec){ .type = LOGFILE_CHUNK,
				     .stderr_ = strcmp(c->stream, "stderr") == 0,
				     .off = c->off,
				     .attempt = c->attempt,
				     .seq = c->seq,
				     .data = c->data,
				     .len = c->len };
}

/* Writes e's whole log as held in memory to UID.tmp and renames it over UID.log. */
static int ls_disk_rewrite(struct logstore *ls, struct ls_entry *e)
{
	char tmp[LS_NAME_MAX], name[LS_NAME_MAX];
	uint64_t written = LOGFILE_MAGIC_LEN;
	int fd, r = 0, had = e->disk > 0;
	struct iovec iov = { .iov_base = (void *)(uintptr_t)LOGFILE_MAGIC,
			     .iov_len = LOGFILE_MAGIC_LEN };

	ls_file_name(e->uid, ".tmp", tmp);
	ls_file_name(e->uid, ".log", name);
	fd = openat(ls->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	r = ls_write_all(fd, &iov, 1);
	if (r == 0 && e->key && strlen(e->key) <= LOGFILE_KEY_MAX)
		r = ls_write_rec(fd,
				 &(struct logfile_rec){ .type = LOGFILE_KEY,
							.data = e->key,
							.len = strlen(e->key) },
				 &written);
	for (struct ls_chunk *c = e->head; r == 0 && c; c = c->next) {
		struct logfile_rec rec = ls_chunk_rec(c);
		r = ls_write_rec(fd, &rec, &written);
	}
	if (r == 0 && e->finished)
		r = ls_write_rec(fd, &(struct logfile_rec){ .type = LOGFILE_FINISH }, &written);
	if (r == 0 && had && fdatasync(fd) < 0)
		r = -errno;
	close(fd);
	if (r == 0 && renameat(ls->dirfd, tmp, ls->dirfd, name) < 0)
		r = -errno;
	if (r < 0) {
		unlinkat(ls->dirfd, tmp, 0);
		return r;
	}
	ls->disk_total = ls->disk_total - e->disk + written;
	e->disk = written;
	return 0;
}

static int ls_disk_append_rec(struct logstore *ls, struct ls_entry *e,
			      const struct logfile_rec *rec)
{
	char name[LS_NAME_MAX];
	uint64_t written = 0;
	int fd, r;

	ls_file_name(e->uid, ".log", name);
	/* No O_CREAT: a file that went away is rewritten whole by the caller. */
	fd = openat(ls->dirfd, name, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	r = ls_write_rec(fd, rec, &written);
	close(fd);
	if (r == 0) {
		e->disk += written;
		ls->disk_total += written;
	}
	return r;
}

/* After c was stored in memory. */
static void ls_disk_append(struct logstore *ls, struct ls_entry *e, const struct ls_chunk *c)
{
	struct logfile_rec rec;
	int r;

	if (ls->dirfd < 0 || !logfile_uid_ok(e->uid))
		return;
	rec = ls_chunk_rec(c);
	if (e->disk &&
	    e->disk + LOGFILE_HDR + c->len <= ls->cfg.max_per_task + ls->cfg.max_per_task / 2) {
		r = ls_disk_append_rec(ls, e, &rec);
		if (r == 0)
			return;
	}
	/* A new log, a file past its bound, or an append that failed (a partial record would end
	 * the file for the parser): write the file anew from memory. */
	r = ls_disk_rewrite(ls, e);
	if (r < 0) {
		ls->disk_errors++;
		if (ls->disk_errors == 1 || ls->disk_errors % 1000 == 0)
			log_warn("could not write a task's log file; its log stays in memory",
				 "uid", e->uid, "error", strerror(-r));
		ls_disk_drop(ls, e);
	}
}

static void ls_disk_finish(struct logstore *ls, struct ls_entry *e)
{
	if (ls->dirfd < 0 || !e->disk)
		return;
	if (ls_disk_append_rec(ls, e, &(struct logfile_rec){ .type = LOGFILE_FINISH }) < 0 &&
	    ls_disk_rewrite(ls, e) < 0) {
		ls->disk_errors++;
		ls_disk_drop(ls, e);
	}
}

static int ls_open_dir(struct logstore *ls, const char *dir)
{
	ls->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ls->dirfd < 0) {
		log_error("cannot open the log directory", "dir", dir, "error", strerror(errno));
		return -errno;
	}
	/* One controller per directory: a second one (a surge pod on the same volume) would cut
	 * off the records the first is writing. It keeps its logs in memory. */
	ls->lockfd = openat(ls->dirfd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (ls->lockfd < 0 || flock(ls->lockfd, LOCK_EX | LOCK_NB) < 0) {
		log_warn(
			"the log directory is in use by another process or not writable; keeping logs in memory only",
			"dir", dir, "error", strerror(errno));
		if (ls->lockfd >= 0)
			close(ls->lockfd);
		close(ls->dirfd);
		ls->lockfd = ls->dirfd = -1;
		return 0;
	}
	return 0;
}

struct ls_load_ctx {
	struct logstore *ls;
	struct ls_entry *e;
	const char *uid;
	uint64_t records;
};

static int ls_load_rec(void *ud, const struct logfile_rec *r)
{
	struct ls_load_ctx *x = ud;
	struct ls_entry *e;
	char key[LOGFILE_KEY_MAX + 1];

	if (!x->e)
		x->e = ls_get_or_create(x->ls, x->uid, NULL);
	e = x->e;
	if (!e)
		return 0;
	x->records++;
	switch (r->type) {
	case LOGFILE_KEY:
		memcpy(key, r->data, r->len);
		key[r->len] = '\0';
		ls_set_key(e, key);
		break;
	case LOGFILE_FINISH:
		e->finished = 1;
		break;
	case LOGFILE_CHUNK:
		if (r->attempt < e->attempt ||
		    (r->attempt == e->attempt && r->seq <= e->last_seq) || r->off < e->end)
			break;
		if (ls_store(x->ls, e, r->off, r->attempt, r->seq, r->stderr_ ? "stderr" : "stdout",
			     r->data, r->len))
			ls_enforce_total(x->ls, e);
		break;
	}
	return 0;
}

/* Reads one UID.log back into memory; cuts off a damaged end, removes what cannot be used. */
static void ls_load_file(struct logstore *ls, const char *name, const char *uid)
{
	struct ls_load_ctx x = { .ls = ls, .uid = uid };
	uint64_t max = (uint64_t)ls->cfg.max_per_task * 2 + LOGFILE_KEY_MAX + 4096;
	struct stat st;
	char *buf = NULL;
	size_t n = 0, valid;
	int fd = openat(ls->dirfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);

	if (fd < 0) {
		/* ELOOP: a symlink. Removing it removes the link, never what it points to. */
		log_warn("removing what cannot be opened as a log file", "file", name, "error",
			 strerror(errno));
		unlinkat(ls->dirfd, name, 0);
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		log_warn("removing a log file that is not a regular file or is too large", "file",
			 name);
		close(fd);
		if (S_ISREG(st.st_mode))
			unlinkat(ls->dirfd, name, 0);
		return;
	}
	buf = malloc((size_t)st.st_size + 1);
	while (buf && n < (size_t)st.st_size) {
		ssize_t rd = pread(fd, buf + n, (size_t)st.st_size - n, (off_t)n);
		if (rd <= 0)
			break;
		n += (size_t)rd;
	}
	valid = buf ? logfile_parse(buf, n, ls->cfg.max_per_task + LOGFILE_KEY_MAX, ls_load_rec, &x)
		    : 0;
	free(buf);
	if (valid < n && valid > 0) {
		char cut[32];
		snprintf(cut, sizeof(cut), "%zu", n - valid);
		log_warn("a log file ends in a damaged or partial record; cut it off", "file", name,
			 "bytes", cut);
		if (ftruncate(fd, (off_t)valid) < 0)
			valid = 0;
	}
	close(fd);
	if (!x.e || valid == 0) {
		unlinkat(ls->dirfd, name, 0);
		return;
	}
	x.e->disk = valid;
	ls->disk_total += valid;
}

static void ls_load(struct logstore *ls)
{
	int fd = dup(ls->dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	char uid[64];
	size_t loaded = 0;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (de->d_name[0] == '.')
			continue;
		if (len > 4 && len < LS_NAME_MAX && strcmp(de->d_name + len - 4, ".tmp") == 0) {
			/* A rewrite that did not finish: the .log it was to replace is intact. */
			unlinkat(ls->dirfd, de->d_name, 0);
			continue;
		}
		if (!logfile_name_uid(de->d_name, uid)) {
			log_warn("ignoring a file in the log directory that no task's log can be",
				 "file", de->d_name);
			continue;
		}
		ls_load_file(ls, de->d_name, uid);
		loaded++;
	}
	closedir(d);
	if (loaded) {
		char n[32], b[32];
		snprintf(n, sizeof(n), "%zu", ls->count);
		snprintf(b, sizeof(b), "%llu", (unsigned long long)ls->disk_total);
		log_info("task logs reloaded from disk", "tasks", n, "bytes", b);
	}
}

size_t logstore_sweep(struct logstore *ls, int (*exists)(void *ud, const char *uid), void *ud)
{
	char(*uids)[LS_UID_MAX + 1];
	size_t n = 0, gone = 0;

	pthread_mutex_lock(&ls->lock);
	uids = calloc(ls->count ? ls->count : 1, sizeof(*uids));
	for (struct ls_entry *e = ls->lru_old; uids && e; e = e->lru_next)
		memcpy(uids[n++], e->uid, sizeof(e->uid));
	pthread_mutex_unlock(&ls->lock);
	if (!uids)
		return 0;
	/* Asked without the lock: exists() reads another module's cache. */
	for (size_t i = 0; i < n; i++) {
		if (exists(ud, uids[i]))
			continue;
		logstore_forget(ls, uids[i]);
		gone++;
	}
	free(uids);
	return gone;
}
