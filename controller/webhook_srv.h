#pragma once
/* The webhook's HTTPS listener: POST /validate takes an AdmissionReview (webhook.c) and answers
 * it. It runs on a server (lws context) and thread of its own, so admission reviews, which may
 * evaluate conditions for a whole Flow, never delay the broker or the API.
 *
 * The certificate is chosen per handshake (an OpenSSL certificate callback on the vhost's
 * context), so webhook_srv_set_cert replaces it for every later connection without closing the
 * listener or the process. Until a certificate has been set, handshakes fail. */
#include "webhook.h"

struct webhook_srv;

struct webhook_srv_cfg {
	const char *listen;     /* HOST:PORT */
	webhook_queue_fn queue; /* TaskQueue lookup (the controller's cache) */
	void *queue_ud;
};

/* Opens the listener (not yet served). */
int webhook_srv_new(const struct webhook_srv_cfg *cfg, struct webhook_srv **ret);
/* Serves on a thread of its own. */
int webhook_srv_start(struct webhook_srv *w);
/* Certificate and key (PEM) for the next handshakes; callable from any thread. 0 or -EINVAL
 * (they do not parse or do not match). */
int webhook_srv_set_cert(struct webhook_srv *w, const char *crt, const char *key);
/* Stops the thread and closes the listener. */
void webhook_srv_free(struct webhook_srv *w);
