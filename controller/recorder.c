#include "recorder.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RECORDER_QUEUE_MAX 1000

struct recorder {
	struct kube_client *kc;
	char instance[129];
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	json_t *queue; /* array of {namespace, body} */
	int stop;
	unsigned long created, dropped;
};

static void *recorder_run(void *arg)
{
	struct recorder *r = arg;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		json_t *item;
		char path[1024];
		const char *ens;
		struct kube_resp resp;
		int rc;

		while (!r->stop && json_array_size(r->queue) == 0)
			pthread_cond_wait(&r->cond, &r->lock);
		if (r->stop)
			break;
		item = json_incref(json_array_get(r->queue, 0));
		json_array_remove(r->queue, 0);
		pthread_mutex_unlock(&r->lock);
		memset(&resp, 0, sizeof(resp));
		ens = json_string_value(json_object_get(item, "namespace"));
		if (!ens || !*ens ||
		    kube_path(path, sizeof(path), "events.k8s.io/v1", "events", ens, NULL, NULL) <
			    0) {
			rc = -EINVAL;
		} else {
			rc = kube_request(r->kc, "POST", path, NULL, json_object_get(item, "body"),
					  &resp);
		}
		if (rc < 0 || resp.status >= 300)
			log_debug("event not recorded", "error", resp.message);
		kube_resp_free(&resp);
		json_decref(item);
		pthread_mutex_lock(&r->lock);
		if (rc < 0 || resp.status >= 300)
			r->dropped++;
		else
			r->created++;
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

struct recorder *recorder_new(struct kube_client *kc, const char *instance)
{
	struct recorder *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->kc = kc;
	snprintf(r->instance, sizeof(r->instance), "%s", instance);
	r->queue = json_array();
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	if (pthread_create(&r->thread, NULL, recorder_run, r) != 0) {
		json_decref(r->queue);
		free(r);
		return NULL;
	}
	return r;
}

void recorder_free(struct recorder *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = 1;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->thread, NULL);
	json_decref(r->queue);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

void recorder_emit(struct recorder *r, json_t *task, const char *type, const char *reason,
		   const char *action, const char *note)
{
	json_t *md = json_object_get(task, "metadata"), *body;
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));
	const char *uid = json_string_value(json_object_get(md, "uid"));
	char evname[300], ts[40];
	struct timespec now;
	char shortnote[1024];

	if (!r || !ns || !name || !uid)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	/* client-go's naming: <object>.<hex nanoseconds>, unique enough per object. */
	snprintf(evname, sizeof(evname), "%.200s.%llx", name,
		 (unsigned long long)now.tv_sec * 1000000000ULL + (unsigned long long)now.tv_nsec);
	util_rfc3339_us((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000, ts, sizeof(ts));
	snprintf(shortnote, sizeof(shortnote), "%s", note ? note : "");
	body = json_pack("{ss ss s{ssss} ss ss ss ss ss ss ss s{ssssssssss}}", "apiVersion",
			 "events.k8s.io/v1", "kind", "Event", "metadata", "name", evname,
			 "namespace", ns, "eventTime", ts, "reportingController",
			 "tasked.dev/controller", "reportingInstance", r->instance, "action",
			 action, "reason", reason, "type", type, "note", shortnote, "regarding",
			 "apiVersion", "tasked.dev/v1alpha1", "kind", "Task", "name", name,
			 "namespace", ns, "uid", uid);
	if (!body)
		return;
	pthread_mutex_lock(&r->lock);
	if (json_array_size(r->queue) >= RECORDER_QUEUE_MAX) {
		r->dropped++;
		json_decref(body);
	} else {
		json_array_append_new(r->queue, json_pack("{ssso}", "namespace", ns, "body", body));
		pthread_cond_signal(&r->cond);
	}
	pthread_mutex_unlock(&r->lock);
}

void recorder_stats(struct recorder *r, unsigned long *created, unsigned long *dropped)
{
	pthread_mutex_lock(&r->lock);
	*created = r->created;
	*dropped = r->dropped;
	pthread_mutex_unlock(&r->lock);
}
