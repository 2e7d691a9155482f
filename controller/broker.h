#pragma once
/* The runner broker (docs/protocol.md): token → single-use grant over HTTP, then one WebSocket
 * per runner. Its listener is one of the server's (server.h), whose loop calls it.
 * broker_dispatch/cancel/ack may be called from any thread; callbacks run on the loop thread
 * and must only record and queue work. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct broker;
struct server;

struct broker_cfg {
	struct server *server;   /* listens and runs the loop; must outlive nothing of ours:
				       * server_free comes before broker_free */
	const char *broker_addr; /* "127.0.0.1:8081" */
	const char *token_file;  /* runner token; re-read when it changes */
	size_t max_message;      /* 0 = PROTO_MAX_MESSAGE_DEFAULT */
	int heartbeat_s;         /* ping interval; a runner silent 3 intervals is dropped */
	/* Whether runners are accepted now (leader election: a standby sends them away so they
	 * find the leader; the task cache must have synced so `held` can be answered); NULL =
	 * always. */
	int (*admit)(void *ud);
	void *admit_ud;
};

struct broker_ops {
	void (*started)(void *ud, const char *uid, int64_t attempt, int64_t start_ms,
			const char *runner);
	/* msg is the decoded result message (borrowed). */
	void (*result)(void *ud, const char *uid, int64_t attempt, const char *runner, json_t *msg);
	/* A (re)connecting runner says it holds this attempt, which the broker did not give it on
	 * this run (typically: after a controller restart). Returns 1 when the controller's records
	 * show the attempt on that runner; then its messages are accepted. Otherwise it is cancelled
	 * and its messages dropped. Called without the broker's lock, on the loop thread. */
	int (*held)(void *ud, const char *uid, int64_t attempt, const char *runner);
	/* Slots became free or a runner joined: queued tasks may now fit. */
	void (*capacity)(void *ud);
	/* A runner reconnected without an attempt it had been given. */
	void (*lost)(void *ud, const char *uid, int64_t attempt, const char *runner);
	/* A chunk of task output (data is borrowed, NUL-terminated; may be NULL in ops). */
	void (*log)(void *ud, const char *uid, int64_t attempt, int64_t seq, const char *stream,
		    const char *data, const char *runner);
	/* Whether the task with this UID belongs to RunnerPool pool ("ns/name"): 1 yes. A pool's
	 * runner that reconnects keeps only such attempts (NULL: it keeps none). */
	int (*in_pool)(void *ud, const char *uid, const char *pool);
};

/* Listens on cfg->broker_addr as one of cfg->server's listeners. */
int broker_new(const struct broker_cfg *cfg, struct broker **ret);
/* The consumer of runner reports (the Task reconciler) subscribes before server_run. */
void broker_subscribe(struct broker *b, const struct broker_ops *ops, void *ud);
void broker_free(struct broker *b);
int broker_listening(struct broker *b);

/* Sends a dispatch (msg borrowed) to a connected runner of pool (a RunnerPool "ns/name"; NULL
 * or "" = the runners with the global token) whose labels match selector (object of strings,
 * may be NULL) and that has a free slot and is not draining. Writes the runner id into
 * runner_out. -EAGAIN: matching runners are all busy; -ENODEV: no connected runner matches. */
int broker_dispatch(struct broker *b, const char *uid, int64_t attempt, const char *pool,
		    json_t *selector, json_t *msg, char *runner_out, size_t outsz);
int broker_cancel(struct broker *b, const char *runner, const char *uid, int64_t attempt);
int broker_ack(struct broker *b, const char *runner, const char *uid, int64_t attempt);
void broker_counts(struct broker *b, int *runners, int *free_slots);
/* Whether any connected runner with the global token matches selector (NULL or empty matches
 * any). */
int broker_has_runner(struct broker *b, json_t *selector);
/* RunnerPools (pools.h): a runner that authenticates with a pool's token (at least 32
 * characters) belongs to that pool for as long as it is connected. Adds or replaces. */
int broker_pool_set(struct broker *b, const char *pool, const char *token);
/* Forgets a pool's token: no new runner of it is admitted (connected ones stay until they go). */
void broker_pool_remove(struct broker *b, const char *pool);
struct broker_pool_counts {
	int runners;  /* connected, not draining */
	int slots;    /* their capacity */
	int busy;     /* attempts on the pool's connected runners (draining ones too) */
	int draining; /* connected, chosen for scale-down */
};
void broker_pool_counts(struct broker *b, const char *pool, struct broker_pool_counts *ret);
/* Marks up to n of the pool's connected idle runners as draining (no dispatch reaches them
 * again, so they stay idle) and writes their ids; returns how many. */
int broker_pool_drain(struct broker *b, const char *pool, int n, char (*ids)[64], int max);
/* A drained runner takes work again (demand came back before its pod went, or the ReplicaSet
 * removed another pod). 1 when it was connected and draining. */
int broker_pool_undrain(struct broker *b, const char *pool, const char *id);
struct broker_stats {
	unsigned long long dropped_started, dropped_log,
		dropped_result;          /* not that runner's attempt */
	unsigned long long auth_limited; /* authentications refused by the per-peer limit */
	unsigned long long bad_mask;     /* connections failed for an unmasked client frame */
};
void broker_stats(struct broker *b, struct broker_stats *ret);
