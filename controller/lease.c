#include "lease.h"
#include "log.h"
#include "util.h"

#include <stdatomic.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct lease {
	struct lease_cfg cfg;
	char ns[256], name[256], identity[256];
	pthread_t thread;
	pthread_mutex_t lock;
	atomic_int stop;
	int leading;
	int64_t last_renew_ms; /* monotonic time of our last successful renew */
	char observed[512];    /* holder + renewTime last seen, to detect change */
	int64_t observed_ms;   /* monotonic time that record was first seen */
	json_t *current;       /* last Lease object read or written */
};

static const char *lease_path(struct lease *l, char *out, size_t outsz, int item)
{
	/* Names were checked at start (lease_new); a failure leaves a path the server refuses. */
	if (!l->ns[0] || !l->name[0] ||
	    kube_path(out, outsz, "coordination.k8s.io/v1", "leases", l->ns, item ? l->name : NULL,
		      NULL) < 0)
		snprintf(out, outsz, "/invalid-lease-name");
	return out;
}

static json_t *lease_spec(struct lease *l, const char *acquire, int transitions)
{
	char now[40];
	util_rfc3339_us(util_now_ms(), now, sizeof(now));
	return json_pack("{sssIsssssi}", "holderIdentity", l->identity, "leaseDurationSeconds",
			 (json_int_t)(l->cfg.duration_ms / 1000), "acquireTime",
			 acquire ? acquire : now, "renewTime", now, "leaseTransitions",
			 transitions);
}

/* lease_is_leader reads it on other threads. */
static void lease_renewed(struct lease *l, int64_t now)
{
	pthread_mutex_lock(&l->lock);
	l->last_renew_ms = now;
	pthread_mutex_unlock(&l->lock);
}

int lease_try(struct lease *l)
{
	char path[1024];
	struct kube_resp resp;
	json_t *spec, *obj;
	const char *holder, *renew, *acquire;
	int transitions, r, ours;
	int64_t now = util_mono_ms();
	char seen[512];

	r = kube_request(l->cfg.kc, "GET", lease_path(l, path, sizeof(path), 1), NULL, NULL, &resp);
	if (r < 0) {
		kube_resp_free(&resp);
		return r;
	}
	if (resp.status == 404) {
		kube_resp_free(&resp);
		obj = json_pack("{sssss{ssss}so}", "apiVersion", "coordination.k8s.io/v1", "kind",
				"Lease", "metadata", "name", l->name, "namespace", l->ns, "spec",
				lease_spec(l, NULL, 0));
		if (!obj)
			return -ENOMEM;
		r = kube_request(l->cfg.kc, "POST", lease_path(l, path, sizeof(path), 0), NULL, obj,
				 &resp);
		json_decref(obj);
		ours = r == 0 && resp.status == 201;
		kube_resp_free(&resp);
		if (ours) {
			lease_renewed(l, now);
			return 1;
		}
		return 0;
	}
	if (resp.status != 200) {
		log_warn("lease read failed", "error", resp.message);
		kube_resp_free(&resp);
		return -EIO;
	}
	obj = resp.body;
	resp.body = NULL;
	spec = json_object_get(obj, "spec");
	holder = json_string_value(json_object_get(spec, "holderIdentity"));
	renew = json_string_value(json_object_get(spec, "renewTime"));
	acquire = json_string_value(json_object_get(spec, "acquireTime"));
	transitions = (int)json_integer_value(json_object_get(spec, "leaseTransitions"));
	ours = holder && strcmp(holder, l->identity) == 0;
	snprintf(seen, sizeof(seen), "%s|%s", holder ? holder : "", renew ? renew : "");
	if (strcmp(seen, l->observed) != 0) {
		snprintf(l->observed, sizeof(l->observed), "%s", seen);
		l->observed_ms = now;
	}
	if (!ours && holder && *holder && l->observed_ms + l->cfg.duration_ms > now) {
		json_decref(obj);
		return 0; /* someone else holds a lease that has not expired by our clock */
	}
	json_object_set_new(
		obj, "spec",
		lease_spec(l, ours ? acquire : NULL, ours ? transitions : transitions + 1));
	/* The object carries its resourceVersion: a concurrent writer makes this a 409. */
	r = kube_request(l->cfg.kc, "PUT", lease_path(l, path, sizeof(path), 1), NULL, obj, &resp);
	json_decref(obj);
	if (r == 0 && resp.status == 200) {
		kube_resp_free(&resp);
		lease_renewed(l, now);
		return 1;
	}
	kube_resp_free(&resp);
	return 0;
}

static void lease_sleep(struct lease *l, int64_t ms)
{
	int64_t end = util_mono_ms() + ms;
	while (!l->stop && util_mono_ms() < end)
		usleep(20000);
}

static void *lease_run(void *arg)
{
	struct lease *l = arg;
	while (!l->stop) {
		int r = lease_try(l), was, lost = 0;
		unsigned char j;
		pthread_mutex_lock(&l->lock);
		was = l->leading;
		if (r == 1) {
			l->leading = 1;
		} else if (l->leading &&
			   util_mono_ms() - l->last_renew_ms > l->cfg.renew_deadline_ms) {
			l->leading = 0;
			lost = 1;
		}
		pthread_mutex_unlock(&l->lock);
		if (!was && r == 1) {
			log_info("acquired leadership", "lease", l->name, "identity", l->identity);
			if (l->cfg.on_started)
				l->cfg.on_started(l->cfg.ud);
		}
		if (lost) {
			log_error(
				"leadership lost: could not renew the lease within the renew deadline",
				"lease", l->name);
			if (l->cfg.on_lost)
				l->cfg.on_lost(l->cfg.ud);
		}
		util_random(&j, 1);
		/* Jitter 1.2 while waiting to acquire, as client-go does. */
		lease_sleep(l, r == 1 ? l->cfg.retry_ms
				      : l->cfg.retry_ms + l->cfg.retry_ms * j / 255 / 5);
	}
	return NULL;
}

int lease_start(const struct lease_cfg *cfg, struct lease **ret)
{
	struct lease *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->cfg = *cfg;
	if (!l->cfg.duration_ms)
		l->cfg.duration_ms = 15000;
	if (!l->cfg.renew_deadline_ms)
		l->cfg.renew_deadline_ms = 10000;
	if (!l->cfg.retry_ms)
		l->cfg.retry_ms = 2000;
	snprintf(l->ns, sizeof(l->ns), "%s", cfg->namespace_);
	snprintf(l->name, sizeof(l->name), "%s", cfg->name);
	snprintf(l->identity, sizeof(l->identity), "%s", cfg->identity);
	pthread_mutex_init(&l->lock, NULL);
	if (pthread_create(&l->thread, NULL, lease_run, l) != 0) {
		free(l);
		return -EAGAIN;
	}
	*ret = l;
	return 0;
}

int lease_is_leader(struct lease *l)
{
	int r;
	if (!l)
		return 1;
	pthread_mutex_lock(&l->lock);
	/* Stop acting as soon as the renew deadline passes, before the lease can expire for
	 * others (deadline 10 s < duration 15 s). */
	r = l->leading && util_mono_ms() - l->last_renew_ms <= l->cfg.renew_deadline_ms;
	pthread_mutex_unlock(&l->lock);
	return r;
}

void lease_stop(struct lease *l)
{
	char path[1024];
	struct kube_resp resp = { 0 }; /* freed below also when never asked (a standby) */
	if (!l)
		return;
	l->stop = 1;
	pthread_join(l->thread, NULL);
	if (l->leading &&
	    kube_request(l->cfg.kc, "GET", lease_path(l, path, sizeof(path), 1), NULL, NULL,
			 &resp) == 0 &&
	    resp.status == 200) {
		/* Release: an empty holder lets a standby take over without waiting for expiry. */
		json_t *obj = resp.body;
		const char *holder = json_string_value(
			json_object_get(json_object_get(obj, "spec"), "holderIdentity"));
		if (holder && strcmp(holder, l->identity) == 0) {
			struct kube_resp r2;
			json_object_set_new(json_object_get(obj, "spec"), "holderIdentity",
					    json_string(""));
			json_object_set_new(json_object_get(obj, "spec"), "leaseDurationSeconds",
					    json_integer(1));
			kube_request(l->cfg.kc, "PUT", path, NULL, obj, &r2);
			kube_resp_free(&r2);
			log_info("released leadership", "lease", l->name);
		}
	}
	kube_resp_free(&resp);
	pthread_mutex_destroy(&l->lock);
	free(l);
}
