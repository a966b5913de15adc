"""Pure-Python workload for generating tests/leaks/python.supp (no pontoneer module is
imported): it touches what the checked runs touch in CPython, numpy, ctypes and glibc --
imports, buffers and memoryviews, numpy views, ctypes.pythonapi, exceptions and the
unraisable hook, threads, subprocesses, the garbage collector, sub-interpreters -- so that
valgrind reports the interpreter's own noise once, here, where nothing else can be blamed.

Run by ``bash scripts/valgrind.sh --regen-supp``, both directly and as a pytest file (so that
pytest's and hypothesis' machinery is covered too); the test functions below are the pytest
part.
"""

import array
import ctypes
import gc
import subprocess
import sys
import threading


def exercise():
    import numpy as np

    a = array.array("d", [float(i) for i in range(16)])
    with memoryview(a) as m:
        assert m.format == "d" and m.shape == (16,)
        assert m.cast("B").nbytes == 128
        assert bytes(m[2:4]) == bytes(memoryview(a)[2:4])
    x = np.frombuffer(a, dtype=np.float64)
    assert x.sum() == sum(a)
    y = np.asarray(bytearray(b"\x01\x02\x03\x04"))
    assert y.tolist() == [1, 2, 3, 4]
    z = np.arange(12.0).reshape(3, 4)
    assert memoryview(z).strides == (32, 8)
    assert np.asarray(memoryview(z)).sum() == 66.0

    class Py_buffer(ctypes.Structure):
        _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p),
                    ("len", ctypes.c_ssize_t), ("itemsize", ctypes.c_ssize_t),
                    ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                    ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p),
                    ("strides", ctypes.c_void_p), ("suboffsets", ctypes.c_void_p),
                    ("internal", ctypes.c_void_p)]

    get = ctypes.pythonapi["PyObject_GetBuffer"]
    get.argtypes = [ctypes.py_object, ctypes.POINTER(Py_buffer), ctypes.c_int]
    rel = ctypes.pythonapi["PyBuffer_Release"]
    rel.argtypes = [ctypes.POINTER(Py_buffer)]
    rel.restype = None
    for flags in (0, 0x11C, 0x1):
        view = Py_buffer()
        try:
            get(a, ctypes.byref(view), flags)
        except BufferError:
            pass
        else:
            rel(ctypes.byref(view))

    seen = []
    old = sys.unraisablehook
    sys.unraisablehook = lambda args: seen.append(args.exc_type)

    class Del:
        def __del__(self):
            raise RuntimeError("from __del__")

    Del()
    sys.unraisablehook = old
    assert seen == [RuntimeError]

    for exc in (ValueError, TypeError, KeyError, IndexError, BufferError, ZeroDivisionError):
        try:
            raise exc("x")
        except exc:
            pass
    try:
        int("x")
    except ValueError:
        pass
    assert int.from_bytes(b"\x00\x00", "little") == 0 and int("0") == 0 and (6 & 1) == 0
    import marshal
    import os

    exec(compile("x = 1.25 + 2.5e3 * 0.5", "<workload>", "exec"), {})
    assert marshal.loads(marshal.dumps((1.5, 2.5))) == (1.5, 2.5)
    assert os.stat(".").st_mtime > 0.0

    out = []
    threads = [threading.Thread(target=lambda: out.append(sum(range(1000)))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [499500] * 4

    proc = subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True, text=True)
    assert proc.stdout == "1\n"

    try:
        import _xxsubinterpreters as interpreters
    except ImportError:
        pass
    else:
        interp = interpreters.create()
        interpreters.run_string(interp, "x = sum(range(10))")
        interpreters.destroy(interp)

    gc.collect()


def test_exercise():
    exercise()


def test_hypothesis():
    from hypothesis import given, settings, strategies as st

    @settings(max_examples=20, deadline=None)
    @given(st.lists(st.floats(allow_nan=False), max_size=8))
    def check(xs):
        a = array.array("d", xs)
        assert memoryview(a).tolist() == xs

    check()


def test_raises_and_parametrize_like_machinery():
    import pytest

    with pytest.raises(ZeroDivisionError):
        1 / 0
    with pytest.raises(TypeError, match="unsupported"):
        None + 1


if __name__ == "__main__":
    exercise()
    print("workload done")
