#pragma once
/* The runner's side of the broker protocol (docs/protocol.md): token -> grant over HTTP(S) with
 * libcurl, then a libwebsockets client on /runners/ws that says hello, runs what it is
 * dispatched on worker threads, sends started/log/result through the registry's outbox,
 * reconnects with jittered backoff, and drains on request.
 *
 * libwebsockets is single-threaded: conn_run() services it on the calling thread. conn_stop()
 * is the only function safe from other threads (and from a sigwait thread). */
#include "registry.h"

#include <jansson.h>
#include <stddef.h>

#define CONN_AUTH_PATH "/runners/auth"
#define CONN_WS_PATH "/runners/ws"
#define CONN_TOKEN_MAX 4096
#define CONN_GRANT_MAX 128

struct conn_url {
	int tls;        /* wss:// */
	char host[256]; /* without brackets */
	int port;
	int ipv6; /* host is an IPv6 literal (brackets needed in URLs) */
};

/* Parses ws://host[:port] or wss://host[:port] (path empty or "/"); -EINVAL otherwise. */
int conn_parse_url(const char *url, struct conn_url *ret);
/* Parses http://host:port (path empty or "/") into "host:port" for libwebsockets; -EINVAL
 * otherwise. */
int conn_parse_proxy(const char *url, char *out, size_t outsz);
/* Jittered exponential backoff: base doubled per failure up to max, then +-25 %. */
int64_t conn_backoff_ms(int failures, int64_t base_ms, int64_t max_ms);

struct conn_config {
	const char *url;
	const char *token_file;
	const char *ca_file; /* NULL: system trust store */
	const char *runner_id;
	const json_t *labels; /* object of strings (borrowed) */
	int capacity;
	int grace_seconds;
	const char *work_dir;
	int drop_uid;
	const char *health_file; /* rewritten every HEALTH_EVERY_MS (health.h), or NULL */
	/* HTTP proxy for the broker connection ("http://host:port"), or NULL: then none, whatever
	 * http_proxy and friends say (the token and grant would go through it). */
	const char *broker_proxy;
};

struct conn;

int conn_new(const struct conn_config *cfg, struct reg *reg, struct conn **ret);
/* Services the connection until a requested stop has drained. Returns 0, or 1 when worker
 * threads are still running (forced exit): then neither c nor the registry may be freed. */
int conn_run(struct conn *c);
/* level 1: drain (stop taking work, wait up to the grace period, then kill); level 2: kill the
 * running attempts now. Thread-safe. */
void conn_stop(struct conn *c, int level);
void conn_free(struct conn *c);
