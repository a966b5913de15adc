"""The buffer-protocol rows of the pontoneer_demo contract (demo-contract.md).

Rows covered:
- FloatBuffer ``memoryview(b)``: format 'd', itemsize 8, ndim 1, shape (n,),
  strides (8,), read-only, C-contiguous (also for n == 0); ``tolist()``;
  ``bytes(b)`` (raw little-endian doubles); other consumers that ask for a
  simple byte buffer (struct, bytes.join); a writable request is refused.
- ``numpy.frombuffer(b, dtype=float64)``: equal items, zero-copy (same address
  on every export), not writeable.
- ``b.append(x)`` raises BufferError while any view is exported (memoryview,
  several memoryviews, a numpy array), contents unchanged, and works again
  once the last view is released.
- Objects that hold exports stay alive while a view exists, the view holds
  exactly one reference, and the memory is returned when the last reference
  goes.
- Matrix ``memoryview(m)``: format 'd', ndim 2, shape (rows, cols), strides
  (cols*8, 8), writable, C-contiguous (F-contiguous only when a dimension is
  <= 1); writes through the view are seen by ``m.get``; ``m.set`` while
  exported is seen through the view; cast('B') / tobytes agree with ``get``.
- ``numpy.asarray(m)``: writable 2-D float64 array sharing memory in both
  directions, the same address on every export.

The contents of a FloatBuffer are built with ``append`` / ``from_count`` only;
``b[i] = x`` while exported is in test_protocols.py.
"""

import ctypes
import gc
import io
import math
import struct
import sys

import pytest

from pontoneer_demo import FloatBuffer, Matrix

try:
    from hypothesis import HealthCheck, given, settings, strategies as st
except ImportError:  # the property tests are skipped, everything else runs
    given = None

if given is not None:
    prop_settings = settings(
        deadline=None,
        database=None,
        derandomize=True,
        max_examples=100,
        suppress_health_check=[HealthCheck.too_slow],
    )
else:

    def given(*args, **kwargs):
        return lambda f: pytest.mark.skip(reason="hypothesis is not installed")(f)

    def prop_settings(f):
        return f

    class _NoStrategies:
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    st = _NoStrategies()


ITEM_LISTS = [
    pytest.param([], id="empty"),
    pytest.param([1.5], id="one"),
    pytest.param([0.0, 1.0, 2.0], id="three"),
    pytest.param([-1.0, 2.5, 1e300, -0.0, math.inf, -math.inf, 5e-324], id="special"),
    pytest.param([i * 0.5 - 7.0 for i in range(100)], id="hundred"),
]

NONEMPTY_ITEM_LISTS = [p for p in ITEM_LISTS if p.values[0]]


def packed(items):
    return struct.pack("<%dd" % len(items), *items)


# --------------------------------------------------------------------------
# FloatBuffer: memoryview metadata and contents
# --------------------------------------------------------------------------


@pytest.mark.parametrize("items", ITEM_LISTS)
def test_memoryview_metadata(make_buffer, items):
    b = make_buffer(items)
    n = len(items)
    with memoryview(b) as v:
        assert v.obj is b
        assert v.format == "d"
        assert v.itemsize == 8
        assert v.ndim == 1
        assert v.shape == (n,)
        assert v.strides == (8,)
        assert v.suboffsets == ()
        assert v.readonly is True
        assert v.c_contiguous is True
        assert v.f_contiguous is True  # 1-D contiguous is both
        assert v.contiguous is True
        assert v.nbytes == 8 * n
        assert len(v) == n


@pytest.mark.parametrize("items", ITEM_LISTS)
def test_memoryview_tolist(make_buffer, items):
    b = make_buffer(items)
    with memoryview(b) as v:
        got = v.tolist()
    assert got == items
    assert [math.copysign(1.0, x) for x in got] == [math.copysign(1.0, x) for x in items]


@pytest.mark.parametrize("n", [0, 1, 3, 1000])
def test_from_count_through_memoryview(n):
    with memoryview(FloatBuffer.from_count(n)) as v:
        assert v.shape == (n,)
        assert v.tolist() == [float(i) for i in range(n)]


def test_memoryview_indexing_reads_items(make_buffer):
    b = make_buffer([1.0, 2.5, -3.0])
    with memoryview(b) as v:
        assert (v[0], v[1], v[2], v[-1]) == (1.0, 2.5, -3.0, -3.0)
        assert v[1:].tolist() == [2.5, -3.0]


@pytest.mark.parametrize("items", ITEM_LISTS)
def test_bytes_are_little_endian_doubles(make_buffer, items):
    b = make_buffer(items)
    assert bytes(b) == packed(items)
    assert bytearray(b) == packed(items)


@pytest.mark.parametrize("items", ITEM_LISTS)
def test_simple_byte_consumers(make_buffer, items):
    # struct and bytes.join ask for a plain byte buffer (PyBUF_SIMPLE).
    b = make_buffer(items)
    assert b"".join([b]) == packed(items)
    assert list(struct.unpack("<%dd" % len(items), b)) == items
    with memoryview(b) as v, v.cast("B") as raw:
        assert raw.tobytes() == packed(items)
        assert raw.readonly is True
        assert raw.nbytes == 8 * len(items)


@pytest.mark.parametrize("items", NONEMPTY_ITEM_LISTS)
def test_readonly_memoryview_refuses_writes(make_buffer, items):
    b = make_buffer(items)
    with memoryview(b) as v:
        with pytest.raises(TypeError):
            v[0] = 42.0
        with pytest.raises(TypeError):
            v[:1] = memoryview(packed([42.0])).cast("d")
        with v.cast("B") as raw:
            with pytest.raises(TypeError):
                raw[0] = 0xFF
        assert v.tolist() == items
    assert bytes(b) == packed(items)


def test_writable_request_is_refused_without_leaking_an_export(make_buffer):
    b = make_buffer([1.0, 2.0])
    before = sys.getrefcount(b)
    with pytest.raises((TypeError, BufferError)):
        io.BytesIO(bytes(range(16))).readinto(b)
    assert bytes(b) == packed([1.0, 2.0])
    assert sys.getrefcount(b) == before
    b.append(3.0)  # no export was left behind
    assert b.sum() == 6.0


# --------------------------------------------------------------------------
# FloatBuffer: numpy
# --------------------------------------------------------------------------


@pytest.mark.parametrize("items", ITEM_LISTS)
def test_numpy_frombuffer_contents(np, make_buffer, items):
    b = make_buffer(items)
    a = np.frombuffer(b, dtype=np.float64)
    assert a.dtype == np.float64
    assert a.shape == (len(items),)
    assert a.tolist() == items
    assert a.flags.writeable is False


@pytest.mark.parametrize("items", NONEMPTY_ITEM_LISTS)
def test_numpy_frombuffer_is_zero_copy(np, make_buffer, items):
    b = make_buffer(items)
    a1 = np.frombuffer(b, dtype=np.float64)
    a2 = np.frombuffer(b, dtype=np.float64)
    with memoryview(b) as v:
        a3 = np.frombuffer(v, dtype=np.float64)
        addr = a1.__array_interface__["data"][0]
        assert addr != 0
        assert a2.__array_interface__["data"][0] == addr
        assert a3.__array_interface__["data"][0] == addr
        assert np.shares_memory(a1, a3)
        del a3


def test_numpy_frombuffer_array_is_read_only(np, make_buffer):
    b = make_buffer([1.0, 2.0])
    a = np.frombuffer(b, dtype=np.float64)
    with pytest.raises(ValueError):
        a[0] = 5.0
    assert bytes(b) == packed([1.0, 2.0])


# --------------------------------------------------------------------------
# FloatBuffer: resizing is refused while exported
# --------------------------------------------------------------------------


def test_append_refused_while_memoryview_exported(make_buffer):
    b = make_buffer([1.0, 2.0, 3.0])
    with memoryview(b) as v:
        with pytest.raises(BufferError):
            b.append(4.0)
        assert v.tolist() == [1.0, 2.0, 3.0]
        assert b.sum() == 6.0
        assert repr(b) == "FloatBuffer(len=3)"
    b.append(4.0)
    assert b.sum() == 10.0
    assert bytes(b) == packed([1.0, 2.0, 3.0, 4.0])


def test_append_refused_for_empty_buffer_while_exported():
    b = FloatBuffer()
    with memoryview(b) as v:
        with pytest.raises(BufferError):
            b.append(1.0)
        assert v.tolist() == []
    b.append(1.0)
    assert b.sum() == 1.0


@pytest.mark.parametrize("release_first", [0, 1], ids=["release-first-view-first", "release-second-view-first"])
def test_append_refused_until_last_view_released(make_buffer, release_first):
    b = make_buffer([1.0])
    views = [memoryview(b), memoryview(b)]
    views.pop(release_first).release()
    with pytest.raises(BufferError):
        b.append(2.0)
    assert views[0].tolist() == [1.0]
    views[0].release()
    b.append(2.0)
    assert bytes(b) == packed([1.0, 2.0])


def test_append_refused_while_derived_view_alive(make_buffer):
    # A slice or a cast of a memoryview keeps the underlying export alive.
    b = make_buffer([1.0, 2.0])
    v = memoryview(b)
    tail = v[1:]
    raw = v.cast("B")
    v.release()
    with pytest.raises(BufferError):
        b.append(3.0)
    tail.release()
    with pytest.raises(BufferError):
        b.append(3.0)
    raw.release()
    b.append(3.0)
    assert b.sum() == 6.0


def test_append_refused_while_numpy_array_alive(np, make_buffer):
    b = make_buffer([1.0, 2.0])
    a = np.frombuffer(b, dtype=np.float64)
    part = a[1:]
    del a
    gc.collect()
    with pytest.raises(BufferError):
        b.append(3.0)
    assert part.tolist() == [2.0]
    del part
    gc.collect()
    b.append(3.0)
    assert b.sum() == 6.0


def test_view_holds_one_reference(make_buffer):
    b = make_buffer([1.0])
    before = sys.getrefcount(b)
    with memoryview(b):
        assert sys.getrefcount(b) == before + 1
    assert sys.getrefcount(b) == before


def test_many_exports_are_all_released(make_buffer):
    b = make_buffer([1.0, 2.0])
    before = sys.getrefcount(b)
    for _ in range(10_000):
        with memoryview(b) as v:
            v.tolist()
        bytes(b)
    assert sys.getrefcount(b) == before
    b.append(3.0)
    assert b.sum() == 6.0


def test_numpy_exports_are_all_released(np, make_buffer):
    b = make_buffer([1.0, 2.0])
    before = sys.getrefcount(b)
    for _ in range(1_000):
        np.frombuffer(b, dtype=np.float64).sum()
    gc.collect()
    assert sys.getrefcount(b) == before
    b.append(3.0)


def test_view_keeps_buffer_alive():
    v = memoryview(FloatBuffer.from_count(3))
    gc.collect()
    assert v.tolist() == [0.0, 1.0, 2.0]
    assert type(v.obj) is FloatBuffer
    assert repr(v.obj) == "FloatBuffer(len=3)"
    v.release()


def test_numpy_array_keeps_buffer_alive(np):
    a = np.frombuffer(FloatBuffer.from_count(4), dtype=np.float64)
    gc.collect()
    assert a.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert a.sum() == 6.0


def test_buffer_released_with_last_view():
    gc.collect()
    before = sys.getrefcount(FloatBuffer)
    for _ in range(1_000):
        v = memoryview(FloatBuffer.from_count(2))
        del v
    gc.collect()
    assert sys.getrefcount(FloatBuffer) == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@pytest.mark.parametrize("kind", ["FloatBuffer", "Matrix"])
def test_memory_returned_after_last_view(run_isolated, kind):
    # The view is the last owner: when it is released the memory must go too.
    # 64 rounds of 4 MiB would leak 256 MiB.
    proc = run_isolated(
        f"""
import os
from pontoneer_demo import FloatBuffer, Matrix

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def work():
    if {kind!r} == "FloatBuffer":
        v = memoryview(FloatBuffer.from_count(2**19))
        assert v[-1] == 2**19 - 1
    else:
        v = memoryview(Matrix(1024, 512))
        for r in range(1024):
            v[r, 0] = 1.0
    v.release()

work()
before = rss()
for _ in range(64):
    work()
grown = rss() - before
assert grown < 32 * 2**20, "RSS grew by %d MiB" % (grown // 2**20)
print("OK", grown)
"""
    )
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.startswith("OK "), proc.stdout


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=64))
@prop_settings
def test_property_bytes_match_appended_items(items):
    b = FloatBuffer()
    for x in items:
        b.append(x)
    raw = packed(items)
    assert bytes(b) == raw
    with memoryview(b) as v:
        assert v.shape == (len(items),)
        assert v.tobytes() == raw


# --------------------------------------------------------------------------
# Matrix: memoryview
# --------------------------------------------------------------------------

MATRIX_SHAPES = [(1, 1), (2, 3), (3, 2), (1, 4), (4, 1), (5, 7)]
EMPTY_MATRIX_SHAPES = [(0, 3), (3, 0), (0, 0)]


def fill(m):
    """Give every cell a distinct value through ``m.set``; return them row-major."""
    rows, cols = m.shape
    for r in range(rows):
        for c in range(cols):
            m.set(r, c, r * 100.0 + c + 0.25)
    return [[r * 100.0 + c + 0.25 for c in range(cols)] for r in range(rows)]


def cells(m):
    rows, cols = m.shape
    return [[m.get(r, c) for c in range(cols)] for r in range(rows)]


@pytest.mark.parametrize("rows, cols", MATRIX_SHAPES + EMPTY_MATRIX_SHAPES)
def test_matrix_memoryview_metadata(rows, cols):
    m = Matrix(rows, cols)
    with memoryview(m) as v:
        assert v.obj is m
        assert v.format == "d"
        assert v.itemsize == 8
        assert v.ndim == 2
        assert v.shape == (rows, cols)
        assert v.strides == (cols * 8, 8)
        assert v.suboffsets == ()
        assert v.readonly is False
        assert v.c_contiguous is True
        assert v.contiguous is True
        assert v.f_contiguous is (rows <= 1 or cols <= 1)
        assert v.nbytes == rows * cols * 8


@pytest.mark.parametrize("rows, cols", MATRIX_SHAPES + EMPTY_MATRIX_SHAPES)
def test_matrix_memoryview_tolist_matches_get(rows, cols):
    m = Matrix(rows, cols)
    assert memoryview(m).tolist() == [[0.0] * cols for _ in range(rows)]
    expected = fill(m)
    with memoryview(m) as v:
        assert v.tolist() == expected
    assert cells(m) == expected


@pytest.mark.parametrize("rows, cols", MATRIX_SHAPES)
def test_matrix_write_through_memoryview_seen_by_get(rows, cols):
    m = Matrix(rows, cols)
    with memoryview(m) as v:
        for r in range(rows):
            for c in range(cols):
                v[r, c] = -(r * 10.0 + c) - 0.5
    assert cells(m) == [[-(r * 10.0 + c) - 0.5 for c in range(cols)] for r in range(rows)]


def test_matrix_set_while_exported_seen_through_view():
    m = Matrix(2, 3)
    with memoryview(m) as v:
        m.set(1, 2, 4.5)
        m.set(0, 1, -1.0)
        assert v[1, 2] == 4.5
        assert v[0, 1] == -1.0
        assert v.tolist() == [[0.0, -1.0, 0.0], [0.0, 0.0, 4.5]]
        v[1, 0] = 2.0
        assert m.get(1, 0) == 2.0


@pytest.mark.parametrize("rows, cols", MATRIX_SHAPES)
def test_matrix_bytes_are_row_major_doubles(rows, cols):
    m = Matrix(rows, cols)
    expected = fill(m)
    flat = [x for row in expected for x in row]
    with memoryview(m) as v:
        assert v.tobytes() == packed(flat)
        with v.cast("B") as raw:
            assert raw.readonly is False
            assert raw.tobytes() == packed(flat)
    assert bytes(m) == packed(flat)


@pytest.mark.parametrize("rows, cols", MATRIX_SHAPES)
def test_matrix_write_through_byte_cast_seen_by_get(rows, cols):
    m = Matrix(rows, cols)
    r, c = rows - 1, cols - 1
    with memoryview(m) as v, v.cast("B") as raw:
        offset = (r * cols + c) * 8
        raw[offset:offset + 8] = struct.pack("<d", 6.75)
    assert m.get(r, c) == 6.75
    if rows * cols > 1:
        assert m.get(0, 0) == 0.0


def test_matrix_view_holds_one_reference():
    m = Matrix(2, 2)
    before = sys.getrefcount(m)
    with memoryview(m):
        assert sys.getrefcount(m) == before + 1
    assert sys.getrefcount(m) == before
    for _ in range(10_000):
        with memoryview(m) as v:
            v[0, 0] = 1.0
    assert sys.getrefcount(m) == before


def test_matrix_view_keeps_matrix_alive():
    v = memoryview(Matrix(2, 3))
    gc.collect()
    v[1, 2] = 8.0
    assert v.tolist() == [[0.0, 0.0, 0.0], [0.0, 0.0, 8.0]]
    assert v.obj.get(1, 2) == 8.0
    v.release()


def test_matrix_released_with_last_view():
    gc.collect()
    before = sys.getrefcount(Matrix)
    for _ in range(1_000):
        v = memoryview(Matrix(2, 2))
        del v
    gc.collect()
    assert sys.getrefcount(Matrix) == before


def test_matrix_ctypes_view_shares_memory(np):
    # A third consumer (ctypes, which needs a writable C-contiguous buffer)
    # sees the same memory as numpy and as get/set.
    m = Matrix(2, 3)
    arr = (ctypes.c_double * 6).from_buffer(m)
    assert ctypes.addressof(arr) == np.asarray(m).__array_interface__["data"][0]
    arr[5] = 2.5
    assert m.get(1, 2) == 2.5
    m.set(0, 1, 1.25)
    assert arr[1] == 1.25
    del arr


# --------------------------------------------------------------------------
# Matrix: numpy
# --------------------------------------------------------------------------


@pytest.mark.parametrize("rows, cols", MATRIX_SHAPES + EMPTY_MATRIX_SHAPES)
def test_numpy_asarray_shape_and_flags(np, rows, cols):
    m = Matrix(rows, cols)
    a = np.asarray(m)
    assert type(a) is np.ndarray
    assert a.shape == (rows, cols)
    assert a.dtype == np.float64
    assert a.flags.writeable is True
    assert a.flags.c_contiguous is True
    assert a.tolist() == cells(m)


@pytest.mark.parametrize("rows, cols", MATRIX_SHAPES)
def test_numpy_asarray_contents(np, rows, cols):
    m = Matrix(rows, cols)
    expected = fill(m)
    assert np.asarray(m).tolist() == expected


def test_numpy_write_seen_by_get(np):
    m = Matrix(2, 3)
    a = np.asarray(m)
    a[1, 2] = 5.0
    assert m.get(1, 2) == 5.0
    a[0, :] = [1.0, 2.0, 3.0]
    assert [m.get(0, c) for c in range(3)] == [1.0, 2.0, 3.0]
    a *= 2.0
    assert cells(m) == [[2.0, 4.0, 6.0], [0.0, 0.0, 10.0]]


def test_set_seen_through_numpy_array(np):
    m = Matrix(2, 3)
    a = np.asarray(m)
    m.set(0, 1, 7.0)
    assert a[0, 1] == 7.0
    assert a.sum() == 7.0


def test_numpy_asarray_same_address_each_time(np):
    m = Matrix(3, 4)
    a1 = np.asarray(m)
    a2 = np.asarray(m)
    addr = a1.__array_interface__["data"][0]
    assert addr != 0
    assert a2.__array_interface__["data"][0] == addr
    assert np.shares_memory(a1, a2)
    with memoryview(m) as v:
        a3 = np.asarray(v)
        assert a3.__array_interface__["data"][0] == addr
        del a3


def test_numpy_array_keeps_matrix_alive(np):
    a = np.asarray(Matrix(2, 2))
    gc.collect()
    a[:] = 3.0
    assert a.sum() == 12.0
    assert a.tolist() == [[3.0, 3.0], [3.0, 3.0]]


@given(
    st.integers(min_value=1, max_value=6).flatmap(
        lambda rows: st.integers(min_value=1, max_value=6).flatmap(
            lambda cols: st.tuples(
                st.just(rows),
                st.just(cols),
                st.lists(
                    st.tuples(
                        st.integers(0, rows - 1),
                        st.integers(0, cols - 1),
                        st.floats(allow_nan=False),
                    ),
                    max_size=20,
                ),
            )
        )
    )
)
@prop_settings
def test_property_matrix_set_matches_memoryview(case):
    rows, cols, writes = case
    m = Matrix(rows, cols)
    expected = [[0.0] * cols for _ in range(rows)]
    for r, c, x in writes:
        m.set(r, c, x)
        expected[r][c] = x
    with memoryview(m) as v:
        assert v.tolist() == expected
        assert v.tobytes() == packed([x for row in expected for x in row])
