#pragma once
/* Dependencies between Tasks: which tasks a task waits for, the variables its `when` condition
 * sees, and $(tasks.NAME.…) references resolved at dispatch. Inside a Flow, NAME is a sibling's
 * short name (child Task "<flow>-<name>"); otherwise it is a Task in the same namespace. */
#include "informer.h"

#include <jansson.h>

#define DEPS_MAX 64

enum deps_state { DEPS_READY, DEPS_WAIT, DEPS_FAILED };

/* Task key ("ns/name") that NAME refers to from task, into out. */
int deps_key(json_t *task, const char *name, char *out, size_t outsz);

/* Looks at spec.dependsOn. DEPS_WAIT: some dependency is missing or not finished (why says
 * which); DEPS_FAILED: one Failed or was Cancelled; DEPS_READY: all Succeeded or Skipped.
 * *vars (new reference) is the `tasks` map for conditions: {NAME: {phase, exitCode, output}} for
 * every dependency (and, in a Flow, every sibling) that exists. Secrets never appear in it. */
enum deps_state deps_check(struct informer *inf, json_t *task, json_t **vars, char *why,
			   size_t whysz);

/* Whether task (outside a Flow) waits on itself through dependsOn between unfinished Tasks;
 * path gets "a -> b -> a". The search is bounded (a few hundred tasks). */
int deps_find_cycle(struct informer *inf, json_t *task, char *path, size_t pathsz);

/* Variables for `when`: {tasks: ..., task: {name, namespace, labels, attempt}}. Steals tasks. */
json_t *deps_condition_vars(json_t *task, json_t *tasks, int64_t attempt);

/* Replaces $(tasks.NAME.output.PATH), $(tasks.NAME.exitCode) and $(tasks.NAME.phase) in s; "$$"
 * is left for the runner's own expansion. With escape set, every "$" of an inserted value is
 * doubled, so the runner's $(VAR) expansion yields the value itself and never expands a
 * reference a dependency wrote into its output. Unknown names or paths are an error (err says
 * which). Returns a new string (caller frees) or NULL. */
char *deps_resolve_refs(const char *s, json_t *tasks, int escape, char *err, size_t errsz);
/* Applies deps_resolve_refs to a dispatch message in place: shell.command and the http/remote
 * url, body and header values (escaped: the runner expands them), and env values (verbatim: the
 * runner passes them on as they are). */
int deps_resolve_dispatch(json_t *msg, json_t *tasks, char *err, size_t errsz);

/* Reverse index: who depends on whom, so a finished task wakes its dependents. */
struct deps_index;
struct deps_index *deps_index_new(void);
void deps_index_free(struct deps_index *x);
/* Records task's dependencies (obj NULL = removed). */
void deps_index_update(struct deps_index *x, const char *key, json_t *obj);
/* Calls fn for every task that depends on key. */
void deps_index_dependents(struct deps_index *x, const char *key,
			   void (*fn)(const char *dep, void *ud), void *ud);
