/* ps_worker.c - one worker: a thread running its own libevent loop, with
 * its own Redis connection, PostgreSQL connections and single-flight table.
 *
 * Other threads talk to a worker only through ps_worker_post() and
 * ps_worker_stop(): both append under the worker's mutex and then call
 * event_active() on its wake event, the one libevent call that is safe
 * from another thread (evthread_use_pthreads() must have been called).
 */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cm.h"
#include "cm_log.h"
#include "cm_metrics.h"
#include "ps.h"

struct ps_timer {
	ps_timer     *prev;
	ps_timer     *next;
	ps_worker    *w;
	struct event *ev;
	void (*fn)(void *);
	void *arg;
};

/* Runs on the loop: drains the inbox in arrival order, and ends the loop
 * when a stop was asked for. */
static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
	ps_worker *w = arg;
	ps_post   *p;
	int        stop;

	(void) fd;
	(void) what;
	pthread_mutex_lock(&w->mtx);
	p = w->inbox_head;
	w->inbox_head = NULL;
	w->inbox_tail = &w->inbox_head;
	stop = w->stop;
	pthread_mutex_unlock(&w->mtx);

	if (stop) {
		/* Queued messages stay with their owner (ps_rpc), which frees
		 * them once every NNG callback has finished. */
		event_base_loopbreak(w->base);
		return;
	}
	while (p != NULL) {
		ps_post *next = p->next;
		p->fn(p);
		p = next;
	}
}

/* Appends p to w's inbox and wakes w's loop. Safe from any thread. */
void
ps_worker_post(ps_worker *w, ps_post *p)
{
	p->next = NULL;
	pthread_mutex_lock(&w->mtx);
	*w->inbox_tail = p;
	w->inbox_tail = &p->next;
	pthread_mutex_unlock(&w->mtx);
	event_active(w->wake, EV_READ, 0);
}

/* Asks w's loop to end; ps_worker_join() waits for it. Safe from any
 * thread, even before the loop has started. */
void
ps_worker_stop(ps_worker *w)
{
	pthread_mutex_lock(&w->mtx);
	w->stop = 1;
	pthread_mutex_unlock(&w->mtx);
	event_active(w->wake, EV_READ, 0);
}

static void
timer_unlink(ps_timer *t)
{
	if (t->prev != NULL) {
		t->prev->next = t->next;
	} else {
		t->w->timers = t->next;
	}
	if (t->next != NULL) {
		t->next->prev = t->prev;
	}
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	ps_timer *t = arg;

	(void) fd;
	(void) what;
	timer_unlink(t);
	event_free(t->ev);
	t->fn(t->arg);
	free(t);
}

/* Calls fn(arg) on w's loop after ms milliseconds. If the loop ends first,
 * fn still runs once, during teardown, with w->stopping set, so that it can
 * release arg. Returns CM_OK or CM_ENOMEM (fn will not run). */
int
ps_worker_after(ps_worker *w, long long ms, void (*fn)(void *), void *arg)
{
	ps_timer      *t = calloc(1, sizeof(*t));
	struct timeval tv;

	if (t == NULL) {
		return CM_ENOMEM;
	}
	if ((t->ev = evtimer_new(w->base, timer_cb, t)) == NULL) {
		free(t);
		return CM_ENOMEM;
	}
	t->w = w;
	t->fn = fn;
	t->arg = arg;
	tv.tv_sec = (time_t) (ms / 1000);
	tv.tv_usec = (suseconds_t) (ms % 1000) * 1000;
	evtimer_add(t->ev, &tv);
	t->next = w->timers;
	if (w->timers != NULL) {
		w->timers->prev = t;
	}
	w->timers = t;
	return CM_OK;
}

uint64_t
ps_worker_rand(ps_worker *w)
{
	return ps_rand_next(&w->rng);
}

static void
fire_timers(ps_worker *w)
{
	while (w->timers != NULL) {
		ps_timer *t = w->timers;
		timer_unlink(t);
		event_free(t->ev);
		t->fn(t->arg);
		free(t);
	}
}

/* Releases what the loop served, on the loop's own thread. Pending work
 * fails: timers fire, Redis commands and queries complete with
 * CM_EUNAVAIL, and with w->stopping set nothing new is started, so every
 * request in flight is answered (and its answer dropped by ps_rpc). */
static void
teardown(ps_worker *w)
{
	w->stopping = 1;
	fire_timers(w);
	ps_cache_free(w->cache);
	w->cache = NULL;
	ps_db_free(w->db);
	w->db = NULL;
	fire_timers(w);
}

static void *
thread_main(void *arg)
{
	ps_worker *w = arg;

	/* Shard 0 is the main thread's and NNG's; worker i records into
	 * shard i + 1 (cm_metrics_init() was given the worker count). */
	cm_metrics_thread_set(w->index + 1);
	event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
	teardown(w);
	return NULL;
}

/* Creates worker index with its loop, its Redis connection and its
 * PostgreSQL connections (which connect in the background once the loop
 * runs). Returns CM_OK with *out, to be freed with ps_worker_free(). */
int
ps_worker_new(const ps_config *cfg, int index, ps_worker **out)
{
	ps_worker *w = calloc(1, sizeof(*w));
	int        rv;

	if (w == NULL) {
		return CM_ENOMEM;
	}
	w->index = index;
	w->cfg = cfg;
	w->inbox_tail = &w->inbox_head;
	pthread_mutex_init(&w->mtx, NULL);
	if (getrandom(&w->rng, sizeof(w->rng), 0) != sizeof(w->rng)) {
		w->rng = (uint64_t) cm_mono_us() ^ (uint64_t) index;
	}
	if ((rv = ps_flights_init(&w->flights)) != CM_OK) {
		goto fail;
	}
	rv = CM_ENOMEM;
	if ((w->base = event_base_new()) == NULL) {
		goto fail;
	}
	if ((w->wake = event_new(w->base, -1, EV_PERSIST, wake_cb, w)) ==
	    NULL) {
		goto fail;
	}
	event_add(w->wake, NULL);
	if ((rv = ps_cache_new(w->base, cfg, index, &w->cache)) != CM_OK) {
		goto fail;
	}
	if ((rv = ps_db_new(w->base, cfg->database_url, (int) cfg->db_conns,
	         &w->db)) != CM_OK) {
		goto fail;
	}
	*out = w;
	return CM_OK;
fail:
	ps_worker_free(w);
	return rv;
}

int
ps_worker_start(ps_worker *w)
{
	if (pthread_create(&w->thread, NULL, thread_main, w) != 0) {
		return CM_ENOMEM;
	}
	w->started = 1;
	return CM_OK;
}

void
ps_worker_join(ps_worker *w)
{
	if (w->started) {
		pthread_join(w->thread, NULL);
		w->started = 0;
	}
}

/* Frees w. Its thread must have been joined (or never started); callers
 * must also make sure no other thread can still post to it. */
void
ps_worker_free(ps_worker *w)
{
	if (w == NULL) {
		return;
	}
	if (w->cache != NULL || w->db != NULL || w->timers != NULL) {
		teardown(w);
	}
	if (w->wake != NULL) {
		event_free(w->wake);
	}
	if (w->base != NULL) {
		event_base_free(w->base);
	}
	ps_flights_fini(&w->flights);
	pthread_mutex_destroy(&w->mtx);
	free(w);
}
