/*
 * The synthetic-data generator behind `noordpoort synth`. A population is a
 * list of "atoms": blocks of consecutive person numbers that share the same
 * memberships (NLD1 and WW, only WW, ...). Every attribute of person i is a
 * hash of (seed, i), so nothing is stored per person and any pass can
 * recompute anyone. docs/synth.md explains the figures and proportions.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../crypto/pseudo.h"
#include "synth.h"

/* ---- the plan: which sets exist and how they overlap -------------------- */

/* The person sets. The first three are the training programmes. */
enum { S_NLD1, S_NLD2, S_KV, S_JTF, S_MOB, S_WW, S_COUNT };
#define F(s) (1u << (s))
#define F_PROG (F(S_NLD1) | F(S_NLD2) | F(S_KV))

/*
 * Distinct persons per set at scale 1. The first four programme figures are
 * the partners' own (Arbeidsmarkttafel Noord, 12 May 2023); JTF and WW have
 * no published figure here and are our choice (docs/synth.md).
 */
static const double set_figure[S_COUNT] = {
	[S_NLD1] = 600, [S_NLD2] = 450, [S_KV] = 600,
	[S_JTF] = 2400, [S_MOB] = 5000, [S_WW] = 8000,
};
/* Persons in two programmes at scale 1 (no one is in all three). */
#define PAIR_NLD1_NLD2 40
#define PAIR_NLD1_KV 25
#define PAIR_NLD2_KV 20

#define SYNTH_MAX_ATOMS 64 /* 6 programme atoms, doubled three times, plus 3 fresh = 55 */

struct synth_atom {
	unsigned mask;  /* F(S_...) bits */
	uint64_t n;     /* persons */
	uint64_t off;   /* first person number */
};

struct synth_plan {
	uint64_t seed;
	double scale;
	struct synth_atom atom[SYNTH_MAX_ATOMS];
	int natoms;
	uint64_t persons;         /* sum of the atoms */
	uint64_t total[S_COUNT];  /* distinct persons per set */
};

static uint64_t scaled(double figure, double scale)
{
	return (uint64_t)(figure * scale + 0.5); /* both positive: half away from zero */
}

/*
 * Splits every atom in two: round(n * permille(mask) / 1000) persons also get
 * |flag|, then one fresh atom holding only |flag| makes the set's total
 * exactly |target|. At tiny scales the rounded shares could exceed the
 * target; they are then trimmed, largest first, so the total stays exact.
 */
static void plan_split(struct synth_plan *p, unsigned flag, unsigned (*permille)(unsigned mask),
		       uint64_t target)
{
	struct synth_atom in[SYNTH_MAX_ATOMS];
	uint64_t take[SYNTH_MAX_ATOMS], sum = 0;
	int n = p->natoms;

	memcpy(in, p->atom, sizeof(in[0]) * (size_t)n);
	for (int i = 0; i < n; i++) {
		take[i] = (in[i].n * permille(in[i].mask) + 500) / 1000;
		sum += take[i];
	}
	while (sum > target) {
		int big = 0;

		for (int i = 1; i < n; i++)
			if (take[i] > take[big])
				big = i;
		take[big]--;
		sum--;
	}
	p->natoms = 0;
	for (int i = 0; i < n; i++) {
		p->atom[p->natoms++] = (struct synth_atom){ in[i].mask | flag, take[i], 0 };
		p->atom[p->natoms++] = (struct synth_atom){ in[i].mask, in[i].n - take[i], 0 };
	}
	p->atom[p->natoms++] = (struct synth_atom){ flag, target - sum, 0 };
}

/* Share (per mille) of each group that also joins JTF, the mobility teams, WW. */
static unsigned share_jtf(unsigned mask)
{
	return (mask & F_PROG) ? 60 : 0;
}

static unsigned share_mob(unsigned mask)
{
	if (mask & F_PROG)
		return 350; /* came to the programme through a mobility team */
	return (mask & F(S_JTF)) ? 250 : 0;
}

/* "Had WW when the programme started": the crisis tranche most, KV least. */
static unsigned share_ww(unsigned mask)
{
	if (mask & F(S_NLD1))
		return 600;
	if (mask & F(S_NLD2))
		return 450;
	if (mask & F(S_KV))
		return 250;
	if (mask & F(S_JTF))
		return 300;
	if (mask & F(S_MOB))
		return 350;
	return 0;
}

static void plan_make(struct synth_plan *p, uint64_t seed, double scale)
{
	uint64_t a = scaled(set_figure[S_NLD1], scale);
	uint64_t b = scaled(set_figure[S_NLD2], scale);
	uint64_t k = scaled(set_figure[S_KV], scale);
	uint64_t ab = scaled(PAIR_NLD1_NLD2, scale), ak = scaled(PAIR_NLD1_KV, scale);
	uint64_t bk = scaled(PAIR_NLD2_KV, scale), off = 0;

	memset(p, 0, sizeof(*p));
	p->seed = seed;
	p->scale = scale;
	/* Pairs never exceed what the programmes hold (only at tiny scales). */
	if (ab > a) ab = a;
	if (ab > b) ab = b;
	if (ak > a - ab) ak = a - ab;
	if (ak > k) ak = k;
	if (bk > b - ab) bk = b - ab;
	if (bk > k - ak) bk = k - ak;
	p->atom[0] = (struct synth_atom){ F(S_NLD1), a - ab - ak, 0 };
	p->atom[1] = (struct synth_atom){ F(S_NLD2), b - ab - bk, 0 };
	p->atom[2] = (struct synth_atom){ F(S_KV), k - ak - bk, 0 };
	p->atom[3] = (struct synth_atom){ F(S_NLD1) | F(S_NLD2), ab, 0 };
	p->atom[4] = (struct synth_atom){ F(S_NLD1) | F(S_KV), ak, 0 };
	p->atom[5] = (struct synth_atom){ F(S_NLD2) | F(S_KV), bk, 0 };
	p->natoms = 6;
	plan_split(p, F(S_JTF), share_jtf, scaled(set_figure[S_JTF], scale));
	plan_split(p, F(S_MOB), share_mob, scaled(set_figure[S_MOB], scale));
	plan_split(p, F(S_WW), share_ww, scaled(set_figure[S_WW], scale));
	for (int i = 0; i < p->natoms; i++) {
		p->atom[i].off = off;
		off += p->atom[i].n;
		for (int s = 0; s < S_COUNT; s++)
			if (p->atom[i].mask & F(s))
				p->total[s] += p->atom[i].n;
	}
	p->persons = off;
}

/* ---- randomness: counter-based, so any person can be recomputed -------- */

/* SplitMix64's finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

struct rng {
	uint64_t s;
};

/* One independent stream per (seed, person, purpose). */
static struct rng rng_for(uint64_t seed, uint64_t idx, uint64_t tag)
{
	struct rng r = { mix64(mix64(seed ^ (tag * 0xd1342543de82ef95ULL)) + idx) };

	return r;
}

static uint64_t rng_next(struct rng *r)
{
	r->s += 0x9e3779b97f4a7c15ULL;
	return mix64(r->s);
}

/* Uniform in [0, n) (Lemire's multiply; the bias below 2^-32 is irrelevant here). */
static uint32_t rng_below(struct rng *r, uint32_t n)
{
	return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

static int rng_permille(struct rng *r, unsigned p)
{
	return rng_below(r, 1000) < p;
}

/* Stream tags: changing one attribute's draws must not shift the others. */
enum { T_PERSON = 1, T_NLD1, T_NLD2, T_KV, T_JTF, T_MOB, T_WW, T_BSNKEY, T_ORDER, T_CONTACTS = 100 };

/*
 * A keyed permutation of [0, n): a 4-round Feistel network on the smallest
 * even number of bits that holds n, with cycle walking (values >= n are
 * encrypted again), which keeps it a permutation of [0, n).
 */
struct perm {
	uint64_t n;
	unsigned half;
	uint64_t key[4];
};

static void perm_init(struct perm *p, uint64_t n, uint64_t seed, uint64_t tag)
{
	unsigned bits = 2;

	p->n = n;
	while (bits < 62 && (1ULL << bits) < n)
		bits += 2;
	p->half = bits / 2;
	for (int i = 0; i < 4; i++)
		p->key[i] = mix64(mix64(seed ^ (tag << 8)) + (uint64_t)i);
}

static uint64_t perm_apply(const struct perm *p, uint64_t x)
{
	uint64_t m = (1ULL << p->half) - 1;

	do {
		uint64_t l = x >> p->half, r = x & m;

		for (int i = 0; i < 4; i++) {
			uint64_t t = l ^ (mix64(p->key[i] ^ r) & m);

			l = r;
			r = t;
		}
		x = (l << p->half) | r;
	} while (x >= p->n);
	return x;
}

/* ---- BSNs ---------------------------------------------------------------- */

/*
 * Number v in [0, SYNTH_BSN_SPACE) -> a valid BSN, one-to-one. v / 9 picks a
 * 7-digit prefix 1000000..9999999; of the ten possible eighth digits exactly
 * nine or ten leave a check digit 0..9, and v % 9 picks the (v % 9)-th of
 * them, so every v gives a different valid number.
 */
#define SYNTH_BSN_SPACE 81000000u

static uint32_t bsn_from_number(uint32_t v)
{
	uint32_t pre = 1000000 + v / 9, k = v % 9, t = pre;
	unsigned s = 0;

	for (unsigned w = 3; w <= 9; w++) { /* the prefix's last digit weighs 3, its first 9 */
		s += w * (t % 10);
		t /= 10;
	}
	for (uint32_t d8 = 0; d8 <= 9; d8++) {
		uint32_t d9 = (s + 2 * d8) % 11;

		if (d9 == 10)
			continue;
		if (k-- == 0)
			return pre * 100 + d8 * 10 + d9;
	}
	return 0; /* not reached: at least nine eighth digits qualify */
}

/* ---- dates --------------------------------------------------------------- */

/* Days since 1970-01-01 (Howard Hinnant's civil-calendar algorithms). */
static int32_t days_from_civil(int y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + (int32_t)doe - 719468;
}

static void civil_from_days(int32_t z, int *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;

	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int)yoe + era * 400 + (*m <= 2);
}

static int year_of(int32_t day)
{
	int y;
	unsigned m, d;

	civil_from_days(day, &y, &m, &d);
	return y;
}

/* Uniform day in [lo, hi] (hi >= lo). */
static int32_t rng_day(struct rng *r, int32_t lo, int32_t hi)
{
	return lo + (int32_t)rng_below(r, (uint32_t)(hi - lo + 1));
}

#define D(y, m, d) days_from_civil(y, m, d)
/* The "extraction date": nothing happens after it; WW running on it is 'lopend'. */
#define REF_Y 2025
#define REF_M 6
#define REF_D 30

/* ---- places -------------------------------------------------------------- */

enum { PROV_GRONINGEN, PROV_FRYSLAN, PROV_DRENTHE };
enum { AMR_GRONINGEN, AMR_FRIESLAND, AMR_DRENTHE };
static const char *const amr_name[] = { "groningen", "friesland", "drenthe" };

/*
 * Four-digit postcode ranges per gemeente, approximate (real ranges, but not
 * every number in a range exists), with a weight of roughly the population in
 * thousands. Noordenveld and Tynaarlo lie in Drenthe but belong to the
 * labour-market region Groningen, as in reality.
 */
static const struct pc_range {
	uint16_t lo, hi, weight;
	uint8_t province, amr;
	const char *gemeente;
} pc_table[] = {
	{ 9711, 9747, 200, PROV_GRONINGEN, AMR_GRONINGEN, "Groningen" },
	{ 9750, 9753, 19, PROV_GRONINGEN, AMR_GRONINGEN, "Groningen" },
	{ 9791, 9798, 16, PROV_GRONINGEN, AMR_GRONINGEN, "Groningen" },
	{ 9601, 9631, 61, PROV_GRONINGEN, AMR_GRONINGEN, "Midden-Groningen" },
	{ 9641, 9649, 28, PROV_GRONINGEN, AMR_GRONINGEN, "Veendam" },
	{ 9661, 9665, 12, PROV_GRONINGEN, AMR_GRONINGEN, "Pekela" },
	{ 9671, 9699, 39, PROV_GRONINGEN, AMR_GRONINGEN, "Oldambt" },
	{ 9501, 9509, 32, PROV_GRONINGEN, AMR_GRONINGEN, "Stadskanaal" },
	{ 9541, 9566, 26, PROV_GRONINGEN, AMR_GRONINGEN, "Westerwolde" },
	{ 9800, 9886, 64, PROV_GRONINGEN, AMR_GRONINGEN, "Westerkwartier" },
	{ 9901, 9947, 45, PROV_GRONINGEN, AMR_GRONINGEN, "Eemsdelta" },
	{ 9950, 9999, 48, PROV_GRONINGEN, AMR_GRONINGEN, "Het Hogeland" },
	{ 9301, 9349, 32, PROV_DRENTHE, AMR_GRONINGEN, "Noordenveld" },
	{ 9471, 9489, 34, PROV_DRENTHE, AMR_GRONINGEN, "Tynaarlo" },
	{ 9401, 9409, 69, PROV_DRENTHE, AMR_DRENTHE, "Assen" },
	{ 9411, 9449, 33, PROV_DRENTHE, AMR_DRENTHE, "Midden-Drenthe" },
	{ 9451, 9469, 25, PROV_DRENTHE, AMR_DRENTHE, "Aa en Hunze" },
	{ 9521, 9539, 25, PROV_DRENTHE, AMR_DRENTHE, "Borger-Odoorn" },
	{ 7811, 7889, 108, PROV_DRENTHE, AMR_DRENTHE, "Emmen" },
	{ 7741, 7759, 35, PROV_DRENTHE, AMR_DRENTHE, "Coevorden" },
	{ 7901, 7909, 56, PROV_DRENTHE, AMR_DRENTHE, "Hoogeveen" },
	{ 7941, 7949, 34, PROV_DRENTHE, AMR_DRENTHE, "Meppel" },
	{ 7921, 7939, 24, PROV_DRENTHE, AMR_DRENTHE, "De Wolden" },
	{ 7971, 7999, 20, PROV_DRENTHE, AMR_DRENTHE, "Westerveld" },
	{ 8901, 8939, 125, PROV_FRYSLAN, AMR_FRIESLAND, "Leeuwarden" },
	{ 9201, 9219, 56, PROV_FRYSLAN, AMR_FRIESLAND, "Smallingerland" },
	{ 8441, 8449, 51, PROV_FRYSLAN, AMR_FRIESLAND, "Heerenveen" },
	{ 8601, 8629, 90, PROV_FRYSLAN, AMR_FRIESLAND, "Súdwest-Fryslân" },
	{ 9101, 9119, 45, PROV_FRYSLAN, AMR_FRIESLAND, "Noardeast-Fryslân" },
	{ 8421, 8439, 26, PROV_FRYSLAN, AMR_FRIESLAND, "Ooststellingwerf" },
	{ 8471, 8479, 26, PROV_FRYSLAN, AMR_FRIESLAND, "Weststellingwerf" },
	{ 8501, 8539, 52, PROV_FRYSLAN, AMR_FRIESLAND, "De Fryske Marren" },
	{ 9241, 9259, 30, PROV_FRYSLAN, AMR_FRIESLAND, "Opsterland" },
	{ 9061, 9089, 32, PROV_FRYSLAN, AMR_FRIESLAND, "Tytsjerksteradiel" },
	{ 9281, 9299, 28, PROV_FRYSLAN, AMR_FRIESLAND, "Achtkarspelen" },
	{ 8801, 8819, 46, PROV_FRYSLAN, AMR_FRIESLAND, "Waadhoeke" },
	{ 8861, 8869, 16, PROV_FRYSLAN, AMR_FRIESLAND, "Harlingen" },
};
#define PC_COUNT (sizeof(pc_table) / sizeof(pc_table[0]))

static uint32_t pc_total_weight(void)
{
	uint32_t t = 0;

	for (size_t i = 0; i < PC_COUNT; i++)
		t += pc_table[i].weight;
	return t;
}

/* ---- a person ------------------------------------------------------------ */

enum { FUND_TECHNIEK, FUND_ZORG };
enum { SEC_TECHNIEK, SEC_ZORG, SEC_ICT, SEC_BOUW, SEC_ENERGIE };
static const char *const sector_name[] = { "techniek", "zorg", "ict", "bouw", "energie" };
static const char *const programme_name[] = { "noorden-leert-door-1", "noorden-leert-door-2",
					      "kansrijk-verzilveren" };
enum { TRAJ_SCHOLING, TRAJ_LOOPBAANADVIES, TRAJ_OMSCHOLING };
static const char *const traject_name[] = { "scholing", "loopbaanadvies", "omscholing" };

struct person {
	uint64_t idx;
	unsigned mask;
	uint32_t bsn;
	int32_t birth, adult;        /* days; adult = 18th birthday (near enough) */
	uint16_t pc4;
	uint8_t province, amr;
	int32_t start[3], end[3];    /* per programme, when in mask */
	uint8_t done[3], fund[3], sector[3];
	int32_t jtf_start, jtf_end;  /* jtf_end < 0: still running */
	uint8_t jtf_done, traject;
	int32_t anchor;              /* earliest programme/JTF start, or first contact; -1: none */
	int32_t contact;             /* first mobility-team contact, when in S_MOB */
	int any_done;                /* completed at least one programme or JTF trajectory */
};

struct synth_ctx {
	const struct synth_plan *plan;
	struct perm bsn_perm;
	uint32_t pc_weight;
	int32_t ref;
};

/* Programme windows and typical durations (docs/synth.md, "Timeline"). */
static const struct {
	int y0, m0, d0, y1, m1, d1;
	unsigned dur_min, dur_span, done_permille, techniek_permille;
	int max_birth_year;  /* at least 18 at the earliest start */
} prog_spec[3] = {
	{ 2020, 9, 1, 2021, 12, 15, 30, 150, 870, 600, 2001 },
	{ 2022, 3, 1, 2023, 6, 30, 30, 210, 850, 600, 2003 },
	{ 2021, 6, 1, 2024, 12, 31, 90, 450, 800, 800, 2002 },
};

static void person_programme(const struct synth_ctx *c, struct person *p, int s)
{
	struct rng r = rng_for(c->plan->seed, p->idx, (uint64_t)(T_NLD1 + s));
	int32_t lo = D(prog_spec[s].y0, (unsigned)prog_spec[s].m0, (unsigned)prog_spec[s].d0);
	int32_t hi = D(prog_spec[s].y1, (unsigned)prog_spec[s].m1, (unsigned)prog_spec[s].d1);

	p->start[s] = rng_day(&r, lo, hi);
	p->end[s] = p->start[s] + (int32_t)prog_spec[s].dur_min + (int32_t)rng_below(&r, prog_spec[s].dur_span);
	p->done[s] = p->end[s] <= c->ref && rng_permille(&r, prog_spec[s].done_permille);
	if (rng_permille(&r, prog_spec[s].techniek_permille)) {
		static const uint8_t tech[10] = { SEC_TECHNIEK, SEC_TECHNIEK, SEC_TECHNIEK, SEC_TECHNIEK,
						  SEC_BOUW, SEC_BOUW, SEC_ENERGIE, SEC_ENERGIE,
						  SEC_ICT, SEC_ICT };

		p->fund[s] = FUND_TECHNIEK;
		p->sector[s] = tech[rng_below(&r, 10)];
	} else {
		p->fund[s] = FUND_ZORG;
		p->sector[s] = SEC_ZORG;
	}
}

static void person_jtf(const struct synth_ctx *c, struct person *p)
{
	struct rng r = rng_for(c->plan->seed, p->idx, T_JTF);
	unsigned t = rng_below(&r, 1000);
	int32_t lo = D(2023, 1, 9), hi = D(2025, 4, 30), end;

	p->traject = t < 550 ? TRAJ_SCHOLING : t < 850 ? TRAJ_LOOPBAANADVIES : TRAJ_OMSCHOLING;
	p->jtf_start = rng_day(&r, lo, hi);
	if (p->jtf_start < p->adult)
		p->jtf_start = p->adult;
	if (p->traject == TRAJ_LOOPBAANADVIES)
		end = p->jtf_start + 14 + (int32_t)rng_below(&r, 77);
	else if (p->traject == TRAJ_SCHOLING)
		end = p->jtf_start + 30 + (int32_t)rng_below(&r, 241);
	else
		end = p->jtf_start + 180 + (int32_t)rng_below(&r, 361);
	p->jtf_end = end <= c->ref ? end : -1;
	p->jtf_done = p->jtf_end >= 0 && rng_permille(&r, 820);
}

/* Everything about person |idx| (a member of the sets in |mask|). */
static void person_make(const struct synth_ctx *c, uint64_t idx, unsigned mask, struct person *p)
{
	struct rng r = rng_for(c->plan->seed, idx, T_PERSON);
	int maxy = 2005, y, span;
	uint32_t w;
	const struct pc_range *pc = pc_table;

	memset(p, 0, sizeof(*p));
	p->idx = idx;
	p->mask = mask;
	p->bsn = bsn_from_number((uint32_t)perm_apply(&c->bsn_perm, idx));
	for (int s = 0; s < 3; s++)
		if ((mask & F(s)) && prog_spec[s].max_birth_year < maxy)
			maxy = prog_spec[s].max_birth_year;
	/* Half uniform, half triangular: a working-age bulge around 40. */
	span = maxy - 1960 + 1;
	if (rng_permille(&r, 500))
		y = 1960 + (int)rng_below(&r, (uint32_t)span);
	else
		y = 1960 + (int)((rng_below(&r, (uint32_t)span) + rng_below(&r, (uint32_t)span)) / 2);
	p->birth = D(y, 1, 1) + (int32_t)rng_below(&r, (uint32_t)(D(y + 1, 1, 1) - D(y, 1, 1)));
	p->adult = p->birth + 6575;
	w = rng_below(&r, c->pc_weight);
	for (size_t i = 0; i < PC_COUNT; i++) {
		if (w < pc_table[i].weight) {
			pc = &pc_table[i];
			break;
		}
		w -= pc_table[i].weight;
	}
	p->pc4 = (uint16_t)(pc->lo + rng_below(&r, (uint32_t)(pc->hi - pc->lo + 1)));
	p->province = pc->province;
	p->amr = pc->amr;

	p->anchor = -1;
	for (int s = 0; s < 3; s++) {
		if (!(mask & F(s)))
			continue;
		person_programme(c, p, s);
		p->any_done |= p->done[s];
		if (p->anchor < 0 || p->start[s] < p->anchor)
			p->anchor = p->start[s];
	}
	if (mask & F(S_JTF)) {
		person_jtf(c, p);
		p->any_done |= p->jtf_done;
		if (p->anchor < 0 || p->jtf_start < p->anchor)
			p->anchor = p->jtf_start;
	}
	if (mask & F(S_MOB)) {
		struct rng m = rng_for(c->plan->seed, idx, T_MOB);
		int32_t first = D(2020, 6, 1);

		if (p->adult > first)
			first = p->adult;
		if (first > c->ref)
			first = c->ref;
		if (p->anchor >= 0) {
			/* The contact that led to the enrolment came before it. */
			p->contact = p->anchor - 14 - (int32_t)rng_below(&m, 107);
			if (p->contact < first)
				p->contact = first < p->anchor ? first : p->anchor;
		} else {
			p->contact = rng_day(&m, first, c->ref);
			p->anchor = p->contact;
		}
	}
}

/* ---- output files -------------------------------------------------------- */

#define OUT_BUF (1u << 20)
#define ROW_MAX 256 /* no row comes near this */

enum { FILE_JTF = 0, FILE_MOB = 3, FILE_WW = 6, FILE_ENROL = 7, FILE_COUNT = 9 };

static const struct {
	const char *owner, *name, *header;
} file_spec[FILE_COUNT] = {
#define JTF_HDR "bsn,traject,start_date,end_date,completed,birth_date,postcode,arbeidsmarktregio"
#define MOB_HDR "bsn,contact_date,doelgroep,advies,birth_date,postcode"
#define ENR_HDR "bsn,programme,sector,start_year,completed,birth_date,postcode"
	{ "provincie-groningen", "jtf-deelnemers", JTF_HDR },
	{ "provincie-fryslan", "jtf-deelnemers", JTF_HDR },
	{ "provincie-drenthe", "jtf-deelnemers", JTF_HDR },
	{ "gemeente-groningen", "mobiliteitsteam-contacten", MOB_HDR },
	{ "gemeente-leeuwarden", "mobiliteitsteam-contacten", MOB_HDR },
	{ "gemeente-emmen", "mobiliteitsteam-contacten", MOB_HDR },
	{ "uwv", "ww-uitkeringen", "bsn,start_date,end_date,end_reason,arbeidsmarktregio" },
	{ "opleidingsfonds-techniek", "inschrijvingen", ENR_HDR },
	{ "opleidingsfonds-zorg", "inschrijvingen", ENR_HDR },
};

struct out {
	int fd;
	char *buf;
	size_t len;
	uint64_t rows, persons;
	int failed;      /* errno of the first write error, 0 if none */
	char path[4096], tmp[4096];
};

static int out_flush(struct out *f)
{
	size_t done = 0;

	while (done < f->len && !f->failed) {
		ssize_t n = write(f->fd, f->buf + done, f->len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			f->failed = n < 0 ? errno : EIO;
		else
			done += (size_t)n;
	}
	f->len = 0;
	return f->failed ? -1 : 0;
}

/* Room for one more row. */
static char *out_row(struct out *f)
{
	if (OUT_BUF - f->len < ROW_MAX)
		out_flush(f);
	return f->buf + f->len;
}

static char *put_str(char *p, const char *s)
{
	while (*s)
		*p++ = *s++;
	return p;
}

static char *put_uint(char *p, uint64_t v)
{
	char t[24];
	int n = 0;

	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = t[--n];
	return p;
}

static char *put_date(char *p, int32_t day)
{
	int y;
	unsigned m, d;

	civil_from_days(day, &y, &m, &d);
	p[0] = (char)('0' + y / 1000);
	p[1] = (char)('0' + y / 100 % 10);
	p[2] = (char)('0' + y / 10 % 10);
	p[3] = (char)('0' + y % 10);
	p[4] = '-';
	p[5] = (char)('0' + m / 10);
	p[6] = (char)('0' + m % 10);
	p[7] = '-';
	p[8] = (char)('0' + d / 10);
	p[9] = (char)('0' + d % 10);
	return p + 10;
}

static char *put_bsn(char *p, uint32_t bsn)
{
	char s[10];

	bsn_format(bsn, s);
	memcpy(p, s, 9);
	return p + 9;
}

static void out_end_row(struct out *f, char *p)
{
	*p++ = '\n';
	f->len = (size_t)(p - f->buf);
	f->rows++;
}

/* ---- the four passes ----------------------------------------------------- */

static void emit_jtf(const struct synth_ctx *c, const struct person *p, struct out *files)
{
	struct out *f = &files[FILE_JTF + p->province];
	char *q = out_row(f);

	(void)c;
	q = put_bsn(q, p->bsn);
	*q++ = ',';
	q = put_str(q, traject_name[p->traject]);
	*q++ = ',';
	q = put_date(q, p->jtf_start);
	*q++ = ',';
	if (p->jtf_end >= 0)
		q = put_date(q, p->jtf_end);
	*q++ = ',';
	q = put_str(q, p->jtf_done ? "true" : "false");
	*q++ = ',';
	q = put_date(q, p->birth);
	*q++ = ',';
	q = put_uint(q, p->pc4);
	*q++ = ',';
	q = put_str(q, amr_name[p->amr]);
	out_end_row(f, q);
	f->persons++;
}

static void mob_row(struct out *f, const struct person *p, int32_t day, const char *doelgroep,
		    const char *advies)
{
	char *q = out_row(f);

	q = put_bsn(q, p->bsn);
	*q++ = ',';
	q = put_date(q, day);
	*q++ = ',';
	q = put_str(q, doelgroep);
	*q++ = ',';
	q = put_str(q, advies);
	*q++ = ',';
	q = put_date(q, p->birth);
	*q++ = ',';
	q = put_uint(q, p->pc4);
	out_end_row(f, q);
}

static const char *mob_advies(struct rng *r, int enrolled, int first)
{
	unsigned u = rng_below(r, 1000);

	if (enrolled && first)
		return u < 900 ? "scholing" : u < 950 ? "ander-werk" : "begeleiding";
	if (enrolled)
		return u < 600 ? "scholing" : u < 900 ? "begeleiding" : "ander-werk";
	return u < 250 ? "scholing" : u < 550 ? "ander-werk" : u < 800 ? "begeleiding" : "geen";
}

/* The team of the person's labour-market region; 1-3 contacts. */
static void emit_mob(const struct synth_ctx *c, const struct person *p, struct out *files)
{
	struct out *f = &files[FILE_MOB + p->amr];
	struct rng r = rng_for(c->plan->seed, p->idx, T_CONTACTS);
	unsigned u = rng_below(&r, 1000), n = u < 750 ? 1 : u < 950 ? 2 : 3;
	int enrolled = (p->mask & (F_PROG | F(S_JTF))) != 0;
	const char *doelgroep;
	int32_t day = p->contact;

	u = rng_below(&r, 1000);
	if (p->mask & F(S_WW))
		doelgroep = u < 850 ? "werkzoekende" : u < 950 ? "werkende" : "zzp";
	else
		doelgroep = u < 740 ? "werkende" : u < 920 ? "zzp" : "werkzoekende";
	for (unsigned i = 0; i < n && day <= c->ref; i++) {
		mob_row(f, p, day, doelgroep, mob_advies(&r, enrolled, i == 0));
		day += 14 + (int32_t)rng_below(&r, 167);
	}
	f->persons++;
}

static const char *ww_reason(struct rng *r, const struct person *p, int32_t end, unsigned werk)
{
	unsigned u = rng_below(r, 1000);

	if (u < werk)
		return "werk";
	if (u < werk + 90)
		return "ziekte";
	if (u < werk + 150 && end - p->birth >= 62 * 365)
		return "pensioen";
	return "overig";
}

static void ww_row(struct out *f, const struct person *p, int32_t start, int32_t end,
		   const char *reason)
{
	char *q = out_row(f);

	q = put_bsn(q, p->bsn);
	*q++ = ',';
	q = put_date(q, start);
	*q++ = ',';
	if (end >= 0)
		q = put_date(q, end);
	*q++ = ',';
	q = put_str(q, end >= 0 ? reason : "lopend");
	*q++ = ',';
	q = put_str(q, amr_name[p->amr]);
	out_end_row(f, q);
}

/*
 * One WW benefit per person (two for 15%: an earlier one first). A person in
 * a programme or in contact with a team was on WW at that moment: the
 * benefit starts 30-300 days before the anchor and runs past it.
 */
static void emit_ww(const struct synth_ctx *c, const struct person *p, struct out *files)
{
	struct out *f = &files[FILE_WW];
	struct rng r = rng_for(c->plan->seed, p->idx, T_WW);
	int32_t start, end, lo;
	unsigned werk = p->any_done ? 780 : 550;

	if (p->anchor >= 0) {
		start = p->anchor - 30 - (int32_t)rng_below(&r, 271);
		lo = p->adult + 90 < p->anchor ? p->adult + 90 : p->anchor;
		if (start < lo)
			start = lo;
		end = p->anchor + 30 + (int32_t)rng_below(&r, 400);
	} else {
		lo = D(2019, 1, 1);
		if (lo < p->adult + 180)
			lo = p->adult + 180;
		if (lo > c->ref - 60)
			lo = c->ref - 60;
		start = rng_day(&r, lo, c->ref - 30);
		/* Most benefits are short: the shorter of two uniform draws. */
		uint32_t a = rng_below(&r, 700), b = rng_below(&r, 700);
		end = start + 30 + (int32_t)(a < b ? a : b);
	}
	if (end > start + 730) /* WW lasts at most 24 months */
		end = start + 730;
	if (rng_permille(&r, 150)) {
		int32_t end2 = start - 60 - (int32_t)rng_below(&r, 400);
		int32_t start2 = end2 - 30 - (int32_t)rng_below(&r, 300);

		if (start2 >= D(2016, 1, 1) && start2 >= p->adult + 180)
			ww_row(f, p, start2, end2, ww_reason(&r, p, end2, 600));
	}
	ww_row(f, p, start, end <= c->ref ? end : -1, ww_reason(&r, p, end, werk));
	f->persons++;
}

static void emit_enrol(const struct synth_ctx *c, const struct person *p, struct out *files)
{
	int seen[2] = { 0, 0 };

	(void)c;
	for (int s = 0; s < 3; s++) {
		struct out *f;
		char *q;

		if (!(p->mask & F(s)))
			continue;
		f = &files[FILE_ENROL + p->fund[s]];
		q = out_row(f);
		q = put_bsn(q, p->bsn);
		*q++ = ',';
		q = put_str(q, programme_name[s]);
		*q++ = ',';
		q = put_str(q, sector_name[p->sector[s]]);
		*q++ = ',';
		q = put_uint(q, (uint64_t)year_of(p->start[s]));
		*q++ = ',';
		q = put_str(q, p->done[s] ? "true" : "false");
		*q++ = ',';
		q = put_date(q, p->birth);
		*q++ = ',';
		q = put_uint(q, p->pc4);
		out_end_row(f, q);
		seen[p->fund[s]] = 1;
	}
	for (int i = 0; i < 2; i++)
		if (seen[i])
			files[FILE_ENROL + i].persons++;
}

static const struct {
	const char *name;
	unsigned mask;
	void (*emit)(const struct synth_ctx *, const struct person *, struct out *);
} pass_spec[] = {
	{ "provincie-*/jtf-deelnemers", F(S_JTF), emit_jtf },
	{ "gemeente-*/mobiliteitsteam-contacten", F(S_MOB), emit_mob },
	{ "uwv/ww-uitkeringen", F(S_WW), emit_ww },
	{ "opleidingsfonds-*/inschrijvingen", F_PROG, emit_enrol },
};

/*
 * Visits every person in a set in a keyed random order (so a file shows no
 * trace of the atoms), mapping the set's k-th member to its atom by binary
 * search over the members' running totals.
 */
static void run_pass(const struct synth_ctx *c, int pi, struct out *files,
		     const struct synth_options *o)
{
	const struct synth_plan *pl = c->plan;
	uint64_t cum[SYNTH_MAX_ATOMS + 1];
	int which[SYNTH_MAX_ATOMS], n = 0;
	struct perm order;
	struct person p;

	cum[0] = 0;
	for (int i = 0; i < pl->natoms; i++) {
		if (!(pl->atom[i].mask & pass_spec[pi].mask) || pl->atom[i].n == 0)
			continue;
		which[n] = i;
		cum[n + 1] = cum[n] + pl->atom[i].n;
		n++;
	}
	perm_init(&order, cum[n], pl->seed, T_ORDER + (uint64_t)pi);
	for (uint64_t k = 0; k < cum[n]; k++) {
		uint64_t j = perm_apply(&order, k);
		int lo = 0, hi = n - 1;
		const struct synth_atom *a;

		while (lo < hi) { /* the last atom whose cum <= j */
			int mid = (lo + hi + 1) / 2;

			if (cum[mid] <= j)
				lo = mid;
			else
				hi = mid - 1;
		}
		a = &pl->atom[which[lo]];
		person_make(c, a->off + (j - cum[lo]), a->mask, &p);
		pass_spec[pi].emit(c, &p, files);
		if (o->progress && (k & 0xffff) == 0xffff)
			o->progress(o->arg, pass_spec[pi].name, k + 1, cum[n]);
	}
	if (o->progress)
		o->progress(o->arg, pass_spec[pi].name, cum[n], cum[n]);
}

/* ---- files on disk ------------------------------------------------------- */

static int mkdir_p(const char *path, char *err, size_t errlen)
{
	char buf[4096];
	size_t n = strlen(path);

	if (n >= sizeof(buf)) {
		snprintf(err, errlen, "%s: path too long", path);
		return SYNTH_ERR_ARG;
	}
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "cannot create directory %s: %s", buf, strerror(errno));
			return SYNTH_ERR_IO;
		}
		buf[i] = path[i];
	}
	return 0;
}

static int out_open(struct out *f, char *err, size_t errlen)
{
	f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (f->fd < 0) {
		snprintf(err, errlen, "cannot create %s: %s", f->tmp, strerror(errno));
		return SYNTH_ERR_IO;
	}
	return 0;
}

/* Flushes, closes and renames into place. */
static int out_finish(struct out *f, char *err, size_t errlen)
{
	out_flush(f);
	if (close(f->fd) < 0 && !f->failed)
		f->failed = errno;
	f->fd = -1;
	if (f->failed) {
		snprintf(err, errlen, "cannot write %s: %s", f->tmp, strerror(f->failed));
		return SYNTH_ERR_IO;
	}
	if (rename(f->tmp, f->path) < 0) {
		snprintf(err, errlen, "cannot rename %s to %s: %s", f->tmp, f->path, strerror(errno));
		return SYNTH_ERR_IO;
	}
	f->tmp[0] = '\0';
	return 0;
}

static void manifest_write(const struct synth_ctx *c, struct out *m, const struct out *files)
{
	const struct synth_plan *pl = c->plan;
	static const char *const set_name[S_COUNT] = {
		"noorden-leert-door-1", "noorden-leert-door-2", "kansrijk-verzilveren",
		"jtf", "mobiliteitsteam", "ww",
	};

	m->len = (size_t)snprintf(m->buf, OUT_BUF,
				  "# noordpoort synth: synthetic partner data, no real persons\n"
				  "generator\tnoordpoort-synth-1\n"
				  "seed\t%llu\n"
				  "scale\t%.17g\n"
				  "reference_date\t%04d-%02d-%02d\n"
				  "persons\t%llu\n"
				  "\n# dataset\tfile\trows\tpersons\n",
				  (unsigned long long)pl->seed, pl->scale, REF_Y, REF_M, REF_D,
				  (unsigned long long)pl->persons);
	for (int i = 0; i < FILE_COUNT; i++)
		m->len += (size_t)snprintf(m->buf + m->len, OUT_BUF - m->len,
					   "%s/%s\t%s/%s.csv\t%llu\t%llu\n",
					   file_spec[i].owner, file_spec[i].name,
					   file_spec[i].owner, file_spec[i].name,
					   (unsigned long long)files[i].rows,
					   (unsigned long long)files[i].persons);
	m->len += (size_t)snprintf(m->buf + m->len, OUT_BUF - m->len,
				   "\n# programme\tdistinct persons (all files together)\n");
	for (int s = 0; s < S_COUNT; s++)
		m->len += (size_t)snprintf(m->buf + m->len, OUT_BUF - m->len, "%s\t%llu\n",
					   set_name[s], (unsigned long long)pl->total[s]);
}

int synth_generate(const struct synth_options *o, char *err, size_t errlen)
{
	struct synth_plan plan;
	struct synth_ctx c;
	struct out files[FILE_COUNT + 1]; /* the last one is MANIFEST.txt */
	struct out *man = &files[FILE_COUNT];
	int rc = 0, nopen = 0;
	struct stat st;

	if (!o || !o->out_dir || !*o->out_dir) {
		snprintf(err, errlen, "no output directory");
		return SYNTH_ERR_ARG;
	}
	if (!isfinite(o->scale) || o->scale <= 0 || o->scale > SYNTH_MAX_SCALE) {
		snprintf(err, errlen, "scale %g is out of range (above 0, at most %g)", o->scale,
			 SYNTH_MAX_SCALE);
		return SYNTH_ERR_ARG;
	}
	plan_make(&plan, o->seed, o->scale);
	if (plan.persons > SYNTH_BSN_SPACE) {
		snprintf(err, errlen, "scale %g needs %llu persons; only %u BSNs are available",
			 o->scale, (unsigned long long)plan.persons, SYNTH_BSN_SPACE);
		return SYNTH_ERR_ARG;
	}
	c.plan = &plan;
	c.pc_weight = pc_total_weight();
	c.ref = D(REF_Y, REF_M, REF_D);
	perm_init(&c.bsn_perm, SYNTH_BSN_SPACE, o->seed, T_BSNKEY);

	memset(files, 0, sizeof(files));
	for (int i = 0; i <= FILE_COUNT; i++) {
		struct out *f = &files[i];
		int n1, n2;

		f->fd = -1;
		if (i < FILE_COUNT) {
			n1 = snprintf(f->path, sizeof(f->path), "%s/%s/%s.csv", o->out_dir,
				      file_spec[i].owner, file_spec[i].name);
			n2 = snprintf(f->tmp, sizeof(f->tmp), "%s/%s/.%s.csv.tmp", o->out_dir,
				      file_spec[i].owner, file_spec[i].name);
		} else {
			n1 = snprintf(f->path, sizeof(f->path), "%s/MANIFEST.txt", o->out_dir);
			n2 = snprintf(f->tmp, sizeof(f->tmp), "%s/.MANIFEST.txt.tmp", o->out_dir);
		}
		if (n1 < 0 || n2 < 0 || (size_t)n2 >= sizeof(f->tmp)) {
			snprintf(err, errlen, "%s: path too long", o->out_dir);
			return SYNTH_ERR_ARG;
		}
		if (!o->force && lstat(f->path, &st) == 0) {
			snprintf(err, errlen, "%s exists (use --force to overwrite)", f->path);
			return SYNTH_ERR_EXISTS;
		}
	}

	if ((rc = mkdir_p(o->out_dir, err, errlen)) < 0)
		return rc;
	for (int i = 0; i <= FILE_COUNT; i++) {
		char dir[4096];

		if (i < FILE_COUNT) {
			snprintf(dir, sizeof(dir), "%s/%s", o->out_dir, file_spec[i].owner);
			if ((rc = mkdir_p(dir, err, errlen)) < 0)
				goto out;
		}
		if (!(files[i].buf = malloc(OUT_BUF))) {
			snprintf(err, errlen, "out of memory");
			rc = SYNTH_ERR_NOMEM;
			goto out;
		}
		if ((rc = out_open(&files[i], err, errlen)) < 0)
			goto out;
		nopen++;
		if (i < FILE_COUNT) {
			char *q = put_str(files[i].buf, file_spec[i].header);

			*q++ = '\n';
			files[i].len = (size_t)(q - files[i].buf);
		}
	}

	for (size_t pi = 0; pi < sizeof(pass_spec) / sizeof(pass_spec[0]); pi++)
		run_pass(&c, (int)pi, files, o);
	for (int i = 0; i < FILE_COUNT; i++) {
		if ((rc = out_finish(&files[i], err, errlen)) < 0)
			goto out;
		if (o->file_done) {
			char id[128];

			snprintf(id, sizeof(id), "%s/%s", file_spec[i].owner, file_spec[i].name);
			o->file_done(o->arg, id, files[i].path, files[i].rows, files[i].persons);
		}
	}
	/* The manifest comes last: its presence says the set is complete. */
	manifest_write(&c, man, files);
	rc = out_finish(man, err, errlen);

out:
	for (int i = FILE_COUNT; i >= 0; i--) {
		if (files[i].fd >= 0)
			close(files[i].fd);
		if (rc < 0 && i < nopen && files[i].tmp[0])
			unlink(files[i].tmp);
		free(files[i].buf);
	}
	return rc;
}
