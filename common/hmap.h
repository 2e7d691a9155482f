#pragma once
/* A small chained hash map from strings to pointers. Keys are copied; values are borrowed (the
 * caller owns them). Not thread-safe: callers lock. */
#include <stddef.h>

struct hmap;

struct hmap *hmap_new(void);
/* Frees the map (not the values). */
void hmap_free(struct hmap *m);
void *hmap_get(const struct hmap *m, const char *key);
/* Sets key to value; returns the previous value (or NULL). -ENOMEM is reported as (void *)-1. */
void *hmap_put(struct hmap *m, const char *key, void *value);
/* Removes key; returns its value (or NULL). */
void *hmap_del(struct hmap *m, const char *key);
size_t hmap_size(const struct hmap *m);
/* Calls fn for every entry; fn must not modify the map. */
void hmap_foreach(const struct hmap *m, void (*fn)(const char *key, void *value, void *ud),
		  void *ud);
