/*
 * See keyfile.h. The checks apply to the file opened, not to the path
 * looked up a moment earlier, so a rename in between cannot slip another
 * file past them.
 */
#include "keyfile.h"
#include "errbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

static const char *file_kind(mode_t m)
{
	if (S_ISDIR(m))
		return "a directory";
	if (S_ISFIFO(m))
		return "a FIFO";
	if (S_ISSOCK(m))
		return "a socket";
	if (S_ISCHR(m) || S_ISBLK(m))
		return "a device";
	return "not a regular file";
}

/* Refuses what a secret must not be; 0 or -EPERM. */
static int check_secrecy(const char *path, const struct stat *st, uid_t user, char *err,
			 size_t errlen)
{
	uid_t euid = geteuid();
	uid_t fix = user != (uid_t)-1 ? user : euid;

	if (st->st_mode & (S_IRWXG | S_IRWXO)) {
		err_set(err, errlen,
			"%s: secret key file is accessible by group or others (mode %04o); "
			"run: chmod 600 '%s'", path, (unsigned)(st->st_mode & 07777), path);
		return -EPERM;
	}
	if (st->st_uid == euid || st->st_uid == 0 || (user != (uid_t)-1 && st->st_uid == user))
		return 0;
	if (user != (uid_t)-1 && user != euid)
		err_set(err, errlen,
			"%s: secret key file is owned by uid %u, not by this user (uid %u), root or "
			"the service user (uid %u); run: chown %u '%s'", path, (unsigned)st->st_uid,
			(unsigned)euid, (unsigned)user, (unsigned)fix, path);
	else
		err_set(err, errlen,
			"%s: secret key file is owned by uid %u, not by this user (uid %u) or root; "
			"run: chown %u '%s'", path, (unsigned)st->st_uid, (unsigned)euid,
			(unsigned)fix, path);
	return -EPERM;
	return 0;
}

int keyfile_read(const char *path, int flags, size_t max, char **out, size_t *outlen,
		 char *err, size_t errlen)
{
	return keyfile_read_for(path, flags, (uid_t)-1, max, out, outlen, err, errlen);
}

int keyfile_read_for(const char *path, int flags, uid_t user, size_t max, char **out,
		     size_t *outlen, char *err, size_t errlen)
{
	int secret = (flags & KEYFILE_SECRET) != 0;
	struct stat st;
	char *buf = NULL;
	size_t size, want, n = 0;
	int fd, rc;

	*out = NULL;
	*outlen = 0;
	if (!path || !*path) {
		err_set(err, errlen, "no key file given");
		return -EINVAL;
	}
	/* O_NONBLOCK: opening a FIFO with no writer must not hang the start. */
	do
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		rc = -errno;
		err_set(err, errlen, "%s: cannot open: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		err_set(err, errlen, "%s: cannot stat: %s", path, strerror(-rc));
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		err_set(err, errlen, "%s: %s, not a regular file; give the path of the file itself",
			path, file_kind(st.st_mode));
		goto done;
	}
	if (secret && (rc = check_secrecy(path, &st, user, err, errlen)) < 0)
		goto done;
	if (st.st_size <= 0) {
		rc = -ENODATA;
		err_set(err, errlen, "%s: the file is empty; is this the right file?", path);
		goto done;
	}
	if ((unsigned long long)st.st_size > max) {
		rc = -EFBIG;
		err_set(err, errlen, "%s: %lld bytes, more than the %zu allowed; is this the right file?",
			path, (long long)st.st_size, max);
		goto done;
	}
	size = (size_t)st.st_size;
	/* One byte more than the size, to notice a file that grows while it is
	 * read, and one for the NUL. */
	rc = -ENOMEM;
	if (secret)
		buf = sodium_init() < 0 ? NULL : sodium_malloc(size + 2);
	else
		buf = malloc(size + 2);
	if (!buf) {
		err_set(err, errlen, "%s: out of memory", path);
		goto done;
	}
	want = size + 1;
	while (n < want) {
		ssize_t r = read(fd, buf + n, want - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			err_set(err, errlen, "%s: cannot read: %s", path, strerror(-rc));
			goto done;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n != size) {
		rc = -EAGAIN;
		err_set(err, errlen, "%s: the file changed while it was read (%zu bytes, expected %zu); "
			"try again once it is written", path, n, size);
		goto done;
	}
	buf[n] = '\0';
	*out = buf;
	*outlen = n;
	buf = NULL;
	rc = 0;
done:
	keyfile_free(buf, flags);
	close(fd);
	return rc;
}

void keyfile_free(char *buf, int flags)
{
	if (!buf)
		return;
	if (flags & KEYFILE_SECRET)
		sodium_free(buf); /* wipes first */
	else
		free(buf);
}
