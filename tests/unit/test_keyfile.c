/*
 * Unit tests for common/keyfile.c: every refusal (missing, directory, FIFO,
 * empty, too large, group/other access, foreign owner) at its edges, EINTR
 * and short reads, a file changing while read, and each allocation failing.
 */
#define CHECK_FILE "test_keyfile"
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <sodium.h>

/* ---- hooks: the module is #included with these in place of libc's ---- */

static long alloc_fail_at = -1; /* fail the allocation with this index; -1: never */
static long alloc_count;
static long secret_live, secret_made, plain_made;

static void *hook_malloc(size_t n)
{
	if (alloc_fail_at >= 0 && alloc_count++ == alloc_fail_at)
		return NULL;
	plain_made++;
	return malloc(n);
}

static void *hook_sodium_malloc(size_t n)
{
	void *p;

	if (alloc_fail_at >= 0 && alloc_count++ == alloc_fail_at)
		return NULL;
	p = sodium_malloc(n);
	if (p) {
		secret_live++;
		secret_made++;
	}
	return p;
}

static void hook_sodium_free(void *p)
{
	if (p)
		secret_live--;
	sodium_free(p);
}

/* read(): |read_eintr| calls fail with EINTR first, then at most |read_max|
 * bytes a call (0: no limit); |read_fail| makes the next call fail with it;
 * |read_hook| runs once before the first call (to change the file). */
static int read_eintr, read_max, read_fail, open_eintr;
static void (*read_hook)(void);

static ssize_t hook_read(int fd, void *buf, size_t n)
{
	if (read_hook) {
		void (*h)(void) = read_hook;
		read_hook = NULL;
		h();
	}
	if (read_eintr > 0) {
		read_eintr--;
		errno = EINTR;
		return -1;
	}
	if (read_fail) {
		errno = read_fail;
		read_fail = 0;
		return -1;
	}
	if (read_max > 0 && n > (size_t)read_max)
		n = (size_t)read_max;
	return read(fd, buf, n);
}

static int hook_open(const char *path, int flags)
{
	if (open_eintr > 0) {
		open_eintr--;
		errno = EINTR;
		return -1;
	}
	return open(path, flags);
}

#define malloc(n) hook_malloc(n)
#define sodium_malloc(n) hook_sodium_malloc(n)
#define sodium_free(p) hook_sodium_free(p)
#define read(fd, b, n) hook_read(fd, b, n)
#define open(p, f) hook_open(p, f)
#include "../../common/keyfile.c"
#undef malloc
#undef sodium_malloc
#undef sodium_free
#undef read
#undef open

static char dir[] = "/tmp/np-keyfile-XXXXXX";

static const char *path(const char *name)
{
	static char p[256];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return p;
}

/* Writes |len| bytes of |text| to |name| with |mode|; returns the path. */
static const char *mkfile(const char *name, const char *text, size_t len, mode_t mode)
{
	const char *p = path(name);
	int fd;

	unlink(p);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len || fchmod(fd, mode) < 0)
		printf("#   cannot write %s\n", p);
	if (fd >= 0)
		close(fd);
	return p;
}

static void reset_hooks(void)
{
	alloc_fail_at = -1;
	alloc_count = 0;
	read_eintr = read_max = read_fail = open_eintr = 0;
	read_hook = NULL;
}

/* ---- tests ----------------------------------------------------------- */

static void test_reads_whole_file(void)
{
	char err[512] = "";
	char *buf = (char *)1;
	size_t len = 99;
	long made = secret_made;
	const char *p = mkfile("pub", "hello\n", 6, 0644);

	CHECK(keyfile_read(p, 0, 4096, &buf, &len, err, sizeof(err)) == 0);
	CHECK(len == 6 && buf && memcmp(buf, "hello\n", 7) == 0); /* NUL included */
	CHECK(secret_made == made); /* a public file is plain malloc'd */
	keyfile_free(buf, 0);

	p = mkfile("sec", "secret", 6, 0600);
	CHECK(keyfile_read(p, KEYFILE_SECRET, 4096, &buf, &len, err, sizeof(err)) == 0);
	CHECK(len == 6 && buf && strcmp(buf, "secret") == 0);
	CHECK(secret_made == made + 1 && secret_live == 1); /* in sodium_malloc memory */
	keyfile_free(buf, KEYFILE_SECRET);
	CHECK(secret_live == 0);

	/* 0400 is fine too: only group and other bits matter. */
	CHECK(chmod(p, 0400) == 0);
	CHECK(keyfile_read(p, KEYFILE_SECRET, 4096, &buf, &len, err, sizeof(err)) == 0);
	keyfile_free(buf, KEYFILE_SECRET);
	CHECK(secret_live == 0);

	keyfile_free(NULL, 0);
	keyfile_free(NULL, KEYFILE_SECRET);
}

static void test_missing_and_no_path(void)
{
	char err[512] = "", want[600];
	char *buf = (char *)1;
	size_t len = 99;
	const char *p = path("nonexistent");

	CHECK(keyfile_read(p, KEYFILE_SECRET, 4096, &buf, &len, err, sizeof(err)) == -ENOENT);
	snprintf(want, sizeof(want), "%s: cannot open: %s", p, strerror(ENOENT));
	CHECK_STR(err, want);
	CHECK(buf == NULL && len == 0);
	CHECK(keyfile_read("", 0, 4096, &buf, &len, err, sizeof(err)) == -EINVAL);
	CHECK_STR(err, "no key file given");
	CHECK(keyfile_read(NULL, 0, 4096, &buf, &len, err, sizeof(err)) == -EINVAL);
	CHECK(keyfile_read(p, 0, 4096, &buf, &len, NULL, 0) == -ENOENT); /* no err buffer */
}

static void test_not_regular(void)
{
	char err[512] = "", want[600];
	char *buf = (char *)1;
	size_t len = 99;
	const char *p = path("adir");

	CHECK(mkdir(p, 0700) == 0);
	CHECK(keyfile_read(p, KEYFILE_SECRET, 4096, &buf, &len, err, sizeof(err)) == -EINVAL);
	snprintf(want, sizeof(want),
		 "%s: a directory, not a regular file; give the path of the file itself", p);
	CHECK_STR(err, want);
	CHECK(buf == NULL);
	CHECK(keyfile_read(p, 0, 4096, &buf, &len, err, sizeof(err)) == -EINVAL);

	/* A FIFO without a writer: opening it for reading must not block (the
	 * alarm kills the test if it does). */
	p = path("afifo");
	CHECK(mkfifo(p, 0600) == 0);
	alarm(5);
	CHECK(keyfile_read(p, KEYFILE_SECRET, 4096, &buf, &len, err, sizeof(err)) == -EINVAL);
	snprintf(want, sizeof(want),
		 "%s: a FIFO, not a regular file; give the path of the file itself", p);
	CHECK_STR(err, want);
	CHECK(keyfile_read(p, 0, 4096, &buf, &len, err, sizeof(err)) == -EINVAL);
	alarm(0);

	/* A device. */
	CHECK(keyfile_read("/dev/null", 0, 4096, &buf, &len, err, sizeof(err)) == -EINVAL);
	CHECK_STR(err, "/dev/null: a device, not a regular file; give the path of the file itself");
	CHECK(buf == NULL && secret_live == 0);
}

static void test_size_bounds(void)
{
	char err[512] = "", want[600];
	char *buf = (char *)1;
	size_t len = 99;
	char big[65];
	const char *p = mkfile("empty", "", 0, 0600);

	CHECK(keyfile_read(p, KEYFILE_SECRET, 64, &buf, &len, err, sizeof(err)) == -ENODATA);
	snprintf(want, sizeof(want), "%s: the file is empty; is this the right file?", p);
	CHECK_STR(err, want);
	CHECK(keyfile_read(p, 0, 64, &buf, &len, err, sizeof(err)) == -ENODATA);
	CHECK(buf == NULL);

	/* 1 byte: the smallest accepted. */
	p = mkfile("one", "x", 1, 0600);
	CHECK(keyfile_read(p, KEYFILE_SECRET, 64, &buf, &len, err, sizeof(err)) == 0);
	CHECK(len == 1 && buf && strcmp(buf, "x") == 0);
	keyfile_free(buf, KEYFILE_SECRET);

	/* |max| accepted, |max| + 1 refused. */
	memset(big, 'k', sizeof(big));
	p = mkfile("max", big, 64, 0600);
	CHECK(keyfile_read(p, KEYFILE_SECRET, 64, &buf, &len, err, sizeof(err)) == 0);
	CHECK(len == 64 && buf && buf[64] == '\0');
	keyfile_free(buf, KEYFILE_SECRET);
	CHECK(keyfile_read(p, 0, 64, &buf, &len, err, sizeof(err)) == 0 && len == 64);
	keyfile_free(buf, 0);
	p = mkfile("over", big, 65, 0600);
	CHECK(keyfile_read(p, KEYFILE_SECRET, 64, &buf, &len, err, sizeof(err)) == -EFBIG);
	snprintf(want, sizeof(want), "%s: 65 bytes, more than the 64 allowed; is this the right file?", p);
	CHECK_STR(err, want);
	CHECK(keyfile_read(p, 0, 64, &buf, &len, err, sizeof(err)) == -EFBIG);
	CHECK(buf == NULL && secret_live == 0);
}

static void test_secrecy_modes(void)
{
	static const mode_t bad[] = { 0640, 0604, 0644, 0610, 0601, 0620, 0602, 0660, 0666, 0700 | 070 };
	char err[512] = "", want[600];
	char *buf = (char *)1;
	size_t len = 99;
	const char *p = mkfile("loose", "secret\n", 7, 0600);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(chmod(p, bad[i]) == 0);
		err[0] = '\0';
		CHECK(keyfile_read(p, KEYFILE_SECRET, 4096, &buf, &len, err, sizeof(err)) == -EPERM);
		snprintf(want, sizeof(want),
			 "%s: secret key file is accessible by group or others (mode %04o); "
			 "run: chmod 600 '%s'", p, (unsigned)bad[i], p);
		CHECK_STR(err, want);
		CHECK(buf == NULL && len == 0);
		/* Not a secret: the same file is read. */
		CHECK(keyfile_read(p, 0, 4096, &buf, &len, err, sizeof(err)) == 0 && len == 7);
		keyfile_free(buf, 0);
	}
	/* The check comes before the size: an empty secret with mode 0644
	 * is refused for its mode (the fix that matters). */
	p = mkfile("loose-empty", "", 0, 0644);
	CHECK(keyfile_read(p, KEYFILE_SECRET, 4096, &buf, &len, err, sizeof(err)) == -EPERM);
	CHECK(secret_live == 0);
}

static void test_owner(void)
{
	char err[512] = "", want[600];
	char *buf = (char *)1;
	size_t len = 99;
	const char *p = mkfile("foreign", "secret\n", 7, 0600);
	unsigned euid = (unsigned)geteuid();
	uid_t other = euid == 4242 ? 4343 : 4242;

	if (chown(p, other, (gid_t)-1) != 0) {
		printf("# skipped: cannot chown to another uid (%s); run as root\n", strerror(errno));
		return;
	}
	CHECK(keyfile_read(p, KEYFILE_SECRET, 4096, &buf, &len, err, sizeof(err)) == -EPERM);
	snprintf(want, sizeof(want),
		 "%s: secret key file is owned by uid %u, not by this user (uid %u) or root; "
		 "run: chown %u '%s'", p, (unsigned)other, euid, euid, p);
	CHECK_STR(err, want);
	CHECK(buf == NULL);
	/* Not a secret: anyone's file is read. */
	CHECK(keyfile_read(p, 0, 4096, &buf, &len, err, sizeof(err)) == 0 && len == 7);
	keyfile_free(buf, 0);
	/* Owned by the user the process will drop to: accepted when named. */
	CHECK(keyfile_read_for(p, KEYFILE_SECRET, other, 4096, &buf, &len, err, sizeof(err)) == 0);
	keyfile_free(buf, KEYFILE_SECRET);
	CHECK(keyfile_read_for(p, KEYFILE_SECRET, other + 1, 4096, &buf, &len, err, sizeof(err)) ==
	      -EPERM);
	snprintf(want, sizeof(want),
		 "%s: secret key file is owned by uid %u, not by this user (uid %u), root or the "
		 "service user (uid %u); run: chown %u '%s'", p, (unsigned)other, euid,
		 (unsigned)other + 1, (unsigned)other + 1, p);
	CHECK_STR(err, want);
	CHECK(keyfile_read_for(p, KEYFILE_SECRET, (uid_t)-1, 4096, &buf, &len, err, sizeof(err)) ==
	      -EPERM);
	/* Owned by root: accepted whoever runs it. */
	if (chown(p, 0, (gid_t)-1) == 0) {
		CHECK(keyfile_read(p, KEYFILE_SECRET, 4096, &buf, &len, err, sizeof(err)) == 0);
		keyfile_free(buf, KEYFILE_SECRET);
	}
	CHECK(secret_live == 0);
}

static void test_eintr_and_short_reads(void)
{
	char err[512] = "";
	char *buf = NULL;
	size_t len = 0;
	const char *p = mkfile("slow", "0123456789abcdef", 16, 0600);

	reset_hooks();
	open_eintr = 2;
	read_eintr = 3;
	read_max = 1;
	CHECK(keyfile_read(p, KEYFILE_SECRET, 4096, &buf, &len, err, sizeof(err)) == 0);
	CHECK(len == 16 && buf && strcmp(buf, "0123456789abcdef") == 0);
	CHECK(open_eintr == 0 && read_eintr == 0);
	keyfile_free(buf, KEYFILE_SECRET);
	reset_hooks();
}

static void test_read_error(void)
{
	char err[512] = "", want[600];
	char *buf = (char *)1;
	size_t len = 99;
	const char *p = mkfile("eio", "0123456789", 10, 0600);

	reset_hooks();
	read_fail = EIO;
	CHECK(keyfile_read(p, KEYFILE_SECRET, 4096, &buf, &len, err, sizeof(err)) == -EIO);
	snprintf(want, sizeof(want), "%s: cannot read: %s", p, strerror(EIO));
	CHECK_STR(err, want);
	CHECK(buf == NULL && secret_live == 0);
	reset_hooks();
}

static void grow(void)
{
	int fd = open(path("moving"), O_WRONLY | O_APPEND | O_CLOEXEC);

	if (fd < 0 || write(fd, "more", 4) != 4)
		printf("#   cannot grow the file\n");
	if (fd >= 0)
		close(fd);
}

static void shrink(void)
{
	if (truncate(path("moving"), 3) != 0)
		printf("#   cannot shrink the file\n");
}

static void test_changes_while_read(void)
{
	char err[512] = "", want[600];
	char *buf = (char *)1;
	size_t len = 99;
	const char *p = mkfile("moving", "0123456789", 10, 0600);

	reset_hooks();
	read_hook = grow;
	CHECK(keyfile_read(p, KEYFILE_SECRET, 4096, &buf, &len, err, sizeof(err)) == -EAGAIN);
	snprintf(want, sizeof(want), "%s: the file changed while it was read (11 bytes, expected 10); "
		 "try again once it is written", p);
	CHECK_STR(err, want);
	CHECK(buf == NULL);

	p = mkfile("moving", "0123456789", 10, 0600);
	read_hook = shrink;
	CHECK(keyfile_read(p, 0, 4096, &buf, &len, err, sizeof(err)) == -EAGAIN);
	CHECK_CONTAINS(err, "(3 bytes, expected 10)");
	CHECK(buf == NULL && secret_live == 0);
	reset_hooks();
}

/* Fail the k-th allocation for k = 0, 1, ... until a run fails none. */
static void test_allocation_failures(void)
{
	static const int flags[] = { 0, KEYFILE_SECRET };
	const char *p = mkfile("alloc", "key\n", 4, 0600);

	for (size_t f = 0; f < 2; f++) {
		long k;

		for (k = 0; k < 10; k++) {
			char err[512] = "", want[600];
			char *buf = (char *)1;
			size_t len = 99;
			int rc;

			reset_hooks();
			alloc_fail_at = k;
			rc = keyfile_read(p, flags[f], 4096, &buf, &len, err, sizeof(err));
			if (alloc_count <= k) { /* nothing failed: done */
				CHECK(rc == 0 && len == 4);
				keyfile_free(buf, flags[f]);
				break;
			}
			CHECK(rc == -ENOMEM);
			snprintf(want, sizeof(want), "%s: out of memory", p);
			CHECK_STR(err, want);
			CHECK(buf == NULL && len == 0);
		}
		CHECK(k == 1); /* one allocation a read */
	}
	reset_hooks();
	CHECK(secret_live == 0);
}

int main(void)
{
	if (sodium_init() < 0 || !mkdtemp(dir)) {
		printf("not ok - test_keyfile: setup\n");
		return 1;
	}
	umask(022);
	RUN(test_reads_whole_file);
	RUN(test_missing_and_no_path);
	RUN(test_not_regular);
	RUN(test_size_bounds);
	RUN(test_secrecy_modes);
	RUN(test_owner);
	RUN(test_eintr_and_short_reads);
	RUN(test_read_error);
	RUN(test_changes_while_read);
	RUN(test_allocation_failures);
	if (fork() == 0) {
		execlp("rm", "rm", "-rf", dir, (char *)NULL);
		_exit(127);
	}
	wait(NULL);
	return check_total_failed ? 1 : 0;
}
