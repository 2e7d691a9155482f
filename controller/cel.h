#pragma once
/* Conditions (`when`): a sandboxed subset of CEL, parsed and evaluated from scratch.
 *
 * Grammar, functions, limits and error messages are described for users in docs/conditions.md.
 * Values are jansson values: int is JSON_INTEGER (64-bit), double is JSON_REAL (always finite),
 * string, bool (json_true/json_false), null, list (array) and map (object, string keys only).
 *
 * A compiled program is immutable, so one program may be evaluated from several threads at once
 * (jansson's reference counts are atomic). Every call that can fail returns 0 or a negative errno:
 *   -EINVAL     syntax error, type error, unknown variable/key/function, bad conversion, overflow
 *   -E2BIG      a sandbox limit: expression length, nesting, cost, string/list/map size
 *   -ETIMEDOUT  the evaluation ran past its wall-clock timeout
 *   -ENOMEM     out of memory
 * and, when err is not NULL, writes a one-line reason into err (errsz bytes, always terminated):
 * "LINE:COLUMN: reason" when the error belongs to a place in the expression (COLUMN counts
 * characters from 1), else just "reason" (e.g. "cost limit 10000 exceeded"). */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define CEL_MAX_LEN 4096 /* hard cap on the expression length in bytes */
#define CEL_MAX_DEPTH 64 /* hard cap on max_depth: it bounds the parser's and evaluator's stack */

/* Per-evaluation sandbox limits. A field that is 0 (or negative) takes its default, so
 * `struct cel_limits l = {0}` and a NULL pointer both mean "all defaults"; max_len and
 * max_depth above their hard caps are clamped to them. */
struct cel_limits {
	size_t max_len; /* expression bytes (4096, at most CEL_MAX_LEN) */
	int max_depth;  /* AST depth and parser nesting (32, at most CEL_MAX_DEPTH) */
	int64_t max_cost; /* evaluation steps: >= 1 per node, +1 per 16 bytes or element handled (10000) */
	int64_t timeout_ms; /* wall clock per evaluation, checked every 64 steps (10) */
	size_t max_string;  /* bytes of a string the expression produces (65536) */
	size_t max_list;    /* elements of a list the expression produces (1000) */
	size_t max_map;     /* entries of a map the expression produces (1000) */
};

struct cel_program;

/* Fills l with the defaults above. */
void cel_limits_default(struct cel_limits *l);

/* Parses the NUL-terminated expr (max_len and max_depth of l apply) into *ret (new; free with
 * cel_program_free). Unknown functions and wrong argument counts are caught here; unknown
 * variables and keys only at evaluation, since they depend on the variables given. */
int cel_compile(const char *expr, const struct cel_limits *l, struct cel_program **ret, char *err,
		size_t errsz);

/* Evaluates p against vars (borrowed; a JSON object whose keys are the top-level variable names,
 * e.g. {"tasks": {...}, "task": {...}}; NULL means no variables). max_cost, timeout_ms and the
 * size limits of l apply. *ret is a new reference; it may share structure with vars or with the
 * program, so treat it as read-only. */
int cel_eval(const struct cel_program *p, json_t *vars, const struct cel_limits *l, json_t **ret,
	     char *err, size_t errsz);

/* cel_eval for conditions: *ret is 1 or 0; any non-bool result is -EINVAL with
 * "condition must evaluate to a bool, got int" (or the type found). */
int cel_eval_bool(const struct cel_program *p, json_t *vars, const struct cel_limits *l, int *ret,
		  char *err, size_t errsz);

void cel_program_free(struct cel_program *p);
