/*
 * `noordpoort keygen --out FILE`: the command-line face of
 * pseudo_master_generate. Like cli/main.c, usage errors exit 2 with one
 * line; this is the only file in crypto/ that writes to stdout/stderr.
 */
#include <stdio.h>
#include <string.h>

#include "usage.h"
#include "../crypto/boxkey.h"
#include "../crypto/pseudo.h"
#include "cli.h"

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

static const char usage_boxkey[] =
	"Usage: noordpoort keygen --box --out PREFIX\n"
	"\n"
	"Writes a new X25519 key pair for sealed answers (crypto_box_seal):\n"
	"PREFIX.sec, the hub's secret key (mode 0600; hub.box_key in the hub's\n"
	"config), and PREFIX.pub, its public key (give it to every node:\n"
	"node.hub_public_key). Each is one line of lower-case hex. Existing files\n"
	"are never overwritten. Whoever holds PREFIX.sec can open every linked\n"
	"answer a node sends: keep it on the hub only.\n"
	"\n"
	"Options:\n"
	"  --box               make a box key pair (required)\n"
	"  -o, --out PREFIX    where to write PREFIX.sec and PREFIX.pub (required)\n"
	"  -h, --help          show this help\n";

static int boxkey_usage_error(const char *fmt, const char *arg)
{
	return cli_usage_error("noordpoort keygen", "--box", fmt, arg);
}

int pseudo_boxkey_cli(int argc, char **argv)
{
	const char *out = NULL;
	int box = 0;
	char err[512];

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			fputs(usage_boxkey, stdout);
			return 0;
		}
		if (strcmp(a, "--box") == 0) {
			box = 1;
		} else if (strcmp(a, "-o") == 0 || strcmp(a, "--out") == 0) {
			if (i + 1 >= argc)
				return boxkey_usage_error("%s needs a prefix", a);
			if (out)
				return boxkey_usage_error("%s given twice", a);
			out = argv[++i];
		} else if (strncmp(a, "--out=", 6) == 0) {
			if (out)
				return boxkey_usage_error("%s given twice", "--out");
			out = a + 6;
		} else {
			return boxkey_usage_error("unexpected argument '%s'", a);
		}
	}
	if (!box)
		return boxkey_usage_error("%s", "missing --box");
	if (!out || !*out)
		return boxkey_usage_error("%s", "missing --out PREFIX");
	if (pseudo_box_generate(out, err, sizeof(err)) < 0) {
		fprintf(stderr, "noordpoort keygen: %s\n", err);
		return 1;
	}
	printf("%s.sec: new box secret key (mode 0600); %s.pub: its public key\n", out, out);
	return 0;
}
