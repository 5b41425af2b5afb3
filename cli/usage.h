/*
 * The command-line tools' one way to refuse bad usage: one line on stderr
 * naming the command and pointing at its --help, and exit status 2.
 */
#ifndef NOORDPOORT_CLIUSAGE_H
#define NOORDPOORT_CLIUSAGE_H

/*
 * Prints "PROGRAM[ CMD]: " + |fmt| with |arg| + " (see 'PROGRAM[ CMD]
 * --help')" and returns 2. |program| is the fixed part ("noordpoort",
 * "noordpoort audit"), |cmd| the subcommand or NULL; |fmt| has one %s.
 */
int cli_usage_error(const char *program, const char *cmd, const char *fmt, const char *arg);

#endif
