/* cm_metrics.c - Prometheus metrics with per-thread shards, no hot-path lock.
 */
#include "cm_metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm.h"

/* Upper bounds in seconds; +Inf is the count. */
static const double bucket_le[CM_METRICS_BUCKETS] = {0.0005, 0.001, 0.0025,
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

/* A histogram series keeps its buckets (not cumulative), then the count,
 * then the sum in nanoseconds. */
#define HIST_STRIDE (CM_METRICS_BUCKETS + 2)

struct cm_metric {
	cm_metric_type   type;
	const char      *name;
	const char      *help;
	cm_label         labels[CM_METRICS_MAX_LABELS];
	int              nlabels;
	int              nvalues[CM_METRICS_MAX_LABELS];
	size_t           nseries;
	size_t           stride; /* cells per series */
	_Atomic int64_t *cells;  /* nshards * nseries * stride */
	cm_metric       *next;
};

typedef struct gauge_fn {
	const char *name;
	const char *help;
	double (*fn)(void *);
	void            *arg;
	struct gauge_fn *next;
} gauge_fn;

static int          nshards = 1;
static cm_metric   *families, **families_tail = &families;
static gauge_fn    *gauges, **gauges_tail = &gauges;
static __thread int my_shard;

int
cm_metrics_init(int nthreads)
{
	nshards = nthreads < 1 ? 2 : nthreads + 1;
	return CM_OK;
}

void
cm_metrics_fini(void)
{
	while (families != NULL) {
		cm_metric *m = families;
		families = m->next;
		free(m->cells);
		free(m);
	}
	families_tail = &families;
	while (gauges != NULL) {
		gauge_fn *g = gauges;
		gauges = g->next;
		free(g);
	}
	gauges_tail = &gauges;
}

static int
count_values(const cm_label *l)
{
	int n = 0;
	while (l->values[n] != NULL) {
		n++;
	}
	return n;
}

cm_metric *
cm_metric_new(cm_metric_type type, const char *name, const char *help,
    const cm_label *labels, int nlabels)
{
	cm_metric *m;

	if (nlabels < 0 || nlabels > CM_METRICS_MAX_LABELS ||
	    (m = calloc(1, sizeof(*m))) == NULL) {
		return NULL;
	}
	m->type = type;
	m->name = name;
	m->help = help;
	m->nlabels = nlabels;
	m->nseries = 1;
	for (int i = 0; i < nlabels; i++) {
		m->labels[i] = labels[i];
		m->nvalues[i] = count_values(&labels[i]);
		if (m->nvalues[i] == 0) {
			free(m);
			return NULL;
		}
		m->nseries *= (size_t) m->nvalues[i];
	}
	m->stride = type == CM_METRIC_HISTOGRAM ? HIST_STRIDE : 1;
	m->cells = calloc(
	    (size_t) nshards * m->nseries * m->stride, sizeof(*m->cells));
	if (m->cells == NULL) {
		free(m);
		return NULL;
	}
	*families_tail = m;
	families_tail = &m->next;
	return m;
}

int
cm_metric_gauge_fn(
    const char *name, const char *help, double (*fn)(void *), void *arg)
{
	gauge_fn *g;
	if ((g = calloc(1, sizeof(*g))) == NULL) {
		return CM_ENOMEM;
	}
	g->name = name;
	g->help = help;
	g->fn = fn;
	g->arg = arg;
	*gauges_tail = g;
	gauges_tail = &g->next;
	return CM_OK;
}

void
cm_metrics_thread_set(int idx)
{
	my_shard = idx > 0 && idx < nshards ? idx : 0;
}

int
cm_label_index(const cm_label *l, const char *value)
{
	int i;
	for (i = 0; l->values[i] != NULL; i++) {
		if (value != NULL && strcmp(l->values[i], value) == 0) {
			return i;
		}
	}
	return i - 1;
}

size_t
cm_metric_series(const cm_metric *m, const int *idx)
{
	size_t s = 0;
	for (int i = 0; i < m->nlabels; i++) {
		int v = idx[i];
		if (v < 0 || v >= m->nvalues[i]) {
			v = m->nvalues[i] - 1;
		}
		s = s * (size_t) m->nvalues[i] + (size_t) v;
	}
	return s;
}

static _Atomic int64_t *
cell(const cm_metric *m, int shard, size_t series)
{
	return &m->cells[((size_t) shard * m->nseries + series) * m->stride];
}

void
cm_metric_add(cm_metric *m, size_t series, int64_t delta)
{
	if (m == NULL || series >= m->nseries) {
		return;
	}
	atomic_fetch_add_explicit(
	    cell(m, my_shard, series), delta, memory_order_relaxed);
}

void
cm_metric_observe(cm_metric *m, size_t series, double seconds)
{
	_Atomic int64_t *c;
	int              b = 0;

	if (m == NULL || series >= m->nseries ||
	    m->type != CM_METRIC_HISTOGRAM) {
		return;
	}
	if (seconds < 0) {
		seconds = 0;
	}
	while (b < CM_METRICS_BUCKETS && seconds > bucket_le[b]) {
		b++;
	}
	c = cell(m, my_shard, series);
	if (b < CM_METRICS_BUCKETS) {
		atomic_fetch_add_explicit(&c[b], 1, memory_order_relaxed);
	}
	atomic_fetch_add_explicit(
	    &c[CM_METRICS_BUCKETS], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&c[CM_METRICS_BUCKETS + 1],
	    (int64_t) (seconds * 1e9), memory_order_relaxed);
}

/* Sum of cell k of a series over all shards. */
static int64_t
sum_cell(const cm_metric *m, size_t series, size_t k)
{
	int64_t v = 0;
	for (int s = 0; s < nshards; s++) {
		v += atomic_load_explicit(
		    &cell(m, s, series)[k], memory_order_relaxed);
	}
	return v;
}

int64_t
cm_metric_value(const cm_metric *m, size_t series)
{
	if (m == NULL || series >= m->nseries) {
		return 0;
	}
	return sum_cell(m, series,
	    m->type == CM_METRIC_HISTOGRAM ? CM_METRICS_BUCKETS : 0);
}

/* ---- rendering ---- */

typedef struct buf {
	char  *p;
	size_t len, cap;
	int    oom;
} buf;

static void __attribute__((format(printf, 2, 3)))
bprintf(buf *b, const char *fmt, ...)
{
	va_list ap;
	int     n;

	if (b->oom) {
		return;
	}
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = 1;
			return;
		}
		if ((size_t) n < b->cap - b->len) {
			b->len += (size_t) n;
			return;
		}
		size_t cap = (b->cap + (size_t) n + 1) * 2;
		char  *p = realloc(b->p, cap);
		if (p == NULL) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

/* Label values come from our own tables, but escape them anyway as the
 * format requires (backslash, quote, newline). */
static void
put_escaped(buf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"') {
			bprintf(b, "\\%c", *s);
		} else if (*s == '\n') {
			bprintf(b, "\\n");
		} else {
			bprintf(b, "%c", *s);
		}
	}
}

/* Writes {a="x",b="y"[,extra]} for a series, or nothing without labels. */
static void
put_labels(buf *b, const cm_metric *m, size_t series, const char *extra)
{
	int    idx[CM_METRICS_MAX_LABELS];
	size_t s = series;

	if (m->nlabels == 0 && extra == NULL) {
		return;
	}
	for (int i = m->nlabels - 1; i >= 0; i--) {
		idx[i] = (int) (s % (size_t) m->nvalues[i]);
		s /= (size_t) m->nvalues[i];
	}
	bprintf(b, "{");
	for (int i = 0; i < m->nlabels; i++) {
		bprintf(b, "%s%s=\"", i ? "," : "", m->labels[i].name);
		put_escaped(b, m->labels[i].values[idx[i]]);
		bprintf(b, "\"");
	}
	if (extra != NULL) {
		bprintf(b, "%s%s", m->nlabels ? "," : "", extra);
	}
	bprintf(b, "}");
}

static void
render_family(buf *b, const cm_metric *m)
{
	static const char *types[] = {"counter", "gauge", "histogram"};

	bprintf(b, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
	    types[m->type]);
	for (size_t s = 0; s < m->nseries; s++) {
		if (m->type != CM_METRIC_HISTOGRAM) {
			int64_t v = sum_cell(m, s, 0);
			/* Labelled series that never moved are left out. */
			if (v == 0 && m->nlabels > 0) {
				continue;
			}
			bprintf(b, "%s", m->name);
			put_labels(b, m, s, NULL);
			bprintf(b, " %lld\n", (long long) v);
			continue;
		}
		int64_t count = sum_cell(m, s, CM_METRICS_BUCKETS);
		int64_t cum = 0;
		char    le[48];
		if (count == 0 && m->nlabels > 0) {
			continue;
		}
		for (int k = 0; k < CM_METRICS_BUCKETS; k++) {
			cum += sum_cell(m, s, (size_t) k);
			snprintf(le, sizeof(le), "le=\"%g\"", bucket_le[k]);
			bprintf(b, "%s_bucket", m->name);
			put_labels(b, m, s, le);
			bprintf(b, " %lld\n", (long long) cum);
		}
		bprintf(b, "%s_bucket", m->name);
		put_labels(b, m, s, "le=\"+Inf\"");
		bprintf(b, " %lld\n%s_sum", (long long) count, m->name);
		put_labels(b, m, s, NULL);
		bprintf(b, " %.9f\n%s_count",
		    (double) sum_cell(m, s, CM_METRICS_BUCKETS + 1) / 1e9,
		    m->name);
		put_labels(b, m, s, NULL);
		bprintf(b, " %lld\n", (long long) count);
	}
}

int
cm_metrics_render(char **out, size_t *len)
{
	buf b = {0};

	if ((b.p = malloc(b.cap = 4096)) == NULL) {
		return CM_ENOMEM;
	}
	b.p[0] = '\0';
	for (const cm_metric *m = families; m != NULL; m = m->next) {
		render_family(&b, m);
	}
	for (const gauge_fn *g = gauges; g != NULL; g = g->next) {
		bprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n",
		    g->name, g->help, g->name, g->name, g->fn(g->arg));
	}
	if (b.oom) {
		free(b.p);
		return CM_ENOMEM;
	}
	*out = b.p;
	*len = b.len;
	return CM_OK;
}
