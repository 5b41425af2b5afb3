/*
 * Unit tests for gateway/tls.c: real handshakes between an in-memory client
 * and the gateway's server context, with the development certificates
 * (make certs), to check verification, failure reasons and the identity.
 */
#define CHECK_FILE "test_tls"
#include "check.h"
#include <openssl/err.h>
#include <sys/stat.h>
#include "../../common/diag.c"
#include "../../common/yamldoc.c"
#include "../../gateway/members.c"
#include "../../gateway/tls.c"

static char certs[512];
static struct gw_config cfg;
static SSL_CTX *server_ctx;

static char *path(const char *name)
{
	static char buf[8][600];
	static int i;

	i = (i + 1) % 8;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", certs, name);
	return buf[i];
}

/*
 * Runs a handshake over a BIO pair. |who| names the client certificate
 * ("" for none); |alpn| is the client's offer in wire format. Returns 1 on
 * success with the server SSL in |*out|, or 0 with the reason in |*why|.
 */
static int handshake(const char *who, const unsigned char *alpn, size_t alpnlen,
		     int max_version, SSL **out, enum gw_hs_fail *why)
{
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL *c, *s;
	BIO *cb, *sb;
	int cdone = 0, sdone = 0, rc = 0;
	char crt[128], key[128];

	if (*who) {
		snprintf(crt, sizeof(crt), "%s.crt", who);
		snprintf(key, sizeof(key), "%s.key", who);
		SSL_CTX_use_certificate_file(cctx, path(crt), SSL_FILETYPE_PEM);
		SSL_CTX_use_PrivateKey_file(cctx, path(key), SSL_FILETYPE_PEM);
	}
	if (max_version) {
		SSL_CTX_set_min_proto_version(cctx, 0);
		SSL_CTX_set_max_proto_version(cctx, max_version);
		SSL_CTX_set_security_level(cctx, 0);
		SSL_CTX_set_cipher_list(cctx, "ALL:@SECLEVEL=0");
	}
	if (alpn)
		SSL_CTX_set_alpn_protos(cctx, alpn, (unsigned)alpnlen);
	c = SSL_new(cctx);
	s = SSL_new(server_ctx);
	BIO_new_bio_pair(&cb, 0, &sb, 0);
	SSL_set_bio(c, cb, cb);
	SSL_set_bio(s, sb, sb);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	for (int i = 0; i < 20 && !(cdone && sdone); i++) {
		int r;

		if (!cdone) {
			r = SSL_do_handshake(c);
			if (r == 1)
				cdone = 1;
			else if (SSL_get_error(c, r) != SSL_ERROR_WANT_READ)
				cdone = -1;
			ERR_clear_error();
		}
		if (!sdone) {
			r = SSL_do_handshake(s);
			if (r == 1) {
				sdone = 1;
			} else if (SSL_get_error(s, r) != SSL_ERROR_WANT_READ) {
				*why = gw_tls_classify(s, SSL_get_error(s, r));
				sdone = -1;
			}
		}
		/* TLS 1.3: the server reads the client's certificate after the
		 * client thinks it is done; keep the server going. */
		if (cdone == 1 && sdone == 0)
			SSL_read(c, crt, 0);
	}
	if (sdone == 1) {
		rc = 1;
		*out = s;
	} else {
		SSL_free(s);
	}
	SSL_free(c);
	SSL_CTX_free(cctx);
	return rc;
}

static const unsigned char h2[] = "\x02h2";
static const unsigned char http11[] = "\x08http/1.1";

static void member_certificate_accepted(void)
{
	SSL *s = NULL;
	enum gw_hs_fail why = GW_HS__COUNT;
	struct gw_peer p;
	const unsigned char *sel;
	unsigned sellen;

	CHECK(handshake("provincie-groningen", h2, 3, 0, &s, &why) == 1);
	if (!s)
		return;
	SSL_get0_alpn_selected(s, &sel, &sellen);
	CHECK(sellen == 2 && memcmp(sel, "h2", 2) == 0);
	CHECK(SSL_version(s) == TLS1_3_VERSION);
	CHECK(gw_tls_peer(s, &p) == 0);
	CHECK_STR(p.oin, "00000001001589623000");
	CHECK(strlen(p.fingerprint) == 64);
	CHECK(strlen(p.not_after) == 20 && p.not_after[19] == 'Z');
	SSL_free(s);
}

static void no_oin_certificate_has_empty_oin(void)
{
	SSL *s = NULL;
	enum gw_hs_fail why;
	struct gw_peer p;

	CHECK(handshake("no-oin", h2, 3, 0, &s, &why) == 1);
	if (!s)
		return;
	CHECK(gw_tls_peer(s, &p) == 0);
	CHECK_STR(p.oin, "");
	SSL_free(s);
}

static void refusals_have_reasons(void)
{
	static const struct {
		const char *who;
		const unsigned char *alpn;
		int max;
		enum gw_hs_fail want;
	} cases[] = {
		{ "", h2, 0, GW_HS_NO_CERTIFICATE },
		{ "revoked", h2, 0, GW_HS_REVOKED },
		{ "expired", h2, 0, GW_HS_EXPIRED },
		{ "rogue", h2, 0, GW_HS_UNKNOWN_CA },
		{ "provincie-groningen", http11, 0, GW_HS_NO_ALPN },
		{ "provincie-groningen", h2, TLS1_1_VERSION, GW_HS_PROTOCOL_VERSION },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		SSL *s = NULL;
		enum gw_hs_fail why = GW_HS__COUNT;
		size_t alen = cases[i].alpn == h2 ? 3 : 9;

		CHECK(handshake(cases[i].who, cases[i].alpn, alen, cases[i].max, &s, &why) == 0);
		if (why != cases[i].want)
			printf("#   %s: got %s, want %s\n", *cases[i].who ? cases[i].who : "(none)",
			       gw_hs_fail_name(why), gw_hs_fail_name(cases[i].want));
		CHECK(why == cases[i].want);
		SSL_free(s);
	}
}

static void tls12_still_works(void)
{
	SSL *s = NULL;
	enum gw_hs_fail why;

	CHECK(handshake("uwv", h2, 3, TLS1_2_VERSION, &s, &why) == 1);
	if (s)
		CHECK(SSL_version(s) == TLS1_2_VERSION);
	SSL_free(s);
}

/* A resumed session skips the client certificate (and a CRL reload):
 * no session cache, no TLS 1.3 tickets. */
static void no_session_resumption(void)
{
	CHECK(SSL_CTX_get_session_cache_mode(server_ctx) == SSL_SESS_CACHE_OFF);
	CHECK(SSL_CTX_get_num_tickets(server_ctx) == 0);
	CHECK(SSL_CTX_get_options(server_ctx) & SSL_OP_NO_TICKET);
	CHECK(SSL_CTX_get_options(server_ctx) & SSL_OP_NO_RENEGOTIATION);
	CHECK(SSL_CTX_get_min_proto_version(server_ctx) == TLS1_2_VERSION);
}

static void key_file_secrecy(void)
{
	char dir[] = "/tmp/np-tls-XXXXXX";
	char key[64], err[512], cmd[700];
	struct gw_config c = cfg;
	SSL_CTX *ctx;

	if (!mkdtemp(dir))
		return;
	snprintf(key, sizeof(key), "%s/server.key", dir);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", path("server.key"), key);
	CHECK(system(cmd) == 0);
	chmod(key, 0644);
	c.key_file = key;
	ctx = gw_tls_ctx_new(&c, err, sizeof(err));
	CHECK(ctx == NULL);
	CHECK_CONTAINS(err, "/server.key: secret key file is accessible by group or others "
			    "(mode 0644); run: chmod 600 '");
	chmod(key, 0600);
	ctx = gw_tls_ctx_new(&c, err, sizeof(err));
	CHECK(ctx != NULL);
	SSL_CTX_free(ctx);
	/* Owned by another user: refused, unless it is the user we drop to
	 * (who re-reads it on SIGHUP). Needs root to chown. */
	if (geteuid() == 0 && chown(key, 4242, (gid_t)-1) == 0) {
		ctx = gw_tls_ctx_new(&c, err, sizeof(err));
		CHECK(ctx == NULL);
		CHECK_CONTAINS(err, "/server.key: secret key file is owned by uid 4242, not by this "
				    "user (uid 0) or root; run: chown 0 '");
		c.user = "noordpoort";
		c.user_uid = 4242;
		ctx = gw_tls_ctx_new(&c, err, sizeof(err));
		CHECK(ctx != NULL);
		SSL_CTX_free(ctx);
	}
	unlink(key);
	rmdir(dir);
}

static void bad_files_are_named(void)
{
	struct gw_config c = cfg;
	char err[512];

	c.cert_file = path("ca.key"); /* not a certificate */
	CHECK(gw_tls_ctx_new(&c, err, sizeof(err)) == NULL);
	CHECK_CONTAINS(err, "cannot load certificate");
	CHECK_CONTAINS(err, "ca.key");
	c = cfg;
	c.key_file = path("uwv.key"); /* does not match server.crt */
	CHECK(gw_tls_ctx_new(&c, err, sizeof(err)) == NULL);
	CHECK_CONTAINS(err, "uwv.key");
}

int main(void)
{
	const char *d = getenv("CERTS_DIR");
	char err[512];

	snprintf(certs, sizeof(certs), "%s", d ? d : "certs/dev");
	cfg.cert_file = strdup(path("server.crt"));
	cfg.key_file = strdup(path("server.key"));
	cfg.client_ca_file = strdup(path("ca.crt"));
	cfg.crl_file = strdup(path("crl.pem"));
	server_ctx = gw_tls_ctx_new(&cfg, err, sizeof(err));
	if (!server_ctx) {
		printf("not ok - test_tls: setup (run make certs): %s\n", err);
		return 1;
	}
	RUN(member_certificate_accepted);
	RUN(no_oin_certificate_has_empty_oin);
	RUN(refusals_have_reasons);
	RUN(tls12_still_works);
	RUN(no_session_resumption);
	RUN(key_file_secrecy);
	RUN(bad_files_are_named);
	SSL_CTX_free(server_ctx);
	free(cfg.cert_file);
	free(cfg.key_file);
	free(cfg.client_ca_file);
	free(cfg.crl_file);
	return check_total_failed ? 1 : 0;
}
