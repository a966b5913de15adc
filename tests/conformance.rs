//! The exporter conformance kit (`pontoneer::conformance`, C `pcf_check`) over every kind of
//! exporter, with the verdict each must get:
//!
//! - every pontoneer exporter (demo and test module) conforms under both policies, with its
//!   export counter observed, and the kit learns the same geometry the C harness
//!   (`tests/capi_buffer.rs`) is told by hand;
//! - CPython's own exporters get the verdicts documented in the README (bytes does not NULL
//!   `view->obj` on refusal, an empty strided memoryview refuses what it must grant, ...);
//! - numpy's (when installed) raise `ValueError` instead of `BufferError` and leave
//!   `view->obj` untouched on refusal;
//! - every deliberately broken `BadExporter` (tests/conformance_mod) is caught, on exactly
//!   the fields its bug breaks, and the two correct modes pass;
//! - the C entry point and the capsule table give the same answer as the Rust API.

mod common;
#[path = "conformance_mod/src/module.rs"]
mod conf;

use core::ffi::{CStr, c_char, c_int, c_long, c_void};
use std::collections::BTreeSet;

use common::{eval, expect, with_py};
use pontoneer::conformance::{self, Expectation, Options, Phase, Policy, Report};
use pontoneer::{Object, PyClass, PyErr, PyRef, PyResult, embed, ffi};

/// `import pontoneer_conformance`, loading it from `conf::init` the first time.
fn conf_module() -> Object {
    if let Ok(m) = embed::import("pontoneer_conformance") {
        return m;
    }
    let _ = PyErr::take();
    let def = embed::leak_module_def(c"pontoneer_conformance", conf::init);
    expect(embed::load_module(def, "pontoneer_conformance"))
}

/// Evaluates `expr` with `array`, `mmap`, `np` (numpy, or None) and the conformance module
/// `c` in scope.
fn py(expr: &str) -> Object {
    let c = conf_module();
    let code = format!(
        "import array, mmap\ntry:\n    import numpy as np\nexcept ImportError:\n    np = None\n\
         result = {expr}\n"
    );
    let ns = expect(embed::run(&code, &[("c", &c)]));
    let key = expect(Object::from_value("result"));
    expect(expect(ns.getattr(c"__getitem__")).call1(&key))
}

fn fields(r: &Report) -> BTreeSet<&str> {
    r.violated_fields().into_iter().collect()
}

fn set<'a>(v: &[&'a str]) -> BTreeSet<&'a str> {
    v.iter().copied().collect()
}

fn exports_of<T: PyClass>(o: &Object) -> PyResult<isize> {
    Ok(PyRef::<T>::borrow(o)?.exports())
}

fn check(
    obj: &Object,
    policy: Policy,
    exports: Option<conformance::ExportsObserver<'_>>,
) -> Report {
    let options = Options {
        policy,
        exports,
        ..Options::default()
    };
    expect(conformance::check_with(obj, &options))
}

/// One pontoneer exporter and the geometry it was built with.
struct Known {
    expr: &'static str,
    shape: &'static [isize],
    strides: &'static [isize],
    format: &'static str,
    readonly: bool,
    exports: conformance::ExportsObserver<'static>,
}

fn pontoneer_exporters() -> Vec<Known> {
    use common::demo::{FloatBuffer, Matrix};
    use common::testmod::*;
    macro_rules! k {
        ($e:expr, $sh:expr, $st:expr, $f:expr, $ro:expr, $t:ty) => {
            Known {
                expr: $e,
                shape: &$sh,
                strides: &$st,
                format: $f,
                readonly: $ro,
                exports: &exports_of::<$t>,
            }
        };
    }
    vec![
        k!(
            "d.FloatBuffer.from_count(5)",
            [5],
            [8],
            "d",
            true,
            FloatBuffer
        ),
        k!("d.FloatBuffer()", [0], [8], "d", true, FloatBuffer),
        k!("d.Matrix(3, 4)", [3, 4], [32, 8], "d", false, Matrix),
        k!("d.Matrix(1, 5)", [1, 5], [40, 8], "d", false, Matrix),
        k!("d.Matrix(0, 3)", [0, 3], [24, 8], "d", false, Matrix),
        k!("t.Empty()", [0], [8], "d", true, Empty),
        k!(
            "t.FortranMatrix(3, 4)",
            [3, 4],
            [8, 24],
            "d",
            false,
            FortranMatrix
        ),
        k!(
            "t.FortranMatrix(4, 1)",
            [4, 1],
            [8, 32],
            "d",
            false,
            FortranMatrix
        ),
        k!("t.Reversed(6)", [6], [-8], "d", true, Reversed),
        k!("t.Cube(2, 3, 4)", [2, 3, 4], [48, 16, 4], "i", false, Cube),
        k!("t.Cube(2, 0, 3)", [2, 0, 3], [0, 12, 4], "i", false, Cube),
        k!("t.Array_b(5)", [5], [1], "b", false, ArrayI8),
        k!("t.Array_H(5)", [5], [2], "H", false, ArrayU16),
        k!("t.Array_l(5)", [5], [8], "l", false, ArrayLong),
        k!("t.Array_f(5)", [5], [4], "f", false, ArrayF32),
        k!("t.Array_bool(5)", [5], [1], "?", false, ArrayBool),
        k!("t.Faulty(0)", [4], [1], "B", true, Faulty),
    ]
}

#[test]
fn every_pontoneer_exporter_conforms_under_both_policies() {
    with_py(|| {
        let mut checks = 0;
        for k in pontoneer_exporters() {
            let obj = eval(k.expr);
            for policy in [Policy::Permissive, Policy::Strict] {
                let r = check(&obj, policy, Some(k.exports));
                assert!(r.is_conforming(), "{} ({policy:?}):\n{r}", k.expr);
                checks += r.checks;
                // The kit learned what the harness is told by hand.
                let t = r.truth.as_ref().expect("a truth");
                assert_eq!(t.request, "PyBUF_FULL_RO", "{}", k.expr);
                assert_eq!(t.shape, k.shape, "{}", k.expr);
                assert_eq!(t.format.as_deref(), Some(k.format), "{}", k.expr);
                assert_eq!(t.readonly, k.readonly, "{}", k.expr);
                let nonempty = t.shape.iter().all(|&n| n > 0);
                for (i, (&found, &want)) in t.strides.iter().zip(k.strides).enumerate() {
                    if nonempty && t.shape[i] > 1 {
                        assert_eq!(found, want, "{} stride {i}", k.expr);
                    }
                }
                assert_eq!(t.suboffsets, None);
            }
        }
        eprintln!("conformance kit: {checks} checks over pontoneer's exporters, 0 violations");
    });
}

#[test]
fn cpython_exporters_get_their_documented_verdicts() {
    with_py(|| {
        // (expression, violated fields under the permissive policy)
        let table: &[(&str, &[&str])] = &[
            ("bytearray(b'abc')", &[]),
            ("bytearray()", &[]),
            ("array.array('d', [1.0, 2.0, 3.0])", &[]),
            ("array.array('b')", &[]),
            (
                "array.array('w' if __import__('sys').version_info >= (3, 13) else 'u', 'ab')",
                &[],
            ),
            ("array.array('q', range(4))", &[]),
            ("memoryview(b'abcdef')", &[]),
            ("memoryview(bytearray(10))[::2]", &[]),
            ("memoryview(bytearray(10))[::-1]", &[]),
            ("memoryview(bytearray(32)).cast('d', [2, 2])", &[]),
            ("memoryview(bytearray(8)).cast('d', [])", &[]),
            ("mmap.mmap(-1, 4096)", &[]),
            // PyBuffer_FillInfo: a refused PyBUF_WRITABLE leaves view->obj untouched.
            ("b'abc'", &["obj"]),
            ("mmap.mmap(-1, 4096, access=mmap.ACCESS_READ)", &["obj"]),
            // memoryview's 1-D contiguity test ignores "len 0 is contiguous".
            ("memoryview(bytearray(10))[5:5:2]", &["return value"]),
            // A released memoryview raises ValueError (not BufferError), view->obj untouched.
            (
                "(lambda m: (m.release(), m)[1])(memoryview(b'x'))",
                &["exception", "obj"],
            ),
        ];
        for (expr, want) in table {
            let r = check(&py(expr), Policy::Permissive, None);
            assert_eq!(fields(&r), set(want), "{expr}:\n{r}");
        }
        // bytes: only the refused writable requests, only view->obj.
        let r = check(&py("b'abc'"), Policy::Permissive, None);
        for v in &r.violations {
            assert!(v.flags & ffi::PyBUF_WRITABLE != 0, "{v}");
            assert!(v.rule.starts_with("NULL"), "{v}");
        }
        // The empty strided memoryview: requests the rules say must be granted.
        let r = check(
            &py("memoryview(bytearray(10))[5:5:2]"),
            Policy::Permissive,
            None,
        );
        for v in &r.violations {
            let q = r.requests.iter().find(|q| q.name == v.request).unwrap();
            assert_eq!(q.expectation, Expectation::MustGrant, "{v}");
        }
        // Strict policy: FORMAT without ND granted by bytearray and array.array.
        let r = check(&py("bytearray(b'abc')"), Policy::Strict, None);
        assert!(
            r.violations_on("PyBUF_FORMAT")
                .any(|v| v.field == "return value"),
            "{r}"
        );
    });
}

/// (expression, violated fields, a predicate every violated request's flags satisfy)
type NumpyCase = (&'static str, &'static [&'static str], fn(c_int) -> bool);

#[test]
fn numpy_exporters_raise_value_error_and_keep_view_obj() {
    with_py(|| {
        if py("np").is_none() {
            eprintln!("numpy not installed: skipped");
            return;
        }
        let table: &[NumpyCase] = &[
            ("np.arange(5)", &[], |_| true),
            ("np.array(3.0)", &[], |_| true),
            ("np.zeros((0, 3))", &[], |_| true),
            // C-contiguous 2-D: only Fortran requests are refused.
            ("np.arange(6.0).reshape(2, 3)", &["exception", "obj"], |f| {
                f & 0x58 == 0x58
            }),
            // Fortran and non-contiguous: every strides-less or C request is refused.
            (
                "np.asfortranarray(np.arange(6.0).reshape(2, 3))",
                &["exception", "obj"],
                |f| f & 0x18 != 0x18 || f & 0x38 == 0x38,
            ),
            (
                "np.arange(12.0).reshape(3, 4)[:, ::2]",
                &["exception", "obj"],
                |f| f & 0x18 != 0x18 || f & 0x38 == 0x38 || f & 0x58 == 0x58 || f & 0x98 == 0x98,
            ),
            ("np.frombuffer(b'abcdefgh')", &["exception", "obj"], |f| {
                f & 1 == 1
            }),
            // memoryview in front of numpy refuses properly.
            (
                "memoryview(np.asfortranarray(np.arange(6.0).reshape(2, 3)))",
                &[],
                |_| true,
            ),
        ];
        for (expr, want, on) in table {
            let r = check(&py(expr), Policy::Permissive, None);
            assert_eq!(fields(&r), set(want), "{expr}:\n{r}");
            for v in &r.violations {
                assert!(on(v.flags), "{expr}: unexpected request: {v}");
                if v.field == "exception" {
                    assert!(v.found.starts_with("ValueError"), "{v}");
                }
            }
        }
        // numpy chooses ndim 0 without PyBUF_ND: allowed, but not the strict policy's 1.
        let r = check(&py("np.arange(5)"), Policy::Strict, None);
        assert!(r.violations_of("ndim").all(|v| v.found == "0"), "{r}");
        assert!(r.violations_of("ndim").count() > 0);
    });
}

#[test]
fn every_broken_exporter_is_caught_and_the_correct_ones_pass() {
    with_py(|| {
        let c = conf_module();
        let bad_exports = |o: &Object| Ok(PyRef::<conf::BadExporter>::borrow(o)?.live_exports());
        let observer: conformance::ExportsObserver<'_> = &bad_exports;
        for &(mode, _, _, bug) in conf::MODES {
            let obj = expect(embed::eval(
                &format!("c.BadExporter({mode:?})"),
                &[("c", &c)],
            ));
            let r = check(&obj, Policy::Permissive, Some(observer));
            let strict = check(&obj, Policy::Strict, Some(observer));
            let blind = check(&obj, Policy::Permissive, None);
            let want: &[&str] = match mode {
                "good_vector" | "good_matrix" => &[],
                "ignores_flags" => &["format", "readonly", "return value", "shape", "strides"],
                "keeps_obj_on_error" => &["obj"],
                "wrong_exception" => &["exception"],
                "leaks_reference" => &["refcount"],
                "keys_on_view_address" => &["exports"],
                "wrong_len" => &["len"],
                "true_ndim_without_nd" => &["ndim"],
                "any_before_f" => &["return value"],
                "clears_shape_on_release" => &["shape"],
                other => panic!("a mode without an expected verdict: {other}"),
            };
            assert_eq!(fields(&r), set(want), "{mode} ({bug:?}):\n{r}");
            assert_eq!(fields(&strict), set(want), "{mode} strict:\n{strict}");
            assert_eq!(bug.is_none(), r.is_conforming(), "{mode}");
            match mode {
                // The only bug invisible without the export-count observer.
                "keys_on_view_address" => {
                    assert!(blind.is_conforming(), "{blind}");
                    assert!(r.violations.iter().all(|v| v.phase != Phase::Direct), "{r}");
                }
                _ => assert_eq!(fields(&blind), set(want), "{mode} without observer"),
            }
            match mode {
                "any_before_f" => {
                    for v in &r.violations {
                        assert!(v.flags & 0x58 == 0x58 && v.flags & 0x98 == 0x98, "{v}");
                    }
                }
                "clears_shape_on_release" => {
                    assert!(r.violations.iter().all(|v| v.phase == Phase::Nested), "{r}");
                }
                "keeps_obj_on_error" => {
                    let v = r.violations_on("PyBUF_WRITABLE").next().unwrap();
                    assert!(v.found.contains("after a refusal"), "{v}");
                }
                _ => {}
            }
        }
    });
}

#[test]
fn messages_name_the_request_the_field_what_was_found_and_the_rule() {
    with_py(|| {
        let c = conf_module();
        let obj = expect(embed::eval("c.BadExporter('ignores_flags')", &[("c", &c)]));
        let r = check(&obj, Policy::Permissive, None);
        let v = r
            .violations_on("PyBUF_SIMPLE")
            .find(|v| v.field == "format")
            .unwrap();
        let text = v.to_string();
        assert!(text.starts_with("PyBUF_SIMPLE: format: found 0x"), "{text}");
        assert!(
            text.ends_with("rule: NULL unless PyBUF_FORMAT is requested (NULL means \"B\")"),
            "{text}"
        );
        let w = r
            .violations_on("PyBUF_WRITABLE")
            .find(|v| v.field == "return value")
            .unwrap();
        assert_eq!(w.found, "granted (rc 0)");
        assert!(w.rule.contains("PyBUF_WRITABLE on read-only data"), "{w}");
        // The report's text: the verdict, the truth, the first violations.
        let text = r.to_string();
        assert!(
            text.starts_with("BadExporter (BadExporter(\"ignores_flags\")): NOT CONFORMING"),
            "{text}"
        );
        assert!(
            text.contains("truth (from PyBUF_FULL_RO): ndim 1, shape [6]"),
            "{text}"
        );
    });
}

#[test]
fn requests_and_options() {
    with_py(|| {
        let obj = eval("d.Matrix(2, 3)");
        let r = expect(conformance::check(&obj));
        let probes = r
            .requests
            .iter()
            .filter(|q| q.phase == Phase::Probe)
            .count();
        assert_eq!(probes, 1, "FULL_RO granted at once");
        // 17 named + 512 + 5 invalid, released directly and through a copy; 12 nested.
        let count = |p| r.requests.iter().filter(|q| q.phase == p).count();
        assert_eq!(count(Phase::Direct), 17 + 512 + 5);
        assert_eq!(count(Phase::Copy), 17 + 512 + 5);
        assert_eq!(count(Phase::Nested), 12);
        // Matrix(2, 3) is C-contiguous (not Fortran) and writable.
        let refused: BTreeSet<&str> = r
            .requests
            .iter()
            .filter(|q| q.phase == Phase::Direct && q.expectation == Expectation::MustRefuse)
            .map(|q| q.name.as_str())
            .collect();
        assert!(
            refused.contains("PyBUF_F_CONTIGUOUS") && !refused.contains("PyBUF_ANY_CONTIGUOUS")
        );
        let simple = r
            .requests
            .iter()
            .find(|q| q.name == "PyBUF_SIMPLE")
            .unwrap();
        assert!(
            simple.granted && simple.detail.starts_with("granted: ndim 1, shape NULL"),
            "{simple:?}"
        );

        let quick = Options {
            sweep: false,
            release_through_copy: false,
            nested: false,
            ..Options::default()
        };
        let r = expect(conformance::check_with(&obj, &quick));
        assert_eq!(r.requests.len(), 1 + 17);
        assert!(r.is_conforming());

        let err = conformance::check(&eval("3.5")).unwrap_err();
        assert!(err.is_instance_of(pontoneer::ExceptionType::TypeError));
    });
}

/// The head of `pcf_report` (capi-tests/conformance.h); the rest is opaque here.
#[repr(C)]
struct ReportHead {
    checks: c_long,
    nrequests: c_long,
    requests: *mut c_void,
    nviolations: c_long,
    violations: *mut c_void,
}

/// Room for a whole `pcf_report` (about 1.7 KB), suitably aligned.
#[repr(C, align(16))]
struct ReportBuf([u8; 8192]);

#[repr(C)]
struct Capi {
    abi_version: c_int,
    _options_init: unsafe extern "C" fn(*mut c_void),
    check: unsafe extern "C" fn(*mut ffi::PyObject, *const c_void, *mut ReportBuf) -> c_int,
    report_free: unsafe extern "C" fn(*mut ReportBuf),
    report_format: unsafe extern "C" fn(*const ReportBuf, *mut c_char, usize, c_long) -> usize,
}

unsafe extern "C" {
    fn pcf_check(obj: *mut ffi::PyObject, options: *const c_void, out: *mut ReportBuf) -> c_int;
    fn pcf_report_free(r: *mut ReportBuf);
    fn pcf_report_format(
        r: *const ReportBuf,
        buf: *mut c_char,
        n: usize,
        max_lines: c_long,
    ) -> usize;
}

/// Runs a `pcf_check`-shaped function; returns (checks, requests, violations, text).
fn run_c(
    obj: &Object,
    check: unsafe extern "C" fn(*mut ffi::PyObject, *const c_void, *mut ReportBuf) -> c_int,
    free: unsafe extern "C" fn(*mut ReportBuf),
    format: unsafe extern "C" fn(*const ReportBuf, *mut c_char, usize, c_long) -> usize,
) -> Option<(c_long, c_long, c_long, String)> {
    let mut buf = Box::new(ReportBuf([0; 8192]));
    // SAFETY: GIL held; NULL options = the defaults; the buffer is larger than pcf_report.
    if unsafe { check(obj.as_ptr(), core::ptr::null(), &mut *buf) } != 0 {
        return None;
    }
    // SAFETY: the report starts with the fields of ReportHead.
    let head = unsafe { &*(&*buf as *const ReportBuf).cast::<ReportHead>() };
    let (checks, nreq, nviol) = (head.checks, head.nrequests, head.nviolations);
    let mut text = vec![0 as c_char; 1 << 16];
    // SAFETY: a filled report; `text` has the length given.
    unsafe { format(&*buf, text.as_mut_ptr(), text.len(), 5) };
    // SAFETY: pcf_report_format NUL-terminates.
    let text = unsafe { CStr::from_ptr(text.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: freed once.
    unsafe { free(&mut *buf) };
    Some((checks, nreq, nviol, text))
}

#[test]
fn the_c_entry_point_and_the_capsule_agree_with_the_rust_api() {
    with_py(|| {
        let c = conf_module();
        for expr in [
            "c.BadExporter('wrong_len')",
            "c.BadExporter('good_matrix')",
            "bytearray(7)",
        ] {
            let obj = expect(embed::eval(expr, &[("c", &c)]));
            let rust = expect(conformance::check(&obj));
            let (checks, nreq, nviol, text) =
                run_c(&obj, pcf_check, pcf_report_free, pcf_report_format).unwrap();
            assert_eq!(nreq as usize, rust.requests.len(), "{expr}");
            assert_eq!(nviol as usize, rust.violations.len(), "{expr}");
            assert_eq!(checks as u64, rust.checks, "{expr}");
            let verdict = if rust.is_conforming() {
                "conforming"
            } else {
                "NOT CONFORMING"
            };
            assert!(text.starts_with(verdict), "{expr}: {text}");
            if let Some(v) = rust.violations.first() {
                assert!(text.contains(&v.to_string()), "{expr}: {text}");
            }

            // The same through the capsule, as a C harness that imports the module would.
            // SAFETY: GIL held; the module is in sys.modules; the capsule holds a pcf_capi.
            let capi =
                unsafe { ffi::PyCapsule_Import(c"pontoneer_conformance._C_API".as_ptr(), 0) };
            assert!(!capi.is_null());
            // SAFETY: a static pcf_capi table.
            let capi = unsafe { &*capi.cast::<Capi>() };
            assert_eq!(capi.abi_version, 1);
            let (_, nreq2, nviol2, _) =
                run_c(&obj, capi.check, capi.report_free, capi.report_format).unwrap();
            assert_eq!((nreq2, nviol2), (nreq, nviol), "{expr}");
        }
        // Not an exporter: -1 and a TypeError, the report left empty.
        let obj = py("3.5");
        let mut buf = Box::new(ReportBuf([0xA5; 8192]));
        // SAFETY: GIL held; a buffer larger than pcf_report.
        let rc = unsafe { pcf_check(obj.as_ptr(), core::ptr::null(), &mut *buf) };
        assert_eq!(rc, -1);
        let err = PyErr::fetch();
        assert!(err.is_instance_of(pontoneer::ExceptionType::TypeError));
        // SAFETY: the head of the (emptied) report.
        let head = unsafe { &*(&*buf as *const ReportBuf).cast::<ReportHead>() };
        assert_eq!((head.nrequests, head.nviolations), (0, 0));
        assert!(head.requests.is_null());
    });
}
