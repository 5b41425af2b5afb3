/*
 * Unit tests for the hub's box keys (crypto/boxkey.c): the files keygen
 * --box writes, that they seal and open, refusal to overwrite, secrecy and
 * format checks at their edges, the CLI, and every allocation failing in
 * turn.
 */
#define CHECK_FILE "test_boxkey"
#include "check.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <sodium.h>

static long alloc_fail_at = -1; /* fail the allocation with this index; -1: never */
static long alloc_count;
static long alloc_live;

static void *hook_sodium_malloc(size_t n)
{
	void *p;

	if (alloc_fail_at >= 0 && alloc_count++ == alloc_fail_at)
		return NULL;
	p = sodium_malloc(n);
	if (p)
		alloc_live++;
	return p;
}

static void hook_sodium_free(void *p)
{
	if (p)
		alloc_live--;
	sodium_free(p);
}

#define sodium_malloc(n) hook_sodium_malloc(n)
#define sodium_free(p) hook_sodium_free(p)

#include "../../crypto/boxkey.c"
/* Included too, so that the key file's buffer counts among the hooked
 * allocations (the archive's copy is then not linked). */
#include "../../common/keyfile.c"
#include "../../cli/cli.h"

static char dir[] = "/tmp/np-boxkey-XXXXXX";

static char *path(const char *name)
{
	static char buf[4][256];
	static int next;
	char *p = buf[next++ % 4];

	snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
	return p;
}

static int is_lower_hex_line(const char *file)
{
	char buf[80];
	FILE *f = fopen(file, "rb");
	size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;

	if (f)
		fclose(f);
	if (n != 65 || buf[64] != '\n')
		return 0;
	for (size_t i = 0; i < 64; i++)
		if (!((buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'a' && buf[i] <= 'f')))
			return 0;
	return 1;
}

static void test_generate_seal_open(void)
{
	unsigned char pk[32], pk2[32], *sk = sodium_malloc(32);
	unsigned char msg[] = "NPT1 records", sealed[sizeof(msg) + crypto_box_SEALBYTES],
		      opened[sizeof(msg)];
	char err[256] = "";
	struct stat st;

	CHECK(pseudo_box_generate(path("hub"), err, sizeof(err)) == 0);
	CHECK(stat(path("hub.sec"), &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK(stat(path("hub.pub"), &st) == 0 && (st.st_mode & 0777) == 0644);
	CHECK(is_lower_hex_line(path("hub.sec")));
	CHECK(is_lower_hex_line(path("hub.pub")));
	CHECK(pseudo_box_read_pub(path("hub.pub"), pk, err, sizeof(err)) == 0);
	CHECK(pseudo_box_read_sec(path("hub.sec"), sk, err, sizeof(err)) == 0);
	/* the pair belongs together */
	CHECK(crypto_scalarmult_base(pk2, sk) == 0 && sodium_memcmp(pk, pk2, 32) == 0);
	CHECK(crypto_box_seal(sealed, msg, sizeof(msg), pk) == 0);
	CHECK(crypto_box_seal_open(opened, sealed, sizeof(sealed), pk, sk) == 0);
	CHECK(memcmp(opened, msg, sizeof(msg)) == 0);
	sodium_free(sk);
}

static void test_never_overwrites(void)
{
	char err[256] = "", before[80] = "", after[80] = "";
	FILE *f;
	struct stat st;

	f = fopen(path("hub.sec"), "rb");
	if (f) {
		CHECK(fread(before, 1, sizeof(before) - 1, f) == 65);
		fclose(f);
	}
	CHECK(pseudo_box_generate(path("hub"), err, sizeof(err)) == PSEUDO_ERR_EXISTS);
	CHECK_CONTAINS(err, "never overwritten");
	f = fopen(path("hub.sec"), "rb");
	if (f) {
		CHECK(fread(after, 1, sizeof(after) - 1, f) == 65);
		fclose(f);
	}
	CHECK_STR(before, after);
	/* only the .pub exists: refused before a .sec is made */
	free(check_write(dir, "lonely.pub", "x\n"));
	CHECK(pseudo_box_generate(path("lonely"), err, sizeof(err)) == PSEUDO_ERR_EXISTS);
	CHECK(stat(path("lonely.sec"), &st) != 0);
	/* only the .sec exists */
	free(check_write(dir, "half.sec", "x\n"));
	CHECK(pseudo_box_generate(path("half"), err, sizeof(err)) == PSEUDO_ERR_EXISTS);
	CHECK(stat(path("half.pub"), &st) != 0);
	CHECK(pseudo_box_generate("", err, sizeof(err)) == PSEUDO_ERR_ARG);
	CHECK(pseudo_box_generate(path("no/such/dir/k"), err, sizeof(err)) == PSEUDO_ERR_IO);
}

static void test_secrecy(void)
{
	static const mode_t bad[] = { 0640, 0604, 0620, 0602, 0610, 0601, 0660 };
	unsigned char *sk = sodium_malloc(32), pk[32];
	char err[256] = "";

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		chmod(path("hub.sec"), bad[i]);
		memset(sk, 0xaa, 32);
		CHECK(pseudo_box_read_sec(path("hub.sec"), sk, err, sizeof(err)) == PSEUDO_ERR_INSECURE);
		CHECK(sodium_is_zero(sk, 32));
	}
	CHECK_CONTAINS(err, "hub.sec: secret key file is accessible by group or others (mode 0660); "
			    "run: chmod 600 '");
	chmod(path("hub.sec"), 0400);
	CHECK(pseudo_box_read_sec(path("hub.sec"), sk, err, sizeof(err)) == 0);
	chmod(path("hub.sec"), 0600);
	/* a public key file may be world-readable */
	CHECK(pseudo_box_read_pub(path("hub.pub"), pk, err, sizeof(err)) == 0);
	CHECK(pseudo_box_read_sec(dir, sk, err, sizeof(err)) == PSEUDO_ERR_INSECURE); /* a folder */
	CHECK(pseudo_box_read_sec(path("missing.sec"), sk, err, sizeof(err)) == PSEUDO_ERR_IO);
	CHECK(pseudo_box_read_sec(NULL, sk, err, sizeof(err)) == PSEUDO_ERR_ARG);
	sodium_free(sk);
}

static void test_format_edges(void)
{
	static const char hex64[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
	static const struct { const char *text; int rc; } cases[] = {
		{ "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", 0 },
		{ "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 0 },
		{ "00112233445566778899aabbccddeeff00112233445566778899aabbccddeef\n", PSEUDO_ERR_FORMAT },
		{ "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0\n", PSEUDO_ERR_FORMAT },
		{ "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n\n", PSEUDO_ERR_FORMAT },
		{ "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\r\n", PSEUDO_ERR_FORMAT },
		{ "00112233445566778899aabbccddeeff00112233445566778899aabbccddeefg\n", PSEUDO_ERR_FORMAT },
		{ " 0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", PSEUDO_ERR_FORMAT },
		{ "", PSEUDO_ERR_FORMAT },
	};
	unsigned char *sk = sodium_malloc(32), pk[32];
	char err[256] = "";

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *p = check_write(dir, "edge.key", cases[i].text);

		chmod(p, 0600);
		CHECK(pseudo_box_read_pub(p, pk, err, sizeof(err)) == cases[i].rc);
		CHECK(pseudo_box_read_sec(p, sk, err, sizeof(err)) == cases[i].rc);
		if (cases[i].rc == 0) {
			char hex[65];

			sodium_bin2hex(hex, sizeof(hex), sk, 32);
			CHECK_STR(hex, hex64);
		} else {
			CHECK_CONTAINS(err, cases[i].text[0] ? "expected one line of 64 hex digits"
							      : "edge.key: the file is empty");
		}
		unlink(p);
		free(p);
	}
	sodium_free(sk);
}

static void test_allocation_failures(void)
{
	unsigned char *sk = sodium_malloc(32);
	long live = alloc_live;
	char err[256] = "";
	struct stat st;
	int rc;

	for (long i = 0;; i++) {
		alloc_fail_at = i;
		alloc_count = 0;
		rc = pseudo_box_generate(path("oom"), err, sizeof(err));
		alloc_fail_at = -1;
		CHECK(alloc_live == live);
		if (rc == 0)
			break;
		CHECK(rc == PSEUDO_ERR_NOMEM);
		CHECK(stat(path("oom.sec"), &st) != 0 && stat(path("oom.pub"), &st) != 0);
		if (i > 10) {
			CHECK(!"generate never succeeded");
			break;
		}
	}
	for (long i = 0;; i++) {
		alloc_fail_at = i;
		alloc_count = 0;
		rc = pseudo_box_read_sec(path("oom.sec"), sk, err, sizeof(err));
		alloc_fail_at = -1;
		CHECK(alloc_live == live);
		if (rc == 0)
			break;
		CHECK(rc == PSEUDO_ERR_NOMEM);
		CHECK_CONTAINS(err, "oom.sec: out of memory");
		if (i > 10) {
			CHECK(!"read_sec never succeeded");
			break;
		}
	}
	sodium_free(sk);
}

static int cli(int argc, char **argv)
{
	int null = open("/dev/null", O_WRONLY), o = dup(1), e = dup(2), rc;

	fflush(stdout);
	fflush(stderr);
	dup2(null, 1);
	dup2(null, 2);
	rc = pseudo_boxkey_cli(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(o, 1);
	dup2(e, 2);
	close(o);
	close(e);
	close(null);
	return rc;
}

static void test_cli(void)
{
	char *help[] = { "keygen", "--box", "--help" };
	char *nobox[] = { "keygen", "--out", path("c") };
	char *noout[] = { "keygen", "--box" };
	char *dangling[] = { "keygen", "--box", "--out" };
	char *extra[] = { "keygen", "--box", "--out", path("c"), "--sign" };
	char *twice[] = { "keygen", "--box", "-o", path("c"), "--out=x" };
	char *ok[] = { "keygen", "--box", "--out", path("c") };
	char *okeq[] = { "keygen", "--out=", "--box" };
	struct stat st;

	CHECK(cli(3, help) == 0);
	CHECK(cli(3, nobox) == 2);
	CHECK(cli(2, noout) == 2);
	CHECK(cli(3, dangling) == 2);
	CHECK(cli(5, extra) == 2);
	CHECK(cli(5, twice) == 2);
	CHECK(cli(3, okeq) == 2); /* empty prefix */
	CHECK(stat(path("c.sec"), &st) != 0);
	CHECK(cli(4, ok) == 0);
	CHECK(stat(path("c.sec"), &st) == 0 && stat(path("c.pub"), &st) == 0);
	CHECK(cli(4, ok) == 1); /* exists */
}

int main(void)
{
	if (sodium_init() < 0 || !mkdtemp(dir)) {
		printf("not ok - test_boxkey: setup\n");
		return 1;
	}
	RUN(test_generate_seal_open);
	RUN(test_never_overwrites);
	RUN(test_secrecy);
	RUN(test_format_edges);
	RUN(test_allocation_failures);
	RUN(test_cli);
	if (fork() == 0) {
		execlp("rm", "rm", "-rf", dir, (char *)NULL);
		_exit(127);
	}
	wait(NULL);
	return check_total_failed ? 1 : 0;
}
