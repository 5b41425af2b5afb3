/*
 * Building JSON that must come out whole: every add is checked, and the
 * first failure (out of memory) clears |*ok| and frees the item, so the
 * caller checks once at the end instead of after each member. Used for
 * answers and audit lines, which are either complete or not sent.
 */
#ifndef NOORDPOORT_JSONPUT_H
#define NOORDPOORT_JSONPUT_H

#include <cjson/cJSON.h>

/* Adds |item| to |parent| as member |name| (or appends it to an array when
 * |name| is NULL). Returns |item|, or NULL with |*ok| = 0 and |item| freed
 * when |parent| or |item| is NULL or the add failed. */
cJSON *json_put(int *ok, cJSON *parent, const char *name, cJSON *item);

/* json_put() of a new string / number. */
cJSON *json_put_str(int *ok, cJSON *parent, const char *name, const char *v);
cJSON *json_put_num(int *ok, cJSON *parent, const char *name, double v);

#endif
