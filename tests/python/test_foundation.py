"""The non-protocol rows of the pontoneer_demo contract (demo-contract.md).

Rows covered:
- FloatBuffer: ``FloatBuffer()`` (empty), ``FloatBuffer.from_count(n)`` (static,
  ``[0.0, 1.0, ..., n-1]``), ``b.append(x)``, ``b.sum()``, ``repr(b)``.
- Matrix: ``Matrix(rows, cols)`` (zero-filled), ``m.shape``, ``m.get(r, c)`` /
  ``m.set(r, c, x)`` with IndexError out of range.
- "Arguments and sizes": counts and sizes go through ``__index__`` (float, str,
  None are TypeErrors), a wrong number of arguments is a TypeError naming the
  function, negative sizes are ValueErrors, sizes beyond Py_ssize_t are
  OverflowErrors, sizes that cannot be allocated raise MemoryError /
  OverflowError / ValueError without aborting (also under a memory limit), item
  values go through ``float(x)``.
- Object model (SPEC §4): methods refuse a foreign ``self``, the types are final,
  instances release their type, argument reference counts are unchanged on
  error paths, memory is returned when the last reference goes, a re-entrant
  ``append`` cannot corrupt the buffer.

Only the constructors, ``from_count``, ``append``, ``sum``, ``repr``, ``shape``,
``get`` and ``set`` are used here, so these tests do not depend on the sequence,
number or buffer protocol slots (test_protocols.py / test_buffer.py).

Negative indices for ``get``/``set``: the contract does not say they count from
the end, so they are treated as out of range (IndexError).
"""

import fractions
import gc
import math
import sys

import pytest

import pontoneer_demo
from pontoneer_demo import FloatBuffer, Matrix

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses /proc and RLIMIT_AS"
)


class FloatLike:
    """Converts to float only through ``__float__``."""

    def __init__(self, value):
        self.value = value

    def __float__(self):
        return self.value


class IndexLike:
    """Converts only through ``__index__`` (an integer, not a float)."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value


class Boom(Exception):
    pass


class RaisingFloat:
    def __float__(self):
        raise Boom("__float__ failed")


class RaisingIndex:
    def __index__(self):
        raise Boom("__index__ failed")


def triangular(n):
    """sum(range(n)) as a float: the expected ``from_count(n).sum()``."""
    return float(n * (n - 1) // 2)


def matrix_values(m):
    rows, cols = m.shape
    return [[m.get(r, c) for c in range(cols)] for r in range(rows)]


# Values accepted wherever the contract says "item values go through float(x)".
ACCEPTED_VALUES = [
    pytest.param(1.5, 1.5, id="float"),
    pytest.param(-2.25, -2.25, id="negative-float"),
    pytest.param(3, 3.0, id="int"),
    pytest.param(2**53, 9007199254740992.0, id="big-int"),
    pytest.param(True, 1.0, id="bool"),
    pytest.param(FloatLike(0.75), 0.75, id="__float__"),
    pytest.param(IndexLike(4), 4.0, id="__index__"),
    pytest.param(fractions.Fraction(1, 4), 0.25, id="Fraction"),
    pytest.param(math.inf, math.inf, id="inf"),
]

# Values that float(x) as a number conversion refuses (no __float__/__index__).
REJECTED_VALUES = [
    pytest.param("1.0", id="str"),
    pytest.param(b"1.0", id="bytes"),
    pytest.param(None, id="None"),
    pytest.param(object(), id="object"),
    pytest.param([1.0], id="list"),
    pytest.param(1j, id="complex"),
    pytest.param(FloatLike, id="a-class"),
]


# --------------------------------------------------------------------------
# FloatBuffer(), from_count, sum, repr
# --------------------------------------------------------------------------


def test_empty_buffer():
    b = FloatBuffer()
    assert type(b) is FloatBuffer
    total = b.sum()
    assert type(total) is float
    assert total == 0.0
    assert repr(b) == "FloatBuffer(len=0)"


def test_constructor_gives_independent_objects():
    a, b = FloatBuffer(), FloatBuffer()
    assert a is not b
    a.append(5.0)
    assert repr(a) == "FloatBuffer(len=1)"
    assert repr(b) == "FloatBuffer(len=0)"
    assert b.sum() == 0.0


@pytest.mark.parametrize("n", [0, 1, 2, 3, 10, 1000])
def test_from_count_contents(n):
    b = FloatBuffer.from_count(n)
    assert type(b) is FloatBuffer
    assert repr(b) == f"FloatBuffer(len={n})"
    assert b.sum() == triangular(n)


def test_from_count_is_static():
    # Callable on the class, through an unbound reference and on an instance;
    # in every case the only argument is the count (no implicit self/cls).
    via_class = FloatBuffer.from_count(4)
    fn = FloatBuffer.from_count
    via_ref = fn(5)
    inst = FloatBuffer()
    via_instance = inst.from_count(6)
    assert type(via_class) is type(via_ref) is type(via_instance) is FloatBuffer
    assert (repr(via_class), via_class.sum()) == ("FloatBuffer(len=4)", 6.0)
    assert (repr(via_ref), via_ref.sum()) == ("FloatBuffer(len=5)", 10.0)
    assert (repr(via_instance), via_instance.sum()) == ("FloatBuffer(len=6)", 15.0)
    assert via_instance is not inst
    assert repr(inst) == "FloatBuffer(len=0)"


def test_from_count_returns_new_objects():
    a = FloatBuffer.from_count(3)
    b = FloatBuffer.from_count(3)
    assert a is not b
    a.append(10.0)
    assert (a.sum(), b.sum()) == (13.0, 3.0)


@pytest.mark.parametrize(
    "count, n",
    [
        pytest.param(IndexLike(3), 3, id="__index__"),
        pytest.param(True, 1, id="True"),
        pytest.param(False, 0, id="False"),
    ],
)
def test_from_count_accepts_index_objects(count, n):
    b = FloatBuffer.from_count(count)
    assert repr(b) == f"FloatBuffer(len={n})"
    assert b.sum() == triangular(n)


def test_from_count_accepts_numpy_integer(np):
    b = FloatBuffer.from_count(np.int64(4))
    assert repr(b) == "FloatBuffer(len=4)"
    assert b.sum() == 6.0


def test_sum_is_exact_and_does_not_modify():
    b = FloatBuffer()
    for x in (0.5, 0.25, 4.0, -1.0, 1024.0):
        b.append(x)
    assert b.sum() == 1027.75
    assert b.sum() == 1027.75
    assert repr(b) == "FloatBuffer(len=5)"


def test_sum_propagates_nan():
    b = FloatBuffer.from_count(3)
    b.append(math.nan)
    assert math.isnan(b.sum())


@pytest.mark.parametrize("n", [0, 1, 7, 12345])
def test_repr(n):
    b = FloatBuffer.from_count(n)
    assert repr(b) == f"FloatBuffer(len={n})"
    b.append(1.0)
    assert repr(b) == f"FloatBuffer(len={n + 1})"


# --------------------------------------------------------------------------
# append
# --------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", ACCEPTED_VALUES)
def test_append_converts_through_float(value, expected):
    b = FloatBuffer()
    assert b.append(value) is None
    assert repr(b) == "FloatBuffer(len=1)"
    total = b.sum()
    assert type(total) is float
    assert total == expected


def test_append_accumulates_in_order_of_calls():
    b = FloatBuffer.from_count(2)  # [0.0, 1.0]
    for x in (0.5, 2, FloatLike(0.25), IndexLike(8)):
        b.append(x)
    assert repr(b) == "FloatBuffer(len=6)"
    assert b.sum() == 11.75


def test_append_numpy_scalar(np):
    b = FloatBuffer()
    b.append(np.float64(2.5))
    b.append(np.int32(3))
    assert b.sum() == 5.5
    assert repr(b) == "FloatBuffer(len=2)"


@pytest.mark.parametrize("value", REJECTED_VALUES)
def test_append_rejects_non_numbers(value):
    b = FloatBuffer()
    b.append(1.5)
    with pytest.raises(TypeError):
        b.append(value)
    assert repr(b) == "FloatBuffer(len=1)"
    assert b.sum() == 1.5


def test_append_int_too_large_for_float():
    # float(2**1100) is an OverflowError; append goes through float(x).
    b = FloatBuffer()
    with pytest.raises(OverflowError):
        b.append(2**1100)
    assert repr(b) == "FloatBuffer(len=0)"


@pytest.mark.parametrize("value", [RaisingFloat(), FloatLike("not a float")], ids=["raises", "returns-str"])
def test_append_propagates_conversion_errors(value):
    b = FloatBuffer.from_count(2)
    expected = Boom if isinstance(value, RaisingFloat) else TypeError
    with pytest.raises(expected):
        b.append(value)
    assert repr(b) == "FloatBuffer(len=2)"
    assert b.sum() == 1.0


def test_reentrant_append_cannot_corrupt():
    # __float__ appends to the very buffer being appended to.  Either the inner
    # append completes before the outer one stores its value, or the layer
    # refuses the conflicting access with RuntimeError (SPEC §4); never a crash.
    b = FloatBuffer()

    class Sneaky:
        def __float__(self):
            b.append(1.0)
            return 7.0

    try:
        b.append(Sneaky())
    except RuntimeError:
        assert repr(b) == "FloatBuffer(len=0)"
        assert b.sum() == 0.0
    else:
        assert repr(b) == "FloatBuffer(len=2)"
        assert b.sum() == 8.0
    b.append(0.5)
    assert b.sum() in (0.5, 8.5)


# --------------------------------------------------------------------------
# Matrix, shape, get, set
# --------------------------------------------------------------------------

SHAPES = [(1, 1), (2, 3), (3, 2), (1, 4), (4, 1), (5, 5)]
EMPTY_SHAPES = [(0, 0), (0, 3), (3, 0)]


@pytest.mark.parametrize("rows, cols", SHAPES)
def test_matrix_is_zero_filled(rows, cols):
    m = Matrix(rows, cols)
    assert type(m) is Matrix
    values = matrix_values(m)
    assert values == [[0.0] * cols for _ in range(rows)]
    assert all(type(v) is float for row in values for v in row)


@pytest.mark.parametrize("rows, cols", SHAPES + EMPTY_SHAPES)
def test_matrix_shape(rows, cols):
    m = Matrix(rows, cols)
    shape = m.shape
    assert type(shape) is tuple
    assert shape == (rows, cols)
    assert all(type(x) is int for x in shape)


@pytest.mark.parametrize("rows, cols", EMPTY_SHAPES)
def test_empty_matrix_has_no_cells(rows, cols):
    m = Matrix(rows, cols)
    with pytest.raises(IndexError):
        m.get(0, 0)
    with pytest.raises(IndexError):
        m.set(0, 0, 1.0)


def test_matrix_accepts_index_objects():
    assert Matrix(IndexLike(2), IndexLike(3)).shape == (2, 3)
    assert Matrix(True, 2).shape == (1, 2)


def test_matrix_accepts_numpy_integers(np):
    assert Matrix(np.int64(2), np.uint8(3)).shape == (2, 3)


@pytest.mark.parametrize("rows, cols", SHAPES)
def test_set_get_round_trip_every_cell(rows, cols):
    m = Matrix(rows, cols)
    for r in range(rows):
        for c in range(cols):
            assert m.set(r, c, r * cols + c + 0.5) is None
    assert matrix_values(m) == [[r * cols + c + 0.5 for c in range(cols)] for r in range(rows)]
    assert m.shape == (rows, cols)


def test_matrices_are_independent():
    a, b = Matrix(2, 2), Matrix(2, 2)
    a.set(1, 1, 9.0)
    assert a.get(1, 1) == 9.0
    assert b.get(1, 1) == 0.0


def test_set_overwrites():
    m = Matrix(2, 2)
    m.set(0, 1, 1.0)
    m.set(0, 1, -3.5)
    assert m.get(0, 1) == -3.5


def test_get_set_accept_index_objects():
    m = Matrix(2, 3)
    m.set(IndexLike(1), IndexLike(2), 4.0)
    assert m.get(1, 2) == 4.0
    assert m.get(IndexLike(1), True + 1) == 4.0


@pytest.mark.parametrize("value, expected", ACCEPTED_VALUES)
def test_set_converts_through_float(value, expected):
    m = Matrix(2, 3)
    m.set(1, 2, value)
    got = m.get(1, 2)
    assert type(got) is float
    assert got == expected


@pytest.mark.parametrize("value", REJECTED_VALUES)
def test_set_rejects_non_numbers(value):
    m = Matrix(2, 3)
    m.set(1, 2, 1.5)
    with pytest.raises(TypeError):
        m.set(1, 2, value)
    assert m.get(1, 2) == 1.5


def test_set_propagates_conversion_error():
    m = Matrix(1, 1)
    with pytest.raises(Boom):
        m.set(0, 0, RaisingFloat())
    assert m.get(0, 0) == 0.0


OUT_OF_RANGE_2x3 = [
    (2, 0), (0, 3), (2, 3), (100, 0), (0, 100),
    (-1, 0), (0, -1), (-1, -1), (-3, 0), (0, -4),
]


@pytest.mark.parametrize("r, c", OUT_OF_RANGE_2x3)
def test_get_out_of_range(r, c):
    with pytest.raises(IndexError):
        Matrix(2, 3).get(r, c)


@pytest.mark.parametrize("r, c", OUT_OF_RANGE_2x3)
def test_set_out_of_range(r, c):
    m = Matrix(2, 3)
    with pytest.raises(IndexError):
        m.set(r, c, 1.0)
    assert matrix_values(m) == [[0.0] * 3] * 2


@pytest.mark.parametrize(
    "r, c", [(2**70, 0), (0, 2**70), (-(2**70), 0), (0, -(2**70)), (2**63, 0)]
)
def test_get_set_index_beyond_ssize_t(r, c):
    # The contract fixes IndexError for out-of-range cells; for an index that
    # does not even fit Py_ssize_t an OverflowError is also acceptable.
    m = Matrix(2, 3)
    with pytest.raises((IndexError, OverflowError)):
        m.get(r, c)
    with pytest.raises((IndexError, OverflowError)):
        m.set(r, c, 1.0)
    assert matrix_values(m) == [[0.0] * 3] * 2


# --------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------

CONSTRUCTOR_NAMES = ("__new__", "__init__")

WRONG_ARGUMENT_COUNT = [
    pytest.param(lambda: FloatBuffer.from_count(), ("from_count",), id="from_count()"),
    pytest.param(lambda: FloatBuffer.from_count(1, 2), ("from_count",), id="from_count(1, 2)"),
    pytest.param(lambda: FloatBuffer().append(), ("append",), id="append()"),
    pytest.param(lambda: FloatBuffer().append(1.0, 2.0), ("append",), id="append(1.0, 2.0)"),
    pytest.param(lambda: FloatBuffer().sum(1), ("sum",), id="sum(1)"),
    pytest.param(lambda: FloatBuffer.sum(), ("sum",), id="FloatBuffer.sum()"),
    pytest.param(lambda: Matrix(2, 3).get(0), ("get",), id="get(0)"),
    pytest.param(lambda: Matrix(2, 3).get(0, 0, 0), ("get",), id="get(0, 0, 0)"),
    pytest.param(lambda: Matrix(2, 3).set(0, 0), ("set",), id="set(0, 0)"),
    pytest.param(lambda: Matrix(2, 3).set(0, 0, 1.0, 2.0), ("set",), id="set(0, 0, 1.0, 2.0)"),
    pytest.param(lambda: FloatBuffer(1), ("FloatBuffer",) + CONSTRUCTOR_NAMES, id="FloatBuffer(1)"),
    pytest.param(lambda: FloatBuffer(1.0, 2.0), ("FloatBuffer",) + CONSTRUCTOR_NAMES, id="FloatBuffer(1.0, 2.0)"),
    pytest.param(lambda: Matrix(), ("Matrix",) + CONSTRUCTOR_NAMES, id="Matrix()"),
    pytest.param(lambda: Matrix(2), ("Matrix",) + CONSTRUCTOR_NAMES, id="Matrix(2)"),
    pytest.param(lambda: Matrix(2, 3, 4), ("Matrix",) + CONSTRUCTOR_NAMES, id="Matrix(2, 3, 4)"),
]


@pytest.mark.parametrize("call, names", WRONG_ARGUMENT_COUNT)
def test_wrong_argument_count(call, names):
    with pytest.raises(TypeError) as info:
        call()
    message = str(info.value)
    assert any(name in message for name in names), message


WRONG_ARGUMENT_TYPE = [
    pytest.param(lambda: FloatBuffer.from_count(2.0), id="from_count(2.0)"),
    pytest.param(lambda: FloatBuffer.from_count("3"), id="from_count('3')"),
    pytest.param(lambda: FloatBuffer.from_count(None), id="from_count(None)"),
    pytest.param(lambda: FloatBuffer.from_count(FloatLike(3.0)), id="from_count(__float__)"),
    pytest.param(lambda: FloatBuffer.from_count([3]), id="from_count([3])"),
    pytest.param(lambda: Matrix(1.5, 2), id="Matrix(1.5, 2)"),
    pytest.param(lambda: Matrix(2, 1.5), id="Matrix(2, 1.5)"),
    pytest.param(lambda: Matrix(2.0, 2), id="Matrix(2.0, 2)"),
    pytest.param(lambda: Matrix("2", 2), id="Matrix('2', 2)"),
    pytest.param(lambda: Matrix(None, 2), id="Matrix(None, 2)"),
    pytest.param(lambda: Matrix(2, None), id="Matrix(2, None)"),
    pytest.param(lambda: Matrix(FloatLike(2.0), 2), id="Matrix(__float__, 2)"),
    pytest.param(lambda: Matrix(2, 3).get(0.0, 0), id="get(0.0, 0)"),
    pytest.param(lambda: Matrix(2, 3).get(0, "0"), id="get(0, '0')"),
    pytest.param(lambda: Matrix(2, 3).get(None, 0), id="get(None, 0)"),
    pytest.param(lambda: Matrix(2, 3).set(0.0, 0, 1.0), id="set(0.0, 0, 1.0)"),
    pytest.param(lambda: Matrix(2, 3).set(0, None, 1.0), id="set(0, None, 1.0)"),
    pytest.param(lambda: Matrix(2, 3).set(0, 0, "1.0"), id="set(0, 0, '1.0')"),
    pytest.param(lambda: Matrix(2, 3).set(0, 0, None), id="set(0, 0, None)"),
    pytest.param(lambda: FloatBuffer().append("1.0"), id="append('1.0')"),
    pytest.param(lambda: FloatBuffer().append(None), id="append(None)"),
    pytest.param(lambda: FloatBuffer().append(object()), id="append(object())"),
]


@pytest.mark.parametrize("call", WRONG_ARGUMENT_TYPE)
def test_wrong_argument_type(call):
    with pytest.raises(TypeError):
        call()


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: FloatBuffer.from_count(RaisingIndex()), id="from_count"),
        pytest.param(lambda: Matrix(RaisingIndex(), 2), id="Matrix-rows"),
        pytest.param(lambda: Matrix(2, RaisingIndex()), id="Matrix-cols"),
        pytest.param(lambda: Matrix(2, 2).get(RaisingIndex(), 0), id="get"),
        pytest.param(lambda: Matrix(2, 2).set(0, RaisingIndex(), 1.0), id="set"),
    ],
)
def test_index_conversion_error_propagates(call):
    # As for range(): the exception raised by __index__ reaches the caller.
    with pytest.raises(Boom):
        call()


NEGATIVE_SIZES = [
    pytest.param(lambda: FloatBuffer.from_count(-1), (ValueError,), id="from_count(-1)"),
    pytest.param(lambda: FloatBuffer.from_count(-(2**62)), (ValueError,), id="from_count(-2**62)"),
    pytest.param(lambda: Matrix(-1, 2), (ValueError,), id="Matrix(-1, 2)"),
    pytest.param(lambda: Matrix(2, -1), (ValueError,), id="Matrix(2, -1)"),
    pytest.param(lambda: Matrix(-1, -1), (ValueError,), id="Matrix(-1, -1)"),
    pytest.param(lambda: Matrix(-1, 0), (ValueError,), id="Matrix(-1, 0)"),
    # beyond Py_ssize_t: "ValueError (or OverflowError for values beyond Py_ssize_t)"
    pytest.param(lambda: FloatBuffer.from_count(-(2**70)), (ValueError, OverflowError), id="from_count(-2**70)"),
    pytest.param(lambda: Matrix(-(2**70), 1), (ValueError, OverflowError), id="Matrix(-2**70, 1)"),
]


@pytest.mark.parametrize("call, expected", NEGATIVE_SIZES)
def test_negative_sizes(call, expected):
    with pytest.raises(expected):
        call()


BEYOND_SIZE_LIMITS = [
    pytest.param(lambda: FloatBuffer.from_count(2**70), id="from_count(2**70)"),
    pytest.param(lambda: FloatBuffer.from_count(2**64), id="from_count(2**64)"),
    pytest.param(lambda: Matrix(2**70, 1), id="Matrix(2**70, 1)"),
    pytest.param(lambda: Matrix(1, 2**70), id="Matrix(1, 2**70)"),
    pytest.param(lambda: Matrix(2**64, 0), id="Matrix(2**64, 0)"),
]


@pytest.mark.parametrize("call", BEYOND_SIZE_LIMITS)
def test_sizes_beyond_machine_integers_overflow(call):
    with pytest.raises(OverflowError):
        call()


UNALLOCATABLE = [
    "FloatBuffer.from_count(2**61)",
    "FloatBuffer.from_count(2**62)",
    "FloatBuffer.from_count(sys.maxsize)",
    "FloatBuffer.from_count(2**63)",
    "FloatBuffer.from_count(2**45)",
    "Matrix(2**32, 2**32)",
    "Matrix(2**31, 2**31)",
    "Matrix(2**28, 2**28)",
    "Matrix(sys.maxsize, 2)",
    "Matrix(2, sys.maxsize)",
    "Matrix(2**62, 4)",
]

CHILD_USABLE_AFTERWARDS = """
b = pontoneer_demo.FloatBuffer.from_count(1000)
b.append(0.5)
assert b.sum() == 499500.5, b.sum()
m = pontoneer_demo.Matrix(3, 4)
m.set(2, 3, 1.5)
assert m.get(2, 3) == 1.5
print("OK", kind)
"""


@pytest.mark.parametrize("expr", UNALLOCATABLE)
def test_unallocatable_sizes_raise_cleanly(run_isolated, expr):
    # Run in a fresh interpreter: an abort (e.g. Rust's allocation-failure
    # handler) then fails this test rather than killing the test run.
    code = f"""
import sys
import pontoneer_demo
from pontoneer_demo import FloatBuffer, Matrix
try:
    result = {expr}
except (MemoryError, OverflowError, ValueError) as exc:
    kind = type(exc).__name__
else:
    raise SystemExit("no exception: got " + repr(result))
""" + CHILD_USABLE_AFTERWARDS
    proc = run_isolated(code)
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.startswith("OK "), proc.stdout


@linux_only
@pytest.mark.parametrize(
    "expr",
    [
        "FloatBuffer.from_count(2**27)",  # 1 GiB
        "FloatBuffer.from_count(2**45)",
        "Matrix(2**14, 2**14)",  # 2 GiB
        "Matrix(2**27, 1)",  # 1 GiB
    ],
)
def test_allocation_under_memory_limit(run_isolated, expr):
    # The address space is capped at the current size + 256 MiB, so these
    # allocations fail inside malloc: MemoryError (or OverflowError/ValueError),
    # never an abort, and the interpreter stays usable.
    code = f"""
import resource, sys
import pontoneer_demo
from pontoneer_demo import FloatBuffer, Matrix
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
limit = vm + 256 * 2**20
if hard != resource.RLIM_INFINITY:
    limit = min(limit, hard)
resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
try:
    result = {expr}
except (MemoryError, OverflowError, ValueError) as exc:
    kind = type(exc).__name__
else:
    raise SystemExit("no exception under the memory limit")
""" + CHILD_USABLE_AFTERWARDS
    proc = run_isolated(code)
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.startswith("OK "), proc.stdout


# --------------------------------------------------------------------------
# Object model: foreign self, final types, release, reference counts
# --------------------------------------------------------------------------

FOREIGN_SELF = [
    pytest.param(lambda: FloatBuffer.sum(Matrix(1, 1)), id="FloatBuffer.sum(Matrix)"),
    pytest.param(lambda: FloatBuffer.sum(1.0), id="FloatBuffer.sum(1.0)"),
    pytest.param(lambda: FloatBuffer.append(None, 1.0), id="FloatBuffer.append(None, 1.0)"),
    pytest.param(lambda: FloatBuffer.append(Matrix(1, 1), 1.0), id="FloatBuffer.append(Matrix, 1.0)"),
    pytest.param(lambda: FloatBuffer.append([], 1.0), id="FloatBuffer.append([], 1.0)"),
    pytest.param(lambda: Matrix.get(FloatBuffer.from_count(1), 0, 0), id="Matrix.get(FloatBuffer)"),
    pytest.param(lambda: Matrix.set(FloatBuffer.from_count(1), 0, 0, 1.0), id="Matrix.set(FloatBuffer)"),
    pytest.param(lambda: Matrix.get(None, 0, 0), id="Matrix.get(None)"),
]


@pytest.mark.parametrize("call", FOREIGN_SELF)
def test_method_refuses_foreign_self(call):
    with pytest.raises(TypeError):
        call()


@pytest.mark.parametrize("cls", [FloatBuffer, Matrix], ids=lambda c: c.__name__)
def test_types_are_final(cls):
    with pytest.raises(TypeError):

        class Sub(cls):
            pass

    with pytest.raises(TypeError):
        type("Sub2", (cls,), {})


def test_types_live_in_the_module():
    assert pontoneer_demo.FloatBuffer is FloatBuffer
    assert pontoneer_demo.Matrix is Matrix
    assert FloatBuffer.__name__ == "FloatBuffer"
    assert Matrix.__name__ == "Matrix"


def _grow_buffer():
    b = FloatBuffer()
    b.append(1.0)
    b.append(2.0)
    return b


INSTANCE_FACTORIES = [
    pytest.param(FloatBuffer, FloatBuffer, id="FloatBuffer()"),
    pytest.param(FloatBuffer, lambda: FloatBuffer.from_count(5), id="from_count(5)"),
    pytest.param(FloatBuffer, _grow_buffer, id="appended"),
    pytest.param(Matrix, lambda: Matrix(2, 3), id="Matrix(2, 3)"),
    pytest.param(Matrix, lambda: Matrix(0, 0), id="Matrix(0, 0)"),
]


@pytest.mark.parametrize("cls, factory", INSTANCE_FACTORIES)
def test_instances_release_their_type(cls, factory):
    # Instances of a heap type hold a reference to it; after 10,000 instances
    # are created and dropped the type's reference count is back where it was.
    gc.collect()
    before = sys.getrefcount(cls)
    for _ in range(10_000):
        obj = factory()
        del obj
    gc.collect()
    assert sys.getrefcount(cls) == before


ERROR_PATHS = [
    pytest.param(lambda o: FloatBuffer().append(o), RaisingFloat, Boom, id="append-raising-__float__"),
    pytest.param(lambda o: FloatBuffer().append(o), object, TypeError, id="append-object"),
    pytest.param(lambda o: Matrix(1, 1).set(0, 0, o), RaisingFloat, Boom, id="set-raising-__float__"),
    pytest.param(lambda o: Matrix(1, 1).set(0, 0, o), object, TypeError, id="set-object"),
    pytest.param(lambda o: Matrix(1, 1).get(o, 0), object, TypeError, id="get-object-index"),
    pytest.param(lambda o: Matrix(1, 1).get(o, 0), RaisingIndex, Boom, id="get-raising-__index__"),
    pytest.param(lambda o: FloatBuffer.from_count(o), object, TypeError, id="from_count-object"),
    pytest.param(lambda o: FloatBuffer.from_count(o), RaisingIndex, Boom, id="from_count-raising-__index__"),
    pytest.param(lambda o: Matrix(o, 1), object, TypeError, id="Matrix-object"),
    pytest.param(lambda o: FloatBuffer.sum(o), object, TypeError, id="sum-foreign-self"),
    pytest.param(lambda o: FloatBuffer.append(o, 1.0), object, TypeError, id="append-foreign-self"),
]


@pytest.mark.parametrize("call, make_arg, error", ERROR_PATHS)
def test_error_paths_keep_argument_refcounts(call, make_arg, error):
    obj = make_arg()
    before = sys.getrefcount(obj)
    for _ in range(100):
        with pytest.raises(error):
            call(obj)
    assert sys.getrefcount(obj) == before


SUCCESS_PATHS = [
    pytest.param(lambda o: FloatBuffer().append(o), lambda: FloatLike(1.0), id="append-__float__"),
    pytest.param(lambda o: FloatBuffer().append(o), lambda: IndexLike(2), id="append-__index__"),
    pytest.param(lambda o: FloatBuffer.from_count(o), lambda: IndexLike(3), id="from_count-__index__"),
    pytest.param(lambda o: Matrix(o, o), lambda: IndexLike(2), id="Matrix-__index__"),
    pytest.param(lambda o: Matrix(2, 2).set(0, 0, o), lambda: FloatLike(1.0), id="set-__float__"),
    pytest.param(lambda o: Matrix(2, 2).get(o, o), lambda: IndexLike(1), id="get-__index__"),
]


@pytest.mark.parametrize("call, make_arg", SUCCESS_PATHS)
def test_success_paths_keep_argument_refcounts(call, make_arg):
    obj = make_arg()
    before = sys.getrefcount(obj)
    for _ in range(100):
        call(obj)
    assert sys.getrefcount(obj) == before


def test_method_calls_keep_receiver_refcount():
    b = FloatBuffer.from_count(3)
    m = Matrix(2, 2)
    before_b, before_m = sys.getrefcount(b), sys.getrefcount(m)
    for _ in range(100):
        b.sum()
        b.append(1.0)
        repr(b)
        m.set(1, 1, 2.0)
        m.get(1, 1)
        m.shape
        with pytest.raises(IndexError):
            m.get(5, 5)
    assert sys.getrefcount(b) == before_b
    assert sys.getrefcount(m) == before_m


RSS_CHILD = """
import os, sys
import pontoneer_demo
from pontoneer_demo import FloatBuffer, Matrix

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def work():
{body}

work()  # warm up: allocator caches, lazily created objects
before = rss()
for _ in range(64):
    work()
grown = rss() - before
assert grown < 32 * 2**20, "RSS grew by %d MiB" % (grown // 2**20)
print("OK", grown)
"""


@linux_only
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            "    b = FloatBuffer.from_count(2**19)\n"  # 4 MiB, every page written
            "    assert b.sum() == float(2**19 * (2**19 - 1) // 2)\n",
            id="from_count",
        ),
        pytest.param(
            "    b = FloatBuffer()\n"  # 1 MiB of appended items
            "    for i in range(2**17):\n"
            "        b.append(1.0)\n"
            "    assert b.sum() == 2.0**17\n",
            id="append",
        ),
        pytest.param(
            "    m = Matrix(1024, 512)\n"  # 4 MiB, touch every 4 KiB row
            "    for r in range(1024):\n"
            "        m.set(r, 0, 1.0)\n",
            id="Matrix",
        ),
    ],
)
def test_memory_is_returned(run_isolated, body):
    # 64 rounds would leak 64-256 MiB; a correct module stays flat (< 32 MiB).
    proc = run_isolated(RSS_CHILD.format(body=body))
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.startswith("OK "), proc.stdout
