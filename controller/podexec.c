#include "podexec.h"
#include "informer.h"
#include "log.h"
#include "mask.h"
#include "podpolicy.h"
#include "taskctl_dispatch.h"
#include "util.h"
#include "workqueue.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PX_NETPOL "tasked-deny-all"
#define PX_LOG_CHUNK (16 * 1024)
#define PX_TAIL 4096

struct podexec {
	struct podexec_cfg cfg;
	char *ns, *apparmor, *gate_image;
	struct informer *inf;
	struct wq *wq;
	pthread_t worker;
	int running;
	const struct broker_ops *ops;
	void *ops_ud;
	pthread_mutex_t lock; /* guards recs and netpols */
	json_t *recs;         /* task uid -> {key, attempt, started, done, deleting} */
	json_t *netpols;      /* namespaces whose deny-all policy exists */
};

int podexec_is_runner(const char *runner)
{
	return runner && strncmp(runner, PODEXEC_RUNNER_PREFIX, strlen(PODEXEC_RUNNER_PREFIX)) == 0;
}

static void px_on_event(enum informer_event ev, const char *key, json_t *obj, void *ud)
{
	struct podexec *px = ud;
	wq_add(px->wq, key);
}

struct podexec *podexec_new(const struct podexec_cfg *cfg)
{
	struct podexec *px = calloc(1, sizeof(*px));
	char path[512], sel[128];

	if (!px)
		return NULL;
	px->cfg = *cfg;
	px->ns = cfg->namespace_ ? strdup(cfg->namespace_) : NULL;
	px->apparmor = strdup(cfg->apparmor ? cfg->apparmor : "None");
	px->cfg.apparmor = px->apparmor;
	px->gate_image = cfg->gate_image && cfg->gate_image[0] ? strdup(cfg->gate_image) : NULL;
	px->cfg.gate_image = px->gate_image;
	pthread_mutex_init(&px->lock, NULL);
	px->recs = json_object();
	px->netpols = json_object();
	px->wq = wq_new();
	if (kube_escape(PODSPEC_SELECTOR, sel, sizeof(sel)) < 0 ||
	    kube_path(path, sizeof(path) - 200, "v1", "pods", cfg->namespace_, NULL, NULL) < 0) {
		podexec_free(px);
		return NULL;
	}
	snprintf(path + strlen(path), sizeof(path) - strlen(path), "?labelSelector=%s", sel);
	px->inf = informer_new(cfg->kc, path, 10 * 60 * 1000, px_on_event, px);
	if (!px->apparmor || !px->recs || !px->netpols || !px->wq || !px->inf ||
	    (cfg->namespace_ && !px->ns) || (px->cfg.gate_image && !px->gate_image)) {
		podexec_free(px);
		return NULL;
	}
	return px;
}

void podexec_subscribe(struct podexec *px, const struct broker_ops *ops, void *ud)
{
	px->ops = ops;
	px->ops_ud = ud;
}

int podexec_synced(struct podexec *px) { return informer_synced(px->inf); }

/* --- records --------------------------------------------------------------------------- */

static json_t *rec_get(struct podexec *px, const char *uid)
{
	json_t *r;
	pthread_mutex_lock(&px->lock);
	r = json_deep_copy(json_object_get(px->recs, uid));
	pthread_mutex_unlock(&px->lock);
	return r;
}

static void rec_set(struct podexec *px, const char *uid, const char *field, json_t *v)
{
	pthread_mutex_lock(&px->lock);
	json_object_set_new(json_object_get(px->recs, uid), field, v);
	pthread_mutex_unlock(&px->lock);
}

/* A fresh record for uid's attempt (replacing one of an older attempt): 1 when there was none
 * for it, 0 when there was, -ESTALE when the record is of a later attempt (this pod is an old
 * one, e.g. kept by --keep-task-pods). */
static int rec_put(struct podexec *px, const char *uid, const char *key, int64_t attempt)
{
	json_t *old;
	int fresh;
	pthread_mutex_lock(&px->lock);
	old = json_object_get(px->recs, uid);
	if (old && json_integer_value(json_object_get(old, "attempt")) > attempt) {
		pthread_mutex_unlock(&px->lock);
		return -ESTALE;
	}
	fresh = !old || json_integer_value(json_object_get(old, "attempt")) != attempt;
	if (fresh)
		json_object_set_new(
			px->recs, uid,
			json_pack("{sssI}", "key", key, "attempt", (json_int_t)attempt));
	pthread_mutex_unlock(&px->lock);
	return fresh;
}

static void rec_drop(struct podexec *px, const char *uid, int64_t attempt)
{
	pthread_mutex_lock(&px->lock);
	if (json_integer_value(json_object_get(json_object_get(px->recs, uid), "attempt")) ==
	    attempt)
		json_object_del(px->recs, uid);
	pthread_mutex_unlock(&px->lock);
}

/* The record whose pod key is key, removed: uid into uid. */
static json_t *rec_take_by_key(struct podexec *px, const char *key, char *uid, size_t uidsz)
{
	const char *u;
	json_t *v, *found = NULL;
	pthread_mutex_lock(&px->lock);
	json_object_foreach(px->recs, u, v) {
		const char *k = json_string_value(json_object_get(v, "key"));
		if (k && strcmp(k, key) == 0) {
			found = json_incref(v);
			snprintf(uid, uidsz, "%s", u);
			json_object_del(px->recs, u);
			break;
		}
	}
	pthread_mutex_unlock(&px->lock);
	return found;
}

/* --- pod status to a result ------------------------------------------------------------- */

static int64_t ts_ms(json_t *v)
{
	int64_t ms = 0;
	if (json_is_string(v))
		util_parse_rfc3339(json_string_value(v), &ms);
	return ms;
}

static json_t *result(const char *phase, const char *reason, int64_t code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static json_t *result(const char *phase, const char *reason, int64_t code, const char *fmt, ...)
{
	char msg[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{sssssssIss}", "type", "result", "phase", phase, "reason", reason,
			 "exitCode", (json_int_t)code, "message", msg);
}

static json_t *task_status_of(json_t *pod)
{
	json_t *cs;
	size_t i;
	json_array_foreach(json_object_get(json_object_get(pod, "status"), "containerStatuses"), i,
			   cs) {
		const char *n = json_string_value(json_object_get(cs, "name"));
		if (n && strcmp(n, PODSPEC_CONTAINER) == 0)
			return cs;
	}
	return NULL;
}

/* The termination message is $TASKED_OUTPUT: JSON, or nothing. */
static void attach_output(json_t *res, const char *text)
{
	json_t *out;
	json_error_t e;
	size_t n = text ? strlen(text) : 0;
	int ok = strcmp(json_string_value(json_object_get(res, "phase")), "Succeeded") == 0;

	if (n == 0)
		return;
	out = json_loadb(text, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);
	if (out && n < PODSPEC_OUTPUT_MAX) {
		json_object_set_new(res, "output", out);
		return;
	}
	json_decref(out);
	if (!ok)
		return;
	json_object_set_new(res, "phase", json_string("Failed"));
	if (n >= PODSPEC_OUTPUT_MAX) {
		json_object_set_new(res, "reason", json_string("OutputTooLarge"));
		json_object_set_new(
			res, "message",
			json_string("exited with code 0, but $TASKED_OUTPUT reached the "
				    "kubelet's 4096-byte limit for a termination message "
				    "and may be cut: no output recorded"));
	} else {
		char m[300];
		snprintf(m, sizeof(m),
			 "exited with code 0, but $TASKED_OUTPUT is not valid JSON (%.200s)",
			 e.text);
		json_object_set_new(res, "reason", json_string("InvalidOutput"));
		json_object_set_new(res, "message", json_string(m));
	}
}

static json_t *terminated_result(json_t *pod, json_t *term)
{
	int64_t code = json_integer_value(json_object_get(term, "exitCode"));
	const char *why = json_string_value(json_object_get(term, "reason"));
	const char *preason = json_string_value(
		json_object_get(json_object_get(pod, "status"), "reason"));
	json_t *res;

	if (preason && strcmp(preason, "DeadlineExceeded") == 0)
		res = result("Failed", "TimedOut", code,
			     "deadline exceeded: the pod ran past its timeoutSeconds "
			     "(activeDeadlineSeconds) and was stopped");
	else if (why && strcmp(why, "OOMKilled") == 0)
		res = result("Failed", "OOMKilled", code,
			     "memory limit reached: the kernel's OOM killer stopped "
			     "the container (exit code %lld)",
			     (long long)code);
	else if (code == 0)
		res = result("Succeeded", "Succeeded", 0, "exited with code 0");
	else if (why && strcmp(why, "ContainerCannotRun") == 0)
		res = result("Failed", "ContainerCannotRun", code,
			     "the container could not start: %.300s",
			     json_string_value(json_object_get(term, "message")) ?: "");
	else
		res = result("Failed", "ExitCode", code, "exited with code %lld", (long long)code);
	if (!res)
		return NULL;
	json_object_set_new(res, "startTime",
			    json_integer(ts_ms(json_object_get(term, "startedAt"))));
	json_object_set_new(res, "completionTime",
			    json_integer(ts_ms(json_object_get(term, "finishedAt"))));
	if (!(why && strcmp(why, "ContainerCannotRun") == 0))
		attach_output(res, json_string_value(json_object_get(term, "message")));
	return res;
}

static int waiting_fatal(const char *why);

/* The network gate's status when it failed or cannot start: the attempt's result (the task's
 * code never ran); NULL while it runs, after it passed, or in a pod without one. */
static json_t *gate_result(json_t *pod)
{
	json_t *cs, *term, *wait;
	size_t i;

	json_array_foreach(json_object_get(json_object_get(pod, "status"), "initContainerStatuses"),
			   i, cs) {
		const char *n = json_string_value(json_object_get(cs, "name"));
		if (!n || strcmp(n, PODSPEC_GATE_CONTAINER) != 0)
			continue;
		term = json_object_get(json_object_get(cs, "state"), "terminated");
		wait = json_object_get(json_object_get(cs, "state"), "waiting");
		if (term && json_integer_value(json_object_get(term, "exitCode")) != 0)
			return result("Failed", "NetworkPolicyNotEnforced", -1,
				      "networkDisabled: the task did not run, the pod's deny-all "
				      "NetworkPolicy could not be confirmed (%.40s): %.400s",
				      json_string_value(json_object_get(term, "reason")) ?: "",
				      json_string_value(json_object_get(term, "message")) ?: "");
		if (wait && waiting_fatal(json_string_value(json_object_get(wait, "reason"))))
			return result(
				"Failed",
				strstr(json_string_value(json_object_get(wait, "reason")), "Image")
					? "ImagePullFailed"
					: "ContainerConfigError",
				-1, "the network gate (init container %s) cannot start: %s: %.400s",
				PODSPEC_GATE_CONTAINER,
				json_string_value(json_object_get(wait, "reason")),
				json_string_value(json_object_get(wait, "message")) ?: "");
	}
	return NULL;
}

static int waiting_fatal(const char *why)
{
	static const char *const fatal[] = {
		"ErrImagePull",     "ImagePullBackOff",           "ErrImageNeverPull",
		"InvalidImageName", "CreateContainerConfigError", "CreateContainerError",
		"RunContainerError"
	};
	for (size_t i = 0; why && i < sizeof(fatal) / sizeof(fatal[0]); i++)
		if (strcmp(why, fatal[i]) == 0)
			return 1;
	return 0;
}

/* When the start timeout's clock started, or 0 while it is stopped. A pod the scheduler keeps
 * pending only because the nodes are full ("0/1 nodes are available: 1 Insufficient cpu",
 * "Too many pods") waits its turn, as a Job's pods do: only the Task's timeoutSeconds bounds it.
 * Once bound to a node the clock restarts, so a pod that waited long for room still gets the
 * whole start timeout to pull and start. Otherwise (no node, no scheduler, nothing that could
 * ever fit) it runs from creation. */
static int64_t start_clock(json_t *st, int64_t created)
{
	json_t *c;
	size_t i;
	json_array_foreach(json_object_get(st, "conditions"), i, c) {
		const char *type = json_string_value(json_object_get(c, "type")) ?: "";
		const char *status = json_string_value(json_object_get(c, "status")) ?: "";
		const char *msg = json_string_value(json_object_get(c, "message")) ?: "";
		if (strcmp(type, "PodScheduled") != 0)
			continue;
		if (strcmp(status, "True") == 0) {
			int64_t bound = ts_ms(json_object_get(c, "lastTransitionTime"));
			return bound > created ? bound : created;
		}
		if (strstr(msg, "Insufficient ") || strstr(msg, "Too many pods"))
			return 0;
	}
	return created;
}

json_t *podexec_pod_result(json_t *pod, int64_t now_ms, int64_t start_timeout_ms, int *running,
			   int64_t *started_ms)
{
	json_t *st = json_object_get(pod, "status"), *cs = task_status_of(pod),
	       *state = json_object_get(cs, "state");
	json_t *term = json_object_get(state, "terminated"),
	       *wait = json_object_get(state, "waiting");
	const char *phase = json_string_value(json_object_get(st, "phase"));
	const char *preason = json_string_value(json_object_get(st, "reason"));
	int64_t created = ts_ms(
		json_object_get(json_object_get(pod, "metadata"), "creationTimestamp"));
	json_t *res;

	*running = 0;
	*started_ms = 0;
	if (term)
		return terminated_result(pod, term);
	if (!json_object_get(state, "running") && (res = gate_result(pod)))
		return res;
	if (json_object_get(state, "running")) {
		*running = 1;
		*started_ms = ts_ms(
			json_object_get(json_object_get(state, "running"), "startedAt"));
		return NULL;
	}
	if (wait && waiting_fatal(json_string_value(json_object_get(wait, "reason")))) {
		const char *why = json_string_value(json_object_get(wait, "reason"));
		int pull = strstr(why, "Image") != NULL;
		return result("Failed", pull ? "ImagePullFailed" : "ContainerConfigError", -1,
			      "%s: %.400s", why,
			      json_string_value(json_object_get(wait, "message")) ?: "");
	}
	if (phase && (strcmp(phase, "Failed") == 0 || strcmp(phase, "Succeeded") == 0)) {
		if (preason && strcmp(preason, "DeadlineExceeded") == 0)
			return result("Failed", "TimedOut", -1,
				      "deadline exceeded: the pod ran past its timeoutSeconds "
				      "(activeDeadlineSeconds) and was stopped");
		return result("Failed", "PodFailed", -1,
			      "the pod ended without a container result: %.100s %.300s",
			      preason ?: "",
			      json_string_value(json_object_get(st, "message")) ?: "");
	}
	int64_t since = start_clock(st, created);
	if (start_timeout_ms > 0 && since > 0 && now_ms - since > start_timeout_ms) {
		json_t *c;
		size_t i;
		const char *why =
			"no node has started it (is there a node and a scheduler in this cluster?)";
		json_array_foreach(json_object_get(st, "conditions"), i, c)
			if (json_is_string(json_object_get(c, "message")) &&
			    strcmp(json_string_value(json_object_get(c, "status")) ?: "",
				   "False") == 0)
				why = json_string_value(json_object_get(c, "message"));
		return result("Failed", "PodNotStarted", -1,
			      "the pod did not start within %lld s: %.400s",
			      (long long)(start_timeout_ms / 1000), why);
	}
	return NULL;
}

/* --- API calls ----------------------------------------------------------------------------- */

static int px_delete(struct podexec *px, const char *ns, const char *name, int grace)
{
	char path[600];
	struct kube_resp resp;
	json_t *body = json_pack("{sssssi}", "kind", "DeleteOptions", "apiVersion", "v1",
				 "gracePeriodSeconds", grace);
	int r;

	if (kube_path(path, sizeof(path), "v1", "pods", ns, name, NULL) < 0) {
		json_decref(body);
		return -EINVAL;
	}
	r = kube_request(px->cfg.kc, "DELETE", path, NULL, body, &resp);
	json_decref(body);
	r = r == 0 && (resp.status < 300 || resp.status == 404) ? 0 : -EAGAIN;
	if (r < 0)
		log_warn("pod delete failed", "namespace", ns, "pod", name, "error", resp.message);
	kube_resp_free(&resp);
	return r;
}

/* The namespace's deny-all NetworkPolicy for pods labelled network=disabled: looked up, and
 * created when missing, before the first such pod (once per namespace and process). */
static int px_netpol(struct podexec *px, const char *ns)
{
	char path[600];
	struct kube_resp resp;
	json_t *np;
	int have, r;

	pthread_mutex_lock(&px->lock);
	have = json_object_get(px->netpols, ns) != NULL;
	pthread_mutex_unlock(&px->lock);
	if (have)
		return 0;
	if (kube_path(path, sizeof(path), "networking.k8s.io/v1", "networkpolicies", ns, PX_NETPOL,
		      NULL) < 0)
		return -EINVAL;
	r = kube_request(px->cfg.kc, "GET", path, NULL, NULL, &resp);
	have = r == 0 && resp.status == 200;
	r = r == 0 && (resp.status == 200 || resp.status == 404) ? 0 : -EAGAIN;
	kube_resp_free(&resp);
	if (r == 0 && !have) {
		np = json_pack("{sssss{sss{ss}}s{s{s{ss}}s[ss]}}", "apiVersion",
			       "networking.k8s.io/v1", "kind", "NetworkPolicy", "metadata", "name",
			       PX_NETPOL, "labels", "app.kubernetes.io/managed-by", "tasked",
			       "spec", "podSelector", "matchLabels", PODSPEC_LABEL_NETWORK,
			       "disabled", "policyTypes", "Ingress", "Egress");
		if (kube_path(path, sizeof(path), "networking.k8s.io/v1", "networkpolicies", ns,
			      NULL, NULL) < 0) {
			json_decref(np);
			return -EINVAL;
		}
		r = kube_request(px->cfg.kc, "POST", path, NULL, np, &resp);
		json_decref(np);
		r = r == 0 && (resp.status < 300 || resp.status == 409) ? 0 : -EAGAIN;
		if (r < 0)
			log_warn("could not create the deny-all NetworkPolicy", "namespace", ns,
				 "error", resp.message);
		else
			log_info("created the deny-all NetworkPolicy for container tasks",
				 "namespace", ns);
		kube_resp_free(&resp);
	}
	if (r == 0) {
		pthread_mutex_lock(&px->lock);
		json_object_set_new(px->netpols, ns, json_true());
		pthread_mutex_unlock(&px->lock);
	}
	return r;
}

static int px_adopt(struct podexec *px, const char *ns, const char *name, const char *uid,
		    int64_t attempt, char *runner, size_t runnersz)
{
	char path[600];
	struct kube_resp resp;
	int r;

	if (kube_path(path, sizeof(path), "v1", "pods", ns, name, NULL) < 0)
		return -EINVAL;
	r = kube_request(px->cfg.kc, "GET", path, NULL, NULL, &resp);
	if (r < 0 || resp.status != 200) {
		kube_resp_free(&resp);
		return -EIO;
	}
	r = podspec_is_ours(resp.body, uid, attempt);
	kube_resp_free(&resp);
	if (!r) {
		snprintf(runner, runnersz,
			 "a pod named %s exists in namespace %s and was not made for this attempt "
			 "(owner or labels differ); it is never adopted",
			 name, ns);
		return -EPROTO;
	}
	log_info("adopted the pod of an attempt", "namespace", ns, "pod", name, "uid", uid);
	return 0;
}

static int build_task(json_t *msg, struct podspec_task *t)
{
	json_t *pod = json_object_get(msg, "pod");
	memset(t, 0, sizeof(*t));
	t->ns = json_string_value(json_object_get(msg, "namespace"));
	t->name = json_string_value(json_object_get(msg, "name"));
	t->uid = json_string_value(json_object_get(msg, "taskUid"));
	t->attempt = json_integer_value(json_object_get(msg, "attempt"));
	t->queue = json_string_value(json_object_get(pod, "queue"));
	t->container = json_object_get(msg, "container");
	t->env = json_object_get(msg, "env");
	t->input = json_object_get(msg, "input");
	t->secret_refs = json_object_get(pod, "secretRefs");
	t->timeout_s = json_integer_value(json_object_get(pod, "timeoutSeconds"));
	t->max_output_bytes = json_integer_value(json_object_get(pod, "maxOutputBytes"));
	t->res.memory_bytes = json_integer_value(json_object_get(pod, "memoryBytes"));
	t->res.cpu_milli = json_integer_value(json_object_get(pod, "cpuMillis"));
	t->network_disabled = !json_is_false(json_object_get(pod, "networkDisabled"));
	return t->ns && t->name && t->uid && t->container ? 0 : -EINVAL;
}

int podexec_dispatch(struct podexec *px, json_t *msg, char *runner, size_t runnersz)
{
	struct podspec_opts o = { .apparmor = px->apparmor,
				  .gate_image = px->gate_image,
				  .gate_timeout_s = px->cfg.gate_timeout_s };
	struct podspec_task t;
	struct kube_resp resp;
	char err[512], path[600], key[600];
	const char *name;
	json_t *pod;
	int r;

	if (build_task(msg, &t) < 0) {
		snprintf(runner, runnersz, "dispatch message incomplete");
		return -EPROTO;
	}
	if (t.network_disabled && (r = px_netpol(px, t.ns)) < 0)
		return -EIO;
	pod = podspec_build(&t, &o, err, sizeof(err));
	if (!pod) {
		snprintf(runner, runnersz, "%s", err);
		return -EPROTO;
	}
	name = json_string_value(json_object_get(json_object_get(pod, "metadata"), "name"));
	snprintf(key, sizeof(key), "%s/%s", t.ns, name);
	if (kube_path(path, sizeof(path), "v1", "pods", t.ns, NULL, NULL) < 0) {
		json_decref(pod);
		return -EIO;
	}
	/* Record first, so the informer's event for the new pod finds its attempt. */
	rec_put(px, t.uid, key, t.attempt);
	r = kube_request(px->cfg.kc, "POST", path, NULL, pod, &resp);
	if (r == 0 && resp.status < 300) {
		r = 0;
	} else if (r == 0 && resp.status == 409) {
		r = px_adopt(px, t.ns, name, t.uid, t.attempt, runner, runnersz);
		if (r == 0) {
			/* Report its state again: the task's status may not show it yet. */
			rec_set(px, t.uid, "started", json_false());
			wq_add(px->wq, key);
		}
	} else if (r == 0 && (resp.status == 400 || resp.status == 403 || resp.status == 422)) {
		log_warn("pod refused", "namespace", t.ns, "pod", name, "error", resp.message);
		snprintf(runner, runnersz, "the API server refused the task's pod: %s",
			 resp.message);
		r = -EPROTO;
	} else {
		log_warn("pod create failed", "namespace", t.ns, "pod", name, "error",
			 resp.message);
		r = -EIO;
	}
	kube_resp_free(&resp);
	if (r == 0)
		snprintf(runner, runnersz, PODEXEC_RUNNER_PREFIX "%s", name);
	else if (r == -EPROTO)
		rec_drop(px, t.uid, t.attempt); /* no pod of ours will ever have this name */
	json_decref(pod);
	return r;
}

static void split_key(const char *key, char *ns, size_t nssz, const char **name)
{
	const char *slash = strchr(key, '/');
	snprintf(ns, nssz, "%.*s", slash ? (int)(slash - key) : 0, key);
	*name = slash ? slash + 1 : key;
}

/* The cached pod key of runner's pod for uid's attempt, when this process has no record of it
 * (a cancel right after a restart, before the informer's event was processed). */
static json_t *rec_from_cache(struct podexec *px, const char *runner, const char *uid,
			      int64_t attempt)
{
	json_t *keys = informer_keys(px->inf), *k, *rec = NULL;
	const char *name = runner + strlen(PODEXEC_RUNNER_PREFIX);
	size_t i, nl = strlen(name);

	json_array_foreach(keys, i, k) {
		const char *s = json_string_value(k);
		size_t sl = s ? strlen(s) : 0;
		json_t *pod;
		if (sl <= nl || s[sl - nl - 1] != '/' || strcmp(s + sl - nl, name) != 0)
			continue;
		pod = informer_get(px->inf, s);
		if (pod && podspec_is_ours(pod, uid, attempt) && rec_put(px, uid, s, attempt) >= 0)
			rec = rec_get(px, uid);
		json_decref(pod);
		break;
	}
	json_decref(keys);
	return rec;
}

void podexec_cancel(struct podexec *px, const char *runner, const char *uid, int64_t attempt)
{
	json_t *rec = rec_get(px, uid), *res;
	const char *key = json_string_value(json_object_get(rec, "key")), *name;
	char ns[256];
	int done;

	if (!rec || json_integer_value(json_object_get(rec, "attempt")) != attempt) {
		json_decref(rec);
		rec = rec_from_cache(px, runner, uid, attempt);
		if (!rec)
			return;
		key = json_string_value(json_object_get(rec, "key"));
	}
	done = json_is_true(json_object_get(rec, "done"));
	split_key(key, ns, sizeof(ns), &name);
	rec_set(px, uid, "done", json_true());
	rec_set(px, uid, "deleting", json_true());
	(void)px_delete(px, ns, name, 0);
	if (!done && px->ops) {
		res = result("Cancelled", "Cancelled", -1, "cancelled: the pod was deleted");
		if (res)
			px->ops->result(px->ops_ud, uid, attempt, runner, res);
		json_decref(res);
	}
	json_decref(rec);
}

void podexec_ack(struct podexec *px, const char *runner, const char *uid, int64_t attempt)
{
	json_t *rec = rec_get(px, uid);
	const char *key = json_string_value(json_object_get(rec, "key")), *name;
	char ns[256];

	if (key && json_integer_value(json_object_get(rec, "attempt")) == attempt &&
	    !json_is_true(json_object_get(rec, "deleting"))) {
		rec_set(px, uid, "deleting", json_true());
		if (!px->cfg.keep_pods) {
			/* The container has ended: grace 0 removes the object at once, which also
			 * saves the kubelet's own final DELETE of a graceful deletion. */
			split_key(key, ns, sizeof(ns), &name);
			(void)px_delete(px, ns, name, 0);
		}
	}
	json_decref(rec);
}

/* --- the worker: pod state to reports ---------------------------------------------------- */

/* The values of the queue secrets the pod references (env and secret volumes), read as the
 * dispatch read them (only Secrets opted in with the queue-secret label), to mask its log. */
static json_t *px_secret_values(struct podexec *px, json_t *pod)
{
	json_t *vals = json_array(),
	       *c = json_array_get(json_object_get(json_object_get(pod, "spec"), "containers"), 0);
	json_t *refs = json_array(), *e, *v;
	const char *ns = json_string_value(
		json_object_get(json_object_get(pod, "metadata"), "namespace"));
	size_t i, j;

	json_array_foreach(json_object_get(c, "env"), i, e)
		if ((v = json_object_get(json_object_get(e, "valueFrom"), "secretKeyRef")))
			json_array_append(refs, v);
	json_array_foreach(json_object_get(json_object_get(pod, "spec"), "volumes"), i, e) {
		json_t *s = json_object_get(e, "secret"), *it;
		json_array_foreach(json_object_get(s, "items"), j, it)
			json_array_append_new(refs, json_pack("{sOsO}", "name",
							      json_object_get(s, "secretName"),
							      "key", json_object_get(it, "key")));
	}
	json_array_foreach(refs, i, e) {
		char path[600];
		struct kube_resp resp;
		const char *b64, *label;
		char *val = NULL;
		if (kube_path(path, sizeof(path), "v1", "secrets", ns,
			      json_string_value(json_object_get(e, "name")), NULL) < 0)
			continue;
		if (kube_request(px->cfg.kc, "GET", path, NULL, NULL, &resp) == 0 &&
		    resp.status == 200) {
			label = json_string_value(json_object_get(
				json_object_get(json_object_get(resp.body, "metadata"), "labels"),
				TASKCTL_QUEUE_SECRET_LABEL));
			b64 = json_string_value(
				json_object_get(json_object_get(resp.body, "data"),
						json_string_value(json_object_get(e, "key"))));
			if (label && strcmp(label, "true") == 0 && b64 &&
			    util_base64_decode(b64, &val, NULL) == 0) {
				/* masked as C strings, never dumped: bytes that are not
				 * UTF-8 (a binary volume secret) are masked too */
				json_array_append_new(vals, json_stringn_nocheck(val, strlen(val)));
				OPENSSL_cleanse(val, strlen(val));
				free(val);
			}
		}
		kube_resp_free(&resp);
	}
	json_decref(refs);
	return vals;
}

/* Reads the container's log (at most max bytes; one more tells it was cut), masks it, streams it
 * to the log store and puts its tail into res. */
static void px_logs(struct podexec *px, json_t *pod, json_t *res, const char *uid, int64_t attempt,
		    const char *runner, int64_t max)
{
	json_t *md = json_object_get(pod, "metadata"), *secrets = px_secret_values(px, pod), *s;
	const char *secv[64];
	size_t nsec = 0, i, len;
	struct buf b;
	struct kube_resp resp;
	char path[700], *masked = NULL;
	int r;

	json_array_foreach(secrets, i, s)
		if (nsec < 64)
			secv[nsec++] = json_string_value(s);
	buf_init(&b, (size_t)max + 2);
	if (kube_path(path, sizeof(path) - 64, "v1", "pods",
		      json_string_value(json_object_get(md, "namespace")),
		      json_string_value(json_object_get(md, "name")), "log") < 0)
		goto out;
	snprintf(path + strlen(path), sizeof(path) - strlen(path), "?container=%s&limitBytes=%lld",
		 PODSPEC_CONTAINER, (long long)max + 1);
	r = kube_get_text(px->cfg.kc, path, &b, &resp);
	kube_resp_free(&resp);
	if ((r < 0 && r != -EFBIG) || resp.status != 200 || buf_append(&b, "", 1) < 0)
		goto out;
	len = strnlen(b.data, b.len);
	if (len > (size_t)max) {
		len = (size_t)max;
		json_object_set_new(res, "truncated", json_true());
	}
	b.data[len] = '\0';
	if (mask_string(b.data, secv, nsec, &masked) < 0)
		goto out;
	json_object_set_new(
		res, "logTail",
		json_string(masked + (strlen(masked) > PX_TAIL ? strlen(masked) - PX_TAIL : 0)));
	if (px->ops && px->ops->log) {
		size_t n = strlen(masked);
		int64_t seq = 0;
		for (size_t off = 0; off < n; off += PX_LOG_CHUNK) {
			char chunk[PX_LOG_CHUNK + 1];
			size_t cl = n - off < PX_LOG_CHUNK ? n - off : PX_LOG_CHUNK;
			memcpy(chunk, masked + off, cl);
			chunk[cl] = '\0';
			px->ops->log(px->ops_ud, uid, attempt, seq++, "stdout", chunk, runner);
		}
	}
	/* An output holding a secret value is withheld, as for shell tasks. */
	if (json_object_get(res, "output") && nsec > 0) {
		char *o = json_dumps(json_object_get(res, "output"),
				     JSON_COMPACT | JSON_ENCODE_ANY);
		for (i = 0; o && i < nsec; i++)
			if (secv[i][0] && strstr(o, secv[i]))
				json_object_del(res, "output");
		free(o);
	}
out:
	if (masked)
		OPENSSL_cleanse(masked, strlen(masked));
	free(masked);
	if (b.data)
		OPENSSL_cleanse(b.data, b.len);
	buf_free(&b);
	json_decref(secrets);
}

static void px_gone(struct podexec *px, const char *key)
{
	char uid[128];
	json_t *rec = rec_take_by_key(px, key, uid, sizeof(uid));
	const char *name = strchr(key, '/');
	char runner[80];

	if (!rec)
		return;
	snprintf(runner, sizeof(runner), PODEXEC_RUNNER_PREFIX "%s", name ? name + 1 : key);
	if (!json_is_true(json_object_get(rec, "done")) &&
	    !json_is_true(json_object_get(rec, "deleting")) && px->ops) {
		log_warn("the pod of a running attempt was deleted", "pod", key, "uid", uid);
		px->ops->lost(px->ops_ud, uid, json_integer_value(json_object_get(rec, "attempt")),
			      runner);
	}
	json_decref(rec);
}

static void px_process(struct podexec *px, const char *key)
{
	json_t *pod = informer_get(px->inf, key), *md, *labels, *rec, *res;
	const char *uid, *at, *name;
	char runner[80];
	int64_t attempt, started_ms, max;
	int running, r;

	if (!pod) {
		px_gone(px, key);
		return;
	}
	md = json_object_get(pod, "metadata");
	labels = json_object_get(md, "labels");
	uid = json_string_value(json_object_get(labels, PODSPEC_LABEL_TASK_UID));
	at = json_string_value(json_object_get(labels, PODSPEC_LABEL_ATTEMPT));
	name = json_string_value(json_object_get(md, "name"));
	attempt = at ? strtoll(at, NULL, 10) : 0;
	if (!uid || !name || attempt <= 0 || !podspec_is_ours(pod, uid, attempt) ||
	    json_object_get(md, "deletionTimestamp"))
		goto out;
	snprintf(runner, sizeof(runner), PODEXEC_RUNNER_PREFIX "%s", name);
	r = rec_put(px, uid, key, attempt);
	if (r < 0)
		goto out;
	if (r == 1 && px->ops)
		/* A pod from before this process (restart, new leader): the reconciler takes it
		 * when the task's status shows this attempt on it. */
		(void)px->ops->held(px->ops_ud, uid, attempt, runner);
	rec = rec_get(px, uid);
	if (json_is_true(json_object_get(rec, "done")) ||
	    json_integer_value(json_object_get(rec, "attempt")) != attempt) {
		json_decref(rec);
		goto out;
	}
	res = podexec_pod_result(pod, util_now_ms(), px->cfg.start_timeout_ms, &running,
				 &started_ms);
	if (running && !json_is_true(json_object_get(rec, "started"))) {
		rec_set(px, uid, "started", json_true());
		if (px->ops)
			px->ops->started(px->ops_ud, uid, attempt, started_ms, runner);
	}
	if (!res && !running)
		wq_add_after(px->wq, key, 5000); /* the start timeout */
	if (res) {
		at = json_string_value(json_object_get(json_object_get(md, "annotations"),
						       PODSPEC_ANN_MAX_OUTPUT));
		max = at ? strtoll(at, NULL, 10) : 0;
		if (max <= 0 || max > PODPOLICY_MAX_OUTPUT)
			max = PODPOLICY_DEFAULT_OUTPUT;
		if (task_status_of(pod) &&
		    json_integer_value(json_object_get(res, "exitCode")) >= 0)
			px_logs(px, pod, res, uid, attempt, runner, max);
		rec_set(px, uid, "done", json_true());
		log_info("container task attempt finished", "pod", key, "phase",
			 json_string_value(json_object_get(res, "phase")), "reason",
			 json_string_value(json_object_get(res, "reason")));
		if (px->ops)
			px->ops->result(px->ops_ud, uid, attempt, runner, res);
		json_decref(res);
	}
	json_decref(rec);
out:
	json_decref(pod);
}

static void *px_worker(void *arg)
{
	struct podexec *px = arg;
	char *key;

	while ((key = wq_get(px->wq))) {
		if (!px->cfg.may_act || px->cfg.may_act(px->cfg.may_act_ud))
			px_process(px, key);
		else
			wq_add_after(px->wq, key, 2000);
		wq_forget(px->wq, key);
		wq_done(px->wq, key);
		free(key);
	}
	return NULL;
}

int podexec_start(struct podexec *px)
{
	if (informer_start(px->inf) < 0)
		return -EIO;
	if (pthread_create(&px->worker, NULL, px_worker, px) != 0)
		return -EAGAIN;
	px->running = 1;
	return 0;
}

void podexec_stop(struct podexec *px)
{
	if (!px)
		return;
	informer_stop(px->inf);
	wq_shutdown(px->wq);
	if (px->running)
		pthread_join(px->worker, NULL);
	px->running = 0;
}

void podexec_free(struct podexec *px)
{
	if (!px)
		return;
	podexec_stop(px);
	informer_free(px->inf);
	wq_free(px->wq);
	json_decref(px->recs);
	json_decref(px->netpols);
	pthread_mutex_destroy(&px->lock);
	free(px->ns);
	free(px->apparmor);
	free(px->gate_image);
	free(px);
}
