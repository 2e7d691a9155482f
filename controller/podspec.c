#include "podspec.h"
#include "quantity.h"
#include "sat.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KUBE_GV "tasked.dev/v1alpha1"

static uint32_t fnv1a(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

int podspec_name(const char *task, const char *uid, int64_t attempt, char *out, size_t outsz)
{
	char tail[40];
	size_t tl, n = 0, max;

	if (!task || !uid || outsz < PODSPEC_NAME_MAX + 1)
		return -ENAMETOOLONG;
	tl = (size_t)snprintf(tail, sizeof(tail), "-%lld-%05x", (long long)attempt,
			      fnv1a(uid) & 0xfffffu);
	max = PODSPEC_NAME_LEN - tl;
	for (const char *p = task; *p && n < max; p++) {
		char c = *p;
		out[n++] = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ? c : '-';
	}
	while (n > 0 && out[n - 1] == '-')
		n--;
	if (n == 0)
		out[n++] = 't';
	memcpy(out + n, tail, tl + 1);
	return 0;
}

int podspec_harden_container(json_t *c)
{
	json_t *sc = json_pack("{sbsbsbsbsIsIs{s[s]}}", "readOnlyRootFilesystem", 1,
			       "allowPrivilegeEscalation", 0, "privileged", 0, "runAsNonRoot", 1,
			       "runAsUser", (json_int_t)PODSPEC_UID, "runAsGroup",
			       (json_int_t)PODSPEC_UID, "capabilities", "drop", "ALL");
	if (sc && json_object_set_new(sc, "seccompProfile",
				      json_pack("{ss}", "type", "RuntimeDefault")) < 0) {
		json_decref(sc);
		return -ENOMEM;
	}
	if (!sc)
		return -ENOMEM;
	if (json_object_set_new(c, "securityContext", sc) < 0 ||
	    json_object_set_new(c, "imagePullPolicy", json_string("IfNotPresent")) < 0)
		return -ENOMEM;
	return 0;
}

json_t *podspec_apparmor(const char *aa)
{
	if (!aa || !*aa || strcmp(aa, "None") == 0)
		return NULL;
	if (strncmp(aa, "Localhost/", 10) == 0)
		return json_pack("{ssss}", "type", "Localhost", "localhostProfile", aa + 10);
	return json_pack("{ss}", "type", aa);
}

int podspec_harden_pod(json_t *ps, const struct podspec_opts *o)
{
	json_t *sc = json_pack("{sbsIsIsIs{ss}}", "runAsNonRoot", 1, "runAsUser",
			       (json_int_t)PODSPEC_UID, "runAsGroup", (json_int_t)PODSPEC_UID,
			       "fsGroup", (json_int_t)PODSPEC_UID, "seccompProfile", "type",
			       "RuntimeDefault"),
	       *c;
	json_t *aa = podspec_apparmor(o ? o->apparmor : NULL);
	size_t i;
	int bad = 0;

	if (!sc) {
		json_decref(aa);
		return -ENOMEM;
	}
	if (aa)
		bad |= json_object_set_new(sc, "appArmorProfile", aa) < 0;
	bad |= json_object_set_new(ps, "securityContext", sc) < 0;
	bad |= json_object_set_new(ps, "automountServiceAccountToken", json_false()) < 0;
	bad |= json_object_set_new(ps, "enableServiceLinks", json_false()) < 0;
	bad |= json_object_set_new(ps, "hostNetwork", json_false()) < 0;
	bad |= json_object_set_new(ps, "hostPID", json_false()) < 0;
	bad |= json_object_set_new(ps, "hostIPC", json_false()) < 0;
	bad |= json_object_set_new(ps, "restartPolicy", json_string("Never")) < 0;
	bad |= json_object_set_new(ps, "terminationGracePeriodSeconds",
				   json_integer(PODSPEC_GRACE_SECONDS)) < 0;
	json_array_foreach(json_object_get(ps, "containers"), i, c)
		bad |= podspec_harden_container(c) < 0;
	json_array_foreach(json_object_get(ps, "initContainers"), i, c)
		bad |= podspec_harden_container(c) < 0;
	return bad ? -ENOMEM : 0;
}

/* Kubernetes expands $(VAR) in env values; shell tasks get theirs as written, so every '$' is
 * doubled ($$ is a literal $). */
static json_t *literal(const char *s)
{
	size_t n = strlen(s), d = 0;
	char *b;
	json_t *j;
	for (size_t i = 0; i < n; i++)
		d += s[i] == '$';
	if (!d)
		return json_string(s);
	b = malloc(n + d + 1);
	if (!b)
		return NULL;
	for (size_t i = 0, k = 0; i <= n; i++) {
		b[k++] = s[i];
		if (s[i] == '$')
			b[k++] = '$';
	}
	j = json_string(b);
	free(b);
	return j;
}

static json_t *build_env(const struct podspec_task *t)
{
	json_t *env = json_array(), *e;
	char at[24];
	size_t i;

	json_array_foreach(t->env, i, e) {
		const char *n = json_string_value(json_object_get(e, "name"));
		json_t *ref = json_object_get(e, "secretKeyRef"), *v = json_object_get(e, "value");
		if (!n)
			continue;
		if (ref)
			json_array_append_new(env, json_pack("{sss{sO}}", "name", n, "valueFrom",
							     "secretKeyRef", ref));
		else
			json_array_append_new(
				env,
				json_pack("{ssso}", "name", n, "value",
					  literal(json_is_string(v) ? json_string_value(v) : "")));
	}
	snprintf(at, sizeof(at), "%lld", (long long)t->attempt);
	json_array_append_new(
		env, json_pack("{ssss}", "name", "TASKED_INPUT", "value", PODSPEC_INPUT_FILE));
	json_array_append_new(
		env, json_pack("{ssss}", "name", "TASKED_OUTPUT", "value", PODSPEC_OUTPUT_FILE));
	json_array_append_new(
		env, json_pack("{ssso}", "name", "TASKED_TASK_NAME", "value", literal(t->name)));
	json_array_append_new(env,
			      json_pack("{ssss}", "name", "TASKED_TASK_NAMESPACE", "value", t->ns));
	json_array_append_new(env, json_pack("{ssss}", "name", "TASKED_TASK_UID", "value", t->uid));
	json_array_append_new(env, json_pack("{ssss}", "name", "TASKED_ATTEMPT", "value", at));
	json_array_append_new(env, json_pack("{ssss}", "name", "HOME", "value", "/tmp"));
	json_array_append_new(env, json_pack("{ssss}", "name", "TMPDIR", "value", "/tmp"));
	return env;
}

/* The task's volumes and mounts, plus /tmp and the input. */
static int build_volumes(const struct podspec_task *t, json_t *vols, json_t *mounts, char *err,
			 size_t errsz)
{
	json_t *v;
	size_t i;

	json_array_append_new(vols, json_pack("{sss{ss}}", "name", "tmp", "emptyDir", "sizeLimit",
					      PODSPEC_TMP_SIZE));
	json_array_append_new(mounts, json_pack("{ssss}", "name", "tmp", "mountPath", "/tmp"));
	json_array_append_new(vols, json_pack("{sss{s[{sss{ss}}]}}", "name", "tasked-input",
					      "downwardAPI", "items", "path", "input.json",
					      "fieldRef", "fieldPath",
					      "metadata.annotations['" PODSPEC_ANN_INPUT "']"));
	json_array_append_new(mounts, json_pack("{sssssb}", "name", "tasked-input", "mountPath",
						PODSPEC_INPUT_DIR, "readOnly", 1));
	json_array_foreach(json_object_get(t->container, "volumes"), i, v) {
		const char *name = json_string_value(json_object_get(v, "name"));
		const char *mp = json_string_value(json_object_get(v, "mountPath"));
		json_t *pvc = json_object_get(v, "persistentVolumeClaim"),
		       *cm = json_object_get(v, "configMap");
		json_t *sec = json_object_get(v, "secret"), *ed = json_object_get(v, "emptyDir"),
		       *vol;
		int ro = json_is_true(json_object_get(v, "readOnly"));

		if (pvc)
			vol = json_pack("{sss{sOsb}}", "name", name, "persistentVolumeClaim",
					"claimName", json_object_get(pvc, "claimName"), "readOnly",
					ro);
		else if (cm)
			vol = json_pack("{sss{sO}}", "name", name, "configMap", "name",
					json_object_get(cm, "name"));
		else if (sec) {
			const char *qs = json_string_value(json_object_get(sec, "queueSecret"));
			json_t *ref = qs ? json_object_get(t->secret_refs, qs) : NULL;
			if (!ref) {
				snprintf(err, errsz,
					 "spec.container.volumes[%zu]: queue secret %.253s is not "
					 "declared by "
					 "the task's TaskQueue",
					 i, qs ? qs : "");
				return -EINVAL;
			}
			vol = json_pack("{sss{sOs[{sOsO}]si}}", "name", name, "secret",
					"secretName", json_object_get(ref, "name"), "items", "key",
					json_object_get(ref, "key"), "path",
					json_object_get(ref, "key"), "defaultMode", 0440);
			ro = 1;
		} else {
			json_t *sl = json_object_get(ed, "sizeLimit");
			vol = json_pack("{sss{sO}}", "name", name, "emptyDir", "sizeLimit",
					sl ? sl : json_string("64Mi"));
		}
		if (!vol || !mp)
			return -ENOMEM;
		json_array_append_new(vols, vol);
		json_array_append_new(mounts, json_pack("{sssssb}", "name", name, "mountPath", mp,
							"readOnly", ro));
	}
	return 0;
}

static json_t *build_container(const struct podspec_task *t, json_t *mounts)
{
	char mem[32], cpu[32];
	json_t *c, *res, *v;

	qty_format(t->res.memory_bytes, 0, mem, sizeof(mem));
	qty_format(t->res.cpu_milli, 1, cpu, sizeof(cpu));
	res = json_pack("{s{ssss}s{ssss}}", "requests", "cpu", cpu, "memory", mem, "limits", "cpu",
			cpu, "memory", mem);
	c = json_pack("{sssOsosososs}", "name", PODSPEC_CONTAINER, "image",
		      json_object_get(t->container, "image"), "env", build_env(t), "resources", res,
		      "volumeMounts", mounts, "terminationMessagePath", PODSPEC_OUTPUT_FILE);
	if (!c)
		return NULL;
	json_object_set_new(c, "terminationMessagePolicy", json_string("File"));
	if (json_is_array(v = json_object_get(t->container, "command")))
		json_object_set(c, "command", v);
	if (json_is_array(v = json_object_get(t->container, "args")))
		json_object_set(c, "args", v);
	if (json_is_string(v = json_object_get(t->container, "workingDir")) &&
	    json_string_length(v) > 0)
		json_object_set(c, "workingDir", v);
	return c;
}

static json_t *build_meta(const struct podspec_task *t, const char *pod, char *input)
{
	char at[24];
	json_t *labels, *md;

	snprintf(at, sizeof(at), "%lld", (long long)t->attempt);
	labels = json_pack("{ssssssssss}", PODSPEC_LABEL_EXECUTOR, "container",
			   PODSPEC_LABEL_TASK_UID, t->uid, PODSPEC_LABEL_ATTEMPT, at,
			   PODSPEC_LABEL_QUEUE, t->queue ? t->queue : "default",
			   "app.kubernetes.io/managed-by", "tasked");
	if (!labels)
		return NULL;
	/* Label values are at most 63 bytes; a longer task name is found by the uid instead. */
	if (strlen(t->name) <= 63)
		json_object_set_new(labels, PODSPEC_LABEL_TASK, json_string(t->name));
	if (t->network_disabled)
		json_object_set_new(labels, PODSPEC_LABEL_NETWORK, json_string("disabled"));
	snprintf(at, sizeof(at), "%lld",
		 (long long)(t->max_output_bytes > 0 ? t->max_output_bytes
						     : PODPOLICY_DEFAULT_OUTPUT));
	md = json_pack("{sssssos{ssss}s[{sssssssssbsb}]}", "name", pod, "namespace", t->ns,
		       "labels", labels, "annotations", PODSPEC_ANN_INPUT, input,
		       PODSPEC_ANN_MAX_OUTPUT, at, "ownerReferences", "apiVersion", KUBE_GV, "kind",
		       "Task", "name", t->name, "uid", t->uid, "controller", 1,
		       "blockOwnerDeletion", 0);
	return md;
}

/* The network gate: probes until connections fail (images/network-gate.c). */
static json_t *build_gate(const struct podspec_opts *o)
{
	char ms[32];
	int64_t s = o->gate_timeout_s > 0 ? o->gate_timeout_s : 60;

	snprintf(ms, sizeof(ms), "%lld", (long long)sat_mul(s, 1000));
	return json_pack("{sssss[s]s[ss]s{s{ssss}s{ssss}}ss}", "name", PODSPEC_GATE_CONTAINER,
			 "image", o->gate_image, "command", PODSPEC_GATE_COMMAND, "args",
			 "--timeout-ms", ms, "resources", "requests", "cpu", PODSPEC_GATE_CPU,
			 "memory", PODSPEC_GATE_MEMORY, "limits", "cpu", PODSPEC_GATE_CPU, "memory",
			 PODSPEC_GATE_MEMORY, "terminationMessagePolicy", "FallbackToLogsOnError");
}

json_t *podspec_build(const struct podspec_task *t, const struct podspec_opts *o, char *err,
		      size_t errsz)
{
	char pod[PODSPEC_NAME_MAX + 1];
	char *input;
	json_t *vols = json_array(), *mounts = json_array(), *c = NULL, *spec = NULL, *md = NULL,
	       *obj = NULL;

	err[0] = '\0';
	if (!t->ns || !t->name || !t->uid ||
	    podspec_name(t->name, t->uid, t->attempt, pod, sizeof(pod)) < 0) {
		snprintf(err, errsz, "task metadata incomplete");
		goto out;
	}
	input = json_dumps(t->input ? t->input : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
	if (!input || strlen(input) > PODSPEC_MAX_INPUT) {
		snprintf(err, errsz,
			 "spec.input is over %d bytes once encoded, more than a container task can "
			 "take (it reaches the pod as an annotation)",
			 PODSPEC_MAX_INPUT);
		free(input);
		goto out;
	}
	md = build_meta(t, pod, input);
	free(input);
	if (!md || build_volumes(t, vols, mounts, err, errsz) < 0)
		goto out;
	c = build_container(t, json_incref(mounts));
	spec = json_pack("{s[o]sO}", "containers", c, "volumes", vols);
	c = NULL;
	if (spec && t->network_disabled && o && o->gate_image && o->gate_image[0] &&
	    json_object_set_new(spec, "initContainers", json_pack("[o]", build_gate(o))) < 0)
		goto out;
	if (!spec || podspec_harden_pod(spec, o) < 0)
		goto out;
	if (t->timeout_s > 0)
		json_object_set_new(spec, "activeDeadlineSeconds", json_integer(t->timeout_s));
	obj = json_pack("{sssssOsO}", "apiVersion", "v1", "kind", "Pod", "metadata", md, "spec",
			spec);
out:
	if (!obj && !err[0])
		snprintf(err, errsz, "out of memory");
	json_decref(vols);
	json_decref(mounts);
	json_decref(spec);
	json_decref(md);
	return obj;
}

int podspec_is_ours(json_t *pod, const char *uid, int64_t attempt)
{
	json_t *md = json_object_get(pod, "metadata"), *labels = json_object_get(md, "labels"),
	       *ref;
	const char *lu = json_string_value(json_object_get(labels, PODSPEC_LABEL_TASK_UID));
	const char *la = json_string_value(json_object_get(labels, PODSPEC_LABEL_ATTEMPT));
	const char *le = json_string_value(json_object_get(labels, PODSPEC_LABEL_EXECUTOR));
	char at[24];
	size_t i;
	int owned = 0;

	snprintf(at, sizeof(at), "%lld", (long long)attempt);
	if (!lu || !la || !le || strcmp(lu, uid) != 0 || strcmp(la, at) != 0 ||
	    strcmp(le, "container") != 0)
		return 0;
	json_array_foreach(json_object_get(md, "ownerReferences"), i, ref) {
		const char *u = json_string_value(json_object_get(ref, "uid"));
		const char *k = json_string_value(json_object_get(ref, "kind"));
		owned |= u && k && strcmp(u, uid) == 0 && strcmp(k, "Task") == 0 &&
			 json_is_true(json_object_get(ref, "controller"));
	}
	return owned;
}
