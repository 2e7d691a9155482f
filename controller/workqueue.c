#include "workqueue.h"
#include "sat.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* jansson objects serve as string sets and maps: keys are copied, lookups are hashed. */
struct wq_item {
	char *key;
	struct wq_item *next;
};

struct wq_delayed {
	char *key;
	int64_t at_ms;
};

struct wq {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct wq_item *head, *tail; /* FIFO of ready keys */
	int ready;
	json_t *dirty;      /* keys waiting to be processed */
	json_t *processing; /* keys handed to a worker */
	json_t *failures;   /* key -> failure count */
	json_t *waiting_at; /* key -> earliest ready time of its delayed entry */
	struct wq_delayed *heap;
	size_t nheap, capheap;
	double tokens; /* global bucket */
	int64_t bucket_ms;
	int shutdown;
	uint64_t retries;
	/* Keys marked dirty whose FIFO entry could not be allocated: wq_get re-pushes them (from
	 * the dirty set, which still holds them) instead of losing them. */
	int stranded;
	int fail_allocs; /* unit tests: fail this many allocations */
};

#define WQ_BUCKET_QPS 10.0
#define WQ_BUCKET_BURST 100.0

struct wq *wq_new(void)
{
	struct wq *q = calloc(1, sizeof(*q));
	pthread_condattr_t ca;
	if (!q)
		return NULL;
	pthread_mutex_init(&q->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cond, &ca);
	pthread_condattr_destroy(&ca);
	q->dirty = json_object();
	q->processing = json_object();
	q->failures = json_object();
	q->waiting_at = json_object();
	q->tokens = WQ_BUCKET_BURST;
	q->bucket_ms = util_mono_ms();
	return q;
}

void wq_free(struct wq *q)
{
	if (!q)
		return;
	while (q->head) {
		struct wq_item *it = q->head;
		q->head = it->next;
		free(it->key);
		free(it);
	}
	for (size_t i = 0; i < q->nheap; i++)
		free(q->heap[i].key);
	free(q->heap);
	json_decref(q->dirty);
	json_decref(q->processing);
	json_decref(q->failures);
	json_decref(q->waiting_at);
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

void wq_debug_fail_allocs(struct wq *q, int n)
{
	pthread_mutex_lock(&q->lock);
	q->fail_allocs = n;
	pthread_mutex_unlock(&q->lock);
}

static int wq_alloc_fails(struct wq *q)
{
	if (q->fail_allocs <= 0)
		return 0;
	q->fail_allocs--;
	return 1;
}

/* Appends key to the FIFO. Returns 0 or -ENOMEM; on failure the key stays in the dirty set and
 * is counted as stranded, so it is pushed again later rather than lost. */
static int wq_push_locked(struct wq *q, const char *key)
{
	struct wq_item *it = wq_alloc_fails(q) ? NULL : calloc(1, sizeof(*it));
	if (!it || !(it->key = strdup(key))) {
		free(it);
		q->stranded = 1;
		pthread_cond_signal(&q->cond);
		return -ENOMEM;
	}
	if (q->tail)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	q->ready++;
	pthread_cond_signal(&q->cond);
	return 0;
}

/* Dirty values: true = in the FIFO, false = waiting (being processed, or stranded). */
static void wq_add_locked(struct wq *q, const char *key)
{
	if (q->shutdown || json_object_get(q->dirty, key))
		return;
	if (json_object_set_new(q->dirty, key, json_false()) < 0) {
		/* Not even the dirty mark: the FIFO entry alone keeps the key. Not while a worker
		 * has it, though: a key is never handed out twice at once. */
		if (!json_object_get(q->processing, key))
			(void)wq_push_locked(q, key);
		return;
	}
	if (json_object_get(q->processing, key))
		return; /* wq_done re-queues it */
	if (wq_push_locked(q, key) == 0)
		json_object_set_new(q->dirty, key, json_true());
}

/* Pushes dirty keys that are neither queued nor being processed (their push failed). */
static void wq_rescue_locked(struct wq *q)
{
	const char *key;
	json_t *v;
	q->stranded = 0;
	json_object_foreach(q->dirty, key, v) {
		if (json_is_true(v) || json_object_get(q->processing, key))
			continue;
		if (wq_push_locked(q, key) < 0)
			return; /* still stranded; try again on the next wakeup */
		json_object_set_new(q->dirty, key, json_true());
	}
}

void wq_add(struct wq *q, const char *key)
{
	pthread_mutex_lock(&q->lock);
	wq_add_locked(q, key);
	pthread_mutex_unlock(&q->lock);
}

static void wq_heap_swap(struct wq *q, size_t a, size_t b)
{
	struct wq_delayed t = q->heap[a];
	q->heap[a] = q->heap[b];
	q->heap[b] = t;
}

static int wq_heap_push(struct wq *q, const char *key, int64_t at)
{
	size_t i;
	if (q->nheap == q->capheap) {
		size_t ncap = q->capheap ? q->capheap * 2 : 64;
		struct wq_delayed *nh = wq_alloc_fails(q) ? NULL
							  : realloc(q->heap, ncap * sizeof(*nh));
		if (!nh)
			return -ENOMEM;
		q->heap = nh;
		q->capheap = ncap;
	}
	q->heap[q->nheap].key = wq_alloc_fails(q) ? NULL : strdup(key);
	if (!q->heap[q->nheap].key)
		return -ENOMEM;
	q->heap[q->nheap].at_ms = at;
	for (i = q->nheap++; i > 0 && q->heap[(i - 1) / 2].at_ms > q->heap[i].at_ms;
	     i = (i - 1) / 2)
		wq_heap_swap(q, i, (i - 1) / 2);
	return 0;
}

static void wq_heap_pop(struct wq *q)
{
	size_t i = 0;
	free(q->heap[0].key);
	q->heap[0] = q->heap[--q->nheap];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < q->nheap && q->heap[l].at_ms < q->heap[m].at_ms)
			m = l;
		if (r < q->nheap && q->heap[r].at_ms < q->heap[m].at_ms)
			m = r;
		if (m == i)
			break;
		wq_heap_swap(q, i, m);
		i = m;
	}
}

static void wq_add_after_locked(struct wq *q, const char *key, int64_t delay_ms)
{
	int64_t at = sat_add(util_mono_ms(), delay_ms);
	json_t *cur;
	if (q->shutdown)
		return;
	if (delay_ms <= 0) {
		wq_add_locked(q, key);
		return;
	}
	/* Keep only the earliest time for a key; later heap entries for it are ignored. */
	cur = json_object_get(q->waiting_at, key);
	if (cur && json_integer_value(cur) <= at)
		return;
	if (wq_heap_push(q, key, at) < 0) {
		/* No room to remember the delay: process the key now rather than never (reconcilers
		 * are level-based and schedule themselves again). */
		wq_add_locked(q, key);
		return;
	}
	if (json_object_set_new(q->waiting_at, key, json_integer(at)) < 0) {
		wq_add_locked(q, key); /* the heap entry alone would be taken for a stale one */
		return;
	}
	pthread_cond_broadcast(&q->cond);
}

void wq_add_after(struct wq *q, const char *key, int64_t delay_ms)
{
	pthread_mutex_lock(&q->lock);
	wq_add_after_locked(q, key, delay_ms);
	pthread_mutex_unlock(&q->lock);
}

int64_t wq_backoff_ms(int failures)
{
	int64_t d = 5;
	for (int i = 0; i < failures && d < 1000000; i++)
		d *= 2;
	return d > 1000000 ? 1000000 : d;
}

void wq_add_rate_limited(struct wq *q, const char *key)
{
	int64_t now, per_key, bucket = 0;
	int failures;

	pthread_mutex_lock(&q->lock);
	q->retries++;
	failures = (int)json_integer_value(json_object_get(q->failures, key));
	json_object_set_new(q->failures, key, json_integer(failures + 1));
	per_key = wq_backoff_ms(failures);
	now = util_mono_ms();
	q->tokens += (double)(now - q->bucket_ms) * WQ_BUCKET_QPS / 1000.0;
	if (q->tokens > WQ_BUCKET_BURST)
		q->tokens = WQ_BUCKET_BURST;
	q->bucket_ms = now;
	q->tokens -= 1.0;
	if (q->tokens < 0)
		bucket = (int64_t)(-q->tokens * 1000.0 / WQ_BUCKET_QPS);
	wq_add_after_locked(q, key, per_key > bucket ? per_key : bucket);
	pthread_mutex_unlock(&q->lock);
}

void wq_forget(struct wq *q, const char *key)
{
	pthread_mutex_lock(&q->lock);
	json_object_del(q->failures, key);
	pthread_mutex_unlock(&q->lock);
}

int wq_num_requeues(struct wq *q, const char *key)
{
	int n;
	pthread_mutex_lock(&q->lock);
	n = (int)json_integer_value(json_object_get(q->failures, key));
	pthread_mutex_unlock(&q->lock);
	return n;
}

/* Moves due delayed keys to the ready FIFO; returns ms until the next one (or 10 s). */
static int64_t wq_promote_locked(struct wq *q)
{
	int64_t now = util_mono_ms();
	while (q->nheap > 0 && q->heap[0].at_ms <= now) {
		json_t *at = json_object_get(q->waiting_at, q->heap[0].key);
		if (at && json_integer_value(at) == q->heap[0].at_ms) {
			json_object_del(q->waiting_at, q->heap[0].key);
			wq_add_locked(q, q->heap[0].key);
		}
		wq_heap_pop(q);
	}
	if (q->nheap == 0)
		return 10000;
	return q->heap[0].at_ms - now;
}

char *wq_get(struct wq *q)
{
	struct wq_item *it;
	char *key;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		int64_t wait = wq_promote_locked(q);
		struct timespec ts;
		if (q->stranded)
			wq_rescue_locked(q);
		if (q->stranded && wait > 100)
			wait = 100;
		if (q->shutdown) {
			pthread_mutex_unlock(&q->lock);
			return NULL;
		}
		if (q->head)
			break;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += wait / 1000;
		ts.tv_nsec += (wait % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&q->cond, &q->lock, &ts);
	}
	it = q->head;
	q->head = it->next;
	if (!q->head)
		q->tail = NULL;
	q->ready--;
	key = it->key;
	free(it);
	json_object_set_new(q->processing, key, json_true());
	json_object_del(q->dirty, key);
	pthread_mutex_unlock(&q->lock);
	return key;
}

void wq_done(struct wq *q, const char *key)
{
	pthread_mutex_lock(&q->lock);
	json_object_del(q->processing, key);
	if (json_object_get(q->dirty, key) && wq_push_locked(q, key) == 0)
		json_object_set_new(q->dirty, key, json_true());
	pthread_mutex_unlock(&q->lock);
}

void wq_shutdown(struct wq *q)
{
	pthread_mutex_lock(&q->lock);
	q->shutdown = 1;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

uint64_t wq_retries_total(struct wq *q)
{
	uint64_t n;
	pthread_mutex_lock(&q->lock);
	n = q->retries;
	pthread_mutex_unlock(&q->lock);
	return n;
}

void wq_len(struct wq *q, int *ready, int *delayed)
{
	pthread_mutex_lock(&q->lock);
	*ready = q->ready;
	*delayed = (int)json_object_size(q->waiting_at);
	pthread_mutex_unlock(&q->lock);
}
