/* The shell executor, driven directly (no WebSocket): dispatch JSON -> proto_decode ->
 * exec_task_new -> exec_task_run. Runs real processes; as root they run as 65532. */
#include "exec.h"
#include "log.h"
#include "proto.h"
#include "spawner.h"
#include "tap.h"
#include "util.h"
#include "workdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char work_root[64];

struct seen {
	int started, logs, bad_utf8;
	int64_t start_ms, last_seq;
	size_t log_bytes, max_chunk;
	int drop_logs;
};

static void on_started(void *ud, int64_t ms)
{
	struct seen *s = ud;
	s->started++;
	s->start_ms = ms;
}

/* test_spawner: the parent of the process whose pid a task prints, read while the task runs. */
static int check_init_parent;
static long init_parent;

static long ppid_of(long pid)
{
	char path[64], buf[512], *q;
	long ppid = -1;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	q = strrchr(buf, ')');
	if (q && sscanf(q, ") %*c %ld", &ppid) != 1)
		ppid = -1;
	return ppid;
}

static int on_log(void *ud, const char *stream, int64_t seq, const char *data, size_t len)
{
	struct seen *s = ud;
	if (check_init_parent && len > 0 && data[0] >= '0' && data[0] <= '9' && init_parent == 0)
		init_parent = ppid_of(strtol(data, NULL, 10));
	json_t *j = json_stringn(data, len);
	if (!j || memchr(data, '\0', len))
		s->bad_utf8++;
	json_decref(j);
	s->logs++;
	s->last_seq = seq;
	s->log_bytes += len;
	if (len > s->max_chunk)
		s->max_chunk = len;
	(void)stream;
	return s->drop_logs ? -ENOBUFS : 0;
}

/* Builds a dispatch from the command (NULL-terminated) and optional extras, runs it. */
static void run_full(const char *const *argv, json_t *env, json_t *limits, int64_t deadline_ms,
		     const char *working_dir, json_t *input, struct seen *seen,
		     struct exec_result *res)
{
	json_t *cmd = json_array(), *shell, *d;
	struct proto_msg m;
	struct exec_task *t = NULL;
	struct exec_opts opts = { .work_root = work_root, .drop_uid = geteuid() == 0 };
	struct exec_hooks hooks = { on_started, on_log, seen };
	char err[256], *text;
	size_t len;
	int r;

	for (const char *const *a = argv; *a; a++)
		json_array_append_new(cmd, json_string(*a));
	shell = json_pack("{so}", "command", cmd);
	if (working_dir)
		json_object_set_new(shell, "workingDir", json_string(working_dir));
	d = json_pack("{sssssIssssso}", "type", "dispatch", "taskUid", "uid-1", "attempt",
		      (json_int_t)1, "namespace", "default", "name", "t1", "shell", shell);
	if (env)
		json_object_set_new(d, "env", env);
	if (limits)
		json_object_set_new(d, "limits", limits);
	if (input)
		json_object_set_new(d, "input", input);
	if (deadline_ms)
		json_object_set_new(d, "deadline", json_integer(deadline_ms));
	r = proto_encode(d, PROTO_MAX_MESSAGE_DEFAULT, &text, &len);
	json_decref(d);
	if (r < 0)
		abort();
	r = proto_decode(text, len, PROTO_MAX_MESSAGE_DEFAULT, PROTO_FROM_CONTROLLER, &m, err,
			 sizeof(err));
	free(text);
	if (r < 0) {
		diag("decode: %s", err);
		abort();
	}
	r = seen->drop_logs;
	memset(seen, 0, sizeof(*seen));
	seen->drop_logs = r;
	if (exec_task_new(&m, &opts, &t) < 0)
		abort();
	proto_msg_free(&m);
	exec_task_run(t, &hooks, res);
	exec_task_free(t);
}

static void run(const char *const *argv, struct seen *s, struct exec_result *res)
{
	run_full(argv, NULL, NULL, 0, NULL, NULL, s, res);
}

static int tail_has(const struct exec_result *r, const char *needle)
{
	return r->log_tail && strstr(r->log_tail, needle) != NULL;
}

static int group_gone(pid_t pgid) { return pgid > 0 && kill(-pgid, 0) < 0 && errno == ESRCH; }

static int dir_is_empty(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return 0;
	return st.st_nlink == 2; /* "." and "..", no subdirectories left */
}

struct killer {
	struct exec_task *t;
};

static void test_basics(void)
{
	struct exec_result r;
	struct seen s = { 0 };

	run((const char *[]){ "echo", "hello", NULL }, &s, &r);
	is_str(r.phase, "Succeeded", "echo hello: phase Succeeded");
	is_str(r.reason, "Succeeded", "echo hello: reason Succeeded");
	is_int(r.exit_code, 0, "echo hello: exit code 0");
	is_str(r.log_tail, "hello\n", "echo hello: logTail is \"hello\\n\"");
	ok(!r.truncated, "echo hello: not truncated");
	ok(s.started == 1 && r.start_ms > 0 && r.start_ms <= r.end_ms,
	   "started hook once, times ordered");
	ok(s.logs >= 1 && s.bad_utf8 == 0, "log chunk streamed (%d)", s.logs);
	ok(r.output == NULL, "no output when $TASKED_OUTPUT was not written");
	ok(group_gone(r.pid), "process group gone after success");
	{
		json_t *j = exec_result_json("uid-1", 1, &r);
		char *txt = NULL, err[128];
		size_t n = 0;
		struct proto_msg m;
		ok(j && proto_encode(j, PROTO_MAX_MESSAGE_DEFAULT, &txt, &n) == 0 &&
			   proto_decode(txt, n, PROTO_MAX_MESSAGE_DEFAULT, PROTO_FROM_RUNNER, &m,
					err, sizeof(err)) == 0,
		   "result message round-trips through proto_decode");
		if (j && txt && m.root) {
			is_str(m.phase, "Succeeded", "decoded result phase");
			proto_msg_free(&m);
		}
		free(txt);
		json_decref(j);
	}
	exec_result_free(&r);

	run((const char *[]){ "/bin/sh", "-c", "echo out; echo err >&2; exit 3", NULL }, &s, &r);
	is_str(r.phase, "Failed", "exit 3: phase Failed");
	is_str(r.reason, "ExitCode", "exit 3: reason ExitCode");
	is_int(r.exit_code, 3, "exit 3: exitCode 3");
	is_str(r.message, "exited with code 3", "exit 3: message");
	ok(tail_has(&r, "out\n") && tail_has(&r, "err\n"), "stdout and stderr both in logTail");
	exec_result_free(&r);

	run((const char *[]){ "/bin/sh", "-c", "kill -15 $$$$" /* $$ is our escape for one $ */,
			      NULL },
	    &s, &r);
	is_int(r.exit_code, 128 + SIGTERM, "killed by signal: exitCode 128+15");
	ok(strstr(r.message, "killed by signal 15") != NULL, "killed by signal: message (%s)",
	   r.message);
	exec_result_free(&r);
}

static void test_argv_literal(void)
{
	struct exec_result r;
	struct seen s = { 0 };

	run((const char *[]){ "printf", "%s|", "a;b", "`id`", "$(ls)", "&& rm -rf /", "*", NULL },
	    &s, &r);
	is_str(r.phase, "Succeeded", "metacharacters: printf succeeded");
	is_str(r.log_tail, "a;b|`id`|$(ls)|&& rm -rf /|*|",
	       "; ` $(ls) && * reach the program literally");
	exec_result_free(&r);

	run_full((const char *[]){ "/bin/echo", "hello $(NAME)", "$$(NAME)", "$(UNKNOWN)", "$(NAME",
				   "$(TASKED_TASK_NAME)", NULL },
		 json_pack("[{ssss}]", "name", "NAME", "value", "world; `x`"), NULL, 0, NULL, NULL,
		 &s, &r);
	is_str(r.log_tail, "hello world; `x` $(NAME) $(UNKNOWN) $(NAME t1\n",
	       "$(NAME) expands from env, $$(NAME) is literal, unknown stays");
	exec_result_free(&r);

	/* The value of an env entry is not re-expanded or interpreted. */
	run_full((const char *[]){ "/bin/echo", "$(A)", NULL },
		 json_pack("[{ssss},{ssss}]", "name", "A", "value", "$(B)", "name", "B", "value",
			   "no"),
		 NULL, 0, NULL, NULL, &s, &r);
	is_str(r.log_tail, "$(B)\n", "expansion is single-pass");
	exec_result_free(&r);
}

static void test_exec_failures(void)
{
	struct exec_result r;
	struct seen s = { 0 };

	run((const char *[]){ "nosuchcmd", "x", NULL }, &s, &r);
	is_str(r.phase, "Failed", "missing command: Failed");
	is_str(r.reason, "ExecFailed", "missing command: reason ExecFailed");
	is_int(r.exit_code, 127, "missing command: exitCode 127");
	is_str(r.message, "exec \"nosuchcmd\": No such file or directory",
	       "missing command: message");
	ok(s.started == 0, "missing command: no started");
	exec_result_free(&r);

	run((const char *[]){ "/nonexistent/bin/tool", NULL }, &s, &r);
	is_str(r.message, "exec \"/nonexistent/bin/tool\": No such file or directory",
	       "missing absolute path: execve errno through the status pipe");
	is_int(r.exit_code, 127, "missing absolute path: exitCode 127");
	exec_result_free(&r);

	run((const char *[]){ "/etc/passwd", NULL }, &s, &r);
	ok(strstr(r.message, "exec \"/etc/passwd\": Permission denied") != NULL,
	   "non-executable: Permission denied (%s)", r.message);
	exec_result_free(&r);

	run_full((const char *[]){ "/bin/pwd", NULL }, NULL, NULL, 0, "../etc", NULL, &s, &r);
	is_str(r.reason, "InvalidSpec", "workingDir with .. is InvalidSpec");
	exec_result_free(&r);
	run_full((const char *[]){ "/bin/pwd", NULL }, NULL, NULL, 0, "/etc", NULL, &s, &r);
	is_str(r.reason, "InvalidSpec", "absolute workingDir is InvalidSpec");
	exec_result_free(&r);
	run_full((const char *[]){ "/bin/pwd", NULL }, NULL, NULL, 0, "a/b", NULL, &s, &r);
	is_str(r.phase, "Succeeded", "relative workingDir is created");
	if (!ok(r.log_tail && strstr(r.log_tail, "/tasked-") && strstr(r.log_tail, "/a/b\n"),
		"cwd is <workdir>/a/b"))
		diag("task printed: %s", r.log_tail ? r.log_tail : "");
	exec_result_free(&r);
}

static void test_output_cap(void)
{
	struct exec_result r;
	struct seen s = { 0 };
	const char *const cmd[] = { "/bin/sh", "-c",
				    "head -c 5000000 /dev/zero | tr '\\0' x; echo END", NULL };

	run_full(cmd, NULL,
		 json_pack("{sIsI}", "maxOutputBytes", (json_int_t)1000000, "logTailBytes",
			   (json_int_t)4096),
		 0, NULL, NULL, &s, &r);
	is_str(r.phase, "Succeeded", "5 MB of output: Succeeded");
	ok(r.truncated, "5 MB with maxOutputBytes 1 MB: truncated");
	ok(r.log_tail && strlen(r.log_tail) <= 4096, "logTail bounded (%zu bytes)",
	   r.log_tail ? strlen(r.log_tail) : 0);
	ok(tail_has(&r, "xxxEND\n"), "logTail holds the end of the stream");
	ok(s.log_bytes <= 1000000 && s.log_bytes >= 990000,
	   "streamed log bytes capped at 1 MB (%zu)", s.log_bytes);
	ok(s.max_chunk <= EXEC_LOG_CHUNK_MAX, "log chunks at most 32 KiB (%zu)", s.max_chunk);
	exec_result_free(&r);

	/* Binary output: logTail and chunks stay valid UTF-8 without NUL. */
	run_full((const char *[]){ "/bin/sh", "-c", "printf 'a\\000b\\377c\\342\\202'", NULL },
		 NULL, json_pack("{sI}", "logTailBytes", (json_int_t)64), 0, NULL, NULL, &s, &r);
	is_str(r.log_tail,
	       "a\xef\xbf\xbd"
	       "b\xef\xbf\xbd"
	       "c\xef\xbf\xbd\xef\xbf\xbd",
	       "NUL and invalid bytes become U+FFFD");
	ok(s.bad_utf8 == 0, "log chunks are valid UTF-8");
	exec_result_free(&r);

	/* 40000 invalid bytes become 120000 bytes of U+FFFD: still sent in chunks of <= 32 KiB. */
	run((const char *[]){ "/bin/sh", "-c", "head -c 40000 /dev/zero | tr '\\0' '\\377'", NULL },
	    &s, &r);
	ok(s.max_chunk <= EXEC_LOG_CHUNK_MAX && s.log_bytes == 120000 && s.bad_utf8 == 0,
	   "replacement characters split into valid chunks of <= 32 KiB (max %zu, total %zu)",
	   s.max_chunk, s.log_bytes);
	ok(r.log_tail && strlen(r.log_tail) <= 4096,
	   "logTail stays within logTailBytes after replacement");
	exec_result_free(&r);

	/* A log sink that drops marks the result truncated. */
	s.drop_logs = 1;
	run((const char *[]){ "echo", "dropped", NULL }, &s, &r);
	ok(r.truncated && tail_has(&r, "dropped\n"),
	   "dropped log chunk: truncated, logTail intact");
	exec_result_free(&r);
}

static void test_output_file(void)
{
	struct exec_result r;
	struct seen s = { 0 };

	run_full(
		(const char *[]){
			"/bin/sh", "-c",
			"cat \"$TASKED_INPUT\" > \"$TASKED_OUTPUT.tmp\" && "
			"printf '{\"ok\":true,\"in\":%s}' \"$(cat $TASKED_INPUT)\" > \"$TASKED_OUTPUT\"",
			NULL },
		NULL, NULL, 0, NULL, json_pack("{si}", "n", 7), &s, &r);
	is_str(r.phase, "Succeeded", "output task succeeded");
	ok(r.output && json_is_true(json_object_get(r.output, "ok")),
	   "$TASKED_OUTPUT JSON lands in output");
	ok(r.output &&
		   json_integer_value(json_object_get(json_object_get(r.output, "in"), "n")) == 7,
	   "input JSON was readable at $TASKED_INPUT");
	exec_result_free(&r);

	run((const char *[]){ "/bin/sh", "-c", "printf '{\"ok\": tru' > \"$TASKED_OUTPUT\"", NULL },
	    &s, &r);
	is_str(r.phase, "Succeeded", "invalid output JSON keeps the phase from the exit code");
	ok(r.output == NULL, "invalid output JSON: no output");
	ok(strstr(r.message, "output: invalid JSON at line 1 column") != NULL,
	   "invalid output JSON: clear message (%s)", r.message);
	exec_result_free(&r);

	run((const char *[]){ "/bin/sh", "-c",
			      "head -c 40000 /dev/zero | tr '\\0' 1 > \"$TASKED_OUTPUT\"", NULL },
	    &s, &r);
	ok(r.output == NULL && strstr(r.message, "output exceeds 32768 bytes") != NULL,
	   "output over 32 KiB: omitted with message (%s)", r.message);
	exec_result_free(&r);

	run((const char *[]){ "/bin/ln", "-s", "/etc/shadow", "output.json", NULL }, &s, &r);
	ok(r.output == NULL && strstr(r.message, "symbolic link") != NULL,
	   "output symlink is not followed (%s)", r.message);
	exec_result_free(&r);
}

static void test_env_and_identity(void)
{
	struct exec_result r;
	struct seen s = { 0 };

	setenv("TASKED_TEST_CANARY", "leaked-canary-value", 1);
	run_full((const char *[]){ "/usr/bin/env", NULL },
		 json_pack("[{ssss}]", "name", "MINE", "value", "mine-value"), NULL, 0, NULL, NULL,
		 &s, &r);
	is_str(r.phase, "Succeeded", "env ran");
	ok(!tail_has(&r, "TASKED_TEST_CANARY") && !tail_has(&r, "leaked-canary-value"),
	   "the runner's environment does not leak");
	ok(tail_has(&r, "MINE=mine-value\n"), "dispatch env entry present");
	ok(tail_has(&r, "PATH=/usr/local/bin:/usr/bin:/bin\n"), "PATH is the fixed task PATH");
	ok(tail_has(&r, "TASKED_TASK_NAME=t1\n") &&
		   tail_has(&r, "TASKED_TASK_NAMESPACE=default\n") &&
		   tail_has(&r, "TASKED_TASK_UID=uid-1\n") && tail_has(&r, "TASKED_ATTEMPT=1\n"),
	   "TASKED_TASK_* and TASKED_ATTEMPT set");
	ok(tail_has(&r, "HOME=") && tail_has(&r, "TASKED_INPUT=") && tail_has(&r, "TASKED_OUTPUT="),
	   "HOME, TASKED_INPUT, TASKED_OUTPUT set");
	exec_result_free(&r);
	unsetenv("TASKED_TEST_CANARY");

	/* A secret reaches the task through its environment, never through argv (public in
	 * /proc/PID/cmdline); $(NAME) of a plain variable still expands. */
	run_full((const char *[]){ "/bin/echo", "plain=$(PLAIN)", "token=$(TOKEN)", NULL },
		 json_pack("[{ssss}{sssssb}]", "name", "PLAIN", "value", "plain-value", "name",
			   "TOKEN", "value", "s3cr3t-in-argv", "secret", 1),
		 NULL, 0, NULL, NULL, &s, &r);
	is_str(r.phase, "Failed", "$(SECRET) in a command argument: Failed");
	is_str(r.reason, "InvalidSpec", "... InvalidSpec");
	ok(strstr(r.message, "command[2]") && strstr(r.message, "$(TOKEN)") &&
		   !strstr(r.message, "s3cr3t-in-argv"),
	   "... naming the argument and the variable, not the value (%s)", r.message);
	ok(s.started == 0, "... and nothing ran");
	exec_result_free(&r);
	run_full((const char *[]){ "/bin/sh", "-c", "echo \"plain=$(PLAIN) len=${#TOKEN}\"", NULL },
		 json_pack("[{ssss}{sssssb}]", "name", "PLAIN", "value", "plain-value", "name",
			   "TOKEN", "value", "s3cr3t-in-env", "secret", 1),
		 NULL, 0, NULL, NULL, &s, &r);
	is_str(r.phase, "Succeeded", "the secret in the environment, a plain $(VAR) in argv: runs");
	ok(tail_has(&r, "plain=plain-value len=13"),
	   "... the plain value expanded, the secret read from env");
	exec_result_free(&r);

	run((const char *[]){ "/bin/sh", "-c",
			      "id -u; id -g; ulimit -c; ulimit -n; "
			      "grep NoNewPrivs /proc/self/status; ls /proc/self/fd | wc -l; "
			      "stat -c %a \"$HOME\"",
			      NULL },
	    &s, &r);
	if (geteuid() == 0)
		ok(tail_has(&r, "65532\n65532\n"), "as root: the task runs as 65532:65532");
	else
		skip("not root: no uid drop");
	if (!ok(tail_has(&r, "\n0\n1024\n"), "RLIMIT_CORE 0 and RLIMIT_NOFILE 1024"))
		diag("task printed: %s", r.log_tail);
	ok(tail_has(&r, "NoNewPrivs:\t1\n"), "no_new_privs set");
	ok(tail_has(&r, "\n4\n700\n"), "only fds 0-2 (+ ls's own) open; work dir mode 0700");
	exec_result_free(&r);
}

static void *kill_later(void *p)
{
	struct killer *k = p;
	usleep(300 * 1000);
	exec_task_kill(k->t, EXEC_KILL_CANCEL);
	return NULL;
}

static void test_timeout_and_cancel(void)
{
	struct exec_result r;
	struct seen s = { 0 };
	int64_t t0 = util_mono_ms();

	run_full((const char *[]){ "sleep", "30", NULL }, NULL, NULL, util_now_ms() + 300, NULL,
		 NULL, &s, &r);
	is_str(r.phase, "Failed", "timeout: Failed");
	is_str(r.reason, "TimedOut", "timeout: reason TimedOut");
	ok(util_mono_ms() - t0 < 5000, "timeout kills sleep 30 quickly (%lld ms)",
	   (long long)(util_mono_ms() - t0));
	is_int(r.exit_code, 128 + SIGKILL, "timeout: exitCode 137");
	exec_result_free(&r);

	t0 = util_mono_ms();
	run_full((const char *[]){ "/bin/sh", "-c", "sleep 30 & sleep 30 & echo started; wait",
				   NULL },
		 NULL, NULL, util_now_ms() + 500, NULL, NULL, &s, &r);
	is_str(r.reason, "TimedOut", "grandchildren: TimedOut");
	ok(util_mono_ms() - t0 < 5000, "grandchildren: quick (%lld ms)",
	   (long long)(util_mono_ms() - t0));
	ok(tail_has(&r, "started\n"), "grandchildren: output before the kill kept");
	ok(group_gone(r.pid), "no process of the group survives (kill(-pgid, 0) -> ESRCH)");
	exec_result_free(&r);

	/* Main child exits while a background grandchild keeps the pipes open. */
	t0 = util_mono_ms();
	run((const char *[]){ "/bin/sh", "-c", "sleep 30 & echo bye", NULL }, &s, &r);
	is_str(r.phase, "Succeeded", "background grandchild: main exit decides the phase");
	ok(util_mono_ms() - t0 < 5000, "background grandchild: killed, not waited for (%lld ms)",
	   (long long)(util_mono_ms() - t0));
	ok(group_gone(r.pid), "background grandchild: group gone");
	exec_result_free(&r);

	/* Cancel from another thread. */
	{
		const char *cmd[] = { "/bin/sh", "-c", "sleep 30 & sleep 30", NULL };
		json_t *arr = json_array(), *d;
		struct proto_msg m;
		struct exec_task *t;
		struct exec_opts opts = { .work_root = work_root, .drop_uid = geteuid() == 0 };
		struct killer k;
		pthread_t th;
		char *txt, err[128];
		size_t n;

		for (const char **a = cmd; *a; a++)
			json_array_append_new(arr, json_string(*a));
		d = json_pack("{sssssIsssss{so}}", "type", "dispatch", "taskUid", "uid-c",
			      "attempt", (json_int_t)2, "namespace", "ns", "name", "c", "shell",
			      "command", arr);
		proto_encode(d, PROTO_MAX_MESSAGE_DEFAULT, &txt, &n);
		json_decref(d);
		if (proto_decode(txt, n, PROTO_MAX_MESSAGE_DEFAULT, PROTO_FROM_CONTROLLER, &m, err,
				 sizeof(err)) < 0 ||
		    exec_task_new(&m, &opts, &t) < 0)
			abort();
		free(txt);
		proto_msg_free(&m);
		k.t = t;
		t0 = util_mono_ms();
		pthread_create(&th, NULL, kill_later, &k);
		exec_task_run(t, NULL, &r);
		pthread_join(th, NULL);
		is_str(r.phase, "Cancelled", "cancel: phase Cancelled");
		is_str(r.reason, "Cancelled", "cancel: reason Cancelled");
		ok(util_mono_ms() - t0 < 5000, "cancel: quick");
		ok(group_gone(r.pid), "cancel: process group gone");
		exec_result_free(&r);
		exec_task_free(t);
	}
}

/* The inits come from the spawner process but are the runner's children; without the spawner
 * the runner forks them itself and tasks run the same. */
static void test_spawner(void)
{
	const char *ppid[] = { "/bin/sh", "-c", "echo $PPID; sleep 1", NULL };
	const char *echo[] = { "/bin/echo", "after the spawner", NULL };
	const char *sigs[] = { "/bin/grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status", NULL };
	struct exec_result r;
	struct seen s = { 0 };
	pid_t sp = spw_process();
	int st;

	ok(sp > 0, "a spawner process runs");
	check_init_parent = 1;
	run(ppid, &s, &r);
	check_init_parent = 0;
	is_str(r.phase, "Succeeded", "spawned task succeeds");
	is_int(init_parent, getpid(), "the task's init is the runner's child (CLONE_PARENT)");
	exec_result_free(&r);
	/* main() ignores SIGPIPE, as the runner does: the task must not inherit that. */
	run(sigs, &s, &r);
	ok(tail_has(&r, "SigIgn:\t0000000000000000") && tail_has(&r, "SigBlk:\t0000000000000000"),
	   "spawned task: no signal ignored or blocked");
	exec_result_free(&r);

	kill(sp, SIGKILL);
	ok(waitpid(sp, &st, 0) == sp, "the killed spawner is reaped");
	/* The warm init it left may take one more; then the runner forks. */
	for (int i = 0; i < 2; i++) {
		run(echo, &s, &r);
		ok(r.phase && strcmp(r.phase, "Succeeded") == 0,
		   "spawner gone: the task succeeds (%d)", i + 1);
		ok(tail_has(&r, "after the spawner"), "spawner gone: output captured (%d)", i + 1);
		exec_result_free(&r);
	}
	is_int(spw_process(), 0, "spawner gone: no longer used");
	run(sigs, &s, &r);
	ok(tail_has(&r, "SigIgn:\t0000000000000000") && tail_has(&r, "SigBlk:\t0000000000000000"),
	   "forked by the runner: no signal ignored or blocked");
	exec_result_free(&r);
}

/* The one entry of the work root, if there is exactly one. */
static int only_entry(char *name, size_t namesz)
{
	DIR *d = opendir(work_root);
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 && n++ == 0)
			snprintf(name, namesz, "%.*s", (int)(namesz - 1), e->d_name);
	closedir(d);
	return n == 1;
}

/* A spare work dir, made after an attempt, is the runner's until the next attempt takes it. */
static void test_spare_workdir(void)
{
	const char *argv[] = {
		"/bin/sh", "-c",
		"echo \"home=$HOME\"; touch \"$TMPDIR/x\" && echo tmp-ok; echo hi >\"$HOME/f\" && echo home-ok",
		NULL
	};
	char name[256] = "", want[PATH_MAX], path[PATH_MAX];
	struct exec_result r;
	struct seen s = { 0 };
	struct stat st;

	wd_spare_add(work_root);
	ok(only_entry(name, sizeof(name)) && strncmp(name, "tasked-", 7) == 0,
	   "a spare work dir is made (%s)", name);
	snprintf(path, sizeof(path), "%s/%s", work_root, name);
	ok(stat(path, &st) == 0 && st.st_uid == geteuid() && (st.st_mode & 07777) == 0700,
	   "the spare is the runner's, mode 0700, until taken");
	run(argv, &s, &r);
	is_str(r.phase, "Succeeded", "the next attempt succeeds in it");
	snprintf(want, sizeof(want), "home=%s/%s", work_root, name);
	ok(tail_has(&r, want), "the next attempt's HOME is the spare");
	ok(tail_has(&r, "tmp-ok") && tail_has(&r, "home-ok"),
	   "its /tmp and its work dir are writable by the task");
	exec_result_free(&r);
	ok(dir_is_empty(work_root), "the spare is removed with the attempt");
	wd_spare_add(work_root);
	exec_cleanup();
	ok(dir_is_empty(work_root), "exec_cleanup removes unused spares");
}

int main(void)
{
	log_init("test", LOG_LVL_WARN);
	signal(SIGPIPE, SIG_IGN);
	snprintf(work_root, sizeof(work_root), "/tmp/tasked-test-XXXXXX");
	if (!mkdtemp(work_root) || chmod(work_root, 0711) < 0 || exec_init() < 0) {
		perror("setup");
		return 1;
	}
	test_basics();
	test_argv_literal();
	test_exec_failures();
	test_output_cap();
	test_output_file();
	test_env_and_identity();
	test_timeout_and_cancel();
	test_spawner();
	test_spare_workdir();
	ok(dir_is_empty(work_root), "every per-attempt work dir was removed");
	rmdir(work_root);
	return done_testing();
}
