#include "hmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct hnode {
	struct hnode *next;
	void *value;
	uint32_t hash;
	char key[];
};

struct hmap {
	struct hnode **buckets;
	size_t nbuckets, size;
};

static uint32_t hmap_hash(const char *s)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

struct hmap *hmap_new(void)
{
	struct hmap *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->nbuckets = 64;
	m->buckets = calloc(m->nbuckets, sizeof(*m->buckets));
	if (!m->buckets) {
		free(m);
		return NULL;
	}
	return m;
}

void hmap_free(struct hmap *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct hnode *n = m->buckets[i];
		while (n) {
			struct hnode *next = n->next;
			free(n);
			n = next;
		}
	}
	free(m->buckets);
	free(m);
}

static struct hnode **hmap_find(const struct hmap *m, const char *key, uint32_t h)
{
	struct hnode **pp = &m->buckets[h & (m->nbuckets - 1)];
	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->hash == h && strcmp((*pp)->key, key) == 0)
			return pp;
	return pp;
}

void *hmap_get(const struct hmap *m, const char *key)
{
	struct hnode **pp = hmap_find(m, key, hmap_hash(key));
	return *pp ? (*pp)->value : NULL;
}

static void hmap_grow(struct hmap *m)
{
	size_t n = m->nbuckets * 2;
	struct hnode **nb = calloc(n, sizeof(*nb));
	if (!nb)
		return; /* keep working with longer chains */
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct hnode *e = m->buckets[i];
		while (e) {
			struct hnode *next = e->next;
			e->next = nb[e->hash & (n - 1)];
			nb[e->hash & (n - 1)] = e;
			e = next;
		}
	}
	free(m->buckets);
	m->buckets = nb;
	m->nbuckets = n;
}

void *hmap_put(struct hmap *m, const char *key, void *value)
{
	uint32_t h = hmap_hash(key);
	struct hnode **pp = hmap_find(m, key, h), *n;
	size_t len;

	if (*pp) {
		void *old = (*pp)->value;
		(*pp)->value = value;
		return old;
	}
	len = strlen(key);
	n = malloc(sizeof(*n) + len + 1);
	if (!n)
		return (void *)-1;
	memcpy(n->key, key, len + 1);
	n->hash = h;
	n->value = value;
	n->next = NULL;
	*pp = n;
	if (++m->size > m->nbuckets)
		hmap_grow(m);
	return NULL;
}

void *hmap_del(struct hmap *m, const char *key)
{
	struct hnode **pp = hmap_find(m, key, hmap_hash(key)), *n = *pp;
	void *v;
	if (!n)
		return NULL;
	*pp = n->next;
	v = n->value;
	free(n);
	m->size--;
	return v;
}

size_t hmap_size(const struct hmap *m) { return m->size; }

void hmap_foreach(const struct hmap *m, void (*fn)(const char *key, void *value, void *ud),
		  void *ud)
{
	for (size_t i = 0; i < m->nbuckets; i++)
		for (struct hnode *n = m->buckets[i]; n; n = n->next)
			fn(n->key, n->value, ud);
}
