/*
 * BSN validation (elfproef), the master key file, key derivation and keyed
 * BLAKE2b pseudonyms. The key hierarchy and the file format are documented
 * in pseudo.h; this file must stay in step with that comment.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "../common/errbuf.h"
#include "../common/fdio.h"
#include "../common/keyfile.h"
#include "pseudo.h"
#include "blake2b_batch.h"

/* ---- BSN ---------------------------------------------------------------- */

int bsn_parse(const char *s, size_t len, uint32_t *out)
{
	static const int weight9[9] = { 9, 8, 7, 6, 5, 4, 3, 2, -1 };
	const int *w;
	uint32_t v = 0;
	int sum = 0;

	if (len == 0)
		return BSN_EMPTY;
	for (size_t i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return BSN_NOT_DIGITS;
	if (len != 8 && len != 9)
		return BSN_LENGTH;
	w = weight9 + (9 - len); /* 8 digits: the padding 0 weighs nothing */
	for (size_t i = 0; i < len; i++) {
		int d = s[i] - '0';

		sum += w[i] * d;
		v = v * 10 + (uint32_t)d;
	}
	if (v == 0)
		return BSN_ZERO;
	if (sum % 11 != 0) /* sum may be negative; % then gives 0 or a negative rest */
		return BSN_CHECKSUM;
	*out = v;
	return BSN_OK;
}

const char *bsn_error_name(int err)
{
	switch (err) {
	case BSN_OK: return "ok";
	case BSN_EMPTY: return "invalid_bsn_empty";
	case BSN_NOT_DIGITS: return "invalid_bsn_not_digits";
	case BSN_LENGTH: return "invalid_bsn_length";
	case BSN_ZERO: return "invalid_bsn_zero";
	case BSN_CHECKSUM: return "invalid_bsn_checksum";
	}
	return "invalid_bsn";
}

/* The 9 digits, no NUL: the canonical form that is hashed. */
static inline void bsn_digits(uint32_t bsn, unsigned char d[9])
{
	for (int i = 8; i >= 0; i--) {
		d[i] = (unsigned char)('0' + bsn % 10);
		bsn /= 10;
	}
}

void bsn_format(uint32_t bsn, char out[10])
{
	unsigned char d[9];

	bsn_digits(bsn, d);
	memcpy(out, d, 9);
	out[9] = '\0';
}

/* ---- keys --------------------------------------------------------------- */

#define MASTER_MAGIC "noordpoort-master-key-v1 "
#define MASTER_MAGIC_LEN (sizeof(MASTER_MAGIC) - 1)
#define MASTER_LINE_LEN (MASTER_MAGIC_LEN + 2 * PSEUDO_KEY_BYTES + 1) /* with '\n' */

static const char kdf_context[crypto_kdf_CONTEXTBYTES + 1] = "NPpseudo";
enum { KDF_ID_PURPOSE = 1, KDF_ID_RECIPIENT = 2, KDF_ID_AUDIT = 3 };

struct pseudo_master {
	unsigned char key[PSEUDO_KEY_BYTES];
};

/*
 * |cv| is the BLAKE2b chaining value after the key block of |key|: each token
 * is then one compression (blake2b_batch.c). It is as secret as the key and
 * lives, read-only, in the same sodium_malloc block, wiped with it. The
 * struct's size is a multiple of 64, so sodium_malloc (which places the block
 * at the end of a page) returns a 64-byte aligned address.
 */
struct pseudo_key {
	uint64_t cv[PSEUDO_B2B_CV_WORDS];
	unsigned char key[PSEUDO_KEY_BYTES];
	unsigned char pad[32];
};
_Static_assert(sizeof(struct pseudo_key) % 64 == 0, "pseudo_key size must keep sodium_malloc aligned");
_Static_assert(crypto_generichash_KEYBYTES_MAX >= PSEUDO_KEY_BYTES, "key size");
_Static_assert(crypto_kdf_KEYBYTES == PSEUDO_KEY_BYTES, "master key size");

/* Takes |key| (32 bytes, any memory) and builds a read-only master around a copy. */
static int master_from_bytes(const unsigned char *key, struct pseudo_master **out)
{
	struct pseudo_master *m;

	*out = NULL;
	if (sodium_init() < 0)
		return PSEUDO_ERR_NOMEM;
	m = sodium_malloc(sizeof(*m));
	if (!m)
		return PSEUDO_ERR_NOMEM;
	memcpy(m->key, key, sizeof(m->key));
	sodium_mprotect_readonly(m);
	*out = m;
	return 0;
}

void pseudo_master_free(struct pseudo_master *m)
{
	sodium_free(m); /* makes it writable, wipes, frees; NULL is a no-op */
}

/* Builds a read-only key around a copy of |key| and its key-block chaining value. */
static int key_from_bytes(const unsigned char *key, struct pseudo_key **out)
{
	struct pseudo_key *k;

	*out = NULL;
	k = sodium_malloc(sizeof(*k));
	if (!k)
		return PSEUDO_ERR_NOMEM;
	memcpy(k->key, key, sizeof(k->key));
	memset(k->pad, 0, sizeof(k->pad));
	pseudo_b2b_key_cv(k->key, k->cv);
	sodium_mprotect_readonly(k);
	*out = k;
	return 0;
}

void pseudo_key_free(struct pseudo_key *k)
{
	sodium_free(k);
}

/*
 * BLAKE2b-256 keyed with |key| and personalised with |personal| over the
 * concatenation of |n| parts, each given as (pointer, length) and, when
 * |prefix| says so, preceded by its 8-byte little-endian length. The result
 * becomes a new pseudo_key; every temporary is wiped.
 */
struct part {
	const void *p;
	size_t len;
};

static int derive(const unsigned char *key, const char *personal, const struct part *parts,
		  size_t n, int prefix, struct pseudo_key **out)
{
	unsigned char salt[crypto_generichash_blake2b_SALTBYTES] = { 0 };
	unsigned char pers[crypto_generichash_blake2b_PERSONALBYTES] = { 0 };
	crypto_generichash_blake2b_state *st;
	unsigned char *sub;
	int rc = PSEUDO_ERR_NOMEM;

	*out = NULL;
	memcpy(pers, personal, strlen(personal)); /* our own constants, < 16 bytes */
	/* The state holds the key block, the output is the key: both secret. */
	st = sodium_malloc(sizeof(*st));
	sub = sodium_malloc(PSEUDO_KEY_BYTES);
	if (!st || !sub)
		goto done;
	rc = PSEUDO_ERR_CRYPTO;
	if (crypto_generichash_blake2b_init_salt_personal(st, key, PSEUDO_KEY_BYTES, PSEUDO_KEY_BYTES,
							  salt, pers) != 0)
		goto done;
	for (size_t i = 0; i < n; i++) {
		if (prefix) {
			unsigned char le[8];
			uint64_t v = parts[i].len;

			for (int j = 0; j < 8; j++)
				le[j] = (unsigned char)(v >> (8 * j));
			crypto_generichash_blake2b_update(st, le, sizeof(le));
		}
		crypto_generichash_blake2b_update(st, parts[i].p, parts[i].len);
	}
	if (crypto_generichash_blake2b_final(st, sub, PSEUDO_KEY_BYTES) != 0)
		goto done;
	rc = key_from_bytes(sub, out);
done:
	sodium_free(sub); /* sodium_free wipes */
	sodium_free(st);
	return rc;
}

/* crypto_kdf_derive_from_key of |id| into sodium_malloc memory. */
static int kdf_root(const struct pseudo_master *m, uint64_t id, unsigned char **root)
{
	*root = sodium_malloc(PSEUDO_KEY_BYTES);
	if (!*root)
		return PSEUDO_ERR_NOMEM;
	if (crypto_kdf_derive_from_key(*root, PSEUDO_KEY_BYTES, id, kdf_context, m->key) != 0) {
		sodium_free(*root);
		*root = NULL;
		return PSEUDO_ERR_CRYPTO;
	}
	return 0;
}

int pseudo_key_purpose(const struct pseudo_master *m, const char *purpose, struct pseudo_key **out)
{
	unsigned char *root;
	struct part parts[1];
	int rc;

	*out = NULL;
	if (!m || !purpose || !*purpose)
		return PSEUDO_ERR_ARG;
	parts[0] = (struct part){ purpose, strlen(purpose) };
	if ((rc = kdf_root(m, KDF_ID_PURPOSE, &root)) < 0)
		return rc;
	rc = derive(root, "NP-purpose-v1", parts, 1, 1, out);
	sodium_free(root);
	return rc;
}

int pseudo_key_recipient(const struct pseudo_master *m, const char *purpose, const char *recipient,
			 struct pseudo_key **out)
{
	unsigned char *root;
	struct part parts[2];
	int rc;

	*out = NULL;
	if (!m || !purpose || !*purpose || !recipient || !*recipient)
		return PSEUDO_ERR_ARG;
	parts[0] = (struct part){ purpose, strlen(purpose) };
	parts[1] = (struct part){ recipient, strlen(recipient) };
	if ((rc = kdf_root(m, KDF_ID_RECIPIENT, &root)) < 0)
		return rc;
	rc = derive(root, "NP-recipient-v1", parts, 2, 1, out);
	sodium_free(root);
	return rc;
}

int pseudo_key_query(const struct pseudo_key *purpose_key, const unsigned char query_id[16],
		     struct pseudo_key **out)
{
	struct part parts[1];

	*out = NULL;
	if (!purpose_key || !query_id)
		return PSEUDO_ERR_ARG;
	parts[0] = (struct part){ query_id, PSEUDO_QUERY_ID_BYTES };
	return derive(purpose_key->key, "NP-query-v1", parts, 1, 0, out);
}

int pseudo_key_audit(const struct pseudo_master *m, struct pseudo_key **out)
{
	unsigned char *root;
	int rc;

	*out = NULL;
	if (!m)
		return PSEUDO_ERR_ARG;
	if ((rc = kdf_root(m, KDF_ID_AUDIT, &root)) < 0)
		return rc;
	rc = key_from_bytes(root, out);
	sodium_free(root);
	return rc;
}

/* ---- tokens ------------------------------------------------------------- */

/*
 * One compression per token from the precomputed chaining value, instead of
 * libsodium's two (it buffers the key block until final). Equal to
 * crypto_generichash(out, 32, digits, 9, key, 32); the tests check that.
 */
void pseudo_token(const struct pseudo_key *k, uint32_t bsn, unsigned char out[PSEUDO_TOKEN_BYTES])
{
	pseudo_b2b_token(k->cv, bsn, out);
}

void pseudo_tokens(const struct pseudo_key *k, const uint32_t *bsns, size_t n,
		   unsigned char (*out)[PSEUDO_TOKEN_BYTES])
{
	pseudo_b2b_tokens(k->cv, bsns, n, out);
}

void pseudo_hex(const unsigned char *in, size_t n, char *out)
{
	sodium_bin2hex(out, 2 * n + 1, in, n);
}

/* ---- the master key file ------------------------------------------------ */

int pseudo_master_generate(const char *path, char *err, size_t errlen)
{
	unsigned char *key = NULL;
	char *line = NULL;
	int fd = -1, rc = PSEUDO_ERR_NOMEM, created = 0;

	if (!path || !*path) {
		err_set(err, errlen, "no key file path given");
		return PSEUDO_ERR_ARG;
	}
	if (sodium_init() < 0)
		goto nomem;
	key = sodium_malloc(PSEUDO_KEY_BYTES);
	line = sodium_malloc(MASTER_LINE_LEN + 1);
	if (!key || !line)
		goto nomem;
	randombytes_buf(key, PSEUDO_KEY_BYTES);
	memcpy(line, MASTER_MAGIC, MASTER_MAGIC_LEN);
	sodium_bin2hex(line + MASTER_MAGIC_LEN, 2 * PSEUDO_KEY_BYTES + 1, key, PSEUDO_KEY_BYTES);
	line[MASTER_LINE_LEN - 1] = '\n';
	line[MASTER_LINE_LEN] = '\0';

	/* O_EXCL|O_NOFOLLOW: never overwrite a key, never write through a symlink. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;

		rc = e == EEXIST ? PSEUDO_ERR_EXISTS : PSEUDO_ERR_IO;
		err_set(err, errlen, "%s: %s%s", path, strerror(e),
		       e == EEXIST ? " (a key file is never overwritten; move it away first)" : "");
		goto done;
	}
	created = 1;
	rc = PSEUDO_ERR_IO;
	if (fchmod(fd, 0600) < 0 || fd_write_all(fd, line, MASTER_LINE_LEN) < 0 || fsync(fd) < 0) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		goto done;
	}
	if (close(fd) < 0) {
		fd = -1;
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		goto done;
	}
	fd = -1;
	rc = 0;
	goto done;
nomem:
	err_set(err, errlen, "%s: out of memory", path);
	rc = PSEUDO_ERR_NOMEM;
done:
	if (fd >= 0)
		close(fd);
	if (rc < 0 && created)
		unlink(path);
	sodium_free(line);
	sodium_free(key);
	return rc;
}

int pseudo_master_load(const char *path, struct pseudo_master **out, char *err, size_t errlen)
{
	unsigned char *key = NULL;
	char *buf = NULL;
	size_t n = 0, binlen = 0;
	const char *end = NULL;
	int rc;

	*out = NULL;
	if (!path || !*path) {
		err_set(err, errlen, "no key file path given");
		return PSEUDO_ERR_ARG;
	}
	/* common/keyfile: a regular file, no group/other access, owned by this
	 * user or root, read into sodium_malloc memory. */
	rc = keyfile_read(path, KEYFILE_SECRET, MASTER_LINE_LEN, &buf, &n, err, errlen);
	if (rc < 0)
		return rc == -ENOMEM ? PSEUDO_ERR_NOMEM
		       : rc == -EPERM || rc == -EINVAL ? PSEUDO_ERR_INSECURE
		       : rc == -ENODATA || rc == -EFBIG ? PSEUDO_ERR_FORMAT
		       : PSEUDO_ERR_IO;
	rc = PSEUDO_ERR_FORMAT;
	if (n != MASTER_LINE_LEN && n != MASTER_LINE_LEN - 1) {
		err_set(err, errlen, "%s: %zu bytes, expected %zu: not a noordpoort master key "
			       "(one line '%s<64 hex digits>')",
		       path, n, MASTER_LINE_LEN, MASTER_MAGIC);
		goto done;
	}
	rc = PSEUDO_ERR_NOMEM;
	if (!(key = sodium_malloc(PSEUDO_KEY_BYTES)))
		goto nomem;
	rc = PSEUDO_ERR_FORMAT;
	if ((n != MASTER_LINE_LEN && n != MASTER_LINE_LEN - 1) ||
	    (n == MASTER_LINE_LEN && buf[n - 1] != '\n') ||
	    memcmp(buf, MASTER_MAGIC, MASTER_MAGIC_LEN) != 0 ||
	    sodium_hex2bin(key, PSEUDO_KEY_BYTES, buf + MASTER_MAGIC_LEN, 2 * PSEUDO_KEY_BYTES,
			   NULL, &binlen, &end) != 0 ||
	    binlen != PSEUDO_KEY_BYTES || end != buf + MASTER_MAGIC_LEN + 2 * PSEUDO_KEY_BYTES) {
		err_set(err, errlen, "%s: not a noordpoort master key (expected one line '%s<64 hex digits>')",
		       path, MASTER_MAGIC);
		goto done;
	}
	rc = master_from_bytes(key, out);
	if (rc == 0)
		goto done;
nomem:
	err_set(err, errlen, "%s: out of memory", path);
	rc = PSEUDO_ERR_NOMEM;
done:
	sodium_free(key);
	keyfile_free(buf, KEYFILE_SECRET);
	return rc;
}
