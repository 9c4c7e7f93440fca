/* cm_trace.c - W3C Trace Context (traceparent) parsing and generation. */
#include "cm_trace.h"

#include <stdio.h>
#include <string.h>

#include "cm.h"

static int
lower_hex(const char *s, size_t n)
{
	int nonzero = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			return -1;
		}
		nonzero |= c != '0';
	}
	return nonzero;
}

static void
fresh_span(char *out)
{
	char id[CM_REQID_LEN + 1];
	cm_reqid_new(id);
	memcpy(out, id, 16);
	out[16] = '\0';
}

int
cm_trace_parse(const char *h, cm_trace *t)
{
	size_t len;
	int    v;

	if (h == NULL || (len = strlen(h)) < CM_TRACEPARENT_LEN) {
		return CM_EINVAL;
	}
	if (lower_hex(h, 2) < 0 || strncmp(h, "ff", 2) == 0 || h[2] != '-' ||
	    h[35] != '-' || h[52] != '-') {
		return CM_EINVAL;
	}
	v = (h[0] - '0') * 16 + (h[1] >= 'a' ? h[1] - 'a' + 10 : h[1] - '0');
	/* Version 00 is exact; later versions may append "-...". */
	if ((v == 0 && len != CM_TRACEPARENT_LEN) ||
	    (v > 0 && len > CM_TRACEPARENT_LEN && h[55] != '-')) {
		return CM_EINVAL;
	}
	if (lower_hex(h + 3, 32) != 1 || lower_hex(h + 36, 16) != 1 ||
	    lower_hex(h + 53, 2) < 0) {
		return CM_EINVAL;
	}
	memcpy(t->trace_id, h + 3, 32);
	t->trace_id[32] = '\0';
	memcpy(t->parent_id, h + 36, 16);
	t->parent_id[16] = '\0';
	t->flags =
	    (unsigned) ((h[53] >= 'a' ? h[53] - 'a' + 10 : h[53] - '0') * 16 +
	        (h[54] >= 'a' ? h[54] - 'a' + 10 : h[54] - '0'));
	fresh_span(t->span_id);
	return CM_OK;
}

void
cm_trace_new(cm_trace *t)
{
	cm_reqid_new(t->trace_id);
	t->parent_id[0] = '\0';
	fresh_span(t->span_id);
	t->flags = 1;
}

void
cm_trace_format(const cm_trace *t, char *buf, size_t len)
{
	snprintf(buf, len, "00-%s-%s-%02x", t->trace_id, t->span_id,
	    t->flags & 0xff);
}
