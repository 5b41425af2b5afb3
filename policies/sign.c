/*
 * Ed25519 signatures on policy files (libsodium, detached, over the exact
 * bytes), so a gateway can refuse a policy its privacy officer did not sign.
 * Secret keys live only in sodium_malloc memory and are wiped when freed.
 */
#include "policy.h"
#include "../common/fdio.h"
#include "../common/keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define MAX_SIGNED_BYTES (64u << 20)
#define SK_HEX (crypto_sign_SECRETKEYBYTES * 2)
#define SK_FILE_MAX 1024 /* past this it is no key file; smaller misfits get the format message */
#define PK_HEX (crypto_sign_PUBLICKEYBYTES * 2)
#define SIG_HEX (crypto_sign_BYTES * 2)

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Reads at most |max| bytes of |path|; more is an error. Caller frees. */
static int slurp(const char *path, size_t max, unsigned char **out, size_t *len,
		 char *err, size_t errlen)
{
	/* Non-blocking and regular files only: a FIFO named FILE.sig must not
	 * hang the gateway's reload (docs/policy.md, "Signatures"). */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	unsigned char *b = NULL, *nb;
	size_t n = 0, cap = 0, r;
	struct stat st;
	FILE *f;

	*out = NULL;
	if (fd < 0)
		return fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return fail(err, errlen, "%s: not a regular file", path);
	}
	if (!(f = fdopen(fd, "rb"))) {
		close(fd);
		return fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
	}
	do {
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			if (cap > max + 1)
				cap = max + 1;
			if (n == cap || !(nb = realloc(b, cap))) {
				fclose(f);
				free(b);
				return fail(err, errlen, "%s: %s", path, n == cap ? "too large" : "out of memory");
			}
			b = nb;
		}
		r = fread(b + n, 1, cap - n, f);
		n += r;
	} while (r > 0);
	if (ferror(f) || n > max) {
		fclose(f);
		free(b);
		return fail(err, errlen, "%s: %s", path, n > max ? "too large" : "read error");
	}
	fclose(f);
	*out = b;
	*len = n;
	return 0;
}

/* One line of exactly |binlen| bytes in hex, with an optional newline. */
static int unhex(const char *hex, size_t hexlen, unsigned char *bin, size_t binlen)
{
	size_t got;

	while (hexlen && (hex[hexlen - 1] == '\n' || hex[hexlen - 1] == '\r'))
		hexlen--;
	if (hexlen != binlen * 2)
		return -1;
	return sodium_hex2bin(bin, binlen, hex, hexlen, NULL, &got, NULL) == 0 && got == binlen ? 0 : -1;
}

int policy_keygen(const char *prefix, char *err, size_t errlen)
{
	unsigned char pk[crypto_sign_PUBLICKEYBYTES];
	unsigned char *sk = NULL;
	char *skhex = NULL;
	char pkhex[PK_HEX + 2];
	char sec[4096], pub[4096];
	int fd = -1, rc = -1, made_sec = 0;

	if (sodium_init() < 0)
		return fail(err, errlen, "libsodium could not start");
	if ((size_t)snprintf(sec, sizeof(sec), "%s.sec", prefix) >= sizeof(sec) ||
	    (size_t)snprintf(pub, sizeof(pub), "%s.pub", prefix) >= sizeof(pub))
		return fail(err, errlen, "%s: name too long", prefix);
	if (access(pub, F_OK) == 0)
		return fail(err, errlen, "%s already exists; refusing to overwrite a key", pub);
	sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
	skhex = sodium_malloc(SK_HEX + 2);
	if (!sk || !skhex) {
		fail(err, errlen, "out of memory");
		goto out;
	}
	crypto_sign_keypair(pk, sk);
	sodium_bin2hex(skhex, SK_HEX + 1, sk, crypto_sign_SECRETKEYBYTES);
	skhex[SK_HEX] = '\n';
	sodium_bin2hex(pkhex, PK_HEX + 1, pk, sizeof(pk));
	pkhex[PK_HEX] = '\n';
	/* O_EXCL: an existing key is never replaced; 0600 whatever the umask. */
	fd = open(sec, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		fail(err, errlen, errno == EEXIST ? "%s already exists; refusing to overwrite a key"
			      : "%s: cannot create", sec);
		goto out;
	}
	made_sec = 1;
	if (fchmod(fd, 0600) < 0 || fd_write_all(fd, skhex, SK_HEX + 1) < 0 || fsync(fd) < 0) {
		fail(err, errlen, "%s: cannot write: %s", sec, strerror(errno));
		goto out;
	}
	close(fd);
	fd = open(pub, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 || fd_write_all(fd, pkhex, PK_HEX + 1) < 0) {
		fail(err, errlen, "%s: cannot create: %s", pub, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0 && made_sec)
		unlink(sec);
	sodium_free(skhex);
	sodium_free(sk);
	return rc;
}

/* Reads a secret key file into |sk| (sodium_malloc'd by the caller), with
 * the secrecy checks of common/keyfile: no group/other access, owned by
 * this user or root. */
static int read_secret(const char *keyfile, unsigned char *sk, char *err, size_t errlen)
{
	char *hex = NULL;
	size_t n = 0;
	int rc = -1;

	if (keyfile_read(keyfile, KEYFILE_SECRET, SK_FILE_MAX, &hex, &n, err, errlen) < 0)
		return -1;
	if (unhex(hex, n, sk, crypto_sign_SECRETKEYBYTES) < 0) {
		fail(err, errlen, "%s: not a secret key (expected one line of %d hex digits)", keyfile, SK_HEX);
		goto out;
	}
	rc = 0;
out:
	keyfile_free(hex, KEYFILE_SECRET);
	return rc;
}

int policy_serials_path(const char *keyfile, char *out, size_t outlen)
{
	size_t n = strlen(keyfile);

	if (n > 4 && strcmp(keyfile + n - 4, ".sec") == 0)
		n -= 4;
	return (size_t)snprintf(out, outlen, "%.*s.serials", (int)n, keyfile) < outlen ? 0 : -1;
}

/*
 * The serial check of `policy sign`: |fi|'s serial must be above the one
 * last signed for the same base name, or equal with the same bytes (signing
 * again changes nothing). Records the new serial in |serials| (not yet
 * written).
 */
static int serial_rises(const char *file, const struct policy_file_info *fi,
			struct policy_serials *serials, const char *recpath, int *changed,
			char *err, size_t errlen)
{
	const char *base = policy_base_name(file);
	const struct policy_serial_rec *r = policy_serials_find(serials, base);

	*changed = 0;
	if (!policy_serial_name_ok(base))
		return fail(err, errlen, "%s: a policy file name must not contain spaces or "
			    "control characters", file);
	if (r && fi->serial < r->serial)
		return fail(err, errlen, "%s: serial %llu is below the last one signed for '%s', %llu "
			    "(%s); raise 'serial:' to %llu or more", file,
			    (unsigned long long)fi->serial, base, (unsigned long long)r->serial,
			    recpath, (unsigned long long)r->serial + 1);
	if (r && fi->serial == r->serial) {
		if (strcmp(r->sha256, fi->sha256) == 0)
			return 0;
		return fail(err, errlen, "%s: serial %llu was already signed for '%s' with other "
			    "content (%s); raise 'serial:' to %llu", file,
			    (unsigned long long)fi->serial, base, recpath,
			    (unsigned long long)r->serial + 1);
	}
	if (policy_serials_set(serials, base, fi->serial, fi->sha256) < 0)
		return fail(err, errlen, "out of memory");
	*changed = 1;
	return 0;
}

/* The file must be a policy with a serial and a validity end. */
static int file_header(const char *file, const unsigned char *buf, size_t len,
		       struct policy_file_info *out, char *err, size_t errlen)
{
	struct policy_refs refs = { 0 };
	struct policy_set *set = NULL;
	struct diag d = { 0 };
	char first[400];

	refs.require_serial = 1;
	if (policy_set_load_mem(file, buf, len, &refs, &set, &d) < 0) {
		int more = d.errors - 1;

		diag_first(&d, first, sizeof(first));
		diag_clear(&d);
		if (more > 0)
			return fail(err, errlen, "not signed: %s (and %d more; run noordpoort policy "
				    "check)", first, more);
		return fail(err, errlen, "not signed: %s", first);
	}
	diag_clear(&d);
	*out = *policy_set_file(set, 0);
	out->name = NULL; /* lives in |set| */
	policy_set_free(set);
	return 0;
}

int policy_sign_file(const char *file, const char *keyfile, struct policy_file_info *info,
		     char *err, size_t errlen)
{
	unsigned char sig[crypto_sign_BYTES];
	char sighex[SIG_HEX + 2], sigpath[4096], tmp[4112], recpath[4096];
	unsigned char *sk = NULL, *buf = NULL;
	struct policy_serials *serials = NULL;
	struct policy_file_info fi;
	size_t len;
	int fd = -1, rc = -1, changed = 0;

	if (sodium_init() < 0)
		return fail(err, errlen, "libsodium could not start");
	if ((size_t)snprintf(sigpath, sizeof(sigpath), "%s.sig", file) >= sizeof(sigpath))
		return fail(err, errlen, "%s: name too long", file);
	if (policy_serials_path(keyfile, recpath, sizeof(recpath)) < 0)
		return fail(err, errlen, "%s: name too long", keyfile);
	snprintf(tmp, sizeof(tmp), "%s.tmp", sigpath);
	if (!(sk = sodium_malloc(crypto_sign_SECRETKEYBYTES)))
		return fail(err, errlen, "out of memory");
	if (read_secret(keyfile, sk, err, errlen) < 0 ||
	    slurp(file, MAX_SIGNED_BYTES, &buf, &len, err, errlen) < 0 ||
	    file_header(file, buf, len, &fi, err, errlen) < 0 ||
	    policy_serials_read(recpath, &serials, err, errlen) < 0 ||
	    serial_rises(file, &fi, serials, recpath, &changed, err, errlen) < 0)
		goto out;
	/* The record first: a signature is never out without its serial on
	 * record, and a failed signing leaves a record that lets the same
	 * bytes be signed again. */
	if (changed && policy_serials_write(serials, recpath, err, errlen) < 0)
		goto out;
	sodium_mprotect_readonly(sk);
	crypto_sign_detached(sig, NULL, buf, len, sk);
	sodium_bin2hex(sighex, SIG_HEX + 1, sig, sizeof(sig));
	sighex[SIG_HEX] = '\n';
	/* Written aside and renamed, so a reader never sees half a signature. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || fd_write_all(fd, sighex, SIG_HEX + 1) < 0 || fsync(fd) < 0 ||
	    close(fd) < 0 || rename(tmp, sigpath) < 0) {
		fail(err, errlen, "%s: cannot write: %s", sigpath, strerror(errno));
		if (fd >= 0)
			unlink(tmp);
		fd = -1;
		goto out;
	}
	fd = -1;
	if (info)
		*info = fi;
	rc = 0;
out:
	policy_serials_free(serials);
	free(buf);
	sodium_free(sk);
	return rc;
}

int policy_read_pub(const char *pubfile, unsigned char pub[32], char *err, size_t errlen)
{
	unsigned char *buf;
	size_t len;
	int rc;

	if (slurp(pubfile, 4096, &buf, &len, err, errlen) < 0)
		return -1;
	rc = unhex((const char *)buf, len, pub, crypto_sign_PUBLICKEYBYTES);
	free(buf);
	if (rc < 0)
		return fail(err, errlen, "%s: not a public key (expected one line of %d hex digits)",
			    pubfile, PK_HEX);
	return 0;
}

int policy_verify_mem(const unsigned char *buf, size_t len, const char *sigfile,
		      const unsigned char pub[32], char *err, size_t errlen)
{
	unsigned char sig[crypto_sign_BYTES];
	unsigned char *text;
	size_t tlen;
	int rc;

	if (sodium_init() < 0)
		return fail(err, errlen, "libsodium could not start");
	if (access(sigfile, F_OK) < 0)
		return fail(err, errlen, "%s is missing: the file is not signed", sigfile);
	if (slurp(sigfile, SIG_HEX + 2, &text, &tlen, err, errlen) < 0)
		return -1;
	rc = unhex((const char *)text, tlen, sig, sizeof(sig));
	free(text);
	if (rc < 0)
		return fail(err, errlen, "%s: not a signature (expected one line of %d hex digits)",
			    sigfile, SIG_HEX);
	if (crypto_sign_verify_detached(sig, buf, len, pub) != 0)
		return fail(err, errlen, "bad signature in %s: the file was changed after signing, "
			    "or signed with another key", sigfile);
	return 0;
}

int policy_verify_file(const char *file, const unsigned char pub[32], char *err, size_t errlen)
{
	char sigpath[4096];
	unsigned char *buf;
	size_t len;
	int rc;

	if ((size_t)snprintf(sigpath, sizeof(sigpath), "%s.sig", file) >= sizeof(sigpath))
		return fail(err, errlen, "%s: name too long", file);
	if (slurp(file, MAX_SIGNED_BYTES, &buf, &len, err, errlen) < 0)
		return -1;
	rc = policy_verify_mem(buf, len, sigpath, pub, err, errlen);
	free(buf);
	return rc;
}
