#pragma once
/* A client-go style work queue of string keys ("namespace/name"):
 *  - a key is queued once however many times it is added (dirty set);
 *  - a key being processed is never handed to a second worker; adds during processing re-queue
 *    it when wq_done() is called;
 *  - wq_add_after() delays a key (earliest time wins);
 *  - wq_add_rate_limited() delays by per-key exponential backoff (5 ms doubling to 1000 s) and a
 *    global token bucket (10/s, burst 100), whichever is later; wq_forget() resets the key. */
#include <stdint.h>

struct wq;

struct wq *wq_new(void);
void wq_free(struct wq *q);
void wq_add(struct wq *q, const char *key);
void wq_add_after(struct wq *q, const char *key, int64_t delay_ms);
void wq_add_rate_limited(struct wq *q, const char *key);
void wq_forget(struct wq *q, const char *key);
int wq_num_requeues(struct wq *q, const char *key);
/* Blocks until a key is ready or the queue shuts down. Returns a new string (caller frees and
 * must call wq_done) or NULL after shutdown. */
char *wq_get(struct wq *q);
void wq_done(struct wq *q, const char *key);
void wq_shutdown(struct wq *q);
/* Keys ready now (queue depth) and keys waiting on a delay. */
void wq_len(struct wq *q, int *ready, int *delayed);
/* How many times keys were re-queued with backoff, in total (a metrics counter). */
uint64_t wq_retries_total(struct wq *q);
/* Computes the per-key backoff for a failure count; exposed for unit tests. */
int64_t wq_backoff_ms(int failures);
/* Unit tests: the next n allocations of the queue's own entries fail (keys must survive). */
void wq_debug_fail_allocs(struct wq *q, int n);
