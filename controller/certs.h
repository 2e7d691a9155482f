#pragma once
/* The webhook's certificates: a self-signed CA and a serving certificate it signs for the
 * webhook Service's DNS names (and IP addresses), made with OpenSSL's EVP/X509 APIs. ECDSA P-256
 * keys, SHA-256 signatures, serial numbers of 128 random bits, notBefore five minutes back for
 * clock skew.
 *
 * Lifetimes: the serving certificate lives validity_s seconds and is renewed when less than a
 * third of its life remains (or when it lives longer than validity_s now asks, or no longer
 * covers the names). The CA lives ten times as long and is renewed the same way; the CA bundle
 * then holds the new CA first and the old one after it until the old one expires, so clients
 * that still trust only the old CA and servers that still present a certificate signed by it
 * both keep working through a rotation.
 *
 * Pure: no I/O. Everything is PEM text. */
#include <stddef.h>
#include <stdint.h>

#define CERTS_MAX_NAMES 16
#define CERTS_MAX_PEM (64 * 1024) /* a field larger than this is not ours: renew */

struct certs {
	char *ca_crt;  /* CA bundle: the current CA first, then a previous one */
	char *ca_key;  /* the current CA's key */
	char *tls_crt; /* serving certificate */
	char *tls_key;
};

void certs_clear(struct certs *c);
/* Copies (0 or -ENOMEM). */
int certs_copy(struct certs *dst, const struct certs *src);

/* Checks a name list for a certificate: DNS names (letters, digits, '-', '.', a leading "*.")
 * and IP addresses; 1 to CERTS_MAX_NAMES of them. 0 or -EINVAL. */
int certs_check_names(const char *const *names, size_t n);

/* Makes c fit to serve names: keeps what is still good and renews the rest. Returns 0 when c is
 * unchanged, 1 when something was renewed (why says what), or a negative errno. */
int certs_ensure(struct certs *c, const char *const *names, size_t n, int64_t validity_s, char *why,
		 size_t whysz);

/* Seconds of life left of the first certificate in pem (negative once expired), and its whole
 * lifetime; -EINVAL when it does not parse. */
int certs_life(const char *pem, int64_t *left_s, int64_t *total_s);
