/*
 * Serial records: the highest serial seen per policy file (by base name),
 * with the SHA-256 of the bytes that carried it. The privacy officer's
 * `policy sign` keeps one next to the signing key, each gateway one in its
 * state_dir; both refuse to go back (docs/policy.md, "Serial and validity").
 */
#include "policy.h"
#include "../common/errbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SERIALS_FILE_MAX (1u << 20) /* 1 MiB: thousands of policy files */
#define SERIALS_NAME_MAX 255

struct policy_serials {
	struct policy_serial_rec *v;
	size_t n, cap;
};

const char *policy_base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

int policy_serial_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > SERIALS_NAME_MAX)
		return 0;
	for (; *name; name++)
		if ((unsigned char)*name <= ' ' || *name == 0x7f)
			return 0;
	return 1;
}

static int is_hex64(const char *s, size_t n)
{
	if (n != POLICY_HASH_HEX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* "NAME SERIAL SHA256", fields separated by one space. */
static int parse_line(const char *l, size_t n, struct policy_serial_rec *r)
{
	const char *sp1 = memchr(l, ' ', n), *sp2;
	size_t namelen;
	uint64_t v = 0;

	if (!sp1 || sp1 == l || (namelen = (size_t)(sp1 - l)) > SERIALS_NAME_MAX)
		return -1;
	sp2 = memchr(sp1 + 1, ' ', n - namelen - 1);
	if (!sp2 || sp2 == sp1 + 1)
		return -1;
	for (const char *p = sp1 + 1; p < sp2; p++) {
		if (*p < '0' || *p > '9' || v > (POLICY_SERIAL_MAX - (uint64_t)(*p - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v == 0 || !is_hex64(sp2 + 1, n - (size_t)(sp2 + 1 - l)))
		return -1;
	memcpy(r->name, l, namelen);
	r->name[namelen] = '\0';
	if (!policy_serial_name_ok(r->name))
		return -1;
	r->serial = v;
	memcpy(r->sha256, sp2 + 1, POLICY_HASH_HEX);
	r->sha256[POLICY_HASH_HEX] = '\0';
	return 0;
}

int policy_serials_read(const char *path, struct policy_serials **out, char *err, size_t errlen)
{
	struct policy_serials *s = calloc(1, sizeof(*s));
	char *buf = NULL;
	size_t len = 0, lineno = 0;
	struct stat st;
	ssize_t r;
	int fd = -1;

	*out = NULL;
	if (!s) {
		err_set(err, errlen, "out of memory");
		return -1;
	}
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		*out = s; /* nothing recorded yet */
		return 0;
	}
	if (fd < 0) {
		err_set(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		goto bad;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		err_set(err, errlen, "%s: not a regular file", path);
		goto bad;
	}
	if (st.st_size > (off_t)SERIALS_FILE_MAX) {
		err_set(err, errlen, "%s: larger than %u bytes", path, SERIALS_FILE_MAX);
		goto bad;
	}
	if (!(buf = malloc((size_t)st.st_size + 1))) {
		err_set(err, errlen, "out of memory");
		goto bad;
	}
	while (len < (size_t)st.st_size && (r = read(fd, buf + len, (size_t)st.st_size - len)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err_set(err, errlen, "%s: cannot read: %s", path, strerror(errno));
			goto bad;
		}
		len += (size_t)r;
	}
	for (size_t at = 0; at < len;) {
		const char *nl = memchr(buf + at, '\n', len - at);
		size_t n = nl ? (size_t)(nl - (buf + at)) : len - at;
		struct policy_serial_rec rec;

		lineno++;
		/* A record someone edited into something else is not guessed at:
		 * the gateway refuses to load until an operator looks. */
		if (!nl || parse_line(buf + at, n, &rec) < 0) {
			err_set(err, errlen, "%s:%zu: not a serial record (expected 'NAME SERIAL SHA256' "
			        "ending in a newline)", path, lineno);
			goto bad;
		}
		if (policy_serials_find(s, rec.name)) {
			err_set(err, errlen, "%s:%zu: '%s' is recorded twice", path, lineno, rec.name);
			goto bad;
		}
		if (policy_serials_set(s, rec.name, rec.serial, rec.sha256) < 0) {
			err_set(err, errlen, "out of memory");
			goto bad;
		}
		at += n + 1;
	}
	free(buf);
	close(fd);
	*out = s;
	return 0;
bad:
	free(buf);
	if (fd >= 0)
		close(fd);
	policy_serials_free(s);
	return -1;
}

static struct policy_serial_rec *find(const struct policy_serials *s, const char *name)
{
	for (size_t i = 0; s && i < s->n; i++)
		if (strcmp(s->v[i].name, name) == 0)
			return &s->v[i];
	return NULL;
}

const struct policy_serial_rec *policy_serials_find(const struct policy_serials *s, const char *name)
{
	return find(s, name);
}

int policy_serials_set(struct policy_serials *s, const char *name, uint64_t serial,
		       const char *sha256)
{
	struct policy_serial_rec *r = find(s, name);

	if (!policy_serial_name_ok(name) || serial == 0 || serial > POLICY_SERIAL_MAX ||
	    !is_hex64(sha256, strlen(sha256)))
		return -1;
	if (!r) {
		if (s->n == s->cap) {
			size_t cap = s->cap ? s->cap * 2 : 8;
			struct policy_serial_rec *nv = realloc(s->v, cap * sizeof(*nv));

			if (!nv)
				return -1;
			s->v = nv;
			s->cap = cap;
		}
		r = &s->v[s->n++];
		snprintf(r->name, sizeof(r->name), "%s", name);
	}
	r->serial = serial;
	memcpy(r->sha256, sha256, POLICY_HASH_HEX + 1);
	return 0;
}

int policy_serials_write(const struct policy_serials *s, const char *path, char *err, size_t errlen)
{
	char tmp[4200], dir[4096];
	const char *slash = strrchr(path, '/');
	int fd, dfd;
	FILE *f;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		err_set(err, errlen, "%s: name too long", path);
		return -1;
	}
	if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else if (slash)
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	else
		snprintf(dir, sizeof(dir), ".");
	/* A fresh file, never one planted under that name (a link the folder's
	 * owner left there would otherwise be truncated by whoever writes). */
	if (unlink(tmp) != 0 && errno != ENOENT) {
		err_set(err, errlen, "%s: cannot remove: %s", tmp, strerror(errno));
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		err_set(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
		return -1;
	}
	if (!(f = fdopen(fd, "w"))) {
		close(fd);
		unlink(tmp);
		err_set(err, errlen, "%s: cannot write: %s", tmp, strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < s->n; i++)
		fprintf(f, "%s %llu %s\n", s->v[i].name, (unsigned long long)s->v[i].serial,
			s->v[i].sha256);
	/* Written aside, synced, renamed over, and the folder synced: after a
	 * power cut the record is the old one or the new one, never half. */
	if (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0) {
		int e = errno;

		fclose(f);
		unlink(tmp);
		err_set(err, errlen, "%s: cannot write: %s", tmp, strerror(e));
		return -1;
	}
	if (fclose(f) != 0) {
		unlink(tmp);
		err_set(err, errlen, "%s: cannot write: %s", tmp, strerror(errno));
		return -1;
	}
	if (rename(tmp, path) != 0) {
		int e = errno;

		unlink(tmp);
		err_set(err, errlen, "%s: cannot replace: %s", path, strerror(e));
		return -1;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) != 0) {
		int e = errno;

		if (dfd >= 0)
			close(dfd);
		err_set(err, errlen, "%s: cannot sync the folder: %s", dir, strerror(e));
		return -1;
	}
	close(dfd);
	return 0;
}

void policy_serials_free(struct policy_serials *s)
{
	if (!s)
		return;
	free(s->v);
	free(s);
}
