/*
 * buffer_harness.h -- an independent C statement of the CPython buffer
 * exporter rules, used by pontoneer's Rust integration tests.
 *
 * The caller describes the TRUE geometry an exporter was built with
 * (ptc_expect); the harness derives from the rules alone (see
 * /work/shared/reference/buffer-rules.md and the comment at the top of
 * buffer_harness.c) what every request must produce, calls
 * PyObject_GetBuffer and checks every Py_buffer field, the error path,
 * the reference count and the export count.  It never asks the code under
 * test what is right.
 *
 * All functions must be called with the GIL held (attached thread state),
 * on an initialised interpreter, with no exception pending.  They never
 * leave an exception set.  Linux/POSIX only (clock_gettime, /proc).
 */
#ifndef PONTONEER_BUFFER_HARNESS_H
#define PONTONEER_BUFFER_HARNESS_H

#ifndef PY_SSIZE_T_CLEAN
#define PY_SSIZE_T_CLEAN
#endif
#include <Python.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ptc_expect {
    const char *name;            /* exporter name, for messages */
    const void *buf;             /* expected view->buf; NULL = only check it is non-NULL and constant across requests */
    Py_ssize_t itemsize;
    const char *format;          /* struct format string, e.g. "d" */
    int readonly;
    int ndim;
    const Py_ssize_t *shape;     /* ndim entries */
    const Py_ssize_t *strides;   /* ndim entries, bytes */
    int strict_flags;            /* 1: unknown flag bits refused (pontoneer); 0: ignored (memoryview) */
    Py_ssize_t (*exports)(PyObject *obj); /* export counter observer, or NULL */
} ptc_expect;

typedef struct ptc_report {
    long checks;      /* individual assertions evaluated */
    long requests;    /* PyObject_GetBuffer calls made */
    long failures;    /* assertions that failed */
    char *text;       /* caller-owned buffer collecting one line per failure (truncate silently when full, keep NUL-terminated) */
    size_t cap, used;
} ptc_report;

/* text may be NULL (or cap 0): then only the counters are kept. */
void ptc_report_init(ptc_report *r, char *text, size_t cap);

/* Every request: the 17 named PyBUF_* requests, every value 0..0x1FF and
   the invalid values 0x200, 0x400, 0x1000|PyBUF_ND, -1, INT_MIN.  Each
   request is made twice: once released normally, once released through a
   memcpy'd copy of the view (the original is overwritten with garbage
   before the copy is released).  Returns r->failures. */
long ptc_check_all_requests(PyObject *obj, const ptc_expect *e, ptc_report *r);

/* Several views held at once (FULL_RO, ND, SIMPLE, STRIDES, C/F/ANY
   contiguous, plus FULL, CONTIG, WRITABLE, STRIDED when writable);
   refused ones are checked as refusals while the others are held.
   Refcount and export count are checked after every get and every
   release, every held view is re-validated after each get/release (an
   exporter must not overwrite one view's storage when serving another),
   views are released out of order (2nd, 4th, ..., then 1st, 3rd, ...) and
   one of them through a copy.  Returns r->failures. */
long ptc_check_nested(PyObject *obj, const ptc_expect *e, ptc_report *r);

/* PyObject_GetBuffer(obj, NULL, flags) must return -1 with BufferError
   set, refcount and export count unchanged (pontoneer-specific: CPython's
   own exporters crash on a NULL view, so never run this on them).
   Tried with several flag values.  Returns r->failures. */
long ptc_check_null_view(PyObject *obj, const ptc_expect *e, ptc_report *r);

/* `cycles` get/release pairs with `flags` after a warm-up of cycles/10,
   timed with clock_gettime(CLOCK_MONOTONIC); RSS growth (KiB) measured
   from /proc/self/statm around the timed part.  Failure if any call fails,
   if view->obj is not obj, if RSS grows by more than max_rss_growth_kib,
   or if refcount/export count differ from their start values at the end.
   A `flags` value the rules refuse is itself reported as a failure (no
   loop is run).  ns_per_cycle and rss_growth_kib may be NULL.
   Returns r->failures. */
long ptc_load_loop(PyObject *obj, const ptc_expect *e, int flags, long cycles, long max_rss_growth_kib,
                   double *ns_per_cycle, long *rss_growth_kib, ptc_report *r);

#ifdef __cplusplus
}
#endif

#endif /* PONTONEER_BUFFER_HARNESS_H */
