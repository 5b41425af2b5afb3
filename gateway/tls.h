/*
 * TLS for the gateway: a server SSL_CTX that only speaks TLS 1.2+ with ALPN
 * h2 and always requires and verifies a client certificate, the reasons a
 * handshake failed, and the identity a verified certificate carries.
 */
#ifndef NOORDPOORT_TLS_H
#define NOORDPOORT_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "config.h"
#include "members.h"

enum gw_hs_fail {
	GW_HS_NO_CERTIFICATE,   /* client sent no certificate */
	GW_HS_REVOKED,          /* listed in the CRL */
	GW_HS_EXPIRED,          /* outside its validity window */
	GW_HS_UNKNOWN_CA,       /* not issued by the federation CA */
	GW_HS_BAD_CERTIFICATE,  /* any other verification failure */
	GW_HS_NO_ALPN,          /* client did not offer h2 */
	GW_HS_PROTOCOL_VERSION, /* below TLS 1.2 */
	GW_HS_TIMEOUT,          /* handshake not done within timeouts.handshake */
	GW_HS_OTHER,            /* garbage, connection reset, ... */
	GW_HS__COUNT
};

const char *gw_hs_fail_name(enum gw_hs_fail r);

/* What a verified client certificate says about its holder. */
struct gw_peer {
	char oin[GW_OIN_LEN + 1]; /* "" when the subject has no valid serialNumber */
	char fingerprint[65];     /* SHA-256 of the DER, lower-case hex */
	char not_after[21];       /* "2028-03-01T12:00:00Z" */
	long long not_after_unix; /* the same in seconds since 1970, checked per request */
};

/*
 * Builds a server context from the certificate, key, client CA and CRL files
 * in |cfg|. Refuses a key file accessible by group or others, or owned by
 * another user than this one, root or |cfg->user| (common/keyfile.h).
 * Returns NULL with the reason in |err|.
 */
SSL_CTX *gw_tls_ctx_new(const struct gw_config *cfg, char *err, size_t errlen);

/* Why the handshake on |ssl| failed; reads (and clears) the error queue. */
enum gw_hs_fail gw_tls_classify(SSL *ssl, int ssl_error);

/* Fills |p| from the peer certificate of a completed handshake; 0 or -1. */
int gw_tls_peer(SSL *ssl, struct gw_peer *p);

/*
 * Verifies the peer certificate (and the chain it sent) of the completed
 * handshake on |ssl| again, against the CA, CRL and verification settings of
 * |ctx| (a reloaded context) and the current time: exactly what a new
 * handshake with |ctx| would check. Returns 0, or -1 with the reason in
 * |*why| (GW_HS_REVOKED, GW_HS_EXPIRED, GW_HS_UNKNOWN_CA,
 * GW_HS_BAD_CERTIFICATE). Thread-safe for a shared |ctx|, as handshakes are.
 */
int gw_tls_reverify(SSL *ssl, SSL_CTX *ctx, enum gw_hs_fail *why);

#endif
