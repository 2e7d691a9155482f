#include "logfile.h"
#include "utf8.h"

#include <string.h>
#include <zlib.h>

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* CRC over header bytes 16..40 and the data. */
static uint32_t rec_crc(const unsigned char *hdr, const char *data, size_t len)
{
	uLong c = crc32(0L, hdr + 16, LOGFILE_HDR - 16);
	while (len > 0) {
		uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
		c = crc32(c, (const Bytef *)data, n);
		data += n;
		len -= n;
	}
	return (uint32_t)c;
}

void logfile_encode(const struct logfile_rec *r, unsigned char hdr[LOGFILE_HDR])
{
	memcpy(hdr, "TLGR", 4);
	hdr[4] = (unsigned char)r->type;
	hdr[5] = r->stderr_ ? 1 : 0;
	hdr[6] = hdr[7] = 0;
	put32(hdr + 8, (uint32_t)r->len);
	put64(hdr + 16, r->off);
	put64(hdr + 24, (uint64_t)r->attempt);
	put64(hdr + 32, (uint64_t)r->seq);
	put32(hdr + 12, rec_crc(hdr, r->data, r->len));
}

/* 1 when the record keeps the rules of its type. */
static int rec_ok(const struct logfile_rec *r, uint64_t min_off)
{
	switch (r->type) {
	case LOGFILE_CHUNK:
		return r->len > 0 && r->attempt >= 0 && r->seq >= 0 && r->off >= min_off &&
		       r->off <= UINT64_MAX - r->len && !memchr(r->data, '\0', r->len) &&
		       u8_valid(r->data, r->len);
	case LOGFILE_KEY:
		return r->len > 0 && r->len <= LOGFILE_KEY_MAX && !memchr(r->data, '\0', r->len) &&
		       u8_valid(r->data, r->len);
	case LOGFILE_FINISH:
		return r->len == 0;
	}
	return 0;
}

size_t logfile_parse(const char *buf, size_t len, size_t max_data,
		     int (*fn)(void *ud, const struct logfile_rec *r), void *ud)
{
	size_t pos = LOGFILE_MAGIC_LEN;
	uint64_t min_off = 0;

	if (len < LOGFILE_MAGIC_LEN || memcmp(buf, LOGFILE_MAGIC, LOGFILE_MAGIC_LEN) != 0)
		return 0;
	while (len - pos >= LOGFILE_HDR) {
		const unsigned char *h = (const unsigned char *)buf + pos;
		struct logfile_rec r;
		size_t dlen = get32(h + 8);

		if (memcmp(h, "TLGR", 4) != 0 || h[5] > 1 || h[6] || h[7] || dlen > max_data ||
		    dlen > len - pos - LOGFILE_HDR)
			break;
		r = (struct logfile_rec){ .type = (enum logfile_type)h[4],
					  .stderr_ = h[5],
					  .off = get64(h + 16),
					  .attempt = (int64_t)get64(h + 24),
					  .seq = (int64_t)get64(h + 32),
					  .data = buf + pos + LOGFILE_HDR,
					  .len = dlen };
		if (get32(h + 12) != rec_crc(h, r.data, dlen) || !rec_ok(&r, min_off))
			break;
		if (r.type == LOGFILE_CHUNK)
			min_off = r.off + r.len;
		if (fn && fn(ud, &r))
			break;
		pos += LOGFILE_HDR + dlen;
	}
	return pos;
}

int logfile_uid_ok(const char *uid)
{
	size_t n = strlen(uid);
	if (n == 0 || n > 63)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((uid[i] >= 'a' && uid[i] <= 'z') || (uid[i] >= '0' && uid[i] <= '9') ||
		      uid[i] == '-'))
			return 0;
	return 1;
}

int logfile_name_uid(const char *name, char uid[64])
{
	size_t n = strlen(name);
	if (n < 5 || n - 4 > 63 || strcmp(name + n - 4, ".log") != 0)
		return 0;
	memcpy(uid, name, n - 4);
	uid[n - 4] = '\0';
	return logfile_uid_ok(uid);
}
