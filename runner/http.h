#pragma once
/* The http and remote executors (libcurl), behind the SSRF policy of common/ssrf.h.
 *
 *  - http: one request (the executor follows redirects itself, re-checking every hop), the
 *    response code decides the phase (successCodes, default 2xx), a JSON body becomes output.
 *  - remote: POST {task, input} to an external executor service, which answers
 *    {status, output, error, retryable}. Secret-derived values never leave in the body.
 *
 * Every connection is vetted on the address the socket is about to connect to
 * (CURLOPT_OPENSOCKETFUNCTION, and CURLOPT_PREREQFUNCTION on the connected address), so DNS
 * rebinding cannot bypass the policy; a refused request never leaves the machine and fails with
 * reason SSRFBlocked. Only http and https, TLS verification on, no proxy, no decompression,
 * bodies capped while streaming. See docs/runner.md and docs/security.md. */
#include "expand.h"
#include "proto.h"

#include <stddef.h>
#include <stdint.h>

#define HTTPX_DEFAULT_MAX_RESPONSE (16 * 1024 * 1024)
#define HTTPX_DEFAULT_MAX_REDIRECTS 5
#define HTTPX_DEFAULT_TIMEOUT_S 30
#define HTTPX_OUTPUT_MAX (32 * 1024)   /* a JSON body larger than this is not kept as output */
#define HTTPX_TOKEN_MAX (64 * 1024)    /* OAuth2 token response cap */
#define HTTPX_REMOTE_MAX (1024 * 1024) /* remote executor response cap */

struct httpx_spec;
struct exec_result;

/* What the executing thread gives the executor. */
struct httpx_io {
	int killfd;                /* readable once the attempt must stop */
	int (*kill_why)(void *ud); /* enum exec_kill once killfd is readable */
	void (*started)(void *ud); /* the first request is about to be sent */
	/* Output: stream 0 is the response body, stream 1 the executor's notes (request lines,
	 * redirects). Masking and caps are the caller's. */
	void (*out)(void *ud, int stream, const char *data, size_t len);
	/* $(VAR) in url, header values and body expands from the task's env. */
	expand_lookup_fn lookup;
	void *lookup_ud;
	/* Every secret value of the attempt (env entries and headers marked secret, the OAuth2
	 * client secret): replaced by "***" wherever it would appear in a remote request body. */
	const char *const *secrets;
	size_t nsecrets;
	void *ud;
	int64_t deadline_ms; /* wall clock; 0 = none */
};

/* Copies what the executor needs from a decoded http or remote dispatch (borrowed). A spec
 * problem (bad CIDR in the policy, ...) is recorded and httpx_run() reports InvalidSpec.
 * Returns 0 or -ENOMEM. */
int httpx_spec_new(const struct proto_msg *m, struct httpx_spec **ret);
void httpx_spec_free(struct httpx_spec *s);
/* Secret values of the spec (secret headers, the OAuth2 client secret), for masking. The
 * array and strings are borrowed from s. */
size_t httpx_spec_secrets(const struct httpx_spec *s, const char *const **ret);

/* Runs the request(s) to completion and fills the phase, reason, message, http_status,
 * output and retryable fields of res (the rest is the caller's). Blocks; returns 0. */
int httpx_run(struct httpx_spec *s, const struct httpx_io *io, struct exec_result *res);

/* Forgets every cached OAuth2 token (tests). */
void httpx_token_cache_clear(void);
