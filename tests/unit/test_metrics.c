/* Metrics: histogram buckets, label escaping, observers, and an exposition that follows the
 * text format (one HELP/TYPE per family, cumulative buckets, +Inf = count). promtool checks
 * the real endpoint in tests/integration/75-metrics.t. */
#include "metrics.h"
#include "tap.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static const char *line_of(const char *text, const char *prefix)
{
	const char *p = text;
	size_t n = strlen(prefix);
	while (p && *p) {
		if (strncmp(p, prefix, n) == 0)
			return p;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

static double value_of(const char *text, const char *prefix)
{
	const char *l = line_of(text, prefix);
	return l ? strtod(l + strlen(prefix), NULL) : -1;
}

int main(void)
{
	static const double b[] = { 0.1, 1, 10 };
	struct metrics_hist h = { .bounds = b, .nbounds = 3 };
	struct metrics *m = metrics_new();
	struct buf out;
	char esc[64];
	json_t *task, *status;
	int64_t now = util_now_ms();
	char created[40];

	metrics_hist_observe(&h, 0.05);
	metrics_hist_observe(&h, 0.1);
	metrics_hist_observe(&h, 5);
	metrics_hist_observe(&h, 100);
	buf_init(&out, 1 << 20);
	ok(metrics_hist_render(&h, "x_seconds", "", &out) == 0, "a histogram renders");
	ok(strstr(out.data, "x_seconds_bucket{le=\"0.1\"} 2\n") != NULL,
	   "le is inclusive and buckets are cumulative");
	ok(strstr(out.data, "x_seconds_bucket{le=\"10\"} 3\n") != NULL, "the 10 s bucket has 3");
	ok(strstr(out.data, "x_seconds_bucket{le=\"+Inf\"} 4\n") != NULL,
	   "+Inf holds every observation");
	ok(strstr(out.data, "x_seconds_count 4\n") && strstr(out.data, "x_seconds_sum 105.15\n"),
	   "sum and count");
	buf_reset(&out);
	metrics_hist_render(&h, "y", "verb=\"get\"", &out);
	ok(strstr(out.data, "y_bucket{verb=\"get\",le=\"1\"} 2\n") &&
		   strstr(out.data, "y_count{verb=\"get\"} 4\n"),
	   "extra labels come before le");

	ok(metrics_escape_label("a\"b\\c\nd", esc, sizeof(esc)) == 0 &&
		   strcmp(esc, "a\\\"b\\\\c\\nd") == 0,
	   "label values escape quote, backslash and newline");
	ok(metrics_escape_label("0123456789", esc, 5) < 0, "escaping reports a short buffer");

	/* A task through Running to Succeeded. */
	util_rfc3339(now - 2000, created, sizeof(created));
	task = json_pack("{s{ssssss}s{}}", "metadata", "uid", "u1", "namespace", "ns",
			 "creationTimestamp", created, "spec");
	status = json_pack("{sssI}", "phase", "Running", "attempts", (json_int_t)1);
	metrics_observe_status(m, task, status);
	json_object_set_new(task, "status", json_pack("{ss}", "phase", "Running"));
	json_decref(status);
	status = json_pack("{sssI}", "phase", "Succeeded", "attempts", (json_int_t)1);
	metrics_observe_status(m, task, status);
	json_decref(status);
	json_decref(task);
	metrics_auth_failure(m);
	metrics_auth_failure(m);
	metrics_api_request(m, 200);
	metrics_api_request(m, 401);
	metrics_sse_opened(m, METRICS_SSE_EVENTS);
	metrics_sse_opened(m, METRICS_SSE_EVENTS);
	metrics_sse_closed(m, METRICS_SSE_EVENTS, METRICS_SSE_SLOW);
	metrics_sse_rejected(m);
	metrics_kube_observe(m, "patch", 200, 0.004);
	metrics_kube_observe(m, "patch", 409, 0.002);

	buf_reset(&out);
	ok(metrics_render(m, &out) == 0, "the exposition renders without sources");
	ok(value_of(out.data, "tasked_task_dispatch_latency_seconds_count ") == 1,
	   "one dispatch latency observed");
	ok(value_of(out.data, "tasked_task_dispatch_latency_seconds_sum ") >= 1.0 &&
		   value_of(out.data, "tasked_task_dispatch_latency_seconds_sum ") < 10.0,
	   "its value is about 2 s");
	ok(value_of(out.data, "tasked_task_run_duration_seconds_count ") == 1,
	   "one run time observed");
	ok(value_of(out.data, "tasked_tasks_finished_total{phase=\"Succeeded\"} ") == 1,
	   "one task succeeded");
	ok(value_of(out.data, "tasked_api_auth_failures_total ") == 2, "auth failures are counted");
	ok(value_of(out.data, "tasked_api_requests_total{code=\"401\"} ") == 1,
	   "API answers by code");
	ok(value_of(out.data, "tasked_sse_connections{kind=\"events\"} ") == 1,
	   "SSE gauge: opened minus closed");
	ok(value_of(out.data,
		    "tasked_sse_connections_closed_total{kind=\"events\",reason=\"slow\"} ") == 1,
	   "slow drops are counted");
	ok(value_of(out.data, "tasked_sse_rejected_total ") == 1, "503s at the cap are counted");
	ok(value_of(out.data, "tasked_kube_responses_total{verb=\"patch\",code=\"409\"} ") == 1,
	   "the kube hook counts by verb and code");
	ok(value_of(out.data, "tasked_kube_request_duration_seconds_count{verb=\"patch\"} ") == 2,
	   "and times requests by verb");
	ok(value_of(out.data, "process_resident_memory_bytes ") > 0, "process memory");
	ok(value_of(out.data, "process_open_fds ") > 0, "open fds");

	/* Structure: every sample's family has exactly one TYPE line, before its samples. */
	{
		char *copy = strdup(out.data), *save = NULL, *l;
		json_t *types = json_object();
		int bad = 0, dup = 0;
		for (l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
			char name[128];
			if (strncmp(l, "# TYPE ", 7) == 0) {
				sscanf(l + 7, "%127s", name);
				if (json_object_get(types, name))
					dup++;
				json_object_set_new(types, name, json_true());
			} else if (l[0] != '#') {
				size_t n = strcspn(l, "{ ");
				char fam[128];
				snprintf(fam, sizeof(fam), "%.*s", (int)n, l);
				if (!json_object_get(types, fam)) {
					/* histogram samples: strip the suffix */
					char *suf = strrchr(fam, '_');
					if (suf && (!strcmp(suf, "_bucket") ||
						    !strcmp(suf, "_sum") || !strcmp(suf, "_count")))
						*suf = '\0';
					if (!json_object_get(types, fam)) {
						bad++;
						diag("sample without a TYPE: %s", l);
					}
				}
			}
		}
		ok(bad == 0 && dup == 0, "every sample follows its family's single TYPE line");
		json_decref(types);
		free(copy);
	}
	buf_free(&out);
	metrics_free(m);
	return done_testing();
}
