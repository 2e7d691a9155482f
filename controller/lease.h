#pragma once
/* Leader election on a coordination.k8s.io/v1 Lease, after client-go's leaderelection:
 * lease 15 s, renew deadline 10 s, retry 2 s. A holder that has not renewed within the renew
 * deadline stops acting (lease_is_leader() turns false) before its lease can expire, then
 * on_lost runs. Expiry of another holder is judged by local observation time, not its clock. */
#include "kube.h"

#include <stdint.h>

struct lease;

struct lease_cfg {
	struct kube_client *kc;
	const char *namespace_, *name, *identity;
	int64_t duration_ms, renew_deadline_ms, retry_ms;
	void (*on_started)(void *ud); /* became leader */
	void (*on_lost)(void *ud);    /* could not renew in time */
	void *ud;
};

int lease_start(const struct lease_cfg *cfg, struct lease **ret);
/* Releases the lease (empty holder) if held, and stops. */
void lease_stop(struct lease *l);
int lease_is_leader(struct lease *l);
/* For tests: one acquire-or-renew round; 1 = leading, 0 = not, <0 = error. */
int lease_try(struct lease *l);
