/*
 * Unit tests for synth/: the plan's exact totals at any scale, the BSN
 * mapping, and the written files checked against policies/examples/catalog.yaml
 * (header, field types, categories), the partners' figures, the documented
 * overlap ranges (docs/synth.md), determinism and the CLI's errors.
 */
#define CHECK_FILE "test_synth"
#include "check.h"
#include "../../crypto/pseudo.c"
#include "../../synth/synth.c"
#include "../../cli/synth_cli.c"

#include <dirent.h>
#include <stdarg.h>
#include <yaml.h>

static char dir[] = "/tmp/np-synth-XXXXXX";

/* ---- helpers ------------------------------------------------------------- */

static int gen(const char *sub, uint64_t seed, double scale, int force)
{
	char path[512], err[512];
	struct synth_options o = { .seed = seed, .scale = scale, .force = force };

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	o.out_dir = path;
	int rc = synth_generate(&o, err, sizeof(err));
	if (rc < 0)
		printf("#   synth_generate(%s): %s\n", sub, err);
	return rc;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	*len = 0;
	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
			buf[n] = '\0';
			*len = (size_t)n;
		} else {
			free(buf);
			buf = NULL;
		}
	}
	fclose(f);
	return buf;
}

static char *slurp_ds(const char *sub, const char *dataset, size_t *len)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s/%s.csv", dir, sub, dataset);
	return slurp(path, len);
}

/* Splits one line (no quoting in our output) into at most |max| fields. */
static int split(char *line, char **field, int max)
{
	int n = 0;

	field[n++] = line;
	for (char *p = line; *p; p++)
		if (*p == ',') {
			*p = '\0';
			if (n < max)
				field[n] = p + 1;
			n++;
		}
	return n;
}

/* ---- the catalog, read with libyaml --------------------------------------- */

struct cat_field {
	char name[64], type[16];
	char cat[8][32];
	int ncat;
};
struct cat_ds {
	char id[128];
	struct cat_field f[12];
	int nf;
};
static struct cat_ds cat[16];
static int ncat;

static yaml_node_t *ymap_get(yaml_document_t *d, yaml_node_t *m, const char *key)
{
	if (!m || m->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(d, p->key);

		if (k && k->type == YAML_SCALAR_NODE && strcmp((char *)k->data.scalar.value, key) == 0)
			return yaml_document_get_node(d, p->value);
	}
	return NULL;
}

static int catalog_load(void)
{
	char path[512];
	const char *slash = strrchr(__FILE__, '/');
	FILE *f;
	yaml_parser_t ps;
	yaml_document_t d;
	yaml_node_t *dsets;
	int ok = 0;

	snprintf(path, sizeof(path), "%.*s/../../policies/examples/catalog.yaml",
		 slash ? (int)(slash - __FILE__) : 1, slash ? __FILE__ : ".");
	if (!(f = fopen(path, "rb")))
		return -1;
	yaml_parser_initialize(&ps);
	yaml_parser_set_input_file(&ps, f);
	if (yaml_parser_load(&ps, &d)) {
		dsets = ymap_get(&d, yaml_document_get_root_node(&d), "datasets");
		for (yaml_node_pair_t *p = dsets ? dsets->data.mapping.pairs.start : NULL;
		     p && p < dsets->data.mapping.pairs.top && ncat < 16; p++) {
			struct cat_ds *c = &cat[ncat++];
			yaml_node_t *fields = ymap_get(&d, yaml_document_get_node(&d, p->value), "fields");

			snprintf(c->id, sizeof(c->id), "%s",
				 (char *)yaml_document_get_node(&d, p->key)->data.scalar.value);
			for (yaml_node_pair_t *q = fields ? fields->data.mapping.pairs.start : NULL;
			     q && q < fields->data.mapping.pairs.top && c->nf < 12; q++) {
				struct cat_field *cf = &c->f[c->nf++];
				yaml_node_t *spec = yaml_document_get_node(&d, q->value);
				yaml_node_t *t = ymap_get(&d, spec, "type"), *cs = ymap_get(&d, spec, "categories");

				snprintf(cf->name, sizeof(cf->name), "%s",
					 (char *)yaml_document_get_node(&d, q->key)->data.scalar.value);
				snprintf(cf->type, sizeof(cf->type), "%s", t ? (char *)t->data.scalar.value : "?");
				for (yaml_node_item_t *it = cs ? cs->data.sequence.items.start : NULL;
				     it && it < cs->data.sequence.items.top && cf->ncat < 8; it++)
					snprintf(cf->cat[cf->ncat++], 32, "%s",
						 (char *)yaml_document_get_node(&d, *it)->data.scalar.value);
			}
		}
		yaml_document_delete(&d);
		ok = 1;
	}
	yaml_parser_delete(&ps);
	fclose(f);
	return ok && ncat > 0 ? 0 : -1;
}

/* ---- plan and BSNs ------------------------------------------------------- */

static void plan_totals_exact_at_any_scale(void)
{
	static const double scales[] = { 0.0001, 0.001, 0.0025, 0.01, 0.1, 0.37, 0.5, 1, 1.7,
					 3.3, 10, 100, 1000, SYNTH_MAX_SCALE };
	struct synth_plan p;

	for (size_t i = 0; i < sizeof(scales) / sizeof(scales[0]); i++) {
		uint64_t sum = 0;

		plan_make(&p, 1, scales[i]);
		for (int s = 0; s < S_COUNT; s++)
			CHECK(p.total[s] == (uint64_t)(set_figure[s] * scales[i] + 0.5));
		for (int a = 0; a < p.natoms; a++) {
			CHECK(p.atom[a].off == sum);
			sum += p.atom[a].n;
		}
		CHECK(sum == p.persons);
		CHECK(p.natoms <= SYNTH_MAX_ATOMS);
	}
	/* half away from zero: 600 * 0.0025 = 1.5 -> 2; 5000 * 0.0025 = 12.5 -> 13 */
	plan_make(&p, 1, 0.0025);
	CHECK(p.total[S_NLD1] == 2 && p.total[S_MOB] == 13 && p.total[S_NLD2] == 1);
	plan_make(&p, 1, SYNTH_MAX_SCALE);
	CHECK(p.persons <= SYNTH_BSN_SPACE);
}

static void bsn_mapping_valid_and_one_to_one(void)
{
	uint32_t prev = 0, out;
	char s[10];
	int bad = 0;

	/* Strictly increasing in v, hence one-to-one; check both ends of the space. */
	for (uint32_t v = 0; v < SYNTH_BSN_SPACE; v = (v == 2000000 ? SYNTH_BSN_SPACE - 1000000 : v + 1)) {
		uint32_t b = bsn_from_number(v);

		bsn_format(b, s);
		if (bsn_parse(s, 9, &out) != BSN_OK || out != b || (v && v != SYNTH_BSN_SPACE - 1000000 && b <= prev))
			bad++;
		prev = b;
	}
	CHECK(bad == 0);
	CHECK(bsn_from_number(0) >= 100000000u);
	CHECK(bsn_from_number(SYNTH_BSN_SPACE - 1) <= 999999999u);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void persons_get_distinct_bsns(void)
{
	enum { N = 1000000 };
	struct perm pm;
	uint32_t *v = malloc(N * sizeof(*v));
	int dup = 0;

	perm_init(&pm, SYNTH_BSN_SPACE, 42, T_BSNKEY);
	for (uint32_t i = 0; i < N; i++)
		v[i] = bsn_from_number((uint32_t)perm_apply(&pm, i));
	qsort(v, N, sizeof(*v), cmp_u32);
	for (uint32_t i = 1; i < N; i++)
		dup += v[i] == v[i - 1];
	CHECK(dup == 0);
	free(v);
}

static void perm_is_a_permutation(void)
{
	static const uint64_t sizes[] = { 1, 2, 3, 5, 17, 1000, 65537 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct perm pm;
		uint64_t n = sizes[i];
		unsigned char *seen = calloc(n, 1);
		int bad = 0;

		perm_init(&pm, n, 7, T_ORDER);
		for (uint64_t k = 0; k < n; k++) {
			uint64_t j = perm_apply(&pm, k);

			if (j >= n || seen[j]++)
				bad++;
		}
		CHECK(bad == 0);
		free(seen);
	}
}

static void dates_round_trip(void)
{
	int y, bad = 0;
	unsigned m, d;

	CHECK(D(1970, 1, 1) == 0);
	CHECK(D(2000, 3, 1) - D(2000, 2, 28) == 2); /* 2000 is a leap year */
	for (int32_t z = D(1959, 1, 1); z < D(2030, 1, 1); z++) {
		civil_from_days(z, &y, &m, &d);
		bad += D(y, m, d) != z;
	}
	CHECK(bad == 0);
}

/* ---- the files against the catalog --------------------------------------- */

/* Per BSN what every file says about the person, to check consistency. */
struct seen {
	uint32_t bsn;
	uint32_t birth_pc; /* a hash of birth_date and postcode; 0 if the file has none */
	uint16_t sets;     /* F(S_...) of the files the person is in */
	int16_t ww_first_year, prog_year, contact_year;
};

static struct seen *seen;
static size_t nseen, capseen;

static void seen_add(uint32_t bsn, const char *birth, const char *pc, unsigned set,
		     int ww_year, int prog_year, int contact_year)
{
	struct seen *s;

	if (nseen == capseen) {
		capseen = capseen ? 2 * capseen : 65536;
		seen = realloc(seen, capseen * sizeof(*seen));
	}
	s = &seen[nseen++];
	s->bsn = bsn;
	s->birth_pc = 0;
	if (birth && pc) {
		uint32_t h = 2166136261u;

		for (const char *p = birth; *p; p++)
			h = (h ^ (unsigned char)*p) * 16777619u;
		for (const char *p = pc; *p; p++)
			h = (h ^ (unsigned char)*p) * 16777619u;
		s->birth_pc = h | 1;
	}
	s->sets = (uint16_t)set;
	s->ww_first_year = (int16_t)ww_year;
	s->prog_year = (int16_t)prog_year;
	s->contact_year = (int16_t)contact_year;
}

static int cmp_seen(const void *a, const void *b)
{
	const struct seen *x = a, *y = b;

	return x->bsn < y->bsn ? -1 : x->bsn > y->bsn;
}

/* YYYY-MM-DD, a real day, 1960 .. the reference date. */
static int valid_date(const char *s)
{
	int y, m, d, y2;
	unsigned m2, d2;

	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-' ||
	    strspn(s, "0123456789") != 4 || strspn(s + 5, "0123456789") != 2 ||
	    strspn(s + 8, "0123456789") != 2)
		return 0;
	y = atoi(s);
	m = atoi(s + 5);
	d = atoi(s + 8);
	if (y < 1960 || m < 1 || m > 12 || d < 1 || d > 31)
		return 0;
	civil_from_days(D(y, (unsigned)m, (unsigned)d), &y2, &m2, &d2);
	return y2 == y && (int)m2 == m && (int)d2 == d && D(y, (unsigned)m, (unsigned)d) <= D(REF_Y, REF_M, REF_D);
}

static const struct pc_range *pc_find(unsigned pc4)
{
	for (size_t i = 0; i < PC_COUNT; i++)
		if (pc4 >= pc_table[i].lo && pc4 <= pc_table[i].hi)
			return &pc_table[i];
	return NULL;
}

/* Which set a row belongs to, from the dataset id and the programme column. */
static unsigned row_set(const char *id, const char *programme)
{
	if (strstr(id, "jtf-deelnemers"))
		return F(S_JTF);
	if (strstr(id, "mobiliteitsteam"))
		return F(S_MOB);
	if (strstr(id, "ww-uitkeringen"))
		return F(S_WW);
	for (int s = 0; s < 3; s++)
		if (programme && strcmp(programme, programme_name[s]) == 0)
			return F(s);
	return 0;
}

/*
 * Checks every file of |sub| against the catalog; fills |seen|. Returns the
 * number of problems (each also printed, the first few).
 */
static int check_files(const char *sub)
{
	int problems = 0;

	nseen = 0;
	for (int c = 0; c < ncat; c++) {
		const struct cat_ds *ds = &cat[c];
		size_t len;
		char *buf = slurp_ds(sub, ds->id, &len), *line, *next;
		char header[512] = "";
		int lineno = 0;

		if (!buf) {
			printf("#   %s: no file\n", ds->id);
			problems++;
			continue;
		}
		for (int i = 0; i < ds->nf; i++) {
			strcat(header, i ? "," : "");
			strcat(header, ds->f[i].name);
		}
		if (len == 0 || buf[len - 1] != '\n' || memchr(buf, '\r', len) || memchr(buf, '"', len)) {
			printf("#   %s: not plain LF-terminated CSV\n", ds->id);
			problems++;
		}
		for (line = buf; line < buf + len; line = next) {
			char *f[16] = { 0 }, *bsn = NULL, *birth = NULL, *pc = NULL, *prog = NULL;
			char *end_date = NULL, *end_reason = NULL, *completed = NULL, *amr = NULL;
			int nf, ww_year = 0, prog_year = 0, contact_year = 0;
			uint32_t b;

			next = strchr(line, '\n');
			*next++ = '\0';
			lineno++;
			if (lineno == 1) {
				if (strcmp(line, header) != 0) {
					printf("#   %s: header '%s', catalog says '%s'\n", ds->id, line, header);
					problems++;
				}
				continue;
			}
			nf = split(line, f, 16);
			if (nf != ds->nf) {
				if (problems++ < 5)
					printf("#   %s:%d: %d fields, want %d\n", ds->id, lineno, nf, ds->nf);
				continue;
			}
			for (int i = 0; i < nf; i++) {
				const struct cat_field *cf = &ds->f[i];
				const char *v = f[i];
				int ok = 1;

				if (strcmp(cf->type, "bsn") == 0) {
					ok = bsn_parse(v, strlen(v), &b) == BSN_OK && strlen(v) == 9;
					bsn = f[i];
				} else if (strcmp(cf->type, "category") == 0) {
					ok = 0;
					for (int k = 0; k < cf->ncat; k++)
						ok |= strcmp(v, cf->cat[k]) == 0;
				} else if (strcmp(cf->type, "date") == 0) {
					ok = valid_date(v) || (*v == '\0' && strcmp(cf->name, "end_date") == 0);
				} else if (strcmp(cf->type, "bool") == 0) {
					ok = strcmp(v, "true") == 0 || strcmp(v, "false") == 0;
				} else if (strcmp(cf->type, "int") == 0) {
					ok = *v && strspn(v, "0123456789") == strlen(v);
				} else if (strcmp(cf->name, "postcode") == 0) {
					ok = strlen(v) == 4 && strspn(v, "0123456789") == 4 && pc_find((unsigned)atoi(v));
				}
				if (!ok && problems++ < 5)
					printf("#   %s:%d: %s '%s' is not a valid %s\n", ds->id, lineno, cf->name, v, cf->type);
				if (strcmp(cf->name, "birth_date") == 0) birth = f[i];
				if (strcmp(cf->name, "postcode") == 0) pc = f[i];
				if (strcmp(cf->name, "programme") == 0) prog = f[i];
				if (strcmp(cf->name, "end_date") == 0) end_date = f[i];
				if (strcmp(cf->name, "end_reason") == 0) end_reason = f[i];
				if (strcmp(cf->name, "completed") == 0) completed = f[i];
				if (strcmp(cf->name, "arbeidsmarktregio") == 0) amr = f[i];
				if (strcmp(cf->name, "start_year") == 0) prog_year = atoi(v);
				if (strcmp(cf->name, "contact_date") == 0) contact_year = atoi(v);
				if (strcmp(cf->name, "start_date") == 0 && strstr(ds->id, "uwv/")) ww_year = atoi(v);
			}
			/* Internal consistency of a row. */
			if (end_reason && (strcmp(end_reason, "lopend") == 0) != (*end_date == '\0') && problems++ < 5)
				printf("#   %s:%d: end_reason %s with end_date '%s'\n", ds->id, lineno, end_reason, end_date);
			if (completed && end_date && *end_date == '\0' && strcmp(completed, "true") == 0 && problems++ < 5)
				printf("#   %s:%d: completed without end date\n", ds->id, lineno);
			if (amr && pc) {
				const struct pc_range *r = pc_find((unsigned)atoi(pc));

				if (r && strcmp(amr_name[r->amr], amr) != 0 && problems++ < 5)
					printf("#   %s:%d: postcode %s is not in region %s\n", ds->id, lineno, pc, amr);
			}
			if (pc && strstr(ds->id, "mobiliteitsteam")) {
				const struct pc_range *r = pc_find((unsigned)atoi(pc));
				static const char *const team[] = { "gemeente-groningen/", "gemeente-leeuwarden/", "gemeente-emmen/" };

				if (r && strncmp(ds->id, team[r->amr], strlen(team[r->amr])) != 0 && problems++ < 5)
					printf("#   %s:%d: postcode %s belongs to another team\n", ds->id, lineno, pc);
			}
			if (pc && strstr(ds->id, "jtf-deelnemers")) {
				const struct pc_range *r = pc_find((unsigned)atoi(pc));
				static const char *const prov[] = { "provincie-groningen/", "provincie-fryslan/", "provincie-drenthe/" };

				if (r && strncmp(ds->id, prov[r->province], strlen(prov[r->province])) != 0 && problems++ < 5)
					printf("#   %s:%d: postcode %s belongs to another province\n", ds->id, lineno, pc);
			}
			if (bsn && bsn_parse(bsn, strlen(bsn), &b) == BSN_OK)
				seen_add(b, birth, pc, row_set(ds->id, prog), ww_year, prog_year, contact_year);
		}
		free(buf);
	}
	return problems;
}

/* Per-person view of |seen|: merged sets, earliest years. */
struct who {
	uint32_t bsn;
	unsigned sets;
	int ww_first_year, prog_first_year, contact_first_year;
};

static size_t persons_from_seen(struct who **out, int *inconsistent)
{
	struct who *w = calloc(nseen ? nseen : 1, sizeof(*w));
	size_t n = 0;

	*inconsistent = 0;
	qsort(seen, nseen, sizeof(*seen), cmp_seen);
	for (size_t i = 0; i < nseen; i++) {
		struct seen *s = &seen[i];
		uint32_t attr = 0;

		if (i == 0 || s->bsn != seen[i - 1].bsn) {
			w[n++] = (struct who){ s->bsn, 0, 9999, 9999, 9999 };
			for (size_t j = i; j < nseen && seen[j].bsn == s->bsn; j++) {
				if (seen[j].birth_pc && attr && seen[j].birth_pc != attr)
					(*inconsistent)++; /* one BSN, two different persons */
				if (seen[j].birth_pc)
					attr = seen[j].birth_pc;
			}
		}
		w[n - 1].sets |= s->sets;
		if (s->ww_first_year && s->ww_first_year < w[n - 1].ww_first_year)
			w[n - 1].ww_first_year = s->ww_first_year;
		if (s->prog_year && s->prog_year < w[n - 1].prog_first_year)
			w[n - 1].prog_first_year = s->prog_year;
		if (s->contact_year && s->contact_year < w[n - 1].contact_first_year)
			w[n - 1].contact_first_year = s->contact_year;
	}
	*out = w;
	return n;
}

static uint64_t count(const struct who *w, size_t n, unsigned all, unsigned any)
{
	uint64_t c = 0;

	for (size_t i = 0; i < n; i++)
		if ((w[i].sets & all) == all && (!any || (w[i].sets & any)))
			c++;
	return c;
}

static double share(const struct who *w, size_t n, unsigned of, unsigned with)
{
	uint64_t base = count(w, n, of, 0);

	return base ? (double)count(w, n, of | with, 0) / (double)base : -1;
}

static void scale1_files_match_catalog_and_figures(void)
{
	struct who *w;
	size_t n;
	int inconsistent, late_ww = 0, late_contact = 0;

	CHECK(ncat == FILE_COUNT); /* the catalog's datasets are the files we write */
	CHECK(gen("a", 42, 1, 0) == 0);
	CHECK(check_files("a") == 0);
	n = persons_from_seen(&w, &inconsistent);
	CHECK(inconsistent == 0);
	/* The partners' figures, as distinct persons over all files of a kind. */
	CHECK(count(w, n, F(S_NLD1), 0) == 600);
	CHECK(count(w, n, F(S_NLD2), 0) == 450);
	CHECK(count(w, n, F(S_KV), 0) == 600);
	CHECK(count(w, n, F(S_MOB), 0) == 5000);
	CHECK(count(w, n, F(S_JTF), 0) == 2400);
	CHECK(count(w, n, F(S_WW), 0) == 8000);

	/* Overlaps, within the ranges docs/synth.md promises. */
	double a = share(w, n, F(S_NLD1), F(S_WW)), b = share(w, n, F(S_NLD2), F(S_WW));
	double k = share(w, n, F(S_KV), F(S_WW));
	double mob_enrolled = (double)count(w, n, F(S_MOB), F_PROG | F(S_JTF)) / 5000.0;
	double prog_via_mob = (double)count(w, n, F(S_MOB), F_PROG) / (double)count(w, n, 0, F_PROG);
	uint64_t multi = 0;

	printf("#   WW share: nld1 %.3f nld2 %.3f kv %.3f; contacts enrolled %.3f; enrolled via team %.3f\n",
	       a, b, k, mob_enrolled, prog_via_mob);
	CHECK(a >= 0.55 && a <= 0.65);
	CHECK(b >= 0.40 && b <= 0.50);
	CHECK(k >= 0.20 && k <= 0.30);
	CHECK(mob_enrolled >= 0.18 && mob_enrolled <= 0.30);
	CHECK(prog_via_mob >= 0.30 && prog_via_mob <= 0.40);
	for (size_t i = 0; i < n; i++) {
		unsigned p = w[i].sets & F_PROG;

		multi += p && (p & (p - 1));
		/* WW came before (or in the year of) the first enrolment; so did the contact. */
		if (p && (w[i].sets & F(S_WW)) && w[i].ww_first_year > w[i].prog_first_year)
			late_ww++;
		if (p && (w[i].sets & F(S_MOB)) && w[i].contact_first_year > w[i].prog_first_year)
			late_contact++;
	}
	CHECK(multi == PAIR_NLD1_NLD2 + PAIR_NLD1_KV + PAIR_NLD2_KV);
	CHECK(late_ww == 0);
	CHECK(late_contact == 0);
	/* UWV's data is far larger than any programme's. */
	CHECK(count(w, n, F(S_WW), 0) >= 10 * count(w, n, F(S_NLD1), 0));
	free(w);
}

static int same_file(const char *a, const char *b, const char *dataset)
{
	size_t la, lb;
	char *x = slurp_ds(a, dataset, &la), *y = slurp_ds(b, dataset, &lb);
	int same = x && y && la == lb && memcmp(x, y, la) == 0;

	free(x);
	free(y);
	return same;
}

static void same_seed_same_bytes_other_seed_other_data(void)
{
	int differ = 0;

	CHECK(gen("b", 42, 1, 0) == 0); /* "a" was written with seed 42, scale 1 */
	CHECK(gen("c", 43, 1, 0) == 0);
	for (int i = 0; i < ncat; i++) {
		CHECK(same_file("a", "b", cat[i].id));
		differ += !same_file("a", "c", cat[i].id);
	}
	{
		char pa[512], pb[512];
		size_t la, lb;
		char *x, *y;

		snprintf(pa, sizeof(pa), "%s/a/MANIFEST.txt", dir);
		snprintf(pb, sizeof(pb), "%s/b/MANIFEST.txt", dir);
		x = slurp(pa, &la);
		y = slurp(pb, &lb);
		CHECK(x && y && la == lb && memcmp(x, y, la) == 0);
		free(x);
		free(y);
	}
	CHECK(differ == ncat);
}

static void manifest_says_what_was_written(void)
{
	char path[512];
	size_t len;
	char *m;

	snprintf(path, sizeof(path), "%s/a/MANIFEST.txt", dir);
	m = slurp(path, &len);
	CHECK_CONTAINS(m, "seed\t42\n");
	CHECK_CONTAINS(m, "scale\t1\n");
	CHECK_CONTAINS(m, "noorden-leert-door-1\t600\n");
	CHECK_CONTAINS(m, "noorden-leert-door-2\t450\n");
	CHECK_CONTAINS(m, "kansrijk-verzilveren\t600\n");
	CHECK_CONTAINS(m, "mobiliteitsteam\t5000\n");
	CHECK_CONTAINS(m, "uwv/ww-uitkeringen\tuwv/ww-uitkeringen.csv\t");
	free(m);
}

static void scale_tenth_and_tiny(void)
{
	struct who *w;
	size_t n;
	int inconsistent;

	CHECK(gen("d", 5, 0.1, 0) == 0);
	CHECK(check_files("d") == 0);
	n = persons_from_seen(&w, &inconsistent);
	CHECK(inconsistent == 0);
	CHECK(count(w, n, F(S_NLD1), 0) == 60);
	CHECK(count(w, n, F(S_NLD2), 0) == 45);
	CHECK(count(w, n, F(S_KV), 0) == 60);
	CHECK(count(w, n, F(S_MOB), 0) == 500);
	free(w);

	/* So small that most sets are empty: header-only files, still well-formed. */
	CHECK(gen("e", 5, 0.0001, 0) == 0);
	CHECK(check_files("e") == 0);
	n = persons_from_seen(&w, &inconsistent);
	CHECK(count(w, n, F(S_MOB), 0) == 1 && count(w, n, F(S_NLD1), 0) == 0);
	free(w);
}

static int tmp_files_in(const char *sub)
{
	char path[512];
	int found = 0;

	for (int i = 0; i < FILE_COUNT; i++) {
		DIR *d;
		struct dirent *e;

		snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, file_spec[i].owner);
		if (!(d = opendir(path)))
			continue;
		while ((e = readdir(d)))
			found += strstr(e->d_name, ".tmp") != NULL;
		closedir(d);
	}
	return found;
}

static void refuses_overwrite_unless_forced(void)
{
	char path[512], err[512];
	struct synth_options o = { .seed = 1, .scale = 1 };

	CHECK(gen("a", 99, 1, 0) == SYNTH_ERR_EXISTS);
	CHECK(same_file("a", "b", "uwv/ww-uitkeringen")); /* untouched */
	CHECK(gen("a", 42, 0.5, 1) == 0);
	CHECK(!same_file("a", "b", "uwv/ww-uitkeringen"));
	CHECK(tmp_files_in("a") == 0);

	/* A regular file where a directory should be. */
	snprintf(path, sizeof(path), "%s/plain", dir);
	free(check_write(dir, "plain", "x"));
	strcat(path, "/out");
	o.out_dir = path;
	CHECK(synth_generate(&o, err, sizeof(err)) == SYNTH_ERR_IO);
	CHECK_CONTAINS(err, "cannot create directory");
	o.scale = 0;
	CHECK(synth_generate(&o, err, sizeof(err)) == SYNTH_ERR_ARG);
	o.scale = SYNTH_MAX_SCALE * 2;
	CHECK(synth_generate(&o, err, sizeof(err)) == SYNTH_ERR_ARG);
}

static int cli(int n, ...)
{
	char *argv[12];
	va_list ap;

	va_start(ap, n);
	for (int i = 0; i < n; i++)
		argv[i] = va_arg(ap, char *);
	va_end(ap);
	argv[n] = NULL;
	return synth_cli(n, argv);
}

static void cli_usage_errors(void)
{
	char out[512];

	snprintf(out, sizeof(out), "%s/cli", dir);
	CHECK(cli(3, "synth", "--scale", "1") == 2);                  /* no --out */
	CHECK(cli(5, "synth", "--out", out, "--scale", "0") == 2);
	CHECK(cli(5, "synth", "--out", out, "--scale", "-1") == 2);
	CHECK(cli(5, "synth", "--out", out, "--scale", "abc") == 2);
	CHECK(cli(5, "synth", "--out", out, "--scale", "nan") == 2);
	CHECK(cli(5, "synth", "--out", out, "--scale", "1e9") == 2);
	CHECK(cli(5, "synth", "--out", out, "--scale", "1x") == 2);
	CHECK(cli(5, "synth", "--out", out, "--seed", "-3") == 2);
	CHECK(cli(5, "synth", "--out", out, "--seed", "99999999999999999999") == 2);
	CHECK(cli(5, "synth", "--out", out, "--format", "parquet") == 2);
	CHECK(cli(4, "synth", "--out", out, "--bogus") == 2);
	CHECK(cli(2, "synth", "--out") == 2);
	CHECK(cli(2, "synth", "--help") == 0);
	CHECK(cli(4, "synth", "--out", out, "--scale=0.01") == 0);
	CHECK(cli(4, "synth", "--out", out, "--scale=0.01") == 1);  /* exists */
	CHECK(cli(5, "synth", "--out", out, "--scale=0.01", "--force") == 0);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	if (catalog_load() < 0) {
		printf("not ok - test_synth: cannot read policies/examples/catalog.yaml\n");
		return 1;
	}
	RUN(plan_totals_exact_at_any_scale);
	RUN(bsn_mapping_valid_and_one_to_one);
	RUN(persons_get_distinct_bsns);
	RUN(perm_is_a_permutation);
	RUN(dates_round_trip);
	RUN(scale1_files_match_catalog_and_figures);
	RUN(same_seed_same_bytes_other_seed_other_data);
	RUN(manifest_says_what_was_written);
	RUN(scale_tenth_and_tiny);
	RUN(refuses_overwrite_unless_forced);
	RUN(cli_usage_errors);
	free(seen);
	{
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", dir);
	}
	return check_total_failed ? 1 : 0;
}
