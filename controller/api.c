#include "api.h"
#include "log.h"
#include "util.h"

#include <jansson.h>
#include <libwebsockets.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct api {
	struct api_cfg cfg;
	pthread_mutex_t lock;
	char *file_key;
	struct timespec file_mtime;
};

struct api_sess {
	char *resp;
	size_t resp_len;
};

struct api *api_new(const struct api_cfg *cfg)
{
	struct api *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->cfg = *cfg;
	pthread_mutex_init(&a->lock, NULL);
	return a;
}

void api_free(struct api *a)
{
	if (!a)
		return;
	if (a->file_key)
		OPENSSL_cleanse(a->file_key, strlen(a->file_key));
	free(a->file_key);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

/* Caller holds lock. Re-reads the key file when its mtime changed, so keys can rotate. */
static const char *api_current_key(struct api *a)
{
	struct stat st;
	if (a->cfg.api_key_file && stat(a->cfg.api_key_file, &st) == 0 &&
	    (!a->file_key || st.st_mtim.tv_sec != a->file_mtime.tv_sec ||
	     st.st_mtim.tv_nsec != a->file_mtime.tv_nsec)) {
		char *k = NULL;
		if (util_read_file(a->cfg.api_key_file, 4096, &k, NULL) == 0) {
			util_rstrip(k);
			if (a->file_key)
				OPENSSL_cleanse(a->file_key, strlen(a->file_key));
			free(a->file_key);
			a->file_key = k;
			a->file_mtime = st.st_mtim;
		}
	}
	if (a->file_key && a->file_key[0])
		return a->file_key;
	return a->cfg.api_key && a->cfg.api_key[0] ? a->cfg.api_key : NULL;
}

int api_has_key(struct api *a)
{
	int has;
	pthread_mutex_lock(&a->lock);
	has = api_current_key(a) != NULL;
	pthread_mutex_unlock(&a->lock);
	return has;
}

int api_check_key(struct api *a, const char *presented)
{
	const char *key;
	int ok;
	pthread_mutex_lock(&a->lock);
	key = api_current_key(a);
	ok = !key || (presented && util_ct_equal(presented, strlen(presented), key, strlen(key)));
	pthread_mutex_unlock(&a->lock);
	return ok;
}

static int api_reply(struct lws *wsi, struct api_sess *s, unsigned int code, json_t *body)
{
	unsigned char hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;
	char *txt = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (!txt)
		return -1;
	free(s->resp);
	s->resp_len = strlen(txt);
	s->resp = malloc(LWS_PRE + s->resp_len);
	if (!s->resp) {
		free(txt);
		return -1;
	}
	memcpy(s->resp + LWS_PRE, txt, s->resp_len);
	free(txt);
	if (lws_add_http_common_headers(wsi, code, "application/json", s->resp_len, &p, end) ||
	    lws_finalize_write_http_header(wsi, start, &p, end))
		return -1;
	lws_callback_on_writable(wsi);
	return 0;
}

static json_t *api_error(const char *err, const char *msg)
{
	return json_pack("{ssss}", "error", err, "message", msg);
}

static int api_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct api *a = lws_get_vhost_user(lws_get_vhost(wsi));
	struct api_sess *s = user;

	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return -1;
	case LWS_CALLBACK_HTTP: {
		const char *uri = in;
		char key[512] = "", why[256] = "";
		if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
			return api_reply(wsi, s, 405, api_error("MethodNotAllowed", "only GET is served"));
		if (strcmp(uri, "/healthz") == 0)
			return api_reply(wsi, s, 200, json_pack("{ss}", "status", "ok"));
		if (strcmp(uri, "/readyz") == 0) {
			int ok = a->cfg.ready ? a->cfg.ready(a->cfg.ud, why, sizeof(why)) : 1;
			return api_reply(wsi, s, ok ? 200 : 503,
					 ok ? json_pack("{ss}", "status", "ready") : api_error("NotReady", why));
		}
		if (lws_hdr_copy(wsi, key, sizeof(key), WSI_TOKEN_HTTP_AUTHORIZATION) > 7 &&
		    strncmp(key, "Bearer ", 7) == 0)
			memmove(key, key + 7, strlen(key + 7) + 1);
		else if (lws_hdr_custom_copy(wsi, key, sizeof(key), "x-api-key:", 10) <= 0)
			key[0] = '\0';
		if (!api_check_key(a, key[0] ? key : NULL)) {
			OPENSSL_cleanse(key, sizeof(key));
			log_warn("API request refused", "reason", "missing or wrong API key");
			return api_reply(wsi, s, 401, api_error("Unauthorized", "a valid API key is required (Authorization: Bearer KEY or X-API-Key)"));
		}
		OPENSSL_cleanse(key, sizeof(key));
		return api_reply(wsi, s, 404, api_error("NotFound", "no such endpoint"));
	}
	case LWS_CALLBACK_HTTP_WRITEABLE:
		if (!s->resp)
			return 0;
		if (lws_write(wsi, (unsigned char *)s->resp + LWS_PRE, s->resp_len, LWS_WRITE_HTTP_FINAL) < 0)
			return -1;
		free(s->resp);
		s->resp = NULL;
		return lws_http_transaction_completed(wsi) ? -1 : 0;
	case LWS_CALLBACK_CLOSED_HTTP:
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		if (s) {
			free(s->resp);
			s->resp = NULL;
		}
		return 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols api_protos[] = {
	{ "http", api_cb, sizeof(struct api_sess), 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

const struct lws_protocols *api_protocols(void)
{
	return api_protos;
}
