/* Task resources and isolation, from the inside (build/tools/probe runs as the task): memory
 * limits (cgroup OOM kill or RLIMIT_DATA), CPU seconds, the private /tmp and /dev/shm and IPC
 * namespace (isolation from a concurrent task, nothing left after the task), and the cleanup
 * when the runner has no namespaces. Root only for the uid-65532 parts. */
#include "cgroup.h"
#include "exec.h"
#include "isolate.h"
#include "log.h"
#include "proto.h"
#include "tap.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROBE "build/tools/probe"

static char work_root[64], probe[4096];

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

static json_t *dispatch(const char *uid, json_t *command, json_t *limits)
{
	json_t *d = json_pack("{sssssIsssss{so}}", "type", "dispatch", "taskUid", uid, "attempt",
			      (json_int_t)1, "namespace", "default", "name", "probe", "shell",
			      "command", command);
	if (limits)
		json_object_set_new(d, "limits", limits);
	return d;
}

static json_t *run(const char *uid, json_t *cmd, json_t *limits, struct exec_result *r)
{
	memset(r, 0, sizeof(*r));
	if (run_dispatch(dispatch(uid, cmd, limits), r) < 0)
		return NULL;
	return r->output;
}

static key_t probe_key(const char *name)
{
	uint32_t h = 2166136261u;
	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return (key_t)(0x7a000000 | (h & 0xffffff));
}

/* Whether the objects "probe leave NAME" makes exist here, as a bit set: shm 1, sem 2, msg 4,
 * /dev/shm 8, /tmp 16. */
static int visible(const char *name)
{
	key_t k = probe_key(name);
	char p[256];
	int v = 0;
	v |= shmget(k, 0, 0) >= 0 ? 1 : 0;
	v |= semget(k, 0, 0) >= 0 ? 2 : 0;
	v |= msgget(k, 0) >= 0 ? 4 : 0;
	snprintf(p, sizeof(p), "/dev/shm/tasked-probe-%s", name);
	v |= access(p, F_OK) == 0 ? 8 : 0;
	snprintf(p, sizeof(p), "/tmp/tasked-probe-%s", name);
	v |= access(p, F_OK) == 0 ? 16 : 0;
	return v;
}

static void remove_leftovers(const char *name)
{
	key_t k = probe_key(name);
	char p[256];
	int id;
	if ((id = shmget(k, 0, 0)) >= 0)
		shmctl(id, IPC_RMID, NULL);
	if ((id = semget(k, 0, 0)) >= 0)
		semctl(id, 0, IPC_RMID);
	if ((id = msgget(k, 0)) >= 0)
		msgctl(id, IPC_RMID, NULL);
	snprintf(p, sizeof(p), "/dev/shm/tasked-probe-%s", name);
	unlink(p);
	snprintf(p, sizeof(p), "/tmp/tasked-probe-%s", name);
	unlink(p);
}

static void test_memory(void)
{
	struct exec_result r;
	json_t *out = run("mem-1", json_pack("[sss]", probe, "alloc", "256"),
			  json_pack("{sI}", "memoryBytes", (json_int_t)64 << 20), &r);
	ok(strcmp(r.phase, "Failed") == 0, "allocating 256 MiB under a 64Mi limit fails (%s: %s)",
	   r.reason, r.message);
	if (cg_available()) {
		ok(strcmp(r.reason, "OOMKilled") == 0 && strstr(r.message, "memory limit 64Mi") &&
			   r.exit_code == 128 + 9,
		   "with a cgroup: OOMKilled, the message names the limit (%s)", r.message);
	} else {
		ok(strcmp(r.reason, "ExitCode") == 0 && r.exit_code == 3 && out &&
			   json_integer_value(json_object_get(out, "allocatedMiB")) < 64 &&
			   strstr(r.log_tail, "Cannot allocate memory"),
		   "without a cgroup: RLIMIT_DATA makes the allocation fail (ENOMEM) below 64 MiB");
	}
	exec_result_free(&r);
	out = run("mem-2", json_pack("[sss]", probe, "alloc", "16"),
		  json_pack("{sI}", "memoryBytes", (json_int_t)64 << 20), &r);
	ok(strcmp(r.phase, "Succeeded") == 0 &&
		   json_integer_value(json_object_get(out, "allocatedMiB")) == 16,
	   "16 MiB under the same limit succeed (%s)", r.message);
	exec_result_free(&r);
	out = run("mem-3", json_pack("[ss]", probe, "limits"),
		  json_pack("{sIsI}", "memoryBytes", (json_int_t)96 << 20, "cpuSeconds",
			    (json_int_t)7),
		  &r);
	ok(out && json_integer_value(json_object_get(out, "cpuSeconds")) == 7,
	   "the task sees RLIMIT_CPU 7");
	if (cg_available())
		ok(json_integer_value(json_object_get(out, "cgroupMemoryBytes")) == 96 << 20 &&
			   json_integer_value(json_object_get(out, "dataBytes")) == -1,
		   "its memory cgroup's limit is 96Mi and RLIMIT_DATA is not set (%lld)",
		   (long long)json_integer_value(json_object_get(out, "cgroupMemoryBytes")));
	else
		ok(json_integer_value(json_object_get(out, "dataBytes")) == 96 << 20,
		   "RLIMIT_DATA is 96Mi");
	ok(json_integer_value(json_object_get(out, "asBytes")) == -1, "RLIMIT_AS is left alone");
	if (iso_namespaces())
		ok(json_integer_value(json_object_get(out, "devShmBytes")) == 96 << 20 &&
			   strcmp(json_string_value(json_object_get(out, "tmpdir")), "/tmp") == 0,
		   "its /dev/shm is a tmpfs of the memory limit's size, TMPDIR is /tmp");
	exec_result_free(&r);
}

static void test_cpu(void)
{
	struct exec_result r;
	run("cpu-1", json_pack("[ss]", probe, "burn"),
	    json_pack("{sI}", "cpuSeconds", (json_int_t)1), &r);
	ok(strcmp(r.phase, "Failed") == 0 && strcmp(r.reason, "CPULimitExceeded") == 0 &&
		   r.exit_code == 128 + SIGXCPU && strstr(r.message, "1 CPU seconds"),
	   "a CPU-burning task is killed at 1 CPU second: %s %s", r.reason, r.message);
	exec_result_free(&r);
	if (!cg_cpu_available())
		return;
	/* three processes, 2 CPU seconds: none reaches its RLIMIT_CPU before the three together do */
	run("cpu-2", json_pack("[sss]", probe, "burn", "3"),
	    json_pack("{sI}", "cpuSeconds", (json_int_t)2), &r);
	ok(strcmp(r.phase, "Failed") == 0 && strcmp(r.reason, "CPULimitExceeded") == 0 &&
		   strstr(r.message, "2 CPU seconds") && strstr(r.message, "together"),
	   "with a cpuacct cgroup the CPU seconds count the whole tree: %s %s", r.reason,
	   r.message);
	exec_result_free(&r);
}

struct bg {
	pthread_t th;
	const char *name, *secs;
	struct exec_result r;
};

static void *bg_leave(void *arg)
{
	struct bg *b = arg;
	run("leave-bg", json_pack("[ssss]", probe, "leave", b->name, b->secs), NULL, &b->r);
	return NULL;
}

static void test_namespaces(void)
{
	struct exec_result r;
	struct bg b = { .name = "ns1", .secs = "3" };
	json_t *out;
	int seen = 0;

	remove_leftovers("ns1");
	if (pthread_create(&b.th, NULL, bg_leave, &b) != 0) {
		ok(0, "thread");
		return;
	}
	/* while it runs (its objects exist inside its namespaces) */
	usleep(1000 * 1000);
	out = run("look-1", json_pack("[sss]", probe, "look", "ns1"), NULL, &r);
	ok(out && strcmp(json_string_value(json_object_get(out, "shm")), "ENOENT") == 0 &&
		   strcmp(json_string_value(json_object_get(out, "sem")), "ENOENT") == 0 &&
		   strcmp(json_string_value(json_object_get(out, "msg")), "ENOENT") == 0 &&
		   strcmp(json_string_value(json_object_get(out, "devshm")), "ENOENT") == 0 &&
		   strcmp(json_string_value(json_object_get(out, "tmp")), "ENOENT") == 0,
	   "a concurrent task sees none of the other's SysV objects, /dev/shm or /tmp files (%s)",
	   r.log_tail ? r.log_tail : "");
	exec_result_free(&r);
	seen = visible("ns1");
	ok(seen == 0, "the runner's own view has none of them either (mask %d)", seen);
	pthread_join(b.th, NULL);
	ok(strcmp(b.r.phase, "Succeeded") == 0 &&
		   json_integer_value(json_object_get(b.r.output, "files")) == 2 &&
		   json_integer_value(json_object_get(b.r.output, "shmid")) >= 0,
	   "the leaving task made all five (%s)", b.r.message);
	exec_result_free(&b.r);
	ok(visible("ns1") == 0, "nothing of it is left after it ended");
	out = run("look-2", json_pack("[sss]", probe, "look", "ns1"), NULL, &r);
	ok(out && strcmp(json_string_value(json_object_get(out, "shm")), "ENOENT") == 0 &&
		   strcmp(json_string_value(json_object_get(out, "tmp")), "ENOENT") == 0,
	   "nor for the next task");
	exec_result_free(&r);
	remove_leftovers("ns1");
}

/* A work dir outside /tmp: nothing to bind again inside the private /tmp. */
static void test_work_outside_tmp(void)
{
	char saved[sizeof(work_root)];
	struct exec_result r;
	json_t *out;

	memcpy(saved, work_root, sizeof(saved));
	snprintf(work_root, sizeof(work_root), "/var/tmp/tasked-iso-XXXXXX");
	if (!mkdtemp(work_root) || chmod(work_root, 0711) < 0) {
		ok(0, "a work root in /var/tmp");
		memcpy(work_root, saved, sizeof(saved));
		return;
	}
	remove_leftovers("ns2");
	out = run("outside-1", json_pack("[sss]", probe, "leave", "ns2"), NULL, &r);
	ok(strcmp(r.phase, "Succeeded") == 0 &&
		   json_integer_value(json_object_get(out, "files")) == 2,
	   "with the work dir in /var/tmp the task has its private /tmp and /dev/shm too (%s)",
	   r.message);
	exec_result_free(&r);
	ok(visible("ns2") == 0, "and nothing of it is left");
	remove_leftovers("ns2");
	rmdir(work_root);
	memcpy(work_root, saved, sizeof(saved));
}

static void test_fallback(void)
{
	struct exec_result r;
	struct iso_stats st;
	key_t k = probe_key("keep");
	int keep = shmget(k, 4096, IPC_CREAT | 0600);
	struct shmid_ds ds;
	json_t *out;

	/* An object of the tasks' uid from before the runner got busy stays. */
	if (keep >= 0 && shmctl(keep, IPC_STAT, &ds) == 0) {
		ds.shm_perm.uid = 65532;
		shmctl(keep, IPC_SET, &ds);
	}
	remove_leftovers("fb1");
	iso_force_namespaces(0);
	out = run("fb-1", json_pack("[ss]", probe, "limits"), NULL, &r);
	ok(out && strstr(json_string_value(json_object_get(out, "tmpdir")), "/" ISO_TMP_NAME),
	   "without namespaces TMPDIR is the private dir in the work dir (%s)",
	   json_string_value(json_object_get(out, "tmpdir")));
	exec_result_free(&r);
	run("fb-2", json_pack("[sss]", probe, "leave", "fb1"), NULL, &r);
	ok(strcmp(r.phase, "Succeeded") == 0,
	   "the task left its objects in the shared namespaces (%s)", r.message);
	exec_result_free(&r);
	iso_stats(&st);
	ok(visible("fb1") == 0 && st.shm >= 1 && st.sem >= 1 && st.msg >= 1 && st.devshm >= 1 &&
		   st.tmp >= 1,
	   "cleanup at idle removed them all (mask %d; shm %lu sem %lu msg %lu /dev/shm %lu /tmp %lu)",
	   visible("fb1"), st.shm, st.sem, st.msg, st.devshm, st.tmp);
	ok(keep >= 0 && shmget(k, 0, 0) == keep, "an object of uid 65532 from before is kept");
	if (keep >= 0)
		shmctl(keep, IPC_RMID, NULL);
	iso_force_namespaces(1);
	remove_leftovers("fb1");
}

int main(void)
{
	log_init("test", LOG_LVL_WARN);
	snprintf(work_root, sizeof(work_root), "/tmp/tasked-iso-XXXXXX");
	if (!realpath(PROBE, probe) || !mkdtemp(work_root) || chmod(work_root, 0711) < 0 ||
	    exec_init() < 0) {
		perror("setup");
		return 1;
	}
	test_memory();
	test_cpu();
	if (geteuid() == 0 && iso_namespaces()) {
		test_namespaces();
		test_work_outside_tmp();
		test_fallback();
	} else {
		diag("not root or no namespaces: the namespace and fallback tests need both");
	}
	rmdir(work_root);
	return done_testing();
}
