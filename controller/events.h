#pragma once
/* A bounded ring of task events for the API's SSE stream (GET /api/v1/events).
 *
 * Every event gets an id one above the previous one. The first id of a process is its start
 * time in milliseconds times 1000, so ids keep increasing across restarts and an id from an
 * earlier process is recognised as older than anything the ring holds (a gap), never confused
 * with a new event. The ring is bounded in events and in bytes; the oldest events go first.
 * Readers keep only a cursor (the last id they sent), so a reader costs no memory here however
 * far behind it is. Thread-safe: publish from any thread, read from the API loop. */
#include "util.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct events;

struct events_cfg {
	size_t max_events;        /* 0 = 4096 */
	size_t max_bytes;         /* 0 = 4 MiB of serialised frames */
	uint64_t first_id;        /* 0 = now_ms * 1000 (tests pass a fixed value) */
	void (*notify)(void *ud); /* called after each publish, outside the lock; may be NULL */
	void *ud;
};

struct events_filter {
	const char *ns;    /* NULL or "" = any */
	const char *queue; /* NULL or "" = any */
};

/* What a reader missed: set when its cursor is older than the oldest event held (or newer
 * than the newest, e.g. an id from another process). */
struct events_gap {
	int gap;
	uint64_t last_id;   /* the cursor the reader had */
	uint64_t oldest_id; /* first id still held (next id when the ring is empty) */
};

struct events *events_new(const struct events_cfg *cfg);
void events_free(struct events *ev);

/* Publishes one event of type `type` (e.g. "status") with data (borrowed; an object, into
 * which "id" is not written). ns and queue are kept for filtering. Returns the id, or 0 when
 * the event could not be stored (out of memory, or larger than max_bytes). */
uint64_t events_publish(struct events *ev, const char *type, const char *ns, const char *queue,
			json_t *data);

/* The newest id published so far (first_id - 1 before any). */
uint64_t events_last_id(struct events *ev);

/* Appends the SSE frames ("id: N\nevent: T\ndata: {...}\n\n") of events newer than *cursor
 * that match f to out, stopping before max_bytes would be passed (but always taking at least
 * one frame when there is one, if out has room for it), and advances *cursor past every event
 * it looked at. When the cursor is no longer in the ring, gap is filled in, a gap frame is
 * appended first and reading continues at the oldest event held. Returns the number of frames
 * appended (the gap frame included). */
int events_read(struct events *ev, uint64_t *cursor, const struct events_filter *f, struct buf *out,
		size_t max_bytes, struct events_gap *gap);

/* Bytes of frames newer than cursor (all events, unfiltered), or UINT64_MAX when the events
 * after cursor are no longer held: the reader has fallen out of the ring. */
uint64_t events_backlog(struct events *ev, uint64_t cursor);

/* Formats the SSE frame that reports a gap into out (a JSON "gap" event without an id). */
int events_gap_frame(const struct events_gap *gap, struct buf *out);

struct events_stats {
	uint64_t published, held, bytes, oldest_id, last_id;
};
void events_stats_get(struct events *ev, struct events_stats *ret);
