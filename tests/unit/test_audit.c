/* Unit tests for audit/audit.c and cli/audit_cli.c. */
#define CHECK_FILE "test_audit"
#include "check.h"
#include "../../audit/audit.c"
#include "../../cli/audit_cli.c"
#include "../../crypto/pseudo.c"

#include <ctype.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>

static char dir[] = "/tmp/np-audit-XXXXXX";
static unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
static char *sec_path, *pub_path, *other_pub_path;

static const char subj_a[] = "3fa1c0de3fa1c0de3fa1c0de3fa1c0de3fa1c0de3fa1c0de3fa1c0de3fa1c0de";
static const char subj_b[] = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";

static char *path_in(const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	snprintf(p, n, "%s/%s", dir, name);
	unlink(p);
	return p;
}

static cJSON *fields(int i, const char *subject)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *ds = cJSON_AddArrayToObject(o, "datasets");
	cJSON *counts = cJSON_AddObjectToObject(o, "counts");
	char req[32];

	snprintf(req, sizeof(req), "gemeente-%d", i % 3);
	cJSON_AddStringToObject(o, "processing_activity", "va-reintegratie");
	cJSON_AddStringToObject(o, "purpose", "re-integratie");
	cJSON_AddStringToObject(o, "legal_basis", "Participatiewet art. 7");
	cJSON_AddStringToObject(o, "requester", req);
	cJSON_AddItemToArray(ds, cJSON_CreateString("uwv/ww-uitkeringen"));
	cJSON_AddStringToObject(o, "decision", i % 4 ? "permit" : "deny");
	cJSON_AddStringToObject(o, "rule", "grant-3");
	cJSON_AddStringToObject(o, "reason", "granted by uwv/lookup.yaml");
	cJSON_AddStringToObject(o, "policy_hash", "9f86d081884c7d65");
	cJSON_AddNumberToObject(counts, "rows", 1);
	cJSON_AddNumberToObject(o, "epsilon", 0.5);
	if (subject)
		cJSON_AddStringToObject(o, "subject", subject);
	return o;
}

/* Appends records i0..i1-1; returns how many succeeded. */
static int append_n(struct audit_log *log, int i0, int i1, const char *subject)
{
	int ok = 0;

	for (int i = i0; i < i1; i++) {
		cJSON *f = fields(i, subject);
		char id[33];
		if (audit_append(log, f, id) == 0 && strlen(id) == 32)
			ok++;
		cJSON_Delete(f);
	}
	return ok;
}

static struct audit_log *open_log(const char *p, const char *key, const struct audit_options *o)
{
	struct audit_log *log = NULL;
	char err[256] = "";
	int rc = audit_open(p, key, o, &log, err, sizeof(err));

	if (rc != 0)
		printf("#   audit_open: %s\n", err);
	return log;
}

static char *slurp(const char *p, size_t *len)
{
	FILE *f = fopen(p, "rb");
	char *b;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	b = malloc((size_t)n + 1);
	if (fread(b, 1, (size_t)n, f) != (size_t)n)
		n = 0;
	b[n] = '\0';
	fclose(f);
	if (len)
		*len = (size_t)n;
	return b;
}

static void spit(const char *p, const char *b, size_t n)
{
	FILE *f = fopen(p, "wb");

	if (f) {
		fwrite(b, 1, n, f);
		fclose(f);
	}
}

/* Splits the file into lines (each keeps its '\n'); returns the count. */
static int lines_of(const char *p, char ***out)
{
	size_t len;
	char *b = slurp(p, &len), *s = b;
	char **v = NULL;
	int n = 0;

	while (s && s < b + len) {
		char *e = memchr(s, '\n', (size_t)(b + len - s));
		size_t l = e ? (size_t)(e - s + 1) : (size_t)(b + len - s);
		v = realloc(v, sizeof(*v) * (size_t)(n + 1));
		v[n] = strndup(s, l);
		n++;
		s += l;
	}
	free(b);
	*out = v;
	return n;
}

static void write_lines(const char *p, char **v, int n)
{
	FILE *f = fopen(p, "wb");

	for (int i = 0; i < n; i++)
		if (v[i])
			fputs(v[i], f);
	fclose(f);
}

static void free_lines(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Writes |n| records to a fresh file |name| without signing. */
static char *fresh_log(const char *name, int n)
{
	char *p = path_in(name);
	struct audit_log *log = open_log(p, NULL, NULL);

	CHECK(log != NULL);
	if (log) {
		CHECK(append_n(log, 0, n, subj_a) == n);
		CHECK(audit_close(log) == 0);
	}
	return p;
}

/* Runs the CLI with stdout and stderr captured into |out|. */
static int run_cli(char *out, size_t outlen, int argc, ...)
{
	char *argv[16];
	char *cap = path_in("cli.out");
	va_list ap;
	int so, se, fd, rc;
	size_t n;
	char *b;

	va_start(ap, argc);
	for (int i = 0; i < argc && i < 15; i++)
		argv[i] = va_arg(ap, char *);
	va_end(ap);
	argv[argc] = NULL;
	fflush(stdout);
	fflush(stderr);
	so = dup(1);
	se = dup(2);
	fd = open(cap, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 1);
	dup2(fd, 2);
	close(fd);
	rc = audit_cli(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(so, 1);
	dup2(se, 2);
	close(so);
	close(se);
	b = slurp(cap, &n);
	snprintf(out, outlen, "%s", b ? b : "");
	free(b);
	free(cap);
	return rc;
}

/* ---- tests ----------------------------------------------------------- */

static void chain_intact_after_appends_and_reopen(void)
{
	char *p = fresh_log("a.log", 20);
	struct audit_report r;
	struct audit_log *log;
	char **v;
	int n;

	CHECK(audit_verify(p, NULL, &r) == 0);
	CHECK(r.records == 20 && r.lines == 20 && r.first_bad_line == 0);
	log = open_log(p, NULL, NULL);
	CHECK(log != NULL);
	if (log) {
		CHECK(append_n(log, 20, 30, subj_b) == 10);
		CHECK(audit_close(log) == 0);
	}
	CHECK(audit_verify(p, NULL, &r) == 0);
	CHECK(r.records == 30);
	n = lines_of(p, &v);
	CHECK(n == 30);
	if (n == 30) {
		CHECK(strncmp(v[0], "{\"seq\":1,\"time\":\"", 17) == 0);
		CHECK_CONTAINS(v[0], "\"prev\":\"0000000000000000000000000000000000000000000000000000000000000000\"");
		CHECK(strncmp(v[29], "{\"seq\":30,", 10) == 0);
		CHECK_CONTAINS(v[20], "\"subject\":\"b0b0");
	}
	free_lines(v, n);
	{
		struct stat st;
		CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0640);
	}
	free(p);
}

static void altered_line_is_named(void)
{
	struct audit_report r;
	char **v;
	int n;
	char *p = fresh_log("b.log", 12);
	char *orig = slurp(p, NULL);
	char *q;

	/* A byte in a value of line 5. */
	n = lines_of(p, &v);
	q = strstr(v[4], "re-integratie");
	q[0] = 'R';
	write_lines(p, v, n);
	CHECK(audit_verify(p, NULL, &r) == -EBADMSG);
	CHECK(r.first_bad_line == 5);
	CHECK_CONTAINS(r.problem, "line 5: altered");
	free_lines(v, n);

	/* A byte of line 5's own "prev". */
	spit(p, orig, strlen(orig));
	n = lines_of(p, &v);
	q = strstr(v[4], "\"prev\":\"") + 8;
	q[3] = q[3] == 'a' ? 'b' : 'a';
	write_lines(p, v, n);
	CHECK(audit_verify(p, NULL, &r) == -EBADMSG);
	CHECK(r.first_bad_line == 5);
	CHECK_CONTAINS(r.problem, "line 5: altered");
	free_lines(v, n);

	/* Its seq. */
	spit(p, orig, strlen(orig));
	n = lines_of(p, &v);
	v[4][7] = '7';
	write_lines(p, v, n);
	CHECK(audit_verify(p, NULL, &r) == -EBADMSG);
	CHECK(r.first_bad_line == 5);
	CHECK_CONTAINS(r.problem, "line 5: altered: its seq");
	free_lines(v, n);

	/* A quote, so the line is no longer JSON. */
	spit(p, orig, strlen(orig));
	n = lines_of(p, &v);
	q = strstr(v[4], "\"decision\"");
	q[0] = 'x';
	write_lines(p, v, n);
	CHECK(audit_verify(p, NULL, &r) == -EBADMSG);
	CHECK(r.first_bad_line == 5);
	CHECK_CONTAINS(r.problem, "line 5: not an audit record");
	free_lines(v, n);

	/* The line before the last: the evidence cannot tell which of two. */
	spit(p, orig, strlen(orig));
	n = lines_of(p, &v);
	q = strstr(v[10], "grant-3");
	q[6] = '4';
	write_lines(p, v, n);
	CHECK(audit_verify(p, NULL, &r) == -EBADMSG);
	CHECK(r.first_bad_line == 11);
	CHECK_CONTAINS(r.problem, "line 11 or line 12 was altered");
	free_lines(v, n);
	free(orig);
	free(p);
}

static void removed_inserted_swapped_lines_are_named(void)
{
	struct audit_report r;
	char **v;
	char *keep, *q;
	int n;
	char *p = fresh_log("c.log", 12);
	char *orig = slurp(p, NULL);

	n = lines_of(p, &v); /* remove line 4 */
	free(v[3]);
	v[3] = NULL;
	write_lines(p, v, n);
	CHECK(audit_verify(p, NULL, &r) == -EBADMSG);
	CHECK(r.first_bad_line == 4);
	CHECK_CONTAINS(r.problem, "line 4: chain broken: the record with seq 4 before it was removed");
	free_lines(v, n);

	spit(p, orig, strlen(orig)); /* remove lines 4-6 */
	n = lines_of(p, &v);
	for (int i = 3; i < 6; i++) {
		free(v[i]);
		v[i] = NULL;
	}
	write_lines(p, v, n);
	CHECK(audit_verify(p, NULL, &r) == -EBADMSG);
	CHECK_CONTAINS(r.problem, "line 4: chain broken: 3 records (seq 4 to 6)");
	free_lines(v, n);

	spit(p, orig, strlen(orig)); /* remove line 1 */
	n = lines_of(p, &v);
	free(v[0]);
	v[0] = NULL;
	write_lines(p, v, n);
	CHECK(audit_verify(p, NULL, &r) == -EBADMSG);
	CHECK(r.first_bad_line == 1);
	free_lines(v, n);

	spit(p, orig, strlen(orig)); /* insert a copy of line 2 after line 6 */
	n = lines_of(p, &v);
	v = realloc(v, sizeof(*v) * (size_t)(n + 1));
	memmove(v + 7, v + 6, sizeof(*v) * (size_t)(n - 6));
	v[6] = strdup(v[1]);
	n++;
	write_lines(p, v, n);
	CHECK(audit_verify(p, NULL, &r) == -EBADMSG);
	CHECK(r.first_bad_line == 7);
	CHECK_CONTAINS(r.problem, "line 7: inserted: its seq 2 repeats or goes back (after seq 6); "
				  "the chain continues past it");
	free_lines(v, n);

	spit(p, orig, strlen(orig)); /* insert a forged line with the expected seq */
	n = lines_of(p, &v);
	v = realloc(v, sizeof(*v) * (size_t)(n + 1));
	memmove(v + 7, v + 6, sizeof(*v) * (size_t)(n - 6));
	v[6] = strdup(v[6 + 1]); /* a copy of the next line: same seq 7 */
	v[6][strlen(v[6]) - 5] = 'f'; /* inside the subject */
	n++;
	write_lines(p, v, n);
	CHECK(audit_verify(p, NULL, &r) == -EBADMSG);
	CHECK(r.first_bad_line == 7);
	CHECK_CONTAINS(r.problem, "line 7: inserted: lines 7 and 8 both claim seq 7");
	q = strstr(v[6], "\"prev\":\"") + 8; /* ... and one that does not even chain */
	q[0] = q[0] == 'a' ? 'b' : 'a';
	write_lines(p, v, n);
	CHECK(audit_verify(p, NULL, &r) == -EBADMSG);
	CHECK(r.first_bad_line == 7);
	CHECK_CONTAINS(r.problem, "line 7: inserted: line 8 has the same seq 7");
	free_lines(v, n);

	spit(p, orig, strlen(orig)); /* swap lines 3 and 4 */
	n = lines_of(p, &v);
	keep = v[2];
	v[2] = v[3];
	v[3] = keep;
	write_lines(p, v, n);
	CHECK(audit_verify(p, NULL, &r) == -EBADMSG);
	CHECK(r.first_bad_line == 3);
	CHECK_CONTAINS(r.problem, "line 3: out of order: seq 4 comes before seq 3");
	free_lines(v, n);

	spit(p, orig, strlen(orig)); /* swap the last two */
	n = lines_of(p, &v);
	keep = v[10];
	v[10] = v[11];
	v[11] = keep;
	write_lines(p, v, n);
	CHECK(audit_verify(p, NULL, &r) == -EBADMSG);
	CHECK(r.first_bad_line == 11);
	CHECK_CONTAINS(r.problem, "out of order");
	free_lines(v, n);
	free(orig);
	free(p);
}

static void torn_tail_is_reported_then_recovered(void)
{
	struct audit_report r;
	struct audit_log *log;
	size_t len;
	char *p = fresh_log("d.log", 5);
	char *b = slurp(p, &len);
	char **v;
	int n;

	CHECK(truncate(p, (off_t)(len - 40)) == 0); /* cut line 5 */
	CHECK(audit_verify(p, NULL, &r) == -EBADMSG);
	CHECK(r.torn_tail == 1);
	CHECK(r.first_bad_line == 5);
	CHECK_CONTAINS(r.problem, "line 5: torn");
	log = open_log(p, NULL, NULL);
	CHECK(log != NULL);
	if (log) {
		CHECK(append_n(log, 5, 7, subj_a) == 2);
		CHECK(audit_close(log) == 0);
	}
	CHECK(audit_verify(p, NULL, &r) == 0);
	CHECK(r.recoveries == 1 && r.records == 6 && r.torn_tail == 0);
	CHECK_CONTAINS(r.warning, "line 5: torn line");
	CHECK_CONTAINS(r.warning, "recovered by line 6");
	n = lines_of(p, &v);
	CHECK(n == 8);
	if (n == 8) {
		CHECK(strncmp(v[5], "{\"seq\":5,", 9) == 0);
		CHECK_CONTAINS(v[5], "\"type\":\"recovery\"");
		CHECK(strncmp(v[6], "{\"seq\":6,", 9) == 0);
	}
	free_lines(v, n);
	{
		char out[2048];
		CHECK(run_cli(out, sizeof(out), 3, "audit", "verify", p) == 0);
		CHECK_CONTAINS(out, ": intact, 6 records, 0 checkpoints (signatures not checked)");
		CHECK_CONTAINS(out, "warning: line 5: torn line");
	}

	/* A file that is nothing but a torn line (a crash on the first write). */
	spit(p, b, 30);
	log = open_log(p, NULL, NULL);
	CHECK(log != NULL);
	if (log) {
		CHECK(append_n(log, 0, 1, subj_a) == 1);
		CHECK(audit_close(log) == 0);
	}
	CHECK(audit_verify(p, NULL, &r) == 0);
	CHECK(r.recoveries == 1 && r.records == 1 && r.lines == 3);

	/* A torn line that happens to be complete JSON: only the '\n' was lost. */
	spit(p, b, len - 1);
	log = open_log(p, NULL, NULL);
	CHECK(log != NULL);
	CHECK(audit_close(log) == 0);
	CHECK(audit_verify(p, NULL, &r) == 0);
	CHECK(r.recoveries == 1 && r.records == 4);
	free(b);
	free(p);
}

static void open_refuses_a_foreign_last_line_and_a_second_writer(void)
{
	char *p = fresh_log("e.log", 3);
	struct audit_log *log, *log2 = NULL;
	char err[256] = "";
	FILE *f = fopen(p, "a");

	fputs("hello\n", f);
	fclose(f);
	CHECK(audit_open(p, NULL, NULL, &log, err, sizeof(err)) == -EINVAL);
	CHECK(log == NULL);
	CHECK_CONTAINS(err, "the last complete line is not an audit record");
	free(p);

	p = fresh_log("e2.log", 1);
	log = open_log(p, NULL, NULL);
	CHECK(audit_open(p, NULL, NULL, &log2, err, sizeof(err)) == -EWOULDBLOCK);
	CHECK_CONTAINS(err, "in use by another process");
	CHECK(audit_close(log) == 0);
	CHECK(audit_close(NULL) == 0);
	free(p);
}

static void checkpoints_are_signed(void)
{
	struct audit_options o = { 0, 0, 4 };
	struct audit_report r;
	unsigned char other[32], pub[32];
	char err[256];
	char *p = path_in("f.log");
	struct audit_log *log = open_log(p, sec_path, &o);
	char *orig, *q;
	char **v;
	int n;

	CHECK(log != NULL);
	if (!log)
		return;
	CHECK(append_n(log, 0, 10, subj_a) == 10);
	CHECK(audit_close(log) == 0);
	/* seq 5 and 10 after every 4th record, seq 13 at close */
	CHECK(audit_pubkey_load(pub_path, pub, err, sizeof(err)) == 0);
	CHECK(memcmp(pub, pk, 32) == 0);
	CHECK(audit_verify(p, pub, &r) == 0);
	CHECK(r.checkpoints == 3 && r.records == 10 && r.unsigned_tail == 0);
	CHECK(audit_verify(p, NULL, &r) == 0);

	CHECK(audit_pubkey_load(other_pub_path, other, err, sizeof(err)) == 0);
	CHECK(audit_verify(p, other, &r) == -EBADMSG);
	CHECK(r.first_bad_line == 5);
	CHECK_CONTAINS(r.problem, "line 5: checkpoint signed by another key");

	orig = slurp(p, NULL);
	n = lines_of(p, &v); /* alter the final checkpoint's time: only the signature sees it */
	CHECK_CONTAINS(v[12], "\"type\":\"checkpoint\"");
	q = strstr(v[12], "\"time\":\"") + 8;
	q[3] = q[3] == '1' ? '2' : '1';
	write_lines(p, v, n);
	CHECK(audit_verify(p, NULL, &r) == 0);
	CHECK(audit_verify(p, pub, &r) == -EBADMSG);
	CHECK(r.first_bad_line == 13);
	CHECK_CONTAINS(r.problem, "line 13: checkpoint signature does not verify");
	free_lines(v, n);

	spit(p, orig, strlen(orig)); /* a byte of the first signature */
	n = lines_of(p, &v);
	q = strstr(v[4], "\"sig\":\"") + 7;
	q[10] = q[10] == 'a' ? 'b' : 'a';
	write_lines(p, v, n);
	CHECK(audit_verify(p, pub, &r) == -EBADMSG);
	CHECK(r.first_bad_line == 5);
	free_lines(v, n);
	free(orig);

	{
		char out[2048];
		char *plain = fresh_log("f2.log", 2);
		CHECK(audit_verify(plain, pub, &r) == -EBADMSG);
		CHECK_CONTAINS(r.problem, "no checkpoint");
		CHECK(run_cli(out, sizeof(out), 5, "audit", "verify", "--pub", pub_path, plain) == 1);
		CHECK_CONTAINS(out, "NOT intact: no checkpoint");
		free(plain);
	}
	free(p);
}

static void key_files(void)
{
	struct audit_log *log = NULL;
	char err[256] = "";
	char *p = path_in("g.log");
	char *loose = path_in("loose.sec");
	char text[200];

	text[0] = '\0';
	sodium_bin2hex(text + strlen(text), 129, sk, sizeof(sk));
	strcat(text, "\n");
	free(check_write(dir, "loose.sec", text));
	chmod(loose, 0644);
	CHECK(audit_open(p, loose, NULL, &log, err, sizeof(err)) == -EPERM);
	CHECK(log == NULL);
	CHECK_CONTAINS(err, "/loose.sec: secret key file is accessible by group or others "
			    "(mode 0644); run: chmod 600 '");

	chmod(loose, 0600);
	CHECK(audit_open(p, loose, NULL, &log, err, sizeof(err)) == 0);
	CHECK(audit_close(log) == 0);

	text[40] = text[40] == 'a' ? 'b' : 'a'; /* the halves no longer agree */
	spit(loose, text, strlen(text));
	CHECK(audit_open(p, loose, NULL, &log, err, sizeof(err)) == -EINVAL);
	CHECK_CONTAINS(err, "corrupt key");

	spit(loose, "abc\n", 4);
	CHECK(audit_open(p, loose, NULL, &log, err, sizeof(err)) == -EINVAL);
	CHECK_CONTAINS(err, "not a secret key made by 'noordpoort keygen --sign'");
	CHECK(audit_open(p, "/nonexistent/k.sec", NULL, &log, err, sizeof(err)) == -ENOENT);
	free(loose);
	free(p);
}

struct worker {
	struct audit_log *log;
	int base, ok;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	w->ok = append_n(w->log, w->base, w->base + 500, subj_b);
	return NULL;
}

static void concurrent_appends_stay_chained(void)
{
	struct audit_options o = { 16, 5, 100 };
	struct audit_report r;
	struct worker w[4];
	pthread_t t[4];
	char *p = path_in("h.log");
	struct audit_log *log = open_log(p, sec_path, &o);
	char **v;
	int n, ok = 1;

	CHECK(log != NULL);
	if (!log)
		return;
	for (int i = 0; i < 4; i++) {
		w[i].log = log;
		w[i].base = i * 500;
		pthread_create(&t[i], NULL, worker_main, &w[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK(w[i].ok == 500);
	}
	CHECK(audit_close(log) == 0);
	CHECK(audit_verify(p, pk, &r) == 0);
	CHECK(r.records == 2000);
	/* every 100 records; none at close, as the last line is one already */
	CHECK(r.checkpoints == 20);
	n = lines_of(p, &v);
	for (int i = 0; i < n; i++) {
		char want[32];
		snprintf(want, sizeof(want), "{\"seq\":%d,", i + 1);
		if (strncmp(v[i], want, strlen(want)) != 0)
			ok = 0;
	}
	CHECK(ok);
	CHECK(n == 2020);
	free_lines(v, n);
	free(p);
}

static void failed_write_leaves_nothing_and_chain_continues(void)
{
	struct audit_report r;
	struct stat st1, st2;
	char *p = path_in("i.log");
	struct audit_log *log = open_log(p, NULL, NULL);
	cJSON *f = fields(1, subj_a);
	char id[33] = "unchanged";

	CHECK(log != NULL);
	if (!log)
		return;
	CHECK(append_n(log, 0, 3, subj_a) == 3);
	CHECK(stat(p, &st1) == 0);
	audit_fail_next_writes(log, 2);
	CHECK(audit_append(log, f, id) == -ENOSPC);
	CHECK(strcmp(id, "unchanged") == 0);
	CHECK(audit_append(log, f, id) == -ENOSPC);
	CHECK(stat(p, &st2) == 0);
	CHECK(st1.st_size == st2.st_size);
	CHECK(audit_verify(p, NULL, &r) == 0 && r.records == 3);
	CHECK(audit_append(log, f, id) == 0);
	CHECK(audit_close(log) == 0);
	CHECK(audit_verify(p, NULL, &r) == 0);
	CHECK(r.records == 4 && r.lines == 4);
	cJSON_Delete(f);
	free(p);
}

static void group_fsync_after_write(void)
{
	struct audit_options slow = { 1000, 60000, 0 };
	struct audit_options timer = { 1000, 50, 0 };
	char *p = path_in("j.log");
	struct audit_log *log = open_log(p, NULL, &slow);
	char **v;
	int n;
	unsigned long fs;

	CHECK(log != NULL);
	if (!log)
		return;
	CHECK(append_n(log, 0, 3, subj_a) == 3);
	n = lines_of(p, &v); /* another reader sees the lines at once */
	CHECK(n == 3);
	free_lines(v, n);
	pthread_mutex_lock(&log->sync_mu);
	fs = log->fsyncs;
	CHECK(log->pending == 3);
	pthread_mutex_unlock(&log->sync_mu);
	CHECK(fs == 0);
	CHECK(append_n(log, 3, 1000, subj_a) == 997); /* the group is full */
	for (int i = 0; i < 200 && fs == 0; i++) {
		usleep(10000);
		pthread_mutex_lock(&log->sync_mu);
		fs = log->fsyncs;
		pthread_mutex_unlock(&log->sync_mu);
	}
	CHECK(fs == 1);
	CHECK(audit_close(log) == 0);
	free(p);

	p = path_in("k.log");
	log = open_log(p, NULL, &timer);
	CHECK(log != NULL);
	if (!log)
		return;
	CHECK(append_n(log, 0, 1, subj_a) == 1);
	fs = 0;
	for (int i = 0; i < 200 && fs == 0; i++) {
		usleep(10000);
		pthread_mutex_lock(&log->sync_mu);
		fs = log->fsyncs;
		pthread_mutex_unlock(&log->sync_mu);
	}
	CHECK(fs == 1); /* the timer, not the count */
	CHECK(audit_close(log) == 0);
	free(p);
}

static void hostile_values_stay_on_one_line(void)
{
	static const char *const bad[] = {
		"quote \" backslash \\ end",
		"new\nline\r\n and \x1b[31m escape",
		"invalid \xff byte",
		"overlong \xc0\xaf slash",
		"surrogate \xed\xa0\x80 half",
		"truncated \xe2\x82",
		"fine \xe2\x82\xac euro, \xe2\x80\xa8 separator",
	};
	struct audit_report r;
	char *p = path_in("l.log");
	struct audit_log *log = open_log(p, NULL, NULL);
	cJSON *f;
	char **v;
	int n;

	CHECK(log != NULL);
	if (!log)
		return;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		f = cJSON_CreateObject();
		cJSON_AddStringToObject(f, "reason", bad[i]);
		cJSON_AddStringToObject(f, "key\nwith \"newline\"", bad[i]);
		CHECK(audit_append(log, f, NULL) == 0);
		cJSON_Delete(f);
	}
	f = cJSON_CreateObject(); /* reserved names, raw JSON, non-objects */
	cJSON_AddStringToObject(f, "seq", "1");
	CHECK(audit_append(log, f, NULL) == -EINVAL);
	cJSON_Delete(f);
	f = cJSON_CreateObject();
	cJSON_AddStringToObject(f, "type", "checkpoint");
	CHECK(audit_append(log, f, NULL) == -EINVAL);
	cJSON_Delete(f);
	f = cJSON_CreateObject();
	cJSON_AddItemToObject(cJSON_AddObjectToObject(f, "x"), "raw", cJSON_CreateRaw("1}\n{\"seq\":9"));
	CHECK(audit_append(log, f, NULL) == -EINVAL);
	cJSON_Delete(f);
	f = cJSON_CreateArray();
	CHECK(audit_append(log, f, NULL) == -EINVAL);
	cJSON_Delete(f);
	f = cJSON_CreateObject(); /* an empty object is a valid record */
	CHECK(audit_append(log, f, NULL) == 0);
	cJSON_Delete(f);
	{
		char *big = malloc(AUDIT_LINE_MAX + 1);
		memset(big, 'a', AUDIT_LINE_MAX);
		big[AUDIT_LINE_MAX] = '\0';
		f = cJSON_CreateObject();
		cJSON_AddStringToObject(f, "reason", big);
		CHECK(audit_append(log, f, NULL) == -E2BIG);
		cJSON_Delete(f);
		free(big);
	}
	CHECK(audit_close(log) == 0);
	CHECK(audit_verify(p, NULL, &r) == 0);
	CHECK(r.records == 8);
	n = lines_of(p, &v);
	CHECK(n == 8);
	for (int i = 0; i < n && i < 7; i++) {
		cJSON *j = cJSON_Parse(v[i]);
		const cJSON *reason = cJSON_GetObjectItemCaseSensitive(j, "reason");
		const unsigned char *u;
		size_t len = strlen(v[i]);
		CHECK(memchr(v[i], '\n', len - 1) == NULL && v[i][len - 1] == '\n');
		CHECK(cJSON_IsString(reason));
		if (!cJSON_IsString(reason)) {
			cJSON_Delete(j);
			continue;
		}
		/* every byte of the line is valid UTF-8 and no control character */
		u = (const unsigned char *)v[i];
		for (size_t k = 0; k + 1 < len;) {
			size_t l = utf8_seq(u + k, len - k);
			CHECK(l > 0 && u[k] >= 0x20);
			k += l ? l : 1;
		}
		if (i == 0 || i == 1 || i == 6)
			CHECK_STR(reason->valuestring, bad[i]);
		else
			CHECK_CONTAINS(reason->valuestring, "\xef\xbf\xbd");
		CHECK(cJSON_GetObjectItemCaseSensitive(j, "key\nwith \"newline\"") != NULL);
		cJSON_Delete(j);
	}
	free_lines(v, n);
	free(p);
}

static void cli_verify_and_usage(void)
{
	char out[4096];
	char *p = fresh_log("m.log", 6);
	char **v;
	int n;

	CHECK(run_cli(out, sizeof(out), 3, "audit", "verify", p) == 0);
	CHECK_CONTAINS(out, "m.log: intact, 6 records, 0 checkpoints (signatures not checked)");
	n = lines_of(p, &v);
	free(v[2]);
	v[2] = NULL;
	write_lines(p, v, n);
	free_lines(v, n);
	CHECK(run_cli(out, sizeof(out), 3, "audit", "verify", p) == 1);
	CHECK_CONTAINS(out, "m.log: NOT intact: line 3: chain broken: the record with seq 3 before it "
			    "was removed");
	CHECK(run_cli(out, sizeof(out), 3, "audit", "verify", "/nonexistent.log") == 1);
	CHECK_CONTAINS(out, "No such file");
	CHECK(run_cli(out, sizeof(out), 2, "audit", "verify") == 2);
	CHECK_CONTAINS(out, "noordpoort audit verify: missing FILE (see 'noordpoort audit verify --help')");
	CHECK(run_cli(out, sizeof(out), 4, "audit", "verify", "--bogus", p) == 2);
	CHECK(run_cli(out, sizeof(out), 3, "audit", "verify", "--pub") == 2);
	CHECK(run_cli(out, sizeof(out), 4, "audit", "verify", p, p) == 2);
	CHECK(run_cli(out, sizeof(out), 3, "audit", "verify", "--help") == 0);
	CHECK_CONTAINS(out, "Usage: noordpoort audit verify");
	CHECK(run_cli(out, sizeof(out), 2, "audit", "--help") == 0);
	CHECK_CONTAINS(out, "Usage: noordpoort audit COMMAND");
	CHECK(run_cli(out, sizeof(out), 1, "audit") == 2);
	CHECK(run_cli(out, sizeof(out), 2, "audit", "frobnicate") == 2);
	CHECK_CONTAINS(out, "unknown command 'frobnicate'");
	CHECK(run_cli(out, sizeof(out), 5, "audit", "verify", "--pub", "/nonexistent.pub", p) == 1);
	free(p);
}

static void cli_subject(void)
{
	char out[8192];
	char *p = path_in("n.log");
	struct audit_log *log = open_log(p, NULL, NULL);
	cJSON *f;
	char upper[sizeof(subj_a)];

	CHECK(log != NULL);
	if (!log)
		return;
	CHECK(append_n(log, 0, 2, subj_a) == 2);
	CHECK(append_n(log, 2, 5, subj_b) == 3);
	f = fields(7, NULL);
	cJSON_AddItemToObject(f, "subject", cJSON_CreateStringArray((const char *const[]){ subj_b, subj_a }, 2));
	cJSON_ReplaceItemInObject(f, "requester", cJSON_CreateString("evil\x1b]0;pwned\x07"));
	CHECK(audit_append(log, f, NULL) == 0);
	cJSON_Delete(f);
	/* a deny as a node records it: reason code, the forbid, the nearest grant */
	f = fields(8, subj_a);
	cJSON_ReplaceItemInObject(f, "rule", cJSON_CreateString("forbid-9"));
	cJSON_ReplaceItemInObject(f, "reason", cJSON_CreateString("field_not_granted"));
	cJSON_AddStringToObject(f, "nearest_rule", "grant-3");
	CHECK(audit_append(log, f, NULL) == 0);
	cJSON_Delete(f);
	/* a deny with nothing but the decision */
	f = fields(12, subj_a);
	cJSON_DeleteItemFromObject(f, "rule");
	cJSON_DeleteItemFromObject(f, "reason");
	CHECK(audit_append(log, f, NULL) == 0);
	cJSON_Delete(f);
	CHECK(audit_close(log) == 0);

	CHECK(run_cli(out, sizeof(out), 5, "audit", "subject", "--pseudonym", subj_a, p) == 0);
	CHECK_CONTAINS(out, "5 records concern this person");
	CHECK_CONTAINS(out, "WHEN                      WHO");
	CHECK_CONTAINS(out, "gemeente-0");
	CHECK_CONTAINS(out, "uwv/ww-uitkeringen");
	CHECK_CONTAINS(out, "deny");
	CHECK_CONTAINS(out, "evil?]0;pwned?");
	CHECK(strchr(out, '\x1b') == NULL);
	/* why a deny was a deny, under its row; a permit gets no such line */
	CHECK_CONTAINS(out, "\n    denied: field_not_granted; rule 'forbid-9'; nearest rule 'grant-3'\n");
	CHECK_CONTAINS(out, "\n    denied: no reason recorded\n");
	{
		int n = 0; /* 3 of the 5 records are denies (i = 0, 8, 12) */
		for (const char *q = out; (q = strstr(q, "\n    denied: ")); q++)
			n++;
		CHECK(n == 3);
	}
	for (size_t i = 0; i < sizeof(upper); i++)
		upper[i] = (char)toupper((unsigned char)subj_a[i]);
	CHECK(run_cli(out, sizeof(out), 4, "audit", "subject", "--pseudonym=" "ABCDEF0123456789", p) == 0);
	CHECK_CONTAINS(out, "no records concern this person");
	CHECK(run_cli(out, sizeof(out), 5, "audit", "subject", "--pseudonym", upper, p) == 0);
	CHECK_CONTAINS(out, "5 records concern this person");

	CHECK(run_cli(out, sizeof(out), 5, "audit", "subject", "--pseudonym", "xyz", p) == 2);
	CHECK_CONTAINS(out, "--pseudonym: 'xyz' is not a hex pseudonym");
	CHECK(run_cli(out, sizeof(out), 3, "audit", "subject", p) == 2);
	CHECK(run_cli(out, sizeof(out), 5, "audit", "subject", "--bsn", "111222333", p) == 2);
	CHECK_CONTAINS(out, "--bsn needs --key MASTER");
	CHECK(run_cli(out, sizeof(out), 3, "audit", "subject", "-h") == 0);
	CHECK_CONTAINS(out, "Usage: noordpoort audit subject");

	/* A log that is not intact still lists, but says so and exits 1. */
	{
		char **v;
		int n = lines_of(p, &v);
		free(v[0]);
		v[0] = NULL;
		write_lines(p, v, n);
		free_lines(v, n);
	}
	CHECK(run_cli(out, sizeof(out), 5, "audit", "subject", "--pseudonym", subj_a, p) == 1);
	CHECK_CONTAINS(out, "4 records concern this person");
	CHECK_CONTAINS(out, "is NOT intact");
	free(p);
}

static void cli_subject_by_bsn(void)
{
	char out[4096], err[256], hex[65];
	char *p = path_in("q.log");
	char *master = path_in("master.key");
	struct pseudo_master *m = NULL;
	struct pseudo_key *k = NULL;
	unsigned char tok[32];
	uint32_t bsn = 0;
	struct audit_log *log;

	CHECK(pseudo_master_generate(master, err, sizeof(err)) == 0);
	CHECK(pseudo_master_load(master, &m, err, sizeof(err)) == 0);
	CHECK(pseudo_key_audit(m, &k) == 0);
	CHECK(bsn_parse("111222333", 9, &bsn) == 0);
	pseudo_token(k, bsn, tok);
	pseudo_hex(tok, sizeof(tok), hex);
	pseudo_key_free(k);
	pseudo_master_free(m);
	log = open_log(p, NULL, NULL);
	CHECK(log != NULL);
	if (!log)
		return;
	CHECK(append_n(log, 0, 2, hex) == 2);
	CHECK(append_n(log, 2, 4, subj_a) == 2);
	CHECK(audit_close(log) == 0);

	CHECK(run_cli(out, sizeof(out), 7, "audit", "subject", "--bsn", "111222333", "--key", master, p) == 0);
	CHECK_CONTAINS(out, "2 records concern this person");
	CHECK_CONTAINS(out, hex);
	CHECK(strstr(out, "111222333") == NULL); /* the BSN itself is never printed */
	CHECK(run_cli(out, sizeof(out), 7, "audit", "subject", "--bsn", "123456789", "--key", master, p) == 2);
	CHECK_CONTAINS(out, "--bsn: not a valid BSN (invalid_bsn_checksum)");
	CHECK(run_cli(out, sizeof(out), 7, "audit", "subject", "--bsn", "111222333", "--key", "/nonexistent.key", p) == 1);
	CHECK(run_cli(out, sizeof(out), 5, "audit", "subject", "--key", master, p) == 2);
	free(master);
	free(p);
}

/* The process dies mid-stream (SIGKILL under load): what write(2) accepted
 * is in the file, at most the last line is torn, and reopening recovers. */
static void sigkill_under_load_then_reopen(void)
{
	struct audit_options o = { 8, 10, 50 };
	struct audit_report r;
	char *p = path_in("o.log");
	struct audit_log *log;
	pid_t pid = fork();
	int st, vrc;

	if (pid == 0) {
		log = open_log(p, sec_path, &o);
		for (int i = 0; log; i++)
			append_n(log, i, i + 1, subj_a);
		_exit(1);
	}
	CHECK(pid > 0);
	usleep(300000);
	kill(pid, SIGKILL);
	CHECK(waitpid(pid, &st, 0) == pid && WIFSIGNALED(st));
	vrc = audit_verify(p, pk, &r);
	CHECK(vrc == 0 || r.torn_tail);
	CHECK(r.lines > 10);
	log = open_log(p, sec_path, &o);
	CHECK(log != NULL);
	CHECK(append_n(log, 0, 3, subj_a) == 3);
	CHECK(audit_close(log) == 0);
	CHECK(audit_verify(p, pk, &r) == 0);
	CHECK(r.unsigned_tail == 0);
	printf("# sigkill: %lu lines, %lu checkpoints, %lu recovered\n", r.lines, r.checkpoints,
	       r.recoveries);
	free(p);
}

/* The cap on one line (issue 10: a 900 KB purpose made a 900 KB line):
 * both sides of it, and every line written stays within it. */
static void line_cap_boundaries(void)
{
	char *p = path_in("cap.log");
	struct audit_log *log = NULL;
	struct audit_report r;
	/* "reason":"<s>" is the whole inner text: 11 bytes and the string */
	size_t fits = AUDIT_LINE_MAX - 256 - 11;
	char *s = malloc(fits + 2);
	char **v = NULL;
	cJSON *f;
	int n;

	CHECK(AUDIT_LINE_MAX <= 16 * 1024);
	CHECK(audit_open(p, NULL, NULL, &log, NULL, 0) == 0);
	memset(s, 'a', fits + 1);
	for (size_t len = fits - 1; len <= fits + 1; len++) {
		s[len] = '\0';
		f = cJSON_CreateObject();
		cJSON_AddStringToObject(f, "reason", s);
		CHECK(audit_append(log, f, NULL) == (len <= fits ? 0 : -E2BIG));
		cJSON_Delete(f);
		s[len] = 'a';
	}
	CHECK(audit_close(log) == 0);
	CHECK(audit_verify(p, NULL, &r) == 0);
	CHECK(r.records == 2);
	n = lines_of(p, &v);
	CHECK(n == 2);
	for (int i = 0; i < n; i++) {
		CHECK(strlen(v[i]) + 1 <= AUDIT_LINE_MAX);
		free(v[i]);
	}
	free(v);
	free(s);
	free(p);
}

static int refusal_lines(const char *path)
{
	char **v = NULL;
	int n = lines_of(path, &v), k = 0;

	for (int i = 0; i < n; i++) {
		k += strstr(v[i], "\"operation\":\"refusals\"") != NULL;
		free(v[i]);
	}
	free(v);
	return k;
}

/* The per-requester refusal limit: |limit| admitted, the next refused with
 * one summary line, the rest of the window refused without a line; other
 * requesters unaffected; a new window admits again and counts the
 * previous window's suppressed refusals. */
/* A refusal without a requester has one window too, whether it comes as
 * NULL or "" (looked up as "" but stored as "-", each once took a fresh
 * window and evicted another requester's). */
static void refusal_limit_without_requester(void)
{
	char *p = path_in("refusals-anon.log");
	struct audit_log *log = NULL;

	CHECK(audit_open(p, NULL, NULL, &log, NULL, 0) == 0);
	audit_set_refusal_limit(log, 3);
	for (int i = 0; i < 3; i++)
		CHECK(audit_refusal_admit(log, i % 2 ? "" : NULL) == 0);
	CHECK(audit_refusal_admit(log, "") > 0);
	CHECK(audit_refusal_admit(log, NULL) > 0);
	CHECK(refusal_lines(p) == 1);
	CHECK(audit_close(log) == 0);
	free(p);
}

static void refusal_limit_boundaries(void)
{
	char *p = path_in("refusals.log");
	struct audit_log *log = NULL;
	struct audit_report r;
	char **v = NULL;
	int n, rc;

	CHECK(audit_open(p, NULL, NULL, &log, NULL, 0) == 0);
	CHECK(log->refusal_limit == AUDIT_REFUSALS_PER_MINUTE);
	audit_set_refusal_limit(log, 5);
	for (int i = 0; i < 5; i++)
		CHECK(audit_refusal_admit(log, "gemeente-x") == 0); /* 1..limit */
	CHECK(refusal_lines(p) == 0);
	rc = audit_refusal_admit(log, "gemeente-x"); /* limit + 1 */
	CHECK(rc > 0 && rc <= AUDIT_REFUSAL_WINDOW_MS / 1000);
	CHECK(refusal_lines(p) == 1);
	for (int i = 0; i < 100; i++)
		CHECK(audit_refusal_admit(log, "gemeente-x") > 0);
	CHECK(refusal_lines(p) == 1); /* one per window */
	CHECK(audit_refusal_admit(log, "gemeente-y") == 0);
	/* the window ends */
	for (size_t i = 0; i < REFUSAL_SLOTS; i++)
		if (strcmp(log->refusals[i].who, "gemeente-x") == 0)
			log->refusals[i].start_ms -= AUDIT_REFUSAL_WINDOW_MS;
	for (int i = 0; i < 5; i++)
		CHECK(audit_refusal_admit(log, "gemeente-x") == 0);
	CHECK(audit_refusal_admit(log, "gemeente-x") > 0);
	CHECK(audit_close(log) == 0);
	CHECK(audit_verify(p, NULL, &r) == 0);
	n = lines_of(p, &v);
	CHECK(n == 2);
	if (n == 2) {
		CHECK_CONTAINS(v[0], "\"requester\":\"gemeente-x\",\"limit\":5,\"window_s\":60,"
				     "\"decision\":\"deny\",\"outcome\":\"too_many_refusals\",\"status\":429");
		CHECK_CONTAINS(v[1], "\"suppressed_before\":101");
	}
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
	/* a summary line that cannot be written is an error for the caller
	 * (503), and the next refusal tries again */
	CHECK(audit_open(p, NULL, NULL, &log, NULL, 0) == 0);
	audit_set_refusal_limit(log, 1);
	CHECK(audit_refusal_admit(log, "gemeente-z") == 0);
	audit_fail_next_writes(log, 1);
	CHECK(audit_refusal_admit(log, "gemeente-z") == -ENOSPC);
	CHECK(audit_refusal_admit(log, "gemeente-z") > 0);
	CHECK(audit_close(log) == 0);
	CHECK(refusal_lines(p) == 3);
	free(p);
}

int main(void)
{
	unsigned char opk[32], osk[64];
	char text[200];

	if (!mkdtemp(dir) || sodium_init() < 0)
		return 1;
	crypto_sign_keypair(pk, sk);
	crypto_sign_keypair(opk, osk);
	text[0] = '\0';
	sodium_bin2hex(text + strlen(text), 129, sk, sizeof(sk));
	strcat(text, "\n");
	sec_path = check_write(dir, "k.sec", text);
	chmod(sec_path, 0600);
	text[0] = '\0';
	sodium_bin2hex(text + strlen(text), 65, pk, sizeof(pk));
	strcat(text, "\n");
	pub_path = check_write(dir, "k.pub", text);
	text[0] = '\0';
	sodium_bin2hex(text + strlen(text), 65, opk, sizeof(opk));
	other_pub_path = check_write(dir, "other.pub", text);

	RUN(chain_intact_after_appends_and_reopen);
	RUN(altered_line_is_named);
	RUN(removed_inserted_swapped_lines_are_named);
	RUN(torn_tail_is_reported_then_recovered);
	RUN(open_refuses_a_foreign_last_line_and_a_second_writer);
	RUN(checkpoints_are_signed);
	RUN(key_files);
	RUN(concurrent_appends_stay_chained);
	RUN(failed_write_leaves_nothing_and_chain_continues);
	RUN(group_fsync_after_write);
	RUN(hostile_values_stay_on_one_line);
	RUN(cli_verify_and_usage);
	RUN(cli_subject);
	RUN(cli_subject_by_bsn);
	RUN(sigkill_under_load_then_reopen);
	RUN(line_cap_boundaries);
	RUN(refusal_limit_boundaries);
	RUN(refusal_limit_without_requester);
	free(sec_path);
	free(pub_path);
	free(other_pub_path);
	{
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", dir);
	}
	return check_total_failed ? 1 : 0;
}
