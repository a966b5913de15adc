/*
 * ref_demo.c -- the hand-written C reference ("speed limit") for pontoneer's demo contract
 * (/work/shared/demo-contract.md, mirrored by demo/src/lib.rs).
 *
 * It implements the same two types as `pontoneer_demo` -- FloatBuffer, a growable vector of
 * float64 exported read-only as a 1-D buffer, and Matrix, a fixed zero-filled 2-D float64 array
 * exported writable and C-contiguous -- the way a CPython core developer would write them
 * today:
 *
 *   - multi-phase initialisation (PEP 489); the module state owns the two heap types, which
 *     are created with PyType_FromModuleAndSpec and are final (no Py_TPFLAGS_BASETYPE) and
 *     immutable (Py_TPFLAGS_IMMUTABLETYPE);
 *   - no Py_TPFLAGS_HAVE_GC: the instances hold no references to Python objects, so they can
 *     never be part of a reference cycle;
 *   - instances come from PyObject_Malloc + PyObject_Init (which also takes the reference to
 *     the heap type); tp_dealloc frees the data, the object, and drops that type reference;
 *   - the cheapest calling convention for every entry point: METH_NOARGS (sum), METH_O
 *     (append, from_count), METH_FASTCALL (get, set), direct sequence/mapping/number slots,
 *     and a tp_vectorcall on each type for construction (tp_new stays for the generic
 *     `T.__new__(T, ...)` / tuple-and-dict path);
 *   - a buffer exporter that answers every PyBUF_* request as CPython's own exporters do.
 *
 * The module name is a macro so that the same source builds as `pontoneer_ref` (the benchmark
 * reference, the default) or as `pontoneer_demo` (to run the contract test-suite against it):
 *
 *     cc ... -DREF_MODULE_NAME=pontoneer_demo ref_demo.c
 *
 * benches/build_ref.py does that. This file is never shipped.
 *
 * The items live in blocks from PyMem_* (pymalloc for blocks up to 512 bytes), as CPython's
 * own containers do. Built with -DREF_DATA_SYSTEM_MALLOC (build_ref.py --data-alloc malloc)
 * they come from the C library's malloc family instead -- the allocator behind a Rust `Vec` or
 * `Box`, and so behind pontoneer_demo's items -- which separates the layer's cost from the
 * allocator's in a comparison (benches/README.md, "Allocator-matched reference").
 *
 * Needs CPython 3.9+ (PyType_FromModuleAndSpec); not the limited API (tp_vectorcall is set on
 * the type object directly, as pontoneer does).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#ifdef REF_DATA_SYSTEM_MALLOC
/* Zero-size requests get one byte, so that a block is never NULL (as with PyMem_*). */
#  define DATA_MALLOC(n) malloc((n) > 0 ? (n) : 1)
#  define DATA_CALLOC(n, size) calloc((n) > 0 ? (n) : 1, (size))
#  define DATA_REALLOC(p, n) realloc((p), (n) > 0 ? (n) : 1)
#  define DATA_FREE(p) free(p)
#else
#  define DATA_MALLOC(n) PyMem_Malloc(n)
#  define DATA_CALLOC(n, size) PyMem_Calloc((n), (size))
#  define DATA_REALLOC(p, n) PyMem_Realloc((p), (n))
#  define DATA_FREE(p) PyMem_Free(p)
#endif

#if PY_VERSION_HEX < 0x03090000
#  error "ref_demo.c needs CPython 3.9 or newer"
#endif

#ifndef REF_MODULE_NAME
#  define REF_MODULE_NAME pontoneer_ref
#endif

#define REF_STR_(x) #x
#define REF_STR(x) REF_STR_(x)
#define REF_CAT_(a, b) a##b
#define REF_CAT(a, b) REF_CAT_(a, b)
#define MODULE_NAME REF_STR(REF_MODULE_NAME)

/* 3.9 compatibility: no immutable types (3.10), no Py_NewRef (3.10). */
#ifndef Py_TPFLAGS_IMMUTABLETYPE
#  define Py_TPFLAGS_IMMUTABLETYPE 0
#endif
#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *
Py_NewRef(PyObject *obj)
{
    Py_INCREF(obj);
    return obj;
}
#endif

/* Every bit a consumer may legitimately put into a getbuffer request (PyBUF_WRITABLE 0x1,
 * FORMAT 0x4, ND 0x8, STRIDES 0x10, C/F/ANY_CONTIGUOUS 0x20/0x40/0x80, INDIRECT 0x100).
 * Anything else is a request we do not understand, which is refused rather than guessed. */
#define REF_PYBUF_KNOWN 0x1FD

#define ITEMSIZE ((Py_ssize_t)sizeof(double))
/* The largest item count whose byte size still fits in a Py_ssize_t. */
#define MAX_ITEMS (PY_SSIZE_T_MAX / ITEMSIZE)


/* ---------------------------------------------------------------------------------------- */
/* Argument conversion                                                                      */
/* ---------------------------------------------------------------------------------------- */

/* An integer argument through __index__, as range() takes its arguments: a float, str or None
 * is a TypeError. `overflow` is the exception for a value beyond Py_ssize_t: OverflowError for
 * sizes and coordinates, IndexError for subscripts (as list does). Exact ints skip the
 * PyNumber_Index round trip (an incref/decref pair and two calls). */
static inline Py_ssize_t
as_ssize_t(PyObject *obj, PyObject *overflow)
{
    if (PyLong_CheckExact(obj)) {
        Py_ssize_t value = PyLong_AsSsize_t(obj);
        if (value == -1 && overflow != PyExc_OverflowError && PyErr_Occurred()) {
            /* An exact int can only fail with OverflowError: re-raise as `overflow`. */
            PyErr_Format(overflow, "cannot fit 'int' into an index-sized integer");
        }
        return value;
    }
    return PyNumber_AsSsize_t(obj, overflow);
}

/* float(x) semantics for an item value: __float__, then __index__; TypeError otherwise.
 * The caller checks `result == -1.0 && PyErr_Occurred()`. */
static inline double
as_double(PyObject *obj)
{
    return PyFloat_CheckExact(obj) ? PyFloat_AS_DOUBLE(obj) : PyFloat_AsDouble(obj);
}


/* ---------------------------------------------------------------------------------------- */
/* Module state                                                                             */
/* ---------------------------------------------------------------------------------------- */

typedef struct {
    PyTypeObject *FloatBuffer_Type;
    PyTypeObject *Matrix_Type;
} ref_state;

static inline ref_state *
get_state(PyObject *module)
{
    return (ref_state *)PyModule_GetState(module);
}


/* ---------------------------------------------------------------------------------------- */
/* FloatBuffer                                                                              */
/* ---------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    double *data;         /* PyMem block of `alloc` items; NULL while alloc == 0 */
    Py_ssize_t len;       /* items in use; also what an exported view's shape[0] points at */
    Py_ssize_t alloc;     /* capacity in items */
    Py_ssize_t exports;   /* live Py_buffer views; resizing is refused while non-zero */
} FloatBufferObject;

#define FB(op) ((FloatBufferObject *)(op))

/* What an empty FloatBuffer exports: consumers get a valid, non-NULL address for a zero-length
 * buffer (never written: the export is read-only). */
static double fb_empty_storage;

static const char fb_resize_while_exported[] =
    "cannot resize a FloatBuffer that is exporting buffers";

/* A new FloatBuffer of `type` with room for, and length, `n` items (contents uninitialised).
 * `type` is always the FloatBuffer type: the type is final and every caller passes either the
 * type the call went through or Py_TYPE() of an existing FloatBuffer. */
static FloatBufferObject *
fb_alloc(PyTypeObject *type, Py_ssize_t n)
{
    double *data = NULL;
    if (n > 0) {
        if (n > MAX_ITEMS) {
            return (FloatBufferObject *)PyErr_NoMemory();
        }
        data = (double *)DATA_MALLOC((size_t)n * sizeof(double));
        if (data == NULL) {
            return (FloatBufferObject *)PyErr_NoMemory();
        }
    }
    FloatBufferObject *self = (FloatBufferObject *)PyObject_Malloc(sizeof(FloatBufferObject));
    if (self == NULL) {
        DATA_FREE(data);
        return (FloatBufferObject *)PyErr_NoMemory();
    }
    /* Sets ob_type and the refcount, and increfs the heap type (released in fb_dealloc). */
    (void)PyObject_Init((PyObject *)self, type);
    self->data = data;
    self->len = n;
    self->alloc = n;
    self->exports = 0;
    return self;
}

static void
fb_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    /* A view holds a strong reference, so no export can be alive here. */
    DATA_FREE(FB(op)->data);
    PyObject_Free(op);
    Py_DECREF(tp);
}

static PyObject *
fb_no_arguments(Py_ssize_t nargs, int has_keywords)
{
    if (has_keywords) {
        PyErr_SetString(PyExc_TypeError, "FloatBuffer() takes no keyword arguments");
    }
    else {
        PyErr_Format(PyExc_TypeError, "FloatBuffer() takes no arguments (%zd given)", nargs);
    }
    return NULL;
}

/* FloatBuffer(): the fast path, installed as the type's tp_vectorcall. */
static PyObject *
fb_vectorcall(PyObject *type, PyObject *const *Py_UNUSED(args), size_t nargsf,
              PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    int has_keywords = kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0;
    if (nargs != 0 || has_keywords) {
        return fb_no_arguments(nargs, has_keywords);
    }
    return (PyObject *)fb_alloc((PyTypeObject *)type, 0);
}

/* FloatBuffer.__new__(FloatBuffer): the tuple-and-dict path. */
static PyObject *
fb_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    int has_keywords = kwds != NULL && PyDict_GET_SIZE(kwds) != 0;
    if (nargs != 0 || has_keywords) {
        return fb_no_arguments(nargs, has_keywords);
    }
    return (PyObject *)fb_alloc(type, 0);
}

/* FloatBuffer.from_count(n) -> [0.0, 1.0, ..., n-1]. A METH_CLASS|METH_O method: CPython
 * passes the class (always FloatBuffer itself, the type being final), which is how the result
 * finds its type without a global; callers cannot tell it from a static method. (A METH_STATIC
 * function is called with a NULL self, so it could not find the type; the price of METH_CLASS
 * is the bound method CPython creates on every `FloatBuffer.from_count` lookup -- pontoneer's
 * static methods pay the same.) */
static PyObject *
fb_from_count(PyObject *cls, PyObject *arg)
{
    Py_ssize_t n = as_ssize_t(arg, PyExc_OverflowError);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "from_count() argument must be non-negative, got %zd", n);
        return NULL;
    }
    FloatBufferObject *self = fb_alloc((PyTypeObject *)cls, n);
    if (self == NULL) {
        return NULL;
    }
    double *data = self->data;
    if (n <= INT_MAX) {
        /* An int counter: x86-64 has no packed int64 -> double conversion before AVX-512, but
         * int32 -> double (cvtdq2pd) vectorises, which makes this loop several times faster
         * than the same loop over Py_ssize_t. */
        for (int i = 0, count = (int)n; i < count; i++) {
            data[i] = (double)i;
        }
    }
    else {
        for (Py_ssize_t i = 0; i < n; i++) {
            data[i] = (double)i;
        }
    }
    return (PyObject *)self;
}

/* Out of line: the rare case of append. Same growth as Rust's Vec (double, at least 4). */
static int
fb_grow(FloatBufferObject *self)
{
    Py_ssize_t alloc = self->alloc;
    if (alloc > MAX_ITEMS / 2) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t new_alloc = alloc < 2 ? 4 : 2 * alloc;
    double *data = (double *)DATA_REALLOC(self->data, (size_t)new_alloc * sizeof(double));
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->data = data;
    self->alloc = new_alloc;
    return 0;
}

static PyObject *
fb_append(PyObject *op, PyObject *arg)
{
    FloatBufferObject *self = FB(op);
    /* Convert first: __float__ may run Python code (even append to this very buffer); the
     * export check and the store below then see the current state. */
    double x = as_double(arg);
    if (x == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (self->exports > 0) {
        PyErr_SetString(PyExc_BufferError, fb_resize_while_exported);
        return NULL;
    }
    if (self->len == self->alloc && fb_grow(self) < 0) {
        return NULL;
    }
    self->data[self->len++] = x;
    Py_RETURN_NONE;
}

static PyObject *
fb_sum(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    const FloatBufferObject *self = FB(op);
    const double *data = self->data;
    /* -0.0 is the additive identity of IEEE addition (x + -0.0 == x for every x, -0.0
     * included); it is also what pontoneer_demo (Rust's f64 Sum) starts from, so the sum of an
     * empty buffer is -0.0 in both. A plain left-to-right loop, like the Rust one. */
    double total = -0.0;
    for (Py_ssize_t i = 0, n = self->len; i < n; i++) {
        total += data[i];
    }
    return PyFloat_FromDouble(total);
}

static PyObject *
fb_repr(PyObject *op)
{
    return PyUnicode_FromFormat("FloatBuffer(len=%zd)", FB(op)->len);
}

/* -- sequence / mapping -- */

static Py_ssize_t
fb_length(PyObject *op)
{
    return FB(op)->len;
}

/* sq_item (iteration, PySequence_GetItem): CPython already added len to a negative index. */
static PyObject *
fb_item(PyObject *op, Py_ssize_t i)
{
    const FloatBufferObject *self = FB(op);
    if ((size_t)i >= (size_t)self->len) {
        PyErr_SetString(PyExc_IndexError, "FloatBuffer index out of range");
        return NULL;
    }
    return PyFloat_FromDouble(self->data[i]);
}

/* A subscript as list takes it: any __index__ object; IndexError (not OverflowError) beyond
 * Py_ssize_t; TypeError otherwise. Returns -1 with an exception set on error. */
static inline int
fb_key(PyObject *key, Py_ssize_t *index)
{
    Py_ssize_t i;
    if (PyLong_CheckExact(key)) {
        i = PyLong_AsSsize_t(key);
        if (i == -1 && PyErr_Occurred()) {
            PyErr_SetString(PyExc_IndexError, "cannot fit 'int' into an index-sized integer");
            return -1;
        }
    }
    else if (PyIndex_Check(key)) {
        i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    else {
        PyErr_Format(PyExc_TypeError, "FloatBuffer indices must be integers, not %.200s",
                     Py_TYPE(key)->tp_name);
        return -1;
    }
    *index = i;
    return 0;
}

/* Resolves a negative index and range-checks it against the *current* length: called after
 * every conversion that may run Python code, so a __index__/__float__ that shrinks the buffer
 * cannot make the access go out of bounds. */
static inline int
fb_bound(const FloatBufferObject *self, Py_ssize_t *index)
{
    Py_ssize_t i = *index;
    if (i < 0) {
        i += self->len;
    }
    if ((size_t)i >= (size_t)self->len) {
        PyErr_SetString(PyExc_IndexError, "FloatBuffer index out of range");
        return -1;
    }
    *index = i;
    return 0;
}

static PyObject *
fb_subscript(PyObject *op, PyObject *key)
{
    FloatBufferObject *self = FB(op);
    Py_ssize_t i;
    if (fb_key(key, &i) < 0 || fb_bound(self, &i) < 0) {
        return NULL;
    }
    return PyFloat_FromDouble(self->data[i]);
}

static int
fb_ass_subscript(PyObject *op, PyObject *key, PyObject *value)
{
    FloatBufferObject *self = FB(op);
    Py_ssize_t i;
    if (fb_key(key, &i) < 0) {
        return -1;
    }
    if (value == NULL) {
        /* del b[i] moves the memory a view points at: refused while exported. */
        if (self->exports > 0) {
            PyErr_SetString(PyExc_BufferError, fb_resize_while_exported);
            return -1;
        }
        if (fb_bound(self, &i) < 0) {
            return -1;
        }
        memmove(self->data + i, self->data + i + 1,
                (size_t)(self->len - i - 1) * sizeof(double));
        self->len--;
        return 0;
    }
    /* b[i] = x only stores into existing memory: allowed while exported, and the change is
     * visible through every view (as for array.array). */
    double x = as_double(value);
    if (x == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (fb_bound(self, &i) < 0) {
        return -1;
    }
    self->data[i] = x;
    return 0;
}

/* x in b: anything float() cannot convert is simply not in the buffer. */
static int
fb_contains(PyObject *op, PyObject *item)
{
    double x = as_double(item);
    if (x == -1.0 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            return 0;
        }
        return -1;
    }
    const FloatBufferObject *self = FB(op);  /* read after the conversion ran */
    const double *data = self->data;
    for (Py_ssize_t i = 0, n = self->len; i < n; i++) {
        if (data[i] == x) {
            return 1;
        }
    }
    return 0;
}

/* -- number -- */

/* b + c. CPython calls nb_add when either operand's type has this slot; only FloatBuffer's
 * does, and FloatBuffer is final, so "both operands have the same type" is exactly "both are
 * FloatBuffers" -- one pointer comparison, no module-state lookup. */
static PyObject *
fb_add(PyObject *left, PyObject *right)
{
    if (Py_TYPE(left) != Py_TYPE(right)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    const FloatBufferObject *a = FB(left), *b = FB(right);
    if (a->len > MAX_ITEMS - b->len) {
        return PyErr_NoMemory();
    }
    FloatBufferObject *result = fb_alloc(Py_TYPE(left), a->len + b->len);
    if (result == NULL) {
        return NULL;
    }
    if (a->len > 0) {
        memcpy(result->data, a->data, (size_t)a->len * sizeof(double));
    }
    if (b->len > 0) {
        memcpy(result->data + a->len, b->data, (size_t)b->len * sizeof(double));
    }
    return (PyObject *)result;
}

static PyObject *
fb_negative(PyObject *op)
{
    const FloatBufferObject *self = FB(op);
    FloatBufferObject *result = fb_alloc(Py_TYPE(op), self->len);
    if (result == NULL) {
        return NULL;
    }
    const double *src = self->data;
    double *dst = result->data;
    for (Py_ssize_t i = 0, n = self->len; i < n; i++) {
        dst[i] = -src[i];  /* -0.0 for 0.0 */
    }
    return (PyObject *)result;
}

/* == and != between FloatBuffers, item by item with float equality (0.0 == -0.0, NaN is
 * unequal to everything); NotImplemented for any other type or operator. tp_richcompare is
 * always called with a FloatBuffer as `op`. */
static PyObject *
fb_richcompare(PyObject *op, PyObject *other, int cmp)
{
    if (Py_TYPE(other) != Py_TYPE(op) || (cmp != Py_EQ && cmp != Py_NE)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    const FloatBufferObject *a = FB(op), *b = FB(other);
    int equal = a->len == b->len;
    if (equal) {
        for (Py_ssize_t i = 0, n = a->len; i < n; i++) {
            if (a->data[i] != b->data[i]) {
                equal = 0;
                break;
            }
        }
    }
    return PyBool_FromLong(equal == (cmp == Py_EQ));
}

/* -- buffer -- */

/* A read-only, 1-D, C-contiguous buffer of 'd', answered by the CPython rules:
 *   - unknown flag bits and PyBUF_WRITABLE are refused with BufferError;
 *   - format only with PyBUF_FORMAT (NULL means unsigned bytes); PyBUF_FORMAT without
 *     PyBUF_ND (SIMPLE|FORMAT) is refused, as memoryview refuses it: a format with no shape
 *     contradicts "treat it as bytes";
 *   - shape only with PyBUF_ND; strides only with PyBUF_STRIDES; ndim is 1 either way;
 *   - itemsize is 8 even without PyBUF_FORMAT (the consumer then ignores it);
 *   - on failure view->obj is NULL; on success it is set last, with the export counted.
 * No per-view storage is needed: shape points at self->len, which cannot change while any
 * view exists (append and del are refused), and strides at view->itemsize (8), the idiom of
 * CPython's own array module. */
static int
fb_getbuffer(PyObject *op, Py_buffer *view, int flags)
{
    FloatBufferObject *self = FB(op);
    if (flags & ~REF_PYBUF_KNOWN) {
        PyErr_Format(PyExc_BufferError, "FloatBuffer: unsupported buffer request flags 0x%x",
                     (unsigned int)flags);
        goto fail;
    }
    if (flags & PyBUF_WRITABLE) {
        PyErr_SetString(PyExc_BufferError, "FloatBuffer: the buffer is read-only");
        goto fail;
    }
    if ((flags & (PyBUF_ND | PyBUF_FORMAT)) == PyBUF_FORMAT) {
        PyErr_SetString(PyExc_BufferError,
                        "FloatBuffer: cannot export as unsigned bytes if the format flag "
                        "is present");
        goto fail;
    }
    view->buf = self->data != NULL ? (void *)self->data : (void *)&fb_empty_storage;
    view->len = self->len * ITEMSIZE;
    view->readonly = 1;
    view->itemsize = ITEMSIZE;
    view->format = (flags & PyBUF_FORMAT) ? (char *)"d" : NULL;
    view->ndim = 1;
    view->shape = (flags & PyBUF_ND) ? &self->len : NULL;
    view->strides = ((flags & PyBUF_STRIDES) == PyBUF_STRIDES) ? &view->itemsize : NULL;
    view->suboffsets = NULL;
    view->internal = NULL;
    self->exports++;
    view->obj = Py_NewRef(op);
    return 0;

fail:
    view->obj = NULL;
    return -1;
}

static void
fb_releasebuffer(PyObject *op, Py_buffer *Py_UNUSED(view))
{
    FB(op)->exports--;
}

/* -- type -- */

static PyMethodDef fb_methods[] = {
    {"from_count", (PyCFunction)(void (*)(void))fb_from_count, METH_CLASS | METH_O,
     PyDoc_STR("from_count(n) -> FloatBuffer [0.0, 1.0, ..., n-1]")},
    {"append", (PyCFunction)(void (*)(void))fb_append, METH_O,
     PyDoc_STR("append(x): add float(x) at the end")},
    {"sum", (PyCFunction)(void (*)(void))fb_sum, METH_NOARGS, PyDoc_STR("sum() -> float")},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot fb_slots[] = {
    {Py_tp_doc, (void *)PyDoc_STR("FloatBuffer() -> an empty, growable buffer of float64 "
                                  "(read-only buffer export)")},
    {Py_tp_new, fb_new},
    {Py_tp_dealloc, fb_dealloc},
    {Py_tp_repr, fb_repr},
    {Py_tp_hash, PyObject_HashNotImplemented},  /* __eq__ without __hash__: unhashable */
    {Py_tp_richcompare, fb_richcompare},
    {Py_tp_methods, fb_methods},
    {Py_sq_length, fb_length},
    {Py_sq_item, fb_item},
    {Py_sq_contains, fb_contains},
    {Py_mp_length, fb_length},
    {Py_mp_subscript, fb_subscript},
    {Py_mp_ass_subscript, fb_ass_subscript},
    {Py_nb_add, fb_add},
    {Py_nb_negative, fb_negative},
    {Py_bf_getbuffer, fb_getbuffer},
    {Py_bf_releasebuffer, fb_releasebuffer},
    {0, NULL},
};

static PyType_Spec fb_spec = {
    .name = MODULE_NAME ".FloatBuffer",
    .basicsize = sizeof(FloatBufferObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = fb_slots,
};


/* ---------------------------------------------------------------------------------------- */
/* Matrix                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* shape and strides never change after construction, so they live in the object and every
 * view points at them: no per-view allocation (view->internal stays unused), and a view keeps
 * the object, hence these arrays, alive. For the same reason Matrix needs no export counter
 * and no bf_releasebuffer: nothing it offers moves or frees the data while the object lives,
 * and set() writes through to every view by design. */
typedef struct {
    PyObject_HEAD
    double *data;             /* rows*cols items, zero-filled; never NULL */
    Py_ssize_t shape[2];      /* (rows, cols) */
    Py_ssize_t strides[2];    /* (cols*8, 8) */
} MatrixObject;

#define MX(op) ((MatrixObject *)(op))

static void
matrix_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    DATA_FREE(MX(op)->data);
    PyObject_Free(op);
    Py_DECREF(tp);
}

static PyObject *
matrix_create(PyTypeObject *type, PyObject *rows_obj, PyObject *cols_obj)
{
    Py_ssize_t rows = as_ssize_t(rows_obj, PyExc_OverflowError);
    if (rows == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t cols = as_ssize_t(cols_obj, PyExc_OverflowError);
    if (cols == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (rows < 0 || cols < 0) {
        PyErr_Format(PyExc_ValueError, "Matrix() argument %d must be non-negative, got %zd",
                     rows < 0 ? 1 : 2, rows < 0 ? rows : cols);
        return NULL;
    }
    /* rows * cols * 8 must fit in a Py_ssize_t (the buffer's len), checked without
     * overflowing. */
    if (cols != 0 && rows > MAX_ITEMS / cols) {
        PyErr_Format(PyExc_OverflowError, "Matrix(%zd, %zd) is too large to allocate",
                     rows, cols);
        return NULL;
    }
    /* DATA_CALLOC returns a unique non-NULL block even for 0 items. */
    double *data = (double *)DATA_CALLOC((size_t)(rows * cols), sizeof(double));
    if (data == NULL) {
        return PyErr_NoMemory();
    }
    MatrixObject *self = (MatrixObject *)PyObject_Malloc(sizeof(MatrixObject));
    if (self == NULL) {
        DATA_FREE(data);
        return PyErr_NoMemory();
    }
    (void)PyObject_Init((PyObject *)self, type);
    self->data = data;
    self->shape[0] = rows;
    self->shape[1] = cols;
    self->strides[0] = cols * ITEMSIZE;
    self->strides[1] = ITEMSIZE;
    return (PyObject *)self;
}

static PyObject *
matrix_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) {
        PyErr_SetString(PyExc_TypeError, "Matrix() takes no keyword arguments");
        return NULL;
    }
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "Matrix() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    return matrix_create((PyTypeObject *)type, args[0], args[1]);
}

static PyObject *
matrix_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "Matrix() takes no keyword arguments");
        return NULL;
    }
    if (PyTuple_GET_SIZE(args) != 2) {
        PyErr_Format(PyExc_TypeError, "Matrix() takes exactly 2 arguments (%zd given)",
                     PyTuple_GET_SIZE(args));
        return NULL;
    }
    return matrix_create(type, PyTuple_GET_ITEM(args, 0), PyTuple_GET_ITEM(args, 1));
}

/* (r, c) -> the cell, or NULL with IndexError. Negative coordinates are out of range (the
 * contract does not make them count from the end). */
static inline double *
matrix_cell(MatrixObject *self, PyObject *r_obj, PyObject *c_obj)
{
    Py_ssize_t r = as_ssize_t(r_obj, PyExc_OverflowError);
    if (r == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t c = as_ssize_t(c_obj, PyExc_OverflowError);
    if (c == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t rows = self->shape[0], cols = self->shape[1];
    if ((size_t)r >= (size_t)rows || (size_t)c >= (size_t)cols) {
        PyErr_Format(PyExc_IndexError,
                     "Matrix index (%zd, %zd) out of range for shape (%zd, %zd)",
                     r, c, rows, cols);
        return NULL;
    }
    return self->data + r * cols + c;
}

static PyObject *
matrix_get(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "get() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    double *cell = matrix_cell(MX(op), args[0], args[1]);
    if (cell == NULL) {
        return NULL;
    }
    return PyFloat_FromDouble(*cell);
}

static PyObject *
matrix_set(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "set() takes exactly 3 arguments (%zd given)", nargs);
        return NULL;
    }
    /* All conversions first (they may run Python code), then the range check and store; the
     * matrix never changes size, so the order only decides which error wins. */
    double *cell = matrix_cell(MX(op), args[0], args[1]);
    if (cell == NULL) {
        return NULL;
    }
    double x = as_double(args[2]);
    if (x == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    *cell = x;
    Py_RETURN_NONE;
}

static PyObject *
matrix_get_shape(PyObject *op, void *Py_UNUSED(closure))
{
    const MatrixObject *self = MX(op);
    PyObject *rows = PyLong_FromSsize_t(self->shape[0]);
    if (rows == NULL) {
        return NULL;
    }
    PyObject *cols = PyLong_FromSsize_t(self->shape[1]);
    if (cols == NULL) {
        Py_DECREF(rows);
        return NULL;
    }
    PyObject *shape = PyTuple_New(2);
    if (shape == NULL) {
        Py_DECREF(rows);
        Py_DECREF(cols);
        return NULL;
    }
    PyTuple_SET_ITEM(shape, 0, rows);
    PyTuple_SET_ITEM(shape, 1, cols);
    return shape;
}

/* A writable 2-D C-contiguous buffer of 'd', by the same rules as fb_getbuffer; writable
 * requests are granted. A Fortran-contiguous request is granted only when the layout is also
 * Fortran-contiguous (a dimension <= 1). Without PyBUF_ND the consumer gets the whole block
 * as 1-D unsigned bytes (ndim 1, no shape), which is valid because it is C-contiguous. */
static int
matrix_getbuffer(PyObject *op, Py_buffer *view, int flags)
{
    MatrixObject *self = MX(op);
    if (flags & ~REF_PYBUF_KNOWN) {
        PyErr_Format(PyExc_BufferError, "Matrix: unsupported buffer request flags 0x%x",
                     (unsigned int)flags);
        goto fail;
    }
    if ((flags & (PyBUF_ND | PyBUF_FORMAT)) == PyBUF_FORMAT) {
        PyErr_SetString(PyExc_BufferError,
                        "Matrix: cannot export as unsigned bytes if the format flag is present");
        goto fail;
    }
    if ((flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS
        && self->shape[0] > 1 && self->shape[1] > 1) {
        PyErr_SetString(PyExc_BufferError, "Matrix: the buffer is not Fortran contiguous");
        goto fail;
    }
    view->buf = self->data;
    view->len = self->shape[0] * self->shape[1] * ITEMSIZE;
    view->readonly = 0;
    view->itemsize = ITEMSIZE;
    view->format = (flags & PyBUF_FORMAT) ? (char *)"d" : NULL;
    if (flags & PyBUF_ND) {
        view->ndim = 2;
        view->shape = self->shape;
        view->strides = ((flags & PyBUF_STRIDES) == PyBUF_STRIDES) ? self->strides : NULL;
    }
    else {
        view->ndim = 1;
        view->shape = NULL;
        view->strides = NULL;
    }
    view->suboffsets = NULL;
    view->internal = NULL;
    view->obj = Py_NewRef(op);
    return 0;

fail:
    view->obj = NULL;
    return -1;
}

static PyMethodDef matrix_methods[] = {
    {"get", (PyCFunction)(void (*)(void))matrix_get, METH_FASTCALL,
     PyDoc_STR("get(r, c) -> float")},
    {"set", (PyCFunction)(void (*)(void))matrix_set, METH_FASTCALL,
     PyDoc_STR("set(r, c, x)")},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef matrix_getset[] = {
    {"shape", matrix_get_shape, NULL, PyDoc_STR("(rows, cols)"), NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot matrix_slots[] = {
    {Py_tp_doc, (void *)PyDoc_STR("Matrix(rows, cols) -> a zero-filled float64 matrix "
                                  "(writable C-contiguous buffer)")},
    {Py_tp_new, matrix_new},
    {Py_tp_dealloc, matrix_dealloc},
    {Py_tp_methods, matrix_methods},
    {Py_tp_getset, matrix_getset},
    {Py_bf_getbuffer, matrix_getbuffer},
    {0, NULL},
};

static PyType_Spec matrix_spec = {
    .name = MODULE_NAME ".Matrix",
    .basicsize = sizeof(MatrixObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = matrix_slots,
};


/* ---------------------------------------------------------------------------------------- */
/* Module                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static PyTypeObject *
add_type(PyObject *module, PyType_Spec *spec, vectorcallfunc vectorcall)
{
    PyTypeObject *type = (PyTypeObject *)PyType_FromModuleAndSpec(module, spec, NULL);
    if (type == NULL) {
        return NULL;
    }
    /* Construction through vectorcall: T(...) then skips the argument tuple and type_call.
     * There is no spec slot for it before 3.14, so it is set on the fresh type, before any
     * Python code can see it. */
    type->tp_vectorcall = vectorcall;
    if (PyModule_AddType(module, type) < 0) {
        Py_DECREF(type);
        return NULL;
    }
    return type;  /* the state's strong reference */
}

static int
ref_exec(PyObject *module)
{
    ref_state *state = get_state(module);
    state->FloatBuffer_Type = add_type(module, &fb_spec, fb_vectorcall);
    if (state->FloatBuffer_Type == NULL) {
        return -1;
    }
    state->Matrix_Type = add_type(module, &matrix_spec, matrix_vectorcall);
    if (state->Matrix_Type == NULL) {
        return -1;
    }
    return 0;
}

static int
ref_traverse(PyObject *module, visitproc visit, void *arg)
{
    ref_state *state = get_state(module);
    Py_VISIT(state->FloatBuffer_Type);
    Py_VISIT(state->Matrix_Type);
    return 0;
}

static int
ref_clear(PyObject *module)
{
    ref_state *state = get_state(module);
    Py_CLEAR(state->FloatBuffer_Type);
    Py_CLEAR(state->Matrix_Type);
    return 0;
}

static void
ref_free(void *module)
{
    (void)ref_clear((PyObject *)module);
}

static PyModuleDef_Slot ref_slots[] = {
    {Py_mod_exec, ref_exec},
#if PY_VERSION_HEX >= 0x030C0000
    /* No process-wide state: every interpreter gets its own types. */
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    /* The objects are unsynchronised: they rely on the GIL, like pontoneer_demo. */
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef ref_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = MODULE_NAME,
    .m_doc = PyDoc_STR("Hand-written C reference of pontoneer's demo contract: FloatBuffer and "
                       "Matrix (benchmark anchor, never shipped)."),
    .m_size = sizeof(ref_state),
    .m_slots = ref_slots,
    .m_traverse = ref_traverse,
    .m_clear = ref_clear,
    .m_free = ref_free,
};

PyMODINIT_FUNC
REF_CAT(PyInit_, REF_MODULE_NAME)(void)
{
    return PyModuleDef_Init(&ref_module);
}
