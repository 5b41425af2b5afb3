/*
 * The hub's box key pair (crypto/boxkey.c). Return values are those of enum
 * pseudo_error (crypto/pseudo.h).
 */
#ifndef NOORDPOORT_BOXKEY_H
#define NOORDPOORT_BOXKEY_H

#include <stddef.h>

/*
 * Box keys: the hub's X25519 key pair for crypto_box_seal
 * (nodes seal linked answers to the public key; only the hub opens them).
 * Files: PREFIX.sec and PREFIX.pub, each one line of 64 lower-case hex digits
 * and a newline (65 bytes; the newline may be missing). PREFIX.sec is mode
 * 0600 and, like the master key, refused when group or others may access it,
 * when owned by another user than the process or root, or when not a regular
 * file. Return values are those of enum pseudo_error.
 */
#define PSEUDO_BOX_PUB_BYTES 32 /* crypto_box_PUBLICKEYBYTES */
#define PSEUDO_BOX_SEC_BYTES 32 /* crypto_box_SECRETKEYBYTES */

/*
 * Writes a new key pair: PREFIX.sec (O_EXCL, 0600, fsync'd) then PREFIX.pub
 * (O_EXCL, 0644). Refuses if either file exists (PSEUDO_ERR_EXISTS) and
 * removes what it created when a later step fails. The secret key lives only
 * in sodium_malloc memory and is wiped. Returns 0, PSEUDO_ERR_ARG, _EXISTS,
 * _IO, _NOMEM; |err| names the file and the reason.
 */
int pseudo_box_generate(const char *prefix, char *err, size_t errlen);

/* Reads a public key file into |pk|. Returns 0, PSEUDO_ERR_ARG, _IO, _FORMAT. */
int pseudo_box_read_pub(const char *path, unsigned char pk[32], char *err, size_t errlen);

/*
 * Reads a secret key file into |sk|, which the caller supplies in
 * sodium_malloc memory (and may make read-only afterwards). The file's text
 * passes through sodium_malloc memory only and is wiped. Returns 0,
 * PSEUDO_ERR_ARG, _IO, _INSECURE, _FORMAT, _NOMEM; on failure |sk| is zeroed.
 */
int pseudo_box_read_sec(const char *path, unsigned char sk[32], char *err, size_t errlen);

#endif
