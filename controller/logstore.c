#include "logstore.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LS_BUCKETS 1024
#define LS_UID_MAX 63
#define LS_EVICT_SCAN 64             /* how far from the LRU end eviction looks for a finished task */

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
	struct ls_entry *hnext;             /* hash chain */
	struct ls_entry *lru_prev, *lru_next; /* lru_prev towards the least recently written */
	char uid[LS_UID_MAX + 1];
	char *key;
	struct ls_chunk *head, *tail;
	size_t bytes;                       /* sum of LS_CHUNK_COST */
	uint64_t first, end;
	int64_t attempt, last_seq;
	int finished;
};

struct logstore {
	struct logstore_cfg cfg;
	pthread_mutex_t lock;
	struct ls_entry *buckets[LS_BUCKETS];
	struct ls_entry *lru_old, *lru_new;
	size_t count, total;
	uint64_t chunks, evicted, dropped;
};

static unsigned ls_hash(const char *s)
{
	uint32_t h = 2166136261u;   /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % LS_BUCKETS;
}

struct logstore *logstore_new(const struct logstore_cfg *cfg)
{
	struct logstore *ls = calloc(1, sizeof(*ls));
	if (!ls)
		return NULL;
	ls->cfg = *cfg;
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

static void ls_remove(struct logstore *ls, struct ls_entry *e)
{
	struct ls_entry **pp = &ls->buckets[ls_hash(e->uid)];
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
	ls_free_all(ls);
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

int logstore_append(struct logstore *ls, const char *uid, const char *key, int64_t attempt,
		    int64_t seq, const char *stream, const char *data, size_t len)
{
	struct ls_entry *e;
	struct ls_chunk *c;
	size_t keep = len, skip = 0, room;
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
	if (attempt > e->attempt) {
		e->attempt = attempt;
		e->finished = 0;
	}
	e->last_seq = seq;
	if (len == 0) {
		r = 0;
		goto out;
	}
	room = ls->cfg.max_per_task - sizeof(struct ls_chunk);
	if (keep > room) {
		skip = len - room;
		skip += ls_skip_continuation(data + skip, len - skip);
		keep = len - skip;
		ls->dropped += skip;
	}
	c = malloc(sizeof(*c) + keep);
	if (!c) {
		r = -ENOMEM;
		goto out;
	}
	c->next = NULL;
	c->off = e->end + skip;
	c->attempt = attempt;
	c->seq = seq;
	snprintf(c->stream, sizeof(c->stream), "%s", stream && strcmp(stream, "stderr") == 0 ? "stderr" : "stdout");
	c->len = keep;
	memcpy(c->data, data + skip, keep);
	if (e->tail)
		e->tail->next = c;
	else
		e->head = c;
	e->tail = c;
	e->end += len;
	e->bytes += LS_CHUNK_COST(keep);
	ls->total += LS_CHUNK_COST(keep);
	ls->chunks++;
	while (e->bytes > ls->cfg.max_per_task && e->head != e->tail)
		ls_drop_head(ls, e);
	e->first = e->head->off;
	while (ls->total > ls->cfg.max_total && ls_evict_one(ls, e))
		;
	ls_lru_unlink(ls, e);
	ls_lru_push_new(ls, e);
out:
	pthread_mutex_unlock(&ls->lock);
	if (r > 0 && ls->cfg.notify)
		ls->cfg.notify(ls->cfg.ud);
	return r;
}

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
	if (from > e->end)          /* an offset from an evicted, re-created entry: start over */
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
		lc = (struct logstore_chunk){ .off = c->off + skip, .attempt = c->attempt, .seq = c->seq,
					      .stream = c->stream, .data = c->data + skip, .len = c->len - skip };
		if (fn && fn(ud, &lc))
			break;
		passed += lc.len;
		n++;
		pos->next = c->off + c->len;
	}
out:
	pthread_mutex_unlock(&ls->lock);
}

void logstore_bounds(struct logstore *ls, const char *uid, const char *key, struct logstore_pos *pos)
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
	pthread_mutex_unlock(&ls->lock);
}
