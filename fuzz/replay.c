/* replay.c - runs a fuzz target's LLVMFuzzerTestOneInput once on every
 * file of the folders (or files) named on the command line, without
 * libFuzzer: `make test` replays the seed corpora and the crash
 * regressions with the normal compiler, and sanitized with SANITIZE=1.
 * A folder that does not exist is skipped (a target may have no
 * regressions yet). A failing input aborts, like it does under libFuzzer. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Runs the target on one file. Returns 0, or -1 when it cannot be read. */
static int
run_file(const char *path)
{
	FILE    *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long     n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		goto fail;
	}
	/* One byte more, so that an empty file still has a valid pointer. */
	if ((buf = malloc((size_t) n + 1)) == NULL ||
	    fread(buf, 1, (size_t) n, f) != (size_t) n) {
		goto fail;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, (size_t) n);
	free(buf);
	return 0;
fail:
	fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
	if (f != NULL) {
		fclose(f);
	}
	free(buf);
	return -1;
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Runs every regular file of dir, in name order so that a failure is
 * reproducible. Returns the number run, or -1. */
static long
run_dir(const char *dir)
{
	DIR           *d = opendir(dir);
	struct dirent *e;
	char         **names = NULL;
	size_t         n = 0, cap = 0;
	long           ran = 0;

	if (d == NULL) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.') {
			continue;
		}
		if (n == cap) {
			char **nn;
			cap = cap ? cap * 2 : 64;
			if ((nn = realloc(names, cap * sizeof(*nn))) == NULL) {
				abort();
			}
			names = nn;
		}
		if (asprintf(&names[n], "%s/%s", dir, e->d_name) < 0) {
			abort();
		}
		n++;
	}
	closedir(d);
	if (n > 0) {
		qsort(names, n, sizeof(*names), cmp_names);
	}
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
			if (run_file(names[i]) != 0) {
				ran = -1;
			} else if (ran >= 0) {
				ran++;
			}
		}
		free(names[i]);
	}
	free(names);
	return ran;
}

int
main(int argc, char **argv)
{
	long total = 0;
	int  rc = 0;

	if (LLVMFuzzerInitialize != NULL) {
		LLVMFuzzerInitialize(&argc, &argv);
	}
	for (int i = 1; i < argc; i++) {
		struct stat st;
		long        n;

		if (stat(argv[i], &st) != 0) {
			continue; /* no regressions yet */
		}
		if (S_ISDIR(st.st_mode)) {
			n = run_dir(argv[i]);
		} else {
			n = run_file(argv[i]) == 0 ? 1 : -1;
		}
		if (n < 0) {
			rc = 1;
		} else {
			total += n;
		}
	}
	if (total == 0) {
		/* A replay of nothing would pass whatever the code does. */
		fprintf(stderr, "replay: no inputs found\n");
		rc = 1;
	}
	fprintf(
	    stderr, "replay: %ld inputs, %s\n", total, rc ? "FAILED" : "ok");
	return rc;
}
