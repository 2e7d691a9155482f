/* Fuzz target: kubeconfig parsing (libyaml → JSON tree → config), bounded by size/depth caps. */
#include "kubeconfig.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kube_config c;
	char err[256];
	/* dir NULL with relative paths: file references resolve against the cwd and usually
	 * fail to open, which is an error path worth exercising too. */
	if (kubeconfig_parse((const char *)data, size, "/nonexistent", &c, err, sizeof(err)) == 0)
		kubeconfig_free(&c);
	return 0;
}
