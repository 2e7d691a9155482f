/* The shell task sandbox, from the inside: build/tools/probe runs as a task (real processes,
 * real kernel) and reports what it could do. Also the per-task init: processes that leave the
 * task's process group, and a runner killed with SIGKILL, leave nothing behind. */
#include "cgroup.h"
#include "exec.h"
#include "log.h"
#include "proto.h"
#include "sandbox.h"
#include "spawner.h"
#include "tap.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROBE "build/tools/probe"

static char work_root[64];

static int run_dispatch(json_t *d, struct exec_result *res)
{
	struct proto_msg m;
	struct exec_task *t = NULL;
	struct exec_opts opts = { .work_root = work_root, .drop_uid = geteuid() == 0 };
	char err[256], *text;
	size_t len;
	int r = proto_encode(d, PROTO_MAX_MESSAGE_DEFAULT, &text, &len);

	json_decref(d);
	if (r < 0)
		return r;
	r = proto_decode(text, len, PROTO_MAX_MESSAGE_DEFAULT, PROTO_FROM_CONTROLLER, &m, err,
			 sizeof(err));
	free(text);
	if (r < 0) {
		diag("decode: %s", err);
		return r;
	}
	r = exec_task_new(&m, &opts, &t);
	proto_msg_free(&m);
	if (r < 0)
		return r;
	exec_task_run(t, NULL, res);
	exec_task_free(t);
	return 0;
}

static json_t *dispatch(const char *uid, json_t *command)
{
	return json_pack("{sssssIsssss{so}}", "type", "dispatch", "taskUid", uid, "attempt",
			 (json_int_t)1, "namespace", "default", "name", "probe", "shell", "command",
			 command);
}

static const char *errname_of(json_t *report, const char *key)
{
	json_t *a = json_object_get(report, key);
	if (!a)
		return "missing";
	if (json_is_true(json_object_get(a, "ok")))
		return "ok";
	return json_string_value(json_object_get(a, "error"))
		       ? json_string_value(json_object_get(a, "error"))
		       : "?";
}

static void expect_err(json_t *rep, const char *key, const char *want)
{
	const char *got = errname_of(rep, key);
	ok(strcmp(got, want) == 0, "probe: %s -> %s (got %s)", key, want, got);
}

static int64_t rl(json_t *rep, const char *name, int which)
{
	json_t *a = json_object_get(json_object_get(rep, "rlimits"), name);
	return json_is_array(a) ? json_integer_value(json_array_get(a, (size_t)which)) : -2;
}

static void test_probe(void)
{
	char abs[4096], pid[24];
	struct exec_result r;
	json_t *d, *rep, *st, *fds;
	int root = geteuid() == 0;

	if (!realpath(PROBE, abs)) {
		skip("probe not built (make build/tools/probe)");
		return;
	}
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	d = dispatch("uid-probe", json_pack("[s]", abs));
	json_object_set_new(d, "env",
			    json_pack("[{ssss}]", "name", "TASKED_PROBE_RUNNER_PID", "value", pid));
	json_object_set_new(d, "limits",
			    json_pack("{sIsI}", "memoryBytes", (json_int_t)512 * 1024 * 1024,
				      "cpuSeconds", (json_int_t)30));
	if (run_dispatch(d, &r) < 0) {
		ok(0, "probe dispatch runs");
		return;
	}
	ok(strcmp(r.phase, "Succeeded") == 0, "the probe ran to completion (%s)", r.message);
	rep = r.output;
	ok(json_is_object(rep), "the probe's report is the task's output");
	if (!json_is_object(rep)) {
		diag("logTail: %s", r.log_tail ? r.log_tail : "");
		exec_result_free(&r);
		return;
	}
	st = json_object_get(rep, "status");
	if (root)
		ok(json_integer_value(json_object_get(json_object_get(rep, "ids"), "uid")) ==
				   65532 &&
			   json_integer_value(
				   json_object_get(json_object_get(rep, "ids"), "gid")) == 65532 &&
			   json_array_size(
				   json_object_get(json_object_get(rep, "ids"), "groups")) == 0,
		   "as root: the task runs as 65532:65532 without supplementary groups");
	else
		ok(json_integer_value(json_object_get(json_object_get(rep, "ids"), "uid")) ==
			   (json_int_t)getuid(),
		   "not root: the task runs as the runner's uid");
	is_int(json_integer_value(json_object_get(st, "NoNewPrivs")), 1, "NoNewPrivs: 1");
	is_int(json_integer_value(json_object_get(st, "Seccomp")), 2, "Seccomp: 2 (filter mode)");
	is_str(json_string_value(json_object_get(st, "CapEff")), "0000000000000000",
	       "no effective capabilities");
	ok(rl(rep, "core", 0) == 0 && rl(rep, "core", 1) == 0, "RLIMIT_CORE 0/0");
	ok(rl(rep, "nofile", 0) == 1024 && rl(rep, "nofile", 1) == 1024, "RLIMIT_NOFILE 1024/1024");
	if (root)
		ok(rl(rep, "nproc", 0) == 512 && rl(rep, "nproc", 1) == 512,
		   "RLIMIT_NPROC 512/512");
	ok(rl(rep, "fsize", 0) == INT64_C(1) << 30, "RLIMIT_FSIZE 1 GiB (%lld)",
	   (long long)rl(rep, "fsize", 0));
	if (cg_available())
		ok(rl(rep, "data", 0) == -1 && rl(rep, "as", 0) == -1,
		   "limits.memoryBytes with a memory cgroup: no RLIMIT_DATA or RLIMIT_AS (test_runner_isolate.c)");
	else
		ok(rl(rep, "data", 0) == 512 * 1024 * 1024 &&
			   rl(rep, "data", 1) == 512 * 1024 * 1024 && rl(rep, "as", 0) == -1,
		   "limits.memoryBytes -> RLIMIT_DATA 512 MiB, RLIMIT_AS unlimited");
	ok(rl(rep, "cpu", 0) == 30 && rl(rep, "cpu", 1) == 31,
	   "limits.cpuSeconds -> RLIMIT_CPU 30 (hard 31)");
	fds = json_object_get(rep, "fds");
	ok(json_array_size(fds) == 3 && json_integer_value(json_array_get(fds, 0)) == 0 &&
		   json_integer_value(json_array_get(fds, 2)) == 2,
	   "only fds 0, 1 and 2 are open");
	is_int(json_integer_value(json_object_get(json_object_get(rep, "pids"), "runner")),
	       getpid(), "the probe aimed at the runner's pid");

	/* the runner (this test process, non-dumpable like tasked-runner) and the task's init */
	ok(strcmp(errname_of(rep, "runnerEnviron"), "ok") != 0,
	   "cannot read the runner's environ (%s)", errname_of(rep, "runnerEnviron"));
	ok(strcmp(errname_of(rep, "runnerMem"), "ok") != 0, "cannot read the runner's mem (%s)",
	   errname_of(rep, "runnerMem"));
	expect_err(rep, "runnerPtrace", "EPERM");
	expect_err(rep, "runnerVmRead", "EPERM");
	ok(strcmp(errname_of(rep, "parentEnviron"), "ok") != 0 &&
		   strcmp(errname_of(rep, "parentMem"), "ok") != 0,
	   "cannot read the init's environ or mem either");
	expect_err(rep, "parentPtrace", "EPERM");
	/* the filter: EPERM where the kernel alone would say something else */
	expect_err(rep, "unshareUserMount", "EPERM");
	expect_err(rep, "unshareUser", "EPERM");
	expect_err(rep, "cloneNewUser", "EPERM");
	expect_err(rep, "clone3", "ENOSYS");
	expect_err(rep, "mount", "EPERM");
	expect_err(rep, "bpfInvalidCmd", "EPERM");
	expect_err(rep, "bpfMapCreate", "EPERM");
	expect_err(rep, "keyctlInvalidCmd", "EPERM");
	expect_err(rep, "keyctlSessionKeyring", "EPERM");
	expect_err(rep, "addKey", "EPERM");
	expect_err(rep, "perfEventOpen", "EPERM");
	expect_err(rep, "userfaultfd", "EPERM");
	expect_err(rep, "ioUringSetup", "EPERM");
	expect_err(rep, "ioctlTiocsti", "EPERM");
	expect_err(rep, "ioctlTiocstiHighBits", "EPERM");
	expect_err(rep, "initModule", "EPERM");
	expect_err(rep, "reboot", "EPERM");
	expect_err(rep, "setuid0", "EPERM");
	ok(strcmp(errname_of(rep, "writeRoot"), "ok") != 0 || !root, "cannot write to / (%s)",
	   errname_of(rep, "writeRoot"));
	exec_result_free(&r);
}

/* The same probe outside the sandbox: the kernel's own answers differ, so the EPERMs above are
 * the filter's. */
static void test_probe_baseline(void)
{
	char cmd[256];
	json_t *rep;
	json_error_t e;
	int rc;

	snprintf(cmd, sizeof(cmd), "%s --runner-pid 1 --out %s/baseline.json >/dev/null 2>&1",
		 PROBE, work_root);
	rc = system(cmd);
	snprintf(cmd, sizeof(cmd), "%s/baseline.json", work_root);
	rep = json_load_file(cmd, 0, &e);
	unlink(cmd);
	if (rc != 0 || !rep) {
		skip("probe baseline did not run");
		return;
	}
	ok(strcmp(errname_of(rep, "bpfInvalidCmd"), "EPERM") != 0 &&
		   strcmp(errname_of(rep, "keyctlInvalidCmd"), "EPERM") != 0 &&
		   strcmp(errname_of(rep, "ioctlTiocsti"), "EPERM") != 0 &&
		   strcmp(errname_of(rep, "mount"), "EPERM") != 0,
	   "baseline without the filter: bpf %s, keyctl %s, TIOCSTI %s, mount %s (not EPERM)",
	   errname_of(rep, "bpfInvalidCmd"), errname_of(rep, "keyctlInvalidCmd"),
	   errname_of(rep, "ioctlTiocsti"), errname_of(rep, "mount"));
	json_decref(rep);
}

/* pids of processes whose command line is exactly "sleep ARG" */
static int count_sleep(const char *arg)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;
	char want[64];
	int wl = snprintf(want, sizeof(want), "sleep%c%s%c", 0, arg, 0);

	while (d && (e = readdir(d))) {
		char path[300], buf[128];
		int fd;
		ssize_t k;
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		k = read(fd, buf, sizeof(buf));
		close(fd);
		if (k == wl && memcmp(buf, want, (size_t)wl) == 0)
			n++;
	}
	if (d)
		closedir(d);
	return n;
}

static int wait_count(const char *arg, int want, int ms)
{
	int n = -1;
	for (int i = 0; i < ms / 20; i++) {
		n = count_sleep(arg);
		if (n == want)
			return n;
		usleep(20 * 1000);
	}
	return n;
}

static atomic_int watch_stop, seen_escapees;

/* Records how many of the escapees were alive at once while the task ran. */
static void *watch_escapees(void *p)
{
	(void)p;
	while (!atomic_load(&watch_stop)) {
		int n = count_sleep("4431") + count_sleep("4432") + count_sleep("4433") +
			count_sleep("4434");
		if (n > atomic_load(&seen_escapees))
			atomic_store(&seen_escapees, n);
		usleep(10 * 1000);
	}
	return NULL;
}

static void test_escapes(void)
{
	struct exec_result r;
	pthread_t th;
	json_t *d;

	/* Processes that leave the task's group (setsid, setpgid) are still the init's to kill. */
	d = dispatch(
		"uid-escape",
		json_pack(
			"[sss]", "/bin/sh", "-c",
			"setsid sleep 4431 & perl -e 'setpgrp(0,0); exec qw(sleep 4432)' 2>/dev/null & "
			"setsid sh -c 'setsid sleep 4433 & sleep 4434' & sleep 0.3; echo started"));
	pthread_create(&th, NULL, watch_escapees, NULL);
	r.phase = NULL;
	if (run_dispatch(d, &r) == 0) {
		atomic_store(&watch_stop, 1);
		pthread_join(th, NULL);
		is_int(atomic_load(&seen_escapees), 4,
		       "all four escapees were running before the task ended");
		is_str(r.phase, "Succeeded", "escape attempts: the main process exits 0");
		is_int(wait_count("4431", 0, 2000) + wait_count("4433", 0, 2000) +
			       wait_count("4434", 0, 2000),
		       0, "no setsid'd process survives the task's end");
		is_int(wait_count("4432", 0, 2000), 0,
		       "no setpgid'd process survives the task's end");
		exec_result_free(&r);
	}
}

/* A stand-in runner (a child of this test) is killed with SIGKILL while its task runs: the
 * task's init kills the task's whole tree. With a spawner of its own (the inits are then
 * cloned by the spawner, as the runner's children), and without (forked by the runner); the
 * spawner dies with the runner too. */
static void test_runner_killed(int with_spawner)
{
	const char *how = with_spawner ? "with a spawner" : "without a spawner";
	int pp[2], st;
	pid_t sp = 0, runner;

	if (pipe2(pp, O_CLOEXEC) < 0)
		abort();
	runner = fork();
	if (runner == 0) {
		struct exec_result r;
		(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
		if (with_spawner && spw_start() < 0)
			_exit(1);
		sp = spw_process();
		(void)!write(pp[1], &sp, sizeof(sp));
		run_dispatch(dispatch("uid-killed", json_pack("[sss]", "/bin/sh", "-c",
							      "sleep 4401 & sleep 4402")),
			     &r);
		_exit(0);
	}
	close(pp[1]);
	if (read(pp[0], &sp, sizeof(sp)) != (ssize_t)sizeof(sp))
		sp = -1;
	close(pp[0]);
	ok(with_spawner ? sp > 0 : sp == 0, "%s: the stand-in runner has %s", how,
	   with_spawner ? "its own spawner" : "none");
	ok(wait_count("4401", 1, 5000) == 1 && wait_count("4402", 1, 5000) == 1,
	   "%s: the task's sleeps are running", how);
	kill(runner, SIGKILL);
	waitpid(runner, &st, 0);
	ok(wait_count("4401", 0, 3000) + wait_count("4402", 0, 3000) == 0,
	   "%s: runner killed with SIGKILL: no sleep 440x survives", how);
	if (with_spawner) {
		/* it came back to us (subreaper): reaped once it is gone */
		int gone = 0;
		for (int i = 0; i < 300 && !gone; i++) {
			gone = waitpid(sp, NULL, WNOHANG) == sp ||
			       (kill(sp, 0) < 0 && errno == ESRCH);
			if (!gone)
				usleep(10000);
		}
		ok(gone, "%s: the spawner died with the runner", how);
	}
	/* the orphaned init came back to us (subreaper) once it was done: reap it */
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

int main(void)
{
	log_init("test", LOG_LVL_WARN);
	/* Like tasked-runner: tasks must not be able to read this process. */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	snprintf(work_root, sizeof(work_root), "/tmp/tasked-sbx-XXXXXX");
	if (!mkdtemp(work_root) || chmod(work_root, 0711) < 0 || exec_init() < 0) {
		perror("setup");
		return 1;
	}
	ok(sbx_filter() && sbx_filter()->len > 10, "the seccomp filter compiles (%u instructions)",
	   sbx_filter() ? sbx_filter()->len : 0);
	test_probe();
	test_probe_baseline();
	test_escapes();
	test_runner_killed(1);
	test_runner_killed(0);
	rmdir(work_root);
	return done_testing();
}
