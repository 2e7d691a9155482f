#include "registry.h"
#include "exec.h"
#include "proto.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct reg_attempt {
	struct reg_attempt *next;
	char task_uid[PROTO_MAX_ID + 1];
	int64_t attempt;
	int running;
	struct exec_task *task; /* borrowed while running */
	char *result;           /* while finished and unacknowledged */
	size_t result_len;
};

struct reg_msg {
	struct reg_msg *next;
	enum reg_kind kind;
	char *data;
	size_t len;
};

struct reg {
	pthread_mutex_t lock;
	struct reg_attempt *attempts;
	int capacity, running, unacked, draining, online;
	int nattempts; /* entries, at most PROTO_MAX_HELD */
	struct reg_msg *head, *tail;
	size_t log_bytes, log_budget;
	void (*wake)(void *);
	void *wake_ud;
};

int reg_new(int capacity, size_t log_budget, struct reg **ret)
{
	struct reg *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	r->capacity = capacity;
	r->log_budget = log_budget;
	*ret = r;
	return 0;
}

static void reg_clear_queue_locked(struct reg *r)
{
	while (r->head) {
		struct reg_msg *m = r->head;
		r->head = m->next;
		free(m->data);
		free(m);
	}
	r->tail = NULL;
	r->log_bytes = 0;
}

void reg_free(struct reg *r)
{
	if (!r)
		return;
	reg_clear_queue_locked(r);
	while (r->attempts) {
		struct reg_attempt *a = r->attempts;
		r->attempts = a->next;
		free(a->result);
		free(a);
	}
	pthread_mutex_destroy(&r->lock);
	free(r);
}

void reg_set_wake(struct reg *r, void (*wake)(void *), void *userdata)
{
	pthread_mutex_lock(&r->lock);
	r->wake = wake;
	r->wake_ud = userdata;
	pthread_mutex_unlock(&r->lock);
}

static void reg_wake(struct reg *r)
{
	void (*wake)(void *);
	void *ud;
	pthread_mutex_lock(&r->lock);
	wake = r->wake;
	ud = r->wake_ud;
	pthread_mutex_unlock(&r->lock);
	if (wake)
		wake(ud);
}

static struct reg_attempt *reg_find_locked(struct reg *r, const char *uid, int64_t attempt,
					   struct reg_attempt ***prevp)
{
	struct reg_attempt **pp = &r->attempts;
	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->attempt == attempt && strcmp((*pp)->task_uid, uid) == 0) {
			if (prevp)
				*prevp = pp;
			return *pp;
		}
	return NULL;
}

/* Appends to the queue; the caller holds the lock. Steals data (freed on error). */
static int reg_queue_locked(struct reg *r, enum reg_kind kind, char *data, size_t len)
{
	struct reg_msg *m;

	if (!r->online) {
		free(data);
		return -ENOTCONN;
	}
	if (kind == REG_MSG_LOG && r->log_bytes + len > r->log_budget) {
		free(data);
		return -ENOBUFS;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		free(data);
		return -ENOMEM;
	}
	m->kind = kind;
	m->data = data;
	m->len = len;
	if (kind == REG_MSG_LOG)
		r->log_bytes += len;
	if (r->tail)
		r->tail->next = m;
	else
		r->head = m;
	r->tail = m;
	return 0;
}

int reg_begin(struct reg *r, const char *task_uid, int64_t attempt, struct exec_task *t)
{
	struct reg_attempt *a;
	int ret = 0;

	if (strlen(task_uid) > PROTO_MAX_ID)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	if (reg_find_locked(r, task_uid, attempt, NULL))
		ret = -EEXIST;
	else if (r->draining)
		ret = -ESHUTDOWN;
	else if (r->running >= r->capacity || r->nattempts >= PROTO_MAX_HELD)
		ret = -EBUSY;
	else if (!(a = calloc(1, sizeof(*a))))
		ret = -ENOMEM;
	if (ret == 0) {
		memcpy(a->task_uid, task_uid, strlen(task_uid) + 1);
		a->attempt = attempt;
		a->running = 1;
		a->task = t;
		a->next = r->attempts;
		r->attempts = a;
		r->running++;
		r->nattempts++;
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int reg_finish(struct reg *r, const char *task_uid, int64_t attempt, char *msg, size_t len)
{
	struct reg_attempt *a;
	char *copy;
	int ret = 0;

	if (strlen(task_uid) > PROTO_MAX_ID) {
		free(msg);
		return -EINVAL;
	}
	pthread_mutex_lock(&r->lock);
	a = reg_find_locked(r, task_uid, attempt, NULL);
	if (!a) {
		/* A refusal: bounded, since every entry waits for an ack. */
		a = r->nattempts < PROTO_MAX_HELD ? calloc(1, sizeof(*a)) : NULL;
		if (!a) {
			ret = r->nattempts < PROTO_MAX_HELD ? -ENOMEM : -ENOSPC;
			pthread_mutex_unlock(&r->lock);
			free(msg);
			return ret;
		}
		memcpy(a->task_uid, task_uid, strlen(task_uid) + 1);
		a->attempt = attempt;
		a->next = r->attempts;
		r->attempts = a;
		r->nattempts++;
	} else if (a->running) {
		a->running = 0;
		a->task = NULL;
		r->running--;
	} else if (a->result) {
		r->unacked--;
		free(a->result);
	}
	a->result = msg;
	a->result_len = len;
	r->unacked++;
	if (r->online && (copy = malloc(len + 1))) {
		memcpy(copy, msg, len + 1);
		ret = reg_queue_locked(r, REG_MSG_CONTROL, copy, len);
	}
	pthread_mutex_unlock(&r->lock);
	reg_wake(r);
	/* Queued or not, the result is kept and resent after the next welcome. */
	return ret == -ENOTCONN ? 0 : ret;
}

int reg_replace(struct reg *r, const char *task_uid, int64_t attempt, char *msg, size_t len)
{
	struct reg_attempt *a;
	char *copy;
	int ret = 0;

	pthread_mutex_lock(&r->lock);
	a = reg_find_locked(r, task_uid, attempt, NULL);
	if (!a || a->running || !a->result) {
		ret = !a || !a->running ? -ENOENT : -EBUSY;
		pthread_mutex_unlock(&r->lock);
		free(msg);
		return ret;
	}
	free(a->result);
	a->result = msg;
	a->result_len = len;
	if (r->online && (copy = malloc(len + 1))) {
		memcpy(copy, msg, len + 1);
		ret = reg_queue_locked(r, REG_MSG_CONTROL, copy, len);
	}
	pthread_mutex_unlock(&r->lock);
	reg_wake(r);
	return ret == -ENOTCONN ? 0 : ret;
}

int reg_ack(struct reg *r, const char *task_uid, int64_t attempt)
{
	struct reg_attempt *a, **pp = NULL;
	int ret = 0;

	pthread_mutex_lock(&r->lock);
	a = reg_find_locked(r, task_uid, attempt, &pp);
	if (!a) {
		ret = -ENOENT;
	} else if (a->running) {
		ret = -EBUSY;
	} else {
		*pp = a->next;
		free(a->result);
		free(a);
		r->unacked--;
		r->nattempts--;
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int reg_kill(struct reg *r, const char *task_uid, int64_t attempt, int why)
{
	struct reg_attempt *a;
	int ret = 0;

	pthread_mutex_lock(&r->lock);
	a = reg_find_locked(r, task_uid, attempt, NULL);
	if (!a)
		ret = -ENOENT;
	else if (!a->running)
		ret = -EALREADY;
	else if (a->task)
		exec_task_kill(a->task, (enum exec_kill)why);
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int reg_kill_all(struct reg *r, int why)
{
	int n = 0;
	pthread_mutex_lock(&r->lock);
	for (struct reg_attempt *a = r->attempts; a; a = a->next)
		if (a->running && a->task) {
			exec_task_kill(a->task, (enum exec_kill)why);
			n++;
		}
	pthread_mutex_unlock(&r->lock);
	return n;
}

void reg_set_draining(struct reg *r)
{
	pthread_mutex_lock(&r->lock);
	r->draining = 1;
	pthread_mutex_unlock(&r->lock);
}

#define REG_GETTER(name, field)                 \
	int reg_##name(struct reg *r)           \
	{                                       \
		int v;                          \
		pthread_mutex_lock(&r->lock);   \
		v = r->field;                   \
		pthread_mutex_unlock(&r->lock); \
		return v;                       \
	}
REG_GETTER(draining, draining)
REG_GETTER(running, running)
REG_GETTER(unacked, unacked)
REG_GETTER(capacity, capacity)

json_t *reg_held_json(struct reg *r)
{
	json_t *arr = json_array();
	if (!arr)
		return NULL;
	pthread_mutex_lock(&r->lock);
	for (struct reg_attempt *a = r->attempts; a; a = a->next) {
		if (json_array_size(arr) >= PROTO_MAX_HELD)
			break;
		json_array_append_new(arr, json_pack("{sssI}", "taskUid", a->task_uid, "attempt",
						     (json_int_t)a->attempt));
	}
	pthread_mutex_unlock(&r->lock);
	return arr;
}

void reg_online(struct reg *r)
{
	pthread_mutex_lock(&r->lock);
	reg_clear_queue_locked(r);
	r->online = 1;
	/* Oldest first: the list is newest first, so queue in reverse. */
	{
		struct reg_attempt *rev[PROTO_MAX_HELD];
		size_t n = 0;
		for (struct reg_attempt *a = r->attempts; a && n < PROTO_MAX_HELD; a = a->next)
			if (!a->running && a->result)
				rev[n++] = a;
		while (n > 0) {
			struct reg_attempt *a = rev[--n];
			char *copy = malloc(a->result_len + 1);
			if (!copy)
				break;
			memcpy(copy, a->result, a->result_len + 1);
			if (reg_queue_locked(r, REG_MSG_CONTROL, copy, a->result_len) < 0)
				break;
		}
	}
	pthread_mutex_unlock(&r->lock);
	reg_wake(r);
}

void reg_offline(struct reg *r)
{
	pthread_mutex_lock(&r->lock);
	r->online = 0;
	reg_clear_queue_locked(r);
	pthread_mutex_unlock(&r->lock);
}

int reg_push(struct reg *r, enum reg_kind kind, char *msg, size_t len)
{
	int ret;
	pthread_mutex_lock(&r->lock);
	ret = reg_queue_locked(r, kind, msg, len);
	pthread_mutex_unlock(&r->lock);
	if (ret == 0)
		reg_wake(r);
	return ret;
}

int reg_pop(struct reg *r, char **msg, size_t *len)
{
	struct reg_msg *m;
	pthread_mutex_lock(&r->lock);
	m = r->head;
	if (m) {
		r->head = m->next;
		if (!r->head)
			r->tail = NULL;
		if (m->kind == REG_MSG_LOG)
			r->log_bytes -= m->len;
	}
	pthread_mutex_unlock(&r->lock);
	if (!m)
		return 0;
	*msg = m->data;
	*len = m->len;
	free(m);
	return 1;
}

int reg_has_pending(struct reg *r)
{
	int v;
	pthread_mutex_lock(&r->lock);
	v = r->head != NULL;
	pthread_mutex_unlock(&r->lock);
	return v;
}
