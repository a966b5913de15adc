/*
 * conformance.c -- the exporter conformance kit (see conformance.h).
 *
 * THE STATEMENT.  Flag tests are always (f & X) == X.
 *
 * 1. Truth.  Probe with PyBUF_FULL_RO, RECORDS_RO, STRIDED_RO, ND|FORMAT,
 *    ND, FORMAT, SIMPLE, then the writable forms (FULL, RECORDS, STRIDED,
 *    CONTIG, WRITABLE); the first granted answer whose structure is sound
 *    (ndim 0..64, shape/strides present when asked for, extents >= 0)
 *    is the truth: buf, itemsize, readonly, format (if FORMAT was asked;
 *    otherwise adopted from the first granted FORMAT request), ndim and
 *    shape (ND; otherwise 1-D bytes), strides (STRIDES; otherwise the C
 *    strides), suboffsets (INDIRECT).  The truth's len is the RULE
 *    product(shape) * itemsize, not what the exporter said; contiguity is
 *    computed as Objects/abstract.c does (len 0 -> every order; suboffsets
 *    with a non-negative entry -> none).
 *
 * 2. Expectation for request f, given the truth:
 *    CPython refuses   3.13+ and f is PyBUF_READ (0x100) or PyBUF_WRITE
 *                      (0x200): PyObject_GetBuffer raises SystemError
 *                      before the exporter runs (gh-114685).
 *    MUST refuse       WRITABLE on read-only data; C_CONTIGUOUS on data
 *                      that is not C-contiguous; F_CONTIGUOUS likewise;
 *                      ANY_CONTIGUOUS on data that is neither; no STRIDES
 *                      on data that is not C-contiguous; no INDIRECT on
 *                      data that needs suboffsets.  Strict policy adds:
 *                      bits outside 0x1FD; FORMAT without ND.
 *    MAY refuse        (permissive) bits outside 0x1FD; bits of a compound
 *                      flag without the whole flag (0x20 without
 *                      STRIDES...); FORMAT without ND.
 *    MUST grant        everything else: the exporter has shown (in its
 *                      answer to the truth request) that it can serve it.
 *
 * 3. A refusal must return -1 with a BufferError set (exactly BufferError
 *    under the strict policy; a subclass is accepted otherwise), view->obj
 *    NULL, the reference count (and export count, with an observer)
 *    unchanged.
 *
 * 4. A granted view must come with no exception set and:
 *      obj        the exporter, a new reference (permissive: or another
 *                 object -- a redirect chain's root, or a per-view object
 *                 like the wrapper 3.12 puts in front of a Python-level
 *                 __buffer__ -- whose reference the release gives back)
 *      buf        the truth's (request-independent); non-NULL unless the
 *                 buffer is empty (strict: non-NULL always)
 *      len        product(shape) * itemsize of the truth
 *      itemsize   the truth's, also when format is NULL (permissive: 1 is
 *                 accepted with format "B" for FORMAT without ND)
 *      readonly   0 if WRITABLE was asked, else the truth's (one choice
 *                 for all consumers); strict: exactly 0 or 1
 *      format     NULL unless FORMAT; with FORMAT non-NULL, equal to the
 *                 truth's (permissive, without ND: or "B"), and when the
 *                 struct module can size it, its size is itemsize
 *      ndim       the truth's with ND; without ND 0 or 1 (strict: 1)
 *      shape      NULL unless ND; with ND the truth's, NULL for ndim 0
 *      strides    NULL unless STRIDES; with STRIDES the truth's for every
 *                 extent > 1 (a stride of an extent 0/1 is never used),
 *                 NULL for ndim 0
 *      suboffsets NULL unless INDIRECT; with INDIRECT NULL when no entry
 *                 would be >= 0, else the truth's
 *    and PyBuffer_IsContiguous must agree with what was asked: 'C' for
 *    C_CONTIGUOUS and for every strides-less request, 'F' for
 *    F_CONTIGUOUS, 'A' for ANY_CONTIGUOUS.  The reference count of
 *    view->obj goes up by one while the view is held and back on release;
 *    releasing (directly or through a copy of the view) leaves no
 *    exception set.
 *
 * 5. Nested: views held at once must each keep their shape, strides,
 *    format and suboffsets while other views are taken and released; the
 *    reference count grows by one per held view; views are released out
 *    of order, one through a copy.
 *
 * Safety: the Py_buffer is filled with 0xA5 before every call; pointer
 * fields are dereferenced only when non-NULL, not the fill pattern, and
 * (for arrays) ndim matched the rule.  PyBuffer_IsContiguous is called
 * only on views whose structure passed.  A granted view is always
 * released: through PyBuffer_Release when view->obj is usable, otherwise
 * by calling the exporter's bf_releasebuffer directly.  The kit never
 * writes through buf and never reads the data.
 */
#include "conformance.h"
#include "buffer_common.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Splits a violation's text into "found" (before) and "rule" (after). */
#define SEP "\x1f"
#define IMMORTAL_REFCNT ((Py_ssize_t)1 << 29)
#define MAX_HELD 16

typedef struct {
    pcf_report *r;
    pcf_options o;
    PyObject *obj;
    pcf_truth *t;
    int strict;
    int pyver;
    int oom;
    /* the request being checked */
    int flags;
    int phase;
    long req;                 /* index into r->requests, or -1 */
    /* struct.calcsize cache */
    char sized_format[128];
    Py_ssize_t sized_size;    /* -1: the struct module cannot size it */
    int sized_valid;
} ctx;

/* ------------------------------------------------------------------ */
/* recording                                                           */

/* Formats into a fixed-size field of the report.  Texts are bounded on
   purpose: a longer one is cut (always NUL-terminated). */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void fit(char *dst, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, n, fmt, ap);
    va_end(ap);
}

static void request_label(int f, int phase, char *out, size_t n)
{
    char nm[96];
    if (phase == PCF_PHASE_OBJECT) {
        snprintf(out, n, "(object)");
        return;
    }
    pbc_flag_name(f, nm, sizeof nm);
    if (nm[0] && f != 0x100 && f != 0x200) fit(out, n, "%s", nm);
    else if (nm[0]) fit(out, n, "%s (0x%04x)", nm, (unsigned)f);
    else fit(out, n, "0x%04x", (unsigned)f);
}

static void *grow(void *p, long *cap, size_t item)
{
    long ncap = *cap ? *cap * 2 : 64;
    void *q = realloc(p, (size_t)ncap * item);
    if (q) *cap = ncap;
    return q;
}

static long add_request(ctx *c, int f, int phase, int expect, const char *why)
{
    pcf_report *r = c->r;
    c->flags = f;
    c->phase = phase;
    c->req = -1;
    if (c->oom) return -1;
    if (r->nrequests == r->capacity_requests) {
        void *q = grow(r->requests, &r->capacity_requests, sizeof(pcf_request));
        if (!q) { c->oom = 1; return -1; }
        r->requests = q;
    }
    pcf_request *q = &r->requests[r->nrequests];
    memset(q, 0, sizeof *q);
    q->flags = f;
    q->phase = phase;
    q->expect = expect;
    request_label(f, phase, q->name, sizeof q->name);
    snprintf(q->why, sizeof q->why, "%s", why ? why : "");
    c->req = r->nrequests++;
    return c->req;
}

static pcf_request *cur_request(ctx *c)
{
    return c->req >= 0 ? &c->r->requests[c->req] : NULL;
}

static void add_violation(ctx *c, const char *field, const char *text)
{
    pcf_report *r = c->r;
    if (c->oom) return;
    if (r->nviolations == r->capacity_violations) {
        void *q = grow(r->violations, &r->capacity_violations, sizeof(pcf_violation));
        if (!q) { c->oom = 1; return; }
        r->violations = q;
    }
    pcf_violation *v = &r->violations[r->nviolations++];
    memset(v, 0, sizeof *v);
    v->flags = c->flags;
    v->phase = c->phase;
    request_label(c->flags, c->phase, v->request, sizeof v->request);
    snprintf(v->field, sizeof v->field, "%s", field);
    const char *sep = strstr(text, SEP);
    if (sep) {
        size_t k = (size_t)(sep - text);
        if (k >= sizeof v->found) k = sizeof v->found - 1;
        memcpy(v->found, text, k);
        v->found[k] = '\0';
        fit(v->rule, sizeof v->rule, "%s", sep + 1);
    }
    else {
        fit(v->found, sizeof v->found, "%s", text);
    }
    const char *where = c->phase == PCF_PHASE_COPY     ? " [released through a copy]"
                        : c->phase == PCF_PHASE_NESTED ? " [nested]"
                        : c->phase == PCF_PHASE_PROBE  ? " [probe]"
                                                       : "";
    snprintf(v->message, sizeof v->message, "%s%s: %s: found %s, rule: %s", v->request, where,
             v->field, v->found, v->rule[0] ? v->rule : "(see found)");
    pcf_request *q = cur_request(c);
    if (q && c->phase != PCF_PHASE_OBJECT) q->violations++;
}

static void vviol(ctx *c, const char *field, const char *fmt, va_list ap)
{
    char text[1024];
    vsnprintf(text, sizeof text, fmt, ap);
    add_violation(c, field, text);
}

/* A failed assertion: `fmt` is "<found>" SEP "<rule>". */
static void viol(ctx *c, const char *field, const char *fmt, ...)
{
    c->r->checks++;
    va_list ap;
    va_start(ap, fmt);
    vviol(c, field, fmt, ap);
    va_end(ap);
}

/* An assertion: counted, recorded when false.  Returns cond. */
static int expect(ctx *c, int cond, const char *field, const char *fmt, ...)
{
    c->r->checks++;
    if (cond) return 1;
    va_list ap;
    va_start(ap, fmt);
    vviol(c, field, fmt, ap);
    va_end(ap);
    return 0;
}

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static int usable_ptr(const void *p) { return p != NULL && !pbc_is_garbage_ptr(p); }

static Py_ssize_t refcnt(PyObject *o) { return Py_REFCNT(o); }

static int is_immortal(PyObject *o) { return refcnt(o) >= IMMORTAL_REFCNT; }

typedef void (*release_fn)(PyObject *, Py_buffer *);

static release_fn release_slot(PyObject *obj)
{
#if defined(Py_LIMITED_API)
    return (release_fn)PyType_GetSlot(Py_TYPE(obj), Py_bf_releasebuffer);
#else
    PyBufferProcs *pb = Py_TYPE(obj)->tp_as_buffer;
    return pb ? pb->bf_releasebuffer : NULL;
#endif
}

/* The export count, or -1 when there is no observer (or it failed). */
static Py_ssize_t exports_now(ctx *c)
{
    if (c->o.exports == NULL) return -1;
    PyObject *t, *v, *tb;
    /* the observer must not see a pending exception from the request */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
    PyErr_Fetch(&t, &v, &tb);
    Py_ssize_t n = c->o.exports(c->obj, c->o.exports_ctx);
    if (n < 0 || PyErr_Occurred()) {
        char m[256];
        pbc_exc_message(m, sizeof m);
        PyErr_Clear();
        viol(c, "exports", "the export-count observer failed (%s)" SEP
             "the observer returns the exporter's count of live exports; it is not called again", m);
        c->o.exports = NULL;
        n = -1;
    }
    PyErr_Restore(t, v, tb);
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
    return n;
}

/* struct.calcsize(format), or -1 when the struct module cannot size it
   (PEP 3118 extensions such as numpy's "Zd" are not errors). */
static Py_ssize_t format_size(ctx *c, const char *format)
{
    if (c->sized_valid && strcmp(c->sized_format, format) == 0) return c->sized_size;
    PyObject *t, *v, *tb;
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
    PyErr_Fetch(&t, &v, &tb);
    Py_ssize_t size = PyBuffer_SizeFromFormat(format);
    if (size < 0) PyErr_Clear();
    PyErr_Restore(t, v, tb);
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
    if (strlen(format) < sizeof c->sized_format) {
        strcpy(c->sized_format, format);
        c->sized_size = size < 0 ? -1 : size;
        c->sized_valid = 1;
    }
    return size < 0 ? -1 : size;
}

static const char *yes_no(int b) { return b ? "yes" : "no"; }

static void describe_truth(const pcf_truth *t, char *out, size_t n)
{
    char sh[200], st[200], so[200], nm[96];
    if (!t->known) {
        snprintf(out, n, "unknown (no request was granted)");
        return;
    }
    pbc_fmt_array(t->shape, t->ndim, sh, sizeof sh);
    pbc_fmt_array(t->strides, t->ndim, st, sizeof st);
    if (t->has_suboffsets) pbc_fmt_array(t->suboffsets, t->ndim, so, sizeof so);
    else snprintf(so, sizeof so, "none");
    request_label(t->from_flags, PCF_PHASE_PROBE, nm, sizeof nm);
    fit(out, n,
        "learned from %s: ndim %d, shape %s, strides %s, suboffsets %s, format %s%s%s, "
             "itemsize %zd, len %zd, readonly %d, C-contiguous %s, F-contiguous %s%s",
             nm, t->ndim, sh, st, so, t->format_known ? "\"" : "", t->format_known ? t->format : "unknown",
             t->format_known ? "\"" : "", t->itemsize, t->len, t->readonly, yes_no(t->c_contiguous),
             yes_no(t->f_contiguous), t->immortal ? " (immortal: reference counts not checked)" : "");
}

static void describe_view(const Py_buffer *v, int f, char *out, size_t n)
{
    char sh[160], st[160], so[160], fm[80], ob[64], bf[64];
    int ndim_ok = v->ndim >= 0 && v->ndim <= PyBUF_MAX_NDIM;
    if (usable_ptr(v->shape) && ndim_ok && pbc_req(f, PyBUF_ND)) pbc_fmt_array(v->shape, v->ndim, sh, sizeof sh);
    else pbc_describe_ptr(v->shape, sh, sizeof sh);
    if (usable_ptr(v->strides) && ndim_ok && pbc_req(f, PyBUF_STRIDES))
        pbc_fmt_array(v->strides, v->ndim, st, sizeof st);
    else pbc_describe_ptr(v->strides, st, sizeof st);
    if (usable_ptr(v->suboffsets) && ndim_ok && pbc_req(f, PyBUF_INDIRECT))
        pbc_fmt_array(v->suboffsets, v->ndim, so, sizeof so);
    else pbc_describe_ptr(v->suboffsets, so, sizeof so);
    if (usable_ptr(v->format) && pbc_req(f, PyBUF_FORMAT)) snprintf(fm, sizeof fm, "\"%.40s\"", v->format);
    else pbc_describe_ptr(v->format, fm, sizeof fm);
    fit(out, n, "granted: ndim %d, shape %s, strides %s, suboffsets %s, format %s, itemsize %zd, len %zd, "
             "readonly %d, buf %s, obj %s",
             v->ndim, sh, st, so, fm, v->itemsize, v->len, v->readonly, pbc_describe_ptr(v->buf, bf, sizeof bf),
             pbc_describe_ptr(v->obj, ob, sizeof ob));
}

/* ------------------------------------------------------------------ */
/* learning the truth                                                  */

/* Whether the granted view v (request f) can serve as the truth; `why`
   says what is wrong when it cannot.  Copies it into *t when it can. */
static int adopt_truth(ctx *c, int f, const Py_buffer *v, pcf_truth *t, char *why, size_t n)
{
    int nd = pbc_req(f, PyBUF_ND), str = pbc_req(f, PyBUF_STRIDES), ind = pbc_req(f, PyBUF_INDIRECT);
    if (v->itemsize < 0) { snprintf(why, n, "itemsize %zd < 0", v->itemsize); return 0; }
    if (v->len < 0) { snprintf(why, n, "len %zd < 0", v->len); return 0; }
    memset(t, 0, sizeof *t);
    t->from_flags = f;
    t->buf = v->buf;
    t->itemsize = v->itemsize;
    t->readonly = v->readonly ? 1 : 0;
    if (pbc_req(f, PyBUF_FORMAT)) {
        if (!usable_ptr(v->format)) { snprintf(why, n, "format NULL or never set with PyBUF_FORMAT"); return 0; }
        snprintf(t->format, sizeof t->format, "%s", v->format);
        t->format_known = 1;
    }
    if (nd) {
        if (v->ndim < 0 || v->ndim > PyBUF_MAX_NDIM) {
            snprintf(why, n, "ndim %d outside 0..%d", v->ndim, PyBUF_MAX_NDIM);
            return 0;
        }
        t->ndim = v->ndim;
        if (t->ndim > 0) {
            if (!usable_ptr(v->shape)) { snprintf(why, n, "shape NULL or never set with PyBUF_ND"); return 0; }
            for (int i = 0; i < t->ndim; i++) {
                if (v->shape[i] < 0) { snprintf(why, n, "shape[%d] = %zd < 0", i, v->shape[i]); return 0; }
                t->shape[i] = v->shape[i];
            }
            if (str) {
                if (!usable_ptr(v->strides)) {
                    snprintf(why, n, "strides NULL or never set with PyBUF_STRIDES");
                    return 0;
                }
                memcpy(t->strides, v->strides, (size_t)t->ndim * sizeof(Py_ssize_t));
            }
            else {
                Py_ssize_t sd = t->itemsize;
                for (int i = t->ndim - 1; i >= 0; i--) {
                    t->strides[i] = sd;
                    sd *= t->shape[i];
                }
            }
            if (ind && usable_ptr(v->suboffsets)) {
                memcpy(t->suboffsets, v->suboffsets, (size_t)t->ndim * sizeof(Py_ssize_t));
                for (int i = 0; i < t->ndim; i++)
                    if (t->suboffsets[i] >= 0) t->has_suboffsets = 1;
            }
        }
    }
    else {
        /* no shape was given: the data is C-contiguous bytes */
        t->ndim = 1;
        t->shape[0] = t->itemsize > 0 ? v->len / t->itemsize : v->len;
        t->strides[0] = t->itemsize;
    }
    Py_ssize_t len = t->itemsize;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] != 0 && len > PY_SSIZE_T_MAX / t->shape[i]) {
            snprintf(why, n, "product(shape) * itemsize overflows");
            return 0;
        }
        len *= t->shape[i];
    }
    t->len = len;
    if (t->has_suboffsets) {
        t->c_contiguous = t->f_contiguous = 0;
    }
    else {
        t->c_contiguous = pbc_contiguous(t->ndim, t->shape, t->strides, t->itemsize, len, 'C');
        t->f_contiguous = pbc_contiguous(t->ndim, t->shape, t->strides, t->itemsize, len, 'F');
    }
    t->immortal = is_immortal(c->obj);
    t->known = 1;
    (void)c;
    return 1;
}

/* Releases a probe view without checking anything (the sweep checks the
   same requests). */
static void quiet_release(ctx *c, Py_buffer *v)
{
    if (usable_ptr(v->obj)) {
        PyBuffer_Release(v);
    }
    else {
        release_fn rel = release_slot(c->obj);
        if (rel) rel(c->obj, v);
    }
    PyErr_Clear();
}

static void learn_truth(ctx *c)
{
    static const int probes[] = {
        PyBUF_FULL_RO, PyBUF_RECORDS_RO, PyBUF_STRIDED_RO, PyBUF_ND | PyBUF_FORMAT, PyBUF_ND,
        PyBUF_FORMAT,  PyBUF_SIMPLE,     PyBUF_FULL,       PyBUF_RECORDS,          PyBUF_STRIDED,
        PyBUF_CONTIG,  PyBUF_WRITABLE,
    };
    for (size_t k = 0; k < sizeof probes / sizeof probes[0]; k++) {
        int f = probes[k];
        Py_buffer view;
        char why[200];
        add_request(c, f, PCF_PHASE_PROBE, PCF_PROBING, "learning the truth");
        pcf_request *q = cur_request(c);
        memset(&view, PBC_GARBAGE, sizeof view);
        int rc = PyObject_GetBuffer(c->obj, &view, f);
        if (rc != 0) {
            if (q) {
                char m[220];
                pbc_exc_message(m, sizeof m);
                snprintf(q->detail, sizeof q->detail, "refused: %s", m);
            }
            PyErr_Clear();
            continue;
        }
        PyErr_Clear();
        if (q) {
            q->granted = 1;
            describe_view(&view, f, q->detail, sizeof q->detail);
        }
        int ok = adopt_truth(c, f, &view, c->t, why, sizeof why);
        quiet_release(c, &view);
        if (ok) return;
        if (q) snprintf(q->why, sizeof q->why, "not usable as the truth: %.160s", why);
    }
    memset(c->t, 0, sizeof *c->t);
}

/* ------------------------------------------------------------------ */
/* expectations                                                        */

static int expectation(ctx *c, int f, char *why, size_t n)
{
    const pcf_truth *t = c->t;
    unsigned unknown = (unsigned)f & ~(unsigned)PBC_KNOWN_FLAGS;
    int rw = pbc_req(f, PyBUF_WRITABLE), rfmt = pbc_req(f, PyBUF_FORMAT);
    int rnd = pbc_req(f, PyBUF_ND), rstr = pbc_req(f, PyBUF_STRIDES);
    int rc_ = pbc_req(f, PyBUF_C_CONTIGUOUS), rf_ = pbc_req(f, PyBUF_F_CONTIGUOUS);
    int rany = pbc_req(f, PyBUF_ANY_CONTIGUOUS), rind = pbc_req(f, PyBUF_INDIRECT);
    char src[64];
    request_label(t->from_flags, PCF_PHASE_PROBE, src, sizeof src);

    if (c->pyver >= 313 && (f == 0x100 || f == 0x200)) {
        snprintf(why, n, "CPython >= 3.13: PyObject_GetBuffer rejects PyBUF_READ/PyBUF_WRITE with "
                         "SystemError before calling the exporter");
        return PCF_CPYTHON_REFUSES;
    }
    if (!t->known) {
        snprintf(why, n, "no request was granted while probing, so nothing tells what can be served");
        return PCF_MAY_REFUSE;
    }
    if (rw && t->readonly) {
        snprintf(why, n, "PyBUF_WRITABLE on read-only data (readonly 1 in the answer to %s)", src);
        return PCF_MUST_REFUSE;
    }
    if (rc_ && !t->c_contiguous) {
        snprintf(why, n, "PyBUF_C_CONTIGUOUS on data that is not C-contiguous");
        return PCF_MUST_REFUSE;
    }
    if (rf_ && !t->f_contiguous) {
        snprintf(why, n, "PyBUF_F_CONTIGUOUS on data that is not Fortran-contiguous");
        return PCF_MUST_REFUSE;
    }
    if (rany && !t->c_contiguous && !t->f_contiguous) {
        snprintf(why, n, "PyBUF_ANY_CONTIGUOUS on data that is neither C- nor Fortran-contiguous");
        return PCF_MUST_REFUSE;
    }
    if (!rstr && !t->c_contiguous) {
        snprintf(why, n, "no PyBUF_STRIDES on data that is not C-contiguous (a strides-less view is C-contiguous)");
        return PCF_MUST_REFUSE;
    }
    if (!rind && t->has_suboffsets) {
        snprintf(why, n, "no PyBUF_INDIRECT on data that needs suboffsets");
        return PCF_MUST_REFUSE;
    }
    if (c->strict && unknown) {
        snprintf(why, n, "unknown flag bits 0x%x (strict policy: refused)", unknown);
        return PCF_MUST_REFUSE;
    }
    if (c->strict && !rnd && rfmt) {
        snprintf(why, n, "PyBUF_FORMAT without PyBUF_ND (strict policy: refused, as memoryview does)");
        return PCF_MUST_REFUSE;
    }
    if (!c->strict) {
        if (unknown) {
            snprintf(why, n, "unknown flag bits 0x%x may be ignored or refused", unknown);
            return PCF_MAY_REFUSE;
        }
        unsigned partial = 0;
        if ((f & 0x010) && !rstr) partial |= 0x010;
        if ((f & 0x020) && !rc_) partial |= 0x020;
        if ((f & 0x040) && !rf_) partial |= 0x040;
        if ((f & 0x080) && !rany) partial |= 0x080;
        if ((f & 0x100) && !rind) partial |= 0x100;
        if (partial) {
            snprintf(why, n, "bits 0x%x belong to a compound flag that is not whole: not a valid request, "
                             "may be refused (if granted, answered as (flags & X) == X)", partial);
            return PCF_MAY_REFUSE;
        }
        if (!rnd && rfmt) {
            snprintf(why, n, "PyBUF_FORMAT without PyBUF_ND may be refused (memoryview) or granted "
                             "(array.array, PyBuffer_FillInfo)");
            return PCF_MAY_REFUSE;
        }
    }
    fit(why, n, "nothing asked conflicts with the data (readonly %d, C-contiguous %s, F-contiguous %s, "
                "suboffsets %s, per %s): a refusal says the exporter cannot provide it",
             t->readonly, yes_no(t->c_contiguous), yes_no(t->f_contiguous), t->has_suboffsets ? "needed" : "none",
             src);
    return PCF_MUST_GRANT;
}

/* ------------------------------------------------------------------ */
/* a granted view                                                      */

/* Whether view->obj may be handed to PyBuffer_Release: any pointer that
   is set (not NULL, not the fill pattern).  A wild pointer would crash
   here as it would in any consumer. */
static int releasable(const void *o) { return usable_ptr(o); }

/* obj: checks view->obj of a granted view; returns releasable(). */
static int check_obj(ctx *c, const Py_buffer *v)
{
    char pb[96];
    if (v->obj == c->obj) {
        c->r->checks++;
        return 1;
    }
    if (!usable_ptr(v->obj)) {
        viol(c, "obj", "%s" SEP "a new reference to the exporter (view->obj is request-independent)",
             pbc_describe_ptr(v->obj, pb, sizeof pb));
        return 0;
    }
    if (c->strict)
        viol(c, "obj", "%p, another object than the exporter %p" SEP
             "the exporter itself (strict policy: no redirect chains or per-view wrappers)",
             (void *)v->obj, (void *)c->obj);
    else
        c->r->checks++; /* a redirect chain's root, or a per-view object (3.12's __buffer__ wrapper) */
    return 1;
}

static int check_array(ctx *c, const char *field, const Py_ssize_t *found, const Py_ssize_t *truth, int want,
                       int ndim, int ndim_ok, int extents_only, const char *null_rule)
{
    char pb[96], fb[200], tb[200];
    if (!want)
        return expect(c, found == NULL, field, "%s" SEP "%s", pbc_describe_ptr(found, pb, sizeof pb), null_rule);
    if (!expect(c, usable_ptr(found), field, "%s" SEP "must point at %d values when requested",
                pbc_describe_ptr(found, pb, sizeof pb), ndim))
        return 0;
    if (!ndim_ok) return 0; /* cannot know how many entries it holds */
    int same = 1;
    for (int i = 0; i < ndim; i++) {
        if (extents_only && (c->t->shape[i] <= 1 || c->t->len == 0)) continue;
        if (found[i] != truth[i]) same = 0;
    }
    if (!same) {
        pbc_fmt_array(found, ndim, fb, sizeof fb);
        pbc_fmt_array(truth, ndim, tb, sizeof tb);
    }
    return expect(c, same, field, "%s" SEP "%s%s (request-independent: as the truth request reported)",
                  same ? "" : fb, same ? "" : tb,
                  extents_only ? " for every extent > 1 of a non-empty buffer" : "");
}

/* Returns 1 when the structure is sound enough for PyBuffer_IsContiguous. */
static int validate_view(ctx *c, int f, const Py_buffer *v)
{
    pcf_truth *t = c->t;
    char pb[96];
    int rw = pbc_req(f, PyBUF_WRITABLE), rfmt = pbc_req(f, PyBUF_FORMAT), rnd = pbc_req(f, PyBUF_ND);
    int rstr = pbc_req(f, PyBUF_STRIDES), rind = pbc_req(f, PyBUF_INDIRECT);

    /* buf */
    int buf_ok;
    if (v->buf == NULL && !c->strict && t->len == 0 && t->buf == NULL) buf_ok = 1, c->r->checks++;
    else if (!usable_ptr(v->buf))
        buf_ok = 0, viol(c, "buf", "%s" SEP "%s", pbc_describe_ptr(v->buf, pb, sizeof pb),
                         c->strict ? "the data pointer, non-NULL even for an empty buffer (strict policy)"
                                   : "the data pointer, non-NULL unless the buffer is empty");
    else
        buf_ok = expect(c, v->buf == t->buf, "buf", "%p" SEP "%p (request-independent: as the truth request reported)",
                        v->buf, t->buf);

    /* len, itemsize */
    char sh[200];
    pbc_fmt_array(t->shape, t->ndim, sh, sizeof sh);
    int len_ok = expect(c, v->len == t->len, "len", "%zd%s" SEP "%zd = product(shape %s) * itemsize %zd",
                        v->len, pbc_garbage_note_ssize(v->len), t->len, sh, t->itemsize);
    int b_format = usable_ptr(v->format) && rfmt && strcmp(v->format, "B") == 0;
    if (!(rfmt && !rnd && !c->strict && b_format && v->itemsize == 1))
        expect(c, v->itemsize == t->itemsize, "itemsize",
               "%zd%s" SEP "%zd: the original item size, also when format is NULL (request-independent)",
               v->itemsize, pbc_garbage_note_ssize(v->itemsize), t->itemsize);
    else
        c->r->checks++;

    /* readonly */
    if (c->strict)
        expect(c, v->readonly == 0 || v->readonly == 1, "readonly", "%d%s" SEP "exactly 0 or 1 (strict policy)",
               v->readonly, pbc_garbage_note_int(v->readonly));
    if (rw)
        expect(c, v->readonly == 0, "readonly", "%d%s" SEP "0: PyBUF_WRITABLE was requested and granted",
               v->readonly, pbc_garbage_note_int(v->readonly));
    else
        expect(c, (v->readonly ? 1 : 0) == t->readonly, "readonly",
               "%d%s" SEP "%d, as for every other consumer (the choice must be consistent)", v->readonly,
               pbc_garbage_note_int(v->readonly), t->readonly);

    /* format */
    if (rfmt) {
        if (expect(c, usable_ptr(v->format), "format", "%s" SEP "the item format when PyBUF_FORMAT is requested",
                   pbc_describe_ptr(v->format, pb, sizeof pb))) {
            if (!t->format_known) {
                snprintf(t->format, sizeof t->format, "%s", v->format);
                t->format_known = 1;
            }
            size_t tn = strlen(t->format);
            int same = strncmp(v->format, t->format, tn + 1) == 0 ||
                       (tn + 1 == sizeof t->format && strncmp(v->format, t->format, tn) == 0);
            if (!rnd && !c->strict)
                expect(c, same || b_format, "format", "\"%.60s\"" SEP "\"%s\" (the item format) or \"B\" "
                       "(unsigned bytes) when PyBUF_FORMAT comes without PyBUF_ND", v->format, t->format);
            else
                expect(c, same, "format", "\"%.60s\"" SEP "\"%s\" (request-independent: as the first "
                       "granted PyBUF_FORMAT request reported)", v->format, t->format);
            Py_ssize_t size = format_size(c, v->format);
            if (size >= 0)
                expect(c, size == v->itemsize, "format",
                       "\"%.60s\", whose struct.calcsize is %zd, with itemsize %zd" SEP
                       "the format describes one item: its size is itemsize", v->format, size, v->itemsize);
        }
    }
    else {
        expect(c, v->format == NULL, "format", "%s" SEP "NULL unless PyBUF_FORMAT is requested (NULL means \"B\")",
               pbc_describe_ptr(v->format, pb, sizeof pb));
    }

    /* ndim */
    int ndim_ok;
    if (rnd)
        ndim_ok = expect(c, v->ndim == t->ndim, "ndim", "%d%s" SEP "%d: the true ndim when PyBUF_ND is requested",
                         v->ndim, pbc_garbage_note_int(v->ndim), t->ndim);
    else if (c->strict)
        ndim_ok = expect(c, v->ndim == 1, "ndim", "%d%s" SEP "1 when PyBUF_ND is not requested (strict policy, "
                         "memoryview's rule)", v->ndim, pbc_garbage_note_int(v->ndim));
    else
        ndim_ok = expect(c, v->ndim == 0 || v->ndim == 1, "ndim",
                         "%d%s" SEP "0 or 1 when PyBUF_ND is not requested (shape is NULL: consumers that "
                         "believe a larger ndim dereference it)", v->ndim, pbc_garbage_note_int(v->ndim));

    int nd = t->ndim;
    int shape_ok = check_array(c, "shape", v->shape, t->shape, rnd && nd > 0, nd, ndim_ok && rnd, 0,
                               rnd ? "NULL for a 0-dimensional buffer" : "NULL unless PyBUF_ND is requested");
    int strides_ok = check_array(c, "strides", v->strides, t->strides, rstr && nd > 0, nd, ndim_ok && rnd,
                                 1, rstr ? "NULL for a 0-dimensional buffer"
                                         : "NULL unless PyBUF_STRIDES is requested");

    /* suboffsets */
    int sub_ok;
    if (!rind || nd == 0) {
        sub_ok = expect(c, v->suboffsets == NULL, "suboffsets", "%s" SEP "%s",
                        pbc_describe_ptr(v->suboffsets, pb, sizeof pb),
                        rind ? "NULL for a 0-dimensional buffer" : "NULL unless PyBUF_INDIRECT is requested");
    }
    else if (v->suboffsets == NULL) {
        sub_ok = expect(c, !t->has_suboffsets, "suboffsets", "NULL" SEP "the suboffsets the data needs");
    }
    else if (!usable_ptr(v->suboffsets) || !ndim_ok) {
        sub_ok = 0;
        viol(c, "suboffsets", "%s" SEP "NULL, or %d suboffsets", pbc_describe_ptr(v->suboffsets, pb, sizeof pb), nd);
    }
    else {
        int any = 0, same = 1;
        for (int i = 0; i < nd; i++) {
            if (v->suboffsets[i] >= 0) any = 1;
            if (t->has_suboffsets && v->suboffsets[i] != t->suboffsets[i]) same = 0;
        }
        char fb[200];
        pbc_fmt_array(v->suboffsets, nd, fb, sizeof fb);
        sub_ok = expect(c, any, "suboffsets", "%s (all negative)" SEP "NULL when no suboffset is needed", fb);
        if (sub_ok && t->has_suboffsets) {
            char tb[200];
            pbc_fmt_array(t->suboffsets, nd, tb, sizeof tb);
            sub_ok = expect(c, same, "suboffsets", "%s" SEP "%s (request-independent)", fb, tb);
        }
    }
    return buf_ok && len_ok && ndim_ok && shape_ok && strides_ok && sub_ok;
}

static void check_contiguity(ctx *c, int f, const Py_buffer *v)
{
    if (pbc_req(f, PyBUF_C_CONTIGUOUS) || !pbc_req(f, PyBUF_STRIDES))
        expect(c, PyBuffer_IsContiguous(v, 'C') == 1, "contiguity", "PyBuffer_IsContiguous(view, 'C') == 0" SEP
               "a C_CONTIGUOUS or strides-less request yields a C-contiguous view");
    if (pbc_req(f, PyBUF_F_CONTIGUOUS))
        expect(c, PyBuffer_IsContiguous(v, 'F') == 1, "contiguity", "PyBuffer_IsContiguous(view, 'F') == 0" SEP
               "an F_CONTIGUOUS request yields a Fortran-contiguous view");
    if (pbc_req(f, PyBUF_ANY_CONTIGUOUS))
        expect(c, PyBuffer_IsContiguous(v, 'A') == 1, "contiguity", "PyBuffer_IsContiguous(view, 'A') == 0" SEP
               "an ANY_CONTIGUOUS request yields a C- or Fortran-contiguous view");
}

/* ------------------------------------------------------------------ */
/* counts                                                              */

static void check_refcnt(ctx *c, PyObject *o, Py_ssize_t want, const char *what, const char *when)
{
    if (c->t->immortal || is_immortal(o)) return;
    Py_ssize_t now = refcnt(o);
    expect(c, now == want, "refcount", "%zd %s (%s)" SEP "%zd", now, when, what, want);
}

static void check_exports(ctx *c, Py_ssize_t want, const char *when)
{
    if (want < 0) return;
    Py_ssize_t now = exports_now(c);
    if (now < 0) return;
    expect(c, now == want, "exports", "%zd %s" SEP "%zd", now, when, want);
}

/* ------------------------------------------------------------------ */
/* release                                                             */

static void release(ctx *c, Py_buffer *v, int via_copy, int obj_ok)
{
    Py_buffer copy;
    Py_buffer *target = v;
    if (via_copy) {
        memcpy(&copy, v, sizeof copy);
        memset(v, PBC_GARBAGE, sizeof *v);
        target = &copy;
    }
    if (obj_ok) {
        PyBuffer_Release(target);
    }
    else {
        /* view->obj is unusable (already reported): give the exporter its
           release call directly so that its own bookkeeping can recover. */
        release_fn rel = release_slot(c->obj);
        if (rel) rel(c->obj, target);
        target->obj = NULL;
    }
    if (PyErr_Occurred()) {
        char m[240];
        pbc_exc_message(m, sizeof m);
        PyErr_Clear();
        viol(c, "release", "an exception left set by bf_releasebuffer (%s)" SEP
             "none: releasebuffer cannot fail (report through sys.unraisablehook)", m);
    }
    else {
        c->r->checks++;
    }
}

/* ------------------------------------------------------------------ */
/* one request of the sweep                                            */

static void check_refusal(ctx *c, int rc, const Py_buffer *v, int exp, const char *why)
{
    char pb[96], tn[96];
    expect(c, rc == -1, "return value", "%d" SEP "-1 on refusal", rc);
    PyObject *exc = PyErr_Occurred();
    if (exp == PCF_CPYTHON_REFUSES) {
        if (expect(c, exc != NULL, "exception", "none" SEP "SystemError (%s)", why)) {
            pbc_type_name(exc, tn, sizeof tn);
            expect(c, PyErr_ExceptionMatches(PyExc_SystemError), "exception", "%s" SEP "SystemError (%s)", tn, why);
        }
        return;
    }
    if (expect(c, exc != NULL, "exception", "none set with rc %d" SEP "BufferError", rc)) {
        char m[240];
        pbc_exc_message(m, sizeof m);
        pbc_type_name(exc, tn, sizeof tn);
        if (expect(c, PyErr_ExceptionMatches(PyExc_BufferError), "exception", "%s" SEP "BufferError", m) &&
            c->strict)
            expect(c, exc == PyExc_BufferError, "exception", "%s (a subclass)" SEP
                   "exactly BufferError (strict policy)", tn);
    }
    expect(c, v->obj == NULL, "obj", "%s after a refusal" SEP "NULL (bf_getbuffer step 1: set view->obj to NULL "
           "and return -1)", pbc_describe_ptr(v->obj, pb, sizeof pb));
}

static void one_request(ctx *c, int f, int phase)
{
    char why[192];
    int exp = expectation(c, f, why, sizeof why);
    add_request(c, f, phase, exp, why);
    pcf_request *q = cur_request(c);
    Py_buffer view;

    Py_ssize_t rc0 = refcnt(c->obj);
    Py_ssize_t ex0 = exports_now(c);
    memset(&view, PBC_GARBAGE, sizeof view);
    int rc = PyObject_GetBuffer(c->obj, &view, f);
    q = cur_request(c);

    if (rc != 0) {
        char m[240];
        pbc_exc_message(m, sizeof m);
        if (q) snprintf(q->detail, sizeof q->detail, "refused: %s", m);
        if (exp == PCF_MUST_GRANT)
            viol(c, "return value", "refused (rc %d, %s)" SEP "granted: %s", rc, m, why);
        check_refusal(c, rc, &view, exp, why);
        PyErr_Clear();
        check_refcnt(c, c->obj, rc0, "the exporter", "after the refusal");
        check_exports(c, ex0, "after the refusal");
        return;
    }

    if (q) q->granted = 1;
    if (PyErr_Occurred()) {
        char m[240];
        pbc_exc_message(m, sizeof m);
        PyErr_Clear();
        viol(c, "exception", "%s set with rc 0" SEP "none on success", m);
    }
    else {
        c->r->checks++;
    }
    if (q) describe_view(&view, f, q->detail, sizeof q->detail);
    if (exp == PCF_MUST_REFUSE)
        viol(c, "return value", "granted (rc 0)" SEP "refused with BufferError: %s", why);
    else
        c->r->checks++; /* (PCF_CPYTHON_REFUSES granted: this build let it through; checked as any request) */

    int obj_ok = check_obj(c, &view);
    int struct_ok = 0;
    if (c->t->known) struct_ok = validate_view(c, f, &view);
    if (struct_ok && exp != PCF_MUST_REFUSE) check_contiguity(c, f, &view);

    /* view->obj when it is another object: our own reference keeps it alive
       across the release, so that its count can be read afterwards. */
    PyObject *other = (obj_ok && view.obj != c->obj) ? view.obj : NULL;
    Py_ssize_t other_held = 0;
    if (other) {
        Py_IncRef(other);
        other_held = refcnt(other);
    }
    if (view.obj == c->obj) check_refcnt(c, c->obj, rc0 + 1, "the exporter", "while the view is held");
    if (ex0 >= 0) check_exports(c, ex0 + 1, "while the view is held");

    release(c, &view, phase == PCF_PHASE_COPY, obj_ok);

    if (other) {
        check_refcnt(c, other, other_held - 1, "view->obj, another object than the exporter", "after release");
        Py_DecRef(other);
    }
    check_refcnt(c, c->obj, rc0, "the exporter", "after release");
    check_exports(c, ex0, "after release");
}

/* ------------------------------------------------------------------ */
/* nested views                                                        */

typedef struct {
    Py_buffer view;
    int flags;
    int live;
    int obj_ok;
    int arrays;             /* shape/strides/suboffsets copied */
    Py_ssize_t shape[PyBUF_MAX_NDIM], strides[PyBUF_MAX_NDIM], suboffsets[PyBUF_MAX_NDIM];
    int has_format;
    char format[128];
} held_view;

static void snapshot(held_view *h)
{
    const Py_buffer *v = &h->view;
    h->arrays = 0;
    h->has_format = 0;
    if (v->ndim > 0 && v->ndim <= PyBUF_MAX_NDIM) {
        size_t nb = (size_t)v->ndim * sizeof(Py_ssize_t);
        if (usable_ptr(v->shape) && pbc_req(h->flags, PyBUF_ND)) memcpy(h->shape, v->shape, nb);
        if (usable_ptr(v->strides) && pbc_req(h->flags, PyBUF_STRIDES)) memcpy(h->strides, v->strides, nb);
        if (usable_ptr(v->suboffsets) && pbc_req(h->flags, PyBUF_INDIRECT)) memcpy(h->suboffsets, v->suboffsets, nb);
        h->arrays = 1;
    }
    if (usable_ptr(v->format) && pbc_req(h->flags, PyBUF_FORMAT) && strlen(v->format) < sizeof h->format) {
        strcpy(h->format, v->format);
        h->has_format = 1;
    }
}

/* A held view must keep its contents while other views come and go: an
   exporter must not reuse one view's shape/strides/format storage. */
static void revalidate(ctx *c, held_view *h, int n, const char *when)
{
    int saved = c->flags;
    for (int i = 0; i < n; i++) {
        if (!h[i].live) continue;
        const Py_buffer *v = &h[i].view;
        c->flags = h[i].flags;
        if (h[i].arrays) {
            size_t nb = (size_t)v->ndim * sizeof(Py_ssize_t);
            const Py_ssize_t *arr[3] = {v->shape, v->strides, v->suboffsets};
            Py_ssize_t *was[3] = {h[i].shape, h[i].strides, h[i].suboffsets};
            const char *names[3] = {"shape", "strides", "suboffsets"};
            const int req[3] = {PyBUF_ND, PyBUF_STRIDES, PyBUF_INDIRECT};
            for (int k = 0; k < 3; k++) {
                if (!usable_ptr(arr[k]) || !pbc_req(h[i].flags, req[k])) continue;
                int same = memcmp(arr[k], was[k], nb) == 0;
                char fb[200] = "", tb[200] = "";
                if (!same) {
                    pbc_fmt_array(arr[k], v->ndim, fb, sizeof fb);
                    pbc_fmt_array(was[k], v->ndim, tb, sizeof tb);
                }
                if (!expect(c, same, names[k], "%s %s, while the view is held" SEP
                            "%s, as handed out (the exporter owns this memory until release)", fb, when, tb))
                    memcpy(was[k], arr[k], nb); /* report each change once */
            }
        }
        if (h[i].has_format) {
            size_t len = strlen(h[i].format);
            int same = strncmp(v->format, h[i].format, len + 1) == 0;
            if (!expect(c, same, "format", "\"%.60s\" %s, while the view is held" SEP
                        "\"%s\", as handed out", v->format, when, h[i].format))
                h[i].has_format = 0;
        }
    }
    c->flags = saved;
}

static void check_nested(ctx *c)
{
    static const int reqs[] = {
        PyBUF_FULL_RO,         PyBUF_ND,         PyBUF_SIMPLE,     PyBUF_STRIDES,
        PyBUF_FULL,            PyBUF_C_CONTIGUOUS, PyBUF_F_CONTIGUOUS, PyBUF_ANY_CONTIGUOUS,
        PyBUF_RECORDS_RO,      PyBUF_CONTIG,     PyBUF_WRITABLE,   PyBUF_STRIDED,
    };
    held_view held[MAX_HELD];
    int nheld = 0;
    int counts = 1;   /* reference counts are checked while every view names the exporter */
    Py_ssize_t rc_base = refcnt(c->obj);
    Py_ssize_t ex_base = exports_now(c);

    for (size_t k = 0; k < sizeof reqs / sizeof reqs[0] && nheld < MAX_HELD; k++) {
        int f = reqs[k];
        char why[192];
        int exp = expectation(c, f, why, sizeof why);
        add_request(c, f, PCF_PHASE_NESTED, exp, why);
        pcf_request *q;
        held_view *h = &held[nheld];
        memset(&h->view, PBC_GARBAGE, sizeof h->view);
        int rc = PyObject_GetBuffer(c->obj, &h->view, f);
        q = cur_request(c);
        if (rc != 0) {
            char m[240];
            pbc_exc_message(m, sizeof m);
            if (q) snprintf(q->detail, sizeof q->detail, "refused: %s", m);
            PyErr_Clear();   /* the sweep judged this request already */
            if (counts) check_refcnt(c, c->obj, rc_base + nheld, "the exporter", "after a refusal with views held");
            if (ex_base >= 0) check_exports(c, ex_base + nheld, "after a refusal with views held");
            continue;
        }
        PyErr_Clear();
        if (q) {
            q->granted = 1;
            describe_view(&h->view, f, q->detail, sizeof q->detail);
        }
        h->flags = f;
        h->live = 1;
        h->obj_ok = releasable(h->view.obj);
        if (h->view.obj != c->obj) counts = 0;
        snapshot(h);
        nheld++;
        if (counts) check_refcnt(c, c->obj, rc_base + nheld, "the exporter", "with views held");
        if (ex_base >= 0) check_exports(c, ex_base + nheld, "with views held");
        revalidate(c, held, nheld, "after another view was taken");
    }

    /* release 2nd, 4th, ..., then 1st, 3rd, ...; the third release
       goes through a copy (or the last one if fewer). */
    int order[MAX_HELD];
    int no = 0;
    for (int i = 1; i < nheld; i += 2) order[no++] = i;
    for (int i = 0; i < nheld; i += 2) order[no++] = i;
    int copy_at = nheld >= 3 ? 2 : nheld - 1;
    int remaining = nheld;
    for (int k = 0; k < no; k++) {
        held_view *h = &held[order[k]];
        c->flags = h->flags;
        remaining--;
        h->live = 0;
        release(c, &h->view, k == copy_at, h->obj_ok);
        if (counts) check_refcnt(c, c->obj, rc_base + remaining, "the exporter", "after releasing a nested view");
        if (ex_base >= 0) check_exports(c, ex_base + remaining, "after releasing a nested view");
        revalidate(c, held, nheld, "after another view was released");
    }
    if (nheld) check_refcnt(c, c->obj, rc_base, "the exporter", "after every nested view was released");
}

/* ------------------------------------------------------------------ */
/* public                                                              */

void pcf_options_init(pcf_options *o)
{
    memset(o, 0, sizeof *o);
    o->policy = PCF_PERMISSIVE;
    o->sweep = 1;
    o->release_copy = 1;
    o->nested = 1;
}

void pcf_report_free(pcf_report *r)
{
    if (r == NULL) return;
    free(r->requests);
    free(r->violations);
    memset(r, 0, sizeof *r);
}

int pcf_check(PyObject *obj, const pcf_options *options, pcf_report *out)
{
    if (out == NULL) {
        PyErr_SetString(PyExc_SystemError, "pcf_check: out is NULL");
        return -1;
    }
    memset(out, 0, sizeof *out);
    if (obj == NULL) {
        PyErr_SetString(PyExc_SystemError, "pcf_check: obj is NULL");
        return -1;
    }
    if (PyErr_Occurred()) return -1;
    if (!PyObject_CheckBuffer(obj)) {
        char tn[96];
        pbc_type_name((PyObject *)Py_TYPE(obj), tn, sizeof tn);
        PyErr_Format(PyExc_TypeError, "a bytes-like object is required, not '%.100s' (its type has no bf_getbuffer)",
                     tn);
        return -1;
    }

    ctx c;
    memset(&c, 0, sizeof c);
    if (options) c.o = *options;
    else pcf_options_init(&c.o);
    c.r = out;
    c.obj = obj;
    c.t = &out->truth;
    c.strict = c.o.policy == PCF_STRICT;
    c.pyver = pbc_running_pyver();
    c.req = -1;
    out->policy = c.strict ? PCF_STRICT : PCF_PERMISSIVE;
    out->python_version = c.pyver;

    Py_IncRef(obj); /* keep it alive whatever the exporter does (a function: safe in abi3 builds) */
    Py_ssize_t rc_start = refcnt(obj);
    Py_ssize_t ex_start = exports_now(&c);

    learn_truth(&c);

    int modes = c.o.release_copy ? 2 : 1;
    for (int mode = 0; mode < modes; mode++) {
        int phase = mode ? PCF_PHASE_COPY : PCF_PHASE_DIRECT;
        for (int i = 0; i < pbc_n_named_requests; i++) one_request(&c, pbc_named_requests[i].value, phase);
        if (c.o.sweep) {
            for (int f = 0; f <= 0x1FF; f++) one_request(&c, f, phase);
            for (int i = 0; i < pbc_n_invalid_requests; i++) one_request(&c, pbc_invalid_requests[i], phase);
        }
    }
    if (c.o.nested) check_nested(&c);

    c.phase = PCF_PHASE_OBJECT;
    c.req = -1;
    if (!is_immortal(obj)) {
        Py_ssize_t rc_end = refcnt(obj);
        expect(&c, rc_end == rc_start, "refcount", "%zd after every request was released (%+zd)" SEP
               "%zd, as before the first request", rc_end, rc_end - rc_start, rc_start);
    }
    if (ex_start >= 0) {
        Py_ssize_t ex_end = exports_now(&c);
        if (ex_end >= 0)
            expect(&c, ex_end == ex_start, "exports", "%zd after every request was released" SEP
                   "%zd, as before the first request", ex_end, ex_start);
    }
    PyErr_Clear();
    Py_DecRef(obj);

    if (c.oom) {
        pcf_report_free(out);
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void sappend(char *buf, size_t n, size_t *used, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    size_t len = strlen(tmp);
    if (buf && n > 0 && *used < n - 1) {
        size_t room = n - 1 - *used;
        size_t m = len < room ? len : room;
        memcpy(buf + *used, tmp, m);
        buf[*used + m] = '\0';
    }
    *used += len;
}

size_t pcf_report_format(const pcf_report *r, char *buf, size_t n, long max_lines)
{
    size_t used = 0;
    char truth[900];
    if (buf && n > 0) buf[0] = '\0';
    long granted = 0;
    for (long i = 0; i < r->nrequests; i++) granted += r->requests[i].granted;
    sappend(buf, n, &used, "%s: %ld violation%s in %ld checks over %ld requests (%ld granted), %s policy\n",
            r->nviolations ? "NOT CONFORMING" : "conforming", r->nviolations, r->nviolations == 1 ? "" : "s",
            r->checks, r->nrequests, granted, r->policy == PCF_STRICT ? "strict" : "permissive");
    describe_truth(&r->truth, truth, sizeof truth);
    sappend(buf, n, &used, "truth: %s\n", truth);
    long shown = 0;
    for (long i = 0; i < r->nviolations && (max_lines < 0 || shown < max_lines); i++, shown++)
        sappend(buf, n, &used, "  %s\n", r->violations[i].message);
    if (shown < r->nviolations) sappend(buf, n, &used, "  ... and %ld more\n", r->nviolations - shown);
    return used;
}

int pcf_abi_check(int version, size_t options, size_t truth, size_t request, size_t violation, size_t report)
{
    return version == PCF_ABI_VERSION && options == sizeof(pcf_options) && truth == sizeof(pcf_truth) &&
           request == sizeof(pcf_request) && violation == sizeof(pcf_violation) && report == sizeof(pcf_report);
}

static const pcf_capi capi = {
    PCF_ABI_VERSION, pcf_options_init, pcf_check, pcf_report_free, pcf_report_format,
};

const pcf_capi *pcf_get_capi(void) { return &capi; }
