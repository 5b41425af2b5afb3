/*
 * `noordpoort keygen --out FILE`: the command-line face of
 * pseudo_master_generate. Like gateway/main.c, usage errors exit 2 with one
 * line; this is the only file in crypto/ that writes to stdout/stderr.
 */
#include <stdio.h>
#include <string.h>

#include "../common/cliusage.h"
#include "pseudo.h"

static const char usage_keygen[] =
	"Usage: noordpoort keygen --out FILE\n"
	"\n"
	"Writes a new random pseudonymisation master key to FILE, mode 0600.\n"
	"An existing FILE is never overwritten. Every pseudonym the node hands\n"
	"out is derived from this key: keep it secret and back it up; losing it\n"
	"makes all earlier pseudonyms unlinkable to new ones.\n"
	"\n"
	"Options:\n"
	"  -o, --out FILE   where to write the key (required)\n"
	"  -h, --help       show this help\n";

static int keygen_usage_error(const char *fmt, const char *arg)
{
	return cli_usage_error("noordpoort", "keygen", fmt, arg);
}

int pseudo_keygen_cli(int argc, char **argv)
{
	const char *out = NULL;
	char err[512];

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			fputs(usage_keygen, stdout);
			return 0;
		}
		if (strcmp(a, "-o") == 0 || strcmp(a, "--out") == 0) {
			if (i + 1 >= argc)
				return keygen_usage_error("%s needs a file", a);
			if (out)
				return keygen_usage_error("%s given twice", a);
			out = argv[++i];
		} else if (strncmp(a, "--out=", 6) == 0) {
			if (out)
				return keygen_usage_error("%s given twice", "--out");
			out = a + 6;
		} else {
			return keygen_usage_error("unexpected argument '%s'", a);
		}
	}
	if (!out || !*out)
		return keygen_usage_error("%s", "missing --out FILE");
	if (pseudo_master_generate(out, err, sizeof(err)) < 0) {
		fprintf(stderr, "noordpoort keygen: %s\n", err);
		return 1;
	}
	printf("%s: new master key written (mode 0600)\n", out);
	return 0;
}
