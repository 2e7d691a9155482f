/* tasked-bench-load: the load generator of `make bench`, on the controller's own Kubernetes
 * client (controller/kube.c, kubeconfig.c). Never part of `make test`.
 *
 *   tasked-bench-load tasks      --kubeconfig K --namespace NS --run ID --count N --command PATH
 *                                [--rate R | --sequential] [--threads T] [--timeout S]
 *                                [--csv F] [--json F]
 *       Creates N Tasks named ID-0 … ID-(N-1), labelled bench.tasked.dev/run=ID, running
 *       PATH (bench/stamp). With --rate, task i is sent at t0 + i/R (a steady rate); with
 *       --sequential, once task i-1 was seen terminal (one at a time, no overlap); otherwise
 *       as fast as T threads can. A watch on the label records, per task, when it was first
 *       seen Running (or already terminal: the controller skips the Running write when the
 *       result comes first) and when it was first seen terminal; the stamp in status.logTail
 *       is when the process started. All times are CLOCK_REALTIME on this machine.
 *
 *       --object pod|job runs the same command as a bare Pod or a Job instead (--image IMAGE,
 *       the restricted security context the node suites use); "Running" is the Pod's phase or a
 *       Job's first ready pod, terminal a Pod's Succeeded/Failed or a Job's Complete/Failed
 *       condition, and the stamp is read from the pod's log once every object is terminal.
 *       --object taskrun runs it as a Tekton TaskRun (tekton.dev/v1) of one step with an
 *       inline taskSpec, the same image, security context and resources; its phase is read from
 *       the Succeeded condition (Unknown/Running is Running) and its stamp from the log of the
 *       pod's step-stamp container (bench/tekton.sh).
 *       --spec JSON is merged into each Task's spec (a runnerSelector, a container, ...).
 *
 *   tasked-bench-load ceiling    --kubeconfig K --namespace NS --run ID --count N
 *                                [--threads T] [--template F] [--extra-watches W] [--json F]
 *       What the API server must do per task without Tasked: create a BenchDummy
 *       (benchdummies.bench.tasked.dev, status subresource), then the two status merge-patches
 *       the controller writes (Running, then the terminal status from the template), at full
 *       speed with T connections, while a watch (plus W extra watches standing in for the
 *       controller's informer) follows them.
 *
 *   tasked-bench-load fill       --kubeconfig K --namespace NS --run ID --count N [--start I]
 *                                [--threads T] [--template F] [--command PATH] [--json F]
 *       Creates finished Tasks (create, then a status patch with the template's terminal
 *       status) for the memory measurements. The controller must be stopped meanwhile, or it
 *       would run them.
 *
 *   tasked-bench-load apimetrics --kubeconfig K --json F
 *       apiserver_request_total from the API server's /metrics, summed by
 *       "VERB group/resource[/subresource]" (all codes), as JSON.
 *
 * The template (--template) is a Task's .status as the controller wrote it for a finished
 * task; without one a built-in status of the same shape is used. */
#include "kube.h"
#include "kubeconfig.h"
#include "stats.h"
#include "util.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LG_MAX_THREADS 64
#define LG_MAX_COUNT 1000000
#define LG_LABEL "bench.tasked.dev/run"
#define LG_METRICS_MAX (64 * 1024 * 1024)

struct lg_opts {
	const char *mode, *kubeconfig, *namespace_, *run, *command, *csv, *json, *template_;
	const char *object, *image, *spec;
	long count, threads, start, timeout_s, extra_watches;
	double rate;
	int sequential;
};

/* One task (or dummy object). Times are CLOCK_REALTIME ns; 0 = not seen. */
struct lg_rec {
	int64_t create_ns, created_ns, running_ns, terminal_ns, stamp_ns;
	long status;                  /* HTTP status of the create */
	char first[16], terminal[16]; /* phase first seen Running-or-terminal; terminal phase */
	unsigned char queued;         /* seen Queued at some point */
};

struct lg_run {
	struct lg_opts *o;
	struct kube_client *kc;
	struct lg_rec *recs;
	json_t *running_patch, *terminal_status; /* ceiling, fill */
	char coll[512];                          /* collection path */
	char selector[256];                      /* escaped label selector */
	char prefix[96];                         /* object names: prefix-N */
	int obj;                                 /* LG_OBJ_*: what the tasks mode creates */
	atomic_long next;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	long settled; /* terminal or failed to create */
	long create_errors, patch_errors, queued, watch_errors, relists;
	char rv[64]; /* watch resourceVersion */
	atomic_int stop;
	int64_t t0_mono;
};

static void lg_usage(FILE *f)
{
	fputs("usage: tasked-bench-load tasks|ceiling|fill|apimetrics --kubeconfig FILE [options]\n"
	      "  --namespace NS --run ID --count N --command PATH --rate R --threads T --timeout S\n"
	      "  --start I --template FILE --extra-watches W --csv FILE --json FILE\n"
	      "  --object task|pod|job|taskrun --image IMAGE --spec JSON --sequential\n"
	      "(see the comment at the top of bench/loadgen.c)\n",
	      f);
}

static int lg_parse(int argc, char **argv, struct lg_opts *o)
{
	enum {
		O_KC = 256,
		O_NS,
		O_RUN,
		O_COUNT,
		O_CMD,
		O_RATE,
		O_THREADS,
		O_TIMEOUT,
		O_START,
		O_TPL,
		O_XW,
		O_CSV,
		O_JSON,
		O_OBJ,
		O_IMG,
		O_SPEC,
		O_SEQ,
		O_HELP
	};
	static const struct option lo[] = {
		{ "kubeconfig", required_argument, NULL, O_KC },
		{ "namespace", required_argument, NULL, O_NS },
		{ "run", required_argument, NULL, O_RUN },
		{ "count", required_argument, NULL, O_COUNT },
		{ "command", required_argument, NULL, O_CMD },
		{ "rate", required_argument, NULL, O_RATE },
		{ "threads", required_argument, NULL, O_THREADS },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "start", required_argument, NULL, O_START },
		{ "template", required_argument, NULL, O_TPL },
		{ "extra-watches", required_argument, NULL, O_XW },
		{ "csv", required_argument, NULL, O_CSV },
		{ "json", required_argument, NULL, O_JSON },
		{ "object", required_argument, NULL, O_OBJ },
		{ "image", required_argument, NULL, O_IMG },
		{ "spec", required_argument, NULL, O_SPEC },
		{ "sequential", no_argument, NULL, O_SEQ },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	char *end;

	*o = (struct lg_opts){ .namespace_ = "default",
			       .run = "bench",
			       .count = 100,
			       .threads = 4,
			       .object = "task",
			       .timeout_s = 600 };
	if (argc < 2) {
		lg_usage(stderr);
		return -EINVAL;
	}
	o->mode = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case O_KC:
			o->kubeconfig = optarg;
			break;
		case O_NS:
			o->namespace_ = optarg;
			break;
		case O_RUN:
			o->run = optarg;
			break;
		case O_CMD:
			o->command = optarg;
			break;
		case O_TPL:
			o->template_ = optarg;
			break;
		case O_CSV:
			o->csv = optarg;
			break;
		case O_JSON:
			o->json = optarg;
			break;
		case O_OBJ:
			o->object = optarg;
			break;
		case O_IMG:
			o->image = optarg;
			break;
		case O_SPEC:
			o->spec = optarg;
			break;
		case O_SEQ:
			o->sequential = 1;
			break;
		case O_COUNT:
			o->count = strtol(optarg, &end, 10);
			if (*end || o->count < 1 || o->count > LG_MAX_COUNT)
				goto bad;
			break;
		case O_START:
			o->start = strtol(optarg, &end, 10);
			if (*end || o->start < 0 || o->start > LG_MAX_COUNT * 10L)
				goto bad;
			break;
		case O_THREADS:
			o->threads = strtol(optarg, &end, 10);
			if (*end || o->threads < 1 || o->threads > LG_MAX_THREADS)
				goto bad;
			break;
		case O_TIMEOUT:
			o->timeout_s = strtol(optarg, &end, 10);
			if (*end || o->timeout_s < 1 || o->timeout_s > 86400)
				goto bad;
			break;
		case O_XW:
			o->extra_watches = strtol(optarg, &end, 10);
			if (*end || o->extra_watches < 0 || o->extra_watches > 8)
				goto bad;
			break;
		case O_RATE:
			o->rate = strtod(optarg, &end);
			if (*end || o->rate < 0 || o->rate > 100000)
				goto bad;
			break;
		case O_HELP:
			lg_usage(stdout);
			exit(0);
		default:
			lg_usage(stderr);
			return -EINVAL;
		}
	}
	if (!o->kubeconfig) {
		fprintf(stderr, "tasked-bench-load: --kubeconfig is required\n");
		return -EINVAL;
	}
	if (strlen(o->run) > 40 ||
	    strspn(o->run, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(o->run)) {
		fprintf(stderr, "tasked-bench-load: --run must be at most 40 of [a-z0-9-]\n");
		return -EINVAL;
	}
	return 0;
bad:
	fprintf(stderr, "tasked-bench-load: invalid value %s\n", optarg);
	return -EINVAL;
}

/* --- objects ---------------------------------------------------------------------------- */

enum { LG_OBJ_TASK, LG_OBJ_POD, LG_OBJ_JOB, LG_OBJ_TASKRUN };

/* A Job's phase in Task terms: its Complete/Failed condition, else Running once a pod is
 * ready, else Pending. */
static const char *lg_job_phase(json_t *obj)
{
	json_t *st = json_object_get(obj, "status"), *c;
	size_t i;

	json_array_foreach(json_object_get(st, "conditions"), i, c) {
		const char *t = json_string_value(json_object_get(c, "type"));
		const char *v = json_string_value(json_object_get(c, "status"));
		if (!t || !v || strcmp(v, "True") != 0)
			continue;
		if (strcmp(t, "Complete") == 0)
			return "Succeeded";
		if (strcmp(t, "Failed") == 0)
			return "Failed";
	}
	return json_integer_value(json_object_get(st, "ready")) > 0 ? "Running" : "Pending";
}

/* A TaskRun's phase in Task terms, from its Succeeded condition: True or False is terminal
 * (a cancelled or timed-out run is False too), Unknown with reason Running is Running. */
static const char *lg_taskrun_phase(json_t *obj)
{
	json_t *c;
	size_t i;

	json_array_foreach(json_object_get(json_object_get(obj, "status"), "conditions"), i, c) {
		const char *t = json_string_value(json_object_get(c, "type"));
		const char *v = json_string_value(json_object_get(c, "status"));
		const char *why = json_string_value(json_object_get(c, "reason"));
		if (!t || !v || strcmp(t, "Succeeded") != 0)
			continue;
		if (strcmp(v, "True") == 0)
			return "Succeeded";
		if (strcmp(v, "False") == 0)
			return "Failed";
		return why && strcmp(why, "Running") == 0 ? "Running" : "Pending";
	}
	return "Pending";
}

static const char *lg_phase(struct lg_run *r, json_t *obj)
{
	if (r->obj == LG_OBJ_JOB)
		return lg_job_phase(obj);
	if (r->obj == LG_OBJ_TASKRUN)
		return lg_taskrun_phase(obj);
	return json_string_value(json_object_get(json_object_get(obj, "status"), "phase"));
}

static int lg_is_terminal(const char *p)
{
	return p && (strcmp(p, "Succeeded") == 0 || strcmp(p, "Failed") == 0 ||
		     strcmp(p, "Cancelled") == 0);
}

/* Index of an object named prefix-N, or -1. */
static long lg_index(struct lg_run *r, json_t *obj)
{
	const char *name = json_string_value(
		json_object_get(json_object_get(obj, "metadata"), "name"));
	size_t pl = strlen(r->prefix);
	char *end;
	long i;

	if (!name || strncmp(name, r->prefix, pl) != 0 || name[pl] != '-')
		return -1;
	i = strtol(name + pl + 1, &end, 10);
	if (*end || i < r->o->start || i >= r->o->start + r->o->count)
		return -1;
	return i - r->o->start;
}

/* A finished status of the shape taskctl writes (used without --template). */
static json_t *lg_default_status(void)
{
	return json_pack(
		"{ss ss ss sI s[{ss ss ss ss ss sI}] sI s[{sI ss ss ss si ss ss}] ss ss ss si ss}",
		"phase", "Succeeded", "reason", "Succeeded", "message", "exited with code 0",
		"observedGeneration", (json_int_t)1, "conditions", "type", "Succeeded", "status",
		"True", "reason", "Succeeded", "message", "exited with code 0",
		"lastTransitionTime", "2025-01-01T00:00:00Z", "observedGeneration", (json_int_t)1,
		"attempts", (json_int_t)1, "attemptHistory", "attempt", (json_int_t)1, "phase",
		"Succeeded", "reason", "Succeeded", "runner", "bench-runner-1", "exitCode", 0,
		"startTime", "2025-01-01T00:00:00Z", "completionTime", "2025-01-01T00:00:00Z",
		"runner", "bench-runner-1", "startTime", "2025-01-01T00:00:00Z", "completionTime",
		"2025-01-01T00:00:00Z", "exitCode", 0, "logTail", "1735689600000000000\n");
}

/* The Running status the controller writes first, derived from a terminal one. */
static json_t *lg_running_from(json_t *terminal)
{
	json_t *s = json_deep_copy(terminal), *conds, *c;
	const char *runner = json_string_value(json_object_get(terminal, "runner"));
	char msg[160];
	size_t i;

	if (!s)
		return NULL;
	snprintf(msg, sizeof(msg), "running on %s", runner ? runner : "bench-runner-1");
	json_object_set_new(s, "phase", json_string("Running"));
	json_object_set_new(s, "reason", json_string("Running"));
	json_object_set_new(s, "message", json_string(msg));
	json_object_set_new(s, "nextRetryTime", json_null());
	json_object_del(s, "completionTime");
	json_object_del(s, "exitCode");
	json_object_del(s, "logTail");
	json_object_del(s, "output");
	json_object_del(s, "outputTruncated");
	conds = json_object_get(s, "conditions");
	json_array_foreach(conds, i, c) {
		json_object_set_new(c, "status", json_string("Unknown"));
		json_object_set_new(c, "reason", json_string("Running"));
		json_object_set_new(c, "message", json_string(msg));
	}
	/* The first attempt has no history yet. */
	json_object_del(s, "attemptHistory");
	return s;
}

static int lg_load_template(struct lg_run *r)
{
	json_t *t;
	if (r->o->template_) {
		json_error_t jerr;
		t = json_load_file(r->o->template_, 0, &jerr);
		if (!json_is_object(t) ||
		    !lg_is_terminal(json_string_value(json_object_get(t, "phase")))) {
			fprintf(stderr, "tasked-bench-load: %s is not a terminal Task status: %s\n",
				r->o->template_, t ? "no terminal phase" : jerr.text);
			json_decref(t);
			return -EINVAL;
		}
	} else {
		t = lg_default_status();
	}
	r->terminal_status = t;
	r->running_patch = lg_running_from(t);
	return r->terminal_status && r->running_patch ? 0 : -ENOMEM;
}

/* --- watching --------------------------------------------------------------------------- */

static void lg_note_rv(struct lg_run *r, json_t *obj)
{
	const char *rv = json_string_value(
		json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
	if (rv && strlen(rv) < sizeof(r->rv))
		memcpy(r->rv, rv, strlen(rv) + 1);
}

/* Records what an object's state tells; called with each watch event's object and each
 * listed item. */
static void lg_observe(struct lg_run *r, json_t *obj)
{
	const char *phase = lg_phase(r, obj);
	long i = lg_index(r, obj);
	int64_t now = bench_now_ns();
	struct lg_rec *rec;

	if (i < 0 || !phase)
		return;
	rec = &r->recs[i];
	pthread_mutex_lock(&r->lock);
	if (strcmp(phase, "Queued") == 0 && !rec->queued) {
		rec->queued = 1;
		r->queued++;
	}
	if (!rec->running_ns && (strcmp(phase, "Running") == 0 || lg_is_terminal(phase))) {
		rec->running_ns = now;
		snprintf(rec->first, sizeof(rec->first), "%s", phase);
	}
	if (!rec->terminal_ns && lg_is_terminal(phase)) {
		const char *tail = json_string_value(
			json_object_get(json_object_get(obj, "status"), "logTail"));
		rec->terminal_ns = now;
		snprintf(rec->terminal, sizeof(rec->terminal), "%s", phase);
		if (tail) {
			/* The stamp is the only line the task prints. */
			long long v = strtoll(tail, NULL, 10);
			rec->stamp_ns = v > 1000000000000000000LL ? (int64_t)v : 0;
		}
		if (rec->status < 300) {
			r->settled++;
			pthread_cond_broadcast(&r->cond); /* --sequential waits for each */
		}
	}
	pthread_mutex_unlock(&r->lock);
}

static int lg_on_event(json_t *ev, const char *raw, size_t rawlen, const char *error, void *ud)
{
	struct lg_run *r = ud;
	if (!ev) /* a line that did not decode: not a Task we created */
		return 0;
	const char *type = json_string_value(json_object_get(ev, "type"));
	json_t *obj = json_object_get(ev, "object");

	if (!type)
		return 0;
	if (strcmp(type, "ERROR") == 0) {
		/* e.g. 410 Expired: relist from the current state */
		r->rv[0] = '\0';
		return 1;
	}
	lg_note_rv(r, obj);
	if (strcmp(type, "BOOKMARK") != 0)
		lg_observe(r, obj);
	return 0;
}

/* Paged list of the run's objects: observes each, leaves the list's resourceVersion in r->rv. */
static int lg_list(struct lg_run *r)
{
	char path[2048], cont[1024] = "";
	struct kube_resp resp;
	int rc;

	do {
		json_t *items, *it;
		const char *next;
		size_t i;

		snprintf(path, sizeof(path), "%s?labelSelector=%s&limit=500%s%s", r->coll,
			 r->selector, cont[0] ? "&continue=" : "", cont);
		rc = kube_request(r->kc, "GET", path, NULL, NULL, &resp);
		if (rc < 0 || resp.status != 200) {
			fprintf(stderr, "tasked-bench-load: list %s: %s\n", r->coll, resp.message);
			kube_resp_free(&resp);
			return rc < 0 ? rc : -EIO;
		}
		items = json_object_get(resp.body, "items");
		json_array_foreach(items, i, it)
			lg_observe(r, it);
		lg_note_rv(r, resp.body);
		next = json_string_value(
			json_object_get(json_object_get(resp.body, "metadata"), "continue"));
		cont[0] = '\0';
		if (next && *next && kube_escape(next, cont, sizeof(cont)) < 0)
			cont[0] = '\0';
		kube_resp_free(&resp);
	} while (cont[0]);
	return 0;
}

static void *lg_watch_main(void *p)
{
	struct lg_run *r = p;
	char path[2048];
	struct kube_resp resp;

	while (!r->stop) {
		if (!r->rv[0]) {
			r->relists++;
			if (lg_list(r) < 0) {
				usleep(200000);
				continue;
			}
		}
		snprintf(path, sizeof(path),
			 "%s?watch=1&allowWatchBookmarks=true&labelSelector=%s&resourceVersion=%s",
			 r->coll, r->selector, r->rv);
		(void)kube_watch(r->kc, path, lg_on_event, r, &r->stop, &resp);
		if (resp.status == 410)
			r->rv[0] = '\0';
		else if (resp.status >= 300)
			r->watch_errors++;
		kube_resp_free(&resp);
		if (!r->stop)
			usleep(50000);
	}
	return NULL;
}

/* A watch that only consumes events: the controller's informer, for the ceiling. */
static int lg_on_event_noop(json_t *ev, const char *raw, size_t rawlen, const char *error, void *ud)
{
	return 0;
}

static void *lg_shadow_watch_main(void *p)
{
	struct lg_run *r = p;
	char path[2048];
	struct kube_resp resp;

	while (!r->stop) {
		snprintf(path, sizeof(path),
			 "%s?watch=1&allowWatchBookmarks=true&labelSelector=%s&resourceVersion=%s",
			 r->coll, r->selector, r->rv[0] ? r->rv : "0");
		(void)kube_watch(r->kc, path, lg_on_event_noop, r, &r->stop, &resp);
		kube_resp_free(&resp);
		if (!r->stop)
			usleep(50000);
	}
	return NULL;
}

/* --- creating ----------------------------------------------------------------------------- */

/* The pod spec of --object pod|job: the restricted context of the node suites, the image
 * only from the node's store, and the resources bench/node.sh gives container tasks (their
 * queue's defaultResources; requests = limits, as the container executor sets them). */
static json_t *lg_pod_spec(struct lg_run *r)
{
	return json_pack(
		"{ss sb sb si s{sb si si s{ss}} s[{ss ss ss s[s] s{sb sb s{s[s]}} s{s{ssss}}}]}",
		"restartPolicy", "Never", "automountServiceAccountToken", 0, "enableServiceLinks",
		0, "terminationGracePeriodSeconds", 1, "securityContext", "runAsNonRoot", 1,
		"runAsUser", 65532, "runAsGroup", 65532, "seccompProfile", "type", "RuntimeDefault",
		"containers", "name", "stamp", "image", r->o->image, "imagePullPolicy", "Never",
		"command", r->o->command, "securityContext", "allowPrivilegeEscalation", 0,
		"readOnlyRootFilesystem", 1, "capabilities", "drop", "ALL", "resources", "limits",
		"cpu", "250m", "memory", "64Mi");
}

/* A TaskRun of one step with the pod spec's image, command, security context and resources;
 * the pod-level part goes in its podTemplate. Tekton names the step's container step-stamp
 * and copies the TaskRun's labels to its pod. Tekton's default timeout (an hour), as the Pods
 * and Jobs have none: a backlog's tail waits on the node for over a minute. */
static json_t *lg_taskrun_body(struct lg_run *r, const char *name)
{
	return json_pack(
		"{ss ss s{ss s{ss}} s{s{sb sb s{sb si si s{ss}}} s{s[{ss ss ss s[s] s{sb sb s{s[s]}} s{s{ssss}}}]}}}",
		"apiVersion", "tekton.dev/v1", "kind", "TaskRun", "metadata", "name", name,
		"labels", LG_LABEL, r->o->run, "spec", "podTemplate",
		"automountServiceAccountToken", 0, "enableServiceLinks", 0, "securityContext",
		"runAsNonRoot", 1, "runAsUser", 65532, "runAsGroup", 65532, "seccompProfile",
		"type", "RuntimeDefault", "taskSpec", "steps", "name", "stamp", "image",
		r->o->image, "imagePullPolicy", "Never", "command", r->o->command,
		"securityContext", "allowPrivilegeEscalation", 0, "readOnlyRootFilesystem", 1,
		"capabilities", "drop", "ALL", "computeResources", "limits", "cpu", "250m",
		"memory", "64Mi");
}

static json_t *lg_body(struct lg_run *r, long idx, const char *apiversion, const char *kind)
{
	char name[160];
	json_t *b, *spec;

	snprintf(name, sizeof(name), "%s-%ld", r->prefix, idx);
	if (r->obj == LG_OBJ_POD)
		return json_pack("{ss ss s{ss s{ss}} so}", "apiVersion", "v1", "kind", "Pod",
				 "metadata", "name", name, "labels", LG_LABEL, r->o->run, "spec",
				 lg_pod_spec(r));
	if (r->obj == LG_OBJ_TASKRUN)
		return lg_taskrun_body(r, name);
	if (r->obj == LG_OBJ_JOB)
		return json_pack("{ss ss s{ss s{ss}} s{si s{s{s{ss}} so}}}", "apiVersion",
				 "batch/v1", "kind", "Job", "metadata", "name", name, "labels",
				 LG_LABEL, r->o->run, "spec", "backoffLimit", 0, "template",
				 "metadata", "labels", LG_LABEL, r->o->run, "spec", lg_pod_spec(r));
	b = json_pack("{ss ss s{ss s{ss}} s{s{s[s]} si}}", "apiVersion", apiversion, "kind", kind,
		      "metadata", "name", name, "labels", LG_LABEL, r->o->run, "spec", "shell",
		      "command", r->o->command ? r->o->command : "/bin/true", "timeoutSeconds", 60);
	spec = json_object_get(b, "spec");
	if (b && r->o->spec) {
		json_t *extra = json_loads(r->o->spec, 0, NULL);
		if (!json_is_object(extra) || json_object_update(spec, extra) < 0) {
			json_decref(extra);
			json_decref(b);
			return NULL;
		}
		/* a container task has no shell */
		if (json_object_get(extra, "container"))
			json_object_del(spec, "shell");
		json_decref(extra);
	}
	return b;
}

/* Merge-patches obj's status (with a UID precondition, as the controller does). 0 or -EIO. */
static int lg_patch_status(struct lg_run *r, const char *name, const char *uid, json_t *status)
{
	char path[1024];
	struct kube_resp resp;
	json_t *patch = json_pack("{s{ss}sO}", "metadata", "uid", uid, "status", status);
	int rc;

	if (!patch)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/%s/status", r->coll, name);
	rc = kube_request(r->kc, "PATCH", path, "application/merge-patch+json", patch, &resp);
	json_decref(patch);
	if (rc < 0 || resp.status >= 300) {
		fprintf(stderr, "tasked-bench-load: patch %s: %s\n", name, resp.message);
		kube_resp_free(&resp);
		return -EIO;
	}
	kube_resp_free(&resp);
	return 0;
}

static void lg_create_failed(struct lg_run *r, long i, struct kube_resp *resp)
{
	pthread_mutex_lock(&r->lock);
	r->create_errors++;
	if (r->create_errors <= 5)
		fprintf(stderr, "tasked-bench-load: create %s-%ld: %s\n", r->prefix,
			i + r->o->start, resp->message);
	r->settled++;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/* --sequential: until the first n are settled (terminal seen, or their create failed), or
 * the run is stopped (-ECANCELED). */
static int lg_wait_settled(struct lg_run *r, long n)
{
	int rc = 0;

	pthread_mutex_lock(&r->lock);
	while (r->settled < n) {
		struct timespec ts;

		if (r->stop) {
			rc = -ECANCELED;
			break;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

enum lg_kind { LG_TASKS, LG_CEILING, LG_FILL };
struct lg_worker {
	struct lg_run *r;
	enum lg_kind kind;
};

static void *lg_create_main(void *p)
{
	struct lg_worker *w = p;
	struct lg_run *r = w->r;
	const int dummy = w->kind == LG_CEILING;
	const char *apiv = dummy ? "bench.tasked.dev/v1" : "tasked.dev/v1alpha1";
	const char *kind = dummy ? "BenchDummy" : "Task";

	for (;;) {
		long i = atomic_fetch_add(&r->next, 1);
		struct kube_resp resp;
		struct lg_rec *rec;
		json_t *body;
		int rc;

		if (i >= r->o->count || r->stop)
			break;
		rec = &r->recs[i];
		if (r->o->sequential && lg_wait_settled(r, i) < 0)
			break;
		if (r->o->rate > 0)
			bench_sleep_until_mono(r->t0_mono +
					       (int64_t)((double)i * 1e9 / r->o->rate));
		body = lg_body(r, i + r->o->start, apiv, kind);
		if (!body)
			break;
		rec->create_ns = bench_now_ns();
		rc = kube_request(r->kc, "POST", r->coll, NULL, body, &resp);
		rec->created_ns = bench_now_ns();
		json_decref(body);
		pthread_mutex_lock(&r->lock);
		rec->status = rc < 0 || resp.status == 0 ? 599 : resp.status;
		pthread_mutex_unlock(&r->lock);
		if (rc < 0 || resp.status >= 300) {
			lg_create_failed(r, i, &resp);
			kube_resp_free(&resp);
			continue;
		}
		if (w->kind != LG_TASKS) {
			json_t *md = json_object_get(resp.body, "metadata");
			const char *uid = json_string_value(json_object_get(md, "uid"));
			const char *name = json_string_value(json_object_get(md, "name"));
			json_t *term = json_deep_copy(r->terminal_status);
			char stamp[32];
			int bad = 0;

			snprintf(stamp, sizeof(stamp), "%" PRId64 "\n", bench_now_ns());
			json_object_set_new(term, "logTail", json_string(stamp));
			if (w->kind == LG_CEILING && uid && name)
				bad = lg_patch_status(r, name, uid, r->running_patch) < 0;
			if (!bad && uid && name)
				bad = lg_patch_status(r, name, uid, term) < 0;
			json_decref(term);
			if (bad || !uid || !name) {
				pthread_mutex_lock(&r->lock);
				r->patch_errors++;
				pthread_mutex_unlock(&r->lock);
			}
			if (w->kind == LG_FILL || bad) {
				/* fill has no watch: settled when written (and a failed write never will be) */
				pthread_mutex_lock(&r->lock);
				rec->terminal_ns = bench_now_ns();
				if (++r->settled >= r->o->count)
					pthread_cond_broadcast(&r->cond);
				pthread_mutex_unlock(&r->lock);
			}
		}
		kube_resp_free(&resp);
	}
	return NULL;
}

/* --- stamps from pod logs ----------------------------------------------------------------- */

/* The stamp a pod's log holds, or 0. The log is the one line the stamp prints, which also
 * decodes as a JSON number. */
static int64_t lg_pod_stamp(struct lg_run *r, const char *ns, const char *pod)
{
	char path[1024], podesc[320];
	struct kube_resp resp;
	long long v = 0;
	int rc;

	if (kube_escape(pod, podesc, sizeof(podesc)) < 0)
		return 0;
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s/log?container=%s", ns, podesc,
		 r->obj == LG_OBJ_TASKRUN ? "step-stamp" : "stamp");
	rc = kube_request(r->kc, "GET", path, NULL, NULL, &resp);
	if (resp.status == 200) {
		if (json_is_integer(resp.body))
			v = json_integer_value(resp.body);
		else if (json_is_real(resp.body))
			v = (long long)json_real_value(resp.body);
		else if (resp.raw) {
			/* more than one line: the first that is a stamp (a wrapper such as Tekton's
			 * entrypoint may write lines of its own) */
			for (const char *l = resp.raw; l && v <= 1000000000000000000LL;) {
				v = strtoll(l, NULL, 10);
				l = memchr(l, '\n', resp.raw_len - (size_t)(l - resp.raw));
				l = l ? l + 1 : NULL;
			}
		}
	}
	(void)rc;
	kube_resp_free(&resp);
	return v > 1000000000000000000LL ? (int64_t)v : 0;
}

/* After the run: each pod's (or each Job's pod's) stamp into its record. */
static void lg_fetch_stamps(struct lg_run *r, const char *ns)
{
	char path[2048], cont[1024] = "";
	struct kube_resp resp;

	do {
		json_t *it;
		const char *next;
		size_t k;

		snprintf(path, sizeof(path),
			 "/api/v1/namespaces/%s/pods?labelSelector=%s&limit=500%s%s", ns,
			 r->selector, cont[0] ? "&continue=" : "", cont);
		if (kube_request(r->kc, "GET", path, NULL, NULL, &resp) < 0 || resp.status != 200) {
			fprintf(stderr, "tasked-bench-load: list pods: %s\n", resp.message);
			kube_resp_free(&resp);
			return;
		}
		json_array_foreach(json_object_get(resp.body, "items"), k, it) {
			json_t *md = json_object_get(it, "metadata");
			const char *pod = json_string_value(json_object_get(md, "name"));
			long i = -1;

			if (r->obj == LG_OBJ_POD) {
				i = lg_index(r, it);
			} else if (r->obj == LG_OBJ_TASKRUN) {
				/* a TaskRun's pod: its tekton.dev/taskRun label names the TaskRun */
				json_t *fake = json_pack(
					"{s{sO}}", "metadata", "name",
					json_object_get(json_object_get(md, "labels"),
							"tekton.dev/taskRun"));
				i = fake ? lg_index(r, fake) : -1;
				json_decref(fake);
			} else {
				/* a Job's pod: its job-name label names the Job */
				json_t *fake = json_pack(
					"{s{sO}}", "metadata", "name",
					json_object_get(json_object_get(md, "labels"), "job-name"));
				i = fake ? lg_index(r, fake) : -1;
				json_decref(fake);
			}
			if (i < 0 || !pod || r->recs[i].stamp_ns)
				continue;
			r->recs[i].stamp_ns = lg_pod_stamp(r, ns, pod);
		}
		next = json_string_value(
			json_object_get(json_object_get(resp.body, "metadata"), "continue"));
		cont[0] = '\0';
		if (next && *next && kube_escape(next, cont, sizeof(cont)) < 0)
			cont[0] = '\0';
		kube_resp_free(&resp);
	} while (cont[0]);
}

/* --- results ------------------------------------------------------------------------------ */

static double lg_ms(int64_t a, int64_t b) { return (double)(b - a) / 1e6; }

static int lg_write_csv(struct lg_run *r)
{
	FILE *f = fopen(r->o->csv, "we");
	if (!f)
		return -errno;
	fputs("index,create_ns,created_ns,running_seen_ns,first_phase,terminal_seen_ns,terminal_phase,stamp_ns,http_status\n",
	      f);
	for (long i = 0; i < r->o->count; i++) {
		struct lg_rec *c = &r->recs[i];
		fprintf(f,
			"%ld,%" PRId64 ",%" PRId64 ",%" PRId64 ",%s,%" PRId64 ",%s,%" PRId64
			",%ld\n",
			i + r->o->start, c->create_ns, c->created_ns, c->running_ns,
			c->first[0] ? c->first : "-", c->terminal_ns,
			c->terminal[0] ? c->terminal : "-", c->stamp_ns, c->status);
	}
	return fclose(f) == 0 ? 0 : -EIO;
}

static json_t *lg_summary(struct lg_run *r, enum lg_kind kind, double elapsed_s)
{
	long n = r->o->count, ok = 0, succeeded = 0, other = 0, unsettled = 0, skipped = 0,
	     running = 0;
	long nstart = 0, nrun = 0, ndone = 0, nreq = 0, nsr = 0;
	double *start = calloc((size_t)n, sizeof(double)), *run = calloc((size_t)n, sizeof(double));
	double *done = calloc((size_t)n, sizeof(double)), *req = calloc((size_t)n, sizeof(double));
	double *s2r = calloc((size_t)n, sizeof(double));
	int64_t first_create = 0, last_create = 0, last_done = 0;
	json_t *o = NULL;

	if (!start || !run || !done || !req || !s2r)
		goto out;
	for (long i = 0; i < n; i++) {
		struct lg_rec *c = &r->recs[i];
		if (c->create_ns && (!first_create || c->create_ns < first_create))
			first_create = c->create_ns;
		if (c->create_ns > last_create)
			last_create = c->create_ns;
		if (c->status == 0 || c->status >= 300)
			continue;
		ok++;
		req[nreq++] = lg_ms(c->create_ns, c->created_ns);
		if (!c->terminal_ns) {
			unsettled++;
			continue;
		}
		if (c->terminal_ns > last_done)
			last_done = c->terminal_ns;
		if (strcmp(c->terminal, "Succeeded") == 0 || kind == LG_FILL)
			succeeded++;
		else
			other++;
		done[ndone++] = lg_ms(c->create_ns, c->terminal_ns);
		if (c->running_ns) {
			run[nrun++] = lg_ms(c->create_ns, c->running_ns);
			if (strcmp(c->first, "Running") == 0)
				running++;
			else
				skipped++;
		}
		if (c->stamp_ns && kind == LG_TASKS) {
			start[nstart++] = lg_ms(c->create_ns, c->stamp_ns);
			if (strcmp(c->first, "Running") == 0)
				s2r[nsr++] = lg_ms(c->stamp_ns, c->running_ns);
		}
	}
	o = json_pack(
		"{ss ss sI sI sI sI sI sI sI sI sI sf}", "mode",
		kind == LG_TASKS     ? "tasks"
		: kind == LG_CEILING ? "ceiling"
				     : "fill",
		"run", r->o->run, "count", (json_int_t)n, "created", (json_int_t)ok, "createErrors",
		(json_int_t)r->create_errors, "patchErrors", (json_int_t)r->patch_errors,
		"succeeded", (json_int_t)succeeded, "otherTerminal", (json_int_t)other, "unsettled",
		(json_int_t)unsettled, "threads", (json_int_t)r->o->threads, "watchRelists",
		(json_int_t)(r->relists > 0 ? r->relists - 1 : 0), "elapsedSeconds", elapsed_s);
	if (!o)
		goto out;
	json_object_set_new(o, "createRequestMs", bench_summary_ms(req, (size_t)nreq));
	if (kind == LG_TASKS) {
		json_object_set_new(o, "runningSeen", json_integer(running));
		json_object_set_new(o, "runningSkipped", json_integer(skipped));
		json_object_set_new(o, "queuedSeen", json_integer(r->queued));
		json_object_set_new(o, "stampMissing", json_integer(ndone - nstart));
		json_object_set_new(o, "createToStartMs", bench_summary_ms(start, (size_t)nstart));
		json_object_set_new(o, "createToRunningSeenMs",
				    bench_summary_ms(run, (size_t)nrun));
		json_object_set_new(o, "startToRunningSeenMs", bench_summary_ms(s2r, (size_t)nsr));
	}
	if (kind != LG_FILL)
		json_object_set_new(o, "createToTerminalSeenMs",
				    bench_summary_ms(done, (size_t)ndone));
	if (r->o->sequential)
		json_object_set_new(o, "sequential", json_true());
	if (r->o->rate > 0) {
		json_object_set_new(o, "rateTarget", json_real(r->o->rate));
		if (last_create > first_create)
			json_object_set_new(
				o, "rateAchieved",
				json_real((double)(n - 1) /
					  ((double)(last_create - first_create) / 1e9)));
	}
	if (last_done > first_create) {
		double wall = (double)(last_done - first_create) / 1e9;
		json_object_set_new(o, "wallSeconds", json_real(wall));
		json_object_set_new(o, "perSecond", json_real((double)(succeeded + other) / wall));
	}
	if (last_create > first_create)
		json_object_set_new(o, "createSeconds",
				    json_real((double)(last_create - first_create) / 1e9));
out:
	free(start);
	free(run);
	free(done);
	free(req);
	free(s2r);
	return o;
}

/* --- the modes that create ---------------------------------------------------------------- */

static int lg_run_create(struct lg_opts *o, struct kube_client *kc, enum lg_kind kind)
{
	struct lg_run r = { .o = o, .kc = kc };
	struct lg_worker w = { &r, kind };
	pthread_t creators[LG_MAX_THREADS], watch, shadows[8];
	int nthreads = 0, watching = 0, nshadow = 0, rc = 0;
	char ns[256], sel[160];
	struct timespec deadline;
	int64_t t_start;
	json_t *sum;

	if (kind == LG_TASKS && !o->command) {
		fprintf(stderr, "tasked-bench-load: tasks needs --command (bench/stamp)\n");
		return 2;
	}
	if (strcmp(o->object, "pod") == 0)
		r.obj = LG_OBJ_POD;
	else if (strcmp(o->object, "job") == 0)
		r.obj = LG_OBJ_JOB;
	else if (strcmp(o->object, "taskrun") == 0)
		r.obj = LG_OBJ_TASKRUN;
	else if (strcmp(o->object, "task") != 0) {
		fprintf(stderr, "tasked-bench-load: --object is task, pod, job or taskrun\n");
		return 2;
	}
	if (r.obj != LG_OBJ_TASK && (kind != LG_TASKS || !o->image)) {
		fprintf(stderr,
			"tasked-bench-load: --object pod|job|taskrun is for tasks, with --image\n");
		return 2;
	}
	if (kube_escape(o->namespace_, ns, sizeof(ns)) < 0)
		return 2;
	snprintf(r.coll, sizeof(r.coll),
		 kind == LG_CEILING        ? "/apis/bench.tasked.dev/v1/namespaces/%s/benchdummies"
		 : r.obj == LG_OBJ_POD     ? "/api/v1/namespaces/%s/pods"
		 : r.obj == LG_OBJ_JOB     ? "/apis/batch/v1/namespaces/%s/jobs"
		 : r.obj == LG_OBJ_TASKRUN ? "/apis/tekton.dev/v1/namespaces/%s/taskruns"
					   : "/apis/tasked.dev/v1alpha1/namespaces/%s/tasks",
		 ns);
	snprintf(sel, sizeof(sel), "%s=%s", LG_LABEL, o->run);
	if (kube_escape(sel, r.selector, sizeof(r.selector)) < 0)
		return 2;
	snprintf(r.prefix, sizeof(r.prefix), "%s", o->run);
	r.recs = calloc((size_t)o->count, sizeof(*r.recs));
	if (!r.recs)
		return 1;
	pthread_mutex_init(&r.lock, NULL);
	pthread_cond_init(&r.cond, NULL);
	if (kind != LG_TASKS && lg_load_template(&r) < 0)
		return 2;

	if (kind != LG_FILL) {
		/* The watch starts from a list's resourceVersion, so no event is missed even if the
		 * watch connects after the first creates. */
		/* A CRD that was just Established may still answer 503 for a moment. */
		for (int tries = 0; lg_list(&r) < 0; tries++) {
			if (tries >= 60)
				return 1;
			usleep(500000);
		}
		r.relists = 1;
		if (pthread_create(&watch, NULL, lg_watch_main, &r) == 0)
			watching = 1;
		for (long i = 0; i < o->extra_watches; i++)
			if (pthread_create(&shadows[nshadow], NULL, lg_shadow_watch_main, &r) == 0)
				nshadow++;
		usleep(300000); /* let the watches connect; not needed for correctness */
	}
	t_start = bench_mono_ns();
	r.t0_mono = t_start + 20000000;
	for (long i = 0; i < o->threads; i++)
		if (pthread_create(&creators[nthreads], NULL, lg_create_main, &w) == 0)
			nthreads++;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += o->timeout_s;
	pthread_mutex_lock(&r.lock);
	while (r.settled < o->count) {
		if (pthread_cond_timedwait(&r.cond, &r.lock, &deadline) == ETIMEDOUT) {
			fprintf(stderr,
				"tasked-bench-load: timed out after %lds with %ld of %ld settled\n",
				o->timeout_s, r.settled, o->count);
			rc = 3;
			break;
		}
	}
	pthread_mutex_unlock(&r.lock);
	r.stop = 1;
	if (rc == 0) {
		for (int i = 0; i < nthreads; i++)
			pthread_join(creators[i], NULL);
		if (watching)
			pthread_join(watch, NULL);
		for (int i = 0; i < nshadow; i++)
			pthread_join(shadows[i], NULL);
	}
	/* On a timeout, blocked threads are left behind: the process exits after the report. */
	if (rc == 0 && r.obj != LG_OBJ_TASK)
		lg_fetch_stamps(&r, ns);
	pthread_mutex_lock(&r.lock);
	sum = lg_summary(&r, kind, (double)(bench_mono_ns() - t_start) / 1e9);
	pthread_mutex_unlock(&r.lock);
	if (o->csv && lg_write_csv(&r) < 0)
		fprintf(stderr, "tasked-bench-load: cannot write %s\n", o->csv);
	if (sum) {
		if (o->json && bench_write_json(o->json, sum) < 0)
			fprintf(stderr, "tasked-bench-load: cannot write %s\n", o->json);
		json_dumpf(sum, stdout, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
		putchar('\n');
	}
	fflush(stdout);
	if (r.create_errors || r.patch_errors)
		rc = rc ? rc : 4;
	json_decref(sum);
	json_decref(r.running_patch);
	json_decref(r.terminal_status);
	if (rc == 3)
		_exit(rc);
	free(r.recs);
	return rc;
}

/* --- apimetrics --------------------------------------------------------------------------- */

static size_t lg_curl_write(char *p, size_t sz, size_t n, void *ud)
{
	return buf_append(ud, p, sz * n) < 0 ? 0 : sz * n;
}

/* Value of label key in a Prometheus label set "{a="x",b="y"}" into out ("" when absent). */
static void lg_label(const char *labels, const char *key, char *out, size_t outsz)
{
	char pat[64];
	const char *p;
	size_t n;

	out[0] = '\0';
	snprintf(pat, sizeof(pat), "%s=\"", key);
	for (p = labels; (p = strstr(p, pat)); p++) {
		if (p == labels || p[-1] == '{' || p[-1] == ',')
			break;
	}
	if (!p)
		return;
	p += strlen(pat);
	n = strcspn(p, "\"");
	if (n >= outsz)
		n = outsz - 1;
	memcpy(out, p, n);
	out[n] = '\0';
}

static int lg_apimetrics(struct lg_opts *o)
{
	struct kube_config cfg;
	struct buf b;
	struct curl_slist *hdrs = NULL;
	char err[512], url[1024], auth[8192];
	json_t *series = json_object(), *out;
	long code = 0;
	CURLcode cc;
	CURL *h;
	char *line, *save = NULL;

	if (kubeconfig_load(o->kubeconfig, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "tasked-bench-load: %s\n", err);
		return 2;
	}
	buf_init(&b, LG_METRICS_MAX);
	h = curl_easy_init();
	if (!h || !series)
		return 1;
	snprintf(url, sizeof(url), "%s/metrics", cfg.server);
	if (cfg.token) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", cfg.token);
		hdrs = curl_slist_append(hdrs, auth);
	}
	if (cfg.ca_pem) {
		struct curl_blob cb = { .data = cfg.ca_pem,
					.len = cfg.ca_len,
					.flags = CURL_BLOB_COPY };
		curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &cb);
	}
	if (cfg.cert_pem) {
		struct curl_blob cb = { .data = cfg.cert_pem,
					.len = cfg.cert_len,
					.flags = CURL_BLOB_COPY };
		struct curl_blob kb = { .data = cfg.key_pem,
					.len = cfg.key_len,
					.flags = CURL_BLOB_COPY };
		curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cb);
		curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &kb);
	}
	if (cfg.insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, lg_curl_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	explicit_bzero(auth, sizeof(auth));
	kubeconfig_free(&cfg);
	if (cc != CURLE_OK || code != 200 || !b.data) {
		fprintf(stderr, "tasked-bench-load: GET %s: %s (HTTP %ld)\n", url,
			curl_easy_strerror(cc), code);
		buf_free(&b);
		return 1;
	}
	for (line = strtok_r(b.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		static const char name[] = "apiserver_request_total{";
		char verb[32], group[128], res[128], sub[64], key[400];
		char *close;
		double v;

		if (strncmp(line, name, sizeof(name) - 1) != 0)
			continue;
		close = strrchr(line, '}');
		if (!close)
			continue;
		*close = '\0';
		v = strtod(close + 1, NULL);
		lg_label(line + sizeof(name) - 2, "verb", verb, sizeof(verb));
		lg_label(line + sizeof(name) - 2, "group", group, sizeof(group));
		lg_label(line + sizeof(name) - 2, "resource", res, sizeof(res));
		lg_label(line + sizeof(name) - 2, "subresource", sub, sizeof(sub));
		snprintf(key, sizeof(key), "%s %s%s%s%s%s", verb, group[0] ? group : "core", "/",
			 res, sub[0] ? "/" : "", sub);
		json_object_set_new(series, key,
				    json_integer(json_integer_value(json_object_get(series, key)) +
						 (json_int_t)v));
	}
	buf_free(&b);
	out = json_pack("{sIso}", "scrapedAtNs", (json_int_t)bench_now_ns(), "requests", series);
	if (o->json && bench_write_json(o->json, out) < 0) {
		fprintf(stderr, "tasked-bench-load: cannot write %s\n", o->json);
		json_decref(out);
		return 1;
	}
	if (!o->json) {
		json_dumpf(out, stdout, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
		putchar('\n');
	}
	json_decref(out);
	return 0;
}

int main(int argc, char **argv)
{
	struct lg_opts o;
	struct kube_config cfg;
	struct kube_client *kc;
	char err[512];
	int rc;

	if (lg_parse(argc, argv, &o) < 0)
		return 2;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (strcmp(o.mode, "apimetrics") == 0) {
		rc = lg_apimetrics(&o);
		curl_global_cleanup();
		return rc;
	}
	if (kubeconfig_load(o.kubeconfig, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "tasked-bench-load: %s\n", err);
		return 2;
	}
	kc = kube_client_new(&cfg);
	if (!kc)
		return 1;
	if (strcmp(o.mode, "tasks") == 0)
		rc = lg_run_create(&o, kc, LG_TASKS);
	else if (strcmp(o.mode, "ceiling") == 0)
		rc = lg_run_create(&o, kc, LG_CEILING);
	else if (strcmp(o.mode, "fill") == 0)
		rc = lg_run_create(&o, kc, LG_FILL);
	else {
		lg_usage(stderr);
		rc = 2;
	}
	kube_client_free(kc);
	curl_global_cleanup();
	return rc;
}
