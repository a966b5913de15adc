"""Panics, errors and re-entrancy at pontoneer's slot boundary (``pontoneer_testmod.Faulty``).

Covered:
- The panic matrix over every handler kind: ``&self`` method, ``&mut self``
  method, static method, module function, getter, setter, repr, getbuffer,
  release hook. Each panic surfaces as ``pontoneer_testmod.PanicException``
  (a BaseException, not an Exception) carrying the panic text, and the object
  stays usable (no borrow left behind, no export left counted). Every panic case
  also runs in a fresh interpreter, so an abort fails one test instead of
  killing the runner.
- Error returns: ValueError, the custom ``TestError``, setter validation,
  getbuffer refusals (handler error, invalid format, size overflow,
  format/itemsize mismatch) and release-hook errors (``sys.unraisablehook``).
- Re-entrancy: a callback touching the object while ``&mut self`` is held is
  refused with RuntimeError; under ``&self`` reads are fine and mutations are
  refused.
- Reference counts of the arguments, the instance and the exception types are
  unchanged after 1000 rounds of every error path.
"""

import contextlib
import ctypes
import os
import subprocess
import sys
import textwrap

import pytest

import pontoneer_testmod as tm
from pontoneer_testmod import Faulty, PanicException

# not imported as `TestError`: pytest would try to collect it as a test class
CustomError = tm.TestError

MODULE_DIR = os.path.dirname(os.path.abspath(tm.__file__))
ROUNDS = 1000


# ---------------------------------------------------------------------------
# helpers


def run_child(code):
    """Run ``code`` in a fresh interpreter that imports the same pontoneer_testmod."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [MODULE_DIR] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["RUST_BACKTRACE"] = "0"  # keeps the child's stderr short; no assertion reads it
    # The timeout only guards against a hung child.
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@contextlib.contextmanager
def unraisable_records():
    """Collect (exc_type, str(exc_value), object) from sys.unraisablehook."""
    records = []
    old = sys.unraisablehook

    def hook(args):
        records.append((args.exc_type, str(args.exc_value), args.object))

    sys.unraisablehook = hook
    try:
        yield records
    finally:
        sys.unraisablehook = old


def assert_usable(f, count):
    """The instance has no borrow or export left behind and counts from ``count``."""
    assert f.count == count
    assert tm.exports(f) == 0
    assert f.bump() == count + 1
    assert f.count == count + 1
    assert repr(f) == "Faulty(count=%d)" % (count + 1)
    f.count = count  # the setter works too (needs a mutable borrow)
    assert f.count == count


# ---------------------------------------------------------------------------
# Exception types


def test_panic_exception_is_base_exception_only():
    assert issubclass(PanicException, BaseException)
    assert not issubclass(PanicException, Exception)
    assert PanicException.__module__ == "pontoneer_testmod"
    assert PanicException.__name__ == "PanicException"


def test_panic_not_caught_by_except_exception():
    f = Faulty(0)
    caught_by_exception = False
    with pytest.raises(PanicException):
        try:
            f.panic()
        except Exception:
            caught_by_exception = True
    assert not caught_by_exception
    assert_usable(f, 0)


def test_test_error_type():
    assert issubclass(CustomError, ValueError)
    assert CustomError.__mro__[1] is ValueError
    assert CustomError.__module__ == "pontoneer_testmod"
    assert CustomError.__name__ == "TestError"
    assert CustomError.__doc__ == "Raised by Faulty.fail_custom()."
    assert tm.TestError is CustomError


# ---------------------------------------------------------------------------
# The panic matrix
#
# (id, setup, trigger, panic text, count afterwards, buffer mode of `f`)
# `setup` and `trigger` are source snippets run with `tm`, `Faulty` and `f` in
# scope, so the same table drives the in-process and the subprocess tests.

PANIC_CASES = [
    ("method_ref", "f = Faulty(0); f.bump()", "f.panic()",
     "deliberate panic in a &self method", 1, 0),
    ("method_mut", "f = Faulty(0); f.bump()", "f.panic_mut()",
     # the handler adds 1000 before panicking: the state it reached is kept
     "deliberate panic in a &mut self method", 1001, 0),
    ("static_via_type", "f = Faulty(0)", "Faulty.static_panic()",
     "deliberate panic in a static method", 0, 0),
    ("static_via_instance", "f = Faulty(0)", "f.static_panic()",
     "deliberate panic in a static method", 0, 0),
    ("module_function", "f = Faulty(0)", "tm.module_panic()",
     "deliberate panic in a module function", 0, 0),
    ("getter", "f = Faulty(0); f.bump()", "f.getter_panic",
     "deliberate panic in a getter", 1, 0),
    ("getter_via_getattr_default", "f = Faulty(0)", "getattr(f, 'getter_panic', None)",
     "deliberate panic in a getter", 0, 0),
    ("getter_via_hasattr", "f = Faulty(0)", "hasattr(f, 'getter_panic')",
     "deliberate panic in a getter", 0, 0),
    ("setter", "f = Faulty(0); f.count = 5", "f.count = 666",
     "deliberate panic in a setter", 5, 0),
    ("repr", "f = Faulty(0); f.count = 13", "repr(f)",
     "deliberate panic in repr", 13, 0),
    ("str_falls_back_to_repr", "f = Faulty(0); f.count = 13", "str(f)",
     "deliberate panic in repr", 13, 0),
    ("repr_nested_in_list", "f = Faulty(0); f.count = 13", "repr([f])",
     "deliberate panic in repr", 13, 0),
    ("getbuffer_memoryview", "f = Faulty(2)", "memoryview(f)",
     "deliberate panic in getbuffer", 0, 2),
    ("getbuffer_bytes", "f = Faulty(2)", "bytes(f)",
     "deliberate panic in getbuffer", 0, 2),
    ("panic_in_callback_of_mut_method", "f = Faulty(0)", "f.reenter(tm.module_panic)",
     # reenter adds 1 before calling back
     "deliberate panic in a module function", 1, 0),
    ("panic_in_callback_of_ref_method", "f = Faulty(0)", "f.reenter_shared(Faulty.static_panic)",
     "deliberate panic in a static method", 0, 0),
]

PANIC_PARAMS = [pytest.param(*case[1:], id=case[0]) for case in PANIC_CASES]


def _exec_case(setup):
    ns = {"tm": tm, "Faulty": Faulty}
    exec(setup, ns)
    return ns


@pytest.mark.parametrize("setup,trigger,text,count,mode", PANIC_PARAMS)
def test_panic_in_process(setup, trigger, text, count, mode):
    ns = _exec_case(setup)
    f = ns["f"]
    with pytest.raises(PanicException) as info:
        exec(trigger, ns)
    assert type(info.value) is PanicException
    assert text in str(info.value)
    if mode == 0:
        assert f.count == count
        if count == 13:
            f.count = 0  # repr(f) panics at 13 by design
            count = 0
        assert_usable(f, count)
        with memoryview(f) as m:
            assert m.tobytes() == b"\x01\x02\x03\x04"
        assert tm.exports(f) == 0
    else:
        assert_usable(f, count)
        # the same panic again: nothing was left half-done by the first one
        with pytest.raises(PanicException, match=text):
            exec(trigger, ns)
        assert tm.exports(f) == 0


@pytest.mark.parametrize("setup,trigger,text,count,mode", PANIC_PARAMS)
def test_panic_in_subprocess(setup, trigger, text, count, mode):
    code = f"""
        import pontoneer_testmod as tm
        from pontoneer_testmod import Faulty, PanicException
        {setup}
        try:
            {trigger}
        except Exception as e:
            print("WRONG-EXCEPTION", type(e).__name__, e)
        except PanicException as e:
            print("CAUGHT", type(e).__name__, str(e))
        else:
            print("NO-EXCEPTION")
        if f.count == 13:
            f.count = 0
        print("COUNT", f.count)
        print("EXPORTS", tm.exports(f))
        print("BUMP", f.bump())
        if {mode} == 0:
            with memoryview(f) as m:
                print("BYTES", m.tobytes().hex())
        print("DONE")
    """
    proc = run_child(code)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("CAUGHT PanicException "), proc.stdout
    assert text in lines[0]
    after = 0 if count == 13 else count
    expected = ["COUNT %d" % after, "EXPORTS 0", "BUMP %d" % (after + 1)]
    if mode == 0:
        expected.append("BYTES 01020304")
    expected.append("DONE")
    assert lines[1:] == expected


def test_release_hook_panic_reported_unraisable():
    f = Faulty(6)
    with unraisable_records() as records:
        m = memoryview(f)
        assert m.tobytes() == b"\x01\x02\x03\x04"
        assert tm.exports(f) == 1
        m.release()  # must not raise: there is no error channel
    assert len(records) == 1
    exc_type, text, obj = records[0]
    assert exc_type is PanicException
    assert "deliberate panic in a release hook" in text
    assert obj is f
    assert_usable(f, 0)


@pytest.mark.parametrize("how", ["release", "del", "with", "numpy"])
def test_release_hook_panic_every_release_path(how):
    f = Faulty(6)
    with unraisable_records() as records:
        if how == "release":
            m = memoryview(f)
            m.release()
        elif how == "del":
            m = memoryview(f)
            del m
        elif how == "with":
            with memoryview(f) as m:
                assert m[0] == 1
        else:
            np = pytest.importorskip("numpy")
            a = np.frombuffer(f, dtype=np.uint8)
            assert a.tolist() == [1, 2, 3, 4]
            del a
    assert len(records) == 1
    assert records[0][0] is PanicException
    assert "deliberate panic in a release hook" in records[0][1]
    assert records[0][2] is f
    assert tm.exports(f) == 0
    # the next export works and the next release reports again
    with unraisable_records() as records:
        with memoryview(f) as m:
            assert m.tolist() == [1, 2, 3, 4]
    assert len(records) == 1
    assert_usable(f, 0)


@pytest.mark.parametrize(
    "mode,exc_name,text",
    [
        pytest.param(6, "PanicException", "deliberate panic in a release hook", id="panic"),
        pytest.param(7, "RuntimeError", "deliberate release hook failure", id="error"),
    ],
)
def test_release_hook_fault_in_subprocess(mode, exc_name, text):
    code = f"""
        import sys
        import pontoneer_testmod as tm
        seen = []
        sys.unraisablehook = lambda a: seen.append((a.exc_type.__name__, str(a.exc_value)))
        f = tm.Faulty({mode})
        m = memoryview(f)
        print("EXPORTS", tm.exports(f))
        m.release()
        print("SEEN", seen)
        print("EXPORTS", tm.exports(f))
        print("BUMP", f.bump())
        print("DONE")
    """
    proc = run_child(code)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    lines = proc.stdout.splitlines()
    assert lines[0] == "EXPORTS 1"
    assert lines[1].startswith("SEEN [('%s', " % exc_name)
    assert lines[1].count("(") == 1  # reported once
    assert text in lines[1]
    assert lines[2:] == ["EXPORTS 0", "BUMP 1", "DONE"]


def test_release_hook_error_reported_unraisable():
    f = Faulty(7)
    with unraisable_records() as records:
        m = memoryview(f)
        assert tm.exports(f) == 1
        m.release()
    assert records == [(RuntimeError, "deliberate release hook failure", f)]
    assert_usable(f, 0)


# ---------------------------------------------------------------------------
# Error returns


@pytest.mark.parametrize(
    "call,exc_type,pattern",
    [
        pytest.param(lambda f: f.fail(), ValueError, r"^deliberate failure$", id="fail"),
        pytest.param(lambda f: f.fail_custom(), CustomError, r"^custom failure$",
                     id="fail_custom"),
        pytest.param(lambda f: setattr(f, "count", -1), ValueError,
                     r"^count must be non-negative$", id="setter_negative"),
        pytest.param(lambda f: setattr(f, "count", "3"), TypeError,
                     r"'str' object cannot be interpreted as an integer",
                     id="setter_wrong_type"),
        pytest.param(lambda f: delattr(f, "count"), TypeError, r"cannot delete",
                     id="setter_delete"),
        pytest.param(lambda f: setattr(f, "getter_panic", 1), AttributeError, r"not writable",
                     id="getter_only_property"),
        pytest.param(lambda f: f.reenter(), TypeError, r"reenter\(\) takes exactly one argument",
                     id="missing_argument"),
        pytest.param(lambda f: f.bump(1), TypeError, r"bump\(\) takes no arguments",
                     id="extra_argument"),
        pytest.param(lambda f: Faulty([1]), TypeError,
                     r"'list' object cannot be interpreted as an integer", id="init_wrong_type"),
    ],
)
def test_error_returns(call, exc_type, pattern):
    f = Faulty(0)
    f.bump()
    with pytest.raises(exc_type, match=pattern) as info:
        call(f)
    assert type(info.value) is exc_type
    assert_usable(f, 1)


def test_fail_is_plain_value_error_and_custom_is_caught_as_value_error():
    f = Faulty(0)
    with pytest.raises(ValueError) as info:
        f.fail()
    assert not isinstance(info.value, CustomError)
    try:
        f.fail_custom()
    except ValueError as e:  # CustomError is a ValueError
        assert isinstance(e, CustomError)
        assert e.args == ("custom failure",)
    else:
        pytest.fail("fail_custom() did not raise")


@pytest.mark.parametrize(
    "mode,text",
    [
        pytest.param(1, "deliberate getbuffer failure", id="handler_error"),
        pytest.param(3, "format", id="bad_format"),
        pytest.param(4, "overflow", id="size_overflow"),
        pytest.param(5, "itemsize", id="format_itemsize_mismatch"),
    ],
)
@pytest.mark.parametrize("consumer", ["memoryview", "bytes", "getbuffer_full_ro"])
def test_getbuffer_refusals(mode, text, consumer):
    f = Faulty(mode)
    refcount = sys.getrefcount(f)
    for _ in range(2):  # the same answer every time
        with pytest.raises(BufferError, match=text):
            if consumer == "memoryview":
                memoryview(f)
            elif consumer == "bytes":
                bytes(f)
            else:
                view = Py_buffer()
                try:
                    PyObject_GetBuffer(f, ctypes.byref(view), 0x11C)
                finally:
                    assert not view.obj
        assert tm.exports(f) == 0
        assert sys.getrefcount(f) == refcount
    assert_usable(f, 0)


class Py_buffer(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
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


# A private function object (see test_exporters.py): argtypes are not shared.
PyObject_GetBuffer = ctypes.pythonapi["PyObject_GetBuffer"]
PyObject_GetBuffer.argtypes = [ctypes.py_object, ctypes.POINTER(Py_buffer), ctypes.c_int]
PyObject_GetBuffer.restype = ctypes.c_int


def test_getbuffer_panic_leaves_view_empty():
    f = Faulty(2)
    view = Py_buffer()
    refcount = sys.getrefcount(f)
    with pytest.raises(PanicException, match="deliberate panic in getbuffer"):
        PyObject_GetBuffer(f, ctypes.byref(view), 0)
    assert not view.obj
    assert sys.getrefcount(f) == refcount
    assert_usable(f, 0)


def test_mode0_buffer():
    f = Faulty(0)
    with memoryview(f) as m:
        assert m.format == "B"
        assert m.itemsize == 1
        assert m.shape == (4,)
        assert m.readonly is True
        assert m.tobytes() == b"\x01\x02\x03\x04"
        assert tm.exports(f) == 1
    assert tm.exports(f) == 0


def test_mutation_refused_while_exported():
    f = Faulty(0)
    m = memoryview(f)
    with pytest.raises(BufferError, match="exporting buffers"):
        f.bump()
    assert f.count == 0
    m.release()
    assert_usable(f, 0)


def test_release_with_pending_exception_hook_ok():
    """Control row for the next test: join() fails on item 1 after exporting item 0,
    then releases item 0's view with the TypeError pending; a hook that succeeds
    leaves that TypeError alone."""
    f = Faulty(0)
    with unraisable_records() as records:
        with pytest.raises(TypeError, match="sequence item 1"):
            b"".join([f, 1])
    assert records == []
    assert_usable(f, 0)


@pytest.mark.parametrize("mode,hook_exc", [(6, PanicException), (7, RuntimeError)])
def test_release_hook_keeps_pending_exception(mode, hook_exc):
    f = Faulty(mode)
    with unraisable_records() as records:
        with pytest.raises(TypeError, match="sequence item 1"):
            b"".join([f, 1])
    assert [r[0] for r in records] == [hook_exc]
    assert tm.exports(f) == 0


# ---------------------------------------------------------------------------
# Re-entrancy

# A shared borrow attempted under `&mut` fails with "already mutably borrowed", a
# mutable one with "already borrowed" (the wording of RefCell's BorrowError /
# BorrowMutError).
MUT_REENTRY = [
    pytest.param(lambda f: f.count, "already mutably borrowed", id="getter"),
    pytest.param(lambda f: f.fail(), "already mutably borrowed", id="ref_method"),
    pytest.param(lambda f: f.panic(), "already mutably borrowed", id="panicking_ref_method"),
    pytest.param(lambda f: f.getter_panic, "already mutably borrowed", id="panicking_getter"),
    pytest.param(lambda f: repr(f), "already mutably borrowed", id="repr"),
    pytest.param(lambda f: memoryview(f), "already mutably borrowed", id="getbuffer"),
    pytest.param(lambda f: f.reenter_shared(lambda: 0), "already mutably borrowed",
                 id="nested_reenter_shared"),
    pytest.param(lambda f: f.bump(), "already borrowed", id="mut_method"),
    pytest.param(lambda f: f.panic_mut(), "already borrowed", id="panicking_mut_method"),
    pytest.param(lambda f: setattr(f, "count", 3), "already borrowed", id="setter"),
    pytest.param(lambda f: f.reenter(lambda: 0), "already borrowed", id="nested_reenter"),
]


@pytest.mark.parametrize("touch,text", MUT_REENTRY)
def test_reenter_mut_refused(touch, text):
    f = Faulty(0)
    with pytest.raises(RuntimeError, match=text):
        f.reenter(lambda: touch(f))
    # reenter added 1 before calling back; the borrow is gone afterwards
    assert_usable(f, 1)
    with memoryview(f) as m:
        assert m.tobytes() == b"\x01\x02\x03\x04"


def test_reenter_mut_brief_example():
    f = Faulty(0)
    with pytest.raises(RuntimeError, match="already mutably borrowed"):
        f.reenter(lambda: f.count)
    assert f.count == 1
    assert f.bump() == 2


def test_reenter_mut_callback_not_touching_object():
    f = Faulty(0)
    sentinel = object()
    assert f.reenter(lambda: sentinel) is sentinel
    assert f.reenter(lambda: 5) == 5
    assert_usable(f, 2)


@pytest.mark.parametrize(
    "exc",
    [ZeroDivisionError("x"), KeyboardInterrupt(), CustomError("from python")],
    ids=["ZeroDivisionError", "KeyboardInterrupt", "TestError"],
)
@pytest.mark.parametrize("method", ["reenter", "reenter_shared"])
def test_callback_exception_propagates_unchanged(method, exc):
    f = Faulty(0)

    def cb():
        raise exc

    with pytest.raises(type(exc)) as info:
        getattr(f, method)(cb)
    assert info.value is exc
    assert_usable(f, 1 if method == "reenter" else 0)


READS = [
    pytest.param(lambda f: f.count, 0, id="getter"),
    pytest.param(lambda f: repr(f), "Faulty(count=0)", id="repr"),
    pytest.param(lambda f: memoryview(f).tobytes(), b"\x01\x02\x03\x04", id="getbuffer"),
    pytest.param(lambda f: f.reenter_shared(lambda: f.count), 0, id="nested_reenter_shared"),
]


@pytest.mark.parametrize("read,expected", READS)
def test_reenter_shared_reads_allowed(read, expected):
    f = Faulty(0)
    assert f.reenter_shared(lambda: read(f)) == expected
    assert_usable(f, 0)


def test_reenter_shared_brief_example():
    f = Faulty(0)
    f.bump()
    assert f.reenter_shared(lambda: f.count) == 1


# each entry builds the callback handed to reenter_shared
MUTATIONS = [
    pytest.param(lambda f: (lambda: f.bump()), id="bump"),
    pytest.param(lambda f: f.bump, id="bump_bound_method_as_callback"),
    pytest.param(lambda f: (lambda: f.panic_mut()), id="panic_mut"),
    pytest.param(lambda f: (lambda: setattr(f, "count", 3)), id="setter"),
    pytest.param(lambda f: (lambda: f.reenter(lambda: 0)), id="nested_reenter"),
]


@pytest.mark.parametrize("make_callback", MUTATIONS)
def test_reenter_shared_mutation_refused(make_callback):
    f = Faulty(0)
    f.bump()
    with pytest.raises(RuntimeError, match="already borrowed"):
        f.reenter_shared(make_callback(f))
    # refused before the handler ran: panic_mut did not add 1000, the setter did not set
    assert_usable(f, 1)


def test_reenter_shared_bump_brief_example():
    f = Faulty(0)
    with pytest.raises(RuntimeError):
        f.reenter_shared(f.bump)
    assert f.count == 0
    assert f.bump() == 1


# ---------------------------------------------------------------------------
# Reference counts over 1000 rounds of every error path


def _swallow_unraisable(args):
    pass


def _leak_cases():
    """Rows (mode, start count, op, expected exception or None, argument makers).

    ``op(f, *args)`` runs one error path; each argument maker gets ``f`` and
    returns an argument object whose refcount is watched.
    """

    def big(n):
        return int(str(n))  # a fresh int object, outside the small-int cache

    cases = []

    def case(name, mode, op, exc, args=(), count=0):
        cases.append(pytest.param(mode, count, op, exc, args, id=name))

    case("fail", 0, lambda f: f.fail(), ValueError)
    case("fail_custom", 0, lambda f: f.fail_custom(), CustomError)
    case("panic", 0, lambda f: f.panic(), PanicException)
    case("panic_mut", 0, lambda f: f.panic_mut(), PanicException)
    case("static_panic", 0, lambda f: Faulty.static_panic(), PanicException)
    case("module_panic", 0, lambda f: tm.module_panic(), PanicException)
    case("getter_panic", 0, lambda f: f.getter_panic, PanicException)
    case("repr_panic", 0, lambda f: repr(f), PanicException, count=13)
    case("setter_negative", 0, lambda f, v: setattr(f, "count", v), ValueError,
         args=(lambda f: big(-12345),))
    case("setter_panic", 0, lambda f, v: setattr(f, "count", v), PanicException,
         args=(lambda f: big(666),))
    case("setter_wrong_type", 0, lambda f, v: setattr(f, "count", v), TypeError,
         args=(lambda f: "not an int" + str(len("x")),))
    case("extra_argument", 0, lambda f, v: f.bump(v), TypeError, args=(lambda f: big(77777),))
    case("init_wrong_type", 0, lambda f, v: Faulty(v), TypeError, args=(lambda f: [1, 2],))
    case("reenter_refused", 0, lambda f, cb: f.reenter(cb), RuntimeError,
         args=(lambda f: (lambda: f.count),))
    case("reenter_shared_refused", 0, lambda f, cb: f.reenter_shared(cb), RuntimeError,
         args=(lambda f: f.bump,))
    case("callback_raises", 0, lambda f, cb: f.reenter(cb), ZeroDivisionError,
         args=(lambda f: (lambda: 1 / 0),))
    case("callback_panics", 0, lambda f, cb: f.reenter(cb), PanicException,
         args=(lambda f: tm.module_panic,))
    case("callback_result", 0, lambda f, cb: f.reenter(cb), None,
         args=(lambda f: (lambda: f),))
    for mode in (1, 3, 4, 5):
        case("getbuffer_mode%d" % mode, mode, lambda f: memoryview(f), BufferError)
    case("getbuffer_panic", 2, lambda f: memoryview(f), PanicException)
    case("release_hook_panic", 6, lambda f: memoryview(f).release(), None)
    case("release_hook_error", 7, lambda f: memoryview(f).release(), None)
    return cases


@pytest.mark.parametrize("mode,count,op,exc,arg_makers", _leak_cases())
def test_refcounts_unchanged_after_error_paths(mode, count, op, exc, arg_makers):
    f = Faulty(mode)
    f.count = count
    args = [make(f) for make in arg_makers]
    exc_types = [PanicException, CustomError, ValueError, RuntimeError, BufferError]
    if exc is not None and exc not in exc_types:
        exc_types.append(exc)

    def snapshot():
        return (
            sys.getrefcount(f),
            [sys.getrefcount(a) for a in args],
            [sys.getrefcount(t) for t in exc_types],
        )

    old_hook = sys.unraisablehook
    sys.unraisablehook = _swallow_unraisable
    try:
        # one warm-up round first: first-call caches (interned names, method caches) settle
        for rounds in (1, ROUNDS):
            before = snapshot()
            for _ in range(rounds):
                if exc is None:
                    op(f, *args)
                else:
                    try:
                        op(f, *args)
                    except exc:
                        pass
                    else:
                        raise AssertionError("no %s raised" % exc.__name__)
            after = snapshot()
            assert after == before, rounds
    finally:
        sys.unraisablehook = old_hook
    assert tm.exports(f) == 0
    if f.count == 13:
        f.count = 0
    start = f.count
    assert f.bump() == start + 1
