#include "allocfail.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t sz);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t sz);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

static long af_left; /* allocations until the failing one; 0: disarmed */
static int af_hit;

/* Whether this allocation is the one to fail. */
static int af_fail(void)
{
	if (af_left <= 0 || --af_left > 0)
		return 0;
	af_hit = 1;
	return 1;
}

void *__wrap_malloc(size_t n) { return af_fail() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t sz) { return af_fail() ? NULL : __real_calloc(n, sz); }
void *__wrap_realloc(void *p, size_t n) { return af_fail() ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return af_fail() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n) { return af_fail() ? NULL : __real_strndup(s, n); }

static void *af_json_malloc(size_t n) { return __wrap_malloc(n); }

void af_init(void) { json_set_alloc_funcs(af_json_malloc, free); }

void af_arm(long nth)
{
	af_hit = 0;
	af_left = nth;
}

int af_disarm(void)
{
	af_left = 0;
	return af_hit;
}
