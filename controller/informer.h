#pragma once
/* List-and-watch cache for one resource, after client-go's reflector: paged list (500 per page),
 * watch from the list's resourceVersion with bookmarks and a randomized 5-10 min timeout,
 * re-watch without relisting after a clean end or a dropped connection (with backoff
 * 0.8 s doubling to 30 s), relist after 410 Gone, and periodic resync.
 *
 * The cache keeps each object compactly: managedFields and the last-applied annotation are
 * dropped, and the JSON is deflated with a preset dictionary (a finished Task costs a few hundred
 * bytes instead of ~7 KiB as a jansson tree). Lookups inflate and parse, so hot paths use the
 * per-object tag counts and the label index instead of scanning.
 *
 * One object never stops the cache: a watch line or list item that does not decode (see
 * kube_json_loadb) is skipped, named by a bounded scan of its text, logged and counted once per
 * UID and handed to the owner's callback (informer_set_undecodable); the watch goes on. */
#include "kube.h"

#include <jansson.h>
#include <stdint.h>

struct informer;

enum informer_event { INFORMER_ADDED, INFORMER_UPDATED, INFORMER_DELETED, INFORMER_RESYNC };

/* Called on the informer thread after the cache changed. obj is borrowed (NULL for
 * INFORMER_RESYNC, which only re-delivers the key). Keep it short: the usual handler just queues
 * the key. */
typedef void (*informer_handler_fn)(enum informer_event ev, const char *key, json_t *obj, void *ud);

/* undecodable: distinct objects skipped because they do not decode (see kube_json_loadb). */
struct informer_stats {
	uint64_t lists, relists_expired, watches, watch_errors, events, undecodable;
};

/* An object the informer could not decode, named by a bounded scan of its text (fields "" when
 * they could not be found). phase and reason are its status.phase and status.reason. */
struct informer_bad {
	const char *namespace_, *name, *uid, *phase, *reason, *error;
	int64_t generation; /* metadata.generation, 0 when not found */
};

#define INFORMER_MAX_HANDLERS 4

/* path is the collection, e.g. "/apis/tasked.dev/v1alpha1/tasks", optionally with a query such
 * as "?labelSelector=..." (percent-encoded). resync_ms 0 = never. fn (may
 * be NULL) is registered as the first handler. */
struct informer *informer_new(struct kube_client *kc, const char *path, int64_t resync_ms,
			      informer_handler_fn fn, void *ud);
/* Registers another handler; each event goes to every handler in the order registered, so each
 * consumer of a cache subscribes on its own instead of being chained through another. Before
 * informer_start only. 0, or -ENOSPC past INFORMER_MAX_HANDLERS. */
/* Lists and watches only objects matching this label selector (e.g. "tasked.dev/instance=a" or
 * "!tasked.dev/instance"). Before informer_start only. 0, -ENAMETOOLONG over 256 bytes. */
int informer_set_selector(struct informer *inf, const char *selector);
int informer_add_handler(struct informer *inf, informer_handler_fn fn, void *ud);
int informer_start(struct informer *inf);
void informer_stop(struct informer *inf);
void informer_free(struct informer *inf);
int informer_synced(struct informer *inf);
/* New reference to the cached object, or NULL. */
json_t *informer_get(struct informer *inf, const char *key);
/* New string with the key of the object with that UID, or NULL. */
char *informer_key_by_uid(struct informer *inf, const char *uid);
/* Calls fn for every cached object (parsed for the call, borrowed; under the cache lock: do not
 * call back in). Costs a parse per object: not for hot paths. */
void informer_foreach(struct informer *inf, void (*fn)(const char *key, json_t *obj, void *ud),
		      void *ud);
/* Returns a new array of every key (cheap: nothing is parsed). */
json_t *informer_keys(struct informer *inf);
/* Tags: a short string the tagger derives from each object (e.g. "queue|phase"); the informer
 * keeps how many cached objects carry each tag. Set before informer_start. */
void informer_set_tagger(struct informer *inf, int (*tagger)(json_t *obj, char *out, size_t outsz));
/* New object {tag: count}. */
json_t *informer_tag_counts(struct informer *inf);
/* Label index: objects carrying label are indexed by "namespace/value". Set before start. */
void informer_index_label(struct informer *inf, const char *label);
/* New array of the keys whose label has value in namespace ns. */
json_t *informer_keys_by_label(struct informer *inf, const char *ns, const char *value);
size_t informer_count(struct informer *inf);
/* Called on the informer thread, once per object (by UID) that does not decode, after it was
 * skipped (and any older copy dropped from the cache, delivered as INFORMER_DELETED). Set before
 * start. The object is also logged once and counted in informer_stats.undecodable. */
void informer_set_undecodable(struct informer *inf,
			      void (*fn)(const struct informer_bad *b, void *ud), void *ud);
/* 0 while the cache is fresh; otherwise the milliseconds since the watch last delivered
 * anything (an event, a bookmark, a clean end, a completed list), once that is longer than the
 * current watch's timeout: the watch is stuck and the cache may be stale (for /readyz). */
int64_t informer_stalled_ms(struct informer *inf);
/* The rule behind it, for tests: stalled when now - last > timeout + a grace period. */
int64_t informer_stall_rule(int64_t last_ms, int64_t now_ms, int64_t timeout_ms);
/* Test hooks (fuzzing, unit tests): run one watch line or one list page through the same
 * decoding and caching as the network path, without a server. */
void informer_feed_watch_line(struct informer *inf, const char *line, size_t len);
void informer_feed_list_page(struct informer *inf, const char *body, size_t len);
/* Puts an object the controller just wrote (e.g. a status patch response) into the cache if it
 * is newer than the cached one, so the next reconcile does not act on a stale copy (client-go's
 * MutationCache; resourceVersions compare as integers, as etcd3 issues them). Takes a reference
 * of its own. */
void informer_mutate(struct informer *inf, json_t *obj);
void informer_stats_get(struct informer *inf, struct informer_stats *ret);

/* "namespace/name" of an object into out. */
int informer_key_of(json_t *obj, char *out, size_t outsz);
