/*
 * Deterministic stand-ins for randombytes_uniform() for the noise and
 * disclosure tests (struct agg_rng's uniform): seeded, scripted, broken.
 */
#ifndef NOORDPOORT_TEST_RNG_FIXTURE_H
#define NOORDPOORT_TEST_RNG_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

/* splitmix64 (Steele, Lea, Flood 2014): fast and passes BigCrush. */
static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* Uniform in [0, b) by rejection, as randombytes_uniform() does. */
static uint32_t seeded_uniform(void *arg, uint32_t b)
{
	uint32_t min = (uint32_t)(0u - b) % b, v;

	do
		v = (uint32_t)(splitmix(arg) >> 32);
	while (v < min);
	return v % b;
}

/* Replays |vals| and records the bounds it was asked for. */
struct script {
	const uint32_t *vals;
	size_t n, pos; /* pos > n afterwards: the code drew more than traced */
	uint32_t bounds[64];
	uint64_t after; /* past the script: seeded draws, so a bug fails, not hangs */
};

static uint32_t scripted_uniform(void *arg, uint32_t b)
{
	struct script *s = arg;

	if (s->pos < 64)
		s->bounds[s->pos] = b;
	if (s->pos < s->n)
		return s->vals[s->pos++];
	s->pos++;
	return seeded_uniform(&s->after, b);
}

static uint32_t broken_uniform(void *arg, uint32_t b)
{
	(void)arg;
	return b; /* one past the end */
}

#endif
