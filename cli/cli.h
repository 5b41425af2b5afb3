/*
 * The command-line tools, one entry point each; cli/main.c dispatches to
 * them. argv[0] is the subcommand ("policy", "keygen", "synth", ...).
 *
 * Every tool: --help prints its usage on stdout and returns 0; bad usage
 * prints one line on stderr (cli/usage.h) and returns 2; a failure returns 1
 * with the reason on stderr; success returns 0.
 */
#ifndef NOORDPOORT_CLI_H
#define NOORDPOORT_CLI_H

/* `noordpoort policy check|test|explain|diff|sign|verify ...` */
int policy_cli(int argc, char **argv);
/* `noordpoort keygen --sign --out PREFIX`: an Ed25519 signing key pair. */
int policy_keygen_cli(int argc, char **argv);
/* `noordpoort keygen --out FILE`: a pseudonymisation master key (0600). */
int pseudo_keygen_cli(int argc, char **argv);
/* `noordpoort keygen --box --out PREFIX`: the hub's X25519 box key pair. */
int pseudo_boxkey_cli(int argc, char **argv);
/* `noordpoort synth --out DIR [--seed S] [--scale X] [--force] [--progress]` */
int synth_cli(int argc, char **argv);

#endif
