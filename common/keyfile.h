/*
 * Reading a small key or certificate file, with the safety checks done once
 * (relayd's check_file_secrecy): every secret key, certificate and CA file
 * the gateway, hub and CLI load comes through here.
 */
#ifndef NOORDPOORT_KEYFILE_H
#define NOORDPOORT_KEYFILE_H

#include <stddef.h>
#include <sys/types.h>

/* The file holds a secret: see keyfile_read(). */
#define KEYFILE_SECRET 1

/*
 * Reads |path| whole into |*out| (NUL-terminated; |*outlen| bytes without
 * the NUL). The file must be a regular file of 1 to |max| bytes; a FIFO or
 * device is refused without blocking. With KEYFILE_SECRET in |flags| it
 * must also not be accessible by group or others (mode & 077 == 0) and be
 * owned by the effective user or root, and |*out| is sodium_malloc'd
 * memory (guarded, wiped when freed).
 *
 * Returns 0, or with |err| naming the file and the fix:
 *   -EPERM   a secret file accessible by group or others, or owned by
 *            another user;
 *   -EINVAL  not a regular file;
 *   -ENODATA empty;
 *   -EFBIG   larger than |max|;
 *   -EAGAIN  the file changed size while being read;
 *   -ENOMEM  out of memory;
 *   -errno   from open, fstat or read (-ENOENT, -EACCES, -EIO, ...).
 * On success the caller owns |*out| and frees it with keyfile_free() and
 * the same |flags|; on error |*out| is NULL.
 */
int keyfile_read(const char *path, int flags, size_t max, char **out, size_t *outlen,
		 char *err, size_t errlen);

/*
 * keyfile_read() for a process that will drop to |user| and re-read the
 * file as it (the gateway's TLS key, docs/security.md): a secret owned by
 * |user| is accepted too. (uid_t)-1: nobody else, as keyfile_read().
 */
int keyfile_read_for(const char *path, int flags, uid_t user, size_t max, char **out,
		     size_t *outlen, char *err, size_t errlen);

/* Frees what keyfile_read() returned with the same |flags| (a secret is
 * wiped by sodium_free). keyfile_free(NULL, flags) is a no-op. */
void keyfile_free(char *buf, int flags);

#endif
