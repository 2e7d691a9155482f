#pragma once
/* Keeps the webhook's certificates in one Secret and the CA in the ValidatingWebhookConfiguration.
 *
 * Every replica runs this loop, leader or not, since every replica serves the webhook; they
 * agree through the Secret. A pass reads the Secret; when it is absent, makes a set (certs.c) and
 * creates it (a 409 means another replica was first: read again); when it is present but due
 * for renewal, renews it and replaces it under the resourceVersion that was read (a 409 means
 * another replica renewed first: read again). Whatever the Secret then holds is served (on_cert)
 * and its CA bundle written into every webhook's clientConfig.caBundle of the named
 * ValidatingWebhookConfiguration when it differs (update under its resourceVersion).
 *
 * Passes run every tenth of the certificate's validity (1 to 60 s), and again after a second
 * following a conflict or an error. Key material is never logged. */
#include "kube.h"

#include <stddef.h>
#include <stdint.h>

struct certmgr;

struct certmgr_cfg {
	struct kube_client *kc;
	const char *namespace_;     /* the Secret's */
	const char *secret;         /* its name */
	const char *webhook_config; /* ValidatingWebhookConfiguration name; NULL or "" = leave it */
	const char *const *names;   /* DNS names and IPs the certificate must cover */
	size_t n_names;
	int64_t validity_s;
	/* The serving certificate and key to use (PEM), on the manager's thread; called on the
	 * first pass that has one and whenever it changes. */
	void (*on_cert)(const char *crt, const char *key, void *ud);
	void *ud;
};

/* Checks cfg (names, validity) and copies it; the loop starts with certmgr_start. */
int certmgr_new(const struct certmgr_cfg *cfg, struct certmgr **ret);
/* One pass now: 0 when the Secret is in place and served, -EAGAIN (conflict, try again soon), or
 * another negative errno. */
int certmgr_sync(struct certmgr *m);
int certmgr_start(struct certmgr *m);
/* Stops and joins the loop, frees. */
void certmgr_free(struct certmgr *m);
