"""A short tour of pontoneer_demo, the example module built with pontoneer.

Run it with `bash scripts/demo.sh` (builds the module first) or, once built,
`python examples/tour.py` from the repository root.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pontoneer_demo as demo
from pontoneer_demo import FloatBuffer, Matrix


def show(label, value):
    print(f"  {label:<44} -> {value!r}")


def attempt(label, fn):
    try:
        show(label, fn())
    except BaseException as e:  # noqa: BLE001 - the tour shows every exception
        print(f"  {label:<44} -> {type(e).__name__}: {e}")


print("FloatBuffer: a growable vector of float64 (Vec<Cell<f64>> in Rust)")
b = FloatBuffer.from_count(5)
show("FloatBuffer.from_count(5)", b)
show("b.sum()", b.sum())
b.append(2.5)
show("b.append(2.5); b", b)
show("FloatBuffer()", FloatBuffer())

print("\nThe buffer protocol: zero-copy views")
with memoryview(b) as v:
    show("memoryview(b).format, .shape, .strides", (v.format, v.shape, v.strides))
    show("readonly, c_contiguous", (v.readonly, v.c_contiguous))
    show("v.tolist()", v.tolist())
    attempt("b.append(1.0) while a view is exported", lambda: b.append(1.0))
b.append(1.0)
show("after release: b.append(1.0); b", b)
show("bytes(FloatBuffer.from_count(2))", bytes(FloatBuffer.from_count(2)))

m = Matrix(2, 3)
m.set(1, 2, 4.5)
show("Matrix(2, 3).shape", m.shape)
with memoryview(m) as v:
    show("memoryview(m).shape, .strides, .readonly", (v.shape, v.strides, v.readonly))
    show("v.tolist()", v.tolist())
try:
    import numpy as np
except ImportError:
    print("  (numpy not installed: skipping the numpy part)")
else:
    a = np.asarray(m)
    a[0, 1] = 7.0
    show("numpy.asarray(m)[0, 1] = 7.0; m.get(0, 1)", m.get(0, 1))
    m.set(1, 0, -1.0)
    show("m.set(1, 0, -1.0) while numpy holds a view; a[1, 0]", float(a[1, 0]))
    f = np.frombuffer(b, dtype=np.float64)
    show("numpy.frombuffer(b).sum()", float(f.sum()))
    del a, f

print("\nBad input is a Python exception, never a crash")
attempt("b.append('x')", lambda: b.append("x"))
attempt("b.append()", lambda: b.append())
attempt("FloatBuffer.from_count(-1)", lambda: FloatBuffer.from_count(-1))
attempt("FloatBuffer.from_count(2**70)", lambda: FloatBuffer.from_count(2**70))
attempt("Matrix(2**32, 2**32)", lambda: Matrix(2**32, 2**32))
attempt("m.get(5, 0)", lambda: m.get(5, 0))
attempt("FloatBuffer.sum(Matrix(1, 1))", lambda: FloatBuffer.sum(Matrix(1, 1)))
print(f"\n{demo.__name__}: {demo.__doc__}")
