#include "certs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CA_FACTOR 10 /* the CA lives this many serving lifetimes */
#define SKEW_S 300   /* notBefore this far back */

void certs_clear(struct certs *c)
{
	free(c->ca_crt);
	if (c->ca_key)
		OPENSSL_cleanse(c->ca_key, strlen(c->ca_key));
	free(c->ca_key);
	free(c->tls_crt);
	if (c->tls_key)
		OPENSSL_cleanse(c->tls_key, strlen(c->tls_key));
	free(c->tls_key);
	memset(c, 0, sizeof(*c));
}

static int dup_or_null(char **dst, const char *src)
{
	*dst = src ? strdup(src) : NULL;
	return src && !*dst ? -ENOMEM : 0;
}

int certs_copy(struct certs *dst, const struct certs *src)
{
	memset(dst, 0, sizeof(*dst));
	if (dup_or_null(&dst->ca_crt, src->ca_crt) < 0 ||
	    dup_or_null(&dst->ca_key, src->ca_key) < 0 ||
	    dup_or_null(&dst->tls_crt, src->tls_crt) < 0 ||
	    dup_or_null(&dst->tls_key, src->tls_key) < 0) {
		certs_clear(dst);
		return -ENOMEM;
	}
	return 0;
}

static int is_ip(const char *s)
{
	unsigned char a[16];
	return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

int certs_check_names(const char *const *names, size_t n)
{
	if (n == 0 || n > CERTS_MAX_NAMES)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		const char *s = names[i];
		size_t len = s ? strlen(s) : 0;
		if (len == 0 || len > 253)
			return -EINVAL;
		if (is_ip(s))
			continue;
		if (strncmp(s, "*.", 2) == 0)
			s += 2;
		for (; *s; s++)
			if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
			      (*s >= '0' && *s <= '9') || *s == '-' || *s == '.'))
				return -EINVAL;
	}
	return 0;
}

/* --- reading ----------------------------------------------------------------------------------- */

static X509 *read_cert(const char *pem, size_t skip)
{
	BIO *b;
	X509 *x = NULL;

	if (!pem || strlen(pem) > CERTS_MAX_PEM || !(b = BIO_new_mem_buf(pem, -1)))
		return NULL;
	for (size_t i = 0; i <= skip; i++) {
		X509_free(x);
		if (!(x = PEM_read_bio_X509(b, NULL, NULL, NULL)))
			break;
	}
	BIO_free(b);
	return x;
}

static EVP_PKEY *read_key(const char *pem)
{
	BIO *b;
	EVP_PKEY *k;

	if (!pem || strlen(pem) > CERTS_MAX_PEM || !(b = BIO_new_mem_buf(pem, -1)))
		return NULL;
	k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	BIO_free(b);
	return k;
}

static int life_of(X509 *x, int64_t *left_s, int64_t *total_s)
{
	int d1, s1, d2, s2;
	if (!ASN1_TIME_diff(&d1, &s1, NULL, X509_get0_notAfter(x)) ||
	    !ASN1_TIME_diff(&d2, &s2, X509_get0_notBefore(x), X509_get0_notAfter(x)))
		return -EINVAL;
	*left_s = (int64_t)d1 * 86400 + s1;
	*total_s = (int64_t)d2 * 86400 + s2;
	return 0;
}

int certs_life(const char *pem, int64_t *left_s, int64_t *total_s)
{
	X509 *x = read_cert(pem, 0);
	int r = x ? life_of(x, left_s, total_s) : -EINVAL;
	X509_free(x);
	return r;
}

/* Still good for another while: less than a third of its life gone, and no longer-lived than
 * max_s (plus the backdating) now asks. */
static int fresh(X509 *x, int64_t max_s)
{
	int64_t left, total;
	if (life_of(x, &left, &total) < 0)
		return 0;
	total -= SKEW_S; /* the backdating is no part of the life asked for */
	return left > total / 3 && total <= max_s + 60;
}

static int covers(X509 *x, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int ok = is_ip(names[i])
				 ? X509_check_ip_asc(x, names[i], 0) == 1
				 : X509_check_host(x, names[i], strlen(names[i]), 0, NULL) == 1;
		if (!ok)
			return 0;
	}
	return 1;
}

/* --- making ------------------------------------------------------------------------------------ */

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;
	int ok;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!e)
		return -EINVAL;
	ok = X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return ok ? 0 : -ENOMEM;
}

static int random_serial(X509 *x)
{
	BIGNUM *bn = BN_new();
	int ok = bn && BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) &&
		 BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok ? 0 : -ENOMEM;
}

static char *pem_of(int (*write)(BIO *, const void *), const void *obj)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data = NULL, *out = NULL;
	long n;

	if (b && write(b, obj)) {
		n = BIO_get_mem_data(b, &data);
		if (n > 0)
			out = strndup(data, (size_t)n);
	}
	BIO_free(b);
	return out;
}

static int write_x509(BIO *b, const void *x) { return PEM_write_bio_X509(b, (X509 *)(uintptr_t)x); }
static int write_key(BIO *b, const void *k)
{
	return PEM_write_bio_PrivateKey(b, (EVP_PKEY *)(uintptr_t)k, NULL, NULL, 0, NULL, NULL);
}

/* A certificate for key with subject cn, signed by issuer/ikey (both NULL: self-signed CA). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *ikey, int64_t life_s,
		       const char *san)
{
	X509 *x = X509_new();
	X509_NAME *name = x ? X509_get_subject_name(x) : NULL;
	int ca = issuer == NULL, r;

	if (!x || !X509_set_version(x, 2) || random_serial(x) < 0 ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
					-1, 0) ||
	    !X509_set_issuer_name(x, ca ? name : X509_get_subject_name(issuer)) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -SKEW_S) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), (long)life_s) || !X509_set_pubkey(x, key))
		goto fail;
	r = add_ext(x, ca ? x : issuer, NID_basic_constraints,
		    ca ? "critical,CA:TRUE,pathlen:0" : "critical,CA:FALSE");
	if (r == 0)
		r = add_ext(x, ca ? x : issuer, NID_key_usage,
			    ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
	if (r == 0)
		r = add_ext(x, ca ? x : issuer, NID_subject_key_identifier, "hash");
	if (r == 0 && !ca)
		r = add_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
	if (r == 0 && !ca)
		r = add_ext(x, issuer, NID_ext_key_usage, "serverAuth");
	if (r == 0 && !ca)
		r = add_ext(x, issuer, NID_subject_alt_name, san);
	if (r < 0 || !X509_sign(x, ca ? key : ikey, EVP_sha256()))
		goto fail;
	return x;
fail:
	X509_free(x);
	return NULL;
}

/* "DNS:a,IP:127.0.0.1" for the names (checked by certs_check_names). */
static int san_of(const char *const *names, size_t n, char *out, size_t outsz)
{
	size_t off = 0;
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		int w = snprintf(out + off, outsz - off, "%s%s:%s", i ? "," : "",
				 is_ip(names[i]) ? "IP" : "DNS", names[i]);
		if (w < 0 || (size_t)w >= outsz - off)
			return -ENOBUFS;
		off += (size_t)w;
	}
	return 0;
}

/* A new CA into c (key and bundle: the new CA, then prev when it has not expired). */
static int new_ca(struct certs *c, X509 *prev, int64_t life_s)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = k ? make_cert(k, "tasked-webhook-ca", NULL, NULL, life_s, NULL) : NULL;
	char *crt = x ? pem_of(write_x509, x) : NULL, *key = k ? pem_of(write_key, k) : NULL,
	     *old = NULL;
	int64_t left, total;
	int r = -ENOMEM;

	if (crt && key && prev && life_of(prev, &left, &total) == 0 && left > 0)
		old = pem_of(write_x509, prev);
	if (crt && key) {
		size_t l1 = strlen(crt), l2 = old ? strlen(old) : 0;
		char *bundle = malloc(l1 + l2 + 1);
		if (bundle) {
			memcpy(bundle, crt, l1);
			memcpy(bundle + l1, old ? old : "", l2 + 1);
			certs_clear(c);
			c->ca_crt = bundle;
			c->ca_key = key;
			key = NULL;
			r = 0;
		}
	}
	if (key)
		OPENSSL_cleanse(key, strlen(key));
	free(key);
	free(crt);
	free(old);
	X509_free(x);
	EVP_PKEY_free(k);
	return r;
}

static int new_leaf(struct certs *c, const char *const *names, size_t n, int64_t life_s)
{
	X509 *ca = read_cert(c->ca_crt, 0), *x = NULL;
	EVP_PKEY *cakey = read_key(c->ca_key), *k = EVP_EC_gen("P-256");
	char san[CERTS_MAX_NAMES * 260], *crt = NULL, *key = NULL;
	int r = -ENOMEM;

	if (san_of(names, n, san, sizeof(san)) < 0) {
		r = -EINVAL;
		goto out;
	}
	if (ca && cakey && k)
		x = make_cert(k, names[0], ca, cakey, life_s, san);
	crt = x ? pem_of(write_x509, x) : NULL;
	key = x ? pem_of(write_key, k) : NULL;
	if (crt && key) {
		free(c->tls_crt);
		if (c->tls_key)
			OPENSSL_cleanse(c->tls_key, strlen(c->tls_key));
		free(c->tls_key);
		c->tls_crt = crt;
		c->tls_key = key;
		crt = key = NULL;
		r = 0;
	}
out:
	free(crt);
	free(key);
	X509_free(x);
	X509_free(ca);
	EVP_PKEY_free(cakey);
	EVP_PKEY_free(k);
	return r;
}

int certs_ensure(struct certs *c, const char *const *names, size_t n, int64_t validity_s, char *why,
		 size_t whysz)
{
	X509 *ca = read_cert(c->ca_crt, 0), *leaf = read_cert(c->tls_crt, 0);
	EVP_PKEY *cakey = read_key(c->ca_key), *key = read_key(c->tls_key);
	int64_t ca_life = validity_s > INT64_MAX / CA_FACTOR ? INT64_MAX / CA_FACTOR
							     : validity_s * CA_FACTOR;
	int ca_ok, leaf_ok, r = 0;

	if (certs_check_names(names, n) < 0 || validity_s < 1) {
		r = -EINVAL;
		goto out;
	}
	ca_ok = ca && cakey && X509_check_private_key(ca, cakey) == 1 && fresh(ca, ca_life);
	if (!ca_ok) {
		snprintf(why, whysz, "%s", ca ? "the CA is due for renewal" : "no CA");
		if ((r = new_ca(c, ca, ca_life)) < 0)
			goto out;
		r = new_leaf(c, names, n, validity_s);
		r = r < 0 ? r : 1;
		goto out;
	}
	leaf_ok = leaf && key && X509_check_private_key(leaf, key) == 1 &&
		  X509_verify(leaf, cakey) == 1 && covers(leaf, names, n) &&
		  fresh(leaf, validity_s);
	if (!leaf_ok) {
		snprintf(why, whysz, "%s",
			 !leaf ? "no serving certificate"
			       : "the serving certificate is due for renewal");
		r = new_leaf(c, names, n, validity_s);
		r = r < 0 ? r : 1;
	}
out:
	X509_free(ca);
	X509_free(leaf);
	EVP_PKEY_free(cakey);
	EVP_PKEY_free(key);
	return r;
}
