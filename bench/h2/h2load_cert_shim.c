/*
 * h2load_cert_shim.c - give h2load (nghttp2-client) a TLS client certificate.
 *
 * h2load has no option for a client certificate, so it cannot talk to a
 * server that requires mutual TLS. This LD_PRELOAD library wraps
 * SSL_CTX_new(): every context h2load creates gets the certificate chain and
 * private key named by the environment before h2load uses it.
 *
 *   H2LOAD_CERT    PEM certificate chain file (leaf first)        - required
 *   H2LOAD_KEY     PEM private key file (default: H2LOAD_CERT)    - optional
 *   H2LOAD_CACERT  PEM CA file; if set, the server certificate is
 *                  verified against it (SSL_VERIFY_PEER)           - optional
 *
 * Any failure (variable missing, file unreadable, key not matching the
 * certificate) prints a message to stderr and aborts the process: a
 * benchmark that silently ran without a certificate would measure refused
 * handshakes, not the server.
 *
 * On success it prints one line to stderr:
 *   h2load_cert_shim: client certificate loaded: <subject> (<file>)
 * bench/h2/run.sh checks for that line, so it knows the shim was active.
 *
 * Build (bench/h2/run.sh does this into build/bench/):
 *   cc -shared -fPIC -O2 -Wall -o h2load_cert_shim.so h2load_cert_shim.c \
 *      -ldl -lssl -lcrypto
 * Use:
 *   LD_PRELOAD=build/bench/h2load_cert_shim.so H2LOAD_CERT=client.crt \
 *   H2LOAD_KEY=client.key h2load -c 16 -m 32 -n 100000 https://127.0.0.1:8443/
 *
 * Only works when h2load is dynamically linked against libssl (Debian's is:
 * `ldd $(command -v h2load) | grep libssl`).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

typedef SSL_CTX *(*ssl_ctx_new_fn)(const SSL_METHOD *);

static __thread int in_shim; /* guards against re-entry via libssl internals */
static int announced;

static void die(const char *what, const char *path)
{
	unsigned long e;
	char buf[256];

	fprintf(stderr, "h2load_cert_shim: FATAL: %s%s%s\n", what,
		path ? ": " : "", path ? path : "");
	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof buf);
		fprintf(stderr, "h2load_cert_shim:   %s\n", buf);
	}
	fflush(stderr);
	abort();
}

static void load_identity(SSL_CTX *ctx)
{
	const char *cert = getenv("H2LOAD_CERT");
	const char *key = getenv("H2LOAD_KEY");
	const char *ca = getenv("H2LOAD_CACERT");

	if (cert == NULL || *cert == '\0')
		die("H2LOAD_CERT is not set (refusing to run without a client "
		    "certificate)", NULL);
	if (key == NULL || *key == '\0')
		key = cert;

	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
		die("cannot load certificate chain", cert);
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		die("cannot load private key", key);
	if (SSL_CTX_check_private_key(ctx) != 1)
		die("private key does not match certificate", key);

	if (ca != NULL && *ca != '\0') {
		if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
			die("cannot load CA file", ca);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}

	if (!__atomic_exchange_n(&announced, 1, __ATOMIC_SEQ_CST)) {
		char subj[256] = "?";
		X509 *x = SSL_CTX_get0_certificate(ctx);

		if (x != NULL)
			X509_NAME_oneline(X509_get_subject_name(x), subj,
					  sizeof subj);
		fprintf(stderr,
			"h2load_cert_shim: client certificate loaded: %s (%s)%s\n",
			subj, cert, ca && *ca ? ", server verified" : "");
	}
}

SSL_CTX *SSL_CTX_new(const SSL_METHOD *method)
{
	static ssl_ctx_new_fn real;
	SSL_CTX *ctx;

	if (real == NULL) {
		real = (ssl_ctx_new_fn)dlsym(RTLD_NEXT, "SSL_CTX_new");
		if (real == NULL) {
			fprintf(stderr, "h2load_cert_shim: FATAL: dlsym(SSL_CTX_new): %s\n",
				dlerror());
			abort();
		}
	}
	if (in_shim)
		return real(method);

	in_shim = 1;
	ctx = real(method);
	if (ctx != NULL)
		load_identity(ctx);
	in_shim = 0;
	return ctx;
}
