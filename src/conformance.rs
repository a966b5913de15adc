//! [`check`] takes any object whose type implements `bf_getbuffer` — a pontoneer type, a
//! CPython built-in, numpy, another extension — and returns a [`Report`] of every request it
//! tried and every rule the exporter broke. No truth is supplied: the kit learns the
//! geometry from the exporter's answer to the richest request it grants (`PyBUF_FULL_RO`,
//! else `RECORDS_RO`, `STRIDED_RO`, ...), then sends every request — the 17 named ones,
//! every value `0..=0x1FF` and five invalid ones, each released directly and through a copy
//! of the view, plus twelve views held at once and released out of order — and checks each
//! answer against `reference/buffer-rules.md`:
//!
//! - what **must be refused** (`PyBUF_WRITABLE` on read-only data, a contiguity the data
//!   lacks, no `PyBUF_STRIDES` on non-C-contiguous data, no `PyBUF_INDIRECT` when
//!   suboffsets are needed), what **may be refused** (unknown bits, partial compound flags,
//!   `PyBUF_FORMAT` without `PyBUF_ND`), and that everything else is granted;
//! - every field of a granted view (`obj`, `buf`, `len == product(shape) * itemsize`,
//!   `itemsize`, `readonly`, `format` only with `PyBUF_FORMAT`, `ndim`, `shape` only with
//!   `PyBUF_ND`, `strides` only with `PyBUF_STRIDES`, `suboffsets`), and the contiguity
//!   `PyBuffer_IsContiguous` computes;
//! - the error path of a refusal (`-1`, `BufferError`, `view->obj == NULL`);
//! - the reference count (and, with [`Options::exports`], the export count) after every get
//!   and release, and that views held at once keep their shape, strides and format.
//!
//! [`Policy::Permissive`] (the default) accepts every behaviour the rules allow (ndim 0 or 1
//! without `PyBUF_ND`, `PyBUF_FORMAT` without `PyBUF_ND` granted or refused, unknown bits
//! ignored or refused, a `BufferError` subclass, a `view->obj` other than the exporter);
//! [`Policy::Strict`] is pontoneer's own (memoryview's) choice among them.
//!
//! ```
//! # pontoneer::doctest_interpreter(|| {
//! use pontoneer::{conformance, embed};
//!
//! // memoryview is CPython's reference exporter: nothing to report.
//! let view = embed::eval("memoryview(bytearray(12)).cast('i', (3,))", &[]).unwrap();
//! let report = conformance::check(&view).unwrap();
//! assert!(report.is_conforming(), "{report}");
//! assert!(report.requests.len() > 1000 && report.checks > 10_000);
//!
//! // bytes (PyBuffer_FillInfo) refuses PyBUF_WRITABLE but leaves view->obj as it found it.
//! let bytes = embed::eval("b'abc'", &[]).unwrap();
//! let report = conformance::check(&bytes).unwrap();
//! let v = report.violations.iter().find(|v| v.request == "PyBUF_WRITABLE").unwrap();
//! assert_eq!(v.field, "obj");
//! assert!(v.rule.starts_with("NULL"), "{v}");
//! # });
//! ```
//!
//! The same kit is a C function, `pcf_check` in `capi-tests/conformance.h`, which C test
//! harnesses can compile (`conformance.c` and `buffer_common.c` need only `Python.h`) or
//! link from this crate's static library; the `pontoneer_conformance` test module publishes
//! it as a capsule (`pontoneer_conformance._C_API`) and as the Python function
//! `check_buffer(obj)`; `scripts/check_buffer.py` checks any importable object from the
//! command line.
//!
//! # Safety (module level)
//! The kit is C (`capi-tests/conformance.c`) called with the thread attached (an [`Object`]
//! exists, so its thread is attached). The `#[repr(C)]` mirrors below follow
//! `conformance.h` field by field, and every call first asks the C side to confirm the
//! struct sizes (`pcf_abi_check`). The report's arrays are read once, copied into Rust
//! values, and freed by `pcf_report_free`.
//!
//! [`check`]: crate::conformance::check
//! [`Report`]: crate::conformance::Report
//! [`Options::exports`]: crate::conformance::Options::exports
//! [`Policy::Permissive`]: crate::conformance::Policy::Permissive
//! [`Policy::Strict`]: crate::conformance::Policy::Strict
//! [`Object`]: crate::Object

use core::ffi::{c_char, c_int, c_void};
use core::fmt;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;

use pyo3_ffi as ffi;

use crate::convert::IntoPy;
use crate::error::{PyErr, PyResult};
use crate::object::Object;
use crate::trampoline::Cx;

/// The `#[repr(C)]` mirror of `capi-tests/conformance.h`.
#[allow(non_camel_case_types)]
mod sys {
    use core::ffi::{c_char, c_int, c_long, c_void};

    use pyo3_ffi as ffi;

    pub const PCF_ABI_VERSION: c_int = 1;
    pub const PCF_STRICT: c_int = 1;
    const MAX_NDIM: usize = 64;

    pub type ExportsFn = unsafe extern "C" fn(*mut ffi::PyObject, *mut c_void) -> ffi::Py_ssize_t;

    #[repr(C)]
    pub struct pcf_options {
        pub policy: c_int,
        pub sweep: c_int,
        pub release_copy: c_int,
        pub nested: c_int,
        pub exports: Option<ExportsFn>,
        pub exports_ctx: *mut c_void,
    }

    #[repr(C)]
    pub struct pcf_truth {
        pub known: c_int,
        pub from_flags: c_int,
        pub buf: *const c_void,
        pub len: ffi::Py_ssize_t,
        pub itemsize: ffi::Py_ssize_t,
        pub readonly: c_int,
        pub format_known: c_int,
        pub format: [c_char; 128],
        pub ndim: c_int,
        pub shape: [ffi::Py_ssize_t; MAX_NDIM],
        pub strides: [ffi::Py_ssize_t; MAX_NDIM],
        pub has_suboffsets: c_int,
        pub suboffsets: [ffi::Py_ssize_t; MAX_NDIM],
        pub c_contiguous: c_int,
        pub f_contiguous: c_int,
        pub immortal: c_int,
    }

    #[repr(C)]
    pub struct pcf_request {
        pub flags: c_int,
        pub phase: c_int,
        pub expect: c_int,
        pub granted: c_int,
        pub violations: c_long,
        pub name: [c_char; 64],
        pub detail: [c_char; 256],
        pub why: [c_char; 192],
    }

    #[repr(C)]
    pub struct pcf_violation {
        pub flags: c_int,
        pub phase: c_int,
        pub request: [c_char; 64],
        pub field: [c_char; 24],
        pub found: [c_char; 256],
        pub rule: [c_char; 320],
        pub message: [c_char; 768],
    }

    #[repr(C)]
    pub struct pcf_report {
        pub checks: c_long,
        pub nrequests: c_long,
        pub requests: *mut pcf_request,
        pub nviolations: c_long,
        pub violations: *mut pcf_violation,
        pub truth: pcf_truth,
        pub policy: c_int,
        pub python_version: c_int,
        pub capacity_requests: c_long,
        pub capacity_violations: c_long,
    }

    unsafe extern "C" {
        pub fn pcf_options_init(o: *mut pcf_options);
        pub fn pcf_check(
            obj: *mut ffi::PyObject,
            options: *const pcf_options,
            out: *mut pcf_report,
        ) -> c_int;
        pub fn pcf_report_free(r: *mut pcf_report);
        pub fn pcf_get_capi() -> *const c_void;
        pub fn pcf_abi_check(
            version: c_int,
            options: usize,
            truth: usize,
            request: usize,
            violation: usize,
            report: usize,
        ) -> c_int;
    }
}

/// Which behaviours the kit accepts where the rules leave a choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// Everything the rules allow: unknown flag bits ignored or refused; `PyBUF_FORMAT`
    /// without `PyBUF_ND` refused or granted (with the item format or `"B"`); `ndim` 0 or 1
    /// when `PyBUF_ND` is not requested; any `BufferError` subclass; `view->obj` another
    /// object (a redirect chain's root, or a per-view object like the wrapper CPython 3.12+
    /// puts in front of a Python-level `__buffer__`); `buf` NULL for an empty buffer.
    #[default]
    Permissive,
    /// pontoneer's (memoryview's) choices: unknown bits and `FORMAT` without `ND` refused,
    /// `ndim` 1 without `ND`, exactly `BufferError`, `readonly` exactly 0 or 1, `view->obj`
    /// the exporter, `buf` never NULL.
    Strict,
}

impl Policy {
    /// `"permissive"` or `"strict"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Permissive => "permissive",
            Policy::Strict => "strict",
        }
    }
}

/// An export-count observer: the exporter's number of live exports.
pub type ExportsObserver<'a> = &'a dyn Fn(&Object) -> PyResult<isize>;

/// How [`check_with`] runs.
///
/// ```
/// # pontoneer::doctest_interpreter(|| {
/// use pontoneer::conformance::{self, Options, Policy};
/// let a = pontoneer::embed::eval("__import__('array').array('d', [1.0, 2.0])", &[]).unwrap();
/// // array.array grants PyBUF_FORMAT without PyBUF_ND: allowed, but not pontoneer's choice.
/// assert!(conformance::check(&a).unwrap().is_conforming());
/// let strict = Options { policy: Policy::Strict, ..Options::default() };
/// let report = conformance::check_with(&a, &strict).unwrap();
/// assert!(report.violations.iter().any(|v| v.request == "PyBUF_FORMAT"));
/// # });
/// ```
#[derive(Clone, Copy)]
pub struct Options<'a> {
    /// Where the rules leave a choice, which choices pass.
    pub policy: Policy,
    /// Also send every value `0..=0x1FF` and the invalid ones (`true`), not only the 17
    /// named requests.
    pub sweep: bool,
    /// Also release every request of the sweep through a copy of the view (consumers may).
    pub release_through_copy: bool,
    /// Hold twelve views at once and release them out of order.
    pub nested: bool,
    /// The exporter's export counter, when the caller can read it (for a pontoneer type `T`,
    /// `PyRef::<T>::borrow(obj)?.exports()`): checked +1 after each get and back after each
    /// release. Without it only reference counts are checked.
    pub exports: Option<ExportsObserver<'a>>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            policy: Policy::Permissive,
            sweep: true,
            release_through_copy: true,
            nested: true,
            exports: None,
        }
    }
}

impl fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("policy", &self.policy)
            .field("sweep", &self.sweep)
            .field("release_through_copy", &self.release_through_copy)
            .field("nested", &self.nested)
            .field("exports", &self.exports.map(|_| "observer"))
            .finish()
    }
}

/// When a request was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// While learning the truth (no verdict on these; the sweep repeats them).
    Probe,
    /// The sweep, released with `PyBuffer_Release`.
    Direct,
    /// The sweep, released through a `memcpy`'d copy of the view.
    Copy,
    /// Several views held at once.
    Nested,
    /// Not a request: a fact about the object as a whole (its reference count at the end).
    Object,
}

impl Phase {
    fn from_c(p: c_int) -> Phase {
        match p {
            0 => Phase::Probe,
            1 => Phase::Direct,
            2 => Phase::Copy,
            3 => Phase::Nested,
            _ => Phase::Object,
        }
    }
    /// `"probe"`, `"direct"`, `"copy"`, `"nested"` or `"object"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Probe => "probe",
            Phase::Direct => "direct",
            Phase::Copy => "copy",
            Phase::Nested => "nested",
            Phase::Object => "object",
        }
    }
}

/// What the rules say about a request, given what the exporter showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expectation {
    /// Nothing asked conflicts with the data: a refusal is a violation.
    MustGrant,
    /// The rules require a `BufferError`.
    MustRefuse,
    /// Either answer passes (if granted, the view is checked like any other).
    MayRefuse,
    /// CPython ≥ 3.13 refuses `PyBUF_READ`/`PyBUF_WRITE` itself, before the exporter.
    CPythonRefuses,
    /// Made while learning the truth.
    Probing,
}

impl Expectation {
    fn from_c(e: c_int) -> Expectation {
        match e {
            0 => Expectation::MustGrant,
            1 => Expectation::MustRefuse,
            2 => Expectation::MayRefuse,
            3 => Expectation::CPythonRefuses,
            _ => Expectation::Probing,
        }
    }
    /// `"must grant"`, `"must refuse"`, `"may refuse"`, `"cpython refuses"` or `"probing"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Expectation::MustGrant => "must grant",
            Expectation::MustRefuse => "must refuse",
            Expectation::MayRefuse => "may refuse",
            Expectation::CPythonRefuses => "cpython refuses",
            Expectation::Probing => "probing",
        }
    }
}

/// One `PyObject_GetBuffer` call the kit made.
#[derive(Clone, Debug)]
pub struct Request {
    /// The flags sent.
    pub flags: i32,
    /// `"PyBUF_FULL_RO"`, `"0x0119"`, `"PyBUF_WRITE (0x0200)"`.
    pub name: String,
    /// When it was made.
    pub phase: Phase,
    /// What the rules expected.
    pub expectation: Expectation,
    /// Why they expect it.
    pub why: String,
    /// Whether the exporter granted it.
    pub granted: bool,
    /// The view it got (`"granted: ndim 2, shape (2, 3), ..."`) or the exception
    /// (`"refused: BufferError: ..."`).
    pub detail: String,
    /// How many violations were recorded on it.
    pub violations: usize,
}

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The request it was seen on (`"PyBUF_SIMPLE"`, `"0x0119"`; `"(object)"` for facts
    /// about the object as a whole).
    pub request: String,
    /// The request's flags.
    pub flags: i32,
    /// When it was seen.
    pub phase: Phase,
    /// The `Py_buffer` field or aspect: `"return value"`, `"exception"`, `"obj"`, `"buf"`,
    /// `"len"`, `"itemsize"`, `"readonly"`, `"format"`, `"ndim"`, `"shape"`, `"strides"`,
    /// `"suboffsets"`, `"contiguity"`, `"refcount"`, `"exports"` or `"release"`.
    pub field: String,
    /// What was found.
    pub found: String,
    /// What the rule says.
    pub rule: String,
}

impl fmt::Display for Violation {
    /// `"<request>: <field>: found <found>, rule: <rule>"` (with `[released through a copy]`
    /// or `[nested]` after the request when it was seen there).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let where_ = match self.phase {
            Phase::Copy => " [released through a copy]",
            Phase::Nested => " [nested]",
            Phase::Probe => " [probe]",
            _ => "",
        };
        write!(
            f,
            "{}{}: {}: found {}, rule: {}",
            self.request, where_, self.field, self.found, self.rule
        )
    }
}

/// The geometry the kit learned from the exporter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truth {
    /// The request it was learned from.
    pub request: String,
    /// The data address.
    pub buf: usize,
    /// `product(shape) * itemsize` (the rule; what the exporter said is checked against it).
    pub len: isize,
    /// The item size.
    pub itemsize: isize,
    /// Whether the data is read-only.
    pub readonly: bool,
    /// The item format, once a `PyBUF_FORMAT` request was granted.
    pub format: Option<String>,
    /// The extents (`[]` for a 0-dimensional buffer).
    pub shape: Vec<isize>,
    /// The strides in bytes.
    pub strides: Vec<isize>,
    /// The suboffsets, when some are needed.
    pub suboffsets: Option<Vec<isize>>,
    /// C-contiguous as `PyBuffer_IsContiguous` decides.
    pub c_contiguous: bool,
    /// Fortran-contiguous as `PyBuffer_IsContiguous` decides.
    pub f_contiguous: bool,
    /// An immortal object (3.12+): reference counts were not checked.
    pub immortal: bool,
}

/// What [`check`] found: every request tried and every rule broken.
///
/// ```
/// # pontoneer::doctest_interpreter(|| {
/// use pontoneer::{conformance, embed};
/// // A released memoryview answers every request with ValueError and leaves view->obj as
/// // it found it.
/// let m = embed::eval("(lambda m: (m.release(), m)[1])(memoryview(b'x'))", &[]).unwrap();
/// let report = conformance::check(&m).unwrap();
/// assert_eq!(report.violated_fields(), ["exception", "obj"]);
/// assert!(report.truth.is_none()); // nothing was ever granted
/// let v = report.violations_of("exception").next().unwrap();
/// assert_eq!(v.to_string(), format!("{}: exception: found {}, rule: BufferError", v.request, v.found));
/// assert!(v.found.starts_with("ValueError: operation forbidden on released memoryview"));
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct Report {
    /// Every request made, in order.
    pub requests: Vec<Request>,
    /// The number of individual assertions evaluated.
    pub checks: u64,
    /// Every rule broken, in the order found.
    pub violations: Vec<Violation>,
    /// The geometry learned, or `None` when the exporter refused every probe.
    pub truth: Option<Truth>,
    /// The policy applied.
    pub policy: Policy,
    /// The running interpreter's `(major, minor)`.
    pub python_version: (u8, u8),
    text: String,
}

impl Report {
    /// No violation.
    pub fn is_conforming(&self) -> bool {
        self.violations.is_empty()
    }

    /// The distinct fields with violations, sorted.
    pub fn violated_fields(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.violations.iter().map(|v| v.field.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The violations of one field.
    pub fn violations_of<'r>(&'r self, field: &'r str) -> impl Iterator<Item = &'r Violation> {
        self.violations.iter().filter(move |v| v.field == field)
    }

    /// The violations seen on the request named `name` (any phase).
    pub fn violations_on<'r>(&'r self, name: &'r str) -> impl Iterator<Item = &'r Violation> {
        self.violations.iter().filter(move |v| v.request == name)
    }
}

impl fmt::Display for Report {
    /// The verdict, the truth and the first 40 violations (as `pcf_report_format` writes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Checks `obj` with the default [`Options`] (permissive, full sweep, copies, nested).
///
/// `Err` only when the check cannot run: `TypeError` when `obj`'s type has no
/// `bf_getbuffer`, `MemoryError`, or an exception that was already pending. A broken
/// exporter is an `Ok` report with violations.
///
/// ```
/// # pontoneer::doctest_interpreter(|| {
/// use pontoneer::{conformance, embed};
/// let a = embed::eval("__import__('array').array('h', range(6))", &[]).unwrap();
/// let report = conformance::check(&a).unwrap();
/// assert!(report.is_conforming(), "{report}");
/// let truth = report.truth.unwrap();
/// assert_eq!((truth.format.as_deref(), truth.itemsize, &truth.shape[..]), (Some("h"), 2, &[6][..]));
///
/// let not_a_buffer = embed::eval("3.5", &[]).unwrap();
/// assert!(conformance::check(&not_a_buffer).is_err());
/// # });
/// ```
pub fn check(obj: &Object) -> PyResult<Report> {
    check_with(obj, &Options::default())
}

/// Checks `obj` with `options`. See [`check`] and [`Options`].
///
/// Checking your own exporter in a test, with its export counter observed:
///
/// ```
/// use core::cell::Cell;
/// use pontoneer::conformance::{self, Options, Policy};
/// use pontoneer::prelude::*;
/// use pontoneer::embed;
///
/// struct Samples { data: Vec<Cell<f32>> }
/// impl PyClass for Samples { const NAME: &'static core::ffi::CStr = c"Samples"; }
/// fn init(m: &mut ModuleBuilder) -> PyResult<()> {
///     let t = m.add_type::<Samples>()?.def_init(|n: usize| Samples {
///         data: (0..n).map(|i| Cell::new(i as f32)).collect(),
///     });
///     BufferProtocolBuilder::new(t)
///         .def_getbuffer(|s: &Samples, _| Ok(BufferInfo::from_cells(&s.data).with_shape(&[2, 3])?));
///     Ok(())
/// }
///
/// pontoneer::doctest_interpreter(|| {
///     let m = embed::load_module(embed::leak_module_def(c"samples", init), "samples").unwrap();
///     let obj = embed::eval("m.Samples(6)", &[("m", &m)]).unwrap();
///     let exports = |o: &Object| Ok(PyRef::<Samples>::borrow(o)?.exports());
///     let options = Options { policy: Policy::Strict, exports: Some(&exports), ..Options::default() };
///     let report = conformance::check_with(&obj, &options).unwrap();
///     assert!(report.is_conforming(), "{report}");
///     assert_eq!(report.truth.unwrap().shape, [2, 3]);
/// });
/// ```
pub fn check_with(obj: &Object, options: &Options<'_>) -> PyResult<Report> {
    use core::mem::size_of;
    // The kit calls into the interpreter throughout: refuse on a thread without the GIL.
    crate::object::attached()?;
    // SAFETY: a pure function of its arguments.
    let abi_ok = unsafe {
        sys::pcf_abi_check(
            sys::PCF_ABI_VERSION,
            size_of::<sys::pcf_options>(),
            size_of::<sys::pcf_truth>(),
            size_of::<sys::pcf_request>(),
            size_of::<sys::pcf_violation>(),
            size_of::<sys::pcf_report>(),
        )
    };
    if abi_ok == 0 {
        return Err(PyErr::system_error(
            "pontoneer::conformance: the Rust mirror of conformance.h does not match the C kit",
        ));
    }
    let mut o = core::mem::MaybeUninit::<sys::pcf_options>::uninit();
    // SAFETY: pcf_options_init writes every field.
    let mut o = unsafe {
        sys::pcf_options_init(o.as_mut_ptr());
        o.assume_init()
    };
    o.policy = match options.policy {
        Policy::Permissive => 0,
        Policy::Strict => sys::PCF_STRICT,
    };
    o.sweep = c_int::from(options.sweep);
    o.release_copy = c_int::from(options.release_through_copy);
    o.nested = c_int::from(options.nested);
    // The observer is passed as a pointer to the fat `&dyn Fn` reference, which lives on
    // this stack frame for the whole call.
    let observer: Option<ExportsObserver<'_>> = options.exports;
    if let Some(obs) = &observer {
        o.exports = Some(exports_trampoline);
        o.exports_ctx = (obs as *const ExportsObserver<'_>).cast_mut().cast();
    }
    let mut r = core::mem::MaybeUninit::<sys::pcf_report>::zeroed();
    // SAFETY: attached thread (checked above); `obj` is live; `o` and `r` outlive the
    // call; the observer context stays valid (see above).
    let rc = unsafe { sys::pcf_check(obj.as_ptr(), &o, r.as_mut_ptr()) };
    if rc != 0 {
        return Err(PyErr::fetch());
    }
    // SAFETY: pcf_check filled the report on success.
    let mut r = unsafe { r.assume_init() };
    let report = convert(&r, obj);
    // SAFETY: the report came from pcf_check and is freed exactly once.
    unsafe { sys::pcf_report_free(&mut r) };
    Ok(report)
}

/// A capsule named `pontoneer_conformance._C_API` holding the kit's `pcf_capi` table
/// (`capi-tests/conformance.h`): publish it as the `_C_API` attribute of a module named
/// `pontoneer_conformance` and C code can reach the kit at run time with
/// `PyCapsule_Import(PCF_CAPSULE_NAME, 0)`, without linking it.
///
/// ```
/// # pontoneer::doctest_interpreter(|| {
/// let capsule = pontoneer::conformance::capi_capsule().unwrap();
/// assert_eq!(capsule.type_name(), "PyCapsule");
/// # });
/// ```
pub fn capi_capsule() -> PyResult<Object> {
    crate::object::attached()?;
    // SAFETY: returns the address of a static table.
    let table = unsafe { sys::pcf_get_capi() };
    // SAFETY: attached thread (checked above); a non-NULL
    // pointer to static data and a 'static NUL-terminated name; no destructor needed.
    unsafe {
        Object::from_result(ffi::PyCapsule_New(
            table.cast_mut(),
            c"pontoneer_conformance._C_API".as_ptr(),
            None,
        ))
    }
}

/// The C observer callback: `ctx` points at an [`ExportsObserver`].
///
/// # Safety
/// Called by the kit with the thread attached, `obj` the live object under test and `ctx`
/// the pointer `check_with` passed.
unsafe extern "C" fn exports_trampoline(
    obj: *mut ffi::PyObject,
    ctx: *mut c_void,
) -> ffi::Py_ssize_t {
    // SAFETY: `ctx` points at the `ExportsObserver` on check_with's frame (caller).
    let observer: ExportsObserver<'_> = unsafe { *ctx.cast::<ExportsObserver<'_>>() };
    let Some(ptr) = NonNull::new(obj) else {
        return -1;
    };
    // A borrowed reference seen as an `Object` without touching the reference count (the
    // kit is measuring it): never dropped.
    // SAFETY: `obj` is live for the call; ManuallyDrop keeps the count unchanged.
    let obj = ManuallyDrop::new(unsafe { Object::from_owned_ptr(ptr) });
    let result = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| observer(&obj)));
    let err = match result {
        Ok(Ok(n)) if n >= 0 => return n,
        Ok(Ok(n)) => PyErr::value_error(format!("the export count is negative ({n})")),
        Ok(Err(e)) => e,
        Err(_) => PyErr::runtime_error("the export-count observer panicked"),
    };
    err.restore(&Cx::detached());
    -1
}

/// The NUL-terminated text of a fixed-size C field.
fn text(field: &[c_char]) -> String {
    let bytes: Vec<u8> = field
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn label(flags: c_int) -> String {
    const NAMES: [(&str, c_int); 17] = [
        ("PyBUF_SIMPLE", 0),
        ("PyBUF_WRITABLE", 0x1),
        ("PyBUF_FORMAT", 0x4),
        ("PyBUF_ND", 0x8),
        ("PyBUF_STRIDES", 0x18),
        ("PyBUF_C_CONTIGUOUS", 0x38),
        ("PyBUF_F_CONTIGUOUS", 0x58),
        ("PyBUF_ANY_CONTIGUOUS", 0x98),
        ("PyBUF_INDIRECT", 0x118),
        ("PyBUF_CONTIG", 0x9),
        ("PyBUF_CONTIG_RO", 0x8),
        ("PyBUF_STRIDED", 0x19),
        ("PyBUF_STRIDED_RO", 0x18),
        ("PyBUF_RECORDS", 0x1d),
        ("PyBUF_RECORDS_RO", 0x1c),
        ("PyBUF_FULL", 0x11d),
        ("PyBUF_FULL_RO", 0x11c),
    ];
    // The C side names requests the same way; the truth stores only the flags.
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(_, v)| *v == flags)
        .map(|(n, _)| *n)
        .collect();
    if names.is_empty() {
        format!("0x{:04x}", flags as u32)
    } else {
        names.join(" = ")
    }
}

fn convert(r: &sys::pcf_report, obj: &Object) -> Report {
    let requests = if r.requests.is_null() || r.nrequests <= 0 {
        &[][..]
    } else {
        // SAFETY: pcf_check allocated `nrequests` initialised entries.
        unsafe { core::slice::from_raw_parts(r.requests, r.nrequests as usize) }
    };
    let violations = if r.violations.is_null() || r.nviolations <= 0 {
        &[][..]
    } else {
        // SAFETY: pcf_check allocated `nviolations` initialised entries.
        unsafe { core::slice::from_raw_parts(r.violations, r.nviolations as usize) }
    };
    let t = &r.truth;
    let truth = (t.known != 0).then(|| {
        let n = t.ndim.clamp(0, 64) as usize;
        Truth {
            request: label(t.from_flags),
            buf: t.buf as usize,
            len: t.len,
            itemsize: t.itemsize,
            readonly: t.readonly != 0,
            format: (t.format_known != 0).then(|| text(&t.format)),
            shape: t.shape[..n].to_vec(),
            strides: t.strides[..n].to_vec(),
            suboffsets: (t.has_suboffsets != 0).then(|| t.suboffsets[..n].to_vec()),
            c_contiguous: t.c_contiguous != 0,
            f_contiguous: t.f_contiguous != 0,
            immortal: t.immortal != 0,
        }
    });
    let policy = if r.policy == sys::PCF_STRICT {
        Policy::Strict
    } else {
        Policy::Permissive
    };
    let mut report = Report {
        requests: requests
            .iter()
            .map(|q| Request {
                flags: q.flags,
                name: text(&q.name),
                phase: Phase::from_c(q.phase),
                expectation: Expectation::from_c(q.expect),
                why: text(&q.why),
                granted: q.granted != 0,
                detail: text(&q.detail),
                violations: q.violations.max(0) as usize,
            })
            .collect(),
        checks: r.checks.max(0) as u64,
        violations: violations
            .iter()
            .map(|v| Violation {
                request: text(&v.request),
                flags: v.flags,
                phase: Phase::from_c(v.phase),
                field: text(&v.field),
                found: text(&v.found),
                rule: text(&v.rule),
            })
            .collect(),
        truth,
        policy,
        python_version: (
            (r.python_version / 100) as u8,
            (r.python_version % 100) as u8,
        ),
        text: String::new(),
    };
    report.text = summary(&report, obj, 40);
    report
}

/// The verdict line, the truth, and at most `max_lines` violations.
fn summary(r: &Report, obj: &Object, max_lines: usize) -> String {
    use core::fmt::Write;
    let granted = r.requests.iter().filter(|q| q.granted).count();
    let n = r.violations.len();
    let mut s = format!(
        "{} ({}): {}: {} violation{} in {} checks over {} requests ({} granted), {} policy\n",
        obj.type_name(),
        obj.repr()
            .map(|t| shorten(&t, 60))
            .unwrap_or_else(|_| "?".into()),
        if n == 0 {
            "conforming"
        } else {
            "NOT CONFORMING"
        },
        n,
        if n == 1 { "" } else { "s" },
        r.checks,
        r.requests.len(),
        granted,
        r.policy.as_str(),
    );
    // repr() may have raised and been handled; never leave an exception behind.
    let _ = PyErr::take();
    match &r.truth {
        Some(t) => {
            let _ = writeln!(
                s,
                "truth (from {}): ndim {}, shape {:?}, strides {:?}, format {:?}, itemsize {}, \
                 len {}, readonly {}, C-contiguous {}, F-contiguous {}{}",
                t.request,
                t.shape.len(),
                t.shape,
                t.strides,
                t.format.as_deref().unwrap_or("?"),
                t.itemsize,
                t.len,
                t.readonly,
                t.c_contiguous,
                t.f_contiguous,
                if t.immortal {
                    " (immortal: refcounts not checked)"
                } else {
                    ""
                }
            );
        }
        None => s.push_str("truth: unknown (every probe was refused)\n"),
    }
    for v in r.violations.iter().take(max_lines) {
        let _ = writeln!(s, "  {v}");
    }
    if n > max_lines {
        let _ = writeln!(s, "  ... and {} more", n - max_lines);
    }
    s
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

// ---------------------------------------------------------------------------------------
// Python objects: reports as dicts (for the `pontoneer_conformance` module and embedders)
// ---------------------------------------------------------------------------------------

/// A dict under construction.
struct Dict(Object);

impl Dict {
    fn new() -> PyResult<Dict> {
        // SAFETY: attached thread (conversions run inside trampolines, which are attached).
        unsafe { Object::from_result(ffi::PyDict_New()) }.map(Dict)
    }
    fn set(&self, cx: &Cx, key: &core::ffi::CStr, value: impl IntoPy) -> PyResult<&Self> {
        let raw = value.into_py(cx)?;
        // SAFETY: `into_py` returns a new, non-NULL reference on success; we own it.
        let value = unsafe { Object::from_owned_ptr(NonNull::new_unchecked(raw)) };
        // SAFETY: a dict, a NUL-terminated key and a live value; the dict takes its own
        // reference.
        if unsafe { ffi::PyDict_SetItemString(self.0.as_ptr(), key.as_ptr(), value.as_ptr()) } < 0 {
            return Err(PyErr::fetch());
        }
        Ok(self)
    }
    fn done(self) -> PyResult<*mut ffi::PyObject> {
        Ok(self.0.into_raw())
    }
}

/// `{'request', 'flags', 'phase', 'field', 'found', 'rule', 'message'}`.
impl IntoPy for Violation {
    fn into_py(self, cx: &Cx) -> PyResult<*mut ffi::PyObject> {
        let message = self.to_string();
        let d = Dict::new()?;
        d.set(cx, c"request", self.request)?
            .set(cx, c"flags", self.flags)?
            .set(cx, c"phase", self.phase.as_str())?
            .set(cx, c"field", self.field)?
            .set(cx, c"found", self.found)?
            .set(cx, c"rule", self.rule)?
            .set(cx, c"message", message)?;
        d.done()
    }
}

/// `{'request', 'flags', 'phase', 'expect', 'why', 'granted', 'detail', 'violations'}`.
impl IntoPy for Request {
    fn into_py(self, cx: &Cx) -> PyResult<*mut ffi::PyObject> {
        let d = Dict::new()?;
        d.set(cx, c"request", self.name)?
            .set(cx, c"flags", self.flags)?
            .set(cx, c"phase", self.phase.as_str())?
            .set(cx, c"expect", self.expectation.as_str())?
            .set(cx, c"why", self.why)?
            .set(cx, c"granted", self.granted)?
            .set(cx, c"detail", self.detail)?
            .set(cx, c"violations", self.violations)?;
        d.done()
    }
}

/// `{'request', 'buf', 'len', 'itemsize', 'readonly', 'format', 'ndim', 'shape', 'strides',
/// 'suboffsets', 'c_contiguous', 'f_contiguous', 'immortal'}` (`shape`, `strides` and
/// `suboffsets` as lists; `format` and `suboffsets` may be `None`).
impl IntoPy for Truth {
    fn into_py(self, cx: &Cx) -> PyResult<*mut ffi::PyObject> {
        let d = Dict::new()?;
        d.set(cx, c"request", self.request)?
            .set(cx, c"buf", self.buf)?
            .set(cx, c"len", self.len)?
            .set(cx, c"itemsize", self.itemsize)?
            .set(cx, c"readonly", self.readonly)?
            .set(cx, c"format", self.format)?
            .set(cx, c"ndim", self.shape.len())?
            .set(cx, c"shape", self.shape)?
            .set(cx, c"strides", self.strides)?
            .set(cx, c"suboffsets", self.suboffsets)?
            .set(cx, c"c_contiguous", self.c_contiguous)?
            .set(cx, c"f_contiguous", self.f_contiguous)?
            .set(cx, c"immortal", self.immortal)?;
        d.done()
    }
}

/// `{'conforming', 'policy', 'python_version', 'checks', 'truth', 'requests', 'violations',
/// 'text'}`.
impl IntoPy for Report {
    fn into_py(self, cx: &Cx) -> PyResult<*mut ffi::PyObject> {
        let d = Dict::new()?;
        let (major, minor) = self.python_version;
        d.set(cx, c"conforming", self.is_conforming())?
            .set(cx, c"policy", self.policy.as_str())?
            .set(cx, c"python_version", format!("{major}.{minor}"))?
            .set(cx, c"checks", self.checks)?
            .set(cx, c"text", self.text)?
            .set(cx, c"truth", self.truth)?
            .set(cx, c"requests", self.requests)?
            .set(cx, c"violations", self.violations)?;
        d.done()
    }
}
