/* cm_log.c - leveled log lines on stdout, one write per line. */
#include "cm_log.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cm.h"

#define LINE_MAX_BYTES 4096

cm_log_level cm_log_min = CM_LOG_INFO;
static char  log_process[32] = "-";
static int   log_json;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int
cm_log_init(const char *process, const char *level)
{
	snprintf(log_process, sizeof(log_process), "%s", process);
	for (int i = 0; i < 4; i++) {
		if (level != NULL && strcmp(level, level_names[i]) == 0) {
			cm_log_min = (cm_log_level) i;
			return CM_OK;
		}
	}
	return CM_EINVAL;
}

int
cm_log_set_format(const char *format)
{
	if (format == NULL || format[0] == '\0') {
		log_json = !isatty(STDOUT_FILENO);
	} else if (strcmp(format, "json") == 0) {
		log_json = 1;
	} else if (strcmp(format, "text") == 0) {
		log_json = 0;
	} else {
		return CM_EINVAL;
	}
	return CM_OK;
}

/* A line under construction. Text lines are cut wherever the buffer ends.
 * A JSON line must stay one valid JSON object however long its values
 * are: it keeps room for its ending, appends escapes and UTF-8 sequences
 * whole, closes a string value that did not fit, leaves out fields that
 * did not fit, and then ends with "truncated":true. */
typedef struct line {
	char   b[LINE_MAX_BYTES];
	size_t n;
	int    cut; /* JSON: something was left out */
} line;

static const char json_tail[] = ",\"truncated\":true}\n";

/* Bytes that may still be appended before the line's ending. */
static size_t
room(const line *l)
{
	size_t end = log_json ? sizeof(json_tail) - 1 : 2;
	return sizeof(l->b) - end - l->n;
}

static void
put(line *l, const char *s, size_t len)
{
	if (len > room(l)) {
		len = room(l);
	}
	memcpy(l->b + l->n, s, len);
	l->n += len;
}

static void
puts_(line *l, const char *s)
{
	put(l, s, strlen(s));
}

/* JSON: appends s[0..len) only if all of it fits; else marks the line
 * cut. Returns 0 when appended. */
static int
put_whole(line *l, const char *s, size_t len)
{
	if (l->cut || len > room(l)) {
		l->cut = 1;
		return -1;
	}
	memcpy(l->b + l->n, s, len);
	l->n += len;
	return 0;
}

/* Appends s as a JSON string, quotes included: '"', '\\' and control
 * characters escaped, invalid UTF-8 as \ufffd. When it does not fit the
 * string is closed where it was cut and the line marked cut. Returns 0
 * when all of s went in. */
static int
put_json(line *l, const char *s)
{
	static const char    hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *) s;
	char                 esc[7];
	const char          *unit;
	size_t               n;

	if (put_whole(l, "\"", 1) != 0) {
		return -1;
	}
	while (*p != '\0') {
		unit = (const char *) p;
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char) *p;
			unit = esc;
			n = 2;
			p++;
		} else if (*p < 0x20) {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[*p >> 4];
			esc[5] = hex[*p & 15];
			unit = esc;
			n = 6;
			p++;
		} else if (*p < 0x80) {
			n = 1;
			p++;
		} else if ((n = cm_utf8_len(p, SIZE_MAX)) == 0) {
			unit = "\\ufffd";
			n = 6;
			p++;
		} else {
			p += n;
		}
		/* keep a byte for the closing quote */
		if (n + 1 > room(l)) {
			l->cut = 1;
			break;
		}
		memcpy(l->b + l->n, unit, n);
		l->n += n;
	}
	l->b[l->n++] = '"'; /* room() kept it */
	return l->cut ? -1 : 0;
}

/* JSON: appends ,"key": and returns 0, or leaves the line as it was,
 * marks it cut and returns -1 when the key and the shortest value ("")
 * would not fit. */
static int
put_key(line *l, const char *key)
{
	size_t at = l->n;

	if (l->cut || put_whole(l, ",", 1) != 0 || put_json(l, key) != 0 ||
	    put_whole(l, ":", 1) != 0 || room(l) < 2) {
		l->n = at;
		l->cut = 1;
		return -1;
	}
	return 0;
}

/* Appends len bytes of s for a text line: control characters become '?',
 * so a value can never start a line of its own. */
static void
put_text_n(line *l, const char *s, size_t len)
{
	for (size_t i = 0; i < len && s[i] != '\0'; i++) {
		char c = (unsigned char) s[i] < 0x20 ? '?' : s[i];
		put(l, &c, 1);
	}
}

static void
put_text(line *l, const char *s)
{
	put_text_n(l, s, strlen(s));
}

static void
begin(line *l, cm_log_level lvl, const char *id, const char *reqid)
{
	struct timeval tv;
	struct tm      tm;
	char           ts[40];
	size_t         k;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	k = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + k, sizeof(ts) - k, ".%03ldZ", (long) tv.tv_usec / 1000);
	if (reqid == NULL || reqid[0] == '\0') {
		reqid = "-";
	}
	l->n = 0;
	l->cut = 0;
	if (log_json) {
		puts_(l, "{\"time\":\"");
		puts_(l, ts);
		puts_(l, "\",\"level\":\"");
		puts_(l, level_names[lvl]);
		puts_(l, "\"");
		if (put_key(l, "process") == 0) {
			put_json(l, log_process);
		}
		if (put_key(l, "event") == 0) {
			put_json(l, id);
		}
		if (put_key(l, "request_id") == 0) {
			put_json(l, reqid);
		}
	} else {
		puts_(l, ts);
		puts_(l, " ");
		puts_(l, level_names[lvl]);
		puts_(l, " ");
		puts_(l, log_process);
		puts_(l, " ");
		put_text(l, id);
		puts_(l, " req=");
		put_text(l, reqid);
	}
}

static void
finish(line *l)
{
	if (log_json && l->cut) {
		memcpy(l->b + l->n, json_tail, sizeof(json_tail) - 1);
		l->n += sizeof(json_tail) - 1;
	} else if (log_json) {
		l->b[l->n++] = '}';
		l->b[l->n++] = '\n';
	} else {
		l->b[l->n++] = '\n';
	}
	/* One write(2) per line keeps lines whole across threads. */
	(void) !write(STDOUT_FILENO, l->b, l->n);
}

void
cm_log_write(
    cm_log_level lvl, const char *id, const char *reqid, const char *fmt, ...)
{
	line    l;
	char    msg[LINE_MAX_BYTES];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	begin(&l, lvl, id, reqid);
	if (log_json) {
		if (put_key(&l, "msg") == 0) {
			put_json(&l, msg);
		}
	} else {
		puts_(&l, " ");
		put_text(&l, msg);
	}
	finish(&l);
}

void
cm_log_fields(cm_log_level lvl, const char *id, const char *reqid,
    const cm_log_field *fields, size_t n)
{
	line l;
	char num[32];

	if (lvl < cm_log_min) {
		return;
	}
	begin(&l, lvl, id, reqid);
	for (size_t i = 0; i < n; i++) {
		const cm_log_field *f = &fields[i];
		if (f->str == NULL) {
			snprintf(num, sizeof(num), "%.15g", f->num);
		}
		if (log_json) {
			size_t at = l.n;

			if (put_key(&l, f->key) != 0) {
				break;
			}
			if (f->str != NULL) {
				put_json(&l, f->str);
			} else if (put_whole(&l, num, strlen(num)) != 0) {
				l.n = at; /* the key without its number */
				break;
			}
		} else {
			puts_(&l, " ");
			put_text(&l, f->key);
			puts_(&l, "=");
			if (f->str != NULL &&
			    strpbrk(f->str, " \"=") != NULL) {
				/* Quoted, with inner quotes escaped. */
				puts_(&l, "\"");
				for (const char *p = f->str; *p != '\0'; p++) {
					if (*p == '"' || *p == '\\') {
						puts_(&l, "\\");
					}
					put_text_n(&l, p, 1);
				}
				puts_(&l, "\"");
			} else {
				put_text(&l, f->str != NULL ? f->str : num);
			}
		}
	}
	finish(&l);
}
