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
T = t.Leaky                   # a class no other test in this binary touches: the tests run
before = sys.getrefcount(T)   # in parallel threads, and instances hold their type
for _ in range(10000):
    x = T()
del x
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

#[test]
fn protocol_slots_from_rust() {
    with_py(|| {
        run(r#"
V = t.Vec2
a, b = V(1, 2), V(3, 4)
assert (a + b) == V(4, 6) and (1.0 + a) == V(2, 3) and (10 - a) == V(9, 8)
assert (a @ b) == 11.0 and abs(b) == 5.0 and hash(V(-1, 0)) == -2
c = a
c += b
assert c is a and a == V(4, 6)
for expr in ("a + None", "None + a", "a < b", "pow(2, a, 5)"):
    try:
        eval(expr)
    except TypeError:
        pass
    else:
        raise AssertionError(expr)
m = t.StrMap(); m["k"] = 1.5
assert len(m) == 1 and m["k"] == 1.5
del m["k"]
assert len(m) == 0
assert list(t.Countdown(3)) == [2, 1, 0] and t.Adder(2)(3) == 5.0
s = t.Seq(3)
assert s[-1] == 2 and 1 in s and (s + s).tolist() == [0, 1, 2, 0, 1, 2] and (s * 2).tolist() == [0, 1, 2] * 2
s += [5]
s *= 2
assert s.tolist() == [0, 1, 2, 5] * 2
b = d.FloatBuffer.from_count(3)
with memoryview(b) as v:
    b[0] = 9.0                    # through a Cell: allowed while exported, visible
    assert v[0] == 9.0
    try:
        del b[0]
    except BufferError:
        pass
    else:
        raise AssertionError("del while exported")
del b[0]
assert b.sum() == 3.0 and len(b) == 2 and -b == d.FloatBuffer.from_count(0) + -b
"#)
    });
}

#[test]
fn panics_in_every_slot_kind_become_exceptions() {
    with_py(|| {
        run(r#"
V = t.Vec2
p, ok = V(666, 0), V(1, 1)
calls = [
    lambda: -p, lambda: abs(p), lambda: int(p), lambda: bool(p), lambda: p + ok,
    lambda: p ** 2, lambda: hash(p), lambda: repr(p), lambda: p == ok,
    lambda: t.StrMap()["panic"], lambda: next(t.Countdown(666)), lambda: t.Adder(0)(666),
    lambda: 666 in t.Seq(700), lambda: t.Seq(700)[666],
]
for call in calls:
    try:
        call()
    except BaseException as e:
        assert type(e).__name__ == "PanicException", e
    else:
        raise AssertionError("no panic")
q = V(666, 0)
try:
    q += ok
except BaseException as e:
    assert type(e).__name__ == "PanicException"
assert q.x == 666                 # usable: the &mut borrow was released
"#)
    });
}

#[test]
fn a_panic_in_drop_goes_to_the_unraisable_hook() {
    with_py(|| {
        run(r#"
import sys, gc
seen = []
old = sys.unraisablehook
sys.unraisablehook = lambda u: seen.append((u.exc_type.__name__, str(u.exc_value)))
try:
    try:
        raise KeyError("pending")           # a pending exception must survive the dealloc
    except KeyError:
        t.DropBomb(True)                    # dropped at once: Drop panics inside tp_dealloc
        assert sys.exc_info()[0] is KeyError
    t.DropBomb(False)
    gc.collect()
finally:
    sys.unraisablehook = old
assert seen == [("PanicException", "Rust panic: deliberate panic in Drop (tp_dealloc)")], seen
"#)
    });
}

#[test]
fn embed_runs_files_and_builds_instances_from_rust() {
    use pontoneer::{Object, PyRef, embed};
    with_py(|| {
        let path =
            std::env::temp_dir().join(format!("pontoneer_run_file_{}.py", std::process::id()));
        std::fs::write(
            &path,
            "import sys\nresult = (__name__, sum(buf), len(buf))\n",
        )
        .unwrap();
        let d = common::module("pontoneer_demo");
        let buf = common::expect(Object::new_instance(
            &d,
            common::demo::FloatBuffer::from_values([1.0, 2.0, 3.5]),
        ));
        let ns = common::expect(embed::run_file(&path, &[("buf", &buf)]));
        std::fs::remove_file(&path).unwrap();
        let result = common::expect(ns.get_item("result"));
        assert_eq!(common::expect(result.repr()), "('__main__', 6.5, 3)");
        // The instance made in Rust is the Rust value, read back through the type check.
        assert_eq!(
            PyRef::<common::demo::FloatBuffer>::borrow(&buf)
                .unwrap()
                .values(),
            [1.0, 2.0, 3.5]
        );
        // A module with no such class is a TypeError, not a crash.
        let t = common::module("pontoneer_testmod");
        assert!(Object::new_instance(&t, common::demo::FloatBuffer::from_values([])).is_err());
    });
}

#[test]
fn an_object_kept_past_with_gil_is_refused_not_raced() {
    use pontoneer::Object;
    // `with_gil` lets an `Object` escape; afterwards this thread does not hold the GIL.
    let obj = with_py(|| Object::from_value(1.5).unwrap());
    // Calls into the interpreter are refused with RuntimeError...
    let err = obj.repr().unwrap_err();
    assert!(
        err.message()
            .unwrap_or("")
            .contains("does not hold the GIL"),
        "{:?}",
        err.message()
    );
    // ...taking a reference panics rather than race the reference count...
    let cloned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| obj.clone()));
    assert!(cloned.is_err());
    // ...reading an exact float's immutable value is fine, and a name is not guessed.
    assert_eq!(obj.as_exact_f64(), Some(1.5));
    assert_eq!(obj.type_name(), "?");
    // Conversions read an exact float's immutable value and refuse everything that may call
    // into the interpreter (ints may raise OverflowError, __float__, str's UTF-8 cache).
    use pontoneer::FromPy;
    let (int, big, text) = with_py(|| {
        (
            Object::from_value(7i64).unwrap(),
            eval("2**80"),
            Object::from_value("x").unwrap(),
        )
    });
    assert_eq!(f64::from_py(&obj).unwrap(), 1.5);
    for err in [
        i64::from_py(&int).err(),
        usize::from_py(&big).err(),
        f64::from_py(&int).err(),
    ] {
        let err = err.expect("refused");
        assert!(
            err.message()
                .unwrap_or("")
                .contains("does not hold the GIL")
        );
    }
    assert!(String::from_py(&text).is_err());
    assert!(Object::from_py(&obj).is_err());
    // Dropping leaks the reference instead of decrementing without the GIL.
    drop((obj, int, big, text));
    // With the GIL again, everything works.
    with_py(|| {
        let again = Object::from_value(2.5).unwrap();
        assert_eq!(again.clone().repr().unwrap(), "2.5");
        assert_eq!(again.type_name(), "float");
    });
}
