/* Fuzz target: conditions. The input is compiled as a CEL expression and evaluated against a
 * fixed set of variables, with the default limits and then with tight ones. Invariants checked:
 * every failure has a reason, and every result encodes as JSON (so strings are valid UTF-8 and
 * doubles finite). */
#include "cel.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static json_t *vars;

static void init_vars(void)
{
	char big[1025];
	json_t *list;

	vars = json_loads(
		"{\"tasks\": {"
		"  \"build\": {\"phase\": \"Succeeded\", \"exitCode\": 0, \"output\": {\"ok\": true,"
		"             \"changed\": false, \"count\": 3, \"ratio\": 0.5, \"items\": [\"a\", \"b\"],"
		"             \"nested\": {\"k\": \"v\", \"deep\": [[[[1]]]]}, \"version\": \"1.2.3\"}},"
		"  \"test\": {\"phase\": \"Failed\", \"exitCode\": 1, \"output\": {}},"
		"  \"a\": {\"phase\": \"Succeeded\", \"exitCode\": 0, \"output\": {\"changed\": true}},"
		"  \"b\": {\"phase\": \"Skipped\", \"exitCode\": null, \"output\": null}},"
		" \"task\": {\"name\": \"t1\", \"namespace\": \"default\","
		"          \"labels\": {\"env\": \"prod\", \"tier\": \"web\"}, \"attempt\": 2},"
		" \"big\": 9223372036854775807, \"small\": -9223372036854775808, \"u\": \"h\\u00e9llo \\u20ac\"}",
		0, NULL);
	if (!vars)
		abort();
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	json_object_set_new(vars, "s", json_string(big));
	list = json_array();
	for (int i = 0; i < 200; i++)
		json_array_append_new(list, json_integer(i));
	json_object_set_new(vars, "L", list);
}

static void check(const struct cel_program *p, const struct cel_limits *l)
{
	char err[200];
	json_t *v;
	int b, r = cel_eval(p, vars, l, &v, err, sizeof(err));

	if (r < 0) {
		if (err[0] == '\0' ||
		    (r != -EINVAL && r != -E2BIG && r != -ETIMEDOUT && r != -ENOMEM))
			abort();
		return;
	}
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	if (!s)
		abort();
	free(s);
	json_decref(v);
	r = cel_eval_bool(p, vars, l, &b, err, sizeof(err));
	if (r < 0 && err[0] == '\0')
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cel_limits tight = { .max_cost = 200, .max_string = 64, .max_list = 8, .max_map = 4 };
	struct cel_program *p;
	char err[200], *expr;
	int r;

	if (!vars)
		init_vars();
	expr = malloc(size + 1);
	if (!expr)
		return 0;
	memcpy(expr, data, size);
	expr[size] = '\0';
	r = cel_compile(expr, NULL, &p, err, sizeof(err));
	if (r == 0) {
		check(p, NULL);
		check(p, &tight);
		cel_program_free(p);
	} else if (err[0] == '\0' || p != NULL) {
		abort();
	}
	/* a tight depth limit exercises the parser's refusal paths */
	tight.max_depth = 3;
	if (cel_compile(expr, &tight, &p, err, sizeof(err)) == 0)
		cel_program_free(p);
	free(expr);
	return 0;
}
