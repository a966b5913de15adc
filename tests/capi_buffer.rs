//! Drives the independent C buffer harness (`capi-tests/buffer_harness.c`) over every
//! pontoneer exporter: the demo's `FloatBuffer` and `Matrix`, and the test exporters (empty,
//! Fortran order, negative stride, 3-D, one per element format).
//!
//! The expectations below are the *true* geometry each object was built with, written out
//! by hand (shape, strides in bytes, format, readonly, the data address from the object's
//! own Rust data); the harness derives from CPython's rules alone what every request must
//! produce. Nothing here asks the layer's own flag logic what is right.

mod common;

use core::ffi::{CStr, c_char, c_int, c_long, c_void};
use std::ffi::CString;

use common::{eval, expect, with_py};
use pontoneer::{Object, PyClass, ffi};

#[repr(C)]
struct PtcExpect {
    name: *const c_char,
    buf: *const c_void,
    itemsize: ffi::Py_ssize_t,
    format: *const c_char,
    readonly: c_int,
    ndim: c_int,
    shape: *const ffi::Py_ssize_t,
    strides: *const ffi::Py_ssize_t,
    strict_flags: c_int,
    exports: Option<unsafe extern "C" fn(*mut ffi::PyObject) -> ffi::Py_ssize_t>,
}

#[repr(C)]
struct PtcReport {
    checks: c_long,
    requests: c_long,
    failures: c_long,
    text: *mut c_char,
    cap: usize,
    used: usize,
}

unsafe extern "C" {
    fn ptc_report_init(r: *mut PtcReport, text: *mut c_char, cap: usize);
    fn ptc_check_all_requests(
        obj: *mut ffi::PyObject,
        e: *const PtcExpect,
        r: *mut PtcReport,
    ) -> c_long;
    fn ptc_check_nested(obj: *mut ffi::PyObject, e: *const PtcExpect, r: *mut PtcReport) -> c_long;
    fn ptc_check_null_view(
        obj: *mut ffi::PyObject,
        e: *const PtcExpect,
        r: *mut PtcReport,
    ) -> c_long;
    fn ptc_load_loop(
        obj: *mut ffi::PyObject,
        e: *const PtcExpect,
        flags: c_int,
        cycles: c_long,
        max_rss_growth_kib: c_long,
        ns_per_cycle: *mut f64,
        rss_growth_kib: *mut c_long,
        r: *mut PtcReport,
    ) -> c_long;
}

/// The export-count observer the harness calls, for class `T`.
unsafe extern "C" fn exports_of<T: PyClass>(obj: *mut ffi::PyObject) -> ffi::Py_ssize_t {
    // SAFETY: the harness only passes the object it was given, an instance of T.
    unsafe { pontoneer::exports::<T>(obj) }
}

/// The truth about one exporter.
struct Truth {
    name: String,
    obj: Object,
    buf: usize,
    itemsize: isize,
    format: &'static str,
    readonly: bool,
    shape: Vec<isize>,
    strides: Vec<isize>,
    exports: unsafe extern "C" fn(*mut ffi::PyObject) -> ffi::Py_ssize_t,
}

struct Report {
    checks: i64,
    requests: i64,
    failures: i64,
    text: String,
}

impl Truth {
    fn with_expect<R>(&self, f: impl FnOnce(&PtcExpect) -> R) -> R {
        let name = CString::new(self.name.clone()).unwrap();
        let format = CString::new(self.format).unwrap();
        let e = PtcExpect {
            name: name.as_ptr(),
            buf: self.buf as *const c_void,
            itemsize: self.itemsize,
            format: format.as_ptr(),
            readonly: c_int::from(self.readonly),
            ndim: self.shape.len() as c_int,
            shape: self.shape.as_ptr(),
            strides: self.strides.as_ptr(),
            strict_flags: 1,
            exports: Some(self.exports),
        };
        f(&e)
    }

    fn run(
        &self,
        check: unsafe extern "C" fn(*mut ffi::PyObject, *const PtcExpect, *mut PtcReport) -> c_long,
    ) -> Report {
        self.with_expect(|e| {
            let mut text = vec![0 as c_char; 1 << 16];
            let mut r = PtcReport {
                checks: 0,
                requests: 0,
                failures: 0,
                text: core::ptr::null_mut(),
                cap: 0,
                used: 0,
            };
            // SAFETY: GIL held (with_py); the expectation and text buffer outlive the call.
            unsafe {
                ptc_report_init(&mut r, text.as_mut_ptr(), text.len());
                check(self.obj.as_ptr(), e, &mut r);
            }
            // SAFETY: the harness keeps the text NUL-terminated.
            let text = unsafe { CStr::from_ptr(text.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            Report {
                checks: r.checks as i64,
                requests: r.requests as i64,
                failures: r.failures as i64,
                text,
            }
        })
    }
}

fn obj_int(o: &Object, method: &CStr) -> usize {
    expect(expect(o.getattr(method)).call0())
        .extract::<usize>()
        .unwrap()
}

fn c_strides(shape: &[isize], itemsize: isize) -> Vec<isize> {
    let mut s = vec![0; shape.len()];
    let mut step = itemsize;
    for i in (0..shape.len()).rev() {
        s[i] = step;
        step *= shape[i];
    }
    s
}

fn f_strides(shape: &[isize], itemsize: isize) -> Vec<isize> {
    let mut s = vec![0; shape.len()];
    let mut step = itemsize;
    for i in 0..shape.len() {
        s[i] = step;
        step *= shape[i];
    }
    s
}

/// Every exporter the issue lists, with its truth.
fn exporters() -> Vec<Truth> {
    use common::demo::{FloatBuffer, Matrix};
    use common::testmod::*;
    let mut v = Vec::new();
    for n in [0isize, 1, 5, 1000] {
        v.push(Truth {
            name: format!("FloatBuffer.from_count({n})"),
            obj: eval(&format!("d.FloatBuffer.from_count({n})")),
            buf: 0,
            itemsize: 8,
            format: "d",
            readonly: true,
            shape: vec![n],
            strides: vec![8],
            exports: exports_of::<FloatBuffer>,
        });
    }
    for (r, c) in [(3isize, 4isize), (1, 5), (5, 1), (0, 3), (1, 1)] {
        v.push(Truth {
            name: format!("Matrix({r}, {c})"),
            obj: eval(&format!("d.Matrix({r}, {c})")),
            buf: 0,
            itemsize: 8,
            format: "d",
            readonly: false,
            shape: vec![r, c],
            strides: vec![c * 8, 8],
            exports: exports_of::<Matrix>,
        });
    }
    v.push(Truth {
        name: "Empty()".into(),
        obj: eval("t.Empty()"),
        buf: 0,
        itemsize: 8,
        format: "d",
        readonly: true,
        shape: vec![0],
        strides: vec![8],
        exports: exports_of::<Empty>,
    });
    for (r, c) in [(3isize, 4isize), (1, 4), (4, 1), (0, 2)] {
        v.push(Truth {
            name: format!("FortranMatrix({r}, {c})"),
            obj: eval(&format!("t.FortranMatrix({r}, {c})")),
            buf: 0,
            itemsize: 8,
            format: "d",
            readonly: false,
            shape: vec![r, c],
            strides: f_strides(&[r, c], 8),
            exports: exports_of::<FortranMatrix>,
        });
    }
    for n in [6isize, 1, 0] {
        let obj = eval(&format!("t.Reversed({n})"));
        v.push(Truth {
            name: format!("Reversed({n})"),
            obj,
            buf: 0,
            itemsize: 8,
            format: "d",
            readonly: true,
            shape: vec![n],
            strides: vec![-8],
            exports: exports_of::<Reversed>,
        });
    }
    for shape in [[2isize, 3, 4], [1, 1, 5], [2, 0, 3]] {
        v.push(Truth {
            name: format!("Cube{shape:?}"),
            obj: eval(&format!("t.Cube({}, {}, {})", shape[0], shape[1], shape[2])),
            buf: 0,
            itemsize: 4,
            format: "i",
            readonly: false,
            shape: shape.to_vec(),
            strides: c_strides(&shape, 4),
            exports: exports_of::<Cube>,
        });
    }
    macro_rules! formats {
        ($($t:ty),*) => {$(
            let name = <$t as PyClass>::NAME.to_str().unwrap();
            let (_, fmt, size) = FORMATS.iter().find(|(n, _, _)| *n == name).unwrap();
            let obj = eval(&format!("t.{name}(5)"));
            v.push(Truth {
                name: format!("{name}(5)"),
                buf: obj_int(&obj, c"data_ptr"),
                obj,
                itemsize: *size as isize,
                format: fmt,
                readonly: false,
                shape: vec![5],
                strides: vec![*size as isize],
                exports: exports_of::<$t>,
            });
        )*};
    }
    formats!(
        ArrayI8, ArrayU8, ArrayI16, ArrayU16, ArrayI32, ArrayU32, ArrayLong, ArrayULong, ArrayI64,
        ArrayU64, ArrayIsize, ArrayUsize, ArrayF32, ArrayF64, ArrayBool
    );
    assert_eq!(FORMATS.len(), 15, "one exporter per format");
    v
}

fn assert_clean(what: &str, t: &Truth, r: &Report) {
    assert!(r.checks > 0, "{what} on {}: no checks ran", t.name);
    assert_eq!(
        r.failures, 0,
        "{what} on {}: {} failures\n{}",
        t.name, r.failures, r.text
    );
}

#[test]
fn every_request_on_every_exporter() {
    with_py(|| {
        let mut total = (0, 0);
        for t in exporters() {
            let r = t.run(ptc_check_all_requests);
            assert_clean("all requests", &t, &r);
            // 17 named + 512 combinations + 5 invalid values, each released two ways.
            assert_eq!(r.requests, 2 * (17 + 512 + 5), "{}", t.name);
            total.0 += r.checks;
            total.1 += r.requests;
        }
        eprintln!(
            "C harness: {} checks over {} requests, 0 failures",
            total.0, total.1
        );
    });
}

#[test]
fn nested_views_released_out_of_order() {
    with_py(|| {
        for t in exporters() {
            let r = t.run(ptc_check_nested);
            assert_clean("nested views", &t, &r);
        }
    });
}

#[test]
fn null_view_is_a_buffer_error() {
    with_py(|| {
        for t in exporters() {
            let r = t.run(ptc_check_null_view);
            assert_clean("NULL view", &t, &r);
        }
    });
}

#[test]
fn the_harness_catches_a_lying_expectation() {
    // Negative control: describe FloatBuffer wrongly (writable, Fortran strides on a
    // matrix) and the harness must report failures.
    with_py(|| {
        let mut t = exporters().into_iter().nth(2).unwrap(); // FloatBuffer.from_count(5)
        t.readonly = false;
        assert!(t.run(ptc_check_all_requests).failures > 0);
        let mut m = exporters().into_iter().nth(4).unwrap(); // Matrix(3, 4)
        m.strides = f_strides(&m.shape, 8);
        assert!(m.run(ptc_check_all_requests).failures > 0);
    });
}

fn load(t: &Truth, flags: c_int, cycles: c_long) -> (f64, c_long) {
    t.with_expect(|e| {
        let mut text = vec![0 as c_char; 4096];
        let mut r = PtcReport {
            checks: 0,
            requests: 0,
            failures: 0,
            text: core::ptr::null_mut(),
            cap: 0,
            used: 0,
        };
        let (mut ns, mut rss) = (0.0, 0);
        // SAFETY: GIL held; all pointers outlive the call.
        unsafe {
            ptc_report_init(&mut r, text.as_mut_ptr(), text.len());
            ptc_load_loop(
                t.obj.as_ptr(),
                e,
                flags,
                cycles,
                1024,
                &mut ns,
                &mut rss,
                &mut r,
            );
        }
        // SAFETY: NUL-terminated by the harness.
        let msg = unsafe { CStr::from_ptr(text.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        assert_eq!(r.failures, 0, "load loop on {}: {msg}", t.name);
        (ns, rss)
    })
}

#[test]
fn five_million_cycles_without_growth() {
    with_py(|| {
        let ex = exporters();
        let fb = &ex[2]; // FloatBuffer.from_count(5): 1-D, no per-view allocation
        let (ns, rss) = load(fb, ffi::PyBUF_FULL_RO, 5_000_000);
        eprintln!(
            "FloatBuffer FULL_RO: {ns:.1} ns/cycle, RSS growth {rss} KiB over 5,000,000 cycles"
        );
        let m = &ex[4]; // Matrix(3, 4): N-D, per-view storage in view->internal
        let (ns, rss) = load(m, ffi::PyBUF_RECORDS, 1_000_000);
        eprintln!("Matrix RECORDS: {ns:.1} ns/cycle, RSS growth {rss} KiB over 1,000,000 cycles");
    });
}
