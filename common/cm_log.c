/* cm_log.c - leveled log lines on stdout, one write per line. */
#include "cm_log.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cm.h"

cm_log_level cm_log_min = CM_LOG_INFO;
static char  log_process[32] = "-";

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

void
cm_log_write(
    cm_log_level lvl, const char *id, const char *reqid, const char *fmt, ...)
{
	char           line[2048];
	struct timeval tv;
	struct tm      tm;
	size_t         n;
	va_list        ap;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t) snprintf(line + n, sizeof(line) - n,
	    ".%03ldZ %s %s %s req=%s ", (long) tv.tv_usec / 1000,
	    level_names[lvl], log_process, id,
	    reqid != NULL && reqid[0] != '\0' ? reqid : "-");
	va_start(ap, fmt);
	if (n < sizeof(line)) {
		n += (size_t) vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	}
	va_end(ap);
	if (n >= sizeof(line) - 1) {
		n = sizeof(line) - 2;
	}
	line[n++] = '\n';
	/* One write(2) per line keeps lines whole across threads. */
	(void) !write(STDOUT_FILENO, line, n);
}
