/*
 * `noordpoort synth`: the command-line face of synth_generate. Like
 * cli/keygen_cli.c, usage errors exit 2 with one line; this is the only file
 * in synth/ that writes to stdout/stderr.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "usage.h"
#include "../synth/synth.h"

static const char usage_synth[] =
	"Usage: noordpoort synth --out DIR [--seed S] [--scale X] [--format csv]\n"
	"                        [--force] [--progress]\n"
	"\n"
	"Writes synthetic partner data (no real persons) for every dataset of the\n"
	"demo catalog: DIR/<owner>/<dataset>.csv with a header row, and\n"
	"DIR/MANIFEST.txt with the seed, the scale and the row counts.\n"
	"At scale 1 the programme totals are the partners' own figures: 600 and\n"
	"450 persons in Noorden Leert Door tranches 1 and 2, 600 in Kansrijk\n"
	"Verzilveren, 5000 persons in contact with the mobility teams. At scale X\n"
	"every total is round(figure * X). The same seed and scale give\n"
	"byte-identical files. See docs/synth.md.\n"
	"\n"
	"Options:\n"
	"  -o, --out DIR     output directory, created if missing (required)\n"
	"  -s, --seed S      whole number 0..18446744073709551615 (default 1)\n"
	"  -x, --scale X     above 0, at most 5000 (default 1)\n"
	"      --format csv  the only format (default csv)\n"
	"  -f, --force       overwrite existing files (default: refuse)\n"
	"      --progress    show progress even when stderr is not a terminal\n"
	"  -h, --help        show this help\n";

static int synth_usage_error(const char *fmt, const char *arg)
{
	return cli_usage_error("noordpoort", "synth", fmt, arg);
}

/* Strictly a decimal whole number: no sign, no spaces, no overflow. */
static int parse_seed(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

static int parse_scale(const char *s, double *out)
{
	char *end;
	double v;

	if (!*s || !((*s >= '0' && *s <= '9') || *s == '.'))
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v <= 0 || v > SYNTH_MAX_SCALE)
		return -1;
	*out = v;
	return 0;
}

struct progress_state {
	int show, tty;
	struct timespec last;
	int dirty; /* a progress line is on screen, without newline */
};

static void on_progress(void *arg, const char *pass, uint64_t done, uint64_t total)
{
	struct progress_state *ps = arg;
	struct timespec now;

	if (!ps->show)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	/* At most four updates a second, and always the last one. */
	if (done != total && (now.tv_sec - ps->last.tv_sec) * 1000000000L +
				     (now.tv_nsec - ps->last.tv_nsec) < 250000000L)
		return;
	ps->last = now;
	/* A terminal gets one line redrawn in place; a log gets whole lines. */
	fprintf(stderr, "%ssynth: %s %llu/%llu persons (%llu%%)%s", ps->tty ? "\r" : "", pass,
		(unsigned long long)done, (unsigned long long)total,
		(unsigned long long)(total ? done * 100 / total : 100), ps->tty ? "\033[K" : "\n");
	ps->dirty = ps->tty;
	if (done == total && ps->tty) {
		fputc('\n', stderr);
		ps->dirty = 0;
	}
}

static void on_file(void *arg, const char *dataset, const char *path, uint64_t rows,
		    uint64_t persons)
{
	(void)arg;
	fprintf(stderr, "synth: %s: %llu rows, %llu persons -> %s\n", dataset,
		(unsigned long long)rows, (unsigned long long)persons, path);
}

int synth_cli(int argc, char **argv)
{
	struct synth_options o = { .seed = 1, .scale = 1.0 };
	struct progress_state ps = { 0 };
	int seed_set = 0, scale_set = 0, format_set = 0;
	char err[4200];
	struct timespec t0, t1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
		char name[32];

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			fputs(usage_synth, stdout);
			return 0;
		}
		if (eq) { /* --name=value */
			size_t n = (size_t)(eq - a);

			if (n >= sizeof(name))
				return synth_usage_error("unexpected argument '%s'", a);
			memcpy(name, a, n);
			name[n] = '\0';
			v = eq + 1;
			a = name;
		}
		if (strcmp(a, "-f") == 0 || strcmp(a, "--force") == 0) {
			if (v)
				return synth_usage_error("%s takes no value", a);
			o.force = 1;
			continue;
		}
		if (strcmp(a, "--progress") == 0) {
			if (v)
				return synth_usage_error("%s takes no value", a);
			ps.show = 1;
			continue;
		}
		if (strcmp(a, "-o") && strcmp(a, "--out") && strcmp(a, "-s") && strcmp(a, "--seed") &&
		    strcmp(a, "-x") && strcmp(a, "--scale") && strcmp(a, "--format"))
			return synth_usage_error("unexpected argument '%s'", argv[i]);
		if (!v) {
			if (i + 1 >= argc)
				return synth_usage_error("%s needs a value", a);
			v = argv[++i];
		}
		if (strcmp(a, "-o") == 0 || strcmp(a, "--out") == 0) {
			if (o.out_dir)
				return synth_usage_error("%s given twice", "--out");
			if (!*v)
				return synth_usage_error("%s", "--out: empty directory name");
			o.out_dir = v;
		} else if (strcmp(a, "-s") == 0 || strcmp(a, "--seed") == 0) {
			if (seed_set++)
				return synth_usage_error("%s given twice", "--seed");
			if (parse_seed(v, &o.seed) < 0)
				return synth_usage_error("--seed: '%s' is not a whole number 0..18446744073709551615", v);
		} else if (strcmp(a, "-x") == 0 || strcmp(a, "--scale") == 0) {
			if (scale_set++)
				return synth_usage_error("%s given twice", "--scale");
			if (parse_scale(v, &o.scale) < 0)
				return synth_usage_error("--scale: '%s' is not a number above 0 and at most 5000", v);
		} else {
			if (format_set++)
				return synth_usage_error("%s given twice", "--format");
			if (strcmp(v, "csv") != 0)
				return synth_usage_error("--format: '%s' is not supported (only csv)", v);
		}
	}
	if (!o.out_dir)
		return synth_usage_error("%s", "missing --out DIR");
	ps.tty = isatty(STDERR_FILENO);
	if (ps.tty)
		ps.show = 1;
	o.progress = on_progress;
	o.file_done = on_file;
	o.arg = &ps;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (synth_generate(&o, err, sizeof(err)) < 0) {
		if (ps.dirty)
			fputc('\n', stderr);
		fprintf(stderr, "noordpoort synth: %s\n", err);
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%s: synthetic data written (seed %llu, scale %g) in %.1f s; see %s/MANIFEST.txt\n",
	       o.out_dir, (unsigned long long)o.seed, o.scale,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, o.out_dir);
	return 0;
}
