//! The entry points CPython calls: one `extern "C"` function per C typedef, the crate's only
//! `catch_unwind` ([`guard`]), the error sentinels ([`CReturn`]), and the call context
//! ([`Cx`]).
//!
//! Every trampoline has the same shape: build the context from the pointer CPython gives us,
//! then `guard(&cx, |cx| { receiver; arguments; call; convert })`. Handlers are zero-sized
//! types (fn items or non-capturing closures), rebuilt from their type by [`zst`], so each
//! trampoline makes a direct, statically dispatched call.
//!
//! # Safety (module level)
//! Every `extern "C"` function here is called by CPython with the thread attached. Object
//! arguments are *borrowed*; a function returning `*mut PyObject` returns a *new* reference
//! or NULL with an exception set, and one returning `c_int`/`Py_ssize_t` returns the
//! typedef's error value (-1) with an exception set. A panic never crosses the boundary:
//! [`guard`] turns it into an exception. (Were the conversion itself to unwind, Rust ≥ 1.81
//! aborts at the `extern "C"` boundary rather than unwinding into C.)

use core::any::TypeId;
use core::ffi::c_int;
use core::panic::AssertUnwindSafe;

use pyo3_ffi as ffi;

use crate::cell::{PyCell, PyClass};
use crate::convert::{HandlerOutput, IntoPy};
use crate::error::{PyErr, PyResult};
use crate::method::{self, FromArgs, Function, Method, MethodMut};
use crate::module::{self, ModuleState};
use crate::object;

/// The message of the compile-time check that rejects capturing closures and fn pointers.
pub(crate) const ZST_MSG: &str = "pontoneer: a handler must be a fn item or a non-capturing closure \
     (a capturing closure or a fn pointer has no zero-sized type to monomorphize a trampoline on)";

/// Rebuilds a zero-sized handler from its type alone.
#[inline(always)]
pub(crate) fn zst<F: Copy>() -> F {
    const { assert!(size_of::<F>() == 0, "{}", ZST_MSG) };
    // SAFETY: F is zero-sized, so the read touches no memory; F: Copy and an installer was
    // handed a value of F (every installer takes the handler by value), so F is inhabited and
    // this produces a copy of that value.
    unsafe { core::ptr::NonNull::<F>::dangling().read() }
}

/// Checks, at compile time, that `F` is zero-sized. Called by every public installer so that
/// the error points at the user's call site.
#[inline(always)]
pub(crate) const fn assert_zst<F>(_handler: &F) {
    const { assert!(size_of::<F>() == 0, "{}", ZST_MSG) };
}

/// A C return type and the value that means "an exception is set".
pub(crate) trait CReturn: Copy {
    /// The error sentinel.
    const ERR: Self;
}

impl CReturn for *mut ffi::PyObject {
    const ERR: Self = core::ptr::null_mut();
}

impl CReturn for c_int {
    const ERR: Self = -1;
}

impl CReturn for ffi::Py_ssize_t {
    const ERR: Self = -1;
}

/// Where a call came from: enough to find the module that owns the types and exceptions a
/// handler may return or raise. Opaque: passed through [`IntoPy::into_py`].
#[derive(Clone, Copy)]
pub struct Cx {
    anchor: Anchor,
    /// The Rust type of the anchor's instances, when the anchor is a pontoneer type: makes
    /// "new instance of my own class" a constant comparison instead of a lookup.
    home: Option<TypeId>,
}

#[derive(Clone, Copy)]
enum Anchor {
    Type(*mut ffi::PyTypeObject),
    Module(*mut ffi::PyObject),
    Detached,
}

impl Cx {
    /// Context of a call whose receiver is an instance of `T` (borrowed pointer).
    ///
    /// # Safety
    /// `slf` is a live instance of a type registered for `T`.
    #[inline(always)]
    pub(crate) unsafe fn of_instance<T: PyClass>(slf: *mut ffi::PyObject) -> Cx {
        Cx {
            // SAFETY: live object (caller).
            anchor: Anchor::Type(unsafe { ffi::Py_TYPE(slf) }),
            home: Some(TypeId::of::<T>()),
        }
    }

    /// Context of a call made on `T`'s type object (constructors, static methods).
    #[inline(always)]
    pub(crate) fn of_class<T: PyClass>(tp: *mut ffi::PyTypeObject) -> Cx {
        Cx {
            anchor: Anchor::Type(tp),
            home: Some(TypeId::of::<T>()),
        }
    }

    /// Context of a call whose receiver may or may not be a pontoneer type.
    #[inline(always)]
    pub(crate) fn of_type(tp: *mut ffi::PyTypeObject) -> Cx {
        Cx {
            anchor: Anchor::Type(tp),
            home: None,
        }
    }

    /// Context of a module-level call (module functions, module exec).
    #[inline(always)]
    pub(crate) fn of_module(module: *mut ffi::PyObject) -> Cx {
        Cx {
            anchor: Anchor::Module(module),
            home: None,
        }
    }

    /// Context with no module: built-in exceptions only.
    #[inline(always)]
    pub(crate) fn detached() -> Cx {
        Cx {
            anchor: Anchor::Detached,
            home: None,
        }
    }

    /// The pontoneer module state this call belongs to, if any.
    fn state(&self) -> Option<&ModuleState> {
        let module = match self.anchor {
            // SAFETY: the anchor type is a live type object (constructors of Cx).
            Anchor::Type(tp) => unsafe { module::module_of_type(tp) }?,
            Anchor::Module(m) => m,
            Anchor::Detached => return None,
        };
        // SAFETY: `module` is a live module object; the state outlives this call because the
        // module is kept alive by the type or module that anchors the call.
        unsafe { module::state_of(module) }
    }

    /// The type object registered for `U` in this call's module (borrowed).
    #[inline]
    pub(crate) fn type_object<U: PyClass>(&self) -> PyResult<*mut ffi::PyTypeObject> {
        if let (Anchor::Type(tp), Some(home)) = (self.anchor, self.home) {
            if home == TypeId::of::<U>() {
                return Ok(tp);
            }
        }
        self.lookup_type(TypeId::of::<U>(), U::NAME)
    }

    #[cold]
    #[inline(never)]
    fn lookup_type(
        &self,
        id: TypeId,
        name: &'static core::ffi::CStr,
    ) -> PyResult<*mut ffi::PyTypeObject> {
        self.state().and_then(|s| s.type_for(id)).ok_or_else(|| {
            PyErr::type_error(format!(
                "pontoneer: class {} is not registered in the module this call belongs to \
                 (add it with ModuleBuilder::add_type)",
                name.to_string_lossy()
            ))
        })
    }

    /// The custom exception type registered for `id` (borrowed).
    pub(crate) fn exception_type(&self, id: TypeId) -> Option<*mut ffi::PyObject> {
        self.state().and_then(|s| s.exception_for(id))
    }

    /// The module's `PanicException` (borrowed).
    pub(crate) fn panic_exception(&self) -> Option<*mut ffi::PyObject> {
        self.state().map(ModuleState::panic_exception)
    }
}

/// Runs `body` with a context that has no module, with panics caught. Used by the helpers of
/// [`Object`](crate::Object) that convert values outside any trampoline.
pub(crate) fn with_detached_context<R>(body: impl FnOnce(&Cx) -> PyResult<R>) -> PyResult<R> {
    let cx = Cx::detached();
    match std::panic::catch_unwind(AssertUnwindSafe(|| body(&cx))) {
        Ok(r) => r,
        Err(payload) => Err(PyErr::from_panic(payload)),
    }
}

/// The crate's only `catch_unwind`: `Ok` → the value; `Err` → restore the exception and
/// return the sentinel; panic → `PanicException`, sentinel.
///
/// `AssertUnwindSafe` is justified: the borrow-flag guards restore the flag while unwinding,
/// so no Rust value is left borrowed; a panicking handler leaves its `T` in whatever state it
/// had reached, which stays a valid `T` (documented in the README).
///
/// # Safety
/// The thread must be attached.
#[inline(always)]
pub(crate) unsafe fn guard<R: CReturn>(cx: &Cx, body: impl FnOnce(&Cx) -> PyResult<R>) -> R {
    match std::panic::catch_unwind(AssertUnwindSafe(|| body(cx))) {
        Ok(Ok(value)) => value,
        Ok(Err(err)) => raise(cx, err),
        Err(payload) => raise_panic(cx, payload),
    }
}

/// Like [`guard`] for slots with no error channel (`releasebuffer`, `dealloc`): an error or
/// a panic is reported through `sys.unraisablehook` with `context` as the object.
///
/// # Safety
/// The thread must be attached; `context` is NULL or a valid object.
#[inline(always)]
pub(crate) unsafe fn guard_unraisable(
    cx: &Cx,
    context: *mut ffi::PyObject,
    body: impl FnOnce(&Cx) -> PyResult<()>,
) {
    let err = match std::panic::catch_unwind(AssertUnwindSafe(|| body(cx))) {
        Ok(Ok(())) => return,
        Ok(Err(err)) => err,
        Err(payload) => PyErr::from_panic(payload),
    };
    unraisable(cx, err, context);
}

#[cold]
#[inline(never)]
fn raise<R: CReturn>(cx: &Cx, err: PyErr) -> R {
    err.restore(cx);
    R::ERR
}

#[cold]
#[inline(never)]
fn raise_panic<R: CReturn>(cx: &Cx, payload: Box<dyn core::any::Any + Send>) -> R {
    PyErr::from_panic(payload).restore(cx);
    R::ERR
}

#[cold]
#[inline(never)]
fn unraisable(cx: &Cx, err: PyErr, context: *mut ffi::PyObject) {
    err.write_unraisable(cx, context);
}

/// Converts a handler's output into a new reference.
#[inline(always)]
fn output<R: HandlerOutput>(cx: &Cx, out: R) -> PyResult<*mut ffi::PyObject> {
    out.into_result()?.into_py(cx)
}

// ---------------------------------------------------------------------------------------
// Construction and destruction
// ---------------------------------------------------------------------------------------

/// `newfunc` — `tp_new`: `T(*args)` through the tuple/dict protocol (used when the vectorcall
/// path does not apply, e.g. `T.__new__(T, ...)`).
pub(crate) unsafe extern "C" fn newfunc<T, I, A, R>(
    subtype: *mut ffi::PyTypeObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject
where
    T: PyClass,
    I: Function<A, R>,
    A: FromArgs,
    R: HandlerOutput<Value = T>,
{
    let cx = Cx::of_class::<T>(subtype);
    let body = |_: &Cx| {
        // SAFETY: CPython passes a tuple and a dict or NULL.
        let args = unsafe { method::TupleArgs::new(args, kwargs, T::NAME, A::N) }?;
        let a = A::from_args(args.as_slice(), method::class_name::<T>)?;
        let value = zst::<I>().call(a).into_result()?;
        // SAFETY: `subtype` is T's type: our types are final, so tp_new is only reached for
        // the exact type it was installed on.
        unsafe { crate::cell::alloc_instance(subtype, value) }
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(&cx, body) }
}

/// `vectorcallfunc` — the fast path of `T(...)`: arguments arrive as a C array, no tuple.
pub(crate) unsafe extern "C" fn vectorcall_new<T, I, A, R>(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject
where
    T: PyClass,
    I: Function<A, R>,
    A: FromArgs,
    R: HandlerOutput<Value = T>,
{
    let tp = callable.cast::<ffi::PyTypeObject>();
    let cx = Cx::of_class::<T>(tp);
    let body = |_: &Cx| {
        // SAFETY: CPython's vectorcall contract: `args` holds nargs borrowed objects,
        // `kwnames` is NULL or a tuple.
        let args = unsafe { method::vector_args(args, nargsf, kwnames, T::NAME) }?;
        let a = A::from_args(args, method::class_name::<T>)?;
        let value = zst::<I>().call(a).into_result()?;
        // SAFETY: this vectorcall is stored in T's type object only, so `tp` is T's type.
        unsafe { crate::cell::alloc_instance(tp, value) }
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(&cx, body) }
}

/// `newfunc` for a type without an initializer: `T()` raises `TypeError`.
pub(crate) unsafe extern "C" fn newfunc_disallowed<T: PyClass>(
    subtype: *mut ffi::PyTypeObject,
    _args: *mut ffi::PyObject,
    _kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let cx = Cx::of_class::<T>(subtype);
    let body = |_: &Cx| -> PyResult<*mut ffi::PyObject> {
        Err(PyErr::type_error(format!(
            "cannot create '{}' instances",
            T::NAME.to_string_lossy()
        )))
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(&cx, body) }
}

/// `destructor` — `tp_dealloc`: drop `T`, free the memory, release the heap type.
pub(crate) unsafe extern "C" fn destructor<T: PyClass>(slf: *mut ffi::PyObject) {
    // SAFETY: tp_dealloc receives an instance of the type it was installed on, refcount 0.
    let tp = unsafe { ffi::Py_TYPE(slf) };
    let cx = Cx::of_type(tp);
    // SAFETY: attached thread; the type object is a valid context for the unraisable hook.
    unsafe {
        guard_unraisable(&cx, tp.cast(), |_| {
            // SAFETY: the instance is being destroyed: nothing else can reach it any more.
            crate::cell::drop_value::<T>(slf);
            Ok(())
        })
    };
    // SAFETY: the memory came from PyObject_Malloc in `alloc_instance`; every instance owns a
    // reference to its heap type (taken by PyObject_Init), given back last.
    unsafe {
        ffi::PyObject_Free(slf.cast());
        object::release(tp.cast());
    }
}

// ---------------------------------------------------------------------------------------
// Methods (METH_FASTCALL)
// ---------------------------------------------------------------------------------------

/// `PyCFunctionFast` — an instance method with a `&T` receiver.
pub(crate) unsafe extern "C" fn method_ref<T, F, A, R>(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject
where
    T: PyClass,
    F: Method<T, A, R>,
    A: FromArgs,
    R: HandlerOutput,
{
    // SAFETY: a method descriptor only calls its function after checking that `slf` is an
    // instance of the type that defines it (descr_check), and our types are final.
    let cx = unsafe { Cx::of_instance::<T>(slf) };
    let body = |cx: &Cx| {
        // SAFETY: METH_FASTCALL passes `nargs` borrowed objects in `args`.
        let a = A::from_args(
            unsafe { method::fast_args(args, nargs) },
            method::name_of::<F>,
        )?;
        // SAFETY: `slf` is a T instance (see above).
        let this = unsafe { PyCell::<T>::from_ptr(slf) }.try_borrow()?;
        output(cx, zst::<F>().call(&this, a))
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(&cx, body) }
}

/// `PyCFunctionFast` — an instance method with a `&mut T` receiver (refused while borrowed,
/// `RuntimeError`, or while a buffer is exported, `BufferError`).
pub(crate) unsafe extern "C" fn method_mut<T, F, A, R>(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject
where
    T: PyClass,
    F: MethodMut<T, A, R>,
    A: FromArgs,
    R: HandlerOutput,
{
    // SAFETY: as in `method_ref`: the descriptor checked the receiver's type.
    let cx = unsafe { Cx::of_instance::<T>(slf) };
    let body = |cx: &Cx| {
        // SAFETY: METH_FASTCALL passes `nargs` borrowed objects in `args`.
        let a = A::from_args(
            unsafe { method::fast_args(args, nargs) },
            method::name_of::<F>,
        )?;
        // SAFETY: `slf` is a T instance.
        let mut this = unsafe { PyCell::<T>::from_ptr(slf) }.try_borrow_mut()?;
        output(cx, zst::<F>().call_mut(&mut this, a))
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(&cx, body) }
}

/// `PyCFunctionFast` — a static method, installed as `METH_CLASS`: CPython's class-method
/// descriptor checks that the class it passes is (a subtype of, and our types are final, so
/// exactly) the defining type, so `slf` is `T`'s type object. That is how a static method
/// that returns a `T` finds its class without any global.
pub(crate) unsafe extern "C" fn method_static<T, F, A, R>(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject
where
    T: PyClass,
    F: Function<A, R>,
    A: FromArgs,
    R: HandlerOutput,
{
    let cx = Cx::of_class::<T>(slf.cast());
    let body = |cx: &Cx| {
        // SAFETY: METH_FASTCALL passes `nargs` borrowed objects in `args`.
        let a = A::from_args(
            unsafe { method::fast_args(args, nargs) },
            method::name_of::<F>,
        )?;
        output(cx, zst::<F>().call(a))
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(&cx, body) }
}

/// `PyCFunctionFast` — a module-level function; `slf` is the module.
pub(crate) unsafe extern "C" fn function<F, A, R>(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject
where
    F: Function<A, R>,
    A: FromArgs,
    R: HandlerOutput,
{
    let cx = Cx::of_module(slf);
    let body = |cx: &Cx| {
        // SAFETY: METH_FASTCALL passes `nargs` borrowed objects in `args`.
        let a = A::from_args(
            unsafe { method::fast_args(args, nargs) },
            method::name_of::<F>,
        )?;
        output(cx, zst::<F>().call(a))
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(&cx, body) }
}

// ---------------------------------------------------------------------------------------
// Attributes and text
// ---------------------------------------------------------------------------------------

/// `getter` — a property read (`obj.name`).
pub(crate) unsafe extern "C" fn getter<T, F, R>(
    slf: *mut ffi::PyObject,
    _closure: *mut core::ffi::c_void,
) -> *mut ffi::PyObject
where
    T: PyClass,
    F: Method<T, (), R>,
    R: HandlerOutput,
{
    // SAFETY: a getset descriptor checks the instance's type before calling (descr_check).
    let cx = unsafe { Cx::of_instance::<T>(slf) };
    let body = |cx: &Cx| {
        // SAFETY: `slf` is a T instance.
        let this = unsafe { PyCell::<T>::from_ptr(slf) }.try_borrow()?;
        output(cx, zst::<F>().call(&this, ()))
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(&cx, body) }
}

/// `setter` — a property write (`obj.name = v`); `del obj.name` raises `TypeError`.
pub(crate) unsafe extern "C" fn setter<T, F, V, R>(
    slf: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
    _closure: *mut core::ffi::c_void,
) -> c_int
where
    T: PyClass,
    F: MethodMut<T, (V,), R>,
    (V,): FromArgs,
    R: HandlerOutput<Value = ()>,
{
    // SAFETY: a getset descriptor checks the instance's type before calling (descr_check).
    let cx = unsafe { Cx::of_instance::<T>(slf) };
    let body = |_: &Cx| {
        if value.is_null() {
            return Err(PyErr::type_error(format!(
                "cannot delete this attribute of '{}' objects",
                T::NAME.to_string_lossy()
            )));
        }
        let a = <(V,)>::from_args(&[value], method::name_of::<F>)?;
        // SAFETY: `slf` is a T instance.
        let mut this = unsafe { PyCell::<T>::from_ptr(slf) }.try_borrow_mut()?;
        zst::<F>().call_mut(&mut this, a).into_result()?;
        Ok(0)
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(&cx, body) }
}

/// `reprfunc` — `tp_repr` / `tp_str`: `repr(obj)`, `str(obj)`.
pub(crate) unsafe extern "C" fn reprfunc<T, F, R>(slf: *mut ffi::PyObject) -> *mut ffi::PyObject
where
    T: PyClass,
    F: Method<T, (), R>,
    R: HandlerOutput,
{
    // SAFETY: tp_repr/tp_str receive an instance of the type they were installed on.
    let cx = unsafe { Cx::of_instance::<T>(slf) };
    let body = |cx: &Cx| {
        // SAFETY: `slf` is a T instance.
        let this = unsafe { PyCell::<T>::from_ptr(slf) }.try_borrow()?;
        output(cx, zst::<F>().call(&this, ()))
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(&cx, body) }
}

// ---------------------------------------------------------------------------------------
// Module initialisation
// ---------------------------------------------------------------------------------------

/// `Py_mod_exec` — runs the user's module body, then creates the types it declared.
pub(crate) unsafe extern "C" fn module_exec<F>(module: *mut ffi::PyObject) -> c_int
where
    F: Fn(&mut crate::ModuleBuilder) -> PyResult<()> + Copy + 'static,
{
    let cx = Cx::of_module(module);
    let body = |_: &Cx| {
        // SAFETY: CPython calls Py_mod_exec with a fresh module created from our def.
        let mut builder = unsafe { crate::ModuleBuilder::begin(module) }?;
        zst::<F>()(&mut builder)?;
        builder.finish()?;
        Ok(0)
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(&cx, body) }
}

// ---------------------------------------------------------------------------------------
// Buffer protocol
// ---------------------------------------------------------------------------------------

/// `getbufferproc` — `bf_getbuffer`: `PyObject_GetBuffer(obj, view, flags)`.
///
/// Order (CPython's `_testbuffer`): `view->obj = NULL`; borrow and call the handler; plan and
/// fill the view (refusal → `BufferError`, `obj` stays NULL); count the export; set
/// `view->obj` to a new reference, last.
pub(crate) unsafe extern "C" fn getbufferproc<T, F>(
    slf: *mut ffi::PyObject,
    view: *mut ffi::Py_buffer,
    flags: c_int,
) -> c_int
where
    T: PyClass,
    F: for<'a> Fn(&'a T, crate::BufferFlags) -> PyResult<crate::BufferInfo<'a>> + Copy + 'static,
{
    // SAFETY: bf_getbuffer receives an instance of the type it was installed on.
    let cx = unsafe { Cx::of_instance::<T>(slf) };
    let body = |_: &Cx| {
        if view.is_null() {
            return Err(PyErr::buffer_error(format!(
                "{}: getbuffer called with a NULL Py_buffer",
                T::NAME.to_string_lossy()
            )));
        }
        // SAFETY: a non-NULL view is a writable Py_buffer (PyObject_GetBuffer's contract).
        unsafe { (*view).obj = core::ptr::null_mut() };
        // SAFETY: `slf` is a T instance.
        let cell = unsafe { PyCell::<T>::from_ptr(slf) };
        let this = cell.try_borrow()?;
        let info = zst::<F>()(&this, crate::BufferFlags::from_raw(flags))
            .map_err(crate::protocols::buffer::handler_error)?;
        // SAFETY: valid view; the memory `info` borrows from `this` stays valid while the
        // export is counted (no `&mut T` while exports > 0, and the view owns a reference).
        unsafe { crate::protocols::buffer::fill_view(view, info, flags, T::NAME) }?;
        cell.add_export();
        // SAFETY: `slf` is alive; the view takes a new reference, set last.
        unsafe { (*view).obj = object::new_ref(slf) };
        Ok(0)
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(&cx, body) }
}

/// `releasebufferproc` — `bf_releasebuffer`: `PyBuffer_Release(view)`. Decrements the
/// export count, frees the view's storage, then runs the user's hook; no error channel, so
/// problems go to `sys.unraisablehook`.
pub(crate) unsafe extern "C" fn releasebufferproc<T, H>(
    slf: *mut ffi::PyObject,
    view: *mut ffi::Py_buffer,
) where
    T: PyClass,
    H: crate::protocols::buffer::ReleaseHook<T>,
{
    // SAFETY: bf_releasebuffer receives the exporter the view was obtained from.
    let cx = unsafe { Cx::of_instance::<T>(slf) };
    // SAFETY: `slf` is a T instance.
    let cell = unsafe { PyCell::<T>::from_ptr(slf) };
    let released = cell.remove_export();
    if !view.is_null() {
        // SAFETY: a view filled by our getbufferproc (or a copy of one), released once.
        unsafe { crate::protocols::buffer::release_view(view) };
    }
    if !released || H::ACTIVE {
        // SAFETY: attached thread; `slf` is alive (the view still owns its reference).
        unsafe {
            guard_unraisable(&cx, slf, |_| {
                if !released {
                    return Err(PyErr::system_error(format!(
                        "{}: buffer released more times than it was exported",
                        T::NAME.to_string_lossy()
                    )));
                }
                let this = cell.try_borrow()?;
                zst::<H>().call(&this)
            })
        };
    }
}
