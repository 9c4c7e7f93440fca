/* gw_body.c - parses and validates the JSON bodies of the write routes; the
 * only file that includes json-c.
 *
 * Two passes. json-c (strict, UTF-8 checked, depth bounded) builds the
 * tree; then scan_raw() walks the same text once more for what json-c
 * lets through: single-quoted strings, NaN and Infinity, raw control
 * characters and lone surrogates in strings, and duplicate member names
 * of the top-level object (json-c keeps the last silently; we count the
 * names in the text and compare with the object's size). Then every rule
 * is checked and every failure recorded, so a client fixes all at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cm.h"
#include "gw.h"

/* ---- the raw scan ---- */

static int
is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int
hex4(const char *p, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9') {
			v |= (unsigned) (c - '0');
		} else if (c >= 'a' && c <= 'f') {
			v |= (unsigned) (c - 'a' + 10);
		} else if (c >= 'A' && c <= 'F') {
			v |= (unsigned) (c - 'A' + 10);
		} else {
			return -1;
		}
	}
	*out = v;
	return 0;
}

/* Scans the string whose opening quote is at s[*i]; leaves *i after the
 * closing quote. Returns 0, or -1 for a raw control character, invalid
 * UTF-8, a bad escape or a lone surrogate. */
static int
scan_string(const char *s, size_t len, size_t *i)
{
	size_t p = *i + 1;

	while (p < len && s[p] != '"') {
		unsigned u, lo;
		if ((unsigned char) s[p] < 0x20) {
			return -1;
		}
		if ((unsigned char) s[p] >= 0x80) {
			size_t n = cm_utf8_len(
			    (const unsigned char *) s + p, len - p);
			if (n == 0) {
				return -1;
			}
			p += n;
			continue;
		}
		if (s[p] != '\\') {
			p++;
			continue;
		}
		if (p + 1 >= len) {
			return -1;
		}
		if (s[p + 1] != 'u') {
			p += 2;
			continue;
		}
		if (p + 6 > len || hex4(s + p + 2, &u) != 0) {
			return -1;
		}
		p += 6;
		if (u >= 0xdc00 && u <= 0xdfff) {
			return -1;
		}
		if (u >= 0xd800 && u <= 0xdbff) {
			if (p + 6 > len || s[p] != '\\' || s[p + 1] != 'u' ||
			    hex4(s + p + 2, &lo) != 0 || lo < 0xdc00 ||
			    lo > 0xdfff) {
				return -1;
			}
			p += 6;
		}
	}
	if (p >= len) {
		return -1;
	}
	*i = p + 1;
	return 0;
}

/* A bare token must be a literal or a number (json-c checked numbers
 * already, but it also takes NaN and Infinity). */
static int
scan_bare(const char *s, size_t len, size_t *i)
{
	size_t b = *i, e = b;

	while (e < len && !is_ws(s[e]) && strchr(",:]}", s[e]) == NULL) {
		e++;
	}
	*i = e;
	if ((e - b == 4 &&
	        (memcmp(s + b, "true", 4) == 0 ||
	            memcmp(s + b, "null", 4) == 0)) ||
	    (e - b == 5 && memcmp(s + b, "false", 5) == 0)) {
		return 0;
	}
	if (s[b] != '-' && (s[b] < '0' || s[b] > '9')) {
		return -1;
	}
	for (size_t k = b; k < e; k++) {
		if (strchr("0123456789+-.eE", s[k]) == NULL) {
			return -1;
		}
	}
	return 0;
}

/* Walks text that json-c accepted. Returns 0 and the number of member
 * names of the top-level object in *names (0 when it is not an object), or
 * -1 with a message in *why. */
static int
scan_raw(const char *s, size_t len, size_t *names, const char **why)
{
	size_t i = 0;
	int    depth = 0, top_obj = 0, want_name = 0;

	*names = 0;
	while (i < len) {
		char c = s[i];
		if (c == '"') {
			if (depth == 1 && top_obj && want_name) {
				(*names)++;
				want_name = 0;
			}
			if (scan_string(s, len, &i) != 0) {
				*why =
				    "a string holds a raw control character, "
				    "invalid UTF-8, a bad escape or a lone "
				    "surrogate";
				return -1;
			}
			continue;
		}
		if (c == '{' || c == '[') {
			if (depth++ == 0) {
				top_obj = c == '{';
				want_name = top_obj;
			}
		} else if (c == '}' || c == ']') {
			depth--;
		} else if (c == ',') {
			want_name = depth == 1 && top_obj;
		} else if (c == '\'') {
			*why = "strings must be in double quotes";
			return -1;
		} else if (!is_ws(c) && c != ':') {
			if (scan_bare(s, len, &i) != 0) {
				*why =
				    "a value is not a JSON literal or number";
				return -1;
			}
			continue;
		}
		i++;
	}
	return 0;
}

/* ---- rules ---- */

static const char MSG_REQUIRED[] = "is required";
static const char MSG_UNKNOWN[] = "is not a field of a product";
static const char MSG_READ_ONLY[] = "is read-only";
static const char MSG_NOT_NULL[] = "cannot be null";
static const char MSG_NUL[] = "must not contain NUL characters";
static const char MSG_SKU[] =
    "must be a string of 1 to 64 characters from A-Z, a-z, 0-9, '.', '_' "
    "and '-'";
static const char MSG_NAME[] = "must be a string of 1 to 200 characters";
static const char MSG_DESC[] = "must be a string of at most 4000 characters";
static const char MSG_PRICE[] =
    "must be an integer from 0 to 1000000000000 (cents)";
static const char MSG_CURRENCY[] =
    "must be a string of 3 upper-case letters (ISO 4217)";
static const char MSG_STOCK[] = "must be an integer from 0 to 2147483647";
static const char MSG_OBJECT[] = "the body must be a JSON object";
static const char MSG_EMPTY_PATCH[] =
    "the patch changes nothing: name at least one field";

static void
add_err(gw_body *b, const char *field, const char *msg)
{
	gw_field_err *e;

	if (b->nerrs >= GW_BODY_ERRS_MAX) {
		return;
	}
	e = &b->errs[b->nerrs++];
	snprintf(e->field, sizeof(e->field), "%s", field);
	e->message = msg;
}

/* Code points of valid UTF-8 (json-c has checked it). */
static size_t
utf8_count(const char *s, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		n += ((unsigned char) s[i] & 0xc0) != 0x80;
	}
	return n;
}

static int
sku_ok(const char *s, size_t len)
{
	if (len < 1 || len > GW_SKU_MAX) {
		return 0;
	}
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		        (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		        c == '-')) {
			return 0;
		}
	}
	return 1;
}

static int
currency_ok(const char *s, size_t len)
{
	return len == 3 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' &&
	    s[1] <= 'Z' && s[2] >= 'A' && s[2] <= 'Z';
}

typedef enum kind { K_STRING, K_INT } kind;

/* One writable field. */
static const struct field {
	const char *name;
	int         num; /* field number in catalog.ProductInput */
	kind        kind;
	int         required; /* in a full body; null is refused in a patch */
	const char *msg;      /* what a bad value is told */
	int64_t     max;      /* K_INT */
} fields[] = {
    {"sku", GW_F_SKU, K_STRING, 1, MSG_SKU, 0},
    {"name", GW_F_NAME, K_STRING, 1, MSG_NAME, 0},
    {"description", GW_F_DESCRIPTION, K_STRING, 0, MSG_DESC, 0},
    {"price_cents", GW_F_PRICE_CENTS, K_INT, 1, MSG_PRICE, GW_PRICE_MAX},
    {"currency", GW_F_CURRENCY, K_STRING, 0, MSG_CURRENCY, 0},
    {"stock", GW_F_STOCK, K_INT, 0, MSG_STOCK, INT32_MAX},
};

#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static const char *const read_only[] = {
    "id", "version", "created_at", "updated_at"};

static char **
str_slot(Catalog__ProductInput *in, int num)
{
	switch (num) {
	case GW_F_SKU:
		return &in->sku;
	case GW_F_NAME:
		return &in->name;
	case GW_F_DESCRIPTION:
		return &in->description;
	default:
		return &in->currency;
	}
}

static int
set_str(Catalog__ProductInput *in, int num, const char *s)
{
	char **slot = str_slot(in, num);
	char  *copy = strdup(s);

	if (copy == NULL) {
		return CM_ENOMEM;
	}
	if (*slot != protobuf_c_empty_string) {
		free(*slot);
	}
	*slot = copy;
	return CM_OK;
}

static void
set_int(Catalog__ProductInput *in, int num, int64_t v)
{
	if (num == GW_F_PRICE_CENTS) {
		in->price_cents = v;
	} else {
		in->stock = (int32_t) v;
	}
}

/* The value a field takes when a full body leaves it out, or a patch sets
 * it to null. */
static int
set_default(Catalog__ProductInput *in, const struct field *f)
{
	if (f->kind == K_INT) {
		set_int(in, f->num, 0);
		return CM_OK;
	}
	return set_str(
	    in, f->num, f->num == GW_F_CURRENCY ? GW_CURRENCY_DEF : "");
}

/* Checks one member's value against its rule and stores it. Returns CM_OK
 * (an error may have been recorded) or CM_ENOMEM. */
static int
take_field(gw_body *b, const struct field *f, struct json_object *v,
    gw_body_mode mode)
{
	if (v == NULL) {
		/* null: a reset in a merge patch, a wrong type otherwise */
		if (mode != GW_BODY_PATCH) {
			add_err(b, f->name, f->msg);
			return CM_OK;
		}
		if (f->required) {
			add_err(b, f->name, MSG_NOT_NULL);
			return CM_OK;
		}
		return set_default(&b->input, f);
	}
	if (f->kind == K_INT) {
		int64_t n;
		/* json-c clamps out-of-range integers to INT64_MIN/MAX,
		 * which the bounds refuse too. */
		if (!json_object_is_type(v, json_type_int) ||
		    (n = json_object_get_int64(v)) < 0 || n > f->max) {
			add_err(b, f->name, f->msg);
			return CM_OK;
		}
		set_int(&b->input, f->num, n);
		return CM_OK;
	}
	if (!json_object_is_type(v, json_type_string)) {
		add_err(b, f->name, f->msg);
		return CM_OK;
	}
	const char *s = json_object_get_string(v);
	size_t      len = (size_t) json_object_get_string_len(v);
	size_t      cps = utf8_count(s, len);
	int         ok;

	if (strlen(s) != len) {
		add_err(b, f->name, MSG_NUL);
		return CM_OK;
	}
	switch (f->num) {
	case GW_F_SKU:
		ok = sku_ok(s, len);
		break;
	case GW_F_NAME:
		ok = cps >= 1 && cps <= GW_NAME_MAX;
		break;
	case GW_F_DESCRIPTION:
		ok = cps <= GW_DESC_MAX;
		break;
	default:
		ok = currency_ok(s, len);
		break;
	}
	if (!ok) {
		add_err(b, f->name, f->msg);
		return CM_OK;
	}
	return set_str(&b->input, f->num, s);
}

static const struct field *
find_field(const char *name)
{
	for (size_t i = 0; i < NFIELDS; i++) {
		if (strcmp(fields[i].name, name) == 0) {
			return &fields[i];
		}
	}
	return NULL;
}

static int
is_read_only(const char *name)
{
	for (size_t i = 0; i < sizeof(read_only) / sizeof(read_only[0]); i++) {
		if (strcmp(read_only[i], name) == 0) {
			return 1;
		}
	}
	return 0;
}

/* Applies the rules to the parsed object. Returns CM_OK (errors may have
 * been recorded) or CM_ENOMEM. */
static int
check_object(gw_body *b, struct json_object *obj, gw_body_mode mode)
{
	Catalog__ProductInput *in = &b->input;
	int                    rv;

	json_object_object_foreach(obj, key, val)
	{
		const struct field *f = find_field(key);
		if (f == NULL) {
			add_err(b, key,
			    is_read_only(key) ? MSG_READ_ONLY : MSG_UNKNOWN);
			continue;
		}
		in->mask |= GW_MASK(f->num);
		if ((rv = take_field(b, f, val, mode)) != CM_OK) {
			return rv;
		}
	}
	if (mode == GW_BODY_PATCH) {
		if (in->mask == 0 && b->nerrs == 0) {
			add_err(b, "", MSG_EMPTY_PATCH);
		}
		return CM_OK;
	}
	for (size_t i = 0; i < NFIELDS; i++) {
		const struct field *f = &fields[i];
		if ((in->mask & GW_MASK(f->num)) != 0) {
			continue;
		}
		if (f->required) {
			add_err(b, f->name, MSG_REQUIRED);
		} else if ((rv = set_default(in, f)) != CM_OK) {
			return rv;
		}
	}
	/* A full body sets every field; the mask means nothing there. */
	in->mask = 0;
	return CM_OK;
}

static int
fail(gw_body *b, int status, const char *detail)
{
	b->status = status;
	snprintf(b->detail, sizeof(b->detail), "%s", detail);
	return CM_EINVAL;
}

int
gw_body_parse(gw_body *b, const char *text, size_t len, gw_body_mode mode)
{
	struct json_tokener    *tok;
	struct json_object     *obj = NULL;
	enum json_tokener_error jerr;
	size_t                  end, names;
	const char             *why;
	char                    msg[128];
	int                     rv;

	memset(b, 0, sizeof(*b));
	catalog__product_input__init(&b->input);
	if (len == 0) {
		return fail(b, 400, "the request body is empty");
	}
	if (len > INT32_MAX) {
		return fail(b, 400, "the request body is too long");
	}
	if ((tok = json_tokener_new_ex(GW_BODY_MAX_DEPTH)) == NULL) {
		return CM_ENOMEM;
	}
	json_tokener_set_flags(
	    tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, text, (int) len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	if (jerr == json_tokener_continue && end == len) {
		/* A top-level number or literal ends only where the text
		 * does: tell json-c so with a NUL. */
		obj = json_tokener_parse_ex(tok, "", 1);
		jerr = json_tokener_get_error(tok);
	}
	json_tokener_free(tok);
	if (jerr != json_tokener_success) {
		snprintf(msg, sizeof(msg), "the body is not valid JSON: %s%s",
		    jerr == json_tokener_continue
		        ? "it ends too early"
		        : json_tokener_error_desc(jerr),
		    jerr == json_tokener_error_depth ? " (at most 16 levels)"
		                                     : "");
		return fail(b, 400, msg);
	}
	while (end < len && is_ws(text[end])) {
		end++;
	}
	if (end < len) {
		rv = fail(b, 400,
		    "the body is not valid JSON: text after the value");
		goto out;
	}
	if (scan_raw(text, len, &names, &why) != 0) {
		snprintf(
		    msg, sizeof(msg), "the body is not valid JSON: %s", why);
		rv = fail(b, 400, msg);
		goto out;
	}
	if (!json_object_is_type(obj, json_type_object)) {
		add_err(b, "", MSG_OBJECT);
	} else if ((size_t) json_object_object_length(obj) != names) {
		rv = fail(b, 400, "the body names a member twice");
		goto out;
	} else if ((rv = check_object(b, obj, mode)) != CM_OK) {
		goto out;
	}
	rv = CM_OK;
	if (b->nerrs > 0) {
		snprintf(msg, sizeof(msg), "%zu field%s failed validation",
		    b->nerrs, b->nerrs == 1 ? "" : "s");
		rv = fail(b, 422, msg);
	}
out:
	json_object_put(obj);
	return rv;
}

void
gw_body_fini(gw_body *b)
{
	static const int strs[] = {
	    GW_F_SKU, GW_F_NAME, GW_F_DESCRIPTION, GW_F_CURRENCY};

	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		char **slot = str_slot(&b->input, strs[i]);
		if (*slot != NULL && *slot != protobuf_c_empty_string) {
			free(*slot);
		}
		*slot = (char *) protobuf_c_empty_string;
	}
}
