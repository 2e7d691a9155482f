/* Forced into every file of the ThreadSanitizer build (-include, see the Makefile).
 * jansson's json_decref reads the count with a plain load and drops it with release ordering
 * only, so the thread that frees an object is not ordered after another thread's last reads of
 * it (the acquire half is missing). On x86-64 the locked instruction orders it anyway; TSan
 * models the C11 orderings and reports every shared Task object. Here the count is read
 * atomically and dropped with acquire-release ordering, so what TSan checks is our use of the
 * counts; the frees done inside libjansson itself are covered by called_from_lib in
 * suppressions.txt (an uninstrumented library whose atomics TSan cannot see). */
#pragma once
#include <jansson.h>

static inline json_t *tsan_json_incref(json_t *j)
{
	if (j && __atomic_load_n(&j->refcount, __ATOMIC_RELAXED) != (size_t)-1)
		__atomic_add_fetch(&j->refcount, 1, __ATOMIC_RELAXED);
	return j;
}

static inline void tsan_json_decref(json_t *j)
{
	if (j && __atomic_load_n(&j->refcount, __ATOMIC_RELAXED) != (size_t)-1 &&
	    __atomic_sub_fetch(&j->refcount, 1, __ATOMIC_ACQ_REL) == 0)
		json_delete(j);
}

#define json_incref tsan_json_incref
#define json_decref tsan_json_decref
