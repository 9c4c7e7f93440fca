/* cm_loop.c - a libevent loop on a thread of its own. */
#include "cm_loop.h"

#include <event2/event.h>

#include "cm.h"
#include "cm_log.h"

static void *
loop_main(void *arg)
{
	cm_loop_thread *t = arg;

	if (event_base_dispatch(t->base) < 0) {
		CM_ERROR(t->fail_event, NULL, "loop stopped on an error");
	}
	return NULL;
}

int
cm_loop_thread_start(
    cm_loop_thread *t, struct event_base *base, const char *fail_event)
{
	t->base = base;
	t->fail_event = fail_event;
	if (pthread_create(&t->tid, NULL, loop_main, t) != 0) {
		return CM_EINTERNAL;
	}
	t->running = 1;
	return CM_OK;
}

void
cm_loop_thread_stop(cm_loop_thread *t)
{
	if (t->running) {
		event_base_loopbreak(t->base);
		pthread_join(t->tid, NULL);
		t->running = 0;
	}
}
