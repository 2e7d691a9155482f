#include "informer.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define INF_PAGE 500
#define INF_BACKOFF_MIN_MS 800
#define INF_BACKOFF_MAX_MS 30000

struct informer {
	struct kube_client *kc;
	char *path;
	int64_t resync_ms;
	informer_handler_fn fn;
	void *ud;
	pthread_t thread;
	int started;
	volatile int stop;
	pthread_mutex_t lock;   /* guards cache, uids, synced, stats */
	json_t *cache;          /* key -> object */
	json_t *uids;           /* uid -> key */
	int synced;
	char rv[64];
	int64_t backoff_ms;
	struct informer_stats stats;
};

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
	inf->cache = json_object();
	inf->uids = json_object();
	pthread_mutex_init(&inf->lock, NULL);
	if (!inf->path || !inf->cache || !inf->uids) {
		informer_free(inf);
		return NULL;
	}
	return inf;
}

void informer_free(struct informer *inf)
{
	if (!inf)
		return;
	informer_stop(inf);
	json_decref(inf->cache);
	json_decref(inf->uids);
	pthread_mutex_destroy(&inf->lock);
	free(inf->path);
	free(inf);
}

/* Drops what a controller never reads, so the cache stays small. */
static void inf_trim(json_t *obj)
{
	json_t *md = json_object_get(obj, "metadata");
	json_object_del(md, "managedFields");
	json_object_del(json_object_get(md, "annotations"), "kubectl.kubernetes.io/last-applied-configuration");
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

static void inf_store(struct informer *inf, enum informer_event ev, json_t *obj)
{
	char key[512];
	const char *uid = inf_uid(obj);
	json_t *old;

	if (informer_key_of(obj, key, sizeof(key)) < 0)
		return;
	inf_trim(obj);
	pthread_mutex_lock(&inf->lock);
	inf->stats.events++;
	old = json_object_get(inf->cache, key);
	/* A watch event older than what the controller itself wrote (informer_mutate) must not
	 * roll the cache back. */
	if (ev == INFORMER_UPDATED && old && inf_rv(old) >= 0 && inf_rv(obj) >= 0 && inf_rv(obj) < inf_rv(old) &&
	    uid && inf_uid(old) && strcmp(uid, inf_uid(old)) == 0) {
		pthread_mutex_unlock(&inf->lock);
		return;
	}
	if (old && inf_uid(old) && (!uid || strcmp(inf_uid(old), uid) != 0))
		json_object_del(inf->uids, inf_uid(old));
	if (ev == INFORMER_DELETED) {
		json_incref(obj);
		json_object_del(inf->cache, key);
		if (uid)
			json_object_del(inf->uids, uid);
	} else {
		json_object_set(inf->cache, key, obj);
		if (uid)
			json_object_set_new(inf->uids, uid, json_string(key));
		if (ev == INFORMER_ADDED && old)
			ev = INFORMER_UPDATED;
	}
	pthread_mutex_unlock(&inf->lock);
	if (inf->fn)
		inf->fn(ev, key, obj, inf->ud);
	if (ev == INFORMER_DELETED)
		json_decref(obj);
}

/* Replaces the cache with a fresh list; objects that vanished are delivered as DELETED. */
static void inf_replace(struct informer *inf, json_t *items)
{
	json_t *fresh = json_object(), *obj, *gone = json_array();
	const char *key;
	char k[512];
	size_t i;
	void *tmp;

	json_array_foreach(items, i, obj) {
		if (informer_key_of(obj, k, sizeof(k)) == 0)
			json_object_set(fresh, k, obj);
	}
	pthread_mutex_lock(&inf->lock);
	json_object_foreach_safe(inf->cache, tmp, key, obj) {
		if (!json_object_get(fresh, key))
			json_array_append(gone, obj);
	}
	pthread_mutex_unlock(&inf->lock);
	json_array_foreach(gone, i, obj)
		inf_store(inf, INFORMER_DELETED, obj);
	json_array_foreach(items, i, obj)
		inf_store(inf, INFORMER_ADDED, obj);
	json_decref(fresh);
	json_decref(gone);
}

/* Paged list. Returns 0, -ESTALE on 410, or another negative errno. */
static int inf_list(struct informer *inf, int consistent)
{
	json_t *all = json_array();
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
		items = json_object_get(resp.body, "items");
		json_array_extend(all, json_is_array(items) ? items : json_array());
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
		inf_replace(inf, all);
		pthread_mutex_lock(&inf->lock);
		inf->synced = 1;
		pthread_mutex_unlock(&inf->lock);
	}
	json_decref(all);
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
	json_t *snap;
	const char *key;
	json_t *obj;
	pthread_mutex_lock(&inf->lock);
	snap = json_copy(inf->cache);
	pthread_mutex_unlock(&inf->lock);
	json_object_foreach(snap, key, obj)
		inf->fn(INFORMER_RESYNC, key, obj, inf->ud);
	json_decref(snap);
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
	o = json_incref(json_object_get(inf->cache, key));
	pthread_mutex_unlock(&inf->lock);
	return o;
}

char *informer_key_by_uid(struct informer *inf, const char *uid)
{
	const char *k;
	char *r;
	pthread_mutex_lock(&inf->lock);
	k = json_string_value(json_object_get(inf->uids, uid));
	r = k ? strdup(k) : NULL;
	pthread_mutex_unlock(&inf->lock);
	return r;
}

void informer_foreach(struct informer *inf, void (*fn)(const char *key, json_t *obj, void *ud), void *ud)
{
	const char *key;
	json_t *obj;
	pthread_mutex_lock(&inf->lock);
	json_object_foreach(inf->cache, key, obj)
		fn(key, obj, ud);
	pthread_mutex_unlock(&inf->lock);
}

size_t informer_count(struct informer *inf)
{
	size_t n;
	pthread_mutex_lock(&inf->lock);
	n = json_object_size(inf->cache);
	pthread_mutex_unlock(&inf->lock);
	return n;
}

void informer_mutate(struct informer *inf, json_t *obj)
{
	char key[512];
	json_t *old;
	const char *uid = inf_uid(obj);

	if (!uid || informer_key_of(obj, key, sizeof(key)) < 0)
		return;
	inf_trim(obj);
	pthread_mutex_lock(&inf->lock);
	old = json_object_get(inf->cache, key);
	if (old && inf_uid(old) && strcmp(inf_uid(old), uid) == 0 && inf_rv(obj) > inf_rv(old))
		json_object_set(inf->cache, key, obj);
	pthread_mutex_unlock(&inf->lock);
}

void informer_stats_get(struct informer *inf, struct informer_stats *ret)
{
	pthread_mutex_lock(&inf->lock);
	*ret = inf->stats;
	pthread_mutex_unlock(&inf->lock);
}
