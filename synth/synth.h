/*
 * Synthetic partner data for demos, tests and benchmarks: one CSV file per
 * dataset of policies/examples/catalog.yaml, for a made-up population whose
 * programme totals at scale 1 are the partners' own figures (docs/synth.md).
 *
 * Words: BSN = burgerservicenummer (valid by the elfproef, see
 * crypto/pseudo.h); WW = werkloosheidswet, the unemployment benefit UWV pays;
 * arbeidsmarktregio = labour-market region (here groningen, friesland,
 * drenthe); gemeente = municipality; JTF = the Just Transition Fund scheme the
 * provinces run; Noorden Leert Door (tranche 1 and 2) and Kansrijk
 * Verzilveren = the training programmes; Het Noorden Werkt Door = the
 * mobility teams of the three centre gemeenten.
 *
 * Everything is a pure function of (seed, scale): no clock, no rand(), no
 * per-row state kept in memory, so the same seed and scale give byte-identical
 * files and memory does not grow with the scale.
 */
#ifndef NOORDPOORT_SYNTH_H
#define NOORDPOORT_SYNTH_H

#include "../common/err.h"

#include <stddef.h>
#include <stdint.h>

/* What synth_generate returns (0 on success). */
enum synth_error {
	SYNTH_OK = 0,
	SYNTH_ERR_ARG = NP_ERR_ARG,    /* NULL/empty out_dir, scale not finite, <= 0 or > SYNTH_MAX_SCALE */
	SYNTH_ERR_EXISTS = NP_ERR_EXISTS, /* an output file exists and force is 0; nothing was written */
	SYNTH_ERR_IO = NP_ERR_IO,     /* mkdir/open/write/rename failed; err names the path and errno text */
	SYNTH_ERR_NOMEM = NP_ERR_NOMEM,
};

/*
 * The largest scale: the population must fit in the 81 million BSNs this
 * generator can hand out (about 13,300 persons per unit of scale).
 */
#define SYNTH_MAX_SCALE 5000.0

struct synth_options {
	const char *out_dir; /* created (with parents) if missing */
	uint64_t seed;
	double scale;        /* every total is round(figure * scale), half away from zero */
	int force;           /* 1: replace existing files; 0: refuse (SYNTH_ERR_EXISTS) */
	/*
	 * Optional callbacks (NULL: none); |arg| is passed back. progress() is
	 * called every 65536 persons and once at the end of each pass, with the
	 * pass's name ("uwv/ww-uitkeringen", "jtf-deelnemers", ...); the caller
	 * throttles printing. file_done() is called once per file written, in
	 * catalog order, after the file has its final name.
	 */
	void (*progress)(void *arg, const char *pass, uint64_t done, uint64_t total);
	void (*file_done)(void *arg, const char *dataset, const char *path,
			  uint64_t rows, uint64_t persons);
	void *arg;
};

/*
 * Writes OUT/<owner>/<name>.csv for every dataset and OUT/MANIFEST.txt.
 * Files are written under a temporary name and renamed when complete, so a
 * failed run leaves no half file under a final name. Returns 0,
 * SYNTH_ERR_ARG, SYNTH_ERR_EXISTS (checked before anything is written),
 * SYNTH_ERR_IO or SYNTH_ERR_NOMEM; |err| says why.
 */
int synth_generate(const struct synth_options *o, char *err, size_t errlen);

#endif
