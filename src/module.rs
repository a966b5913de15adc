//! Modules: [`ModuleBuilder`], the [`module!`](crate::module!) macro that emits
//! `PyInit_<name>`, multi-phase initialisation (`PyModuleDef_Init` + `Py_mod_exec`), and the
//! module state that holds the heap types and exception types.
//!
//! There is no process-global registry: each module object (one per interpreter that imports
//! it) owns its own type objects in its state, and a type finds its module through
//! `PyType_GetModule` (the module it was created with by `PyType_FromModuleAndSpec`).
//!
//! # Safety (module level)
//! The module def and its slots are `'static` and written by CPython only during
//! `PyModuleDef_Init` (under the import lock). Module state is a pointer to a Rust-owned
//! [`ModuleState`], created in exec and freed in `m_free`; every access happens with the
//! thread attached and the module alive.

use core::any::TypeId;
use core::cell::UnsafeCell;
use core::ffi::{CStr, c_int, c_void};

use pyo3_ffi as ffi;

use crate::cell::PyClass;
use crate::convert::{HandlerOutput, IntoPy};
use crate::error::{PyErr, PyException, PyResult};
use crate::method::{FromArgs, Function};
use crate::object;
use crate::trampoline::{self, Cx, assert_zst};
use crate::type_builder::{Def, TypeBuilder, TypeSpec};

/// Emits `PyInit_<name>` for a module whose body is a closure (or fn) taking
/// `&mut ModuleBuilder` and returning `PyResult<()>`.
///
/// ```
/// use pontoneer::prelude::*;
///
/// fn double(x: f64) -> f64 { x * 2.0 }
///
/// pontoneer::module!(my_ext, |m: &mut ModuleBuilder| {
///     m.doc(c"An example module.")?;
///     m.def_function(c"double", double);
///     m.add_constant(c"ANSWER", 42)?;
///     Ok(())
/// });
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! module {
    ($name:ident, $body:expr) => {
        const _: () = {
            static SLOTS: $crate::ModuleSlots = $crate::ModuleSlots::new($body);
            static DEF: $crate::ModuleDef = $crate::ModuleDef::new(
                match ::core::ffi::CStr::from_bytes_with_nul(
                    ::core::concat!(::core::stringify!($name), "\0").as_bytes(),
                ) {
                    ::core::result::Result::Ok(name) => name,
                    ::core::result::Result::Err(_) => ::core::panic!("invalid module name"),
                },
                &SLOTS,
            );

            #[unsafe(export_name = ::core::concat!("PyInit_", ::core::stringify!($name)))]
            extern "C" fn __pontoneer_init() -> *mut $crate::ffi::PyObject {
                DEF.init()
            }
        };
    };
}

/// The `Py_mod_*` slots of a module: exec (the module body), and on 3.12+ the declaration
/// that the module supports per-interpreter GILs. Built by [`module!`](crate::module!).
#[repr(transparent)]
pub struct ModuleSlots(UnsafeCell<[ffi::PyModuleDef_Slot; 3]>);

// SAFETY: the slots are never written after construction (CPython only reads them).
unsafe impl Sync for ModuleSlots {}

impl ModuleSlots {
    /// The slots for a module whose body is `body` (a fn item or non-capturing closure).
    pub const fn new<F>(body: F) -> ModuleSlots
    where
        F: Fn(&mut ModuleBuilder) -> PyResult<()> + Copy + 'static,
    {
        const { assert!(size_of::<F>() == 0, "{}", trampoline::ZST_MSG) };
        let _ = body;
        let exec: unsafe extern "C" fn(*mut ffi::PyObject) -> c_int = trampoline::module_exec::<F>;
        let end = ffi::PyModuleDef_Slot {
            slot: 0,
            value: core::ptr::null_mut(),
        };
        ModuleSlots(UnsafeCell::new([
            ffi::PyModuleDef_Slot {
                slot: ffi::Py_mod_exec,
                value: exec as *mut c_void,
            },
            #[cfg(Py_3_12)]
            ffi::PyModuleDef_Slot {
                slot: ffi::Py_mod_multiple_interpreters,
                value: ffi::Py_MOD_PER_INTERPRETER_GIL_SUPPORTED,
            },
            #[cfg(not(Py_3_12))]
            end,
            end,
        ]))
    }
}

/// A `'static` `PyModuleDef` for multi-phase initialisation. Built by
/// [`module!`](crate::module!); embedders can also load it directly.
#[repr(transparent)]
pub struct ModuleDef(UnsafeCell<ffi::PyModuleDef>);

// SAFETY: CPython writes the def's header only inside PyModuleDef_Init, under the import lock
// and the GIL; Rust never writes it.
unsafe impl Sync for ModuleDef {}

impl ModuleDef {
    /// A module def named `name` with the given slots.
    pub const fn new(name: &'static CStr, slots: &'static ModuleSlots) -> ModuleDef {
        ModuleDef(UnsafeCell::new(ffi::PyModuleDef {
            m_base: ffi::PyModuleDef_HEAD_INIT,
            m_name: name.as_ptr(),
            m_doc: core::ptr::null(),
            m_size: size_of::<*mut ModuleState>() as ffi::Py_ssize_t,
            m_methods: core::ptr::null_mut(),
            m_slots: slots.0.get().cast(),
            m_traverse: Some(module_traverse),
            m_clear: Some(module_clear),
            m_free: Some(module_free),
        }))
    }

    /// `PyModuleDef_Init`: what `PyInit_<name>` returns.
    pub fn init(&'static self) -> *mut ffi::PyObject {
        // SAFETY: a static def; PyInit functions are called with the thread attached.
        unsafe { ffi::PyModuleDef_Init(self.0.get()) }
    }

    /// The raw def, for embedders (`PyModule_FromDefAndSpec`).
    pub fn as_ptr(&'static self) -> *mut ffi::PyModuleDef {
        self.0.get()
    }
}

/// What a module owns: its types and exception types (strong references).
pub(crate) struct ModuleState {
    types: Vec<(TypeId, *mut ffi::PyTypeObject)>,
    exceptions: Vec<(TypeId, *mut ffi::PyObject)>,
    panic_exception: *mut ffi::PyObject,
}

impl ModuleState {
    pub(crate) fn type_for(&self, id: TypeId) -> Option<*mut ffi::PyTypeObject> {
        self.types.iter().find(|(i, _)| *i == id).map(|&(_, t)| t)
    }

    pub(crate) fn exception_for(&self, id: TypeId) -> Option<*mut ffi::PyObject> {
        self.exceptions
            .iter()
            .find(|(i, _)| *i == id)
            .map(|&(_, t)| t)
    }

    pub(crate) fn panic_exception(&self) -> *mut ffi::PyObject {
        self.panic_exception
    }

    fn references(&self) -> impl Iterator<Item = *mut ffi::PyObject> + '_ {
        self.types
            .iter()
            .map(|&(_, t)| t.cast())
            .chain(self.exceptions.iter().map(|&(_, e)| e))
            .chain(Some(self.panic_exception).filter(|p| !p.is_null()))
    }

    fn clear(&mut self) {
        let refs: Vec<_> = self.references().collect();
        self.types.clear();
        self.exceptions.clear();
        self.panic_exception = core::ptr::null_mut();
        for r in refs {
            // SAFETY: the state owned one strong reference to each; attached thread.
            unsafe { object::release(r) };
        }
    }
}

/// The state slot of a module created from one of our defs.
///
/// # Safety
/// `module` is a live module object.
unsafe fn state_slot(module: *mut ffi::PyObject) -> Option<*mut *mut ModuleState> {
    // SAFETY: live module; PyModule_GetDef returns NULL (without error) for non-def modules.
    let def = unsafe { ffi::PyModule_GetDef(module) };
    if def.is_null() {
        return None;
    }
    // SAFETY: a non-NULL def is a valid PyModuleDef.
    let (free, clear) = unsafe { ((*def).m_free, (*def).m_clear) };
    // Our defs are recognised by their (non-generic, never inlined) m_free and m_clear.
    let ours = free.is_some_and(|f| core::ptr::fn_addr_eq(f, module_free as ffi::freefunc))
        && clear.is_some_and(|f| core::ptr::fn_addr_eq(f, module_clear as ffi::inquiry));
    if !ours {
        return None;
    }
    // SAFETY: our defs have m_size = size of a pointer, so the state is one pointer slot.
    let slot = unsafe { ffi::PyModule_GetState(module) }.cast::<*mut ModuleState>();
    (!slot.is_null()).then_some(slot)
}

/// The pontoneer state of `module`, if it is one of ours and has been executed.
///
/// # Safety
/// `module` is a live module object; the returned reference must not outlive it.
pub(crate) unsafe fn state_of<'a>(module: *mut ffi::PyObject) -> Option<&'a ModuleState> {
    // SAFETY: caller's contract.
    let slot = unsafe { state_slot(module) }?;
    // SAFETY: the slot holds NULL or a pointer from Box::into_raw (see `begin`).
    unsafe { (*slot).as_ref() }
}

/// The module a heap type was created with, if any (borrowed).
///
/// # Safety
/// `tp` is a live type object; the thread is attached.
pub(crate) unsafe fn module_of_type(tp: *mut ffi::PyTypeObject) -> Option<*mut ffi::PyObject> {
    #[cfg(not(Py_LIMITED_API))]
    {
        // SAFETY: live type object; reading its flags field.
        if unsafe { (*tp).tp_flags } & ffi::Py_TPFLAGS_HEAPTYPE == 0 {
            return None;
        }
        // SAFETY: a heap type is a PyHeapTypeObject; ht_module is NULL or a borrowed module.
        let m = unsafe { (*tp.cast::<ffi::PyHeapTypeObject>()).ht_module };
        (!m.is_null()).then_some(m)
    }
    #[cfg(Py_LIMITED_API)]
    {
        // SAFETY: live type object.
        if unsafe { ffi::PyType_GetFlags(tp) } & ffi::Py_TPFLAGS_HEAPTYPE == 0 {
            return None;
        }
        // SAFETY: heap type; NULL with TypeError when it has no module, which we clear.
        let m = unsafe { ffi::PyType_GetModule(tp) };
        if m.is_null() {
            // SAFETY: attached thread.
            unsafe { ffi::PyErr_Clear() };
            None
        } else {
            Some(m)
        }
    }
}

/// Whether `tp` is the type some pontoneer module created for the Rust type `id`.
///
/// # Safety
/// `tp` is a live type object; the thread is attached.
pub(crate) unsafe fn type_is(tp: *mut ffi::PyTypeObject, id: TypeId) -> bool {
    // SAFETY: caller's contract.
    let Some(module) = (unsafe { module_of_type(tp) }) else {
        return false;
    };
    // SAFETY: `module` is kept alive by `tp`, which the caller keeps alive.
    match unsafe { state_of(module) } {
        Some(state) => state.types.iter().any(|&(i, t)| t == tp && i == id),
        None => false,
    }
}

/// The type registered for `T` by `owner`: a pontoneer module, or `T`'s own type object.
///
/// # Safety
/// `owner` is a live object; the thread is attached.
pub(crate) unsafe fn class_in<T: PyClass>(
    owner: *mut ffi::PyObject,
) -> Option<*mut ffi::PyTypeObject> {
    // SAFETY: live object.
    if unsafe { ffi::PyType_Check(owner) } != 0 {
        let tp = owner.cast::<ffi::PyTypeObject>();
        // SAFETY: a live type object.
        return unsafe { type_is(tp, TypeId::of::<T>()) }.then_some(tp);
    }
    // SAFETY: live object; `state_of` checks that it is one of our modules.
    if unsafe { ffi::PyModule_Check(owner) } == 0 {
        return None;
    }
    // SAFETY: a live module object.
    unsafe { state_of(owner) }.and_then(|s| s.type_for(TypeId::of::<T>()))
}

/// Creates the heap type of `T` without any importable module: for embedders who place a
/// class in `builtins`, `__main__` or any namespace by hand. `module_name` becomes the
/// type's `__module__`; `build` declares the type as `add_type` would. Returns the type
/// object (call it, or use [`Object::new_instance`](crate::Object::new_instance), to make
/// instances).
///
/// The type still belongs to a (hidden, unregistered) pontoneer module object, which holds
/// its state, so the type checks, the `PanicException` and the error handling work exactly
/// as for module types, per interpreter and across `Py_Finalize` + re-initialisation.
///
/// ```
/// # pontoneer::doctest_interpreter(|| {
/// use pontoneer::prelude::*;
/// #[derive(Default)]
/// struct Point { x: f64 }
/// impl PyClass for Point { const NAME: &'static core::ffi::CStr = c"Point"; }
/// let point = pontoneer::standalone_type::<Point, _>(c"__main__", |t| {
///     t.def_init(|x: f64| Point { x }).def_getter(c"x", |p: &Point| p.x);
/// }).unwrap();
/// let p = point.call(&[&Object::from_value(2.5).unwrap()]).unwrap();
/// assert_eq!(p.getattr(c"x").unwrap().extract::<f64>().unwrap(), 2.5);
/// assert_eq!(point.getattr(c"__module__").unwrap().str().unwrap(), "__main__");
/// # });
/// ```
pub fn standalone_type<T, F>(module_name: &'static CStr, build: F) -> PyResult<crate::Object>
where
    T: PyClass,
    F: Fn(&mut TypeBuilder<T>) + Copy + 'static,
{
    assert_zst(&build);
    let body = |m: &mut ModuleBuilder| -> PyResult<()> {
        let t = m.add_type::<T>()?;
        trampoline::zst::<F>()(t);
        Ok(())
    };
    let def = crate::embed::leak_module_def(module_name, body);
    let module = crate::embed::create_module(def, &module_name.to_string_lossy())?;
    module.getattr(T::NAME)
}

unsafe extern "C" fn module_traverse(
    module: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: called by the GC on a live module of ours; the state is ours (see module docs).
    if let Some(state) = unsafe { state_of(module) } {
        for r in state.references() {
            // SAFETY: each reference is a live object the state owns.
            let rc = unsafe { visit(r, arg) };
            if rc != 0 {
                return rc;
            }
        }
    }
    0
}

#[inline(never)]
unsafe extern "C" fn module_clear(module: *mut ffi::PyObject) -> c_int {
    // SAFETY: called by CPython on a live module of ours.
    if let Some(slot) = unsafe { state_slot(module) } {
        // SAFETY: the slot holds NULL or our Box pointer; attached thread.
        if let Some(state) = unsafe { (*slot).as_mut() } {
            state.clear();
        }
    }
    0
}

#[inline(never)]
unsafe extern "C" fn module_free(module: *mut c_void) {
    let module = module.cast::<ffi::PyObject>();
    // SAFETY: called once when the module is deallocated; the state is still attached.
    if let Some(slot) = unsafe { state_slot(module) } {
        // SAFETY: the slot holds NULL or a pointer from Box::into_raw; we take it back once.
        let state = unsafe { core::ptr::replace(slot, core::ptr::null_mut()) };
        if !state.is_null() {
            // SAFETY: see above.
            let mut state = unsafe { Box::from_raw(state) };
            state.clear();
        }
    }
}

/// Declares a module's contents inside [`module!`](crate::module!): types, functions,
/// constants, exception types, docstring.
///
/// ```
/// # pontoneer::doctest_module(|m| {
/// fn add(a: i64, b: i64) -> i64 { a + b }
/// m.def_function((c"add", c"Add two integers."), add);
/// m.add_constant(c"VERSION", "1.0")?;
/// # Ok(()) }, "assert m.add(2, 3) == 5 and m.VERSION == '1.0' and m.add.__doc__ == 'Add two integers.'");
/// ```
pub struct ModuleBuilder {
    module: *mut ffi::PyObject,
    name: String,
    types: Vec<TypeSpec>,
    functions: Vec<ffi::PyMethodDef>,
}

impl ModuleBuilder {
    /// Starts executing `module`: creates its state and its `PanicException`.
    ///
    /// # Safety
    /// `module` is a fresh module created from a pontoneer [`ModuleDef`]; attached thread.
    pub(crate) unsafe fn begin(module: *mut ffi::PyObject) -> PyResult<ModuleBuilder> {
        // SAFETY: live module object.
        let name_obj = unsafe { crate::Object::from_result(ffi::PyModule_GetNameObject(module)) }?;
        let name = name_obj.to_str()?.to_owned();
        // SAFETY: caller's contract.
        let slot = unsafe { state_slot(module) }
            .ok_or_else(|| PyErr::system_error("pontoneer: module has no pontoneer state"))?;
        let panic_name = std::ffi::CString::new(format!("{name}.PanicException"))
            .map_err(|_| PyErr::value_error("module name contains a NUL byte"))?;
        // SAFETY: attached thread; returns a new reference or NULL.
        let panic_exc = unsafe {
            ffi::PyErr_NewExceptionWithDoc(
                panic_name.as_ptr(),
                c"A Rust panic in a handler. Derives from BaseException, like PyO3's, so that \
                  `except Exception` does not swallow it."
                    .as_ptr(),
                ffi::PyExc_BaseException,
                core::ptr::null_mut(),
            )
        };
        if panic_exc.is_null() {
            return Err(PyErr::fetch());
        }
        let state = Box::new(ModuleState {
            types: Vec::new(),
            exceptions: Vec::new(),
            panic_exception: panic_exc,
        });
        // SAFETY: the slot belongs to this fresh module; nothing was stored yet.
        unsafe { *slot = Box::into_raw(state) };
        let builder = ModuleBuilder {
            module,
            name,
            types: Vec::new(),
            functions: Vec::new(),
        };
        builder.add_object(c"PanicException", panic_exc)?;
        Ok(builder)
    }

    /// The module's `__name__`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The module object (borrowed), for embedders who add things by hand.
    pub fn as_ptr(&self) -> *mut ffi::PyObject {
        self.module
    }

    fn state(&mut self) -> &mut ModuleState {
        // SAFETY: `begin` stored the state; the module is alive while we build it.
        unsafe { &mut **state_slot(self.module).expect("module state exists") }
    }

    /// Declares the class `T`, returning its builder. The type object is created (and added
    /// to the module under `T::NAME`) when the module body returns. `TypeError` if `T` was
    /// already added.
    pub fn add_type<T: PyClass>(&mut self) -> PyResult<&mut TypeBuilder<T>> {
        if self.types.iter().any(|s| s.id == TypeId::of::<T>()) {
            return Err(PyErr::type_error(format!(
                "class {} was added to module {} twice",
                T::NAME.to_string_lossy(),
                self.name
            )));
        }
        self.types.push(TypeBuilder::<T>::new_spec());
        let spec = self.types.last_mut().expect("just pushed");
        Ok(TypeBuilder::from_spec(spec))
    }

    /// A module-level function: `module.name(args...)`.
    pub fn def_function<F, A, R>(&mut self, def: impl Into<Def>, handler: F) -> &mut Self
    where
        F: Function<A, R>,
        A: FromArgs + 'static,
        R: HandlerOutput + 'static,
    {
        assert_zst(&handler);
        let def = def.into();
        let (meth, flags) = trampoline::entry::<trampoline::FunctionCall<F, A, R>>();
        self.functions.retain(|m| {
            // SAFETY: every recorded ml_name is a 'static CStr.
            let name = unsafe { CStr::from_ptr(m.ml_name) };
            name != def.name
        });
        self.functions.push(ffi::PyMethodDef {
            ml_name: def.name.as_ptr(),
            ml_meth: meth,
            ml_flags: flags,
            ml_doc: def.doc.map_or(core::ptr::null(), CStr::as_ptr),
        });
        self
    }

    /// A module attribute converted from a Rust value.
    pub fn add_constant(&mut self, name: &CStr, value: impl IntoPy) -> PyResult<&mut Self> {
        let obj = value.into_py(&Cx::of_module(self.module))?;
        let r = self.add_object(name, obj);
        // SAFETY: `obj` is the new reference from into_py; AddObjectRef took its own.
        unsafe { object::release(obj) };
        r?;
        Ok(self)
    }

    /// A custom exception type `E`, created as `<module>.<E::NAME>` deriving from
    /// `E::BASE`, stored in the module state (so [`PyErr::custom::<E>`] finds it) and added
    /// to the module.
    pub fn add_exception<E: PyException>(&mut self) -> PyResult<&mut Self> {
        let base = E::BASE.builtin_ptr().ok_or_else(|| {
            PyErr::type_error("a custom exception's base must be a built-in exception type")
        })?;
        let qualname =
            std::ffi::CString::new(format!("{}.{}", self.name, E::NAME.to_string_lossy()))
                .map_err(|_| PyErr::value_error("exception name contains a NUL byte"))?;
        // SAFETY: attached thread; returns a new reference or NULL.
        let exc = unsafe {
            ffi::PyErr_NewExceptionWithDoc(
                qualname.as_ptr(),
                E::DOC.map_or(core::ptr::null(), CStr::as_ptr),
                base,
                core::ptr::null_mut(),
            )
        };
        if exc.is_null() {
            return Err(PyErr::fetch());
        }
        // The state takes the new reference.
        self.state().exceptions.push((TypeId::of::<E>(), exc));
        self.add_object(E::NAME, exc)?;
        Ok(self)
    }

    /// The module docstring.
    pub fn doc(&mut self, doc: &'static CStr) -> PyResult<&mut Self> {
        // SAFETY: live module, NUL-terminated text.
        if unsafe { ffi::PyModule_SetDocString(self.module, doc.as_ptr()) } < 0 {
            return Err(PyErr::fetch());
        }
        Ok(self)
    }

    /// `module.name = obj` with a borrowed `obj`.
    fn add_object(&self, name: &CStr, obj: *mut ffi::PyObject) -> PyResult<()> {
        // SAFETY: live module and object; AddObjectRef takes its own reference.
        if unsafe { ffi::compat::PyModule_AddObjectRef(self.module, name.as_ptr(), obj) } < 0 {
            return Err(PyErr::fetch());
        }
        Ok(())
    }

    /// Creates the declared types and functions. Called after the module body returns.
    pub(crate) fn finish(mut self) -> PyResult<()> {
        if !self.functions.is_empty() {
            let mut defs = core::mem::take(&mut self.functions);
            defs.push(ffi::PyMethodDef::zeroed());
            // Leaked on purpose: function objects point into the table for their lifetime.
            let defs = Box::leak(defs.into_boxed_slice());
            // SAFETY: live module; a zero-terminated, 'static table.
            if unsafe { ffi::PyModule_AddFunctions(self.module, defs.as_mut_ptr()) } < 0 {
                return Err(PyErr::fetch());
            }
        }
        for spec in core::mem::take(&mut self.types) {
            let tp = spec.create(self.module, &self.name)?;
            // The state takes the new reference.
            self.state().types.push((spec.id, tp));
            self.add_object(spec.name, tp.cast())?;
        }
        Ok(())
    }
}
