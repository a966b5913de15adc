"""Buffer exports of the test-only exporters in ``pontoneer_testmod``.

Covered (see tests/testmod/src/types.rs for the exporters):
- The 15 format exporters ``Array_<fmt>``: memoryview metadata and contents,
  ``bytes()`` against ``struct``, numpy ``asarray`` / ``frombuffer`` zero-copy
  (address equals ``data_ptr()``), numpy dtype from the struct char, writes
  through numpy and memoryview visible on the next export.
- ``Empty`` (read-only, zero items), ``FortranMatrix`` (column-major, writable),
  ``Reversed`` (read-only, stride -8, buf points at the last item), ``Cube``
  (3-D C-order int32): metadata, numpy views, contents, read-only refusals.
- Export counting (``exports(obj)``), views keeping the exporter alive and
  holding exactly one reference.
- The raw ``PyObject_GetBuffer`` answer for a table of request flags, checked
  field by field against memoryview's policy (buffer-rules.md e.4/e.6):
  refusals raise BufferError and leave no export; grants fill exactly the
  requested fields, point at the right memory and are released with
  ``PyBuffer_Release``.
"""

import ctypes
import gc
import struct
import sys

import pytest

import pontoneer_testmod as tm


# ---------------------------------------------------------------------------
# helpers


@pytest.fixture
def numpy_mod():
    return pytest.importorskip("numpy")


# (class name, struct format char)
FORMAT_EXPORTERS = [
    ("Array_b", "b"),
    ("Array_B", "B"),
    ("Array_h", "h"),
    ("Array_H", "H"),
    ("Array_i", "i"),
    ("Array_I", "I"),
    ("Array_l", "l"),
    ("Array_L", "L"),
    ("Array_q", "q"),
    ("Array_Q", "Q"),
    ("Array_n", "n"),
    ("Array_N", "N"),
    ("Array_f", "f"),
    ("Array_d", "d"),
    ("Array_bool", "?"),
]

FORMAT_PARAMS = [pytest.param(name, fmt, id=name) for name, fmt in FORMAT_EXPORTERS]
# 300 items makes the 8-bit formats wrap (Rust `as` conversion).
SIZES = [0, 1, 5, 300]


def expected_item(fmt, i):
    """Item ``i`` of ``Array_<fmt>(n)``: ``i`` converted with Rust ``as`` (bool: i % 2)."""
    if fmt == "?":
        return bool(i % 2)
    if fmt in "fd":
        return float(i)
    bits = 8 * struct.calcsize("@" + fmt)
    v = i & ((1 << bits) - 1)
    if fmt.islower() and v >= 1 << (bits - 1):  # b h i l q n are signed
        v -= 1 << bits
    return v


def expected_items(fmt, n):
    return [expected_item(fmt, i) for i in range(n)]


def write_value(fmt, old):
    """A value different from ``old`` that fits the format."""
    if fmt == "?":
        return not old
    if fmt in "fd":
        return old + 0.5
    return 7 if old != 7 else 9


def c_strides(shape, itemsize):
    strides = []
    step = itemsize
    for extent in reversed(shape):
        strides.append(step)
        step *= extent
    return tuple(reversed(strides))


def nitems(shape):
    n = 1
    for extent in shape:
        n *= extent
    return n


def is_c_contig(shape, strides, itemsize):
    """abstract.c ``_IsCContiguous`` (no suboffsets)."""
    if nitems(shape) == 0:
        return True
    step = itemsize
    for extent, stride in zip(reversed(shape), reversed(strides)):
        if extent > 1 and stride != step:
            return False
        step *= extent
    return True


def is_f_contig(shape, strides, itemsize):
    """abstract.c ``_IsFortranContiguous`` (no suboffsets)."""
    if nitems(shape) == 0:
        return True
    step = itemsize
    for extent, stride in zip(shape, strides):
        if extent > 1 and stride != step:
            return False
        step *= extent
    return True


def memoryview_flags(shape, strides, itemsize):
    """(c_contiguous, f_contiguous) as memoryobject.c ``init_flags`` computes them.

    For ndim 1 memoryview uses ``shape[0] == 1 || strides[0] == itemsize``
    (so an empty negative-stride view is *not* contiguous for memoryview even
    though ``PyBuffer_IsContiguous`` says it is); for ndim > 1 it asks
    ``PyBuffer_IsContiguous``.
    """
    if len(shape) == 1:
        flag = shape[0] == 1 or strides[0] == itemsize
        return flag, flag
    return is_c_contig(shape, strides, itemsize), is_f_contig(shape, strides, itemsize)


def nested(shape, item_at, prefix=()):
    if len(prefix) == len(shape):
        return item_at(prefix)
    return [nested(shape, item_at, prefix + (k,)) for k in range(shape[len(prefix)])]


def all_indices(shape, order="C"):
    idx = [()]
    dims = range(len(shape)) if order == "C" else reversed(range(len(shape)))
    for d in dims:
        if order == "C":
            idx = [i + (k,) for i in idx for k in range(shape[d])]
        else:
            idx = [(k,) + i for i in idx for k in range(shape[d])]
    return idx


def np_address(a):
    return a.__array_interface__["data"][0]


# ---------------------------------------------------------------------------
# Format exporters


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name,fmt", FORMAT_PARAMS)
def test_format_memoryview_metadata(name, fmt, n):
    x = getattr(tm, name)(n)
    itemsize = struct.calcsize("@" + fmt)
    with memoryview(x) as m:
        assert m.format == fmt
        assert m.itemsize == itemsize
        assert m.ndim == 1
        assert m.shape == (n,)
        assert m.strides == (itemsize,)
        assert m.suboffsets == ()
        assert m.readonly is False
        assert m.c_contiguous is True
        assert m.f_contiguous is True
        assert m.contiguous is True
        assert m.nbytes == n * itemsize
        assert m.tolist() == expected_items(fmt, n)
        assert m.obj is x


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name,fmt", FORMAT_PARAMS)
def test_format_bytes_match_struct(name, fmt, n):
    x = getattr(tm, name)(n)
    assert bytes(x) == struct.pack("@%d%s" % (n, fmt), *expected_items(fmt, n))


@pytest.mark.parametrize("n", [1, 5, 300])
@pytest.mark.parametrize("name,fmt", FORMAT_PARAMS)
def test_format_numpy_asarray_zero_copy(numpy_mod, name, fmt, n):
    np = numpy_mod
    x = getattr(tm, name)(n)
    a = np.asarray(x)
    assert a.dtype == np.dtype(fmt)
    assert a.shape == (n,)
    assert a.flags.c_contiguous
    assert a.flags.writeable
    assert np_address(a) == x.data_ptr()
    assert a.tolist() == expected_items(fmt, n)
    b = np.asarray(x)
    assert np_address(b) == np_address(a)


@pytest.mark.parametrize("n", [1, 5, 300])
@pytest.mark.parametrize("name,fmt", FORMAT_PARAMS)
def test_format_numpy_frombuffer_zero_copy(numpy_mod, name, fmt, n):
    np = numpy_mod
    x = getattr(tm, name)(n)
    a = np.frombuffer(x, dtype=np.dtype(fmt))
    assert a.shape == (n,)
    assert np_address(a) == x.data_ptr()
    assert a.flags.writeable
    assert a.tolist() == expected_items(fmt, n)


@pytest.mark.parametrize("name,fmt", FORMAT_PARAMS)
def test_format_numpy_empty(numpy_mod, name, fmt):
    np = numpy_mod
    a = np.asarray(getattr(tm, name)(0))
    assert a.dtype == np.dtype(fmt)
    assert a.shape == (0,)
    assert a.tolist() == []


@pytest.mark.parametrize("name,fmt", FORMAT_PARAMS)
def test_format_numpy_write_visible_on_reexport(numpy_mod, name, fmt):
    np = numpy_mod
    n = 5
    x = getattr(tm, name)(n)
    a = np.asarray(x)
    new = write_value(fmt, expected_item(fmt, 3))
    a[3] = new
    del a
    gc.collect()
    want = expected_items(fmt, n)
    want[3] = new
    with memoryview(x) as m:
        assert m.tolist() == want
    assert np.asarray(x).tolist() == want


@pytest.mark.parametrize("name,fmt", FORMAT_PARAMS)
def test_format_memoryview_write_visible_on_reexport(numpy_mod, name, fmt):
    np = numpy_mod
    n = 4
    x = getattr(tm, name)(n)
    new = write_value(fmt, expected_item(fmt, 0))
    with memoryview(x) as m:
        m[0] = new
    want = expected_items(fmt, n)
    want[0] = new
    with memoryview(x) as m:
        assert m.tolist() == want
    a = np.asarray(x)
    assert a.tolist() == want
    assert np_address(a) == x.data_ptr()


def test_format_numpy_dtype_sizes_agree_with_struct(numpy_mod):
    """The exporters' itemsizes are the C sizes numpy and struct use for the char."""
    np = numpy_mod
    for name, fmt in FORMAT_EXPORTERS:
        with memoryview(getattr(tm, name)(1)) as m:
            assert m.itemsize == np.dtype(fmt).itemsize == struct.calcsize("@" + fmt), name


# ---------------------------------------------------------------------------
# Empty


def test_empty_memoryview_metadata():
    e = tm.Empty()
    with memoryview(e) as m:
        assert m.format == "d"
        assert m.itemsize == 8
        assert m.ndim == 1
        assert m.shape == (0,)
        assert m.strides == (8,)
        assert m.readonly is True
        assert m.c_contiguous is True
        assert m.f_contiguous is True
        assert m.contiguous is True
        assert m.nbytes == 0
        assert m.tolist() == []
        assert m.obj is e
    assert bytes(e) == b""


def test_empty_numpy(numpy_mod):
    np = numpy_mod
    e = tm.Empty()
    for a in (np.asarray(e), np.frombuffer(e, dtype=np.float64)):
        assert a.dtype == np.float64
        assert a.shape == (0,)
        assert not a.flags.writeable
        assert a.tolist() == []


def test_empty_refuses_writes(numpy_mod):
    np = numpy_mod
    e = tm.Empty()
    with memoryview(e) as m:
        with pytest.raises(TypeError, match="read-only"):
            m[:] = b""
    a = np.asarray(e)
    with pytest.raises(ValueError, match="read-only"):
        a[:] = 1.0
    del a
    assert tm.exports(e) == 0


# ---------------------------------------------------------------------------
# FortranMatrix

MATRIX_SHAPES = [(2, 3), (3, 2), (1, 4), (4, 1), (1, 1), (5, 7), (0, 3), (3, 0)]
MATRIX_PARAMS = [pytest.param(r, c, id="%dx%d" % (r, c)) for r, c in MATRIX_SHAPES]


@pytest.mark.parametrize("rows,cols", MATRIX_PARAMS)
def test_fortran_memoryview_metadata(rows, cols):
    fm = tm.FortranMatrix(rows, cols)
    with memoryview(fm) as m:
        assert m.format == "d"
        assert m.itemsize == 8
        assert m.ndim == 2
        assert m.shape == (rows, cols)
        assert m.strides == (8, 8 * rows)
        assert m.readonly is False
        assert m.f_contiguous is True
        assert m.c_contiguous is (rows <= 1 or cols <= 1)
        assert m.contiguous is True
        assert m.nbytes == rows * cols * 8
        assert m.tolist() == [[float(r * 100 + c) for c in range(cols)] for r in range(rows)]
        assert m.obj is fm


@pytest.mark.parametrize("rows,cols", MATRIX_PARAMS)
def test_fortran_bytes_are_c_order(rows, cols):
    """bytes() copies in logical C order (PyBuffer_ToContiguous 'C')."""
    fm = tm.FortranMatrix(rows, cols)
    items = [float(r * 100 + c) for r in range(rows) for c in range(cols)]
    assert bytes(fm) == struct.pack("@%dd" % len(items), *items)


@pytest.mark.parametrize("rows,cols", MATRIX_PARAMS)
def test_fortran_numpy(numpy_mod, rows, cols):
    np = numpy_mod
    fm = tm.FortranMatrix(rows, cols)
    a = np.asarray(fm)
    assert a.dtype == np.float64
    assert a.shape == (rows, cols)
    assert a.flags.f_contiguous
    assert a.flags.c_contiguous is (rows <= 1 or cols <= 1)
    assert a.flags.writeable
    for r in range(rows):
        for c in range(cols):
            assert a[r, c] == r * 100 + c
            assert fm.get(r, c) == r * 100 + c
    b = np.asarray(fm)
    assert np_address(b) == np_address(a)


@pytest.mark.parametrize("rows,cols", [p for p in MATRIX_PARAMS if p.values[0] * p.values[1]])
def test_fortran_numpy_writes_visible(numpy_mod, rows, cols):
    np = numpy_mod
    fm = tm.FortranMatrix(rows, cols)
    a = np.asarray(fm)
    a[0, 0] = 42.0
    a[rows - 1, cols - 1] = -1.5  # the same cell as [0, 0] for 1x1
    assert fm.get(rows - 1, cols - 1) == -1.5
    assert fm.get(0, 0) == (-1.5 if rows * cols == 1 else 42.0)
    del a
    b = np.asarray(fm)
    assert b[rows - 1, cols - 1] == -1.5
    assert b[0, 0] == fm.get(0, 0)
    # cells not written keep r*100 + c
    for r in range(rows):
        for c in range(cols):
            if (r, c) not in ((0, 0), (rows - 1, cols - 1)):
                assert b[r, c] == r * 100 + c
    with memoryview(fm) as m:
        m[0, 0] = 7.0
    assert fm.get(0, 0) == 7.0
    assert b[0, 0] == 7.0


def test_fortran_refuses_simple_consumers(numpy_mod):
    """A 2x3 Fortran matrix is not C-contiguous: requests without STRIDES fail."""
    np = numpy_mod
    fm = tm.FortranMatrix(2, 3)
    with pytest.raises(BufferError):
        np.frombuffer(fm, dtype=np.float64)
    assert tm.exports(fm) == 0


# ---------------------------------------------------------------------------
# Reversed

REVERSED_SIZES = [0, 1, 2, 5]


@pytest.mark.parametrize("n", REVERSED_SIZES)
def test_reversed_memoryview_metadata(n):
    r = tm.Reversed(n)
    c_flag, f_flag = memoryview_flags((n,), (-8,), 8)
    with memoryview(r) as m:
        assert m.format == "d"
        assert m.itemsize == 8
        assert m.ndim == 1
        assert m.shape == (n,)
        assert m.strides == (-8,)
        assert m.readonly is True
        assert m.c_contiguous is c_flag
        assert m.f_contiguous is f_flag
        assert m.contiguous is (c_flag or f_flag)
        assert m.nbytes == n * 8
        assert m.tolist() == [float(i) for i in reversed(range(n))]
        assert m.obj is r


@pytest.mark.parametrize("n", [2, 5])
def test_reversed_is_not_c_contiguous(n):
    with memoryview(tm.Reversed(n)) as m:
        assert m.c_contiguous is False
        assert m.f_contiguous is False
        assert m.contiguous is False


@pytest.mark.parametrize("n", REVERSED_SIZES)
def test_reversed_bytes_in_view_order(n):
    data = bytes(tm.Reversed(n))
    assert len(data) == 8 * n
    assert list(struct.unpack("@%dd" % n, data)) == [float(n - 1 - i) for i in range(n)]


@pytest.mark.parametrize("n", REVERSED_SIZES)
def test_reversed_numpy(numpy_mod, n):
    np = numpy_mod
    r = tm.Reversed(n)
    a = np.asarray(r)
    assert a.dtype == np.float64
    assert a.shape == (n,)
    assert a.strides == (-8,)
    assert not a.flags.writeable
    assert a.tolist() == [float(n - 1 - i) for i in range(n)]
    b = np.asarray(r)
    assert np_address(b) == np_address(a)
    if n:
        # a's data pointer is the last stored item: data start + (n-1)*8, and
        # the storage read forward from the data start is [0, 1, ..., n-1].
        start = np_address(a) - (n - 1) * 8
        stored = struct.unpack("@%dd" % n, ctypes.string_at(start, 8 * n))
        assert list(stored) == [float(i) for i in range(n)]
        assert np.shares_memory(a, b)


@pytest.mark.parametrize("n", REVERSED_SIZES)
def test_reversed_refuses_writes(numpy_mod, n):
    np = numpy_mod
    r = tm.Reversed(n)
    with memoryview(r) as m:
        with pytest.raises(TypeError, match="read-only"):
            m[:] = m.tobytes() if n else b""
    a = np.asarray(r)
    with pytest.raises(ValueError, match="read-only"):
        a[...] = 1.0
    assert a.tolist() == [float(n - 1 - i) for i in range(n)]
    del a
    assert tm.exports(r) == 0


@pytest.mark.parametrize("n", [2, 5])
def test_reversed_refuses_simple_consumers(numpy_mod, n):
    np = numpy_mod
    r = tm.Reversed(n)
    with pytest.raises(BufferError):
        np.frombuffer(r, dtype=np.float64)
    assert tm.exports(r) == 0


def test_reversed_single_item_simple_consumer(numpy_mod):
    np = numpy_mod
    a = np.frombuffer(tm.Reversed(1), dtype=np.float64)
    assert a.tolist() == [0.0]


# ---------------------------------------------------------------------------
# Cube

CUBE_SHAPES = [(2, 3, 4), (1, 1, 1), (3, 1, 2), (1, 1, 5), (2, 1, 1), (0, 2, 3)]
CUBE_PARAMS = [pytest.param(*s, id="x".join(map(str, s))) for s in CUBE_SHAPES]


def cube_item(idx):
    i, j, k = idx
    return i * 100 + j * 10 + k


@pytest.mark.parametrize("a,b,c", CUBE_PARAMS)
def test_cube_memoryview_metadata(a, b, c):
    cube = tm.Cube(a, b, c)
    shape = (a, b, c)
    strides = c_strides(shape, 4)
    with memoryview(cube) as m:
        assert m.format == "i"
        assert m.itemsize == 4
        assert m.ndim == 3
        assert m.shape == shape
        assert m.strides == strides
        assert m.readonly is False
        assert m.c_contiguous is True
        assert m.f_contiguous is is_f_contig(shape, strides, 4)
        assert m.contiguous is True
        assert m.nbytes == a * b * c * 4
        assert m.tolist() == nested(shape, cube_item)
        assert m.obj is cube
    assert bytes(cube) == struct.pack(
        "@%di" % (a * b * c), *[cube_item(ix) for ix in all_indices(shape)]
    )


def test_cube_is_not_fortran_when_two_dims_exceed_one():
    with memoryview(tm.Cube(2, 3, 4)) as m:
        assert m.f_contiguous is False


@pytest.mark.parametrize("a,b,c", CUBE_PARAMS)
def test_cube_numpy(numpy_mod, a, b, c):
    np = numpy_mod
    cube = tm.Cube(a, b, c)
    arr = np.asarray(cube)
    assert arr.dtype == np.dtype("i") == np.int32
    assert arr.shape == (a, b, c)
    assert arr.flags.c_contiguous
    assert arr.flags.writeable
    for ix in all_indices((a, b, c)):
        assert arr[ix] == cube_item(ix)
    assert np_address(np.asarray(cube)) == np_address(arr)


def test_cube_numpy_writes_visible(numpy_mod):
    np = numpy_mod
    cube = tm.Cube(2, 3, 4)
    arr = np.asarray(cube)
    arr[1, 2, 3] = -5
    arr[0, 0, 0] = 2**31 - 1
    del arr
    with memoryview(cube) as m:
        assert m[1, 2, 3] == -5
        assert m[0, 0, 0] == 2**31 - 1
        assert m[1, 2, 2] == 122
        m[0, 1, 2] = 999
    assert np.asarray(cube)[0, 1, 2] == 999


# ---------------------------------------------------------------------------
# Export counting and lifetime

COUNTED = [
    pytest.param(lambda: tm.Empty(), id="Empty"),
    pytest.param(lambda: tm.FortranMatrix(2, 3), id="FortranMatrix"),
    pytest.param(lambda: tm.Reversed(3), id="Reversed"),
    pytest.param(lambda: tm.Cube(2, 2, 2), id="Cube"),
    pytest.param(lambda: tm.Faulty(0), id="Faulty"),
    pytest.param(lambda: tm.Array_d(3), id="Array_d"),
    pytest.param(lambda: tm.Array_B(3), id="Array_B"),
    pytest.param(lambda: tm.Array_i(3), id="Array_i"),
]


@pytest.mark.parametrize("factory", COUNTED)
def test_exports_one_view(factory):
    x = factory()
    assert tm.exports(x) == 0
    m = memoryview(x)
    assert tm.exports(x) == 1
    m.release()
    assert tm.exports(x) == 0


@pytest.mark.parametrize("factory", COUNTED)
def test_exports_two_views(factory):
    x = factory()
    m1 = memoryview(x)
    m2 = memoryview(x)
    assert tm.exports(x) == 2
    m1.release()
    assert tm.exports(x) == 1
    del m2
    gc.collect()
    assert tm.exports(x) == 0


@pytest.mark.parametrize("factory", COUNTED)
def test_exports_numpy(numpy_mod, factory):
    np = numpy_mod
    x = factory()
    a = np.asarray(x)
    assert tm.exports(x) == 1
    b = np.asarray(x)
    assert tm.exports(x) == 2
    del a, b
    gc.collect()
    assert tm.exports(x) == 0


@pytest.mark.parametrize("factory", COUNTED)
def test_view_holds_one_reference_and_keeps_object_alive(factory):
    x = factory()
    expected = memoryview(x).tolist()  # released at once (refcount drop)
    before = sys.getrefcount(x)
    m = memoryview(x)
    assert sys.getrefcount(x) == before + 1
    del x
    gc.collect()
    obj = m.obj
    assert tm.exports(obj) == 1
    assert m.tolist() == expected
    rc = sys.getrefcount(obj)
    m.release()
    assert tm.exports(obj) == 0
    assert sys.getrefcount(obj) == rc - 1


@pytest.mark.parametrize("name,fmt", FORMAT_PARAMS)
def test_format_view_holds_one_reference(name, fmt):
    x = getattr(tm, name)(4)
    before = sys.getrefcount(x)
    m = memoryview(x)
    assert sys.getrefcount(x) == before + 1
    del x
    assert m.tolist() == expected_items(fmt, 4)
    obj = m.obj
    rc = sys.getrefcount(obj)
    m.release()
    assert sys.getrefcount(obj) == rc - 1


def test_exports_rejects_unknown_objects():
    with pytest.raises(TypeError, match="does not know"):
        tm.exports(object())
    with pytest.raises(TypeError, match="does not know"):
        tm.exports(tm.Array_h(1))


# ---------------------------------------------------------------------------
# PyObject_GetBuffer from ctypes

PyBUF_SIMPLE = 0
PyBUF_WRITABLE = 0x0001
PyBUF_FORMAT = 0x0004
PyBUF_ND = 0x0008
PyBUF_STRIDES = 0x0018
PyBUF_C_CONTIGUOUS = 0x0038
PyBUF_F_CONTIGUOUS = 0x0058
PyBUF_ANY_CONTIGUOUS = 0x0098
PyBUF_INDIRECT = 0x0118


class Py_buffer(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),  # not py_object: ctypes must not touch the refcount
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.POINTER(ctypes.c_ssize_t)),
        ("strides", ctypes.POINTER(ctypes.c_ssize_t)),
        ("suboffsets", ctypes.POINTER(ctypes.c_ssize_t)),
        ("internal", ctypes.c_void_p),
    ]


# Private function objects (``pythonapi[name]`` makes a new one each time): the cached
# ``pythonapi.PyObject_GetBuffer`` is shared with every other test module, and
# argtypes set there with another Py_buffer class would clash with this one.
_api = ctypes.pythonapi
PyObject_GetBuffer = _api["PyObject_GetBuffer"]
PyObject_GetBuffer.argtypes = [ctypes.py_object, ctypes.POINTER(Py_buffer), ctypes.c_int]
PyObject_GetBuffer.restype = ctypes.c_int
PyBuffer_Release = _api["PyBuffer_Release"]
PyBuffer_Release.argtypes = [ctypes.POINTER(Py_buffer)]
PyBuffer_Release.restype = None
PyBuffer_IsContiguous = _api["PyBuffer_IsContiguous"]
PyBuffer_IsContiguous.argtypes = [ctypes.POINTER(Py_buffer), ctypes.c_char]
PyBuffer_IsContiguous.restype = ctypes.c_int

REQUESTS = [
    pytest.param(PyBUF_SIMPLE, id="SIMPLE"),
    pytest.param(PyBUF_WRITABLE, id="WRITABLE"),
    pytest.param(PyBUF_FORMAT, id="SIMPLE|FORMAT"),
    pytest.param(PyBUF_ND, id="ND"),
    pytest.param(PyBUF_ND | PyBUF_WRITABLE, id="CONTIG"),
    pytest.param(PyBUF_ND | PyBUF_FORMAT, id="ND|FORMAT"),
    pytest.param(PyBUF_STRIDES, id="STRIDES"),
    pytest.param(PyBUF_STRIDES | PyBUF_WRITABLE, id="STRIDED"),
    pytest.param(PyBUF_STRIDES | PyBUF_FORMAT, id="RECORDS_RO"),
    pytest.param(PyBUF_STRIDES | PyBUF_FORMAT | PyBUF_WRITABLE, id="RECORDS"),
    pytest.param(PyBUF_C_CONTIGUOUS, id="C_CONTIGUOUS"),
    pytest.param(PyBUF_F_CONTIGUOUS, id="F_CONTIGUOUS"),
    pytest.param(PyBUF_ANY_CONTIGUOUS, id="ANY_CONTIGUOUS"),
    pytest.param(PyBUF_F_CONTIGUOUS | PyBUF_ANY_CONTIGUOUS, id="F|ANY_CONTIGUOUS"),
    pytest.param(PyBUF_C_CONTIGUOUS | PyBUF_F_CONTIGUOUS, id="C|F_CONTIGUOUS"),
    pytest.param(PyBUF_INDIRECT, id="INDIRECT"),
    pytest.param(PyBUF_INDIRECT | PyBUF_FORMAT, id="FULL_RO"),
    pytest.param(PyBUF_INDIRECT | PyBUF_FORMAT | PyBUF_WRITABLE, id="FULL"),
]


class Spec:
    """What an exporter exports, written down independently of pontoneer."""

    def __init__(self, factory, fmt, shape, strides, readonly, item_at, data_ptr=False):
        self.factory = factory
        self.fmt = fmt
        self.itemsize = struct.calcsize("@" + fmt)
        self.shape = shape
        self.strides = strides
        self.readonly = readonly
        self.item_at = item_at
        self.data_ptr = data_ptr  # whether buf must equal obj.data_ptr() (+ offset)
        self.c = is_c_contig(shape, strides, self.itemsize)
        self.f = is_f_contig(shape, strides, self.itemsize)


def _fortran_spec(rows, cols):
    return Spec(
        lambda: tm.FortranMatrix(rows, cols),
        "d",
        (rows, cols),
        (8, 8 * rows),
        False,
        lambda ix: float(ix[0] * 100 + ix[1]),
    )


def _reversed_spec(n):
    return Spec(lambda: tm.Reversed(n), "d", (n,), (-8,), True, lambda ix: float(n - 1 - ix[0]))


def _cube_spec(a, b, c):
    return Spec(lambda: tm.Cube(a, b, c), "i", (a, b, c), c_strides((a, b, c), 4), False, cube_item)


SPECS = [
    pytest.param(_fortran_spec(2, 3), id="FortranMatrix(2,3)"),
    pytest.param(_fortran_spec(1, 3), id="FortranMatrix(1,3)"),
    pytest.param(_fortran_spec(3, 1), id="FortranMatrix(3,1)"),
    pytest.param(_fortran_spec(0, 2), id="FortranMatrix(0,2)"),
    pytest.param(_reversed_spec(4), id="Reversed(4)"),
    pytest.param(_reversed_spec(1), id="Reversed(1)"),
    pytest.param(_reversed_spec(0), id="Reversed(0)"),
    pytest.param(_cube_spec(2, 3, 4), id="Cube(2,3,4)"),
    pytest.param(_cube_spec(1, 1, 3), id="Cube(1,1,3)"),
    pytest.param(Spec(lambda: tm.Empty(), "d", (0,), (8,), True, None), id="Empty"),
    pytest.param(
        Spec(lambda: tm.Array_d(3), "d", (3,), (8,), False, lambda ix: float(ix[0]), True),
        id="Array_d(3)",
    ),
    pytest.param(
        Spec(lambda: tm.Array_B(5), "B", (5,), (1,), False, lambda ix: ix[0], True),
        id="Array_B(5)",
    ),
]


def refusal_reason(spec, flags):
    """Why memoryview's algorithm (buffer-rules.md e.4) refuses ``flags``, or None."""

    def req(x):
        return (flags & x) == x

    if flags & PyBUF_WRITABLE and spec.readonly:
        return "not writable"
    if req(PyBUF_C_CONTIGUOUS) and not spec.c:
        return "C_CONTIGUOUS on a non-C-contiguous buffer"
    if req(PyBUF_F_CONTIGUOUS) and not spec.f:
        return "F_CONTIGUOUS on a non-F-contiguous buffer"
    if req(PyBUF_ANY_CONTIGUOUS) and not (spec.c or spec.f):
        return "ANY_CONTIGUOUS on a non-contiguous buffer"
    if not req(PyBUF_STRIDES) and not spec.c:
        return "no STRIDES on a non-C-contiguous buffer"
    if not req(PyBUF_ND) and flags & PyBUF_FORMAT:
        return "FORMAT without ND"
    return None


def _read_item(addr, fmt, itemsize):
    return struct.unpack("@" + fmt, ctypes.string_at(addr, itemsize))[0]


@pytest.mark.parametrize("flags", REQUESTS)
@pytest.mark.parametrize("spec", SPECS)
def test_getbuffer_request(spec, flags):
    x = spec.factory()
    refcount = sys.getrefcount(x)
    view = Py_buffer()
    reason = refusal_reason(spec, flags)
    if reason is not None:
        with pytest.raises(BufferError):
            PyObject_GetBuffer(x, ctypes.byref(view), flags)
        assert tm.exports(x) == 0, reason
        assert sys.getrefcount(x) == refcount
        assert not view.obj, "a refused request must leave view.obj NULL"
        return

    assert PyObject_GetBuffer(x, ctypes.byref(view), flags) == 0
    try:
        assert view.obj == id(x)
        assert sys.getrefcount(x) == refcount + 1
        assert tm.exports(x) == 1
        n = nitems(spec.shape)
        assert view.len == n * spec.itemsize
        assert view.itemsize == spec.itemsize
        assert view.buf
        expect_ro = 0 if flags & PyBUF_WRITABLE else int(spec.readonly)
        assert view.readonly == expect_ro
        assert not view.suboffsets

        if flags & PyBUF_FORMAT:
            assert view.format == spec.fmt.encode()
        else:
            assert view.format is None

        if (flags & PyBUF_ND) == PyBUF_ND:
            assert view.ndim == len(spec.shape)
            assert tuple(view.shape[i] for i in range(view.ndim)) == spec.shape
        else:
            assert view.ndim == 1
            assert not view.shape

        if (flags & PyBUF_STRIDES) == PyBUF_STRIDES:
            assert view.strides
            strides = tuple(view.strides[i] for i in range(view.ndim))
            assert strides == spec.strides
        else:
            assert not view.strides
            # Without strides the memory is C-contiguous by definition.
            strides = c_strides(spec.shape, spec.itemsize)

        # Contiguity as abstract.c sees this view.
        assert PyBuffer_IsContiguous(ctypes.byref(view), b"C") == int(spec.c or not view.strides)
        if view.ndim == len(spec.shape):
            assert PyBuffer_IsContiguous(ctypes.byref(view), b"F") == int(spec.f)

        # The memory: every item where buf + index . strides says it is.
        for ix in all_indices(spec.shape):
            offset = sum(i * s for i, s in zip(ix, strides))
            got = _read_item(view.buf + offset, spec.fmt, spec.itemsize)
            assert got == spec.item_at(ix), ix
        if spec.data_ptr:
            assert view.buf == x.data_ptr()
    finally:
        PyBuffer_Release(ctypes.byref(view))
    assert not view.obj
    assert tm.exports(x) == 0
    assert sys.getrefcount(x) == refcount


@pytest.mark.parametrize("n", [1, 4])
def test_getbuffer_reversed_buf_is_last_item(n):
    """Reversed's buf is data start + (n-1)*8: the first view item is the last stored one."""
    r = tm.Reversed(n)
    view = Py_buffer()
    assert PyObject_GetBuffer(r, ctypes.byref(view), PyBUF_STRIDES | PyBUF_FORMAT) == 0
    try:
        start = view.buf - (n - 1) * 8
        stored = struct.unpack("@%dd" % n, ctypes.string_at(start, 8 * n))
        assert list(stored) == [float(i) for i in range(n)]
        assert _read_item(view.buf, "d", 8) == float(n - 1)
    finally:
        PyBuffer_Release(ctypes.byref(view))
    assert tm.exports(r) == 0


@pytest.mark.parametrize("name,fmt", FORMAT_PARAMS)
def test_getbuffer_format_exporters(name, fmt):
    x = getattr(tm, name)(6)
    itemsize = struct.calcsize("@" + fmt)
    refcount = sys.getrefcount(x)
    for flags in (PyBUF_SIMPLE, PyBUF_WRITABLE, PyBUF_ND | PyBUF_FORMAT, PyBUF_INDIRECT | PyBUF_FORMAT | PyBUF_WRITABLE):
        view = Py_buffer()
        assert PyObject_GetBuffer(x, ctypes.byref(view), flags) == 0
        try:
            assert view.buf == x.data_ptr()
            assert view.obj == id(x)
            assert view.len == 6 * itemsize
            assert view.itemsize == itemsize
            assert view.readonly == 0
            assert view.ndim == 1
            assert view.format == (fmt.encode() if flags & PyBUF_FORMAT else None)
            assert bool(view.shape) == ((flags & PyBUF_ND) == PyBUF_ND)
            assert bool(view.strides) == ((flags & PyBUF_STRIDES) == PyBUF_STRIDES)
            if view.shape:
                assert view.shape[0] == 6
            if view.strides:
                assert view.strides[0] == itemsize
            assert not view.suboffsets
            data = ctypes.string_at(view.buf, view.len)
            assert data == struct.pack("@6" + fmt, *expected_items(fmt, 6))
        finally:
            PyBuffer_Release(ctypes.byref(view))
        assert sys.getrefcount(x) == refcount
    with pytest.raises(BufferError):
        PyObject_GetBuffer(x, ctypes.byref(Py_buffer()), PyBUF_FORMAT)
    assert sys.getrefcount(x) == refcount
