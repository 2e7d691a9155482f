/* Fuzz target: the log store's file parser (controller/logfile.c). For every input: the valid
 * prefix is within the input and starts with the file header; every record passed on keeps
 * its rules (data inside the input, chunk offsets never going back, UTF-8 without NUL); and
 * parsing the valid prefix alone gives the same records. */
#include "logfile.h"
#include "utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	const char *base;
	size_t size;
	uint64_t end;
	unsigned n;
	uint64_t sum;
};

static int check(void *ud, const struct logfile_rec *r)
{
	struct seen *s = ud;
	if (r->data < s->base || r->data + r->len > s->base + s->size ||
	    r->len > 4096 + LOGFILE_KEY_MAX)
		abort();
	if (r->type == LOGFILE_CHUNK) {
		if (r->off < s->end || r->attempt < 0 || r->seq < 0 || !u8_valid(r->data, r->len) ||
		    memchr(r->data, '\0', r->len))
			abort();
		s->end = r->off + r->len;
	} else if (r->type == LOGFILE_FINISH && r->len != 0) {
		abort();
	} else if (r->type != LOGFILE_KEY && r->type != LOGFILE_FINISH &&
		   r->type != LOGFILE_CHUNK) {
		abort();
	}
	s->n++;
	s->sum += r->len + (uint64_t)r->type;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seen a = { .base = (const char *)data, .size = size }, b;
	size_t valid = logfile_parse((const char *)data, size, 4096 + LOGFILE_KEY_MAX, check, &a);

	if (valid > size || (valid > 0 && (valid < LOGFILE_MAGIC_LEN ||
					   memcmp(data, LOGFILE_MAGIC, LOGFILE_MAGIC_LEN))))
		abort();
	b = (struct seen){ .base = (const char *)data, .size = valid };
	if (logfile_parse((const char *)data, valid, 4096 + LOGFILE_KEY_MAX, check, &b) != valid ||
	    a.n != b.n || a.sum != b.sum)
		abort();
	return 0;
}
