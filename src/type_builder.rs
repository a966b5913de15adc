//! [`TypeBuilder<T>`]: assembles a heap type from a `PyType_Spec` slot list.
//!
//! The builder is generic only at its edge (each `def_*` picks a monomorphized trampoline);
//! everything it records lands in the non-generic [`TypeSpec`], and the type is created by
//! one non-generic function, [`TypeSpec::create`], the single place that leaks its tables on
//! purpose (CPython keeps pointers into the method, getset and name tables for the life of
//! the type).
//!
//! # Safety (module level)
//! Slot function pointers are recorded with [`TypeBuilder::push_slot`], whose callers state
//! next to each call which C typedef the slot id expects (from `typeslots.h` / the typeobj
//! docs); the trampoline passed has exactly that typedef.

use core::any::TypeId;
use core::ffi::{CStr, c_int, c_uint, c_ulong, c_void};
use core::marker::PhantomData;
use std::ffi::CString;

use pyo3_ffi as ffi;

use crate::cell::{PyCell, PyClass};
use crate::convert::{Arg, HandlerOutput};
use crate::error::{PyErr, PyResult};
use crate::method::{Exclusive, FromArgs, Function, Method, MethodMut, Raw, RawMethod, Shared};
use crate::trampoline::{self, assert_zst};

/// A name, optionally with a docstring: `c"sum"` or `(c"sum", c"Return the sum.")`.
#[derive(Clone, Copy, Debug)]
pub struct Def {
    pub(crate) name: &'static CStr,
    pub(crate) doc: Option<&'static CStr>,
}

impl From<&'static CStr> for Def {
    fn from(name: &'static CStr) -> Def {
        Def { name, doc: None }
    }
}

impl From<(&'static CStr, &'static CStr)> for Def {
    fn from((name, doc): (&'static CStr, &'static CStr)) -> Def {
        Def {
            name,
            doc: Some(doc),
        }
    }
}

/// Builds the heap type of `T`. Obtained from
/// [`ModuleBuilder::add_type`](crate::ModuleBuilder::add_type); the type object is created
/// when the module body returns.
///
/// Types are final (no `Py_TPFLAGS_BASETYPE`: a Python subclass would change the instance
/// layout), immutable (`Py_TPFLAGS_IMMUTABLETYPE` on 3.10+), and constructed atomically in
/// `tp_new`/vectorcall: there is never a half-initialised instance, so `__init__` is not used.
///
/// ```
/// # pontoneer::doctest_module(|m| {
/// use pontoneer::PyClass;
/// #[derive(Default)]
/// struct Counter { n: u64 }
/// impl PyClass for Counter { const NAME: &'static core::ffi::CStr = c"Counter"; }
/// m.add_type::<Counter>()?
///     .def_init_default()
///     .def_method_mut(c"bump", |c: &mut Counter| { c.n += 1; c.n })
///     .def_getter(c"n", |c: &Counter| c.n)
///     .def_repr(|c: &Counter| format!("Counter({})", c.n));
/// # Ok(()) }, "c = m.Counter(); c.bump(); assert c.bump() == 2 and c.n == 2 and repr(c) == 'Counter(2)'");
/// ```
#[repr(transparent)]
pub struct TypeBuilder<T> {
    spec: TypeSpec,
    _t: PhantomData<fn() -> T>,
}

/// What a `TypeBuilder` records: no generics past this point.
pub(crate) struct TypeSpec {
    pub(crate) id: TypeId,
    pub(crate) name: &'static CStr,
    basicsize: usize,
    flags: c_ulong,
    doc: Option<&'static CStr>,
    /// Slot id and function, in installation order; installing a slot twice keeps the last
    /// one (a few dozen entries at most: a `Vec` is all it takes).
    slots: Vec<ffi::PyType_Slot>,
    methods: Vec<ffi::PyMethodDef>,
    getset: Vec<GetSet>,
    vectorcall: Option<ffi::vectorcallfunc>,
    error: Option<String>,
    /// Binary number slots: which operand orders the installed trampoline handles.
    binary_halves: Vec<(c_int, u8)>,
}

struct GetSet {
    name: &'static CStr,
    doc: Option<&'static CStr>,
    get: Option<ffi::getter>,
    set: Option<ffi::setter>,
}

/// Flags a user may not set: they would break the instance layout or GC invariants the
/// layer relies on.
const FORBIDDEN_FLAGS: c_ulong = ffi::Py_TPFLAGS_BASETYPE | ffi::Py_TPFLAGS_HAVE_GC;

fn default_value<T: Default>() -> T {
    T::default()
}

impl<T: PyClass> TypeBuilder<T> {
    pub(crate) fn new_spec() -> TypeSpec {
        let mut spec = TypeSpec {
            id: TypeId::of::<T>(),
            name: T::NAME,
            basicsize: PyCell::<T>::SIZE,
            flags: ffi::Py_TPFLAGS_DEFAULT,
            doc: T::DOC,
            slots: Vec::new(),
            methods: Vec::new(),
            getset: Vec::new(),
            vectorcall: None,
            error: None,
            binary_halves: Vec::new(),
        };
        #[cfg(Py_3_10)]
        {
            spec.flags |= ffi::Py_TPFLAGS_IMMUTABLETYPE;
        }
        // SAFETY: typeslots — tp_dealloc is a `destructor`; tp_new a `newfunc`.
        unsafe {
            spec.push_slot(
                ffi::Py_tp_dealloc,
                trampoline::destructor::<T> as *mut c_void,
            );
            spec.push_slot(
                ffi::Py_tp_new,
                trampoline::newfunc_disallowed::<T> as *mut c_void,
            );
        }
        spec
    }

    /// Views a recorded spec as the builder of its type.
    pub(crate) fn from_spec(spec: &mut TypeSpec) -> &mut TypeBuilder<T> {
        debug_assert_eq!(spec.id, TypeId::of::<T>());
        // SAFETY: TypeBuilder<T> is repr(transparent) over TypeSpec (PhantomData is a ZST).
        unsafe { &mut *(spec as *mut TypeSpec).cast::<TypeBuilder<T>>() }
    }

    /// Records a slot. See [`TypeBuilder::raw_slot`] for the public form.
    ///
    /// # Safety
    /// `pfunc` must have the C type CPython expects for slot `id`, and must be valid for
    /// instances whose layout is `PyCell<T>`.
    pub(crate) unsafe fn push_slot(&mut self, id: c_int, pfunc: *mut c_void) -> &mut Self {
        // SAFETY: forwarded contract.
        unsafe { self.spec.push_slot(id, pfunc) };
        self
    }

    /// Whether a slot has been recorded (protocol builders use it to pair slots).
    pub(crate) fn has_slot(&self, id: c_int) -> bool {
        self.spec.slots.iter().any(|s| s.slot == id)
    }

    /// Which operand orders the binary number slot `id` handles, if installed.
    pub(crate) fn binary_half(&self, id: c_int) -> Option<u8> {
        self.spec
            .binary_halves
            .iter()
            .find(|&&(slot, _)| slot == id)
            .map(|&(_, half)| half)
    }

    pub(crate) fn set_binary_half(&mut self, id: c_int, half: u8) {
        match self
            .spec
            .binary_halves
            .iter_mut()
            .find(|(slot, _)| *slot == id)
        {
            Some(entry) => entry.1 = half,
            None => self.spec.binary_halves.push((id, half)),
        }
    }

    /// Records a declaration error, reported as `TypeError` when the module is created.
    pub(crate) fn record_error(&mut self, msg: String) {
        self.spec.error.get_or_insert(msg);
    }

    /// Construction from `T::default()`: `T()` takes no arguments.
    pub fn def_init_default(&mut self) -> &mut Self
    where
        T: Default,
    {
        self.def_init(default_value::<T>)
    }

    /// Construction from a handler taking converted positional arguments and returning `T`
    /// or `PyResult<T>`: `Matrix(rows, cols)` with `fn new(rows: usize, cols: usize) ->
    /// PyResult<Matrix>`. Installs `tp_new` and (outside the stable ABI) the type's
    /// vectorcall, so `T(...)` builds no argument tuple.
    pub fn def_init<F, A, R>(&mut self, handler: F) -> &mut Self
    where
        F: Function<A, R>,
        A: FromArgs + 'static,
        R: HandlerOutput<Value = T> + 'static,
    {
        assert_zst(&handler);
        self.spec.vectorcall = Some(trampoline::vectorcall_new::<T, F, A, R>);
        // SAFETY: typeslots — tp_new is a `newfunc`.
        unsafe {
            self.push_slot(
                ffi::Py_tp_new,
                trampoline::newfunc::<T, F, A, R> as *mut c_void,
            )
        }
    }

    /// An instance method with a `&T` receiver: `obj.name(args...)`.
    ///
    /// A handler that is not zero-sized (a capturing closure) does not compile:
    ///
    /// ```compile_fail
    /// # pontoneer::doctest_module(|m| {
    /// # use pontoneer::PyClass;
    /// # #[derive(Default)] struct C;
    /// # impl PyClass for C { const NAME: &'static core::ffi::CStr = c"C"; }
    /// let offset = 1.0;
    /// m.add_type::<C>()?.def_method(c"f", move |_: &C| offset);
    /// # Ok(()) }, "");
    /// ```
    pub fn def_method<F, A, R>(&mut self, def: impl Into<Def>, handler: F) -> &mut Self
    where
        F: Method<T, A, R>,
        A: FromArgs + 'static,
        R: HandlerOutput + 'static,
    {
        assert_zst(&handler);
        let (meth, flags) = trampoline::entry::<trampoline::MethodCall<T, F, A, R, Shared>>();
        self.spec.add_method(def.into(), meth, flags);
        self
    }

    /// An instance method with a `&mut T` receiver. Refused with `RuntimeError` while the
    /// object is borrowed (re-entrant access) and with `BufferError` while it exports a
    /// buffer (the memory behind a view must not move).
    ///
    /// A `&mut T` handler cannot be installed where a `&T` one is expected:
    ///
    /// ```compile_fail
    /// # pontoneer::doctest_module(|m| {
    /// # use pontoneer::PyClass;
    /// # #[derive(Default)] struct C { n: u32 }
    /// # impl PyClass for C { const NAME: &'static core::ffi::CStr = c"C"; }
    /// fn bump(c: &mut C) { c.n += 1 }
    /// m.add_type::<C>()?.def_method(c"bump", bump);
    /// # Ok(()) }, "");
    /// ```
    pub fn def_method_mut<F, A, R>(&mut self, def: impl Into<Def>, handler: F) -> &mut Self
    where
        F: MethodMut<T, A, R>,
        A: FromArgs + 'static,
        R: HandlerOutput + 'static,
    {
        assert_zst(&handler);
        let (meth, flags) = trampoline::entry::<trampoline::MethodCall<T, F, A, R, Exclusive>>();
        self.spec.add_method(def.into(), meth, flags);
        self
    }

    /// An instance method with the raw receiver [`RawSelf<T>`](crate::RawSelf): the layer
    /// checks the type and takes no borrow; the handler may borrow (checked) or reach the
    /// value with `unsafe` code, and can see the export count.
    pub fn def_method_raw<F, A, R>(&mut self, def: impl Into<Def>, handler: F) -> &mut Self
    where
        F: RawMethod<T, A, R>,
        A: FromArgs + 'static,
        R: HandlerOutput + 'static,
    {
        assert_zst(&handler);
        let (meth, flags) = trampoline::entry::<trampoline::MethodCall<T, F, A, R, Raw>>();
        self.spec.add_method(def.into(), meth, flags);
        self
    }

    /// A static method: `T.name(args...)` (also callable on an instance). Returning a `T`
    /// creates an instance of this type.
    ///
    /// Installed as `METH_CLASS` so that CPython passes the defining class (it gives
    /// `METH_STATIC` functions no `self` at all), which is how the handler's result finds its
    /// type without any global; the handler itself does not see the class. Python code sees
    /// a `classmethod_descriptor`; callers see no difference.
    pub fn def_staticmethod<F, A, R>(&mut self, def: impl Into<Def>, handler: F) -> &mut Self
    where
        F: Function<A, R>,
        A: FromArgs + 'static,
        R: HandlerOutput + 'static,
    {
        assert_zst(&handler);
        let (meth, flags) = trampoline::entry::<trampoline::StaticCall<T, F, A, R>>();
        self.spec.add_method(def.into(), meth, flags);
        self
    }

    /// A read-only property: `obj.name`.
    pub fn def_getter<F, R>(&mut self, def: impl Into<Def>, handler: F) -> &mut Self
    where
        F: Method<T, (), R>,
        R: HandlerOutput + 'static,
    {
        assert_zst(&handler);
        let def = def.into();
        self.spec.getset_entry(def).get = Some(trampoline::getter::<T, F, R>);
        self
    }

    /// A property setter: `obj.name = value` (with `del obj.name` → `TypeError`). Pair it
    /// with a [`def_getter`](Self::def_getter) of the same name for a read-write property.
    pub fn def_setter<F, V, R>(&mut self, def: impl Into<Def>, handler: F) -> &mut Self
    where
        F: MethodMut<T, (V,), R>,
        V: Arg + 'static,
        R: HandlerOutput<Value = ()> + 'static,
    {
        assert_zst(&handler);
        let def = def.into();
        self.spec.getset_entry(def).set = Some(trampoline::setter::<T, F, V, R>);
        self
    }

    /// `tp_repr` — `repr(obj)`.
    pub fn def_repr<F, R>(&mut self, handler: F) -> &mut Self
    where
        F: Method<T, (), R>,
        R: HandlerOutput + 'static,
    {
        assert_zst(&handler);
        let f: ffi::reprfunc = trampoline::reprfunc::<T, F, R>;
        // SAFETY: typeslots — tp_repr is a `reprfunc`.
        unsafe { self.push_slot(ffi::Py_tp_repr, f as *mut c_void) }
    }

    /// `tp_str` — `str(obj)`.
    pub fn def_str<F, R>(&mut self, handler: F) -> &mut Self
    where
        F: Method<T, (), R>,
        R: HandlerOutput + 'static,
    {
        assert_zst(&handler);
        let f: ffi::reprfunc = trampoline::reprfunc::<T, F, R>;
        // SAFETY: typeslots — tp_str is a `reprfunc`.
        unsafe { self.push_slot(ffi::Py_tp_str, f as *mut c_void) }
    }

    /// The class docstring (overrides [`PyClass::DOC`]).
    pub fn doc(&mut self, doc: &'static CStr) -> &mut Self {
        self.spec.doc = Some(doc);
        self
    }

    /// Adds `Py_TPFLAGS_*` bits. `Py_TPFLAGS_BASETYPE` and `Py_TPFLAGS_HAVE_GC` are refused
    /// (module creation fails with `TypeError`): subclasses would change the instance
    /// layout, and pontoneer instances hold no Python references to traverse.
    pub fn flags(&mut self, flags: c_ulong) -> &mut Self {
        if flags & FORBIDDEN_FLAGS != 0 {
            self.record_error(format!(
                "{}: Py_TPFLAGS_BASETYPE and Py_TPFLAGS_HAVE_GC are not supported",
                T::NAME.to_string_lossy()
            ));
        }
        self.spec.flags |= flags & !FORBIDDEN_FLAGS;
        self
    }

    /// The escape hatch: records any slot by id, replacing what a builder installed there.
    ///
    /// # Safety
    /// `pfunc` must have the C type that CPython expects for slot `id` (see `typeslots.h`
    /// and the typeobj docs), must follow that slot's reference and error conventions, and
    /// must treat instances as laid out by pontoneer (it may use [`crate::exports`] and
    /// [`crate::ensure_not_exported`]); it must not unwind. `Py_tp_dealloc` and
    /// `Py_tp_new` replacements take over the allocation contract of this crate.
    pub unsafe fn raw_slot(&mut self, id: c_int, pfunc: *mut c_void) -> &mut Self {
        // SAFETY: forwarded contract.
        unsafe { self.push_slot(id, pfunc) }
    }
}

impl TypeSpec {
    /// # Safety
    /// See [`TypeBuilder::push_slot`].
    pub(crate) unsafe fn push_slot(&mut self, id: c_int, pfunc: *mut c_void) {
        match self.slots.iter_mut().find(|s| s.slot == id) {
            Some(entry) => entry.pfunc = pfunc,
            None => self.slots.push(ffi::PyType_Slot { slot: id, pfunc }),
        }
    }

    fn add_method(&mut self, def: Def, meth: ffi::PyMethodDefPointer, flags: c_int) {
        self.methods.retain(|m| {
            // SAFETY: every recorded ml_name is a 'static CStr.
            let name = unsafe { CStr::from_ptr(m.ml_name) };
            name != def.name
        });
        self.methods.push(ffi::PyMethodDef {
            ml_name: def.name.as_ptr(),
            ml_meth: meth,
            ml_flags: flags,
            ml_doc: def.doc.map_or(core::ptr::null(), CStr::as_ptr),
        });
    }

    fn getset_entry(&mut self, def: Def) -> &mut GetSet {
        let i = match self.getset.iter().position(|g| g.name == def.name) {
            Some(i) => i,
            None => {
                self.getset.push(GetSet {
                    name: def.name,
                    doc: None,
                    get: None,
                    set: None,
                });
                self.getset.len() - 1
            }
        };
        let entry = &mut self.getset[i];
        if def.doc.is_some() {
            entry.doc = def.doc;
        }
        entry
    }

    /// Creates the type object in `module` (a new reference). The tables CPython keeps
    /// pointers into — the method and getset tables, and before 3.11 the type's name — are
    /// leaked here, deliberately and only here; the slot list itself is only read while the
    /// type is created, and is freed.
    pub(crate) fn create(
        &self,
        module: *mut ffi::PyObject,
        module_name: &str,
    ) -> PyResult<*mut ffi::PyTypeObject> {
        if let Some(e) = &self.error {
            return Err(PyErr::type_error(e.clone()));
        }
        let qualname = CString::new(format!("{module_name}.{}", self.name.to_string_lossy()))
            .map_err(|_| PyErr::value_error("type name contains a NUL byte"))?;

        let mut slots: Vec<ffi::PyType_Slot> = self.slots.clone();
        if !self.methods.is_empty() {
            let mut methods = self.methods.clone();
            methods.push(ffi::PyMethodDef::zeroed());
            slots.push(ffi::PyType_Slot {
                slot: ffi::Py_tp_methods,
                pfunc: Box::leak(methods.into_boxed_slice()).as_mut_ptr().cast(),
            });
        }
        if !self.getset.is_empty() {
            let mut getset: Vec<ffi::PyGetSetDef> = self
                .getset
                .iter()
                .map(|g| ffi::PyGetSetDef {
                    name: g.name.as_ptr(),
                    get: g.get,
                    set: g.set,
                    doc: g.doc.map_or(core::ptr::null(), CStr::as_ptr),
                    closure: core::ptr::null_mut(),
                })
                .collect();
            getset.push(ffi::PyGetSetDef {
                name: core::ptr::null(),
                get: None,
                set: None,
                doc: core::ptr::null(),
                closure: core::ptr::null_mut(),
            });
            slots.push(ffi::PyType_Slot {
                slot: ffi::Py_tp_getset,
                pfunc: Box::leak(getset.into_boxed_slice()).as_mut_ptr().cast(),
            });
        }
        if let Some(doc) = self.doc {
            slots.push(ffi::PyType_Slot {
                slot: ffi::Py_tp_doc,
                pfunc: doc.as_ptr().cast_mut().cast(),
            });
        }
        slots.push(ffi::PyType_Slot {
            slot: 0,
            pfunc: core::ptr::null_mut(),
        });
        let mut spec = ffi::PyType_Spec {
            name: qualname.as_ptr(),
            basicsize: c_int::try_from(self.basicsize)
                .map_err(|_| PyErr::overflow_error("instance size does not fit in a C int"))?,
            itemsize: 0,
            flags: self.flags as c_uint,
            slots: slots.as_mut_ptr(),
        };
        // SAFETY: a valid spec; the method and getset tables live forever, the slot list and
        // the name until after the call (see below); `module` is a live module object.
        let tp = unsafe { ffi::PyType_FromModuleAndSpec(module, &mut spec, core::ptr::null_mut()) };
        if tp.is_null() {
            return Err(PyErr::fetch());
        }
        // Up to 3.10 the type's tp_name points at `spec.name`; from 3.11 CPython copies it.
        #[cfg(not(Py_3_11))]
        core::mem::forget(qualname);
        #[cfg(Py_3_11)]
        drop(qualname);
        drop(slots);
        let tp = tp.cast::<ffi::PyTypeObject>();
        #[cfg(not(Py_LIMITED_API))]
        if let Some(vc) = self.vectorcall {
            // SAFETY: a freshly created heap type; tp_vectorcall is the documented way to make
            // `T(...)` skip tuple packing (the type object is called through it).
            unsafe { (*tp).tp_vectorcall = Some(vc) };
        }
        #[cfg(Py_LIMITED_API)]
        let _ = self.vectorcall;
        Ok(tp)
    }
}
