#include "events.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVENTS_DEFAULT_MAX 4096
#define EVENTS_DEFAULT_BYTES (4u * 1024 * 1024)

struct ev_slot {
	uint64_t id;
	uint64_t cum; /* bytes of all frames published up to and including this one */
	char *frame;  /* one allocation: frame, then ns and queue */
	size_t len;
	const char *ns, *queue;
};

struct events {
	struct events_cfg cfg;
	pthread_mutex_t lock;
	struct ev_slot *ring;
	size_t head, count; /* oldest slot, number held */
	uint64_t next_id, cum, bytes, published;
};

struct events *events_new(const struct events_cfg *cfg)
{
	struct events *ev = calloc(1, sizeof(*ev));
	if (!ev)
		return NULL;
	ev->cfg = *cfg;
	if (!ev->cfg.max_events)
		ev->cfg.max_events = EVENTS_DEFAULT_MAX;
	if (!ev->cfg.max_bytes)
		ev->cfg.max_bytes = EVENTS_DEFAULT_BYTES;
	ev->next_id = ev->cfg.first_id ? ev->cfg.first_id : (uint64_t)util_now_ms() * 1000u;
	ev->ring = calloc(ev->cfg.max_events, sizeof(*ev->ring));
	if (!ev->ring) {
		free(ev);
		return NULL;
	}
	pthread_mutex_init(&ev->lock, NULL);
	return ev;
}

void events_free(struct events *ev)
{
	if (!ev)
		return;
	for (size_t i = 0; i < ev->count; i++)
		free(ev->ring[(ev->head + i) % ev->cfg.max_events].frame);
	free(ev->ring);
	pthread_mutex_destroy(&ev->lock);
	free(ev);
}

/* Caller holds lock. */
static void events_drop_oldest(struct events *ev)
{
	struct ev_slot *s = &ev->ring[ev->head];
	ev->bytes -= s->len;
	free(s->frame);
	memset(s, 0, sizeof(*s));
	ev->head = (ev->head + 1) % ev->cfg.max_events;
	ev->count--;
}

uint64_t events_publish(struct events *ev, const char *type, const char *ns, const char *queue,
			json_t *data)
{
	_cleanup_free_ char *js = json_dumps(data, JSON_COMPACT);
	size_t nsl = strlen(ns ? ns : ""), ql = strlen(queue ? queue : ""), len, cap;
	char *frame;
	uint64_t id;
	struct ev_slot *s;
	int n;

	if (!js)
		return 0;
	/* The id is only known under the lock; leave room for 20 digits. */
	cap = strlen(js) + strlen(type) + 64;
	frame = malloc(cap + nsl + ql + 2);
	if (!frame)
		return 0;
	pthread_mutex_lock(&ev->lock);
	id = ev->next_id;
	n = snprintf(frame, cap, "id: %llu\nevent: %s\ndata: %s\n\n", (unsigned long long)id, type,
		     js);
	len = (size_t)n;
	if (n < 0 || len >= cap || len > ev->cfg.max_bytes) {
		pthread_mutex_unlock(&ev->lock);
		free(frame);
		return 0;
	}
	memcpy(frame + len + 1, ns ? ns : "", nsl + 1);
	memcpy(frame + len + 2 + nsl, queue ? queue : "", ql + 1);
	while (ev->count == ev->cfg.max_events ||
	       (ev->count && ev->bytes + len > ev->cfg.max_bytes))
		events_drop_oldest(ev);
	s = &ev->ring[(ev->head + ev->count) % ev->cfg.max_events];
	ev->cum += len;
	*s = (struct ev_slot){ .id = id,
			       .cum = ev->cum,
			       .frame = frame,
			       .len = len,
			       .ns = frame + len + 1,
			       .queue = frame + len + 2 + nsl };
	ev->count++;
	ev->bytes += len;
	ev->next_id++;
	ev->published++;
	pthread_mutex_unlock(&ev->lock);
	if (ev->cfg.notify)
		ev->cfg.notify(ev->cfg.ud);
	return id;
}

uint64_t events_last_id(struct events *ev)
{
	uint64_t id;
	pthread_mutex_lock(&ev->lock);
	id = ev->next_id - 1;
	pthread_mutex_unlock(&ev->lock);
	return id;
}

/* Caller holds lock. */
static uint64_t events_oldest(struct events *ev)
{
	return ev->count ? ev->ring[ev->head].id : ev->next_id;
}

static int events_match(const struct ev_slot *s, const struct events_filter *f)
{
	if (!f)
		return 1;
	if (f->ns && f->ns[0] && strcmp(f->ns, s->ns) != 0)
		return 0;
	if (f->queue && f->queue[0] && strcmp(f->queue, s->queue) != 0)
		return 0;
	return 1;
}

int events_read(struct events *ev, uint64_t *cursor, const struct events_filter *f, struct buf *out,
		size_t max_bytes, struct events_gap *gap)
{
	uint64_t oldest, last;
	int n = 0;

	memset(gap, 0, sizeof(*gap));
	pthread_mutex_lock(&ev->lock);
	oldest = events_oldest(ev);
	last = ev->next_id - 1;
	if (*cursor + 1 < oldest || *cursor > last) {
		gap->gap = 1;
		gap->last_id = *cursor;
		gap->oldest_id = oldest;
		*cursor = oldest - 1;
		if (events_gap_frame(gap, out) == 0)
			n++;
	}
	while (*cursor < last) {
		const struct ev_slot *s =
			&ev->ring[(ev->head + (*cursor + 1 - oldest)) % ev->cfg.max_events];
		if (events_match(s, f)) {
			if (n > 0 && out->len + s->len > max_bytes)
				break;
			/* Checked first: a failed append would also drop the frames already there. */
			if (out->len + s->len > out->max || buf_append(out, s->frame, s->len) < 0)
				break;
			n++;
		}
		*cursor = s->id;
	}
	pthread_mutex_unlock(&ev->lock);
	return n;
}

uint64_t events_backlog(struct events *ev, uint64_t cursor)
{
	uint64_t oldest, last, r;
	pthread_mutex_lock(&ev->lock);
	oldest = events_oldest(ev);
	last = ev->next_id - 1;
	if (cursor >= last) {
		r = 0;
	} else if (cursor + 1 < oldest) {
		r = UINT64_MAX;
	} else {
		const struct ev_slot *s =
			&ev->ring[(ev->head + (cursor + 1 - oldest)) % ev->cfg.max_events];
		r = ev->cum - (s->cum - s->len);
	}
	pthread_mutex_unlock(&ev->lock);
	return r;
}

int events_gap_frame(const struct events_gap *gap, struct buf *out)
{
	char frame[512];
	int n = snprintf(frame, sizeof(frame),
			 "event: gap\ndata: {\"lastEventId\":\"%llu\",\"oldestEventId\":\"%llu\","
			 "\"message\":\"events after Last-Event-ID %llu are no longer held; "
			 "continuing with the oldest held event\"}\n\n",
			 (unsigned long long)gap->last_id, (unsigned long long)gap->oldest_id,
			 (unsigned long long)gap->last_id);
	if (n < 0 || (size_t)n >= sizeof(frame))
		return -EINVAL;
	return buf_append(out, frame, (size_t)n);
}

void events_stats_get(struct events *ev, struct events_stats *ret)
{
	pthread_mutex_lock(&ev->lock);
	ret->published = ev->published;
	ret->held = ev->count;
	ret->bytes = ev->bytes;
	ret->oldest_id = events_oldest(ev);
	ret->last_id = ev->next_id - 1;
	pthread_mutex_unlock(&ev->lock);
}
