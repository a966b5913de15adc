"""Reference-leak driver for pontoneer's extension modules, in the spirit of CPython's
``regrtest -R 3:3``.

Run it with a *debug* CPython (one that has ``sys.gettotalrefcount``) and with
``pontoneer_demo`` / ``pontoneer_testmod`` built against that same interpreter (the
debug ABI: ``Py_REF_DEBUG`` must be on in the Rust build too, otherwise every incref
made by the extension is invisible to ``sys.gettotalrefcount``).  ``scripts/refleak.sh``
does all of that; see ``tests/leaks/README.md``.

Every entry of ``STATEMENTS`` is one small named statement (a slot, method, getter,
setter, error path or panic path of a demo or test type).  For each one the driver
compiles a loop function that runs the statement ``--calls`` times (10,000 by default)
and calls it for ``--warmup`` + ``--rounds`` rounds (1 + 3 by default).  After every
round it does what regrtest's ``dash_R`` does -- clears caches (type cache, ABC caches,
``re``), runs the garbage collector, then reads ``sys.gettotalrefcount()`` and
``sys.getallocatedblocks()`` -- and keeps the difference to the previous round in
pre-allocated arrays, so the bookkeeping itself allocates nothing between readings.

A statement passes when, in *every* measured round, the reference-count delta is 0 and
the allocated-block delta is 0 (stricter than regrtest, which forgives non-monotonic
noise).  The driver also reads glibc's ``mallinfo2()`` (memory from ``malloc``: Rust's
allocations live there, not in pymalloc) and flags a statement whose malloc usage grows by
at least one byte per call in every measured round.

Negative control: ``Leaky().keep(obj)`` forgets one reference per call.  The controls run
first (after three pure-Python reference statements that show the noise floor and are not
gated either); the driver asserts they are flagged (otherwise the checker is blind and the
run fails) and leaves them out of the verdict.

Statements whose loop raised something other than the expected exception, or did not
raise the expected one, are reported as ERROR (the statement did not exercise what its
name says).  Exit status: 0 when every statement passed and the controls were caught.

Usage: python3.11-dbg tests/leaks/refleak.py [--lib DIR] [-k REGEX] [--calls N]
       [--rounds N] [--warmup N] [--list] [--no-numpy] [--show-stderr] [-q]
"""

import argparse
import array
import collections.abc
import ctypes
import faulthandler
import gc
import importlib.machinery
import io
import numbers
import operator
import os
import re
import struct
import sys
import textwrap
import time

# Rust reads RUST_BACKTRACE once, at the first panic: capturing and symbolising a backtrace
# for each of the ~10^6 deliberate panics would take hours.
os.environ["RUST_BACKTRACE"] = "0"

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# ---------------------------------------------------------------------------
# statements


class Stmt:
    __slots__ = ("name", "stmt", "setup", "exc", "needs", "unraisable", "control", "reference")

    def __init__(self, name, stmt, setup="", exc=None, needs=None, unraisable=0, control=None,
                 reference=False):
        self.name = name
        self.stmt = stmt
        self.setup = setup
        self.exc = exc  # source of the expected exception (class or tuple), or None
        self.needs = needs  # "numpy" or None
        self.unraisable = unraisable  # sys.unraisablehook calls expected per execution
        self.control = control  # None, or the counter the control must trip ("rc"/"blocks")
        self.reference = reference  # pure-Python noise-floor statement: reported, not gated


STATEMENTS = []


def S(name, stmt, setup="", exc=None, **kw):
    STATEMENTS.append(Stmt(name, stmt, setup, exc, **kw))


# ---- pure-Python references (no pontoneer code): the measurement's own noise floor ----
# They run first, outside the verdict. The first statement of a process that goes through
# sys.unraisablehook allocates one block once, in its second round (CPython's own lazy
# state, seen with a pure-Python __del__ as well): the __del__ reference absorbs it.
S("python/unraisable-__del__", "DelRaises()", unraisable=1, reference=True)
S("python/list-append", "l.append(1.5)", "l = []", reference=True)
S("python/raise-catch-ValueError", "raise ValueError('x')", exc="ValueError", reference=True)

# ---- negative controls (run first; must be flagged) ----
S("control/Leaky.keep(o)", "lk.keep(o)", "lk = Leaky(); o = object()", control="rc")
S("control/Leaky.keep(object())", "lk.keep(object())", "lk = Leaky()", control="blocks")
# Leaky's other paths do not leak
S("Leaky/new", "Leaky()")
S("Leaky/new/args-TypeError", "Leaky(1)", exc="TypeError")
S("Leaky/keep/no-args-TypeError", "lk.keep()", "lk = Leaky()", exc="TypeError")

# ---- demo: FloatBuffer ----
FB = "b = FloatBuffer.from_count(4); c = FloatBuffer.from_count(4); e = FloatBuffer()"
FBX = FB + "; mv = memoryview(b)"  # b exported for the whole loop
for name, stmt, exc, setup in [
    ("new", "FloatBuffer()", None, ""),
    ("new/args-TypeError", "FloatBuffer(1)", "TypeError", ""),
    ("new/kwargs-TypeError", "FloatBuffer(x=1)", "TypeError", ""),
    ("from_count", "FloatBuffer.from_count(8)", None, ""),
    ("from_count/zero", "FloatBuffer.from_count(0)", None, ""),
    ("from_count/via-instance", "b.from_count(3)", None, FB),
    ("from_count/index-object", "FloatBuffer.from_count(HasIndex())", None, ""),
    ("from_count/float-TypeError", "FloatBuffer.from_count(1.5)", "TypeError", ""),
    ("from_count/str-TypeError", "FloatBuffer.from_count('3')", "TypeError", ""),
    ("from_count/None-TypeError", "FloatBuffer.from_count(None)", "TypeError", ""),
    ("from_count/no-args-TypeError", "FloatBuffer.from_count()", "TypeError", ""),
    ("from_count/two-args-TypeError", "FloatBuffer.from_count(1, 2)", "TypeError", ""),
    ("from_count/kwargs-TypeError", "FloatBuffer.from_count(n=1)", "TypeError", ""),
    ("from_count/negative-ValueError", "FloatBuffer.from_count(-1)", "ValueError", ""),
    ("from_count/2**64-OverflowError", "FloatBuffer.from_count(2**64)", "OverflowError", ""),
    ("from_count/2**61-MemoryError", "FloatBuffer.from_count(2**61)",
     "(MemoryError, OverflowError, ValueError)", ""),
    ("append", "b.append(1.5)", None, FB),
    ("append/int", "b.append(3)", None, FB),
    ("append/__float__", "b.append(HasFloat())", None, FB),
    ("append/__index__", "b.append(HasIndex())", None, FB),
    ("append/str-TypeError", "b.append('x')", "TypeError", FB),
    ("append/None-TypeError", "b.append(None)", "TypeError", FB),
    ("append/no-args-TypeError", "b.append()", "TypeError", FB),
    ("append/two-args-TypeError", "b.append(1.0, 2.0)", "TypeError", FB),
    ("append/exported-BufferError", "b.append(1.0)", "BufferError", FBX),
    ("sum", "b.sum()", None, FB),
    ("sum/empty", "e.sum()", None, FB),
    ("sum/args-TypeError", "b.sum(1)", "TypeError", FB),
    ("repr", "repr(b)", None, FB),
    ("str", "str(b)", None, FB),
    ("len", "len(b)", None, FB),
    ("getitem", "b[2]", None, FB),
    ("getitem/negative", "b[-1]", None, FB),
    ("getitem/bool", "b[True]", None, FB),
    ("getitem/index-object", "b[HasIndex()]", None, FB),
    ("getitem/out-of-range-IndexError", "b[4]", "IndexError", FB),
    ("getitem/negative-out-of-range-IndexError", "b[-5]", "IndexError", FB),
    ("getitem/2**100-IndexError", "b[2**100]", "IndexError", FB),
    ("getitem/-2**100-IndexError", "b[-2**100]", "IndexError", FB),
    ("getitem/empty-IndexError", "e[0]", "IndexError", FB),
    ("getitem/float-TypeError", "b[1.0]", "TypeError", FB),
    ("getitem/str-TypeError", "b['x']", "TypeError", FB),
    ("getitem/slice-TypeError", "b[0:2]", "TypeError", FB),
    ("getitem/exported", "b[1]", None, FBX),
    ("iter/list", "list(b)", None, FB),
    ("iter/for", "for x in b: pass", None, FB),
    ("iter/empty", "list(e)", None, FB),
    ("setitem", "b[1] = 2.5", None, FB),
    ("setitem/negative", "b[-1] = 3", None, FB),
    ("setitem/exported", "b[0] = 9.0", None, FBX),
    ("setitem/out-of-range-IndexError", "b[4] = 1.0", "IndexError", FB),
    ("setitem/2**100-IndexError", "b[2**100] = 1.0", "IndexError", FB),
    ("setitem/str-index-TypeError", "b['a'] = 1.0", "TypeError", FB),
    ("setitem/str-value-TypeError", "b[0] = 'x'", "TypeError", FB),
    ("delitem", "b.append(1.0)\ndel b[0]", None, FB),
    ("delitem/negative", "b.append(1.0)\ndel b[-1]", None, FB),
    ("delitem/out-of-range-IndexError", "del b[4]", "IndexError", FB),
    ("delitem/str-TypeError", "del b['a']", "TypeError", FB),
    ("delitem/exported-BufferError", "del b[0]", "BufferError", FBX),
    ("contains/hit", "2.0 in b", None, FB),
    ("contains/miss", "99.0 in b", None, FB),
    ("contains/int", "2 in b", None, FB),
    ("contains/bool", "True in b", None, FB),
    ("contains/str", "'x' in b", None, FB),
    ("contains/None", "None in b", None, FB),
    ("contains/__eq__-raises", "RaisesInEq() in b", "ZeroDivisionError", FB),
    ("contains/exported", "2.0 in b", None, FBX),
    ("add", "b + c", None, FB),
    ("add/empty", "b + e", None, FB),
    ("add/int-TypeError", "b + 1", "TypeError", FB),
    ("add/reflected-int-TypeError", "1 + b", "TypeError", FB),
    ("add/list-TypeError", "b + [1.0]", "TypeError", FB),
    ("add/inplace-fallback", "u = b\nu += c", None, FB),
    ("neg", "-b", None, FB),
    ("neg/empty", "-e", None, FB),
    ("eq", "b == c", None, FB),
    ("ne", "b != c", None, FB),
    ("eq/different-length", "b == e", None, FB),
    ("eq/int-NotImplemented", "b == 1", None, FB),
    ("eq/reflected-int", "1 == b", None, FB),
    ("ne/None", "b != None", None, FB),
    ("lt-TypeError", "b < c", "TypeError", FB),
    ("le-TypeError", "b <= c", "TypeError", FB),
    ("gt-TypeError", "b > c", "TypeError", FB),
    ("ge-TypeError", "b >= c", "TypeError", FB),
    ("lt/int-TypeError", "b < 1", "TypeError", FB),
    ("hash-TypeError", "hash(b)", "TypeError", FB),
    ("hash/dict-key-TypeError", "{b: 1}", "TypeError", FB),
    ("memoryview/create-release", "memoryview(b).release()", None, FB),
    ("memoryview/with", "with memoryview(b) as m: pass", None, FB),
    ("memoryview/dropped", "memoryview(b)", None, FB),
    ("memoryview/metadata",
     "m = memoryview(b)\nm.format; m.itemsize; m.ndim; m.shape; m.strides; m.readonly\n"
     "m.c_contiguous\nm.release()", None, FB),
    ("memoryview/tolist", "memoryview(b).tolist()", None, FB),
    ("memoryview/item", "with memoryview(b) as m: m[1]", None, FB),
    ("memoryview/slice", "with memoryview(b) as m: m[1:3].tolist()", None, FB),
    ("memoryview/cast", "with memoryview(b) as m: m.cast('B').release()", None, FB),
    ("memoryview/nested-out-of-order",
     "m1 = memoryview(b)\nm2 = memoryview(b)\nm1.release()\nm2.release()", None, FB),
    ("memoryview/of-memoryview", "with memoryview(b) as m: memoryview(m).release()", None, FB),
    ("memoryview/write-readonly-TypeError", "with memoryview(b) as m: m[0] = 1.0",
     "TypeError", FB),
    ("memoryview/empty", "memoryview(e).release()", None, FB),
    ("memoryview/release-while-exported-by-view", "memoryview(b).release()", None, FBX),
    ("bytes", "bytes(b)", None, FB),
    ("bytes/empty", "bytes(e)", None, FB),
    ("bytearray", "bytearray(b)", None, FB),
    ("bytes-join", "b''.join([b, c])", None, FB),
    ("bytes-join/pending-TypeError", "b''.join([b, 1])", "TypeError", FB),
    ("struct.unpack_from", "struct.unpack_from('4d', b)", None, FB),
    ("getbuffer/SIMPLE", "getbuf(b, SIMPLE)", None, FB),
    ("getbuffer/FULL_RO", "getbuf(b, FULL_RO)", None, FB),
    ("getbuffer/FULL_RO-copy-released", "getbuf(b, FULL_RO, copy=True)", None, FB),
    ("getbuffer/WRITABLE-BufferError", "getbuf(b, WRITABLE)", "BufferError", FB),
    ("getbuffer/SIMPLE|FORMAT-BufferError", "getbuf(b, FORMAT)", "BufferError", FB),
    ("getbuffer/undefined-bit-BufferError", "getbuf(b, 0x2)", "BufferError", FB),
    ("getbuffer/F_CONTIGUOUS", "getbuf(b, F_CONTIGUOUS)", None, FB),
    ("ctypes.from_buffer-writable-refused", "ctypes.c_char.from_buffer(b)",
     "(TypeError, BufferError)", FB),
]:
    S("FloatBuffer/" + name, stmt, setup, exc)
for name, stmt, exc, setup in [
    ("numpy.frombuffer", "np.frombuffer(b)", None, FB),
    ("numpy.frombuffer.sum", "np.frombuffer(b).sum()", None, FB),
    ("numpy.asarray", "np.asarray(b)", None, FB),
    ("numpy.asarray/exported-append-BufferError", "b.append(1.0)", "BufferError",
     FB + "; a = np.asarray(b)"),
]:
    S("FloatBuffer/" + name, stmt, setup, exc, needs="numpy")

# ---- demo: Matrix ----
MX = "m = Matrix(2, 3)"
MXX = MX + "; mv = memoryview(m)"
for name, stmt, exc, setup in [
    ("new", "Matrix(2, 3)", None, ""),
    ("new/empty", "Matrix(0, 0)", None, ""),
    ("new/zero-cols", "Matrix(2, 0)", None, ""),
    ("new/index-objects", "Matrix(HasIndex(), HasIndex())", None, ""),
    ("new/one-arg-TypeError", "Matrix(2)", "TypeError", ""),
    ("new/three-args-TypeError", "Matrix(2, 3, 4)", "TypeError", ""),
    ("new/kwargs-TypeError", "Matrix(rows=2, cols=3)", "TypeError", ""),
    ("new/float-TypeError", "Matrix(2.0, 3)", "TypeError", ""),
    ("new/str-TypeError", "Matrix('a', 1)", "TypeError", ""),
    ("new/None-TypeError", "Matrix(None, 1)", "TypeError", ""),
    ("new/negative-rows-ValueError", "Matrix(-1, 2)", "ValueError", ""),
    ("new/negative-cols-ValueError", "Matrix(2, -1)", "ValueError", ""),
    ("new/2**64-OverflowError", "Matrix(2**64, 1)", "OverflowError", ""),
    ("new/2**32x2**32-too-large", "Matrix(2**32, 2**32)",
     "(OverflowError, MemoryError, ValueError)", ""),
    ("new/2**31x2**31-too-large", "Matrix(2**31, 2**31)",
     "(OverflowError, MemoryError, ValueError)", ""),
    ("shape", "m.shape", None, MX),
    ("shape/set-AttributeError", "m.shape = (1, 2)", "AttributeError", MX),
    ("shape/del-AttributeError", "del m.shape", "AttributeError", MX),
    ("get", "m.get(1, 2)", None, MX),
    ("get/exported", "m.get(1, 2)", None, MXX),
    ("get/negative-IndexError", "m.get(-1, 0)", "IndexError", MX),
    ("get/row-IndexError", "m.get(2, 0)", "IndexError", MX),
    ("get/col-IndexError", "m.get(0, 3)", "IndexError", MX),
    ("get/str-TypeError", "m.get('a', 0)", "TypeError", MX),
    ("get/one-arg-TypeError", "m.get(0)", "TypeError", MX),
    ("get/2**64-OverflowError", "m.get(2**64, 0)", "OverflowError", MX),
    ("set", "m.set(1, 2, 4.5)", None, MX),
    ("set/int-value", "m.set(0, 0, 1)", None, MX),
    ("set/exported", "m.set(0, 1, 7.0)", None, MXX),
    ("set/IndexError", "m.set(9, 9, 1.0)", "IndexError", MX),
    ("set/str-value-TypeError", "m.set(0, 0, 'x')", "TypeError", MX),
    ("set/two-args-TypeError", "m.set(0, 0)", "TypeError", MX),
    ("memoryview/create-release", "memoryview(m).release()", None, MX),
    ("memoryview/with", "with memoryview(m) as v: pass", None, MX),
    ("memoryview/dropped", "memoryview(m)", None, MX),
    ("memoryview/metadata",
     "v = memoryview(m)\nv.format; v.ndim; v.shape; v.strides; v.readonly; v.c_contiguous\n"
     "v.release()", None, MX),
    ("memoryview/tolist", "memoryview(m).tolist()", None, MX),
    ("memoryview/tobytes", "memoryview(m).tobytes()", None, MX),
    ("memoryview/item-read", "with memoryview(m) as v: v[1, 2]", None, MX),
    ("memoryview/item-write", "with memoryview(m) as v: v[0, 1] = 7.0", None, MX),
    ("memoryview/cast", "with memoryview(m) as v: v.cast('B').release()", None, MX),
    ("memoryview/nested-out-of-order",
     "v1 = memoryview(m)\nv2 = memoryview(m)\nv1.release()\nv2.release()", None, MX),
    ("memoryview/empty", "memoryview(Matrix(2, 0)).release()", None, ""),
    ("bytes", "bytes(m)", None, MX),
    ("getbuffer/SIMPLE", "getbuf(m, SIMPLE)", None, MX),
    ("getbuffer/ND", "getbuf(m, ND)", None, MX),
    ("getbuffer/STRIDES", "getbuf(m, STRIDES)", None, MX),
    ("getbuffer/FULL", "getbuf(m, FULL)", None, MX),
    ("getbuffer/FULL-copy-released", "getbuf(m, FULL, copy=True)", None, MX),
    ("getbuffer/F_CONTIGUOUS-BufferError", "getbuf(m, F_CONTIGUOUS)", "BufferError", MX),
    ("getbuffer/undefined-bit-BufferError", "getbuf(m, 0x2)", "BufferError", MX),
]:
    S("Matrix/" + name, stmt, setup, exc)
for name, stmt, exc, setup in [
    ("numpy.asarray", "np.asarray(m)", None, MX),
    ("numpy.asarray/write", "a = np.asarray(m)\na[0, 1] = 7.0", None, MX),
    ("numpy.asarray.sum", "np.asarray(m).sum()", None, MX),
    ("numpy.frombuffer", "np.frombuffer(m)", None, MX),
    ("numpy/set-while-viewed", "m.set(1, 0, -1.0)", None, MX + "; a = np.asarray(m)"),
]:
    S("Matrix/" + name, stmt, setup, exc, needs="numpy")

# ---- testmod: Vec2, every operator with its ok / panic (666) / error (777) path ----
VEC = "v = Vec2(T, 0); w = Vec2(1, 2); k = 2.5; n = 3; md = 7.5"
VEC_OPS = [
    # (slot, statement, ok-path statement if different, ok-path exception)
    ("nb_negative", "-v"),
    ("nb_positive", "+v"),
    ("nb_absolute", "abs(v)"),
    ("nb_invert", "~v"),
    ("nb_int", "int(v)"),
    ("nb_float", "float(v)"),
    ("nb_index", "operator.index(v)"),
    ("nb_index/list-index", "[1, 2, 3][v]"),
    ("nb_bool", "bool(v)"),
    ("nb_bool/if", "if v: pass"),
    ("nb_add", "v + w"),
    ("nb_add/scalar", "v + k"),
    ("nb_add/radd", "k + v"),
    ("nb_subtract", "v - w"),
    ("nb_subtract/rsub", "k - v"),
    ("nb_multiply", "v * k"),
    ("nb_multiply/rmul", "k * v"),
    ("nb_true_divide", "v / k"),
    ("nb_floor_divide", "v // k"),
    ("nb_remainder", "v % k"),
    ("nb_divmod", "divmod(v, k)"),
    ("nb_lshift", "v << n"),
    ("nb_rshift", "v >> n"),
    ("nb_and", "v & n"),
    ("nb_or", "v | n"),
    ("nb_xor", "v ^ n"),
    ("nb_matrix_multiply", "v @ w"),
    ("nb_power", "v ** k"),
    ("nb_power/modulo", "pow(v, k, md)"),
    ("nb_power/rpow", "k ** v"),
    # in-place: the ok path restores the state (a drifting x would reach 666 and panic)
    ("nb_inplace_add", "v += w", "v += w\nv -= w"),
    ("nb_inplace_subtract", "v -= w", "v -= w\nv += w"),
    ("nb_inplace_multiply", "v *= k", "v *= 2.0\nv /= 2.0"),
    ("nb_inplace_true_divide", "v /= k", "v /= 2.0\nv *= 2.0"),
    ("nb_inplace_floor_divide", "v //= k", "v //= 1.0"),
    ("nb_inplace_remainder", "v %= k", "v %= 10.0"),
    ("nb_inplace_lshift", "v <<= n", "v <<= n\nv >>= n"),
    ("nb_inplace_rshift", "v >>= n", "v <<= n\nv >>= n"),
    ("nb_inplace_and", "v &= n", "v &= 1"),
    ("nb_inplace_or", "v |= n", "v |= 0"),
    ("nb_inplace_xor", "v ^= n", "v ^= 0"),
    ("nb_inplace_matrix_multiply", "v @= w", "v @= Vec2(1, 0)"),
    ("nb_inplace_power", "v **= k", "v **= 1.0"),
    # type protocol
    ("tp_richcompare/eq", "v == w"),
    ("tp_richcompare/ne", "v != w"),
    ("tp_richcompare/ordering", "v < w", "v < w", "TypeError"),
    ("tp_richcompare/reflected", "n == v"),
    ("tp_hash", "hash(v)"),
    ("tp_hash/dict-key", "{v: 1}"),
    ("tp_repr", "repr(v)"),
    ("tp_repr/str", "str(v)"),
]
for op in VEC_OPS:
    slot, stmt = op[0], op[1]
    ok_stmt = op[2] if len(op) > 2 else stmt
    ok_exc = op[3] if len(op) > 3 else None
    S(f"Vec2/{slot}", ok_stmt, "T = 1; " + VEC, ok_exc)
    S(f"Vec2/{slot}/panic-666", stmt, "T = 666; " + VEC, "PanicException")
    S(f"Vec2/{slot}/error-777", stmt, "T = 777; " + VEC, "ValueError")
for name, stmt, exc in [
    ("new", "Vec2(1, 2)", None),
    ("new/one-arg-TypeError", "Vec2(1)", "TypeError"),
    ("new/str-TypeError", "Vec2('a', 1)", "TypeError"),
    ("getter/x", "v.x", None),
    ("getter/y", "v.y", None),
    ("getter/set-AttributeError", "v.x = 3", "AttributeError"),
    ("hash/-1-is-2", "hash(Vec2(-1, 0))", None),
    ("nb_subtract/int-NotImplemented-TypeError", "v - 1", "TypeError"),
    ("nb_add/str-NotImplemented-TypeError", "v + 'x'", "TypeError"),
    ("nb_add/radd-str-TypeError", "'x' + v", "TypeError"),
    ("nb_subtract/rsub-str-TypeError", "'a' - v", "TypeError"),
    ("nb_matrix_multiply/int-TypeError", "v @ 1", "TypeError"),
    ("nb_true_divide/ZeroDivisionError", "v / 0", "ZeroDivisionError"),
    ("nb_floor_divide/ZeroDivisionError", "v // 0.0", "ZeroDivisionError"),
    ("nb_divmod/reflected-TypeError", "divmod(k, v)", "TypeError"),
    ("nb_power/str-modulo-TypeError", "pow(v, k, 'x')", "TypeError"),
    ("nb_power/str-exponent-TypeError", "v ** 'x'", "TypeError"),
    ("nb_lshift/negative-ValueError", "v << -1", "ValueError"),
    ("nb_and/float-TypeError", "v & 1.5", "TypeError"),
    ("nb_inplace_add/scalar-fallback-to-nb_add", "u = v\nu += 1", None),
    ("nb_inplace_subtract/int-NotImplemented-TypeError", "v -= 1", "TypeError"),
    ("nb_inplace_matrix_multiply/int-TypeError", "v @= 1", "TypeError"),
]:
    S("Vec2/" + name, stmt, "T = 1; " + VEC, exc)

# ---- testmod: StrMap ----
SM = "m = StrMap(); m['a'] = 1.5"
for name, stmt, exc in [
    ("new", "StrMap()", None),
    ("new/args-TypeError", "StrMap(1)", "TypeError"),
    ("mp_length", "len(m)", None),
    ("mp_subscript", "m['a']", None),
    ("mp_subscript/KeyError", "m['missing']", "KeyError"),
    ("mp_subscript/int-TypeError", "m[1]", "TypeError"),
    ("mp_subscript/panic", "m['panic']", "PanicException"),
    ("mp_subscript/error", "m['fail']", "ValueError"),
    ("mp_ass_subscript/set", "m['b'] = 2.0", None),
    ("mp_ass_subscript/set-del", "m['b'] = 2.0\ndel m['b']", None),
    ("mp_ass_subscript/del-KeyError", "del m['missing']", "KeyError"),
    ("mp_ass_subscript/del-int-TypeError", "del m[1]", "TypeError"),
    ("mp_ass_subscript/panic-666", "m['a'] = 666.0", "PanicException"),
    ("mp_ass_subscript/error-777", "m['a'] = 777.0", "ValueError"),
    ("mp_ass_subscript/str-value-TypeError", "m['a'] = 'x'", "TypeError"),
    ("mp_ass_subscript/int-key-TypeError", "m[1] = 1.0", "TypeError"),
    ("contains-not-iterable-TypeError", "'a' in m", "TypeError"),
]:
    S("StrMap/" + name, stmt, SM, exc)

# ---- testmod: Countdown ----
for name, stmt, exc, setup in [
    ("new", "Countdown(5)", None, ""),
    ("new/str-TypeError", "Countdown('x')", "TypeError", ""),
    ("new/no-args-TypeError", "Countdown()", "TypeError", ""),
    ("iter/list", "list(Countdown(5))", None, ""),
    ("iter/for", "for _ in Countdown(3): pass", None, ""),
    ("tp_iter/self", "iter(c)", None, "c = Countdown(2)"),
    ("tp_iternext/exhausted-StopIteration", "next(Countdown(0))", "StopIteration", ""),
    ("tp_iternext/exhausted-default", "next(Countdown(0), None)", None, ""),
    ("tp_iternext/step", "c = Countdown(1)\nnext(c)\nnext(c, None)", None, ""),
    ("tp_iternext/panic-666", "next(Countdown(666))", "PanicException", ""),
    ("tp_iternext/panic-666-same-object", "next(c)", "PanicException", "c = Countdown(666)"),
    ("tp_iternext/panic-666-in-list", "list(Countdown(666))", "PanicException", ""),
    ("tp_iternext/panic-666-after-one-item", "for _ in Countdown(667): pass",
     "PanicException", ""),
    ("tp_iternext/error-777", "next(Countdown(777))", "ValueError", ""),
    ("tp_iternext/error-777-same-object", "next(c)", "ValueError", "c = Countdown(777)"),
    ("tp_iternext/error-777-in-for", "for _ in Countdown(777): pass", "ValueError", ""),
]:
    S("Countdown/" + name, stmt, setup, exc)

# ---- testmod: Adder ----
AD = "a = Adder(1.5)"
for name, stmt, exc in [
    ("new", "Adder(1.5)", None),
    ("new/no-args-TypeError", "Adder()", "TypeError"),
    ("new/str-TypeError", "Adder('x')", "TypeError"),
    ("tp_call", "a(2.0)", None),
    ("tp_call/int", "a(2)", None),
    ("tp_call/map", "list(map(a, (1.0, 2.0)))", None),
    ("tp_call/panic-666", "a(666)", "PanicException"),
    ("tp_call/error-777", "a(777)", "ValueError"),
    ("tp_call/str-TypeError", "a('x')", "TypeError"),
    ("tp_call/no-args-TypeError", "a()", "TypeError"),
    ("tp_call/two-args-TypeError", "a(1, 2)", "TypeError"),
    ("tp_call/kwargs-TypeError", "a(x=1.0)", "TypeError"),
]:
    S("Adder/" + name, stmt, AD, exc)

# ---- testmod: Seq ----
SQ = "s = Seq(3); t = Seq(2)"
for name, stmt, exc in [
    ("new", "Seq(3)", None),
    ("new/zero", "Seq(0)", None),
    ("new/negative-ValueError", "Seq(-1)", "ValueError"),
    ("new/str-TypeError", "Seq('x')", "TypeError"),
    ("tolist", "s.tolist()", None),
    ("sq_length", "len(s)", None),
    ("sq_item", "s[1]", None),
    ("sq_item/negative", "s[-1]", None),
    ("sq_item/IndexError", "s[10]", "IndexError"),
    ("sq_item/negative-IndexError", "s[-10]", "IndexError"),
    ("sq_item/str-TypeError", "s['a']", "TypeError"),
    ("sq_item/slice-TypeError", "s[0:1]", "TypeError"),
    ("sq_item/iteration-list", "list(s)", None),
    ("sq_item/iteration-for", "for _ in s: pass", None),
    ("sq_ass_item", "s[0] = 5", None),
    ("sq_ass_item/negative", "s[-1] = 5", None),
    ("sq_ass_item/IndexError", "s[10] = 1", "IndexError"),
    ("sq_ass_item/str-TypeError", "s[0] = 'x'", "TypeError"),
    ("sq_ass_item/del", "s += [9]\ndel s[0]", None),
    ("sq_ass_item/del-negative", "s += [9]\ndel s[-1]", None),
    ("sq_ass_item/del-IndexError", "del s[10]", "IndexError"),
    ("sq_contains/hit", "1 in s", None),
    ("sq_contains/miss", "99 in s", None),
    ("sq_contains/str-TypeError", "'x' in s", "TypeError"),
    ("sq_concat", "s + t", None),
    ("sq_concat/list-TypeError", "s + [1]", "TypeError"),
    ("sq_repeat", "s * 2", None),
    ("sq_repeat/reflected", "2 * s", None),
    ("sq_repeat/negative", "s * -1", None),
    ("sq_repeat/str-TypeError", "s * 'x'", "TypeError"),
    ("sq_repeat/2**70-OverflowError", "s * 2**70", "OverflowError"),
    ("sq_inplace_concat/seq", "s += t\ndel s[-1]\ndel s[-1]", None),
    ("sq_inplace_concat/list", "s += [7]\ndel s[-1]", None),
    ("sq_inplace_concat/self", "u = Seq(2)\nu += u", None),
    ("sq_inplace_concat/str-TypeError", "s += 'ab'", "TypeError"),
    ("sq_inplace_concat/int-TypeError", "s += 5", "TypeError"),
    ("sq_inplace_repeat", "s *= 1", None),
    ("sq_inplace_repeat/grow", "u = Seq(2)\nu *= 3", None),
    ("sq_inplace_repeat/str-TypeError", "s *= 'x'", "TypeError"),
]:
    S("Seq/" + name, stmt, SQ, exc)
for T, kind, exc in [(666, "panic", "PanicException"), (777, "error", "ValueError")]:
    for name, stmt, setup in [
        ("sq_item", "s[1]", "s = Seq(0); s += [0, T]"),
        ("sq_item/negative-index", "s[-1]", "s = Seq(0); s += [0, T]"),
        ("sq_item/iteration", "list(s)", "s = Seq(0); s += [0, T]"),
        ("sq_ass_item", "s[0] = x", "s = Seq(3); x = T"),
        ("sq_contains", "x in s", "s = Seq(3); x = T"),
        ("sq_concat", "s + t", "s = Seq(2); t = Seq(0); t += [0, T]; del t[0]"),
        ("sq_repeat", "s * x", "s = Seq(2); x = T"),
        ("sq_repeat/reflected", "x * s", "s = Seq(2); x = T"),
        ("sq_inplace_concat", "s += other", "s = Seq(2); other = [T]"),
        ("sq_inplace_repeat", "s *= x", "s = Seq(2); x = T"),
    ]:
        S(f"Seq/{name}/{kind}-{T}", stmt, f"T = {T}; " + setup, exc)

# ---- testmod: Faulty (methods, panics, getbuffer failure modes, release hook, re-entrancy)
FT = "f = Faulty(0); f13 = Faulty(0); f13.count = 13"
FTX = "f = Faulty(0); mv = memoryview(f)"
for name, stmt, exc, setup in [
    ("new", "Faulty(0)", None, ""),
    ("new/no-args-TypeError", "Faulty()", "TypeError", ""),
    ("new/list-TypeError", "Faulty([1])", "TypeError", ""),
    ("bump", "f.bump()", None, FT),
    ("bump/args-TypeError", "f.bump(1)", "TypeError", FT),
    ("bump/exported-BufferError", "f.bump()", "BufferError", FTX),
    ("count/get", "f.count", None, FT),
    ("count/set", "f.count = 5", None, FT),
    ("count/set-negative-ValueError", "f.count = -1", "ValueError", FT),
    ("count/set-str-TypeError", "f.count = '3'", "TypeError", FT),
    ("count/del-TypeError", "del f.count", "TypeError", FT),
    ("count/set-panic-666", "f.count = 666", "PanicException", FT),
    ("count/set-exported-BufferError", "f.count = 1", "BufferError", FTX),
    ("count/get-exported", "f.count", None, FTX),
    ("getter_panic", "f.getter_panic", "PanicException", FT),
    ("getter_panic/getattr-default", "getattr(f, 'getter_panic', None)", "PanicException", FT),
    ("getter_panic/hasattr", "hasattr(f, 'getter_panic')", "PanicException", FT),
    ("getter_panic/set-AttributeError", "f.getter_panic = 1", "AttributeError", FT),
    ("panic", "f.panic()", "PanicException", FT),
    ("panic_mut", "f.panic_mut()", "PanicException", FT),
    ("panic_mut/exported-BufferError", "f.panic_mut()", "BufferError", FTX),
    ("static_panic/via-type", "Faulty.static_panic()", "PanicException", FT),
    ("static_panic/via-instance", "f.static_panic()", "PanicException", FT),
    ("module_panic", "tm.module_panic()", "PanicException", FT),
    ("fail", "f.fail()", "ValueError", FT),
    ("fail_custom", "f.fail_custom()", "tm.TestError", FT),
    ("reenter/no-args-TypeError", "f.reenter()", "TypeError", FT),
    ("repr", "repr(f)", None, FT),
    ("str", "str(f)", None, FT),
    ("repr/panic-13", "repr(f13)", "PanicException", FT),
    ("repr/str-panic-13", "str(f13)", "PanicException", FT),
    ("repr/nested-in-list-panic-13", "repr([f13])", "PanicException", FT),
    ("exports", "tm.exports(f)", None, FT),
    ("exports/exported", "tm.exports(f)", None, FTX),
    ("exports/int-TypeError", "tm.exports(1)", "TypeError", FT),
    ("exports/unknown-exporter-TypeError", "tm.exports(h)", "TypeError", "h = tm.Array_h(1)"),
    # borrowed (&Object) and owned (Object) arguments, CompareOp conversion
    ("borrowed_same", "tm.borrowed_same(f, f)", None, FT),
    ("borrowed_refcount", "tm.borrowed_refcount(f)", None, FT),
    ("owned_refcount", "tm.owned_refcount(f)", None, FT),
    ("borrowed_refcount/no-args-TypeError", "tm.borrowed_refcount()", "TypeError", FT),
    ("compare_op_name", "tm.compare_op_name(2)", None, FT),
    ("compare_op_name/ValueError", "tm.compare_op_name(9)", "ValueError", FT),
    ("compare_op_name/TypeError", "tm.compare_op_name('==')", "TypeError", FT),
    # buffer mode 0: a good export
    ("getbuffer/memoryview", "memoryview(f).release()", None, FT),
    ("getbuffer/memoryview-tobytes", "with memoryview(f) as m: m.tobytes()", None, FT),
    ("getbuffer/bytes", "bytes(f)", None, FT),
    ("getbuffer/FULL_RO", "getbuf(f, FULL_RO)", None, FT),
    ("getbuffer/join-pending-TypeError-hook-ok", "b''.join([f, 1])", "TypeError", FT),
    # mode 2: the getbuffer handler panics
    ("getbuffer-panic/memoryview", "memoryview(f)", "PanicException", "f = Faulty(2)"),
    ("getbuffer-panic/bytes", "bytes(f)", "PanicException", "f = Faulty(2)"),
    ("getbuffer-panic/PyObject_GetBuffer", "getbuf(f, SIMPLE)", "PanicException",
     "f = Faulty(2)"),
]:
    S("Faulty/" + name, stmt, setup, exc)
for mode, what in [(1, "handler-error"), (3, "bad-format"), (4, "size-overflow"),
                   (5, "format-itemsize-mismatch")]:
    for name, stmt in [("memoryview", "memoryview(f)"), ("bytes", "bytes(f)"),
                       ("PyObject_GetBuffer-FULL_RO", "getbuf(f, FULL_RO)")]:
        S(f"Faulty/getbuffer-{what}-{mode}/{name}", stmt, f"f = Faulty({mode})", "BufferError")
for mode, what in [(6, "release-hook-panic"), (7, "release-hook-error")]:
    setup = f"f = Faulty({mode})"
    for name, stmt, exc in [
        ("memoryview.release", "memoryview(f).release()", None),
        ("with-memoryview", "with memoryview(f) as m: pass", None),
        ("memoryview-dropped", "memoryview(f)", None),
        ("bytes", "bytes(f)", None),
        ("PyObject_GetBuffer+PyBuffer_Release", "getbuf(f, FULL_RO)", None),
        ("join-with-pending-TypeError", "b''.join([f, 1])", "TypeError"),
    ]:
        S(f"Faulty/{what}-{mode}/{name}", stmt, setup, exc, unraisable=1)
    S(f"Faulty/{what}-{mode}/numpy.frombuffer-dropped", "np.frombuffer(f, dtype=np.uint8)",
      setup, None, unraisable=1, needs="numpy")
# re-entrancy: a callback touching the object while `&mut self` is held
for name, cb in [
    ("getter", "lambda: f.count"),
    ("ref-method", "lambda: f.fail()"),
    ("panicking-ref-method", "lambda: f.panic()"),
    ("panicking-getter", "lambda: f.getter_panic"),
    ("repr", "lambda: repr(f)"),
    ("getbuffer", "lambda: memoryview(f)"),
    ("nested-reenter_shared", "lambda: f.reenter_shared(lambda: 0)"),
    ("mut-method", "lambda: f.bump()"),
    ("panicking-mut-method", "lambda: f.panic_mut()"),
    ("setter", "lambda: setattr(f, 'count', 3)"),
    ("nested-reenter", "lambda: f.reenter(lambda: 0)"),
]:
    S(f"Faulty/reenter-RuntimeError/{name}", "f.reenter(cb)", f"f = Faulty(0); cb = {cb}",
      "RuntimeError")
# under `&self`, reads are fine and mutations are refused
for name, cb in [
    ("getter", "lambda: f.count"),
    ("repr", "lambda: repr(f)"),
    ("getbuffer", "lambda: memoryview(f).tobytes()"),
    ("nested-reenter_shared", "lambda: f.reenter_shared(lambda: f.count)"),
]:
    S(f"Faulty/reenter_shared-read/{name}", "f.reenter_shared(cb)", f"f = Faulty(0); cb = {cb}")
for name, cb in [
    ("bump", "lambda: f.bump()"),
    ("bound-method", "f.bump"),
    ("panic_mut", "lambda: f.panic_mut()"),
    ("setter", "lambda: setattr(f, 'count', 3)"),
    ("nested-reenter", "lambda: f.reenter(lambda: 0)"),
]:
    S(f"Faulty/reenter_shared-RuntimeError/{name}", "f.reenter_shared(cb)",
      f"f = Faulty(0); cb = {cb}", "RuntimeError")
for name, stmt, exc, setup in [
    ("reenter/callback-not-touching", "f.reenter(cb)", None, "f = Faulty(0); cb = lambda: 5"),
    ("reenter/callback-returns-object", "f.reenter(cb)", None,
     "f = Faulty(0); o = object(); cb = lambda: o"),
    ("reenter/callback-ZeroDivisionError", "f.reenter(raise_zde)", "ZeroDivisionError",
     "f = Faulty(0)"),
    ("reenter/callback-TestError", "f.reenter(raise_test_error)", "tm.TestError",
     "f = Faulty(0)"),
    ("reenter/callback-panics", "f.reenter(tm.module_panic)", "PanicException", "f = Faulty(0)"),
    ("reenter_shared/callback-ZeroDivisionError", "f.reenter_shared(raise_zde)",
     "ZeroDivisionError", "f = Faulty(0)"),
    ("reenter_shared/callback-panics", "f.reenter_shared(Faulty.static_panic)",
     "PanicException", "f = Faulty(0)"),
]:
    S("Faulty/" + name, stmt, setup, exc)

# ---- testmod: DropBomb (a panicking Drop reaches sys.unraisablehook from tp_dealloc) ----
S("DropBomb/new-disarmed", "DropBomb(False)")
S("DropBomb/new-armed-dealloc-panic", "DropBomb(True)", unraisable=1)
S("DropBomb/armed-dealloc-panic-with-pending-exception",
  "try:\n    DropBomb(True), 1 / 0\nexcept ZeroDivisionError:\n    pass", unraisable=1)
S("DropBomb/new-str-TypeError", "DropBomb('x')", exc="TypeError")

# ---- testmod: the other exporters ----
for name, stmt, exc, setup in [
    ("Empty/new", "Empty()", None, ""),
    ("Empty/new/args-TypeError", "Empty(1)", "TypeError", ""),
    ("Empty/memoryview", "memoryview(x).release()", None, "x = Empty()"),
    ("Empty/bytes", "bytes(x)", None, "x = Empty()"),
    ("Empty/getbuffer-FULL_RO", "getbuf(x, FULL_RO)", None, "x = Empty()"),
    ("Empty/getbuffer-WRITABLE-BufferError", "getbuf(x, WRITABLE)", "BufferError",
     "x = Empty()"),
    ("FortranMatrix/new", "FortranMatrix(2, 3)", None, ""),
    ("FortranMatrix/new/one-arg-TypeError", "FortranMatrix(2)", "TypeError", ""),
    ("FortranMatrix/new/overflow", "FortranMatrix(2**40, 2**40)",
     "(OverflowError, MemoryError)", ""),
    ("FortranMatrix/new/huge-MemoryError", "FortranMatrix(2**31, 2**31)",
     "(OverflowError, MemoryError)", ""),
    ("FortranMatrix/get", "x.get(1, 2)", None, "x = FortranMatrix(2, 3)"),
    ("FortranMatrix/get/IndexError", "x.get(5, 0)", "IndexError", "x = FortranMatrix(2, 3)"),
    ("FortranMatrix/get/negative", "x.get(-1, 0)", "(ValueError, OverflowError)",
     "x = FortranMatrix(2, 3)"),
    ("FortranMatrix/memoryview-tolist", "memoryview(x).tolist()", None,
     "x = FortranMatrix(2, 3)"),
    ("FortranMatrix/bytes", "bytes(x)", None, "x = FortranMatrix(2, 3)"),
    ("FortranMatrix/getbuffer-F_CONTIGUOUS", "getbuf(x, F_CONTIGUOUS)", None,
     "x = FortranMatrix(2, 3)"),
    ("FortranMatrix/getbuffer-F_CONTIGUOUS-copy-released", "getbuf(x, F_CONTIGUOUS, copy=True)",
     None, "x = FortranMatrix(2, 3)"),
    ("FortranMatrix/getbuffer-C_CONTIGUOUS-BufferError", "getbuf(x, C_CONTIGUOUS)",
     "BufferError", "x = FortranMatrix(2, 3)"),
    ("FortranMatrix/getbuffer-SIMPLE-BufferError", "getbuf(x, SIMPLE)", "BufferError",
     "x = FortranMatrix(2, 3)"),
    ("Reversed/new", "Reversed(5)", None, ""),
    ("Reversed/new/negative-ValueError", "Reversed(-1)", "ValueError", ""),
    ("Reversed/memoryview-tolist", "memoryview(x).tolist()", None, "x = Reversed(5)"),
    ("Reversed/memoryview-empty", "memoryview(x).release()", None, "x = Reversed(0)"),
    ("Reversed/bytes", "bytes(x)", None, "x = Reversed(5)"),
    ("Reversed/getbuffer-STRIDES", "getbuf(x, STRIDES)", None, "x = Reversed(5)"),
    ("Reversed/getbuffer-STRIDES-copy-released", "getbuf(x, STRIDES, copy=True)", None,
     "x = Reversed(5)"),
    ("Reversed/getbuffer-SIMPLE-BufferError", "getbuf(x, SIMPLE)", "BufferError",
     "x = Reversed(5)"),
    ("Cube/new", "Cube(2, 3, 4)", None, ""),
    ("Cube/new/two-args-TypeError", "Cube(2, 3)", "TypeError", ""),
    ("Cube/new/overflow", "Cube(2**40, 2**40, 2**40)", "(OverflowError, MemoryError)", ""),
    ("Cube/memoryview-tolist", "memoryview(x).tolist()", None, "x = Cube(2, 3, 4)"),
    ("Cube/memoryview-write", "with memoryview(x) as m: m[1, 2, 3] = 5", None,
     "x = Cube(2, 3, 4)"),
    ("Cube/bytes", "bytes(x)", None, "x = Cube(2, 3, 4)"),
    ("Cube/getbuffer-FULL", "getbuf(x, FULL)", None, "x = Cube(2, 3, 4)"),
    ("Cube/getbuffer-FULL-copy-released", "getbuf(x, FULL, copy=True)", None,
     "x = Cube(2, 3, 4)"),
    ("Cube/getbuffer-F_CONTIGUOUS-BufferError", "getbuf(x, F_CONTIGUOUS)", "BufferError",
     "x = Cube(2, 3, 4)"),
]:
    S(name, stmt, setup, exc)
for cls in ["Array_b", "Array_B", "Array_h", "Array_H", "Array_i", "Array_I", "Array_l",
            "Array_L", "Array_q", "Array_Q", "Array_n", "Array_N", "Array_f", "Array_d",
            "Array_bool"]:
    setup = f"x = tm.{cls}(5)"
    S(f"{cls}/new", f"tm.{cls}(5)")
    S(f"{cls}/data_ptr", "x.data_ptr()", setup)
    S(f"{cls}/memoryview-tolist", "memoryview(x).tolist()", setup)
    S(f"{cls}/memoryview-write", "with memoryview(x) as m: m[0] = m[1]", setup)
    S(f"{cls}/bytes", "bytes(x)", setup)
for name, stmt, setup in [
    ("FortranMatrix/numpy.asarray", "np.asarray(x)", "x = FortranMatrix(2, 3)"),
    ("Reversed/numpy.asarray", "np.asarray(x)", "x = Reversed(5)"),
    ("Cube/numpy.asarray", "np.asarray(x)", "x = Cube(2, 3, 4)"),
    ("Array_d/numpy.frombuffer", "np.frombuffer(x)", "x = tm.Array_d(5)"),
    ("Array_bool/numpy.asarray", "np.asarray(x)", "x = tm.Array_bool(5)"),
]:
    S(name, stmt, setup, needs="numpy")


# ---------------------------------------------------------------------------
# helpers available to the statements


class HasFloat:
    def __float__(self):
        return 2.0


class DelRaises:
    def __del__(self):
        raise RuntimeError("from __del__")


class HasIndex:
    def __index__(self):
        return 2


class RaisesInEq:
    def __eq__(self, other):
        raise ZeroDivisionError("from __eq__")

    __hash__ = None


def raise_zde():
    raise ZeroDivisionError("from the callback")


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


_PyObject_GetBuffer = ctypes.pythonapi["PyObject_GetBuffer"]
_PyObject_GetBuffer.argtypes = [ctypes.py_object, ctypes.POINTER(Py_buffer), ctypes.c_int]
_PyObject_GetBuffer.restype = ctypes.c_int
_PyBuffer_Release = ctypes.pythonapi["PyBuffer_Release"]
_PyBuffer_Release.argtypes = [ctypes.POINTER(Py_buffer)]
_PyBuffer_Release.restype = None


def getbuf(obj, flags, copy=False):
    """PyObject_GetBuffer(obj, flags) then PyBuffer_Release (of a bitwise copy of the view
    when ``copy``: a consumer may release a copy). Refusals raise (pythonapi checks
    PyErr_Occurred)."""
    view = Py_buffer()
    _PyObject_GetBuffer(obj, ctypes.byref(view), flags)
    if copy:
        dup = Py_buffer.from_buffer_copy(view)
        _PyBuffer_Release(ctypes.byref(dup))
    else:
        _PyBuffer_Release(ctypes.byref(view))


BUFFER_FLAGS = dict(
    SIMPLE=0, WRITABLE=0x1, FORMAT=0x4, ND=0x8, STRIDES=0x18, C_CONTIGUOUS=0x38,
    F_CONTIGUOUS=0x58, ANY_CONTIGUOUS=0x98, INDIRECT=0x118, FULL_RO=0x11C, FULL=0x11D,
)


# ---------------------------------------------------------------------------
# unraisable hook: counts into a pre-allocated array and keeps no reference


UNRAISABLE = array.array("q", [0, 0])  # [PanicException or RuntimeError, anything else]
_EXPECTED_UNRAISABLE = ()


def _unraisable_hook(args):
    if args.exc_type in _EXPECTED_UNRAISABLE:
        UNRAISABLE[0] += 1
    else:
        UNRAISABLE[1] += 1


# ---------------------------------------------------------------------------
# glibc malloc statistics (Rust allocations go through malloc, not pymalloc)


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]


try:
    _libc = ctypes.CDLL(None)
    _mallinfo2 = _libc.mallinfo2
    _mallinfo2.restype = _Mallinfo2
    _mallinfo2.argtypes = []
except (AttributeError, OSError):
    _mallinfo2 = None


def malloc_in_use():
    if _mallinfo2 is None:
        return 0
    mi = _mallinfo2()
    return mi.uordblks + mi.hblkhd


# ---------------------------------------------------------------------------
# the measurement (regrtest's dash_R, per statement)


_ABCS = []


def _collect_abcs():
    import abc
    for mod in (collections.abc, numbers, io):
        for name in dir(mod):
            obj = getattr(mod, name)
            if isinstance(obj, abc.ABCMeta):
                _ABCS.append(obj)


def cleanup():
    """What regrtest does between repetitions that matters here: flush the streams, clear
    the ABC negative caches, re's cache and the type attribute cache, collect garbage."""
    for stream in (sys.stdout, sys.__stdout__):
        if stream is not None:
            stream.flush()
    for cls in _ABCS:
        for sub in [cls] + cls.__subclasses__():
            clear = getattr(sub, "_abc_caches_clear", None)
            if clear is not None:
                clear()
    re.purge()
    sys._clear_type_cache()
    gc.collect()
    gc.collect()
    gc.collect()


def compile_loop(st, ns):
    body = st.stmt
    if st.exc is not None:
        body = (
            "try:\n" + textwrap.indent(st.stmt, "    ") + "\n"
            "except _EXC:\n    pass\n"
            "else:\n    raise _NoException(_NAME)\n"
        )
    src = "def _loop(_n):\n"
    if st.exc is not None:
        src += f"    _EXC = {st.exc}\n"
    if st.setup:
        src += textwrap.indent(st.setup.replace("; ", "\n"), "    ") + "\n"
    src += "    for _i in range(_n):\n" + textwrap.indent(body, "        ") + "\n"
    loc = {}
    g = dict(ns, _NAME=st.name)
    exec(compile(src, f"<{st.name}>", "exec"), g, loc)
    return loc["_loop"]


class _NoException(Exception):
    pass


def measure(loop, calls, warmup, rounds):
    """Run ``loop(calls)`` warmup + rounds times; deltas of the measured rounds."""
    reps = warmup + rounds
    rep_range = list(range(reps))
    rc_deltas = array.array("q", [0] * reps)
    ab_deltas = array.array("q", [0] * reps)
    ml_deltas = array.array("q", [0] * reps)
    un_counts = array.array("q", [0] * reps)
    getallocatedblocks = sys.getallocatedblocks
    gettotalrefcount = sys.gettotalrefcount
    getquickened = getattr(sys, "_getquickenedcount", lambda: 0)
    rc_before = ab_before = ml_before = 0
    cleanup()
    # a first reading, so that every round's reading is taken with the same objects alive
    # (the previous reading's ints)
    ab_after = getallocatedblocks() - getquickened()
    rc_after = gettotalrefcount()
    ml_after = malloc_in_use()
    rc_before = rc_after
    ab_before = ab_after
    ml_before = ml_after
    for i in rep_range:
        un_before = UNRAISABLE[0]
        loop(calls)
        un_counts[i] = UNRAISABLE[0] - un_before
        cleanup()
        ab_after = getallocatedblocks() - getquickened()
        rc_after = gettotalrefcount()
        ml_after = malloc_in_use()
        rc_deltas[i] = rc_after - rc_before
        ab_deltas[i] = ab_after - ab_before
        ml_deltas[i] = ml_after - ml_before
        rc_before = rc_after
        ab_before = ab_after
        ml_before = ml_after
    return (rc_deltas[warmup:].tolist(), ab_deltas[warmup:].tolist(),
            ml_deltas[warmup:].tolist(), un_counts.tolist())


class _StderrMuted:
    """Points fd 2 at /dev/null (the Rust panic hook writes every deliberate panic there)."""

    def __init__(self, enabled):
        self.enabled = enabled

    def __enter__(self):
        if self.enabled:
            sys.stderr.flush()
            self.saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        return self

    def __exit__(self, *exc):
        if self.enabled:
            sys.stderr.flush()
            os.dup2(self.saved, 2)
            os.close(self.saved)
        return False


# ---------------------------------------------------------------------------


def numpy_refcounts_reliable(np):
    """A numpy extension built without Py_REF_DEBUG (a release wheel or Debian's package,
    which the debug interpreter can import) makes sys.gettotalrefcount drift on its own
    (its increfs and decrefs are not counted, the interpreter's are): measure numpy alone
    first. Only the reference total tells the builds apart; allocated blocks are the same
    in both."""
    loop = compile_loop(Stmt("numpy-calibration", "np.arange(3)\nnp.frombuffer(bb)",
                             "bb = bytes(16)"), {"np": np})
    rc, _, _, _ = measure(loop, 1000, 1, 3)
    return all(d == 0 for d in rc), rc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", default=os.environ.get("PONTONEER_LEAK_LIB",
                                                    os.path.join(REPO, "target", "dbg", "lib")),
                    help="directory holding the debug-ABI pontoneer_demo/pontoneer_testmod")
    ap.add_argument("-k", dest="pattern", help="only statements whose name matches this regex")
    ap.add_argument("--calls", type=int, default=10_000, help="calls per round (10000)")
    ap.add_argument("--rounds", type=int, default=3, help="measured rounds (3)")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up rounds (1)")
    ap.add_argument("--list", action="store_true", help="list the statements and exit")
    ap.add_argument("--no-numpy", action="store_true", help="skip numpy statements")
    ap.add_argument("--show-stderr", action="store_true",
                    help="do not mute fd 2 while statements run (panic messages)")
    ap.add_argument("-q", "--quiet", action="store_true", help="print only failures")
    args = ap.parse_args()

    selected = [st for st in STATEMENTS
                if args.pattern is None or re.search(args.pattern, st.name)
                or st.control or st.reference]
    if args.list:
        for st in selected:
            print(f"{st.name:70} {st.exc or ''}")
        print(len(selected), "statements")
        return 0

    if not hasattr(sys, "gettotalrefcount"):
        print("refleak.py needs a debug build of CPython (sys.gettotalrefcount)")
        return 2
    if args.rounds < 3 or args.calls < 1:
        print("at least 3 measured rounds are required")
        return 2

    sys.path.insert(0, os.path.abspath(args.lib))
    import pontoneer_demo
    import pontoneer_testmod as tm

    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for mod in (pontoneer_demo, tm):
        if not mod.__file__.endswith(suffix):
            print(f"{mod.__name__} was loaded from {mod.__file__}, not a {suffix} build of "
                  f"this interpreter: refcounts would not add up (build it with "
                  f"PYO3_PYTHON={sys.executable})")
            return 2

    # faulthandler writes to a duplicate of the real stderr, which stays open while fd 2 is
    # muted: a crash still prints its traceback.
    fh_file = os.fdopen(os.dup(2), "w")
    faulthandler.enable(file=fh_file)

    ns = {
        "sys": sys, "operator": operator, "struct": struct, "ctypes": ctypes,
        "tm": tm, "PanicException": tm.PanicException, "_NoException": _NoException,
        "getbuf": getbuf, "HasFloat": HasFloat, "HasIndex": HasIndex,
        "RaisesInEq": RaisesInEq, "DelRaises": DelRaises, "raise_zde": raise_zde,
    }
    ns.update(BUFFER_FLAGS)
    for mod in (pontoneer_demo, tm):
        for name in dir(mod):
            if not name.startswith("_"):
                ns.setdefault(name, getattr(mod, name))

    def raise_test_error():
        raise tm.TestError("from the callback")

    ns["raise_test_error"] = raise_test_error

    numpy_note = "numpy statements: included"
    np = None
    if not args.no_numpy:
        try:
            import numpy as np
        except ImportError as exc:
            numpy_note = f"numpy statements: SKIPPED (numpy not importable: {exc})"
        else:
            ok, rc = numpy_refcounts_reliable(np)
            if ok:
                ns["np"] = np
                numpy_note = f"numpy statements: included (numpy {np.__version__}, " \
                             f"refcount-clean under this interpreter)"
            else:
                numpy_note = (f"numpy statements: SKIPPED (numpy {np.__version__} at "
                              f"{os.path.dirname(np.__file__)} is not a Py_REF_DEBUG build: "
                              f"numpy alone moves gettotalrefcount by {rc} per 1000 calls)")
                np = None
    else:
        numpy_note = "numpy statements: SKIPPED (--no-numpy)"

    global _EXPECTED_UNRAISABLE
    _EXPECTED_UNRAISABLE = (tm.PanicException, RuntimeError)
    sys.unraisablehook = _unraisable_hook
    _collect_abcs()

    print(f"== refleak: {sys.executable} {sys.version.split()[0]} "
          f"(debug, abiflags={sys.abiflags!r})")
    print(f"   modules: {pontoneer_demo.__file__}")
    print(f"            {tm.__file__}")
    print(f"   {numpy_note}")
    print(f"   rounds: {args.warmup} warm-up + {args.rounds} measured, "
          f"{args.calls} calls each; gate: refcount delta == 0 and allocated-blocks delta == 0 "
          f"in every measured round (+ malloc growth >= 1 byte/call in every round)")
    print(f"   columns: name | refs deltas | blocks deltas | malloc-bytes deltas | verdict")
    sys.stdout.flush()

    references = [st for st in selected if st.reference]
    controls = [st for st in selected if st.control]
    others = [st for st in selected if not (st.control or st.reference)]
    results = []  # (st, verdict, rc, ab, ml, detail)
    skipped = []
    t0 = time.monotonic()
    for st in references + controls + others:
        if st.needs == "numpy" and np is None:
            skipped.append(st)
            continue
        detail = ""
        try:
            loop = compile_loop(st, ns)
            UNRAISABLE[1] = 0
            with _StderrMuted(not args.show_stderr):
                rc, ab, ml, un = measure(loop, args.calls, args.warmup, args.rounds)
        except BaseException as exc:  # noqa: BLE001 - reported, then the run continues
            if isinstance(exc, KeyboardInterrupt):
                raise
            verdict, rc, ab, ml = "ERROR", [], [], []
            detail = f"{type(exc).__name__}: {exc}"
        else:
            leak_rc = any(d != 0 for d in rc)
            leak_ab = any(d != 0 for d in ab)
            leak_ml = all(d >= args.calls for d in ml)
            if st.control:
                caught = {"rc": leak_rc, "blocks": leak_ab}[st.control]
                verdict = "CONTROL-CAUGHT" if caught else "CONTROL-MISSED"
            elif st.reference:
                verdict = "reference"
            elif leak_rc or leak_ab or leak_ml:
                verdict = "LEAK"
                detail = ", ".join(w for w, flag in (("refs", leak_rc), ("blocks", leak_ab),
                                                      ("malloc", leak_ml)) if flag)
            else:
                verdict = "ok"
            want = st.unraisable * args.calls
            if st.unraisable and any(u != want for u in un):
                verdict = "ERROR"
                detail = f"expected {want} unraisable reports per round, got {un}"
            if UNRAISABLE[1]:
                verdict = "ERROR"
                detail = f"{UNRAISABLE[1]} unexpected sys.unraisablehook calls"
        results.append((st, verdict, rc, ab, ml, detail))
        if not args.quiet or verdict not in ("ok", "CONTROL-CAUGHT", "reference"):
            print(f"{st.name:66} refs={rc} blocks={ab} malloc={ml} {verdict}"
                  f"{' (' + detail + ')' if detail else ''}", flush=True)
    elapsed = time.monotonic() - t0

    checked = [r for r in results if not (r[0].control or r[0].reference)]
    ref_results = [r for r in results if r[0].reference]
    leaks = [r for r in checked if r[1] == "LEAK"]
    errors = [r for r in checked if r[1] == "ERROR"]
    missed = [r for r in results if r[1] in ("CONTROL-MISSED", "ERROR") and r[0].control]
    errors += [r for r in ref_results if r[1] == "ERROR"]
    caught = [r for r in results if r[1] == "CONTROL-CAUGHT"]

    def maxabs(idx):
        vals = [abs(d) for r in checked for d in r[idx]]
        return max(vals) if vals else 0

    print()
    print("== summary")
    print(f"   statements checked: {len(checked)} (plus {len(controls)} negative controls "
          f"and {len(references)} pure-Python references); "
          f"skipped: {len(skipped)}" + (" (numpy)" if skipped else ""))
    print(f"   rounds: {args.warmup} warm-up + {args.rounds} measured x {args.calls} calls "
          f"= {len(checked) * (args.warmup + args.rounds) * args.calls:,} statement executions")
    print(f"   max |refs delta| = {maxabs(2)}, max |blocks delta| = {maxabs(3)}, "
          f"max malloc delta = {max([d for r in checked for d in r[4]] or [0])} bytes "
          f"(per {args.calls}-call round, over all measured rounds)")
    for r in ref_results:
        print(f"   pure-Python reference {r[0].name}: refs={r[2]} blocks={r[3]} ({r[1]})")
    for r in caught:
        print(f"   negative control {r[0].name}: caught, refs={r[2]} blocks={r[3]}")
    for r in missed:
        print(f"   negative control {r[0].name}: NOT CAUGHT ({r[1]} {r[5]}) -- the checker "
              f"is blind")
    print(f"   {numpy_note}")
    for r in leaks:
        print(f"   LEAK  {r[0].name}: refs={r[2]} blocks={r[3]} malloc={r[4]} ({r[5]})")
    for r in errors:
        print(f"   ERROR {r[0].name}: {r[5]}")
    print(f"   time: {elapsed:.0f} s")
    status = 0 if not (leaks or errors or missed) and len(caught) == len(controls) else 1
    print(f"== refleak: {'PASS' if status == 0 else 'FAIL'} "
          f"({len(leaks)} leaking, {len(errors)} errors, "
          f"{len(caught)}/{len(controls)} controls caught)")
    return status


if __name__ == "__main__":
    sys.exit(main())
