/*
 * `noordpoort csr`: a new partner's first step, a private key and a PKCS#10
 * certificate request with its OIN in the subject (docs/onboarding.md).
 */
#ifndef NOORDPOORT_CSR_CLI_H
#define NOORDPOORT_CSR_CLI_H

/* argv[0] is "csr". Returns the exit status: 0 written, 1 failed, 2 usage. */
int csr_cli(int argc, char **argv);

#endif
