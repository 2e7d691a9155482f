/* expand_vars: Kubernetes $(VAR) semantics, no shell. */
#include "expand.h"
#include "tap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *lookup(const char *name, size_t len, void *userdata)
{
	static const char *const vars[][2] = {
		{ "NAME", "world" }, { "EMPTY", "" }, { "A", "$(B)" },
		{ "B", "no" },       { "X_1", "x1" }, { "SEMI", "a; rm -rf /" },
	};
	int *calls = userdata;
	if (calls)
		(*calls)++;
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		if (strlen(vars[i][0]) == len && memcmp(vars[i][0], name, len) == 0)
			return vars[i][1];
	return NULL;
}

static void check(const char *in, const char *want, const char *name)
{
	char *out = NULL;
	int r = expand_vars(in, lookup, NULL, 1024, &out);
	if (r < 0) {
		ok(0, "%s (error %d)", name, r);
		return;
	}
	is_str(out, want, name);
	free(out);
}

int main(void)
{
	char *out = NULL;
	int calls = 0, r;

	check("", "", "empty string");
	check("plain text", "plain text", "no references");
	check("hello $(NAME)", "hello world", "$(NAME) expands");
	check("$(NAME)$(NAME)", "worldworld", "adjacent references");
	check("<$(EMPTY)>", "<>", "empty value");
	check("$(X_1)", "x1", "underscore and digit in name");
	check("$$(NAME)", "$(NAME)", "$$ escapes: $$(NAME) is literal $(NAME)");
	check("$$$(NAME)", "$world", "$$ then a reference");
	check("$$$$", "$$", "$$$$ is $$");
	check("cost: 5$", "cost: 5$", "trailing $ stays");
	check("$NAME", "$NAME", "$NAME without parentheses stays literal");
	check("${NAME}", "${NAME}", "${NAME} stays literal");
	check("$(UNKNOWN)", "$(UNKNOWN)", "unknown name stays literal");
	check("$(NAME", "$(NAME", "unterminated reference stays literal");
	check("$(NAME) $(", "world $(", "unterminated at the end");
	check("$(A)", "$(B)", "values are not expanded again");
	check("$(SEMI)", "a; rm -rf /", "values are inserted verbatim");
	check("`id` ; $(ls) && *", "`id` ; $(ls) && *", "shell syntax is just text");
	check("$()", "$()", "empty name stays literal");

	r = expand_vars("$(NAME)", NULL, NULL, 64, &out);
	ok(r == 0 && strcmp(out, "$(NAME)") == 0, "NULL lookup: every reference stays literal");
	free(out);

	out = NULL;
	r = expand_vars("$(NAME)$(NAME)", lookup, NULL, 8, &out);
	is_int(r, -E2BIG, "result over max: -E2BIG");
	ok(out == NULL, "nothing returned on error");

	r = expand_vars("hello", lookup, NULL, 5, &out);
	ok(r == 0 && strcmp(out, "hello") == 0, "result of exactly max bytes fits");
	free(out);

	r = expand_vars("$(NAME) $(NAME) $$(NAME)", lookup, &calls, 64, &out);
	is_int(calls, 2, "lookup called once per reference, not for escapes");
	free(out);
	return done_testing();
}
