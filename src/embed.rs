//! Hosting Python from Rust: start the interpreter, take the GIL, load a module built with
//! [`ModuleBuilder`](crate::ModuleBuilder) without an extension file, run code.
//!
//! ```
//! use pontoneer::embed;
//! embed::initialize();
//! embed::with_gil(|| {
//!     let v = embed::eval("6 * 7", &[]).unwrap();
//!     assert_eq!(v.extract::<i64>().unwrap(), 42);
//! });
//! ```
//!
//! # Safety (module level)
//! `initialize` starts the interpreter once per process and releases the GIL; every other
//! function runs inside `with_gil`, which holds the GIL through `PyGILState_Ensure`.

use std::ffi::CString;
use std::sync::Once;

use pyo3_ffi as ffi;

use crate::error::{PyErr, PyResult};
use crate::module::ModuleDef;
use crate::object::Object;

static INIT: Once = Once::new();

/// Starts the interpreter if this process has not started it yet (and leaves the GIL
/// released, so that any thread may then use [`with_gil`]). Does nothing when Python is
/// already running (e.g. when this code was loaded by Python).
pub fn initialize() {
    INIT.call_once(|| {
        // SAFETY: Py_IsInitialized may be called at any time.
        if unsafe { ffi::Py_IsInitialized() } == 0 {
            // SAFETY: first initialisation in this process; no signal handlers installed.
            unsafe { ffi::Py_InitializeEx(0) };
            // SAFETY: this thread holds the GIL after initialisation; release it. The main
            // thread state is kept for the life of the process.
            unsafe { ffi::PyEval_SaveThread() };
        }
    });
}

/// Runs `f` holding the GIL (re-entrant; the interpreter must be initialised).
pub fn with_gil<R>(f: impl FnOnce() -> R) -> R {
    struct Release(ffi::PyGILState_STATE);
    impl Drop for Release {
        fn drop(&mut self) {
            // SAFETY: pairs with the PyGILState_Ensure below, on the same thread.
            unsafe { ffi::PyGILState_Release(self.0) }
        }
    }
    // SAFETY: the interpreter is initialised (caller), any thread may call Ensure.
    let _gil = Release(unsafe { ffi::PyGILState_Ensure() });
    f()
}

/// A `'static` [`ModuleDef`] for a module body, created at run time (leaked: a module def
/// must outlive every module created from it). For embedders who register modules without
/// an extension file, and for tests.
pub fn leak_module_def<F>(name: &'static core::ffi::CStr, body: F) -> &'static ModuleDef
where
    F: Fn(&mut crate::ModuleBuilder) -> PyResult<()> + Copy + 'static,
{
    let slots: &'static crate::ModuleSlots = Box::leak(Box::new(crate::ModuleSlots::new(body)));
    Box::leak(Box::new(ModuleDef::new(name, slots)))
}

/// Creates and executes a module from a pontoneer [`ModuleDef`] (as `import` would), and
/// registers it in `sys.modules` under `name`. Call with the GIL held.
pub fn load_module(def: &'static ModuleDef, name: &str) -> PyResult<Object> {
    let machinery = import("importlib.machinery")?;
    let spec_cls = machinery.getattr(c"ModuleSpec")?;
    let name_obj = Object::from_value(name)?;
    // SAFETY: GIL held; ModuleSpec(name, None).
    let spec = unsafe {
        Object::from_result(ffi::PyObject_CallFunctionObjArgs(
            spec_cls.as_ptr(),
            name_obj.as_ptr(),
            ffi::Py_None(),
            core::ptr::null_mut::<ffi::PyObject>(),
        ))
    }?;
    // SAFETY: GIL held; a static def and a spec object.
    let module = unsafe {
        Object::from_result(ffi::PyModule_FromDefAndSpec2(
            def.as_ptr(),
            spec.as_ptr(),
            ffi::PYTHON_API_VERSION,
        ))
    }?;
    // SAFETY: GIL held; the module was created from `def`.
    if unsafe { ffi::PyModule_ExecDef(module.as_ptr(), def.as_ptr()) } < 0 {
        return Err(PyErr::fetch());
    }
    // SAFETY: GIL held; sys.modules is a dict (borrowed).
    let modules = unsafe { ffi::PyImport_GetModuleDict() };
    let cname = CString::new(name).map_err(|_| PyErr::value_error("NUL in module name"))?;
    // SAFETY: GIL held; valid dict, key and value.
    if unsafe { ffi::PyDict_SetItemString(modules, cname.as_ptr(), module.as_ptr()) } < 0 {
        return Err(PyErr::fetch());
    }
    Ok(module)
}

/// `import name`. Call with the GIL held.
pub fn import(name: &str) -> PyResult<Object> {
    let cname = CString::new(name).map_err(|_| PyErr::value_error("NUL in module name"))?;
    // SAFETY: GIL held.
    unsafe { Object::from_result(ffi::PyImport_ImportModule(cname.as_ptr())) }
}

/// Runs statements in a fresh namespace holding `names`, and returns the namespace (a dict).
/// Call with the GIL held.
pub fn run(code: &str, names: &[(&str, &Object)]) -> PyResult<Object> {
    let ns = namespace(names)?;
    exec_in(code, ffi::Py_file_input, &ns)?;
    Ok(ns)
}

/// Evaluates one expression in a fresh namespace holding `names`. Call with the GIL held.
pub fn eval(expr: &str, names: &[(&str, &Object)]) -> PyResult<Object> {
    let ns = namespace(names)?;
    exec_in(expr, ffi::Py_eval_input, &ns)
}

fn namespace(names: &[(&str, &Object)]) -> PyResult<Object> {
    // SAFETY: GIL held.
    let ns = unsafe { Object::from_result(ffi::PyDict_New()) }?;
    // SAFETY: GIL held; the builtins module is borrowed from the interpreter.
    let builtins = unsafe { ffi::PyEval_GetBuiltins() };
    // SAFETY: valid dict, key and value.
    if unsafe { ffi::PyDict_SetItemString(ns.as_ptr(), c"__builtins__".as_ptr(), builtins) } < 0 {
        return Err(PyErr::fetch());
    }
    for (k, v) in names {
        let key = CString::new(*k).map_err(|_| PyErr::value_error("NUL in a name"))?;
        // SAFETY: valid dict, key and value.
        if unsafe { ffi::PyDict_SetItemString(ns.as_ptr(), key.as_ptr(), v.as_ptr()) } < 0 {
            return Err(PyErr::fetch());
        }
    }
    Ok(ns)
}

fn exec_in(code: &str, start: core::ffi::c_int, ns: &Object) -> PyResult<Object> {
    let ccode = CString::new(code).map_err(|_| PyErr::value_error("NUL in code"))?;
    // SAFETY: GIL held; NUL-terminated source and file name.
    let compiled = unsafe {
        Object::from_result(ffi::Py_CompileString(
            ccode.as_ptr(),
            c"<pontoneer>".as_ptr(),
            start,
        ))
    }?;
    // SAFETY: GIL held; a code object and a dict used as globals and locals.
    unsafe {
        Object::from_result(ffi::PyEval_EvalCode(
            compiled.as_ptr(),
            ns.as_ptr(),
            ns.as_ptr(),
        ))
    }
}

/// Prints the current Python exception (with traceback) to stderr and returns its text
/// as best it can, for test failures. Call with the GIL held.
pub fn describe(err: PyErr) -> String {
    let text = format!("{err:?}");
    err.restore(&crate::trampoline::Cx::detached());
    // SAFETY: GIL held; an exception is set.
    unsafe { ffi::PyErr_Print() };
    text
}
