/*
 * `noordpoort audit`: check a log's hash chain and signatures, and list
 * every access concerning one data subject (a subject-access request).
 * Results go to stdout; usage errors exit 2 with one line on stderr.
 */
#include "../audit/audit.h"

#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "usage.h"
#include "../crypto/pseudo.h"

static const char usage_audit[] =
	"Usage: noordpoort audit COMMAND [OPTIONS] FILE\n"
	"\n"
	"Tools for the audit log (docs/audit.md).\n"
	"\n"
	"Commands:\n"
	"  verify [--pub KEY.pub] FILE         check the hash chain (and checkpoint signatures)\n"
	"  subject --pseudonym HEX FILE        every access concerning one person\n"
	"  subject --bsn N --key MASTER FILE   the same, computing the audit pseudonym\n"
	"\n"
	"Options:\n"
	"  -h, --help   show this help (also: noordpoort audit COMMAND --help)\n";

static const char usage_verify[] =
	"Usage: noordpoort audit verify [--pub KEY.pub] FILE\n"
	"\n"
	"Checks every line of the audit log FILE: JSON, sequence numbers and the\n"
	"BLAKE2b hash chain; with --pub also the Ed25519 signature of every\n"
	"checkpoint. Names the first line that was altered, removed or inserted.\n"
	"A torn last line (a write cut off by a crash) is reported as such; once\n"
	"the gateway has reopened the log and added a recovery record after it,\n"
	"the log counts as intact and a warning names the torn line.\n"
	"Exit status: 0 intact, 1 not intact or unreadable, 2 bad usage.\n"
	"\n"
	"Options:\n"
	"  --pub FILE   the public key (.pub of 'noordpoort keygen --sign') to check\n"
	"               checkpoints with; without it signatures are not checked\n"
	"  -h, --help   show this help\n";

static const char usage_subject[] =
	"Usage: noordpoort audit subject (--pseudonym HEX | --bsn N --key MASTER) FILE\n"
	"\n"
	"Lists every record in the audit log FILE that concerns one person: when,\n"
	"who asked, for which purpose, which datasets, the decision and its rule,\n"
	"and the audit id. The log names people only by their audit pseudonym;\n"
	"--bsn computes it from the BSN with the master key (give '-' as N to read\n"
	"the BSN from standard input, so it stays out of the process list and the\n"
	"shell history). The chain is verified first; a log that is not intact is\n"
	"reported, because the list may then be incomplete.\n"
	"Exit status: 0 (also when no record concerns the person), 1 if FILE\n"
	"cannot be read or is not intact, 2 bad usage.\n"
	"\n"
	"Options:\n"
	"  --pseudonym HEX   the person's audit pseudonym (hex)\n"
	"  --bsn N           the person's BSN (or '-': read it from standard input)\n"
	"  --key FILE        the pseudonymisation master key (with --bsn)\n"
	"  -h, --help        show this help\n";

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
	return cli_usage_error("noordpoort audit", cmd, fmt, arg);
}

static int is_help(const char *a)
{
	return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0;
}

/* Matches "--name VALUE" and "--name=VALUE" at argv[*i]: 1 (|*val| set,
 * |*i| advanced), 0 (another argument), -1 (the value is missing). */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **val)
{
	size_t n = strlen(name);

	if (strcmp(argv[*i], name) == 0) {
		if (*i + 1 >= argc)
			return -1;
		*val = argv[++*i];
		return 1;
	}
	if (strncmp(argv[*i], name, n) == 0 && argv[*i][n] == '=') {
		*val = argv[*i] + n + 1;
		return 1;
	}
	return 0;
}

static int cmd_verify(int argc, char **argv)
{
	const char *pubfile = NULL, *file = NULL;
	unsigned char pub[32];
	struct audit_report r;
	char err[512];
	int rc;

	for (int i = 1; i < argc; i++) {
		int k;
		if (is_help(argv[i])) {
			fputs(usage_verify, stdout);
			return 0;
		}
		k = opt_value(argc, argv, &i, "--pub", &pubfile);
		if (k < 0)
			return usage_error("verify", "%s needs a file", "--pub");
		if (k > 0)
			continue;
		if (argv[i][0] == '-' && argv[i][1])
			return usage_error("verify", "unknown option '%s'", argv[i]);
		if (file)
			return usage_error("verify", "unexpected argument '%s'", argv[i]);
		file = argv[i];
	}
	if (!file)
		return usage_error("verify", "%s", "missing FILE");
	if (pubfile && audit_pubkey_load(pubfile, pub, err, sizeof(err)) < 0) {
		fprintf(stderr, "noordpoort audit verify: %s\n", err);
		return 1;
	}
	rc = audit_verify(file, pubfile ? pub : NULL, &r);
	if (rc == -EBADMSG) {
		printf("%s: NOT intact: %s\n", file, r.problem);
		return 1;
	}
	if (rc < 0) {
		fprintf(stderr, "noordpoort audit verify: %s: %s\n", file, r.problem);
		return 1;
	}
	printf("%s: intact, %lu records, %lu checkpoints (%s)\n", file, r.records, r.checkpoints,
	       pubfile ? "signatures verified" : "signatures not checked");
	if (pubfile && r.unsigned_tail)
		printf("note: the last %lu lines follow the last checkpoint and are not signed yet\n",
		       r.unsigned_tail);
	if (r.warning[0])
		printf("warning: %s\n", r.warning);
	return 0;
}

/* ---- subject --------------------------------------------------------- */

enum { C_WHEN, C_WHO, C_PURPOSE, C_DATASETS, C_DECISION, C_RULE, C_ID, NCOL };
static const char *const col_title[NCOL] = { "WHEN", "WHO", "PURPOSE", "DATASETS",
					     "DECISION", "RULE", "AUDIT ID" };

struct row {
	char *col[NCOL];
	char *why; /* a deny's reason, rule and nearest rule; NULL for a permit */
};

/* A log value fit for a terminal: control characters (an escape sequence
 * smuggled into a field) become '?'. Returns a malloc'd string or NULL. */
static char *printable(const char *s)
{
	char *o = strdup(s ? s : "-");

	for (char *p = o; p && *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return o;
}

/* A field as text: strings as they are, arrays of strings joined by ",",
 * anything else as JSON; "-" when absent. */
static char *field_text(const cJSON *rec, const char *name, const char *alt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, name);
	char *s, *o;

	if (!v && alt)
		v = cJSON_GetObjectItemCaseSensitive(rec, alt);
	if (!v)
		return printable(NULL);
	if (cJSON_IsString(v))
		return printable(v->valuestring);
	if (cJSON_IsArray(v)) {
		size_t n = 1;
		const cJSON *e;
		cJSON_ArrayForEach(e, v)
		{
			n += (cJSON_IsString(e) ? strlen(e->valuestring) : 1) + 1;
		}
		s = calloc(1, n);
		if (!s)
			return NULL;
		cJSON_ArrayForEach(e, v)
		{
			if (*s)
				strcat(s, ",");
			strcat(s, cJSON_IsString(e) ? e->valuestring : "?");
		}
		o = printable(s);
		free(s);
		return o;
	}
	s = cJSON_PrintUnformatted(v);
	o = printable(s);
	cJSON_free(s);
	return o;
}

/*
 * Why a deny was a deny, for the person asking: the reason code, the rule
 * that denied (a forbid) and the nearest grant the request fell short of,
 * each only when the record has it. NULL for a permit (or out of memory).
 */
static char *deny_why(const cJSON *rec)
{
	const char *dec = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "decision"));
	const char *reason = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "reason"));
	const char *rule = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "rule"));
	const char *near = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "nearest_rule"));
	char *text = NULL, *o;
	size_t len;
	FILE *m;

	if (!dec || strcmp(dec, "deny") != 0)
		return NULL;
	if (!(m = open_memstream(&text, &len)))
		return NULL;
	fprintf(m, "denied: %s", reason && *reason ? reason : "no reason recorded");
	if (rule && *rule)
		fprintf(m, "; rule '%s'", rule);
	if (near && *near)
		fprintf(m, "; nearest rule '%s'", near);
	if (fclose(m) != 0) {
		free(text);
		return NULL;
	}
	o = printable(text);
	free(text);
	return o;
}

static int subject_matches(const cJSON *rec, const char *hex)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, "subject"), *e;

	if (cJSON_IsString(v))
		return strcasecmp(v->valuestring, hex) == 0;
	if (cJSON_IsArray(v)) {
		cJSON_ArrayForEach(e, v)
		{
			if (cJSON_IsString(e) && strcasecmp(e->valuestring, hex) == 0)
				return 1;
		}
	}
	return 0;
}

/* Display width of UTF-8 text: code points, close enough for a table. */
static size_t width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		w += ((unsigned char)*s & 0xc0) != 0x80;
	return w;
}

static void print_cell(const char *s, size_t w, int last)
{
	fputs(s, stdout);
	if (last) {
		putchar('\n');
		return;
	}
	for (size_t k = width(s); k < w + 2; k++)
		putchar(' ');
}

/* Collects the decision records about |hex| from |file|; -errno or count. */
static long subject_scan(const char *file, const char *hex, struct row **rows)
{
	FILE *f = fopen(file, "re");
	char *line = NULL;
	size_t cap = 0, nrows = 0;
	ssize_t n;
	long rc = 0;

	*rows = NULL;
	if (!f)
		return -errno;
	while ((n = getline(&line, &cap, f)) > 0) {
		const char *end = NULL;
		cJSON *rec = cJSON_ParseWithLengthOpts(line, (size_t)n, &end, 0);
		static const char *const src[NCOL] = { "time", "requester", "purpose", "datasets",
							"decision", "rule", "audit_id" };
		struct row *nr;

		if (!rec)
			continue; /* verify reports it */
		if (!cJSON_IsObject(rec) || cJSON_GetObjectItemCaseSensitive(rec, "type") ||
		    !subject_matches(rec, hex)) {
			cJSON_Delete(rec);
			continue;
		}
		nr = realloc(*rows, (nrows + 1) * sizeof(**rows));
		if (!nr) {
			cJSON_Delete(rec);
			rc = -ENOMEM;
			break;
		}
		*rows = nr;
		for (int c = 0; c < NCOL; c++)
			nr[nrows].col[c] = field_text(rec, src[c], c == C_DATASETS ? "dataset" : NULL);
		nr[nrows].why = deny_why(rec);
		nrows++;
		cJSON_Delete(rec);
	}
	free(line);
	fclose(f);
	return rc < 0 ? rc : (long)nrows;
}

static int hex_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 16 || n > 128 || n % 2)
		return 0;
	return strspn(s, "0123456789abcdefABCDEF") == n;
}

/* Computes the audit pseudonym of a BSN (argument, or '-' for stdin) into
 * |hex|; returns 0, or the exit status. The BSN is wiped after use. */
static int bsn_pseudonym(const char *arg, const char *keyfile, char hex[65])
{
	char buf[64], err[512];
	const char *s = arg;
	size_t len;
	uint32_t bsn = 0;
	struct pseudo_master *m = NULL;
	struct pseudo_key *k = NULL;
	unsigned char tok[PSEUDO_TOKEN_BYTES];
	int rc = 0, berr;

	buf[0] = '\0';
	if (strcmp(arg, "-") == 0) {
		if (!fgets(buf, sizeof(buf), stdin))
			buf[0] = '\0';
		buf[strcspn(buf, "\r\n")] = '\0';
		s = buf;
	}
	len = strlen(s);
	berr = bsn_parse(s, len, &bsn);
	if (berr < 0) {
		rc = usage_error("subject", "--bsn: not a valid BSN (%s)", bsn_error_name(berr));
		goto done;
	}
	if (pseudo_master_load(keyfile, &m, err, sizeof(err)) < 0 || pseudo_key_audit(m, &k) < 0) {
		fprintf(stderr, "noordpoort audit subject: %s\n",
			m ? "could not derive the audit key" : err);
		rc = 1;
		goto done;
	}
	pseudo_token(k, bsn, tok);
	pseudo_hex(tok, sizeof(tok), hex);
	hex[64] = '\0';
done:
	sodium_memzero(buf, sizeof(buf));
	sodium_memzero(tok, sizeof(tok));
	sodium_memzero(&bsn, sizeof(bsn));
	pseudo_key_free(k);
	pseudo_master_free(m);
	return rc;
}

static int cmd_subject(int argc, char **argv)
{
	const char *pseudonym = NULL, *bsn = NULL, *key = NULL, *file = NULL;
	char hex[129];
	struct audit_report r;
	struct row *rows = NULL;
	size_t w[NCOL];
	long nrows;
	int vrc, rc = 0;

	for (int i = 1; i < argc; i++) {
		int k;
		if (is_help(argv[i])) {
			fputs(usage_subject, stdout);
			return 0;
		}
		if ((k = opt_value(argc, argv, &i, "--pseudonym", &pseudonym)) ||
		    (k = opt_value(argc, argv, &i, "--bsn", &bsn)) ||
		    (k = opt_value(argc, argv, &i, "--key", &key))) {
			if (k < 0)
				return usage_error("subject", "%s needs a value", argv[i]);
			continue;
		}
		if (argv[i][0] == '-' && argv[i][1])
			return usage_error("subject", "unknown option '%s'", argv[i]);
		if (file)
			return usage_error("subject", "unexpected argument '%s'", argv[i]);
		file = argv[i];
	}
	if (!file)
		return usage_error("subject", "%s", "missing FILE");
	if (!pseudonym == !bsn)
		return usage_error("subject", "%s", "give either --pseudonym HEX or --bsn N");
	if (bsn && !key)
		return usage_error("subject", "%s", "--bsn needs --key MASTER");
	if (key && !bsn)
		return usage_error("subject", "%s", "--key goes with --bsn");
	if (pseudonym) {
		if (!hex_ok(pseudonym))
			return usage_error("subject", "--pseudonym: '%s' is not a hex pseudonym",
					       pseudonym);
		snprintf(hex, sizeof(hex), "%s", pseudonym);
	} else {
		rc = bsn_pseudonym(bsn, key, hex);
		if (rc)
			return rc;
	}

	vrc = audit_verify(file, NULL, &r);
	if (vrc < 0 && vrc != -EBADMSG) {
		fprintf(stderr, "noordpoort audit subject: %s: %s\n", file, r.problem);
		return 1;
	}
	nrows = subject_scan(file, hex, &rows);
	if (nrows < 0) {
		fprintf(stderr, "noordpoort audit subject: %s: %s\n", file, strerror((int)-nrows));
		return 1;
	}
	if (nrows == 0) {
		printf("%s: no records concern this person (audit pseudonym %s)\n", file, hex);
	} else {
		printf("%s: %ld record%s concern%s this person (audit pseudonym %s):\n", file, nrows,
		       nrows == 1 ? "" : "s", nrows == 1 ? "s" : "", hex);
		for (int c = 0; c < NCOL; c++)
			w[c] = width(col_title[c]);
		for (long i = 0; i < nrows; i++)
			for (int c = 0; c < NCOL; c++) {
				size_t cw = rows[i].col[c] ? width(rows[i].col[c]) : 0;
				if (cw > w[c])
					w[c] = cw > 40 ? 40 : cw;
			}
		for (int c = 0; c < NCOL; c++)
			print_cell(col_title[c], w[c], c == NCOL - 1);
		for (long i = 0; i < nrows; i++) {
			for (int c = 0; c < NCOL; c++)
				print_cell(rows[i].col[c] ? rows[i].col[c] : "?", w[c], c == NCOL - 1);
			if (rows[i].why)
				printf("    %s\n", rows[i].why);
		}
	}
	if (vrc == -EBADMSG) {
		fprintf(stderr, "noordpoort audit subject: warning: %s is NOT intact (%s); this list "
				"may be incomplete\n", file, r.problem);
		rc = 1;
	}
	for (long i = 0; i < nrows; i++) {
		for (int c = 0; c < NCOL; c++)
			free(rows[i].col[c]);
		free(rows[i].why);
	}
	free(rows);
	return rc;
}

int audit_cli(int argc, char **argv)
{
	if (argc < 2)
		return usage_error(NULL, "%s", "missing command");
	if (is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
		fputs(usage_audit, stdout);
		return 0;
	}
	if (strcmp(argv[1], "verify") == 0)
		return cmd_verify(argc - 1, argv + 1);
	if (strcmp(argv[1], "subject") == 0)
		return cmd_subject(argc - 1, argv + 1);
	return usage_error(NULL, "unknown command '%s'", argv[1]);
}
