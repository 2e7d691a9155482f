#include "informer.h"
#include "log.h"
#include "util.h"
#include "hmap.h"
#include "jscan.h"

#include <stdatomic.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <malloc.h>

#define INF_PAGE 500
#define INF_BACKOFF_MIN_MS 800
#define INF_BACKOFF_MAX_MS 30000
#define INF_BAD_MAX 65536        /* undecodable objects remembered (to report each once) */
#define INF_STALL_GRACE_MS 60000 /* beyond the watch timeout before /readyz objects */
#define INF_CONTINUE_MAX 4096
#define INF_SELECTOR_MAX 256

/* One cached object: its JSON, deflated. */
struct ientry {
	char *key, *uid;
	unsigned char *blob;
	uint32_t blen, rawlen;
	long long rv;
	char *tag; /* from the tagger, counted in tag_counts */
	char *idx; /* "namespace/labelvalue" in the label index, or NULL */
};

struct informer {
	struct kube_client *kc;
	char *path;
	char selector_q[INF_SELECTOR_MAX * 3 +
			32]; /* "&labelSelector=..." escaped, or ""; set before start */
	int64_t resync_ms;
	struct {
		informer_handler_fn fn;
		void *ud;
	} handlers[INFORMER_MAX_HANDLERS];
	int nhandlers; /* fixed before informer_start: read without the lock */
	pthread_t thread;
	int started;
	atomic_int stop;
	pthread_mutex_t lock; /* guards everything below */
	struct hmap *cache;   /* key -> struct ientry */
	struct hmap *uids;    /* uid -> struct ientry */
	z_stream zs;          /* deflate state, reused under lock */
	int zs_ok;
	int (*tagger)(json_t *obj, char *out, size_t outsz);
	json_t *tag_counts; /* tag -> count */
	char *label;
	json_t *label_index; /* "ns/value" -> {key: true} */
	int synced;
	char rv[64];
	int64_t backoff_ms;
	struct informer_stats stats;
	void (*bad_fn)(const struct informer_bad *b, void *ud);
	void *bad_ud;
	struct hmap *bad;    /* uid -> (void *)1: undecodable objects already reported */
	int64_t progress_ms; /* monotonic: the last time the list or watch delivered */
	int64_t watch_timeout_ms;
};

/* Strings every Task (and TaskQueue, Flow) repeats, so even a small object compresses well
 * (the conditions of a finished task, in the order conditions.c writes them, cost 23 bytes more
 * with them here, 52 without). zlib prefers the most frequent strings at the end. */
static const char inf_dict[] =
	"\"ownerReferences\":[{\"apiVersion\":\"tasked.dev/v1alpha1\",\"blockOwnerDeletion\":true,\"controller\":true,"
	"\"kind\":\"Flow\",\"tasked.dev/flow-task\":\"tasked.dev/flow\":\"labels\":{\"dependsOn\":[\"when\":\"env\":[{\"name\":"
	"\"value\":\"valueFrom\":{\"queueSecret\":\"queue\":\"priority\":\"retries\":{\"limit\":\"timeoutSeconds\":"
	"\"runnerSelector\":{\"pool\":\"default\"},\"input\":\"output\":{},\"outputTruncated\":false,\"httpStatus\":"
	"\"nextRetryTime\":null,\"message\":\"exited with code \",\"reason\":\"ExitCode\",\"reason\":\"Succeeded\","
	"\"message\":\"completed\",\"logTail\":\"\",\"exitCode\":0,\"attempts\":1,\"observedGeneration\":1,"
	"\"attemptHistory\":[{\"attempt\":1,\"completionTime\":\"2026-01-01T00:00:00Z\",\"exitCode\":0,\"reason\":"
	"\"Succeeded\",\"runner\":\"\",\"startTime\":\"2026-01-01T00:00:00Z\"}],\"completionTime\":\"2026-01-01T00:00:00Z\","
	"\"conditions\":[{\"lastTransitionTime\":\"2026-01-01T00:00:00Z\",\"message\":\"completed\",\"observedGeneration\":1,"
	"\"reason\":\"Succeeded\",\"status\":\"True\",\"type\":\"Succeeded\"},"
	"{\"lastTransitionTime\":\"2026-01-01T00:00:00Z\",\"message\":\"completed\",\"observedGeneration\":1,\"reason\":\"Succeeded\",\"status\":\"True\",\"type\":\"Ready\"},"
	"{\"lastTransitionTime\":\"2026-01-01T00:00:00Z\",\"message\":\"finished\",\"observedGeneration\":1,\"reason\":\"Succeeded\",\"status\":\"False\",\"type\":\"Reconciling\"},"
	"{\"lastTransitionTime\":\"2026-01-01T00:00:00Z\",\"message\":\"finished\",\"observedGeneration\":1,\"reason\":\"Succeeded\",\"status\":\"False\",\"type\":\"Stalled\"},"
	"{\"lastTransitionTime\":\"2026-01-01T00:00:00Z\",\"message\":\"completed\",\"observedGeneration\":1,\"reason\":\"Succeeded\",\"status\":\"True\",\"type\":\"Completed\"}],\"phase\":\"Succeeded\",\"startTime\":"
	"\"spec\":{\"shell\":{\"command\":[\"status\":{\"phase\":\"Running\",\"runner\":\""
	"{\"apiVersion\":\"tasked.dev/v1alpha1\",\"kind\":\"Task\",\"metadata\":{\"creationTimestamp\":\"2026-01-01T00:00:00Z\","
	"\"generation\":1,\"name\":\"\",\"namespace\":\"default\",\"resourceVersion\":\"\",\"uid\":\"";

static int ie_pack(struct informer *inf, json_t *obj, struct ientry *e)
{
	char *txt = json_dumps(obj, JSON_COMPACT);
	size_t n, cap;
	unsigned char *out;

	if (!txt)
		return -ENOMEM;
	n = strlen(txt);
	if (!inf->zs_ok) {
		memset(&inf->zs, 0, sizeof(inf->zs));
		if (deflateInit2(&inf->zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
			free(txt);
			return -ENOMEM;
		}
		inf->zs_ok = 1;
	} else {
		deflateReset(&inf->zs);
	}
	deflateSetDictionary(&inf->zs, (const Bytef *)inf_dict, sizeof(inf_dict) - 1);
	cap = deflateBound(&inf->zs, (uLong)n);
	out = malloc(cap);
	if (!out) {
		free(txt);
		return -ENOMEM;
	}
	inf->zs.next_in = (Bytef *)txt;
	inf->zs.avail_in = (uInt)n;
	inf->zs.next_out = out;
	inf->zs.avail_out = (uInt)cap;
	if (deflate(&inf->zs, Z_FINISH) != Z_STREAM_END) {
		free(out);
		free(txt);
		return -EIO;
	}
	free(txt);
	e->blen = (uint32_t)(cap - inf->zs.avail_out);
	e->rawlen = (uint32_t)n;
	e->blob = realloc(out, e->blen) ?: out;
	return 0;
}

static json_t *ie_unpack(const struct ientry *e)
{
	z_stream zs;
	char *txt;
	json_t *obj = NULL;
	int r;

	if (!e)
		return NULL;
	txt = malloc((size_t)e->rawlen + 1);
	if (!txt)
		return NULL;
	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, -15) != Z_OK) {
		free(txt);
		return NULL;
	}
	inflateSetDictionary(&zs, (const Bytef *)inf_dict, sizeof(inf_dict) - 1);
	zs.next_in = e->blob;
	zs.avail_in = e->blen;
	zs.next_out = (Bytef *)txt;
	zs.avail_out = e->rawlen;
	r = inflate(&zs, Z_FINISH);
	inflateEnd(&zs);
	if (r == Z_STREAM_END)
		obj = kube_json_loadb(txt, e->rawlen, NULL);
	free(txt);
	return obj;
}

static void ie_free(struct ientry *e)
{
	if (!e)
		return;
	free(e->key);
	free(e->uid);
	free(e->blob);
	free(e->tag);
	free(e->idx);
	free(e);
}

int informer_key_of(json_t *obj, char *out, size_t outsz)
{
	json_t *md = json_object_get(obj, "metadata");
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));
	int n;
	if (!name)
		return -EINVAL;
	n = ns ? snprintf(out, outsz, "%s/%s", ns, name) : snprintf(out, outsz, "%s", name);
	return n < 0 || (size_t)n >= outsz ? -ENAMETOOLONG : 0;
}

struct informer *informer_new(struct kube_client *kc, const char *path, int64_t resync_ms,
			      informer_handler_fn fn, void *ud)
{
	struct informer *inf = calloc(1, sizeof(*inf));
	if (!inf)
		return NULL;
	inf->kc = kc;
	inf->path = strdup(path);
	inf->resync_ms = resync_ms;
	if (fn)
		(void)informer_add_handler(inf, fn, ud);
	inf->cache = hmap_new();
	inf->uids = hmap_new();
	inf->bad = hmap_new();
	inf->tag_counts = json_object();
	inf->label_index = json_object();
	pthread_mutex_init(&inf->lock, NULL);
	if (!inf->path || !inf->cache || !inf->uids || !inf->bad) {
		informer_free(inf);
		return NULL;
	}
	return inf;
}

/* A path may carry a query of its own (e.g. "?labelSelector=..."); list and watch add to it. */
static const char *inf_sep(const struct informer *inf)
{
	return strchr(inf->path, '?') ? "&" : "?";
}

static void ie_free_cb(const char *key, void *value, void *ud) { ie_free(value); }

void informer_free(struct informer *inf)
{
	if (!inf)
		return;
	informer_stop(inf);
	if (inf->cache)
		hmap_foreach(inf->cache, ie_free_cb, NULL);
	hmap_free(inf->cache);
	hmap_free(inf->uids);
	hmap_free(inf->bad);
	if (inf->zs_ok)
		deflateEnd(&inf->zs);
	json_decref(inf->tag_counts);
	json_decref(inf->label_index);
	free(inf->label);
	pthread_mutex_destroy(&inf->lock);
	free(inf->path);
	free(inf);
}

void informer_set_tagger(struct informer *inf, int (*tagger)(json_t *obj, char *out, size_t outsz))
{
	inf->tagger = tagger;
}

void informer_index_label(struct informer *inf, const char *label)
{
	free(inf->label);
	inf->label = strdup(label);
}

/* Drops what a controller never reads, so the cache stays small. */
static void inf_trim(json_t *obj)
{
	json_t *md = json_object_get(obj, "metadata");
	json_object_del(md, "managedFields");
	json_object_del(json_object_get(md, "annotations"),
			"kubectl.kubernetes.io/last-applied-configuration");
	if (json_object_size(json_object_get(md, "annotations")) == 0)
		json_object_del(md, "annotations");
}

static const char *inf_uid(json_t *obj)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"), "uid"));
}

/* resourceVersion as an integer, or -1 when absent or not numeric. */
static long long inf_rv(json_t *obj)
{
	const char *rv = json_string_value(
		json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
	char *end;
	long long v;
	if (!rv || !*rv)
		return -1;
	v = strtoll(rv, &end, 10);
	return *end ? -1 : v;
}

/* Caller holds lock: take e's tag and index entries out of the books. */
static void ie_unaccount(struct informer *inf, struct ientry *e)
{
	if (e->tag) {
		json_int_t n = json_integer_value(json_object_get(inf->tag_counts, e->tag)) - 1;
		if (n > 0)
			json_object_set_new(inf->tag_counts, e->tag, json_integer(n));
		else
			json_object_del(inf->tag_counts, e->tag);
	}
	if (e->idx) {
		json_t *set = json_object_get(inf->label_index, e->idx);
		json_object_del(set, e->key);
		if (json_object_size(set) == 0)
			json_object_del(inf->label_index, e->idx);
	}
	if (e->uid && hmap_get(inf->uids, e->uid) == e)
		hmap_del(inf->uids, e->uid);
}

static void ie_account(struct informer *inf, struct ientry *e, json_t *obj)
{
	char tag[256];
	json_t *md = json_object_get(obj, "metadata");
	if (inf->tagger && inf->tagger(obj, tag, sizeof(tag)) == 0) {
		e->tag = strdup(tag);
		if (e->tag)
			json_object_set_new(inf->tag_counts, tag,
					    json_integer(json_integer_value(json_object_get(
								 inf->tag_counts, tag)) +
							 1));
	}
	if (inf->label) {
		const char *v = json_string_value(
			json_object_get(json_object_get(md, "labels"), inf->label));
		const char *ns = json_string_value(json_object_get(md, "namespace"));
		char ik[512];
		if (v && ns && snprintf(ik, sizeof(ik), "%s/%s", ns, v) < (int)sizeof(ik) &&
		    (e->idx = strdup(ik))) {
			json_t *set = json_object_get(inf->label_index, ik);
			if (!set) {
				set = json_object();
				json_object_set_new(inf->label_index, ik, set);
			}
			json_object_set_new(set, e->key, json_true());
		}
	}
	if (e->uid)
		hmap_put(inf->uids, e->uid, e);
}

/* Caller holds lock. Replaces (or adds) key's entry with obj. Returns 0 or -ENOMEM. */
static int ie_replace(struct informer *inf, const char *key, json_t *obj)
{
	struct ientry *e = calloc(1, sizeof(*e)), *old;
	const char *uid = inf_uid(obj);
	if (!e || !(e->key = strdup(key)) || (uid && !(e->uid = strdup(uid))) ||
	    ie_pack(inf, obj, e) < 0) {
		ie_free(e);
		return -ENOMEM;
	}
	e->rv = inf_rv(obj);
	old = hmap_get(inf->cache, key);
	if (old)
		ie_unaccount(inf, old);
	if (hmap_put(inf->cache, key, e) == (void *)-1) {
		if (old)
			ie_account(inf, old, obj);
		ie_free(e);
		return -ENOMEM;
	}
	ie_account(inf, e, obj);
	ie_free(old);
	return 0;
}

static void inf_store(struct informer *inf, enum informer_event ev, json_t *obj)
{
	char key[512];
	const char *uid = inf_uid(obj);
	struct ientry *old;

	if (informer_key_of(obj, key, sizeof(key)) < 0)
		return;
	inf_trim(obj);
	pthread_mutex_lock(&inf->lock);
	inf->stats.events++;
	old = hmap_get(inf->cache, key);
	/* A watch event older than what the controller itself wrote (informer_mutate) must not
	 * roll the cache back. */
	if (ev == INFORMER_UPDATED && old && old->rv >= 0 && inf_rv(obj) >= 0 &&
	    inf_rv(obj) < old->rv && uid && old->uid && strcmp(uid, old->uid) == 0) {
		pthread_mutex_unlock(&inf->lock);
		return;
	}
	if (ev == INFORMER_DELETED) {
		if (old) {
			ie_unaccount(inf, old);
			hmap_del(inf->cache, key);
			ie_free(old);
		}
	} else {
		if (ev == INFORMER_ADDED && old)
			ev = INFORMER_UPDATED;
		ie_replace(inf, key, obj);
	}
	pthread_mutex_unlock(&inf->lock);
	for (int i = 0; i < inf->nhandlers; i++)
		inf->handlers[i].fn(ev, key, obj, inf->handlers[i].ud);
}

int informer_add_handler(struct informer *inf, informer_handler_fn fn, void *ud)
{
	if (!fn || inf->nhandlers >= INFORMER_MAX_HANDLERS)
		return -ENOSPC;
	inf->handlers[inf->nhandlers].fn = fn;
	inf->handlers[inf->nhandlers].ud = ud;
	inf->nhandlers++;
	return 0;
}

static void collect_key(const char *key, void *value, void *ud)
{
	json_array_append_new(ud, json_string(key));
}

/* After a complete list: what the cache holds but the list did not have is delivered as
 * DELETED. */
static void inf_drop_unseen(struct informer *inf, json_t *seen)
{
	json_t *keys = json_array(), *gone = json_array(), *k, *obj;
	size_t i;

	pthread_mutex_lock(&inf->lock);
	hmap_foreach(inf->cache, collect_key, keys);
	json_array_foreach(keys, i, k) {
		if (!json_object_get(seen, json_string_value(k))) {
			json_t *o = ie_unpack(hmap_get(inf->cache, json_string_value(k)));
			if (o)
				json_array_append_new(gone, o);
		}
	}
	pthread_mutex_unlock(&inf->lock);
	json_array_foreach(gone, i, obj)
		inf_store(inf, INFORMER_DELETED, obj);
	json_decref(keys);
	json_decref(gone);
}

static void inf_progress(struct informer *inf)
{
	pthread_mutex_lock(&inf->lock);
	inf->progress_ms = util_mono_ms();
	pthread_mutex_unlock(&inf->lock);
}

/* Drops key's cached copy, delivering it as INFORMER_DELETED. */
static void inf_drop_key(struct informer *inf, const char *key)
{
	json_t *o;
	pthread_mutex_lock(&inf->lock);
	o = ie_unpack(hmap_get(inf->cache, key));
	pthread_mutex_unlock(&inf->lock);
	if (o)
		inf_store(inf, INFORMER_DELETED, o);
	json_decref(o);
}

struct inf_ident {
	char ns[256], name[256], uid[128], rv[64], phase[64], reason[128];
	int64_t generation;
};

/* Names the object whose text is [vs, ve) with the bounded scanner: what the tree parser
 * refused may be nested arbitrarily deep, the scanner counts instead of recursing. */
static void inf_ident(const char *buf, size_t vs, size_t ve, struct inf_ident *id)
{
	static const char *const paths[][3] = {
		{ "metadata", "namespace", NULL }, { "metadata", "name", NULL },
		{ "metadata", "uid", NULL },       { "metadata", "resourceVersion", NULL },
		{ "status", "phase", NULL },       { "status", "reason", NULL },
	};
	char *outs[] = { id->ns, id->name, id->uid, id->rv, id->phase, id->reason };
	size_t sizes[] = { sizeof(id->ns), sizeof(id->name),  sizeof(id->uid),
			   sizeof(id->rv), sizeof(id->phase), sizeof(id->reason) };
	static const char *const p_gen[] = { "metadata", "generation", NULL };
	size_t s, e;
	for (size_t i = 0; i < UTIL_ARRAY_SIZE(outs); i++) {
		outs[i][0] = '\0';
		if (jscan_path(buf, ve, vs, paths[i], &s, &e) == 0)
			(void)jscan_string(buf, s, e, outs[i], sizes[i]);
	}
	id->generation = 0;
	if (jscan_path(buf, ve, vs, p_gen, &s, &e) == 0 && e - s < 19)
		for (; s < e && buf[s] >= '0' && buf[s] <= '9';
		     s++) /* the span may end the buffer */
			id->generation = id->generation * 10 + (buf[s] - '0');
}

/* An object that does not decode: skipped, any older copy dropped, reported once per UID (log,
 * counter, the owner's callback). type is the watch event's type, NULL for a list item. */
static void inf_undecodable(struct informer *inf, const char *type, const char *buf, size_t vs,
			    size_t ve, const char *error)
{
	struct inf_ident id;
	char key[520];
	int deleted = type && strcmp(type, "DELETED") == 0, fresh = 0, known = 0, oom = 0;

	inf_ident(buf, vs, ve, &id);
	if (type && id.rv[0])
		snprintf(inf->rv, sizeof(inf->rv), "%s", id.rv);
	pthread_mutex_lock(&inf->lock);
	if (id.uid[0]) {
		known = hmap_get(inf->bad, id.uid) != NULL;
		if (deleted && known) {
			hmap_del(inf->bad, id.uid);
		} else if (!deleted && !known) {
			fresh = 1;
			oom = hmap_size(inf->bad) < INF_BAD_MAX &&
			      hmap_put(inf->bad, id.uid, (void *)1) == (void *)-1;
		}
	} else {
		fresh = !deleted;
	}
	if (fresh)
		inf->stats.undecodable++;
	pthread_mutex_unlock(&inf->lock);
	if (oom)
		log_warn("out of memory remembering an undecodable object", "uid", id.uid);
	if (fresh)
		log_warn("skipping an object that cannot be decoded", "path", inf->path,
			 "namespace", id.ns, "name", id.name, "uid", id.uid, "error",
			 error ? error : "");
	else if (deleted && known)
		log_info("an undecodable object was deleted", "path", inf->path, "namespace", id.ns,
			 "name", id.name, "uid", id.uid);
	if (id.name[0] && snprintf(key, sizeof(key), id.ns[0] ? "%s/%s" : "%s%s", id.ns, id.name) <
				  (int)sizeof(key))
		inf_drop_key(inf, key);
	if (fresh && inf->bad_fn) {
		struct informer_bad b = { .namespace_ = id.ns,
					  .name = id.name,
					  .uid = id.uid,
					  .phase = id.phase,
					  .reason = id.reason,
					  .error = error ? error : "",
					  .generation = id.generation };
		inf->bad_fn(&b, inf->bad_ud);
	}
}

/* A string member by path into out; -ENOENT when absent, another negative errno when it is
 * there but unusable (so a page is never read as shorter than it is). */
static int inf_page_string(json_t *body, const char *raw, size_t rawlen, const char *const *path,
			   char *out, size_t outsz)
{
	size_t s, e;
	int r;
	out[0] = '\0';
	if (body) {
		json_t *v = body;
		for (; *path && v; path++)
			v = json_object_get(v, *path);
		if (!v)
			return -ENOENT;
		if (!json_is_string(v) || json_string_length(v) >= outsz ||
		    strlen(json_string_value(v)) != json_string_length(v))
			return -EBADMSG;
		memcpy(out, json_string_value(v), json_string_length(v) + 1);
		return 0;
	}
	r = jscan_path(raw, rawlen, 0, path, &s, &e);
	return r < 0 ? r : jscan_string(raw, s, e, out, outsz);
}

/* One page of a list: its items into the cache and their keys into seen; its resourceVersion
 * and continue token out ("" when absent). body is the decoded page, or NULL with raw set when
 * the page did not decode (jansson refuses the whole text when one item nests too deep): then
 * the scanner splits the items and each is decoded on its own, so one object never fails a
 * list. Returns 0 or -EBADMSG. */
static int inf_page(struct informer *inf, json_t *body, const char *raw, size_t rawlen,
		    json_t *seen, char *rv, size_t rvsz, char *cont, size_t contsz)
{
	static const char *const p_rv[] = { "metadata", "resourceVersion", NULL };
	static const char *const p_cont[] = { "metadata", "continue", NULL };
	static const char *const p_items[] = { "items", NULL };
	char kb[512];
	int r;

	if (((r = inf_page_string(body, raw, rawlen, p_rv, rv, rvsz)) < 0 && r != -ENOENT) ||
	    ((r = inf_page_string(body, raw, rawlen, p_cont, cont, contsz)) < 0 && r != -ENOENT))
		return -EBADMSG;
	if (body) {
		json_t *items = json_object_get(body, "items"), *it;
		size_t i;
		if (!json_is_array(items) && !json_is_null(items) && items)
			return -EBADMSG;
		json_array_foreach(items, i, it) {
			if (informer_key_of(it, kb, sizeof(kb)) == 0)
				json_object_set_new(seen, kb, json_true());
			inf_store(inf, INFORMER_ADDED, it);
		}
		return 0;
	} else {
		size_t s, e, pos, vs, ve;
		r = jscan_path(raw, rawlen, 0, p_items, &s, &e);
		if (r == -ENOENT || (r == 0 && e - s == 4 && memcmp(raw + s, "null", 4) == 0))
			return 0;
		if (r < 0)
			return -EBADMSG;
		pos = s;
		while ((r = jscan_next(raw, e, &pos, &vs, &ve)) == 1) {
			json_error_t jerr;
			json_t *it = kube_json_loadb(raw + vs, ve - vs, &jerr);
			if (!it) {
				inf_undecodable(inf, NULL, raw, vs, ve, jerr.text);
				continue;
			}
			if (informer_key_of(it, kb, sizeof(kb)) == 0)
				json_object_set_new(seen, kb, json_true());
			inf_store(inf, INFORMER_ADDED, it);
			json_decref(it);
		}
		return r < 0 ? -EBADMSG : 0;
	}
}

static const char *inf_sel(const struct informer *inf) { return inf->selector_q; }

int informer_set_selector(struct informer *inf, const char *selector)
{
	char esc[INF_SELECTOR_MAX * 3 + 1];

	if (!selector || !selector[0]) {
		inf->selector_q[0] = '\0';
		return 0;
	}
	if (strlen(selector) > INF_SELECTOR_MAX || kube_escape(selector, esc, sizeof(esc)) < 0)
		return -ENAMETOOLONG;
	snprintf(inf->selector_q, sizeof(inf->selector_q), "&labelSelector=%s", esc);
	return 0;
}

/* A list's request path and continue token. On the heap: on the stack, stack-clash probing
 * touched all 30 KiB of it in every informer's thread at the first list, resident for good. */
struct inf_list_buf {
	char path[INF_CONTINUE_MAX * 3 + 1024], cont[INF_CONTINUE_MAX], esc[INF_CONTINUE_MAX * 3];
};

/* Paged list. Returns 0, -ESTALE on 410, or another negative errno. */
static int inf_list(struct informer *inf, int consistent)
{
	_cleanup_free_ struct inf_list_buf *b = malloc(sizeof(*b));
	if (!b)
		return -ENOMEM;
	char *path = b->path, *cont = b->cont, *esc = b->esc;
	const size_t path_sz = sizeof(b->path), cont_sz = sizeof(b->cont), esc_sz = sizeof(b->esc);
	json_t *seen = json_object();
	char rv[sizeof(inf->rv)];
	int r = 0;

	cont[0] = 0;
	inf->stats.lists++;
	for (;;) {
		struct kube_resp resp;
		if (cont[0]) {
			if (kube_escape(cont, esc, esc_sz) < 0) {
				r = -ENAMETOOLONG;
				break;
			}
			snprintf(path, path_sz, "%s%slimit=%d&continue=%s%s", inf->path,
				 inf_sep(inf), INF_PAGE, esc, inf_sel(inf));
		} else if (!consistent && inf->rv[0]) {
			snprintf(
				path, path_sz,
				"%s%slimit=%d&resourceVersion=%s&resourceVersionMatch=NotOlderThan%s",
				inf->path, inf_sep(inf), INF_PAGE, inf->rv, inf_sel(inf));
		} else {
			snprintf(path, path_sz, "%s%slimit=%d%s", inf->path, inf_sep(inf), INF_PAGE,
				 inf_sel(inf));
		}
		r = kube_request(inf->kc, "GET", path, NULL, NULL, &resp);
		if (r == -EBADMSG && resp.status == 200 && resp.raw) {
			/* Store each page as it arrives and free it before the next: holding a
			 * whole large list as parsed trees costs ~8 KiB per object at peak. */
			r = inf_page(inf, NULL, resp.raw, resp.raw_len, seen, rv, sizeof(rv), cont,
				     cont_sz);
		} else if (r < 0 || resp.status != 200) {
			log_warn("list failed", "path", inf->path, "reason", resp.reason, "error",
				 resp.message);
			if (r == 0)
				r = resp.status == 410 ? -ESTALE : -EIO;
			kube_resp_free(&resp);
			break;
		} else {
			r = inf_page(inf, resp.body, NULL, 0, seen, rv, sizeof(rv), cont, cont_sz);
		}
		kube_resp_free(&resp);
		if (r < 0) {
			log_warn("list page is not a list", "path", inf->path);
			break;
		}
		if (rv[0])
			snprintf(inf->rv, sizeof(inf->rv), "%s", rv);
		if (!cont[0])
			break;
	}
	if (r == 0) {
		inf_drop_unseen(inf, seen);
		pthread_mutex_lock(&inf->lock);
		inf->synced = 1;
		pthread_mutex_unlock(&inf->lock);
		inf_progress(inf);
	}
	json_decref(seen);
	/* Give the parse garbage of a big list back to the system. */
	malloc_trim(0);
	return r;
}

struct inf_watch {
	struct informer *inf;
	int expired;
	int events;
};

static int inf_on_event(json_t *ev, const char *raw, size_t rawlen, const char *error, void *ud);

/* A watch line that did not decode: find its type and object with the scanner. When the object
 * alone decodes (the event wrapper was the level too many) it is applied as usual; otherwise it
 * is skipped and reported, and the watch goes on from its resourceVersion. */
static int inf_bad_line(struct inf_watch *w, const char *raw, size_t rawlen, const char *error)
{
	static const char *const p_type[] = { "type", NULL }, *const p_obj[] = { "object", NULL };
	struct informer *inf = w->inf;
	char type[32];
	size_t s, e;
	json_t *obj, *ev;
	int r;

	if (jscan_path(raw, rawlen, 0, p_type, &s, &e) < 0 ||
	    jscan_string(raw, s, e, type, sizeof(type)) < 0 ||
	    jscan_path(raw, rawlen, 0, p_obj, &s, &e) < 0) {
		pthread_mutex_lock(&inf->lock);
		inf->stats.undecodable++;
		pthread_mutex_unlock(&inf->lock);
		log_warn("skipping a watch line that is not an event", "path", inf->path, "error",
			 error);
		return 0;
	}
	w->events++;
	obj = kube_json_loadb(raw + s, e - s, NULL);
	if (obj && (ev = json_pack("{sssO}", "type", type, "object", obj))) {
		r = inf_on_event(ev, NULL, 0, NULL, w);
		json_decref(ev);
		json_decref(obj);
		return r;
	}
	json_decref(obj);
	if (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0 ||
	    strcmp(type, "DELETED") == 0) {
		inf_undecodable(inf, type, raw, s, e, error);
		inf->backoff_ms = 0;
		return 0;
	}
	/* An ERROR or BOOKMARK is a small object of the server's own: one that does not decode
	 * means the stream is not what it should be. */
	log_warn("watch sent an undecodable event", "path", inf->path, "type", type, "error",
		 error);
	return 1;
}

static int inf_on_event(json_t *ev, const char *raw, size_t rawlen, const char *error, void *ud)
{
	struct inf_watch *w = ud;
	struct informer *inf = w->inf;
	const char *type;
	json_t *obj;
	const char *rv;

	inf_progress(inf);
	if (!ev)
		return inf_bad_line(w, raw, rawlen, error);
	type = json_string_value(json_object_get(ev, "type"));
	obj = json_object_get(ev, "object");
	rv = json_string_value(
		json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
	if (!type || !json_is_object(obj))
		return 1;
	if (strcmp(type, "ERROR") == 0) {
		json_int_t code = json_integer_value(json_object_get(obj, "code"));
		const char *msg = json_string_value(json_object_get(obj, "message"));
		log_warn("watch error", "path", inf->path, "message", msg ? msg : "");
		w->expired = code == 410;
		return 1;
	}
	w->events++;
	if (strcmp(type, "ADDED") == 0)
		inf_store(inf, INFORMER_ADDED, obj);
	else if (strcmp(type, "MODIFIED") == 0)
		inf_store(inf, INFORMER_UPDATED, obj);
	else if (strcmp(type, "DELETED") == 0)
		inf_store(inf, INFORMER_DELETED, obj);
	/* BOOKMARK: only the resourceVersion moves. */
	if (rv && strlen(rv) < sizeof(inf->rv))
		snprintf(inf->rv, sizeof(inf->rv), "%s", rv);
	inf->backoff_ms = 0;
	return 0;
}

static void inf_sleep(struct informer *inf, int64_t ms)
{
	int64_t end = util_mono_ms() + ms;
	while (!inf->stop && util_mono_ms() < end)
		usleep(50000);
}

static void inf_backoff(struct informer *inf)
{
	int64_t d = inf->backoff_ms ? inf->backoff_ms * 2 : INF_BACKOFF_MIN_MS;
	unsigned char j;
	if (d > INF_BACKOFF_MAX_MS)
		d = INF_BACKOFF_MAX_MS;
	inf->backoff_ms = d;
	util_random(&j, 1);
	inf_sleep(inf, d + d * j / 255); /* jitter 1.0 */
}

static void inf_resync(struct informer *inf)
{
	json_t *keys = informer_keys(inf), *k;
	size_t i;
	json_array_foreach(keys, i, k)
		for (int h = 0; h < inf->nhandlers; h++)
			inf->handlers[h].fn(INFORMER_RESYNC, json_string_value(k), NULL,
					    inf->handlers[h].ud);
	json_decref(keys);
}

static void *inf_run(void *arg)
{
	struct informer *inf = arg;
	int need_list = 1, consistent = 0;
	int64_t last_resync = util_mono_ms();

	while (!inf->stop) {
		struct inf_watch w = { .inf = inf };
		struct kube_resp resp;
		char path[2048];
		unsigned char rnd;
		int64_t started;
		int r;

		if (need_list) {
			r = inf_list(inf, consistent);
			if (r == -ESTALE) {
				/* Our resourceVersion is too old: a consistent read from etcd. */
				pthread_mutex_lock(&inf->lock);
				inf->stats.relists_expired++;
				pthread_mutex_unlock(&inf->lock);
				log_info("relist after 410 Gone", "path", inf->path);
				consistent = 1;
				continue;
			}
			if (r < 0) {
				inf_backoff(inf);
				continue;
			}
			need_list = 0;
			consistent = 0;
		}
		if (inf->resync_ms > 0 && util_mono_ms() - last_resync >= inf->resync_ms) {
			inf_resync(inf);
			last_resync = util_mono_ms();
		}
		util_random(&rnd, 1);
		snprintf(
			path, sizeof(path),
			"%s%swatch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%d%s",
			inf->path, inf_sep(inf), inf->rv, 300 + rnd * 300 / 255, inf_sel(inf));
		started = util_mono_ms();
		pthread_mutex_lock(&inf->lock);
		inf->stats.watches++;
		inf->watch_timeout_ms = (int64_t)(300 + rnd * 300 / 255) * 1000;
		pthread_mutex_unlock(&inf->lock);
		r = kube_watch(inf->kc, path, inf_on_event, &w, &inf->stop, &resp);
		if (inf->stop) {
			kube_resp_free(&resp);
			break;
		}
		if (w.expired || resp.status == 410) {
			pthread_mutex_lock(&inf->lock);
			inf->stats.relists_expired++;
			pthread_mutex_unlock(&inf->lock);
			log_info("relist after 410 Gone", "path", inf->path);
			need_list = 1;
			consistent = 1;
		} else if (r == -ETIMEDOUT && resp.status == 200) {
			/* Accepted, then nothing to say for two minutes (no bookmark either): the API
			 * server is there and our resourceVersion is good; watch again at once. */
			log_debug("idle watch renewed", "path", inf->path);
			inf_progress(inf);
		} else if (r < 0 || resp.status != 200) {
			/* Refused, reset or server gone: back off and re-watch from the same
			 * resourceVersion; only an error the server reports forces a relist. */
			pthread_mutex_lock(&inf->lock);
			inf->stats.watch_errors++;
			pthread_mutex_unlock(&inf->lock);
			log_warn("watch ended with an error", "path", inf->path, "error",
				 resp.message);
			if (resp.status >= 400 && resp.status != 429 && resp.status != 401)
				need_list = 1;
			inf_backoff(inf);
		} else if (w.events == 0 && util_mono_ms() - started < 1000) {
			inf_backoff(inf); /* a very short empty watch is an error (client-go) */
		} else {
			inf_progress(inf); /* the server ended a healthy watch at its timeout */
		}
		kube_resp_free(&resp);
		/* The resync timer also needs a chance while events flow; the watch returns at
		 * least every 10 minutes, so resync periods are honoured to that granularity. */
	}
	return NULL;
}

int informer_start(struct informer *inf)
{
	inf->progress_ms = util_mono_ms();
	int r = pthread_create(&inf->thread, NULL, inf_run, inf);
	if (r)
		return -r;
	inf->started = 1;
	return 0;
}

void informer_stop(struct informer *inf)
{
	if (!inf->started)
		return;
	inf->stop = 1;
	pthread_join(inf->thread, NULL);
	inf->started = 0;
}

int informer_synced(struct informer *inf)
{
	int s;
	pthread_mutex_lock(&inf->lock);
	s = inf->synced;
	pthread_mutex_unlock(&inf->lock);
	return s;
}

json_t *informer_get(struct informer *inf, const char *key)
{
	json_t *o;
	pthread_mutex_lock(&inf->lock);
	o = ie_unpack(hmap_get(inf->cache, key));
	pthread_mutex_unlock(&inf->lock);
	return o;
}

char *informer_key_by_uid(struct informer *inf, const char *uid)
{
	struct ientry *e;
	char *r;
	pthread_mutex_lock(&inf->lock);
	e = hmap_get(inf->uids, uid);
	r = e ? strdup(e->key) : NULL;
	pthread_mutex_unlock(&inf->lock);
	return r;
}

struct foreach_ctx {
	void (*fn)(const char *key, json_t *obj, void *ud);
	void *ud;
};

static void foreach_one(const char *key, void *value, void *ud)
{
	struct foreach_ctx *c = ud;
	json_t *o = ie_unpack(value);
	if (o)
		c->fn(key, o, c->ud);
	json_decref(o);
}

void informer_foreach(struct informer *inf, void (*fn)(const char *key, json_t *obj, void *ud),
		      void *ud)
{
	struct foreach_ctx c = { .fn = fn, .ud = ud };
	pthread_mutex_lock(&inf->lock);
	hmap_foreach(inf->cache, foreach_one, &c);
	pthread_mutex_unlock(&inf->lock);
}

json_t *informer_keys(struct informer *inf)
{
	json_t *keys = json_array();
	pthread_mutex_lock(&inf->lock);
	hmap_foreach(inf->cache, collect_key, keys);
	pthread_mutex_unlock(&inf->lock);
	return keys;
}

json_t *informer_tag_counts(struct informer *inf)
{
	json_t *c;
	pthread_mutex_lock(&inf->lock);
	c = json_deep_copy(inf->tag_counts);
	pthread_mutex_unlock(&inf->lock);
	return c;
}

json_t *informer_keys_by_label(struct informer *inf, const char *ns, const char *value)
{
	json_t *keys = json_array(), *v;
	const char *k;
	char ik[512];
	snprintf(ik, sizeof(ik), "%s/%s", ns, value);
	pthread_mutex_lock(&inf->lock);
	json_object_foreach(json_object_get(inf->label_index, ik), k, v)
		json_array_append_new(keys, json_string(k));
	pthread_mutex_unlock(&inf->lock);
	return keys;
}

size_t informer_count(struct informer *inf)
{
	size_t n;
	pthread_mutex_lock(&inf->lock);
	n = hmap_size(inf->cache);
	pthread_mutex_unlock(&inf->lock);
	return n;
}

void informer_mutate(struct informer *inf, json_t *obj)
{
	char key[512];
	struct ientry *old;
	const char *uid = inf_uid(obj);

	if (!uid || informer_key_of(obj, key, sizeof(key)) < 0)
		return;
	inf_trim(obj);
	pthread_mutex_lock(&inf->lock);
	old = hmap_get(inf->cache, key);
	if (old && old->uid && strcmp(old->uid, uid) == 0 && inf_rv(obj) > old->rv)
		ie_replace(inf, key, obj);
	pthread_mutex_unlock(&inf->lock);
}

void informer_stats_get(struct informer *inf, struct informer_stats *ret)
{
	pthread_mutex_lock(&inf->lock);
	*ret = inf->stats;
	pthread_mutex_unlock(&inf->lock);
}

void informer_set_undecodable(struct informer *inf,
			      void (*fn)(const struct informer_bad *b, void *ud), void *ud)
{
	inf->bad_fn = fn;
	inf->bad_ud = ud;
}

int64_t informer_stall_rule(int64_t last_ms, int64_t now_ms, int64_t timeout_ms)
{
	int64_t d = now_ms - last_ms;
	return d > timeout_ms + INF_STALL_GRACE_MS ? d : 0;
}

int64_t informer_stalled_ms(struct informer *inf)
{
	int64_t last, to;
	pthread_mutex_lock(&inf->lock);
	last = inf->progress_ms;
	to = inf->watch_timeout_ms ? inf->watch_timeout_ms : 600000;
	pthread_mutex_unlock(&inf->lock);
	return inf->started ? informer_stall_rule(last, util_mono_ms(), to) : 0;
}

void informer_feed_watch_line(struct informer *inf, const char *line, size_t len)
{
	struct inf_watch w = { .inf = inf };
	json_error_t jerr;
	json_t *ev = kube_json_loadb(line, len, &jerr);
	(void)inf_on_event(ev, ev ? NULL : line, ev ? 0 : len, ev ? NULL : jerr.text, &w);
	json_decref(ev);
}

void informer_feed_list_page(struct informer *inf, const char *body, size_t len)
{
	json_t *seen = json_object(), *b;
	char rv[64], cont[INF_CONTINUE_MAX];
	json_error_t jerr;

	b = kube_json_loadb(body, len, &jerr);
	if (seen)
		(void)inf_page(inf, b, b ? NULL : body, len, seen, rv, sizeof(rv), cont,
			       sizeof(cont));
	json_decref(b);
	json_decref(seen);
}
