/* kubeconfig parsing: current context, data and file forms, token files, errors. */
#include "kubeconfig.h"
#include "tap.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static const char *kc_token =
	"apiVersion: v1\nkind: Config\ncurrent-context: second\n"
	"clusters:\n"
	"- name: one\n  cluster: {server: 'https://10.0.0.1:6443'}\n"
	"- name: two\n  cluster:\n    server: https://127.0.0.1:6443/\n"
	"    certificate-authority-data: aGVsbG8gY2E=\n"
	"contexts:\n"
	"- name: first\n  context: {cluster: one, user: alice}\n"
	"- name: second\n  context: {cluster: two, user: bob, namespace: team}\n"
	"users:\n"
	"- name: alice\n  user: {token: wrong}\n"
	"- name: bob\n  user:\n    token: s3cret\n";

int main(void)
{
	struct kube_config c;
	char err[256], dir[] = "/tmp/tasked-kc-XXXXXX", path[512], *doc;
	int r;

	r = kubeconfig_parse(kc_token, strlen(kc_token), NULL, &c, err, sizeof(err));
	is_int(r, 0, "token kubeconfig parses");
	is_str(c.server, "https://127.0.0.1:6443",
	       "server of the current context, trailing slash dropped");
	is_str(c.token, "s3cret", "token of the current context's user");
	is_str(c.namespace_, "team", "context namespace");
	ok(c.ca_pem && c.ca_len == 8 && memcmp(c.ca_pem, "hello ca", 8) == 0,
	   "certificate-authority-data decoded");
	ok(!c.insecure, "TLS verification on by default");
	kubeconfig_free(&c);

	/* Files relative to the kubeconfig's directory, client certificate, tokenFile. */
	ok(mkdtemp(dir) != NULL, "temp dir");
	snprintf(path, sizeof(path), "%s/ca.crt", dir);
	util_write_file(path, "CA-PEM", 6, 0600);
	snprintf(path, sizeof(path), "%s/client.crt", dir);
	util_write_file(path, "CERT", 4, 0600);
	snprintf(path, sizeof(path), "%s/client.key", dir);
	util_write_file(path, "KEY", 3, 0600);
	snprintf(path, sizeof(path), "%s/token", dir);
	util_write_file(path, "from-file\n", 10, 0600);
	doc = "current-context: c\n"
	      "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
	      "clusters: [{name: k, cluster: {server: 'https://h:1', certificate-authority: ca.crt}}]\n"
	      "users: [{name: u, user: {client-certificate: client.crt, client-key: client.key, tokenFile: token}}]\n";
	r = kubeconfig_parse(doc, strlen(doc), dir, &c, err, sizeof(err));
	is_int(r, 0, "file-referencing kubeconfig parses");
	ok(c.ca_pem && strcmp(c.ca_pem, "CA-PEM") == 0, "CA read from a relative file");
	ok(c.cert_pem && strcmp(c.cert_pem, "CERT") == 0 && c.key_pem &&
		   strcmp(c.key_pem, "KEY") == 0,
	   "client certificate and key read");
	is_str(c.token, "from-file", "tokenFile read, newline stripped");
	ok(c.token_file != NULL, "tokenFile remembered for re-reading");
	kubeconfig_free(&c);

	/* Whole-file load through KUBECONFIG. */
	snprintf(path, sizeof(path), "%s/config", dir);
	util_write_file(path, doc, strlen(doc), 0600);
	setenv("KUBECONFIG", path, 1);
	r = kubeconfig_load(NULL, &c, err, sizeof(err));
	is_int(r, 0, "kubeconfig_load follows $KUBECONFIG");
	is_str(c.server, "https://h:1", "server from the loaded file");
	kubeconfig_free(&c);

	/* Errors say what is wrong. */
	doc = "current-context: missing\ncontexts: []\n";
	r = kubeconfig_parse(doc, strlen(doc), NULL, &c, err, sizeof(err));
	ok(r < 0 && strstr(err, "context missing not found"), "unknown context is reported: %s",
	   err);
	doc = "contexts: []\n";
	r = kubeconfig_parse(doc, strlen(doc), NULL, &c, err, sizeof(err));
	ok(r < 0 && strstr(err, "current-context"), "missing current-context is reported: %s", err);
	doc = "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
	      "clusters: [{name: k, cluster: {server: 'https://h', certificate-authority: nope.crt}}]\n";
	r = kubeconfig_parse(doc, strlen(doc), dir, &c, err, sizeof(err));
	ok(r < 0 && strstr(err, "nope.crt"), "unreadable CA file is named: %s", err);
	doc = "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
	      "clusters: [{name: k, cluster: {server: 'https://h'}}]\nusers: [{name: u, user: {exec: {command: x}}}]\n";
	r = kubeconfig_parse(doc, strlen(doc), NULL, &c, err, sizeof(err));
	ok(r == -ENOTSUP && strstr(err, "exec"), "exec plugins are refused clearly: %s", err);
	doc = "a: [unclosed\n";
	r = kubeconfig_parse(doc, strlen(doc), NULL, &c, err, sizeof(err));
	ok(r < 0 && strstr(err, "line"), "YAML syntax error gives a position: %s", err);
	doc = "a: &x 1\nb: *x\n";
	r = kubeconfig_parse(doc, strlen(doc), NULL, &c, err, sizeof(err));
	ok(r < 0 && strstr(err, "alias"), "aliases refused: %s", err);

	/* In-cluster configuration from a service-account directory. */
	snprintf(path, sizeof(path), "%s/namespace", dir);
	util_write_file(path, "tasked-system\n", 14, 0600);
	setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	r = kubeconfig_incluster(dir, &c, err, sizeof(err));
	is_int(r, 0, "in-cluster config loads");
	is_str(c.server, "https://[fd00::1]:443", "IPv6 service host bracketed");
	is_str(c.namespace_, "tasked-system", "service account namespace");
	is_str(c.token, "from-file", "service account token");
	kubeconfig_free(&c);
	unsetenv("KUBERNETES_SERVICE_HOST");
	r = kubeconfig_incluster(dir, &c, err, sizeof(err));
	ok(r < 0 && strstr(err, "KUBERNETES_SERVICE_HOST"), "outside a cluster the error says so");

	const char *files[] = {
		"ca.crt", "client.crt", "client.key", "token", "config", "namespace"
	};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
	return done_testing();
}
