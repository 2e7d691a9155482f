#pragma once
/* Allocation-failure injection for tests/unit/test_allocfail (curl's "torture" idea). That
 * binary is linked with --wrap=malloc,calloc,realloc,strdup,strndup, so every allocation made
 * by our own code goes through here, and jansson's through json_set_alloc_funcs. */
#include <stddef.h>

/* Installs jansson's allocator hooks; call before any JSON is built. */
void af_init(void);
/* Makes the nth allocation from now fail (1 = the next one); 0 disarms. */
void af_arm(long nth);
/* Disarms; whether the armed failure happened. */
int af_disarm(void);
