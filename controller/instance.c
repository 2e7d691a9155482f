#include "instance.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int instance_id_valid(const char *id)
{
	size_t n = id ? strlen(id) : 0;
	if (n == 0 || n > INSTANCE_ID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && !(c == '-' && i > 0 && i < n - 1))
			return 0;
	}
	return 1;
}

int instance_selector(const char *id, char *out, size_t outsz)
{
	int n = id && id[0] ? snprintf(out, outsz, "%s=%s", INSTANCE_LABEL, id)
			    : snprintf(out, outsz, "!%s", INSTANCE_LABEL);
	return n < 0 || (size_t)n >= outsz ? -ENOBUFS : 0;
}

int instance_lease_name(const char *name, const char *id, char *out, size_t outsz)
{
	int n = id && id[0] ? snprintf(out, outsz, "%s-%s", name, id)
			    : snprintf(out, outsz, "%s", name);
	return n < 0 || (size_t)n >= outsz ? -ENOBUFS : 0;
}

int instance_copy_label(json_t *from_metadata, json_t *labels)
{
	json_t *v = json_object_get(json_object_get(from_metadata, "labels"), INSTANCE_LABEL);
	if (!json_is_string(v) || !json_is_object(labels))
		return 0;
	return json_object_set(labels, INSTANCE_LABEL, v) < 0 ? -ENOMEM : 0;
}
