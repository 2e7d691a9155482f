/* tasked-bench-runner: measures one tasked-runner on its own. It plays the controller's broker
 * (docs/protocol.md: token → grant, WebSocket, hello/welcome, dispatch, ack, ping), using the
 * project's protocol codec (common/proto.c), starts the runner against itself and then:
 *
 *   1. idle:       waits --idle-seconds after `welcome`, reads the runner's VmRSS and threads;
 *   2. latency:    --latency N dispatches of --command (bench/stamp), one at a time with
 *                  --gap-ms between them; records when each dispatch frame was written, when
 *                  `started` and `result` arrived, and the stamp the task printed;
 *   3. throughput: --throughput M dispatches keeping all --concurrency slots busy; tasks/s,
 *                  the runner's CPU seconds and peak RSS;
 *   4. floor:      after the runner stopped, --floor N (default 300) rounds of the host's own
 *                  process start from this process: fork + exec + wait of /bin/true, the same
 *                  with posix_spawn, and fork → the stamp's first instruction.
 *
 * "dispatch → stamp" runs from just before the dispatch frame is written to the socket to the
 * first instruction of the (static) task program, so it bounds "dispatch received → execve"
 * from above by the loopback hop, the runner's WebSocket read and JSON decode, and the exec
 * itself.
 *
 *   tasked-bench-runner --runner BIN --token-file F --command PATH [--concurrency C]
 *       [--latency N] [--throughput M] [--idle-seconds S] [--gap-ms G] [--work-dir DIR]
 *       [--log FILE] [--csv FILE] [--json FILE] [--timeout S] [--port P] [--floor N]
 *       [--pid-file FILE]   (the runner's pid, so the caller can check it is gone afterwards)
 *
 * With --tasks FILE instead of --command it measures nothing: it is the broker of a scripted
 * run (tests/vm/). Each line of FILE is a JSON object merged into a dispatch message (name,
 * shell or http, env, policy; deadlineAfterMs becomes an absolute deadline); the tasks run one
 * at a time, and stdout gets one JSON line per event:
 * the runner's hello (with its pid and AppArmor label), each result, a summary (pongs
 * received: the heartbeat), and how the runner exited after SIGTERM. It waits for two pongs
 * after the last result. GET /ok answers 200, a target for http tasks. */
#include "proto.h"
#include "stats.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RB_MAX_CONNS 8
#define RB_HTTP_MAX (16 * 1024)
#define RB_IN_MAX (4 * 1024 * 1024)
#define RB_MSG_MAX (2 * 1024 * 1024)
#define RB_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

struct rb_opts {
	const char *runner, *token_file, *command, *work_dir, *log, *csv, *json, *tasks, *pid_file;
	long concurrency, latency, throughput, idle_s, gap_ms, timeout_s, port, floor;
};

struct rb_conn {
	int fd;
	int ws;         /* 0: HTTP request pending, 1: WebSocket */
	struct buf in;  /* unparsed bytes */
	struct buf msg; /* a fragmented message being assembled */
};

struct rb_task {
	int64_t send_ns, started_rx_ns, result_rx_ns, stamp_ns, started_ms;
	char phase[16];
};

enum rb_phase { RB_WAIT_HELLO, RB_IDLE, RB_LATENCY, RB_THROUGHPUT, RB_SCRIPT, RB_DONE };

#define RB_MAX_SCRIPT 256

struct rb {
	struct rb_opts o;
	struct rb_conn conns[RB_MAX_CONNS];
	int lfd, ws_fd; /* listening socket; the runner's WebSocket (-1 = none) */
	char token[512], grant[65];
	pid_t pid;
	enum rb_phase phase;
	int64_t phase_start_mono, last_ping_mono, idle_until_mono;
	struct rb_task *lat, *thr;
	long lat_next, lat_done, thr_next, thr_done, inflight, errors, reconnects;
	int64_t thr_first_send, thr_last_result;
	double cpu_before_thr, cpu_after_thr;
	long idle_rss_kib, idle_threads, rss_after_kib, hwm_kib, idle_vmsize_kib;
	long idle_pss_kib, idle_private_kib, idle_anon_kib;
	json_t *script[RB_MAX_SCRIPT]; /* --tasks: the dispatch fields of each task */
	long script_n, script_next, script_done, pongs, pong_target;
	int runner_status;
};

static volatile sig_atomic_t rb_interrupted;

static void rb_on_signal(int sig) { rb_interrupted = 1; }

static int rb_parse(int argc, char **argv, struct rb_opts *o)
{
	enum {
		O_RUNNER = 256,
		O_TOKEN,
		O_CMD,
		O_CONC,
		O_LAT,
		O_THR,
		O_IDLE,
		O_GAP,
		O_WORK,
		O_LOG,
		O_CSV,
		O_JSON,
		O_TIMEOUT,
		O_TASKS,
		O_PORT,
		O_FLOOR,
		O_PIDFILE
	};
	static const struct option lo[] = {
		{ "runner", required_argument, NULL, O_RUNNER },
		{ "token-file", required_argument, NULL, O_TOKEN },
		{ "command", required_argument, NULL, O_CMD },
		{ "concurrency", required_argument, NULL, O_CONC },
		{ "latency", required_argument, NULL, O_LAT },
		{ "throughput", required_argument, NULL, O_THR },
		{ "idle-seconds", required_argument, NULL, O_IDLE },
		{ "gap-ms", required_argument, NULL, O_GAP },
		{ "work-dir", required_argument, NULL, O_WORK },
		{ "log", required_argument, NULL, O_LOG },
		{ "csv", required_argument, NULL, O_CSV },
		{ "json", required_argument, NULL, O_JSON },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "tasks", required_argument, NULL, O_TASKS },
		{ "port", required_argument, NULL, O_PORT },
		{ "floor", required_argument, NULL, O_FLOOR },
		{ "pid-file", required_argument, NULL, O_PIDFILE },
		{ NULL, 0, NULL, 0 },
	};
	long *target;
	long lo_v, hi_v;
	int c;

	*o = (struct rb_opts){ .concurrency = 8,
			       .latency = 1000,
			       .throughput = 2000,
			       .idle_s = 3,
			       .gap_ms = 2,
			       .timeout_s = 300,
			       .floor = 300,
			       .log = "/dev/null" };
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		char *end;
		switch (c) {
		case O_RUNNER:
			o->runner = optarg;
			continue;
		case O_TOKEN:
			o->token_file = optarg;
			continue;
		case O_CMD:
			o->command = optarg;
			continue;
		case O_WORK:
			o->work_dir = optarg;
			continue;
		case O_LOG:
			o->log = optarg;
			continue;
		case O_CSV:
			o->csv = optarg;
			continue;
		case O_JSON:
			o->json = optarg;
			continue;
		case O_TASKS:
			o->tasks = optarg;
			continue;
		case O_PIDFILE:
			o->pid_file = optarg;
			continue;
		case O_PORT:
			target = &o->port;
			lo_v = 0;
			hi_v = 65535;
			break;
		case O_FLOOR:
			target = &o->floor;
			lo_v = 0;
			hi_v = 100000;
			break;
		case O_CONC:
			target = &o->concurrency;
			lo_v = 1;
			hi_v = PROTO_MAX_CAPACITY;
			break;
		case O_LAT:
			target = &o->latency;
			lo_v = 1;
			hi_v = 1000000;
			break;
		case O_THR:
			target = &o->throughput;
			lo_v = 0;
			hi_v = 1000000;
			break;
		case O_IDLE:
			target = &o->idle_s;
			lo_v = 0;
			hi_v = 600;
			break;
		case O_GAP:
			target = &o->gap_ms;
			lo_v = 0;
			hi_v = 10000;
			break;
		case O_TIMEOUT:
			target = &o->timeout_s;
			lo_v = 1;
			hi_v = 86400;
			break;
		default:
			fprintf(stderr,
				"usage: see the comment at the top of bench/runnerbench.c\n");
			return -EINVAL;
		}
		*target = strtol(optarg, &end, 10);
		if (*end || *target < lo_v || *target > hi_v) {
			fprintf(stderr, "tasked-bench-runner: invalid value %s\n", optarg);
			return -EINVAL;
		}
	}
	if (!o->runner || !o->token_file || !o->command == !o->tasks) {
		fprintf(stderr,
			"tasked-bench-runner: --runner, --token-file and one of --command or --tasks are required\n");
		return -EINVAL;
	}
	return 0;
}

/* --- sockets ------------------------------------------------------------------------------ */

static int rb_write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd pf = { .fd = fd, .events = POLLOUT };
				(void)poll(&pf, 1, 1000);
				continue;
			}
			return -errno;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* One unmasked server frame. */
static int rb_ws_send(int fd, int opcode, const void *p, size_t n)
{
	unsigned char hdr[10];
	size_t h = 2;
	int r;

	hdr[0] = (unsigned char)(0x80 | opcode);
	if (n < 126) {
		hdr[1] = (unsigned char)n;
	} else if (n < 65536) {
		hdr[1] = 126;
		hdr[2] = (unsigned char)(n >> 8);
		hdr[3] = (unsigned char)n;
		h = 4;
	} else {
		hdr[1] = 127;
		for (int i = 0; i < 8; i++)
			hdr[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
		h = 10;
	}
	/* One write for header and payload: a split write may cost a second wakeup. */
	if (n <= 4096) {
		unsigned char frame[4096 + 10];
		memcpy(frame, hdr, h);
		memcpy(frame + h, p, n);
		return rb_write_all(fd, frame, h + n);
	}
	if ((r = rb_write_all(fd, hdr, h)) < 0)
		return r;
	return rb_write_all(fd, p, n);
}

/* Encodes msg (borrowed) and sends it; *sent_ns (optional) is the time just before the write. */
static int rb_send(struct rb *b, json_t *msg, int64_t *sent_ns)
{
	char *text = NULL;
	size_t len = 0;
	int r;

	if (b->ws_fd < 0)
		return -ENOTCONN;
	r = proto_encode(msg, PROTO_MAX_MESSAGE_DEFAULT, &text, &len);
	if (r < 0)
		return r;
	if (sent_ns)
		*sent_ns = bench_now_ns();
	r = rb_ws_send(b->ws_fd, 1, text, len);
	free(text);
	return r;
}

static void rb_close(struct rb *b, struct rb_conn *c)
{
	if (c->fd < 0)
		return;
	if (c->fd == b->ws_fd) {
		b->ws_fd = -1;
		b->reconnects++;
	}
	close(c->fd);
	c->fd = -1;
	buf_free(&c->in);
	buf_free(&c->msg);
}

/* --- the broker side of the protocol --------------------------------------------------------- */

static int rb_dispatch(struct rb *b, const char *kind, long i, int64_t *sent_ns)
{
	char uid[64];
	json_t *m;
	int r;

	snprintf(uid, sizeof(uid), "rb-%s-%ld", kind, i);
	m = json_pack("{ss ss si ss ss si s{s[s]} s[] s{si si}}", "type", "dispatch", "taskUid",
		      uid, "attempt", 1, "namespace", "bench", "name", uid, "deadline", 0, "shell",
		      "command", b->o.command, "env", "limits", "maxOutputBytes", 10 * 1024 * 1024,
		      "logTailBytes", 4096);
	if (!m)
		return -ENOMEM;
	r = rb_send(b, m, sent_ns);
	json_decref(m);
	return r;
}

static struct rb_task *rb_task_of(struct rb *b, const char *uid)
{
	long i;
	char *end;
	if (strncmp(uid, "rb-lat-", 7) == 0) {
		i = strtol(uid + 7, &end, 10);
		return *end || i < 0 || i >= b->o.latency ? NULL : &b->lat[i];
	}
	if (strncmp(uid, "rb-thr-", 7) == 0) {
		i = strtol(uid + 7, &end, 10);
		return *end || i < 0 || i >= b->o.throughput ? NULL : &b->thr[i];
	}
	return NULL;
}

static void rb_next_phase(struct rb *b, enum rb_phase p)
{
	b->phase = p;
	b->phase_start_mono = bench_mono_ns();
}

/* --- --tasks: a scripted run ------------------------------------------------------------- */

static int rb_load_script(struct rb *b)
{
	FILE *f = fopen(b->o.tasks, "re");
	char line[8192];
	json_error_t je;

	if (!f) {
		perror(b->o.tasks);
		return -errno;
	}
	while (fgets(line, sizeof(line), f)) {
		json_t *t;
		if (strspn(line, " \t\r\n") == strlen(line))
			continue;
		t = json_loads(line, 0, &je);
		if (!json_is_object(t) || !json_is_string(json_object_get(t, "name")) ||
		    b->script_n >= RB_MAX_SCRIPT) {
			fprintf(stderr, "tasked-bench-runner: %s: task %ld: %s\n", b->o.tasks,
				b->script_n + 1,
				!t                             ? je.text
				: b->script_n >= RB_MAX_SCRIPT ? "too many tasks"
							       : "want an object with a name");
			json_decref(t);
			fclose(f);
			return -EINVAL;
		}
		b->script[b->script_n++] = t;
	}
	fclose(f);
	return b->script_n > 0 ? 0 : -EINVAL;
}

/* One JSON line on stdout (the event log of a scripted run); steals o. */
static void rb_event(json_t *o)
{
	if (!o)
		return;
	json_dumpf(o, stdout, JSON_COMPACT | JSON_SORT_KEYS);
	putchar('\n');
	fflush(stdout);
	json_decref(o);
}

/* The runner's AppArmor label, as the kernel reports it. */
static json_t *rb_label(pid_t pid)
{
	char path[64], *text = NULL;
	json_t *v;
	snprintf(path, sizeof(path), "/proc/%d/attr/current", (int)pid);
	if (util_read_file(path, 256, &text, NULL) < 0)
		return json_null();
	util_rstrip(text);
	v = json_string(text);
	free(text);
	return v;
}

static int rb_dispatch_script(struct rb *b, long i)
{
	char uid[64];
	json_t *m;
	int r;

	snprintf(uid, sizeof(uid), "rb-task-%ld", i);
	m = json_pack("{ss ss si ss si s[] s{si si}}", "type", "dispatch", "taskUid", uid,
		      "attempt", 1, "namespace", "vm", "deadline", 0, "env", "limits",
		      "maxOutputBytes", 1024 * 1024, "logTailBytes", 4096);
	if (!m || json_object_update(m, b->script[i]) < 0) {
		json_decref(m);
		return -ENOMEM;
	}
	/* A deadline relative to the dispatch, made absolute here. */
	if (json_is_integer(json_object_get(m, "deadlineAfterMs"))) {
		json_int_t after = json_integer_value(json_object_get(m, "deadlineAfterMs"));
		json_object_set_new(m, "deadline", json_integer(util_now_ms() + after));
		json_object_del(m, "deadlineAfterMs");
	}
	r = rb_send(b, m, NULL);
	json_decref(m);
	return r;
}

static void rb_pump(struct rb *b);

static void rb_on_message(struct rb *b, const char *data, size_t len)
{
	struct proto_msg m;
	char err[160];
	struct rb_task *t;
	int64_t now = bench_now_ns();

	if (proto_decode(data, len, RB_MSG_MAX, PROTO_FROM_RUNNER, &m, err, sizeof(err)) < 0) {
		fprintf(stderr, "tasked-bench-runner: bad message from the runner: %s\n", err);
		b->errors++;
		return;
	}
	switch (m.type) {
	case PROTO_PONG:
		b->pongs++;
		rb_pump(b);
		break;
	case PROTO_HELLO: {
		json_t *w = json_pack("{ss ss si si}", "type", "welcome", "runnerId", m.runner_id,
				      "heartbeatSeconds", 10, "maxMessageBytes",
				      PROTO_MAX_MESSAGE_DEFAULT);
		(void)rb_send(b, w, NULL);
		json_decref(w);
		if (b->phase == RB_WAIT_HELLO && b->script_n > 0) {
			rb_event(json_pack("{ss ss si so}", "event", "hello", "runnerId",
					   m.runner_id, "runnerPid", (int)b->pid, "runnerLabel",
					   rb_label(b->pid)));
			rb_next_phase(b, RB_SCRIPT);
			rb_pump(b);
		} else if (b->phase == RB_WAIT_HELLO) {
			rb_next_phase(b, RB_IDLE);
			b->idle_until_mono = bench_mono_ns() + b->o.idle_s * 1000000000LL;
		}
		break;
	}
	case PROTO_STARTED:
		t = rb_task_of(b, m.task_uid);
		if (t && !t->started_rx_ns) {
			t->started_rx_ns = now;
			t->started_ms = m.start_ms;
		}
		break;
	case PROTO_RESULT: {
		json_t *ack = proto_new_task(PROTO_ACK, m.task_uid, m.attempt);
		(void)rb_send(b, ack, NULL);
		json_decref(ack);
		if (b->phase == RB_SCRIPT) {
			long i = strncmp(m.task_uid, "rb-task-", 8) == 0
					 ? strtol(m.task_uid + 8, NULL, 10)
					 : -1;
			if (i >= 0 && i < b->script_n) {
				rb_event(json_pack("{ss sO sO}", "event", "result", "name",
						   json_object_get(b->script[i], "name"), "result",
						   m.root));
				b->script_done++;
				b->inflight--;
				rb_pump(b);
			}
			break;
		}
		t = rb_task_of(b, m.task_uid);
		if (!t || t->result_rx_ns)
			break;
		t->result_rx_ns = now;
		snprintf(t->phase, sizeof(t->phase), "%s", m.phase ? m.phase : "?");
		if (m.log_tail) {
			long long v = strtoll(m.log_tail, NULL, 10);
			t->stamp_ns = v > 1000000000000000000LL ? (int64_t)v : 0;
		}
		if (m.phase && strcmp(m.phase, "Succeeded") != 0) {
			b->errors++;
			if (b->errors <= 5)
				fprintf(stderr, "tasked-bench-runner: %s: %s %s: %s\n", m.task_uid,
					m.phase, m.reason ? m.reason : "",
					m.message ? m.message : "");
		}
		b->inflight--;
		if (t >= b->lat && t < b->lat + b->o.latency) {
			b->lat_done++;
		} else {
			b->thr_done++;
			b->thr_last_result = now;
		}
		rb_pump(b);
		break;
	}
	default:
		break;
	}
	proto_msg_free(&m);
}

/* Sends what the current phase wants next. */
static void rb_pump(struct rb *b)
{
	switch (b->phase) {
	case RB_LATENCY:
		if (b->inflight == 0 && b->lat_done == b->lat_next && b->lat_next < b->o.latency) {
			if (b->o.gap_ms && b->lat_next > 0)
				usleep((useconds_t)b->o.gap_ms * 1000);
			if (rb_dispatch(b, "lat", b->lat_next, &b->lat[b->lat_next].send_ns) == 0) {
				b->lat_next++;
				b->inflight++;
			}
		}
		if (b->lat_done >= b->o.latency) {
			rb_next_phase(b, RB_THROUGHPUT);
			b->cpu_before_thr = bench_proc_cpu_s(b->pid);
			rb_pump(b);
		}
		break;
	case RB_SCRIPT:
		if (b->inflight == 0 && b->script_next < b->script_n) {
			if (rb_dispatch_script(b, b->script_next) == 0) {
				b->script_next++;
				b->inflight++;
			}
		}
		/* The heartbeat: two pongs after the last result (pings go out every 3 s). */
		if (b->script_done == b->script_n && b->pong_target == 0)
			b->pong_target = b->pongs + 2;
		if (b->pong_target && b->pongs >= b->pong_target) {
			rb_event(json_pack("{ss si si si}", "event", "summary", "results",
					   (int)b->script_done, "pongs", (int)b->pongs, "errors",
					   (int)b->errors));
			rb_next_phase(b, RB_DONE);
		}
		break;
	case RB_THROUGHPUT:
		while (b->inflight < b->o.concurrency && b->thr_next < b->o.throughput) {
			if (rb_dispatch(b, "thr", b->thr_next, &b->thr[b->thr_next].send_ns) < 0)
				break;
			if (b->thr_next == 0)
				b->thr_first_send = b->thr[0].send_ns;
			b->thr_next++;
			b->inflight++;
		}
		if (b->thr_done >= b->o.throughput) {
			b->cpu_after_thr = bench_proc_cpu_s(b->pid);
			b->hwm_kib = bench_proc_kib(b->pid, "VmHWM");
			b->rss_after_kib = bench_proc_kib(b->pid, "VmRSS");
			rb_next_phase(b, RB_DONE);
		}
		break;
	default:
		break;
	}
}

/* Parses complete frames in c->in. */
static void rb_ws_input(struct rb *b, struct rb_conn *c)
{
	for (;;) {
		unsigned char *p = (unsigned char *)c->in.data;
		size_t len = c->in.len, h = 2;
		uint64_t n;
		int fin, op, masked;

		if (len < 2)
			return;
		fin = p[0] & 0x80;
		op = p[0] & 0x0f;
		masked = p[1] & 0x80;
		n = p[1] & 0x7f;
		if (n == 126) {
			if (len < 4)
				return;
			n = (uint64_t)p[2] << 8 | p[3];
			h = 4;
		} else if (n == 127) {
			if (len < 10)
				return;
			n = 0;
			for (int i = 0; i < 8; i++)
				n = n << 8 | p[2 + i];
			h = 10;
		}
		if (n > RB_MSG_MAX) {
			fprintf(stderr, "tasked-bench-runner: frame too large\n");
			rb_close(b, c);
			return;
		}
		if (len < h + (masked ? 4 : 0) + n)
			return;
		if (masked) {
			unsigned char *k = p + h;
			h += 4;
			for (uint64_t i = 0; i < n; i++)
				p[h + i] ^= k[i & 3];
		}
		switch (op) {
		case 0x8: /* close: echo it */
			(void)rb_ws_send(c->fd, 0x8, p + h, n > 125 ? 125 : (size_t)n);
			rb_close(b, c);
			return;
		case 0x9:
			(void)rb_ws_send(c->fd, 0xA, p + h, (size_t)n);
			break;
		case 0xA:
			break;
		case 0x0:
		case 0x1:
		case 0x2:
			if (buf_append(&c->msg, p + h, (size_t)n) < 0) {
				rb_close(b, c);
				return;
			}
			if (fin) {
				rb_on_message(b, c->msg.data ? c->msg.data : "", c->msg.len);
				if (c->fd < 0)
					return;
				buf_reset(&c->msg);
			}
			break;
		default:
			rb_close(b, c);
			return;
		}
		buf_consume(&c->in, h + (size_t)n);
	}
}

/* Value of header name (case-insensitive) in an HTTP request head, into out. */
static int rb_header(const char *head, const char *name, char *out, size_t outsz)
{
	size_t nl = strlen(name);
	for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
		const char *line = p + 2, *v;
		size_t n;
		if (strncasecmp(line, name, nl) != 0 || line[nl] != ':')
			continue;
		v = line + nl + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		n = strcspn(v, "\r\n");
		if (n >= outsz)
			return -ENOBUFS;
		memcpy(out, v, n);
		out[n] = '\0';
		return 0;
	}
	return -ENOENT;
}

static void rb_http_reply(struct rb *b, struct rb_conn *c, const char *status, const char *body)
{
	char resp[1024];
	int n = snprintf(resp, sizeof(resp),
			 "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n%s",
			 status, strlen(body), body);
	if (n > 0 && (size_t)n < sizeof(resp))
		(void)rb_write_all(c->fd, resp, (size_t)n);
	rb_close(b, c);
}

static void rb_http_input(struct rb *b, struct rb_conn *c)
{
	char *end = c->in.data ? strstr(c->in.data, "\r\n\r\n") : NULL;
	char head[RB_HTTP_MAX], val[512];
	size_t hlen;

	if (!end) {
		if (c->in.len >= RB_HTTP_MAX - 1)
			rb_close(b, c);
		return;
	}
	hlen = (size_t)(end - c->in.data) + 4;
	if (hlen >= sizeof(head)) {
		rb_close(b, c);
		return;
	}
	memcpy(head, c->in.data, hlen);
	head[hlen] = '\0';
	if (strncmp(head, "POST /runners/auth ", 19) == 0) {
		long clen = 0;
		json_t *j;
		const char *tok;
		char body[256];
		if (rb_header(head, "Content-Length", val, sizeof(val)) == 0)
			clen = strtol(val, NULL, 10);
		if (clen < 0 || clen > 8192) {
			rb_http_reply(b, c, "413 Payload Too Large", "{}");
			return;
		}
		if (c->in.len < hlen + (size_t)clen)
			return; /* body still coming */
		j = json_loadb(c->in.data + hlen, (size_t)clen, 0, NULL);
		tok = json_string_value(json_object_get(j, "token"));
		if (!tok || !util_ct_equal(tok, strlen(tok), b->token, strlen(b->token))) {
			json_decref(j);
			rb_http_reply(
				b, c, "403 Forbidden",
				"{\"error\":\"Forbidden\",\"message\":\"invalid runner token\"}");
			return;
		}
		json_decref(j);
		util_random_hex(b->grant, 32);
		snprintf(body, sizeof(body), "{\"grant\":\"%s\",\"expiresInSeconds\":30}",
			 b->grant);
		rb_http_reply(b, c, "200 OK", body);
		return;
	}
	if (strncmp(head, "GET /ok ", 8) == 0) {
		rb_http_reply(b, c, "200 OK", "{}");
		return;
	}
	if (strncmp(head, "GET /runners/ws ", 16) == 0) {
		unsigned char sha[SHA_DIGEST_LENGTH];
		char key[128], cat[256], accept[64], auth[256], resp[512];
		int n;
		if (rb_header(head, "Sec-WebSocket-Key", key, sizeof(key)) < 0 ||
		    rb_header(head, "Authorization", auth, sizeof(auth)) < 0 ||
		    strncmp(auth, "Bearer ", 7) != 0 || !b->grant[0] ||
		    strcmp(auth + 7, b->grant) != 0) {
			rb_http_reply(b, c, "403 Forbidden", "{}");
			return;
		}
		b->grant[0] = '\0'; /* single use */
		snprintf(cat, sizeof(cat), "%s%s", key, RB_WS_GUID);
		SHA1((const unsigned char *)cat, strlen(cat), sha);
		EVP_EncodeBlock((unsigned char *)accept, sha, SHA_DIGEST_LENGTH);
		n = snprintf(
			resp, sizeof(resp),
			"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			"Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
			accept, PROTO_SUBPROTOCOL);
		if (n <= 0 || (size_t)n >= sizeof(resp) ||
		    rb_write_all(c->fd, resp, (size_t)n) < 0) {
			rb_close(b, c);
			return;
		}
		if (b->ws_fd >= 0) {
			for (int i = 0; i < RB_MAX_CONNS; i++)
				if (b->conns[i].fd == b->ws_fd)
					rb_close(b, &b->conns[i]);
		}
		c->ws = 1;
		b->ws_fd = c->fd;
		buf_consume(&c->in, hlen);
		rb_ws_input(b, c);
		return;
	}
	rb_http_reply(b, c, "404 Not Found", "{}");
}

static void rb_accept(struct rb *b)
{
	int fd = accept4(b->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK), one = 1;
	if (fd < 0)
		return;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (int i = 0; i < RB_MAX_CONNS; i++) {
		if (b->conns[i].fd < 0) {
			b->conns[i].fd = fd;
			b->conns[i].ws = 0;
			buf_init(&b->conns[i].in, RB_IN_MAX);
			buf_init(&b->conns[i].msg, RB_MSG_MAX);
			return;
		}
	}
	close(fd);
}

static void rb_read(struct rb *b, struct rb_conn *c)
{
	char tmp[65536];
	ssize_t n = read(c->fd, tmp, sizeof(tmp));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0 || buf_append(&c->in, tmp, (size_t)n) < 0) {
		rb_close(b, c);
		return;
	}
	if (c->ws)
		rb_ws_input(b, c);
	else
		rb_http_input(b, c);
}

/* --- the runner process ------------------------------------------------------------------- */

static pid_t rb_start_runner(struct rb *b, int port)
{
	char url[64], conc[16];
	int logfd = open(b->o.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	pid_t pid;

	if (logfd < 0) {
		perror(b->o.log);
		return -1;
	}
	snprintf(url, sizeof(url), "ws://127.0.0.1:%d", port);
	snprintf(conc, sizeof(conc), "%ld", b->o.concurrency);
	pid = fork();
	if (pid == 0) {
		const char *argv[16] = { b->o.runner,    "--controller",  url,
					 "--token-file", b->o.token_file, "--concurrency",
					 conc,           "--id",          "bench-runner",
					 "--labels",     "pool=bench",    "--log-level",
					 "warn" };
		int n = 13;
		if (b->o.work_dir) {
			argv[n++] = "--work-dir";
			argv[n++] = b->o.work_dir;
		}
		argv[n] = NULL;
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(logfd, STDOUT_FILENO);
		dup2(logfd, STDERR_FILENO);
		execv(b->o.runner, (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	close(logfd);
	return pid;
}

static void rb_stop_runner(struct rb *b)
{
	int status;
	if (b->pid <= 0)
		return;
	kill(b->pid, SIGTERM);
	for (int i = 0; i < 100; i++) {
		if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
			b->pid = 0;
			b->runner_status = status;
			return;
		}
		usleep(50000);
	}
	kill(b->pid, SIGKILL);
	waitpid(b->pid, &status, 0);
	b->pid = 0;
	b->runner_status = status;
}

/* --- the host's floor ---------------------------------------------------------------------- */

/* The host's own cost of starting a process, measured in this run for comparison with dispatch →
 * exec: fork + execve + waitpid of /bin/true from this small single-threaded process, and the
 * same with posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK)). Also fork → the stamp's first
 * instruction, the same end point as dispatch → stamp. Returns {forkExecWaitTrueMs,
 * posixSpawnWaitTrueMs, forkToStampMs} summaries, or NULL. */
static json_t *rb_floor(const char *stamp, long n)
{
	double *fe = calloc((size_t)n + 1, sizeof(double)),
	       *ps = calloc((size_t)n + 1, sizeof(double));
	double *fs = calloc((size_t)n + 1, sizeof(double));
	char *const targv[] = { (char *)"true", NULL }, *const sargv[] = { (char *)"stamp", NULL };
	char *const envp[] = { NULL };
	size_t nfe = 0, nps = 0, nfs = 0;
	json_t *o = NULL;

	if (!fe || !ps || !fs)
		goto out;
	for (long i = 0; i < n; i++) {
		int64_t t0 = bench_mono_ns();
		int st, p[2];
		pid_t pid = fork();
		if (pid == 0) {
			execve("/bin/true", targv, envp);
			_exit(127);
		}
		if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0)
			fe[nfe++] = (double)(bench_mono_ns() - t0) / 1e6;
		t0 = bench_mono_ns();
		if (posix_spawn(&pid, "/bin/true", NULL, NULL, targv, envp) == 0 &&
		    waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0)
			ps[nps++] = (double)(bench_mono_ns() - t0) / 1e6;
		/* fork → stamp: the stamp prints CLOCK_REALTIME in ns */
		if (pipe2(p, O_CLOEXEC) < 0)
			continue;
		{
			struct timespec ts;
			char line[64] = "";
			ssize_t k;
			clock_gettime(CLOCK_REALTIME, &ts);
			t0 = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
			pid = fork();
			if (pid == 0) {
				dup2(p[1], 1);
				execve(stamp, sargv, envp);
				_exit(127);
			}
			close(p[1]);
			k = pid > 0 ? read(p[0], line, sizeof(line) - 1) : -1;
			close(p[0]);
			if (pid > 0)
				(void)waitpid(pid, &st, 0);
			if (k > 0) {
				line[k] = '\0';
				fs[nfs++] = (double)(strtoll(line, NULL, 10) - t0) / 1e6;
			}
		}
	}
	o = json_pack("{sI so so so}", "count", (json_int_t)n, "forkExecWaitTrueMs",
		      bench_summary_ms(fe, nfe), "posixSpawnWaitTrueMs", bench_summary_ms(ps, nps),
		      "forkToStampMs", bench_summary_ms(fs, nfs));
out:
	free(fe);
	free(ps);
	free(fs);
	return o;
}

/* --- report ------------------------------------------------------------------------------- */

static json_t *rb_report(struct rb *b)
{
	long n = b->o.latency, m = b->o.throughput;
	double *stamp = calloc((size_t)(n + m + 1), sizeof(double)),
	       *started = calloc((size_t)n + 1, sizeof(double));
	double *result = calloc((size_t)n + 1, sizeof(double)),
	       *ld = calloc((size_t)m + 1, sizeof(double));
	size_t ns = 0, nst = 0, nr = 0, nl = 0;
	json_t *o = NULL, *lat, *thr;

	if (!stamp || !started || !result || !ld)
		goto out;
	for (long i = 0; i < n; i++) {
		struct rb_task *t = &b->lat[i];
		if (t->stamp_ns && t->send_ns)
			stamp[ns++] = (double)(t->stamp_ns - t->send_ns) / 1e6;
		if (t->started_rx_ns)
			started[nst++] = (double)(t->started_rx_ns - t->send_ns) / 1e6;
		if (t->result_rx_ns)
			result[nr++] = (double)(t->result_rx_ns - t->send_ns) / 1e6;
	}
	for (long i = 0; i < m; i++) {
		struct rb_task *t = &b->thr[i];
		if (t->stamp_ns && t->send_ns)
			ld[nl++] = (double)(t->stamp_ns - t->send_ns) / 1e6;
	}
	lat = json_pack("{sI sI so so so}", "count", (json_int_t)n, "gapMs",
			(json_int_t)b->o.gap_ms, "dispatchToStampMs", bench_summary_ms(stamp, ns),
			"dispatchToStartedReceivedMs", bench_summary_ms(started, nst),
			"dispatchToResultReceivedMs", bench_summary_ms(result, nr));
	thr = json_pack("{sI sI so}", "count", (json_int_t)m, "concurrency",
			(json_int_t)b->o.concurrency, "dispatchToStampMs",
			bench_summary_ms(ld, nl));
	if (thr && b->thr_last_result > b->thr_first_send && m > 0) {
		double s = (double)(b->thr_last_result - b->thr_first_send) / 1e9;
		json_object_set_new(thr, "seconds", json_real(s));
		json_object_set_new(thr, "perSecond", json_real((double)b->thr_done / s));
		json_object_set_new(thr, "runnerCpuSeconds",
				    json_real(b->cpu_after_thr - b->cpu_before_thr));
		json_object_set_new(thr, "runnerCpuSecondsPer1000",
				    json_real((b->cpu_after_thr - b->cpu_before_thr) * 1000.0 /
					      (double)b->thr_done));
	}
	o = json_pack("{s{sI sI sI sI sI sI} so so sI sI sI sI}", "idle", "rssKiB",
		      (json_int_t)b->idle_rss_kib, "threads", (json_int_t)b->idle_threads,
		      "vmSizeKiB", (json_int_t)b->idle_vmsize_kib, "rssAnonKiB",
		      (json_int_t)b->idle_anon_kib, "pssKiB", (json_int_t)b->idle_pss_kib,
		      "privateKiB", (json_int_t)b->idle_private_kib, "latency", lat, "throughput",
		      thr, "peakRssKiB", (json_int_t)b->hwm_kib, "rssAfterKiB",
		      (json_int_t)b->rss_after_kib, "errors", (json_int_t)b->errors, "reconnects",
		      (json_int_t)(b->reconnects > 0 ? b->reconnects - 1 : 0));
out:
	free(stamp);
	free(started);
	free(result);
	free(ld);
	return o;
}

static void rb_write_csv(struct rb *b)
{
	FILE *f = fopen(b->o.csv, "we");
	if (!f) {
		perror(b->o.csv);
		return;
	}
	fputs("phase,index,send_ns,started_rx_ns,runner_start_ms,result_rx_ns,stamp_ns,result\n",
	      f);
	for (long i = 0; i < b->o.latency; i++) {
		struct rb_task *t = &b->lat[i];
		fprintf(f,
			"latency,%ld,%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64
			",%s\n",
			i, t->send_ns, t->started_rx_ns, t->started_ms, t->result_rx_ns,
			t->stamp_ns, t->phase[0] ? t->phase : "-");
	}
	for (long i = 0; i < b->o.throughput; i++) {
		struct rb_task *t = &b->thr[i];
		fprintf(f,
			"throughput,%ld,%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64
			",%s\n",
			i, t->send_ns, t->started_rx_ns, t->started_ms, t->result_rx_ns,
			t->stamp_ns, t->phase[0] ? t->phase : "-");
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	static struct rb b;
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1;
	socklen_t sl = sizeof(sa);
	char *tok = NULL;
	int64_t deadline;
	json_t *rep;
	int rc = 0;

	if (rb_parse(argc, argv, &b.o) < 0)
		return 2;
	if (util_read_file(b.o.token_file, sizeof(b.token) - 1, &tok, NULL) < 0) {
		fprintf(stderr, "tasked-bench-runner: cannot read %s\n", b.o.token_file);
		return 2;
	}
	util_rstrip(tok);
	snprintf(b.token, sizeof(b.token), "%s", tok);
	free(tok);
	if (b.o.tasks) {
		if (rb_load_script(&b) < 0)
			return 2;
		b.o.latency = 1;
		b.o.throughput = 0;
	}
	b.lat = calloc((size_t)b.o.latency, sizeof(*b.lat));
	b.thr = calloc((size_t)b.o.throughput + 1, sizeof(*b.thr));
	if (!b.lat || !b.thr)
		return 1;
	for (int i = 0; i < RB_MAX_CONNS; i++)
		b.conns[i].fd = -1;
	b.ws_fd = -1;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, rb_on_signal);
	signal(SIGTERM, rb_on_signal);
	b.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	sa.sin_port = htons((uint16_t)b.o.port);
	if (b.lfd >= 0)
		(void)setsockopt(b.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (b.lfd < 0 || bind(b.lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(b.lfd, 16) < 0 || getsockname(b.lfd, (struct sockaddr *)&sa, &sl) < 0) {
		perror("tasked-bench-runner: listen");
		return 1;
	}
	b.pid = rb_start_runner(&b, ntohs(sa.sin_port));
	if (b.pid < 0)
		return 1;
	if (b.o.pid_file) {
		FILE *pf = fopen(b.o.pid_file, "we");
		if (pf) {
			fprintf(pf, "%ld\n", (long)b.pid);
			fclose(pf);
		}
	}
	rb_next_phase(&b, RB_WAIT_HELLO);
	deadline = bench_mono_ns() + b.o.timeout_s * 1000000000LL;
	b.last_ping_mono = bench_mono_ns();
	while (b.phase != RB_DONE && !rb_interrupted) {
		struct pollfd pf[RB_MAX_CONNS + 1];
		int idx[RB_MAX_CONNS + 1], np = 0, status;
		int64_t now = bench_mono_ns();

		if (now > deadline) {
			fprintf(stderr, "tasked-bench-runner: timed out in phase %d\n",
				(int)b.phase);
			rc = 3;
			break;
		}
		if (waitpid(b.pid, &status, WNOHANG) == b.pid) {
			fprintf(stderr,
				"tasked-bench-runner: the runner exited (status %d); see %s\n",
				status, b.o.log);
			b.pid = 0;
			rc = 1;
			break;
		}
		if (b.phase == RB_IDLE && now >= b.idle_until_mono) {
			b.idle_rss_kib = bench_proc_kib(b.pid, "VmRSS");
			b.idle_threads = bench_proc_kib(b.pid, "Threads");
			b.idle_vmsize_kib = bench_proc_kib(b.pid, "VmSize");
			b.idle_anon_kib = bench_proc_kib(b.pid, "RssAnon");
			b.idle_pss_kib = bench_proc_file_kib(b.pid, "smaps_rollup", "Pss");
			b.idle_private_kib = bench_proc_file_kib(b.pid, "smaps_rollup",
								 "Private_Dirty") +
					     bench_proc_file_kib(b.pid, "smaps_rollup",
								 "Private_Clean");
			rb_next_phase(&b, RB_LATENCY);
			rb_pump(&b);
		}
		if (b.ws_fd >= 0 && now - b.last_ping_mono > 3000000000LL) {
			json_t *ping = proto_new(PROTO_PING);
			(void)rb_send(&b, ping, NULL);
			json_decref(ping);
			b.last_ping_mono = now;
		}
		pf[np] = (struct pollfd){ .fd = b.lfd, .events = POLLIN };
		idx[np++] = -1;
		for (int i = 0; i < RB_MAX_CONNS; i++) {
			if (b.conns[i].fd >= 0) {
				pf[np] = (struct pollfd){ .fd = b.conns[i].fd, .events = POLLIN };
				idx[np++] = i;
			}
		}
		if (poll(pf, (nfds_t)np, 100) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < np; i++) {
			if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (idx[i] < 0)
				rb_accept(&b);
			else if (b.conns[idx[i]].fd == pf[i].fd)
				rb_read(&b, &b.conns[idx[i]]);
		}
	}
	rb_stop_runner(&b);
	for (int i = 0; i < RB_MAX_CONNS; i++)
		rb_close(&b, &b.conns[i]);
	if (b.o.tasks) {
		int st = b.runner_status;
		rb_event(json_pack("{ss sb si si}", "event", "runnerExit", "exited", WIFEXITED(st),
				   "status", WIFEXITED(st) ? WEXITSTATUS(st) : -1, "signal",
				   WIFSIGNALED(st) ? WTERMSIG(st) : 0));
		for (long i = 0; i < b.script_n; i++)
			json_decref(b.script[i]);
		free(b.lat);
		free(b.thr);
		return rc ? rc : b.phase == RB_DONE ? 0 : 4;
	}
	rep = rb_report(&b);
	if (rep && b.o.floor > 0)
		json_object_set_new(rep, "floor", rb_floor(b.o.command, b.o.floor));
	if (b.o.csv)
		rb_write_csv(&b);
	if (rep) {
		if (b.o.json && bench_write_json(b.o.json, rep) < 0)
			fprintf(stderr, "tasked-bench-runner: cannot write %s\n", b.o.json);
		json_dumpf(rep, stdout, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
		putchar('\n');
	}
	json_decref(rep);
	if (rc == 0 && (b.phase != RB_DONE || b.errors))
		rc = 4;
	free(b.lat);
	free(b.thr);
	return rc;
}
