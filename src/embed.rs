//! Hosting Python from Rust: register modules built with [`ModuleBuilder`]
//! before the interpreter starts, start and finalize it (or attach to one that is already
//! running), run code, and hand Rust values to Python and back — no `unsafe` in the host.
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
//! A host program (see `examples/embed/main.rs`):
//!
//! ```no_run
//! use pontoneer::{embed, prelude::*};
//! # #[derive(Default)] struct Counter;
//! # impl PyClass for Counter { const NAME: &'static core::ffi::CStr = c"Counter"; }
//! fn body(m: &mut ModuleBuilder) -> PyResult<()> {
//!     m.add_type::<Counter>()?.def_init_default();
//!     Ok(())
//! }
//! embed::append_inittab(c"host_types", body).unwrap();   // before initialize()
//! embed::initialize();
//! embed::with_gil(|| -> PyResult<()> {
//!     let module = embed::import("host_types")?;
//!     let counter = Object::new_instance(&module, Counter)?;   // a Rust-made instance
//!     embed::run("print(type(c).__name__)", &[("c", &counter)])?;
//!     Ok(())
//! }).unwrap();
//! embed::finalize().unwrap();
//! ```
//!
//! # Safety (module level)
//! `initialize` starts the interpreter and releases the GIL, keeping the main thread state to
//! restore in `finalize`; both serialise on a mutex. Every other function checks that the
//! calling thread holds the GIL (`RuntimeError` otherwise) before touching the interpreter.

use core::any::TypeId;
use core::ffi::CStr;
use std::ffi::CString;
use std::sync::Mutex;

use pyo3_ffi as ffi;

use crate::error::{PyErr, PyResult};
use crate::module::{ModuleBuilder, ModuleDef, ModuleSlots};
use crate::object::{Object, attached};

/// What this process's embedding layer did: whether it started the interpreter, and the
/// main thread state it released.
struct Embedded {
    started_by_us: bool,
    main_thread: usize,
}

static STATE: Mutex<Embedded> = Mutex::new(Embedded {
    started_by_us: false,
    main_thread: 0,
});

/// Module defs created at run time, keyed by the type of their body (process-global:
/// a def is plain data that every interpreter may instantiate).
static DEFS: Mutex<Vec<(TypeId, &'static ModuleDef)>> = Mutex::new(Vec::new());

/// The interpreter is running.
pub fn is_initialized() -> bool {
    // SAFETY: Py_IsInitialized may be called at any time.
    unsafe { ffi::Py_IsInitialized() != 0 }
}

/// Starts the interpreter unless it is already running (e.g. when this code was loaded by
/// Python), and leaves the GIL released so that any thread may then use [`with_gil`].
pub fn initialize() {
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if is_initialized() {
        return;
    }
    // SAFETY: the interpreter is not running; no signal handlers are installed.
    unsafe { ffi::Py_InitializeEx(0) };
    // SAFETY: this thread holds the GIL after initialisation; release it and keep the thread
    // state for `finalize`.
    let tstate = unsafe { ffi::PyEval_SaveThread() };
    state.started_by_us = true;
    state.main_thread = tstate as usize;
}

/// Finalizes an interpreter that [`initialize`] started (`Py_FinalizeEx`), from the thread
/// that started it, which must not hold the GIL. Afterwards [`append_inittab`] and
/// [`initialize`] may start a fresh interpreter: module state lives in module objects, so
/// types are simply created again.
pub fn finalize() -> Result<(), String> {
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if !state.started_by_us || !is_initialized() {
        return Err(
            "pontoneer::embed::finalize: the interpreter was not started by initialize()".into(),
        );
    }
    #[cfg(not(Py_LIMITED_API))]
    if crate::object::thread_attached() {
        return Err("pontoneer::embed::finalize: call it without holding the GIL".into());
    }
    // SAFETY: the thread state saved by `initialize`; this thread does not hold the GIL.
    unsafe { ffi::PyEval_RestoreThread(state.main_thread as *mut ffi::PyThreadState) };
    // SAFETY: this thread holds the GIL of the interpreter it started.
    let rc = unsafe { ffi::Py_FinalizeEx() };
    state.started_by_us = false;
    state.main_thread = 0;
    if rc < 0 {
        return Err("Py_FinalizeEx reported an error while flushing buffered data".into());
    }
    Ok(())
}

/// Runs `f` holding the GIL (re-entrant; the interpreter must be running).
pub fn with_gil<R>(f: impl FnOnce() -> R) -> R {
    struct Release(ffi::PyGILState_STATE);
    impl Drop for Release {
        fn drop(&mut self) {
            // SAFETY: pairs with the PyGILState_Ensure below, on the same thread.
            unsafe { ffi::PyGILState_Release(self.0) }
        }
    }
    assert!(
        is_initialized(),
        "pontoneer::embed::with_gil: the interpreter is not running"
    );
    // SAFETY: the interpreter is running; any thread may call Ensure.
    let _gil = Release(unsafe { ffi::PyGILState_Ensure() });
    f()
}

/// A `'static` [`ModuleDef`] for a module body, created once per body type (fn item or
/// non-capturing closure) and kept for the life of the process: a def must outlive every
/// module created from it, in every interpreter.
pub fn leak_module_def<F>(name: &'static CStr, body: F) -> &'static ModuleDef
where
    F: Fn(&mut ModuleBuilder) -> PyResult<()> + Copy + 'static,
{
    let mut defs = DEFS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&(_, def)) = defs.iter().find(|(id, _)| *id == TypeId::of::<F>()) {
        return def;
    }
    let slots: &'static ModuleSlots = Box::leak(Box::new(ModuleSlots::new(body)));
    let def: &'static ModuleDef = Box::leak(Box::new(ModuleDef::new(name, slots)));
    defs.push((TypeId::of::<F>(), def));
    def
}

/// The inittab entry for body `F`: the def registered by [`append_inittab`].
extern "C" fn inittab_entry<F: 'static>() -> *mut ffi::PyObject {
    let defs = DEFS.lock().unwrap_or_else(|e| e.into_inner());
    match defs.iter().find(|(id, _)| *id == TypeId::of::<F>()) {
        Some(&(_, def)) => def.init(),
        None => core::ptr::null_mut(),
    }
}

/// Registers a module built by `body` under `name` so that `import name` works once the
/// interpreter starts (`PyImport_AppendInittab`). Must be called before [`initialize`] —
/// and again before each re-initialisation, since `Py_FinalizeEx` resets the table.
pub fn append_inittab<F>(name: &'static CStr, body: F) -> Result<(), String>
where
    F: Fn(&mut ModuleBuilder) -> PyResult<()> + Copy + 'static,
{
    crate::trampoline::assert_zst(&body);
    if is_initialized() {
        return Err(format!(
            "pontoneer::embed::append_inittab({name:?}): the interpreter is already running"
        ));
    }
    leak_module_def(name, body);
    // SAFETY: before Py_Initialize; `name` is 'static and the entry function is valid for
    // the life of the process.
    if unsafe { ffi::PyImport_AppendInittab(name.as_ptr(), Some(inittab_entry::<F>)) } < 0 {
        return Err(format!("PyImport_AppendInittab({name:?}) failed"));
    }
    Ok(())
}

/// Creates and executes a module from a pontoneer [`ModuleDef`] (as `import` would), and
/// registers it in `sys.modules` under `name`.
pub fn load_module(def: &'static ModuleDef, name: &str) -> PyResult<Object> {
    let module = create_module(def, name)?;
    attached()?;
    // SAFETY: GIL held (checked); sys.modules is a dict (borrowed).
    let modules = unsafe { ffi::PyImport_GetModuleDict() };
    let cname = CString::new(name).map_err(|_| PyErr::value_error("NUL in module name"))?;
    // SAFETY: GIL held; valid dict, key and value.
    if unsafe { ffi::PyDict_SetItemString(modules, cname.as_ptr(), module.as_ptr()) } < 0 {
        return Err(PyErr::fetch());
    }
    Ok(module)
}

/// Creates and executes a module from `def` without registering it anywhere.
pub(crate) fn create_module(def: &'static ModuleDef, name: &str) -> PyResult<Object> {
    let machinery = import("importlib.machinery")?;
    let spec_cls = machinery.getattr(c"ModuleSpec")?;
    let name_obj = Object::from_value(name)?;
    let none = Object::from_value(())?;
    let spec = spec_cls.call(&[&name_obj, &none])?;
    // SAFETY: GIL held (import checked it); a static def and a spec object.
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
    Ok(module)
}

/// `import name`.
pub fn import(name: &str) -> PyResult<Object> {
    attached()?;
    let cname = CString::new(name).map_err(|_| PyErr::value_error("NUL in module name"))?;
    // SAFETY: GIL held (checked).
    unsafe { Object::from_result(ffi::PyImport_ImportModule(cname.as_ptr())) }
}

/// Runs statements in a fresh namespace holding `names`, and returns the namespace (a dict:
/// read results with [`Object::get_item`]).
pub fn run(code: &str, names: &[(&str, &Object)]) -> PyResult<Object> {
    let ns = namespace(names)?;
    exec_in(code, ffi::Py_file_input, &ns)?;
    Ok(ns)
}

/// Runs a Python file as `__main__` would run, in a fresh namespace holding `names`, and
/// returns the namespace.
pub fn run_file(path: &std::path::Path, names: &[(&str, &Object)]) -> PyResult<Object> {
    let code = std::fs::read_to_string(path)
        .map_err(|e| PyErr::os_error(format!("{}: {e}", path.display())))?;
    let ns = namespace(names)?;
    let file = Object::from_value(path.display().to_string().as_str())?;
    ns.set_item("__file__", &file)?;
    ns.set_item("__name__", &Object::from_value("__main__")?)?;
    exec_in(&code, ffi::Py_file_input, &ns)?;
    Ok(ns)
}

/// Evaluates one expression in a fresh namespace holding `names`.
pub fn eval(expr: &str, names: &[(&str, &Object)]) -> PyResult<Object> {
    let ns = namespace(names)?;
    exec_in(expr, ffi::Py_eval_input, &ns)
}

fn namespace(names: &[(&str, &Object)]) -> PyResult<Object> {
    attached()?;
    // SAFETY: GIL held (checked).
    let ns = unsafe { Object::from_result(ffi::PyDict_New()) }?;
    // SAFETY: GIL held; the builtins dict is borrowed from the interpreter.
    let builtins = unsafe { ffi::PyEval_GetBuiltins() };
    // SAFETY: valid dict, key and value.
    if unsafe { ffi::PyDict_SetItemString(ns.as_ptr(), c"__builtins__".as_ptr(), builtins) } < 0 {
        return Err(PyErr::fetch());
    }
    for (k, v) in names {
        ns.set_item(k, v)?;
    }
    Ok(ns)
}

fn exec_in(code: &str, start: core::ffi::c_int, ns: &Object) -> PyResult<Object> {
    let ccode = CString::new(code).map_err(|_| PyErr::value_error("NUL in code"))?;
    // SAFETY: GIL held (namespace() checked it); NUL-terminated source and file name.
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

/// Prints the Python exception (with traceback) to stderr and returns a short description,
/// for host programs and test failures.
pub fn describe(err: PyErr) -> String {
    let text = format!("{err:?}");
    if attached().is_ok() {
        err.restore(&crate::trampoline::Cx::detached());
        // SAFETY: GIL held (checked); an exception is set.
        unsafe { ffi::PyErr_Print() };
    }
    text
}
