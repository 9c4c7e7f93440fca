/* ps_flight.c - single-flight table: one database read per id per thread.
 *
 * A worker loop that misses the cache for an id joins the flight for that
 * id; the first joiner (the leader) starts the read, and when it completes
 * the leader takes every waiter and answers them all. The table belongs to
 * one loop thread and takes no locks.
 */
#include <stdlib.h>

#include "cm.h"
#include "ps.h"

struct ps_flight {
	int64_t    id;
	ps_flight *next; /* bucket chain */
	ps_waiter *head; /* waiters in arrival order */
	ps_waiter *tail;
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

/* Adds waiter w to the flight for id, creating the flight when there is
 * none. Sets *leader to 1 when this call created it: the caller must then
 * start the read and later call ps_flights_take(). Returns CM_OK, or
 * CM_ENOMEM (w was not added). */
int
ps_flights_join(ps_flights *t, int64_t id, ps_waiter *w, int *leader)
{
	size_t     k = bucket_of(id, t->nbuckets);
	ps_flight *f;

	w->next = NULL;
	for (f = t->buckets[k]; f != NULL; f = f->next) {
		if (f->id == id) {
			f->tail->next = w;
			f->tail = w;
			*leader = 0;
			return CM_OK;
		}
	}
	if ((f = malloc(sizeof(*f))) == NULL) {
		return CM_ENOMEM;
	}
	f->id = id;
	f->head = w;
	f->tail = w;
	f->next = t->buckets[k];
	t->buckets[k] = f;
	*leader = 1;
	if (++t->count > t->nbuckets) {
		grow(t);
	}
	return CM_OK;
}

/* Removes the flight for id and returns its waiters as a list linked by
 * next, in arrival order, or NULL when there is no such flight. Waiters
 * that join after this call start a new flight. */
ps_waiter *
ps_flights_take(ps_flights *t, int64_t id)
{
	size_t      k = bucket_of(id, t->nbuckets);
	ps_flight **pp;

	for (pp = &t->buckets[k]; *pp != NULL; pp = &(*pp)->next) {
		ps_flight *f = *pp;
		if (f->id == id) {
			ps_waiter *head = f->head;
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
