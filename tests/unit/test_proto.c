/* Broker protocol: every message type round-trips; malformed input is refused with a reason. */
#include "proto.h"
#include "tap.h"

#include <errno.h>

static int decode(const char *s, enum proto_dir dir, struct proto_msg *m, char *err)
{
	return proto_decode(s, strlen(s), PROTO_MAX_MESSAGE_DEFAULT, dir, m, err, 160);
}

int main(void)
{
	struct proto_msg m;
	char err[160], *out, *big;
	size_t n;
	json_t *msg;
	int r;

	r = decode("{\"type\":\"hello\",\"runnerId\":\"r-1\",\"version\":\"0.1.0\",\"labels\":{\"pool\":\"a\"},"
		   "\"executors\":[\"shell\"],\"capacity\":4,\"running\":[{\"taskUid\":\"u\",\"attempt\":2}]}",
		   PROTO_FROM_RUNNER, &m, err);
	is_int(r, 0, "hello decodes");
	ok(m.type == PROTO_HELLO && m.capacity == 4 && strcmp(m.runner_id, "r-1") == 0, "hello fields");
	ok(json_array_size(m.running) == 1, "held attempts listed");
	proto_msg_free(&m);

	r = decode("{\"type\":\"result\",\"taskUid\":\"u\",\"attempt\":1,\"phase\":\"Failed\",\"exitCode\":3,"
		   "\"logTail\":\"boom\",\"truncated\":true,\"output\":{\"x\":1}}", PROTO_FROM_RUNNER, &m, err);
	is_int(r, 0, "result decodes");
	ok(m.exit_code == 3 && m.truncated && strcmp(m.phase, "Failed") == 0 && json_is_object(m.output),
	   "result fields");
	proto_msg_free(&m);

	r = decode("{\"type\":\"dispatch\",\"taskUid\":\"u\",\"attempt\":1,\"namespace\":\"d\",\"name\":\"t\","
		   "\"shell\":{\"command\":[\"echo\",\"hi\"]},\"env\":[{\"name\":\"A\",\"value\":\"b\"}]}",
		   PROTO_FROM_CONTROLLER, &m, err);
	is_int(r, 0, "dispatch decodes");
	ok(json_array_size(m.command) == 2 && m.max_output == 10 * 1024 * 1024 && m.log_tail_max == 4096,
	   "dispatch defaults for limits");
	proto_msg_free(&m);

	/* Encoding what we build decodes again. */
	msg = proto_new_task(PROTO_ACK, "uid-1", 7);
	is_int(proto_encode(msg, 1024, &out, &n), 0, "ack encodes");
	r = decode(out, PROTO_FROM_CONTROLLER, &m, err);
	ok(r == 0 && m.type == PROTO_ACK && m.attempt == 7 && strcmp(m.task_uid, "uid-1") == 0, "ack round-trips");
	proto_msg_free(&m);
	free(out);
	is_int(proto_encode(msg, 10, &out, &n), -EMSGSIZE, "encode respects the size cap");
	json_decref(msg);

	/* Malformed input. */
	struct { const char *in; enum proto_dir dir; const char *reason; } bad[] = {
		{ "not json", PROTO_FROM_RUNNER, "invalid JSON" },
		{ "[]", PROTO_FROM_RUNNER, "JSON object" },
		{ "{}", PROTO_FROM_RUNNER, "missing field type" },
		{ "{\"type\":\"explode\"}", PROTO_FROM_RUNNER, "unknown message type" },
		{ "{\"type\":\"dispatch\"}", PROTO_FROM_RUNNER, "not allowed in this direction" },
		{ "{\"type\":\"hello\"}", PROTO_FROM_CONTROLLER, "not allowed in this direction" },
		{ "{\"type\":\"started\",\"taskUid\":\"u\"}", PROTO_FROM_RUNNER, "missing field attempt" },
		{ "{\"type\":\"started\",\"taskUid\":\"u\",\"attempt\":\"1\"}", PROTO_FROM_RUNNER, "must be an integer" },
		{ "{\"type\":\"started\",\"taskUid\":\"u\",\"attempt\":0}", PROTO_FROM_RUNNER, "out of range" },
		{ "{\"type\":\"started\",\"taskUid\":\"\",\"attempt\":1}", PROTO_FROM_RUNNER, "empty" },
		{ "{\"type\":\"result\",\"taskUid\":\"u\",\"attempt\":1,\"phase\":\"Bogus\"}", PROTO_FROM_RUNNER, "phase" },
		{ "{\"type\":\"hello\",\"runnerId\":\"a b\",\"version\":\"1\",\"capacity\":1}", PROTO_FROM_RUNNER, "invalid characters" },
		{ "{\"type\":\"hello\",\"runnerId\":\"a\",\"version\":\"1\",\"capacity\":100000}", PROTO_FROM_RUNNER, "out of range" },
		{ "{\"type\":\"log\",\"taskUid\":\"u\",\"attempt\":1,\"seq\":0,\"stream\":\"stdin\",\"data\":\"\"}", PROTO_FROM_RUNNER, "stream" },
		{ "{\"type\":\"dispatch\",\"taskUid\":\"u\",\"attempt\":1,\"namespace\":\"d\",\"name\":\"t\",\"shell\":{\"command\":[]}}", PROTO_FROM_CONTROLLER, "empty" },
		{ "{\"type\":\"dispatch\",\"taskUid\":\"u\",\"attempt\":1,\"namespace\":\"d\",\"name\":\"t\",\"shell\":{\"command\":[1]}}", PROTO_FROM_CONTROLLER, "string" },
		{ "{\"type\":\"dispatch\",\"taskUid\":\"u\",\"attempt\":1,\"namespace\":\"d\",\"name\":\"t\",\"shell\":{\"command\":[\"a\"]},\"env\":[{\"name\":\"A=B\",\"value\":\"x\"}]}", PROTO_FROM_CONTROLLER, "env" },
		{ "{\"type\":\"ping\",\"type\":\"ping\"}", PROTO_FROM_CONTROLLER, "invalid JSON" },
		/* jansson refuses NUL escapes unless asked to allow them */
		{ "{\"type\":\"started\",\"taskUid\":\"a\\u0000b\",\"attempt\":1}", PROTO_FROM_RUNNER, "invalid JSON" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = decode(bad[i].in, bad[i].dir, &m, err);
		ok(r == -EBADMSG && strstr(err, bad[i].reason), "refused %s (%s)", bad[i].in, err);
	}
	big = malloc(2 * 1024 * 1024 + 1);
	memset(big, ' ', 2 * 1024 * 1024);
	big[2 * 1024 * 1024] = '\0';
	r = proto_decode(big, strlen(big), PROTO_MAX_MESSAGE_DEFAULT, PROTO_FROM_RUNNER, &m, err, sizeof(err));
	is_int(r, -EMSGSIZE, "a 2 MiB message is refused by size before parsing");
	free(big);
	return done_testing();
}
