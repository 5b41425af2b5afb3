#include "usage.h"

#include <stdio.h>

int cli_usage_error(const char *program, const char *cmd, const char *fmt, const char *arg)
{
	const char *sep = cmd ? " " : "";

	cmd = cmd ? cmd : "";
	fprintf(stderr, "%s%s%s: ", program, sep, cmd);
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (see '%s%s%s --help')\n", program, sep, cmd);
	return 2;
}
