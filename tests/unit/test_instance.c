/* Instance id: which ids are accepted, the selector and Lease name each gives, and the label a
 * Flow's child inherits. */
#include "instance.h"
#include "tap.h"

#include <errno.h>
#include <string.h>

int main(void)
{
	char out[128];
	json_t *md, *labels;

	ok(instance_id_valid("a"), "a one-letter id");
	ok(instance_id_valid("team-a-2"), "letters, digits and '-'");
	ok(!instance_id_valid(""), "empty is no id");
	ok(!instance_id_valid(NULL), "NULL is no id");
	ok(!instance_id_valid("-a") && !instance_id_valid("a-"), "no '-' at either end");
	ok(!instance_id_valid("Team"), "no uppercase (a Lease name must be lowercase)");
	ok(!instance_id_valid("a_b") && !instance_id_valid("a.b") && !instance_id_valid("a b"),
	   "no '_', '.', space");
	ok(!instance_id_valid("a,b") && !instance_id_valid("a=b") && !instance_id_valid("!a"),
	   "nothing that means something in a selector");
	memset(out, 'a', 64);
	out[64] = '\0';
	ok(!instance_id_valid(out), "64 bytes is too long");
	out[63] = '\0';
	ok(instance_id_valid(out), "63 bytes is fine");

	is_int(instance_selector("blue", out, sizeof(out)), 0, "selector with an id");
	is_str(out, "tasked.dev/instance=blue", "... selects the label with that value");
	is_int(instance_selector(NULL, out, sizeof(out)), 0, "selector without an id");
	is_str(out, "!tasked.dev/instance", "... selects objects without the label");
	is_int(instance_selector("", out, sizeof(out)), 0, "an empty id is no id");
	is_str(out, "!tasked.dev/instance", "... too");
	is_int(instance_selector("blue", out, 10), -ENOBUFS, "a short buffer is refused");

	is_int(instance_lease_name("tasked-controller", "blue", out, sizeof(out)), 0, "lease name");
	is_str(out, "tasked-controller-blue", "... carries the id");
	instance_lease_name("tasked-controller", NULL, out, sizeof(out));
	is_str(out, "tasked-controller", "... and is unchanged without one");

	md = json_pack("{s{ssss}}", "labels", "tasked.dev/instance", "blue", "other", "x");
	labels = json_object();
	is_int(instance_copy_label(md, labels), 0, "copy the label");
	is_str(json_string_value(json_object_get(labels, "tasked.dev/instance")), "blue",
	       "... the child has it");
	ok(!json_object_get(labels, "other"), "... and no other label of the parent");
	json_decref(md);
	json_decref(labels);
	md = json_pack("{s{}}", "labels");
	labels = json_object();
	is_int(instance_copy_label(md, labels), 0, "a parent without the label");
	ok(json_object_size(labels) == 0, "... gives the child none");
	json_decref(md);
	json_decref(labels);
	return done_testing();
}
