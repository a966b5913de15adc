/*
 * conformance.h -- pontoneer's exporter conformance kit: checks ANY object
 * that implements bf_getbuffer against CPython's buffer rules, with no
 * caller-supplied truth.
 *
 * The kit learns the truth from the exporter itself (its answer to the
 * richest request it grants: PyBUF_FULL_RO, else RECORDS_RO, STRIDED_RO,
 * ...), then sends every request (the 17 named ones, every value
 * 0..0x1FF and five invalid values, each released directly and through a
 * copy of the view, plus a set of views held at once and released out of
 * order) and checks each answer against what the rules require given that
 * truth: which requests MUST be refused (WRITABLE on read-only data,
 * contiguity the data lacks, no STRIDES on non-C-contiguous data, no
 * INDIRECT when suboffsets are needed), which MAY be refused, that every
 * other one is granted, every Py_buffer field of a granted view, the
 * error path of a refused one (-1, BufferError, view->obj NULL), and the
 * reference count (and, with an observer, the export count) before and
 * after every get and release.  See conformance.c for the full statement.
 *
 * Policies:
 *   PCF_PERMISSIVE  every behaviour the rules allow: unknown flag bits
 *                   ignored or refused; PyBUF_FORMAT without PyBUF_ND
 *                   granted (format the real one or "B") or refused; ndim
 *                   0 or 1 when PyBUF_ND is not requested; a BufferError
 *                   subclass; view->obj another object (a redirect chain's
 *                   root, or a per-view object such as 3.12's wrapper for
 *                   a Python-level __buffer__).
 *   PCF_STRICT      pontoneer's (memoryview's) choices among those:
 *                   unknown bits and FORMAT-without-ND refused, ndim 1
 *                   without ND, exactly BufferError, readonly exactly
 *                   0/1, view->obj the exporter, buf non-NULL even when
 *                   empty.
 *
 * The kit depends only on <Python.h> (and buffer_common.{h,c}); it
 * compiles under the full API (CPython 3.9+) and the limited API
 * (Py_LIMITED_API >= 0x030B0000).  Call with the GIL held, on an
 * initialised interpreter.
 *
 * Use from C:
 *     pcf_report r;
 *     if (pcf_check(obj, NULL, &r) < 0) { ...exception set... }
 *     for (long i = 0; i < r.nviolations; i++) puts(r.violations[i].message);
 *     pcf_report_free(&r);
 */
#ifndef PONTONEER_CONFORMANCE_H
#define PONTONEER_CONFORMANCE_H

#ifndef PY_SSIZE_T_CLEAN
#define PY_SSIZE_T_CLEAN
#endif
#include <Python.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a struct below changes layout. */
#define PCF_ABI_VERSION 1

/* The capsule a module may publish with a pcf_capi table (the
   pontoneer_conformance test module does), for C harnesses that import
   it at run time instead of linking the kit. */
#define PCF_CAPSULE_NAME "pontoneer_conformance._C_API"

enum pcf_policy { PCF_PERMISSIVE = 0, PCF_STRICT = 1 };

/* When a request was made. */
enum pcf_phase {
    PCF_PHASE_PROBE = 0,   /* learning the truth */
    PCF_PHASE_DIRECT = 1,  /* the sweep, released with PyBuffer_Release */
    PCF_PHASE_COPY = 2,    /* the sweep, released through a memcpy'd copy */
    PCF_PHASE_NESTED = 3,  /* several views held at once */
    PCF_PHASE_OBJECT = 4   /* not a request: a fact about the object */
};

/* What the rules say about a request, given the truth. */
enum pcf_expect {
    PCF_MUST_GRANT = 0,
    PCF_MUST_REFUSE = 1,
    PCF_MAY_REFUSE = 2,
    PCF_CPYTHON_REFUSES = 3,  /* CPython >= 3.13 refuses PyBUF_READ/WRITE before the exporter */
    PCF_PROBING = 4           /* made while learning the truth: no expectation yet */
};

typedef struct pcf_options {
    int policy;        /* enum pcf_policy; default PCF_PERMISSIVE */
    int sweep;         /* 1 (default): every value 0..0x1FF and the invalid ones too; 0: named requests only */
    int release_copy;  /* 1 (default): each sweep request is also released through a copy of the view */
    int nested;        /* 1 (default): hold several views at once, release out of order */
    /* Optional export-count observer: the exporter's count of live exports,
       or -1 with an exception set.  NULL: export counts are not checked
       (only reference counts). */
    Py_ssize_t (*exports)(PyObject *obj, void *ctx);
    void *exports_ctx;
} pcf_options;

/* The geometry the kit learned from the exporter. */
typedef struct pcf_truth {
    int known;              /* 0: every probe was refused; nothing else is valid */
    int from_flags;         /* the request it was learned from */
    const void *buf;
    Py_ssize_t len;         /* as reported by that request */
    Py_ssize_t itemsize;
    int readonly;           /* normalised 0/1 */
    int format_known;       /* 0: no FORMAT request granted yet */
    char format[128];       /* NUL-terminated (truncated if longer) */
    int ndim;
    Py_ssize_t shape[PyBUF_MAX_NDIM];
    Py_ssize_t strides[PyBUF_MAX_NDIM];
    int has_suboffsets;
    Py_ssize_t suboffsets[PyBUF_MAX_NDIM];
    int c_contiguous, f_contiguous;
    int immortal;           /* refcounts are not observable (3.12+ immortal object) */
} pcf_truth;

typedef struct pcf_request {
    int flags;
    int phase;              /* enum pcf_phase */
    int expect;             /* enum pcf_expect */
    int granted;            /* 1: rc 0; 0: refused */
    long violations;        /* violations recorded on this request */
    char name[64];          /* "PyBUF_FULL_RO", "0x0119", "PyBUF_WRITE (0x0200)" */
    char detail[256];       /* the answer ("ndim 2, shape (2, 3), ...") or the exception */
    char why[192];          /* why the rules expect `expect` */
} pcf_request;

typedef struct pcf_violation {
    int flags;              /* the request it was seen on (meaningless for PCF_PHASE_OBJECT) */
    int phase;              /* enum pcf_phase */
    char request[64];       /* as pcf_request.name, "(object)" for PCF_PHASE_OBJECT */
    char field[24];         /* "return value", "exception", "obj", "buf", "len", "itemsize",
                               "readonly", "format", "ndim", "shape", "strides",
                               "suboffsets", "contiguity", "refcount", "exports", "release" */
    char found[256];
    char rule[320];
    char message[768];      /* "<request>: <field>: found <found>, rule: <rule>" */
} pcf_violation;

typedef struct pcf_report {
    long checks;            /* individual assertions evaluated */
    long nrequests;
    pcf_request *requests;  /* every request made, in order */
    long nviolations;
    pcf_violation *violations;
    pcf_truth truth;
    int policy;
    int python_version;     /* major * 100 + minor of the running interpreter */
    long capacity_requests, capacity_violations;  /* private */
} pcf_report;

/* Fills *o with the defaults (permissive, sweep, copies, nested, no observer). */
void pcf_options_init(pcf_options *o);

/* Checks obj.  options may be NULL (the defaults).  Returns 0 and fills *out
   (free it with pcf_report_free) -- whatever the verdict: a conforming
   exporter has out->nviolations == 0.  Returns -1 with an exception set
   and *out empty when the check cannot run: obj NULL (SystemError), an
   exception already pending (left as it is), obj's type has no
   bf_getbuffer (TypeError), or out of memory (MemoryError). */
int pcf_check(PyObject *obj, const pcf_options *options, pcf_report *out);

/* Frees what pcf_check allocated; *r becomes an empty report. */
void pcf_report_free(pcf_report *r);

/* Writes a human-readable summary into buf (at most n bytes, always
   NUL-terminated): the verdict, the truth and at most max_lines violation
   messages.  Returns the length the full text would have had. */
size_t pcf_report_format(const pcf_report *r, char *buf, size_t n, long max_lines);

/* sizeof of each public struct, for bindings to check their layout. */
int pcf_abi_check(int version, size_t options, size_t truth, size_t request,
                  size_t violation, size_t report);

/* The table published in a PCF_CAPSULE_NAME capsule. */
typedef struct pcf_capi {
    int abi_version;        /* PCF_ABI_VERSION */
    void (*options_init)(pcf_options *o);
    int (*check)(PyObject *obj, const pcf_options *options, pcf_report *out);
    void (*report_free)(pcf_report *r);
    size_t (*report_format)(const pcf_report *r, char *buf, size_t n, long max_lines);
} pcf_capi;

/* A static pcf_capi filled with the functions above. */
const pcf_capi *pcf_get_capi(void);

#ifdef __cplusplus
}
#endif

#endif /* PONTONEER_CONFORMANCE_H */
