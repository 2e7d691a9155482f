#pragma once
/* Enforces WebSocket masking (RFC 6455 §5.1) under libwebsockets 4.1, which parses the mask bit
 * but never refuses a frame for it and tells the protocol callback nothing about it.
 *
 * How: this module defines recv() and SSL_read() (the two calls lws 4.1 reads a connection with:
 * lws_ssl_capable_read_no_ssl and lws_ssl_capable_read), calls the real ones, and feeds what they
 * return for a watched socket to a tracker (wsframe.h) before lws sees it. Sockets not watched
 * pass straight through (one atomic load when none is watched). The release image links OpenSSL
 * statically and reaches the same code through -Wl,--wrap=SSL_read.
 *
 * A watched connection goes through two phases:
 *  - the HTTP handshake: bytes only observed; at the moment lws finished the head and is about to
 *    switch (wsguard_upgrade), what was read must be exactly one head and nothing after it, so
 *    the next byte read is the first byte of the first frame;
 *  - frames: on the first frame whose mask bit is wrong, that frame's first byte is replaced by
 *    a frame header with a reserved opcode (0x3) and the read ends just after it, so lws itself
 *    fails the connection with close status 1002 before any byte of that frame reaches the
 *    protocol; frames before it in the same read are delivered as usual. When the offending
 *    header was split between two reads (its first byte already delivered), the read returns
 *    end-of-file instead: the connection is dropped without a close frame. Every later read of
 *    the connection returns end-of-file.
 *
 * Threads: the watch calls are made on the lws service thread that owns the connection; the
 * read hooks run on any thread and touch only watched sockets. An entry is bound to the socket's
 * inode, so a descriptor number reused by another thread after lws closed it is never judged. */
#include <stdint.h>

#define WSGUARD_MAX_FD 8192

/* Starts watching fd (a new connection, before lws reads from it). mask: 1 when frames from the
 * peer must be masked (we are the server), 0 when they must not be (we are the client). 0,
 * -EMFILE (fd too high), -ENOMEM, -errno from fstat. Replaces an older entry for fd. */
int wsguard_watch(int fd, int mask);
/* lws has read the whole opening handshake head and is about to switch to frames (server: the
 * protocol filter callback; client: the pre-establish filter). 0: judged from now on; -EPROTO:
 * anything but exactly one head was read (refuse the connection); -ENOENT: not watched. */
int wsguard_upgrade(int fd);
/* Stops watching fd. 1 when the connection broke the masking rule, else 0. */
int wsguard_forget(int fd);
/* Connections failed for a frame with the wrong mask bit, since start. */
unsigned long long wsguard_refused_total(void);
