/*
 * The hub's box key pair: X25519 keys for crypto_box_seal, written and read
 * as one line of hex each (crypto/pseudo.h, "Box keys"); the
 * `noordpoort keygen --box` command that makes them is cli/keygen_cli.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "../common/errbuf.h"
#include "../common/fdio.h"
#include "../common/keyfile.h"
#include "boxkey.h"
#include "pseudo.h"

#define BOX_HEX_LEN 64                  /* 32 bytes as hex */
#define BOX_LINE_LEN (BOX_HEX_LEN + 1)  /* and the newline */
#define BOX_FILE_MAX 1024 /* past this it is no key file; smaller misfits get the format message */
#define BOX_SUFFIX_MAX 5                /* ".sec" / ".pub" + NUL */

/* Creates |path| with O_EXCL|O_NOFOLLOW and |mode| (whatever the umask),
 * writes |line| (BOX_LINE_LEN bytes) and fsyncs. Sets *created when the file
 * now exists because of us. */
static int box_write_file(const char *path, const char *line, mode_t mode, int *created,
			  char *err, size_t errlen)
{
	int fd, e;

	*created = 0;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0) {
		e = errno;
		err_set(err, errlen, "%s: %s%s", path, strerror(e),
			   e == EEXIST ? " (a key file is never overwritten; move it away first)" : "");
		return e == EEXIST ? PSEUDO_ERR_EXISTS : PSEUDO_ERR_IO;
	}
	*created = 1;
	if (fchmod(fd, mode) < 0 || fd_write_all(fd, line, BOX_LINE_LEN) < 0 || fsync(fd) < 0) {
		e = errno;
		close(fd);
		err_set(err, errlen, "%s: %s", path, strerror(e));
		return PSEUDO_ERR_IO;
	}
	if (close(fd) < 0) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		return PSEUDO_ERR_IO;
	}
	return 0;
}

/* PREFIX + suffix, malloc'd; NULL when out of memory. */
static char *box_path(const char *prefix, const char *suffix)
{
	size_t n = strlen(prefix) + BOX_SUFFIX_MAX;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s%s", prefix, suffix);
	return p;
}

int pseudo_box_generate(const char *prefix, char *err, size_t errlen)
{
	unsigned char *sk = NULL;
	unsigned char pk[PSEUDO_BOX_PUB_BYTES];
	char *line = NULL, *sec = NULL, *pub = NULL;
	struct stat st;
	int rc = PSEUDO_ERR_NOMEM, sec_made = 0, pub_made = 0;

	if (!prefix || !*prefix) {
		err_set(err, errlen, "no key file prefix given");
		return PSEUDO_ERR_ARG;
	}
	sec = box_path(prefix, ".sec");
	pub = box_path(prefix, ".pub");
	if (!sec || !pub || sodium_init() < 0)
		goto nomem;
	/* Refuse before creating anything: a half-new pair is worse than none. */
	if (lstat(pub, &st) == 0) {
		err_set(err, errlen, "%s: File exists (a key file is never overwritten; "
			   "move it away first)", pub);
		rc = PSEUDO_ERR_EXISTS;
		goto done;
	}
	sk = sodium_malloc(PSEUDO_BOX_SEC_BYTES);
	line = sodium_malloc(BOX_LINE_LEN + 1);
	if (!sk || !line)
		goto nomem;
	if (crypto_box_keypair(pk, sk) != 0) {
		err_set(err, errlen, "%s: crypto_box_keypair failed", prefix);
		rc = PSEUDO_ERR_CRYPTO;
		goto done;
	}
	sodium_bin2hex(line, BOX_LINE_LEN + 1, sk, PSEUDO_BOX_SEC_BYTES);
	line[BOX_HEX_LEN] = '\n';
	rc = box_write_file(sec, line, 0600, &sec_made, err, errlen);
	if (rc < 0)
		goto done;
	sodium_bin2hex(line, BOX_LINE_LEN + 1, pk, PSEUDO_BOX_PUB_BYTES);
	line[BOX_HEX_LEN] = '\n';
	/* The public key is public: readable by all, so nodes' operators can copy it. */
	rc = box_write_file(pub, line, 0644, &pub_made, err, errlen);
	goto done;
nomem:
	err_set(err, errlen, "%s: out of memory", prefix);
	rc = PSEUDO_ERR_NOMEM;
done:
	if (rc < 0 && pub_made)
		unlink(pub);
	if (rc < 0 && sec_made)
		unlink(sec);
	sodium_free(line);
	sodium_free(sk);
	free(pub);
	free(sec);
	return rc;
}

/*
 * Reads a key file of one hex line into |key| (32 bytes). |secret| adds the
 * secrecy checks of common/keyfile (no group/other access, owned by this
 * user or root) and keeps the text in sodium_malloc memory.
 */
static int box_read(const char *path, unsigned char *key, int secret, char *err, size_t errlen)
{
	const char *what = secret ? "secret box key" : "public box key";
	int flags = secret ? KEYFILE_SECRET : 0;
	char *buf = NULL;
	size_t n = 0, binlen = 0;
	const char *end = NULL;
	int rc;

	if (!path || !*path || !key) {
		err_set(err, errlen, "no %s file given", what);
		return PSEUDO_ERR_ARG;
	}
	rc = keyfile_read(path, flags, BOX_FILE_MAX, &buf, &n, err, errlen);
	if (rc < 0) {
		rc = rc == -ENOMEM ? PSEUDO_ERR_NOMEM
		     : rc == -EPERM || rc == -EINVAL ? PSEUDO_ERR_INSECURE
		     : rc == -ENODATA || rc == -EFBIG ? PSEUDO_ERR_FORMAT
		     : PSEUDO_ERR_IO;
		goto done;
	}
	rc = PSEUDO_ERR_FORMAT;
	if ((n != BOX_LINE_LEN && n != BOX_HEX_LEN) || (n == BOX_LINE_LEN && buf[BOX_HEX_LEN] != '\n') ||
	    sodium_hex2bin(key, 32, buf, BOX_HEX_LEN, NULL, &binlen, &end) != 0 ||
	    binlen != 32 || end != buf + BOX_HEX_LEN) {
		err_set(err, errlen, "%s: not a %s (expected one line of 64 hex digits)", path, what);
		goto done;
	}
	rc = 0;
done:
	if (rc < 0)
		sodium_memzero(key, 32);
	if (buf && !secret)
		sodium_memzero(buf, n); /* a public key, but no reason to leave it about */
	keyfile_free(buf, flags);
	return rc;
}

int pseudo_box_read_pub(const char *path, unsigned char pk[32], char *err, size_t errlen)
{
	return box_read(path, pk, 0, err, errlen);
}

int pseudo_box_read_sec(const char *path, unsigned char sk[32], char *err, size_t errlen)
{
	return box_read(path, sk, 1, err, errlen);
}

/* ---- the command line ---------------------------------------------------- */
