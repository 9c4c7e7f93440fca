/* cm_log.h - leveled log lines on stdout, one write per line, as text or
 * as one JSON object a line. */
#ifndef CM_LOG_H
#define CM_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum cm_log_level {
	CM_LOG_DEBUG = 0,
	CM_LOG_INFO,
	CM_LOG_WARN,
	CM_LOG_ERROR,
} cm_log_level;

extern cm_log_level cm_log_min;

/* Sets the minimum level from its name (debug, info, warn, error) and the
 * process name printed on each line. Returns CM_OK or CM_EINVAL. */
int cm_log_init(const char *process, const char *level);

/* Chooses the line format: "json", "text", or "" for json when stdout is
 * not a terminal and text when it is. Returns CM_OK or CM_EINVAL. */
int cm_log_set_format(const char *format);

/* Writes one line: time, level, process, stable event id, request id ("-"
 * when none) and the formatted message (JSON: the "msg" field). Use the
 * macros below, which check the level before they evaluate arguments. */
void cm_log_write(cm_log_level lvl, const char *id, const char *reqid,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* A named value of a structured line. */
typedef struct cm_log_field {
	const char *key;
	const char *str; /* a string when not NULL, else num */
	double      num;
} cm_log_field;

#define CM_LF_STR(k, v) ((cm_log_field) {(k), (v) != NULL ? (v) : "-", 0})
#define CM_LF_NUM(k, v) ((cm_log_field) {(k), NULL, (double) (v)})

/* Writes one structured line: in JSON each field is a member (strings
 * escaped, numbers as numbers); in text, key=value pairs. */
void cm_log_fields(cm_log_level lvl, const char *id, const char *reqid,
    const cm_log_field *fields, size_t n);

#define CM_LOG(lvl, id, reqid, ...)                                \
	do {                                                       \
		if ((lvl) >= cm_log_min) {                         \
			cm_log_write(lvl, id, reqid, __VA_ARGS__); \
		}                                                  \
	} while (0)

#define CM_DEBUG(id, reqid, ...) CM_LOG(CM_LOG_DEBUG, id, reqid, __VA_ARGS__)
#define CM_INFO(id, reqid, ...)  CM_LOG(CM_LOG_INFO, id, reqid, __VA_ARGS__)
#define CM_WARN(id, reqid, ...)  CM_LOG(CM_LOG_WARN, id, reqid, __VA_ARGS__)
#define CM_ERROR(id, reqid, ...) CM_LOG(CM_LOG_ERROR, id, reqid, __VA_ARGS__)

#endif /* CM_LOG_H */
