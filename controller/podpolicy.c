#include "podpolicy.h"
#include "quantity.h"
#include "resources.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int is_hex_lower(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

/* A tag as registries accept it: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}. */
static int tag_valid(const char *s, size_t len)
{
	if (len == 0 || len > PODPOLICY_MAX_TAG || s[0] == '.' || s[0] == '-')
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

static int digest_valid(const char *s, size_t len)
{
	if (len != 7 + 64 || memcmp(s, "sha256:", 7) != 0)
		return 0;
	for (size_t i = 7; i < len; i++)
		if (!is_hex_lower(s[i]))
			return 0;
	return 1;
}

/* The repository part of a reference or pattern: lowercase path components, an optional
 * registry host (with port) first. Loose on purpose (the registry decides what exists); strict
 * about what could change the meaning of a prefix match: no '*', '@', whitespace, "..", or an
 * empty component. */
static int repo_valid(const char *s, size_t len)
{
	size_t comp = 0;
	if (len == 0)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '/') {
			if (comp == 0)
				return 0;
			comp = 0;
			continue;
		}
		if (c <= 0x20 || c >= 0x7f || c == '*' || c == '@' || c == '\\' || c == '"')
			return 0;
		if (c == '.' && i + 1 < len && s[i + 1] == '.')
			return 0;
		comp++;
	}
	return comp > 0;
}

/* Splits ref into repo, then ":TAG" and/or "@DIGEST". The tag colon is the last ':' after the
 * last '/' (a registry port has a '/' after it). */
static int split_ref(const char *s, size_t len, size_t *repo_len, const char **tag, size_t *tag_len,
		     const char **dig, size_t *dig_len)
{
	const char *at = memchr(s, '@', len), *slash = NULL, *colon = NULL;
	size_t n = at ? (size_t)(at - s) : len;

	*tag = *dig = NULL;
	*tag_len = *dig_len = 0;
	if (at) {
		if (memchr(at + 1, '@', len - n - 1))
			return -EINVAL;
		*dig = at + 1;
		*dig_len = len - n - 1;
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '/')
			slash = s + i;
		else if (s[i] == ':')
			colon = s + i;
	}
	if (colon && (!slash || colon > slash)) {
		*tag = colon + 1;
		*tag_len = (size_t)(s + n - colon - 1);
		n = (size_t)(colon - s);
	}
	*repo_len = n;
	return 0;
}

int podpolicy_image_valid(const char *s, size_t len)
{
	size_t rl, tl, dl;
	const char *tag, *dig;

	if (!s || len == 0 || len > PODPOLICY_MAX_IMAGE || memchr(s, '*', len) ||
	    split_ref(s, len, &rl, &tag, &tl, &dig, &dl) < 0 || !repo_valid(s, rl))
		return 0;
	if (tag && !tag_valid(tag, tl))
		return 0;
	if (dig && !digest_valid(dig, dl))
		return 0;
	return 1;
}

/* REPO:* or REPO@*: the repo length, else 0. */
static size_t pattern_repo(const char *p, size_t len, char *kind)
{
	if (len < 3 || p[len - 1] != '*' || (p[len - 2] != ':' && p[len - 2] != '@'))
		return 0;
	if (!repo_valid(p, len - 2))
		return 0;
	/* "repo:tag:*" is not a repository. */
	{
		const char *slash = NULL, *colon = NULL;
		for (size_t i = 0; i < len - 2; i++) {
			if (p[i] == '/')
				slash = p + i;
			else if (p[i] == ':')
				colon = p + i;
		}
		if (colon && (!slash || colon > slash))
			return 0;
	}
	*kind = p[len - 2];
	return len - 2;
}

int podpolicy_pattern_valid(const char *p, size_t len)
{
	char kind;
	if (!p || len == 0 || len > PODPOLICY_MAX_IMAGE)
		return 0;
	if (memchr(p, '*', len))
		return pattern_repo(p, len, &kind) > 0 && memchr(p, '*', len) == p + len - 1;
	return podpolicy_image_valid(p, len);
}

int podpolicy_image_match(const char *p, size_t plen, const char *img, size_t ilen)
{
	char kind = 0;
	size_t rl;

	if (!podpolicy_pattern_valid(p, plen) || !podpolicy_image_valid(img, ilen))
		return 0;
	if (!memchr(p, '*', plen))
		return plen == ilen && memcmp(p, img, plen) == 0;
	rl = pattern_repo(p, plen, &kind);
	if (ilen <= rl + 1 || memcmp(p, img, rl) != 0 || img[rl] != kind)
		return 0;
	if (kind == ':')
		return tag_valid(img + rl + 1, ilen - rl - 1);
	return digest_valid(img + rl + 1, ilen - rl - 1);
}

static int qty_of(json_t *v, int scale, int64_t max, int64_t *ret)
{
	char buf[32];
	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0)
			return -EINVAL;
		snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
		return qty_parse(buf, strlen(buf), scale, max, ret);
	}
	if (!json_is_string(v))
		return -EINVAL;
	return qty_parse(json_string_value(v), json_string_length(v), scale, max, ret);
}

/* {cpu, memory} into the two values (left alone when absent). */
static int res_pair(json_t *o, int64_t *mem, int64_t *cpu, const char *what, char *err,
		    size_t errsz)
{
	json_t *m = json_object_get(o, "memory"), *c = json_object_get(o, "cpu");
	if (o && !json_is_object(o))
		goto bad;
	if (m && (qty_of(m, 0, RES_MAX_MEMORY, mem) < 0 || *mem < RES_MIN_MEMORY))
		goto bad;
	if (c && (qty_of(c, 3, RES_MAX_CPU_MILLI, cpu) < 0 || *cpu < 1))
		goto bad;
	return 0;
bad:
	snprintf(err, errsz,
		 "%s: cpu must be a quantity from 1m to 1000 and memory from 1Mi to 1Ti", what);
	return -EINVAL;
}

static void defaults(struct podpolicy *p)
{
	p->images = json_array();
	p->volumes = json_array();
	p->network_disabled = 1;
	p->max_output_bytes = PODPOLICY_DEFAULT_OUTPUT;
	p->default_memory = PODPOLICY_DEFAULT_MEMORY;
	p->default_cpu_milli = PODPOLICY_DEFAULT_CPU_MILLI;
	p->max_memory = p->max_cpu_milli = 0;
}

static int parse_volumes(json_t *vl, struct podpolicy *p, char *err, size_t errsz)
{
	json_t *e;
	size_t i;

	if (!vl)
		return 0;
	if (!json_is_array(vl))
		goto bad;
	json_array_foreach(vl, i, e) {
		json_t *pvc = json_object_get(e, "persistentVolumeClaim"),
		       *cm = json_object_get(e, "configMap");
		const char *mp = json_string_value(json_object_get(e, "mountPath"));
		if (!json_is_object(e) || (!pvc == !cm) || (pvc && !json_is_string(pvc)) ||
		    (cm && !json_is_string(cm)) || !mp || mp[0] != '/') {
			snprintf(err, errsz,
				 "policy.container.volumeAllowlist[%zu] needs exactly one of "
				 "persistentVolumeClaim or configMap (a name) and an absolute "
				 "mountPath",
				 i);
			return -EINVAL;
		}
	}
	json_decref(p->volumes);
	p->volumes = json_incref(vl);
	return 0;
bad:
	snprintf(err, errsz, "policy.container.volumeAllowlist must be a list");
	return -EINVAL;
}

int podpolicy_parse(json_t *pol, struct podpolicy *out, char *err, size_t errsz)
{
	json_t *imgs = json_object_get(pol, "imageAllowlist"), *e, *v;
	size_t i;

	defaults(out);
	if (!out->images || !out->volumes) {
		snprintf(err, errsz, "out of memory");
		return -ENOMEM;
	}
	if (!pol)
		return 0;
	if (!json_is_object(pol)) {
		snprintf(err, errsz, "policy.container must be an object");
		return -EINVAL;
	}
	if (imgs && !json_is_array(imgs)) {
		snprintf(err, errsz, "policy.container.imageAllowlist must be a list");
		return -EINVAL;
	}
	json_array_foreach(imgs, i, e) {
		if (!json_is_string(e) ||
		    !podpolicy_pattern_valid(json_string_value(e), json_string_length(e))) {
			snprintf(err, errsz,
				 "policy.container.imageAllowlist[%zu] is neither an image "
				 "reference nor "
				 "a REPOSITORY:* or REPOSITORY@* pattern",
				 i);
			return -EINVAL;
		}
	}
	if (parse_volumes(json_object_get(pol, "volumeAllowlist"), out, err, errsz) < 0)
		return -EINVAL;
	if ((v = json_object_get(pol, "networkDisabled")) && !json_is_boolean(v)) {
		snprintf(err, errsz, "policy.container.networkDisabled must be true or false");
		return -EINVAL;
	}
	if (res_pair(json_object_get(pol, "defaultResources"), &out->default_memory,
		     &out->default_cpu_milli, "policy.container.defaultResources", err,
		     errsz) < 0 ||
	    res_pair(json_object_get(pol, "maxResources"), &out->max_memory, &out->max_cpu_milli,
		     "policy.container.maxResources", err, errsz) < 0)
		return -EINVAL;
	if ((v = json_object_get(pol, "maxOutputBytes"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 0) {
			snprintf(err, errsz,
				 "policy.container.maxOutputBytes must be a number of bytes");
			return -EINVAL;
		}
		out->max_output_bytes = json_integer_value(v) > PODPOLICY_MAX_OUTPUT
						? PODPOLICY_MAX_OUTPUT
						: json_integer_value(v);
	}
	out->network_disabled = !json_is_false(v = json_object_get(pol, "networkDisabled"));
	if (imgs) {
		json_decref(out->images);
		out->images = json_incref(imgs);
	}
	return 0;
}

void podpolicy_release(struct podpolicy *p)
{
	json_decref(p->images);
	json_decref(p->volumes);
	p->images = p->volumes = NULL;
}

static int image_allowed(const struct podpolicy *p, const char *img, size_t len)
{
	json_t *e;
	size_t i;
	json_array_foreach(p->images, i, e)
		if (json_is_string(e) &&
		    podpolicy_image_match(json_string_value(e), json_string_length(e), img, len))
			return 1;
	return 0;
}

/* A DNS-1123 label, as a pod volume name must be; "tasked-" and "tmp" are ours. */
static int volname_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-' || strncmp(s, "tasked-", 7) == 0 ||
	    strcmp(s, "tmp") == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return 0;
	return 1;
}

/* An absolute, clean path that does not cover what the pod needs (/, /tmp, the input, the
 * termination log) or the kernel's file systems. */
static int mountpath_valid(const char *s)
{
	static const char *const reserved[] = { "/tmp", "/dev", "/proc", "/sys", "/var/run/tasked",
						"/run" };
	size_t n = s ? strlen(s) : 0;
	if (n < 2 || n > 256 || s[0] != '/' || s[n - 1] == '/' || strstr(s, "//") ||
	    strstr(s, "/./") || strstr(s, "/../") || (n >= 3 && strcmp(s + n - 3, "/..") == 0) ||
	    (n >= 2 && strcmp(s + n - 2, "/.") == 0) || strchr(s, ':'))
		return 0;
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		size_t rl = strlen(reserved[i]);
		if (strncmp(s, reserved[i], rl) == 0 && (s[rl] == '\0' || s[rl] == '/'))
			return 0;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return 0;
	return 1;
}

static int volume_allowed(const struct podpolicy *p, const char *kind, const char *name,
			  const char *mp)
{
	json_t *e;
	size_t i;
	json_array_foreach(p->volumes, i, e) {
		const char *n = json_string_value(json_object_get(e, kind));
		const char *m = json_string_value(json_object_get(e, "mountPath"));
		if (n && m && strcmp(n, name) == 0 && strcmp(m, mp) == 0)
			return 1;
	}
	return 0;
}

#define DENY(...)                                  \
	do {                                       \
		*reason = "PolicyDenied";          \
		snprintf(err, errsz, __VA_ARGS__); \
		return -EINVAL;                    \
	} while (0)
#define INVALID(...)                               \
	do {                                       \
		*reason = "InvalidSpec";           \
		snprintf(err, errsz, __VA_ARGS__); \
		return -EINVAL;                    \
	} while (0)

static int check_volume(const struct podpolicy *p, json_t *v, size_t i, json_t *names,
			json_t *paths, const char *q, const char **reason, char *err, size_t errsz)
{
	const char *name = json_string_value(json_object_get(v, "name"));
	const char *mp = json_string_value(json_object_get(v, "mountPath"));
	json_t *pvc = json_object_get(v, "persistentVolumeClaim"),
	       *cm = json_object_get(v, "configMap");
	json_t *sec = json_object_get(v, "secret"), *ed = json_object_get(v, "emptyDir");
	int64_t size = 0;

	if (!volname_valid(name))
		INVALID("spec.container.volumes[%zu].name must be a DNS label (not tmp, not "
			"tasked-*)",
			i);
	if (!mountpath_valid(mp))
		INVALID("spec.container.volumes[%zu].mountPath must be a clean absolute path "
			"outside /tmp, /dev, "
			"/proc, /sys, /run and /var/run/tasked",
			i);
	if (json_object_get(names, name) || json_object_get(paths, mp))
		INVALID("spec.container.volumes[%zu]: name and mountPath must be unique", i);
	json_object_set_new(names, name, json_true());
	json_object_set_new(paths, mp, json_true());
	if ((!!pvc + !!cm + !!sec + !!ed) != 1)
		INVALID("spec.container.volumes[%zu] needs exactly one of persistentVolumeClaim, "
			"configMap, secret, "
			"emptyDir",
			i);
	if (pvc || cm) {
		const char *kind = pvc ? "persistentVolumeClaim" : "configMap";
		const char *src = json_string_value(
			json_object_get(pvc ? pvc : cm, pvc ? "claimName" : "name"));
		if (!src || !*src)
			INVALID("spec.container.volumes[%zu].%s needs a %s", i, kind,
				pvc ? "claimName" : "name");
		if (!volume_allowed(p, kind, src, mp))
			DENY("spec.container.volumes[%zu]: %s %.253s at %.256s is not in %s%s's "
			     "policy.container.volumeAllowlist",
			     i, kind, src, mp, q ? "TaskQueue " : "the built-in policy",
			     q ? q : "");
	}
	if (sec && !json_is_string(json_object_get(sec, "queueSecret")))
		INVALID("spec.container.volumes[%zu].secret needs queueSecret", i);
	if (ed) {
		json_t *sl = json_object_get(ed, "sizeLimit");
		if (sl && (qty_of(sl, 0, INT64_MAX, &size) < 0 || size < 1))
			INVALID("spec.container.volumes[%zu].emptyDir.sizeLimit is not a quantity",
				i);
		if (size > PODPOLICY_EMPTYDIR_MAX)
			DENY("spec.container.volumes[%zu].emptyDir.sizeLimit is over the 8Gi "
			     "maximum",
			     i);
	}
	return 0;
}

static int check_resources(const struct podpolicy *p, json_t *rs, const char *q, struct podres *res,
			   const char **reason, char *err, size_t errsz)
{
	json_t *lim = json_object_get(rs, "limits"), *req = json_object_get(rs, "requests"), *o;
	int64_t mem = 0, cpu = 0;
	const char *k;
	json_t *v;

	for (int pass = 0; pass < 2; pass++) {
		o = pass ? req : lim;
		json_object_foreach(o, k, v)
			if (strcmp(k, "cpu") != 0 && strcmp(k, "memory") != 0)
				INVALID("spec.container.resources: only cpu and memory can be set (not "
					"%.64s)",
					k);
	}
	if (res_pair(req, &mem, &cpu, "spec.container.resources.requests", err, errsz) < 0 ||
	    res_pair(lim, &mem, &cpu, "spec.container.resources.limits", err, errsz) < 0) {
		*reason = "InvalidSpec";
		return -EINVAL;
	}
	if (mem && p->max_memory && mem > p->max_memory)
		DENY("spec.container.resources: memory is over %s%s's "
		     "policy.container.maxResources.memory",
		     q ? "TaskQueue " : "the built-in policy", q ? q : "");
	if (cpu && p->max_cpu_milli && cpu > p->max_cpu_milli)
		DENY("spec.container.resources: cpu is over %s%s's "
		     "policy.container.maxResources.cpu",
		     q ? "TaskQueue " : "the built-in policy", q ? q : "");
	res->memory_bytes = mem ? mem : p->default_memory;
	res->cpu_milli = cpu ? cpu : p->default_cpu_milli;
	if (p->max_memory && res->memory_bytes > p->max_memory)
		res->memory_bytes = p->max_memory;
	if (p->max_cpu_milli && res->cpu_milli > p->max_cpu_milli)
		res->cpu_milli = p->max_cpu_milli;
	return 0;
}

int podpolicy_check(const struct podpolicy *p, json_t *c, const char *qname, struct podres *res,
		    const char **reason, char *err, size_t errsz)
{
	json_t *img = json_object_get(c, "image"), *vols = json_object_get(c, "volumes"), *v,
	       *names, *paths;
	const char *q = qname;
	size_t i;
	int r = 0;

	if (!json_is_object(c))
		INVALID("spec.container must be an object");
	if (!json_is_string(img) ||
	    !podpolicy_image_valid(json_string_value(img), json_string_length(img)))
		INVALID("spec.container.image is not a valid image reference "
			"(REPOSITORY[:TAG][@sha256:DIGEST])");
	if (!image_allowed(p, json_string_value(img), json_string_length(img))) {
		if (q)
			DENY("image %.300s is not in TaskQueue %s's "
			     "policy.container.imageAllowlist",
			     json_string_value(img), q);
		DENY("image %.300s is not allowed: without a TaskQueue no image is (create one "
		     "with "
		     "policy.container.imageAllowlist)",
		     json_string_value(img));
	}
	if (vols && (!json_is_array(vols) || json_array_size(vols) > PODPOLICY_MAX_VOLUMES))
		INVALID("spec.container.volumes must be a list of at most %d",
			PODPOLICY_MAX_VOLUMES);
	names = json_object();
	paths = json_object();
	json_array_foreach(vols, i, v)
		if ((r = check_volume(p, v, i, names, paths, q, reason, err, errsz)) < 0)
			break;
	json_decref(names);
	json_decref(paths);
	if (r < 0)
		return r;
	return check_resources(p, json_object_get(c, "resources"), q, res, reason, err, errsz);
}

/* One volume of a RunnerPool's spec.volumes (the RunnerPool CRD's shape). */
static int check_pool_volume(const struct podpolicy *p, json_t *v, const char *pool, const char *q,
			     json_t *qsecrets, const char **reason, char *err, size_t errsz)
{
	const char *name = json_string_value(json_object_get(v, "name"));
	const char *mp = json_string_value(json_object_get(v, "mountPath"));
	const char *cm = json_string_value(
		json_object_get(json_object_get(v, "configMap"), "name"));
	const char *pvc = json_string_value(
		json_object_get(json_object_get(v, "persistentVolumeClaim"), "claimName"));
	const char *sec = json_string_value(
		json_object_get(json_object_get(v, "secret"), "secretName"));
	json_t *ed = json_object_get(v, "emptyDir"), *d;
	int64_t size = 0;
	size_t i;

	if (!name || !mp)
		INVALID("RunnerPool %s: a volume needs a name and a mountPath", pool);
	if (cm || pvc) {
		const char *kind = cm ? "configMap" : "persistentVolumeClaim";
		if (!volume_allowed(p, kind, cm ? cm : pvc, mp))
			DENY("RunnerPool %s's volume %.63s (%s %.253s at %.256s) is not in %s%s's "
			     "policy.container.volumeAllowlist",
			     pool, name, kind, cm ? cm : pvc, mp,
			     q ? "TaskQueue " : "the built-in policy", q ? q : "");
		return 0;
	}
	if (sec) {
		/* A Secret reaches a queue's tasks only when the queue declares it. */
		json_array_foreach(qsecrets, i, d) {
			const char *s = json_string_value(
				json_object_get(json_object_get(d, "secretKeyRef"), "name"));
			if (s && strcmp(s, sec) == 0)
				return 0;
		}
		DENY("RunnerPool %s's volume %.63s mounts Secret %.253s, which %s%s does not "
		     "declare "
		     "in spec.secrets",
		     pool, name, sec, q ? "TaskQueue " : "the built-in policy", q ? q : "");
	}
	if (ed) {
		json_t *sl = json_object_get(ed, "sizeLimit");
		if (sl && (qty_of(sl, 0, INT64_MAX, &size) < 0 || size < 1))
			INVALID("RunnerPool %s's volume %.63s: emptyDir.sizeLimit is not a "
				"quantity",
				pool, name);
		if (size > PODPOLICY_EMPTYDIR_MAX)
			DENY("RunnerPool %s's volume %.63s: emptyDir.sizeLimit is over the 8Gi "
			     "maximum",
			     pool, name);
		return 0;
	}
	DENY("RunnerPool %s's volume %.63s has no source the policy allows", pool, name);
}

int podpolicy_check_pool(const struct podpolicy *p, json_t *spec, const char *pool,
			 const char *qname, json_t *qsecrets, const char **reason, char *err,
			 size_t errsz)
{
	json_t *img = json_object_get(spec, "image"), *rs = json_object_get(spec, "resources"), *v;
	const char *q = qname;
	int64_t mem = 0, cpu = 0;
	size_t i;
	int r;

	if (!pool)
		pool = "";
	if (!json_is_string(img) ||
	    !podpolicy_image_valid(json_string_value(img), json_string_length(img)))
		INVALID("RunnerPool %s: spec.image is not a valid image reference "
			"(REPOSITORY[:TAG][@sha256:DIGEST])",
			pool);
	if (!image_allowed(p, json_string_value(img), json_string_length(img))) {
		if (q)
			DENY("RunnerPool %s's image %.300s is not in TaskQueue %s's "
			     "policy.container.imageAllowlist",
			     pool, json_string_value(img), q);
		DENY("RunnerPool %s's image %.300s is not allowed: without a TaskQueue no image is "
		     "(create one with policy.container.imageAllowlist)",
		     pool, json_string_value(img));
	}
	json_array_foreach(json_object_get(spec, "volumes"), i, v)
		if ((r = check_pool_volume(p, v, pool, q, qsecrets, reason, err, errsz)) < 0)
			return r;
	/* Limits, else requests, as for a container task; other resources are the pool's. */
	for (int pass = 0; pass < 2; pass++) {
		json_t *o = json_object_get(rs, pass ? "limits" : "requests");
		json_t *m = json_object_get(o, "memory"), *c = json_object_get(o, "cpu");
		if ((m && qty_of(m, 0, RES_MAX_MEMORY, &mem) < 0) ||
		    (c && qty_of(c, 3, RES_MAX_CPU_MILLI, &cpu) < 0))
			INVALID("RunnerPool %s: spec.resources: cpu or memory is not a quantity",
				pool);
	}
	if (mem && p->max_memory && mem > p->max_memory)
		DENY("RunnerPool %s: memory is over %s%s's policy.container.maxResources.memory",
		     pool, q ? "TaskQueue " : "the built-in policy", q ? q : "");
	if (cpu && p->max_cpu_milli && cpu > p->max_cpu_milli)
		DENY("RunnerPool %s: cpu is over %s%s's policy.container.maxResources.cpu", pool,
		     q ? "TaskQueue " : "the built-in policy", q ? q : "");
	return 0;
}
