/* Fuzz target: the informer's decoder. Each input goes in once as a watch line and once as a
 * list page (the paths an API server's bytes take into the cache: tree parse, then the bounded
 * scanner for what the parser refuses), then every cached object is read back (inflate and
 * parse), and the scanner's primitives run on the raw bytes. */
#include "informer.h"
#include "jscan.h"
#include "log.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const path[] = { "object", "metadata", "name", NULL };
	const char *s = (const char *)data;
	struct informer *inf;
	json_t *keys, *k;
	size_t i, vs, ve, pos = 0;
	char out[256];

	log_init("fuzz", LOG_LVL_ERROR);
	inf = informer_new(NULL, "/apis/tasked.dev/v1alpha1/tasks", 0, NULL, NULL);
	if (!inf)
		return 0;
	informer_feed_watch_line(inf, s, size);
	informer_feed_list_page(inf, s, size);
	keys = informer_keys(inf);
	json_array_foreach(keys, i, k)
		json_decref(informer_get(inf, json_string_value(k)));
	json_decref(keys);
	informer_free(inf);

	(void)jscan_depth(s, size, 64);
	if (jscan_path(s, size, 0, path, &vs, &ve) == 0)
		(void)jscan_string(s, vs, ve, out, sizeof(out));
	for (int n = 0; n < 1000 && jscan_next(s, size, &pos, &vs, &ve) == 1; n++)
		(void)jscan_string(s, vs, ve, out, sizeof(out));
	return 0;
}
