/* The webhook's CA and serving certificate (controller/certs.c): made, kept while good, renewed
 * when due, and verifiable by an ordinary TLS client's chain check. */
#include "certs.h"
#include "tap.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

static X509 *cert_at(const char *pem, int i)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x = NULL;
	for (int k = 0; k <= i; k++) {
		X509_free(x);
		x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	}
	BIO_free(b);
	return x;
}

static int count_certs(const char *pem)
{
	int n = 0;
	for (const char *p = pem; (p = strstr(p, "BEGIN CERTIFICATE")); p++)
		n++;
	return n;
}

/* Verifies the serving certificate against the CA bundle as a client would, for host. */
static int verifies(const struct certs *c, const char *host)
{
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	X509 *leaf = cert_at(c->tls_crt, 0);
	int ok = 0;
	for (int i = 0; i < 2; i++) {
		X509 *ca = cert_at(c->ca_crt, i);
		if (ca)
			X509_STORE_add_cert(st, ca);
		X509_free(ca);
	}
	if (leaf && X509_STORE_CTX_init(ctx, st, leaf, NULL)) {
		X509_VERIFY_PARAM *p = X509_STORE_CTX_get0_param(ctx);
		X509_VERIFY_PARAM_set_purpose(p, X509_PURPOSE_SSL_SERVER);
		if (strchr(host, ':') || (host[0] >= '0' && host[0] <= '9'))
			X509_VERIFY_PARAM_set1_ip_asc(p, host);
		else
			X509_VERIFY_PARAM_set1_host(p, host, 0);
		ok = X509_verify_cert(ctx) == 1;
		if (!ok)
			diag("verify: %s",
			     X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
	}
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	X509_free(leaf);
	return ok;
}

int main(void)
{
	const char *names[] = { "tasked-webhook.tasked.svc",
				"tasked-webhook.tasked.svc.cluster.local", "127.0.0.1" };
	const char *other[] = { "other.tasked.svc" };
	const char *bad[] = { "a,b" }, *bad2[] = { "DNS:x" };
	struct certs c = { 0 }, before;
	char why[128] = "";
	int64_t left, total;

	ok(certs_check_names(names, 3) == 0, "service names and an IP are fine");
	ok(certs_check_names(bad, 1) < 0 && certs_check_names(bad2, 1) < 0 &&
		   certs_check_names(names, 0) < 0,
	   "a comma, a colon or no name at all is refused (they would change the SAN list)");
	is_int(certs_ensure(&c, names, 3, 86400, why, sizeof(why)), 1,
	       "an empty set gets a CA and a certificate");
	ok(c.ca_crt && c.ca_key && c.tls_crt && c.tls_key && strstr(c.tls_key, "PRIVATE KEY"),
	   "all four are PEM");
	is_int(count_certs(c.ca_crt), 1, "one CA in the bundle");
	ok(verifies(&c, "tasked-webhook.tasked.svc") && verifies(&c, "127.0.0.1"),
	   "the certificate verifies against the CA for a DNS name and the IP");
	ok(!verifies(&c, "evil.example.com"), "and not for another name");
	ok(certs_life(c.tls_crt, &left, &total) == 0 && left > 86000 && left <= 86400,
	   "lives a day (left %lld)", (long long)left);
	ok(certs_life(c.ca_crt, &left, &total) == 0 && left > 863000 && left <= 864000,
	   "the CA ten days");
	certs_copy(&before, &c);
	is_int(certs_ensure(&c, names, 3, 86400, why, sizeof(why)), 0, "a good set is kept");
	ok(strcmp(before.tls_crt, c.tls_crt) == 0 && strcmp(before.ca_crt, c.ca_crt) == 0,
	   "unchanged");
	is_int(certs_ensure(&c, other, 1, 86400, why, sizeof(why)), 1, "another name: renewed");
	ok(strcmp(before.ca_crt, c.ca_crt) == 0 && strcmp(before.tls_crt, c.tls_crt) != 0 &&
		   verifies(&c, "other.tasked.svc"),
	   "a new serving certificate under the same CA (%s)", why);
	is_int(certs_ensure(&c, other, 1, 3600, why, sizeof(why)), 1,
	       "a shorter validity asked: renewed");
	ok(certs_life(c.tls_crt, &left, &total) == 0 && left <= 3600, "now lives an hour");
	certs_clear(&before);

	/* A short life: renewed once two thirds have passed. */
	certs_clear(&c);
	certs_ensure(&c, names, 3, 6, why, sizeof(why));
	certs_copy(&before, &c);
	is_int(certs_ensure(&c, names, 3, 6, why, sizeof(why)), 0, "fresh: kept");
	sleep(5);
	is_int(certs_ensure(&c, names, 3, 6, why, sizeof(why)), 1, "two thirds gone: renewed");
	ok(strcmp(before.tls_crt, c.tls_crt) != 0 && strcmp(before.ca_crt, c.ca_crt) == 0 &&
		   verifies(&c, "127.0.0.1"),
	   "the CA (60 s) stays");
	certs_clear(&before);

	/* A CA whose key does not match is replaced; the old CA stays in the bundle after the new one. */
	{
		struct certs d = { 0 };
		char *k;
		certs_ensure(&d, names, 3, 86400, why, sizeof(why));
		k = c.ca_key;
		c.ca_key = d.ca_key;
		d.ca_key = k;
		certs_copy(&before, &c);
		is_int(certs_ensure(&c, names, 3, 86400, why, sizeof(why)), 1,
		       "a CA that does not match its key is renewed");
		is_int(count_certs(c.ca_crt), 2, "the bundle holds the new CA and the old one");
		ok(verifies(&c, "127.0.0.1"), "the new certificate verifies against the bundle");
		{
			X509 *old = cert_at(before.ca_crt, 0), *second = cert_at(c.ca_crt, 1);
			ok(old && second && X509_cmp(old, second) == 0, "the old CA is second");
			X509_free(old);
			X509_free(second);
		}
		certs_clear(&d);
		certs_clear(&before);
	}
	/* Garbage in every field: a fresh set. */
	certs_clear(&c);
	c.ca_crt = strdup("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
	c.ca_key = strdup("nonsense");
	c.tls_crt = strdup("");
	is_int(certs_ensure(&c, names, 3, 86400, why, sizeof(why)), 1, "garbage is replaced");
	ok(verifies(&c, "127.0.0.1") && count_certs(c.ca_crt) == 1, "by a good set");
	certs_clear(&c);
	return done_testing();
}
