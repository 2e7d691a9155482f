#include "certmgr.h"
#include "certs.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VWC_GV "admissionregistration.k8s.io/v1"

struct certmgr {
	struct certmgr_cfg cfg;
	char *namespace_, *secret, *webhook_config;
	char *names[CERTS_MAX_NAMES];
	char *served; /* the serving certificate last handed to on_cert */
	int vwc_missing_logged;
	atomic_int stop;
	pthread_t thread;
	int started;
};

int certmgr_new(const struct certmgr_cfg *cfg, struct certmgr **ret)
{
	struct certmgr *m;

	*ret = NULL;
	if (!cfg->kc || !cfg->namespace_ || !*cfg->namespace_ || !cfg->secret || !*cfg->secret ||
	    cfg->validity_s < 1 || certs_check_names(cfg->names, cfg->n_names) < 0)
		return -EINVAL;
	if (!(m = calloc(1, sizeof(*m))))
		return -ENOMEM;
	m->cfg = *cfg;
	m->namespace_ = strdup(cfg->namespace_);
	m->secret = strdup(cfg->secret);
	m->webhook_config = cfg->webhook_config && *cfg->webhook_config
				    ? strdup(cfg->webhook_config)
				    : NULL;
	for (size_t i = 0; i < cfg->n_names; i++)
		m->names[i] = strdup(cfg->names[i]);
	m->cfg.names = (const char *const *)m->names;
	for (size_t i = 0; i < cfg->n_names; i++)
		if (!m->names[i]) {
			certmgr_free(m);
			return -ENOMEM;
		}
	if (!m->namespace_ || !m->secret ||
	    (cfg->webhook_config && *cfg->webhook_config && !m->webhook_config)) {
		certmgr_free(m);
		return -ENOMEM;
	}
	*ret = m;
	return 0;
}

/* --- the Secret -------------------------------------------------------------------------------- */

static json_t *b64(const char *s)
{
	size_t n = strlen(s);
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	json_t *j;
	if (!out)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
	j = json_string(out);
	free(out);
	return j;
}

/* data[key] decoded; NULL when absent, not base64 or not text. */
static char *unb64(json_t *data, const char *key)
{
	const char *v = json_string_value(json_object_get(data, key));
	char *out = NULL;
	size_t n = 0;
	if (!v || strlen(v) > 2 * CERTS_MAX_PEM || util_base64_decode(v, &out, &n) < 0)
		return NULL;
	if (strlen(out) != n) {
		free(out);
		return NULL;
	}
	return out;
}

static void from_secret(json_t *secret, struct certs *c)
{
	json_t *data = json_object_get(secret, "data");
	memset(c, 0, sizeof(*c));
	c->ca_crt = unb64(data, "ca.crt");
	c->ca_key = unb64(data, "ca.key");
	c->tls_crt = unb64(data, "tls.crt");
	c->tls_key = unb64(data, "tls.key");
}

static json_t *secret_body(struct certmgr *m, const struct certs *c, const char *resource_version)
{
	json_t *s = json_pack("{sssss{sss{ss}}sss{sosososo}}", "apiVersion", "v1", "kind", "Secret",
			      "metadata", "name", m->secret, "labels",
			      "app.kubernetes.io/managed-by", "tasked-controller", "type",
			      "kubernetes.io/tls", "data", "tls.crt", b64(c->tls_crt), "tls.key",
			      b64(c->tls_key), "ca.crt", b64(c->ca_crt), "ca.key", b64(c->ca_key));
	if (s && resource_version)
		json_object_set_new(json_object_get(s, "metadata"), "resourceVersion",
				    json_string(resource_version));
	return s;
}

/* Creates (rv NULL) or replaces the Secret with c. 0, -EAGAIN on a conflict, -EIO. */
static int write_secret(struct certmgr *m, const struct certs *c, const char *rv, const char *why)
{
	char path[512];
	json_t *body = secret_body(m, c, rv);
	struct kube_resp resp;
	int r;

	if (!body || kube_path(path, sizeof(path), "v1", "secrets", m->namespace_,
			       rv ? m->secret : NULL, NULL) < 0) {
		json_decref(body);
		return -ENOMEM;
	}
	r = kube_request(m->cfg.kc, rv ? "PUT" : "POST", path, NULL, body, &resp);
	json_decref(body);
	if (r == 0 && resp.status >= 200 && resp.status < 300) {
		log_info(rv ? "webhook certificate renewed" : "webhook certificate created",
			 "secret", m->secret, "namespace", m->namespace_, "why", why);
		r = 0;
	} else if (r == 0 && (resp.status == 409 || resp.status == 404)) {
		r = -EAGAIN; /* another replica wrote first (or deleted it): read again */
	} else {
		log_warn("cannot write the webhook certificate Secret", "secret", m->secret,
			 "namespace", m->namespace_, "error", resp.message);
		r = -EIO;
	}
	kube_resp_free(&resp);
	return r;
}

/* --- the ValidatingWebhookConfiguration -------------------------------------------------------- */

static int sync_ca_bundle(struct certmgr *m, const char *ca)
{
	char path[512];
	struct kube_resp resp, up;
	json_t *want = b64(ca), *hooks, *h;
	size_t i;
	int changed = 0, r;

	if (!want || kube_path(path, sizeof(path), VWC_GV, "validatingwebhookconfigurations", NULL,
			       m->webhook_config, NULL) < 0) {
		json_decref(want);
		return -ENOMEM;
	}
	r = kube_request(m->cfg.kc, "GET", path, NULL, NULL, &resp);
	if (r < 0 || resp.status != 200) {
		if (r == 0 && resp.status == 404 && !m->vwc_missing_logged) {
			log_warn("ValidatingWebhookConfiguration not found; will set its caBundle "
				 "once it exists",
				 "name", m->webhook_config);
			m->vwc_missing_logged = 1;
		} else if (resp.status != 404) {
			log_warn("cannot read the ValidatingWebhookConfiguration", "name",
				 m->webhook_config, "error", resp.message);
		}
		kube_resp_free(&resp);
		json_decref(want);
		return r < 0 ? r : resp.status == 404 ? -ENOENT : -EIO;
	}
	m->vwc_missing_logged = 0;
	hooks = json_object_get(resp.body, "webhooks");
	json_array_foreach(hooks, i, h) {
		json_t *cc = json_object_get(h, "clientConfig");
		if (!json_is_object(cc) || json_equal(json_object_get(cc, "caBundle"), want))
			continue;
		json_object_set(cc, "caBundle", want);
		changed = 1;
	}
	json_decref(want);
	if (!changed) {
		kube_resp_free(&resp);
		return 0;
	}
	/* resp.body carries the resourceVersion read: a concurrent change makes this a 409. */
	r = kube_request(m->cfg.kc, "PUT", path, NULL, resp.body, &up);
	if (r == 0 && up.status == 200)
		log_info("webhook caBundle updated", "name", m->webhook_config);
	else if (!(r == 0 && up.status == 409))
		log_warn("cannot update the ValidatingWebhookConfiguration", "name",
			 m->webhook_config, "error", up.message);
	r = r < 0 ? r : up.status == 200 ? 0 : up.status == 409 ? -EAGAIN : -EIO;
	kube_resp_free(&up);
	kube_resp_free(&resp);
	return r;
}

/* --- one pass ---------------------------------------------------------------------------------- */

static void serve(struct certmgr *m, const struct certs *c)
{
	if (!c->tls_crt || !c->tls_key || (m->served && strcmp(m->served, c->tls_crt) == 0))
		return;
	free(m->served);
	m->served = strdup(c->tls_crt);
	if (m->cfg.on_cert)
		m->cfg.on_cert(c->tls_crt, c->tls_key, m->cfg.ud);
}

int certmgr_sync(struct certmgr *m)
{
	char path[512], why[128] = "";
	struct kube_resp resp;
	struct certs c;
	const char *rv;
	int r;

	if (kube_path(path, sizeof(path), "v1", "secrets", m->namespace_, m->secret, NULL) < 0)
		return -ENOMEM;
	r = kube_request(m->cfg.kc, "GET", path, NULL, NULL, &resp);
	if (r < 0 || (resp.status != 200 && resp.status != 404)) {
		log_warn("cannot read the webhook certificate Secret", "secret", m->secret,
			 "namespace", m->namespace_, "error", resp.message);
		kube_resp_free(&resp);
		return r < 0 ? r : -EIO;
	}
	if (resp.status == 404)
		memset(&c, 0, sizeof(c));
	else
		from_secret(resp.body, &c);
	rv = resp.status == 200
		     ? json_string_value(json_object_get(json_object_get(resp.body, "metadata"),
							 "resourceVersion"))
		     : NULL;
	r = certs_ensure(&c, m->cfg.names, m->cfg.n_names, m->cfg.validity_s, why, sizeof(why));
	if (r == 1)
		r = resp.status == 404 || rv
			    ? write_secret(m, &c, resp.status == 404 ? NULL : rv, why)
			    : -EIO;
	kube_resp_free(&resp);
	if (r == 0) {
		serve(m, &c);
		if (m->webhook_config)
			r = sync_ca_bundle(m, c.ca_crt);
		if (r == -ENOENT)
			r = 0; /* not installed (yet): the Secret is what this pass is for */
	}
	if (r < 0 && r != -EAGAIN && r != -EIO)
		log_warn("cannot make the webhook certificate", "error", strerror(-r));
	certs_clear(&c);
	return r;
}

static void *certmgr_loop(void *arg)
{
	struct certmgr *m = arg;
	int64_t period_s = m->cfg.validity_s / 10;

	if (period_s < 1)
		period_s = 1;
	if (period_s > 60)
		period_s = 60;
	while (!m->stop) {
		int r = certmgr_sync(m);
		int64_t wait_ms = r == 0 ? period_s * 1000 : 1000;
		for (int64_t t = 0; t < wait_ms && !m->stop; t += 100)
			usleep(100000);
	}
	return NULL;
}

int certmgr_start(struct certmgr *m)
{
	if (pthread_create(&m->thread, NULL, certmgr_loop, m) != 0)
		return -EAGAIN;
	m->started = 1;
	return 0;
}

void certmgr_free(struct certmgr *m)
{
	if (!m)
		return;
	if (m->started) {
		m->stop = 1;
		pthread_join(m->thread, NULL);
	}
	for (size_t i = 0; i < CERTS_MAX_NAMES; i++)
		free(m->names[i]);
	free(m->namespace_);
	free(m->secret);
	free(m->webhook_config);
	free(m->served);
	free(m);
}
