/*
 * `noordpoort csr --org NAME --oin OIN --out PREFIX`: writes PREFIX.key (an
 * EC P-256 private key, mode 0600) and PREFIX.csr (PKCS#10) whose subject is
 * C=NL, O=NAME, CN=NAME (or --cn), serialNumber=OIN — where PKIoverheid
 * certificates carry the OIN and where the gateway reads it (gateway/ident.c).
 */
#include "csr_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "usage.h"
#include "../common/fdio.h"

static const char usage_csr[] =
	"Usage: noordpoort csr --org NAME --oin OIN --out PREFIX [--cn NAME]\n"
	"\n"
	"Makes a new partner's private key PREFIX.key (EC P-256, PEM, mode 0600,\n"
	"not encrypted: the gateway reads it unattended) and a PKCS#10 certificate\n"
	"request PREFIX.csr with the subject C=NL, O=NAME, CN=NAME (or --cn) and\n"
	"serialNumber=OIN, as PKIoverheid certificates carry the OIN and as the\n"
	"gateway reads it. Send PREFIX.csr to the federation's certificate\n"
	"authority; PREFIX.key never leaves the machine. Existing files are never\n"
	"overwritten. See docs/onboarding.md.\n"
	"\n"
	"Options:\n"
	"  --org NAME     the organisation's name (UTF-8, at most 64 bytes)\n"
	"  --oin OIN      its Organisatie-identificatienummer: exactly 20 digits\n"
	"  --out PREFIX   where to write PREFIX.key and PREFIX.csr\n"
	"  --cn NAME      the subject's CN (default: the --org NAME); the demo\n"
	"                 certificates use the member id here\n"
	"  -h, --help     show this help\n"
	"\n"
	"Exit status: 0 written, 1 failed (nothing left behind), 2 bad usage.\n";

/* X.520's upper bound for organizationName and commonName. */
#define CSR_NAME_MAX 64

static int usage_error(const char *fmt, const char *arg)
{
	return cli_usage_error("noordpoort", "csr", fmt, arg);
}

static int oin_valid(const char *oin)
{
	size_t n = 0;

	for (; oin[n]; n++)
		if (oin[n] < '0' || oin[n] > '9')
			return 0;
	return n == 20;
}

/* Prints "noordpoort csr: WHAT: REASON" with OpenSSL's first queued error. */
static int fail(const char *what, const char *detail)
{
	unsigned long e = ERR_get_error();
	char buf[256];

	if (!detail && e) {
		ERR_error_string_n(e, buf, sizeof(buf));
		detail = buf;
	}
	fprintf(stderr, "noordpoort csr: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	ERR_clear_error();
	return 1;
}

/* Creates |path| (never an existing file, never through a symbolic link)
 * with |mode| whatever the umask, and writes |pem| into it, fsynced.
 * Returns 0 or -1 with errno set (EEXIST when it exists). */
static int write_new(const char *path, mode_t mode, const char *pem, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	int saved;

	if (fd < 0)
		return -1;
	if (fchmod(fd, mode) < 0 || fd_write_all(fd, pem, len) < 0 || fsync(fd) < 0)
		goto fail;
	return close(fd);
fail:
	saved = errno;
	close(fd);
	unlink(path);
	errno = saved;
	return -1;
}

static int add_name(X509_NAME *name, const char *field, const char *value)
{
	return X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, (const unsigned char *)value, -1,
					  -1, 0) == 1 ? 0 : -1;
}

/* PEM of |pkey| (private, unencrypted) or of |req| into *out (malloc'd by
 * BIO; freed by the caller with BIO_free of *bio). */
static int pem_of(EVP_PKEY *pkey, X509_REQ *req, BIO **bio, char **out, size_t *len)
{
	long n;

	*bio = BIO_new(BIO_s_mem());
	if (!*bio)
		return -1;
	if (pkey ? PEM_write_bio_PrivateKey(*bio, pkey, NULL, NULL, 0, NULL, NULL) != 1
		 : PEM_write_bio_X509_REQ(*bio, req) != 1)
		return -1;
	n = BIO_get_mem_data(*bio, out);
	if (n <= 0)
		return -1;
	*len = (size_t)n;
	return 0;
}

int csr_cli(int argc, char **argv)
{
	const char *org = NULL, *oin = NULL, *prefix = NULL, *cn = NULL;
	char keypath[4096], csrpath[4096];
	EVP_PKEY *pkey = NULL;
	X509_REQ *req = NULL;
	BIO *keybio = NULL, *csrbio = NULL;
	char *keypem, *csrpem;
	size_t keylen, csrlen;
	struct stat st;
	int rc = 1, key_written = 0;

	for (int i = 1; i < argc; i++) {
		const char **dst = NULL;

		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			fputs(usage_csr, stdout);
			return 0;
		}
		if (strcmp(argv[i], "--org") == 0)
			dst = &org;
		else if (strcmp(argv[i], "--oin") == 0)
			dst = &oin;
		else if (strcmp(argv[i], "--out") == 0 || strcmp(argv[i], "-o") == 0)
			dst = &prefix;
		else if (strcmp(argv[i], "--cn") == 0)
			dst = &cn;
		else
			return usage_error("unexpected argument '%s'", argv[i]);
		if (i + 1 >= argc)
			return usage_error("%s needs a value", argv[i]);
		*dst = argv[++i];
	}
	if (!org || !oin || !prefix)
		return usage_error("%s", "--org, --oin and --out are required");
	if (!oin_valid(oin))
		return usage_error("--oin '%s' is not an OIN: it must be exactly 20 digits", oin);
	if (!cn)
		cn = org;
	if (org[0] == '\0' || strlen(org) > CSR_NAME_MAX)
		return usage_error("--org '%s' must be 1 to 64 bytes", org);
	if (cn[0] == '\0' || strlen(cn) > CSR_NAME_MAX)
		return usage_error("--cn '%s' must be 1 to 64 bytes", cn);
	if (prefix[0] == '\0' ||
	    snprintf(keypath, sizeof(keypath), "%s.key", prefix) >= (int)sizeof(keypath) ||
	    snprintf(csrpath, sizeof(csrpath), "%s.csr", prefix) >= (int)sizeof(csrpath))
		return usage_error("--out '%s' is not a usable file name prefix", prefix);
	/* Refuse before making anything: a partner's existing key is never
	 * replaced (its certificate would no longer match it). */
	if (lstat(keypath, &st) == 0 || lstat(csrpath, &st) == 0) {
		fprintf(stderr, "noordpoort csr: %s exists: refusing to overwrite (choose another --out)\n",
			lstat(keypath, &st) == 0 ? keypath : csrpath);
		return 1;
	}

	pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!pkey) {
		fail("making the key", NULL);
		goto out;
	}
	req = X509_REQ_new();
	if (!req || X509_REQ_set_version(req, 0) != 1) { /* version 1, encoded 0 */
		fail("making the request", NULL);
		goto out;
	}
	{
		X509_NAME *name = X509_REQ_get_subject_name(req);

		/* The order mkcerts.sh uses: C, O, CN, serialNumber. */
		if (add_name(name, "C", "NL") < 0 || add_name(name, "O", org) < 0 ||
		    add_name(name, "CN", cn) < 0 || add_name(name, "serialNumber", oin) < 0) {
			fail("the subject (is --org valid UTF-8?)", NULL);
			goto out;
		}
	}
	if (X509_REQ_set_pubkey(req, pkey) != 1 || X509_REQ_sign(req, pkey, EVP_sha256()) <= 0) {
		fail("signing the request", NULL);
		goto out;
	}
	if (pem_of(pkey, NULL, &keybio, &keypem, &keylen) < 0 ||
	    pem_of(NULL, req, &csrbio, &csrpem, &csrlen) < 0) {
		fail("encoding", NULL);
		goto out;
	}
	if (write_new(keypath, 0600, keypem, keylen) < 0) {
		fail(keypath, errno == EEXIST ? "exists: refusing to overwrite" : strerror(errno));
		goto out;
	}
	key_written = 1;
	if (write_new(csrpath, 0644, csrpem, csrlen) < 0) {
		fail(csrpath, errno == EEXIST ? "exists: refusing to overwrite" : strerror(errno));
		goto out;
	}
	printf("wrote %s (private key, mode 0600: keep it here) and %s (send it to the CA)\n"
	       "subject: C=NL, O=%s, CN=%s, serialNumber=%s\n",
	       keypath, csrpath, org, cn, oin);
	rc = 0;
out:
	if (rc != 0 && key_written)
		unlink(keypath); /* nothing left behind */
	BIO_free(csrbio);
	BIO_free(keybio);
	X509_REQ_free(req);
	EVP_PKEY_free(pkey);
	return rc;
}
