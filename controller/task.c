#include "task.h"
#include "util.h"

#include <string.h>

int task_phase_terminal(const char *phase) { return phase_terminal(phase); }

json_t *task_metadata(json_t *task) { return json_object_get(task, "metadata"); }
json_t *task_spec(json_t *task) { return json_object_get(task, "spec"); }
json_t *task_status(json_t *task) { return json_object_get(task, "status"); }

static const char *md_str(json_t *task, const char *k)
{
	return json_string_value(json_object_get(task_metadata(task), k));
}
static const char *st_str(json_t *task, const char *k)
{
	return json_string_value(json_object_get(task_status(task), k));
}

const char *task_namespace(json_t *task) { return md_str(task, "namespace"); }
const char *task_name(json_t *task) { return md_str(task, "name"); }
const char *task_uid(json_t *task) { return md_str(task, "uid"); }
int64_t task_generation(json_t *task)
{
	return json_integer_value(json_object_get(task_metadata(task), "generation"));
}
const char *task_creation_timestamp(json_t *task) { return md_str(task, "creationTimestamp"); }
int task_deleting(json_t *task)
{
	return json_object_get(task_metadata(task), "deletionTimestamp") != NULL;
}

const char *task_phase(json_t *task) { return st_str(task, "phase"); }
int task_terminal(json_t *task) { return task_phase_terminal(task_phase(task)); }
const char *task_reason(json_t *task) { return st_str(task, "reason"); }
const char *task_message(json_t *task) { return st_str(task, "message"); }
int64_t task_attempts(json_t *task)
{
	return json_integer_value(json_object_get(task_status(task), "attempts"));
}
const char *task_runner(json_t *task) { return st_str(task, "runner"); }
json_t *task_history(json_t *task) { return json_object_get(task_status(task), "attemptHistory"); }
json_t *task_conditions(json_t *task) { return json_object_get(task_status(task), "conditions"); }
const char *task_completion_time(json_t *task) { return st_str(task, "completionTime"); }
const char *task_next_retry_time(json_t *task) { return st_str(task, "nextRetryTime"); }

const char *task_executor(json_t *task)
{
	static const char *const kinds[] = { "shell", "http", "remote", "container" };
	json_t *spec = task_spec(task);
	for (size_t i = 0; i < UTIL_ARRAY_SIZE(kinds); i++)
		if (json_object_get(spec, kinds[i]))
			return kinds[i];
	return "none";
}

int task_cancel_requested(json_t *task)
{
	return json_is_true(json_object_get(task_spec(task), "cancel"));
}
