/* Definitions cppcheck needs and cannot read from system headers (tests/lint/cppcheck.sh). */
#define json_array_foreach(a, i, v) \
	for (i = 0; i < json_array_size(a) && (v = json_array_get(a, i)); i++)
#define json_object_foreach(o, k, v) \
	for (k = json_object_iter_key(json_object_iter(o)); \
	     k && (v = json_object_iter_value(json_object_key_to_iter(k))); \
	     k = json_object_iter_key(json_object_iter_next(o, json_object_key_to_iter(k))))
#define json_object_foreach_safe(o, n, k, v) \
	for (k = json_object_iter_key(json_object_iter(o)), \
	    n = json_object_iter_next(o, json_object_key_to_iter(k)); \
	     k && (v = json_object_iter_value(json_object_key_to_iter(k))); \
	     k = json_object_iter_key(n), n = json_object_iter_next(o, json_object_key_to_iter(k)))
#define json_object_keylen_foreach(o, k, l, v) \
	for (k = json_object_iter_key(json_object_iter(o)), \
	    l = json_object_iter_key_len(json_object_key_to_iter(k)); \
	     k && (v = json_object_iter_value(json_object_key_to_iter(k))); \
	     k = json_object_iter_key(json_object_iter_next(o, json_object_key_to_iter(k))), \
	    l = json_object_iter_key_len(json_object_key_to_iter(k)))
