#include "yamljson.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

struct yj {
	yaml_parser_t parser;
	size_t nodes;
	char *err;
	size_t errsz;
};

static int yj_fail(struct yj *y, const char *what, const yaml_mark_t *m)
{
	snprintf(y->err, y->errsz, "%s at line %zu column %zu", what, m->line + 1, m->column + 1);
	return -EINVAL;
}

static int yj_node(struct yj *y, yaml_event_t *ev, int depth, json_t **ret);

static int yj_next(struct yj *y, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&y->parser, ev)) {
		snprintf(y->err, y->errsz, "YAML: %s at line %zu column %zu",
			 y->parser.problem ? y->parser.problem : "syntax error",
			 y->parser.problem_mark.line + 1, y->parser.problem_mark.column + 1);
		return -EINVAL;
	}
	return 0;
}

static int yj_container(struct yj *y, int is_map, int depth, json_t **ret)
{
	json_t *c = is_map ? json_object() : json_array();
	yaml_event_t ev;
	int r;

	if (!c)
		return -ENOMEM;
	for (;;) {
		json_t *key = NULL, *val = NULL;
		if ((r = yj_next(y, &ev)) < 0)
			goto fail;
		if (ev.type == (is_map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT)) {
			yaml_event_delete(&ev);
			*ret = c;
			return 0;
		}
		if (is_map) {
			if (ev.type != YAML_SCALAR_EVENT) {
				r = yj_fail(y, "mapping keys must be scalars", &ev.start_mark);
				yaml_event_delete(&ev);
				goto fail;
			}
			r = yj_node(y, &ev, depth + 1, &key);
			if (r < 0)
				goto fail;
			if ((r = yj_next(y, &ev)) < 0) {
				json_decref(key);
				goto fail;
			}
		}
		r = yj_node(y, &ev, depth + 1, &val);
		if (r < 0) {
			json_decref(key);
			goto fail;
		}
		if (is_map) {
			r = json_object_set_new(c, json_string_value(key), val) ? -ENOMEM : 0;
			json_decref(key);
		} else {
			r = json_array_append_new(c, val) ? -ENOMEM : 0;
		}
		if (r < 0)
			goto fail;
	}
fail:
	json_decref(c);
	return r;
}

/* Consumes ev (already parsed) and whatever belongs to it. */
static int yj_node(struct yj *y, yaml_event_t *ev, int depth, json_t **ret)
{
	int r = 0;

	if (++y->nodes > YAMLJSON_MAX_NODES) {
		r = yj_fail(y, "too many YAML nodes", &ev->start_mark);
	} else if (depth > YAMLJSON_MAX_DEPTH) {
		r = yj_fail(y, "YAML nested too deeply", &ev->start_mark);
	} else if (ev->type == YAML_SCALAR_EVENT) {
		const char *v = (const char *)ev->data.scalar.value;
		size_t n = ev->data.scalar.length;
		int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		if (plain && (n == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0))
			*ret = json_null();
		else
			*ret = json_stringn(v, n);
		if (!*ret)
			r = yj_fail(y, "invalid UTF-8 in scalar", &ev->start_mark);
	} else if (ev->type == YAML_MAPPING_START_EVENT || ev->type == YAML_SEQUENCE_START_EVENT) {
		int is_map = ev->type == YAML_MAPPING_START_EVENT;
		yaml_event_delete(ev);
		return yj_container(y, is_map, depth, ret);
	} else if (ev->type == YAML_ALIAS_EVENT) {
		r = yj_fail(y, "YAML aliases are not supported", &ev->start_mark);
	} else {
		r = yj_fail(y, "unexpected YAML event", &ev->start_mark);
	}
	yaml_event_delete(ev);
	return r;
}

int yamljson_parse(const char *data, size_t len, json_t **ret, char *err, size_t errsz)
{
	struct yj y = { .err = err, .errsz = errsz };
	yaml_event_t ev;
	json_t *root = NULL;
	int r;

	if (len > YAMLJSON_MAX_BYTES) {
		snprintf(err, errsz, "YAML document larger than %d bytes", YAMLJSON_MAX_BYTES);
		return -EINVAL;
	}
	if (!yaml_parser_initialize(&y.parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&y.parser, (const unsigned char *)data, len);
	/* STREAM_START, DOCUMENT_START (or STREAM_END for an empty input) */
	for (;;) {
		if ((r = yj_next(&y, &ev)) < 0)
			goto out;
		if (ev.type == YAML_STREAM_START_EVENT || ev.type == YAML_DOCUMENT_START_EVENT) {
			yaml_event_delete(&ev);
			continue;
		}
		if (ev.type == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			root = json_null();
			r = 0;
			goto out;
		}
		break;
	}
	r = yj_node(&y, &ev, 0, &root);
out:
	yaml_parser_delete(&y.parser);
	if (r < 0)
		return r;
	*ret = root;
	return 0;
}
