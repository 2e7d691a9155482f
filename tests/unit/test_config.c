/* controller/config: the flag table gives defaults, bounds and --help. */
#include "config.h"
#include "tap.h"

#include <errno.h>

static int parse(struct ctl_config *c, const char *a1, const char *a2)
{
	static char args[3][64];
	char *argv[] = { args[0], args[1], args[2], NULL };
	int argc = a2 ? 3 : a1 ? 2 : 1;
	snprintf(args[0], sizeof(args[0]), "tasked-controller");
	snprintf(args[1], sizeof(args[1]), "%s", a1 ? a1 : "");
	snprintf(args[2], sizeof(args[2]), "%s", a2 ? a2 : "");
	return config_parse(argc, argv, c);
}

int main(void)
{
	struct ctl_config c;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	unsetenv("TASKED_API_KEY");
	is_int(parse(&c, NULL, NULL), 0, "no flags");
	is_str(c.listen, "127.0.0.1:8080", "listen default");
	is_str(c.broker_listen, "127.0.0.1:8081", "broker default");
	is_int(c.workers, 4, "workers default");
	is_int(c.heartbeat_s, 10, "heartbeat default");
	is_int(c.le_retry_s, 2, "lease retry default");
	is_int(c.log_max_task_kib, 1024, "log store per task default");
	is_int(c.event_buffer, 4096, "event buffer default");
	is_str(c.log_level, "info", "log level default");
	ok(!c.leader_elect && !c.kubeconfig && !c.api_key, "flags off, no kubeconfig, no key");
	is_int(parse(&c, "--workers", "16"), 0, "the maximum is accepted");
	is_int(c.workers, 16, "and set");
	is_int(parse(&c, "--workers", "17"), -EINVAL, "past the maximum refused");
	is_int(parse(&c, "--lost-grace-seconds", "0"), 0, "the minimum is accepted");
	is_int(parse(&c, "--event-buffer", "15"), -EINVAL, "below the minimum refused");
	is_int(parse(&c, "--leader-elect", "--check-config"), 0, "two flags");
	ok(c.leader_elect == 1 && c.check_config == 1, "both set");
	is_int(parse(&c, "--namespace", "ns1"), 0, "a string");
	is_str(c.namespace_, "ns1", "set");
	is_int(parse(&c, "extra", NULL), -EINVAL, "a stray argument refused");
	setenv("TASKED_API_KEY", "k", 1);
	is_int(parse(&c, NULL, NULL), 0, "key from the environment");
	is_str(c.api_key, "k", "read");
	f = open_memstream(&text, &len);
	config_usage(f);
	fclose(f);
	ok(strstr(text, "--workers N") && strstr(text, "(default 4, 1..16)"),
	   "--help shows default and bounds");
	ok(strstr(text, "--leader-elect-retry-seconds N") && strstr(text, "--check-config"),
	   "--help lists every flag");
	free(text);
	return done_testing();
}
