/* fuzz_check.h - what the fuzz targets share: a check that aborts with a
 * message (libFuzzer and fuzz/replay.c both report the abort with the
 * input). The JSON check for targets that link json-c is in fuzz_json.h. */
#ifndef FUZZ_CHECK_H
#define FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

/* Aborts when cond is false: an invariant of the code under test broke.
 * Unlike assert() it stays in every build. */
#define FZ_CHECK(cond)                                               \
	do {                                                         \
		if (!(cond)) {                                       \
			fprintf(stderr, "%s:%d: check failed: %s\n", \
			    __FILE__, __LINE__, #cond);              \
			abort();                                     \
		}                                                    \
	} while (0)

#endif /* FUZZ_CHECK_H */
