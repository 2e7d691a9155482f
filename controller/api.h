#pragma once
/* The controller's HTTP API vhost (served on the broker's libwebsockets loop): /healthz,
 * /readyz, and the authenticated /api/v1 endpoints. Health endpoints need no key. */
#include <stddef.h>

struct lws_protocols;
struct api;

struct api_cfg {
	const char *api_key;        /* static key (flag or TASKED_API_KEY); may be NULL */
	const char *api_key_file;   /* re-read when it changes; may be NULL */
	int (*ready)(void *ud, char *why, size_t whysz);  /* 1 when ready, else 0 and a reason */
	void *ud;
};

struct api *api_new(const struct api_cfg *cfg);
void api_free(struct api *a);
const struct lws_protocols *api_protocols(void);
/* 1 when the presented key matches (constant time, by SHA-256 digest), or no key is configured. */
int api_check_key(struct api *a, const char *presented);
int api_has_key(struct api *a);
