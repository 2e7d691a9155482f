/* Event ring: increasing ids, filters, resume after an id, gaps when the ring no longer holds
 * what a reader missed, byte and count bounds, backlog for slow-reader detection. */
#include "events.h"
#include "tap.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static int notified;
static void on_notify(void *ud) { notified++; }

static uint64_t pub(struct events *ev, const char *ns, const char *queue, int n)
{
	json_t *d = json_pack("{sssi}", "namespace", ns, "n", n);
	uint64_t id = events_publish(ev, "task", ns, queue, d);
	json_decref(d);
	return id;
}

static int count(const char *s, const char *needle)
{
	int n = 0;
	for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

int main(void)
{
	struct events *ev = events_new(
		&(struct events_cfg){ .max_events = 8, .first_id = 1000, .notify = on_notify });
	struct events_gap gap;
	struct events_stats st;
	struct buf out;
	uint64_t cur, id1, id2, id3;
	int n;

	buf_init(&out, 1 << 20);
	is_int((long long)events_last_id(ev), 999, "before any event the last id is first_id - 1");
	id1 = pub(ev, "a", "q1", 1);
	id2 = pub(ev, "b", "q1", 2);
	id3 = pub(ev, "a", "q2", 3);
	ok(id1 == 1000 && id2 == 1001 && id3 == 1002, "ids increase by one from first_id");
	is_int(notified, 3, "each publish notifies");

	cur = 999;
	n = events_read(ev, &cur, NULL, &out, 1 << 20, &gap);
	is_int(n, 3, "a reader from the start gets every event");
	ok(!gap.gap && cur == id3, "no gap; the cursor is at the last id");
	ok(strncmp(out.data, "id: 1000\nevent: task\ndata: {", 28) == 0, "SSE frame format");
	ok(strstr(out.data, "\"n\":3}\n\n") != NULL, "frames end with a blank line");

	buf_reset(&out);
	cur = id1;
	n = events_read(ev, &cur, NULL, &out, 1 << 20, &gap);
	ok(n == 2 && count(out.data, "id: ") == 2 && !strstr(out.data, "id: 1000\n"),
	   "resuming after an id delivers only newer events");

	buf_reset(&out);
	cur = 999;
	n = events_read(ev, &cur, &(struct events_filter){ .ns = "a" }, &out, 1 << 20, &gap);
	ok(n == 2 && cur == id3, "namespace filter (cursor still advances past others)");
	buf_reset(&out);
	cur = 999;
	n = events_read(ev, &cur, &(struct events_filter){ .ns = "a", .queue = "q2" }, &out,
			1 << 20, &gap);
	ok(n == 1 && strstr(out.data, "id: 1002\n"), "namespace and queue filter");

	buf_reset(&out);
	cur = id3;
	n = events_read(ev, &cur, NULL, &out, 1 << 20, &gap);
	ok(n == 0 && out.len == 0 && cur == id3, "nothing new: nothing read");
	is_int((long long)events_backlog(ev, id3), 0, "no backlog at the head");
	ok(events_backlog(ev, id1) > 0, "backlog counts bytes not yet read");

	/* Overflow the ring (8 events): the oldest go, a reader behind them gets a gap. */
	for (int i = 0; i < 10; i++)
		pub(ev, "a", "q1", 10 + i);
	events_stats_get(ev, &st);
	ok(st.held == 8 && st.published == 13, "the ring keeps at most max_events (held %llu)",
	   (unsigned long long)st.held);
	ok(events_backlog(ev, id1) == UINT64_MAX,
	   "a reader behind the ring has an unbounded backlog");
	buf_reset(&out);
	cur = id1;
	n = events_read(ev, &cur, NULL, &out, 1 << 20, &gap);
	ok(gap.gap && gap.last_id == id1 && gap.oldest_id == st.oldest_id,
	   "a gap is reported with the ids");
	ok(strncmp(out.data, "event: gap\ndata: {", 18) == 0, "the gap frame comes first");
	is_int(n, 9, "then every held event (8 + the gap frame)");

	buf_reset(&out);
	cur = 5; /* an id from an earlier process */
	events_read(ev, &cur, NULL, &out, 1 << 20, &gap);
	ok(gap.gap, "an id older than this process is a gap");
	buf_reset(&out);
	cur = 999999999;
	events_read(ev, &cur, NULL, &out, 1 << 20, &gap);
	ok(gap.gap && cur == st.last_id, "an id newer than any event is a gap too");

	/* max_bytes: at least one frame, then stop before passing the limit. */
	buf_reset(&out);
	cur = st.oldest_id - 1;
	n = events_read(ev, &cur, NULL, &out, 10, &gap);
	ok(n == 1 && cur == st.oldest_id,
	   "a small budget still yields one frame and resumes after it");
	events_free(ev);

	/* Byte bound. */
	ev = events_new(
		&(struct events_cfg){ .max_events = 1000, .max_bytes = 1024, .first_id = 1 });
	for (int i = 0; i < 100; i++)
		pub(ev, "ns", "q", i);
	events_stats_get(ev, &st);
	ok(st.bytes <= 1024 && st.held < 100,
	   "the ring keeps at most max_bytes (%llu bytes, %llu events)",
	   (unsigned long long)st.bytes, (unsigned long long)st.held);
	{
		char big[2048];
		json_t *d;
		memset(big, 'x', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		d = json_pack("{ss}", "big", big);
		is_int((long long)events_publish(ev, "task", "ns", "q", d), 0,
		       "an event larger than the ring is refused");
		json_decref(d);
	}
	events_free(ev);

	/* Default first id: time based, so a restarted controller continues above old ids. */
	ev = events_new(&(struct events_cfg){ 0 });
	ok(events_last_id(ev) + 1 >= (uint64_t)util_now_ms() * 1000 - 10000000,
	   "the default first id is now in ms * 1000");
	events_free(ev);
	buf_free(&out);
	return done_testing();
}
