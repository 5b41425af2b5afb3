/*
 * The one error convention of the whole tree. A function returns 0 (or a
 * count, where its comment says so) on success and a negative enum np_error
 * value on failure; its prototype's comment lists which. The failures every
 * module can have share one value each, in [-599, -500]; a module's own
 * failures take a range of their own in [-999, -600] (below). Bare -1 is
 * not an error code: a module that needs "failed, |err| says why" returns
 * NP_ERR_FAIL. The ranges keep the codes apart from an errno (which is
 * positive and below 200) and from a count.
 */
#ifndef NOORDPOORT_ERR_H
#define NOORDPOORT_ERR_H

enum np_error {
	NP_OK = 0,
	NP_ERR_FAIL = -500,     /* failed for a reason |err| gives in words */
	NP_ERR_NOMEM = -501,    /* an allocation failed */
	NP_ERR_ARG = -502,      /* NULL, empty or out-of-range argument */
	NP_ERR_IO = -503,       /* open/read/write/fsync failed; |err| has the errno text */
	NP_ERR_FORMAT = -504,   /* input is not what it must be; |err| says where */
	NP_ERR_CRYPTO = -505,   /* a signature or MAC did not verify, or the library failed */
	NP_ERR_EXISTS = -506,   /* the file exists and is never overwritten */
	NP_ERR_INSECURE = -507, /* a secret readable by others, a foreign owner, not a regular file */
	NP_ERR_LIMIT = -508,    /* past a documented size or count limit */
	NP_ERR_DEADLINE = -509, /* past the caller's deadline */
	NP_ERR_INIT = -510,     /* OpenSSL, libsodium or another library did not start */
	NP_ERR_NOT_FOUND = -511,/* the named thing is not there */
	NP_ERR_BUSY = -512,     /* locked by another holder past the wait */

	/* Module ranges, each module's header names its values:
	 * adapters/  [-619, -600]   aggregate/ledger  [-639, -620]
	 * crypto/bsn [-659, -640]   aggregate/disclose [-679, -660]
	 * (more as modules need them) */
	NP_ERR_MODULE_FIRST = -600,
	NP_ERR_MODULE_LAST = -999,
};

/* A short English phrase for any value above ("out of memory"); a
 * module's own value gives "module error". Never NULL. */
const char *np_strerror(int rc);

#endif
