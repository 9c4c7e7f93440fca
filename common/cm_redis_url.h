/* cm_redis_url.h - redis://[[user]:password@]host[:port][/db] parsing,
 * shared by the product service's cache and the gateway's rate limiter. */
#ifndef CM_REDIS_URL_H
#define CM_REDIS_URL_H

/* A parsed Redis URL. user and pass are empty when absent. */
typedef struct cm_redis_url {
	char host[256];
	int  port;
	char user[128];
	char pass[256];
	int  db;
} cm_redis_url;

/* Parses redis://[[user]:password@]host[:port][/db] into *out (port 6379
 * and db 0 when absent; host may be a bracketed IPv6 address). Returns
 * CM_OK or CM_EINVAL. */
int cm_redis_url_parse(const char *url, cm_redis_url *out);

#endif /* CM_REDIS_URL_H */
