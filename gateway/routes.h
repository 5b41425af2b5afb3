/*
 * The API's routes and what happens to one complete request: match the
 * route, authenticate the caller's organisation, parse the JSON body, run the
 * handler. Everything here answers with a struct gw_response; nothing writes
 * to the network.
 */
#ifndef NOORDPOORT_ROUTES_H
#define NOORDPOORT_ROUTES_H

#include <stddef.h>
#include <stdint.h>

#include "response.h"

/*
 * Answers |req|. Always fills |resp| (an error answer is still an answer);
 * returns 0, or -1 when even the error body could not be allocated (the
 * caller then resets the stream).
 */
int gw_handle(const struct gw_env *env, const struct gw_request *req,
	      struct gw_response *resp);

/* Looks up a route by path; sets |*takes_body| when it is a POST route. */
enum gw_route gw_route_match(const char *path, int *takes_body);

#endif
