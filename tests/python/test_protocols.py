"""The protocol rows of the FloatBuffer contract (demo-contract.md).

Rows covered:
- ``len(b)`` (and the truth value Python derives from it).
- ``b[i]``: float; negative i counts from the end; IndexError out of range,
  also for indexes beyond Py_ssize_t (as ``list`` does); TypeError for a
  non-integer index; ``__index__`` objects are integers.
- ``b[i] = x``: x goes through ``float(x)``; IndexError / TypeError as for
  ``b[i]``; works while a view is exported and is visible through the view.
- ``del b[i]``: removes the item; refused with BufferError while exported.
- ``x in b``: bool.
- ``b + c``: a new FloatBuffer (concatenation) for two FloatBuffers, otherwise
  NotImplemented, so TypeError.
- ``-b``: a new FloatBuffer with every item negated (``-0.0`` for ``0.0``).
- ``b == c`` / ``b != c``: element-wise, bool; NotImplemented for other types.
- ``b < c`` etc.: NotImplemented, so TypeError.
- ``hash(b)``: ``__eq__`` without ``__hash__`` makes the type unhashable.
Also: operands and results keep correct reference counts, results are
released, and re-entrant index/value conversions cannot corrupt the buffer.

Contents are read back with ``len`` and ``b[i]`` only (``items_of``), so these
tests do not depend on iteration support beyond the contract.
"""

import fractions
import gc
import math
import operator
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


class FloatLike:
    def __init__(self, value):
        self.value = value

    def __float__(self):
        return self.value


class IndexLike:
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


def buf(items):
    b = FloatBuffer()
    for x in items:
        b.append(x)
    return b


def items_of(b):
    return [b[i] for i in range(len(b))]


def signs(values):
    return [math.copysign(1.0, x) for x in values]


ITEM_LISTS = [
    pytest.param([], id="empty"),
    pytest.param([2.5], id="one"),
    pytest.param([0.0, 1.0, 2.0], id="three"),
    pytest.param([-1.0, 0.0, -0.0, 1e300, math.inf, -math.inf, 5e-324], id="special"),
]

# out of range for a 3-item buffer
OUT_OF_RANGE = [
    3, 4, 100, -4, -100, 2**31, 2**63 - 1, -(2**63),
    2**63, -(2**63) - 1, 2**70, -(2**70), 10**100,
]

NON_INTEGER_INDEXES = [
    pytest.param("x", id="str"),
    pytest.param("0", id="digit-str"),
    pytest.param(1.0, id="float"),
    pytest.param(None, id="None"),
    pytest.param(1j, id="complex"),
    pytest.param(FloatLike(1.0), id="__float__-only"),
    pytest.param((0,), id="tuple"),
]

ACCEPTED_VALUES = [
    pytest.param(1.5, 1.5, id="float"),
    pytest.param(-7, -7.0, id="int"),
    pytest.param(True, 1.0, id="bool"),
    pytest.param(FloatLike(0.75), 0.75, id="__float__"),
    pytest.param(IndexLike(4), 4.0, id="__index__"),
    pytest.param(fractions.Fraction(3, 4), 0.75, id="Fraction"),
    pytest.param(-math.inf, -math.inf, id="-inf"),
]

REJECTED_VALUES = [
    pytest.param("1.0", id="str"),
    pytest.param(b"1.0", id="bytes"),
    pytest.param(None, id="None"),
    pytest.param(object(), id="object"),
    pytest.param([1.0], id="list"),
    pytest.param(1j, id="complex"),
]


# --------------------------------------------------------------------------
# len
# --------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 3, 1000])
def test_len_of_from_count(n):
    b = FloatBuffer.from_count(n)
    assert len(b) == n
    assert type(len(b)) is int


def test_len_follows_append_and_del():
    b = FloatBuffer()
    assert len(b) == 0
    b.append(1.0)
    b.append(2.0)
    assert len(b) == 2
    del b[0]
    assert len(b) == 1


def test_truth_value_follows_len():
    assert bool(FloatBuffer()) is False
    assert bool(FloatBuffer.from_count(1)) is True
    b = FloatBuffer.from_count(1)
    del b[0]
    assert not b


# --------------------------------------------------------------------------
# b[i]
# --------------------------------------------------------------------------


@pytest.mark.parametrize("items", ITEM_LISTS)
def test_getitem_positive_and_negative(items):
    b = buf(items)
    n = len(items)
    for i in range(n):
        got, back = b[i], b[i - n]
        assert type(got) is float and type(back) is float
        assert got == items[i] and back == items[i]
        assert math.copysign(1.0, got) == math.copysign(1.0, items[i])
        assert math.copysign(1.0, back) == math.copysign(1.0, items[i])


def test_getitem_from_count():
    b = FloatBuffer.from_count(1000)
    assert items_of(b) == [float(i) for i in range(1000)]
    assert b[-1] == 999.0
    assert b[-1000] == 0.0


def test_getitem_nan():
    b = buf([math.nan])
    assert math.isnan(b[0])


@pytest.mark.parametrize("index", OUT_OF_RANGE)
def test_getitem_out_of_range(index):
    b = FloatBuffer.from_count(3)
    with pytest.raises(IndexError):
        b[index]


@pytest.mark.parametrize("index", [0, -1, 1, 2**70, -(2**70)])
def test_getitem_on_empty_buffer(index):
    with pytest.raises(IndexError):
        FloatBuffer()[index]


@pytest.mark.parametrize("index", NON_INTEGER_INDEXES)
def test_getitem_non_integer_index(index):
    with pytest.raises(TypeError):
        FloatBuffer.from_count(3)[index]


@pytest.mark.parametrize(
    "index, expected",
    [
        pytest.param(IndexLike(1), 1.0, id="__index__"),
        pytest.param(IndexLike(-1), 2.0, id="negative-__index__"),
        pytest.param(True, 1.0, id="True"),
        pytest.param(False, 0.0, id="False"),
    ],
)
def test_getitem_index_objects(index, expected):
    assert FloatBuffer.from_count(3)[index] == expected


def test_getitem_numpy_integer(np):
    b = FloatBuffer.from_count(3)
    assert b[np.int64(2)] == 2.0
    assert b[np.int8(-3)] == 0.0


def test_getitem_index_error_propagates():
    with pytest.raises(Boom):
        FloatBuffer.from_count(3)[RaisingIndex()]


# --------------------------------------------------------------------------
# b[i] = x
# --------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", ACCEPTED_VALUES)
def test_setitem_converts_through_float(value, expected):
    b = FloatBuffer.from_count(3)
    b[1] = value
    assert type(b[1]) is float
    assert items_of(b) == [0.0, expected, 2.0]
    assert len(b) == 3


def test_setitem_negative_index():
    b = FloatBuffer.from_count(3)
    b[-1] = 9.0
    b[-3] = -0.0
    assert items_of(b) == [0.0, 1.0, 9.0]
    assert signs(items_of(b)) == [-1.0, 1.0, 1.0]


def test_setitem_index_objects():
    b = FloatBuffer.from_count(3)
    b[IndexLike(2)] = 5.0
    b[True] = 4.0
    assert items_of(b) == [0.0, 4.0, 5.0]


@pytest.mark.parametrize("value", REJECTED_VALUES)
def test_setitem_rejects_non_numbers(value):
    b = FloatBuffer.from_count(3)
    with pytest.raises(TypeError):
        b[1] = value
    assert items_of(b) == [0.0, 1.0, 2.0]


def test_setitem_propagates_conversion_error():
    b = FloatBuffer.from_count(3)
    with pytest.raises(Boom):
        b[0] = RaisingFloat()
    with pytest.raises(Boom):
        b[RaisingIndex()] = 1.0
    assert items_of(b) == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("index", OUT_OF_RANGE)
def test_setitem_out_of_range(index):
    b = FloatBuffer.from_count(3)
    with pytest.raises(IndexError):
        b[index] = 1.0
    assert items_of(b) == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("index", NON_INTEGER_INDEXES)
def test_setitem_non_integer_index(index):
    b = FloatBuffer.from_count(3)
    with pytest.raises(TypeError):
        b[index] = 1.0
    assert items_of(b) == [0.0, 1.0, 2.0]


def test_setitem_while_exported_is_visible_through_view():
    b = FloatBuffer.from_count(3)
    with memoryview(b) as v:
        b[1] = 9.5
        b[-1] = -2.0
        assert v[1] == 9.5
        assert v.tolist() == [0.0, 9.5, -2.0]
        assert items_of(b) == [0.0, 9.5, -2.0]
        assert b.sum() == 7.5
    assert bytes(b) == struct.pack("<3d", 0.0, 9.5, -2.0)


def test_setitem_while_exported_is_visible_through_numpy(np):
    # Also shows that numpy.frombuffer is zero-copy.
    b = FloatBuffer.from_count(3)
    a = np.frombuffer(b, dtype=np.float64)
    b[0] = -3.0
    b[2] = 7.0
    assert a.tolist() == [-3.0, 1.0, 7.0]


def test_setitem_while_exported_errors_leave_view_intact():
    b = FloatBuffer.from_count(3)
    with memoryview(b) as v:
        with pytest.raises(IndexError):
            b[3] = 1.0
        with pytest.raises(TypeError):
            b[0] = "x"
        assert v.tolist() == [0.0, 1.0, 2.0]
    b.append(3.0)  # the failed sets left no export behind
    assert len(b) == 4


# --------------------------------------------------------------------------
# del b[i]
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "index, expected",
    [
        (0, [1.0, 2.0, 3.0]),
        (1, [0.0, 2.0, 3.0]),
        (3, [0.0, 1.0, 2.0]),
        (-1, [0.0, 1.0, 2.0]),
        (-4, [1.0, 2.0, 3.0]),
        (-2, [0.0, 1.0, 3.0]),
    ],
)
def test_delitem(index, expected):
    b = FloatBuffer.from_count(4)
    del b[index]
    assert items_of(b) == expected
    assert repr(b) == "FloatBuffer(len=3)"
    assert b.sum() == sum(expected)


def test_delitem_until_empty():
    b = FloatBuffer.from_count(3)
    del b[1]
    del b[-1]
    del b[0]
    assert len(b) == 0
    assert bytes(b) == b""
    with pytest.raises(IndexError):
        del b[0]
    b.append(1.0)
    assert items_of(b) == [1.0]


@pytest.mark.parametrize("index", OUT_OF_RANGE)
def test_delitem_out_of_range(index):
    b = FloatBuffer.from_count(3)
    with pytest.raises(IndexError):
        del b[index]
    assert items_of(b) == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("index", NON_INTEGER_INDEXES)
def test_delitem_non_integer_index(index):
    b = FloatBuffer.from_count(3)
    with pytest.raises(TypeError):
        del b[index]
    assert items_of(b) == [0.0, 1.0, 2.0]


def test_delitem_index_objects():
    b = FloatBuffer.from_count(4)
    del b[IndexLike(-1)]
    del b[True]
    assert items_of(b) == [0.0, 2.0]


def test_delitem_refused_while_exported():
    b = FloatBuffer.from_count(3)
    with memoryview(b) as v:
        with pytest.raises(BufferError):
            del b[0]
        with pytest.raises(BufferError):
            del b[-1]
        assert v.tolist() == [0.0, 1.0, 2.0]
        assert items_of(b) == [0.0, 1.0, 2.0]
    del b[0]
    assert items_of(b) == [1.0, 2.0]


def test_delitem_refused_while_numpy_array_alive(np):
    b = FloatBuffer.from_count(3)
    a = np.frombuffer(b, dtype=np.float64)
    with pytest.raises(BufferError):
        del b[1]
    assert a.tolist() == [0.0, 1.0, 2.0]
    del a
    gc.collect()
    del b[1]
    assert items_of(b) == [0.0, 2.0]


# --------------------------------------------------------------------------
# x in b
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x, expected",
    [
        (1.0, True),
        (2.0, True),
        (1, True),
        (True, True),
        (0.5, False),
        (3.0, False),
        (-1, False),
        (math.inf, False),
        (fractions.Fraction(2, 1), True),
    ],
)
def test_contains_numbers(x, expected):
    b = FloatBuffer.from_count(3)
    assert (x in b) is expected
    assert (x not in b) is (not expected)


def test_contains_on_empty_buffer():
    assert (0.0 in FloatBuffer()) is False


def test_contains_follows_mutation():
    b = FloatBuffer.from_count(2)
    assert (5.0 in b) is False
    b[1] = 5.0
    assert (5.0 in b) is True
    assert (1.0 in b) is False


@pytest.mark.parametrize("x", ["x", "1.0", None, object(), [1.0]], ids=["str", "numeric-str", "None", "object", "list"])
def test_contains_non_number_does_not_crash(x):
    # The contract only says "bool"; a non-number is either simply not found
    # or refused with TypeError.
    b = FloatBuffer.from_count(3)
    try:
        result = x in b
    except TypeError:
        pass
    else:
        assert result is False
    assert items_of(b) == [0.0, 1.0, 2.0]


# --------------------------------------------------------------------------
# b + c
# --------------------------------------------------------------------------

CONCAT_CASES = [
    ([], []),
    ([1.0], []),
    ([], [2.0]),
    ([0.0, 1.0], [2.0, -0.0, 3.5]),
    ([math.inf], [-math.inf, 5e-324]),
]


@pytest.mark.parametrize("left, right", CONCAT_CASES)
def test_concat(left, right):
    b, c = buf(left), buf(right)
    r = b + c
    assert type(r) is FloatBuffer
    assert r is not b and r is not c
    assert items_of(r) == left + right
    assert signs(items_of(r)) == signs(left + right)
    assert repr(r) == f"FloatBuffer(len={len(left) + len(right)})"
    # the operands are unchanged
    assert items_of(b) == left
    assert items_of(c) == right


def test_concat_with_itself():
    b = FloatBuffer.from_count(3)
    r = b + b
    assert items_of(r) == [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]
    assert items_of(b) == [0.0, 1.0, 2.0]


def test_concat_result_is_independent():
    b, c = FloatBuffer.from_count(2), buf([5.0])
    r = b + c
    r[0] = 99.0
    r.append(1.0)
    del r[1]
    assert items_of(b) == [0.0, 1.0]
    assert items_of(c) == [5.0]
    assert items_of(r) == [99.0, 5.0, 1.0]


def test_concat_while_exported():
    b, c = FloatBuffer.from_count(2), buf([5.0])
    with memoryview(b) as vb, memoryview(c) as vc:
        r = b + c
        r.append(6.0)  # the result does not share the operands' exports
        assert items_of(r) == [0.0, 1.0, 5.0, 6.0]
        assert vb.tolist() == [0.0, 1.0]
        assert vc.tolist() == [5.0]


BAD_CONCAT = [
    pytest.param(lambda b: b + [1.0], id="b+list"),
    pytest.param(lambda b: b + (1.0,), id="b+tuple"),
    pytest.param(lambda b: b + None, id="b+None"),
    pytest.param(lambda b: b + 1.0, id="b+float"),
    pytest.param(lambda b: b + 1, id="b+int"),
    pytest.param(lambda b: b + "x", id="b+str"),
    pytest.param(lambda b: b + Matrix(1, 1), id="b+Matrix"),
    pytest.param(lambda b: b + memoryview(b), id="b+memoryview"),
    pytest.param(lambda b: 1.0 + b, id="float+b"),
    pytest.param(lambda b: 1 + b, id="int+b"),
    pytest.param(lambda b: [] + b, id="list+b"),
    pytest.param(lambda b: None + b, id="None+b"),
    pytest.param(lambda b: "x" + b, id="str+b"),
]


@pytest.mark.parametrize("expr", BAD_CONCAT)
def test_concat_with_other_types_is_type_error(expr):
    b = FloatBuffer.from_count(2)
    with pytest.raises(TypeError):
        expr(b)
    assert items_of(b) == [0.0, 1.0]


@pytest.mark.parametrize("other", [1.0, None, [1.0], (1.0,), "x"], ids=["float", "None", "list", "tuple", "str"])
def test_add_returns_not_implemented(other):
    b = FloatBuffer.from_count(2)
    assert b.__add__(other) is NotImplemented


# --------------------------------------------------------------------------
# -b
# --------------------------------------------------------------------------


@pytest.mark.parametrize("items", ITEM_LISTS)
def test_neg(items):
    b = buf(items)
    r = -b
    assert type(r) is FloatBuffer
    assert r is not b
    expected = [-x for x in items]
    assert items_of(r) == expected
    assert signs(items_of(r)) == signs(expected)
    assert items_of(b) == items
    assert signs(items_of(b)) == signs(items)


def test_neg_of_zero_is_negative_zero():
    r = -buf([0.0])
    assert math.copysign(1.0, r[0]) == -1.0
    assert bytes(r) == struct.pack("<d", -0.0)
    assert math.copysign(1.0, (-r)[0]) == 1.0


def test_neg_nan_stays_nan():
    assert math.isnan((-buf([math.nan]))[0])


def test_neg_twice_round_trips():
    b = FloatBuffer.from_count(4)
    assert items_of(-(-b)) == items_of(b)
    assert (-(-b)) == b


def test_neg_result_is_independent_and_works_while_exported():
    b = FloatBuffer.from_count(3)
    with memoryview(b) as v:
        r = -b
        r.append(5.0)
        r[0] = 1.0
        assert v.tolist() == [0.0, 1.0, 2.0]
    assert items_of(r) == [1.0, -1.0, -2.0, 5.0]


# --------------------------------------------------------------------------
# == and !=
# --------------------------------------------------------------------------

EQ_CASES = [
    ([], [], True),
    ([1.0], [1.0], True),
    ([0.0, 1.0, 2.0], [0.0, 1.0, 2.0], True),
    ([0.0], [-0.0], True),  # element-wise float equality
    ([math.inf], [math.inf], True),
    ([1.0], [2.0], False),
    ([1.0], [1.0, 2.0], False),
    ([1.0, 2.0], [1.0], False),
    ([], [0.0], False),
    ([0.0, 1.0, 2.0], [0.0, 1.0, 3.0], False),
]


@pytest.mark.parametrize("left, right, equal", EQ_CASES)
def test_eq_ne_elementwise(left, right, equal):
    b, c = buf(left), buf(right)
    assert (b == c) is equal
    assert (c == b) is equal
    assert (b != c) is (not equal)
    assert (c != b) is (not equal)


def test_eq_nan_items_are_unequal():
    b = buf([math.nan])
    c = buf([math.nan])
    assert (b == c) is False
    assert (b != c) is True


def test_eq_itself_and_from_count():
    b = FloatBuffer.from_count(5)
    assert (b == b) is True
    assert (b != b) is False
    assert (b == FloatBuffer.from_count(5)) is True
    assert (b == FloatBuffer.from_count(4)) is False


def test_eq_follows_mutation():
    b, c = FloatBuffer.from_count(3), FloatBuffer.from_count(3)
    c[2] = 7.0
    assert b != c
    b[2] = 7.0
    assert b == c


OTHER_TYPES = [
    pytest.param(1, id="int"),
    pytest.param(0.0, id="float"),
    pytest.param(None, id="None"),
    pytest.param([0.0], id="list"),
    pytest.param((0.0,), id="tuple"),
    pytest.param("x", id="str"),
    pytest.param(Matrix(1, 1), id="Matrix"),
]


@pytest.mark.parametrize("other", OTHER_TYPES)
def test_eq_with_other_types(other):
    b = FloatBuffer.from_count(1)  # [0.0]
    assert (b == other) is False
    assert (other == b) is False
    assert (b != other) is True
    assert (other != b) is True
    assert b.__eq__(other) is NotImplemented
    assert b.__ne__(other) is NotImplemented


def test_eq_with_list_of_same_items():
    assert (FloatBuffer.from_count(1) == [0.0]) is False
    assert (FloatBuffer.from_count(1) != [0.0]) is True


# --------------------------------------------------------------------------
# ordering and hashing
# --------------------------------------------------------------------------

ORDERING = [
    pytest.param(operator.lt, id="<"),
    pytest.param(operator.le, id="<="),
    pytest.param(operator.gt, id=">"),
    pytest.param(operator.ge, id=">="),
]


@pytest.mark.parametrize("op", ORDERING)
@pytest.mark.parametrize(
    "left, right",
    [
        pytest.param(lambda: FloatBuffer.from_count(2), lambda: FloatBuffer.from_count(3), id="buffers"),
        pytest.param(lambda: FloatBuffer.from_count(2), lambda: FloatBuffer.from_count(2), id="equal-buffers"),
        pytest.param(lambda: FloatBuffer(), lambda: FloatBuffer(), id="empty-buffers"),
        pytest.param(lambda: FloatBuffer.from_count(2), lambda: 1, id="buffer-int"),
        pytest.param(lambda: 1, lambda: FloatBuffer.from_count(2), id="int-buffer"),
        pytest.param(lambda: FloatBuffer.from_count(1), lambda: [0.0], id="buffer-list"),
    ],
)
def test_ordering_is_type_error(op, left, right):
    with pytest.raises(TypeError):
        op(left(), right())


@pytest.mark.parametrize("name", ["__lt__", "__le__", "__gt__", "__ge__"])
def test_ordering_methods_return_not_implemented(name):
    b, c = FloatBuffer.from_count(2), FloatBuffer.from_count(3)
    assert getattr(b, name)(c) is NotImplemented


def test_unhashable():
    b = FloatBuffer.from_count(2)
    with pytest.raises(TypeError) as info:
        hash(b)
    assert "unhashable" in str(info.value)
    assert FloatBuffer.__hash__ is None
    with pytest.raises(TypeError):
        {b}
    with pytest.raises(TypeError):
        {b: 1}


# --------------------------------------------------------------------------
# Foreign receivers of the slot wrappers
# --------------------------------------------------------------------------

FOREIGN_SLOT_CALLS = [
    pytest.param(lambda b: FloatBuffer.__len__([1.0]), id="__len__(list)"),
    pytest.param(lambda b: FloatBuffer.__getitem__([1.0], 0), id="__getitem__(list)"),
    pytest.param(lambda b: FloatBuffer.__setitem__([1.0], 0, 2.0), id="__setitem__(list)"),
    pytest.param(lambda b: FloatBuffer.__delitem__([1.0], 0), id="__delitem__(list)"),
    pytest.param(lambda b: FloatBuffer.__neg__(1.0), id="__neg__(float)"),
    pytest.param(lambda b: FloatBuffer.__add__(1.0, b), id="__add__(float, b)"),
    pytest.param(lambda b: FloatBuffer.__eq__(Matrix(1, 1), b), id="__eq__(Matrix, b)"),
]


@pytest.mark.parametrize("call", FOREIGN_SLOT_CALLS)
def test_slot_wrappers_refuse_foreign_self(call):
    b = FloatBuffer.from_count(1)
    with pytest.raises(TypeError):
        call(b)
    assert items_of(b) == [0.0]


# --------------------------------------------------------------------------
# Re-entrancy: conversions that mutate the buffer
# --------------------------------------------------------------------------


def test_reentrant_setitem_value_cannot_write_out_of_bounds():
    # __float__ shrinks the buffer after the index was (possibly) checked.
    # The store must not happen beyond the end: IndexError (index checked after
    # the conversion) or RuntimeError (conflicting access refused), never a
    # silent success or a crash.
    b = FloatBuffer.from_count(3)

    class Shrinker:
        def __float__(self):
            del b[2]
            del b[1]
            return 7.0

    with pytest.raises((IndexError, RuntimeError)):
        b[2] = Shrinker()
    assert items_of(b) in ([0.0], [0.0, 1.0, 2.0])
    b.append(1.0)
    assert b[-1] == 1.0


@pytest.mark.parametrize("action", ["get", "set", "del"])
def test_reentrant_index_cannot_reach_out_of_bounds(action):
    # __index__ shrinks the buffer and then returns an index that was valid
    # before: it must be range-checked against the current length.
    b = FloatBuffer.from_count(3)

    class Shrinking:
        def __index__(self):
            del b[2]
            return 2

    with pytest.raises((IndexError, RuntimeError)):
        if action == "get":
            b[Shrinking()]
        elif action == "set":
            b[Shrinking()] = 5.0
        else:
            del b[Shrinking()]
    assert items_of(b) in ([0.0, 1.0], [0.0, 1.0, 2.0])


def test_read_only_operators_work_while_exported():
    # Only resizing is refused while exported; reads, comparisons and new
    # results are not.
    b = FloatBuffer.from_count(2)
    with memoryview(b) as v:
        assert len(b) == 2
        assert b[1] == 1.0
        assert (1.0 in b) is True
        assert (b + b) != b
        assert (-(-b)) == b
        assert v.tolist() == [0.0, 1.0]


# --------------------------------------------------------------------------
# Reference counts and release
# --------------------------------------------------------------------------

OPERAND_ERROR_PATHS = [
    pytest.param(lambda b, o: b[o], object, TypeError, id="getitem-object"),
    pytest.param(lambda b, o: b[o], RaisingIndex, Boom, id="getitem-raising-__index__"),
    pytest.param(lambda b, o: b.__setitem__(0, o), object, TypeError, id="setitem-object"),
    pytest.param(lambda b, o: b.__setitem__(0, o), RaisingFloat, Boom, id="setitem-raising-__float__"),
    pytest.param(lambda b, o: b.__setitem__(o, 1.0), object, TypeError, id="setitem-object-index"),
    pytest.param(lambda b, o: b.__delitem__(o), object, TypeError, id="delitem-object-index"),
    pytest.param(lambda b, o: b + o, object, TypeError, id="b+object"),
    pytest.param(lambda b, o: o + b, object, TypeError, id="object+b"),
    pytest.param(lambda b, o: b < o, object, TypeError, id="b<object"),
]


@pytest.mark.parametrize("call, make_arg, error", OPERAND_ERROR_PATHS)
def test_error_paths_keep_refcounts(call, make_arg, error):
    b = FloatBuffer.from_count(2)
    obj = make_arg()
    before_obj, before_b = sys.getrefcount(obj), sys.getrefcount(b)
    for _ in range(100):
        with pytest.raises(error):
            call(b, obj)
    assert sys.getrefcount(obj) == before_obj
    assert sys.getrefcount(b) == before_b


OPERAND_SUCCESS_PATHS = [
    pytest.param(lambda b, o: b[o], lambda: IndexLike(1), id="getitem-__index__"),
    pytest.param(lambda b, o: b.__setitem__(1, o), lambda: FloatLike(2.0), id="setitem-__float__"),
    pytest.param(lambda b, o: b == o, object, id="b==object"),
    pytest.param(lambda b, o: b != o, lambda: [0.0], id="b!=list"),
    pytest.param(lambda b, o: o in b, lambda: FloatLike(1.0), id="contains"),
    pytest.param(lambda b, o: b + o, lambda: FloatBuffer.from_count(2), id="b+c"),
    pytest.param(lambda b, o: b == o, lambda: FloatBuffer.from_count(2), id="b==c"),
]


@pytest.mark.parametrize("call, make_arg", OPERAND_SUCCESS_PATHS)
def test_success_paths_keep_refcounts(call, make_arg):
    b = FloatBuffer.from_count(2)
    obj = make_arg()
    before_obj, before_b = sys.getrefcount(obj), sys.getrefcount(b)
    for _ in range(100):
        call(b, obj)
    assert sys.getrefcount(obj) == before_obj
    assert sys.getrefcount(b) == before_b


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda b, c: b + c, id="b+c"),
        pytest.param(lambda b, c: -b, id="-b"),
        pytest.param(lambda b, c: -FloatBuffer(), id="-empty"),
    ],
)
def test_results_are_released(make):
    b, c = FloatBuffer.from_count(3), FloatBuffer.from_count(2)
    gc.collect()
    before = sys.getrefcount(FloatBuffer)
    for _ in range(10_000):
        r = make(b, c)
        del r
    gc.collect()
    assert sys.getrefcount(FloatBuffer) == before


def test_float_results_do_not_leak_items():
    b = FloatBuffer.from_count(3)
    before = sys.getrefcount(b)
    values = [b[i] for i in range(3) for _ in range(1000)]
    assert len(values) == 3000
    assert sys.getrefcount(b) == before


# --------------------------------------------------------------------------
# Properties (hypothesis)
# --------------------------------------------------------------------------

finite_lists = st.lists(st.floats(allow_nan=False), max_size=32)


@given(finite_lists, finite_lists)
@prop_settings
def test_property_sequence_and_number_rows(left, right):
    b, c = buf(left), buf(right)
    assert len(b) == len(left)
    assert items_of(b) == left
    if left:
        assert b[-1] == left[-1]
    assert items_of(b + c) == left + right
    assert items_of(-b) == [-x for x in left]
    assert signs(items_of(-b)) == [-s for s in signs(left)]
    assert (b == c) is (left == right)
    assert (b != c) is (left != right)
    for x in right:
        assert (x in b) is (x in left)


@given(st.lists(st.floats(allow_nan=False), min_size=1, max_size=32), st.data())
@prop_settings
def test_property_set_and_del_match_list(items, data):
    b = buf(items)
    model = list(items)
    i = data.draw(st.integers(-len(model), len(model) - 1), label="set index")
    x = data.draw(st.floats(allow_nan=False), label="value")
    b[i] = x
    model[i] = x
    assert items_of(b) == model
    j = data.draw(st.integers(-len(model), len(model) - 1), label="del index")
    del b[j]
    del model[j]
    assert items_of(b) == model
    assert bytes(b) == struct.pack("<%dd" % len(model), *model)
