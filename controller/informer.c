#include "informer.h"
#include "log.h"
#include "util.h"
#include "hmap.h"

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

/* One cached object: its JSON, deflated. */
struct ientry {
	char *key, *uid;
	unsigned char *blob;
	uint32_t blen, rawlen;
	long long rv;
	char *tag;              /* from the tagger, counted in tag_counts */
	char *idx;              /* "namespace/labelvalue" in the label index, or NULL */
};

struct informer {
	struct kube_client *kc;
	char *path;
	int64_t resync_ms;
	informer_handler_fn fn;
	void *ud;
	pthread_t thread;
	int started;
	volatile int stop;
	pthread_mutex_t lock;   /* guards everything below */
	struct hmap *cache;     /* key -> struct ientry */
	struct hmap *uids;      /* uid -> struct ientry */
	z_stream zs;            /* deflate state, reused under lock */
	int zs_ok;
	int (*tagger)(json_t *obj, char *out, size_t outsz);
	json_t *tag_counts;     /* tag -> count */
	char *label;
	json_t *label_index;    /* "ns/value" -> {key: true} */
	int synced;
	char rv[64];
	int64_t backoff_ms;
	struct informer_stats stats;
};

/* Strings every Task (and TaskQueue, Flow) repeats, so even a small object compresses well.
 * zlib prefers the most frequent strings at the end. */
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
	"\"reason\":\"Succeeded\",\"status\":\"True\",\"type\":\"Succeeded\"}],\"phase\":\"Succeeded\",\"startTime\":"
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
		obj = json_loadb(txt, e->rawlen, 0, NULL);
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
	inf->fn = fn;
	inf->ud = ud;
	inf->cache = hmap_new();
	inf->uids = hmap_new();
	inf->tag_counts = json_object();
	inf->label_index = json_object();
	pthread_mutex_init(&inf->lock, NULL);
	if (!inf->path || !inf->cache || !inf->uids) {
		informer_free(inf);
		return NULL;
	}
	return inf;
}

static void ie_free_cb(const char *key, void *value, void *ud)
{
	ie_free(value);
}

void informer_free(struct informer *inf)
{
	if (!inf)
		return;
	informer_stop(inf);
	if (inf->cache)
		hmap_foreach(inf->cache, ie_free_cb, NULL);
	hmap_free(inf->cache);
	hmap_free(inf->uids);
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
	json_object_del(json_object_get(md, "annotations"), "kubectl.kubernetes.io/last-applied-configuration");
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
	const char *rv = json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
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
					    json_integer(json_integer_value(json_object_get(inf->tag_counts, tag)) + 1));
	}
	if (inf->label) {
		const char *v = json_string_value(json_object_get(json_object_get(md, "labels"), inf->label));
		const char *ns = json_string_value(json_object_get(md, "namespace"));
		char ik[512];
		if (v && ns && snprintf(ik, sizeof(ik), "%s/%s", ns, v) < (int)sizeof(ik) && (e->idx = strdup(ik))) {
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
	if (!e || !(e->key = strdup(key)) || (uid && !(e->uid = strdup(uid))) || ie_pack(inf, obj, e) < 0) {
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
	if (ev == INFORMER_UPDATED && old && old->rv >= 0 && inf_rv(obj) >= 0 && inf_rv(obj) < old->rv &&
	    uid && old->uid && strcmp(uid, old->uid) == 0) {
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
	if (inf->fn)
		inf->fn(ev, key, obj, inf->ud);
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

/* Paged list. Returns 0, -ESTALE on 410, or another negative errno. */
static int inf_list(struct informer *inf, int consistent)
{
	json_t *seen = json_object();
	char path[2048], cont[1024] = "", esc[1024];
	const char *rv = NULL;
	int r = 0;

	inf->stats.lists++;
	for (;;) {
		struct kube_resp resp;
		const char *next;
		json_t *items;
		if (cont[0]) {
			kube_escape(cont, esc, sizeof(esc));
			snprintf(path, sizeof(path), "%s?limit=%d&continue=%s", inf->path, INF_PAGE, esc);
		} else if (!consistent && inf->rv[0]) {
			snprintf(path, sizeof(path), "%s?limit=%d&resourceVersion=%s&resourceVersionMatch=NotOlderThan",
				 inf->path, INF_PAGE, inf->rv);
		} else {
			snprintf(path, sizeof(path), "%s?limit=%d", inf->path, INF_PAGE);
		}
		r = kube_request(inf->kc, "GET", path, NULL, NULL, &resp);
		if (r < 0 || resp.status != 200) {
			log_warn("list failed", "path", inf->path, "reason", resp.reason, "error", resp.message);
			if (r == 0)
				r = resp.status == 410 ? -ESTALE : -EIO;
			kube_resp_free(&resp);
			break;
		}
		/* Store each page as it arrives and free it before the next: holding a whole
		 * large list as parsed trees costs ~8 KiB per object at peak. */
		items = json_object_get(resp.body, "items");
		{
			json_t *it;
			size_t i;
			char kb[512];
			json_array_foreach(items, i, it) {
				if (informer_key_of(it, kb, sizeof(kb)) == 0)
					json_object_set_new(seen, kb, json_true());
				inf_store(inf, INFORMER_ADDED, it);
			}
		}
		rv = json_string_value(json_object_get(json_object_get(resp.body, "metadata"), "resourceVersion"));
		next = json_string_value(json_object_get(json_object_get(resp.body, "metadata"), "continue"));
		if (rv)
			snprintf(inf->rv, sizeof(inf->rv), "%s", rv);
		snprintf(cont, sizeof(cont), "%s", next ? next : "");
		kube_resp_free(&resp);
		if (!cont[0])
			break;
	}
	if (r == 0) {
		inf_drop_unseen(inf, seen);
		pthread_mutex_lock(&inf->lock);
		inf->synced = 1;
		pthread_mutex_unlock(&inf->lock);
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

static int inf_on_event(json_t *ev, void *ud)
{
	struct inf_watch *w = ud;
	struct informer *inf = w->inf;
	const char *type = json_string_value(json_object_get(ev, "type"));
	json_t *obj = json_object_get(ev, "object");
	const char *rv = json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));

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
	if (rv)
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
	inf_sleep(inf, d + d * j / 255);   /* jitter 1.0 */
}

static void inf_resync(struct informer *inf)
{
	json_t *keys = informer_keys(inf), *k;
	size_t i;
	json_array_foreach(keys, i, k)
		inf->fn(INFORMER_RESYNC, json_string_value(k), NULL, inf->ud);
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
		snprintf(path, sizeof(path), "%s?watch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%d",
			 inf->path, inf->rv, 300 + rnd * 300 / 255);
		started = util_mono_ms();
		pthread_mutex_lock(&inf->lock);
		inf->stats.watches++;
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
		} else if (r < 0 || resp.status != 200) {
			/* Refused, reset or server gone: back off and re-watch from the same
			 * resourceVersion; only an error the server reports forces a relist. */
			pthread_mutex_lock(&inf->lock);
			inf->stats.watch_errors++;
			pthread_mutex_unlock(&inf->lock);
			log_warn("watch ended with an error", "path", inf->path, "error", resp.message);
			if (resp.status >= 400 && resp.status != 429 && resp.status != 401)
				need_list = 1;
			inf_backoff(inf);
		} else if (w.events == 0 && util_mono_ms() - started < 1000) {
			inf_backoff(inf);   /* a very short empty watch is an error (client-go) */
		}
		kube_resp_free(&resp);
		/* The resync timer also needs a chance while events flow; the watch returns at
		 * least every 10 minutes, so resync periods are honoured to that granularity. */
	}
	return NULL;
}

int informer_start(struct informer *inf)
{
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

void informer_foreach(struct informer *inf, void (*fn)(const char *key, json_t *obj, void *ud), void *ud)
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
