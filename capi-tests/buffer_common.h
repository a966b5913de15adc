/*
 * buffer_common.h -- pieces of the buffer rules shared by the C harness
 * (buffer_harness.c: checks an exporter against a caller-supplied truth)
 * and the conformance kit (conformance.c: derives the truth from the
 * exporter itself).  Pure C on the Python C API; compiles under the limited
 * API (Py_LIMITED_API >= 3.11) as well as the full one.
 *
 * All functions that touch Python must be called with the GIL held.
 */
#ifndef PONTONEER_BUFFER_COMMON_H
#define PONTONEER_BUFFER_COMMON_H

#ifndef PY_SSIZE_T_CLEAN
#define PY_SSIZE_T_CLEAN
#endif
#include <Python.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Byte pattern a Py_buffer is filled with before every request, so that a
   field the exporter never wrote is recognisable. */
#define PBC_GARBAGE 0xA5
/* Every bit a request may carry: WRITABLE, FORMAT, ND, STRIDES, C/F/ANY
   contiguity and INDIRECT (0x0002 is not a flag). */
#define PBC_KNOWN_FLAGS 0x1FD

typedef struct pbc_named {
    const char *name;
    int value;
} pbc_named;

/* The 17 named requests of buffer.rst, SIMPLE first, FULL_RO last. */
extern const pbc_named pbc_named_requests[];
extern const int pbc_n_named_requests;
/* Values that are not requests: 0x200 (PyBUF_WRITE), 0x400, 0x1000|ND,
   -1, INT_MIN. */
extern const int pbc_invalid_requests[];
extern const int pbc_n_invalid_requests;

/* The name(s) of request value f ("PyBUF_CONTIG_RO = PyBUF_ND",
   "PyBUF_READ"), or "" when it has none.  Always NUL-terminates. */
void pbc_flag_name(int f, char *out, size_t n);

/* The flag test CPython's own exporters use: (f & x) == x. */
static inline int pbc_req(int f, int x) { return (f & x) == x; }

/* Whether p is the PBC_GARBAGE fill pattern (a field never written). */
int pbc_is_garbage_ptr(const void *p);
/* "NULL", "0x... (non-NULL)" or "0x... (0xA5 fill pattern: never set)". */
const char *pbc_describe_ptr(const void *p, char *buf, size_t n);
/* " (0xA5 fill pattern: never set)" when v is the fill pattern, else "". */
const char *pbc_garbage_note_ssize(Py_ssize_t v);
const char *pbc_garbage_note_int(int v);

/* major * 100 + minor of the running interpreter (not of the headers). */
int pbc_running_pyver(void);

/* "TypeName: message" of the pending exception, which stays pending;
   "no exception set" when there is none. */
void pbc_exc_message(char *out, size_t n);
/* The name of exception type `type` (a class object). */
void pbc_type_name(PyObject *type, char *out, size_t n);

/* "(a, b, c)" (at most 8 values shown). */
void pbc_fmt_array(const Py_ssize_t *a, int n, char *out, size_t cap);

/* Contiguity as Objects/abstract.c computes it (_IsCContiguous,
   _IsFortranContiguous) for a buffer without suboffsets: len 0 or ndim 0
   -> contiguous; strides NULL -> C-contiguous, and F-contiguous when at
   most one extent exceeds 1; otherwise every extent > 1 must have the
   running product as stride.  order is 'C' or 'F'. */
int pbc_contiguous(int ndim, const Py_ssize_t *shape, const Py_ssize_t *strides,
                   Py_ssize_t itemsize, Py_ssize_t len, char order);

#ifdef __cplusplus
}
#endif

#endif /* PONTONEER_BUFFER_COMMON_H */
