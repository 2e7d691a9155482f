/* Conditions: the CEL subset's grammar, semantics, error messages and every sandbox limit. */
#include "cel.h"
#include "tap.h"

#include <errno.h>

#define ERRSZ 256

static json_t *vars;

static const char *vars_json =
	"{\"tasks\": {"
	"  \"build\": {\"phase\": \"Succeeded\", \"exitCode\": 0, \"output\": {\"ok\": true, \"changed\": false,"
	"             \"count\": 3, \"ratio\": 0.5, \"items\": [\"a\", \"b\"], \"nested\": {\"k\": \"v\"},"
	"             \"version\": \"1.2.3\"}},"
	"  \"test\": {\"phase\": \"Failed\", \"exitCode\": 1, \"output\": {}},"
	"  \"a\": {\"phase\": \"Succeeded\", \"exitCode\": 0, \"output\": {\"changed\": true}},"
	"  \"b\": {\"phase\": \"Succeeded\", \"exitCode\": 0, \"output\": null},"
	"  \"deploy-prod\": {\"phase\": \"Skipped\", \"exitCode\": null, \"output\": {}}},"
	" \"task\": {\"name\": \"t1\", \"namespace\": \"default\", \"labels\": {\"env\": \"prod\", \"tier\": \"web\"},"
	"          \"attempt\": 2},"
	" \"big\": 9223372036854775807, \"small\": -9223372036854775808, \"unicode\": \"h\\u00e9llo\"}";

/* A TAP-safe name: newlines shown as \n, long expressions cut. */
static const char *name_of(const char *expr)
{
	static char out[120];
	size_t o = 0;
	for (size_t i = 0; expr[i] && o + 5 < sizeof(out); i++) {
		if (expr[i] == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = expr[i];
		}
	}
	out[o] = '\0';
	return out;
}

static int run(const char *expr, const struct cel_limits *l, json_t **out, char *err)
{
	struct cel_program *p;
	int r = cel_compile(expr, l, &p, err, ERRSZ);
	*out = NULL;
	if (r < 0)
		return r;
	r = cel_eval(p, vars, l, out, err, ERRSZ);
	cel_program_free(p);
	return r;
}

struct vcase {
	const char *expr;
	const char *want; /* JSON of the expected value, or NULL when an error is expected */
	int code;         /* expected error */
	const char *err;  /* substring (or, starting with '=', the whole) of the expected reason */
};

static void check(const struct vcase *c, const struct cel_limits *l)
{
	char err[ERRSZ];
	json_t *got;
	int r = run(c->expr, l, &got, err);

	if (c->want) {
		json_t *want = json_loads(c->want, JSON_DECODE_ANY, NULL);
		int good = r == 0 && want && json_equal(got, want);
		if (!ok(good, "%s => %s", name_of(c->expr), c->want)) {
			char *s = got ? json_dumps(got, JSON_ENCODE_ANY) : NULL;
			diag("r=%d err=%s got=%s", r, err, s ? s : "(none)");
			free(s);
		}
		json_decref(want);
	} else {
		int good = r == c->code && (c->err[0] == '=' ? strcmp(err, c->err + 1) == 0
							     : strstr(err, c->err) != NULL);
		if (!ok(good, "%s => error %s", name_of(c->expr), c->err))
			diag("r=%d (want %d) err=%s", r, c->code, err);
	}
	json_decref(got);
}

static const struct vcase grammar[] = {
	/* literals */
	{ "1", "1" },
	{ "-1", "-1" },
	{ "0x1F", "31" },
	{ "007", "7" },
	{ "9223372036854775807", "9223372036854775807" },
	{ "-9223372036854775808", "-9223372036854775808" },
	{ "1.5", "1.5" },
	{ ".5", "0.5" },
	{ "1e3", "1000.0" },
	{ "2.5E-1", "0.25" },
	{ "-0.5", "-0.5" },
	{ "'a'", "\"a\"" },
	{ "\"b\"", "\"b\"" },
	{ "''", "\"\"" },
	{ "'\\n\\t\\r\\\\\\'\\\"'", "\"\\n\\t\\r\\\\'\\\"\"" },
	{ "\"it's\"", "\"it's\"" },
	{ "'\\u00e9\\u20AC'", "\"\\u00e9\\u20ac\"" },
	{ "'h\xc3\xa9'", "\"h\\u00e9\"" },
	{ "true", "true" },
	{ "false", "false" },
	{ "null", "null" },
	{ "[]", "[]" },
	{ "[1, 'a', true, null, [2], {}]", "[1, \"a\", true, null, [2], {}]" },
	{ "[1, 2,]", "[1, 2]" },
	{ "{}", "{}" },
	{ "{'a': 1, \"b\": [true]}", "{\"a\": 1, \"b\": [true]}" },
	{ "{'a': 1,}", "{\"a\": 1}" },
	{ "{'a' + 'b': 1 + 1}", "{\"ab\": 2}" },
	{ "true // a comment", "true" },
	{ " \t\r\n1\n", "1" },
	/* precedence and associativity */
	{ "1 + 2 * 3", "7" },
	{ "(1 + 2) * 3", "9" },
	{ "10 - 4 - 3", "3" },
	{ "2 * 3 % 4", "2" },
	{ "24 / 4 / 2", "3" },
	{ "-2 * 3", "-6" },
	{ "--1", "1" },
	{ "!!true", "true" },
	{ "!true || true", "true" },
	{ "true || false && false", "true" },
	{ "(true || false) && false", "false" },
	{ "1 + 1 == 2 && 3 > 2", "true" },
	{ "1 < 2 == true", "true" },
	{ "1 in [1] == true", "true" },
	{ "false ? 1 : 2", "2" },
	{ "true ? 1 : false ? 2 : 3", "1" },
	{ "false ? 1 : false ? 2 : 3", "3" },
	{ "1 + 2 > 2 ? 'y' : 'n'", "\"y\"" },
	{ "true || false ? 1 : 2", "1" },
	{ "-tasks.build.output.count", "-3" },
	{ "!tasks.build.output.changed", "true" },
	{ "[1, 2][1] + 1", "3" },
	{ "{'a': [5]}.a[0]", "5" },
	{ "{'a': {'b': 'c'}}['a'].b", "\"c\"" },
	/* arithmetic */
	{ "7 / 2", "3" },
	{ "-7 / 2", "-3" },
	{ "-7 % 3", "-1" },
	{ "7.0 / 2.0", "3.5" },
	{ "0.1 + 0.2 > 0.3", "true" },
	{ "1.5 * 2.0 - 0.5", "2.5" },
	{ "-(1.5)", "-1.5" },
	{ "'a' + 'b'", "\"ab\"" },
	{ "[1] + [2, 3]", "[1, 2, 3]" },
	{ "[] + []", "[]" },
	{ "big - 1", "9223372036854775806" },
	{ "small + 1", "-9223372036854775807" },
	/* comparisons: int and double compare numerically, other mixed types are unequal */
	{ "1 == 1.0", "true" },
	{ "1 != 1.0", "false" },
	{ "1 < 1.5", "true" },
	{ "2 > 1.5", "true" },
	{ "2 >= 2.0", "true" },
	{ "1 <= 0.5", "false" },
	{ "9007199254740993 > 9007199254740992.0", "true" },
	{ "big < 9.3e18", "true" },
	{ "small > -9.3e18", "true" },
	{ "1 == '1'", "false" },
	{ "null == null", "true" },
	{ "null == 0", "false" },
	{ "null != false", "true" },
	{ "[1, 2] == [1, 2]", "true" },
	{ "[1, 2] != [2, 1]", "true" },
	{ "[1] == [1, 1]", "false" },
	{ "{'a': 1} == {'a': 1.0}", "true" },
	{ "{'a': 1} == {'b': 1}", "false" },
	{ "{'a': [1]} == {'a': ['1']}", "false" },
	{ "'a' < 'b'", "true" },
	{ "'abc' < 'ab'", "false" },
	{ "'ab' <= 'ab'", "true" },
	{ "'b' > 'a'", "true" },
	{ "false < true", "true" },
	{ "true >= true", "true" },
	{ "tasks.build.output == tasks.build.output", "true" },
	{ "task.labels == {'tier': 'web', 'env': 'prod'}", "true" },
	/* short-circuit and error absorption */
	{ "false && nope", "false" },
	{ "true || nope", "true" },
	{ "nope && false", "false" },
	{ "nope || true", "true" },
	{ "1 / 0 == 1 || true", "true" },
	{ "false && 1 / 0 == 1", "false" },
	{ "true && true && false && nope", "false" },
	{ "1 || true", "true" },
	{ "true ? 1 : nope", "1" },
	{ "false ? nope : 2", "2" },
	{ "true && nope", NULL, -EINVAL, "=1:9: unknown variable 'nope'" },
	{ "nope1 && nope2", NULL, -EINVAL, "=1:1: unknown variable 'nope1'" },
	{ "false || nope", NULL, -EINVAL, "unknown variable 'nope'" },
	{ "1 && true", NULL, -EINVAL, "=1:1: operand of && must be a bool, got int" },
	{ "false || 'x'", NULL, -EINVAL, "=1:10: operand of || must be a bool, got string" },
	{ "1 ? 2 : 3", NULL, -EINVAL, "=1:3: condition of ?: must be a bool, got int" },
	/* has() */
	{ "has(tasks.a.output.changed)", "true" },
	{ "has(tasks.test.output.changed)", "false" },
	{ "has(tasks.b.output.changed)", "false" },
	{ "has(tasks.nope.output.changed)", "false" },
	{ "has(task.labels.env)", "true" },
	{ "has(tasks['deploy-prod'].output.x)", "false" },
	{ "has(tasks.build.output.items[5].x)", "false" },
	{ "has(tasks.build.output.nested.k)", "true" },
	{ "has({'a': 1}.a)", "true" },
	{ "has(null.a)", "false" },
	{ "has(task.name.x)", NULL, -EINVAL, "=1:15: has() cannot test field 'x' of string" },
	{ "has(tasks.build.output.count.x)", NULL, -EINVAL, "has() cannot test field 'x' of int" },
	{ "has(nope.x)", NULL, -EINVAL, "=1:5: unknown variable 'nope'" },
	{ "has(task)", NULL, -EINVAL, "=1:1: has() argument must be a field selection like a.b" },
	{ "has(task.labels['env'])", NULL, -EINVAL, "field selection" },
	{ "has(task.name, 1)", NULL, -EINVAL, "=1:1: has() takes 1 argument, got 2" },
	/* in */
	{ "2 in [1, 2, 3]", "true" },
	{ "4 in [1, 2]", "false" },
	{ "2.0 in [1, 2]", "true" },
	{ "'1' in [1]", "false" },
	{ "[1] in [[1], [2]]", "true" },
	{ "null in [null]", "true" },
	{ "1 in []", "false" },
	{ "'a' in {'a': 1}", "true" },
	{ "'b' in {'a': 1}", "false" },
	{ "1 in {'a': 1}", "false" },
	{ "'env' in task.labels", "true" },
	{ "'x' in tasks.test.output", "false" },
	{ "1 in 'abc'", NULL, -EINVAL, "=1:3: no such overload: int in string" },
	/* strings */
	{ "'abc'.startsWith('ab')", "true" },
	{ "'abc'.startsWith('b')", "false" },
	{ "'abc'.endsWith('bc')", "true" },
	{ "'abc'.endsWith('abcd')", "false" },
	{ "'abc'.contains('b')", "true" },
	{ "'abc'.contains('')", "true" },
	{ "'abc'.contains('abcd')", "false" },
	{ "'abc'.contains('ac')", "false" },
	{ "size('h\xc3\xa9llo')", "5" },
	{ "unicode.size()", "5" },
	{ "'abc'.size()", "3" },
	{ "size('')", "0" },
	{ "size([1, 2])", "2" },
	{ "[1, 2, 3].size()", "3" },
	{ "size({'a': 1})", "1" },
	{ "task.labels.size()", "2" },
	{ "'ab'.startsWith(1)", NULL, -EINVAL, "=1:6: no such overload: string.startsWith(int)" },
	{ "1.contains('a')", NULL, -EINVAL, "no such overload: int.contains(string)" },
	{ "size(1)", NULL, -EINVAL, "=1:1: no such overload: size(int)" },
	{ "size(null)", NULL, -EINVAL, "no such overload: size(null)" },
	/* conversions */
	{ "int('42')", "42" },
	{ "int('-42')", "-42" },
	{ "int('+7')", "7" },
	{ "int(3.9)", "3" },
	{ "int(-3.9)", "-3" },
	{ "int('-9223372036854775808')", "-9223372036854775808" },
	{ "int(5)", "5" },
	{ "double(2)", "2.0" },
	{ "double('2.5')", "2.5" },
	{ "double('-1e3')", "-1000.0" },
	{ "double(1.5)", "1.5" },
	{ "string(42)", "\"42\"" },
	{ "string(-7)", "\"-7\"" },
	{ "string(1.5)", "\"1.5\"" },
	{ "string(0.1)", "\"0.1\"" },
	{ "string(1.0)", "\"1\"" },
	{ "string(true)", "\"true\"" },
	{ "string('x')", "\"x\"" },
	{ "string(tasks.test.exitCode) == '1'", "true" },
	{ "int(task.attempt) + 1", "3" },
	{ "int('4x')", NULL, -EINVAL, "=1:1: cannot convert '4x' to int" },
	{ "int('')", NULL, -EINVAL, "cannot convert '' to int" },
	{ "int(' 1')", NULL, -EINVAL, "cannot convert ' 1' to int" },
	{ "int('9223372036854775808')", NULL, -EINVAL, "cannot convert" },
	{ "int(1e19)", NULL, -EINVAL, "integer overflow converting" },
	{ "int(true)", NULL, -EINVAL, "no such overload: int(bool)" },
	{ "double('abc')", NULL, -EINVAL, "=1:1: cannot convert 'abc' to double" },
	{ "double('inf')", NULL, -EINVAL, "cannot convert 'inf' to double" },
	{ "double('1e999')", NULL, -EINVAL, "cannot convert '1e999' to double" },
	{ "double('0x10')", NULL, -EINVAL, "cannot convert" },
	{ "double(null)", NULL, -EINVAL, "no such overload: double(null)" },
	{ "string(null)", NULL, -EINVAL, "no such overload: string(null)" },
	{ "string([1])", NULL, -EINVAL, "no such overload: string(list)" },
	/* arithmetic errors */
	{ "9223372036854775807 + 1", NULL, -EINVAL, "=1:21: integer overflow" },
	{ "big * 2", NULL, -EINVAL, "integer overflow" },
	{ "small - 1", NULL, -EINVAL, "integer overflow" },
	{ "-small", NULL, -EINVAL, "=1:1: integer overflow" },
	{ "small / -1", NULL, -EINVAL, "integer overflow" },
	{ "small % -1", NULL, -EINVAL, "integer overflow" },
	{ "1 / 0", NULL, -EINVAL, "=1:3: division by zero" },
	{ "1 % 0", NULL, -EINVAL, "modulus by zero" },
	{ "1.0 / 0.0", NULL, -EINVAL, "division by zero" },
	{ "1e308 * 10.0", NULL, -EINVAL, "double overflow" },
	{ "1 + 1.0", NULL, -EINVAL, "=1:3: no such overload: int + double" },
	{ "1.5 % 1.0", NULL, -EINVAL, "no such overload: double % double" },
	{ "'a' - 'b'", NULL, -EINVAL, "no such overload: string - string" },
	{ "[1] + 'a'", NULL, -EINVAL, "no such overload: list + string" },
	{ "{'a': 1} + {'b': 2}", NULL, -EINVAL, "no such overload: map + map" },
	{ "-'a'", NULL, -EINVAL, "no such overload: -string" },
	{ "!1", NULL, -EINVAL, "no such overload: !int" },
	/* incomparable types */
	{ "1 < 'a'", NULL, -EINVAL, "=1:3: no such overload: int < string" },
	{ "[1] < [2]", NULL, -EINVAL, "no such overload: list < list" },
	{ "null <= null", NULL, -EINVAL, "no such overload: null <= null" },
	{ "{} > {}", NULL, -EINVAL, "no such overload: map > map" },
	/* member and index errors */
	{ "nope", NULL, -EINVAL, "=1:1: unknown variable 'nope'" },
	{ "tasks.nope.phase", NULL, -EINVAL, "=1:7: no such key 'nope'" },
	{ "task.name.x", NULL, -EINVAL, "=1:11: cannot select field 'x' from string" },
	{ "tasks.deploy-prod.phase", NULL, -EINVAL, "no such key 'deploy'" },
	{ "tasks['deploy-prod'].phase", "\"Skipped\"" },
	{ "tasks.build.output.items[0]", "\"a\"" },
	{ "tasks.build.output.items[2]", NULL, -EINVAL, "=1:25: index 2 out of range (size 2)" },
	{ "tasks.build.output.items[-1]", NULL, -EINVAL, "index -1 out of range (size 2)" },
	{ "tasks.build.output.items['a']", NULL, -EINVAL, "list index must be an int, got string" },
	{ "tasks.build.output.items[0.0]", NULL, -EINVAL, "list index must be an int, got double" },
	{ "task.labels[1]", NULL, -EINVAL, "map key must be a string, got int" },
	{ "task.labels['no\\npe']", NULL, -EINVAL, "no such key 'no?pe'" },
	{ "'abc'[0]", NULL, -EINVAL, "=1:6: cannot index string" },
	{ "tasks.b.output.x", NULL, -EINVAL, "cannot select field 'x' from null" },
	{ "{'a': 1, 'a': 2}", NULL, -EINVAL, "=1:10: duplicate map key 'a'" },
	{ "{1: 2}", NULL, -EINVAL, "=1:2: map key must be a string, got int" },
	{ "true &&\n  nope", NULL, -EINVAL, "=2:3: unknown variable 'nope'" },
	{ "'\xc3\xa9\xc3\xa9' + nope", NULL, -EINVAL, "=1:8: unknown variable 'nope'" },
	/* syntax */
	{ "", NULL, -EINVAL, "=1:1: empty expression" },
	{ "  // only a comment", NULL, -EINVAL, "empty expression" },
	{ "1 +", NULL, -EINVAL, "=1:4: unexpected end of expression" },
	{ "(1", NULL, -EINVAL, "=1:3: unexpected end of expression, expected ')'" },
	{ "1 2", NULL, -EINVAL, "=1:3: unexpected number" },
	{ "1 = 1", NULL, -EINVAL, "=1:3: unexpected '=' (use '==' to compare)" },
	{ "a & b", NULL, -EINVAL, "unexpected '&' (use '&&')" },
	{ "a | b", NULL, -EINVAL, "unexpected '|' (use '||')" },
	{ "'abc", NULL, -EINVAL, "=1:1: unterminated string" },
	{ "'a\nb'", NULL, -EINVAL, "unterminated string" },
	{ "'abc\\", NULL, -EINVAL, "unterminated string" },
	{ "'\\q'", NULL, -EINVAL, "=1:2: invalid escape sequence '\\q'" },
	{ "'\\u12'", NULL, -EINVAL, "invalid \\u escape: want 4 hex digits" },
	{ "'\\ud800'", NULL, -EINVAL, "U+D800 is not allowed" },
	{ "'\\u0000'", NULL, -EINVAL, "U+0000 is not allowed" },
	{ "1u", NULL, -EINVAL, "=1:1: invalid number literal" },
	{ "0x", NULL, -EINVAL, "invalid number literal" },
	{ "1e", NULL, -EINVAL, "invalid number literal" },
	{ "12abc", NULL, -EINVAL, "invalid number literal" },
	{ "99999999999999999999", NULL, -EINVAL, "integer literal out of range" },
	{ "9223372036854775808", NULL, -EINVAL, "=1:1: integer literal out of range" },
	{ "-9223372036854775809", NULL, -EINVAL, "integer literal out of range" },
	{ "1e999", NULL, -EINVAL, "double literal out of range" },
	{ "foo(1)", NULL, -EINVAL, "=1:1: unknown function 'foo'" },
	{ "'a'.bar()", NULL, -EINVAL, "=1:5: unknown function 'bar'" },
	{ "'a'.int()", NULL, -EINVAL, "unknown function 'int'" },
	{ "startsWith('a', 'b')", NULL, -EINVAL, "unknown function 'startsWith'" },
	{ "matches('a')", NULL, -EINVAL, "unknown function 'matches'" },
	{ "size(1, 2)", NULL, -EINVAL, "=1:1: size() takes 1 argument, got 2" },
	{ "'a'.size(1)", NULL, -EINVAL, "size() takes 0 arguments, got 1" },
	{ "'a'.startsWith()", NULL, -EINVAL, "startsWith() takes 1 argument, got 0" },
	{ "int()", NULL, -EINVAL, "int() takes 1 argument, got 0" },
	{ "task.1", NULL, -EINVAL, "=1:5: unexpected number" },
	{ "task.in", NULL, -EINVAL, "unexpected 'in', expected a field name" },
	{ "task.", NULL, -EINVAL, "expected a field name" },
	{ "[1, 2", NULL, -EINVAL, "expected ',' or ']'" },
	{ "{'a' 1}", NULL, -EINVAL, "expected ':'" },
	{ "{'a': 1", NULL, -EINVAL, "expected ',' or '}'" },
	{ "true ? 1", NULL, -EINVAL, "expected ':'" },
	{ "(1)(2)", NULL, -EINVAL, "=1:4: unexpected '('" },
	{ "a.b(", NULL, -EINVAL, "unknown function 'b'" },
	{ "size(1", NULL, -EINVAL, "expected ',' or ')'" },
	{ "#", NULL, -EINVAL, "=1:1: unexpected character '#'" },
	{ "1 \x01", NULL, -EINVAL, "unexpected character (byte 0x01)" },
	{ "'\xff'", NULL, -EINVAL, "=expression is not valid UTF-8" },
	{ "'\xed\xa0\x80'", NULL, -EINVAL, "not valid UTF-8" },
	{ "if", NULL, -EINVAL, "=1:1: 'if' is a reserved word" },
	{ "namespace + 1", NULL, -EINVAL, "reserved word" },
	{ "{'while': 1}.while", "1" },
	{ "task.namespace", "\"default\"" },
	{ ".a", NULL, -EINVAL, "unexpected '.'" },
	{ "a ? b ? c : d : e", NULL, -EINVAL, "expected ':'" },
	{ "1 +\n  )", NULL, -EINVAL, "=2:3: unexpected ')'" },
};

/* Conditions as users write them, through cel_eval_bool. */
static const struct {
	const char *expr;
	int want;
} conditions[] = {
	{ "tasks.build.phase == 'Succeeded' && tasks.build.output.ok", 1 },
	{ "has(tasks.a.output.changed) && tasks.a.output.changed", 1 },
	{ "has(tasks.test.output.changed) && tasks.test.output.changed", 0 },
	{ "has(tasks.b.output.changed) && tasks.b.output.changed", 0 },
	{ "tasks.test.exitCode in [0, 1]", 1 },
	{ "tasks.build.exitCode in [1, 2]", 0 },
	{ "task.labels.env == 'prod'", 1 },
	{ "task.labels.env == 'prod' && task.namespace != 'kube-system'", 1 },
	{ "tasks.build.output.count > 2 && tasks.build.output.ratio < 1.0", 1 },
	{ "tasks['deploy-prod'].phase != 'Failed'", 1 },
	{ "task.attempt < 3 || task.labels.tier == 'db'", 1 },
	{ "tasks.build.output.version.startsWith('1.')", 1 },
	{ "size(tasks.build.output.items) == 2 && 'a' in tasks.build.output.items", 1 },
	{ "tasks.test.phase == 'Failed' ? tasks.test.exitCode == 1 : false", 1 },
	{ "!(tasks.build.phase in ['Failed', 'Cancelled'])", 1 },
	{ "tasks.build.output.nested.k.endsWith('v') && task.name.contains('1')", 1 },
	{ "string(tasks.build.output.count) + '/' + task.name == '3/t1'", 1 },
};

static char *repeat(const char *head, const char *unit, size_t n, const char *tail)
{
	size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
	char *s = malloc(hl + ul * n + tl + 1), *p = s;
	if (!s)
		abort();
	memcpy(p, head, hl);
	p += hl;
	for (size_t i = 0; i < n; i++, p += ul)
		memcpy(p, unit, ul);
	memcpy(p, tail, tl + 1);
	return s;
}

static void test_eval_bool(void)
{
	char err[ERRSZ];
	for (size_t i = 0; i < sizeof(conditions) / sizeof(conditions[0]); i++) {
		struct cel_program *p;
		int v = -1, r = cel_compile(conditions[i].expr, NULL, &p, err, ERRSZ);
		if (r == 0) {
			r = cel_eval_bool(p, vars, NULL, &v, err, ERRSZ);
			cel_program_free(p);
		}
		if (!ok(r == 0 && v == conditions[i].want, "condition %s => %d", conditions[i].expr,
			conditions[i].want))
			diag("r=%d v=%d err=%s", r, v, err);
	}

	/* a non-bool result is an error for conditions */
	static const struct {
		const char *expr, *msg;
	} nonbool[] = {
		{ "1", "condition must evaluate to a bool, got int" },
		{ "'true'", "condition must evaluate to a bool, got string" },
		{ "null", "condition must evaluate to a bool, got null" },
		{ "tasks.build.output", "condition must evaluate to a bool, got map" },
		{ "[true]", "condition must evaluate to a bool, got list" },
		{ "1.0", "condition must evaluate to a bool, got double" },
	};
	for (size_t i = 0; i < sizeof(nonbool) / sizeof(nonbool[0]); i++) {
		struct cel_program *p;
		int v = -1, r = cel_compile(nonbool[i].expr, NULL, &p, err, ERRSZ);
		if (r == 0) {
			r = cel_eval_bool(p, vars, NULL, &v, err, ERRSZ);
			cel_program_free(p);
		}
		if (!ok(r == -EINVAL && strcmp(err, nonbool[i].msg) == 0 && v == 0,
			"non-bool %s refused", nonbool[i].expr))
			diag("r=%d err=%s", r, err);
	}

	/* no variables at all */
	{
		struct cel_program *p;
		int v = -1;
		cel_compile("task.name == 'x'", NULL, &p, err, ERRSZ);
		is_int(cel_eval_bool(p, NULL, NULL, &v, err, ERRSZ), -EINVAL,
		       "NULL vars: variables are unknown");
		is_str(err, "1:1: unknown variable 'task'", "NULL vars: reason");
		/* one program, evaluated again, gives the same answer (programs are immutable) */
		json_t *other = json_pack("{s:{s:s}}", "task", "name", "x");
		ok(cel_eval_bool(p, other, NULL, &v, err, ERRSZ) == 0 && v == 1,
		   "program reused with other vars");
		ok(cel_eval_bool(p, other, NULL, &v, err, ERRSZ) == 0 && v == 1,
		   "program reused again");
		json_decref(other);
		cel_program_free(p);
	}
}

static void test_limits(void)
{
	struct cel_limits l, d, dc;
	char err[ERRSZ], *s;
	json_t *got;
	int r;

	cel_limits_default(&d);
	ok(d.max_len == 4096 && d.max_depth == 32 && d.max_cost == 10000 && d.timeout_ms == 10 &&
		   d.max_string == 65536 && d.max_list == 1000 && d.max_map == 1000,
	   "defaults");

	/* length: 4096 bytes pass, 4097 do not, and the hard cap holds whatever the limits say */
	s = repeat("1", " ", 4095, "");
	is_int(run(s, NULL, &got, err), 0, "4096-byte expression accepted");
	json_decref(got);
	free(s);
	s = repeat("1", " ", 4096, "");
	r = run(s, NULL, &got, err);
	ok(r == -E2BIG && strcmp(err, "expression longer than 4096 bytes") == 0,
	   "4097-byte expression refused (%s)", err);
	l = d;
	l.max_len = 1 << 20;
	r = run(s, &l, &got, err);
	ok(r == -E2BIG && strstr(err, "longer than 4096"),
	   "max_len above the hard cap is clamped (%s)", err);
	free(s);
	l = d;
	l.max_len = 10;
	r = run("1 + 1 + 1 + 1", &l, &got, err);
	ok(r == -E2BIG && strcmp(err, "expression longer than 10 bytes") == 0, "max_len 10 (%s)",
	   err);

	/* depth: parser recursion and AST depth share one limit */
	s = repeat("", "(", 500, "1");
	{
		char *t = repeat(s, ")", 500, "");
		r = run(t, NULL, &got, err);
		ok(r == -E2BIG && strcmp(err, "1:33: expression nesting exceeds 32") == 0,
		   "500 nested parens refused (%s)", err);
		l = d;
		l.max_depth = 1000;
		r = run(t, &l, &got, err);
		ok(r == -E2BIG && strstr(err, "expression nesting exceeds 64"),
		   "max_depth clamped to 64 (%s)", err);
		free(t);
	}
	free(s);
	s = repeat("", "(", 31, "1");
	{
		char *t = repeat(s, ")", 31, "");
		r = run(t, NULL, &got, err);
		ok(r == 0 && json_integer_value(got) == 1, "31 nested parens accepted (%s)", err);
		json_decref(got);
		free(t);
	}
	free(s);
	s = repeat("", "[", 500, "");
	r = run(s, NULL, &got, err);
	ok(r == -E2BIG && strstr(err, "expression nesting exceeds 32"),
	   "500 open brackets refused (%s)", err);
	free(s);
	s = repeat("", "!", 500, "true");
	r = run(s, NULL, &got, err);
	ok(r == -E2BIG && strstr(err, "expression nesting exceeds 32"), "500 '!' refused (%s)",
	   err);
	free(s);
	s = repeat("task", ".x", 40, "");
	r = run(s, NULL, &got, err);
	ok(r == -E2BIG && strstr(err, "expression nesting exceeds 32"),
	   "40-step member chain refused (%s)", err);
	free(s);
	s = repeat("1", " + 1", 40, "");
	r = run(s, NULL, &got, err);
	ok(r == -E2BIG && strstr(err, "expression nesting exceeds 32"), "40-term sum refused (%s)",
	   err);
	free(s);
	s = repeat("true", " && true", 300, "");
	r = run(s, NULL, &got, err);
	ok(r == 0 && json_is_true(got), "300-operand && chain stays shallow (%s)", err);
	json_decref(got);
	free(s);
	s = repeat("false", " || false", 300, " || true");
	r = run(s, NULL, &got, err);
	ok(r == 0 && json_is_true(got), "300-operand || chain stays shallow (%s)", err);
	json_decref(got);
	free(s);
	l = d;
	l.max_depth = 4;
	r = run("[[1]]", &l, &got, err);
	ok(r == 0, "max_depth 4: [[1]] fits");
	json_decref(got);
	r = run("[[[[1]]]]", &l, &got, err);
	ok(r == -E2BIG && strcmp(err, "1:5: expression nesting exceeds 4") == 0,
	   "max_depth 4: [[[[1]]]] refused (%s)", err);

	/* cost: big strings from variables, doubled three times. The default limits but a long
	 * timeout: under ASan on a saturated machine 10 ms of wall clock can run out first. */
	dc = d;
	dc.timeout_ms = 60000;
	{
		json_t *saved = vars;
		char *big = repeat("", "x", 32768, "");
		vars = json_deep_copy(saved);
		json_object_set_new(vars, "s", json_string(big));
		free(big);
		r = run("size(s + s) + size(s + s) + size(s + s) > 0", &dc, &got, err);
		ok(r == -E2BIG && strcmp(err, "cost limit 10000 exceeded") == 0,
		   "repeated concatenation hits the cost limit (%s)", err);
		l = dc;
		l.max_cost = 100000;
		r = run("size(s + s) + size(s + s) + size(s + s) > 0", &l, &got, err);
		ok(r == 0 && json_is_true(got), "the same fits a higher max_cost (%s)", err);
		json_decref(got);
		r = run("size(s + s + 'x') > 0", &l, &got, err);
		ok(r == -E2BIG && strcmp(err, "1:12: string exceeds 65536 bytes") == 0,
		   "default max_string 64 KiB (%s)", err);
		/* limit errors are never absorbed by || */
		r = run("size(s + s + 'x') > 0 || true", &l, &got, err);
		ok(r == -E2BIG && strstr(err, "string exceeds"),
		   "a limit error is not absorbed by || (%s)", err);
		r = run("s.contains('y') || s.contains('y') || s.contains('y') || s.contains('y') || s.contains('y')",
			&dc, &got, err);
		ok(r == -E2BIG && strstr(err, "cost limit"),
		   "substring search costs by length (%s)", err);

		/* a 1000-element list expanded by concatenation */
		json_t *list = json_array();
		for (int i = 0; i < 1000; i++)
			json_array_append_new(list, json_integer(i));
		json_object_set_new(vars, "L", list);
		l = dc;
		l.max_list = 100000;
		r = run("size(L + L + L + L + L) > 0", &l, &got, err);
		ok(r == -E2BIG && strcmp(err, "cost limit 10000 exceeded") == 0,
		   "list expansion hits the cost limit (%s)", err);
		r = run("L + L", &dc, &got, err);
		ok(r == -E2BIG && strcmp(err, "1:3: list exceeds 1000 elements") == 0,
		   "default max_list 1000 (%s)", err);
		r = run("999 in L && !(1000 in L)", &dc, &got, err);
		ok(r == 0 && json_is_true(got),
		   "in over a 1000-element list fits the default cost (%s)", err);
		json_decref(got);
		s = repeat("L == L", " && L == L", 11, "");
		r = run(s, &dc, &got, err);
		free(s);
		ok(r == -E2BIG && strstr(err, "cost limit"), "list equality costs per element (%s)",
		   err);

		/* timeout: plenty of cost allowed, 1 ms of wall clock */
		json_t *huge = json_array();
		for (int i = 0; i < 200000; i++)
			json_array_append_new(huge, json_integer(i));
		json_object_set_new(vars, "H", huge);
		s = repeat("-1 in H", " || -1 in H", 50, "");
		l = d;
		l.max_cost = INT64_MAX;
		l.timeout_ms = 1;
		r = run(s, &l, &got, err);
		ok(r == -ETIMEDOUT && strcmp(err, "evaluation timed out after 1 ms") == 0,
		   "timeout (%s)", err);
		free(s);

		/* value nesting in equality is bounded too */
		json_t *deep = json_array(), *cur = deep;
		for (int i = 0; i < 100; i++) {
			json_t *n = json_array();
			json_array_append_new(cur, n);
			cur = n;
		}
		json_object_set_new(vars, "D", deep);
		r = run("D == D", NULL, &got, err);
		ok(r == -E2BIG && strstr(err, "values nested deeper than 64"),
		   "deep value equality refused (%s)", err);
		json_decref(vars);
		vars = saved;
	}
	l = d;
	l.max_cost = 100;
	s = repeat("[1", ", 1", 199, "]");
	r = run(s, &l, &got, err);
	ok(r == -E2BIG && strcmp(err, "cost limit 100 exceeded") == 0,
	   "max_cost 100: a 200-element literal (%s)", err);
	free(s);

	/* strings, lists and maps the expression builds */
	l = d;
	l.max_string = 8;
	r = run("'abcd' + 'efgh'", &l, &got, err);
	ok(r == 0 && json_string_length(got) == 8, "max_string 8: 8 bytes fit");
	json_decref(got);
	r = run("'abcd' + 'efghi'", &l, &got, err);
	ok(r == -E2BIG && strcmp(err, "1:8: string exceeds 8 bytes") == 0,
	   "max_string 8: 9 bytes refused (%s)", err);
	r = run("string(1234567890)", &l, &got, err);
	ok(r == -E2BIG && strstr(err, "string exceeds 8 bytes"),
	   "max_string applies to string() (%s)", err);
	l = d;
	l.max_list = 3;
	r = run("[1, 2, 3]", &l, &got, err);
	ok(r == 0 && json_array_size(got) == 3, "max_list 3: three elements fit");
	json_decref(got);
	r = run("[1, 2, 3, 4]", &l, &got, err);
	ok(r == -E2BIG && strcmp(err, "1:1: list exceeds 3 elements") == 0,
	   "max_list 3: literal refused (%s)", err);
	r = run("[1, 2] + [3, 4]", &l, &got, err);
	ok(r == -E2BIG && strstr(err, "list exceeds 3 elements"),
	   "max_list 3: concatenation refused (%s)", err);
	l = d;
	l.max_map = 2;
	r = run("{'a': 1, 'b': 2}", &l, &got, err);
	ok(r == 0 && json_object_size(got) == 2, "max_map 2: two entries fit");
	json_decref(got);
	r = run("{'a': 1, 'b': 2, 'c': 3}", &l, &got, err);
	ok(r == -E2BIG && strcmp(err, "1:1: map exceeds 2 entries") == 0, "max_map 2: refused (%s)",
	   err);

	/* zero fields and a NULL pointer mean defaults */
	{
		struct cel_limits z;
		memset(&z, 0, sizeof(z));
		s = repeat("", "(", 40, "1");
		char *t = repeat(s, ")", 40, "");
		r = run(t, &z, &got, err);
		ok(r == -E2BIG && strstr(err, "nesting exceeds 32"),
		   "zeroed limits are the defaults (%s)", err);
		free(t);
		free(s);
	}

	/* the error buffer is optional and always terminated when small */
	{
		struct cel_program *p;
		char tiny[8];
		r = cel_compile("nope(", NULL, &p, NULL, 0);
		is_int(r, -EINVAL, "no error buffer");
		r = cel_compile("foo(1)", NULL, &p, tiny, sizeof(tiny));
		ok(r == -EINVAL && strlen(tiny) == 7, "small error buffer truncated (%s)", tiny);
		r = cel_compile(NULL, NULL, &p, err, ERRSZ);
		ok(r == -EINVAL && p == NULL, "NULL expression");
	}
}

int main(void)
{
	vars = json_loads(vars_json, 0, NULL);
	if (!ok(vars != NULL, "test variables parse"))
		return done_testing();
	for (size_t i = 0; i < sizeof(grammar) / sizeof(grammar[0]); i++)
		check(&grammar[i], NULL);
	test_eval_bool();
	test_limits();
	json_decref(vars);
	return done_testing();
}
