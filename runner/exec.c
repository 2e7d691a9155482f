/* Shell executor. The order of the child's setup and the reasons for each step are in
 * docs/runner.md; everything the child needs is prepared before fork() so that the code between
 * fork() and execve() only makes async-signal-safe calls. */
#include "exec.h"
#include "landlock.h"
#include "expand.h"
#include "cgroup.h"
#include "http.h"
#include "isolate.h"
#include "log.h"
#include "quantity.h"
#include "sandbox.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
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
#include <linux/seccomp.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXEC_ARG_MAX (128 * 1024 - 1)      /* the kernel's MAX_ARG_STRLEN, less the NUL */
#define EXEC_MAX_ENV (PROTO_MAX_ENV + 8)
#define EXEC_FSIZE_MIN (INT64_C(1) << 30)  /* RLIMIT_FSIZE: 1 GiB or maxOutputBytes if larger */
#define EXEC_NOFILE 1024
#define EXEC_NPROC 512
#define EXEC_LOG_FLUSH_MS 50               /* pending output older than this is sent */
#define EXEC_DRAIN_MS 1000                 /* after exit, wait this long for pipe EOF */
#define EXEC_REAP_MS 2000                  /* and this long for the process group to be reaped */
#define EXEC_MAX_LIVE 2048
#define EXEC_MASK_MIN 4                    /* secrets shorter than this are not masked */
#define EXEC_MASK_HOLD 4096                /* bytes held back so a secret split between two
					    * chunks is still masked */
#define EXEC_SWEEP_ROUNDS 5000             /* the init's kill-and-reap rounds, ~1 ms each */
#define EXEC_CPU_CHECK_MS 200              /* how often a task's cpuacct cgroup is read */
#define EXEC_INIT_GRACE_MS 10000           /* after a kill request, SIGKILL an init still there */

/* ---- process-wide state ---------------------------------------------------------------- */

static pthread_mutex_t exec_lock = PTHREAD_MUTEX_INITIALIZER; /* held across fork() */
static pid_t exec_live[EXEC_MAX_LIVE]; /* main children not yet reaped by their thread */
static size_t exec_nlive;
static char exec_runner_path[4096] = EXEC_TASK_PATH;

int exec_init(void)
{
	const char *p = getenv("PATH");
	int fd;

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
	return sbx_init();
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

/* ---- UTF-8 --------------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (1-4), or 0 when p starts an invalid or incomplete
 * one. Same rules as jansson: no overlongs, no surrogates, nothing past U+10FFFF. */
static size_t exec_utf8_seq(const unsigned char *p, size_t len)
{
	unsigned c = p[0], need, cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		need = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		need = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		need = 4, cp = c & 0x07;
	else
		return 0;
	if (len < need)
		return 0;
	for (unsigned i = 1; i < need; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((need == 3 && cp < 0x800) || (need == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return need;
}

int exec_utf8_sanitize(const char *in, size_t len, struct buf *out)
{
	static const char repl[] = "\xef\xbf\xbd";
	const unsigned char *p = (const unsigned char *)in;
	size_t i = 0, run = 0;
	int r = 0;

	while (i < len && r == 0) {
		size_t n = p[i] == 0 ? 0 : exec_utf8_seq(p + i, len - i);
		if (n) {
			i += n;
			run += n;
			continue;
		}
		r = buf_append(out, p + i - run, run);
		if (r == 0)
			r = buf_append(out, repl, 3);
		run = 0;
		i++;
	}
	if (r == 0)
		r = buf_append(out, p + i - run, run);
	return r;
}

/* The longest prefix of p that does not end inside a (so far valid) multi-byte sequence. */
static size_t exec_utf8_complete(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t back = 1; back <= 3 && back <= len; back++) {
		unsigned c = p[len - back], need;
		if ((c & 0xc0) == 0x80)
			continue;
		need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
		return need > back ? len - back : len;
	}
	return len;
}

/* ---- output capture -------------------------------------------------------------------- */

struct exec_capture {
	uint64_t total, max_output;
	int truncated;
	char *ring;              /* the last ring_cap bytes of the combined stream */
	size_t ring_cap, ring_len, ring_head;
	const struct exec_hooks *hooks;
	struct buf pend[2];      /* raw bytes not yet sent as log messages, per stream */
	int64_t pend_since[2];   /* monotonic ms of the oldest pending byte, 0 when none */
	int64_t seq;
	struct buf scratch;
	const char *const *secrets; /* values to mask as "***" (borrowed) */
	size_t nsecrets;
};

static const char *const exec_stream_names[2] = { "stdout", "stderr" };

static int exec_capture_init(struct exec_capture *c, const struct exec_hooks *hooks,
			     int64_t max_output, int64_t tail_max)
{
	memset(c, 0, sizeof(*c));
	c->hooks = hooks && hooks->log ? hooks : NULL;
	c->max_output = (uint64_t)max_output;
	c->ring_cap = (size_t)tail_max;
	if (c->ring_cap && !(c->ring = malloc(c->ring_cap)))
		return -ENOMEM;
	buf_init(&c->pend[0], EXEC_LOG_CHUNK_MAX);
	buf_init(&c->pend[1], EXEC_LOG_CHUNK_MAX);
	buf_init(&c->scratch, 3 * EXEC_LOG_CHUNK_MAX + 16);
	return 0;
}

static void exec_capture_free(struct exec_capture *c)
{
	free(c->ring);
	buf_free(&c->pend[0]);
	buf_free(&c->pend[1]);
	buf_free(&c->scratch);
}

/* Replaces every occurrence of each secret in b by "***", in place (it only shrinks). */
static void exec_mask_buf(const char *const *secrets, size_t n, struct buf *b)
{
	for (size_t i = 0; i < n; i++) {
		size_t sl = strlen(secrets[i]), w = 0, r = 0;
		if (sl < EXEC_MASK_MIN || !b->data)
			continue;
		while (r < b->len) {
			char *hit = memmem(b->data + r, b->len - r, secrets[i], sl);
			size_t pre = hit ? (size_t)(hit - (b->data + r)) : b->len - r;
			memmove(b->data + w, b->data + r, pre);
			w += pre;
			r += pre;
			if (!hit)
				break;
			memcpy(b->data + w, "***", 3);
			w += 3;
			r += sl;
		}
		b->len = w;
		if (b->cap > w)
			b->data[w] = '\0';
	}
}

/* The longest end of data that is the beginning (not the whole) of a secret: those bytes wait
 * for the next chunk, so a secret written in two pieces is still masked whole. */
static size_t exec_mask_pending(const struct exec_capture *c, const char *data, size_t len)
{
	size_t hold = 0;
	for (size_t i = 0; i < c->nsecrets; i++) {
		const char *sec = c->secrets[i];
		size_t sl = strlen(sec), from;
		if (sl < EXEC_MASK_MIN || sl > EXEC_MASK_HOLD)
			continue;
		from = len > sl - 1 ? len - (sl - 1) : 0;
		for (const char *p = data + from; p < data + len && (size_t)(data + len - p) > hold;) {
			const char *hit = memchr(p, sec[0], (size_t)(data + len - p));
			if (!hit)
				break;
			if (memcmp(hit, sec, (size_t)(data + len - hit)) == 0) {
				hold = (size_t)(data + len - hit);
				break;
			}
			p = hit + 1;
		}
	}
	return hold;
}

static void exec_capture_flush(struct exec_capture *c, int s, int final)
{
	struct buf *p = &c->pend[s];
	size_t cut = final ? p->len : exec_utf8_complete(p->data, p->len);
	int r;

	if (!final && c->nsecrets && cut > 0) {
		size_t hold = exec_mask_pending(c, p->data, cut);
		cut = exec_utf8_complete(p->data, cut - hold);
	}
	if (!c->hooks || cut == 0)
		return;
	buf_reset(&c->scratch);
	r = exec_utf8_sanitize(p->data, cut, &c->scratch);
	if (r == 0)
		exec_mask_buf(c->secrets, c->nsecrets, &c->scratch);
	/* Replacement characters can grow the chunk: send it in pieces of at most
	 * EXEC_LOG_CHUNK_MAX bytes, never splitting a character. */
	for (size_t off = 0; r == 0 && off < c->scratch.len;) {
		size_t n = c->scratch.len - off;
		if (n > EXEC_LOG_CHUNK_MAX) {
			n = EXEC_LOG_CHUNK_MAX;
			while (n > 0 && ((unsigned char)c->scratch.data[off + n] & 0xc0) == 0x80)
				n--;
		}
		r = c->hooks->log(c->hooks->userdata, exec_stream_names[s], c->seq++,
				  c->scratch.data + off, n);
		off += n;
	}
	if (r < 0)
		c->truncated = 1;
	buf_consume(p, cut);
	c->pend_since[s] = p->len ? util_mono_ms() : 0;
}

static void exec_capture_add(struct exec_capture *c, int s, const char *data, size_t n)
{
	uint64_t room = c->total < c->max_output ? c->max_output - c->total : 0;
	size_t keep = room < n ? (size_t)room : n;

	c->total += n;
	if (keep < n)
		c->truncated = 1;
	/* The tail always shows how the stream ended, whatever the cap discarded. */
	if (c->ring_cap) {
		const char *src = n > c->ring_cap ? data + n - c->ring_cap : data;
		size_t m = n > c->ring_cap ? c->ring_cap : n;
		size_t first = c->ring_cap - c->ring_head < m ? c->ring_cap - c->ring_head : m;
		memcpy(c->ring + c->ring_head, src, first);
		memcpy(c->ring, src + first, m - first);
		c->ring_head = (c->ring_head + m) % c->ring_cap;
		c->ring_len = c->ring_len + m > c->ring_cap ? c->ring_cap : c->ring_len + m;
	}
	if (!c->hooks)
		return;
	while (keep > 0) {
		struct buf *p = &c->pend[s];
		size_t space = p->max - p->len, m;
		if (space == 0) {
			exec_capture_flush(c, s, 0);
			space = p->max - p->len;
			if (space == 0) /* cannot happen: a flush leaves at most 3 + EXEC_MASK_HOLD bytes */
				break;
		}
		m = keep < space ? keep : space;
		if (p->len == 0)
			c->pend_since[s] = util_mono_ms();
		(void)buf_append(p, data, m);
		data += m;
		keep -= m;
	}
}

/* The tail as valid UTF-8 of at most ring_cap bytes (new string). */
static char *exec_capture_tail(struct exec_capture *c)
{
	struct buf raw, out;
	size_t start = 0, skip = 0;
	char *ret;

	buf_init(&raw, c->ring_cap + 1);
	buf_init(&out, 3 * c->ring_cap + 16);
	if (c->ring_len == c->ring_cap && c->ring_cap) {
		(void)buf_append(&raw, c->ring + c->ring_head, c->ring_cap - c->ring_head);
		(void)buf_append(&raw, c->ring, c->ring_head);
	} else if (c->ring_len) {
		(void)buf_append(&raw, c->ring, c->ring_len);
	}
	/* The tail began mid-stream: drop a partial character at its start. */
	if (c->total > c->ring_cap)
		while (skip < 3 && skip < raw.len && ((unsigned char)raw.data[skip] & 0xc0) == 0x80)
			skip++;
	if (exec_utf8_sanitize(raw.data ? raw.data + skip : "", raw.len - skip, &out) < 0 ||
	    buf_append(&out, "", 0) < 0) {
		buf_free(&raw);
		buf_free(&out);
		return strdup("");
	}
	exec_mask_buf(c->secrets, c->nsecrets, &out);
	/* The tail may begin inside a secret: mask a leading piece of 3 bytes or more that ends
	 * one. */
	if (c->total > c->ring_cap)
		for (size_t i = 0; i < c->nsecrets && out.data; i++) {
			size_t sl = strlen(c->secrets[i]);
			for (size_t k = sl > 1 ? sl - 1 : 0; sl >= EXEC_MASK_MIN && k >= 3; k--)
				if (k <= out.len && memcmp(out.data, c->secrets[i] + sl - k, k) == 0) {
					memcpy(out.data, "***", 3);
					memmove(out.data + 3, out.data + k, out.len - k + 1);
					out.len -= k - 3;
					break;
				}
		}
	/* Replacement characters can make it longer than the cap: keep the end. */
	while (out.len - start > c->ring_cap) {
		start++;
		while (start < out.len && ((unsigned char)out.data[start] & 0xc0) == 0x80)
			start++;
	}
	ret = strdup(out.data + start);
	buf_free(&raw);
	buf_free(&out);
	return ret;
}

/* ---- the task ---------------------------------------------------------------------------- */

struct exec_env {
	char *name, *value;
	int secret;
};

struct exec_task {
	char *task_uid, *namespace_, *name;
	int64_t attempt, deadline_ms, max_output, tail_max;
	char **command;        /* raw, unexpanded; NULL-terminated */
	size_t ncommand;
	struct exec_env *env;  /* from the dispatch */
	size_t nenv;
	char *working_dir;     /* may be NULL */
	char *input;           /* serialized JSON */
	char cmd_label[160];   /* raw command[0] for messages: never an expanded value */
	char spec_error[256];  /* non-empty: InvalidSpec */
	char *work_root;
	int drop_uid;
	int killfd;            /* eventfd: exec_task_kill() wakes the poll loop */
	atomic_int kill_why;
	enum proto_executor kind;
	struct httpx_spec *http;  /* http and remote executors */
	int64_t memory_bytes, cpu_seconds;
	const char **secrets;  /* env values and spec values marked secret (borrowed) */
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
	if (exec_utf8_sanitize(r->message, strlen(r->message), &msg) == 0 &&
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

/* ---- work dir ---------------------------------------------------------------------------- */

struct exec_workdir {
	int rootfd, dirfd;
	char name[32];           /* "tasked-XXXXXX" below the root */
	char path[PATH_MAX];     /* absolute */
	char cwd[PATH_MAX];      /* path + workingDir */
	char input[PATH_MAX + 32], output[PATH_MAX + 32];
	struct iso_task iso;     /* the task's private /tmp (isolate.h) */
};

static int exec_workdir_make(struct exec_task *t, struct exec_workdir *w, char *err, size_t errsz)
{
	char tmpl[PATH_MAX];
	int n, fd, r;
	const char *slash;

	w->rootfd = w->dirfd = -1;
	n = snprintf(tmpl, sizeof(tmpl), "%s/tasked-XXXXXX", t->work_root);
	if (n < 0 || (size_t)n >= sizeof(tmpl) - 64) {
		snprintf(err, errsz, "work dir: path too long");
		return -ENAMETOOLONG;
	}
	if (!mkdtemp(tmpl)) {
		r = -errno;
		snprintf(err, errsz, "work dir: mkdtemp in %s: %s", t->work_root, exec_strerror(-r));
		return r;
	}
	memcpy(w->path, tmpl, (size_t)n + 1);
	slash = strrchr(w->path, '/');
	snprintf(w->name, sizeof(w->name), "%s", slash + 1);
	w->rootfd = open(t->work_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	w->dirfd = w->rootfd < 0 ? -1 :
		openat(w->rootfd, w->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (w->dirfd < 0)
		goto fail;
	if (fchmod(w->dirfd, 0700) < 0 ||
	    (t->drop_uid && fchown(w->dirfd, EXEC_TASK_UID, EXEC_TASK_GID) < 0))
		goto fail;
	if ((r = iso_prepare(&w->iso, w->dirfd, w->path, t->memory_bytes, err, errsz)) < 0)
		return r;
	snprintf(w->input, sizeof(w->input), "%s/%s", w->path, EXEC_INPUT_NAME);
	snprintf(w->output, sizeof(w->output), "%s/%s", w->path, EXEC_OUTPUT_NAME);

	/* $TASKED_INPUT, written before the task exists, owned by the task's uid. */
	fd = openat(w->dirfd, EXEC_INPUT_NAME,
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		goto fail;
	for (size_t off = 0, len = strlen(t->input); off < len;) {
		ssize_t k = write(fd, t->input + off, len - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = -errno;
			close(fd);
			errno = -r;
			goto fail;
		}
		off += (size_t)k;
	}
	if ((t->drop_uid && fchown(fd, EXEC_TASK_UID, EXEC_TASK_GID) < 0) || close(fd) < 0)
		goto fail;

	/* workingDir: created component by component below the work dir, never through a link. */
	n = snprintf(w->cwd, sizeof(w->cwd), "%s%s%s", w->path, t->working_dir ? "/" : "",
		     t->working_dir ? t->working_dir : "");
	if (n < 0 || (size_t)n >= sizeof(w->cwd)) {
		errno = ENAMETOOLONG;
		goto fail;
	}
	if (t->working_dir) {
		char comp[NAME_MAX + 1];
		int cur = fcntl(w->dirfd, F_DUPFD_CLOEXEC, 3);
		const char *p = t->working_dir;
		if (cur < 0)
			goto fail;
		while (*p) {
			size_t len = strcspn(p, "/");
			int next;
			if (len > NAME_MAX) {
				close(cur);
				errno = ENAMETOOLONG;
				goto fail;
			}
			memcpy(comp, p, len);
			comp[len] = '\0';
			p += len;
			while (*p == '/')
				p++;
			if (len == 0)
				continue;
			if (mkdirat(cur, comp, 0700) == 0) {
				if (t->drop_uid &&
				    fchownat(cur, comp, EXEC_TASK_UID, EXEC_TASK_GID, AT_SYMLINK_NOFOLLOW) < 0) {
					close(cur);
					goto fail;
				}
			} else if (errno != EEXIST) {
				close(cur);
				goto fail;
			}
			next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			close(cur);
			if (next < 0)
				goto fail;
			cur = next;
		}
		close(cur);
	}
	return 0;
fail:
	r = -errno;
	snprintf(err, errsz, "work dir: %s", exec_strerror(-r));
	return r < 0 ? r : -EIO;
}

static void exec_workdir_remove(struct exec_task *t, struct exec_workdir *w)
{
	int r = 0;

	if (w->dirfd >= 0) {
		(void)fchmod(w->dirfd, 0700);
		r = util_rm_contents(w->dirfd);
		close(w->dirfd);
		w->dirfd = -1;
	}
	if (w->rootfd >= 0 && w->name[0]) {
		if (unlinkat(w->rootfd, w->name, AT_REMOVEDIR) < 0 && r == 0)
			r = -errno;
		close(w->rootfd);
		w->rootfd = -1;
	}
	if (r < 0)
		log_warn("could not remove work dir", "taskUid", t->task_uid, "path", w->path,
			 "error", exec_strerror(-r));
}

/* Reads $TASKED_OUTPUT through the work dir fd: no symlink, a regular file the task owns,
 * at most EXEC_OUTPUT_MAX bytes of JSON. Sets *ret or writes why not into msg. Returns 1 when
 * the output is JSON nested deeper than PROTO_MAX_OUTPUT_DEPTH (the task fails), else 0. */
static int exec_read_output(struct exec_task *t, struct exec_workdir *w, json_t **ret, char *msg,
			    size_t msgsz)
{
	char data[EXEC_OUTPUT_MAX + 1];
	size_t len = 0;
	struct stat st;
	json_error_t jerr;
	int fd, deep;

	*ret = NULL;
	msg[0] = '\0';
	fd = openat(w->dirfd, EXEC_OUTPUT_NAME,
		    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			snprintf(msg, msgsz, "output: cannot open: %s",
				 errno == ELOOP ? "is a symbolic link" : exec_strerror(errno));
		return 0;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
	    st.st_uid != (t->drop_uid ? (uid_t)EXEC_TASK_UID : geteuid())) {
		snprintf(msg, msgsz, "output: not a regular file owned by the task");
		close(fd);
		return 0;
	}
	while (len < sizeof(data)) {
		ssize_t n = read(fd, data + len, sizeof(data) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(msg, msgsz, "output: read: %s", exec_strerror(errno));
			close(fd);
			return 0;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len > EXEC_OUTPUT_MAX) {
		snprintf(msg, msgsz, "output exceeds %d bytes", EXEC_OUTPUT_MAX);
		return 0;
	}
	if (strspn(data, " \t\r\n") >= len && memchr(data, '\0', len) == NULL)
		return 0; /* empty: no output */
	*ret = proto_load_output(data, len, &deep, &jerr);
	if (deep) {
		snprintf(msg, msgsz, "output nests deeper than %d levels", PROTO_MAX_OUTPUT_DEPTH);
		return 1;
	}
	if (!*ret)
		snprintf(msg, msgsz, "output: invalid JSON at line %d column %d", jerr.line,
			 jerr.column);
	return 0;
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
	const char *secret;             /* the first secret variable referenced, or NULL */
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

/* ---- the child ------------------------------------------------------------------------- */

/* The runner forks a small per-task init (bubblewrap's --die-with-parent done so that it also
 * reaches grandchildren), and the init forks the task:
 *
 *   runner ── init (runner's uid; setsid; child subreaper; PDEATHSIG = SIGTERM)
 *               └─ task (own process group; 65532 when the runner is root; no_new_privs;
 *                        seccomp; execve)
 *
 * The init waits for the task. When the task's main process exits, when the runner asks
 * (SIGTERM: cancel, timeout, shutdown) or when the runner dies (even by SIGKILL: the parent-death
 * signal is catchable on purpose), it kills the task's process group and then every process
 * that still is its child — the ones that left the group with setsid or setpgid come back to it
 * as subreaper — until none is left, and reports the main process's wait status. Everything in
 * both children runs after fork() in a copy of a multithreaded process: async-signal-safe calls
 * on data prepared before the fork, only. */

enum exec_step {
	STEP_PDEATHSIG, STEP_SETSID, STEP_RLIMIT, STEP_STDIO, STEP_FDS, STEP_SIGNALS, STEP_UID,
	STEP_NNP, STEP_CHDIR, STEP_EXEC, STEP_INIT, STEP_PGID, STEP_SECCOMP, STEP_LANDLOCK, STEP_ISOLATE,
	STEP_CGROUP,
};
static const char *const exec_step_names[] = {
	"prctl(PR_SET_PDEATHSIG)", "setsid", "setrlimit", "dup2", "close fds", "signals",
	"drop privileges", "prctl(PR_SET_NO_NEW_PRIVS)", "chdir", "exec", "task init", "setpgid",
	"seccomp", "landlock_restrict_self", "private /tmp, /dev/shm and IPC namespaces", "join the task's memory cgroup",
};

/* task -> init: why the task did not exec (nothing on success: the pipe closes on execve) */
struct exec_child_status {
	int32_t step, err;
};

/* init -> runner, in order: STARTED or FAILED, then EXIT once the task and its processes are
 * gone. Small fixed records: each write is atomic. */
enum { INIT_STARTED = 1, INIT_FAILED, INIT_EXIT };
struct exec_init_msg {
	int32_t kind, pid, step, val; /* FAILED: val = errno; EXIT: val = the task's wait status */
};

struct exec_child {
	const char *path;
	char **argv, **envp;
	const char *cwd;
	int null_r, out_w, err_w, status_w;
	int ll_fd;                      /* the task's Landlock ruleset (landlock.h), or -1 */
	const struct iso_task *iso;     /* namespaces and mounts the init sets up (isolate.h) */
	const struct cg_task *cg;       /* the memory cgroup the init joins (cgroup.h) */
	pid_t parent;
	int drop_uid;
	unsigned max_fd;
	size_t nrl;
	struct {
		int res;
		struct rlimit lim;
	} rl[8];
	sigset_t empty, all, initsigs;
	const struct sock_fprog *filter;
};

static void exec_put_msg(int fd, int kind, pid_t pid, int step, int val)
{
	struct exec_init_msg m = { kind, (int32_t)pid, step, val };
	while (write(fd, &m, sizeof(m)) < 0 && errno == EINTR)
		;
}

static __attribute__((noreturn)) void exec_child_fail(int fd, int step, int err)
{
	struct exec_child_status s = { step, err };
	(void)!write(fd, &s, sizeof(s));
	_exit(127);
}

static void exec_close_from(unsigned from, unsigned max_fd)
{
	if (syscall(SYS_close_range, from, ~0U, 0U) < 0)
		for (unsigned fd = from; fd < max_fd; fd++)
			(void)close((int)fd);
}

/* The task: from the init's fork to execve. */
static __attribute__((noreturn)) void exec_task_child(const struct exec_child *c, pid_t init, int sfd)
{
	struct sigaction dfl;

	/* 1. Die with the init (which outlives the task unless killed itself). */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		exec_child_fail(sfd, STEP_PDEATHSIG, errno);
	if (getppid() != init)
		_exit(127);
	/* 2. Own process group in the init's session: kill(-pgid) reaches the whole task and not
	 *    the init. */
	if (setpgid(0, 0) < 0)
		exec_child_fail(sfd, STEP_PGID, errno);
	/* 3. Resource limits (hard = soft, so the task cannot raise them back; CPU: soft gives
	 *    SIGXCPU, hard one second later SIGKILL). */
	for (size_t i = 0; i < c->nrl; i++)
		if (setrlimit((__rlimit_resource_t)c->rl[i].res, &c->rl[i].lim) < 0)
			exec_child_fail(sfd, STEP_RLIMIT, errno);
	/* 4. fds 0-2 are /dev/null and the capture pipes already (the init's). The status pipe
	 *    moves to 3 (close-on-exec), over the init's pipe to the runner, and everything above
	 *    is closed. */
	if (sfd != 3) {
		if (dup3(sfd, 3, O_CLOEXEC) < 0)
			exec_child_fail(sfd, STEP_FDS, errno);
		sfd = 3;
	}
	exec_close_from(c->ll_fd >= 0 ? 5 : 4, c->max_fd);
	/* 5. Default signal dispositions and an empty mask (ignored signals survive execve). */
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)sigaction(sig, &dfl, NULL);
	if (sigprocmask(SIG_SETMASK, &c->empty, NULL) < 0)
		exec_child_fail(sfd, STEP_SIGNALS, errno);
	/* 6. Never run a task as root. Raw syscalls: only this thread exists in the child. A
	 *    credential change clears PDEATHSIG, so set it again. */
	if (c->drop_uid) {
		if (syscall(SYS_setgroups, 0, NULL) < 0 ||
		    syscall(SYS_setresgid, EXEC_TASK_GID, EXEC_TASK_GID, EXEC_TASK_GID) < 0 ||
		    syscall(SYS_setresuid, EXEC_TASK_UID, EXEC_TASK_UID, EXEC_TASK_UID) < 0)
			exec_child_fail(sfd, STEP_UID, errno);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
			exec_child_fail(sfd, STEP_PDEATHSIG, errno);
		if (getppid() != init)
			_exit(127);
	}
	/* 7. No setuid binary or file capability can give privileges back (and seccomp needs it). */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		exec_child_fail(sfd, STEP_NNP, errno);
	/* 7b. A Landlock domain of its own (the ruleset is on fd 4, from the init): no reach
	 *     into other tasks' or the runner's /proc, no token file. */
	if (c->ll_fd >= 0) {
		int e = ll_restrict(4);
		if (e < 0)
			exec_child_fail(sfd, STEP_LANDLOCK, -e);
		(void)close(4);
	}
	/* 8. The task's working directory, checked with the task's own credentials. */
	if (chdir(c->cwd) < 0)
		exec_child_fail(sfd, STEP_CHDIR, errno);
	/* 9. The seccomp filter, compiled by the runner before fork, loaded last: after it
	 *    nothing but execve (and the failure report). */
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, c->filter, 0, 0) < 0)
		exec_child_fail(sfd, STEP_SECCOMP, errno);
	/* 10. execve: a success closes the status pipe (O_CLOEXEC) and the init reads EOF. */
	execve(c->path, c->argv, c->envp);
	exec_child_fail(sfd, STEP_EXEC, errno);
}

/* Decimal for paths, without stdio (not async-signal-safe). */
static char *exec_utoa(char *end, unsigned long v)
{
	*--end = '\0';
	do
		*--end = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	return end;
}

static void exec_init_kill_one(pid_t pid)
{
	/* pid is our unreaped child, so neither it nor a group it leads can be a reused id. */
	if (pid > 1) {
		(void)kill(pid, SIGKILL);
		(void)kill(-pid, SIGKILL);
	}
}

/* Fallback when /proc/PID/task/TID/children is missing: every /proc/N/stat whose ppid is ours. */
static void exec_init_scan_proc(pid_t self)
{
	char dents[4096], path[64], stat[512], num[24];
	int dfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	long n;

	if (dfd < 0)
		return;
	while ((n = syscall(SYS_getdents64, dfd, dents, sizeof(dents))) > 0) {
		for (long off = 0; off < n;) {
			struct {
				uint64_t ino;
				int64_t off;
				unsigned short reclen;
				unsigned char type;
				char name[];
			} *d = (void *)(dents + off);
			unsigned long pid = 0, ppid = 0;
			const char *q;
			int fd, ok = d->name[0] != '\0';
			ssize_t len;

			off += d->reclen;
			for (q = d->name; *q && ok; q++)
				ok = *q >= '0' && *q <= '9';
			if (!ok)
				continue;
			for (q = d->name; *q; q++)
				pid = pid * 10 + (unsigned long)(*q - '0');
			memcpy(path, "/proc/", 6);
			q = exec_utoa(num + sizeof(num), pid);
			memcpy(path + 6, q, strlen(q));
			memcpy(path + 6 + strlen(q), "/stat", 6);
			fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			len = read(fd, stat, sizeof(stat) - 1);
			close(fd);
			if (len <= 0)
				continue;
			stat[len] = '\0';
			q = strrchr(stat, ')'); /* comm may hold spaces and parentheses */
			if (!q || q[1] != ' ' || !q[2] || q[3] != ' ')
				continue;
			for (q += 4; *q >= '0' && *q <= '9'; q++)
				ppid = ppid * 10 + (unsigned long)(*q - '0');
			if (ppid == (unsigned long)self)
				exec_init_kill_one((pid_t)pid);
		}
	}
	close(dfd);
}

/* SIGKILL to every child of the init: the task's processes that left its group and orphans
 * reparented to the init as subreaper. */
static void exec_init_kill_children(pid_t self)
{
	char path[80], buf[4096], num[24];
	const char *s = exec_utoa(num + sizeof(num), (unsigned long)self);
	size_t sl = strlen(s);
	unsigned long cur = 0;
	int fd, in = 0;
	ssize_t n;

	memcpy(path, "/proc/self/task/", 16);
	memcpy(path + 16, s, sl);
	memcpy(path + 16 + sl, "/children", 10);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		exec_init_scan_proc(self);
		return;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] >= '0' && buf[i] <= '9') {
				cur = cur * 10 + (unsigned long)(buf[i] - '0');
				in = 1;
			} else if (in) {
				exec_init_kill_one((pid_t)cur);
				cur = 0;
				in = 0;
			}
		}
	if (in)
		exec_init_kill_one((pid_t)cur);
	close(fd);
}

/* Kills and reaps everything the task left. Returns once the init has no child, or after
 * EXEC_SWEEP_ROUNDS rounds (processes stuck in the kernel go to the runner, which reaps). */
static void exec_init_sweep(pid_t self, pid_t task, int *task_status)
{
	struct timespec ms = { 0, 1000000L };
	pid_t r;
	int st;

	/* The task's group first, while its leader is unreaped: the pgid cannot be reused yet. */
	(void)kill(-task, SIGKILL);
	for (int round = 0; round < EXEC_SWEEP_ROUNDS; round++) {
		exec_init_kill_children(self);
		while ((r = waitpid(-1, &st, WNOHANG)) > 0)
			if (r == task)
				*task_status = st;
		if (r < 0 && errno == ECHILD)
			return;
		(void)nanosleep(&ms, NULL);
	}
}

/* Reads the task's exec status (a record: it failed; EOF: it exec'd) and tells the runner. */
static void exec_init_report(int tst, int sfd, pid_t task)
{
	struct exec_child_status cs;
	ssize_t n;
	do
		n = read(tst, &cs, sizeof(cs));
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof(cs))
		exec_put_msg(sfd, INIT_FAILED, task, cs.step, cs.err);
	else
		exec_put_msg(sfd, INIT_STARTED, task, 0, 0);
}

/* The per-task init: from the runner's fork to _exit. */
static __attribute__((noreturn)) void exec_init_run(const struct exec_child *c)
{
	int sfd = c->status_w, sigfd, tp[2], killreq = 0, texited = 0, tstatus = (128 + SIGKILL) << 8;
	pid_t self, task;

	/* 1. Every signal blocked: SIGTERM and SIGCHLD are read from a signalfd. */
	(void)sigprocmask(SIG_SETMASK, &c->all, NULL);
	/* 2. The runner's death (its forking thread's, in fact) arrives as SIGTERM, catchable, so
	 *    the task tree is killed before the init goes; then close the race with the parent
	 *    dying before prctl(). */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) < 0) {
		exec_put_msg(sfd, INIT_FAILED, 0, STEP_PDEATHSIG, errno);
		_exit(127);
	}
	if (getppid() != c->parent)
		_exit(127);
	/* 3. Own session: no terminal, and away from the runner's process group. */
	if (setsid() < 0) {
		exec_put_msg(sfd, INIT_FAILED, 0, STEP_SETSID, errno);
		_exit(127);
	}
	/* 4. Orphans of the task come back here rather than to the runner. */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
		exec_put_msg(sfd, INIT_FAILED, 0, STEP_INIT, errno);
		_exit(127);
	}
	/* 4b. The task's memory cgroup: the init and everything it forks count against it. */
	{
		int e = cg_task_join(c->cg);
		if (e < 0) {
			exec_put_msg(sfd, INIT_FAILED, 0, STEP_CGROUP, -e);
			_exit(127);
		}
	}
	/* 4c. Private /tmp, /dev/shm and IPC, shared by the init and the task, gone with both. */
	{
		int e = iso_enter(c->iso);
		if (e < 0) {
			exec_put_msg(sfd, INIT_FAILED, 0, STEP_ISOLATE, -e);
			_exit(127);
		}
	}
	/* 5. The task's stdio on 0-2, the pipe to the runner on 3, nothing else: this copy of the
	 *    runner holds its sockets and other tasks' pipes, and O_CLOEXEC does not help a
	 *    process that never execs. The task's Landlock ruleset, if any, on 4 (it is numbered
	 *    10 or more, so none of these dup2 calls overwrites it). */
	if (dup2(c->null_r, STDIN_FILENO) < 0 || dup2(c->out_w, STDOUT_FILENO) < 0 ||
	    dup2(c->err_w, STDERR_FILENO) < 0 || (sfd != 3 && dup2(sfd, 3) < 0) ||
	    (c->ll_fd >= 0 && dup2(c->ll_fd, 4) < 0)) {
		exec_put_msg(sfd, INIT_FAILED, 0, STEP_STDIO, errno);
		_exit(127);
	}
	sfd = 3;
	exec_close_from(c->ll_fd >= 0 ? 5 : 4, c->max_fd);
	sigfd = signalfd(-1, &c->initsigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0 || pipe2(tp, O_CLOEXEC) < 0) {
		exec_put_msg(sfd, INIT_FAILED, 0, STEP_INIT, errno);
		_exit(127);
	}
	self = getpid();
	/* 6. The task. A raw clone: glibc's fork() would run atfork handlers that may take locks
	 *    some runner thread held when the init was forked. */
	task = (pid_t)syscall(SYS_clone, (unsigned long)SIGCHLD, 0UL, 0UL, 0UL, 0UL);
	if (task == 0) {
		close(tp[0]);
		exec_task_child(c, self, tp[1]);
	}
	if (task < 0) {
		exec_put_msg(sfd, INIT_FAILED, 0, STEP_INIT, errno);
		_exit(127);
	}
	close(tp[1]);
	/* No end of the capture pipes stays here: the runner sees EOF once the task's processes
	 * are gone. */
	(void)dup2(STDIN_FILENO, STDOUT_FILENO);
	(void)dup2(STDIN_FILENO, STDERR_FILENO);

	/* 7. Wait: for the exec status, then for the task's exit or a SIGTERM. */
	for (int tst = tp[0];;) {
		struct pollfd p[2] = { { .fd = sigfd, .events = POLLIN }, { .fd = tst, .events = POLLIN } };
		struct signalfd_siginfo si;

		if (poll(p, tst >= 0 ? 2 : 1, -1) < 0 && errno != EINTR)
			_exit(126);
		if (tst >= 0 && p[1].revents) {
			exec_init_report(tst, sfd, task);
			close(tst);
			tst = -1;
		}
		while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
			if (si.ssi_signo == SIGTERM)
				killreq = 1;
		/* Reap the others as they go; the task itself stays unreaped (so its pgid stays
		 * valid for the sweep) and is only noted. */
		for (;;) {
			siginfo_t wi;
			memset(&wi, 0, sizeof(wi));
			if (waitid(P_ALL, 0, &wi, WEXITED | WNOHANG | WNOWAIT) < 0 || wi.si_pid == 0)
				break;
			if (wi.si_pid == task) {
				texited = 1;
				break;
			}
			(void)waitpid(wi.si_pid, NULL, WNOHANG);
		}
		if (killreq || (texited && tst < 0)) {
			exec_init_sweep(self, task, &tstatus);
			if (tst >= 0) /* killed before the exec was reported: nobody waits for it */
				exec_init_report(tst, sfd, task);
			exec_put_msg(sfd, INIT_EXIT, task, 0, tstatus);
			_exit(0);
		}
	}
}

static void exec_rlimit(struct exec_child *c, int res, uint64_t soft, uint64_t hard)
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
	struct exec_workdir w;
	struct cg_task cg;
	struct exec_capture cap;
	char **argv, **envp;
	char path[PATH_MAX];
	int out_r, err_r, status_r, pidfd;
	pid_t pid;           /* the init */
	pid_t task_pid;      /* the task's main process (and its pgid) */
	int status;          /* wait status of the task's main process */
	int64_t kill_sent;   /* monotonic ms of the first kill request; 0 = none */
	enum { KILLED_NONE, KILLED_CANCEL, KILLED_SHUTDOWN, KILLED_TIMEOUT, KILLED_CPU } killed;
	int64_t cpu_check;   /* monotonic ms of the next look at the task's cpuacct cgroup; 0 = none */
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
	struct exec_child c = { 0 };
	struct rlimit nofile;
	int outp[2] = { -1, -1 }, errp[2] = { -1, -1 }, stp[2] = { -1, -1 }, null_r = -1, r = 0;

	c.ll_fd = -1;
	c.filter = sbx_filter();
	if (!c.filter) {
		exec_set(res, "Failed", "Internal", -1, "spawn: the seccomp filter is not available");
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
		exec_set(res, "Failed", "Internal", -1, "spawn: landlock ruleset: %s", exec_strerror(-r));
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
			   nofile.rlim_max < (1U << 20) ? (unsigned)nofile.rlim_max : (1U << 20);
	sigemptyset(&c.empty);
	sigfillset(&c.all);
	sigemptyset(&c.initsigs);
	sigaddset(&c.initsigs, SIGTERM);
	sigaddset(&c.initsigs, SIGCHLD);
	exec_rlimit(&c, RLIMIT_CORE, 0, 0);
	exec_rlimit(&c, RLIMIT_NOFILE, EXEC_NOFILE, EXEC_NOFILE);
	{
		uint64_t fsz = (uint64_t)(t->max_output > EXEC_FSIZE_MIN ? t->max_output : EXEC_FSIZE_MIN);
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
	x->pid = fork();
	if (x->pid == 0)
		exec_init_run(&c);
	if (x->pid < 0) {
		r = -errno;
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
		exec_capture_add(&x->cap, s, chunk, (size_t)n);
	}
}

/* Marks the main child as exited: kills what is left of its group while the zombie still holds
 * the pgid (so the number cannot have been reused), then reaps it. */
/* The init exited: reap it and take the task's wait status from its EXIT record. */
static void exec_on_exit(struct exec_run *x)
{
	struct exec_init_msg im = { 0 };
	int st = 0;

	while (waitpid(x->pid, &st, 0) < 0 && errno == EINTR)
		;
	exec_live_del(x->pid);
	if (exec_read_full(x->status_r, &im, sizeof(im)) == (int)sizeof(im) && im.kind == INIT_EXIT) {
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
				timeout = (int)(t->deadline_ms - wall > 60000 ? 60000 : t->deadline_ms - wall);
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
		for (int s = 0; s < 2; s++) {
			if (!x->cap.pend_since[s])
				continue;
			int64_t due = x->cap.pend_since[s] + EXEC_LOG_FLUSH_MS - now;
			if (due <= 0) {
				exec_capture_flush(&x->cap, s, 0);
				due = x->cap.pend_since[s] ? EXEC_LOG_FLUSH_MS : -1;
			}
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
			log_error("poll failed", "taskUid", t->task_uid, "error", exec_strerror(errno));
			exec_sleep_ms(10);
		}
		if (p[ip_kill].revents & POLLIN) {
			uint64_t v;
			(void)!read(t->killfd, &v, sizeof(v));
			if (!exited && !x->killed) {
				x->killed = atomic_load(&t->kill_why) == EXEC_KILL_SHUTDOWN ? KILLED_SHUTDOWN :
											   KILLED_CANCEL;
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
	exec_capture_flush(&x->cap, 0, 1);
	exec_capture_flush(&x->cap, 1, 1);
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
		exec_set(res, "Failed", "TimedOut", code, "deadline exceeded: process group killed");
		break;
	case KILLED_CPU:
		exec_set(res, "Failed", "CPULimitExceeded", code,
			 "CPU time limit reached: %lld CPU seconds (resources.cpu × the attempt's timeout) used by "
			 "the task's processes together; process group killed", (long long)x->t->cpu_seconds);
		break;
	case KILLED_NONE:
		/* The OOM killer acted in the task's cgroup and the task did not succeed. */
		if (!(WIFEXITED(st) && code == 0) && (oom = cg_task_oom_kills(&x->cg, NULL)) > 0) {
			char lim[32];
			qty_format(x->cg.limit, 0, lim, sizeof(lim));
			exec_set(res, "Failed", "OOMKilled", code,
				 "memory limit %s (resources.memory) reached: the kernel's OOM killer stopped %lld "
				 "process%s of the task%s", lim, (long long)oom, oom == 1 ? "" : "es",
				 WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? "" : " (its main process then exited)");
		} else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGXCPU && x->t->cpu_seconds > 0)
			exec_set(res, "Failed", "CPULimitExceeded", code,
				 "CPU time limit reached: %lld CPU seconds (resources.cpu × the attempt's timeout) "
				 "used by one process; killed by SIGXCPU", (long long)x->t->cpu_seconds);
		else if (WIFEXITED(st) && code == 0)
			exec_set(res, "Succeeded", "Succeeded", 0, "exited with code 0");
		else if (WIFSIGNALED(st))
			exec_set(res, "Failed", "ExitCode", code, "killed by signal %d (SIG%s)",
				 WTERMSIG(st), sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st)) : "?");
		else
			exec_set(res, "Failed", "ExitCode", code, "exited with code %d", code);
		break;
	}
	if (exec_read_output(x->t, &x->w, &res->output, outmsg, sizeof(outmsg)) && strcmp(res->phase, "Succeeded") == 0) {
		exec_set(res, "Failed", "OutputTooDeep", code, "exited with code 0, but %s", outmsg);
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
			hit = strlen(t->secrets[i]) >= EXEC_MASK_MIN && strstr(s, t->secrets[i]);
		/* The escaped form too: a secret with quotes or backslashes is spelled differently. */
		for (size_t i = 0; s && !hit && i < t->nsecrets; i++) {
			json_t *j = json_string(t->secrets[i]);
			char *e = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
			if (e && strlen(e) > 2) {
				e[strlen(e) - 1] = '\0';
				hit = strlen(e + 1) >= EXEC_MASK_MIN && strstr(s, e + 1);
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
	buf_init(&m, sizeof(res->message));
	if (buf_append(&m, res->message, strlen(res->message) + 1) == 0) {
		exec_mask_buf(t->secrets, t->nsecrets, &m);
		memcpy(res->message, m.data, strlen(m.data) + 1);
	}
	buf_free(&m);
}

/* ---- http and remote tasks ------------------------------------------------------------- */

struct exec_http_ctx {
	struct exec_task *t;
	const struct exec_hooks *hooks;
	struct exec_capture *cap;
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
	exec_capture_add(c->cap, stream ? 1 : 0, data, len);
	/* no poll loop here: flush what is due at each piece */
	for (int s = 0; s < 2; s++)
		if (c->cap->pend_since[s] && util_mono_ms() - c->cap->pend_since[s] >= EXEC_LOG_FLUSH_MS)
			exec_capture_flush(c->cap, s, 0);
}

static void exec_run_http(struct exec_task *t, const struct exec_hooks *hooks,
			  struct exec_capture *cap, struct exec_result *res)
{
	struct exec_http_ctx c = { .t = t, .hooks = hooks, .cap = cap, .res = res };
	struct httpx_io io = {
		.killfd = t->killfd, .kill_why = exec_http_kill_why, .started = exec_http_started,
		.out = exec_http_out, .lookup = exec_env_lookup, .lookup_ud = &c.env,
		.secrets = (const char *const *)t->secrets, .nsecrets = t->nsecrets, .ud = &c,
		.deadline_ms = t->deadline_ms,
	};

	/* $(VAR) in the URL, headers and body: the task's own env entries only. */
	for (size_t i = 0; i < t->nenv; i++)
		exec_env_put(&c.env, t->env[i].name, t->env[i].value);
	httpx_run(t->http, &io, res);
	exec_capture_flush(cap, 0, 1);
	exec_capture_flush(cap, 1, 1);
}

int exec_task_run(struct exec_task *t, const struct exec_hooks *hooks, struct exec_result *res)
{
	struct exec_run x;
	struct exec_envset env = { .n = 0 };
	struct exec_init_msg im = { 0 };
	char attempt[24], err[256];
	int r, iso_begun = 0;

	memset(res, 0, sizeof(*res));
	memset(&x, 0, sizeof(x));
	x.t = t;
	x.out_r = x.err_r = x.status_r = x.pidfd = -1;
	x.w.rootfd = x.w.dirfd = -1;
	x.cg.mem_fd = x.cg.cpu_fd = -1;
	res->exit_code = -1;

	res->retryable = -1;
	if (exec_capture_init(&x.cap, hooks, t->max_output, t->tail_max) < 0) {
		exec_set(res, "Failed", "Internal", -1, "out of memory");
		goto done;
	}
	x.cap.secrets = t->secrets;
	x.cap.nsecrets = t->nsecrets;
	if (t->spec_error[0]) {
		exec_set(res, "Failed", "InvalidSpec", -1, "%s", t->spec_error);
		goto done;
	}
	switch (atomic_load(&t->kill_why)) {
	case EXEC_KILL_CANCEL:
		exec_set(res, "Cancelled", "Cancelled", -1, "cancelled before start");
		goto done;
	case EXEC_KILL_SHUTDOWN:
		exec_set(res, "Failed", "RunnerShutdown", -1, "runner shutting down before start");
		goto done;
	default:
		break;
	}
	if (t->deadline_ms > 0 && util_now_ms() >= t->deadline_ms) {
		exec_set(res, "Failed", "TimedOut", -1, "deadline passed before start");
		goto done;
	}
	if (t->kind != PROTO_EXEC_SHELL) {
		exec_run_http(t, hooks, &x.cap, res);
		goto done;
	}
	if (exec_workdir_make(t, &x.w, err, sizeof(err)) < 0) {
		exec_set(res, "Failed", "Internal", -1, "%s", err);
		goto done;
	}

	/* The task's environment: the dispatch's entries and ours, nothing of the runner's. */
	snprintf(attempt, sizeof(attempt), "%" PRId64, t->attempt);
	exec_env_put(&env, "PATH", EXEC_TASK_PATH);
	exec_env_put(&env, "HOME", x.w.path);
	exec_env_put(&env, "TMPDIR", x.w.iso.ns ? "/tmp" : x.w.iso.tmp);
	for (size_t i = 0; i < t->nenv; i++)
		exec_env_put(&env, t->env[i].name, t->env[i].value);
	exec_env_put(&env, "TASKED_INPUT", x.w.input);
	exec_env_put(&env, "TASKED_OUTPUT", x.w.output);
	exec_env_put(&env, "TASKED_TASK_NAME", t->name);
	exec_env_put(&env, "TASKED_TASK_NAMESPACE", t->namespace_);
	exec_env_put(&env, "TASKED_TASK_UID", t->task_uid);
	exec_env_put(&env, "TASKED_ATTEMPT", attempt);
	x.envp = exec_env_build(&env);
	x.argv = calloc(t->ncommand + 1, sizeof(char *));
	if (!x.envp || !x.argv) {
		exec_set(res, "Failed", "Internal", -1, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < t->ncommand; i++) {
		struct exec_argv_ctx ac = { &env, t, NULL };
		r = expand_vars(t->command[i], exec_argv_lookup, &ac, EXEC_ARG_MAX, &x.argv[i]);
		if (r < 0) {
			exec_set(res, "Failed", r == -E2BIG ? "InvalidSpec" : "Internal", -1,
				 "shell.command[%zu]: %s", i,
				 r == -E2BIG ? "expands past 131071 bytes" : exec_strerror(-r));
			goto done;
		}
		/* Arguments are public: /proc/PID/cmdline is readable by every process on the
		 * node, and audit and process monitors record them. A secret stays in the env. */
		if (ac.secret) {
			exec_set(res, "Failed", "InvalidSpec", -1,
				 "shell.command[%zu] uses the secret $(%s): arguments are visible to every "
				 "process on the node (/proc/PID/cmdline); read %s from the environment "
				 "instead (e.g. sh -c '... \"$%s\"' or in the program)",
				 i, ac.secret, ac.secret, ac.secret);
			goto done;
		}
	}
	r = exec_resolve(x.argv[0], x.path, sizeof(x.path));
	if (r < 0) {
		exec_set(res, "Failed", "ExecFailed", 127, "exec \"%s\": %s", t->cmd_label,
			 exec_strerror(-r));
		goto done;
	}

	if (((t->memory_bytes > 0 && cg_available()) || (t->cpu_seconds > 0 && cg_cpu_available())) &&
	    (r = cg_task_create(&x.cg, x.w.name, t->memory_bytes, t->cpu_seconds > 0)) < 0)
		log_warn("no cgroup for the task; rlimits instead", "taskUid", t->task_uid, "error",
			 exec_strerror(-r));
	if (x.cg.cpu_dir[0])
		x.cpu_check = util_mono_ms() + EXEC_CPU_CHECK_MS;
	/* Without namespaces, what the task leaves in /tmp, /dev/shm and IPC is removed once no
	 * task runs (isolate.h). */
	iso_begin();
	iso_begun = 1;
	if (exec_spawn(&x, res) < 0)
		goto done;
	/* The init's first record: STARTED (the task exec'd) or FAILED (step and errno; the task
	 * exits 127). */
	if (exec_read_full(x.status_r, &im, sizeof(im)) != (int)sizeof(im) || im.kind != INIT_STARTED) {
		int ok = im.kind == INIT_FAILED;
		while (waitpid(x.pid, &x.status, 0) < 0 && errno == EINTR)
			;
		exec_live_del(x.pid);
		if (ok && im.step == STEP_EXEC)
			exec_set(res, "Failed", "ExecFailed", 127, "exec \"%s\": %s", t->cmd_label,
				 exec_strerror(im.val));
		else if (ok)
			exec_set(res, "Failed", "ExecFailed", 127, "task setup failed at %s: %s",
				 (size_t)im.step < UTIL_ARRAY_SIZE(exec_step_names) ? exec_step_names[im.step] : "?",
				 exec_strerror(im.val));
		else
			exec_set(res, "Failed", "Internal", -1, "the task's init exited before the task started");
		res->pid = ok ? im.pid : 0;
		goto done;
	}
	x.task_pid = im.pid;
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
	res->end_ms = util_now_ms();
	exec_withhold_secrets(t, res);
	res->truncated = x.cap.truncated;
	res->log_tail = exec_capture_tail(&x.cap);
	exec_close(&x.status_r);
	exec_close(&x.pidfd);
	exec_close(&x.out_r);
	exec_close(&x.err_r);
	cg_task_remove(&x.cg);
	exec_workdir_remove(t, &x.w);
	exec_free_strv(x.argv, 1);
	exec_free_strv(x.envp, 1);
	exec_capture_free(&x.cap);
	return 0;
}
