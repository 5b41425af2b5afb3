/*
 * Words for the tree's error codes (common/err.h).
 */
#include "err.h"

const char *np_strerror(int rc)
{
	switch (rc) {
	case NP_OK: return "success";
	case NP_ERR_FAIL: return "failed";
	case NP_ERR_NOMEM: return "out of memory";
	case NP_ERR_ARG: return "bad argument";
	case NP_ERR_IO: return "input/output error";
	case NP_ERR_FORMAT: return "malformed input";
	case NP_ERR_CRYPTO: return "cryptographic check failed";
	case NP_ERR_EXISTS: return "already exists";
	case NP_ERR_INSECURE: return "insecure file";
	case NP_ERR_LIMIT: return "limit exceeded";
	case NP_ERR_DEADLINE: return "deadline passed";
	case NP_ERR_INIT: return "library initialisation failed";
	case NP_ERR_NOT_FOUND: return "not found";
	case NP_ERR_BUSY: return "busy";
	default:
		return rc <= NP_ERR_MODULE_FIRST && rc >= NP_ERR_MODULE_LAST ? "module error" : "unknown error";
	}
}
