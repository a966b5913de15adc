//! The body of `pontoneer_conformance` (shared with the Rust integration tests, which include
//! this file with `#[path]` and load it into an embedded interpreter).
//!
//! - `check_buffer(obj)` / `check_buffer_strict(obj)`: the violations the conformance kit
//!   finds, as a list of dicts (`[]` = conforming); `report(obj, strict, exports)`: the whole
//!   report (every request, the truth, the checks) as a dict; `_C_API`: the kit's C table as a
//!   capsule (`pontoneer_conformance._C_API`, see `capi-tests/conformance.h`).
//! - `BadExporter(mode)`: a hand-written `bf_getbuffer`/`bf_releasebuffer` pair installed with
//!   `TypeBuilder::raw_slot`, correct in modes `good_vector`/`good_matrix` and broken in one
//!   deliberate way in every other mode ([`MODES`]): the kit must pass the first two and
//!   catch each of the others.
//!
//! # Safety (module level)
//! The two slot functions are `extern "C"`, follow the `getbufferproc`/`releasebufferproc`
//! conventions (except for the bug each mode injects on purpose, none of which lets a
//! consumer touch memory it was not given), never unwind (`catch_unwind`), and only see
//! instances of `BadExporter` (CPython calls a type's buffer slots with its own instances).

use core::cell::{Cell, RefCell};
use core::ffi::{CStr, c_int, c_void};
use core::mem::ManuallyDrop;
use core::panic::AssertUnwindSafe;
use core::ptr::NonNull;

use pontoneer::conformance::{self, Options, Policy};
use pontoneer::ffi;
use pontoneer::prelude::*;

/// Every mode of `BadExporter`: (name, shape, read-only, the injected bug or `None`).
pub const MODES: &[(&str, &[usize], bool, Option<&str>)] = &[
    ("good_vector", &[6], true, None),
    ("good_matrix", &[2, 3], false, None),
    (
        "ignores_flags",
        &[6],
        true,
        Some("fills format, shape and strides whatever was asked, and never refuses"),
    ),
    (
        "keeps_obj_on_error",
        &[6],
        true,
        Some("sets view->obj before checking the request, and leaves it set on refusal"),
    ),
    (
        "wrong_exception",
        &[6],
        true,
        Some("refuses PyBUF_WRITABLE with ValueError instead of BufferError"),
    ),
    (
        "leaks_reference",
        &[6],
        true,
        Some("takes two references to the exporter per view (one is never released)"),
    ),
    (
        "keys_on_view_address",
        &[6],
        true,
        Some("finds a view's export by its address: a release through a copy leaks an export"),
    ),
    (
        "wrong_len",
        &[2, 3],
        false,
        Some("reports len = number of items, not bytes"),
    ),
    (
        "true_ndim_without_nd",
        &[2, 3],
        false,
        Some("reports ndim 2 with shape NULL when PyBUF_ND is not requested"),
    ),
    (
        "any_before_f",
        &[2, 3],
        false,
        Some("checks ANY_CONTIGUOUS first and skips the F_CONTIGUOUS check when it passes"),
    ),
    (
        "clears_shape_on_release",
        &[2, 3],
        false,
        Some("keeps one shape array per object and zeroes it on every release"),
    ),
];

/// A buffer exporter written directly against the C slots, correct or broken on purpose.
pub struct BadExporter {
    mode: &'static str,
    readonly: bool,
    data: Vec<Cell<f64>>,
    ndim: usize,
    shape: [Cell<isize>; 2],
    strides: [Cell<isize>; 2],
    exports: Cell<isize>,
    views: RefCell<Vec<usize>>,
}

impl PyClass for BadExporter {
    const NAME: &'static CStr = c"BadExporter";
}

impl BadExporter {
    /// `BadExporter(mode)`: one of [`MODES`].
    pub fn new(mode: String) -> PyResult<BadExporter> {
        let Some(&(name, shape, readonly, _)) = MODES.iter().find(|m| m.0 == mode) else {
            let names: Vec<&str> = MODES.iter().map(|m| m.0).collect();
            return Err(PyErr::value_error(format!(
                "unknown mode {mode:?}; modes: {}",
                names.join(", ")
            )));
        };
        let n: usize = shape.iter().product();
        let mut data = Vec::new();
        data.try_reserve_exact(n)?;
        data.extend((0..n).map(|i| Cell::new(i as f64)));
        let ndim = shape.len();
        let mut s = [0isize; 2];
        let mut st = [0isize; 2];
        let mut step = 8isize;
        for i in (0..ndim).rev() {
            s[i] = shape[i] as isize;
            st[i] = step;
            step *= shape[i] as isize;
        }
        Ok(BadExporter {
            mode: name,
            readonly,
            data,
            ndim,
            shape: s.map(Cell::new),
            strides: st.map(Cell::new),
            exports: Cell::new(0),
            views: RefCell::new(Vec::new()),
        })
    }
    fn mode(&self) -> String {
        self.mode.to_owned()
    }
    fn bug(&self) -> Option<String> {
        MODES
            .iter()
            .find(|m| m.0 == self.mode)
            .and_then(|m| m.3)
            .map(str::to_owned)
    }
    /// The number of live views, as the exporter counts them (`exports()` in Python; not
    /// `PyRef::exports`, pontoneer's own counter, which raw slots never touch).
    pub fn live_exports(&self) -> isize {
        self.exports.get()
    }
    fn is(&self, mode: &str) -> bool {
        self.mode == mode
    }
    fn repr(&self) -> String {
        format!("BadExporter({:?})", self.mode)
    }
}

/// Sets `exc` with `msg` and returns -1 (the `getbufferproc` error return).
///
/// # Safety
/// The thread is attached; `exc` is an exception type.
unsafe fn fail(exc: *mut ffi::PyObject, msg: &CStr) -> c_int {
    // SAFETY: caller's contract; a NUL-terminated message.
    unsafe { ffi::PyErr_SetString(exc, msg.as_ptr()) };
    -1
}

/// `(flags & x) == x` (every mode tests flags this way; the bugs are elsewhere).
fn req(flags: c_int, x: c_int) -> bool {
    flags & x == x
}

/// The `bf_getbuffer` of `BadExporter`.
///
/// # Safety
/// CPython's `getbufferproc` contract: `obj` a live `BadExporter`, `view` NULL or writable.
unsafe extern "C" fn getbuffer(
    obj: *mut ffi::PyObject,
    view: *mut ffi::Py_buffer,
    flags: c_int,
) -> c_int {
    // SAFETY: forwarded contract; `getbuffer_impl` does not unwind past here.
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| unsafe {
        getbuffer_impl(obj, view, flags)
    }));
    match r {
        Ok(rc) => rc,
        // SAFETY: attached thread.
        Err(_) => unsafe { fail(ffi::PyExc_SystemError, c"BadExporter: panic in getbuffer") },
    }
}

/// # Safety
/// As for [`getbuffer`].
unsafe fn getbuffer_impl(
    obj: *mut ffi::PyObject,
    view: *mut ffi::Py_buffer,
    flags: c_int,
) -> c_int {
    let (Some(ptr), false) = (NonNull::new(obj), view.is_null()) else {
        // SAFETY: attached thread.
        return unsafe { fail(ffi::PyExc_BufferError, c"BadExporter: NULL view") };
    };
    // SAFETY: a borrowed reference, seen as an Object that is never dropped.
    let me = ManuallyDrop::new(unsafe { Object::from_owned_ptr(ptr) });
    let this = match PyRef::<BadExporter>::borrow(&me) {
        Ok(r) => r,
        // SAFETY: attached thread.
        Err(_) => return unsafe { fail(ffi::PyExc_BufferError, c"BadExporter: busy") },
    };
    // SAFETY: `view` is non-NULL and writable (getbufferproc contract).
    let v = unsafe { &mut *view };

    // Step 1: check the request (refusals set view->obj = NULL ... unless the bug says not).
    v.obj = if this.is("keeps_obj_on_error") {
        obj
    } else {
        core::ptr::null_mut()
    };
    if this.is("clears_shape_on_release") {
        // the shared shape array is zeroed by every release: set it again for this view
        this.shape[0].set(2);
        this.shape[1].set(3);
    }
    let c_contig = true; // the data is always stored in C order
    let f_contig = this.ndim <= 1
        || this.data.len() <= 1
        || this.shape[0].get() <= 1
        || this.shape[1].get() <= 1;
    if !this.is("ignores_flags") {
        if req(flags, ffi::PyBUF_WRITABLE) && this.readonly {
            let exc = if this.is("wrong_exception") {
                // SAFETY: reading a CPython exception-type global.
                unsafe { ffi::PyExc_ValueError }
            } else {
                // SAFETY: as above.
                unsafe { ffi::PyExc_BufferError }
            };
            // SAFETY: attached thread.
            return unsafe { fail(exc, c"BadExporter: read-only data") };
        }
        let any = req(flags, ffi::PyBUF_ANY_CONTIGUOUS);
        let refuse_contig = if this.is("any_before_f") && any {
            !(c_contig || f_contig) // ...and the F_CONTIGUOUS bit is never looked at
        } else {
            (req(flags, ffi::PyBUF_C_CONTIGUOUS) && !c_contig)
                || (req(flags, ffi::PyBUF_F_CONTIGUOUS) && !f_contig)
                || (any && !c_contig && !f_contig)
        };
        if refuse_contig {
            // SAFETY: attached thread.
            return unsafe {
                fail(
                    ffi::PyExc_BufferError,
                    c"BadExporter: not contiguous as requested",
                )
            };
        }
        if !req(flags, ffi::PyBUF_ND) && req(flags, ffi::PyBUF_FORMAT) {
            // SAFETY: attached thread.
            return unsafe {
                fail(
                    ffi::PyExc_BufferError,
                    c"BadExporter: PyBUF_FORMAT needs PyBUF_ND",
                )
            };
        }
        if (flags & !0x1FD) != 0 {
            // SAFETY: attached thread.
            return unsafe { fail(ffi::PyExc_BufferError, c"BadExporter: unknown flag bits") };
        }
    }

    // Step 2: fill the fields.
    let all = this.is("ignores_flags");
    let nd = all || req(flags, ffi::PyBUF_ND);
    let items = this.data.len() as isize;
    v.buf = this.data.as_ptr().cast_mut().cast::<c_void>();
    v.len = if this.is("wrong_len") {
        items
    } else {
        items * 8
    };
    v.itemsize = 8;
    v.readonly = c_int::from(this.readonly);
    v.format = if all || req(flags, ffi::PyBUF_FORMAT) {
        c"d".as_ptr().cast_mut()
    } else {
        core::ptr::null_mut()
    };
    v.ndim = if nd || this.is("true_ndim_without_nd") {
        this.ndim as c_int
    } else {
        1
    };
    v.shape = if nd {
        this.shape.as_ptr().cast::<isize>().cast_mut()
    } else {
        core::ptr::null_mut()
    };
    v.strides = if all || req(flags, ffi::PyBUF_STRIDES) {
        this.strides.as_ptr().cast::<isize>().cast_mut()
    } else {
        core::ptr::null_mut()
    };
    v.suboffsets = core::ptr::null_mut();
    v.internal = core::ptr::null_mut();

    // Steps 3-5: count the export, take a reference, succeed.
    this.exports.set(this.exports.get() + 1);
    if this.is("keys_on_view_address") {
        this.views.borrow_mut().push(view as usize);
    }
    v.obj = obj;
    // SAFETY: `obj` is live; view->obj owns this reference (PyBuffer_Release gives it back).
    unsafe { ffi::Py_IncRef(obj) };
    if this.is("leaks_reference") {
        // SAFETY: as above; this second reference is the bug (never given back).
        unsafe { ffi::Py_IncRef(obj) };
    }
    0
}

/// The `bf_releasebuffer` of `BadExporter`.
///
/// # Safety
/// CPython's `releasebufferproc` contract: `obj` a live `BadExporter`, `view` one of its views
/// (or a copy of one).
unsafe extern "C" fn releasebuffer(obj: *mut ffi::PyObject, view: *mut ffi::Py_buffer) {
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let Some(ptr) = NonNull::new(obj) else { return };
        // SAFETY: a borrowed reference, seen as an Object that is never dropped.
        let me = ManuallyDrop::new(unsafe { Object::from_owned_ptr(ptr) });
        let Ok(this) = PyRef::<BadExporter>::borrow(&me) else {
            // SAFETY: attached thread; a release cannot fail, so the error is cleared.
            unsafe { ffi::PyErr_Clear() };
            return;
        };
        if this.is("keys_on_view_address") {
            let mut views = this.views.borrow_mut();
            match views.iter().position(|&p| p == view as usize) {
                Some(i) => {
                    views.swap_remove(i);
                }
                None => return, // the bug: a copy of the view is not recognised
            }
        }
        this.exports.set(this.exports.get() - 1);
        if this.is("clears_shape_on_release") {
            this.shape[0].set(0);
            this.shape[1].set(0);
        }
    }));
    if r.is_err() {
        // SAFETY: attached thread; nothing can be reported from a release: drop it.
        unsafe { ffi::PyErr_Clear() };
    }
}

/// The violations, as a list of dicts.
fn violations(obj: &Object, policy: Policy) -> PyResult<Vec<conformance::Violation>> {
    let options = Options {
        policy,
        ..Options::default()
    };
    Ok(conformance::check_with(obj, &options)?.violations)
}

/// `check_buffer(obj)`: every rule `obj`'s buffer export breaks, permissive policy.
fn check_buffer(obj: Object) -> PyResult<Vec<conformance::Violation>> {
    violations(&obj, Policy::Permissive)
}

/// `check_buffer_strict(obj)`: the same under pontoneer's strict policy.
fn check_buffer_strict(obj: Object) -> PyResult<Vec<conformance::Violation>> {
    violations(&obj, Policy::Strict)
}

/// `report(obj, strict, exports)`: the whole report as a dict; `exports` is `None` or a
/// callable returning the exporter's live export count.
fn report(obj: Object, strict: bool, exports: Option<Object>) -> PyResult<conformance::Report> {
    let observe = |o: &Object| -> PyResult<isize> {
        match &exports {
            Some(f) => f.call1(o)?.extract::<isize>(),
            None => Ok(0),
        }
    };
    let options = Options {
        policy: if strict {
            Policy::Strict
        } else {
            Policy::Permissive
        },
        exports: exports
            .as_ref()
            .map(|_| &observe as conformance::ExportsObserver<'_>),
        ..Options::default()
    };
    conformance::check_with(&obj, &options)
}

/// The module body of `pontoneer_conformance`.
pub fn init(m: &mut ModuleBuilder) -> PyResult<()> {
    m.doc(
        c"The exporter conformance kit (pontoneer::conformance) from Python, and exporters \
            broken on purpose that it must catch.",
    )?;
    m.def_function(c"check_buffer", check_buffer);
    m.def_function(c"check_buffer_strict", check_buffer_strict);
    m.def_function(c"report", report);
    m.add_constant(c"_C_API", conformance::capi_capsule()?)?;
    let modes: Vec<(&str, Option<&str>)> = MODES.iter().map(|m| (m.0, m.3)).collect();
    m.add_constant(c"MODES", modes)?;

    let t = m
        .add_type::<BadExporter>()?
        .def_init(BadExporter::new)
        .def_method(c"exports", BadExporter::live_exports)
        .def_getter(c"mode", BadExporter::mode)
        .def_getter(c"bug", BadExporter::bug)
        .def_repr(BadExporter::repr);
    // SAFETY: `getbuffer` is a getbufferproc and `releasebuffer` a releasebufferproc; they
    // follow the slot conventions (see the module's Safety section), never unwind, and only
    // read instances through PyRef (pontoneer's layout).
    unsafe {
        t.raw_slot(ffi::Py_bf_getbuffer, getbuffer as *mut c_void)
            .raw_slot(ffi::Py_bf_releasebuffer, releasebuffer as *mut c_void);
    }
    Ok(())
}
