/*
 * `noordpoort policy check|test|explain|diff|sign|verify` and `noordpoort
 * keygen --sign`: the tools a privacy officer uses every day. The only file
 * in policies/ that prints. Usage errors exit 2 with one line.
 */
#include "../policies/internal.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

#include "cli.h"
#include "usage.h"
#include "../common/yamldoc.h"

#define MAX_FILES 256

static const char usage_policy[] =
	"Usage: noordpoort policy COMMAND [OPTIONS]\n"
	"\n"
	"Tools for the policy files that say what may leave an organisation, for\n"
	"which purpose, to whom and how coarse (docs/policy.md).\n"
	"\n"
	"Commands:\n"
	"  check [--members FILE] [--catalog FILE] FILE...   validate policy files\n"
	"  test [--policies FILE...] TESTFILE...              run policy test files\n"
	"  explain --as ORG --purpose P [--at DATE] --policies FILE... REQUEST.json\n"
	"                                                     explain one decision\n"
	"  diff OLD NEW                                       what NEW allows or forbids anew\n"
	"  sign --key KEY FILE...                             write FILE.sig\n"
	"  verify --pub PUB FILE...                           check FILE.sig\n"
	"\n"
	"Each command has --help. Keys: noordpoort keygen --sign --out PREFIX.\n";

static const char usage_check[] =
	"Usage: noordpoort policy check [--members FILE] [--catalog FILE | --no-catalog]\n"
	"                               FILE...\n"
	"\n"
	"Validates the policy FILEs as one set and prints every problem as\n"
	"file:line:col: error|warning: message. With --members, requesters and\n"
	"dataset owners must be members; with a catalog, datasets and fields must\n"
	"be in it. The catalog is --catalog FILE, a catalog.yaml among the FILEs,\n"
	"or else catalog.yaml next to the first policy FILE; the first output\n"
	"line says which one (or none). Purposes that expired or expire within 30 days are\n"
	"warnings (today is NOORDPOORT_NOW=YYYY-MM-DD if set).\n"
	"Exit status: 0 valid (warnings allowed), 1 errors, 2 usage.\n";

static const char usage_test[] =
	"Usage: noordpoort policy test [--policies FILE...] TESTFILE...\n"
	"\n"
	"Runs the cases of each TESTFILE (YAML: request -> expected decision) and\n"
	"prints 'ok - ...' or 'not ok - ...' per case; under a failed case, one\n"
	"'#   control: expected X; got Y' line per mismatched control and the\n"
	"decision as made. Then 'N passed, N failed' (cases). The policies are the\n"
	"TESTFILE's 'policies:' list (relative to it) unless --policies is given.\n"
	"Exit status: 0 all passed, 1 a case failed or a file is broken, 2 usage.\n";

static const char usage_explain[] =
	"Usage: noordpoort policy explain --as ORG --purpose P [--at YYYY-MM-DD]\n"
	"                                 --policies FILE... REQUEST.json\n"
	"\n"
	"Decides REQUEST.json ({\"operation\", \"datasets\", \"fields\",\n"
	"\"identifiers\"}, docs/policy.md) as if ORG asked it for purpose P on\n"
	"the given day (default: today), and says why: the deciding rule, the\n"
	"output controls, or for a deny the nearest grant and what it lacks.\n"
	"Exit status: 0 permit, 1 deny, 2 usage or unreadable input.\n";

static const char usage_diff[] =
	"Usage: noordpoort policy diff OLD NEW\n"
	"\n"
	"Says what NEW allows that OLD did not (listed first), what it forbids or\n"
	"tightens, and other changes, in plain words. Exit status: 0 no change in\n"
	"meaning, 1 changes, 2 usage or unreadable input.\n";

static const char usage_sign[] =
	"Usage: noordpoort policy sign --key KEY FILE...\n"
	"\n"
	"Signs each FILE with the Ed25519 secret key KEY (from 'noordpoort keygen\n"
	"--sign'), writing FILE.sig. KEY must not be readable by group or others.\n"
	"Each FILE needs 'serial:' and 'valid_until:'; the serial must be above the\n"
	"last one this key signed for a file of the same name, as recorded in\n"
	"KEY.serials (KEY without .sec) next to the key.\n";

static const char usage_verify[] =
	"Usage: noordpoort policy verify --pub PUB FILE...\n"
	"\n"
	"Checks FILE.sig against each FILE with the public key PUB, and prints each\n"
	"file's serial and valid_until. Exit status: 0 every signature good and\n"
	"every file acceptable to a gateway, 1 a signature bad or missing or a file\n"
	"without serial/valid_until or past its valid_until, 2 usage.\n";

static const char usage_keygen[] =
	"Usage: noordpoort keygen --sign --out PREFIX\n"
	"\n"
	"Makes an Ed25519 key pair for signing policies: PREFIX.sec (secret, mode\n"
	"0600; keep it with the privacy officer) and PREFIX.pub (give it to every\n"
	"gateway). Refuses to overwrite existing files.\n";

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
	return cli_usage_error("noordpoort", cmd, fmt, arg);
}

static int is_help(const char *a)
{
	return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0;
}

/* "Today" as unix seconds at 00:00 UTC: NOORDPOORT_NOW=YYYY-MM-DD, for tests. */
static int today(int64_t *out)
{
	const char *env = getenv("NOORDPOORT_NOW");

	if (env && *env)
		return policy_parse_date(env, out);
	*out = (int64_t)time(NULL) / 86400 * 86400;
	return 0;
}

static void print_diag(struct diag *d)
{
	fputs(diag_text(d), stderr);
	diag_clear(d);
}

/* Test output: problems as "#" lines under the case they belong to. */
static void print_diag_commented(struct diag *d)
{
	const char *l = diag_text(d);

	while (*l) {
		const char *nl = strchr(l, '\n');
		int n = nl ? (int)(nl - l) : (int)strlen(l);

		printf("#   %.*s\n", n, l);
		l += n + (nl ? 1 : 0);
	}
	diag_clear(d);
}

/* ---- reference files ---- */

/* The member ids of a members file (docs/config.md); the rest is not read here. */
static int load_member_ids(const char *path, struct pol_block **a, const char ***ids, size_t *n,
			   struct diag *d)
{
	struct ydoc y;
	yaml_node_t *root, *list = NULL;
	int rc = -1;

	*n = 0;
	if (ydoc_load_file(&y, path, d) < 0)
		goto out;
	root = ydoc_root(&y);
	for (yaml_node_pair_t *p = root->type == YAML_MAPPING_NODE ? root->data.mapping.pairs.start : NULL;
	     p && p < root->data.mapping.pairs.top; p++) {
		yaml_node_t *k = ydoc_item(&y, p->key);

		if (k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, "members") == 0)
			list = ydoc_item(&y, p->value);
	}
	if (!list || list->type != YAML_SEQUENCE_NODE) {
		ydoc_error(&y, root, "not a members file: expected 'members:' with a list");
		goto out;
	}
	*ids = pol_alloc(a, (size_t)(list->data.sequence.items.top - list->data.sequence.items.start + 1) *
			    sizeof(**ids));
	if (!*ids)
		goto out;
	for (yaml_node_item_t *it = list->data.sequence.items.start; it < list->data.sequence.items.top; it++) {
		yaml_node_t *m = ydoc_item(&y, *it);

		for (yaml_node_pair_t *p = m->type == YAML_MAPPING_NODE ? m->data.mapping.pairs.start : NULL;
		     p && p < m->data.mapping.pairs.top; p++) {
			yaml_node_t *k = ydoc_item(&y, p->key), *v = ydoc_item(&y, p->value);

			if (k->type == YAML_SCALAR_NODE && v->type == YAML_SCALAR_NODE &&
			    strcmp((const char *)k->data.scalar.value, "id") == 0 &&
			    ((*ids)[*n] = pol_strdup(a, (const char *)v->data.scalar.value)))
				(*n)++;
		}
	}
	rc = 0;
out:
	ydoc_fini(&y);
	return rc;
}

/* ---- requests built from test files and REQUEST.json ---- */

struct req {
	struct policy_request r;
	struct policy_field f[POLICY_MAX_FIELDS];
	const char *ds[POLICY_MAX_FIELDS];
	struct pol_block *a;
};

static int add_dataset(struct req *q, const char *ds)
{
	for (size_t i = 0; i < q->r.ndatasets; i++)
		if (strcmp(q->ds[i], ds) == 0)
			return 0;
	if (q->r.ndatasets == POLICY_MAX_FIELDS)
		return -1;
	if (!(q->ds[q->r.ndatasets] = pol_strdup(&q->a, ds)))
		return -1;
	q->r.ndatasets++;
	return 0;
}

/* "DATASET.FIELD" or "DATASET.FIELD as GENERALISATION". */
static int add_field(struct req *q, const char *s, char *err, size_t errlen)
{
	char *copy = pol_strdup(&q->a, s), *as, *dot;
	struct policy_field *f = &q->f[q->r.nfields];

	if (!copy || q->r.nfields == POLICY_MAX_FIELDS) {
		snprintf(err, errlen, "too many fields (at most %d)", POLICY_MAX_FIELDS);
		return -1;
	}
	f->gen = POLICY_GEN_NONE;
	if ((as = strstr(copy, " as "))) {
		*as = '\0';
		if (policy_gen_parse(as + 4, &f->gen) < 0) {
			snprintf(err, errlen, "field '%s': unknown generalisation '%s'", s, as + 4);
			return -1;
		}
	}
	if (!(dot = strrchr(copy, '.')) || dot == copy || !dot[1]) {
		snprintf(err, errlen, "field '%s' is not DATASET.FIELD, like uwv/ww-uitkeringen.end_reason", s);
		return -1;
	}
	*dot = '\0';
	f->dataset = copy;
	f->field = dot + 1;
	q->r.nfields++;
	return 0;
}

/* A request that lists no datasets uses those its fields name. */
static int complete(struct req *q)
{
	int listed = q->r.ndatasets != 0;

	for (size_t i = 0; !listed && i < q->r.nfields; i++)
		if (add_dataset(q, q->f[i].dataset) < 0)
			return -1;
	q->r.datasets = q->ds;
	q->r.fields = q->f;
	return 0;
}

static int parse_json_request(const char *path, struct req *q, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char buf[65536];
	size_t n;
	cJSON *j = NULL, *x;
	int rc = -1;

	if (!f) {
		snprintf(err, errlen, "%s: cannot open", path);
		return -1;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if (!(j = cJSON_ParseWithLength(buf, n)) || !cJSON_IsObject(j)) {
		snprintf(err, errlen, "%s: not a JSON object", path);
		goto out;
	}
	x = cJSON_GetObjectItemCaseSensitive(j, "operation");
	if (!cJSON_IsString(x) || policy_op_parse(x->valuestring, &q->r.operation) < 0) {
		snprintf(err, errlen, "%s: \"operation\" must be \"lookup\", \"aggregate\" or \"linked_aggregate\"", path);
		goto out;
	}
	x = cJSON_GetObjectItemCaseSensitive(j, "identifiers");
	if (x && (!cJSON_IsString(x) || policy_ident_parse(x->valuestring, &q->r.identifiers) < 0)) {
		snprintf(err, errlen, "%s: \"identifiers\" must be \"never\", \"pseudonym\" or \"bsn\"", path);
		goto out;
	}
	x = cJSON_GetObjectItemCaseSensitive(j, "datasets");
	if (x && !cJSON_IsArray(x)) {
		snprintf(err, errlen, "%s: \"datasets\" must be a list of dataset ids", path);
		goto out;
	}
	for (cJSON *e = x ? x->child : NULL; e; e = e->next) {
		if (!cJSON_IsString(e) || add_dataset(q, e->valuestring) < 0) {
			snprintf(err, errlen, "%s: \"datasets\" must be a list of dataset ids", path);
			goto out;
		}
	}
	x = cJSON_GetObjectItemCaseSensitive(j, "fields");
	if (x && !cJSON_IsArray(x)) {
		snprintf(err, errlen, "%s: \"fields\" must be a list like [\"uwv/ww-uitkeringen.end_reason\"]", path);
		goto out;
	}
	for (cJSON *e = x ? x->child : NULL; e; e = e->next) {
		if (!cJSON_IsString(e)) {
			snprintf(err, errlen, "%s: \"fields\" must be a list of strings", path);
			goto out;
		}
		char ferr[300];

		if (add_field(q, e->valuestring, ferr, sizeof(ferr)) < 0) {
			snprintf(err, errlen, "%s: %s", path, ferr);
			goto out;
		}
	}
	rc = complete(q);
	if (rc < 0)
		snprintf(err, errlen, "%s: too many datasets", path);
out:
	cJSON_Delete(j);
	return rc;
}

/* ---- check ---- */

static const char *ends_test(const char *s)
{
	size_t n = strlen(s);

	return (n > 10 && strcmp(s + n - 10, ".test.yaml") == 0) ||
	       (n > 9 && strcmp(s + n - 9, ".test.yml") == 0) ? s : NULL;
}

/* A file named catalog.yaml is the dataset catalog, not a policy. */
static int is_catalog(const char *s)
{
	const char *base = strrchr(s, '/') ? strrchr(s, '/') + 1 : s;

	return strcmp(base, "catalog.yaml") == 0 || strcmp(base, "catalog.yml") == 0;
}

/*
 * The catalog a node keeps next to its policies: catalog.yaml (or .yml) in
 * the folder of the first policy file. Written into |buf|; 0 when found.
 * Checking against it by default means a field name the catalog does not
 * know is caught by the officer, not by the node at load time.
 */
static int catalog_beside(const char *policy, char *buf, size_t len)
{
	static const char *const names[] = { "catalog.yaml", "catalog.yml" };
	const char *slash = strrchr(policy, '/');
	int dirlen = slash ? (int)(slash - policy) + 1 : 0;
	struct stat st;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int w = snprintf(buf, len, "%.*s%s", dirlen, policy, names[i]);

		if (w > 0 && (size_t)w < len && stat(buf, &st) == 0 && S_ISREG(st.st_mode))
			return 0;
	}
	return -1;
}

static int cmd_check(int argc, char **argv)
{
	const char *files[MAX_FILES], *members = NULL, *catalog = NULL;
	char beside[4096];
	int no_catalog = 0;
	struct policy_refs refs = { 0 };
	struct policy_catalog *cat = NULL;
	struct policy_set *s = NULL;
	struct pol_block *a = NULL;
	struct diag d = { 0 };
	size_t n = 0;
	int rc = 1;

	for (int i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			fputs(usage_check, stdout);
			return 0;
		} else if (strcmp(argv[i], "--members") == 0 || strcmp(argv[i], "--catalog") == 0) {
			if (i + 1 >= argc)
				return usage_error("policy check", "%s needs a file", argv[i]);
			*(argv[i][2] == 'm' ? &members : &catalog) = argv[i + 1];
			i++;
		} else if (strcmp(argv[i], "--no-catalog") == 0) {
			no_catalog = 1;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			return usage_error("policy check", "unknown option '%s'", argv[i]);
		} else if (n == MAX_FILES) {
			return usage_error("policy check", "%s", "too many files");
		} else if (ends_test(argv[i])) {
			continue; /* so a glob over examples works; 'policy test' runs these */
		} else if (is_catalog(argv[i]) && !catalog) {
			catalog = argv[i];
		} else if (!is_catalog(argv[i])) {
			files[n++] = argv[i];
		}
	}
	if (n == 0)
		return usage_error("policy check", "%s", "no policy files given");
	if (no_catalog && catalog)
		return usage_error("policy check", "%s", "--no-catalog and a catalog given together");
	if (!catalog && !no_catalog && catalog_beside(files[0], beside, sizeof(beside)) == 0)
		catalog = beside;
	if (today(&refs.now) < 0)
		return usage_error("policy check", "NOORDPOORT_NOW='%s' is not YYYY-MM-DD", getenv("NOORDPOORT_NOW"));
	if (members) {
		const char **ids = NULL;

		if (load_member_ids(members, &a, &ids, &refs.nmembers, &d) < 0)
			goto out;
		refs.members = ids;
		refs.unknown_member_is_error = 1;
	}
	if (catalog)
		printf("catalog: %s%s\n", catalog,
		       catalog == beside ? " (next to the policy file)" : "");
	else
		printf("catalog: none (datasets and fields not checked)\n");
	fflush(stdout); /* before the problems, which go to stderr */
	if (catalog && policy_catalog_load(catalog, &cat, &d) < 0)
		goto out;
	refs.catalog = cat;
	if (policy_set_load(files, n, &refs, &s, &d) == 0) {
		size_t np = s->npurposes, ng = 0, nf = s->nforbids;

		for (size_t i = 0; i < s->npurposes; i++) {
			ng += s->purposes[i].ngrants;
			nf += s->purposes[i].nforbids;
		}
		print_diag(&d);
		printf("ok: %zu file%s, %zu purpose%s, %zu grant%s, %zu forbid rule%s; sha256 %s\n", n,
		       n == 1 ? "" : "s", np, np == 1 ? "" : "s", ng, ng == 1 ? "" : "s", nf,
		       nf == 1 ? "" : "s", policy_set_hash(s));
		rc = 0;
	}
out:
	if (rc) {
		int e = d.errors, w = d.warnings;

		print_diag(&d);
		printf("%d error%s, %d warning%s\n", e, e == 1 ? "" : "s", w, w == 1 ? "" : "s");
	}
	policy_set_free(s);
	policy_catalog_free(cat);
	pol_arena_free(a);
	diag_clear(&d);
	return rc;
}

/* ---- test ---- */

struct tally {
	int passed, failed;
};

/* Parses one case's request into |q|; 0 or -1 with the reason in |d|. */
static int case_request(struct ydoc *y, yaml_node_t *n, const char *what, struct req *q)
{
	struct ykey k[] = {
		{ "as", 1, NULL }, { "purpose", 1, NULL }, { "operation", 1, NULL }, { "at", 1, NULL },
		{ "datasets", 0, NULL }, { "fields", 0, NULL }, { "identifiers", 0, NULL },
	};
	const char *s;
	char err[400];
	int bad = ydoc_map(y, n, what, k, 7) < 0;

	if (bad)
		return -1;
	if (!(s = ydoc_str(y, k[0].value, "as")) || !(q->r.requester = pol_strdup(&q->a, s)))
		bad = 1;
	if (!(s = ydoc_str(y, k[1].value, "purpose")) || !(q->r.purpose = pol_strdup(&q->a, s)))
		bad = 1;
	if ((s = ydoc_str(y, k[2].value, "operation")) && policy_op_parse(s, &q->r.operation) < 0) {
		ydoc_error(y, k[2].value, "%s.operation: unknown operation '%s'", what, s);
		bad = 1;
	}
	if ((s = ydoc_str(y, k[3].value, "at")) && policy_parse_date(s, &q->r.time) < 0) {
		ydoc_error(y, k[3].value, "%s.at: '%s' is not a date like 2025-06-01", what, s);
		bad = 1;
	}
	q->r.time += 12 * 3600; /* a day means its midday, UTC */
	if (k[6].value && (s = ydoc_str(y, k[6].value, "identifiers")) &&
	    policy_ident_parse(s, &q->r.identifiers) < 0) {
		ydoc_error(y, k[6].value, "%s.identifiers: expected never, pseudonym or bsn", what);
		bad = 1;
	}
	for (int l = 4; l <= 5; l++) {
		yaml_node_t *list = k[l].value;

		if (!list)
			continue;
		if (list->type != YAML_SEQUENCE_NODE) {
			ydoc_error(y, list, "%s.%s: expected a list", what, k[l].name);
			bad = 1;
			continue;
		}
		for (yaml_node_item_t *it = list->data.sequence.items.start; it < list->data.sequence.items.top; it++) {
			yaml_node_t *e = ydoc_item(y, *it);

			if (!(s = ydoc_str(y, e, k[l].name))) {
				bad = 1;
			} else if (l == 4 ? add_dataset(q, s) < 0 : add_field(q, s, err, sizeof(err)) < 0) {
				ydoc_error(y, e, "%s.%s: %s", what, k[l].name, l == 4 ? "too many datasets" : err);
				bad = 1;
			}
		}
	}
	if (!bad && complete(q) < 0) {
		ydoc_error(y, n, "%s: too many datasets", what);
		bad = 1;
	}
	return bad ? -1 : 0;
}

/*
 * The mismatches of one case, one "#   control: expected X; got Y" line
 * each: an officer fixing a policy sees everything a case disagrees with
 * at once, not one control per run.
 */
struct misses {
	char text[2048];
	size_t len;
	int n;
};

static void miss(struct misses *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void miss(struct misses *m, const char *fmt, ...)
{
	va_list ap;
	int w;

	m->n++;
	if (m->len >= sizeof(m->text))
		return;
	va_start(ap, fmt);
	w = vsnprintf(m->text + m->len, sizeof(m->text) - m->len, fmt, ap);
	va_end(ap);
	if (w > 0)
		m->len = m->len + (size_t)w < sizeof(m->text) ? m->len + (size_t)w : sizeof(m->text);
}

/* Compares the expected output controls with |dec|'s; -1 if malformed. */
static int expect_output(struct ydoc *y, yaml_node_t *n, const struct policy_decision *dec,
			 struct misses *m)
{
	struct ykey k[] = {
		{ "min_cell", 0, NULL }, { "epsilon", 0, NULL }, { "round_to", 0, NULL },
		{ "max_cells_per_person", 0, NULL }, { "identifiers", 0, NULL }, { "budget_epsilon", 0, NULL },
	};
	const struct policy_output *o = &dec->out;
	const char *s;

	if (ydoc_map(y, n, "output", k, 6) < 0)
		return -1;
	if (k[0].value && (s = ydoc_str(y, k[0].value, "min_cell")) && strtoul(s, NULL, 10) != o->min_cell)
		miss(m, "#   output.min_cell: expected %s; got %u\n", s, o->min_cell);
	if (k[1].value && (s = ydoc_str(y, k[1].value, "epsilon"))) {
		int want_none = strcmp(s, "none") == 0;

		if (want_none ? o->noise : (!o->noise || strtod(s, NULL) != o->epsilon)) {
			if (o->noise)
				miss(m, "#   output.epsilon: expected %s; got %g\n", s, o->epsilon);
			else
				miss(m, "#   output.epsilon: expected %s; got none\n", s);
		}
	}
	if (k[2].value && (s = ydoc_str(y, k[2].value, "round_to")) && strtoul(s, NULL, 10) != o->round_to)
		miss(m, "#   output.round_to: expected %s; got %u\n", s, o->round_to);
	if (k[3].value && (s = ydoc_str(y, k[3].value, "max_cells_per_person")) &&
	    strtoul(s, NULL, 10) != o->max_cells_per_person)
		miss(m, "#   output.max_cells_per_person: expected %s; got %u\n", s, o->max_cells_per_person);
	if (k[4].value && (s = ydoc_str(y, k[4].value, "identifiers")) &&
	    strcmp(s, policy_ident_name(o->identifiers)) != 0)
		miss(m, "#   output.identifiers: expected %s; got %s\n", s, policy_ident_name(o->identifiers));
	if (k[5].value && (s = ydoc_str(y, k[5].value, "budget_epsilon")) &&
	    (strcmp(s, "none") == 0 ? o->has_budget : (!o->has_budget || strtod(s, NULL) != o->budget_epsilon))) {
		if (o->has_budget)
			miss(m, "#   output.budget_epsilon: expected %s; got %g\n", s, o->budget_epsilon);
		else
			miss(m, "#   output.budget_epsilon: expected %s; got none\n", s);
	}
	return 0;
}

/* Runs one case; prints its line, and one line per mismatched control. */
static void run_case(struct ydoc *y, yaml_node_t *n, size_t idx, const struct policy_set *s,
		     const char *file, struct tally *t)
{
	struct ykey k[] = {
		{ "name", 1, NULL }, { "request", 1, NULL }, { "expect", 1, NULL },
	};
	struct ykey ek[] = {
		{ "decision", 1, NULL }, { "rule", 0, NULL }, { "reason", 0, NULL }, { "output", 0, NULL },
	};
	struct req q = { 0 };
	struct policy_decision dec;
	struct misses m = { .len = 0 };
	char what[64];
	const char *name = NULL, *want, *x;
	enum policy_reason reason;
	int errors = y->d->errors;

	snprintf(what, sizeof(what), "cases[%zu]", idx);
	if (ydoc_map(y, n, what, k, 3) == 0 && (name = ydoc_str(y, k[0].value, "name")) &&
	    case_request(y, k[1].value, "request", &q) == 0 && ydoc_map(y, k[2].value, "expect", ek, 4) == 0) {
		policy_decide(s, &q.r, &dec);
		want = ydoc_str(y, ek[0].value, "decision");
		if (want && strcmp(want, "permit") != 0 && strcmp(want, "deny") != 0)
			ydoc_error(y, ek[0].value, "expect.decision: expected permit or deny, found '%s'", want);
		else if (want && (strcmp(want, "permit") == 0) != dec.permit)
			miss(&m, "#   decision: expected %s; got %s (%s)\n", want,
			     dec.permit ? "permit" : "deny", policy_reason_name(dec.reason));
		if (ek[2].value && (x = ydoc_str(y, ek[2].value, "reason"))) {
			if (policy_reason_parse(x, &reason) < 0)
				ydoc_error(y, ek[2].value, "expect.reason: unknown reason '%s' (see docs/policy.md)", x);
			else if (reason != dec.reason)
				miss(&m, "#   reason: expected %s; got %s\n", x, policy_reason_name(dec.reason));
		}
		if (ek[1].value && (x = ydoc_str(y, ek[1].value, "rule")) && strcmp(x, dec.rule) != 0)
			miss(&m, "#   rule: expected '%s'; got %s%s%s\n", x, dec.rule[0] ? "'" : "",
			     dec.rule[0] ? dec.rule : "none", dec.rule[0] ? "'" : "");
		/* Output controls exist only on a permit; a deny is already a line above. */
		if (ek[3].value && dec.permit)
			expect_output(y, ek[3].value, &dec, &m);
	}
	if (y->d->errors != errors) {
		t->failed++;
		printf("not ok - %s: %s (the case is malformed)\n", file, name ? name : what);
		print_diag_commented(y->d);
	} else if (m.n) {
		t->failed++;
		printf("not ok - %s: %s\n", file, name);
		fputs(m.text, stdout);
		if (m.len >= sizeof(m.text) - 1)
			printf("#   (more mismatches than fit here)\n");
		printf("#   the decision: %s (%s)%s%s%s: %s\n", dec.permit ? "permit" : "deny",
		       policy_reason_name(dec.reason), dec.rule[0] ? " by '" : "", dec.rule,
		       dec.rule[0] ? "'" : "", dec.message);
	} else {
		t->passed++;
		printf("ok - %s: %s\n", file, name);
	}
	pol_arena_free(q.a);
}

/* Paths in a test file are relative to its folder. */
static char *relative(struct pol_block **a, const char *testfile, const char *path)
{
	const char *slash = strrchr(testfile, '/');
	size_t dl = slash ? (size_t)(slash - testfile) + 1 : 0;
	char *p;

	if (path[0] == '/' || dl == 0)
		return pol_strdup(a, path);
	if (!(p = pol_alloc(a, dl + strlen(path) + 1)))
		return NULL;
	memcpy(p, testfile, dl);
	strcpy(p + dl, path);
	return p;
}

static void run_test_file(const char *file, const char *const *policies, size_t npolicies, struct tally *t)
{
	struct ykey k[] = { { "policies", 0, NULL }, { "cases", 1, NULL } };
	const char *files[MAX_FILES];
	struct pol_block *a = NULL;
	struct policy_set *s = NULL;
	struct diag d = { 0 };
	struct ydoc y;
	size_t n = 0;

	if (ydoc_load_file(&y, file, &d) < 0 || ydoc_map(&y, ydoc_root(&y), "test file", k, 2) < 0)
		goto broken;
	if (npolicies) {
		memcpy(files, policies, npolicies * sizeof(*files));
		n = npolicies;
	} else if (!k[0].value) {
		ydoc_error(&y, ydoc_root(&y), "test file: say which policies it tests with 'policies: [FILE, ...]'");
		goto broken;
	} else {
		yaml_node_t *l = k[0].value;

		if (l->type != YAML_SEQUENCE_NODE) {
			ydoc_error(&y, l, "policies: expected a list of files");
			goto broken;
		}
		for (yaml_node_item_t *it = l->data.sequence.items.start; it < l->data.sequence.items.top && n < MAX_FILES; it++) {
			const char *p = ydoc_str(&y, ydoc_item(&y, *it), "policies");

			if (!p || !(files[n++] = relative(&a, file, p)))
				goto broken;
		}
	}
	if (k[1].value->type != YAML_SEQUENCE_NODE) {
		ydoc_error(&y, k[1].value, "cases: expected a list of cases");
		goto broken;
	}
	if (policy_set_load(files, n, NULL, &s, &d) < 0)
		goto broken;
	diag_clear(&d); /* warnings belong to 'policy check' */
	for (size_t i = 0; i < (size_t)(k[1].value->data.sequence.items.top - k[1].value->data.sequence.items.start); i++)
		run_case(&y, ydoc_item(&y, k[1].value->data.sequence.items.start[i]), i, s, file, t);
	goto out;
broken:
	t->failed++;
	printf("not ok - %s: cannot run this test file\n", file);
	print_diag_commented(&d);
out:
	ydoc_fini(&y);
	policy_set_free(s);
	pol_arena_free(a);
	diag_clear(&d);
}

static int cmd_test(int argc, char **argv)
{
	const char *policies[MAX_FILES], *tests[MAX_FILES];
	size_t np = 0, nt = 0;
	struct tally t = { 0, 0 };
	int in_policies = 0;

	for (int i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			fputs(usage_test, stdout);
			return 0;
		} else if (strcmp(argv[i], "--policies") == 0) {
			in_policies = 1;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			return usage_error("policy test", "unknown option '%s'", argv[i]);
		} else if (np == MAX_FILES || nt == MAX_FILES) {
			return usage_error("policy test", "%s", "too many files");
		} else if (in_policies && !ends_test(argv[i])) {
			policies[np++] = argv[i];
		} else {
			in_policies = 0;
			tests[nt++] = argv[i];
		}
	}
	if (nt == 0)
		return usage_error("policy test", "%s", "no test files given");
	for (size_t i = 0; i < nt; i++)
		run_test_file(tests[i], policies, np, &t);
	printf("%d passed, %d failed\n", t.passed, t.failed);
	return t.failed ? 1 : 0;
}

/* ---- explain ---- */

static void print_output(const struct policy_output *o)
{
	printf("  min_cell %u: a cell with fewer than %u people is suppressed\n", o->min_cell, o->min_cell);
	if (o->noise)
		printf("  noise: discrete Laplace, epsilon %g per query\n", o->epsilon);
	else
		printf("  noise: none\n");
	if (o->round_to > 1)
		printf("  counts are rounded to a multiple of %u\n", o->round_to);
	printf("  each person counts in at most %u cell%s\n", o->max_cells_per_person,
	       o->max_cells_per_person == 1 ? "" : "s");
	if (o->has_budget)
		printf("  privacy budget: epsilon %g per %s for this requester and purpose\n", o->budget_epsilon,
		       policy_period_name(o->budget_per));
	printf("  identifiers returned: %s\n", o->identifiers == POLICY_IDENT_NEVER ? "none"
	       : o->identifiers == POLICY_IDENT_PSEUDONYM ? "a pseudonym, never the BSN" : "the BSN");
	printf("  if a node fails: %s\n", o->partial_ok ? "partial answer" : "no answer");
}

static void print_grant(const struct pol_grant *g)
{
	char ops[64] = "";
	size_t used = 0;

	for (unsigned b = 1; b <= POLICY_OP_LINKED_AGGREGATE; b <<= 1)
		if (g->ops & b)
			used += (size_t)snprintf(ops + used, sizeof(ops) - used, "%s%s", used ? ", " : "",
						 policy_op_name(b));
	printf("Nearest grant: '%s' (%s:%u)\n", g->id, g->pos.file, g->pos.line);
	printf("  requesters: ");
	for (size_t i = 0; i < g->nrequesters; i++)
		printf("%s%s", i ? ", " : "", g->requesters[i]);
	printf("\n  operations: %s\n", ops);
	for (size_t i = 0; i < g->ndatasets; i++) {
		printf("  %s: ", g->datasets[i].id);
		for (size_t j = 0; j < g->datasets[i].nfields; j++) {
			const struct pol_field *f = &g->datasets[i].fields[j];

			printf("%s%s", j ? ", " : "", f->name);
			if (f->gen != POLICY_GEN_EXACT)
				printf(" (as %s or coarser)", policy_gen_name(f->gen));
		}
		printf("\n");
	}
}

static const struct pol_grant *find_grant(const struct policy_set *s, const char *id)
{
	for (size_t i = 0; i < s->npurposes; i++)
		for (size_t j = 0; j < s->purposes[i].ngrants; j++)
			if (strcmp(s->purposes[i].grants[j].id, id) == 0)
				return &s->purposes[i].grants[j];
	return NULL;
}

static const struct pol_forbid *find_forbid(const struct policy_set *s, const char *id)
{
	for (size_t i = 0; i < s->nforbids; i++)
		if (strcmp(s->forbids[i].id, id) == 0)
			return &s->forbids[i];
	for (size_t i = 0; i < s->npurposes; i++)
		for (size_t j = 0; j < s->purposes[i].nforbids; j++)
			if (strcmp(s->purposes[i].forbids[j].id, id) == 0)
				return &s->purposes[i].forbids[j];
	return NULL;
}

static void explain(const struct policy_set *s, const struct req *q, const struct policy_decision *dec)
{
	char day[11];
	const struct pol_purpose *p = NULL;

	for (size_t i = 0; i < s->npurposes; i++)
		if (strcmp(s->purposes[i].id, q->r.purpose) == 0)
			p = &s->purposes[i];
	pol_date_str(q->r.time, day);
	printf("Decision: %s (%s)\n", dec->permit ? "PERMIT" : "DENY", policy_reason_name(dec->reason));
	printf("Request: %s asks '%s' (%s) on %s\n", q->r.requester, q->r.purpose,
	       policy_op_name(q->r.operation), day);
	for (size_t i = 0; i < q->r.nfields; i++)
		printf("  uses field '%s' of '%s'%s%s\n", q->f[i].field, q->f[i].dataset,
		       q->f[i].gen == POLICY_GEN_NONE ? "" : " as ",
		       q->f[i].gen == POLICY_GEN_NONE ? "" : policy_gen_name(q->f[i].gen));
	if (p) {
		printf("Purpose: %s\n  %s\n  legal basis: %s%s%s%s\n  valid from %s until %s (inclusive, UTC)\n",
		       p->id, p->description, p->legal_basis, p->register_ref ? " (register: " : "",
		       p->register_ref ? p->register_ref : "", p->register_ref ? ")" : "", p->from_s, p->until_s);
	}
	printf("Why: %s\n", dec->message);
	if (dec->permit) {
		const struct pol_grant *g = find_grant(s, dec->rule);

		printf("Deciding rule: grant '%s'", dec->rule);
		if (g)
			printf(" (%s:%u)", g->pos.file, g->pos.line);
		printf("\nOutput controls%s:\n", dec->napplied > 1 ? " (the strictest of the grants that apply)" : "");
		print_output(&dec->out);
		for (size_t i = 0; i < q->r.nfields; i++)
			if (dec->gen[i] != POLICY_GEN_EXACT)
				printf("  field '%s' of '%s' is given as %s\n", q->f[i].field, q->f[i].dataset,
				       policy_gen_name(dec->gen[i]));
	} else if (dec->reason == POLICY_FORBIDDEN) {
		const struct pol_forbid *f = find_forbid(s, dec->rule);

		printf("Deciding rule: forbid '%s'", dec->rule);
		if (f)
			printf(" (%s:%u)", f->pos.file, f->pos.line);
		printf("\nA forbid overrides every grant.\n");
	} else if (dec->nearest[0]) {
		const struct pol_grant *g = find_grant(s, dec->nearest);
		const char *m = dec->missing;

		if (g)
			print_grant(g);
		printf("What that grant lacks for this request:\n");
		while (m && *m) {
			const char *sep = strstr(m, "; ");
			int len = sep ? (int)(sep - m) : (int)strlen(m);

			printf("  - %.*s\n", len, m);
			m = sep ? sep + 2 : NULL;
		}
	}
	printf("Policy set: sha256 %s\n", dec->policy_hash);
}

static int cmd_explain(int argc, char **argv)
{
	const char *files[MAX_FILES], *as = NULL, *purpose = NULL, *at = NULL;
	size_t n = 0;
	struct req q = { 0 };
	struct policy_set *s = NULL;
	struct policy_decision dec;
	struct diag d = { 0 };
	char err[600];
	int rc = 2;

	for (int i = 1; i < argc; i++) {
		const char **opt = NULL;

		if (is_help(argv[i])) {
			fputs(usage_explain, stdout);
			return 0;
		}
		if (strcmp(argv[i], "--as") == 0)
			opt = &as;
		else if (strcmp(argv[i], "--purpose") == 0)
			opt = &purpose;
		else if (strcmp(argv[i], "--at") == 0)
			opt = &at;
		if (opt) {
			if (i + 1 >= argc)
				return usage_error("policy explain", "%s needs a value", argv[i]);
			*opt = argv[++i];
		} else if (strcmp(argv[i], "--policies") == 0) {
			continue;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			return usage_error("policy explain", "unknown option '%s'", argv[i]);
		} else if (n == MAX_FILES) {
			return usage_error("policy explain", "%s", "too many files");
		} else {
			files[n++] = argv[i];
		}
	}
	/* The last file is the request; every other one is a policy. */
	if (!as || !purpose)
		return usage_error("policy explain", "%s", "--as ORG and --purpose P are required");
	if (n < 2)
		return usage_error("policy explain", "%s", "needs --policies FILE... and REQUEST.json");
	if (at ? policy_parse_date(at, &q.r.time) < 0 : today(&q.r.time) < 0)
		return usage_error("policy explain", "'%s' is not a date like 2025-06-01", at ? at : getenv("NOORDPOORT_NOW"));
	q.r.time += 12 * 3600; /* midday: a day-granular question is inside that day */
	q.r.requester = as;
	q.r.purpose = purpose;
	if (parse_json_request(files[n - 1], &q, err, sizeof(err)) < 0) {
		fprintf(stderr, "noordpoort policy explain: %s\n", err);
		goto out;
	}
	if (policy_set_load(files, n - 1, NULL, &s, &d) < 0) {
		print_diag(&d);
		goto out;
	}
	policy_decide(s, &q.r, &dec);
	explain(s, &q, &dec);
	rc = dec.permit ? 0 : 1;
out:
	policy_set_free(s);
	pol_arena_free(q.a);
	diag_clear(&d);
	return rc;
}

/* ---- diff ---- */

static void print_lines(const char *title, const char *mark, const struct pol_text *t)
{
	const char *l = t->buf;

	if (!t->len)
		return;
	printf("%s\n", title);
	while (l && *l) {
		const char *nl = strchr(l, '\n');

		printf("  %s %.*s\n", mark, (int)(nl ? nl - l : (long)strlen(l)), l);
		l = nl ? nl + 1 : NULL;
	}
}

static int cmd_diff(int argc, char **argv)
{
	struct policy_set *o = NULL, *n = NULL;
	struct pol_text loose = { 0 }, tight = { 0 }, other = { 0 };
	struct diag d = { 0 };
	const char *files[2];
	int nf = 0, rc = 2;

	for (int i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			fputs(usage_diff, stdout);
			return 0;
		}
		if (argv[i][0] == '-' && argv[i][1])
			return usage_error("policy diff", "unknown option '%s'", argv[i]);
		if (nf == 2)
			return usage_error("policy diff", "%s", "takes exactly two files, OLD and NEW");
		files[nf++] = argv[i];
	}
	if (nf != 2)
		return usage_error("policy diff", "%s", "takes exactly two files, OLD and NEW");
	if (policy_set_load(&files[0], 1, NULL, &o, &d) < 0 || policy_set_load(&files[1], 1, NULL, &n, &d) < 0) {
		print_diag(&d);
		goto out;
	}
	rc = pol_diff(o, n, &loose, &tight, &other);
	if (rc < 0) {
		fprintf(stderr, "noordpoort policy diff: out of memory\n");
		rc = 2;
		goto out;
	}
	if (rc == 0) {
		printf("No change in what is allowed%s.\n", strcmp(policy_set_hash(o), policy_set_hash(n)) == 0
		       ? " (the files are identical)" : " (only comments, order or layout differ)");
		goto out;
	}
	printf("Changes from %s to %s:\n", files[0], files[1]);
	print_lines("Newly allowed or loosened:", "+", &loose);
	print_lines("Newly forbidden or tightened:", "-", &tight);
	print_lines("Other changes:", "*", &other);
	rc = 1;
out:
	pol_text_free(&loose);
	pol_text_free(&tight);
	pol_text_free(&other);
	policy_set_free(o);
	policy_set_free(n);
	diag_clear(&d);
	return rc;
}

/* ---- sign, verify, keygen ---- */

static int key_and_files(const char *cmd, const char *opt, const char *usage, int argc, char **argv,
			 const char **key, const char **files, size_t *n)
{
	*key = NULL;
	*n = 0;
	for (int i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			fputs(usage, stdout);
			return 1;
		}
		if (strcmp(argv[i], opt) == 0) {
			if (i + 1 >= argc)
				return usage_error(cmd, "%s needs a file", opt);
			*key = argv[++i];
		} else if (argv[i][0] == '-' && argv[i][1]) {
			return usage_error(cmd, "unknown option '%s'", argv[i]);
		} else if (*n == MAX_FILES) {
			return usage_error(cmd, "%s", "too many files");
		} else {
			files[(*n)++] = argv[i];
		}
	}
	if (!*key)
		return usage_error(cmd, "%s FILE is required", opt);
	if (*n == 0)
		return usage_error(cmd, "%s", "no files given");
	return 0;
}

static int cmd_sign(int argc, char **argv)
{
	const char *key, *files[MAX_FILES];
	size_t n;
	char err[600];
	int rc = key_and_files("policy sign", "--key", usage_sign, argc, argv, &key, files, &n);

	if (rc)
		return rc == 1 ? 0 : rc;
	for (size_t i = 0; i < n; i++) {
		struct policy_file_info fi;

		if (policy_sign_file(files[i], key, &fi, err, sizeof(err)) < 0) {
			fprintf(stderr, "noordpoort policy sign: %s\n", err);
			return 1;
		}
		printf("signed %s: %s.sig (serial %llu, valid until %s)\n", files[i], files[i],
		       (unsigned long long)fi.serial, fi.valid_until);
	}
	return 0;
}

/*
 * One file: the signature, then what a gateway requiring signed policies
 * would also check: a serial, and a valid_until not yet past (today is
 * NOORDPOORT_NOW when set). -1 when the signature is bad or such a gateway
 * would refuse the file.
 */
static int verify_one(const char *file, const unsigned char pub[32])
{
	struct policy_refs refs = { 0 };
	struct policy_set *set = NULL;
	const struct policy_file_info *fi;
	struct diag d = { 0 };
	unsigned char *buf = NULL;
	size_t len;
	char err[600], sig[4096];
	int rc = -1;

	snprintf(sig, sizeof(sig), "%s.sig", file);
	if (ydoc_read_file(file, &buf, &len, &d) < 0) {
		diag_first(&d, err, sizeof(err));
		printf("%s: BAD: %s\n", file, err);
		goto out;
	}
	if (policy_verify_mem(buf, len, sig, pub, err, sizeof(err)) < 0) {
		printf("%s: BAD: %s\n", file, err);
		goto out;
	}
	refs.require_serial = 1;
	if (today(&refs.now) < 0 || policy_set_load_mem(file, buf, len, &refs, &set, &d) < 0) {
		diag_first(&d, err, sizeof(err));
		printf("%s: good signature, but a gateway refuses it: %s\n", file,
		       *err ? err : "NOORDPOORT_NOW is not YYYY-MM-DD");
		goto out;
	}
	fi = policy_set_file(set, 0);
	if (fi->valid_end <= refs.now) {
		printf("%s: good signature, serial %llu, valid until %s: EXPIRED, a gateway refuses it\n",
		       file, (unsigned long long)fi->serial, fi->valid_until);
		goto out;
	}
	printf("%s: good signature, serial %llu, valid until %s (inclusive, UTC)\n", file,
	       (unsigned long long)fi->serial, fi->valid_until);
	rc = 0;
out:
	policy_set_free(set);
	diag_clear(&d);
	free(buf);
	return rc;
}

static int cmd_verify(int argc, char **argv)
{
	const char *pubfile, *files[MAX_FILES];
	unsigned char pub[32];
	size_t n;
	char err[600];
	int rc = key_and_files("policy verify", "--pub", usage_verify, argc, argv, &pubfile, files, &n);

	if (rc)
		return rc == 1 ? 0 : rc;
	if (policy_read_pub(pubfile, pub, err, sizeof(err)) < 0) {
		fprintf(stderr, "noordpoort policy verify: %s\n", err);
		return 2;
	}
	for (size_t i = 0; i < n; i++)
		if (verify_one(files[i], pub) < 0)
			rc = 1;
	return rc;
}

int policy_keygen_cli(int argc, char **argv)
{
	const char *out = NULL;
	int sign = 0;
	char err[600];

	for (int i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			fputs(usage_keygen, stdout);
			return 0;
		}
		if (strcmp(argv[i], "--sign") == 0) {
			sign = 1;
		} else if (strcmp(argv[i], "--out") == 0) {
			if (i + 1 >= argc)
				return usage_error("keygen", "%s", "--out needs a PREFIX");
			out = argv[++i];
		} else {
			return usage_error("keygen", "unexpected argument '%s'", argv[i]);
		}
	}
	if (!sign)
		return usage_error("keygen", "%s", "say which key: --sign (policy signing)");
	if (!out)
		return usage_error("keygen", "%s", "--out PREFIX is required");
	if (policy_keygen(out, err, sizeof(err)) < 0) {
		fprintf(stderr, "noordpoort keygen: %s\n", err);
		return 1;
	}
	printf("wrote %s.sec (secret, mode 0600) and %s.pub\n", out, out);
	return 0;
}

int policy_cli(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
		{ "check", cmd_check }, { "test", cmd_test }, { "explain", cmd_explain },
		{ "diff", cmd_diff }, { "sign", cmd_sign }, { "verify", cmd_verify },
	};

	if (argc < 2)
		return usage_error("policy", "%s", "missing command");
	if (is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
		fputs(usage_policy, stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].fn(argc - 1, argv + 1);
	return usage_error("policy", "unknown command '%s'", argv[1]);
}
