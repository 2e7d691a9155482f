#pragma once
/* $(VAR) expansion with Kubernetes container semantics: $(NAME) becomes the value the lookup
 * returns; an unknown name or an unterminated reference stays literal; "$$" is an escaped "$",
 * so "$$(NAME)" yields the literal "$(NAME)". Nothing else is special: no shell, no globbing. */
#include <stddef.h>

/* The one $(…) scanner (expand_vars here, $(tasks.…) references in the controller). Splits s
 * into literal text, "$$" escapes and references "$(NAME)" (NAME: everything up to the first
 * ')'). A '$' that starts neither, or an unterminated "$(", is text. */
enum expand_tok { EXPAND_END, EXPAND_TEXT, EXPAND_ESCAPE, EXPAND_REF };
struct expand_token {
	size_t start, len;     /* the whole token in s */
	size_t name, name_len; /* EXPAND_REF: NAME in s */
};
/* The token at *pos (advanced past it); EXPAND_END at the terminating NUL. A caller may set
 * *pos back to t->start + 1 to rescan a reference it does not take as text. */
enum expand_tok expand_next(const char *s, size_t *pos, struct expand_token *t);

/* Returns the value for name[0..len) or NULL when unknown (borrowed). */
typedef const char *(*expand_lookup_fn)(const char *name, size_t len, void *userdata);

/* Expands in into a new string of at most max bytes (*ret, caller frees); -E2BIG past max. */
int expand_vars(const char *in, expand_lookup_fn lookup, void *userdata, size_t max, char **ret);
