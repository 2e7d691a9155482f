#ifndef TASKED_RUNNER_PLAINHTTP_H
#define TASKED_RUNNER_PLAINHTTP_H

/* One HTTP/1.1 POST over plain TCP, for the runner's auth when the controller is ws:// (a
 * sidecar on loopback): libcurl's global set-up initialises OpenSSL whether a transfer needs
 * TLS or not, about 2 MiB of resident memory an idle runner has no use for. wss://, and a
 * broker proxy, stay with libcurl. */

#include "util.h"

#include <stddef.h>

#define PH_HEAD_MAX (8 * 1024) /* status line and headers of the answer */

/* Splits an HTTP/1.x response: *status (100..999), the body (within data) and its length.
 * Honours Content-Length (a shorter body is -EPROTO); without it the body is the rest.
 * -EPROTO for anything else malformed, and for Transfer-Encoding (not needed, not parsed). */
int ph_parse_response(const char *data, size_t len, long *status, const char **body,
		      size_t *body_len);

/* POSTs body (Content-Type: application/json) to http://host:port/path; host is a name, an IPv4
 * or a bare IPv6 literal. The answer's body goes to resp (at most resp's max), its status to
 * *status. Gives up after connect_ms to connect, timeout_ms in all, or when cancel(ud) returns
 * nonzero (polled every 200 ms; cancel may be NULL). 0, or a negative errno: -ETIMEDOUT,
 * -ECANCELED, -ENOBUFS (answer too big), -EPROTO, or the socket's own. */
int ph_post(const char *host, int port, const char *path, const char *body, int connect_ms,
	    int timeout_ms, int (*cancel)(void *), void *ud, struct buf *resp, long *status);

#endif
