#include "pools_spec.h"
#include "conditions.h"
#include "podpolicy.h"
#include "podspec.h"
#include "sat.h"
#include "util.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#define POOLS_LABELS_MAX 2048 /* "--labels=" value */

int64_t pools_desired(int64_t queued, int64_t running, int64_t slots, int64_t min, int64_t max)
{
	int64_t need = sat_add(queued < 0 ? 0 : queued, running < 0 ? 0 : running), d;

	if (slots < 1)
		slots = 1;
	if (min < 0)
		min = 0;
	if (max < min)
		max = min;
	/* ceil without need + slots - 1, which could overflow */
	d = need / slots + (need % slots != 0);
	return d < min ? min : d > max ? max : d;
}

enum pools_action pools_decide(const struct pools_scale *s)
{
	if (s->desired > s->replicas)
		return POOLS_SCALE_UP;
	if (s->desired == s->replicas)
		return POOLS_KEEP;
	if (s->low_since_ms <= 0 || s->now_ms - s->low_since_ms < s->delay_ms)
		return POOLS_WAIT_DOWN;
	return POOLS_DRAIN;
}

static void pools_hex(const unsigned char *p, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[p[i] >> 4];
		out[2 * i + 1] = hx[p[i] & 15];
	}
	out[2 * n] = '\0';
}

int pools_token(const char *secret, const char *ns, const char *name, const char *uid,
		char out[POOLS_TOKEN_HEX + 1])
{
	unsigned char mac[32];
	unsigned int maclen = sizeof(mac);
	char msg[1024];
	int n;

	out[0] = '\0';
	if (!secret || !*secret || !ns || !*ns || !name || !*name || !uid || !*uid)
		return -EINVAL;
	n = snprintf(msg, sizeof(msg), "tasked.dev/runnerpool%c%s%c%s%c%s", 0, ns, 0, name, 0, uid);
	if (n < 0 || (size_t)n >= sizeof(msg))
		return -EINVAL;
	if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg, (size_t)n,
		  mac, &maclen) ||
	    maclen != sizeof(mac))
		return -EINVAL;
	pools_hex(mac, sizeof(mac), out);
	OPENSSL_cleanse(mac, sizeof(mac));
	return 0;
}

int pools_secret_name(const char *pool, const char *token, char *out, size_t outsz)
{
	unsigned char md[32];
	unsigned int mdlen = sizeof(md);
	char hex[65];
	int n;

	if (!EVP_Digest(token, strlen(token), md, &mdlen, EVP_sha256(), NULL))
		return -EINVAL;
	pools_hex(md, 5, hex);
	n = snprintf(out, outsz, "%s-pool-token-%s", pool, hex);
	return n < 0 || (size_t)n >= outsz ? -ENAMETOOLONG : 0;
}

int pools_deployment_name(const char *pool, char *out, size_t outsz)
{
	int n = snprintf(out, outsz, "%s-pool", pool);
	return n < 0 || (size_t)n >= outsz ? -ENAMETOOLONG : 0;
}

int pools_labels_match(json_t *labels, json_t *selector)
{
	const char *k;
	json_t *v;

	if (!json_is_object(selector) || json_object_size(selector) == 0 || !json_is_object(labels))
		return 0;
	json_object_foreach(selector, k, v) {
		const char *have = json_string_value(json_object_get(labels, k));
		if (!have || !json_is_string(v) || strcmp(have, json_string_value(v)) != 0)
			return 0;
	}
	return 1;
}

int pools_template_hash(json_t *deployment, char out[17])
{
	json_t *tpl = json_object_get(json_object_get(deployment, "spec"), "template");
	char *s = json_dumps(tpl, JSON_COMPACT | JSON_SORT_KEYS);
	unsigned char md[32];
	unsigned int mdlen = sizeof(md);
	int ok;

	if (!s)
		return -ENOMEM;
	ok = EVP_Digest(s, strlen(s), md, &mdlen, EVP_sha256(), NULL);
	free(s);
	if (!ok)
		return -EINVAL;
	pools_hex(md, 8, out);
	return 0;
}

/* --labels=k=v,... from spec.labels (the schema bounds keys and values; "," and "=" cannot be in
 * a value, and keys are checked here). */
static int pools_labels_arg(json_t *labels, char *out, size_t outsz, char *err, size_t errsz)
{
	const char *k;
	json_t *v;
	size_t n = 0;
	int w;

	w = snprintf(out, outsz, "--labels=");
	n = (size_t)w;
	json_object_foreach(labels, k, v) {
		const char *s = json_string_value(v);
		if (!s || !*k || strpbrk(k, ",=") || strpbrk(s, ",=")) {
			snprintf(err, errsz,
				 "spec.labels: key %s: keys and values may not hold ',' or '='", k);
			return -EINVAL;
		}
		w = snprintf(out + n, outsz - n, "%s%s=%s", n > 9 ? "," : "", k, s);
		if (w < 0 || (size_t)w >= outsz - n) {
			snprintf(err, errsz, "spec.labels are too long");
			return -EINVAL;
		}
		n += (size_t)w;
	}
	if (n == 9)
		snprintf(out + n, outsz - n, "pool=%s", "runnerpool");
	return 0;
}

/* The hardening every Tasked-made pod gets (podspec.h), with what a Deployment of runners needs
 * otherwise: restartPolicy Always (the only one a Deployment takes), the runner's 30 s to finish
 * its tasks on SIGTERM (scale-downs drain first, a rollout or node drain does not), and the
 * AppArmor profile on the runner container only: the runner profile allows no write outside
 * /tmp, and the installer writes the bundle into /opt/tasked-runner. */
static int pools_harden(json_t *pod, const struct pools_env *env)
{
	json_t *runner = json_array_get(json_object_get(pod, "containers"), 0), *aa;
	size_t i;
	json_t *c;

	if (podspec_harden_pod(pod, &(struct podspec_opts){ .apparmor = NULL }) < 0 ||
	    json_object_set_new(pod, "restartPolicy", json_string("Always")) < 0 ||
	    json_object_set_new(pod, "terminationGracePeriodSeconds", json_integer(40)) < 0)
		return -ENOMEM;
	aa = podspec_apparmor(env->apparmor);
	if (aa && json_object_set_new(json_object_get(runner, "securityContext"), "appArmorProfile",
				      aa) < 0)
		return -ENOMEM;
	if (!env->pull_policy)
		return 0; /* IfNotPresent, from podspec_harden_container */
	json_array_foreach(json_object_get(pod, "initContainers"), i, c)
		json_object_set_new(c, "imagePullPolicy", json_string(env->pull_policy));
	json_array_foreach(json_object_get(pod, "containers"), i, c)
		json_object_set_new(c, "imagePullPolicy", json_string(env->pull_policy));
	return 0;
}

static json_t *pools_runner_cmd(void)
{
	return json_pack("[ssss]", POOLS_BUNDLE_DIR "/ld-linux-x86-64.so.2", "--library-path",
			 POOLS_BUNDLE_DIR, POOLS_BUNDLE_DIR "/tasked-runner");
}

/* The user's volumes (named u-NAME, so they never clash with ours) and their mounts. */
static int pools_user_volumes(json_t *spec, json_t *volumes, json_t *mounts, char *err,
			      size_t errsz)
{
	json_t *v;
	size_t i;

	json_array_foreach(json_object_get(spec, "volumes"), i, v) {
		const char *name = json_string_value(json_object_get(v, "name"));
		const char *path = json_string_value(json_object_get(v, "mountPath"));
		const char *kinds[] = { "configMap", "secret", "emptyDir",
					"persistentVolumeClaim" };
		char vname[64];
		json_t *vol;

		if (!name || !path || path[0] != '/') {
			snprintf(err, errsz,
				 "spec.volumes[%zu]: name and an absolute mountPath are required",
				 i);
			return -EINVAL;
		}
		if (strcmp(path, "/tmp") == 0 ||
		    strncmp(path, POOLS_BUNDLE_DIR, strlen(POOLS_BUNDLE_DIR)) == 0 ||
		    strncmp(path, "/var/run/secrets/tasked", 23) == 0) {
			snprintf(err, errsz, "spec.volumes[%zu]: mountPath %s is the runner's own",
				 i, path);
			return -EINVAL;
		}
		snprintf(vname, sizeof(vname), "u-%s", name);
		vol = json_pack("{ss}", "name", vname);
		for (size_t k = 0; k < UTIL_ARRAY_SIZE(kinds); k++)
			if (json_is_object(json_object_get(v, kinds[k])))
				json_object_set(vol, kinds[k], json_object_get(v, kinds[k]));
		json_array_append_new(volumes, vol);
		json_array_append_new(
			mounts, json_pack("{sssssb}", "name", vname, "mountPath", path, "readOnly",
					  json_is_true(json_object_get(v, "readOnly"))));
	}
	return 0;
}

static json_t *pools_env_list(json_t *spec)
{
	json_t *env = json_pack("[{sss{s{ss}}}{ss}]", "name", "TASKED_POD_NAME", "valueFrom",
				"fieldRef", "fieldPath", "metadata.name", "name", "SSL_CERT_FILE");
	json_t *e;
	size_t i;

	if (!env)
		return NULL;
	json_object_set_new(json_array_get(env, 1), "value",
			    json_string(POOLS_BUNDLE_DIR "/ca-certificates.crt"));
	json_array_foreach(json_object_get(spec, "env"), i, e) {
		const char *n = json_string_value(json_object_get(e, "name"));
		if (!n || strcmp(n, "TASKED_POD_NAME") == 0 || strcmp(n, "SSL_CERT_FILE") == 0 ||
		    strncmp(n, "LD_", 3) == 0)
			continue; /* ours, or what would change how the loader runs the runner */
		json_array_append_new(
			env, json_pack("{ssss}", "name", n, "value",
				       json_string_value(json_object_get(e, "value")) ?: ""));
	}
	return env;
}

static json_t *pools_runner_container(json_t *spec, const struct pools_env *env, json_t *mounts,
				      char *err, size_t errsz)
{
	char labels[POOLS_LABELS_MAX], ctl[1100], conc[40];
	json_t *c, *args;
	int64_t slots = json_integer_value(json_object_get(spec, "slotsPerRunner"));

	if (pools_labels_arg(json_object_get(spec, "labels"), labels, sizeof(labels), err, errsz) <
	    0)
		return NULL;
	snprintf(ctl, sizeof(ctl), "--controller=%s", env->broker_url);
	snprintf(conc, sizeof(conc), "--concurrency=%lld",
		 (long long)(slots < 1      ? 1
			     : slots > 1024 ? 1024
					    : slots));
	args = json_pack("[sssssssss]", ctl, "--token-file=/var/run/secrets/tasked/runner-token",
			 conc, labels, "--work-dir=/tmp", "--id=$(TASKED_POD_NAME)",
			 "--grace-seconds=30", "--health-file=/tmp/tasked-runner.health",
			 "--log-level=info");
	c = json_pack("{sssssososo}", "name", "runner", "image",
		      json_string_value(json_object_get(spec, "image")), "command",
		      pools_runner_cmd(), "args", args, "env", pools_env_list(spec));
	if (!c)
		return NULL;
	/* Liveness as the sidecars have it (the runner judges its own health file). No readiness
	 * probe: a pool's readiness is its runners' broker connections (status.readyRunners), and
	 * a pod that is not Ready would be the ReplicaSet's first choice on scale-down, before the
	 * drained one (see pools.c). */
	json_object_set_new(
		c, "livenessProbe",
		json_pack("{s{so}sisisi}", "exec", "command",
			  json_pack("[ssssssss]", POOLS_BUNDLE_DIR "/ld-linux-x86-64.so.2",
				    "--library-path", POOLS_BUNDLE_DIR,
				    POOLS_BUNDLE_DIR "/tasked-runner", "--check-health",
				    "/tmp/tasked-runner.health", "--max-age-seconds", "30"),
			  "periodSeconds", 10, "timeoutSeconds", 5, "failureThreshold", 3));
	if (json_is_object(json_object_get(spec, "resources")))
		json_object_set(c, "resources", json_object_get(spec, "resources"));
	json_object_set(c, "volumeMounts", mounts);
	return c;
}

json_t *pools_build_deployment(json_t *pool, int64_t replicas, const char *secret_name,
			       const struct pools_env *env, char *err, size_t errsz)
{
	json_t *md = json_object_get(pool, "metadata"), *spec = json_object_get(pool, "spec");
	const char *name = json_string_value(json_object_get(md, "name"));
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *uid = json_string_value(json_object_get(md, "uid"));
	const char *image = json_string_value(json_object_get(spec, "image"));
	json_t *labels, *volumes, *mounts, *runner, *init, *pod, *d;
	char dname[128], hash[17];

	if (!name || !ns || !uid || !image || !*image || !env->runner_image || !env->broker_url ||
	    pools_deployment_name(name, dname, sizeof(dname)) < 0) {
		snprintf(err, errsz, "the pool needs metadata.name, namespace, uid and spec.image");
		return NULL;
	}
	if (!podpolicy_image_valid(image, strlen(image))) {
		snprintf(err, errsz,
			 "spec.image %.300s is not a valid image reference "
			 "(REPOSITORY[:TAG][@sha256:DIGEST])",
			 image);
		return NULL;
	}
	labels = json_pack("{ssssss}", "app.kubernetes.io/name", "tasked-runner",
			   "app.kubernetes.io/managed-by", "tasked", POOLS_LABEL, name);
	volumes = json_pack("[{s{}ss}{s{}ss}{s{sss[{ssss}]si}ss}]", "emptyDir", "name", "tmp",
			    "emptyDir", "name", "bundle", "secret", "secretName", secret_name,
			    "items", "key", "token", "path", "runner-token", "defaultMode", 0440,
			    "name", "runner-secrets");
	mounts = json_pack("[{ssss}{sssssb}{sssssb}]", "name", "tmp", "mountPath", "/tmp", "name",
			   "bundle", "mountPath", POOLS_BUNDLE_DIR, "readOnly", 1, "name",
			   "runner-secrets", "mountPath", "/var/run/secrets/tasked", "readOnly", 1);
	if (!labels || !volumes || !mounts ||
	    pools_user_volumes(spec, volumes, mounts, err, errsz) < 0 ||
	    !(runner = pools_runner_container(spec, env, mounts, err, errsz))) {
		json_decref(labels);
		json_decref(volumes);
		json_decref(mounts);
		return NULL;
	}
	json_decref(mounts);
	init = json_pack("{sssss[sss]s[{ssss}]s{s{ssss}s{ssss}}}", "name", "install-runner",
			 "image", env->runner_image, "command", "/usr/local/bin/tasked-install",
			 POOLS_BUNDLE_SRC, POOLS_BUNDLE_DIR, "volumeMounts", "name", "bundle",
			 "mountPath", POOLS_BUNDLE_DIR, "resources", "requests", "cpu", "10m",
			 "memory", "16Mi", "limits", "cpu", "100m", "memory", "32Mi");
	pod = json_pack("{s[o]s[o]so}", "initContainers", init, "containers", runner, "volumes",
			volumes);
	if (!pod || pools_harden(pod, env) < 0)
		goto fail;
	if (json_object_size(json_object_get(spec, "nodeSelector")))
		json_object_set(pod, "nodeSelector", json_object_get(spec, "nodeSelector"));
	if (json_array_size(json_object_get(spec, "tolerations")))
		json_object_set(pod, "tolerations", json_object_get(spec, "tolerations"));
	d = json_pack("{sssss{sssssOs[{sssssssssbsb}]}s{sIsis{sO}s{ss s{sisi}}s{s{sO}so}}}",
		      "apiVersion", "apps/v1", "kind", "Deployment", "metadata", "name", dname,
		      "namespace", ns, "labels", labels, "ownerReferences", "apiVersion",
		      "tasked.dev/v1alpha1", "kind", "RunnerPool", "name", name, "uid", uid,
		      "controller", 1, "blockOwnerDeletion", 1, "spec", "replicas",
		      (json_int_t)(replicas < 0 ? 0 : replicas), "revisionHistoryLimit", 2,
		      "selector", "matchLabels", labels, "strategy", "type", "RollingUpdate",
		      "rollingUpdate", "maxSurge", 1, "maxUnavailable", 0, "template", "metadata",
		      "labels", labels, "spec", pod);
	json_decref(labels);
	if (!d) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	if (pools_template_hash(d, hash) == 0)
		json_object_set_new(json_object_get(d, "metadata"), "annotations",
				    json_pack("{ss}", "tasked.dev/template-hash", hash));
	return d;
fail:
	json_decref(pod);
	json_decref(labels);
	snprintf(err, errsz, "out of memory");
	return NULL;
}

json_t *pools_build_secret(json_t *pool, const char *secret_name, const char *token)
{
	json_t *md = json_object_get(pool, "metadata");
	return json_pack("{sssssss{sssOs{ssss}s[{sssssOsOsbsb}]}s{ss}}", "apiVersion", "v1", "kind",
			 "Secret", "type", "Opaque", "metadata", "name", secret_name, "namespace",
			 json_object_get(md, "namespace"), "labels", "app.kubernetes.io/managed-by",
			 "tasked", POOLS_LABEL,
			 json_string_value(json_object_get(md, "name")) ?: "", "ownerReferences",
			 "apiVersion", "tasked.dev/v1alpha1", "kind", "RunnerPool", "name",
			 json_object_get(md, "name"), "uid", json_object_get(md, "uid"),
			 "controller", 1, "blockOwnerDeletion", 1, "stringData", "token", token);
}

int pools_policy_check(json_t *pool_spec, const char *pool, json_t *queue, const char **reason,
		       char *why, size_t whysz)
{
	json_t *qspec = json_object_get(queue, "spec");
	const char *qname = json_string_value(
		json_object_get(json_object_get(queue, "metadata"), "name"));
	struct podpolicy p;
	int r;

	*reason = "PolicyDenied";
	r = podpolicy_parse(queue ? json_object_get(json_object_get(qspec, "policy"), "container")
				  : NULL,
			    &p, why, whysz);
	if (r == 0)
		r = podpolicy_check_pool(&p, pool_spec, pool, queue ? qname : NULL,
					 json_object_get(qspec, "secrets"), reason, why, whysz);
	podpolicy_release(&p);
	return r == 0;
}

json_t *pools_conditions(json_t *old, const struct pools_obs *o, int64_t gen, int64_t now_ms)
{
	int ready = !o->stalled && o->ready >= o->min;
	int scaling = !o->stalled && (o->replicas < o->desired || o->ready < o->replicas);
	char rmsg[256], smsg[256];

	snprintf(rmsg, sizeof(rmsg), "%lld of at least %lld runners connected", (long long)o->ready,
		 (long long)o->min);
	snprintf(smsg, sizeof(smsg), "%lld runners wanted, %lld connected", (long long)o->desired,
		 (long long)o->ready);
	struct cond cs[] = {
		{ "Ready", ready ? "True" : "False",
		  o->stalled ? o->stalled
		  : ready    ? "RunnersReady"
			     : "RunnersStarting",
		  o->stalled ? o->why : rmsg },
		{ "Reconciling", o->error || scaling ? "True" : "False",
		  o->error  ? "ReconcileError"
		  : scaling ? "Scaling"
			    : "Stable",
		  o->error ? o->why : smsg },
		{ "Stalled", o->stalled ? "True" : "False", o->stalled ? o->stalled : "Running",
		  o->stalled ? o->why : "the pool's Deployment is managed" },
		{ "Completed", "False", "Running", "a pool runs until it is deleted" },
	};
	return cond_build(old, cs, UTIL_ARRAY_SIZE(cs), gen, now_ms);
}
