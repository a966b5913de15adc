//! Integration tests with an embedded interpreter: the object model, trampolines, errors,
//! conversions and module/type builders, seen from Rust.

mod common;

use common::{eval, run, with_py};

#[test]
fn runs_on_the_interpreter_that_built_it() {
    // The rpath trap: without the libpython rpath, this binary would load the system's
    // libpython3.x (a different patch release) instead of the configured interpreter's.
    let built_with = env!("PONTONEER_BUILD_PYTHON");
    let out = std::process::Command::new(built_with)
        .args(["-c", "import sys; print(sys.version)"])
        .output()
        .expect("run the python that configured the build");
    let expected = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let running = with_py(|| {
        eval("__import__('sys').version")
            .extract::<String>()
            .unwrap()
    });
    assert_eq!(
        running, expected,
        "embedded interpreter differs from {built_with}"
    );
    let minor = with_py(|| {
        eval("'%d.%d' % __import__('sys').version_info[:2]")
            .extract::<String>()
            .unwrap()
    });
    assert_eq!(minor, env!("PONTONEER_BUILD_PYTHON_VERSION"));
}

#[test]
fn demo_contract_basics() {
    with_py(|| {
        run(r#"
b = d.FloatBuffer()
assert repr(b) == "FloatBuffer(len=0)" and b.sum() == 0.0
c = d.FloatBuffer.from_count(4)
assert c.sum() == 6.0 and repr(c) == "FloatBuffer(len=4)"
c.append(1.5); c.append(2); c.append(True)
assert c.sum() == 10.5
m = d.Matrix(2, 3)
assert m.shape == (2, 3) and m.get(1, 2) == 0.0
m.set(1, 2, 4.5)
assert m.get(1, 2) == 4.5
"#)
    });
}

#[test]
fn bad_arguments_raise_the_right_exceptions() {
    with_py(|| {
        run(r#"
def raises(exc, f, *args, match=None):
    try:
        f(*args)
    except exc as e:
        if match is not None:
            assert match in str(e), (match, str(e))
        return
    raise AssertionError(f"{f} did not raise {exc.__name__}")

b = d.FloatBuffer()
raises(TypeError, b.append, match="append() takes exactly one argument (0 given)")
raises(TypeError, b.append, 1.0, 2.0, match="append()")
raises(TypeError, b.append, "x", match="append() argument 1: must be a real number, not str")
raises(TypeError, b.append, None, match="append() argument 1")
raises(ValueError, d.FloatBuffer.from_count, -1, match="from_count() argument 1")
raises(OverflowError, d.FloatBuffer.from_count, 2**70, match="from_count() argument 1")
raises(TypeError, d.FloatBuffer.from_count, 2.0, match="cannot be interpreted as an integer")
raises((MemoryError, OverflowError, ValueError), d.FloatBuffer.from_count, 2**61)
raises(ValueError, d.Matrix, -1, 2, match="Matrix() argument 1")
raises(OverflowError, d.Matrix, 2**32, 2**32)
raises(OverflowError, d.Matrix, 2**70, 1)
raises(TypeError, d.Matrix, 1, match="Matrix() takes exactly 2 arguments (1 given)")
raises(TypeError, lambda: d.Matrix(rows=1, cols=2), match="takes no keyword arguments")
raises(TypeError, lambda: b.append(x=1.0), match="takes no keyword arguments")
raises(TypeError, d.FloatBuffer.sum, d.Matrix(1, 1))
raises(IndexError, d.Matrix(2, 2).get, 2, 0)
raises(IndexError, d.Matrix(2, 2).get, -1, 0)
"#)
    });
}

#[test]
fn panics_become_panic_exception_and_the_object_stays_usable() {
    with_py(|| {
        run(r#"
f = t.Faulty(0)
for call in (f.panic, f.panic_mut, t.Faulty.static_panic, t.module_panic, lambda: f.getter_panic):
    try:
        call()
    except BaseException as e:
        assert type(e).__name__ == "PanicException", type(e)
        assert not isinstance(e, Exception)
        assert "deliberate panic" in str(e), str(e)
    else:
        raise AssertionError("no exception")
assert f.bump() == 1001          # panic_mut's partial update is kept, the borrow released
assert f.count == 1001
try:
    f.count = 666
except BaseException as e:
    assert type(e).__name__ == "PanicException"
f.count = 13
try:
    repr(f)
except BaseException as e:
    assert type(e).__name__ == "PanicException"
f.count = 1
assert repr(f) == "Faulty(count=1)"
"#)
    });
}

#[test]
fn errors_custom_exceptions_and_setters() {
    with_py(|| {
        run(r#"
f = t.Faulty(0)
try:
    f.fail()
except ValueError as e:
    assert str(e) == "deliberate failure"
try:
    f.fail_custom()
except t.TestError as e:
    assert isinstance(e, ValueError) and str(e) == "custom failure"
assert t.TestError.__module__ == "pontoneer_testmod"
try:
    f.count = -1
except ValueError:
    pass
try:
    del f.count
except TypeError:
    pass
f.count = 5
assert f.count == 5
"#)
    });
}

#[test]
fn reentrant_mutable_access_is_refused() {
    with_py(|| {
        run(r#"
f = t.Faulty(0)
def touch():
    return f.count            # &self while &mut self is held
try:
    f.reenter(touch)
except RuntimeError as e:
    assert "already mutably borrowed" in str(e), str(e)
else:
    raise AssertionError("no RuntimeError")
assert f.count == 1           # the &mut call completed its own update; borrow released
assert f.reenter_shared(lambda: f.count) == 1          # &self inside &self is fine
try:
    f.reenter_shared(f.bump)  # &mut inside &self is not
except RuntimeError as e:
    assert "already borrowed" in str(e)
assert f.bump() == 2
"#)
    });
}

#[test]
fn instances_release_their_memory_and_type_references() {
    with_py(|| {
        run(r#"
import sys
T = d.FloatBuffer
before = sys.getrefcount(T)
for _ in range(10000):
    b = T.from_count(3)
del b
assert sys.getrefcount(T) == before
class Tricky:
    def __float__(self):
        raise ValueError("no float for you")
x = Tricky()
rc = sys.getrefcount(x)
for _ in range(100):
    try:
        d.FloatBuffer().append(x)
    except ValueError as e:
        assert str(e) == "no float for you"
assert sys.getrefcount(x) == rc
"#)
    });
}

#[test]
fn types_are_final_and_modules_have_metadata() {
    with_py(|| {
        run(r#"
try:
    class Sub(d.FloatBuffer):
        pass
except TypeError:
    pass
else:
    raise AssertionError("subclassing must be refused")
assert d.FloatBuffer.__module__ == "pontoneer_demo"
assert d.FloatBuffer.__qualname__ == "FloatBuffer"
assert "float64" in d.FloatBuffer.__doc__
assert d.__doc__.startswith("pontoneer's demo module")
assert d.FloatBuffer.sum.__doc__ == "sum() -> float"
assert issubclass(d.PanicException, BaseException) and not issubclass(d.PanicException, Exception)
"#)
    });
}
