/*
 * The gateway's TLS policy in one place. There is deliberately no option to
 * skip client verification or to allow TLS below 1.2: partners are known by
 * their certificate, and a gateway that can be configured open will be.
 */
#include "tls.h"
#include "../common/keyfile.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MAX_KEY_BYTES (1u << 20) /* a PEM private key; as gateway/h2client.c */

static const char *const fail_names[GW_HS__COUNT] = {
	"no_certificate", "revoked", "expired", "unknown_ca", "bad_certificate",
	"no_alpn", "protocol_version", "timeout", "other",
};

const char *gw_hs_fail_name(enum gw_hs_fail r)
{
	return r < GW_HS__COUNT ? fail_names[r] : "other";
}

/* ALPN: h2 or nothing. An HTTP/1.1-only client gets a fatal alert. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	for (unsigned int i = 0; i < inlen;) {
		unsigned int l = in[i];

		if (i + 1 + l > inlen)
			break;
		if (l == 2 && in[i + 1] == 'h' && in[i + 2] == '2') {
			*out = in + i + 1;
			*outlen = 2;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + l;
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static void ssl_err(char *err, size_t errlen, const char *what, const char *file)
{
	unsigned long e = ERR_get_error();
	char buf[256];

	ERR_error_string_n(e, buf, sizeof(buf));
	snprintf(err, errlen, "%s '%s': %s", what, file, e ? buf : "unknown error");
	ERR_clear_error();
}

/* The key is read through common/keyfile (no group/other access; owned by
 * this user, root or the user we drop to, who re-reads it on SIGHUP) and
 * parsed from that memory, so the file checked is the file used. */
static int load_key(SSL_CTX *ctx, const struct gw_config *cfg, char *err, size_t errlen)
{
	uid_t user = cfg->user ? cfg->user_uid : (uid_t)-1;
	char *pem = NULL;
	size_t len = 0;
	EVP_PKEY *pk = NULL;
	BIO *b = NULL;
	int rc = -1;

	if (keyfile_read_for(cfg->key_file, KEYFILE_SECRET, user, MAX_KEY_BYTES, &pem, &len, err,
			     errlen) < 0)
		return -1;
	/* The context's passphrase callback, as SSL_CTX_use_PrivateKey_file
	 * would use. */
	if (!(b = BIO_new_mem_buf(pem, (int)len)) ||
	    !(pk = PEM_read_bio_PrivateKey(b, NULL, SSL_CTX_get_default_passwd_cb(ctx),
					   SSL_CTX_get_default_passwd_cb_userdata(ctx))) ||
	    SSL_CTX_use_PrivateKey(ctx, pk) != 1) {
		ssl_err(err, errlen, "cannot load key", cfg->key_file);
		goto done;
	}
	rc = 0;
done:
	EVP_PKEY_free(pk);
	BIO_free(b);
	keyfile_free(pem, KEYFILE_SECRET);
	return rc;
}

SSL_CTX *gw_tls_ctx_new(const struct gw_config *cfg, char *err, size_t errlen)
{
	/* Forward secrecy and AEAD only; TLS 1.3 suites are OpenSSL's defaults. */
	static const char tls12_ciphers[] =
		"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
		"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
		"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	STACK_OF(X509_NAME) *cas;
	X509_STORE *store;

	if (!ctx) {
		snprintf(err, errlen, "cannot create TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
				 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
			      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1) {
		ssl_err(err, errlen, "cannot set ciphers", "tls12");
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1) {
		ssl_err(err, errlen, "cannot load certificate", cfg->cert_file);
		goto fail;
	}
	if (load_key(ctx, cfg, err, errlen) < 0)
		goto fail;
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ssl_err(err, errlen, "key does not match certificate", cfg->key_file);
		goto fail;
	}
	if (SSL_CTX_load_verify_locations(ctx, cfg->client_ca_file, NULL) != 1) {
		ssl_err(err, errlen, "cannot load client CA", cfg->client_ca_file);
		goto fail;
	}
	cas = SSL_load_client_CA_file(cfg->client_ca_file);
	if (!cas) {
		ssl_err(err, errlen, "no CA certificate in", cfg->client_ca_file);
		goto fail;
	}
	SSL_CTX_set_client_CA_list(ctx, cas);
	if (cfg->crl_file) {
		X509_LOOKUP *lu;

		store = SSL_CTX_get_cert_store(ctx);
		lu = X509_STORE_add_lookup(store, X509_LOOKUP_file());
		if (!lu || X509_load_crl_file(lu, cfg->crl_file, X509_FILETYPE_PEM) <= 0) {
			ssl_err(err, errlen, "cannot load CRL", cfg->crl_file);
			goto fail;
		}
		X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_verify_depth(ctx, 4);
	SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"noordpoort", 10);
	/* No session resumption: a resumed session skips the client
	 * certificate, so a certificate revoked by a CRL reload could come back
	 * in on an old session; and the cache would hold ~20k sessions no
	 * partner reuses. Partners keep long-lived connections instead. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	ERR_clear_error();
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* A certificate verification error as a handshake failure reason. */
static enum gw_hs_fail verify_fail(long vr)
{
	switch (vr) {
	case X509_V_ERR_CERT_REVOKED:
		return GW_HS_REVOKED;
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return GW_HS_EXPIRED;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
		return GW_HS_UNKNOWN_CA;
	default:
		return GW_HS_BAD_CERTIFICATE;
	}
}

enum gw_hs_fail gw_tls_classify(SSL *ssl, int ssl_error)
{
	long vr = SSL_get_verify_result(ssl);
	unsigned long e = ERR_peek_error();
	int reason = ERR_GET_REASON(e);
	enum gw_hs_fail r = GW_HS_OTHER;

	ERR_clear_error();
	if (vr != X509_V_OK)
		return verify_fail(vr);
	if (ssl_error != SSL_ERROR_SSL || !e)
		return GW_HS_OTHER;
	switch (reason) {
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
		r = GW_HS_NO_CERTIFICATE;
		break;
	case SSL_R_NO_APPLICATION_PROTOCOL:
		r = GW_HS_NO_ALPN;
		break;
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_VERSION_TOO_LOW:
	case SSL_R_WRONG_VERSION_NUMBER:
		r = GW_HS_PROTOCOL_VERSION;
		break;
	default:
		break;
	}
	return r;
}

static void hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

int gw_tls_peer(SSL *ssl, struct gw_peer *p)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	X509_NAME *subj;
	struct tm tm;
	int idx;

	memset(p, 0, sizeof(*p));
	if (!cert)
		return -1;
	if (X509_digest(cert, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32)
		return -1;
	hex(md, 32, p->fingerprint);
	/* Checked on every request: a certificate that cannot say when it
	 * ends is refused rather than trusted for ever. */
	if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1)
		return -1;
	strftime(p->not_after, sizeof(p->not_after), "%Y-%m-%dT%H:%M:%SZ", &tm);
	p->not_after_unix = (long long)timegm(&tm);

	subj = X509_get_subject_name(cert);
	idx = X509_NAME_get_index_by_NID(subj, NID_serialNumber, -1);
	if (idx >= 0 && X509_NAME_get_index_by_NID(subj, NID_serialNumber, idx) < 0) {
		const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
		const unsigned char *d = ASN1_STRING_get0_data(s);
		int len = ASN1_STRING_length(s);
		int ok = len == GW_OIN_LEN;

		for (int i = 0; ok && i < len; i++)
			ok = d[i] >= '0' && d[i] <= '9';
		if (ok) {
			memcpy(p->oin, d, GW_OIN_LEN);
			p->oin[GW_OIN_LEN] = '\0';
		}
	}
	return 0;
}

int gw_tls_reverify(SSL *ssl, SSL_CTX *ctx, enum gw_hs_fail *why)
{
	X509 *leaf = SSL_get0_peer_certificate(ssl);
	/* On a server the chain the client sent, without its leaf. */
	STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
	X509_STORE_CTX *x = X509_STORE_CTX_new();
	int rc = -1;

	*why = GW_HS_BAD_CERTIFICATE;
	if (!leaf || !x || X509_STORE_CTX_init(x, SSL_CTX_get_cert_store(ctx), leaf, chain) != 1)
		goto done;
	/* As OpenSSL's own handshake does (ssl_verify_cert_chain): the
	 * client-certificate purpose, then the context's parameters (depth)
	 * over the store's (CRL checking). */
	if (X509_STORE_CTX_set_default(x, "ssl_client") != 1 ||
	    X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(x), SSL_CTX_get0_param(ctx)) != 1)
		goto done;
	if (X509_verify_cert(x) == 1)
		rc = 0;
	else
		*why = verify_fail(X509_STORE_CTX_get_error(x));
done:
	X509_STORE_CTX_free(x);
	ERR_clear_error();
	return rc;
}
