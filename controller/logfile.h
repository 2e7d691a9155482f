#pragma once
/* The on-disk format of the log store (logstore.c with --log-dir): one file per task, named
 * UID.log, holding a header and a sequence of records. Pure encoding and parsing, no I/O.
 *
 * File:   "TSKLOG1\n", then records.
 * Record: 40-byte header, little-endian -
 *           u32 magic "TLGR", u8 type, u8 stream, u16 zero, u32 data length,
 *           u32 CRC-32 of the header's remaining 24 bytes and the data,
 *           u64 offset, i64 attempt, i64 seq
 *         then the data.
 * Types:  chunk (data = output, valid UTF-8 without NUL; offset = byte offset of data[0] in the
 *         task's output), key (data = "namespace/name"), finish (no data: the output is complete).
 *
 * The parser accepts the longest valid prefix and stops at the first record that is incomplete
 * (a crash mid-write), fails its CRC, declares more data than the caller allows, or breaks a
 * rule (unknown type, negative attempt or seq, offsets going backwards, data that is not
 * UTF-8): what follows is ignored and the caller truncates the file there. */
#include <stddef.h>
#include <stdint.h>

#define LOGFILE_MAGIC "TSKLOG1\n"
#define LOGFILE_MAGIC_LEN 8
#define LOGFILE_HDR 40
#define LOGFILE_KEY_MAX 512

enum logfile_type { LOGFILE_CHUNK = 1, LOGFILE_KEY = 2, LOGFILE_FINISH = 3 };

struct logfile_rec {
	enum logfile_type type;
	int stderr_; /* chunk: 1 = stderr, 0 = stdout */
	uint64_t off;
	int64_t attempt, seq;
	const char *data; /* borrowed from the parsed buffer */
	size_t len;
};

/* Encodes a record header for r (r->data is covered by the CRC but not copied) into
 * hdr[LOGFILE_HDR]. */
void logfile_encode(const struct logfile_rec *r, unsigned char hdr[LOGFILE_HDR]);
/* Parses buf (a whole file): calls fn for each valid record in order until fn returns nonzero
 * or the data ends or turns invalid. Returns the length of the valid prefix (0 when even the
 * file header is wrong), so the caller can truncate what follows. max_data bounds one record's
 * data. */
size_t logfile_parse(const char *buf, size_t len, size_t max_data,
		     int (*fn)(void *ud, const struct logfile_rec *r), void *ud);
/* 1 when name is UID.log for a UID of 1-63 of [0-9a-z-]; the UID (NUL-terminated) into uid. */
int logfile_name_uid(const char *name, char uid[64]);
/* 1 when uid can name a file (the same rule). */
int logfile_uid_ok(const char *uid);
