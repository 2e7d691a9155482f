/* Attempts: preparing one from a dispatch, the table of executors, and the shell executor up to
 * fork() and after it (the poll loop, the result). The code between fork() and execve() is in
 * child.c; everything it needs is prepared here, before the fork. Output capture is capture.c,
 * work dirs workdir.c. The order of the child's setup and the reasons for each step are in
 * docs/runner.md. */
#include "exec.h"
#include "capture.h"
#include "child.h"
#include "landlock.h"
#include "expand.h"
#include "cgroup.h"
#include "http.h"
#include "isolate.h"
#include "log.h"
#include "mask.h"
#include "quantity.h"
#include "sandbox.h"
#include "spawner.h"
#include "util.h"
#include "workdir.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXEC_ARG_MAX (128 * 1024 - 1) /* the kernel's MAX_ARG_STRLEN, less the NUL */
#define EXEC_MAX_ENV (PROTO_MAX_ENV + 8)
#define EXEC_FSIZE_MIN (INT64_C(1) << 30) /* RLIMIT_FSIZE: 1 GiB or maxOutputBytes if larger */
#define EXEC_NOFILE 1024
#define EXEC_NPROC 512
#define EXEC_LOG_FLUSH_MS 50 /* pending output older than this is sent */
#define EXEC_DRAIN_MS 1000   /* after exit, wait this long for pipe EOF */
#define EXEC_REAP_MS 2000    /* and this long for the process group to be reaped */
#define EXEC_MAX_LIVE 2048
#define EXEC_CPU_CHECK_MS 200    /* how often a task's cpuacct cgroup is read */
#define EXEC_INIT_GRACE_MS 10000 /* after a kill request, SIGKILL an init still there */

/* ---- process-wide state ---------------------------------------------------------------- */

static pthread_mutex_t exec_lock = PTHREAD_MUTEX_INITIALIZER; /* held across fork() */
static pid_t exec_live[EXEC_MAX_LIVE]; /* main children not yet reaped by their thread */
static size_t exec_nlive;
static char exec_runner_path[4096] = EXEC_TASK_PATH;

static const char *exec_strerror(int err);

int exec_init(void)
{
	const char *p = getenv("PATH");
	int fd, r;

	/* fds 0-2 must be open, so that no pipe the executor creates lands on them. */
	do {
		fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return -errno;
	} while (fd <= STDERR_FILENO && fcntl(fd, F_SETFD, 0) == 0);
	close(fd);
	if (p && *p && strlen(p) < sizeof(exec_runner_path))
		memcpy(exec_runner_path, p, strlen(p) + 1);
	/* Grandchildren orphaned inside a task come back to us, so kill(-pgid) + waitpid(-pgid)
	 * reaps the whole tree and no zombie outlives its attempt. */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		return -errno;
	/* Private /tmp, /dev/shm and IPC per task when namespaces can be had (isolate.h). */
	iso_init(geteuid() == 0 ? EXEC_TASK_UID : geteuid());
	/* A memory cgroup per task where the runner has a writable one (cgroup.h). */
	cg_init();
	/* The tasks' seccomp filter, compiled once here; children only load it. */
	r = sbx_init();
	if (r < 0)
		return r;
	/* The inits are forked from a small process started now, before any thread or large
	 * allocation (spawner.h); without it, from the runner. */
	r = spw_start();
	if (r < 0)
		log_warn("no spawner process: the runner forks each task's init itself", "error",
			 exec_strerror(-r));
	return 0;
}

static int exec_live_add_locked(pid_t pid)
{
	if (exec_nlive == EXEC_MAX_LIVE)
		return -EAGAIN;
	exec_live[exec_nlive++] = pid;
	return 0;
}

static void exec_live_del(pid_t pid)
{
	pthread_mutex_lock(&exec_lock);
	for (size_t i = 0; i < exec_nlive; i++)
		if (exec_live[i] == pid) {
			exec_live[i] = exec_live[--exec_nlive];
			break;
		}
	pthread_mutex_unlock(&exec_lock);
}

void exec_reap_strays(void)
{
	for (int n = 0; n < 64; n++) {
		siginfo_t si = { 0 };
		int live = 0;

		pthread_mutex_lock(&exec_lock);
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == 0) {
			pthread_mutex_unlock(&exec_lock);
			return;
		}
		for (size_t i = 0; i < exec_nlive; i++)
			live |= exec_live[i] == si.si_pid;
		if (!live)
			(void)waitpid(si.si_pid, NULL, WNOHANG);
		pthread_mutex_unlock(&exec_lock);
		if (live) /* its thread reaps it; waitid would keep returning it */
			return;
	}
}

/* ---- small helpers --------------------------------------------------------------------- */

static const char *exec_strerror(int err)
{
	const char *s = strerrordesc_np(err);
	return s ? s : "Unknown error";
}

static void exec_free_strv(char **v, int wipe)
{
	if (!v)
		return;
	for (char **p = v; *p; p++) {
		if (wipe)
			explicit_bzero(*p, strlen(*p));
		free(*p);
	}
	free(v);
}

/* ---- the task ---------------------------------------------------------------------------- */

struct exec_env {
	char *name, *value;
	int secret;
};

struct exec_task {
	char *task_uid, *namespace_, *name;
	int64_t attempt, deadline_ms, max_output, tail_max;
	char **command; /* raw, unexpanded; NULL-terminated */
	size_t ncommand;
	struct exec_env *env; /* from the dispatch */
	size_t nenv;
	char *working_dir;    /* may be NULL */
	char *input;          /* serialized JSON */
	char cmd_label[160];  /* raw command[0] for messages: never an expanded value */
	char spec_error[256]; /* non-empty: InvalidSpec */
	char *work_root;
	int drop_uid;
	int killfd; /* eventfd: exec_task_kill() wakes the poll loop */
	atomic_int kill_why;
	enum proto_executor kind;
	struct httpx_spec *http; /* http and remote executors */
	int64_t memory_bytes, cpu_seconds;
	const char **secrets; /* env values and spec values marked secret (borrowed) */
	size_t nsecrets;
};

const char *exec_task_uid(const struct exec_task *t) { return t->task_uid; }
int64_t exec_task_attempt(const struct exec_task *t) { return t->attempt; }

static int exec_bad_working_dir(const char *w)
{
	if (w[0] == '/')
		return 1;
	for (const char *p = w; *p;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return 1;
		p += n;
		while (*p == '/')
			p++;
	}
	return 0;
}

int exec_task_new(const struct proto_msg *m, const struct exec_opts *opts, struct exec_task **ret)
{
	struct exec_task *t = calloc(1, sizeof(*t));
	json_t *v;
	size_t i;

	if (!t)
		return -ENOMEM;
	t->killfd = -1;
	atomic_init(&t->kill_why, EXEC_KILL_NONE);
	t->attempt = m->attempt;
	t->deadline_ms = m->deadline_ms;
	t->max_output = m->max_output;
	/* The queue's cap wins over a larger one in limits. */
	{
		json_t *po = json_object_get(json_object_get(m->policy, "shell"), "maxOutputBytes");
		if (json_integer_value(po) > 0 && json_integer_value(po) < t->max_output)
			t->max_output = json_integer_value(po);
	}
	t->tail_max = m->log_tail_max;
	t->kind = m->executor;
	t->memory_bytes = m->memory_bytes;
	t->cpu_seconds = m->cpu_seconds;
	t->drop_uid = opts->drop_uid;
	t->task_uid = strdup(m->task_uid ? m->task_uid : "");
	t->namespace_ = strdup(m->namespace_ ? m->namespace_ : "");
	t->name = strdup(m->name ? m->name : "");
	t->work_root = strdup(opts->work_root ? opts->work_root : "/tmp");
	t->ncommand = json_array_size(m->command);
	t->command = calloc(t->ncommand + 1, sizeof(char *));
	t->nenv = json_array_size(m->env);
	t->env = calloc(t->nenv + 1, sizeof(*t->env));
	if (!t->task_uid || !t->namespace_ || !t->name || !t->work_root || !t->command || !t->env)
		goto oom;
	json_array_foreach(m->command, i, v) {
		if (!(t->command[i] = strdup(json_string_value(v))))
			goto oom;
	}
	json_array_foreach(m->env, i, v) {
		t->env[i].name = strdup(json_string_value(json_object_get(v, "name")));
		t->env[i].value = strdup(json_string_value(json_object_get(v, "value")));
		t->env[i].secret = json_is_true(json_object_get(v, "secret"));
		if (!t->env[i].name || !t->env[i].value)
			goto oom;
	}
	if (t->kind != PROTO_EXEC_SHELL && httpx_spec_new(m, &t->http) < 0)
		goto oom;
	{
		const char *const *hs = NULL;
		size_t nh = t->http ? httpx_spec_secrets(t->http, &hs) : 0, n = 0;
		t->secrets = calloc(t->nenv + nh + 1, sizeof(char *));
		if (!t->secrets)
			goto oom;
		for (i = 0; i < t->nenv; i++)
			if (t->env[i].secret)
				t->secrets[n++] = t->env[i].value;
		for (i = 0; i < nh; i++)
			t->secrets[n++] = hs[i];
		t->nsecrets = n;
	}
	if (m->working_dir && m->working_dir[0] && !(t->working_dir = strdup(m->working_dir)))
		goto oom;
	t->input = m->input ? json_dumps(m->input, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("null");
	if (!t->input)
		goto oom;
	t->killfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->killfd < 0)
		goto oom;

	if (t->ncommand > 0)
		snprintf(t->cmd_label, sizeof(t->cmd_label), "%s", t->command[0]);
	if (t->kind != PROTO_EXEC_SHELL)
		; /* the http executor checks its own spec */
	else if (t->ncommand == 0)
		snprintf(t->spec_error, sizeof(t->spec_error), "shell.command is empty");
	else if (t->command[0][0] == '\0')
		snprintf(t->spec_error, sizeof(t->spec_error), "shell.command[0] is empty");
	else if (t->working_dir && exec_bad_working_dir(t->working_dir))
		snprintf(t->spec_error, sizeof(t->spec_error),
			 "shell.workingDir must be a relative path without '..'");
	*ret = t;
	return 0;
oom:
	exec_task_free(t);
	return -ENOMEM;
}

void exec_task_free(struct exec_task *t)
{
	if (!t)
		return;
	free(t->task_uid);
	free(t->namespace_);
	free(t->name);
	free(t->work_root);
	exec_free_strv(t->command, 0);
	for (size_t i = 0; t->env && i < t->nenv; i++) {
		free(t->env[i].name);
		if (t->env[i].value)
			explicit_bzero(t->env[i].value, strlen(t->env[i].value));
		free(t->env[i].value);
	}
	free(t->env);
	free(t->working_dir);
	free(t->input);
	httpx_spec_free(t->http);
	free(t->secrets);
	if (t->killfd >= 0)
		close(t->killfd);
	free(t);
}

void exec_task_kill(struct exec_task *t, enum exec_kill why)
{
	int expected = EXEC_KILL_NONE;
	uint64_t one = 1;

	if (why == EXEC_KILL_NONE)
		return;
	atomic_compare_exchange_strong(&t->kill_why, &expected, (int)why);
	(void)!write(t->killfd, &one, sizeof(one));
}

void exec_result_free(struct exec_result *r)
{
	json_decref(r->output);
	r->output = NULL;
	free(r->log_tail);
	r->log_tail = NULL;
}

json_t *exec_result_json(const char *task_uid, int64_t attempt, const struct exec_result *r)
{
	json_t *o = proto_new_task(PROTO_RESULT, task_uid, attempt);
	struct buf msg;

	if (!o)
		return NULL;
	/* The message may quote a (truncated) command name: make sure it is valid UTF-8. */
	buf_init(&msg, 3 * sizeof(r->message) + 16);
	if (capture_utf8_sanitize(r->message, strlen(r->message), &msg) == 0 &&
	    buf_append(&msg, "", 0) == 0)
		json_object_set_new(o, "message", json_stringn(msg.data, msg.len));
	buf_free(&msg);
	json_object_set_new(o, "phase", json_string(r->phase));
	json_object_set_new(o, "reason", json_string(r->reason));
	if (r->exit_code >= 0)
		json_object_set_new(o, "exitCode", json_integer(r->exit_code));
	if (r->http_status >= 100 && r->http_status <= 599)
		json_object_set_new(o, "httpStatus", json_integer(r->http_status));
	if (r->retryable >= 0)
		json_object_set_new(o, "retryable", json_boolean(r->retryable));
	if (r->output)
		json_object_set(o, "output", r->output);
	json_object_set_new(o, "logTail", json_string(r->log_tail ? r->log_tail : ""));
	json_object_set_new(o, "truncated", json_boolean(r->truncated));
	if (r->start_ms > 0)
		json_object_set_new(o, "startTime", json_integer(r->start_ms));
	json_object_set_new(o, "completionTime", json_integer(r->end_ms));
	/* json_string() returns NULL on invalid UTF-8; every string here is checked, but make a
	 * missing field visible rather than sending a message the controller rejects. */
	if (!json_object_get(o, "phase") || !json_object_get(o, "reason") ||
	    !json_object_get(o, "message") || !json_object_get(o, "logTail")) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static void exec_set(struct exec_result *r, const char *phase, const char *reason, int code,
		     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void exec_set(struct exec_result *r, const char *phase, const char *reason, int code,
		     const char *fmt, ...)
{
	va_list ap;
	r->phase = phase;
	r->reason = reason;
	r->exit_code = code;
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof(r->message), fmt, ap);
	va_end(ap);
}

/* ---- environment and argv ---------------------------------------------------------------- */

struct exec_envset {
	const char *name[EXEC_MAX_ENV], *value[EXEC_MAX_ENV];
	size_t n;
};

static void exec_env_put(struct exec_envset *e, const char *name, const char *value)
{
	for (size_t i = 0; i < e->n; i++)
		if (strcmp(e->name[i], name) == 0) {
			e->value[i] = value;
			return;
		}
	if (e->n < EXEC_MAX_ENV) {
		e->name[e->n] = name;
		e->value[e->n++] = value;
	}
}

static const char *exec_env_lookup(const char *name, size_t len, void *userdata)
{
	const struct exec_envset *e = userdata;
	for (size_t i = 0; i < e->n; i++)
		if (strlen(e->name[i]) == len && memcmp(e->name[i], name, len) == 0)
			return e->value[i];
	return NULL;
}

/* $(VAR) in argv: like exec_env_lookup, and remembers the first secret it hands out. */
struct exec_argv_ctx {
	struct exec_envset *env;
	const struct exec_task *t;
	const char *secret; /* the first secret variable referenced, or NULL */
};

static const char *exec_argv_lookup(const char *name, size_t len, void *userdata)
{
	struct exec_argv_ctx *a = userdata;
	for (size_t i = 0; i < a->t->nenv && !a->secret; i++)
		if (a->t->env[i].secret && strlen(a->t->env[i].name) == len &&
		    memcmp(a->t->env[i].name, name, len) == 0)
			a->secret = a->t->env[i].name;
	return exec_env_lookup(name, len, a->env);
}

static char **exec_env_build(const struct exec_envset *e)
{
	char **envp = calloc(e->n + 1, sizeof(char *));
	if (!envp)
		return NULL;
	for (size_t i = 0; i < e->n; i++) {
		size_t nl = strlen(e->name[i]), vl = strlen(e->value[i]);
		envp[i] = malloc(nl + vl + 2);
		if (!envp[i]) {
			exec_free_strv(envp, 1);
			return NULL;
		}
		memcpy(envp[i], e->name[i], nl);
		envp[i][nl] = '=';
		memcpy(envp[i] + nl + 1, e->value[i], vl + 1);
	}
	return envp;
}

/* Resolves a command name without '/' on the runner's PATH, like execvp but before fork and
 * without its fallback to /bin/sh. */
static int exec_resolve(const char *cmd, char *out, size_t outsz)
{
	const char *p = exec_runner_path;
	int saw_eacces = 0;

	if (strchr(cmd, '/')) {
		if (strlen(cmd) >= outsz)
			return -ENAMETOOLONG;
		memcpy(out, cmd, strlen(cmd) + 1);
		return 0;
	}
	while (*p) {
		size_t len = strcspn(p, ":");
		struct stat st;
		int n = snprintf(out, outsz, "%.*s%s%s", (int)len, p, len ? "/" : "./", cmd);
		p += len;
		if (*p == ':')
			p++;
		if (n < 0 || (size_t)n >= outsz || len == 0)
			continue;
		if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
			if (st.st_mode & 0111)
				return 0;
			saw_eacces = 1;
		}
	}
	return saw_eacces ? -EACCES : -ENOENT;
}

static void exec_rlimit(struct child *c, int res, uint64_t soft, uint64_t hard)
{
	struct rlimit cur;
	rlim_t s = (rlim_t)soft, h = (rlim_t)hard;
	if (getrlimit((__rlimit_resource_t)res, &cur) < 0 || c->nrl == UTIL_ARRAY_SIZE(c->rl))
		return;
	if (cur.rlim_max != RLIM_INFINITY && cur.rlim_max < h)
		h = cur.rlim_max;
	if (s > h)
		s = h;
	c->rl[c->nrl].res = res;
	c->rl[c->nrl].lim.rlim_cur = s;
	c->rl[c->nrl].lim.rlim_max = h;
	c->nrl++;
}

/* The step names of child.h, for messages. */
static const char *const exec_step_names[] = {
	"prctl(PR_SET_PDEATHSIG)",
	"setsid",
	"setrlimit",
	"dup2",
	"close fds",
	"signals",
	"drop privileges",
	"prctl(PR_SET_NO_NEW_PRIVS)",
	"chdir",
	"exec",
	"task init",
	"setpgid",
	"seccomp",
	"landlock_restrict_self",
	"private /tmp, /dev/shm and IPC namespaces",
	"join the task's memory cgroup",
};

/* ---- running ----------------------------------------------------------------------------- */

static void exec_close(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

static int exec_read_full(int fd, void *p, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, (char *)p + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return (int)got;
}

static void exec_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Reaps what is left of a process group that came back to us (the init died early). */
static void exec_reap_group(pid_t pgid)
{
	int64_t until = util_mono_ms() + EXEC_REAP_MS;
	for (;;) {
		pid_t r = waitpid(-pgid, NULL, WNOHANG);
		if (r > 0)
			continue;
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 || util_mono_ms() >= until)
			return;
		exec_sleep_ms(2);
	}
}

struct exec_run {
	struct exec_task *t;
	struct wd w;
	struct cg_task cg;
	struct capture *cap;
	char **argv, **envp;
	char path[PATH_MAX];
	int out_r, err_r, status_r, pidfd;
	pid_t pid;         /* the init */
	pid_t task_pid;    /* the task's main process (and its pgid) */
	int status;        /* wait status of the task's main process */
	int64_t kill_sent; /* monotonic ms of the first kill request; 0 = none */
	enum { KILLED_NONE, KILLED_CANCEL, KILLED_SHUTDOWN, KILLED_TIMEOUT, KILLED_CPU } killed;
	int64_t cpu_check; /* monotonic ms of the next look at the task's cpuacct cgroup; 0 = none */
};

/* Asks the init to kill the task tree (it answers with EXIT). */
static void exec_kill_group(struct exec_run *x)
{
	if (!x->kill_sent)
		x->kill_sent = util_mono_ms();
	(void)kill(x->pid, SIGTERM);
}

/* Forks the init. Returns 0 (x->pid set), or a negative errno with the result set. */
static int exec_spawn(struct exec_run *x, struct exec_result *res)
{
	struct exec_task *t = x->t;
	struct child c = { 0 };
	struct rlimit nofile;
	int outp[2] = { -1, -1 }, errp[2] = { -1, -1 }, stp[2] = { -1, -1 }, null_r = -1, r = 0;

	c.ll_fd = -1;
	c.filter = sbx_filter();
	if (!c.filter) {
		exec_set(res, "Failed", "Internal", -1,
			 "spawn: the seccomp filter is not available");
		return -ENOSYS;
	}
	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 || pipe2(stp, O_CLOEXEC) < 0 ||
	    (null_r = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
		r = -errno;
		exec_set(res, "Failed", "Internal", -1, "spawn: %s", exec_strerror(-r));
		goto out;
	}
	c.ll_fd = ll_ruleset(x->w.cwd, x->w.iso.tmp);
	if (c.ll_fd < 0 && c.ll_fd != -EOPNOTSUPP) {
		/* Landlock is in use: never run a task without its domain. */
		r = c.ll_fd;
		c.ll_fd = -1;
		exec_set(res, "Failed", "Internal", -1, "spawn: landlock ruleset: %s",
			 exec_strerror(-r));
		goto out;
	}
	if (c.ll_fd < 0)
		c.ll_fd = -1;
	c.path = x->path;
	c.argv = x->argv;
	c.envp = x->envp;
	c.cwd = x->w.cwd;
	c.iso = &x->w.iso;
	c.cg = &x->cg;
	c.null_r = null_r;
	c.out_w = outp[1];
	c.err_w = errp[1];
	c.status_w = stp[1];
	c.parent = getpid();
	c.drop_uid = t->drop_uid;
	c.max_fd = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_max != RLIM_INFINITY &&
				   nofile.rlim_max < (1U << 20)
			   ? (unsigned)nofile.rlim_max
			   : (1U << 20);
	sigemptyset(&c.empty);
	sigfillset(&c.all);
	sigemptyset(&c.initsigs);
	sigaddset(&c.initsigs, SIGTERM);
	sigaddset(&c.initsigs, SIGCHLD);
	exec_rlimit(&c, RLIMIT_CORE, 0, 0);
	exec_rlimit(&c, RLIMIT_NOFILE, EXEC_NOFILE, EXEC_NOFILE);
	{
		uint64_t fsz = (uint64_t)(t->max_output > EXEC_FSIZE_MIN ? t->max_output
									 : EXEC_FSIZE_MIN);
		exec_rlimit(&c, RLIMIT_FSIZE, fsz, fsz);
	}
	if (t->drop_uid)
		exec_rlimit(&c, RLIMIT_NPROC, EXEC_NPROC, EXEC_NPROC);
	/* Memory: the task's cgroup when it has one (the whole tree, and the OOM killer says so);
	 * else RLIMIT_DATA per process (heap and private writable mappings), not RLIMIT_AS, which
	 * also counts address space reserved but never used and so stops Go, Java and V8 from
	 * starting far below their real use. */
	if (t->memory_bytes > 0 && !x->cg.mem_dir[0])
		exec_rlimit(&c, RLIMIT_DATA, (uint64_t)t->memory_bytes, (uint64_t)t->memory_bytes);
	if (t->cpu_seconds > 0)
		exec_rlimit(&c, RLIMIT_CPU, (uint64_t)t->cpu_seconds, (uint64_t)t->cpu_seconds + 1);

	pthread_mutex_lock(&exec_lock);
	if (exec_nlive == EXEC_MAX_LIVE) {
		pthread_mutex_unlock(&exec_lock);
		r = -EAGAIN;
		exec_set(res, "Failed", "Internal", -1, "spawn: too many children");
		goto out;
	}
	x->pid = spw_spawn(&c);
	if (x->pid == -ENOTCONN) {
		x->pid = fork();
		if (x->pid == 0)
			child_init_run(&c);
		if (x->pid < 0)
			x->pid = -errno;
	}
	if (x->pid < 0) {
		r = x->pid;
		pthread_mutex_unlock(&exec_lock);
		exec_set(res, "Failed", "Internal", -1, "fork: %s", exec_strerror(-r));
		x->pid = 0;
		goto out;
	}
	(void)exec_live_add_locked(x->pid);
	pthread_mutex_unlock(&exec_lock);

	x->out_r = outp[0];
	x->err_r = errp[0];
	x->status_r = stp[0];
	outp[0] = errp[0] = stp[0] = -1;
	(void)fcntl(x->out_r, F_SETFL, O_NONBLOCK);
	(void)fcntl(x->err_r, F_SETFL, O_NONBLOCK);
out:
	exec_close(&outp[0]);
	exec_close(&outp[1]);
	exec_close(&errp[0]);
	exec_close(&errp[1]);
	exec_close(&stp[0]);
	exec_close(&stp[1]);
	exec_close(&null_r);
	exec_close(&c.ll_fd);
	return r;
}

static void exec_pump(struct exec_run *x, int *fd, int s)
{
	char chunk[16384];
	/* Bounded per wakeup so one stream cannot starve the other or the deadline check. */
	for (int i = 0; i < 8 && *fd >= 0; i++) {
		ssize_t n = read(*fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			exec_close(fd);
			return;
		}
		capture_add(x->cap, s, chunk, (size_t)n, util_mono_ms());
	}
}

/* Marks the main child as exited: kills what is left of its group while the zombie still holds
 * the pgid (so the number cannot have been reused), then reaps it. */
/* The init exited: reap it and take the task's wait status from its EXIT record. */
static void exec_on_exit(struct exec_run *x)
{
	struct child_msg im = { 0 };
	int st = 0;

	while (waitpid(x->pid, &st, 0) < 0 && errno == EINTR)
		;
	exec_live_del(x->pid);
	if (exec_read_full(x->status_r, &im, sizeof(im)) == (int)sizeof(im) &&
	    im.kind == INIT_EXIT) {
		x->status = im.val;
		return;
	}
	/* The init died without sweeping (killed by the OOM killer, or by a task running as the
	 * runner's own uid). The task's main process died with it (PDEATHSIG); what is left of its
	 * group came back to us as subreaper. */
	log_warn("task init died before reporting; killing the task's process group", "taskUid",
		 x->t->task_uid);
	(void)kill(-x->task_pid, SIGKILL);
	x->status = WIFSIGNALED(st) ? st : (128 + SIGKILL) << 8;
	exec_reap_group(x->task_pid);
}

static int exec_child_exited(struct exec_run *x)
{
	siginfo_t si = { 0 };
	return waitid(P_PID, (id_t)x->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid != 0;
}

static void exec_loop(struct exec_run *x)
{
	struct exec_task *t = x->t;
	int exited = 0;
	int64_t drain_until = 0;

	for (;;) {
		struct pollfd p[4];
		int np = 0, timeout = -1, ip_out = -1, ip_err = -1, ip_pid = -1, ip_kill;
		int64_t now = util_mono_ms(), wall = util_now_ms();

		if (exited && ((x->out_r < 0 && x->err_r < 0) || now >= drain_until))
			break;
		/* timers: deadline, CPU seconds, log flush, drain */
		if (!exited && !x->killed && t->deadline_ms > 0) {
			if (wall >= t->deadline_ms) {
				x->killed = KILLED_TIMEOUT;
				exec_kill_group(x);
			} else {
				timeout = (int)(t->deadline_ms - wall > 60000
							? 60000
							: t->deadline_ms - wall);
			}
		}
		/* With a cpuacct cgroup the CPU seconds count every process of the task together
		 * (RLIMIT_CPU, per process, stays as the backstop). */
		if (!exited && !x->killed && x->cpu_check) {
			if (now >= x->cpu_check) {
				int64_t ns = cg_task_cpu_ns(&x->cg);
				if (ns >= t->cpu_seconds * INT64_C(1000000000)) {
					x->killed = KILLED_CPU;
					exec_kill_group(x);
				}
				x->cpu_check = now + EXEC_CPU_CHECK_MS;
			}
			if (!x->killed && (timeout < 0 || x->cpu_check - now < timeout))
				timeout = (int)(x->cpu_check - now);
		}
		{
			int64_t due = capture_flush_due(x->cap, now, EXEC_LOG_FLUSH_MS);
			if (due >= 0 && (timeout < 0 || due < timeout))
				timeout = (int)due;
		}
		if (exited && (timeout < 0 || drain_until - now < timeout))
			timeout = (int)(drain_until - now);
		if (!exited && x->pidfd < 0 && (timeout < 0 || timeout > 20))
			timeout = 20; /* no pidfd: poll for the exit */
		if (!exited && x->kill_sent) {
			/* the init sweeps in well under a second; this is the backstop */
			int64_t left = x->kill_sent + EXEC_INIT_GRACE_MS - now;
			if (left <= 0) {
				(void)kill(x->pid, SIGKILL);
				left = 1000;
			}
			if (timeout < 0 || left < timeout)
				timeout = (int)left;
		}

		if (x->out_r >= 0) {
			ip_out = np;
			p[np++] = (struct pollfd){ .fd = x->out_r, .events = POLLIN };
		}
		if (x->err_r >= 0) {
			ip_err = np;
			p[np++] = (struct pollfd){ .fd = x->err_r, .events = POLLIN };
		}
		if (!exited && x->pidfd >= 0) {
			ip_pid = np;
			p[np++] = (struct pollfd){ .fd = x->pidfd, .events = POLLIN };
		}
		ip_kill = np;
		p[np++] = (struct pollfd){ .fd = t->killfd, .events = POLLIN };

		if (poll(p, (nfds_t)np, timeout) < 0) {
			if (errno == EINTR)
				continue;
			log_error("poll failed", "taskUid", t->task_uid, "error",
				  exec_strerror(errno));
			exec_sleep_ms(10);
		}
		if (p[ip_kill].revents & POLLIN) {
			uint64_t v;
			(void)!read(t->killfd, &v, sizeof(v));
			if (!exited && !x->killed) {
				x->killed = atomic_load(&t->kill_why) == EXEC_KILL_SHUTDOWN
						    ? KILLED_SHUTDOWN
						    : KILLED_CANCEL;
				exec_kill_group(x);
			}
		}
		if (ip_out >= 0 && p[ip_out].revents)
			exec_pump(x, &x->out_r, 0);
		if (ip_err >= 0 && p[ip_err].revents)
			exec_pump(x, &x->err_r, 1);
		if (!exited && ((ip_pid >= 0 && p[ip_pid].revents) ||
				(x->pidfd < 0 && exec_child_exited(x)))) {
			exited = 1;
			exec_on_exit(x);
			drain_until = util_mono_ms() + EXEC_DRAIN_MS;
		}
	}
	capture_flush(x->cap, 0, 1, util_mono_ms());
	capture_flush(x->cap, 1, 1, util_mono_ms());
	exec_close(&x->out_r);
	exec_close(&x->err_r);
}

static void exec_finish(struct exec_run *x, struct exec_result *res)
{
	int st = x->status, code;
	int64_t oom;
	char outmsg[256];
	size_t ml;

	if (WIFEXITED(st))
		code = WEXITSTATUS(st);
	else if (WIFSIGNALED(st))
		code = 128 + WTERMSIG(st);
	else
		code = 255;

	switch (x->killed) {
	case KILLED_CANCEL:
		exec_set(res, "Cancelled", "Cancelled", code, "cancelled: process group killed");
		break;
	case KILLED_SHUTDOWN:
		exec_set(res, "Failed", "RunnerShutdown", code,
			 "runner shutting down: process group killed after the grace period");
		break;
	case KILLED_TIMEOUT:
		exec_set(res, "Failed", "TimedOut", code,
			 "deadline exceeded: process group killed");
		break;
	case KILLED_CPU:
		exec_set(
			res, "Failed", "CPULimitExceeded", code,
			"CPU time limit reached: %lld CPU seconds (resources.cpu × the attempt's timeout) used by "
			"the task's processes together; process group killed",
			(long long)x->t->cpu_seconds);
		break;
	case KILLED_NONE:
		/* The OOM killer acted in the task's cgroup and the task did not succeed. */
		if (!(WIFEXITED(st) && code == 0) && (oom = cg_task_oom_kills(&x->cg, NULL)) > 0) {
			char lim[32];
			qty_format(x->cg.limit, 0, lim, sizeof(lim));
			exec_set(
				res, "Failed", "OOMKilled", code,
				"memory limit %s (resources.memory) reached: the kernel's OOM killer stopped %lld "
				"process%s of the task%s",
				lim, (long long)oom, oom == 1 ? "" : "es",
				WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL
					? ""
					: " (its main process then exited)");
		} else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGXCPU && x->t->cpu_seconds > 0)
			exec_set(
				res, "Failed", "CPULimitExceeded", code,
				"CPU time limit reached: %lld CPU seconds (resources.cpu × the attempt's timeout) "
				"used by one process; killed by SIGXCPU",
				(long long)x->t->cpu_seconds);
		else if (WIFEXITED(st) && code == 0)
			exec_set(res, "Succeeded", "Succeeded", 0, "exited with code 0");
		else if (WIFSIGNALED(st))
			exec_set(res, "Failed", "ExitCode", code, "killed by signal %d (SIG%s)",
				 WTERMSIG(st),
				 sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st)) : "?");
		else
			exec_set(res, "Failed", "ExitCode", code, "exited with code %d", code);
		break;
	}
	if (wd_read_output(&x->w, x->t->drop_uid, &res->output, outmsg, sizeof(outmsg)) &&
	    strcmp(res->phase, "Succeeded") == 0) {
		exec_set(res, "Failed", "OutputTooDeep", code, "exited with code 0, but %s",
			 outmsg);
		return;
	}
	ml = strlen(res->message);
	if (outmsg[0] && ml < sizeof(res->message))
		snprintf(res->message + ml, sizeof(res->message) - ml, "; %s", outmsg);
}

/* Neither output nor message may carry a secret value into the task's status: an output that
 * contains one is dropped (with a note), a message is masked. */
static void exec_withhold_secrets(const struct exec_task *t, struct exec_result *res)
{
	struct buf m;
	size_t ml;

	if (t->nsecrets == 0)
		return;
	if (res->output) {
		char *s = json_dumps(res->output, JSON_COMPACT | JSON_ENCODE_ANY);
		int hit = !s;
		for (size_t i = 0; s && !hit && i < t->nsecrets; i++)
			hit = strlen(t->secrets[i]) >= CAPTURE_MASK_MIN && strstr(s, t->secrets[i]);
		/* The escaped form too: a secret with quotes or backslashes is spelled differently. */
		for (size_t i = 0; s && !hit && i < t->nsecrets; i++) {
			json_t *j = json_string(t->secrets[i]);
			char *e = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
			if (e && strlen(e) > 2) {
				e[strlen(e) - 1] = '\0';
				hit = strlen(e + 1) >= CAPTURE_MASK_MIN && strstr(s, e + 1);
			}
			free(e);
			json_decref(j);
		}
		free(s);
		if (hit) {
			json_decref(res->output);
			res->output = NULL;
			ml = strlen(res->message);
			snprintf(res->message + ml, sizeof(res->message) - ml,
				 "; output withheld: it contains a secret value");
		}
	}
	buf_init(&m, 3 * sizeof(res->message));
	if (mask_text(res->message, strlen(res->message), t->secrets, t->nsecrets, &m) < 0)
		snprintf(res->message, sizeof(res->message), "[withheld: could not mask secrets]");
	else
		snprintf(res->message, sizeof(res->message), "%s", m.data ? m.data : "");
	buf_free(&m);
}

/* ---- http and remote tasks ------------------------------------------------------------- */

struct exec_http_ctx {
	struct exec_task *t;
	const struct exec_hooks *hooks;
	struct capture *cap;
	struct exec_envset env;
	struct exec_result *res;
};

static int exec_http_kill_why(void *ud)
{
	struct exec_http_ctx *c = ud;
	return atomic_load(&c->t->kill_why);
}

static void exec_http_started(void *ud)
{
	struct exec_http_ctx *c = ud;
	c->res->start_ms = util_now_ms();
	if (c->hooks && c->hooks->started)
		c->hooks->started(c->hooks->userdata, c->res->start_ms);
}

static void exec_http_out(void *ud, int stream, const char *data, size_t len)
{
	struct exec_http_ctx *c = ud;
	int64_t now = util_mono_ms();
	capture_add(c->cap, stream ? 1 : 0, data, len, now);
	/* no poll loop here: flush what is due at each piece */
	(void)capture_flush_due(c->cap, now, EXEC_LOG_FLUSH_MS);
}

static void exec_run_http(struct exec_task *t, const struct exec_hooks *hooks, struct capture *cap,
			  struct exec_result *res)
{
	struct exec_http_ctx c = { .t = t, .hooks = hooks, .cap = cap, .res = res };
	struct httpx_io io = {
		.killfd = t->killfd,
		.kill_why = exec_http_kill_why,
		.started = exec_http_started,
		.out = exec_http_out,
		.lookup = exec_env_lookup,
		.lookup_ud = &c.env,
		.secrets = (const char *const *)t->secrets,
		.nsecrets = t->nsecrets,
		.ud = &c,
		.deadline_ms = t->deadline_ms,
	};

	/* $(VAR) in the URL, headers and body: the task's own env entries only. */
	for (size_t i = 0; i < t->nenv; i++)
		exec_env_put(&c.env, t->env[i].name, t->env[i].value);
	httpx_run(t->http, &io, res);
	capture_flush(cap, 0, 1, util_mono_ms());
	capture_flush(cap, 1, 1, util_mono_ms());
}

/* ---- shell tasks ----------------------------------------------------------------------- */

/* The task's environment (the dispatch's entries and ours, nothing of the runner's), argv with
 * $(VAR) expanded, and the resolved program. Returns 0, or -1 with the result set. */
static int exec_shell_prepare(struct exec_run *x, struct exec_envset *env, struct exec_result *res)
{
	struct exec_task *t = x->t;
	char attempt[24];
	int r;

	snprintf(attempt, sizeof(attempt), "%" PRId64, t->attempt);
	exec_env_put(env, "PATH", EXEC_TASK_PATH);
	exec_env_put(env, "HOME", x->w.path);
	exec_env_put(env, "TMPDIR", x->w.iso.ns ? "/tmp" : x->w.iso.tmp);
	for (size_t i = 0; i < t->nenv; i++)
		exec_env_put(env, t->env[i].name, t->env[i].value);
	exec_env_put(env, "TASKED_INPUT", x->w.input);
	exec_env_put(env, "TASKED_OUTPUT", x->w.output);
	exec_env_put(env, "TASKED_TASK_NAME", t->name);
	exec_env_put(env, "TASKED_TASK_NAMESPACE", t->namespace_);
	exec_env_put(env, "TASKED_TASK_UID", t->task_uid);
	exec_env_put(env, "TASKED_ATTEMPT", attempt);
	x->envp = exec_env_build(env);
	x->argv = calloc(t->ncommand + 1, sizeof(char *));
	if (!x->envp || !x->argv) {
		exec_set(res, "Failed", "Internal", -1, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < t->ncommand; i++) {
		struct exec_argv_ctx ac = { env, t, NULL };
		r = expand_vars(t->command[i], exec_argv_lookup, &ac, EXEC_ARG_MAX, &x->argv[i]);
		if (r < 0) {
			exec_set(res, "Failed", r == -E2BIG ? "InvalidSpec" : "Internal", -1,
				 "shell.command[%zu]: %s", i,
				 r == -E2BIG ? "expands past 131071 bytes" : exec_strerror(-r));
			return -1;
		}
		/* Arguments are public: /proc/PID/cmdline is readable by every process on the
		 * node, and audit and process monitors record them. A secret stays in the env. */
		if (ac.secret) {
			exec_set(
				res, "Failed", "InvalidSpec", -1,
				"shell.command[%zu] uses the secret $(%s): arguments are visible to every "
				"process on the node (/proc/PID/cmdline); read %s from the environment "
				"instead (e.g. sh -c '... \"$%s\"' or in the program)",
				i, ac.secret, ac.secret, ac.secret);
			return -1;
		}
	}
	r = exec_resolve(x->argv[0], x->path, sizeof(x->path));
	if (r < 0) {
		exec_set(res, "Failed", "ExecFailed", 127, "exec \"%s\": %s", t->cmd_label,
			 exec_strerror(-r));
		return -1;
	}
	return 0;
}

/* The init's first record: STARTED (the task exec'd) or FAILED (step and errno; the task exits
 * 127). Returns 0 once started, or -1 with the init reaped and the result set. */
static int exec_await_start(struct exec_run *x, struct exec_result *res)
{
	struct child_msg im = { 0 };
	int ok;

	if (exec_read_full(x->status_r, &im, sizeof(im)) == (int)sizeof(im) &&
	    im.kind == INIT_STARTED) {
		x->task_pid = im.pid;
		return 0;
	}
	ok = im.kind == INIT_FAILED;
	while (waitpid(x->pid, &x->status, 0) < 0 && errno == EINTR)
		;
	exec_live_del(x->pid);
	if (ok && im.step == STEP_EXEC)
		exec_set(res, "Failed", "ExecFailed", 127, "exec \"%s\": %s", x->t->cmd_label,
			 exec_strerror(im.val));
	else if (ok)
		exec_set(res, "Failed", "ExecFailed", 127, "task setup failed at %s: %s",
			 (size_t)im.step < UTIL_ARRAY_SIZE(exec_step_names)
				 ? exec_step_names[im.step]
				 : "?",
			 exec_strerror(im.val));
	else
		exec_set(res, "Failed", "Internal", -1,
			 "the task's init exited before the task started");
	res->pid = ok ? im.pid : 0;
	return -1;
}

static void exec_run_shell(struct exec_task *t, const struct exec_hooks *hooks, struct capture *cap,
			   struct exec_result *res)
{
	struct exec_run x;
	struct exec_envset env = { .n = 0 };
	struct wd_spec ws = { .root = t->work_root,
			      .working_dir = t->working_dir,
			      .input = t->input,
			      .drop_uid = t->drop_uid,
			      .memory_bytes = t->memory_bytes };
	char err[256];
	int r, iso_begun = 0;

	memset(&x, 0, sizeof(x));
	x.t = t;
	x.out_r = x.err_r = x.status_r = x.pidfd = -1;
	x.w.rootfd = x.w.dirfd = -1;
	x.cg.mem_fd = x.cg.cpu_fd = -1;
	x.cap = cap;
	if (wd_make(&x.w, &ws, err, sizeof(err)) < 0) {
		exec_set(res, "Failed", "Internal", -1, "%s", err);
		goto done;
	}
	if (exec_shell_prepare(&x, &env, res) < 0)
		goto done;
	if (((t->memory_bytes > 0 && cg_available()) ||
	     (t->cpu_seconds > 0 && cg_cpu_available())) &&
	    (r = cg_task_create(&x.cg, x.w.name, t->memory_bytes, t->cpu_seconds > 0)) < 0)
		log_warn("no cgroup for the task; rlimits instead", "taskUid", t->task_uid, "error",
			 exec_strerror(-r));
	if (x.cg.cpu_dir[0])
		x.cpu_check = util_mono_ms() + EXEC_CPU_CHECK_MS;
	/* Without namespaces, what the task leaves in /tmp, /dev/shm and IPC is removed once no
	 * task runs (isolate.h). */
	iso_begin();
	iso_begun = 1;
	if (exec_spawn(&x, res) < 0 || exec_await_start(&x, res) < 0)
		goto done;
	res->start_ms = util_now_ms();
	res->pid = x.task_pid;
	if (hooks && hooks->started)
		hooks->started(hooks->userdata, res->start_ms);
	x.pidfd = (int)syscall(SYS_pidfd_open, x.pid, 0);
	exec_loop(&x);
	exec_finish(&x, res);
done:
	if (iso_begun)
		iso_end();
	exec_close(&x.status_r);
	exec_close(&x.pidfd);
	exec_close(&x.out_r);
	exec_close(&x.err_r);
	cg_task_remove(&x.cg);
	wd_remove(&x.w, t->task_uid);
	exec_free_strv(x.argv, 1);
	exec_free_strv(x.envp, 1);
}

void exec_task_after(const struct exec_task *t)
{
	if (t->kind == PROTO_EXEC_SHELL)
		wd_spare_add(t->work_root);
}

void exec_cleanup(void) { wd_spare_clear(); }

/* ---- the executor table ------------------------------------------------------------------ */

/* Indexed by the dispatch's executor (proto.h). */
static const struct exec_ops exec_table[] = {
	[PROTO_EXEC_SHELL] = { "shell", exec_run_shell },
	[PROTO_EXEC_HTTP] = { "http", exec_run_http },
	[PROTO_EXEC_REMOTE] = { "remote", exec_run_http },
};

/* Checks common to every executor; 0 when the attempt may run, else -1 with the result set. */
static int exec_may_start(const struct exec_task *t, struct exec_result *res)
{
	if (t->spec_error[0]) {
		exec_set(res, "Failed", "InvalidSpec", -1, "%s", t->spec_error);
		return -1;
	}
	switch (atomic_load(&t->kill_why)) {
	case EXEC_KILL_CANCEL:
		exec_set(res, "Cancelled", "Cancelled", -1, "cancelled before start");
		return -1;
	case EXEC_KILL_SHUTDOWN:
		exec_set(res, "Failed", "RunnerShutdown", -1, "runner shutting down before start");
		return -1;
	default:
		break;
	}
	if (t->deadline_ms > 0 && util_now_ms() >= t->deadline_ms) {
		exec_set(res, "Failed", "TimedOut", -1, "deadline passed before start");
		return -1;
	}
	return 0;
}

int exec_task_run(struct exec_task *t, const struct exec_hooks *hooks, struct exec_result *res)
{
	const struct exec_ops *ops = (size_t)t->kind < UTIL_ARRAY_SIZE(exec_table)
					     ? &exec_table[t->kind]
					     : NULL;
	struct capture cap;

	memset(res, 0, sizeof(*res));
	res->exit_code = -1;
	res->retryable = -1;
	if (capture_init(&cap, hooks, t->max_output, t->tail_max, t->secrets, t->nsecrets) < 0)
		exec_set(res, "Failed", "Internal", -1, "out of memory");
	else if (!ops || !ops->run)
		exec_set(res, "Failed", "InvalidSpec", -1, "unknown executor");
	else if (exec_may_start(t, res) == 0)
		ops->run(t, hooks, &cap, res);
	res->end_ms = util_now_ms();
	exec_withhold_secrets(t, res);
	res->truncated = cap.truncated;
	res->log_tail = capture_tail(&cap);
	capture_free(&cap);
	return 0;
}
