/*
 * The noordpoort command line: one binary, subcommands for serving and for
 * the tools partners use. Usage errors exit 2 with a one-line reason.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "usage.h"
#include "../crypto/pseudo.h"
#include "../policies/policy.h"
#include "../synth/synth.h"
#include "../audit/audit.h"
#include "../gateway/config.h"
#include "csr_cli.h"
#include "../hub/fanout.h"
#include "ledger_cli.h"
#include "../gateway/server.h"

#ifndef NOORDPOORT_VERSION
#define NOORDPOORT_VERSION "0.1.0"
#endif

static const char usage_main[] =
	"Usage: noordpoort COMMAND [OPTIONS]\n"
	"\n"
	"Noordpoort is the federated data-exchange gateway of the northern\n"
	"labour-market partners: mutual TLS, HTTP/2, purpose-bound sharing.\n"
	"\n"
	"Commands:\n"
	"  serve -c FILE          run the gateway with the config FILE\n"
	"  check-config -c FILE   validate a config file and the files it names\n"
	"  policy COMMAND ...     check, test, explain, diff, sign and verify policy files\n"
	"  keygen --out FILE      write a new pseudonymisation master key (mode 0600)\n"
	"  keygen --sign --out P  write an Ed25519 key pair P.sec (0600) and P.pub\n"
	"  keygen --box --out P   write the hub's X25519 box key pair P.sec (0600), P.pub\n"
	"  query --hub URL -f Q   ask the hub a federated question (table, csv or json)\n"
	"  csr --org N --oin OIN --out P  a new partner's key P.key (0600) and request P.csr\n"
	"  synth --out DIR        write synthetic partner data (--seed S, --scale X)\n"
	"  audit verify FILE      check an audit log's hash chain and signatures\n"
	"  audit subject ...      every access concerning one person (subject access)\n"
	"  ledger init FILE       create the hub's privacy budget ledger (serve never does)\n"
	"  ledger verify L AUDIT  cross-check every debit in ledger L against the audit log\n"
	"\n"
	"Options:\n"
	"  -h, --help             show this help (also: noordpoort COMMAND --help)\n"
	"  -V, --version          show the version\n"
	"\n"
	"Configuration: docs/config.md. Example: examples/single/gateway.yaml.\n";

static const char usage_serve[] =
	"Usage: noordpoort serve -c FILE\n"
	"\n"
	"Runs the gateway. Logs JSON lines to the config's log destination.\n"
	"Signals: SIGHUP reloads certificates, CRL and the members file (a broken\n"
	"file keeps the old set in force); SIGTERM or SIGINT drains and exits.\n"
	"\n"
	"Options:\n"
	"  -c, --config FILE   the config file (required)\n"
	"  -h, --help          show this help\n";

static const char usage_check[] =
	"Usage: noordpoort check-config -c FILE\n"
	"\n"
	"Validates the config FILE and everything it names: TLS files, members,\n"
	"catalog, policies (and their signatures when required). Prints every\n"
	"problem as file:line:col: message. Exit status 0 when valid, 1 when not.\n"
	"\n"
	"Options:\n"
	"  -c, --config FILE   the config file (required)\n"
	"  -h, --help          show this help\n";

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
	return cli_usage_error("noordpoort", cmd, fmt, arg);
}

/* Parses "-c FILE" for a subcommand; returns 0, 1 (help shown) or 2. */
static int parse_config_arg(const char *cmd, const char *usage, int argc, char **argv,
			    const char **path)
{
	*path = NULL;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			fputs(usage, stdout);
			return 1;
		}
		if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
			if (i + 1 >= argc)
				return usage_error(cmd, "%s needs a file", argv[i]);
			*path = argv[++i];
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			*path = argv[i] + 9;
		} else {
			return usage_error(cmd, "unexpected argument '%s'", argv[i]);
		}
	}
	if (!*path)
		return usage_error(cmd, "%s", "missing -c FILE");
	return 0;
}

#include "../gateway/members.h"

static int cmd_check_config(int argc, char **argv)
{
	struct gw_config *cfg = NULL;
	struct gw_members *m = NULL;
	struct diag d = { 0 };
	const char *path;
	int rc = parse_config_arg("check-config", usage_check, argc, argv, &path);

	if (rc)
		return rc == 1 ? 0 : rc;
	if (gw_config_load(path, &cfg, &d) == 0 && gw_server_check(cfg, &d) == 0 &&
	    gw_members_load(cfg->members_file, &m, &d) == 0)
		rc = 0;
	else
		rc = 1;
	fputs(diag_text(&d), stderr);
	if (rc == 0)
		printf("%s: ok (%zu members, %u workers)\n", path, gw_members_count(m), cfg->workers);
	gw_members_free(m);
	gw_config_free(cfg);
	diag_clear(&d);
	return rc;
}

static int cmd_serve(int argc, char **argv)
{
	struct gw_config *cfg = NULL;
	struct diag d = { 0 };
	const char *path;
	int rc = parse_config_arg("serve", usage_serve, argc, argv, &path);

	if (rc)
		return rc == 1 ? 0 : rc;
	if (gw_config_load(path, &cfg, &d) < 0) {
		fputs(diag_text(&d), stderr);
		diag_clear(&d);
		return 1;
	}
	fputs(diag_text(&d), stderr); /* warnings */
	diag_clear(&d);
	return gw_server_run(cfg) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage_error(NULL, "%s", "missing command");
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(usage_main, stdout);
		return 0;
	}
	if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
		printf("noordpoort %s\n", NOORDPOORT_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "serve") == 0)
		return cmd_serve(argc - 2, argv + 2);
	if (strcmp(argv[1], "synth") == 0)
		return synth_cli(argc - 1, argv + 1);
	if (strcmp(argv[1], "audit") == 0)
		return audit_cli(argc - 1, argv + 1);
	if (strcmp(argv[1], "policy") == 0)
		return policy_cli(argc - 1, argv + 1);
	if (strcmp(argv[1], "ledger") == 0)
		return ledger_cli(argc - 1, argv + 1);
	if (strcmp(argv[1], "keygen") == 0) {
		for (int i = 2; i < argc; i++) {
			if (strcmp(argv[i], "--sign") == 0)
				return policy_keygen_cli(argc - 1, argv + 1);
			if (strcmp(argv[i], "--box") == 0)
				return pseudo_boxkey_cli(argc - 1, argv + 1);
		}
		return pseudo_keygen_cli(argc - 1, argv + 1);
	}
	if (strcmp(argv[1], "query") == 0)
		return query_cli(argc - 1, argv + 1);
	if (strcmp(argv[1], "csr") == 0)
		return csr_cli(argc - 1, argv + 1);
	if (strcmp(argv[1], "check-config") == 0)
		return cmd_check_config(argc - 2, argv + 2);
	return usage_error(NULL, "unknown command '%s'", argv[1]);
}
