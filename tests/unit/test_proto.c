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

	r = decode(
		"{\"type\":\"hello\",\"runnerId\":\"r-1\",\"version\":\"0.1.0\",\"labels\":{\"pool\":\"a\"},"
		"\"executors\":[\"shell\"],\"capacity\":4,\"running\":[{\"taskUid\":\"u\",\"attempt\":2}]}",
		PROTO_FROM_RUNNER, &m, err);
	is_int(r, 0, "hello decodes");
	ok(m.type == PROTO_HELLO && m.capacity == 4 && strcmp(m.runner_id, "r-1") == 0,
	   "hello fields");
	ok(json_array_size(m.running) == 1, "held attempts listed");
	proto_msg_free(&m);

	r = decode(
		"{\"type\":\"result\",\"taskUid\":\"u\",\"attempt\":1,\"phase\":\"Failed\",\"exitCode\":3,"
		"\"logTail\":\"boom\",\"truncated\":true,\"output\":{\"x\":1}}",
		PROTO_FROM_RUNNER, &m, err);
	is_int(r, 0, "result decodes");
	ok(m.exit_code == 3 && m.truncated && strcmp(m.phase, "Failed") == 0 &&
		   json_is_object(m.output),
	   "result fields");
	proto_msg_free(&m);

	r = decode(
		"{\"type\":\"dispatch\",\"taskUid\":\"u\",\"attempt\":1,\"namespace\":\"d\",\"name\":\"t\","
		"\"shell\":{\"command\":[\"echo\",\"hi\"]},\"env\":[{\"name\":\"A\",\"value\":\"b\"}]}",
		PROTO_FROM_CONTROLLER, &m, err);
	is_int(r, 0, "dispatch decodes");
	ok(json_array_size(m.command) == 2 && m.max_output == 10 * 1024 * 1024 &&
		   m.log_tail_max == 4096,
	   "dispatch defaults for limits");
	proto_msg_free(&m);

	/* Encoding what we build decodes again. */
	msg = proto_new_task(PROTO_ACK, "uid-1", 7);
	is_int(proto_encode(msg, 1024, &out, &n), 0, "ack encodes");
	r = decode(out, PROTO_FROM_CONTROLLER, &m, err);
	ok(r == 0 && m.type == PROTO_ACK && m.attempt == 7 && strcmp(m.task_uid, "uid-1") == 0,
	   "ack round-trips");
	proto_msg_free(&m);
	free(out);
	is_int(proto_encode(msg, 10, &out, &n), -EMSGSIZE, "encode respects the size cap");
	json_decref(msg);

	/* Malformed input. */
	struct {
		const char *in;
		enum proto_dir dir;
		const char *reason;
	} bad[] = {
		{ "not json", PROTO_FROM_RUNNER, "invalid JSON" },
		{ "[]", PROTO_FROM_RUNNER, "JSON object" },
		{ "{}", PROTO_FROM_RUNNER, "missing field type" },
		{ "{\"type\":\"explode\"}", PROTO_FROM_RUNNER, "unknown message type" },
		{ "{\"type\":\"dispatch\"}", PROTO_FROM_RUNNER, "not allowed in this direction" },
		{ "{\"type\":\"hello\"}", PROTO_FROM_CONTROLLER, "not allowed in this direction" },
		{ "{\"type\":\"started\",\"taskUid\":\"u\"}", PROTO_FROM_RUNNER,
		  "missing field attempt" },
		{ "{\"type\":\"started\",\"taskUid\":\"u\",\"attempt\":\"1\"}", PROTO_FROM_RUNNER,
		  "must be an integer" },
		{ "{\"type\":\"started\",\"taskUid\":\"u\",\"attempt\":0}", PROTO_FROM_RUNNER,
		  "out of range" },
		{ "{\"type\":\"started\",\"taskUid\":\"\",\"attempt\":1}", PROTO_FROM_RUNNER,
		  "empty" },
		{ "{\"type\":\"result\",\"taskUid\":\"u\",\"attempt\":1,\"phase\":\"Bogus\"}",
		  PROTO_FROM_RUNNER, "phase" },
		{ "{\"type\":\"hello\",\"runnerId\":\"a b\",\"version\":\"1\",\"capacity\":1}",
		  PROTO_FROM_RUNNER, "invalid characters" },
		{ "{\"type\":\"hello\",\"runnerId\":\"a\",\"version\":\"1\",\"capacity\":100000}",
		  PROTO_FROM_RUNNER, "out of range" },
		{ "{\"type\":\"log\",\"taskUid\":\"u\",\"attempt\":1,\"seq\":0,\"stream\":\"stdin\",\"data\":\"\"}",
		  PROTO_FROM_RUNNER, "stream" },
		{ "{\"type\":\"dispatch\",\"taskUid\":\"u\",\"attempt\":1,\"namespace\":\"d\",\"name\":\"t\",\"shell\":{\"command\":[]}}",
		  PROTO_FROM_CONTROLLER, "empty" },
		{ "{\"type\":\"dispatch\",\"taskUid\":\"u\",\"attempt\":1,\"namespace\":\"d\",\"name\":\"t\",\"shell\":{\"command\":[1]}}",
		  PROTO_FROM_CONTROLLER, "string" },
		{ "{\"type\":\"dispatch\",\"taskUid\":\"u\",\"attempt\":1,\"namespace\":\"d\",\"name\":\"t\",\"shell\":{\"command\":[\"a\"]},\"env\":[{\"name\":\"A=B\",\"value\":\"x\"}]}",
		  PROTO_FROM_CONTROLLER, "env" },
		{ "{\"type\":\"ping\",\"type\":\"ping\"}", PROTO_FROM_CONTROLLER, "invalid JSON" },
		/* jansson refuses NUL escapes unless asked to allow them */
		{ "{\"type\":\"started\",\"taskUid\":\"a\\u0000b\",\"attempt\":1}",
		  PROTO_FROM_RUNNER, "contains NUL" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = decode(bad[i].in, bad[i].dir, &m, err);
		ok(r == -EBADMSG && strstr(err, bad[i].reason), "refused %s (%s)", bad[i].in, err);
	}
	{
		/* The envelope scan attributes what the strict decoder refuses. */
		static const char *const env_ok[] = {
			"{\"type\":\"result\",\"taskUid\":\"u-1\",\"attempt\":7,\"phase\":\"Bogus\"}",
			"{ \"output\" : [[{\"k\":\"]}\\\"\"}]], \"attempt\" : 7 , \"taskUid\":\"u-1\", \"type\":\"result\", \"x\": null }",
			"{\"type\":\"result\",\"taskUid\":\"u-1\",\"attempt\":7,\"message\":\"a\\u0000b\"}",
		};
		static const char *const env_bad[] = {
			"",
			"[]",
			"{}",
			"{\"type\":\"result\",\"taskUid\":\"u\"}",
			"{\"type\":\"result\",\"taskUid\":\"u\",\"attempt\":0}",
			"{\"type\":\"result\",\"taskUid\":\"u\",\"attempt\":1.5}",
			"{\"type\":\"result\",\"taskUid\":\"u\",\"attempt\":123456789}",
			"{\"type\":\"result\",\"taskUid\":\"u\\u0031\",\"attempt\":1}",
			"{\"type\":\"result\",\"taskUid\":\"a\",\"taskUid\":\"b\",\"attempt\":1}",
			"{\"type\":\"nope\",\"taskUid\":\"u\",\"attempt\":1}",
			"{\"type\":\"result\",\"taskUid\":\"u\",\"attempt\":1,\"output\":[[[",
		};
		enum proto_type t;
		char uid[PROTO_MAX_ID + 1];
		int64_t at;
		char *deep = malloc(20000 + 128);
		size_t k = 0;
		for (size_t i = 0; i < sizeof(env_ok) / sizeof(env_ok[0]); i++) {
			r = proto_envelope(env_ok[i], strlen(env_ok[i]), &t, uid, sizeof(uid), &at);
			ok(r == 0 && t == PROTO_RESULT && strcmp(uid, "u-1") == 0 && at == 7,
			   "envelope of %s", env_ok[i]);
		}
		for (size_t i = 0; i < sizeof(env_bad) / sizeof(env_bad[0]); i++)
			ok(proto_envelope(env_bad[i], strlen(env_bad[i]), &t, uid, sizeof(uid),
					  &at) == -EBADMSG,
			   "no envelope in %s", env_bad[i]);
		k += (size_t)snprintf(deep, 64, "{\"type\":\"result\",\"output\":");
		for (int i = 0; i < 9000; i++)
			deep[k++] = '[';
		for (int i = 0; i < 9000; i++)
			deep[k++] = ']';
		k += (size_t)snprintf(deep + k, 64, ",\"taskUid\":\"u-1\",\"attempt\":7}");
		ok(proto_decode(deep, k, PROTO_MAX_MESSAGE_DEFAULT, PROTO_FROM_RUNNER, &m, err,
				sizeof(err)) == -EBADMSG &&
			   proto_envelope(deep, k, &t, uid, sizeof(uid), &at) == 0 && at == 7,
		   "output nested 9000 deep: refused by the decoder, attributed by the envelope scan");
		free(deep);
	}
	big = malloc(2 * 1024 * 1024 + 1);
	memset(big, ' ', 2 * 1024 * 1024);
	big[2 * 1024 * 1024] = '\0';
	r = proto_decode(big, strlen(big), PROTO_MAX_MESSAGE_DEFAULT, PROTO_FROM_RUNNER, &m, err,
			 sizeof(err));
	is_int(r, -EMSGSIZE, "a 2 MiB message is refused by size before parsing");
	free(big);
	return done_testing();
}
