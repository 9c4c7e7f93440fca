/* cm_trace.h - W3C Trace Context (traceparent) parsing and generation. */
#ifndef CM_TRACE_H
#define CM_TRACE_H

#include <stddef.h>

/* "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>" */
#define CM_TRACEPARENT_LEN 55

typedef struct cm_trace {
	char trace_id[33];  /* 32 lowercase hex digits */
	char parent_id[17]; /* 16 lowercase hex digits: the caller's span */
	char span_id[17];   /* this hop's span, fresh */
	unsigned flags;
} cm_trace;

/* Parses a client's traceparent header. Version 00 must be exactly 55
 * characters; a higher version may carry more after the flags, which is
 * ignored, as the spec asks. All-zero ids, upper-case hex and version ff
 * are invalid. Returns CM_OK and fills t (with a fresh span id), or
 * CM_EINVAL. */
int cm_trace_parse(const char *header, cm_trace *t);

/* Starts a new trace: random trace id, no parent, sampled flag set. */
void cm_trace_new(cm_trace *t);

/* Writes the traceparent to send onward (this hop's span as parent) into
 * buf, which holds at least CM_TRACEPARENT_LEN + 1 bytes. */
void cm_trace_format(const cm_trace *t, char *buf, size_t len);

#endif /* CM_TRACE_H */
