/* fuzz_json.h - the strict JSON check shared by the fuzz targets that
 * render gateway replies (fuzz_body.c, fuzz_route.c); they link json-c. */
#ifndef FUZZ_JSON_H
#define FUZZ_JSON_H

#include <json-c/json.h>

#include "cm.h"
#include "fuzz_check.h"
#include "gw.h"

/* Parses a reply document back: strict JSON, valid UTF-8, no raw control
 * character, the whole text. Returns it (the caller puts it). */
static inline struct json_object *
fz_parse_reply(const gw_buf *b)
{
	struct json_tokener *tok = json_tokener_new_ex(32);
	struct json_object  *o;

	FZ_CHECK(b->err == CM_OK && tok != NULL && b->len > 0);
	for (size_t i = 0; i < b->len; i++) {
		FZ_CHECK((unsigned char) b->data[i] >= 0x20);
	}
	json_tokener_set_flags(
	    tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, b->data, (int) b->len);
	FZ_CHECK(json_tokener_get_error(tok) == json_tokener_success);
	FZ_CHECK(json_tokener_get_parse_end(tok) == b->len);
	FZ_CHECK(json_object_is_type(o, json_type_object));
	json_tokener_free(tok);
	return o;
}

#endif /* FUZZ_JSON_H */
