#pragma once
/* Broker protocol v1 (docs/protocol.md): JSON text messages over a WebSocket with subprotocol
 * "tasked.runner.v1". Decoding is strict: a message of the wrong direction, an unknown type, a
 * missing or mistyped field, or one over the size cap is an error, and the caller closes the
 * connection. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_SUBPROTOCOL "tasked.runner.v1"
#define PROTO_MAX_MESSAGE_DEFAULT (1024 * 1024)
#define PROTO_MAX_ID 128
#define PROTO_MAX_ARGS 256
#define PROTO_MAX_ENV 256
#define PROTO_MAX_LABELS 32
#define PROTO_MAX_CAPACITY 1024
#define PROTO_MAX_HELD 4096
#define PROTO_MAX_URL 8192
#define PROTO_MAX_HEADERS 128
#define PROTO_MAX_HEADER_VALUE (8 * 1024)
#define PROTO_MAX_CODES 64
#define PROTO_MAX_SCOPES 64
#define PROTO_MAX_CIDRS 256
#define PROTO_MAX_REDIRECTS 20
#define PROTO_MAX_OUTPUT_DEPTH 64 /* nesting of a task's output; the runner refuses deeper */

/* WebSocket close codes used on protocol errors (4000-4999 are application codes). */
#define PROTO_CLOSE_MALFORMED 4400
#define PROTO_CLOSE_TOO_BIG 1009
#define PROTO_CLOSE_POLICY 1008
#define PROTO_CLOSE_DRAIN 4001
#define PROTO_CLOSE_STANDBY 4003 /* a standby controller; reconnect (to the leader) */

enum proto_dir { PROTO_FROM_RUNNER, PROTO_FROM_CONTROLLER };

enum proto_type {
	/* runner -> controller */
	PROTO_HELLO,
	PROTO_READY,
	PROTO_STARTED,
	PROTO_LOG,
	PROTO_RESULT,
	PROTO_PONG,
	/* controller -> runner */
	PROTO_WELCOME,
	PROTO_DISPATCH,
	PROTO_CANCEL,
	PROTO_ACK,
	PROTO_DRAIN,
	PROTO_PING,
	PROTO__COUNT
};

enum proto_executor { PROTO_EXEC_SHELL, PROTO_EXEC_HTTP, PROTO_EXEC_REMOTE };

/* A decoded message. `root` is owned; every pointer below is borrowed from it. Only the fields
 * of the message's type are set. */
struct proto_msg {
	enum proto_type type;
	json_t *root;
	const char *task_uid; /* started, log, result, dispatch, cancel, ack */
	int64_t attempt;      /* same */
	/* hello */
	const char *runner_id, *version;
	json_t *labels, *executors, *running; /* running: [{taskUid, attempt}] held by the runner */
	int64_t capacity;
	/* ready */
	int64_t slots;
	/* log */
	int64_t seq;
	const char *stream, *data;
	/* result */
	const char *phase, *reason, *message, *log_tail;
	int64_t exit_code;   /* -1 when absent */
	int64_t http_status; /* http and remote executors; 0 when absent */
	int retryable;       /* remote executor's verdict: 1, 0, or -1 when absent */
	json_t *output;      /* may be NULL */
	int truncated;
	int64_t start_ms, end_ms; /* started, result */
	/* welcome */
	int64_t heartbeat_s, max_message;
	/* dispatch: exactly one of shell (command set), http or remote */
	const char *namespace_, *name;
	int64_t deadline_ms; /* 0 = none */
	enum proto_executor executor;
	json_t *command; /* shell: array of strings */
	const char *working_dir;
	json_t *http;   /* {method, url, headers[{name, value, secret}], body, successCodes[],
				   *  followRedirects, maxRedirects, maxResponseBytes, timeoutSeconds,
				   *  oauth2{tokenURL, clientID, clientSecret, scopes[]}} */
	json_t *remote; /* {url, headers[{name, value, secret}]} */
	json_t *env;    /* [{name, value, secret}] */
	json_t *input;  /* may be NULL */
	json_t *policy; /* the queue's policy object (other keys ignored); may be NULL */
	int64_t max_output, log_tail_max;
	int64_t memory_bytes, cpu_seconds, cpu_millis; /* limits; 0 = none */
};

const char *proto_type_name(enum proto_type t);
/* Decodes one message. On error returns -EBADMSG (or -EMSGSIZE) and writes a short reason
 * (never message contents) into err. */
int proto_decode(const char *data, size_t len, size_t max, enum proto_dir dir,
		 struct proto_msg *ret, char *err, size_t errsz);
void proto_msg_free(struct proto_msg *m);

/* Best-effort attribution of a message the strict decoder refused (bad fields, output nested
 * deeper than the JSON parser allows, NUL in a string): scans the top-level object for the keys
 * type, taskUid and attempt without building a tree, and does not validate the rest. Returns 0
 * when all three are there and well-formed (uid: 1-128 printable ASCII bytes, written to uid);
 * -EBADMSG otherwise. */
int proto_envelope(const char *data, size_t len, enum proto_type *type, char *uid, size_t uidsz,
		   int64_t *attempt);

/* Returns a new object {"type": name}. */
json_t *proto_new(enum proto_type t);
/* Serialises msg (borrowed) compactly; -EMSGSIZE when longer than max. Caller frees *ret. */
int proto_encode(const json_t *msg, size_t max, char **ret, size_t *ret_len);
/* Convenience: {type, taskUid, attempt}. */
json_t *proto_new_task(enum proto_type t, const char *task_uid, int64_t attempt);

/* Parses a task's output (any JSON value; NUL inside strings kept). Returns a new reference, or
 * NULL with err filled; *too_deep is set when it is JSON nested deeper than
 * PROTO_MAX_OUTPUT_DEPTH (the task then fails OutputTooDeep rather than passing a document that
 * every later parser, in the controller and in clients, must survive). */
json_t *proto_load_output(const char *data, size_t len, int *too_deep, json_error_t *err);
