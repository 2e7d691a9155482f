#include "api_priv.h"
#include "server.h"
#include "task.h"
#include "broker.h"
#include "events.h"
#include "informer.h"
#include "log.h"
#include "logstore.h"
#include "metrics.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <linux/sockios.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

/* --- logs ------------------------------------------------------------------------------------ */

static int collect_text(void *ud, const struct logstore_chunk *c)
{
	struct buf *b = ud;
	/* Stop before the chunk that does not fit: a failed append would drop what is there. */
	return b->len + c->len > b->max || buf_append(b, c->data, c->len) < 0;
}

int api_get_logs(struct api *a, struct lws *wsi, struct api_sess *s, const char *ns,
		 const char *name, int64_t attempt)
{
	struct informer *inf = atomic_load(&a->inf);
	char key[512], msg[600];
	const char *uid = NULL, *source = "store";
	json_t *t;
	struct logstore_pos pos;
	struct buf text;
	int r, complete;

	if (!inf)
		return api_error(a, wsi, s, 503, "NotReady", "the task cache is not running yet");
	snprintf(key, sizeof(key), "%s/%s", ns, name);
	t = informer_get(inf, key);
	uid = task_uid(t);
	buf_init(&text, API_MAX_RESPONSE);
	logstore_read(a->logs, uid, t ? NULL : key, attempt, 0, SIZE_MAX, collect_text, &text,
		      &pos);
	if (!pos.found && !t) {
		buf_free(&text);
		snprintf(msg, sizeof(msg), "task %s not found", key);
		return api_error(a, wsi, s, 404, "NotFound", msg);
	}
	complete = pos.finished || task_terminal(t);
	if (!pos.found || (pos.end == 0 && complete)) {
		/* Nothing streamed (e.g. the controller restarted since): the status keeps the end. */
		const char *tail = json_string_value(json_object_get(task_status(t), "logTail"));
		buf_reset(&text);
		if (tail)
			(void)buf_append(&text, tail, strlen(tail)); /* checked below */
		source = "logTail";
	}
	if (text.err) { /* out of memory: an empty log would look like a quiet task */
		buf_free(&text);
		json_decref(t);
		return api_error(a, wsi, s, 500, "InternalError", "cannot build the answer");
	}
	if (api_wants_json(wsi)) {
		json_t *o = json_pack("{ss ss ss* ss sb sb sI ss#}", "namespace", ns, "name", name,
				      "uid", uid, "source", source, "complete", complete,
				      "truncated", pos.dropped > 0, "droppedBytes",
				      (json_int_t)pos.dropped, "log", text.data ? text.data : "",
				      (int)text.len);
		if (o && attempt)
			json_object_set_new(o, "attempt", json_integer(attempt));
		buf_free(&text);
		json_decref(t);
		return o ? api_reply_json(a, wsi, s, 200, o, NULL)
			 : api_error(a, wsi, s, 500, "InternalError", "could not encode the log");
	}
	{
		const char *extra[] = { "x-tasked-log-source:",
					source,
					"x-tasked-log-truncated:",
					pos.dropped > 0 ? "true" : "false",
					"x-tasked-log-complete:",
					complete ? "true" : "false",
					NULL };
		char *body = text.data;
		size_t len = text.len;
		text.data = NULL; /* api_send takes the bytes over */
		buf_free(&text);
		json_decref(t);
		r = api_send(a, wsi, s, 200, "text/plain; charset=utf-8", body ? body : strdup(""),
			     len, extra);
	}
	return r;
}
