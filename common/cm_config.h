/* cm_config.h - settings from environment variables, described by a table.
 *
 * Each binary lists its settings once, as rows of cm_cfg_opt. The same rows
 * parse and validate the environment, print --help, and list the variable
 * names (--list-env) so tests can check README and manifests against them.
 */
#ifndef CM_CONFIG_H
#define CM_CONFIG_H

#include <stddef.h>
#include <stdio.h>

typedef enum cm_cfg_type {
	CM_CFG_STRING, /* dest: const char ** (points into environ or default)
	                */
	CM_CFG_INT,    /* dest: long long *, checked against [min, max] */
	CM_CFG_LEVEL,  /* dest: const char **, one of debug/info/warn/error */
} cm_cfg_type;

typedef struct cm_cfg_opt {
	const char *env; /* variable name, e.g. "GATEWAY_LISTEN" */
	cm_cfg_type type;
	const char *def;      /* default as text; NULL means required */
	long long   min, max; /* bounds for CM_CFG_INT */
	void       *dest;
	const char *help;
} cm_cfg_opt;

/* Reads every row's variable (or its default) into its dest. On the first
 * bad or missing value, writes a message naming the variable into err and
 * returns CM_EINVAL; otherwise CM_OK. */
int cm_cfg_load(const cm_cfg_opt *opts, size_t n, char *err, size_t errlen);

/* Prints the table as help text. */
void cm_cfg_help(FILE *f, const char *prog, const char *summary,
    const cm_cfg_opt *opts, size_t n);

/* Handles the common command line: --help prints help and returns 1,
 * --list-env prints one variable name a line and returns 1; anything else
 * leaves argv to the caller and returns 0. */
int cm_cfg_cli(int argc, char **argv, const char *summary,
    const cm_cfg_opt *opts, size_t n);

#endif /* CM_CONFIG_H */
