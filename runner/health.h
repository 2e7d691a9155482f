#pragma once
/* Liveness and readiness for exec probes, without a listening port: the runner's event loop
 * rewrites a small file (--health-file) every few seconds, saying whether it is connected to
 * the controller; `tasked-runner --check-health FILE [--ready]` judges it. A loop that hangs
 * stops the writes, so the file ages and liveness fails; a runner that cannot reach the
 * controller stays live (it keeps retrying) but is not ready. */
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define HEALTH_EVERY_MS 5000 /* how often the runner rewrites the file */
#define HEALTH_MAX_AGE_S 30  /* default: older than this is a hung runner */
#define HEALTH_MAX 256       /* bytes of the file */

/* Atomically replaces path (write to a temporary, rename) with
 * {"connected":bool,"time":<unix ms>}. 0 or a negative errno. */
int health_write(const char *path, int connected, int64_t unix_ms);

/* Judges a health file's content and age (pure). Returns 0 when healthy, else 1 with the
 * reason in why. want_ready: also require "connected": true. */
int health_judge(const char *content, time_t mtime, time_t now, int want_ready, int max_age_s,
		 char *why, size_t whysz);

/* Reads path and judges it (health_judge); 0 healthy, 1 not (why says), negative errno when
 * the file cannot be read. */
int health_check(const char *path, int want_ready, int max_age_s, char *why, size_t whysz);
