#pragma once
/* A thin Kubernetes REST client on libcurl + jansson. One client is shared by all threads; each
 * thread gets its own keep-alive connection. Tokens from a file are re-read every minute and
 * after a 401 (client-go's cached file token source). */
#include "kubeconfig.h"

#include <stdatomic.h>
#include <jansson.h>
#include <stdint.h>

#define KUBE_MAX_RESPONSE (64 * 1024 * 1024)
#define KUBE_MAX_WATCH_LINE (16 * 1024 * 1024)

struct kube_client;

struct kube_resp {
	long status;  /* HTTP status; 0 when the request never got an answer */
	json_t *body; /* parsed JSON body (new reference) or NULL */
	char *raw;    /* a 2xx body that did not decode (kube_request returned -EBADMSG),
				 * kept so a caller can salvage what it can (jscan.h); else NULL */
	size_t raw_len;
	char reason[64];   /* Status.reason for errors, e.g. "Conflict", "Expired" */
	char message[512]; /* Status.message, or the transport error */
};

/* Takes ownership of cfg's contents. */
struct kube_client *kube_client_new(struct kube_config *cfg);
void kube_client_free(struct kube_client *c);

/* Performs one request. body may be NULL. Returns 0 when an HTTP answer arrived (any status;
 * check ret->status), or a negative errno when the transport failed (message says why). */
int kube_request(struct kube_client *c, const char *method, const char *path,
		 const char *content_type, const json_t *body, struct kube_resp *ret);
void kube_resp_free(struct kube_resp *r);
/* GETs a text resource (a pod's log) into out, up to out's max (-EFBIG past it, out keeps what
 * fit). 0 when an answer arrived (check ret->status; ret has no body), or a negative errno. */
struct buf;
int kube_get_text(struct kube_client *c, const char *path, struct buf *out, struct kube_resp *ret);

/* Called with each watch event (borrowed); return nonzero to stop the watch. A line that does
 * not decode (nested deeper than jansson allows, say) does not end the watch: it arrives with
 * event NULL, its text in raw/rawlen and the parser's complaint in error. */
typedef int (*kube_event_fn)(json_t *event, const char *raw, size_t rawlen, const char *error,
			     void *userdata);
/* Streams a watch. Returns 0 when the server ended the stream normally (ret->status 200),
 * a positive-status answer in ret for refusals, or a negative errno for transport errors:
 * -ETIMEDOUT (with ret->status 200) when an accepted watch sent nothing, not even a bookmark,
 * for two minutes, which an idle API server does; -ECONNRESET for the rest.
 * *stop is polled about every 100 ms; when it becomes nonzero the watch ends with -ECANCELED. */
int kube_watch(struct kube_client *c, const char *path, kube_event_fn fn, void *userdata,
	       const atomic_int *stop, struct kube_resp *ret);

/* Percent-encodes s for a query value or path segment into out; -ENOBUFS when it does not fit,
 * -EINVAL when s is NULL or empty. On failure out is "" (never a cut-off escape). */
int kube_escape(const char *s, char *out, size_t outsz) __attribute__((warn_unused_result));

/* Parses what the API server sends. Everything it accepts must decode here: strings may hold
 * NUL (JSON_ALLOW_NUL; read them with json_string_length, not as C strings), and integers past
 * 64 bits (stored by the API server as float64) are read as reals. What still fails is nesting
 * deeper than jansson's compile-time JSON_PARSER_MAX_DEPTH (2048; the API server allows 10000 in
 * all, measured: a Task whose spec.input nests 9997 levels is stored) and NUL inside member
 * names, which jansson cannot represent: callers skip and report such objects (informer.c).
 * New reference or NULL with err filled. */
json_t *kube_json_loadb(const char *data, size_t len, json_error_t *err);

/* Called once per request (and per watch) with the verb (get, list, watch, create, update,
 * patch, delete), the HTTP status (0 when no answer arrived) and the duration. */
void kube_client_set_observer(struct kube_client *c,
			      void (*observe)(void *ud, const char *verb, long code,
					      double seconds),
			      void *ud);

/* Count of requests by verb, for metrics and the API-writes benchmark. */
struct kube_stats {
	uint64_t get, list, watch, create, update, patch, delete_;
};
void kube_stats_get(struct kube_client *c, struct kube_stats *ret);

/* --- Kubernetes vocabulary ------------------------------------------------------------------ */

#define KUBE_GV_TASKED "tasked.dev/v1alpha1"

/* Builds a resource path: /api/v1/… for the core group ("v1"), else /apis/<gv>/…, then
 * namespaces/<ns>/ when ns is set, the resource, /<name> when name is set (NULL or "" = the
 * collection) and /<subresource> when set. Segments are percent-encoded. 0, or -ENAMETOOLONG
 * when it does not fit in size (buf is then ""), -EINVAL for a missing group/resource. */
int kube_path(char *buf, size_t size, const char *gv, const char *resource, const char *ns,
	      const char *name, const char *subresource) __attribute__((warn_unused_result));

/* Merge-patches the status subresource of obj (metadata.namespace/name/uid are read from it)
 * with patch ({"status": …}; metadata.uid is added as a precondition, so an object re-created
 * under the same name is never touched). Returns 0 when written (resp->body is the new object,
 * or NULL when only the answer did not decode), -ENOENT when the object is gone or was
 * re-created, -EINVAL when the server refuses the status itself (400, 422: retrying the same
 * write cannot help; also for a name that does not fit a path), -EAGAIN for the rest
 * (transport, conflict, throttling, server errors). resp is always to be freed by the caller. */
int kube_patch_status(struct kube_client *c, const char *gv, const char *resource, json_t *obj,
		      json_t *patch, struct kube_resp *resp);
