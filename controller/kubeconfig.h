#pragma once
/* Where the API server is and how to authenticate: from a kubeconfig file (its current context)
 * or from the in-cluster service account. Certificates and keys stay in memory (curl *_BLOB). */
#include <stddef.h>

#define KUBECONFIG_MAX_BYTES (1024 * 1024)
#define KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

struct kube_config {
	char *server; /* https://host:port, no trailing slash */
	char *ca_pem; /* NULL = system trust store */
	size_t ca_len;
	char *cert_pem, *key_pem;
	size_t cert_len, key_len;
	char *token;      /* static bearer token, or the last one read from token_file */
	char *token_file; /* re-read periodically and after a 401 */
	char *namespace_; /* context namespace or the service account's; may be NULL */
	int insecure;     /* insecure-skip-tls-verify */
};

/* Loads path (or $KUBECONFIG, or ~/.kube/config when path is NULL). Relative file references
 * are resolved against the kubeconfig's directory. On error err says why. */
int kubeconfig_load(const char *path, struct kube_config *ret, char *err, size_t errsz);
/* Parses kubeconfig text; dir is used for relative paths (may be NULL). */
int kubeconfig_parse(const char *data, size_t len, const char *dir, struct kube_config *ret,
		     char *err, size_t errsz);
/* In-cluster: KUBERNETES_SERVICE_HOST/PORT, the service account CA, token file and namespace.
 * sa_dir NULL means KUBE_SA_DIR. */
int kubeconfig_incluster(const char *sa_dir, struct kube_config *ret, char *err, size_t errsz);
void kubeconfig_free(struct kube_config *c);
