/* Shell executor. The order of the child's setup and the reasons for each step are in
 * docs/runner.md; everything the child needs is prepared before fork() so that the code between
 * fork() and execve() only makes async-signal-safe calls. */
#include "exec.h"
#include "expand.h"
#include "log.h"
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
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
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
#define EXEC_RM_DEPTH 256
#define EXEC_MAX_LIVE 2048

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

static void exec_capture_flush(struct exec_capture *c, int s, int final)
{
	struct buf *p = &c->pend[s];
	size_t cut = final ? p->len : exec_utf8_complete(p->data, p->len);
	int r;

	if (!c->hooks || cut == 0)
		return;
	buf_reset(&c->scratch);
	r = exec_utf8_sanitize(p->data, cut, &c->scratch);
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
			if (space == 0) /* cannot happen: a flush leaves at most 3 bytes */
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
	t->tail_max = m->log_tail_max;
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
		if (!t->env[i].name || !t->env[i].value)
			goto oom;
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
	if (t->ncommand == 0)
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

/* Removes everything below dfd without following symlinks. Returns 0 or the first error. */
static int exec_rm_contents(int dfd, int depth)
{
	int fd, r = 0;
	DIR *d;
	struct dirent *e;

	if (depth > EXEC_RM_DEPTH)
		return -ELOOP;
	fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((e = readdir(d))) {
		int sub;
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (e->d_type != DT_DIR && unlinkat(dfd, e->d_name, 0) == 0)
			continue;
		if (e->d_type != DT_DIR && e->d_type != DT_UNKNOWN && errno != EISDIR) {
			if (r == 0)
				r = -errno;
			continue;
		}
		sub = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0 && errno == EACCES && fchmodat(dfd, e->d_name, 0700, 0) == 0)
			sub = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0) {
			if (unlinkat(dfd, e->d_name, 0) < 0 && r == 0)
				r = -errno;
			continue;
		}
		(void)fchmod(sub, 0700);
		int rr = exec_rm_contents(sub, depth + 1);
		close(sub);
		if (rr < 0 && r == 0)
			r = rr;
		if (unlinkat(dfd, e->d_name, AT_REMOVEDIR) < 0 && r == 0)
			r = -errno;
	}
	closedir(d);
	return r;
}

struct exec_workdir {
	int rootfd, dirfd;
	char name[32];           /* "tasked-XXXXXX" below the root */
	char path[PATH_MAX];     /* absolute */
	char cwd[PATH_MAX];      /* path + workingDir */
	char input[PATH_MAX + 32], output[PATH_MAX + 32];
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
		r = exec_rm_contents(w->dirfd, 0);
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
 * at most EXEC_OUTPUT_MAX bytes of JSON. Sets *ret or writes why not into msg. */
static void exec_read_output(struct exec_task *t, struct exec_workdir *w, json_t **ret, char *msg,
			     size_t msgsz)
{
	char data[EXEC_OUTPUT_MAX + 1];
	size_t len = 0;
	struct stat st;
	json_error_t jerr;
	int fd;

	*ret = NULL;
	msg[0] = '\0';
	fd = openat(w->dirfd, EXEC_OUTPUT_NAME,
		    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			snprintf(msg, msgsz, "output: cannot open: %s",
				 errno == ELOOP ? "is a symbolic link" : exec_strerror(errno));
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
	    st.st_uid != (t->drop_uid ? (uid_t)EXEC_TASK_UID : geteuid())) {
		snprintf(msg, msgsz, "output: not a regular file owned by the task");
		close(fd);
		return;
	}
	while (len < sizeof(data)) {
		ssize_t n = read(fd, data + len, sizeof(data) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(msg, msgsz, "output: read: %s", exec_strerror(errno));
			close(fd);
			return;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len > EXEC_OUTPUT_MAX) {
		snprintf(msg, msgsz, "output exceeds %d bytes", EXEC_OUTPUT_MAX);
		return;
	}
	if (strspn(data, " \t\r\n") >= len && memchr(data, '\0', len) == NULL)
		return; /* empty: no output */
	*ret = json_loadb(data, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	if (!*ret)
		snprintf(msg, msgsz, "output: invalid JSON at line %d column %d", jerr.line,
			 jerr.column);
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

enum exec_step {
	STEP_PDEATHSIG, STEP_SETSID, STEP_RLIMIT, STEP_STDIO, STEP_FDS, STEP_SIGNALS, STEP_UID,
	STEP_NNP, STEP_CHDIR, STEP_EXEC,
};
static const char *const exec_step_names[] = {
	"prctl(PR_SET_PDEATHSIG)", "setsid", "setrlimit", "dup2", "close fds", "signals",
	"drop privileges", "prctl(PR_SET_NO_NEW_PRIVS)", "chdir", "exec",
};

struct exec_child_status {
	int32_t step, err;
};

struct exec_child {
	const char *path;
	char **argv, **envp;
	const char *cwd;
	int null_r, out_w, err_w, status_w;
	pid_t parent;
	int drop_uid;
	unsigned max_fd;
	size_t nrl;
	struct {
		int res;
		struct rlimit lim;
	} rl[4];
	sigset_t empty;
};

static __attribute__((noreturn)) void exec_child_fail(int fd, int step, int err)
{
	struct exec_child_status s = { step, err };
	(void)!write(fd, &s, sizeof(s));
	_exit(127);
}

/* Between fork() and execve(): async-signal-safe calls only, on data prepared by the parent. */
static __attribute__((noreturn)) void exec_child_run(const struct exec_child *c)
{
	struct sigaction dfl;
	int sfd = c->status_w;

	/* 1. Die with the runner (PDEATHSIG fires when the forking thread exits), and close the
	 *    race where the parent died before prctl(). */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		exec_child_fail(sfd, STEP_PDEATHSIG, errno);
	if (getppid() != c->parent)
		_exit(127);
	/* 2. Own session and process group: the parent kills the whole tree with kill(-pid). */
	if (setsid() < 0)
		exec_child_fail(sfd, STEP_SETSID, errno);
	/* 3. Resource limits (hard = soft, so the task cannot raise them back). */
	for (size_t i = 0; i < c->nrl; i++)
		if (setrlimit((__rlimit_resource_t)c->rl[i].res, &c->rl[i].lim) < 0)
			exec_child_fail(sfd, STEP_RLIMIT, errno);
	/* 4. stdin from /dev/null, stdout/stderr into the capture pipes. */
	if (dup2(c->null_r, STDIN_FILENO) < 0 || dup2(c->out_w, STDOUT_FILENO) < 0 ||
	    dup2(c->err_w, STDERR_FILENO) < 0)
		exec_child_fail(sfd, STEP_STDIO, errno);
	/* 5. Nothing else of the runner's leaks: the status pipe moves to 3 (still close-on-exec)
	 *    and every fd above it is closed. */
	if (sfd != 3) {
		if (dup3(sfd, 3, O_CLOEXEC) < 0)
			exec_child_fail(sfd, STEP_FDS, errno);
		sfd = 3;
	}
	if (syscall(SYS_close_range, 4U, ~0U, 0U) < 0)
		for (unsigned fd = 4; fd < c->max_fd; fd++)
			(void)close((int)fd);
	/* 6. Default signal dispositions and an empty mask (ignored signals survive execve). */
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)sigaction(sig, &dfl, NULL);
	if (sigprocmask(SIG_SETMASK, &c->empty, NULL) < 0)
		exec_child_fail(sfd, STEP_SIGNALS, errno);
	/* 7. Never run a task as root. Raw syscalls: only this thread exists in the child. A
	 *    credential change clears PDEATHSIG, so set it again. */
	if (c->drop_uid) {
		if (syscall(SYS_setgroups, 0, NULL) < 0 ||
		    syscall(SYS_setresgid, EXEC_TASK_GID, EXEC_TASK_GID, EXEC_TASK_GID) < 0 ||
		    syscall(SYS_setresuid, EXEC_TASK_UID, EXEC_TASK_UID, EXEC_TASK_UID) < 0)
			exec_child_fail(sfd, STEP_UID, errno);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
			exec_child_fail(sfd, STEP_PDEATHSIG, errno);
		if (getppid() != c->parent)
			_exit(127);
	}
	/* 8. No setuid binary or file capability can give privileges back. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		exec_child_fail(sfd, STEP_NNP, errno);
	/* 9. The task's working directory, checked with the task's own credentials. */
	if (chdir(c->cwd) < 0)
		exec_child_fail(sfd, STEP_CHDIR, errno);
	/* 10. execve: a success closes the status pipe (O_CLOEXEC) and the parent reads EOF.
	 *     The task's seccomp filter (not yet implemented) belongs right here, last before
	 *     execve, compiled in the parent before fork. */
	execve(c->path, c->argv, c->envp);
	exec_child_fail(sfd, STEP_EXEC, errno);
}

static void exec_rlimit(struct exec_child *c, int res, uint64_t want)
{
	struct rlimit cur;
	rlim_t v = (rlim_t)want;
	if (getrlimit((__rlimit_resource_t)res, &cur) < 0)
		return;
	if (cur.rlim_max != RLIM_INFINITY && cur.rlim_max < v)
		v = cur.rlim_max;
	c->rl[c->nrl].res = res;
	c->rl[c->nrl].lim.rlim_cur = v;
	c->rl[c->nrl].lim.rlim_max = v;
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

/* Reaps what is left of the process group (grandchildren come back to us as subreaper). */
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
	struct exec_capture cap;
	char **argv, **envp;
	char path[PATH_MAX];
	int out_r, err_r, status_r, pidfd;
	pid_t pid;
	int status;          /* wait status of the main child */
	enum { KILLED_NONE, KILLED_CANCEL, KILLED_SHUTDOWN, KILLED_TIMEOUT } killed;
};

static void exec_kill_group(struct exec_run *x)
{
	(void)kill(-x->pid, SIGKILL);
	(void)kill(x->pid, SIGKILL);
}

/* Forks the child. Returns 0 (x->pid set), or a negative errno with x->status_r reporting. */
static int exec_spawn(struct exec_run *x, struct exec_result *res)
{
	struct exec_task *t = x->t;
	struct exec_child c = { 0 };
	struct rlimit nofile;
	int outp[2] = { -1, -1 }, errp[2] = { -1, -1 }, stp[2] = { -1, -1 }, null_r = -1, r = 0;

	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 || pipe2(stp, O_CLOEXEC) < 0 ||
	    (null_r = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
		r = -errno;
		exec_set(res, "Failed", "Internal", -1, "spawn: %s", exec_strerror(-r));
		goto out;
	}
	c.path = x->path;
	c.argv = x->argv;
	c.envp = x->envp;
	c.cwd = x->w.cwd;
	c.null_r = null_r;
	c.out_w = outp[1];
	c.err_w = errp[1];
	c.status_w = stp[1];
	c.parent = getpid();
	c.drop_uid = t->drop_uid;
	c.max_fd = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_max != RLIM_INFINITY &&
			   nofile.rlim_max < (1U << 20) ? (unsigned)nofile.rlim_max : (1U << 20);
	sigemptyset(&c.empty);
	exec_rlimit(&c, RLIMIT_CORE, 0);
	exec_rlimit(&c, RLIMIT_NOFILE, EXEC_NOFILE);
	exec_rlimit(&c, RLIMIT_FSIZE, (uint64_t)(t->max_output > EXEC_FSIZE_MIN ? t->max_output :
										 EXEC_FSIZE_MIN));
	if (t->drop_uid)
		exec_rlimit(&c, RLIMIT_NPROC, EXEC_NPROC);

	pthread_mutex_lock(&exec_lock);
	if (exec_nlive == EXEC_MAX_LIVE) {
		pthread_mutex_unlock(&exec_lock);
		r = -EAGAIN;
		exec_set(res, "Failed", "Internal", -1, "spawn: too many children");
		goto out;
	}
	x->pid = fork();
	if (x->pid == 0)
		exec_child_run(&c);
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
static void exec_on_exit(struct exec_run *x)
{
	exec_kill_group(x);
	while (waitpid(x->pid, &x->status, 0) < 0 && errno == EINTR)
		;
	exec_live_del(x->pid);
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
		/* timers: deadline, log flush, drain */
		if (!exited && !x->killed && t->deadline_ms > 0) {
			if (wall >= t->deadline_ms) {
				x->killed = KILLED_TIMEOUT;
				exec_kill_group(x);
			} else {
				timeout = (int)(t->deadline_ms - wall > 60000 ? 60000 : t->deadline_ms - wall);
			}
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
	exec_reap_group(x->pid);
}

static void exec_finish(struct exec_run *x, struct exec_result *res)
{
	int st = x->status, code;
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
	case KILLED_NONE:
		if (WIFEXITED(st) && code == 0)
			exec_set(res, "Succeeded", "Succeeded", 0, "exited with code 0");
		else if (WIFSIGNALED(st))
			exec_set(res, "Failed", "ExitCode", code, "killed by signal %d (SIG%s)",
				 WTERMSIG(st), sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st)) : "?");
		else
			exec_set(res, "Failed", "ExitCode", code, "exited with code %d", code);
		break;
	}
	exec_read_output(x->t, &x->w, &res->output, outmsg, sizeof(outmsg));
	ml = strlen(res->message);
	if (outmsg[0] && ml < sizeof(res->message))
		snprintf(res->message + ml, sizeof(res->message) - ml, "; %s", outmsg);
}

int exec_task_run(struct exec_task *t, const struct exec_hooks *hooks, struct exec_result *res)
{
	struct exec_run x;
	struct exec_envset env = { .n = 0 };
	struct exec_child_status cs;
	char attempt[24], err[256];
	int r;

	memset(res, 0, sizeof(*res));
	memset(&x, 0, sizeof(x));
	x.t = t;
	x.out_r = x.err_r = x.status_r = x.pidfd = -1;
	x.w.rootfd = x.w.dirfd = -1;
	res->exit_code = -1;

	if (exec_capture_init(&x.cap, hooks, t->max_output, t->tail_max) < 0) {
		exec_set(res, "Failed", "Internal", -1, "out of memory");
		goto done;
	}
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
	if (exec_workdir_make(t, &x.w, err, sizeof(err)) < 0) {
		exec_set(res, "Failed", "Internal", -1, "%s", err);
		goto done;
	}

	/* The task's environment: the dispatch's entries and ours, nothing of the runner's. */
	snprintf(attempt, sizeof(attempt), "%" PRId64, t->attempt);
	exec_env_put(&env, "PATH", EXEC_TASK_PATH);
	exec_env_put(&env, "HOME", x.w.path);
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
		r = expand_vars(t->command[i], exec_env_lookup, &env, EXEC_ARG_MAX, &x.argv[i]);
		if (r < 0) {
			exec_set(res, "Failed", r == -E2BIG ? "InvalidSpec" : "Internal", -1,
				 "shell.command[%zu]: %s", i,
				 r == -E2BIG ? "expands past 131071 bytes" : exec_strerror(-r));
			goto done;
		}
	}
	r = exec_resolve(x.argv[0], x.path, sizeof(x.path));
	if (r < 0) {
		exec_set(res, "Failed", "ExecFailed", 127, "exec \"%s\": %s", t->cmd_label,
			 exec_strerror(-r));
		goto done;
	}

	if (exec_spawn(&x, res) < 0)
		goto done;
	/* EOF: execve succeeded. A record: the child failed at some step and exits 127. */
	if (exec_read_full(x.status_r, &cs, sizeof(cs)) == (int)sizeof(cs)) {
		while (waitpid(x.pid, &x.status, 0) < 0 && errno == EINTR)
			;
		exec_live_del(x.pid);
		if (cs.step == STEP_EXEC)
			exec_set(res, "Failed", "ExecFailed", 127, "exec \"%s\": %s", t->cmd_label,
				 exec_strerror(cs.err));
		else
			exec_set(res, "Failed", "ExecFailed", 127, "task setup failed at %s: %s",
				 (size_t)cs.step < UTIL_ARRAY_SIZE(exec_step_names) ? exec_step_names[cs.step] : "?",
				 exec_strerror(cs.err));
		res->pid = x.pid;
		goto done;
	}
	exec_close(&x.status_r);
	res->start_ms = util_now_ms();
	res->pid = x.pid;
	if (hooks && hooks->started)
		hooks->started(hooks->userdata, res->start_ms);
	x.pidfd = (int)syscall(SYS_pidfd_open, x.pid, 0);
	exec_loop(&x);
	exec_finish(&x, res);

done:
	res->end_ms = util_now_ms();
	res->truncated = x.cap.truncated;
	res->log_tail = exec_capture_tail(&x.cap);
	exec_close(&x.status_r);
	exec_close(&x.pidfd);
	exec_close(&x.out_r);
	exec_close(&x.err_r);
	exec_workdir_remove(t, &x.w);
	exec_free_strv(x.argv, 1);
	exec_free_strv(x.envp, 1);
	exec_capture_free(&x.cap);
	return 0;
}
