#pragma once
/* A libwebsockets context and its listeners. The broker (runner protocol) and the API register
 * their protocols as listeners (vhosts) of one server, whose loop runs on the main thread; the
 * metrics listener has a server of its own on a thread of its own, so a busy main loop does not
 * delay scrapes. Each listener binds exactly the address asked (checked with getsockname after
 * lws opened it) or the server refuses to start. Protocol callbacks find their owner as the
 * vhost user (lws_get_vhost_user). */
#include <stddef.h>
#include <stdint.h>

struct lws_context;
struct lws_protocols;
struct server;

/* tls_cert and tls_key (both or neither) serve every listener over TLS. */
int server_new(const char *tls_cert, const char *tls_key, struct server **ret);
/* Adds a listener named name (for logs) on addr ("HOST:PORT", "[V6]:PORT") with protos; user
 * becomes the vhost user. Before server_run. 0, -EINVAL (address), -EADDRINUSE (cannot listen),
 * -EADDRNOTAVAIL (bound elsewhere than asked). */
int server_listen(struct server *s, const char *name, const char *addr,
		  const struct lws_protocols *protos, void *user);
/* server_listen over TLS with a certificate and key given as PEM text (copied), whatever the
 * server's own files: the webhook's listener. Its protocol may take the vhost's SSL_CTX at
 * LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS (user) to pick the certificate per
 * handshake. -EINVAL without both. */
int server_listen_tls(struct server *s, const char *name, const char *addr,
		      const struct lws_protocols *protos, void *user, const char *cert_pem,
		      const char *key_pem);
/* Makes a TLS listener's SSL_CTX (the vhost's, taken at LOAD_EXTRA_SERVER_VERIFY_CERTS) answer
 * HTTP/1.1 only: lws 4.1 passes no custom headers (X-API-Key) through HTTP/2 and its h2 flow
 * control would need more care for long streams, so a client offering h2 gets HTTP/1.1, as when
 * it offers no ALPN. Call at LWS_CALLBACK_PROTOCOL_INIT: lws installs its own choice before. */
void server_tls_http1_only(void *ssl_ctx);
/* Number of listeners open. */
int server_listening(struct server *s);
struct lws_context *server_context(struct server *s);
/* Serves on the calling thread until server_stop(); 0 or -EIO. */
int server_run(struct server *s);
/* Serves on a thread of its own (stopped and joined by server_free). */
int server_start_thread(struct server *s);
/* Sets a flag and wakes the loop: callable from any thread and from a signal handler. */
void server_stop(struct server *s);
/* Destroys the context (closing every connection, with callbacks) after stopping its thread:
 * before the owners of the registered protocols are freed. */
void server_free(struct server *s);

/* Parses "host:port" / "[v6]:port"; host must be an address literal ("" = 0.0.0.0). */
int server_parse_addr(const char *s, char *host, size_t hostsz, int *port);
