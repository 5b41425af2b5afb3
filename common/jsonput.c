#include "jsonput.h"

cJSON *json_put(int *ok, cJSON *parent, const char *name, cJSON *item)
{
	if (!parent || !item || !(name ? cJSON_AddItemToObject(parent, name, item)
				      : cJSON_AddItemToArray(parent, item))) {
		cJSON_Delete(item);
		*ok = 0;
		return NULL;
	}
	return item;
}

cJSON *json_put_str(int *ok, cJSON *parent, const char *name, const char *v)
{
	return json_put(ok, parent, name, cJSON_CreateString(v));
}

cJSON *json_put_num(int *ok, cJSON *parent, const char *name, double v)
{
	return json_put(ok, parent, name, cJSON_CreateNumber(v));
}
