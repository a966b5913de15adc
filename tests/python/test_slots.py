"""Every protocol slot the builders install, driven from Python (``pontoneer_testmod``'s slot classes).

The classes (``tests/testmod/src/slots.rs``) and the slots they exercise:

| Python | handler (test class) | C slot |
| --- | --- | --- |
| ``repr(v)``, ``str(v)`` | ``Vec2::repr`` | ``tp_repr`` (``str`` falls back to it) |
| ``v == w``, ``v != w``, ``v < w``, ... | ``Vec2::compare`` (only ``==``/``!=``) | ``tp_richcompare`` |
| ``hash(v)`` | ``Vec2::hash`` (``-1`` comes out as ``-2``) | ``tp_hash`` |
| ``-v``, ``+v``, ``abs(v)``, ``~v`` | ``Vec2::neg``, ``pos``, ``abs``, ``invert`` | ``nb_negative``, ``nb_positive``, ``nb_absolute``, ``nb_invert`` |
| ``int(v)``, ``float(v)``, ``operator.index(v)`` | ``Vec2::int``, ``float``, ``index`` | ``nb_int``, ``nb_float``, ``nb_index`` |
| ``bool(v)``, ``if v:`` | ``Vec2::bool`` | ``nb_bool`` |
| ``v + x`` / ``k + v`` / ``v += w`` | ``Vec2::add`` / ``radd`` / ``iadd`` | ``nb_add`` / ``nb_inplace_add`` |
| ``v - w`` / ``k - v`` / ``v -= w`` | ``Vec2::sub`` / ``rsub`` / ``isub`` | ``nb_subtract`` / ``nb_inplace_subtract`` |
| ``v * k`` / ``k * v`` / ``v *= k`` | ``Vec2::mul`` (both orders) / ``imul`` | ``nb_multiply`` / ``nb_inplace_multiply`` |
| ``v / k``, ``v //= k`` ... | ``Vec2::truediv``, ``floordiv``, ``rem`` (+ ``i`` forms) | ``nb_true_divide``, ``nb_floor_divide``, ``nb_remainder`` (+ in-place) |
| ``divmod(v, k)`` | ``Vec2::divmod`` | ``nb_divmod`` |
| ``v << n``, ``v >> n``, ``v & m``, ``v \\| m``, ``v ^ m`` | ``Vec2::lshift``, ``rshift``, ``and``, ``or``, ``xor`` (+ ``i`` forms) | ``nb_lshift``, ``nb_rshift``, ``nb_and``, ``nb_or``, ``nb_xor`` (+ in-place) |
| ``v @ w`` / ``v @= w`` | ``Vec2::matmul`` / ``imatmul`` | ``nb_matrix_multiply`` / ``nb_inplace_matrix_multiply`` |
| ``v ** k``, ``pow(v, k, m)`` / ``k ** v`` / ``v **= k`` | ``Vec2::pow`` / ``rpow`` / ``ipow`` | ``nb_power`` / ``nb_inplace_power`` |
| ``len(m)`` | ``StrMap::len`` | ``mp_length`` |
| ``m[key]`` | ``StrMap::get`` (``KeyError`` for a missing key) | ``mp_subscript`` |
| ``m[key] = x``, ``del m[key]`` | ``StrMap::set`` (``Option`` value) | ``mp_ass_subscript`` |
| ``iter(c)``, ``next(c)`` | ``def_iter_self``, ``Countdown::next`` | ``tp_iter``, ``tp_iternext`` |
| ``a(x)`` | ``Adder::call`` | ``tp_call`` |
| ``len(s)`` | ``Seq::len`` | ``sq_length`` |
| ``s[i]`` (and iteration) | ``Seq::item`` (CPython adds ``len`` to negative ``i`` first) | ``sq_item`` |
| ``s[i] = x``, ``del s[i]`` | ``Seq::set_item`` | ``sq_ass_item`` |
| ``x in s`` | ``Seq::contains`` | ``sq_contains`` |
| ``s + t`` (``Seq`` only) | ``Seq::concat`` | ``sq_concat`` (cannot return ``NotImplemented``) |
| ``s * n``, ``n * s`` | ``Seq::repeat`` | ``sq_repeat`` |
| ``s += t`` (``Seq`` or list of ints) | ``Seq::iconcat`` | ``sq_inplace_concat`` |
| ``s *= n`` | ``Seq::irepeat`` | ``sq_inplace_repeat`` |

Covered, in order:

1. Results and errors per slot, checked against plain-Python references: ``RefVec`` (below) is a
   pure-Python statement of ``Vec2``'s semantics, so each row evaluates the *same* Python syntax
   on a ``Vec2`` and on a ``RefVec`` and compares results (or exception types); ``StrMap`` is
   compared with a ``dict``, ``Seq`` with a ``list``, ``Countdown`` with a ``range`` iterator,
   ``Adder`` with ``x + k``.
2. Reflected operands, comparisons, hashing, in-place identity.
3. The fault matrix: every slot kind driven to panic (``666``) and to fail (``777``): the panic is
   a ``PanicException`` (a ``BaseException``, not an ``Exception``), the failure a ``ValueError``
   with the handler's message, the objects stay usable and no reference is leaked over
   ``ROUNDS`` repetitions. The same matrix also runs in fresh interpreters (one per slot kind),
   so an abort fails a test instead of killing the runner.
4. Bad input: wrong key/index types, out-of-range and oversized indices (compared with what
   CPython does for ``list``), wrong call signatures, exhausted iterators.
"""

import math
import operator
import os
import subprocess
import sys
import textwrap
from typing import NamedTuple

import pytest

import pontoneer_testmod as tm
from pontoneer_testmod import Adder, Countdown, PanicException, Seq, StrMap, Vec2

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE_DIR = os.path.dirname(os.path.abspath(tm.__file__))

PANIC = 666  # a handler seeing this value panics
FAIL = 777  # ... and this one makes it return Err(ValueError)
ROUNDS = 200  # repetitions of every fault path for the reference-count check
CHILD_ROUNDS = 5  # repetitions in the subprocess run of the matrix


# ---------------------------------------------------------------------------
# 1. results and errors per slot, against plain-Python references


class P(NamedTuple):
    """A vector operand in a parameter row: becomes a ``Vec2`` or a ``RefVec``."""

    x: float
    y: float


def _euclid(x, m):
    """Rust's ``f64::rem_euclid``: ``fmod``, shifted into ``[0, |m|)``."""
    if m == 0:
        return math.nan
    r = math.fmod(x, m)
    return r + abs(m) if r < 0 else r


class RefVec:
    """The reference model: what ``Vec2`` does, written in plain Python.

    Argument conversions follow the Rust handlers' parameter types: ``f64`` takes any real
    number (a ``Vec2`` too, through its ``__float__``); ``u32`` takes an int, negative is a
    ``ValueError`` and ``>= 2**32`` an ``OverflowError``; ``i64`` takes an int, out of range is
    an ``OverflowError``; an operand that does not convert makes a binary operator
    ``NotImplemented``.
    """

    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x = float(x)
        self.y = float(y)

    def __repr__(self):
        return f"RefVec({self.x!r}, {self.y!r})"

    # -- argument conversions
    @staticmethod
    def _f64(o):
        if isinstance(o, RefVec):
            return o.x  # Vec2.__float__
        if isinstance(o, (int, float)):
            return float(o)
        return None

    @staticmethod
    def _scalar(o):  # `as_scalar`: a real number that is not a vector
        return None if isinstance(o, RefVec) else RefVec._f64(o)

    @staticmethod
    def _u32(o):
        if not isinstance(o, int):
            return None
        if o < 0:
            raise ValueError(f"must be non-negative, got {o}")
        if o >= 2**32:
            raise OverflowError(f"{o} does not fit in u32")
        return int(o)

    @staticmethod
    def _i64(o):
        if not isinstance(o, int):
            return None
        if not -(2**63) <= o < 2**63:
            raise OverflowError("too large")
        return int(o)

    def _map(self, f):
        return RefVec(f(self.x), f(self.y))

    # -- unary
    def __neg__(self):
        return RefVec(-self.x, -self.y)

    def __pos__(self):
        return RefVec(self.x, self.y)

    def __abs__(self):
        return math.hypot(self.x, self.y)

    def __invert__(self):
        return RefVec(self.y, self.x)

    def __int__(self):
        return int(self.x)

    def __float__(self):
        return self.x

    def __index__(self):
        return int(self.x)

    def __bool__(self):
        return self.x != 0.0 or self.y != 0.0

    # -- comparison and hash (CPython turns a -1 from __hash__ into -2, as it must for Vec2)
    def __eq__(self, o):
        if not isinstance(o, RefVec):
            return NotImplemented
        return (self.x, self.y) == (o.x, o.y)

    def __ne__(self, o):
        if not isinstance(o, RefVec):
            return NotImplemented
        return (self.x, self.y) != (o.x, o.y)

    def __hash__(self):
        return int(self.x) if self.y == 0.0 else int(self.x * 31.0 + self.y)

    # -- binary
    def __add__(self, o):
        if isinstance(o, RefVec):
            return RefVec(self.x + o.x, self.y + o.y)
        k = self._scalar(o)
        return NotImplemented if k is None else RefVec(self.x + k, self.y + k)

    def __radd__(self, o):
        k = self._f64(o)
        return NotImplemented if k is None else RefVec(k + self.x, k + self.y)

    def __sub__(self, o):
        if isinstance(o, RefVec):
            return RefVec(self.x - o.x, self.y - o.y)
        return NotImplemented

    def __rsub__(self, o):
        k = self._f64(o)
        return NotImplemented if k is None else RefVec(k - self.x, k - self.y)

    def __mul__(self, o):
        k = self._scalar(o)
        return NotImplemented if k is None else RefVec(self.x * k, self.y * k)

    __rmul__ = __mul__

    def _truediv(self, k):
        if k == 0.0:
            raise ZeroDivisionError("Vec2 division by zero")
        return RefVec(self.x / k, self.y / k)

    def _floordiv(self, k):
        if k == 0.0:
            raise ZeroDivisionError("Vec2 division by zero")
        return self._map(lambda c: float(math.floor(c / k)))

    def __truediv__(self, o):
        k = self._f64(o)
        return NotImplemented if k is None else self._truediv(k)

    def __floordiv__(self, o):
        k = self._f64(o)
        return NotImplemented if k is None else self._floordiv(k)

    def __mod__(self, o):
        k = self._f64(o)
        return NotImplemented if k is None else self._map(lambda c: _euclid(c, k))

    def __divmod__(self, o):
        k = self._f64(o)
        if k is None:
            return NotImplemented
        return self._floordiv(k), self._map(lambda c: _euclid(c, k))

    def __lshift__(self, o):
        n = self._u32(o)
        if n is None:
            return NotImplemented
        f = float(1 << min(n, 31))
        return self._map(lambda c: c * f)

    def __rshift__(self, o):
        n = self._u32(o)
        if n is None:
            return NotImplemented
        f = float(1 << min(n, 31))
        return self._map(lambda c: c / f)

    def _bits(self, o, op):
        m = self._i64(o)
        return NotImplemented if m is None else self._map(lambda c: float(op(int(c), m)))

    def __and__(self, o):
        return self._bits(o, operator.and_)

    def __or__(self, o):
        return self._bits(o, operator.or_)

    def __xor__(self, o):
        return self._bits(o, operator.xor)

    def __matmul__(self, o):
        if not isinstance(o, RefVec):
            return NotImplemented
        return self.x * o.x + self.y * o.y

    def __pow__(self, o, modulo=None):
        k = self._f64(o)
        if k is None:
            return NotImplemented
        if modulo is None:
            return self._map(lambda c: c**k)
        m = self._f64(modulo)
        if m is None:
            raise TypeError("must be a real number")
        return self._map(lambda c: _euclid(c**k, m))

    def __rpow__(self, o):  # Python never calls __rpow__ for three-argument pow()
        k = self._f64(o)
        return NotImplemented if k is None else self._map(lambda c: k**c)

    # -- in-place: mutate and return self
    def _become(self, other):
        if other is NotImplemented:
            return NotImplemented
        self.x, self.y = other.x, other.y
        return self

    def __iadd__(self, o):
        if not isinstance(o, RefVec):
            return NotImplemented
        return self._become(self + o)

    def __isub__(self, o):
        return self._become(self - o)

    def __imul__(self, o):
        k = self._f64(o)
        return NotImplemented if k is None else self._become(RefVec(self.x * k, self.y * k))

    def __itruediv__(self, o):
        return self._become(self.__truediv__(o))

    def __ifloordiv__(self, o):
        return self._become(self.__floordiv__(o))

    def __imod__(self, o):
        return self._become(self.__mod__(o))

    def __ilshift__(self, o):
        return self._become(self.__lshift__(o))

    def __irshift__(self, o):
        return self._become(self.__rshift__(o))

    def __iand__(self, o):
        return self._become(self.__and__(o))

    def __ior__(self, o):
        return self._become(self.__or__(o))

    def __ixor__(self, o):
        return self._become(self.__xor__(o))

    def __imatmul__(self, o):
        if not isinstance(o, RefVec):
            return NotImplemented
        d = self @ o
        return self._become(RefVec(self.x * d, self.y * d))

    def __ipow__(self, o):
        return self._become(self.__pow__(o))


def _norm(r):
    """A comparable form of a result from either side of a differential row."""
    if isinstance(r, (Vec2, RefVec)):
        return ("Vec2", r.x, r.y)
    if isinstance(r, Seq):
        return ("seq", r.tolist())
    if isinstance(r, list):
        return ("seq", r)
    if isinstance(r, tuple):
        return tuple(_norm(i) for i in r)
    return (type(r).__name__, r)


def _outcome(code, env, *, message=False):
    """Run ``code`` (which sets ``r``) in a copy of ``env``: the normalised result, or the
    exception type (and message) plus the final state of ``a`` (unchanged after an error)."""
    ns = dict(env)
    try:
        exec(code, ns)
    except Exception as e:  # noqa: BLE001 - the type is what is compared
        return ("raises", type(e).__name__, str(e) if message else None, _norm(ns.get("a")))
    return ("ok", _norm(ns["r"]))


def _vec_env(cls, a, b):
    def make(p):
        return cls(p.x, p.y) if isinstance(p, P) else p

    return {"a": make(a), "b": make(b), "operator": operator}


VEC_SAMPLES = [P(3, 4), P(-1.5, 2), P(0, 0), P(0, -1), P(-1, 0), P(5, -12), P(-8, 15)]

VEC_UNARY = [
    ("nb_negative", "-a"),
    ("nb_positive", "+a"),
    ("nb_absolute", "abs(a)"),  # samples are Pythagorean: every hypot is exact
    ("nb_invert", "~a"),
    ("nb_int", "int(a)"),
    ("nb_float", "float(a)"),
    ("nb_index", "operator.index(a)"),
    ("nb_index", "[10, 20, 30, 40, 50, 60, 70, 80, 90][a]"),
    ("nb_bool", "bool(a)"),
    ("nb_bool", "'yes' if a else 'no'"),
    ("tp_hash", "hash(a)"),
]

VEC_BINARY = [
    # (slot, code, a, b); `a` is the instance side, `b` the other operand
    ("nb_add", "a + b", P(3, 4), P(1, 2)),
    ("nb_add", "a + b", P(3, 4), 1.5),
    ("nb_add", "a + b", P(-1.5, 2), 2),
    ("nb_add", "a + b", P(3, 4), True),
    ("nb_add", "a + b", P(3, 4), None),
    ("nb_add", "a + b", P(3, 4), "x"),
    ("nb_add/radd", "b + a", P(3, 4), 1.0),
    ("nb_add/radd", "b + a", P(-1.5, 2), 2),
    ("nb_add/radd", "b + a", P(3, 4), None),
    ("nb_add/radd", "b + a", P(3, 4), "x"),
    ("nb_subtract", "a - b", P(3, 4), P(1, 2)),
    ("nb_subtract", "a - b", P(3, 4), 1),
    ("nb_subtract/rsub", "b - a", P(3, 4), 10),
    ("nb_subtract/rsub", "b - a", P(-1.5, 2), 0.25),
    ("nb_subtract/rsub", "b - a", P(3, 4), "x"),
    ("nb_multiply", "a * b", P(3, 4), 2),
    ("nb_multiply", "a * b", P(-1.5, 2), -0.5),
    ("nb_multiply", "a * b", P(3, 4), P(1, 2)),
    ("nb_multiply", "a * b", P(3, 4), None),
    ("nb_multiply", "a * b", P(3, 4), "x"),  # str's sq_repeat with index(a) == 3: "xxx"
    ("nb_multiply/rmul", "b * a", P(3, 4), 2),
    ("nb_multiply/rmul", "b * a", P(-1.5, 2), 0.5),
    ("nb_true_divide", "a / b", P(3, 4), 2),
    ("nb_true_divide", "a / b", P(-1.5, 2), -0.25),
    ("nb_true_divide", "a / b", P(3, 4), 0),
    ("nb_true_divide", "a / b", P(3, 4), "x"),
    ("nb_true_divide", "b / a", P(3, 4), 2),
    ("nb_floor_divide", "a // b", P(3.5, -4), 2),
    ("nb_floor_divide", "a // b", P(3, 4), -2.5),
    ("nb_floor_divide", "a // b", P(3, 4), 0),
    ("nb_remainder", "a % b", P(3, 4), 2.5),
    ("nb_remainder", "a % b", P(-3.5, 4), 2),
    ("nb_remainder", "a % b", P(3, -4), -2),
    ("nb_remainder", "a % b", P(3, 4), P(2, 0)),  # f64 argument: float(b)
    ("nb_divmod", "divmod(a, b)", P(7, -3), 2),
    ("nb_divmod", "divmod(a, b)", P(3, 4), 0),
    ("nb_divmod", "divmod(b, a)", P(3, 4), 2),
    ("nb_lshift", "a << b", P(3, 4), 2),
    ("nb_lshift", "a << b", P(3, 4), 40),
    ("nb_lshift", "a << b", P(3, 4), True),
    ("nb_lshift", "a << b", P(3, 4), -1),
    ("nb_lshift", "a << b", P(3, 4), 2.0),
    ("nb_lshift", "a << b", P(3, 4), 2**32),
    ("nb_rshift", "a >> b", P(3, 4), 1),
    ("nb_rshift", "a >> b", P(3, 4), 40),
    ("nb_rshift", "a >> b", P(3, 4), "x"),
    ("nb_and", "a & b", P(7, -3), 6),
    ("nb_and", "a & b", P(3, 4), -(2**63)),
    ("nb_and", "a & b", P(3, 4), 1.5),
    ("nb_and", "a & b", P(3, 4), 2**64),
    ("nb_or", "a | b", P(7.9, -3.2), 8),
    ("nb_or", "a | b", P(3, 4), None),
    ("nb_xor", "a ^ b", P(7, -3), 5),
    ("nb_xor", "a ^ b", P(3, 4), 0.5),
    ("nb_matrix_multiply", "a @ b", P(3, 4), P(1, 2)),
    ("nb_matrix_multiply", "a @ b", P(-1.5, 2), P(4, 0.25)),
    ("nb_matrix_multiply", "a @ b", P(3, 4), 1),
    ("nb_matrix_multiply", "b @ a", P(3, 4), 1),
    ("nb_power", "a ** b", P(3, 4), 2),
    ("nb_power", "a ** b", P(3, 4), -1),
    ("nb_power", "a ** b", P(3, 4), 0.5),
    ("nb_power", "a ** b", P(3, 4), None),
    ("nb_power", "pow(a, b, 5)", P(3, 4), 2),
    ("nb_power", "pow(a, b, 2.5)", P(3, 4), 3),
    ("nb_power", "pow(a, b, None)", P(3, 4), 2),
    ("nb_power", "pow(a, b, 'm')", P(3, 4), 2),
    ("nb_power/rpow", "b ** a", P(3, 4), 2),
    ("nb_power/rpow", "b ** a", P(0.5, -1), 3),
    ("nb_power/rpow", "b ** a", P(3, 4), "x"),
    ("nb_power/rpow", "pow(b, a, 5)", P(3, 4), 2),  # 3-arg pow never uses the reflected form
    ("nb_power/rpow", "pow(b, a, None)", P(3, 4), 2),
    ("tp_richcompare", "a == b", P(3, 4), P(3, 4)),
    ("tp_richcompare", "a == b", P(3, 4), P(3, 5)),
    ("tp_richcompare", "a != b", P(3, 4), P(3, 4)),
    ("tp_richcompare", "a != b", P(3, 4), P(4, 3)),
    ("tp_richcompare", "a == b", P(3, 4), 3),
    ("tp_richcompare", "a != b", P(3, 4), 3),
    ("tp_richcompare", "b == a", P(3, 4), 3),
    ("tp_richcompare", "a < b", P(3, 4), P(5, 6)),
    ("tp_richcompare", "a <= b", P(3, 4), P(3, 4)),
    ("tp_richcompare", "a > b", P(3, 4), 1),
    ("tp_richcompare", "b >= a", P(3, 4), 1),
]

VEC_INPLACE = [
    ("nb_inplace_add", "a += b", P(3, 4), P(1, 2)),
    ("nb_inplace_add", "a += b", P(3, 4), 1),
    ("nb_inplace_add", "a += b", P(3, 4), 1.5),
    ("nb_inplace_subtract", "a -= b", P(3, 4), P(1, 2)),
    ("nb_inplace_subtract", "a -= b", P(3, 4), 1),  # NotImplemented -> __sub__ -> TypeError
    ("nb_inplace_multiply", "a *= b", P(3, 4), 2.5),
    ("nb_inplace_multiply", "a *= b", P(3, 4), P(2, 0)),  # f64 argument: float(b)
    ("nb_inplace_true_divide", "a /= b", P(3, 4), 4),
    ("nb_inplace_true_divide", "a /= b", P(3, 4), 0),
    ("nb_inplace_floor_divide", "a //= b", P(7, -3), 2),
    ("nb_inplace_floor_divide", "a //= b", P(7, -3), 0),
    ("nb_inplace_remainder", "a %= b", P(7, -3), 2.5),
    ("nb_inplace_lshift", "a <<= b", P(3, 4), 3),
    ("nb_inplace_lshift", "a <<= b", P(3, 4), -1),
    ("nb_inplace_rshift", "a >>= b", P(3, 4), 1),
    ("nb_inplace_and", "a &= b", P(7, -3), 6),
    ("nb_inplace_or", "a |= b", P(7, -3), 8),
    ("nb_inplace_xor", "a ^= b", P(7, -3), 5),
    ("nb_inplace_matrix_multiply", "a @= b", P(1, 2), P(3, 4)),
    ("nb_inplace_power", "a **= b", P(3, 4), 2),
    ("nb_inplace_power", "a **= b", P(3, 4), -1),
]


def _row_id(slot, code, a, b=None):
    def show(o):
        return f"V{tuple(o)}" if isinstance(o, P) else repr(o)

    return f"{slot}[{code}|a={show(a)}|b={show(b)}]"


def _params(rows):
    out = []
    for row in rows:
        if hasattr(row, "marks"):  # already a pytest.param (with marks)
            out.append(pytest.param(*row.values, marks=row.marks, id=_row_id(*row.values)))
        else:
            out.append(pytest.param(*row, id=_row_id(*row)))
    return out


@pytest.mark.parametrize(
    "slot,code,a",
    [pytest.param(s, c, a, id=_row_id(s, c, a)) for s, c in VEC_UNARY for a in VEC_SAMPLES],
)
def test_vec2_unary_slot_matches_reference(slot, code, a):
    got = _outcome(f"r = {code}", _vec_env(Vec2, a, None))
    want = _outcome(f"r = {code}", _vec_env(RefVec, a, None))
    assert got == want


@pytest.mark.parametrize("slot,code,a,b", _params(VEC_BINARY))
def test_vec2_binary_slot_matches_reference(slot, code, a, b):
    got = _outcome(f"r = {code}", _vec_env(Vec2, a, b))
    want = _outcome(f"r = {code}", _vec_env(RefVec, a, b))
    assert got == want


@pytest.mark.parametrize("slot,code,a,b", _params(VEC_INPLACE))
def test_vec2_inplace_slot_matches_reference(slot, code, a, b):
    """Result, identity (``a is a0``) and, after an error, the unchanged state of ``a``."""
    full = f"a0 = a\n{code}\nr = (a, a is a0)"
    got = _outcome(full, _vec_env(Vec2, a, b))
    want = _outcome(full, _vec_env(RefVec, a, b))
    assert got == want


def _rust_f64(x):
    """Rust's ``Display`` for an ``f64`` of moderate size: no ``.0`` on integral values."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


@pytest.mark.parametrize("a", [pytest.param(a, id=f"V{tuple(a)}") for a in VEC_SAMPLES + [P(0.1, -2.5e-3)]])
def test_vec2_repr_and_str(a):
    v = Vec2(a.x, a.y)
    want = f"Vec2({_rust_f64(a.x)}, {_rust_f64(a.y)})"
    assert repr(v) == want
    assert str(v) == want  # no tp_str: str() falls back to tp_repr
    assert f"{v}" == want


@pytest.mark.parametrize(
    "a,want",
    [
        pytest.param(P(-1, 0), -2, id="x=-1->-2"),
        pytest.param(P(0, -1), -2, id="0*31-1=-1->-2"),
        pytest.param(P(-1.5, 0), -2, id="trunc(-1.5)=-1->-2"),
        pytest.param(P(-2, 0), -2, id="-2"),
        pytest.param(P(3, 4), 97, id="97"),
        pytest.param(P(2.5, 0), 2, id="2"),
    ],
)
def test_vec2_hash_values(a, want):
    assert hash(Vec2(a.x, a.y)) == want
    assert hash(RefVec(a.x, a.y)) == want  # CPython's own rule for __hash__ returning -1


# Mapping: StrMap against a dict of floats.

MAP_ROWS = [
    ("mp_length", "r = len(m)"),
    ("mp_subscript", "r = m['a']"),
    ("mp_subscript", "r = m['b']"),
    ("mp_subscript", "r = m['missing']"),
    ("mp_subscript", "r = m['']"),
    ("mp_ass_subscript", "m['c'] = 3.5; r = (len(m), m['c'])"),
    ("mp_ass_subscript", "m['a'] = -2.0; r = (len(m), m['a'], m['b'])"),
    ("mp_ass_subscript", "m['\u00e9t\u00e9'] = 1.0; r = (len(m), m['\u00e9t\u00e9'])"),
    ("mp_ass_subscript/delete", "del m['a']; r = len(m)"),
    ("mp_ass_subscript/delete", "del m['a']; r = m['a']"),
    ("mp_ass_subscript/delete", "del m['missing']; r = len(m)"),
    ("mp_ass_subscript/delete", "del m['a']; del m['b']; m['a'] = 9.0; r = (len(m), m['a'])"),
]


@pytest.mark.parametrize("slot,code", [pytest.param(s, c, id=f"{s}[{c}]") for s, c in MAP_ROWS])
def test_strmap_slot_matches_dict(slot, code):
    def env(factory):
        m = factory()
        m["a"] = 1.0
        m["b"] = 2.5
        return {"m": m}

    got = _outcome(code, env(StrMap), message=True)
    want = _outcome(code, env(dict), message=True)
    assert got == want


def test_strmap_keyerror_carries_the_key():
    with pytest.raises(KeyError) as info:
        StrMap()["nope"]
    assert info.value.args == ("nope",)


# Sequence: Seq against a list of ints.

SEQ_ROWS = [
    ("sq_length", "r = len(S(5))"),
    ("sq_length", "r = len(S(0))"),
    ("sq_item", "r = S(5)[0]"),
    ("sq_item", "r = S(5)[4]"),
    ("sq_item", "r = S(5)[-1]"),
    ("sq_item", "r = S(5)[-5]"),
    ("sq_item", "r = S(5)[True]"),
    ("sq_item", "r = S(5)[5]"),
    ("sq_item", "r = S(5)[-6]"),
    ("sq_item", "r = S(0)[0]"),
    ("sq_item", "r = S(0)[-1]"),
    ("sq_item/iteration", "r = list(S(4))"),
    ("sq_item/iteration", "r = list(reversed(S(4)))"),
    ("sq_item/iteration", "r = [x * 2 for x in S(3)]"),
    ("sq_ass_item", "a = S(3); a[1] = 9; r = a"),
    ("sq_ass_item", "a = S(3); a[-1] = 9; r = a"),
    ("sq_ass_item", "a = S(3); a[-3] = -7; r = a"),
    ("sq_ass_item", "a = S(3); a[3] = 9; r = a"),
    ("sq_ass_item", "a = S(3); a[-4] = 9; r = a"),
    ("sq_ass_item/delete", "a = S(3); del a[0]; r = a"),
    ("sq_ass_item/delete", "a = S(3); del a[-1]; r = a"),
    ("sq_ass_item/delete", "a = S(3); del a[3]; r = a"),
    ("sq_ass_item/delete", "a = S(3); del a[-4]; r = a"),
    ("sq_contains", "r = 2 in S(3)"),
    ("sq_contains", "r = 3 in S(3)"),
    ("sq_contains", "r = -1 in S(3)"),
    ("sq_contains", "r = 0 not in S(0)"),
    ("sq_contains", "r = True in S(3)"),
    ("sq_concat", "r = S(2) + S(3)"),
    ("sq_concat", "r = S(0) + S(0)"),
    ("sq_concat", "a = S(2); r = (a + a, a)"),
    ("sq_repeat", "r = S(2) * 3"),
    ("sq_repeat", "r = 3 * S(2)"),
    ("sq_repeat", "r = S(2) * 0"),
    ("sq_repeat", "r = S(2) * -1"),
    ("sq_repeat", "r = S(0) * 5"),
    ("sq_repeat", "r = S(2) * True"),
    ("sq_repeat", "r = S(2) * 'x'"),
    ("sq_repeat", "r = S(2) * 2.0"),
    ("sq_inplace_concat", "a = S(2); a0 = a; a += S(3); r = (a, a is a0)"),
    ("sq_inplace_concat", "a = S(2); a0 = a; a += [5, 6]; r = (a, a is a0)"),
    ("sq_inplace_concat", "a = S(2); a0 = a; a += (7,); r = (a, a is a0)"),
    ("sq_inplace_concat", "a = S(2); a0 = a; a += a; r = (a, a is a0)"),
    ("sq_inplace_concat", "a = S(2); a0 = a; a += []; r = (a, a is a0)"),
    ("sq_inplace_repeat", "a = S(2); a0 = a; a *= 3; r = (a, a is a0)"),
    ("sq_inplace_repeat", "a = S(2); a0 = a; a *= 0; r = (a, a is a0)"),
    ("sq_inplace_repeat", "a = S(2); a0 = a; a *= -2; r = (a, a is a0)"),
    ("sq_inplace_repeat", "a = S(2); a *= 'x'; r = a"),
]


def _list_range(n):
    return list(range(n))


@pytest.mark.parametrize("slot,code", [pytest.param(s, c, id=f"{s}[{c}]") for s, c in SEQ_ROWS])
def test_seq_slot_matches_list(slot, code):
    got = _outcome(code, {"S": Seq})
    want = _outcome(code, {"S": _list_range})
    assert got == want


@pytest.mark.parametrize("n", [0, 1, 5, -3])
def test_countdown_matches_reversed_range(n):
    c = Countdown(n)
    assert iter(c) is c  # def_iter_self
    assert list(c) == list(range(n - 1, -1, -1))


def test_countdown_partial_consumption():
    c = Countdown(5)
    assert next(c) == 4
    assert next(c) == 3
    assert [x for x in c] == [2, 1, 0]


@pytest.mark.parametrize("k,x", [(1, 2), (0.5, -3), (-2, True), (1e300, 1e300), (2, 2**60)])
def test_adder_call_matches_addition(k, x):
    r = Adder(k)(x)
    assert type(r) is float
    assert r == float(x) + float(k)


# ---------------------------------------------------------------------------
# 2. reflected operands, comparisons, hashing, in-place identity


def test_radd_scalar_on_the_left():
    v = Vec2(3, 4)
    r = 1.0 + v
    assert type(r) is Vec2 and (r.x, r.y) == (4.0, 5.0)
    r = 2 + v
    assert (r.x, r.y) == (5.0, 6.0)


def test_rsub_keeps_operand_order():
    v = Vec2(3, 4)
    r = 10 - v
    assert (r.x, r.y) == (7.0, 6.0)  # 10 - v, not v - 10
    with pytest.raises(TypeError, match="unsupported operand type"):
        v - 10  # sub takes only a Vec2


def test_rmul_scalar_on_the_left():
    v = Vec2(3, 4)
    r = 2 * v
    assert (r.x, r.y) == (6.0, 8.0)
    assert 2 * v == v * 2


def test_rpow_scalar_base():
    v = Vec2(3, 4)
    r = 2**v
    assert (r.x, r.y) == (8.0, 16.0)  # 2 ** v, not v ** 2
    r = v**2
    assert (r.x, r.y) == (9.0, 16.0)


@pytest.mark.parametrize(
    "code",
    ["None + v", "v + None", "'x' - v", "v @ 1", "1 @ v", "v - 1", "v * w", "divmod(1, v)"],
)
def test_unsupported_operands_raise_typeerror(code):
    v, w = Vec2(3, 4), Vec2(1, 2)
    with pytest.raises(TypeError, match="unsupported operand type"):
        eval(code, {"v": v, "w": w})
    assert (v.x, v.y, w.x, w.y) == (3.0, 4.0, 1.0, 2.0)


def test_three_argument_pow_never_uses_the_reflected_handler():
    v = Vec2(3, 4)
    with pytest.raises(TypeError, match="unsupported operand type"):
        pow(2, v, 5)


@pytest.mark.parametrize("code", ["v < w", "v <= w", "v > w", "v >= w", "v < 1", "1 > v"])
def test_ordering_comparisons_raise_typeerror(code):
    with pytest.raises(TypeError, match="not supported between instances"):
        eval(code, {"v": Vec2(3, 4), "w": Vec2(5, 6)})


def test_equality_with_foreign_objects_and_equal_vectors():
    v = Vec2(3, 4)
    assert (v == 1) is False
    assert (v != 1) is True
    assert (1 == v) is False
    assert (v == None) is False  # noqa: E711
    assert (v == Vec2(3, 4)) is True
    assert (v != Vec2(3, 4)) is False
    assert (v == Vec2(3, 4.5)) is False
    assert v in [Vec2(0, 0), Vec2(3, 4)]


def test_hashable_and_equal_vectors_hash_equal():
    a, b = Vec2(1.5, -2), Vec2(1.5, -2)
    assert a is not b and a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert {a: "x"}[b] == "x"
    assert hash(Vec2(-1, 0)) == -2


@pytest.mark.parametrize(
    "code,want",
    [
        ("v += u", (4.0, 6.0)),
        ("v -= u", (2.0, 2.0)),
        ("v *= 2", (6.0, 8.0)),
        ("v /= 2", (1.5, 2.0)),
        ("v //= 2", (1.0, 2.0)),
        ("v %= 2", (1.0, 0.0)),
        ("v <<= 1", (6.0, 8.0)),
        ("v >>= 1", (1.5, 2.0)),
        ("v &= 6", (2.0, 4.0)),
        ("v |= 1", (3.0, 5.0)),
        ("v ^= 1", (2.0, 5.0)),
        ("v @= u", (33.0, 44.0)),  # scaled by the dot product 11
        ("v **= 2", (9.0, 16.0)),
    ],
)
def test_inplace_keeps_identity(code, want):
    ns = {"v": Vec2(3, 4), "u": Vec2(1, 2)}
    w = ns["v"]
    exec(code, ns)
    assert ns["v"] is w
    assert (w.x, w.y) == want
    assert (ns["u"].x, ns["u"].y) == (1.0, 2.0)


def test_isub_non_vec2_falls_back_to_sub_and_raises_typeerror():
    v = Vec2(3, 4)
    w = v
    with pytest.raises(TypeError, match=r"unsupported operand type\(s\) for -=:"):
        v -= 1
    assert v is w and (v.x, v.y) == (3.0, 4.0)


def test_iadd_non_converting_operand_falls_back_to_add():
    v = Vec2(3, 4)
    w = v
    v += 1  # iadd takes a Vec2; `v + 1` is valid, so Python should use it
    assert (v.x, v.y) == (4.0, 5.0)
    assert v is not w and (w.x, w.y) == (3.0, 4.0)


@pytest.mark.parametrize(
    "code,exc",
    [
        ("v + None", TypeError),
        ("None + v", TypeError),
        ("'x' - v", TypeError),
        ("v @ 1", TypeError),
        ("v < w", TypeError),
        ("v == 1", None),
        ("v -= 1", TypeError),
        ("v << -1", ValueError),
        ("v & 2**64", OverflowError),
        ("v / 0", ZeroDivisionError),
        ("pow(v, 2, 'm')", TypeError),
    ],
)
def test_not_implemented_and_error_paths_leak_nothing(code, exc):
    ns = {"v": Vec2(3, 4), "w": Vec2(1, 2)}
    compiled = compile(code, "<leak>", "exec")
    objs = [ns["v"], ns["w"], Vec2, TypeError]
    before = [sys.getrefcount(o) for o in objs]
    for _ in range(ROUNDS):
        try:
            exec(compiled, ns)
        except Exception as e:  # noqa: BLE001
            assert exc is not None and type(e) is exc
        else:
            assert exc is None
    after = [sys.getrefcount(o) for o in objs]
    assert before == after


# ---------------------------------------------------------------------------
# 3. the panic / Err matrix


class Fault(NamedTuple):
    slot: str  # the slot (and call path) exercised
    group: str  # which subprocess runs it
    setup: str  # builds the objects; `T` is the trigger value (PANIC or FAIL)
    stmt: str  # trips the handler
    what: str  # the handler's name in the panic/error message
    objects: tuple  # names whose reference counts must not change
    check: str  # must succeed afterwards: the objects are still usable


VEC_SETUP = "v = Vec2(T, 0); v0 = v; w = Vec2(1, 2); k = 2.5; n = 1000; md = 7.5"
VEC_OBJS = ("v", "w", "k", "n", "md")
# v unchanged and not rebound; reading it (getter) and borrowing it as an operand of another
# Vec2's slot both work, so no borrow flag was left behind
VEC_CHECK = (
    "assert v is v0 and (v.x, v.y) == (T, 0)\n"
    "assert w + v == Vec2(T + 1, 2)\n"
    "assert (w.x, w.y) == (1, 2)"
)


def _vec(slot, group, stmt, what):
    return Fault(slot, group, VEC_SETUP, stmt, what, VEC_OBJS, VEC_CHECK)


FAULTS = [
    # number protocol, unary
    _vec("nb_negative", "number-unary", "-v", "neg"),
    _vec("nb_positive", "number-unary", "+v", "pos"),
    _vec("nb_absolute", "number-unary", "abs(v)", "abs"),
    _vec("nb_invert", "number-unary", "~v", "invert"),
    _vec("nb_int", "number-unary", "int(v)", "int"),
    _vec("nb_float", "number-unary", "float(v)", "float"),
    _vec("nb_index", "number-unary", "operator.index(v)", "index"),
    _vec("nb_index/list-index", "number-unary", "[1, 2][v]", "index"),
    _vec("nb_bool", "number-unary", "bool(v)", "bool"),
    _vec("nb_bool/if", "number-unary", "if v: pass", "bool"),
    # number protocol, binary (forward and reflected) and ternary
    _vec("nb_add", "number-binary", "v + w", "add"),
    _vec("nb_add/radd", "number-binary", "k + v", "radd"),
    _vec("nb_subtract", "number-binary", "v - w", "sub"),
    _vec("nb_subtract/rsub", "number-binary", "k - v", "rsub"),
    _vec("nb_multiply", "number-binary", "v * k", "mul"),
    _vec("nb_multiply/rmul", "number-binary", "k * v", "mul"),
    _vec("nb_true_divide", "number-binary", "v / k", "truediv"),
    _vec("nb_floor_divide", "number-binary", "v // k", "floordiv"),
    _vec("nb_remainder", "number-binary", "v % k", "mod"),
    _vec("nb_divmod", "number-binary", "divmod(v, k)", "floordiv"),
    _vec("nb_lshift", "number-binary", "v << n", "lshift"),
    _vec("nb_rshift", "number-binary", "v >> n", "rshift"),
    _vec("nb_and", "number-binary", "v & n", "and"),
    _vec("nb_or", "number-binary", "v | n", "or"),
    _vec("nb_xor", "number-binary", "v ^ n", "xor"),
    _vec("nb_matrix_multiply", "number-binary", "v @ w", "matmul"),
    _vec("nb_power", "number-binary", "v ** k", "pow"),
    _vec("nb_power/modulo", "number-binary", "pow(v, k, md)", "pow"),
    _vec("nb_power/rpow", "number-binary", "k ** v", "rpow"),
    # number protocol, in-place (&mut self)
    _vec("nb_inplace_add", "number-inplace", "v += w", "iadd"),
    _vec("nb_inplace_subtract", "number-inplace", "v -= w", "isub"),
    _vec("nb_inplace_multiply", "number-inplace", "v *= k", "imul"),
    _vec("nb_inplace_true_divide", "number-inplace", "v /= k", "truediv"),
    _vec("nb_inplace_floor_divide", "number-inplace", "v //= k", "floordiv"),
    _vec("nb_inplace_remainder", "number-inplace", "v %= k", "mod"),
    _vec("nb_inplace_lshift", "number-inplace", "v <<= n", "lshift"),
    _vec("nb_inplace_rshift", "number-inplace", "v >>= n", "rshift"),
    _vec("nb_inplace_and", "number-inplace", "v &= n", "and"),
    _vec("nb_inplace_or", "number-inplace", "v |= n", "or"),
    _vec("nb_inplace_xor", "number-inplace", "v ^= n", "xor"),
    _vec("nb_inplace_matrix_multiply", "number-inplace", "v @= w", "matmul"),
    _vec("nb_inplace_power", "number-inplace", "v **= k", "pow"),
    # type protocol
    _vec("tp_richcompare", "type", "v == w", "richcompare"),
    _vec("tp_richcompare/ordering", "type", "v < w", "richcompare"),
    _vec("tp_richcompare/reflected", "type", "n == v", "richcompare"),
    _vec("tp_hash", "type", "hash(v)", "hash"),
    _vec("tp_hash/dict-key", "type", "{v: 1}", "hash"),
    _vec("tp_repr", "type", "repr(v)", "repr"),
    _vec("tp_repr/str", "type", "str(v)", "repr"),
    Fault(
        "tp_iternext",
        "type",
        "c = Countdown(T + 2); assert next(c) == T + 1; assert next(c) == T",
        "next(c)",
        "tp_iternext",
        ("c",),
        # the same state trips again (the borrow was released: not a RuntimeError)
        "assert iter(c) is c\n"
        "try:\n    next(c)\nexcept (PanicException, ValueError) as e:\n"
        "    assert 'deliberate' in str(e) and 'tp_iternext' in str(e)\n"
        "else:\n    raise AssertionError('state changed')",
    ),
    Fault(
        "tp_iternext/for-loop",
        "type",
        "c = Countdown(T + 1)",
        "for _ in c: pass",
        "tp_iternext",
        ("c",),
        "assert iter(c) is c",
    ),
    Fault(
        "tp_call",
        "type",
        "a = Adder(1.5); x = float(T)",
        "a(x)",
        "tp_call",
        ("a", "x"),
        "assert a(2) == 3.5",
    ),
    # mapping protocol
    Fault(
        "mp_subscript",
        "mapping",
        "m = StrMap(); m['a'] = 1.5; key = KEYS[T]",
        "m[key]",
        "mp_subscript",
        ("m", "key"),
        "assert m['a'] == 1.5 and len(m) == 1\nm['b'] = 2.0\nassert len(m) == 2",
    ),
    Fault(
        "mp_ass_subscript",
        "mapping",
        "m = StrMap(); m['a'] = 1.5; x = float(T)",
        "m['a'] = x",
        "mp_ass_subscript",
        ("m", "x"),
        "assert m['a'] == 1.5 and len(m) == 1\nm['a'] = 2.0\nassert m['a'] == 2.0",
    ),
    # sequence protocol
    Fault(
        "sq_item",
        "sequence",
        "s = Seq(0); s += [0, T]",
        "s[1]",
        "sq_item",
        ("s",),
        "assert s.tolist() == [0, T] and s[0] == 0 and len(s) == 2",
    ),
    Fault(
        "sq_item/negative-index",
        "sequence",
        "s = Seq(0); s += [0, T]",
        "s[-1]",
        "sq_item",
        ("s",),
        "assert s.tolist() == [0, T] and s[-2] == 0",
    ),
    Fault(
        "sq_item/iteration",
        "sequence",
        "s = Seq(0); s += [0, T]",
        "list(s)",
        "sq_item",
        ("s",),
        "assert s.tolist() == [0, T] and 0 in s",
    ),
    Fault(
        "sq_ass_item",
        "sequence",
        "s = Seq(3); x = T",
        "s[0] = x",
        "sq_ass_item",
        ("s", "x"),
        "assert s.tolist() == [0, 1, 2]\ns[0] = 5\nassert s.tolist() == [5, 1, 2]",
    ),
    Fault(
        "sq_contains",
        "sequence",
        "s = Seq(3); x = T",
        "x in s",
        "sq_contains",
        ("s", "x"),
        "assert 1 in s and 5 not in s",
    ),
    Fault(
        "sq_concat",
        "sequence",
        "s = Seq(2); t = Seq(0); t += [0, T]; del t[0]",
        "s + t",
        "sq_concat",
        ("s", "t"),
        "assert t.tolist() == [T]\nassert (s + Seq(2)).tolist() == [0, 1, 0, 1]",
    ),
    Fault(
        "sq_repeat",
        "sequence",
        "s = Seq(2); x = T",
        "s * x",
        "sq_repeat",
        ("s", "x"),
        "assert (s * 2).tolist() == [0, 1, 0, 1] and s.tolist() == [0, 1]",
    ),
    Fault(
        "sq_repeat/reflected",
        "sequence",
        "s = Seq(2); x = T",
        "x * s",
        "sq_repeat",
        ("s", "x"),
        "assert (2 * s).tolist() == [0, 1, 0, 1]",
    ),
    Fault(
        "sq_inplace_concat",
        "sequence",
        "s = Seq(2); s0 = s; other = [T]",
        "s += other",
        "sq_inplace_concat",
        ("s", "other"),
        "assert s is s0 and s.tolist() == [0, 1]\ns += [5]\nassert s is s0 and s.tolist() == [0, 1, 5]",
    ),
    Fault(
        "sq_inplace_repeat",
        "sequence",
        "s = Seq(2); s0 = s; x = T",
        "s *= x",
        "sq_inplace_repeat",
        ("s", "x"),
        "assert s is s0 and s.tolist() == [0, 1]\ns *= 2\nassert s is s0 and s.tolist() == [0, 1, 0, 1]",
    ),
]

FAULT_GROUPS = sorted({f.group for f in FAULTS})

CASE_GLOBALS = {
    "Vec2": Vec2,
    "StrMap": StrMap,
    "Countdown": Countdown,
    "Adder": Adder,
    "Seq": Seq,
    "PanicException": PanicException,
    "operator": operator,
    "KEYS": {PANIC: "panic", FAIL: "fail"},
}


def _trip_once(code, ns):
    """Run ``code`` once: (caught by ``except Exception``?, exception type, message)."""
    try:
        exec(code, ns)
    except Exception as e:  # noqa: BLE001
        return True, type(e), str(e)
    except BaseException as e:  # PanicException must land here
        return False, type(e), str(e)
    raise AssertionError("the handler was not tripped: no exception")


def run_fault(case, trigger, rounds):
    """Trip ``case`` with ``trigger``; check the exception, then ``rounds`` more trips leave
    every involved reference count unchanged, then the objects are still usable."""
    ns = dict(CASE_GLOBALS, T=trigger)
    exec(case.setup, ns)
    code = compile(case.stmt, f"<{case.slot}>", "exec")

    as_exception, kind, message = _trip_once(code, ns)
    if trigger == PANIC:
        expected = PanicException
        assert kind is PanicException, f"{case.slot}: expected PanicException, got {kind}: {message}"
        assert not issubclass(kind, Exception)
        assert not as_exception, f"{case.slot}: the panic was caught by `except Exception`"
        want = f"Rust panic: deliberate panic in {case.what}"
        assert message.startswith(want), f"{case.slot}: {message!r} does not start with {want!r}"
    else:
        expected = ValueError
        assert kind is ValueError, f"{case.slot}: expected ValueError, got {kind}: {message}"
        assert as_exception
        want = f"deliberate failure in {case.what}"
        assert message == want, f"{case.slot}: {message!r} != {want!r}"

    objs = [ns[name] for name in case.objects]
    objs += [type(ns[case.objects[0]]), PanicException, ValueError]
    before = [sys.getrefcount(o) for o in objs]
    raised = 0
    for _ in range(rounds):
        try:
            exec(code, ns)
        except expected:
            raised += 1
    after = [sys.getrefcount(o) for o in objs]
    assert raised == rounds, f"{case.slot}: raised {raised} times out of {rounds}"
    names = list(case.objects) + ["type", "PanicException", "ValueError"]
    assert before == after, f"{case.slot}: refcounts changed: " + ", ".join(
        f"{n}: {b} -> {a}" for n, b, a in zip(names, before, after) if b != a
    )

    exec(case.check, ns)


def run_group(group):
    """Entry point of the subprocess run: the panic/Err matrix of one slot kind."""
    for case in FAULTS:
        if case.group != group:
            continue
        for trigger in (PANIC, FAIL):
            run_fault(case, trigger, CHILD_ROUNDS)
            print(f"ok {case.slot} {trigger}", flush=True)
    print(f"group-done {group}", flush=True)


@pytest.mark.parametrize("trigger", [pytest.param(PANIC, id="panic"), pytest.param(FAIL, id="err")])
@pytest.mark.parametrize("case", [pytest.param(f, id=f.slot) for f in FAULTS])
def test_fault_matrix(case, trigger):
    run_fault(case, trigger, ROUNDS)


def test_fault_matrix_covers_every_slot_kind():
    slots = {f.slot.split("/")[0] for f in FAULTS}
    expected = {
        "nb_negative", "nb_positive", "nb_absolute", "nb_invert", "nb_int", "nb_float",
        "nb_index", "nb_bool", "nb_add", "nb_subtract", "nb_multiply", "nb_true_divide",
        "nb_floor_divide", "nb_remainder", "nb_divmod", "nb_lshift", "nb_rshift", "nb_and",
        "nb_or", "nb_xor", "nb_matrix_multiply", "nb_power", "nb_inplace_add",
        "nb_inplace_subtract", "nb_inplace_multiply", "nb_inplace_true_divide",
        "nb_inplace_floor_divide", "nb_inplace_remainder", "nb_inplace_lshift",
        "nb_inplace_rshift", "nb_inplace_and", "nb_inplace_or", "nb_inplace_xor",
        "nb_inplace_matrix_multiply", "nb_inplace_power", "tp_richcompare", "tp_hash",
        "tp_repr", "tp_iternext", "tp_call", "mp_subscript", "mp_ass_subscript", "sq_item",
        "sq_ass_item", "sq_contains", "sq_concat", "sq_repeat", "sq_inplace_concat",
        "sq_inplace_repeat",
    }  # fmt: skip
    assert slots == expected
    reflected = {f.slot for f in FAULTS if f.slot.endswith(("/radd", "/rsub", "/rmul", "/rpow"))}
    assert reflected == {"nb_add/radd", "nb_subtract/rsub", "nb_multiply/rmul", "nb_power/rpow"}


def _run_child(code):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [MODULE_DIR, HERE] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["RUST_BACKTRACE"] = "0"  # short stderr; no assertion reads it
    # the timeout only guards against a hung child
    return subprocess.run(
        [sys.executable, "-X", "dev", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize("group", FAULT_GROUPS)
def test_fault_matrix_in_subprocess(group):
    proc = _run_child(
        f"""
        import test_slots
        test_slots.run_group({group!r})
        """
    )
    detail = f"rc={proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, detail
    lines = proc.stdout.splitlines()
    for case in FAULTS:
        if case.group == group:
            for trigger in (PANIC, FAIL):
                assert f"ok {case.slot} {trigger}" in lines, detail
    assert f"group-done {group}" in lines, detail


def test_panic_exception_is_a_base_exception():
    assert issubclass(PanicException, BaseException)
    assert not issubclass(PanicException, Exception)
    caught_by_exception = False
    try:
        try:
            Adder(1)(PANIC)
        except Exception:  # noqa: BLE001 - must not catch the panic
            caught_by_exception = True
    except PanicException as e:
        assert str(e) == "Rust panic: deliberate panic in tp_call"
    assert not caught_by_exception


# ---------------------------------------------------------------------------
# 4. bad input


def test_vec2_is_not_subscriptable():
    v = Vec2(1, 2)
    with pytest.raises(TypeError, match="not subscriptable"):
        v["x"]
    with pytest.raises(TypeError, match="not subscriptable"):
        v[0]


def test_vec2_item_deletion_and_assignment_raise_typeerror():
    v = Vec2(1, 2)
    with pytest.raises(TypeError, match="support item deletion"):
        del v[0]
    with pytest.raises(TypeError, match="support item assignment"):
        v[0] = 1
    assert (v.x, v.y) == (1.0, 2.0)


BIG_INDEX_ROWS = [
    "r = S(3)[2**70]",
    "r = S(3)[-2**70]",
    "a = S(3); a[2**70] = 1; r = a",
    "a = S(3); a[-2**70] = 1; r = a",
    "a = S(3); del a[2**70]; r = a",
    "r = S(3) * 2**70",
    "r = 2**70 * S(3)",
    "a = S(3); a *= 2**70; r = a",
]


@pytest.mark.parametrize("code", BIG_INDEX_ROWS)
def test_oversized_index_behaves_like_list(code):
    """An index that does not fit ``Py_ssize_t`` never reaches ``sq_item``: CPython raises
    what it raises for a ``list`` (``IndexError`` for indexing, ``OverflowError`` for
    repetition), with the same message."""
    got = _outcome(code, {"S": Seq}, message=True)
    want = _outcome(code, {"S": _list_range}, message=True)
    assert got == want
    assert got[0] == "raises"


def test_oversized_index_is_indexerror_cannot_fit():
    s = Seq(3)
    with pytest.raises(IndexError, match=r"^cannot fit 'int' into an index-sized integer$"):
        s[2**70]
    with pytest.raises(IndexError, match=r"^cannot fit 'int' into an index-sized integer$"):
        [0, 1, 2][2**70]
    assert s.tolist() == [0, 1, 2]


@pytest.mark.parametrize("n", [0, 1, 3])
def test_index_below_minus_len_is_indexerror(n):
    s = Seq(n)
    with pytest.raises(IndexError):
        s[-len(s) - 1]  # arrives at sq_item as -1
    with pytest.raises(IndexError):
        s[len(s)]
    with pytest.raises(IndexError):
        s[-len(s) - 1] = 0
    with pytest.raises(IndexError):
        del s[-len(s) - 1]
    assert s.tolist() == list(range(n))


@pytest.mark.parametrize(
    "code,exc,match",
    [
        ("s['a']", TypeError, "sequence index must be integer, not 'str'"),
        ("s[1:2]", TypeError, "sequence index must be integer, not 'slice'"),
        ("s[1.0]", TypeError, "sequence index must be integer, not 'float'"),
        ("s + 1", TypeError, "expected Seq, got int"),  # sq_concat cannot say NotImplemented
        ("s + [1]", TypeError, "expected Seq, got list"),
        ("1 + s", TypeError, "unsupported operand type"),
        ("[1] + s", TypeError, "can only concatenate list"),
        ("s * 'a'", TypeError, "can't multiply sequence by non-int"),
        ("'a' in s", TypeError, "cannot be interpreted as an integer"),
        ("s[0] = 'a'", TypeError, "cannot be interpreted as an integer"),
        ("s += ['a']", TypeError, "cannot be interpreted as an integer"),
        ("s *= 1.5", TypeError, "can't multiply sequence by non-int"),
        ("s += 1", TypeError, "can only extend Seq"),
    ],
)
def test_seq_bad_operands(code, exc, match):
    s = Seq(3)
    ns = {"s": s}
    with pytest.raises(exc, match=match):
        exec(code, ns)
    assert ns["s"] is s and s.tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "code,exc",
    [
        ("m[1]", TypeError),
        ("m[None]", TypeError),
        ("m[1] = 2.0", TypeError),
        ("m['a'] = 'x'", TypeError),
        ("del m[1]", TypeError),
        ("del m['missing']", KeyError),
        ("m['missing']", KeyError),
    ],
)
def test_strmap_bad_input(code, exc):
    m = StrMap()
    m["a"] = 1.0
    with pytest.raises(exc):
        exec(code, {"m": m})
    assert len(m) == 1 and m["a"] == 1.0


@pytest.mark.parametrize(
    "args,kwargs,match",
    [
        ((), {}, r"takes exactly one argument \(0 given\)"),
        ((1, 2), {}, r"takes exactly one argument \(2 given\)"),
        ((), {"x": 1}, "takes no keyword arguments"),
        ((1,), {"x": 1}, "takes no keyword arguments"),
        (("a",), {}, "must be a real number, not str"),
        ((None,), {}, "must be a real number, not NoneType"),
    ],
)
def test_adder_wrong_call_raises_typeerror(args, kwargs, match):
    a = Adder(1)
    with pytest.raises(TypeError, match=match):
        a(*args, **kwargs)
    assert a(2) == 3.0


def test_countdown_iterated_twice_stays_exhausted():
    c = Countdown(3)
    assert list(c) == [2, 1, 0]
    assert list(c) == []
    assert [x for x in c] == []


def test_next_after_exhaustion_raises_stopiteration():
    c = Countdown(1)
    assert next(c) == 0
    for _ in range(3):
        with pytest.raises(StopIteration):
            next(c)
    assert next(c, "done") == "done"


# -- borrowed arguments ---------------------------------------------------------------------


def test_borrowed_object_argument_takes_no_reference():
    o = object()
    # An owned `Object` parameter takes exactly one reference for the call; `&Object` none.
    assert tm.owned_refcount(o) == tm.borrowed_refcount(o) + 1
    before = sys.getrefcount(o)
    for _ in range(1000):
        tm.borrowed_refcount(o)
        tm.owned_refcount(o)
    assert sys.getrefcount(o) == before


def test_borrowed_object_arguments_are_the_callers_objects():
    o = object()
    assert tm.borrowed_same(o, o)
    assert not tm.borrowed_same(o, object())


@pytest.mark.parametrize(
    "code, name", [(0, "Lt"), (1, "Le"), (2, "Eq"), (3, "Ne"), (4, "Gt"), (5, "Ge")]
)
def test_compare_op_argument_from_cpython_code(code, name):
    assert tm.compare_op_name(code) == name


@pytest.mark.parametrize("bad", [-1, 6, 2**70])
def test_compare_op_argument_out_of_range(bad):
    with pytest.raises((ValueError, OverflowError), match="compare_op_name"):
        tm.compare_op_name(bad)


def test_compare_op_argument_wrong_type():
    with pytest.raises(TypeError, match="compare_op_name"):
        tm.compare_op_name("==")


def test_pyref_operand_of_another_type_is_not_implemented():
    # Vec2's binary slots take `PyRef<'_, Vec2>` operands: any other type is NotImplemented
    # (Python's own TypeError), never a crash or a conversion error from the layer.
    v = Vec2(1.0, 2.0)
    with pytest.raises(TypeError, match="unsupported operand"):
        v @ 1.0
    with pytest.raises(TypeError, match="unsupported operand"):
        v @ "x"


# -- calling conventions ---------------------------------------------------------------------


def test_one_and_no_argument_methods_use_cpythons_own_conventions():
    # Handlers of one or no argument are installed as METH_O / METH_NOARGS (the cheapest
    # calls CPython makes): CPython itself then checks the count, with its own message,
    # which names the class or module (3.10+).
    import pontoneer_demo as demo

    b = demo.FloatBuffer()
    one = r"takes exactly one argument \({} given\)$"
    with pytest.raises(TypeError, match=r"^(FloatBuffer\.)?append\(\) " + one.format(2)):
        b.append(1.0, 2.0)
    with pytest.raises(TypeError, match=r"^(FloatBuffer\.)?sum\(\) takes no arguments \(1 given\)$"):
        b.sum(1)
    with pytest.raises(TypeError, match=r"takes no keyword arguments"):
        b.append(x=1.0)
    with pytest.raises(
        TypeError, match=r"^(pontoneer_testmod\.)?borrowed_refcount\(\) " + one.format(0)
    ):
        tm.borrowed_refcount()
    # A static method of one argument (METH_CLASS | METH_O) still finds its class.
    assert len(demo.FloatBuffer.from_count(3)) == 3
    with pytest.raises(TypeError, match=r"from_count\(\) " + one.format(0)):
        demo.FloatBuffer.from_count()
    # Two or more arguments: METH_FASTCALL, counted by the layer (its own message).
    m = demo.Matrix(2, 2)
    with pytest.raises(TypeError, match=r"^get\(\) takes exactly 2 arguments \(1 given\)$"):
        m.get(1)
