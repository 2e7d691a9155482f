/* Workqueue: dedup, no concurrent processing of a key, delays, backoff. */
#include "tap.h"
#include "util.h"
#include "workqueue.h"

#include <unistd.h>

int main(void)
{
	struct wq *q = wq_new();
	int ready, delayed;
	char *k, *k2;
	int64_t t0;

	wq_add(q, "ns/a");
	wq_add(q, "ns/a");
	wq_add(q, "ns/b");
	wq_len(q, &ready, &delayed);
	is_int(ready, 2, "a key added twice is queued once");
	k = wq_get(q);
	is_str(k, "ns/a", "FIFO order");
	wq_add(q, "ns/a"); /* while processing: must not be handed out again yet */
	k2 = wq_get(q);
	is_str(k2, "ns/b", "the key being processed is not handed to a second worker");
	wq_len(q, &ready, &delayed);
	is_int(ready, 0, "re-added key waits for done");
	wq_done(q, k);
	wq_len(q, &ready, &delayed);
	is_int(ready, 1, "done re-queues a key that was added during processing");
	wq_done(q, k2);
	free(k);
	free(k2);
	k = wq_get(q);
	wq_done(q, k);
	free(k);

	t0 = util_mono_ms();
	wq_add_after(q, "ns/late", 200);
	wq_add_after(q, "ns/late", 5000); /* a later time does not push it back */
	wq_len(q, &ready, &delayed);
	ok(ready == 0 && delayed == 1, "delayed key is not ready yet");
	k = wq_get(q);
	ok(util_mono_ms() - t0 >= 190 && util_mono_ms() - t0 < 2000,
	   "delayed key arrives after ~200 ms (%lld)", (long long)(util_mono_ms() - t0));
	is_str(k, "ns/late", "delayed key");
	wq_done(q, k);
	free(k);

	is_int(wq_backoff_ms(0), 5, "first retry after 5 ms");
	is_int(wq_backoff_ms(3), 40, "doubling");
	is_int(wq_backoff_ms(40), 1000000, "capped at 1000 s");
	wq_add_rate_limited(q, "ns/f");
	wq_add_rate_limited(q, "ns/f");
	is_int(wq_num_requeues(q, "ns/f"), 2, "failures are counted");
	wq_forget(q, "ns/f");
	is_int(wq_num_requeues(q, "ns/f"), 0, "forget resets the count");

	/* Allocation failures never lose a key. */
	{
		struct wq *f = wq_new();
		char *g;
		wq_debug_fail_allocs(f, 1);
		wq_add(f, "ns/stranded");
		wq_len(f, &ready, &delayed);
		is_int(ready, 0, "a failed FIFO allocation leaves nothing queued ...");
		g = wq_get(f);
		is_str(g, "ns/stranded", "... but the key is handed out all the same");
		wq_add(f, "ns/stranded"); /* while processing */
		wq_debug_fail_allocs(f, 1);
		wq_done(f, g); /* its re-queue fails */
		free(g);
		g = wq_get(f);
		is_str(g, "ns/stranded", "a re-queue that failed in done is retried");
		wq_done(f, g);
		free(g);
		wq_debug_fail_allocs(f, 2); /* the heap array and the key copy */
		t0 = util_mono_ms();
		wq_add_after(f, "ns/delayed", 60000);
		g = wq_get(f);
		ok(g && strcmp(g, "ns/delayed") == 0 && util_mono_ms() - t0 < 30000,
		   "a delay that could not be stored: the key comes now instead of never (%s)",
		   g ? g : "NULL");
		wq_done(f, g);
		free(g);
		wq_add_after(f, "ns/far", INT64_MAX); /* must not wrap into the past */
		wq_len(f, &ready, &delayed);
		ok(ready == 0 && delayed == 1,
		   "a delay of INT64_MAX ms saturates instead of firing at once");
		wq_shutdown(f);
		wq_free(f);
	}

	wq_shutdown(q);
	ok(wq_get(q) == NULL, "get returns NULL after shutdown");
	wq_free(q);
	return done_testing();
}
