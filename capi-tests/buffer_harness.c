/*
 * buffer_harness.c -- independent C statement of the buffer exporter rules.
 * (Request names, contiguity and exception text come from buffer_common.c,
 * shared with the conformance kit, conformance.c, which checks exporters
 * without a caller-supplied truth.)
 *
 * THE POLICY ENCODED HERE (memoryview's policy plus a strict flag check).
 * Flag tests are always (f & X) == X.  Given the truth (buf, itemsize,
 * format, readonly, ndim, shape, strides) a request f is REFUSED -- rc -1,
 * exception exactly BufferError, view->obj == NULL -- when any of:
 *   1. strict_flags and f has a bit outside 0x1FD (0x2, 0x200, 0x400, any
 *      higher bit, negative values);
 *   2. PyBUF_WRITABLE and the truth is read-only;
 *   3. C_CONTIGUOUS and not C-contiguous; F_CONTIGUOUS and not
 *      F-contiguous; ANY_CONTIGUOUS and neither -- each on its own;
 *   4. STRIDES not requested and not C-contiguous;
 *   5. ND not requested and FORMAT requested (SIMPLE|FORMAT, WRITABLE|FORMAT).
 * Otherwise GRANTED -- rc 0, no exception, obj == exporter (new reference,
 * export count + 1), buf == truth (never NULL), len = product(shape) *
 * itemsize, itemsize == truth, readonly == truth (exactly 0 or 1, whatever
 * was asked), format NULL unless FORMAT (then strcmp-equal), ndim = truth
 * if ND else 1, shape NULL unless ND, strides NULL unless STRIDES (both
 * NULL for ndim 0), suboffsets NULL.  Contiguity (abstract.c
 * _IsCContiguous/_IsFortranContiguous): len 0 -> contiguous in every order;
 * ndim 0 -> contiguous; else every dim with extent > 1 must have stride ==
 * running product (last->first for C, first->last for F).
 *
 * CPython quirks found while checking memoryview against this harness
 * (see also the self-test notes in the report):
 *  - Q1 (CPython >= 3.13, gh-114685 / PR #114707): PyObject_GetBuffer itself
 *    raises SystemError for flags == PyBUF_READ (0x100) or PyBUF_WRITE
 *    (0x200) *without calling the exporter*, leaving the Py_buffer
 *    untouched.  0x100 is also the bare INDIRECT bit, which is inside the
 *    0..0x1FF sweep.  The harness detects the running version and, for those
 *    two exact values only, expects that CPython refusal (rc -1, SystemError,
 *    refcount/exports unchanged) and does not check view->obj.
 *  - Q2 (all versions): memoryview decides 1-D contiguity with
 *    MV_CONTIGUOUS_NDIM1 (shape[0] == 1 || strides[0] == itemsize) and does
 *    not apply the "len 0 is contiguous" rule of abstract.c.  An EMPTY 1-D
 *    memoryview with a stride != itemsize (e.g. m[5:5:2]) therefore refuses
 *    ND/SIMPLE/C/F/ANY requests that this harness (and abstract.c's
 *    PyBuffer_IsContiguous, which answers 1 for len 0) says must be
 *    granted.  Such a view is not a conformance target; pontoneer follows
 *    abstract.c.  memoryview(bytearray(0)).cast('d') (stride 8) is unaffected.
 *  - Q3: memoryview segfaults on PyObject_GetBuffer(m, NULL, f) (memory_getbuf
 *    copies into *view before any check; seen on 3.11.7), while bytearray
 *    answers BufferError.  ptc_check_null_view is for pontoneer objects.
 *  - Q4 (documented, e.4 of the rules): memoryview keeps `itemsize` = the
 *    original item size when format is NULL, and reports ndim 1 / shape NULL
 *    for strides-less SIMPLE requests on N-D and 0-d views; the harness
 *    encodes exactly that, and memoryview passes it.
 *
 * Safety: before every call the Py_buffer is filled with 0xA5; pointer
 * fields are only dereferenced when they are non-NULL, not the fill
 * pattern, and (for shape/strides) ndim matched the rule.
 * PyBuffer_IsContiguous and the data reads are only done when the whole
 * structure passed.  A granted view is always released: through
 * PyBuffer_Release when view->obj is a real object, else (obj NULL or never
 * set) by calling the exporter's bf_releasebuffer directly.
 */
#include "buffer_harness.h"
#include "buffer_common.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PTC_GARBAGE PBC_GARBAGE
#define PTC_KNOWN_FLAGS PBC_KNOWN_FLAGS
#define PTC_LINES_PER_FIELD 12
#define PTC_MAX_HELD 16

/* ------------------------------------------------------------------ */
/* failure fields                                                      */

enum {
    F_RC, F_EXC, F_OBJ, F_BUF, F_LEN, F_ITEMSIZE, F_READONLY, F_FORMAT,
    F_NDIM, F_SHAPE, F_STRIDES, F_SUBOFFSETS, F_CONTIG, F_REFCNT,
    F_EXPORTS, F_RELEASE, F_LOAD, F_RSS, F_HARNESS, F_NFIELDS
};

static const char *const field_names[F_NFIELDS] = {
    "return value", "exception", "obj", "buf", "len", "itemsize",
    "readonly", "format", "ndim", "shape", "strides", "suboffsets",
    "contiguity", "refcount", "exports", "release", "calls", "rss",
    "harness"
};

typedef struct {
    ptc_report *r;
    const ptc_expect *e;
    PyObject *obj;
    const char *name;
    const char *where;      /* prefix like "nested: " */
    int flags;
    int have_flags;
    long per_field[F_NFIELDS];
    /* derived from the truth */
    int truth_ok;
    int readonly;           /* normalised 0/1 */
    Py_ssize_t len;
    int c_contig, f_contig;
    const void *first_buf;  /* when e->buf == NULL */
    int pyver;              /* major * 100 + minor of the running interpreter */
} ptc_ctx;

typedef struct {
    int refuse;
    int precheck;           /* Q1: CPython refuses before calling the exporter */
    char why[160];          /* rule that refuses */
    int ndim;
    int want_format, want_shape, want_strides;
    int check_c, check_f, check_any;
    int contiguous_access;
} ptc_want;

/* ------------------------------------------------------------------ */
/* report                                                              */

void ptc_report_init(ptc_report *r, char *text, size_t cap)
{
    r->checks = 0;
    r->requests = 0;
    r->failures = 0;
    r->text = text;
    r->cap = text ? cap : 0;
    r->used = 0;
    if (r->text && r->cap > 0) r->text[0] = '\0';
}

static void report_append(ptc_report *r, const char *s)
{
    if (r->text == NULL || r->cap == 0) return;
    if (r->used >= r->cap - 1) { r->text[r->cap - 1] = '\0'; return; }
    size_t room = r->cap - 1 - r->used;
    size_t n = strlen(s);
    if (n > room) n = room;
    memcpy(r->text + r->used, s, n);
    r->used += n;
    r->text[r->used] = '\0';
}

static void vline(ptc_ctx *c, int field, const char *fmt, va_list ap)
{
    char msg[640];
    vsnprintf(msg, sizeof msg, fmt, ap);
    char line[1024];
    if (c->have_flags) {
        char nm[96];
        pbc_flag_name(c->flags, nm, sizeof nm);
        if (nm[0])
            snprintf(line, sizeof line, "%s: %srequest 0x%04x (%s): %s: %s\n",
                     c->name, c->where, (unsigned)c->flags, nm,
                     field_names[field], msg);
        else
            snprintf(line, sizeof line, "%s: %srequest 0x%04x: %s: %s\n",
                     c->name, c->where, (unsigned)c->flags, field_names[field], msg);
    }
    else {
        snprintf(line, sizeof line, "%s: %s%s: %s\n", c->name, c->where,
                 field_names[field], msg);
    }
    report_append(c->r, line);
}

static void vfailf(ptc_ctx *c, int field, const char *fmt, va_list ap)
{
    c->r->failures++;
    c->per_field[field]++;
    if (c->per_field[field] > PTC_LINES_PER_FIELD) return;
    vline(c, field, fmt, ap);
}

/* a line describing `count` failures that were already counted by the caller */
static void counted_line(ptc_ctx *c, int field, long count, const char *fmt, ...)
{
    c->per_field[field] += count;
    if (c->per_field[field] - count >= PTC_LINES_PER_FIELD) return;
    va_list ap;
    va_start(ap, fmt);
    vline(c, field, fmt, ap);
    va_end(ap);
}

/* an assertion: counted, and reported when false */
static int check(ptc_ctx *c, int cond, int field, const char *fmt, ...)
{
    c->r->checks++;
    if (cond) return 1;
    va_list ap;
    va_start(ap, fmt);
    vfailf(c, field, fmt, ap);
    va_end(ap);
    return 0;
}

/* a failed assertion with no separate condition */
static void bad(ptc_ctx *c, int field, const char *fmt, ...)
{
    c->r->checks++;
    va_list ap;
    va_start(ap, fmt);
    vfailf(c, field, fmt, ap);
    va_end(ap);
}

static void flush_suppressed(ptc_ctx *c)
{
    for (int i = 0; i < F_NFIELDS; i++) {
        if (c->per_field[i] > PTC_LINES_PER_FIELD) {
            char line[320];
            snprintf(line, sizeof line,
                     "%s: %s%s: %ld further failure(s) of this field not shown\n",
                     c->name, c->where, field_names[i],
                     c->per_field[i] - PTC_LINES_PER_FIELD);
            report_append(c->r, line);
        }
        c->per_field[i] = 0;
    }
}

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static Py_ssize_t exports_now(ptc_ctx *c)
{
    if (c->e->exports == NULL) return 0;
    Py_ssize_t n = c->e->exports(c->obj);
    if (PyErr_Occurred()) {
        char m[200];
        pbc_exc_message(m, sizeof m);
        PyErr_Clear();
        bad(c, F_HARNESS, "exports observer raised (%s)", m);
    }
    return n;
}

/* ------------------------------------------------------------------ */
/* truth                                                               */

static int truth_contig(const ptc_expect *e, Py_ssize_t len, char order)
{
    return pbc_contiguous(e->ndim, e->shape, e->strides, e->itemsize, len, order);
}

static void ctx_init(ptc_ctx *c, PyObject *obj, const ptc_expect *e,
                     ptc_report *r, const char *where)
{
    memset(c, 0, sizeof *c);
    c->r = r;
    c->e = e;
    c->obj = obj;
    c->name = (e && e->name) ? e->name : "(unnamed exporter)";
    c->where = where;
    c->pyver = pbc_running_pyver();

    if (PyErr_Occurred()) {
        char m[200];
        pbc_exc_message(m, sizeof m);
        PyErr_Clear();
        bad(c, F_HARNESS, "an exception was pending on entry (%s); cleared", m);
    }
    if (obj == NULL || e == NULL) {
        bad(c, F_HARNESS, "obj or expectation is NULL");
        return;
    }
    if (e->itemsize < 1) { bad(c, F_HARNESS, "truth itemsize %zd < 1", e->itemsize); return; }
    if (e->format == NULL) { bad(c, F_HARNESS, "truth format is NULL"); return; }
    if (e->ndim < 0 || e->ndim > PyBUF_MAX_NDIM) {
        bad(c, F_HARNESS, "truth ndim %d outside 0..%d", e->ndim, PyBUF_MAX_NDIM);
        return;
    }
    if (e->ndim > 0 && (e->shape == NULL || e->strides == NULL)) {
        bad(c, F_HARNESS, "truth ndim %d but shape/strides NULL", e->ndim);
        return;
    }
    Py_ssize_t len = e->itemsize;
    for (int i = 0; i < e->ndim; i++) {
        if (e->shape[i] < 0) { bad(c, F_HARNESS, "truth shape[%d] = %zd < 0", i, e->shape[i]); return; }
        len *= e->shape[i];
    }
    c->len = len;
    c->readonly = e->readonly ? 1 : 0;
    c->c_contig = truth_contig(e, len, 'C');
    c->f_contig = truth_contig(e, len, 'F');
    c->truth_ok = 1;
}

static void compute_want(const ptc_ctx *c, int f, ptc_want *w)
{
    const ptc_expect *e = c->e;
    memset(w, 0, sizeof *w);
    int req_writable = (f & PyBUF_WRITABLE) == PyBUF_WRITABLE;
    int req_format = (f & PyBUF_FORMAT) == PyBUF_FORMAT;
    int req_shape = (f & PyBUF_ND) == PyBUF_ND;
    int req_strides = (f & PyBUF_STRIDES) == PyBUF_STRIDES;
    int req_c = (f & PyBUF_C_CONTIGUOUS) == PyBUF_C_CONTIGUOUS;
    int req_f = (f & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS;
    int req_any = (f & PyBUF_ANY_CONTIGUOUS) == PyBUF_ANY_CONTIGUOUS;
    unsigned unknown = (unsigned)f & ~(unsigned)PTC_KNOWN_FLAGS;

    if (c->pyver >= 313 && (f == 0x100 || f == 0x200)) {
        w->refuse = 1;
        w->precheck = 1;
        snprintf(w->why, sizeof w->why,
                 "CPython >= 3.13 PyObject_GetBuffer rejects PyBUF_READ/PyBUF_WRITE with SystemError");
        return;
    }
    if (e->strict_flags && unknown) {
        w->refuse = 1;
        snprintf(w->why, sizeof w->why, "unknown flag bits 0x%x refused (strict_flags)", unknown);
        return;
    }
    if (req_writable && c->readonly) {
        w->refuse = 1;
        snprintf(w->why, sizeof w->why, "PyBUF_WRITABLE on a read-only exporter");
        return;
    }
    if (req_c && !c->c_contig) {
        w->refuse = 1;
        snprintf(w->why, sizeof w->why, "PyBUF_C_CONTIGUOUS on a non-C-contiguous array");
        return;
    }
    if (req_f && !c->f_contig) {
        w->refuse = 1;
        snprintf(w->why, sizeof w->why, "PyBUF_F_CONTIGUOUS on a non-F-contiguous array");
        return;
    }
    if (req_any && !c->c_contig && !c->f_contig) {
        w->refuse = 1;
        snprintf(w->why, sizeof w->why, "PyBUF_ANY_CONTIGUOUS on a non-contiguous array");
        return;
    }
    if (!req_strides && !c->c_contig) {
        w->refuse = 1;
        snprintf(w->why, sizeof w->why, "no PyBUF_STRIDES and the array is not C-contiguous");
        return;
    }
    if (!req_shape && req_format) {
        w->refuse = 1;
        snprintf(w->why, sizeof w->why, "PyBUF_FORMAT without PyBUF_ND (memoryview policy)");
        return;
    }
    w->ndim = req_shape ? e->ndim : 1;
    w->want_format = req_format;
    w->want_shape = req_shape && e->ndim > 0;
    w->want_strides = req_strides && e->ndim > 0;
    w->check_c = req_c || !req_strides;
    w->check_f = req_f;
    w->check_any = req_any;
    w->contiguous_access = !req_strides || req_c || req_f || req_any;
}

/* ------------------------------------------------------------------ */
/* validation of a granted view                                        */

/* Checks one array field (shape or strides).  Returns 1 when the field is
   as the rules say (and therefore safe to dereference when non-NULL). */
static int check_array(ptc_ctx *c, int field, const Py_ssize_t *found,
                       const Py_ssize_t *truth, int want, int ndim_ok,
                       const char *rule_null)
{
    char pb[96];
    if (!want) {
        return check(c, found == NULL, field, "found %s, rule: %s",
                     pbc_describe_ptr(found, pb, sizeof pb), rule_null);
    }
    if (!check(c, found != NULL && !pbc_is_garbage_ptr(found), field,
               "found %s, rule: must point at %d values",
               pbc_describe_ptr(found, pb, sizeof pb), c->e->ndim))
        return 0;
    if (!ndim_ok) return 0;  /* cannot know how many entries it holds */
    int same = 1;
    for (int i = 0; i < c->e->ndim; i++)
        if (found[i] != truth[i]) { same = 0; break; }
    char fb[200], tb[200];
    if (!same) {
        pbc_fmt_array(found, c->e->ndim, fb, sizeof fb);
        pbc_fmt_array(truth, c->e->ndim, tb, sizeof tb);
    }
    return check(c, same, field, "found %s, rule: %s (the truth)",
                 same ? "" : fb, same ? "" : tb);
}

/* Returns 1 when the structure (obj, buf, len, ndim, shape, strides,
   suboffsets) is sound enough to hand to PyBuffer_IsContiguous and to read
   the data. */
static int validate_granted(ptc_ctx *c, const Py_buffer *v, const ptc_want *w)
{
    const ptc_expect *e = c->e;
    char pb[96];

    /* obj */
    if (v->obj != c->obj) {
        if (v->obj == NULL || pbc_is_garbage_ptr(v->obj))
            bad(c, F_OBJ, "found %s, rule: the exporter (%p), new reference",
                pbc_describe_ptr(v->obj, pb, sizeof pb), (void *)c->obj);
        else
            bad(c, F_OBJ, "found %p (not the exporter; not dereferenced), rule: the exporter (%p) itself",
                (void *)v->obj, (void *)c->obj);
    }
    else c->r->checks++;

    /* buf */
    int buf_ok = check(c, v->buf != NULL && !pbc_is_garbage_ptr(v->buf), F_BUF,
                       "found %s, rule: non-NULL data pointer (even when empty)",
                       pbc_describe_ptr(v->buf, pb, sizeof pb));
    if (buf_ok) {
        if (e->buf != NULL) {
            buf_ok = check(c, v->buf == e->buf, F_BUF, "found %p, rule: %p (the truth)",
                           v->buf, e->buf);
        }
        else if (c->first_buf == NULL) {
            c->first_buf = v->buf;
        }
        else {
            buf_ok = check(c, v->buf == c->first_buf, F_BUF,
                           "found %p, rule: the same pointer for every request (first was %p)",
                           v->buf, c->first_buf);
        }
    }

    int len_ok = check(c, v->len == c->len, F_LEN,
                       "found %zd%s, rule: product(shape) * itemsize = %zd",
                       v->len, pbc_garbage_note_ssize(v->len), c->len);
    check(c, v->itemsize == e->itemsize, F_ITEMSIZE,
          "found %zd%s, rule: %zd (the original item size, even when format is NULL)",
          v->itemsize, pbc_garbage_note_ssize(v->itemsize), e->itemsize);
    check(c, v->readonly == c->readonly, F_READONLY,
          "found %d%s, rule: %d (the exporter's constant readonly, exactly 0 or 1)",
          v->readonly, pbc_garbage_note_int(v->readonly), c->readonly);

    /* format */
    if (w->want_format) {
        if (check(c, v->format != NULL && !pbc_is_garbage_ptr(v->format), F_FORMAT,
                  "found %s, rule: \"%s\" when PyBUF_FORMAT is requested",
                  pbc_describe_ptr(v->format, pb, sizeof pb), e->format)) {
            size_t n = strlen(e->format) + 1;
            check(c, strncmp(v->format, e->format, n) == 0, F_FORMAT,
                  "found \"%.16s\", rule: \"%s\"", v->format, e->format);
        }
    }
    else {
        check(c, v->format == NULL, F_FORMAT,
              "found %s, rule: NULL unless PyBUF_FORMAT requested",
              pbc_describe_ptr(v->format, pb, sizeof pb));
    }

    /* ndim */
    int ndim_ok = check(c, v->ndim == w->ndim, F_NDIM,
                        "found %d%s, rule: %d (%s)", v->ndim, pbc_garbage_note_int(v->ndim),
                        w->ndim,
                        ((c->flags & PyBUF_ND) == PyBUF_ND)
                            ? "the true ndim when PyBUF_ND is requested"
                            : "1 when PyBUF_ND is not requested");

    int req_shape = (c->flags & PyBUF_ND) == PyBUF_ND;
    int req_strides = (c->flags & PyBUF_STRIDES) == PyBUF_STRIDES;
    int shape_ok = check_array(c, F_SHAPE, v->shape, e->shape, w->want_shape, ndim_ok,
                               req_shape ? "NULL for a 0-dimensional array"
                                         : "NULL unless PyBUF_ND requested");
    int strides_ok = check_array(c, F_STRIDES, v->strides, e->strides, w->want_strides, ndim_ok,
                                 req_strides ? "NULL for a 0-dimensional array"
                                             : "NULL unless PyBUF_STRIDES requested");
    int sub_ok = check(c, v->suboffsets == NULL, F_SUBOFFSETS,
                       "found %s, rule: always NULL (no suboffsets)",
                       pbc_describe_ptr(v->suboffsets, pb, sizeof pb));

    return buf_ok && len_ok && ndim_ok && shape_ok && strides_ok && sub_ok;
}

static void check_contiguity_and_touch(ptc_ctx *c, const Py_buffer *v, const ptc_want *w,
                                       int struct_ok)
{
    if (!struct_ok) return;   /* unsafe to let CPython dereference shape/strides */
    if (w->check_c)
        check(c, PyBuffer_IsContiguous(v, 'C') == 1, F_CONTIG,
              "PyBuffer_IsContiguous(view, 'C') is 0, rule: a C-contiguous or strides-less request yields a C-contiguous view");
    if (w->check_f)
        check(c, PyBuffer_IsContiguous(v, 'F') == 1, F_CONTIG,
              "PyBuffer_IsContiguous(view, 'F') is 0, rule: PyBUF_F_CONTIGUOUS yields an F-contiguous view");
    if (w->check_any)
        check(c, PyBuffer_IsContiguous(v, 'A') == 1, F_CONTIG,
              "PyBuffer_IsContiguous(view, 'A') is 0, rule: PyBUF_ANY_CONTIGUOUS yields a contiguous view");
    if (w->contiguous_access && v->len > 0) {
        const volatile unsigned char *p = (const volatile unsigned char *)v->buf;
        volatile unsigned char sink;
        sink = p[0];
        sink = p[v->len - 1];
        (void)sink;
    }
}

static void check_counts(ptc_ctx *c, Py_ssize_t rc_want, Py_ssize_t ex_want, const char *when)
{
    Py_ssize_t rc = Py_REFCNT(c->obj);
    check(c, rc == rc_want, F_REFCNT, "%s: found %zd, rule: %zd", when, rc, rc_want);
    if (c->e->exports) {
        Py_ssize_t ex = exports_now(c);
        check(c, ex == ex_want, F_EXPORTS, "%s: found %zd, rule: %zd", when, ex, ex_want);
    }
}

/* Release a view the exporter granted.  via_copy: memcpy the view, fill
   the original with garbage, release the copy. */
static void release_view(ptc_ctx *c, Py_buffer *v, int via_copy,
                         Py_ssize_t rc_after, Py_ssize_t ex_after)
{
    Py_buffer copy;
    Py_buffer *target = v;
    if (via_copy) {
        memcpy(&copy, v, sizeof copy);
        memset(v, PTC_GARBAGE, sizeof *v);
        target = &copy;
    }
    if (target->obj == c->obj) {
        PyBuffer_Release(target);
        check(c, target->obj == NULL, F_RELEASE,
              "view.obj after PyBuffer_Release is %p, rule: NULL", (void *)target->obj);
    }
    else {
        /* view->obj is not the exporter (already reported): it may be NULL,
           never set, or a wild pointer, so it is not touched.  Give the
           exporter its release call directly so its export count can
           recover; a reference the exporter took on something else leaks
           (and the refcount check below reports the exporter's side). */
        PyBufferProcs *pb = Py_TYPE(c->obj)->tp_as_buffer;
        if (pb && pb->bf_releasebuffer) pb->bf_releasebuffer(c->obj, target);
        target->obj = NULL;
    }
    if (PyErr_Occurred()) {
        char m[200];
        pbc_exc_message(m, sizeof m);
        PyErr_Clear();
        bad(c, F_RELEASE, "exception left set by the release (%s), rule: none (releasebuffer reports through unraisable)", m);
    }
    else c->r->checks++;
    check_counts(c, rc_after, ex_after, via_copy ? "after release via a copy" : "after release");
}

/* The exception/obj checks of a refused request.  rc != 0 here. */
static void check_refusal(ptc_ctx *c, int rc, const Py_buffer *v, const ptc_want *w,
                          Py_ssize_t rc0, Py_ssize_t ex0)
{
    char pb[96];
    check(c, rc == -1, F_RC, "found %d, rule: -1 (refused: %s)", rc, w->why);
    PyObject *exc = PyErr_Occurred();
    if (w->precheck) {
        if (check(c, exc != NULL, F_EXC, "none set, rule: SystemError (%s)", w->why))
            check(c, PyErr_ExceptionMatches(PyExc_SystemError), F_EXC,
                  "found %s, rule: SystemError (%s)", ((PyTypeObject *)exc)->tp_name, w->why);
    }
    else if (check(c, exc != NULL, F_EXC, "none set with rc %d, rule: BufferError (%s)", rc, w->why)) {
        if (check(c, PyErr_ExceptionMatches(PyExc_BufferError), F_EXC,
                  "found %s, rule: BufferError (%s)", ((PyTypeObject *)exc)->tp_name, w->why))
            check(c, exc == PyExc_BufferError, F_EXC,
                  "found %s (a subclass), rule: exactly BufferError", ((PyTypeObject *)exc)->tp_name);
        check(c, v->obj == NULL, F_OBJ, "found %s after a refusal, rule: NULL",
              pbc_describe_ptr(v->obj, pb, sizeof pb));
    }
    PyErr_Clear();
    check_counts(c, rc0, ex0, "after refusal");
}

/* One request, fully checked, then released (directly or through a copy). */
static void one_request(ptc_ctx *c, int f, int via_copy)
{
    ptc_want w;
    Py_buffer view;
    char pb[96];

    c->flags = f;
    c->have_flags = 1;
    compute_want(c, f, &w);

    Py_ssize_t rc0 = Py_REFCNT(c->obj);
    Py_ssize_t ex0 = exports_now(c);
    memset(&view, PTC_GARBAGE, sizeof view);
    int rc = PyObject_GetBuffer(c->obj, &view, f);
    c->r->requests++;

    if (w.refuse) {
        if (rc == 0) {
            bad(c, F_RC, "granted (rc 0), rule: refused with BufferError (%s)", w.why);
            if (PyErr_Occurred()) {
                bad(c, F_EXC, "exception set with rc 0");
                PyErr_Clear();
            }
            check_counts(c, rc0 + 1, ex0 + 1, "after the (wrongly) granted request");
            if (view.obj != c->obj)
                bad(c, F_OBJ, "found %s, rule: the exporter on success",
                    pbc_describe_ptr(view.obj, pb, sizeof pb));
            release_view(c, &view, via_copy, rc0, ex0);
        }
        else {
            check_refusal(c, rc, &view, &w, rc0, ex0);
        }
        return;
    }

    if (rc != 0) {
        char m[240];
        pbc_exc_message(m, sizeof m);
        bad(c, F_RC, "refused (rc %d, %s), rule: granted", rc, m);
        if (!PyErr_Occurred()) bad(c, F_EXC, "rc %d without an exception set", rc);
        check(c, view.obj == NULL, F_OBJ, "found %s after a refusal, rule: NULL",
              pbc_describe_ptr(view.obj, pb, sizeof pb));
        PyErr_Clear();
        check_counts(c, rc0, ex0, "after refusal");
        return;
    }
    c->r->checks++;   /* rc == 0 as required */
    if (PyErr_Occurred()) {
        char m[240];
        pbc_exc_message(m, sizeof m);
        PyErr_Clear();
        bad(c, F_EXC, "set with rc 0 (%s), rule: none on success", m);
    }
    else c->r->checks++;

    int ok = validate_granted(c, &view, &w);
    check_counts(c, rc0 + 1, ex0 + 1, "after get");
    check_contiguity_and_touch(c, &view, &w, ok);
    release_view(c, &view, via_copy, rc0, ex0);
}

/* ------------------------------------------------------------------ */
/* public: all requests                                                */

long ptc_check_all_requests(PyObject *obj, const ptc_expect *e, ptc_report *r)
{
    ptc_ctx c;
    ctx_init(&c, obj, e, r, "");
    if (!c.truth_ok) { flush_suppressed(&c); return r->failures; }

    for (int mode = 0; mode < 2; mode++) {
        for (int i = 0; i < pbc_n_named_requests; i++) one_request(&c, pbc_named_requests[i].value, mode);
        for (int f = 0; f <= 0x1FF; f++) one_request(&c, f, mode);
        for (int i = 0; i < pbc_n_invalid_requests; i++)
            one_request(&c, pbc_invalid_requests[i], mode);
    }
    c.have_flags = 0;
    flush_suppressed(&c);
    return r->failures;
}

/* ------------------------------------------------------------------ */
/* public: nested views                                                */

typedef struct {
    Py_buffer view;         /* the live view */
    Py_buffer snap;         /* byte copy taken right after the get */
    int flags;
    ptc_want want;
    int live;
    int arrays_ok;          /* shape/strides contents were copied */
    Py_ssize_t shape[PyBUF_MAX_NDIM], strides[PyBUF_MAX_NDIM];
    int fmt_ok;
    char fmt[64];
} ptc_held;

static void snapshot(ptc_held *h, int struct_ok, int fmt_ok)
{
    memcpy(&h->snap, &h->view, sizeof h->snap);
    h->arrays_ok = 0;
    h->fmt_ok = 0;
    if (struct_ok && h->view.ndim > 0 && h->view.ndim <= PyBUF_MAX_NDIM) {
        size_t n = (size_t)h->view.ndim;
        if (h->view.shape) memcpy(h->shape, h->view.shape, n * sizeof(Py_ssize_t));
        if (h->view.strides) memcpy(h->strides, h->view.strides, n * sizeof(Py_ssize_t));
        h->arrays_ok = 1;
    }
    if (fmt_ok && h->view.format && strlen(h->view.format) < sizeof h->fmt) {
        strcpy(h->fmt, h->view.format);
        h->fmt_ok = 1;
    }
}

/* A held view must stay exactly as it was handed out while other views of
   the same exporter are taken and released: an exporter must not reuse one
   view's shape/strides/format storage for another. */
static void revalidate(ptc_ctx *c, ptc_held *h, int n, const char *when)
{
    char where[96];
    const char *saved = c->where;
    int saved_flags = c->flags;
    for (int i = 0; i < n; i++) {
        if (!h[i].live) continue;
        const Py_buffer *v = &h[i].view, *s = &h[i].snap;
        snprintf(where, sizeof where, "nested (%s, view #%d): ", when, i + 1);
        c->where = where;
        c->flags = h[i].flags;
        /* the struct itself lives in the harness: only a wild write could
           change it, but check anyway */
        check(c, memcmp(v, s, sizeof *v) == 0, F_HARNESS,
              "the Py_buffer struct changed while held, rule: never touched by the exporter");
        if (h[i].arrays_ok) {
            size_t nb = (size_t)s->ndim * sizeof(Py_ssize_t);
            if (s->shape) {
                char fb[200], tb[200];
                int same = memcmp(s->shape, h[i].shape, nb) == 0;
                if (!same) {
                    pbc_fmt_array(s->shape, s->ndim, fb, sizeof fb);
                    pbc_fmt_array(h[i].shape, s->ndim, tb, sizeof tb);
                }
                if (!check(c, same, F_SHAPE, "changed while the view is held: now %s, was %s",
                           same ? "" : fb, same ? "" : tb))
                    memcpy(h[i].shape, s->shape, nb);   /* report each change once */
            }
            if (s->strides) {
                char fb[200], tb[200];
                int same = memcmp(s->strides, h[i].strides, nb) == 0;
                if (!same) {
                    pbc_fmt_array(s->strides, s->ndim, fb, sizeof fb);
                    pbc_fmt_array(h[i].strides, s->ndim, tb, sizeof tb);
                }
                if (!check(c, same, F_STRIDES, "changed while the view is held: now %s, was %s",
                           same ? "" : fb, same ? "" : tb))
                    memcpy(h[i].strides, s->strides, nb);
            }
        }
        if (h[i].fmt_ok &&
            !check(c, strncmp(s->format, h[i].fmt, strlen(h[i].fmt) + 1) == 0, F_FORMAT,
                   "changed while the view is held: now \"%.16s\", was \"%s\"", s->format, h[i].fmt))
            h[i].fmt_ok = 0;
    }
    c->where = saved;
    c->flags = saved_flags;
}

long ptc_check_nested(PyObject *obj, const ptc_expect *e, ptc_report *r)
{
    static const int reqs[] = {
        PyBUF_FULL_RO, PyBUF_ND, PyBUF_SIMPLE, PyBUF_STRIDES, PyBUF_FULL,
        PyBUF_C_CONTIGUOUS, PyBUF_F_CONTIGUOUS, PyBUF_ANY_CONTIGUOUS,
        PyBUF_RECORDS_RO, PyBUF_CONTIG, PyBUF_WRITABLE, PyBUF_STRIDED,
    };
    ptc_ctx c;
    ctx_init(&c, obj, e, r, "nested: ");
    if (!c.truth_ok) { flush_suppressed(&c); return r->failures; }

    ptc_held held[PTC_MAX_HELD];
    int nheld = 0;
    Py_ssize_t rc_base = Py_REFCNT(obj);
    Py_ssize_t ex_base = exports_now(&c);
    char pb[96];

    for (size_t k = 0; k < sizeof reqs / sizeof reqs[0]; k++) {
        int f = reqs[k];
        ptc_want w;
        c.flags = f;
        c.have_flags = 1;
        compute_want(&c, f, &w);
        ptc_held *h = &held[nheld];
        memset(&h->view, PTC_GARBAGE, sizeof h->view);
        Py_ssize_t rc_now = Py_REFCNT(obj);
        Py_ssize_t ex_now = exports_now(&c);
        check(&c, rc_now == rc_base + nheld, F_REFCNT, "before get with %d views held: found %zd, rule: %zd",
              nheld, rc_now, rc_base + nheld);
        int rc = PyObject_GetBuffer(obj, &h->view, f);
        r->requests++;
        if (w.refuse) {
            if (rc == 0) {
                bad(&c, F_RC, "granted (rc 0) while %d views are held, rule: refused (%s)", nheld, w.why);
                PyErr_Clear();
                if (h->view.obj != obj)
                    bad(&c, F_OBJ, "found %s, rule: the exporter on success",
                        pbc_describe_ptr(h->view.obj, pb, sizeof pb));
                release_view(&c, &h->view, 0, rc_now, ex_now);
            }
            else {
                check_refusal(&c, rc, &h->view, &w, rc_now, ex_now);
            }
            continue;
        }
        if (rc != 0) {
            char m[240];
            pbc_exc_message(m, sizeof m);
            bad(&c, F_RC, "refused (rc %d, %s) while %d views are held, rule: granted", rc, m, nheld);
            check(&c, h->view.obj == NULL, F_OBJ, "found %s after a refusal, rule: NULL",
                  pbc_describe_ptr(h->view.obj, pb, sizeof pb));
            PyErr_Clear();
            check_counts(&c, rc_now, ex_now, "after refusal");
            continue;
        }
        c.r->checks++;
        if (PyErr_Occurred()) { PyErr_Clear(); bad(&c, F_EXC, "set with rc 0, rule: none on success"); }
        h->flags = f;
        h->want = w;
        h->live = 1;
        long fmt_fail0 = c.per_field[F_FORMAT];
        int ok = validate_granted(&c, &h->view, &w);
        check_contiguity_and_touch(&c, &h->view, &w, ok);
        snapshot(h, ok, w.want_format && c.per_field[F_FORMAT] == fmt_fail0);
        nheld++;
        check_counts(&c, rc_base + nheld, ex_base + nheld, "after get (views held)");
        revalidate(&c, held, nheld, "after a later get");
    }

    /* release out of order: 2nd, 4th, 6th, ..., then 1st, 3rd, 5th, ...;
       the third release goes through a copy (or the last one if fewer). */
    int order[PTC_MAX_HELD];
    int no = 0;
    for (int i = 1; i < nheld; i += 2) order[no++] = i;
    for (int i = 0; i < nheld; i += 2) order[no++] = i;
    int copy_at = nheld >= 3 ? 2 : nheld - 1;
    int remaining = nheld;
    for (int k = 0; k < no; k++) {
        ptc_held *h = &held[order[k]];
        c.flags = h->flags;
        c.have_flags = 1;
        remaining--;
        h->live = 0;
        release_view(&c, &h->view, k == copy_at, rc_base + remaining, ex_base + remaining);
        revalidate(&c, held, nheld, "after another view's release");
    }
    c.have_flags = 0;
    check_counts(&c, rc_base, ex_base, "after all nested views released");
    flush_suppressed(&c);
    return r->failures;
}

/* ------------------------------------------------------------------ */
/* public: NULL view                                                   */

long ptc_check_null_view(PyObject *obj, const ptc_expect *e, ptc_report *r)
{
    static const int reqs[] = {
        PyBUF_SIMPLE, PyBUF_WRITABLE, PyBUF_ND, PyBUF_STRIDES, PyBUF_FULL_RO,
        PyBUF_FULL, PyBUF_C_CONTIGUOUS, PyBUF_RECORDS_RO, 0x1000 | PyBUF_ND,
    };
    ptc_ctx c;
    ctx_init(&c, obj, e, r, "NULL view: ");
    if (obj == NULL || e == NULL) { flush_suppressed(&c); return r->failures; }

    for (size_t k = 0; k < sizeof reqs / sizeof reqs[0]; k++) {
        int f = reqs[k];
        c.flags = f;
        c.have_flags = 1;
        Py_ssize_t rc0 = Py_REFCNT(obj);
        Py_ssize_t ex0 = exports_now(&c);
        int rc = PyObject_GetBuffer(obj, NULL, f);
        r->requests++;
        check(&c, rc == -1, F_RC, "found %d, rule: -1 (a NULL view cannot be filled)%s", rc,
              rc == 0 ? "; the exporter's reference/export taken here can never be released" : "");
        PyObject *exc = PyErr_Occurred();
        if (check(&c, exc != NULL, F_EXC, "none set with rc %d, rule: BufferError", rc)) {
            if (check(&c, PyErr_ExceptionMatches(PyExc_BufferError), F_EXC,
                      "found %s, rule: BufferError", ((PyTypeObject *)exc)->tp_name))
                check(&c, exc == PyExc_BufferError, F_EXC,
                      "found %s (a subclass), rule: exactly BufferError",
                      ((PyTypeObject *)exc)->tp_name);
        }
        PyErr_Clear();
        check_counts(&c, rc0, ex0, "after NULL-view request");
    }
    c.have_flags = 0;
    flush_suppressed(&c);
    return r->failures;
}

/* ------------------------------------------------------------------ */
/* public: load loop                                                   */

static long rss_kib(void)
{
    FILE *fp = fopen("/proc/self/statm", "r");
    if (!fp) return -1;
    long size = 0, res = 0;
    int n = fscanf(fp, "%ld %ld", &size, &res);
    fclose(fp);
    if (n != 2) return -1;
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) page = 4096;
    return res * (page / 1024);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

long ptc_load_loop(PyObject *obj, const ptc_expect *e, int flags, long cycles, long max_rss_growth_kib,
                   double *ns_per_cycle, long *rss_growth_kib, ptc_report *r)
{
    ptc_ctx c;
    if (ns_per_cycle) *ns_per_cycle = 0.0;
    if (rss_growth_kib) *rss_growth_kib = 0;
    ctx_init(&c, obj, e, r, "load loop: ");
    if (!c.truth_ok) { flush_suppressed(&c); return r->failures; }
    c.flags = flags;
    c.have_flags = 1;

    ptc_want w;
    compute_want(&c, flags, &w);
    if (w.refuse) {
        bad(&c, F_LOAD, "the rules refuse this request (%s); no loop run", w.why);
        flush_suppressed(&c);
        return r->failures;
    }
    if (cycles <= 0) { flush_suppressed(&c); return r->failures; }

    Py_ssize_t rc0 = Py_REFCNT(obj);
    Py_ssize_t ex0 = exports_now(&c);
    long failed = 0, wrong_obj = 0;
    Py_buffer view;
    long warm = cycles / 10;

    for (long i = 0; i < warm; i++) {
        view.obj = NULL;
        if (PyObject_GetBuffer(obj, &view, flags) != 0) { failed++; PyErr_Clear(); continue; }
        if (view.obj != obj) wrong_obj++;
        PyBuffer_Release(&view);
    }
    long rss0 = rss_kib();
    double t0 = now_ns();
    for (long i = 0; i < cycles; i++) {
        view.obj = NULL;
        if (PyObject_GetBuffer(obj, &view, flags) != 0) { failed++; PyErr_Clear(); continue; }
        if (view.obj != obj) wrong_obj++;
        PyBuffer_Release(&view);
    }
    double t1 = now_ns();
    long rss1 = rss_kib();
    long total = warm + cycles;
    r->requests += total;

    double ns = (t1 - t0) / (double)cycles;
    if (ns_per_cycle) *ns_per_cycle = ns;
    long growth = (rss0 >= 0 && rss1 >= 0) ? rss1 - rss0 : 0;
    if (rss_growth_kib) *rss_growth_kib = growth;

    /* two assertions per cycle: rc == 0 and view.obj == obj */
    r->checks += 2 * total;
    r->failures += failed + wrong_obj;
    if (failed)
        counted_line(&c, F_LOAD, failed, "%ld of %ld get calls failed, rule: every call granted",
                     failed, total);
    if (wrong_obj)
        counted_line(&c, F_LOAD, wrong_obj, "%ld of %ld views had view.obj != exporter",
                     wrong_obj, total);
    if (rss0 < 0 || rss1 < 0)
        bad(&c, F_RSS, "cannot read /proc/self/statm, rule: RSS growth must be measurable");
    else
        check(&c, growth <= max_rss_growth_kib, F_RSS,
              "grew by %ld KiB over %ld cycles, rule: at most %ld KiB", growth, cycles,
              max_rss_growth_kib);
    check_counts(&c, rc0, ex0, "at the end of the load loop");
    c.have_flags = 0;
    flush_suppressed(&c);
    return r->failures;
}
