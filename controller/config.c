#include "config.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

enum cfg_kind { CFG_STR, CFG_LONG, CFG_FLAG, CFG_HELP, CFG_VERSION };

struct cfg_flag {
	const char *name;
	enum cfg_kind kind;
	size_t off;          /* of the field in struct ctl_config */
	const char *arg;     /* the value's name in --help */
	const char *def;     /* CFG_STR default (NULL: none) */
	long ldef, min, max; /* CFG_LONG default and bounds */
	const char *help;
};

#define S(n, f, a, d, h)                                                     \
	{                                                                    \
		n, CFG_STR, offsetof(struct ctl_config, f), a, d, 0, 0, 0, h \
	}
#define L(n, f, d, lo, hi, h)                                                        \
	{                                                                            \
		n, CFG_LONG, offsetof(struct ctl_config, f), "N", NULL, d, lo, hi, h \
	}
#define F(n, f, h)                                                                  \
	{                                                                           \
		n, CFG_FLAG, offsetof(struct ctl_config, f), NULL, NULL, 0, 0, 1, h \
	}

static const struct cfg_flag cfg_flags[] = {
	S("kubeconfig", kubeconfig, "FILE", NULL,
	  "kubeconfig (default: in-cluster, then $KUBECONFIG)"),
	S("namespace", namespace_, "NS", NULL, "watch one namespace (default: all)"),
	S("listen", listen, "ADDR", "127.0.0.1:8080", "API, /healthz, /readyz"),
	S("broker-listen", broker_listen, "ADDR", "127.0.0.1:8081", "runner broker"),
	S("runner-token-file", token_file, "FILE", NULL,
	  "token runners authenticate with (required)"),
	S("api-key", api_key, "KEY", NULL, "API key (or TASKED_API_KEY, or --api-key-file)"),
	S("api-key-file", api_key_file, "FILE", NULL, "API key file, re-read when it changes"),
	F("insecure-no-auth", insecure_no_auth, "allow a non-loopback --listen without an API key"),
	S("tls-cert", tls_cert, "FILE", NULL, "serve both listeners over TLS (with --tls-key)"),
	S("tls-key", tls_key, "FILE", NULL, "the key for --tls-cert"),
	L("max-sse-connections", max_sse, 100, 1, 100000, "cap on event streams"),
	L("sse-max-lag-kib", sse_max_lag_kib, 1024, 64, 1024 * 1024,
	  "drop a stream this far behind its client"),
	S("metrics-listen", metrics_listen, "ADDR", NULL,
	  "also serve /metrics (no key) on this address"),
	L("log-store-task-kib", log_max_task_kib, 1024, 1, 1024 * 1024,
	  "task output kept per task for the API"),
	L("log-store-total-mib", log_max_total_mib, 64, 1, 1024 * 1024, "task output kept in all"),
	S("instance-id", instance_id, "ID", NULL,
	  "act only on objects labelled tasked.dev/instance=ID (default: only unlabelled ones)"),
	S("log-dir", log_dir, "DIR", NULL,
	  "keep task output in files here too, reloaded at start (default: memory only)"),
	L("event-buffer", event_buffer, 4096, 16, 1000000, "events kept for Last-Event-ID resume"),
	L("workers", workers, 4, 1, CONFIG_MAX_WORKERS, "reconcile workers"),
	L("lost-grace-seconds", lost_grace_s, 15, 0, 3600,
	  "after a restart, wait this long for runners to report"),
	L("runner-heartbeat-seconds", heartbeat_s, 10, 1, 300,
	  "ping interval; a runner silent or away 3 intervals is lost"),
	F("leader-elect", leader_elect,
	  "run as one of several replicas; only the Lease holder acts"),
	S("leader-elect-namespace", le_namespace, "NS", NULL,
	  "Lease namespace (default: the service account's, else default)"),
	S("leader-elect-name", le_name, "NAME", "tasked-controller", "Lease name"),
	L("leader-elect-lease-seconds", le_duration_s, 15, 2, 3600, "Lease duration"),
	L("leader-elect-renew-seconds", le_renew_s, 10, 1, 3600, "renew deadline"),
	L("leader-elect-retry-seconds", le_retry_s, 2, 1, 3600, "retry period"),
	S("webhook-listen", webhook_listen, "ADDR", NULL,
	  "serve the validating admission webhook over TLS on this address"),
	S("webhook-secret", webhook_secret, "NAME", "tasked-webhook-tls",
	  "Secret holding the webhook's CA and certificate (made and renewed here)"),
	S("webhook-secret-namespace", webhook_secret_ns, "NS", NULL,
	  "its namespace (default: the service account's, else default)"),
	S("webhook-config", webhook_config, "NAME", NULL,
	  "ValidatingWebhookConfiguration whose caBundle is kept current"),
	S("webhook-cert-names", webhook_names, "LIST", "localhost,127.0.0.1",
	  "comma-separated DNS names and IPs of the webhook certificate"),
	L("webhook-cert-validity-seconds", webhook_validity_s, 31536000, 30, 315360000,
	  "life of the webhook certificate (renewed with a third left; the CA lives 10 times "
	  "longer)"),
	F("keep-task-pods", keep_task_pods,
	  "keep container tasks' pods after the result (debugging)"),
	L("pod-start-timeout-seconds", pod_start_timeout_s, 300, 10, 86400,
	  "a container task's pod not running this long after its creation, or after its "
	  "binding once bound, fails (PodNotStarted); one waiting for room on full nodes waits"),
	S("pod-apparmor", pod_apparmor, "PROFILE", "RuntimeDefault",
	  "AppArmor of container task pods: RuntimeDefault, Localhost/NAME or None"),
	S("pod-network-gate-image", pod_gate_image, "IMAGE", NULL,
	  "image with tasked-network-gate (the runner image): container tasks without network "
	  "wait in it until their deny-all NetworkPolicy is enforced (unset: no wait)"),
	L("pod-network-gate-seconds", pod_gate_s, 60, 5, 600,
	  "a network gate not confirming the deny-all after this long fails the task "
	  "(NetworkPolicyNotEnforced)"),
	S("pool-runner-image", pool_runner_image, "IMAGE", NULL,
	  "runner image whose bundle RunnerPools inject (unset: pools are not run)"),
	S("pool-broker-url", pool_broker_url, "URL", NULL,
	  "broker URL for RunnerPool runners, e.g. ws://tasked-broker.NS.svc:8081"),
	S("pool-apparmor", pool_apparmor, "PROFILE", "None",
	  "AppArmor of pool runners: Localhost/NAME, RuntimeDefault or None"),
	S("pool-image-pull-policy", pool_pull_policy, "POLICY", NULL,
	  "imagePullPolicy of pool pods (default: Kubernetes')"),
	S("log-level", log_level, "LEVEL", "info", "debug|info|warn|error"),
	F("check-config", check_config, "validate options and kubeconfig, then exit"),
	{ "version", CFG_VERSION, 0, NULL, NULL, 0, 0, 0, "print the version" },
	{ "help", CFG_HELP, 0, NULL, NULL, 0, 0, 0, "this text" },
};

void config_usage(FILE *f)
{
	fputs("Usage: tasked-controller [options]\n", f);
	for (size_t i = 0; i < UTIL_ARRAY_SIZE(cfg_flags); i++) {
		const struct cfg_flag *o = &cfg_flags[i];
		char lhs[64];
		snprintf(lhs, sizeof(lhs), "--%s%s%s", o->name, o->arg ? " " : "",
			 o->arg ? o->arg : "");
		fprintf(f, "  %-34s %s", lhs, o->help);
		if (o->kind == CFG_STR && o->def)
			fprintf(f, " (default %s)", o->def);
		else if (o->kind == CFG_LONG)
			fprintf(f, " (default %ld, %ld..%ld)", o->ldef, o->min, o->max);
		fputc('\n', f);
	}
}

static void cfg_defaults(struct ctl_config *c)
{
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < UTIL_ARRAY_SIZE(cfg_flags); i++) {
		const struct cfg_flag *o = &cfg_flags[i];
		char *field = (char *)c + o->off;
		if (o->kind == CFG_STR)
			memcpy(field, &o->def, sizeof(o->def));
		else if (o->kind == CFG_LONG)
			memcpy(field, &o->ldef, sizeof(o->ldef));
	}
	c->api_key = getenv("TASKED_API_KEY");
}

int config_parse(int argc, char **argv, struct ctl_config *c)
{
	struct option lo[UTIL_ARRAY_SIZE(cfg_flags) + 1];
	int idx;

	cfg_defaults(c);
	for (size_t i = 0; i < UTIL_ARRAY_SIZE(cfg_flags); i++) {
		const struct cfg_flag *o = &cfg_flags[i];
		int arg = o->kind == CFG_STR || o->kind == CFG_LONG;
		lo[i] = (struct option){ o->name, arg ? required_argument : no_argument, NULL,
					 256 + (int)i };
	}
	lo[UTIL_ARRAY_SIZE(cfg_flags)] = (struct option){ NULL, 0, NULL, 0 };
	optind = 1;
	while ((idx = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		const struct cfg_flag *o;
		char *field;
		long v = 1;

		if (idx < 256 || idx >= 256 + (int)UTIL_ARRAY_SIZE(cfg_flags)) {
			config_usage(stderr);
			return -EINVAL;
		}
		o = &cfg_flags[idx - 256];
		field = (char *)c + o->off;
		switch (o->kind) {
		case CFG_STR:
			memcpy(field, &optarg, sizeof(optarg));
			break;
		case CFG_LONG:
			if (util_parse_long(optarg, o->min, o->max, &v) < 0) {
				fprintf(stderr,
					"tasked-controller: invalid value %s (--%s takes "
					"%ld..%ld)\n",
					optarg, o->name, o->min, o->max);
				return -EINVAL;
			}
			/* fall through */
		case CFG_FLAG:
			memcpy(field, &v, sizeof(v));
			break;
		case CFG_VERSION:
			printf("tasked-controller %s\n", TASKED_VERSION);
			return 1;
		case CFG_HELP:
			config_usage(stdout);
			return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tasked-controller: unexpected argument %s\n", argv[optind]);
		return -EINVAL;
	}
	return 0;
}
