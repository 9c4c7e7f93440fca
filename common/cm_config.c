/* cm_config.c - settings from environment variables, described by a table. */
#include "cm_config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cm.h"

static int
parse_int(const char *s, long long *out)
{
	char *end;
	/* strtoll would skip leading blanks and take a '+'; a setting is
	 * either a plain decimal integer or it is wrong. */
	if (!((s[0] >= '0' && s[0] <= '9') || s[0] == '-')) {
		return CM_EINVAL;
	}
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0') {
		return CM_EINVAL;
	}
	*out = v;
	return CM_OK;
}

int
cm_cfg_load(const cm_cfg_opt *opts, size_t n, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		const cm_cfg_opt *o = &opts[i];
		const char       *v = getenv(o->env);
		long long         iv;

		if (v == NULL || v[0] == '\0') {
			v = o->def;
		}
		if (v == NULL) {
			snprintf(err, errlen, "%s is required: %s", o->env,
			    o->help);
			return CM_EINVAL;
		}
		switch (o->type) {
		case CM_CFG_STRING:
			*(const char **) o->dest = v;
			break;
		case CM_CFG_INT:
			if (parse_int(v, &iv) != CM_OK || iv < o->min ||
			    iv > o->max) {
				snprintf(err, errlen,
				    "%s=%s: want an integer from %lld to %lld",
				    o->env, v, o->min, o->max);
				return CM_EINVAL;
			}
			*(long long *) o->dest = iv;
			break;
		case CM_CFG_LEVEL:
			if (strcmp(v, "debug") != 0 &&
			    strcmp(v, "info") != 0 && strcmp(v, "warn") != 0 &&
			    strcmp(v, "error") != 0) {
				snprintf(err, errlen,
				    "%s=%s: want debug, info, warn or error",
				    o->env, v);
				return CM_EINVAL;
			}
			*(const char **) o->dest = v;
			break;
		}
	}
	return CM_OK;
}

void
cm_cfg_help(FILE *f, const char *prog, const char *summary,
    const cm_cfg_opt *opts, size_t n)
{
	fprintf(f, "usage: %s\n%s\n\nEnvironment:\n", prog, summary);
	for (size_t i = 0; i < n; i++) {
		const cm_cfg_opt *o = &opts[i];
		fprintf(f, "  %-28s %s\n", o->env, o->help);
		if (o->def == NULL) {
			fprintf(f, "  %-28s (required)\n", "");
		} else if (o->type == CM_CFG_INT) {
			fprintf(f, "  %-28s default %s, from %lld to %lld\n",
			    "", o->def[0] ? o->def : "(none)", o->min, o->max);
		} else {
			fprintf(f, "  %-28s default %s\n", "",
			    o->def[0] ? o->def : "(none)");
		}
	}
}

int
cm_cfg_cli(int argc, char **argv, const char *summary, const cm_cfg_opt *opts,
    size_t n)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			cm_cfg_help(stdout, argv[0], summary, opts, n);
			return 1;
		}
		if (strcmp(argv[i], "--list-env") == 0) {
			for (size_t j = 0; j < n; j++) {
				printf("%s\n", opts[j].env);
			}
			return 1;
		}
	}
	return 0;
}
