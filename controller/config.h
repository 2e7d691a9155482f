#pragma once
/* The controller's command line: one table (config.c) gives every flag its field, default,
 * bounds and help line, so parsing, defaults and --help cannot disagree. */
#include <stddef.h>
#include <stdio.h>

#define CONFIG_MAX_WORKERS 16

struct ctl_config {
	const char *kubeconfig, *namespace_, *listen, *broker_listen, *api_key, *api_key_file;
	const char *token_file, *tls_cert, *tls_key, *log_level;
	long workers, max_sse, lost_grace_s, heartbeat_s;
	long insecure_no_auth, check_config;
	/* leader election */
	long leader_elect;
	const char *le_namespace, *le_name;
	long le_duration_s, le_renew_s, le_retry_s;
	/* API: log store and event ring bounds, separate metrics listener */
	const char *metrics_listen;
	long log_max_task_kib, log_max_total_mib, event_buffer, sse_max_lag_kib;
	/* validating admission webhook (certmgr, webhook_srv) */
	const char *webhook_listen, *webhook_secret, *webhook_secret_ns, *webhook_config,
		*webhook_names;
	long webhook_validity_s;
	/* instance id (label tasked.dev/instance) and the on-disk log store */
	const char *instance_id, *log_dir;
	/* the container executor */
	long keep_task_pods, pod_start_timeout_s, pod_gate_s;
	const char *pod_apparmor, *pod_gate_image;
	/* RunnerPools (pools.h) */
	const char *pool_runner_image, *pool_broker_url, *pool_apparmor, *pool_pull_policy;
};

/* Fills c from the defaults, $TASKED_API_KEY and argv. 0; 1 after printing --help or
 * --version (exit 0); -EINVAL after printing what is wrong (exit 2). */
int config_parse(int argc, char **argv, struct ctl_config *c);
void config_usage(FILE *f);
