/* cm_metrics.h - Prometheus metrics with per-thread shards, no hot-path lock.
 *
 * A process registers its metric families once at startup, before any
 * worker thread runs. Each family has up to three labels, each with a fixed
 * list of values (routes, methods, status codes: never ids), so a series is
 * an index into an array. Every thread that records values gets its own
 * shard (cm_metrics_thread_set), writes it with relaxed atomic adds, and a
 * scrape sums the shards. Gauges that describe state rather than events
 * (connected replicas, pool sizes) are read by callbacks at scrape time.
 */
#ifndef CM_METRICS_H
#define CM_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define CM_METRICS_MAX_LABELS 3
#define CM_METRICS_BUCKETS    14

typedef enum cm_metric_type {
	CM_METRIC_COUNTER,
	CM_METRIC_GAUGE,     /* summed over shards: use inc and dec */
	CM_METRIC_HISTOGRAM, /* seconds, fixed buckets */
} cm_metric_type;

typedef struct cm_metric cm_metric;

/* A label: its name and its NULL-terminated list of values. */
typedef struct cm_label {
	const char        *name;
	const char *const *values;
} cm_label;

/* Prepares the registry for at most nthreads recording threads (shard 0
 * is used by threads that never called cm_metrics_thread_set). Call once,
 * before registering. Returns CM_OK or CM_ENOMEM. */
int cm_metrics_init(int nthreads);

/* Frees every family; no thread may record afterwards. */
void cm_metrics_fini(void);

/* Registers a family. labels has nlabels entries (0 to 3). Returns the
 * family, or NULL when out of memory. The strings must outlive the
 * registry (string literals). */
cm_metric *cm_metric_new(cm_metric_type type, const char *name,
    const char *help, const cm_label *labels, int nlabels);

/* Registers a gauge whose value fn(arg) computes at scrape time; fn runs
 * on the scraping thread and must be thread-safe. */
int cm_metric_gauge_fn(
    const char *name, const char *help, double (*fn)(void *arg), void *arg);

/* Binds the calling thread to shard idx (1..nthreads). */
void cm_metrics_thread_set(int idx);

/* Index of a label value in its list, or the index of the last value
 * (by convention "other") when it is not there. */
int cm_label_index(const cm_label *l, const char *value);

/* Series index from label value indexes (one per label, in order). */
size_t cm_metric_series(const cm_metric *m, const int *idx);

/* Recording, on the calling thread's shard. */
void cm_metric_add(cm_metric *m, size_t series, int64_t delta);
void cm_metric_observe(cm_metric *m, size_t series, double seconds);

#define cm_metric_inc(m, s) cm_metric_add((m), (s), 1)
#define cm_metric_dec(m, s) cm_metric_add((m), (s), -1)

/* Sum of one series over all shards (tests, gauges). For a histogram,
 * the number of observations. */
int64_t cm_metric_value(const cm_metric *m, size_t series);

/* Writes the Prometheus text exposition (format 0.0.4) of every family
 * into a malloc'd, NUL-terminated string the caller frees. Returns CM_OK
 * or CM_ENOMEM. */
int cm_metrics_render(char **out, size_t *len);

#endif /* CM_METRICS_H */
