/* tasked-controller: watches Tasks, dispatches them to runners, writes their status. */
#include "api.h"
#include "broker.h"
#include "certmgr.h"
#include "certs.h"
#include "config.h"
#include "server.h"
#include "informer.h"
#include "instance.h"
#include "kube.h"
#include "kubeconfig.h"
#include "deps.h"
#include "flowctl.h"
#include "lease.h"
#include "queues.h"
#include "log.h"
#include "metrics.h"
#include "pools.h"
#include "recorder.h"
#include "taskctl.h"
#include "util.h"
#include "webhook_srv.h"
#include "workqueue.h"

#include <stdatomic.h>
#include <curl/curl.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_WORKERS CONFIG_MAX_WORKERS

static struct server *g_server;

static void on_signal(int sig)
{
	if (g_server)
		server_stop(g_server);
}

static enum log_level parse_level(const char *s)
{
	if (strcmp(s, "debug") == 0)
		return LOG_LVL_DEBUG;
	if (strcmp(s, "warn") == 0)
		return LOG_LVL_WARN;
	if (strcmp(s, "error") == 0)
		return LOG_LVL_ERROR;
	return LOG_LVL_INFO;
}

struct app {
	struct informer *inf, *queues_inf, *flows_inf, *pools_inf;
	struct pools *pools;
	struct server *server; /* the main loop: broker and API listeners */
	struct broker *broker;
	struct api *api;
	_Atomic(struct lease *) lease; /* set after the workers started */
	int electing;                  /* --leader-elect: no lease yet means not leading */
	struct taskctl *tc;
	struct podexec *pods; /* the container executor */
	struct flowctl *flows;
	struct queues *queues;
	struct deps_index *deps;
	struct webhook_srv *webhook;
	struct certmgr *certs;
	atomic_int stop;
	pthread_t status_thread;
	int status_started;
};

/* Leading: holding the Lease with --leader-elect (not before it is made), always without. */
static int app_leading(struct app *a)
{
	struct lease *l = atomic_load(&a->lease);
	return l ? lease_is_leader(l) : !a->electing;
}

/* TaskQueue status (pending/queued/running, runner availability) every 2 s, when leading. */
static void *app_status_loop(void *ud)
{
	struct app *a = ud;
	int swept = 0;
	for (unsigned n = 1; !a->stop; n++) {
		for (int i = 0; i < 20 && !a->stop; i++)
			usleep(100000);
		if (!swept) /* logs reloaded from --log-dir whose task is gone */
			swept = api_sweep_logs(a->api);
		if (!a->stop && app_leading(a)) {
			queues_write_status(a->queues);
			pools_reconcile_all(a->pools);
		}
		/* glibc keeps freed heap after bursts; hand it back now and then. */
		if (n % 30 == 0)
			malloc_trim(0);
	}
	return NULL;
}

static int app_leads(void *ud)
{
	struct app *a = ud;
	return app_leading(a);
}

/* Runners are taken once the Task cache has synced (what a runner says it holds is checked
 * against it) and, with --leader-elect, only by the leader. */
static int app_admits(void *ud)
{
	struct app *a = ud;
	return app_leading(a) && a->inf && informer_synced(a->inf);
}

static void app_lease_started(void *ud)
{
	struct app *a = ud;
	log_info("leading: dispatching tasks");
	taskctl_resume(a->tc);
	flowctl_resume(a->flows);
}

/* Like controller-runtime: a controller that lost its lease exits, and its replacement starts
 * from the API server's state. Runners keep their tasks and report them to the new leader. */
static void app_lease_lost(void *ud)
{
	log_error("exiting after losing leadership");
	_exit(1);
}

static int app_ready(void *ud, char *why, size_t whysz)
{
	struct app *a = ud;
	if (!a->inf || !a->queues_inf || !a->flows_inf || !informer_synced(a->inf) ||
	    !informer_synced(a->queues_inf) || !informer_synced(a->flows_inf)) {
		snprintf(why, whysz, "the Task, TaskQueue and Flow caches have not synced yet");
		return 0;
	}
	for (int i = 0; i < 3; i++) {
		struct informer *inf = i == 0 ? a->inf : i == 1 ? a->queues_inf : a->flows_inf;
		int64_t stalled = informer_stalled_ms(inf);
		if (stalled) {
			snprintf(
				why, whysz,
				"the %s watch has delivered nothing for %lld s, longer than its timeout",
				i == 0   ? "Task"
				: i == 1 ? "TaskQueue"
					 : "Flow",
				(long long)(stalled / 1000));
			return 0;
		}
	}
	if (!a->broker || !broker_listening(a->broker)) {
		snprintf(why, whysz, "broker is not listening");
		return 0;
	}
	return 1;
}

/* The webhook's TaskQueue lookup: the cache once synced (before, no queue is known, and no
 * review is refused for a queue's policy). */
static json_t *app_webhook_queue(const char *ns, const char *name, void *ud)
{
	struct app *a = ud;
	char key[512];
	if (!a->queues_inf || !informer_synced(a->queues_inf) ||
	    snprintf(key, sizeof(key), "%s/%s", ns, name) >= (int)sizeof(key))
		return NULL;
	return informer_get(a->queues_inf, key);
}

static void app_webhook_cert(const char *crt, const char *key, void *ud)
{
	struct app *a = ud;
	if (webhook_srv_set_cert(a->webhook, crt, key) < 0)
		log_error("the webhook certificate from the Secret does not load");
}

/* --webhook-listen: the TLS listener, and the loop that keeps its certificate in the Secret
 * (every replica runs both). */
static int app_webhook(struct app *a, const struct ctl_config *o, struct kube_client *kc,
		       const char *sa_ns)
{
	char list[1024], *save = NULL, *names[CERTS_MAX_NAMES + 1];
	size_t n = 0;
	int r;

	if (!o->webhook_listen)
		return 0;
	snprintf(list, sizeof(list), "%s", o->webhook_names);
	for (char *t = strtok_r(list, ",", &save); t && n <= CERTS_MAX_NAMES;
	     t = strtok_r(NULL, ",", &save))
		if (*t)
			names[n++] = t;
	if (certs_check_names((const char *const *)names, n) < 0) {
		log_error("--webhook-cert-names takes 1 to 16 DNS names or IP addresses", "value",
			  o->webhook_names);
		return -EINVAL;
	}
	if ((r = webhook_srv_new(&(struct webhook_srv_cfg){ .listen = o->webhook_listen,
							    .queue = app_webhook_queue,
							    .queue_ud = a },
				 &a->webhook)) < 0)
		return r;
	r = certmgr_new(&(struct certmgr_cfg){ .kc = kc,
					       .namespace_ = o->webhook_secret_ns
								     ? o->webhook_secret_ns
							     : *sa_ns ? sa_ns
								      : "default",
					       .secret = o->webhook_secret,
					       .webhook_config = o->webhook_config,
					       .names = (const char *const *)names,
					       .n_names = n,
					       .validity_s = o->webhook_validity_s,
					       .on_cert = app_webhook_cert,
					       .ud = a },
			&a->certs);
	if (r < 0)
		return r;
	/* The first pass before serving, so the listener rarely starts without a certificate. */
	(void)certmgr_sync(a->certs);
	if ((r = webhook_srv_start(a->webhook)) < 0 || (r = certmgr_start(a->certs)) < 0)
		return r;
	return 0;
}

/* After the workers stopped: the reverse of app_wire, and the lease (the API goes last, after
 * this). */
static void app_free(struct app *a)
{
	struct lease *lease = atomic_load(&a->lease);
	struct informer *infs[] = { a->inf, a->queues_inf, a->flows_inf, a->pools_inf };

	/* The webhook reads the TaskQueue cache: it goes before the informers. */
	certmgr_free(a->certs);
	webhook_srv_free(a->webhook);
	if (lease)
		lease_stop(lease);
	for (size_t i = 0; i < UTIL_ARRAY_SIZE(infs); i++)
		if (infs[i])
			informer_stop(infs[i]);
	/* Closing the connections calls back into the broker and the API: they go after. */
	server_free(a->server);
	broker_free(a->broker);
	for (size_t i = 0; i < UTIL_ARRAY_SIZE(infs); i++)
		informer_free(infs[i]);
	podexec_free(a->pods);
	flowctl_free(a->flows);
	taskctl_free(a->tc);
	queues_free(a->queues);
	pools_free(a->pools);
	deps_index_free(a->deps);
}

/* Every cache sees only this install's objects (instance.h). */
static int app_select(struct app *a, const char *instance_id)
{
	char sel[128];
	int r = instance_selector(instance_id, sel, sizeof(sel));
	struct informer *infs[] = { a->inf, a->queues_inf, a->flows_inf, a->pools_inf };
	for (size_t i = 0; r == 0 && i < UTIL_ARRAY_SIZE(infs); i++)
		r = informer_set_selector(infs[i], sel);
	return r;
}

/* Builds the caches and the reconcilers in dependency order and subscribes each consumer to the
 * caches it follows. path receives the Task collection watched. */
static int app_wire(struct app *a, const struct ctl_config *o, struct kube_client *kc, struct wq *q,
		    struct recorder *recorder, char *path, size_t pathsz)
{
	struct api *api;
	int r;

	a->deps = deps_index_new();
	if (!a->deps ||
	    kube_path(path, pathsz, KUBE_GV_TASKED, "tasks", o->namespace_, NULL, NULL) < 0)
		return -ENOMEM;
	/* The caches first (their consumers subscribe below), then each object after what it uses.
	 * The TaskQueue and Flow watches have the Task watch's scope. */
	{
		char qpath[512], fpath[512], ppath[512];
		if (kube_path(qpath, sizeof(qpath), KUBE_GV_TASKED, "taskqueues", o->namespace_,
			      NULL, NULL) < 0 ||
		    kube_path(fpath, sizeof(fpath), KUBE_GV_TASKED, "flows", o->namespace_, NULL,
			      NULL) < 0 ||
		    kube_path(ppath, sizeof(ppath), KUBE_GV_TASKED, "runnerpools", o->namespace_,
			      NULL, NULL) < 0)
			return -ENOMEM;
		a->pools_inf = informer_new(kc, ppath, 0, NULL, NULL);
		if (!a->pools_inf)
			return -ENOMEM;
		a->inf = informer_new(kc, path, 10 * 60 * 1000, NULL, NULL);
		a->queues_inf = informer_new(kc, qpath, 0, NULL, NULL);
		a->flows_inf = informer_new(kc, fpath, 10 * 60 * 1000, NULL, NULL);
		if (!a->inf || !a->queues_inf || !a->flows_inf)
			return -ENOMEM;
		if ((r = app_select(a, o->instance_id)) < 0)
			return r;
	}
	informer_set_tagger(a->inf, queues_task_tag);
	informer_index_label(a->inf, "tasked.dev/flow");
	if ((r = server_new(o->tls_cert, o->tls_key, &a->server)) < 0 ||
	    (r = broker_new(&(struct broker_cfg){ .server = a->server,
						  .broker_addr = o->broker_listen,
						  .token_file = o->token_file,
						  .heartbeat_s = (int)o->heartbeat_s,
						  .admit = app_admits,
						  .admit_ud = a },
			    &a->broker)) < 0)
		return r;
	a->api = api = api_new(&(struct api_cfg){
		.api_key = o->api_key,
		.api_key_file = o->api_key_file,
		.ready = app_ready,
		.ud = a,
		.max_sse = (int)o->max_sse,
		.log_max_per_task = (size_t)o->log_max_task_kib * 1024,
		.log_max_total = (size_t)o->log_max_total_mib * 1024 * 1024,
		.log_dir = o->log_dir,
		.event_buffer = (size_t)o->event_buffer,
		.sse_max_lag = (size_t)o->sse_max_lag_kib * 1024,
		.server = a->server,
		.listen = o->listen,
		.metrics_listen = o->metrics_listen,
		.tls_cert = o->tls_cert,
		.tls_key = o->tls_key,
		.sources = &(struct metrics_sources){ .inf = a->inf,
						      .queues_inf = a->queues_inf,
						      .flows_inf = a->flows_inf,
						      .broker = a->broker,
						      .kc = kc,
						      .queue = q,
						      .instance = o->instance_id } });
	if (!api)
		return -ENOMEM;
	a->queues = queues_new(kc, q, a->queues_inf, a->inf, a->broker);
	if (!a->queues)
		return -ENOMEM;
	a->pods = podexec_new(
		&(struct podexec_cfg){ .kc = kc,
				       .namespace_ = o->namespace_,
				       .apparmor = o->pod_apparmor,
				       .gate_image = o->pod_gate_image,
				       .gate_timeout_s = o->pod_gate_s,
				       .keep_pods = (int)o->keep_task_pods,
				       .start_timeout_ms = o->pod_start_timeout_s * 1000,
				       .may_act = o->leader_elect ? app_leads : NULL,
				       .may_act_ud = a });
	if (!a->pods)
		return -ENOMEM;
	a->pools = pools_new(&(struct pools_cfg){ .kc = kc,
						  .pools_inf = a->pools_inf,
						  .tasks_inf = a->inf,
						  .queues = a->queues,
						  .broker = a->broker,
						  .tasks_queue = q,
						  .token_file = o->token_file,
						  .env = { .runner_image = o->pool_runner_image,
							   .broker_url = o->pool_broker_url,
							   .apparmor = o->pool_apparmor,
							   .pull_policy = o->pool_pull_policy } });
	if (!a->pools)
		return -ENOMEM;
	a->tc = taskctl_new(&(struct taskctl_cfg){ .kc = kc,
						   .inf = a->inf,
						   .broker = a->broker,
						   .queue = q,
						   .pods = a->pods,
						   .pools = a->pools,
						   .recorder = recorder,
						   .queues = a->queues,
						   .deps = a->deps,
						   .lost_grace_ms = o->lost_grace_s * 1000,
						   .startup_hold_ms = o->lost_grace_s * 1000,
						   .may_act = o->leader_elect ? app_leads : NULL,
						   .may_act_ud = a,
						   .on_status = api_on_status,
						   .on_log = api_on_log,
						   .observer_ud = api });
	if (!a->tc)
		return -ENOMEM;
	a->flows = flowctl_new(&(struct flowctl_cfg){ .kc = kc,
						      .tasks = a->inf,
						      .flows = a->flows_inf,
						      .may_act = o->leader_elect ? app_leads : NULL,
						      .may_act_ud = a });
	if (!a->flows)
		return -ENOMEM;
	/* Task events: the reconciler, then the Flow a child belongs to, then the API's feed. */
	if (informer_add_handler(a->inf, taskctl_on_event, a->tc) < 0 ||
	    informer_add_handler(a->inf, flowctl_on_task_event, a->flows) < 0 ||
	    informer_add_handler(a->inf, api_on_informer_event, api) < 0 ||
	    informer_add_handler(a->queues_inf, queues_on_event, a->queues) < 0 ||
	    informer_add_handler(a->flows_inf, flowctl_on_event, a->flows) < 0 ||
	    informer_add_handler(a->pools_inf, pools_on_event, a->pools) < 0)
		return -ENOMEM;
	informer_set_undecodable(a->inf, taskctl_on_undecodable, a->tc);
	broker_subscribe(a->broker, &taskctl_broker_ops, a->tc);
	podexec_subscribe(a->pods, &taskctl_broker_ops, a->tc);
	pools_set_wake(a->pools, taskctl_broker_ops.capacity, a->tc);
	queues_set_pools(a->queues, pools_queue_runners, a->pools);
	kube_client_set_observer(kc, metrics_kube_observer, api_metrics(api));
	return 0;
}

int main(int argc, char **argv)
{
	struct ctl_config o;
	struct kube_config kcfg;
	struct kube_client *kc = NULL;
	struct wq *q = NULL;
	struct taskctl *tc = NULL;
	struct api *api = NULL;
	struct recorder *recorder = NULL;
	struct app app = { 0 };
	struct lease *lease = NULL;
	char identity[192], lease_ns[128] = "", rnd[17];
	pthread_t workers[MAX_WORKERS];
	char err[512], host[128], path[512], lname[256];
	int port, r, nworkers = 0, rc = 1;

	/* glibc gives each thread that allocates an arena of its own (up to 8 per core), each
	 * keeping what it freed: under load that grows with the thread count. Two arenas keep the
	 * informers and workers from contending on one lock. */
	mallopt(M_ARENA_MAX, 2);
	r = config_parse(argc, argv, &o);
	if (r != 0)
		return r > 0 ? 0 : 2;
	log_init("controller", parse_level(o.log_level));
	if (!o.token_file) {
		fprintf(stderr, "tasked-controller: --runner-token-file is required\n");
		return 2;
	}
	if (server_parse_addr(o.listen, host, sizeof(host), &port) < 0 ||
	    server_parse_addr(o.broker_listen, host + 64, sizeof(host) - 64, &port) < 0) {
		fprintf(stderr, "tasked-controller: --listen and --broker-listen take HOST:PORT\n");
		return 2;
	}
	server_parse_addr(o.listen, host, sizeof(host), &port);
	if (!util_host_is_loopback(host) && !o.insecure_no_auth && !(o.api_key && *o.api_key) &&
	    !o.api_key_file) {
		fprintf(stderr,
			"tasked-controller: refusing to serve the API on %s without an API key; "
			"set --api-key, TASKED_API_KEY or --api-key-file (or --insecure-no-auth)\n",
			o.listen);
		return 2;
	}
	if (o.instance_id && !instance_id_valid(o.instance_id)) {
		fprintf(stderr,
			"tasked-controller: --instance-id takes a DNS label: 1-63 of a-z, 0-9 and '-', "
			"starting and ending with a letter or digit\n");
		return 2;
	}
	if (!!o.tls_cert != !!o.tls_key) {
		fprintf(stderr, "tasked-controller: --tls-cert and --tls-key go together\n");
		return 2;
	}
	r = o.kubeconfig || getenv("KUBECONFIG") || !getenv("KUBERNETES_SERVICE_HOST")
		    ? kubeconfig_load(o.kubeconfig, &kcfg, err, sizeof(err))
		    : kubeconfig_incluster(NULL, &kcfg, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "tasked-controller: %s\n", err);
		return 2;
	}
	if (kcfg.namespace_)
		snprintf(lease_ns, sizeof(lease_ns), "%s", kcfg.namespace_);
	/* Identity as controller-runtime makes it: hostname_random. */
	if (gethostname(identity, 96) < 0)
		snprintf(identity, sizeof(identity), "tasked");
	identity[95] = '\0';
	util_random_hex(rnd, 8);
	snprintf(identity + strlen(identity), sizeof(identity) - strlen(identity), "_%s", rnd);
	if (o.check_config) {
		printf("configuration ok: API server %s\n", kcfg.server);
		kubeconfig_free(&kcfg);
		return 0;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	kc = kube_client_new(&kcfg);
	q = wq_new();
	if (!kc || !q)
		goto out;
	app.electing = (int)o.leader_elect;
	recorder = recorder_new(kc, identity);
	r = app_wire(&app, &o, kc, q, recorder, path, sizeof(path));
	tc = app.tc;
	api = app.api;
	if (r < 0)
		goto out;
	if (api_start(api) < 0)
		goto out;
	g_server = app.server;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	log_info("starting", "version", TASKED_VERSION, "watch", path, "instance",
		 o.instance_id ? o.instance_id : "(none: objects without tasked.dev/instance)");
	if (informer_start(app.queues_inf) < 0 || informer_start(app.flows_inf) < 0 ||
	    informer_start(app.pools_inf) < 0 || informer_start(app.inf) < 0 ||
	    flowctl_start(app.flows) < 0 || podexec_start(app.pods) < 0)
		goto out;
	if (app_webhook(&app, &o, kc, lease_ns) < 0)
		goto out;
	if (pthread_create(&app.status_thread, NULL, app_status_loop, &app) == 0)
		app.status_started = 1;
	if (o.leader_elect) {
		const char *ns = o.le_namespace ? o.le_namespace
				 : lease_ns[0]  ? lease_ns
						: "default";
		if (instance_lease_name(o.le_name, o.instance_id, lname, sizeof(lname)) < 0) {
			log_error("--leader-elect-name is too long");
			goto out;
		}
		r = lease_start(&(struct lease_cfg){ .kc = kc,
						     .namespace_ = ns,
						     .name = lname,
						     .identity = identity,
						     .duration_ms = o.le_duration_s * 1000,
						     .renew_deadline_ms = o.le_renew_s * 1000,
						     .retry_ms = o.le_retry_s * 1000,
						     .on_started = app_lease_started,
						     .on_lost = app_lease_lost,
						     .ud = &app },
				&lease);
		atomic_store(&app.lease, lease);
		if (r < 0)
			goto out;
		log_info("leader election on", "lease", lname, "namespace", ns, "identity",
			 identity);
	}
	for (nworkers = 0; nworkers < o.workers; nworkers++)
		if (pthread_create(&workers[nworkers], NULL, taskctl_worker, tc) != 0)
			break;
	rc = server_run(app.server) < 0 ? 1 : 0;
	log_info("shutting down");
out:
	app.stop = 1;
	if (app.status_started)
		pthread_join(app.status_thread, NULL);
	if (app.flows)
		flowctl_stop(app.flows);
	if (q)
		wq_shutdown(q);
	for (int i = 0; i < nworkers; i++)
		pthread_join(workers[i], NULL);
	g_server = NULL;
	app_free(&app);
	recorder_free(recorder);
	api_free(api);
	wq_free(q);
	kube_client_free(kc);
	curl_global_cleanup();
	return rc;
}
