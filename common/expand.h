#pragma once
/* $(VAR) expansion with Kubernetes container semantics: $(NAME) becomes the value the lookup
 * returns; an unknown name or an unterminated reference stays literal; "$$" is an escaped "$",
 * so "$$(NAME)" yields the literal "$(NAME)". Nothing else is special: no shell, no globbing. */
#include <stddef.h>

/* Returns the value for name[0..len) or NULL when unknown (borrowed). */
typedef const char *(*expand_lookup_fn)(const char *name, size_t len, void *userdata);

/* Expands in into a new string of at most max bytes (*ret, caller frees); -E2BIG past max. */
int expand_vars(const char *in, expand_lookup_fn lookup, void *userdata, size_t max, char **ret);
