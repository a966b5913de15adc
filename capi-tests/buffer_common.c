/*
 * buffer_common.c -- shared pieces of the buffer rules (see buffer_common.h).
 */
#include "buffer_common.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

const pbc_named pbc_named_requests[] = {
    {"PyBUF_SIMPLE", PyBUF_SIMPLE},
    {"PyBUF_WRITABLE", PyBUF_WRITABLE},
    {"PyBUF_FORMAT", PyBUF_FORMAT},
    {"PyBUF_ND", PyBUF_ND},
    {"PyBUF_STRIDES", PyBUF_STRIDES},
    {"PyBUF_C_CONTIGUOUS", PyBUF_C_CONTIGUOUS},
    {"PyBUF_F_CONTIGUOUS", PyBUF_F_CONTIGUOUS},
    {"PyBUF_ANY_CONTIGUOUS", PyBUF_ANY_CONTIGUOUS},
    {"PyBUF_INDIRECT", PyBUF_INDIRECT},
    {"PyBUF_CONTIG", PyBUF_CONTIG},
    {"PyBUF_CONTIG_RO", PyBUF_CONTIG_RO},
    {"PyBUF_STRIDED", PyBUF_STRIDED},
    {"PyBUF_STRIDED_RO", PyBUF_STRIDED_RO},
    {"PyBUF_RECORDS", PyBUF_RECORDS},
    {"PyBUF_RECORDS_RO", PyBUF_RECORDS_RO},
    {"PyBUF_FULL", PyBUF_FULL},
    {"PyBUF_FULL_RO", PyBUF_FULL_RO},
};
const int pbc_n_named_requests = (int)(sizeof pbc_named_requests / sizeof pbc_named_requests[0]);

/* names that are not requests but name a value we send */
static const pbc_named other_names[] = {
    {"PyBUF_READ", 0x100},
    {"PyBUF_WRITE", 0x200},
};

const int pbc_invalid_requests[] = {0x200, 0x400, 0x1000 | PyBUF_ND, -1, INT_MIN};
const int pbc_n_invalid_requests =
    (int)(sizeof pbc_invalid_requests / sizeof pbc_invalid_requests[0]);

static void append_name(char *out, size_t n, size_t *used, const char *name)
{
    int k = snprintf(out + *used, n - *used, "%s%s", *used ? " = " : "", name);
    if (k > 0 && (size_t)k < n - *used) *used += (size_t)k;
}

void pbc_flag_name(int f, char *out, size_t n)
{
    size_t used = 0;
    if (n == 0) return;
    out[0] = '\0';
    for (int i = 0; i < pbc_n_named_requests; i++)
        if (pbc_named_requests[i].value == f) append_name(out, n, &used, pbc_named_requests[i].name);
    for (size_t i = 0; i < sizeof other_names / sizeof other_names[0]; i++)
        if (other_names[i].value == f) append_name(out, n, &used, other_names[i].name);
}

int pbc_is_garbage_ptr(const void *p)
{
    uintptr_t g;
    memset(&g, PBC_GARBAGE, sizeof g);
    return (uintptr_t)p == g;
}

const char *pbc_describe_ptr(const void *p, char *buf, size_t n)
{
    if (p == NULL) snprintf(buf, n, "NULL");
    else if (pbc_is_garbage_ptr(p)) snprintf(buf, n, "%p (0xA5 fill pattern: never set)", p);
    else snprintf(buf, n, "%p (non-NULL)", p);
    return buf;
}

const char *pbc_garbage_note_ssize(Py_ssize_t v)
{
    Py_ssize_t g;
    memset(&g, PBC_GARBAGE, sizeof g);
    return v == g ? " (0xA5 fill pattern: never set)" : "";
}

const char *pbc_garbage_note_int(int v)
{
    int g;
    memset(&g, PBC_GARBAGE, sizeof g);
    return v == g ? " (0xA5 fill pattern: never set)" : "";
}

int pbc_running_pyver(void)
{
    const char *v = Py_GetVersion();
    int major = 0, minor = 0;
    if (sscanf(v, "%d.%d", &major, &minor) != 2) return 0;
    return major * 100 + minor;
}

void pbc_type_name(PyObject *type, char *out, size_t n)
{
    if (n == 0) return;
    out[0] = '\0';
    if (type == NULL || !PyType_Check(type)) {
        snprintf(out, n, "?");
        return;
    }
#if defined(Py_LIMITED_API)
    /* PyType_GetName is in the limited API since 3.11 (our minimum there). */
    PyObject *name = PyType_GetName((PyTypeObject *)type);
    const char *u = name ? PyUnicode_AsUTF8AndSize(name, NULL) : NULL;
    snprintf(out, n, "%s", u ? u : "?");
    if (!u) PyErr_Clear();
    Py_XDECREF(name);
#else
    snprintf(out, n, "%s", ((PyTypeObject *)type)->tp_name);
#endif
}

/* str(value) into out, clearing any error it raises. */
static void str_of(PyObject *value, char *out, size_t n)
{
    PyObject *s = value ? PyObject_Str(value) : NULL;
    const char *u = s ? PyUnicode_AsUTF8AndSize(s, NULL) : NULL;
    if (!u) PyErr_Clear();
    snprintf(out, n, "%s", u ? u : "?");
    Py_XDECREF(s);
}

void pbc_exc_message(char *out, size_t n)
{
    char tn[96], msg[512];
    if (n == 0) return;
    out[0] = '\0';
    if (!PyErr_Occurred()) {
        snprintf(out, n, "no exception set");
        return;
    }
#if PY_VERSION_HEX >= 0x030C0000 && (!defined(Py_LIMITED_API) || Py_LIMITED_API + 0 >= 0x030C0000)
    PyObject *ex = PyErr_GetRaisedException();
    pbc_type_name(ex ? (PyObject *)Py_TYPE(ex) : NULL, tn, sizeof tn);
    str_of(ex, msg, sizeof msg);
    PyErr_SetRaisedException(ex);
#else
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
    PyObject *t = NULL, *v = NULL, *tb = NULL;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    pbc_type_name(t, tn, sizeof tn);
    str_of(v, msg, sizeof msg);
    PyErr_Restore(t, v, tb);
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#endif
    snprintf(out, n, "%s: %s", tn, msg);
}

void pbc_fmt_array(const Py_ssize_t *a, int n, char *out, size_t cap)
{
    size_t used = 0;
    if (cap == 0) return;
    out[0] = '\0';
    int k = snprintf(out, cap, "(");
    if (k > 0) used = (size_t)k;
    int shown = n > 8 ? 8 : n;
    for (int i = 0; i < shown && used < cap; i++) {
        k = snprintf(out + used, cap - used, "%s%zd", i ? ", " : "", a[i]);
        if (k > 0) used += (size_t)k;
    }
    if (used < cap) snprintf(out + used, cap - used, "%s%s)", n > shown ? ", ..." : "",
                             n == 1 ? "," : "");
}

int pbc_contiguous(int ndim, const Py_ssize_t *shape, const Py_ssize_t *strides,
                   Py_ssize_t itemsize, Py_ssize_t len, char order)
{
    if (len == 0 || ndim == 0) return 1;
    if (strides == NULL) {
        if (order == 'C' || ndim <= 1) return 1;
        int big = 0;
        for (int i = 0; i < ndim; i++)
            if (shape[i] > 1) big++;
        return big <= 1;
    }
    Py_ssize_t sd = itemsize;
    if (order == 'C') {
        for (int i = ndim - 1; i >= 0; i--) {
            if (shape[i] > 1 && strides[i] != sd) return 0;
            sd *= shape[i];
        }
    }
    else {
        for (int i = 0; i < ndim; i++) {
            if (shape[i] > 1 && strides[i] != sd) return 0;
            sd *= shape[i];
        }
    }
    return 1;
}
