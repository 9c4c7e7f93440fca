/* cm_loop.h - a libevent loop on a thread of its own (the admin
 * listeners of both binaries). */
#ifndef CM_LOOP_H
#define CM_LOOP_H

#include <pthread.h>

struct event_base;

typedef struct cm_loop_thread {
	struct event_base *base;
	const char *fail_event; /* logged if the loop stops on an error */
	pthread_t   tid;
	int         running;
} cm_loop_thread;

/* Runs event_base_dispatch(base) on a new thread; fail_event (a string
 * that outlives the thread) names the error logged if the loop fails.
 * Returns CM_OK or CM_EINTERNAL. */
int cm_loop_thread_start(
    cm_loop_thread *t, struct event_base *base, const char *fail_event);

/* Breaks the loop and joins the thread, if it runs. evthread_use_pthreads()
 * must have been called, which makes event_base_loopbreak() safe from
 * another thread. */
void cm_loop_thread_stop(cm_loop_thread *t);

#endif /* CM_LOOP_H */
