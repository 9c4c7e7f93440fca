/* it_auth.c - the suite's API key: its digest, the keys file the harness
 * gives every gateway, and key files that tests write themselves. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/sha256.h>

#include "it.h"

const char *
it_api_key(void)
{
	const char *v = getenv("IT_API_KEY");
	return v != NULL && *v != '\0' ? v : IT_API_KEY_DEFAULT;
}

void
it_sha256_hex(const char *s, char out[65])
{
	unsigned char d[32];

	mbedtls_sha256_ret((const unsigned char *) s, strlen(s), d, 0);
	for (int i = 0; i < 32; i++) {
		snprintf(out + 2 * i, 3, "%02x", d[i]);
	}
}

int
it_write_keys_file(const char *path, const char *const keys[])
{
	char  tmp[600], hex[65];
	FILE *f;

	/* Written aside and renamed, so that a gateway reloading on SIGHUP
	 * never reads half a file. */
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int) getpid());
	if ((f = fopen(tmp, "w")) == NULL) {
		perror(tmp);
		return -1;
	}
	fprintf(f, "# written by the integration tests\n");
	for (int i = 0; keys != NULL && keys[i] != NULL; i++) {
		it_sha256_hex(keys[i], hex);
		fprintf(f, "%s\n", hex);
	}
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		perror(path);
		unlink(tmp);
		return -1;
	}
	return 0;
}

static char           keys_path[600];
static int            keys_ok;
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;

static void
make_keys_file(void)
{
	const char *keys[] = {it_api_key(), NULL};

	snprintf(keys_path, sizeof(keys_path), "%s/api-keys-%d", it_tmpdir(),
	    (int) getpid());
	keys_ok = it_write_keys_file(keys_path, keys) == 0;
}

const char *
it_api_keys_file(void)
{
	pthread_once(&keys_once, make_keys_file);
	return keys_ok ? keys_path : NULL;
}

void
it_auth_header(char *buf, size_t len, const char *key)
{
	snprintf(buf, len, "Authorization: Bearer %s", key);
}
