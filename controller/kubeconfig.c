#include "kubeconfig.h"
#include "util.h"
#include "yamljson.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int kc_fail(char *err, size_t errsz, int r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errsz, fmt, ap);
	va_end(ap);
	return r;
}

static int kc_path(const char *dir, const char *p, char *out, size_t outsz)
{
	int n = p[0] == '/' || !dir ? snprintf(out, outsz, "%s", p)
				    : snprintf(out, outsz, "%s/%s", dir, p);
	return n < 0 || (size_t)n >= outsz ? -ENAMETOOLONG : 0;
}

/* Reads "<key>-data" (base64) or "<key>" (a file path) from obj. Absent is not an error. */
static int kc_blob(json_t *obj, const char *key, const char *dir, char **ret, size_t *ret_len,
		   char *err, size_t errsz)
{
	char k[64], path[PATH_MAX];
	const char *v;
	int r;

	snprintf(k, sizeof(k), "%s-data", key);
	v = json_string_value(json_object_get(obj, k));
	if (v && *v) {
		r = util_base64_decode(v, ret, ret_len);
		return r < 0 ? kc_fail(err, errsz, r, "kubeconfig: %s is not valid base64", k) : 0;
	}
	v = json_string_value(json_object_get(obj, key));
	if (!v || !*v)
		return 0;
	if ((r = kc_path(dir, v, path, sizeof(path))) < 0 ||
	    (r = util_read_file(path, KUBECONFIG_MAX_BYTES, ret, ret_len)) < 0)
		return kc_fail(err, errsz, r, "kubeconfig: cannot read %s %s: %s", key, v,
			       strerror(-r));
	return 0;
}

/* Finds the entry named name in a kubeconfig list (clusters, users, contexts). */
static json_t *kc_named(json_t *root, const char *list, const char *name, const char *field)
{
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(root, list), i, e) {
		const char *n = json_string_value(json_object_get(e, "name"));
		if (n && strcmp(n, name) == 0)
			return json_object_get(e, field);
	}
	return NULL;
}

static char *kc_strdup(const char *s) { return s ? strdup(s) : NULL; }

int kubeconfig_parse(const char *data, size_t len, const char *dir, struct kube_config *ret,
		     char *err, size_t errsz)
{
	json_t *root = NULL, *ctx, *cluster, *user;
	const char *cur, *cname, *uname, *server, *v;
	struct kube_config c = { 0 };
	char path[PATH_MAX];
	int r;

	memset(ret, 0, sizeof(*ret));
	r = yamljson_parse(data, len, &root, err, errsz);
	if (r < 0)
		return r;
	r = -EINVAL;
	if (!json_is_object(root)) {
		kc_fail(err, errsz, r, "kubeconfig: not a mapping");
		goto out;
	}
	cur = json_string_value(json_object_get(root, "current-context"));
	if (!cur || !*cur) {
		kc_fail(err, errsz, r, "kubeconfig: current-context is not set");
		goto out;
	}
	ctx = kc_named(root, "contexts", cur, "context");
	if (!json_is_object(ctx)) {
		kc_fail(err, errsz, r, "kubeconfig: context %s not found", cur);
		goto out;
	}
	cname = json_string_value(json_object_get(ctx, "cluster"));
	uname = json_string_value(json_object_get(ctx, "user"));
	cluster = cname ? kc_named(root, "clusters", cname, "cluster") : NULL;
	if (!json_is_object(cluster)) {
		kc_fail(err, errsz, r, "kubeconfig: cluster of context %s not found", cur);
		goto out;
	}
	user = uname ? kc_named(root, "users", uname, "user") : NULL;
	server = json_string_value(json_object_get(cluster, "server"));
	if (!server ||
	    (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0)) {
		kc_fail(err, errsz, r, "kubeconfig: cluster %s has no http(s) server", cname);
		goto out;
	}
	c.server = strdup(server);
	if (!c.server) {
		r = -ENOMEM;
		goto out;
	}
	while (strlen(c.server) > 8 && c.server[strlen(c.server) - 1] == '/')
		c.server[strlen(c.server) - 1] = '\0';
	v = json_string_value(json_object_get(cluster, "insecure-skip-tls-verify"));
	c.insecure = v && strcmp(v, "true") == 0;
	c.namespace_ = kc_strdup(json_string_value(json_object_get(ctx, "namespace")));
	if ((r = kc_blob(cluster, "certificate-authority", dir, &c.ca_pem, &c.ca_len, err, errsz)) <
	    0)
		goto out;
	if (json_is_object(user)) {
		if ((r = kc_blob(user, "client-certificate", dir, &c.cert_pem, &c.cert_len, err,
				 errsz)) < 0 ||
		    (r = kc_blob(user, "client-key", dir, &c.key_pem, &c.key_len, err, errsz)) < 0)
			goto out;
		if (!c.cert_pem != !c.key_pem) {
			r = kc_fail(err, errsz, -EINVAL,
				    "kubeconfig: user %s needs both client certificate and key",
				    uname);
			goto out;
		}
		c.token = kc_strdup(json_string_value(json_object_get(user, "token")));
		v = json_string_value(json_object_get(user, "tokenFile"));
		if (v && *v && !c.token) {
			if ((r = kc_path(dir, v, path, sizeof(path))) < 0)
				goto out;
			c.token_file = strdup(path);
			r = util_read_file(path, 64 * 1024, &c.token, NULL);
			if (r < 0) {
				kc_fail(err, errsz, r, "kubeconfig: cannot read tokenFile %s: %s",
					v, strerror(-r));
				goto out;
			}
			util_rstrip(c.token);
		}
		if (json_object_get(user, "exec") || json_object_get(user, "auth-provider")) {
			r = kc_fail(
				err, errsz, -ENOTSUP,
				"kubeconfig: user %s uses exec/auth-provider plugins, which are not supported; use a token or client certificate",
				uname);
			goto out;
		}
	}
	*ret = c;
	memset(&c, 0, sizeof(c));
	r = 0;
out:
	kubeconfig_free(&c);
	json_decref(root);
	return r;
}

int kubeconfig_load(const char *path, struct kube_config *ret, char *err, size_t errsz)
{
	char buf[PATH_MAX], *data = NULL, *slash;
	size_t len;
	const char *env = getenv("KUBECONFIG"), *home = getenv("HOME");
	int r;

	if (!path && env && *env) {
		/* client-go merges colon-separated lists; the first file holding a current context
		 * is what matters for a controller, so take the first entry. */
		snprintf(buf, sizeof(buf), "%s", env);
		if ((slash = strchr(buf, ':')))
			*slash = '\0';
	} else if (!path) {
		if (!home)
			return kc_fail(err, errsz, -ENOENT,
				       "no kubeconfig: set --kubeconfig or KUBECONFIG");
		snprintf(buf, sizeof(buf), "%s/.kube/config", home);
	} else {
		snprintf(buf, sizeof(buf), "%s", path);
	}
	r = util_read_file(buf, KUBECONFIG_MAX_BYTES, &data, &len);
	if (r < 0)
		return kc_fail(err, errsz, r, "cannot read kubeconfig %s: %s", buf, strerror(-r));
	slash = strrchr(buf, '/');
	if (slash)
		*slash = '\0';
	r = kubeconfig_parse(data, len, slash ? buf : ".", ret, err, errsz);
	free(data);
	return r;
}

int kubeconfig_incluster(const char *sa_dir, struct kube_config *ret, char *err, size_t errsz)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST"),
		   *port = getenv("KUBERNETES_SERVICE_PORT");
	struct kube_config c = { 0 };
	char path[PATH_MAX], url[512];
	int r;

	memset(ret, 0, sizeof(*ret));
	if (!sa_dir)
		sa_dir = KUBE_SA_DIR;
	if (!host || !*host || !port || !*port)
		return kc_fail(
			err, errsz, -ENOENT,
			"not in a cluster: KUBERNETES_SERVICE_HOST/PORT unset; use --kubeconfig");
	snprintf(url, sizeof(url), strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
		 port);
	c.server = strdup(url);
	snprintf(path, sizeof(path), "%s/token", sa_dir);
	c.token_file = strdup(path);
	if (!c.server || !c.token_file) {
		kubeconfig_free(&c);
		return -ENOMEM;
	}
	r = util_read_file(path, 64 * 1024, &c.token, NULL);
	if (r < 0) {
		kubeconfig_free(&c);
		return kc_fail(err, errsz, r, "cannot read service account token %s: %s", path,
			       strerror(-r));
	}
	util_rstrip(c.token);
	snprintf(path, sizeof(path), "%s/ca.crt", sa_dir);
	r = util_read_file(path, KUBECONFIG_MAX_BYTES, &c.ca_pem, &c.ca_len);
	if (r < 0) {
		kubeconfig_free(&c);
		return kc_fail(err, errsz, r, "cannot read service account CA %s: %s", path,
			       strerror(-r));
	}
	snprintf(path, sizeof(path), "%s/namespace", sa_dir);
	if (util_read_file(path, 256, &c.namespace_, NULL) == 0)
		util_rstrip(c.namespace_);
	*ret = c;
	return 0;
}

void kubeconfig_free(struct kube_config *c)
{
	free(c->server);
	free(c->ca_pem);
	free(c->cert_pem);
	if (c->key_pem)
		OPENSSL_cleanse(c->key_pem, c->key_len);
	free(c->key_pem);
	if (c->token)
		OPENSSL_cleanse(c->token, strlen(c->token));
	free(c->token);
	free(c->token_file);
	free(c->namespace_);
	memset(c, 0, sizeof(*c));
}
