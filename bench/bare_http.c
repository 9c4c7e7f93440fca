/* bare_http.c - the HTTP ceiling: evhttp answering one fixed body. */

/*
 * usage: bare_http PORT BODY_BYTES THREADS
 *
 * Listens on 127.0.0.1:PORT with THREADS event loops, each with its own
 * event_base, evhttp and SO_REUSEPORT socket, as the gateway does. Every
 * request gets 200 with a JSON body of BODY_BYTES bytes (the size of a
 * product answer), so wrk against it measures what libevent's HTTP layer
 * alone can do on this machine. Runs until SIGTERM or SIGINT.
 */

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define BARE_MAX_THREADS 256
#define BARE_MAX_BODY    (1024 * 1024)

static char  *body;
static size_t body_len;

/* Answers every request with the fixed body. */
static void
on_request(struct evhttp_request *req, void *arg)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(req);

	(void) arg;
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	evbuffer_add(out, body, body_len);
	evhttp_send_reply(req, 200, "OK", NULL);
}

/* Opens a non-blocking listening socket on 127.0.0.1:port that other
 * threads may bind too. Returns the descriptor or -1. */
static int
listen_socket(int port)
{
	struct sockaddr_in sin = {0};
	int                fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return -1;
	}
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short) port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
	    bind(fd, (struct sockaddr *) &sin, sizeof(sin)) != 0 ||
	    listen(fd, 1024) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One event loop; arg is the listening socket, owned by the loop. */
static void *
loop_main(void *arg)
{
	int                fd = (int) (intptr_t) arg;
	struct event_base *base;
	struct evhttp     *http;

	if ((base = event_base_new()) == NULL ||
	    (http = evhttp_new(base)) == NULL) {
		fprintf(stderr, "bare_http: out of memory\n");
		exit(1);
	}
	evhttp_set_gencb(http, on_request, NULL);
	if (evhttp_accept_socket(http, fd) != 0) {
		fprintf(stderr, "bare_http: evhttp_accept_socket failed\n");
		exit(1);
	}
	event_base_dispatch(base);
	return NULL;
}

/* Parses a decimal argument within [lo, hi]; exits on a bad one. */
static long
arg_long(const char *s, const char *name, long lo, long hi)
{
	char *end;
	long  v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "bare_http: bad %s '%s' (%ld..%ld)\n", name, s,
		    lo, hi);
		exit(2);
	}
	return v;
}

int
main(int argc, char **argv)
{
	pthread_t tid;
	sigset_t  set;
	long      port, threads, i;
	int       sig;

	if (argc != 4) {
		fprintf(stderr, "usage: bare_http PORT BODY_BYTES THREADS\n");
		return 2;
	}
	port = arg_long(argv[1], "PORT", 1, 65535);
	body_len = (size_t) arg_long(argv[2], "BODY_BYTES", 2, BARE_MAX_BODY);
	threads = arg_long(argv[3], "THREADS", 1, BARE_MAX_THREADS);

	/* A JSON string of the wanted length: {"x":"aaaa..."}. */
	if ((body = malloc(body_len)) == NULL) {
		return 1;
	}
	memset(body, 'a', body_len);
	if (body_len >= 8) {
		memcpy(body, "{\"x\":\"", 6);
		memcpy(body + body_len - 2, "\"}", 2);
	}

	/* Signals go to this thread only; the loops never see them. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	for (i = 0; i < threads; i++) {
		int fd = listen_socket((int) port);
		if (fd < 0) {
			fprintf(stderr, "bare_http: 127.0.0.1:%ld: %s\n", port,
			    strerror(errno));
			return 1;
		}
		if (pthread_create(
		        &tid, NULL, loop_main, (void *) (intptr_t) fd) != 0) {
			fprintf(stderr, "bare_http: pthread_create failed\n");
			return 1;
		}
		pthread_detach(tid);
	}
	printf("bare_http: 127.0.0.1:%ld, %zu-byte body, %ld threads\n", port,
	    body_len, threads);
	fflush(stdout);

	sigdelset(&set, SIGPIPE);
	do {
		if (sigwait(&set, &sig) != 0) {
			return 1;
		}
	} while (sig != SIGINT && sig != SIGTERM);
	/* The loops hold nothing worth a clean shutdown. */
	_exit(0);
}
