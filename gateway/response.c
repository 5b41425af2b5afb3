/*
 * The one way a handler answers: a JSON body with a status, or the
 * {"error":{"code","message"}} shape every error has (docs/openapi.yaml).
 */
#include "response.h"

#include <stdio.h>
#include <stdlib.h>

#include "../common/err.h"

size_t gw_json_escape(const char *s, char *out, size_t outlen)
{
	size_t o = 0;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (o + 7 >= outlen)
			return (size_t)-1;
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(out + o, outlen - o, "\\u%04x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = '\0';
	return o;
}

int gw_response_set(struct gw_response *resp, int status, char *body, size_t len)
{
	free(resp->body);
	resp->status = status;
	resp->body = body;
	resp->len = len;
	resp->content_type = "application/json";
	return body ? 0 : NP_ERR_NOMEM;
}

int gw_error(struct gw_response *resp, int status, const char *code, const char *message)
{
	char msg[512];
	char *b;
	int n;

	if (gw_json_escape(message, msg, sizeof(msg)) == (size_t)-1)
		snprintf(msg, sizeof(msg), "%s", code);
	n = snprintf(NULL, 0, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, msg);
	b = malloc((size_t)n + 1);
	if (b)
		snprintf(b, (size_t)n + 1, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, msg);
	return gw_response_set(resp, status, b, b ? (size_t)n : 0);
}

