#pragma once
/* WebSocket frame-header tracking over a raw byte stream (RFC 6455 §5.2), to enforce what
 * libwebsockets 4.1 does not: frames from a client are masked, frames from a server are not
 * (§5.1: the receiver MUST fail the connection otherwise). Pure code, no allocation: it is fed
 * exactly the bytes the WebSocket library reads from the connection, in order, and only judges
 * the mask bit; everything else about a frame is the library's to check.
 *
 * A connection starts with its HTTP opening handshake; struct wsframe_http follows it to the
 * point where the library switches to frames and says whether the switch is unambiguous. */
#include <stddef.h>
#include <stdint.h>

/* The opening handshake. An end-of-headers candidate is an LF, an optional CR, and an LF (a
 * superset of what ends headers in any lenient HTTP/1 parser, libwebsockets' included). */
struct wsframe_http {
	uint64_t seen;   /* bytes fed (saturating) */
	uint64_t end_at; /* offset just after the last candidate */
	unsigned ends;   /* candidates seen (saturating) */
	uint8_t st;      /* 0: in a line; 1: after LF; 2: after LF CR */
};

void wsframe_http_init(struct wsframe_http *h);
void wsframe_http_feed(struct wsframe_http *h, const unsigned char *p, size_t n);
/* At the moment the library finished the headers and is about to switch to frames: 0 when what
 * was fed is exactly one request (or response) head and nothing after it, so the next byte read
 * is the first byte of the first frame. -EPROTO otherwise: an earlier request on the connection,
 * or bytes after the head that the peer sent before seeing the 101 (RFC 6455 §4.1 forbids it for
 * a client) and that this tracker cannot place. */
int wsframe_http_done(const struct wsframe_http *h);

enum wsframe_verdict {
	WSFRAME_OK,        /* every header so far obeys the masking rule */
	WSFRAME_BAD_MASK,  /* a frame breaks it; see wsframe_feed */
	WSFRAME_UNTRACKED, /* a length the library refuses itself (bit 63 set): judging stops */
};

struct wsframe {
	uint64_t left;     /* payload bytes left in the current frame */
	uint8_t want_mask; /* 1: frames must be masked (from a client); 0: must not be */
	uint8_t st;        /* header state (wsframe.c) */
	uint8_t need;      /* bytes left in the extended length or the masking key */
	uint8_t masked;    /* the current frame's mask bit */
	uint8_t verdict;   /* sticky once not WSFRAME_OK */
	uint64_t frames;   /* headers judged (saturating), for tests */
};

void wsframe_init(struct wsframe *f, int want_mask);
/* Feeds n bytes. Returns the verdict after them; on WSFRAME_BAD_MASK (first time only) *first
 * is the offset in p of the offending frame's first header byte, or -1 when that byte came in
 * an earlier call (the header was split between two reads). Once not WSFRAME_OK the verdict
 * stays and further input is ignored. */
enum wsframe_verdict wsframe_feed(struct wsframe *f, const unsigned char *p, size_t n, long *first);
