/* Fuzz target: a controller message decoded as the runner does, and, for a dispatch, turned into
 * an attempt (exec_task_new: env, secrets, the http/remote spec and its policy CIDRs). Nothing is
 * run. */
#include "exec.h"
#include "proto.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_msg m;
	struct exec_opts opts = { .work_root = "/nonexistent", .drop_uid = 0 };
	struct exec_task *t = NULL;
	char err[256];

	if (proto_decode((const char *)data, size, 256 * 1024, PROTO_FROM_CONTROLLER, &m, err,
			 sizeof(err)) < 0)
		return 0;
	if (m.type == PROTO_DISPATCH && exec_task_new(&m, &opts, &t) == 0)
		exec_task_free(t);
	proto_msg_free(&m);
	return 0;
}
