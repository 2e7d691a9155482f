#pragma once
/* Converts one YAML document (kubeconfig, config files) into a jansson tree. Scalars become
 * strings; limits on size, depth and node count keep hostile input bounded. Aliases are
 * refused (no billion laughs). */
#include <jansson.h>
#include <stddef.h>

#define YAMLJSON_MAX_BYTES (4 * 1024 * 1024)
#define YAMLJSON_MAX_DEPTH 64
#define YAMLJSON_MAX_NODES 100000

/* Returns 0 and a new reference in *ret, or -EINVAL with a reason (line/column) in err. */
int yamljson_parse(const char *data, size_t len, json_t **ret, char *err, size_t errsz);
