/*
 * The budget ledger and the hub's audit log, read together: the check the
 * hub runs at start (is this the ledger the audit log knows, and is it not
 * behind it?) and `noordpoort ledger init|verify`. docs/ledger.md.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "../aggregate/ledger.h"
#include "usage.h"
#include "ledger_cli.h"

static const char usage_ledger[] =
	"Usage: noordpoort ledger init LEDGER\n"
	"       noordpoort ledger verify LEDGER AUDITLOG\n"
	"\n"
	"init creates a new, empty privacy budget ledger at LEDGER (which must\n"
	"not exist) with a fresh random ledger id. The hub never creates one:\n"
	"a hub whose ledger is missing, replaced or rolled back answers every\n"
	"aggregate question with 503 budget_unavailable.\n"
	"\n"
	"verify cross-checks every debit in LEDGER against its line in the hub's\n"
	"AUDITLOG (same debit id, requester, purpose and epsilon; or, for an\n"
	"answer withheld because its line could not be written, the intent line\n"
	"the hub writes before every debit) and every debit the audit log\n"
	"records against LEDGER. Exit status: 0 consistent,\n"
	"1 not (each problem is listed), 2 bad usage. docs/ledger.md.\n";

static int usage_error(const char *fmt, const char *arg)
{
	return cli_usage_error("noordpoort", "ledger", fmt, arg);
}

/* One budget_debit line of the audit log. */
struct audit_debit {
	int64_t id;
	char ledger[33];
	char requester[129], purpose[129];
	double epsilon;
	unsigned long line;
};

/* One budget_intent line: written before a debit (docs/ledger.md). */
struct audit_intent {
	char ledger[33];
	char requester[129], purpose[129];
	char query_id[33];
	double epsilon;
	unsigned long line;
	int answered; /* an aggregate line with its query_id follows it */
	int used;     /* stands for a debit whose own line is missing */
};

struct scan {
	struct gw_ledger_seen seen;
	struct audit_debit *d; /* when collecting (verify) */
	size_t n, cap;
	struct audit_intent *in;
	size_t nin, capin;
	char (*qid)[33];       /* query ids of aggregate lines, sorted after the scan */
	size_t nqid, capqid;
	int collect;
};

/* Grows |*p| (of |*cap| elements of |size|) to hold one more; 0 or -1. */
static int grow(void *p, size_t n, size_t *cap, size_t size)
{
	void **pp = p;
	size_t nc;
	void *np;

	if (n < *cap)
		return 0;
	nc = *cap ? 2 * *cap : 256;
	if (!(np = realloc(*pp, nc * size)))
		return -1;
	*pp = np;
	*cap = nc;
	return 0;
}

static int qid_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void copy_str(char *dst, size_t n, const cJSON *o, const char *name)
{
	const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));

	snprintf(dst, n, "%s", v ? v : "");
}

static int scan_file(const char *path, struct scan *s, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	unsigned long no = 0;
	char cur[33] = "";

	memset(&s->seen, 0, sizeof(s->seen));
	if (!f) {
		if (errno == ENOENT)
			return 0; /* a new audit log records nothing yet */
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while ((len = getline(&line, &cap, f)) >= 0) {
		cJSON *o;
		const cJSON *v;

		no++;
		/* Most lines name neither: skip them without parsing. */
		if (!memmem(line, (size_t)len, "\"ledger_id\"", 11) && !memmem(line, (size_t)len, "\"budget_debit\"", 14) &&
		    !(s->collect && memmem(line, (size_t)len, "\"query_id\"", 10)))
			continue;
		if (!(o = cJSON_ParseWithLength(line, (size_t)len)))
			continue; /* a torn line: audit verify reports those */
		v = cJSON_GetObjectItemCaseSensitive(o, "ledger_id");
		if (cJSON_IsString(v) && strlen(v->valuestring) == 32) {
			if (strcmp(cur, v->valuestring) != 0) {
				memcpy(cur, v->valuestring, 33);
				s->seen.max_debit = 0;
				s->seen.attaches = 0;
			}
			memcpy(s->seen.last_id, cur, 33);
			s->seen.attaches++;
			v = cJSON_GetObjectItemCaseSensitive(o, "last_debit");
			if (cJSON_IsNumber(v) && v->valuedouble > (double)s->seen.max_debit)
				s->seen.max_debit = (int64_t)v->valuedouble;
		}
		if (s->collect) {
			const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "operation"));
			const char *qid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "query_id"));
			int bad = 0;

			if (op && qid && strlen(qid) == 32 && strcmp(op, "budget_intent") == 0) {
				if (grow(&s->in, s->nin, &s->capin, sizeof(*s->in)) < 0) {
					bad = 1;
				} else {
					struct audit_intent *in = &s->in[s->nin++];

					memset(in, 0, sizeof(*in));
					memcpy(in->ledger, cur, 33);
					memcpy(in->query_id, qid, 33);
					copy_str(in->requester, sizeof(in->requester), o, "requester");
					copy_str(in->purpose, sizeof(in->purpose), o, "purpose");
					v = cJSON_GetObjectItemCaseSensitive(o, "epsilon");
					in->epsilon = cJSON_IsNumber(v) ? v->valuedouble : -1;
					in->line = no;
				}
			} else if (op && qid && strlen(qid) == 32 && strcmp(op, "aggregate") == 0) {
				if (grow(&s->qid, s->nqid, &s->capqid, sizeof(*s->qid)) < 0)
					bad = 1;
				else
					memcpy(s->qid[s->nqid++], qid, 33);
			}
			if (bad) {
				cJSON_Delete(o);
				free(line);
				fclose(f);
				snprintf(err, errlen, "out of memory");
				return -1;
			}
		}
		v = cJSON_GetObjectItemCaseSensitive(o, "budget_debit");
		if (cJSON_IsNumber(v) && v->valuedouble >= 1) {
			int64_t id = (int64_t)v->valuedouble;

			if (cur[0] && id > s->seen.max_debit)
				s->seen.max_debit = id;
			if (s->collect) {
				struct audit_debit *d;

				if (grow(&s->d, s->n, &s->cap, sizeof(*s->d)) < 0) {
					cJSON_Delete(o);
					free(line);
					fclose(f);
					snprintf(err, errlen, "out of memory");
					return -1;
				}
				d = &s->d[s->n++];
				d->id = id;
				memcpy(d->ledger, cur, 33);
				copy_str(d->requester, sizeof(d->requester), o, "requester");
				copy_str(d->purpose, sizeof(d->purpose), o, "purpose");
				v = cJSON_GetObjectItemCaseSensitive(o, "epsilon");
				d->epsilon = cJSON_IsNumber(v) ? v->valuedouble : -1;
				d->line = no;
			}
		}
		cJSON_Delete(o);
	}
	free(line);
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		fclose(f);
		return -1;
	}
	fclose(f);
	if (s->nqid)
		qsort(s->qid, s->nqid, sizeof(*s->qid), qid_cmp);
	for (size_t i = 0; i < s->nin; i++)
		s->in[i].answered = s->nqid && bsearch(s->in[i].query_id, s->qid, s->nqid, sizeof(*s->qid), qid_cmp);
	return 0;
}

static void scan_free(struct scan *s)
{
	free(s->d);
	free(s->in);
	free(s->qid);
}

/* The first intent, not yet used, of a question that has no line of its
 * own, for this debit (same ledger, requester, purpose and epsilon); NULL. */
static struct audit_intent *unanswered_intent(struct scan *s, const char *ledger, const char *req,
					      const char *pur, int64_t amount)
{
	for (size_t i = 0; i < s->nin; i++) {
		struct audit_intent *in = &s->in[i];
		uint64_t micro = 0;

		if (in->used || in->answered || strcmp(in->ledger, ledger) != 0 || strcmp(in->requester, req) != 0 ||
		    strcmp(in->purpose, pur) != 0 || ledger_micro_up(in->epsilon, &micro) < 0 ||
		    (int64_t)micro != amount)
			continue;
		in->used = 1;
		return in;
	}
	return NULL;
}

int gw_ledger_audit_scan(const char *path, struct gw_ledger_seen *seen, char *err, size_t errlen)
{
	struct scan s;
	int rc;

	memset(&s, 0, sizeof(s));
	rc = scan_file(path, &s, err, errlen);
	*seen = s.seen;
	scan_free(&s);
	return rc;
}

int gw_ledger_matches(const struct gw_ledger_seen *seen, const char *id, int64_t last_debit, char *err,
		      size_t errlen)
{
	if (seen->last_id[0] && strcmp(seen->last_id, id) != 0) {
		snprintf(err, errlen,
			 "the budget ledger was replaced: its id is %s, the audit log records ledger %s;"
			 " nothing is answered until the recorded ledger is back (docs/ledger.md)",
			 id, seen->last_id);
		return -1;
	}
	if (seen->last_id[0] && last_debit < seen->max_debit) {
		snprintf(err, errlen,
			 "the budget ledger was rolled back: its last debit is %" PRId64 ", the audit log"
			 " records debit %" PRId64 "; nothing is answered until the newest ledger is back"
			 " (docs/ledger.md)",
			 last_debit, seen->max_debit);
		return -1;
	}
	return 0;
}

/* ---- the command line ---------------------------------------------------- */

static int cmd_init(int argc, char **argv)
{
	char err[512];
	struct ledger *l = NULL;

	if (argc != 2)
		return usage_error("%s", argc < 2 ? "init needs LEDGER" : "init takes one LEDGER");
	if (ledger_create(argv[1], err, sizeof(err)) < 0 || ledger_open(argv[1], &l, err, sizeof(err)) < 0) {
		fprintf(stderr, "noordpoort ledger: %s\n", err);
		return 1;
	}
	printf("created budget ledger %s (id %s)\n", argv[1], ledger_id(l));
	ledger_close(l);
	return 0;
}

static int by_id(const void *a, const void *b)
{
	const struct audit_debit *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

static int cmd_verify(int argc, char **argv)
{
	struct scan s;
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	char err[512], id[33] = "";
	unsigned long debits = 0, problems = 0, by_intent = 0;
	int64_t last_did = 0;
	size_t next = 0;
	int rc;

	if (argc != 3)
		return usage_error("%s", "verify needs LEDGER AUDITLOG");
	memset(&s, 0, sizeof(s));
	s.collect = 1;
	if (scan_file(argv[2], &s, err, sizeof(err)) < 0) {
		fprintf(stderr, "noordpoort ledger: %s\n", err);
		scan_free(&s);
		return 1;
	}
	qsort(s.d, s.n, sizeof(*s.d), by_id);
	rc = sqlite3_open_v2(argv[1], &db, SQLITE_OPEN_READONLY, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "SELECT ledger_id FROM ledger_meta", -1, &st, NULL);
	if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		snprintf(id, sizeof(id), "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	st = NULL;
	if (rc != SQLITE_OK || strlen(id) != 32) {
		fprintf(stderr, "noordpoort ledger: %s: not a budget ledger with an id (%s)\n", argv[1],
			db ? sqlite3_errmsg(db) : "cannot open");
		sqlite3_close(db);
		scan_free(&s);
		return 1;
	}
	printf("ledger %s, id %s\n", argv[1], id);
	if (strcmp(s.seen.last_id, id) != 0) {
		printf("problem: the audit log's ledger is %s, not this one\n",
		       s.seen.last_id[0] ? s.seen.last_id : "(none recorded)");
		problems++;
	}
	rc = sqlite3_prepare_v2(db, "SELECT id, requester, purpose, amount_micro FROM ledger_debit ORDER BY id",
				-1, &st, NULL);
	while (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
		int64_t did = sqlite3_column_int64(st, 0), amount = sqlite3_column_int64(st, 3);
		const char *req = (const char *)sqlite3_column_text(st, 1);
		const char *pur = (const char *)sqlite3_column_text(st, 2);
		const struct audit_debit *a = NULL;
		uint64_t micro = 0;

		debits++;
		while (next < s.n && s.d[next].id < did) {
			/* an id between two debits of the ledger (one equal to the
			 * previous debit was matched there) */
			if (strcmp(s.d[next].ledger, id) == 0 && s.d[next].id != last_did) {
				printf("problem: audit line %lu records debit %" PRId64 ", which the ledger does"
				       " not hold\n", s.d[next].line, s.d[next].id);
				problems++;
			}
			next++;
		}
		for (size_t k = next; k < s.n && s.d[k].id == did; k++)
			if (strcmp(s.d[k].ledger, id) == 0)
				a = &s.d[k];
		last_did = did;
		if (!a && req && pur) {
			const struct audit_intent *in = unanswered_intent(&s, id, req, pur, amount);

			/* The answer's own line failed (a full disk): the answer
			 * was withheld, and its intent names the debit. */
			if (in) {
				printf("note: debit %" PRId64 " (%s, %s, %" PRId64 " micro-epsilon) is recorded"
				       " by its intent only (audit line %lu, query %s): its answer could not be"
				       " recorded and was withheld\n", did, req, pur, amount, in->line,
				       in->query_id);
				by_intent++;
				continue;
			}
		}
		if (!a) {
			printf("problem: debit %" PRId64 " (%s, %s, %" PRId64 " micro-epsilon) has no audit"
			       " line\n", did, req ? req : "", pur ? pur : "", amount);
			problems++;
			continue;
		}
		if (!req || !pur || strcmp(a->requester, req) != 0 || strcmp(a->purpose, pur) != 0 ||
		    ledger_micro_up(a->epsilon, &micro) < 0 || (int64_t)micro != amount) {
			printf("problem: debit %" PRId64 " (%s, %s, %" PRId64 " micro-epsilon) differs from"
			       " audit line %lu (%s, %s, epsilon %g)\n", did, req ? req : "", pur ? pur : "",
			       amount, a->line, a->requester, a->purpose, a->epsilon);
			problems++;
		}
	}
	sqlite3_finalize(st);
	/* What is left of the audit log lies beyond the ledger's last debit. */
	for (; next < s.n; next++)
		if (strcmp(s.d[next].ledger, id) == 0 && s.d[next].id > last_did) {
			printf("problem: audit line %lu records debit %" PRId64 ", which the ledger does"
			       " not hold (rolled back?)\n", s.d[next].line, s.d[next].id);
			problems++;
		}
	sqlite3_close(db);
	scan_free(&s);
	if (problems) {
		printf("NOT CONSISTENT: %lu problem(s) over %lu debit(s)\n", problems, debits);
		return 1;
	}
	printf("ok: %lu debit(s), each recorded in the audit log with its requester, purpose and epsilon"
	       " (%lu by its intent line only)\n", debits, by_intent);
	return 0;
}

int ledger_cli(int argc, char **argv)
{
	if (argc < 2)
		return usage_error("%s", "missing command");
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
		fputs(usage_ledger, stdout);
		return 0;
	}
	/* "ledger init --help" prints the usage; any other option-looking
	 * argument is refused rather than taken for a file name (it made a
	 * ledger called "--help"). */
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			fputs(usage_ledger, stdout);
			return 0;
		}
		if (argv[i][0] == '-')
			return usage_error("unknown option '%s'", argv[i]);
	}
	if (strcmp(argv[1], "init") == 0)
		return cmd_init(argc - 1, argv + 1);
	if (strcmp(argv[1], "verify") == 0)
		return cmd_verify(argc - 1, argv + 1);
	return usage_error("unknown command '%s'", argv[1]);
}
