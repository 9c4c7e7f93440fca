/* ps_flight.c - single-flight table: one database read per id per thread.
 *
 * A worker loop that misses the cache for an id joins the flight for that
 * id; the first joiner (the leader) starts the read, and when it completes
 * the leader takes every waiter and answers them all. The table belongs to
 * one loop thread and takes no locks.
 *
 * A flight is joinable only until its query is sent (ps_flights_sent): a
 * query sent before a write committed may return the old version, which a
 * request that started after the write returned must not receive. Requests
 * arriving later wait on the flight's second list and, once the leader
 * takes the flight, look in the cache again (docs/consistency.md,
 * "Single-flight without stale joins").
 */
#include <stdlib.h>

#include "cm.h"
#include "ps.h"

struct ps_flight {
	int64_t    id;
	ps_flight *next; /* bucket chain */
	ps_waiter *head; /* joined waiters in arrival order */
	ps_waiter *tail;
	ps_waiter *later; /* arrived after the query was sent */
	ps_waiter *later_tail;
	int        sent; /* the query has been sent: no more joins */
};

#define INITIAL_BUCKETS 64

static size_t
bucket_of(int64_t id, size_t nbuckets)
{
	uint64_t h = (uint64_t) id * 0x9e3779b97f4a7c15ULL;
	return (size_t) (h >> 32) & (nbuckets - 1);
}

int
ps_flights_init(ps_flights *t)
{
	t->buckets = calloc(INITIAL_BUCKETS, sizeof(*t->buckets));
	if (t->buckets == NULL) {
		return CM_ENOMEM;
	}
	t->nbuckets = INITIAL_BUCKETS;
	t->count = 0;
	return CM_OK;
}

/* Frees the table's flights. Waiters still linked are the caller's: they are
 * forgotten, not freed. */
void
ps_flights_fini(ps_flights *t)
{
	if (t->buckets == NULL) {
		return;
	}
	for (size_t i = 0; i < t->nbuckets; i++) {
		ps_flight *f = t->buckets[i];
		while (f != NULL) {
			ps_flight *next = f->next;
			free(f);
			f = next;
		}
	}
	free(t->buckets);
	t->buckets = NULL;
	t->count = 0;
}

/* Doubles the bucket array; on allocation failure the table stays as it is,
 * only with longer chains. */
static void
grow(ps_flights *t)
{
	size_t      n = t->nbuckets * 2;
	ps_flight **b = calloc(n, sizeof(*b));
	if (b == NULL) {
		return;
	}
	for (size_t i = 0; i < t->nbuckets; i++) {
		ps_flight *f = t->buckets[i];
		while (f != NULL) {
			ps_flight *next = f->next;
			size_t     k = bucket_of(f->id, n);
			f->next = b[k];
			b[k] = f;
			f = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = n;
}

static ps_flight *
find(const ps_flights *t, int64_t id)
{
	ps_flight *f = t->buckets[bucket_of(id, t->nbuckets)];

	while (f != NULL && f->id != id) {
		f = f->next;
	}
	return f;
}

/* Adds waiter w to the flight for id, creating the flight when there is
 * none. Sets *role to PS_FLIGHT_LEADER when this call created it (the
 * caller must then start the read, call ps_flights_sent() just before the
 * query goes out, and later ps_flights_take()); PS_FLIGHT_JOINED when w
 * will share the flight's answer; PS_FLIGHT_WAIT when the flight's query
 * was already sent, so w must look again once the flight ends. Returns
 * CM_OK, or CM_ENOMEM (w was not added). */
int
ps_flights_join(ps_flights *t, int64_t id, ps_waiter *w, int *role)
{
	size_t     k = bucket_of(id, t->nbuckets);
	ps_flight *f;

	w->next = NULL;
	if ((f = find(t, id)) != NULL) {
		if (f->sent) {
			if (f->later == NULL) {
				f->later = w;
			} else {
				f->later_tail->next = w;
			}
			f->later_tail = w;
			*role = PS_FLIGHT_WAIT;
		} else {
			f->tail->next = w;
			f->tail = w;
			*role = PS_FLIGHT_JOINED;
		}
		return CM_OK;
	}
	if ((f = malloc(sizeof(*f))) == NULL) {
		return CM_ENOMEM;
	}
	f->id = id;
	f->head = w;
	f->tail = w;
	f->later = NULL;
	f->later_tail = NULL;
	f->sent = 0;
	f->next = t->buckets[k];
	t->buckets[k] = f;
	*role = PS_FLIGHT_LEADER;
	if (++t->count > t->nbuckets) {
		grow(t);
	}
	return CM_OK;
}

/* Closes the flight for id to joiners: its query is being sent. Returns
 * CM_OK, or CM_ENOTFOUND when there is no such flight. */
int
ps_flights_sent(ps_flights *t, int64_t id)
{
	ps_flight *f = find(t, id);

	if (f == NULL) {
		return CM_ENOTFOUND;
	}
	f->sent = 1;
	return CM_OK;
}

/* Removes the flight for id and returns its joined waiters as a list
 * linked by next, in arrival order, or NULL when there is no such flight.
 * When later is not NULL, *later gets the waiters that arrived after the
 * query was sent (NULL when none), to look again; the caller owns both
 * lists. Waiters that join after this call start a new flight. */
ps_waiter *
ps_flights_take(ps_flights *t, int64_t id, ps_waiter **later)
{
	size_t      k = bucket_of(id, t->nbuckets);
	ps_flight **pp;

	if (later != NULL) {
		*later = NULL;
	}
	for (pp = &t->buckets[k]; *pp != NULL; pp = &(*pp)->next) {
		ps_flight *f = *pp;
		if (f->id == id) {
			ps_waiter *head = f->head;
			if (later != NULL) {
				*later = f->later;
			}
			*pp = f->next;
			free(f);
			t->count--;
			return head;
		}
	}
	return NULL;
}

size_t
ps_flights_count(const ps_flights *t)
{
	return t->count;
}
