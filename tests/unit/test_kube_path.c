/* Kubernetes resource paths: the one builder, and that it fails instead of cutting a path. */
#include "kube.h"
#include "tap.h"

#include <errno.h>

int main(void)
{
	char buf[128], big[300];

	is_int(kube_path(buf, sizeof(buf), KUBE_GV_TASKED, "tasks", "ns", "t1", "status"), 0,
	       "a status path");
	is_str(buf, "/apis/tasked.dev/v1alpha1/namespaces/ns/tasks/t1/status",
	       "group, namespace, name, subresource");
	is_int(kube_path(buf, sizeof(buf), KUBE_GV_TASKED, "tasks", NULL, NULL, NULL), 0,
	       "all namespaces");
	is_str(buf, "/apis/tasked.dev/v1alpha1/tasks", "the cluster-wide collection");
	is_int(kube_path(buf, sizeof(buf), KUBE_GV_TASKED, "flows", "ns", "", NULL), 0,
	       "an empty name");
	is_str(buf, "/apis/tasked.dev/v1alpha1/namespaces/ns/flows", "is the collection");
	is_int(kube_path(buf, sizeof(buf), "v1", "secrets", "ns", "s", NULL), 0, "the core group");
	is_str(buf, "/api/v1/namespaces/ns/secrets/s", "goes under /api");
	is_int(kube_path(buf, sizeof(buf), "v1", "secrets", "ns", "a/b c", NULL), 0,
	       "a name with / and space");
	is_str(buf, "/api/v1/namespaces/ns/secrets/a%2Fb%20c", "is percent-encoded");
	memset(big, 'n', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	is_int(kube_path(buf, sizeof(buf), KUBE_GV_TASKED, "tasks", "ns", big, NULL), -ENAMETOOLONG,
	       "a path longer than the buffer is -ENAMETOOLONG");
	is_str(buf, "", "and leaves the buffer empty, not cut");
	is_int(kube_path(buf, 40, KUBE_GV_TASKED, "tasks", "ns", "t1", "status"), -ENAMETOOLONG,
	       "overflow by the subresource is caught too");
	is_int(kube_path(buf, sizeof(buf), NULL, "tasks", "ns", "t", NULL), -EINVAL,
	       "no group is -EINVAL");
	return done_testing();
}
