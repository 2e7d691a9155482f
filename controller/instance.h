#pragma once
/* Instance id, after Argo Workflows' `instanceid`: several installs share one cluster, each
 * acting only on the objects labelled with its id (tasked.dev/instance=ID), and an install
 * without an id only on objects without that label. The selector goes on every list and watch
 * the controller makes, so another install's objects never reach a cache. */
#include <jansson.h>
#include <stddef.h>

#define INSTANCE_LABEL "tasked.dev/instance"
#define INSTANCE_ID_MAX 63

/* 1 when id can be an instance id: a DNS label (lowercase letters, digits and '-', starting and
 * ending with a letter or digit, 1..63 bytes), so it is a valid label value, a valid suffix of a
 * Lease name and safe in a metric label. */
int instance_id_valid(const char *id);
/* The label selector for id (NULL or "" = no id): "tasked.dev/instance=ID" or
 * "!tasked.dev/instance". 0, or -ENOBUFS. */
int instance_selector(const char *id, char *out, size_t outsz);
/* The Lease name: name, or name-ID with an id. 0, or -ENOBUFS. */
int instance_lease_name(const char *name, const char *id, char *out, size_t outsz);
/* Copies the instance label of from (an object's metadata) into labels (an object), when from
 * has one. 0, or -ENOMEM. */
int instance_copy_label(json_t *from_metadata, json_t *labels);
