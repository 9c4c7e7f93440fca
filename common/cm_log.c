/* cm_log.c - leveled log lines on stdout, one write per line. */
#include "cm_log.h"

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

/* A line under construction; appends never overrun, they truncate. */
typedef struct line {
	char   b[LINE_MAX_BYTES];
	size_t n;
} line;

static void
put(line *l, const char *s, size_t len)
{
	/* Keep room for the closing brace and the newline. */
	size_t room = sizeof(l->b) - 3 - l->n;
	if (len > room) {
		len = room;
	}
	memcpy(l->b + l->n, s, len);
	l->n += len;
}

static void
puts_(line *l, const char *s)
{
	put(l, s, strlen(s));
}

/* Appends s as the inside of a JSON string. */
static void
put_json(line *l, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char) *s;
		char          esc[7];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char) c;
			put(l, esc, 2);
		} else if (c < 0x20) {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			put(l, esc, 6);
		} else {
			put(l, (const char *) &c, 1);
		}
	}
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
	if (log_json) {
		puts_(l, "{\"time\":\"");
		puts_(l, ts);
		puts_(l, "\",\"level\":\"");
		puts_(l, level_names[lvl]);
		puts_(l, "\",\"process\":\"");
		put_json(l, log_process);
		puts_(l, "\",\"event\":\"");
		put_json(l, id);
		puts_(l, "\",\"request_id\":\"");
		put_json(l, reqid);
		puts_(l, "\"");
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
	if (log_json) {
		l->b[l->n++] = '}';
	}
	l->b[l->n++] = '\n';
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
		puts_(&l, ",\"msg\":\"");
		put_json(&l, msg);
		puts_(&l, "\"");
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
			puts_(&l, ",\"");
			put_json(&l, f->key);
			puts_(&l, "\":");
			if (f->str != NULL) {
				puts_(&l, "\"");
				put_json(&l, f->str);
				puts_(&l, "\"");
			} else {
				puts_(&l, num);
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
