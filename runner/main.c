/* tasked-runner: flags, process hardening, signals, wiring. See docs/runner.md. */
#include "cgroup.h"
#include "conn.h"
#include "exec.h"
#include "isolate.h"
#include "health.h"
#include "landlock.h"
#include "log.h"
#include "registry.h"
#include "util.h"
#include "workroot.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define RUNNER_ID_MAX 63

struct runner_flags {
	const char *controller, *token_file, *ca_file, *work_dir, *labels, *id;
	const char *health_file, *check_health, *broker_proxy;
	long concurrency, grace_seconds, max_age;
	int ready;
	enum log_level level;
};

static void runner_usage(FILE *f)
{
	fputs("Usage: tasked-runner --token-file PATH [flags]\n"
	      "       tasked-runner --check-health PATH [--ready] [--max-age-seconds N]\n"
	      "\n"
	      "Runs Tasked tasks dispatched by the controller's broker.\n"
	      "\n"
	      "  --controller URL      broker URL, ws:// (loopback) or wss:// (default ws://127.0.0.1:8081)\n"
	      "  --token-file PATH     file holding the runner token (required; never read from the environment)\n"
	      "  --ca-file PATH        CA bundle for wss:// and https:// (default: system trust store)\n"
	      "  --broker-proxy URL    reach the controller through this HTTP proxy (http://HOST:PORT);\n"
	      "                        without it no proxy is used, whatever http_proxy and friends say\n"
	      "  --concurrency N       attempts run at once, 1-1024 (default 4)\n"
	      "  --labels K=V,...      labels advertised to the controller (default pool=default)\n"
	      "  --work-dir DIR        where the runner makes its directory for the tasks' work dirs (default /tmp)\n"
	      "  --id NAME             runner id (default: hostname plus a random suffix)\n"
	      "  --grace-seconds N     on SIGTERM, wait this long for running attempts (default 30)\n"
	      "  --log-level LEVEL     debug, info, warn or error (default info)\n"
	      "  --health-file PATH    rewrite PATH every 5 s with whether the runner is connected\n"
	      "  --check-health PATH   exit 0 if that file is fresh (liveness probe), else 1 with why;\n"
	      "                        with --ready it must also say connected (readiness probe);\n"
	      "                        --max-age-seconds N: fresh means newer than N s (default 30)\n"
	      "  --version             print the version and exit\n"
	      "  --help                print this help and exit\n",
	      f);
}

static __attribute__((noreturn, format(printf, 1, 2))) void runner_bad_flag(const char *fmt, ...)
{
	va_list ap;
	fputs("tasked-runner: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'tasked-runner --help'.\n", stderr);
	exit(2);
}

static int runner_label_ok(const char *s, size_t n, int key)
{
	if (n > 63 || (key && n == 0))
		return 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' ||
		      (key && ch == '/')))
			return 0;
	}
	return 1;
}

/* Parses "k=v,k2=v2" into a new object; NULL on error with a reason in err. */
static json_t *runner_parse_labels(const char *s, char *err, size_t errsz)
{
	json_t *o = json_object();
	const char *p = s;

	while (o && *p) {
		size_t n = strcspn(p, ","), kl;
		const char *eq = memchr(p, '=', n);
		char k[64], v[64];

		if (!eq) {
			snprintf(err, errsz, "label \"%.*s\" is not KEY=VALUE",
				 (int)(n > 64 ? 64 : n), p);
			goto fail;
		}
		kl = (size_t)(eq - p);
		if (!runner_label_ok(p, kl, 1) || !runner_label_ok(eq + 1, n - kl - 1, 0)) {
			snprintf(err, errsz,
				 "label \"%.*s\": keys and values are at most 63 of [A-Za-z0-9._-]",
				 (int)(n > 64 ? 64 : n), p);
			goto fail;
		}
		memcpy(k, p, kl);
		k[kl] = '\0';
		memcpy(v, eq + 1, n - kl - 1);
		v[n - kl - 1] = '\0';
		if (json_object_get(o, k)) {
			snprintf(err, errsz, "label %s given twice", k);
			goto fail;
		}
		if (json_object_size(o) >= PROTO_MAX_LABELS) {
			snprintf(err, errsz, "at most %d labels", PROTO_MAX_LABELS);
			goto fail;
		}
		json_object_set_new(o, k, json_string(v));
		p += n;
		if (*p == ',')
			p++;
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}

static int runner_id_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > RUNNER_ID_MAX)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '.' || *s == '_'))
			return 0;
	return 1;
}

/* hostname (sanitised) + "-" + 6 random hex chars */
static void runner_default_id(char *out, size_t outsz)
{
	char host[64] = "runner", rnd[7];
	size_t n;

	if (gethostname(host, sizeof(host)) < 0)
		snprintf(host, sizeof(host), "runner");
	host[sizeof(host) - 1] = '\0';
	for (char *p = host; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_'))
			*p = '-';
	n = strlen(host);
	if (n > RUNNER_ID_MAX - 7)
		host[RUNNER_ID_MAX - 7] = '\0';
	if (n == 0)
		snprintf(host, sizeof(host), "runner");
	if (util_random_hex(rnd, 3) < 0)
		snprintf(rnd, sizeof(rnd), "000000");
	snprintf(out, outsz, "%s-%s", host, rnd);
}

static void runner_parse(int argc, char **argv, struct runner_flags *f)
{
	enum {
		F_CONTROLLER = 256,
		F_TOKEN,
		F_CA,
		F_CONC,
		F_LABELS,
		F_WORK,
		F_ID,
		F_GRACE,
		F_LEVEL,
		F_VERSION,
		F_HELP,
		F_HEALTH,
		F_CHECK,
		F_READY,
		F_MAXAGE,
		F_PROXY
	};
	static const struct option opts[] = {
		{ "controller", required_argument, NULL, F_CONTROLLER },
		{ "token-file", required_argument, NULL, F_TOKEN },
		{ "ca-file", required_argument, NULL, F_CA },
		{ "concurrency", required_argument, NULL, F_CONC },
		{ "labels", required_argument, NULL, F_LABELS },
		{ "work-dir", required_argument, NULL, F_WORK },
		{ "id", required_argument, NULL, F_ID },
		{ "grace-seconds", required_argument, NULL, F_GRACE },
		{ "log-level", required_argument, NULL, F_LEVEL },
		{ "health-file", required_argument, NULL, F_HEALTH },
		{ "check-health", required_argument, NULL, F_CHECK },
		{ "ready", no_argument, NULL, F_READY },
		{ "max-age-seconds", required_argument, NULL, F_MAXAGE },
		{ "broker-proxy", required_argument, NULL, F_PROXY },
		{ "version", no_argument, NULL, F_VERSION },
		{ "help", no_argument, NULL, F_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int o;

	opterr = 0;
	while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (o) {
		case F_CONTROLLER:
			f->controller = optarg;
			break;
		case F_TOKEN:
			f->token_file = optarg;
			break;
		case F_CA:
			f->ca_file = optarg;
			break;
		case F_LABELS:
			f->labels = optarg;
			break;
		case F_WORK:
			f->work_dir = optarg;
			break;
		case F_ID:
			f->id = optarg;
			break;
		case F_HEALTH:
			f->health_file = optarg;
			break;
		case F_CHECK:
			f->check_health = optarg;
			break;
		case F_READY:
			f->ready = 1;
			break;
		case F_PROXY: {
			char hp[300];
			if (conn_parse_proxy(optarg, hp, sizeof(hp)) < 0)
				runner_bad_flag("--broker-proxy: want http://HOST:PORT, got \"%s\"",
						optarg);
			f->broker_proxy = optarg;
			break;
		}
		case F_MAXAGE:
			if (util_parse_long(optarg, 1, 86400, &f->max_age) < 0)
				runner_bad_flag(
					"--max-age-seconds: want an integer from 1 to 86400, got \"%s\"",
					optarg);
			break;
		case F_CONC:
			if (util_parse_long(optarg, 1, PROTO_MAX_CAPACITY, &f->concurrency) < 0)
				runner_bad_flag(
					"--concurrency: want an integer from 1 to %d, got \"%s\"",
					PROTO_MAX_CAPACITY, optarg);
			break;
		case F_GRACE:
			if (util_parse_long(optarg, 0, 86400, &f->grace_seconds) < 0)
				runner_bad_flag(
					"--grace-seconds: want an integer from 0 to 86400, got \"%s\"",
					optarg);
			break;
		case F_LEVEL:
			if (strcmp(optarg, "debug") == 0)
				f->level = LOG_LVL_DEBUG;
			else if (strcmp(optarg, "info") == 0)
				f->level = LOG_LVL_INFO;
			else if (strcmp(optarg, "warn") == 0)
				f->level = LOG_LVL_WARN;
			else if (strcmp(optarg, "error") == 0)
				f->level = LOG_LVL_ERROR;
			else
				runner_bad_flag(
					"--log-level: want debug, info, warn or error, got \"%s\"",
					optarg);
			break;
		case F_VERSION:
			printf("tasked-runner %s\n", TASKED_VERSION);
			exit(0);
		case F_HELP:
			runner_usage(stdout);
			exit(0);
		case ':':
			runner_bad_flag("%s needs a value", argv[optind - 1]);
		default:
			runner_bad_flag("unknown flag %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		runner_bad_flag("unexpected argument \"%s\"", argv[optind]);
	if (f->check_health) {
		/* The exec probe: judge the file and exit, nothing else. */
		char why[256];
		int r = health_check(f->check_health, f->ready, (int)f->max_age, why, sizeof(why));
		printf("%s: %s\n", r == 0 ? "ok" : "unhealthy", why);
		exit(r == 0 ? 0 : 1);
	}
	if (f->ready || f->max_age != HEALTH_MAX_AGE_S)
		runner_bad_flag("--ready and --max-age-seconds go with --check-health");
	if (!f->token_file)
		runner_bad_flag("--token-file is required");
}

/* Signals are blocked in every thread and taken here with sigwait: no async handler at all. */
static void *runner_signal_thread(void *p)
{
	struct conn *c = p;
	sigset_t set;
	int sig, count = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		count++;
		log_info(count == 1 ? "signal received: draining"
				    : "second signal: killing attempts now",
			 "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		conn_stop(c, count >= 2 ? 2 : 1);
	}
	return NULL;
}

/* At exit: the tasks' cgroup directories and the spare work dirs. */
static void runner_cleanup(void)
{
	cg_cleanup();
	exec_cleanup();
}

/* The runner's own directory in --work-dir (work dirs of runners that are gone are removed). */
static int runner_run_dir(const char *work_dir, const char **out)
{
	static char run_dir[PATH_MAX];
	int removed = 0;
	char n[16];
	int r = wr_open(work_dir, run_dir, sizeof(run_dir), &removed);
	if (r < 0) {
		log_error("cannot make the runner's directory in --work-dir", "path", work_dir,
			  "error", strerror(-r));
		return r;
	}
	if (removed > 0) {
		snprintf(n, sizeof(n), "%d", removed);
		log_info("removed work dirs of runners that are gone", "count", n, "workDir",
			 work_dir);
	}
	*out = run_dir;
	return 0;
}

/* Landlock for the tasks, called after the runner's directory exists so the rules cover it.
 * Tasks share a uid: Landlock keeps them out of each other's (and the runner's) /proc and, when
 * they could read it, out of the token file. */
static int runner_landlock(const char *token_file)
{
	uid_t tu = geteuid() == 0 ? (uid_t)EXEC_TASK_UID : geteuid();
	gid_t tg = geteuid() == 0 ? (gid_t)EXEC_TASK_GID : getegid();
	char abi[16];
	int r = ll_init(token_file, tu, tg);
	if (r < 0) {
		log_error("Landlock setup failed", "error", strerror(-r));
		return r;
	}
	snprintf(abi, sizeof(abi), "%d", r);
	if (r == 0)
		log_warn(
			"the kernel has no Landlock: tasks of this runner can read each other's "
			"/proc/PID/environ unless an LSM profile (the AppArmor one) denies it, and "
			"can read the token file if their uid can");
	else if (ll_hide_error() < 0)
		log_warn(
			"tasks run in Landlock domains, but the token file cannot be hidden from them",
			"abi", abi, "path", token_file, "error", strerror(-ll_hide_error()));
	else
		log_info("tasks run in Landlock domains", "abi", abi, "tokenHidden",
			 ll_hides_file() ? "true" : "false (the tasks' uid cannot read it)",
			 "signalScoped", r >= 6 ? "true" : "false");
	return 0;
}

int main(int argc, char **argv)
{
	struct runner_flags f = {
		.controller = "ws://127.0.0.1:8081",
		.work_dir = "/tmp",
		.labels = "pool=default",
		.concurrency = 4,
		.grace_seconds = 30,
		.max_age = HEALTH_MAX_AGE_S,
		.level = LOG_LVL_INFO,
	};
	struct conn_config cfg;
	struct conn_url url;
	struct conn *c = NULL;
	struct reg *reg = NULL;
	struct stat st;
	sigset_t set;
	pthread_t sigth;
	json_t *labels;
	char id[RUNNER_ID_MAX + 1], err[160], conc[16];
	int r, curl_now;

	/* Tasks (even as another uid) must not ptrace or read /proc/<runner>/{mem,environ}. */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

	runner_parse(argc, argv, &f);
	log_init("runner", f.level);
	if (conn_parse_url(f.controller, &url) < 0)
		runner_bad_flag(
			"--controller: want ws://HOST[:PORT] or wss://HOST[:PORT], got \"%s\"",
			f.controller);
	labels = runner_parse_labels(f.labels, err, sizeof(err));
	if (!labels)
		runner_bad_flag("--labels: %s", err);
	if (f.id && !runner_id_ok(f.id))
		runner_bad_flag("--id: at most %d of [A-Za-z0-9._-], got \"%s\"", RUNNER_ID_MAX,
				f.id);
	if (f.id)
		snprintf(id, sizeof(id), "%s", f.id);
	else
		runner_default_id(id, sizeof(id));
	if (stat(f.work_dir, &st) < 0 || !S_ISDIR(st.st_mode))
		runner_bad_flag("--work-dir: \"%s\" is not a directory", f.work_dir);
	if (access(f.token_file, R_OK) < 0)
		runner_bad_flag("--token-file: cannot read \"%s\": %s", f.token_file,
				strerror(errno));
	if (f.ca_file && access(f.ca_file, R_OK) < 0)
		runner_bad_flag("--ca-file: cannot read \"%s\": %s", f.ca_file, strerror(errno));
	if (geteuid() == 0 && !(st.st_mode & S_IXOTH))
		log_warn(
			"--work-dir is not searchable by others: tasks run as 65532 cannot enter it",
			"path", f.work_dir);

	/* Block the stop signals before any thread exists (libcurl's resolver, workers, lws), so
	 * only the sigwait thread sees them; children unblock everything before execve. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	r = exec_init();
	if (r < 0) {
		log_error("executor setup failed", "error", strerror(-r));
		return 1;
	}
	/* The health file is rewritten by rename: the idle-time cleanup of /tmp must keep it. */
	iso_protect(f.health_file);
	/* libcurl's set-up initialises OpenSSL, which only wss:// (or a broker proxy) needs now;
	 * on ws:// the auth is plain HTTP (plainhttp.h) and HTTP tasks set libcurl up lazily. */
	curl_now = url.tls || f.broker_proxy;
	if (curl_now && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_error("libcurl setup failed");
		return 1;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.url = f.controller;
	cfg.token_file = f.token_file;
	cfg.ca_file = f.ca_file;
	cfg.runner_id = id;
	cfg.labels = labels;
	cfg.capacity = (int)f.concurrency;
	cfg.grace_seconds = (int)f.grace_seconds;
	r = runner_run_dir(f.work_dir, &cfg.work_dir);
	if (r < 0)
		return 1;
	if (runner_landlock(f.token_file) < 0) {
		wr_close();
		return 1;
	}
	cfg.drop_uid = geteuid() == 0;
	cfg.health_file = f.health_file;
	cfg.broker_proxy = f.broker_proxy;

	r = reg_new((int)f.concurrency, 4 * 1024 * 1024, &reg);
	if (r == 0)
		r = conn_new(&cfg, reg, &c);
	if (r < 0) {
		log_error("runner setup failed", "error", strerror(-r));
		return 1;
	}
	if (pthread_create(&sigth, NULL, runner_signal_thread, c) != 0) {
		log_error("could not start the signal thread");
		return 1;
	}
	pthread_detach(sigth);
	snprintf(conc, sizeof(conc), "%ld", f.concurrency);
	log_info("runner starting", "runnerId", id, "controller", f.controller, "version",
		 TASKED_VERSION, "concurrency", conc, "workDir", cfg.work_dir, "taskUser",
		 cfg.drop_uid ? "65532" : "runner's own");
	if (conn_run(c) > 0) {
		/* Workers still hold the registry and the lws context: leave them to the exit. */
		runner_cleanup();
		_exit(0);
	}
	runner_cleanup();
	conn_free(c);
	reg_free(reg);
	wr_close();
	json_decref(labels);
	if (curl_now)
		curl_global_cleanup();
	return 0;
}
