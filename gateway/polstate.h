/*
 * What a gateway remembers about the policies it accepted: the highest
 * serial per policy file, in STATE_DIR/policy-serials, so an older signed
 * policy put back is refused at start and at reload (docs/policy.md,
 * "Serial and validity").
 */
#ifndef NOORDPOORT_POLSTATE_H
#define NOORDPOORT_POLSTATE_H

#include <stdint.h>

#include "config.h"
#include "../policies/policy.h"

#define GW_POLSTATE_FILE "policy-serials"

/*
 * Checks every file of |set| at |now| (unix seconds): a valid_until that
 * has passed is refused; with a state_dir, a serial below the recorded
 * one, the recorded serial with other bytes, or no serial where one is
 * recorded is refused. With |record| and no problem, writes the accepted
 * serials (atomically) before returning. Returns 0, or -1 with every
 * problem in |d| as "file:line:col: error: ..." naming the file, its
 * serial and the recorded one. |set| may be NULL (no policies): 0.
 */
int gw_polstate_check(const struct gw_config *cfg, const struct policy_set *set, int64_t now,
		      int record, struct diag *d);

#endif
