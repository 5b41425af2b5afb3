/*
 * Declared domains (docs/disclosure.md, "Declared domains"): the keys a
 * group-by field can take, built from the catalog alone. The node maps each
 * generalised value to one of them (or "other") before anything leaves it;
 * the hub lays out its table from them. No key is ever derived from data.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static enum policy_gen norm(enum policy_gen g)
{
	return g == POLICY_GEN_NONE ? POLICY_GEN_EXACT : g;
}

static int band_width(enum policy_gen g)
{
	switch (g) {
	case POLICY_GEN_AGE_BAND_5: return 5;
	case POLICY_GEN_AGE_BAND_10: return 10;
	case POLICY_GEN_AGE_BAND_20: return 20;
	default: return 0;
	}
}

int pol_domain_day(const char *s, int32_t *day)
{
	int64_t d;
	unsigned y;

	if (pol_civil_day(s, &d, &y) < 0 || y < 1900 || y > 2199)
		return -1;
	*day = (int32_t)d;
	return 0;
}

/* The period a day falls in, counted from year 0: years, quarters or months. */
static int64_t period_of(int64_t day, enum policy_gen g)
{
	int64_t y;
	unsigned m, d;

	pol_civil_from_days(day, &y, &m, &d);
	if (g == POLICY_GEN_MONTH)
		return y * 12 + (int64_t)(m - 1);
	if (g == POLICY_GEN_QUARTER)
		return y * 4 + (int64_t)(m - 1) / 3;
	return y;
}

static int is_period(enum policy_gen g)
{
	return g == POLICY_GEN_MONTH || g == POLICY_GEN_QUARTER || g == POLICY_GEN_YEAR ||
	       g == POLICY_GEN_BIRTH_YEAR;
}

/* The first band start at or above age_from, and the number of bands of
 * width |w| that fit wholly below age_until. */
static size_t bands(const struct policy_catalog_field *f, int w, int *first)
{
	*first = (f->age_from + w - 1) / w * w;
	return f->age_until >= *first + w ? (size_t)((f->age_until - *first) / w) : 0;
}

size_t policy_domain_size(const struct policy_catalog_field *f, enum policy_gen g)
{
	int first, w;

	if (!f)
		return 0;
	g = norm(g);
	switch (f->type) {
	case POLICY_T_CATEGORY:
		return g == POLICY_GEN_EXACT ? f->ncategories : 0;
	case POLICY_T_BOOL:
		return g == POLICY_GEN_EXACT ? 2 : 0;
	case POLICY_T_INT:
		return g == POLICY_GEN_EXACT && f->nbins >= 2 ? f->nbins - 1 + 1 : 0;
	case POLICY_T_DATE:
		if (is_period(g) && f->has_range)
			return (size_t)(period_of(f->range_until, g) - period_of(f->range_from, g) + 1) + 1;
		if ((w = band_width(g)) != 0 && f->has_ages)
			return bands(f, w, &first) + 1;
		return 0;
	default:
		return 0; /* strings, identifiers: never grouped */
	}
}

const char *policy_domain_key(const struct policy_catalog_field *f, enum policy_gen g, size_t i,
			      char buf[POLICY_DOMAIN_KEY_LEN])
{
	size_t n = policy_domain_size(f, g);
	int first, w;
	int64_t p;

	g = norm(g);
	if (i >= n)
		return NULL;
	if (f->type == POLICY_T_CATEGORY)
		return f->categories[i];
	if (f->type == POLICY_T_BOOL)
		return i ? "true" : "false";
	if (i == n - 1)
		return POLICY_DOMAIN_OTHER;
	if (f->type == POLICY_T_INT) {
		if (f->bins[i + 1] - f->bins[i] == 1)
			snprintf(buf, POLICY_DOMAIN_KEY_LEN, "%lld", (long long)f->bins[i]);
		else
			snprintf(buf, POLICY_DOMAIN_KEY_LEN, "[%lld,%lld)", (long long)f->bins[i],
				 (long long)f->bins[i + 1]);
		return buf;
	}
	if ((w = band_width(g)) != 0) {
		bands(f, w, &first);
		snprintf(buf, POLICY_DOMAIN_KEY_LEN, "%d-%d", first + (int)i * w, first + (int)i * w + w - 1);
		return buf;
	}
	/* The node's formats (node/node.c, generalise_text()). */
	p = period_of(f->range_from, g) + (int64_t)i;
	if (g == POLICY_GEN_MONTH)
		snprintf(buf, POLICY_DOMAIN_KEY_LEN, "%04lld-%02d", (long long)(p / 12), (int)(p % 12) + 1);
	else if (g == POLICY_GEN_QUARTER)
		snprintf(buf, POLICY_DOMAIN_KEY_LEN, "%04lld-Q%d", (long long)(p / 4), (int)(p % 4) + 1);
	else
		snprintf(buf, POLICY_DOMAIN_KEY_LEN, "%lld", (long long)p);
	return buf;
}

/* A decimal number at |*s| (optional '-', 1 to 18 digits); advances |*s|. */
static int number(const char **s, const char *end, int64_t *out)
{
	int neg = 0, digits = 0;
	int64_t v = 0;

	if (*s < end && **s == '-') {
		neg = 1;
		(*s)++;
	}
	while (*s < end && **s >= '0' && **s <= '9' && digits < 18) {
		v = v * 10 + (**s - '0');
		(*s)++;
		digits++;
	}
	if (!digits || (*s < end && **s >= '0' && **s <= '9'))
		return -1;
	*out = neg ? -v : v;
	return 0;
}

long policy_domain_index(const struct policy_catalog_field *f, enum policy_gen g, const char *v,
			 size_t len)
{
	size_t n = policy_domain_size(f, g);
	const char *s = v, *end = v + len;
	int64_t a, b, p, lo;
	int first, w;

	g = norm(g);
	if (n == 0 || !v)
		return -1;
	if (f->type == POLICY_T_CATEGORY) {
		for (size_t i = 0; i < n; i++)
			if (strlen(f->categories[i]) == len && memcmp(f->categories[i], v, len) == 0)
				return (long)i;
		return -1;
	}
	if (f->type == POLICY_T_BOOL) {
		if (len == 5 && memcmp(v, "false", 5) == 0)
			return 0;
		if (len == 4 && memcmp(v, "true", 4) == 0)
			return 1;
		return -1;
	}
	if (number(&s, end, &a) < 0)
		return -1;
	if (f->type == POLICY_T_INT) {
		if (s != end)
			return -1;
		/* [bins[i], bins[i+1]): an edge belongs to the bin above it. */
		if (a < f->bins[0] || a >= f->bins[f->nbins - 1])
			return (long)n - 1;
		for (size_t i = 0; i + 1 < f->nbins; i++)
			if (a < f->bins[i + 1])
				return (long)i;
		return (long)n - 1;
	}
	if ((w = band_width(g)) != 0) {
		if (s == end || *s != '-' || a < 0)
			return -1;
		s++;
		if (number(&s, end, &b) < 0 || s != end || a % w != 0 || b != a + w - 1)
			return -1;
		bands(f, w, &first);
		if (a < first || a + w > f->age_until)
			return (long)n - 1;
		return (long)((a - first) / w);
	}
	if (g == POLICY_GEN_MONTH || g == POLICY_GEN_QUARTER) {
		if (s == end || *s != '-')
			return -1;
		s++;
		if (g == POLICY_GEN_QUARTER) {
			if (s == end || *s != 'Q')
				return -1;
			s++;
		}
		if (number(&s, end, &b) < 0 || s != end || b < 1 || b > (g == POLICY_GEN_MONTH ? 12 : 4))
			return -1;
		p = g == POLICY_GEN_MONTH ? a * 12 + b - 1 : a * 4 + b - 1;
	} else {
		if (s != end)
			return -1;
		p = a;
	}
	lo = period_of(f->range_from, g);
	if (p < lo || p > period_of(f->range_until, g))
		return (long)n - 1;
	return (long)(p - lo);
}

int policy_domain_declared(const struct policy_catalog_field *f, enum policy_gen g)
{
	g = norm(g);
	for (int x = POLICY_GEN_EXACT; x < POLICY_GEN_COUNT; x++)
		if (pol_gen_allows(g, (enum policy_gen)x) && policy_domain_size(f, (enum policy_gen)x) > 0)
			return 1;
	return 0;
}
