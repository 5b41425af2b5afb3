/*
 * Worst-case request-body parse time per MiB (issue 10, section 2): each
 * body below goes through gw_json_body_parse() -- what a worker does on its
 * event loop before any handler -- and is compared with a plain cJSON_Parse
 * of an ordinary body of the same size (a hub question's filters: short
 * strings in small objects), measured in the same run. Medians of ROUNDS
 * rounds, CPU time of this thread, rounds rotating which body goes first.
 * Exit status 0 unless a body was answered other than expected.
 */
#include "../../gateway/jsonbody.c"

#include <stdio.h>
#include <time.h>

#define MIB (1024.0 * 1024.0)
#define BODY_MAX (1024 * 1024) /* limits.max_body_bytes' default */

struct sb {
	char *p;
	size_t n, cap;
};

static void put(struct sb *b, const char *s)
{
	size_t l = strlen(s);

	if (b->n + l + 1 > b->cap) {
		b->cap = (b->n + l + 1) * 2;
		if (!(b->p = realloc(b->p, b->cap))) {
			perror("realloc");
			exit(2);
		}
	}
	memcpy(b->p + b->n, s, l + 1);
	b->n += l;
}

static void key(struct sb *b, size_t k, const char *prefix)
{
	static const char a[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	char s[16];
	int i = (int)sizeof(s) - 1;

	s[i] = '\0';
	for (;;) {
		s[--i] = a[k % 62];
		k /= 62;
		if (k == 0)
			break;
		k--;
	}
	put(b, "\"");
	put(b, prefix);
	put(b, s + i);
	put(b, "\":0");
}

static void keys(struct sb *b, size_t n, const char *prefix, int dup_last)
{
	put(b, "{");
	for (size_t i = 0; i < n; i++) {
		if (i)
			put(b, ",");
		key(b, dup_last && i + 1 == n ? 0 : i, prefix);
	}
	put(b, "}");
}

struct body {
	const char *name;
	struct sb text;
	enum gw_json_refusal want;
	double med;
};

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 15;
	char prefix990[991], prefix100[101];
	struct body bodies[10];
	size_t nb = 0;
	struct sb ref = { 0 };
	double *t, *tref, refmed;
	int bad = 0;

	if (rounds < 1)
		rounds = 1;
	memset(prefix990, 'p', 990);
	prefix990[990] = '\0';
	memset(prefix100, 'q', 100);
	prefix100[100] = '\0';
	memset(bodies, 0, sizeof(bodies));

	bodies[nb].name = "120 000 distinct keys (refused)";
	keys(&bodies[nb].text, 120000, "", 0);
	bodies[nb++].want = GW_JSON_LIMIT;

	bodies[nb].name = "1 000 keys sharing 990 bytes";
	keys(&bodies[nb].text, 1000, prefix990, 0);
	bodies[nb++].want = GW_JSON_OK;

	bodies[nb].name = "9 objects of 1 000 keys of 100 bytes";
	put(&bodies[nb].text, "{\"a\":[");
	for (int i = 0; i < 9; i++) {
		if (i)
			put(&bodies[nb].text, ",");
		keys(&bodies[nb].text, 1000, prefix100, 0);
	}
	put(&bodies[nb].text, "]}");
	bodies[nb++].want = GW_JSON_OK;

	bodies[nb].name = "1 000 keys, the last a duplicate";
	keys(&bodies[nb].text, 1000, prefix990, 1);
	bodies[nb++].want = GW_JSON_INVALID;

	bodies[nb].name = "9 990 small values, then 1 MiB of white space";
	put(&bodies[nb].text, "{\"a\":[0");
	for (int i = 1; i < GW_JSON_MAX_VALUES - 10; i++)
		put(&bodies[nb].text, ",0");
	put(&bodies[nb].text, "]");
	while (bodies[nb].text.n < BODY_MAX - 1)
		put(&bodies[nb].text, " ");
	put(&bodies[nb].text, "}");
	bodies[nb++].want = GW_JSON_OK;

	bodies[nb].name = "500 000 small values (refused)";
	put(&bodies[nb].text, "{\"a\":[0");
	for (int i = 1; i < 500000; i++)
		put(&bodies[nb].text, ",0");
	put(&bodies[nb].text, "]}");
	bodies[nb++].want = GW_JSON_LIMIT;

	bodies[nb].name = "9 chains nested 999 deep";
	put(&bodies[nb].text, "{\"a\":[");
	for (int i = 0; i < 9; i++) {
		put(&bodies[nb].text, i ? "," : "");
		for (int d = 0; d < 998; d++)
			put(&bodies[nb].text, "[");
		for (int d = 0; d < 998; d++)
			put(&bodies[nb].text, "]");
	}
	put(&bodies[nb].text, "]}");
	bodies[nb++].want = GW_JSON_OK;

	bodies[nb].name = "a 1 MiB string of \\u escapes";
	put(&bodies[nb].text, "{\"a\":\"");
	while (bodies[nb].text.n < BODY_MAX - 8)
		put(&bodies[nb].text, "\\u00e9");
	put(&bodies[nb].text, "\"}");
	bodies[nb++].want = GW_JSON_OK;

	/* Reference: an ordinary body of 1 MiB, parsed by cJSON alone. */
	put(&ref, "{\"filters\":[");
	for (int i = 0; ref.n < BODY_MAX - 200; i++) {
		char s[160];

		snprintf(s, sizeof(s), "%s{\"field\":\"opleiding_%d\",\"gen\":\"exact\",\"values\":[\"mbo-%d\",%d]}",
			 i ? "," : "", i, i, i);
		put(&ref, s);
	}
	put(&ref, "]}");

	t = calloc((size_t)rounds * nb, sizeof(*t));
	tref = calloc((size_t)rounds, sizeof(*tref));
	if (!t || !tref)
		return 2;
	for (int r = 0; r < rounds; r++) {
		for (size_t k = 0; k <= nb; k++) {
			size_t i = (k + (size_t)r) % (nb + 1);
			double t0 = cpu_now();

			if (i == nb) {
				cJSON *j = cJSON_ParseWithLength(ref.p, ref.n);

				if (!j)
					bad = 1;
				cJSON_Delete(j);
				tref[r] = cpu_now() - t0;
			} else {
				enum gw_json_refusal kind;
				const char *why;
				cJSON *j = gw_json_body_parse((const unsigned char *)bodies[i].text.p,
							      bodies[i].text.n, &kind, &why);

				cJSON_Delete(j);
				t[(size_t)r * nb + i] = cpu_now() - t0;
				if (kind != bodies[i].want) {
					printf("%s: refusal %d, want %d (%s)\n", bodies[i].name, kind,
					       bodies[i].want, why ? why : "");
					bad = 1;
				}
			}
		}
	}
	qsort(tref, (size_t)rounds, sizeof(*tref), cmp_d);
	refmed = tref[rounds / 2] / ((double)ref.n / MIB);
	printf("parse: %d rounds, medians, CPU time of one thread\n", rounds);
	printf("  %-48s %9s %9s %10s %7s\n", "body", "bytes", "ms", "ms/MiB", "x ref");
	printf("  %-48s %9zu %9.2f %10.2f %7.2f\n", "reference: cJSON_Parse, ordinary 1 MiB", ref.n,
	       tref[rounds / 2] * 1e3, refmed * 1e3, 1.0);
	for (size_t i = 0; i < nb; i++) {
		double *col = malloc((size_t)rounds * sizeof(*col)), per;

		if (!col)
			return 2;
		for (int r = 0; r < rounds; r++)
			col[r] = t[(size_t)r * nb + i];
		qsort(col, (size_t)rounds, sizeof(*col), cmp_d);
		bodies[i].med = col[rounds / 2];
		per = bodies[i].med / ((double)bodies[i].text.n / MIB);
		printf("  %-48s %9zu %9.2f %10.2f %7.2f\n", bodies[i].name, bodies[i].text.n,
		       bodies[i].med * 1e3, per * 1e3, per / refmed);
		free(col);
		free(bodies[i].text.p);
	}
	free(ref.p);
	free(t);
	free(tref);
	return bad;
}
