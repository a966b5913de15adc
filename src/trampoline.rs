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
use core::ffi::{CStr, c_int};
use core::panic::AssertUnwindSafe;

use pyo3_ffi as ffi;

use crate::cell::{PyCell, PyClass};
use crate::convert::{Arg, FromPy, HandlerOutput, IntoPy};
use crate::error::{ExceptionType, PyErr, PyResult};
use crate::method::{self, FromArgs, Function, Method, MethodMut};
use crate::module::{self, ModuleState};
use crate::object;
use crate::object::Object;

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
///
/// The context is passed as a constructor (`cx`, a copyable closure over the slot's
/// arguments), not a value: `catch_unwind` keeps everything its closure captures in memory,
/// and a `Cx` is five words, so each path builds its own from one captured pointer, and the
/// hot path of a slot that never needs it (`len`, `b[i]`) builds none.
#[inline(always)]
pub(crate) unsafe fn guard<R: CReturn>(
    cx: impl Fn() -> Cx + Copy,
    body: impl FnOnce(&Cx) -> PyResult<R>,
) -> R {
    match std::panic::catch_unwind(AssertUnwindSafe(move || body(&cx()))) {
        Ok(Ok(value)) => value,
        Ok(Err(err)) => raise(&cx(), err),
        Err(payload) => raise_panic(&cx(), payload),
    }
}

/// Like [`guard`] for slots with no error channel (`releasebuffer`, `dealloc`): an error or
/// a panic is reported through `sys.unraisablehook` with `context` as the object.
///
/// # Safety
/// The thread must be attached; `context` is NULL or a valid object.
#[inline(always)]
pub(crate) unsafe fn guard_unraisable(
    cx: impl Fn() -> Cx + Copy,
    context: *mut ffi::PyObject,
    body: impl FnOnce(&Cx) -> PyResult<()>,
) {
    let err = match std::panic::catch_unwind(AssertUnwindSafe(move || body(&cx()))) {
        Ok(Ok(())) => return,
        Ok(Err(err)) => err,
        Err(payload) => PyErr::from_panic(payload),
    };
    unraisable(&cx(), err, context);
}

/// An error whose message names the class, for the generic trampolines' error paths: out of
/// line and non-generic, so that each monomorphized trampoline carries a call, not a
/// formatting sequence.
#[cold]
#[inline(never)]
fn class_error(kind: ExceptionType, before: &str, name: &CStr, after: &str) -> PyErr {
    PyErr::new(kind, format!("{before}{}{after}", name.to_string_lossy()))
}

#[cold]
#[inline(never)]
fn bad_compare_op(op: c_int) -> PyErr {
    PyErr::system_error(format!("invalid comparison operator {op}"))
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

/// Reports `err` through `sys.unraisablehook` without disturbing an exception that is
/// already pending (a release or dealloc can run while the caller is propagating one, e.g.
/// `b"".join([exporter, 1])` releases the first view while its `TypeError` is set).
#[cold]
#[inline(never)]
fn unraisable(cx: &Cx, err: PyErr, context: *mut ffi::PyObject) {
    let pending = PyErr::take();
    err.write_unraisable(cx, context);
    if let Some(pending) = pending {
        pending.restore(cx);
    }
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
    let cx = move || Cx::of_class::<T>(subtype);
    let body = |_: &Cx| {
        // SAFETY: CPython passes a tuple and a dict or NULL.
        let args = unsafe { method::TupleArgs::new(args, kwargs, T::NAME, A::N) }?;
        // SAFETY: the tuple's items, alive for the call; attached thread.
        let a = unsafe { A::from_args(args.as_slice(), method::class_name::<T>) }?;
        let value = zst::<I>().call(a).into_result()?;
        // SAFETY: `subtype` is T's type: our types are final, so tp_new is only reached for
        // the exact type it was installed on.
        unsafe { crate::cell::alloc_instance(subtype, value) }
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
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
    let cx = move || Cx::of_class::<T>(tp);
    let body = |_: &Cx| {
        // SAFETY: CPython's vectorcall contract: `args` holds nargs borrowed objects,
        // `kwnames` is NULL or a tuple.
        let args = unsafe { method::vector_args(args, nargsf, kwnames, T::NAME) }?;
        // SAFETY: vectorcall arguments, alive for the call; attached thread.
        let a = unsafe { A::from_args(args, method::class_name::<T>) }?;
        let value = zst::<I>().call(a).into_result()?;
        // SAFETY: this vectorcall is stored in T's type object only, so `tp` is T's type.
        unsafe { crate::cell::alloc_instance(tp, value) }
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

/// `newfunc` for a type without an initializer: `T()` raises `TypeError`.
pub(crate) unsafe extern "C" fn newfunc_disallowed<T: PyClass>(
    subtype: *mut ffi::PyTypeObject,
    _args: *mut ffi::PyObject,
    _kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let cx = move || Cx::of_class::<T>(subtype);
    let body = |_: &Cx| -> PyResult<*mut ffi::PyObject> {
        Err(class_error(
            ExceptionType::TypeError,
            "cannot create '",
            T::NAME,
            "' instances",
        ))
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

/// `destructor` — `tp_dealloc`: drop `T`, free the memory, release the heap type.
///
/// This function doubles as the identity of `T`'s types ([`crate::cell::is_instance`]): it
/// is only ever installed by `TypeBuilder<T>`, and its code embeds `TypeId::of::<T>()`, so
/// two classes can never share one copy (identical-code folding merges only identical code).
pub(crate) unsafe extern "C" fn destructor<T: PyClass>(slf: *mut ffi::PyObject) {
    core::hint::black_box(TypeId::of::<T>());
    // SAFETY: tp_dealloc receives an instance of the type it was installed on, refcount 0.
    let tp = unsafe { ffi::Py_TYPE(slf) };
    let cx = move || Cx::of_type(tp);
    // SAFETY: attached thread; the type object is a valid context for the unraisable hook.
    unsafe {
        guard_unraisable(cx, tp.cast(), |_| {
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

// Methods, static methods and module functions use the cheapest calling convention their
// arity allows, as CPython's own methods do: METH_NOARGS (no arguments), METH_O (one, passed
// directly) or METH_FASTCALL (an argument array). CPython's specialising interpreter calls
// the first two with the arguments in registers, and checks the count itself. A `CallBody`
// says what a call does; three generic `extern "C"` entries (one per convention) adapt the
// arguments to it.

/// What a `PyMethodDef` entry does with its receiver (`slf`) and positional arguments.
pub(crate) trait CallBody {
    /// Flags added to the calling convention (`METH_CLASS` for static methods).
    const EXTRA_FLAGS: c_int = 0;
    /// The number of arguments the handler takes.
    const N: usize;
    /// Runs the call.
    ///
    /// # Safety
    /// Called by CPython through a `PyMethodDef` built by [`entry`]: `slf` is what the
    /// descriptor or module passes, `args` the call's borrowed arguments; attached thread.
    unsafe fn call(slf: *mut ffi::PyObject, args: &[*mut ffi::PyObject]) -> *mut ffi::PyObject;
}

/// The `PyMethodDef` entry point and flags for `B`: `METH_NOARGS`, `METH_O` or
/// `METH_FASTCALL` by the handler's arity.
pub(crate) fn entry<B: CallBody>() -> (ffi::PyMethodDefPointer, c_int) {
    let (meth, flags) = match B::N {
        0 => (
            ffi::PyMethodDefPointer {
                PyCFunction: call_noargs::<B>,
            },
            ffi::METH_NOARGS,
        ),
        1 => (
            ffi::PyMethodDefPointer {
                PyCFunction: call_o::<B>,
            },
            ffi::METH_O,
        ),
        _ => (
            ffi::PyMethodDefPointer {
                PyCFunctionFast: call_fast::<B>,
            },
            ffi::METH_FASTCALL,
        ),
    };
    (meth, flags | B::EXTRA_FLAGS)
}

/// `PyCFunction` with `METH_NOARGS`.
unsafe extern "C" fn call_noargs<B: CallBody>(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: called by CPython for the `PyMethodDef` that `entry::<B>` built.
    unsafe { B::call(slf, &[]) }
}

/// `PyCFunction` with `METH_O`: one borrowed argument.
unsafe extern "C" fn call_o<B: CallBody>(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: as above, with one borrowed argument (alive for the call).
    unsafe { B::call(slf, core::slice::from_ref(&arg)) }
}

/// `PyCFunctionFast` with `METH_FASTCALL`: `nargs` borrowed arguments in `args`.
unsafe extern "C" fn call_fast<B: CallBody>(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: as above; METH_FASTCALL passes `nargs` borrowed objects in `args`.
    unsafe { B::call(slf, method::fast_args(args, nargs)) }
}

/// An instance method: the receiver kind (`&T`, `&mut T` or raw) comes from the handler's
/// signature.
pub(crate) struct MethodCall<T, F, A, R, K>(core::marker::PhantomData<(T, F, A, R, K)>);

impl<T, F, A, R, K> CallBody for MethodCall<T, F, A, R, K>
where
    T: PyClass,
    F: Receiver<T, A, R, K>,
    A: FromArgs,
    R: HandlerOutput,
{
    const N: usize = A::N;
    #[inline(always)]
    unsafe fn call(slf: *mut ffi::PyObject, args: &[*mut ffi::PyObject]) -> *mut ffi::PyObject {
        // SAFETY: a method descriptor only calls its function after checking that `slf` is
        // an instance of the type that defines it (descr_check), and our types are final.
        let cx = move || unsafe { Cx::of_instance::<T>(slf) };
        let body = |cx: &Cx| {
            // Arguments first: converting them may run Python code that touches `slf`.
            // SAFETY: the call's borrowed arguments, alive for the call; attached thread.
            let a = unsafe { A::from_args(args, method::name_of::<F>) }?;
            // SAFETY: `slf` is a T instance (see above).
            let cell = unsafe { cell::<T>(slf) };
            output(cx, zst::<F>().invoke(cell, a)?)
        };
        // SAFETY: attached thread (called by CPython).
        unsafe { guard(cx, body) }
    }
}

/// A static method, installed as `METH_CLASS`: CPython's class-method descriptor checks that
/// the class it passes is (a subtype of, and our types are final, so exactly) the defining
/// type, so `slf` is `T`'s type object. That is how a static method that returns a `T` finds
/// its class without any global.
pub(crate) struct StaticCall<T, F, A, R>(core::marker::PhantomData<(T, F, A, R)>);

impl<T, F, A, R> CallBody for StaticCall<T, F, A, R>
where
    T: PyClass,
    F: Function<A, R>,
    A: FromArgs,
    R: HandlerOutput,
{
    const EXTRA_FLAGS: c_int = ffi::METH_CLASS;
    const N: usize = A::N;
    #[inline(always)]
    unsafe fn call(slf: *mut ffi::PyObject, args: &[*mut ffi::PyObject]) -> *mut ffi::PyObject {
        let cx = move || Cx::of_class::<T>(slf.cast());
        let body = |cx: &Cx| {
            // SAFETY: the call's borrowed arguments, alive for the call; attached thread.
            let a = unsafe { A::from_args(args, method::name_of::<F>) }?;
            output(cx, zst::<F>().call(a))
        };
        // SAFETY: attached thread (called by CPython).
        unsafe { guard(cx, body) }
    }
}

/// A module-level function; `slf` is the module.
pub(crate) struct FunctionCall<F, A, R>(core::marker::PhantomData<(F, A, R)>);

impl<F, A, R> CallBody for FunctionCall<F, A, R>
where
    F: Function<A, R>,
    A: FromArgs,
    R: HandlerOutput,
{
    const N: usize = A::N;
    #[inline(always)]
    unsafe fn call(slf: *mut ffi::PyObject, args: &[*mut ffi::PyObject]) -> *mut ffi::PyObject {
        let cx = move || Cx::of_module(slf);
        let body = |cx: &Cx| {
            // SAFETY: the call's borrowed arguments, alive for the call; attached thread.
            let a = unsafe { A::from_args(args, method::name_of::<F>) }?;
            output(cx, zst::<F>().call(a))
        };
        // SAFETY: attached thread (called by CPython).
        unsafe { guard(cx, body) }
    }
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
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |cx: &Cx| {
        // SAFETY: `slf` is a T instance.
        let this = unsafe { PyCell::<T>::from_ptr(slf) }.try_borrow()?;
        output(cx, zst::<F>().call(&this, ()))
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
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
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |_: &Cx| {
        if value.is_null() {
            return Err(class_error(
                ExceptionType::TypeError,
                "cannot delete this attribute of '",
                T::NAME,
                "' objects",
            ));
        }
        let slot = [value];
        // SAFETY: `value` is CPython's argument, alive for the call; attached thread.
        let a = unsafe { <(V,)>::from_args(&slot, method::name_of::<F>) }?;
        // SAFETY: `slf` is a T instance.
        let mut this = unsafe { PyCell::<T>::from_ptr(slf) }.try_borrow_mut()?;
        zst::<F>().call_mut(&mut this, a).into_result()?;
        Ok(0)
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

/// `reprfunc` — `tp_repr` / `tp_str`: `repr(obj)`, `str(obj)`.
pub(crate) unsafe extern "C" fn reprfunc<T, F, R>(slf: *mut ffi::PyObject) -> *mut ffi::PyObject
where
    T: PyClass,
    F: Method<T, (), R>,
    R: HandlerOutput,
{
    // SAFETY: tp_repr/tp_str receive an instance of the type they were installed on.
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |cx: &Cx| {
        // SAFETY: `slf` is a T instance.
        let this = unsafe { PyCell::<T>::from_ptr(slf) }.try_borrow()?;
        output(cx, zst::<F>().call(&this, ()))
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

// ---------------------------------------------------------------------------------------
// Module initialisation
// ---------------------------------------------------------------------------------------

/// `Py_mod_exec` — runs the user's module body, then creates the types it declared.
pub(crate) unsafe extern "C" fn module_exec<F>(module: *mut ffi::PyObject) -> c_int
where
    F: Fn(&mut crate::ModuleBuilder) -> PyResult<()> + Copy + 'static,
{
    let cx = move || Cx::of_module(module);
    let body = |_: &Cx| {
        // SAFETY: CPython calls Py_mod_exec with a fresh module created from our def.
        let mut builder = unsafe { crate::ModuleBuilder::begin(module) }?;
        zst::<F>()(&mut builder)?;
        builder.finish()?;
        Ok(0)
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
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
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |_: &Cx| {
        if view.is_null() {
            return Err(class_error(
                ExceptionType::BufferError,
                "",
                T::NAME,
                ": getbuffer called with a NULL Py_buffer",
            ));
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
    unsafe { guard(cx, body) }
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
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
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
            guard_unraisable(cx, slf, |_| {
                if !released {
                    return Err(class_error(
                        ExceptionType::SystemError,
                        "",
                        T::NAME,
                        ": buffer released more times than it was exported",
                    ));
                }
                let this = cell.try_borrow()?;
                zst::<H>().call(&this)
            })
        };
    }
}

// ---------------------------------------------------------------------------------------
// Protocol slots whose receiver CPython guarantees: the instance is the object whose type
// holds the slot (our types are final, so it is a `T`).
// ---------------------------------------------------------------------------------------

use crate::method::Receiver;
use crate::protocols::{InPlaceOutput, IntoHash};

/// The cell of an instance CPython passed to one of its own slots.
///
/// # Safety
/// `slf` is the receiver of a slot installed on `T`'s type (see each caller).
#[inline(always)]
unsafe fn cell<'a, T: PyClass>(slf: *mut ffi::PyObject) -> &'a PyCell<T> {
    // SAFETY: caller's contract.
    unsafe { PyCell::<T>::from_ptr(slf) }
}

/// `unaryfunc` — `nb_negative`, `nb_positive`, `nb_absolute`, `nb_invert`, `nb_int`,
/// `nb_float`, `nb_index`, and `getiterfunc` (`tp_iter`).
pub(crate) unsafe extern "C" fn unaryfunc<T, F, R, K>(slf: *mut ffi::PyObject) -> *mut ffi::PyObject
where
    T: PyClass,
    F: Receiver<T, (), R, K>,
    R: HandlerOutput,
{
    // SAFETY: unary slots receive an instance of the type they were installed on.
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |cx: &Cx| {
        // SAFETY: as above.
        let cell = unsafe { cell::<T>(slf) };
        let out = zst::<F>().invoke(cell, ())?;
        output(cx, out)
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

/// `getiterfunc` — `tp_iter` of an iterator: `iter(it) is it`. Runs no Rust code that could
/// fail or panic, so it needs no guard.
pub(crate) unsafe extern "C" fn getiterfunc_self(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a live object; the slot returns a new reference to it.
    unsafe { object::new_ref(slf) }
}

/// `iternextfunc` — `tp_iternext`: `Some(v)` yields `v`; `None` ends the iteration by
/// returning NULL *without* an exception (no `StopIteration` object on the hot path).
pub(crate) unsafe extern "C" fn iternextfunc<T, F, R, K, V>(
    slf: *mut ffi::PyObject,
) -> *mut ffi::PyObject
where
    T: PyClass,
    F: Receiver<T, (), R, K>,
    R: HandlerOutput<Value = Option<V>>,
    V: IntoPy,
{
    // SAFETY: tp_iternext receives an instance of the type it was installed on.
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |cx: &Cx| {
        // SAFETY: as above.
        let cell = unsafe { cell::<T>(slf) };
        match zst::<F>().invoke(cell, ())?.into_result()? {
            Some(v) => v.into_py(cx),
            None => Ok(core::ptr::null_mut()),
        }
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

/// `inquiry` — `nb_bool`: `bool(obj)`.
pub(crate) unsafe extern "C" fn inquiry<T, F, R, K>(slf: *mut ffi::PyObject) -> c_int
where
    T: PyClass,
    F: Receiver<T, (), R, K>,
    R: HandlerOutput<Value = bool>,
{
    // SAFETY: nb_bool receives an instance of the type it was installed on.
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |_: &Cx| {
        // SAFETY: as above.
        let cell = unsafe { cell::<T>(slf) };
        let v = zst::<F>().invoke(cell, ())?.into_result()?;
        Ok(c_int::from(v))
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

/// `lenfunc` — `mp_length`, `sq_length`: `len(obj)`.
pub(crate) unsafe extern "C" fn lenfunc<T, F, R, K>(slf: *mut ffi::PyObject) -> ffi::Py_ssize_t
where
    T: PyClass,
    F: Receiver<T, (), R, K>,
    R: HandlerOutput<Value = usize>,
{
    // SAFETY: length slots receive an instance of the type they were installed on.
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |_: &Cx| {
        // SAFETY: as above.
        let cell = unsafe { cell::<T>(slf) };
        let n = zst::<F>().invoke(cell, ())?.into_result()?;
        ffi::Py_ssize_t::try_from(n)
            .map_err(|_| PyErr::overflow_error("length does not fit in Py_ssize_t"))
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

/// `hashfunc` — `tp_hash`: `hash(obj)`; -1 is reported as -2.
pub(crate) unsafe extern "C" fn hashfunc<T, F, R, K>(slf: *mut ffi::PyObject) -> ffi::Py_hash_t
where
    T: PyClass,
    F: Receiver<T, (), R, K>,
    R: HandlerOutput,
    R::Value: IntoHash,
{
    // SAFETY: tp_hash receives an instance of the type it was installed on.
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |_: &Cx| {
        // SAFETY: as above.
        let cell = unsafe { cell::<T>(slf) };
        let h = zst::<F>().invoke(cell, ())?.into_result()?;
        Ok(h.into_hash())
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

/// `binaryfunc` with a guaranteed receiver — `mp_subscript` (`obj[key]`) and `sq_concat`:
/// the first operand is the instance.
pub(crate) unsafe extern "C" fn binaryfunc_self<T, F, A, R, K>(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
) -> *mut ffi::PyObject
where
    T: PyClass,
    F: Receiver<T, (A,), R, K>,
    A: Arg,
    R: HandlerOutput,
{
    // SAFETY: mp_subscript/sq_concat receive an instance of their type as first operand.
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |cx: &Cx| {
        // SAFETY: an argument CPython passed, alive for the call; attached thread.
        let a = unsafe { method::slot_arg::<A>(&arg, 0, method::name_of::<F>) }?;
        // SAFETY: as above.
        let cell = unsafe { cell::<T>(slf) };
        let out = zst::<F>().invoke(cell, (a,))?;
        output(cx, out)
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

/// The result of an in-place handler: the instance itself, or `NotImplemented`.
#[inline(always)]
fn in_place<V: InPlaceOutput>(slf: *mut ffi::PyObject, v: V) -> *mut ffi::PyObject {
    match v.into_outcome() {
        // SAFETY: `slf` is alive (borrowed from CPython); the slot returns a new reference.
        crate::Outcome::Value(()) => unsafe { object::new_ref(slf) },
        // SAFETY: attached thread.
        crate::Outcome::NotImplemented => unsafe { object::not_implemented() },
    }
}

/// `binaryfunc` for in-place operators — `nb_inplace_*` (`x += y`, `NUMBER = true`) and
/// `sq_inplace_concat` (`NUMBER = false`): the left operand is the instance; the slot returns
/// it. Only number slots may answer `NotImplemented` (CPython then falls back to the binary
/// operator); a sequence slot's result is returned to the caller as is, so there a
/// non-converting operand is a `TypeError`.
pub(crate) unsafe extern "C" fn binaryfunc_inplace<T, F, A, R, K, const NUMBER: bool>(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
) -> *mut ffi::PyObject
where
    T: PyClass,
    F: Receiver<T, (A,), R, K>,
    A: Arg,
    R: HandlerOutput,
    R::Value: InPlaceOutput,
{
    // SAFETY: CPython calls an in-place slot of the left operand's type with that operand.
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |_: &Cx| {
        // SAFETY: an argument CPython passed, alive for the call; attached thread.
        let a = match unsafe { method::slot_arg::<A>(&arg, 0, method::name_of::<F>) } {
            Ok(a) => a,
            // Python then falls back to the binary operator.
            Err(e) if NUMBER => return operand_mismatch(e),
            Err(e) => return Err(e),
        };
        // SAFETY: as above.
        let cell = unsafe { cell::<T>(slf) };
        let v = zst::<F>().invoke(cell, (a,))?.into_result()?;
        Ok(in_place(slf, v))
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

/// `ternaryfunc` for `nb_inplace_power` (`x **= y`): the left operand is the instance.
pub(crate) unsafe extern "C" fn ternaryfunc_inplace<T, F, A, R, K>(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
    modulo: *mut ffi::PyObject,
) -> *mut ffi::PyObject
where
    T: PyClass,
    F: Receiver<T, (A, Option<Object>), R, K>,
    A: Arg,
    R: HandlerOutput,
    R::Value: InPlaceOutput,
{
    // SAFETY: CPython calls an in-place slot of the left operand's type with that operand.
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |_: &Cx| {
        // SAFETY: an argument CPython passed, alive for the call; attached thread.
        let a = match unsafe { method::slot_arg::<A>(&arg, 0, method::name_of::<F>) } {
            Ok(a) => a,
            // Python then falls back to the binary operator.
            Err(e) => return operand_mismatch(e),
        };
        // SAFETY: an argument CPython passed, alive for the call; attached thread.
        let m = unsafe { method::slot_arg::<Option<Object>>(&modulo, 1, method::name_of::<F>) }?;
        // SAFETY: as above.
        let cell = unsafe { cell::<T>(slf) };
        let v = zst::<F>().invoke(cell, (a, m))?.into_result()?;
        Ok(in_place(slf, v))
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

/// `ssizeargfunc` — `sq_item` (`obj[i]`, `i` already made non-negative by CPython when
/// `sq_length` exists) and `sq_repeat` (`obj * n`).
pub(crate) unsafe extern "C" fn ssizeargfunc<T, F, R, K>(
    slf: *mut ffi::PyObject,
    i: ffi::Py_ssize_t,
) -> *mut ffi::PyObject
where
    T: PyClass,
    F: Receiver<T, (isize,), R, K>,
    R: HandlerOutput,
{
    // SAFETY: sequence slots receive an instance of the type they were installed on.
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |cx: &Cx| {
        // SAFETY: as above.
        let cell = unsafe { cell::<T>(slf) };
        let out = zst::<F>().invoke(cell, (i,))?;
        output(cx, out)
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

/// `ssizeargfunc` for `sq_inplace_repeat` (`obj *= n`): the slot returns the instance.
pub(crate) unsafe extern "C" fn ssizeargfunc_inplace<T, F, R, K>(
    slf: *mut ffi::PyObject,
    i: ffi::Py_ssize_t,
) -> *mut ffi::PyObject
where
    T: PyClass,
    F: Receiver<T, (isize,), R, K>,
    R: HandlerOutput,
    R::Value: InPlaceOutput,
{
    // SAFETY: sequence slots receive an instance of the type they were installed on.
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |_: &Cx| {
        // SAFETY: as above.
        let cell = unsafe { cell::<T>(slf) };
        let v = zst::<F>().invoke(cell, (i,))?.into_result()?;
        Ok(in_place(slf, v))
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

/// `ssizeobjargproc` — `sq_ass_item`: `obj[i] = v` (`Some(v)`) and `del obj[i]` (`None`).
pub(crate) unsafe extern "C" fn ssizeobjargproc<T, F, V, R, K>(
    slf: *mut ffi::PyObject,
    i: ffi::Py_ssize_t,
    value: *mut ffi::PyObject,
) -> c_int
where
    T: PyClass,
    F: Receiver<T, (isize, Option<V>), R, K>,
    V: FromPy,
    R: HandlerOutput<Value = ()>,
{
    // SAFETY: sequence slots receive an instance of the type they were installed on.
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |_: &Cx| {
        // SAFETY: NULL (delete) or CPython's argument, alive for the call; attached thread.
        let v = unsafe { optional_arg::<V>(&value, 1, method::name_of::<F>) }?;
        // SAFETY: as above.
        let cell = unsafe { cell::<T>(slf) };
        zst::<F>().invoke(cell, (i, v))?.into_result()?;
        Ok(0)
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

/// NULL → `None` (delete), otherwise the converted value.
///
/// # Safety
/// `*value` is NULL or a live object kept alive for the call; the thread is attached.
#[inline(always)]
unsafe fn optional_arg<V: FromPy>(
    value: &*mut ffi::PyObject,
    index: usize,
    name: fn() -> &'static str,
) -> PyResult<Option<V>> {
    if value.is_null() {
        Ok(None)
    } else {
        // SAFETY: caller's contract, and not NULL.
        unsafe { method::slot_arg::<V>(value, index, name) }.map(Some)
    }
}

/// `objobjproc` — `sq_contains`: `x in obj`.
pub(crate) unsafe extern "C" fn objobjproc<T, F, A, R, K>(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
) -> c_int
where
    T: PyClass,
    F: Receiver<T, (A,), R, K>,
    A: Arg,
    R: HandlerOutput<Value = bool>,
{
    // SAFETY: sq_contains receives an instance of the type it was installed on.
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |_: &Cx| {
        // SAFETY: an argument CPython passed, alive for the call; attached thread.
        let a = unsafe { method::slot_arg::<A>(&arg, 0, method::name_of::<F>) }?;
        // SAFETY: as above.
        let cell = unsafe { cell::<T>(slf) };
        let v = zst::<F>().invoke(cell, (a,))?.into_result()?;
        Ok(c_int::from(v))
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

/// `objobjargproc` — `mp_ass_subscript`: `obj[k] = v` (`Some(v)`) and `del obj[k]` (`None`),
/// one handler for both.
pub(crate) unsafe extern "C" fn objobjargproc<T, F, Key, V, R, K>(
    slf: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
) -> c_int
where
    T: PyClass,
    F: Receiver<T, (Key, Option<V>), R, K>,
    Key: Arg,
    V: FromPy,
    R: HandlerOutput<Value = ()>,
{
    // SAFETY: mp_ass_subscript receives an instance of the type it was installed on.
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |_: &Cx| {
        // SAFETY: an argument CPython passed, alive for the call; attached thread.
        let k = unsafe { method::slot_arg::<Key>(&key, 0, method::name_of::<F>) }?;
        // SAFETY: NULL (delete) or CPython's argument, alive for the call; attached thread.
        let v = unsafe { optional_arg::<V>(&value, 1, method::name_of::<F>) }?;
        // SAFETY: as above.
        let cell = unsafe { cell::<T>(slf) };
        zst::<F>().invoke(cell, (k, v))?.into_result()?;
        Ok(0)
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

/// `objobjargproc` — `mp_ass_subscript` with separate handlers for `obj[k] = v` (`S`) and
/// `del obj[k]` (`D`), so that each can take the receiver it needs (e.g. setting an item
/// through `&T` while exported, deleting through `&mut T`).
pub(crate) unsafe extern "C" fn objobjargproc_split<T, S, D, Key, V, RS, RD, KS, KD>(
    slf: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
) -> c_int
where
    T: PyClass,
    S: Receiver<T, (Key, V), RS, KS>,
    D: Receiver<T, (Key,), RD, KD>,
    Key: Arg,
    V: Arg,
    RS: HandlerOutput<Value = ()>,
    RD: HandlerOutput<Value = ()>,
{
    // SAFETY: mp_ass_subscript receives an instance of the type it was installed on.
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |_: &Cx| {
        // SAFETY: as above.
        let cell = unsafe { cell::<T>(slf) };
        if value.is_null() {
            // SAFETY: an argument CPython passed, alive for the call; attached thread.
            let k = unsafe { method::slot_arg::<Key>(&key, 0, method::name_of::<D>) }?;
            zst::<D>().invoke(cell, (k,))?.into_result()?;
        } else {
            // SAFETY: an argument CPython passed, alive for the call; attached thread.
            let k = unsafe { method::slot_arg::<Key>(&key, 0, method::name_of::<S>) }?;
            // SAFETY: an argument CPython passed, alive for the call; attached thread.
            let v = unsafe { method::slot_arg::<V>(&value, 1, method::name_of::<S>) }?;
            zst::<S>().invoke(cell, (k, v))?.into_result()?;
        }
        Ok(0)
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

/// `richcmpfunc` — `tp_richcompare`: `a < b`, `a == b`, ... CPython calls it with the
/// instance first (for a reflected comparison it swaps the operands and the operator).
pub(crate) unsafe extern "C" fn richcmpfunc<T, F, A, R, K>(
    slf: *mut ffi::PyObject,
    other: *mut ffi::PyObject,
    op: c_int,
) -> *mut ffi::PyObject
where
    T: PyClass,
    F: Receiver<T, (A, crate::protocols::CompareOp), R, K>,
    A: Arg,
    R: HandlerOutput,
{
    // SAFETY: do_richcompare calls the slot of the first argument's type with it first.
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |cx: &Cx| {
        let op = crate::protocols::CompareOp::from_raw(op).ok_or_else(|| bad_compare_op(op))?;
        // SAFETY: an argument CPython passed, alive for the call; attached thread.
        let o = match unsafe { method::slot_arg::<A>(&other, 0, method::name_of::<F>) } {
            Ok(o) => o,
            // A comparison with an operand of another type does not apply: Python then
            // tries the reflected comparison, and finally identity or TypeError.
            Err(e) => return operand_mismatch(e),
        };
        // SAFETY: as above.
        let cell = unsafe { cell::<T>(slf) };
        let out = zst::<F>().invoke(cell, (o, op))?;
        output(cx, out)
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

/// `ternaryfunc` — `tp_call`: `obj(*args)` (positional arguments only).
pub(crate) unsafe extern "C" fn ternaryfunc_call<T, F, A, R, K>(
    slf: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject
where
    T: PyClass,
    F: Receiver<T, A, R, K>,
    A: FromArgs,
    R: HandlerOutput,
{
    // SAFETY: tp_call receives an instance of the type it was installed on.
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |cx: &Cx| {
        // SAFETY: CPython passes a tuple and a dict or NULL.
        let args = unsafe { method::TupleArgs::new(args, kwargs, T::NAME, A::N) }?;
        // SAFETY: the tuple's items, alive for the call; attached thread.
        let a = unsafe { A::from_args(args.as_slice(), method::class_name::<T>) }?;
        // SAFETY: as above.
        let cell = unsafe { cell::<T>(slf) };
        let out = zst::<F>().invoke(cell, a)?;
        output(cx, out)
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

// ---------------------------------------------------------------------------------------
// Binary and ternary number slots: CPython calls the slot of *either* operand's type with
// the operands in expression order (`1.0 + b` calls b's nb_add as nb_add(1.0, b)), so the
// receiver is checked, never assumed.
// ---------------------------------------------------------------------------------------

/// A missing forward or reflected handler of a binary operator.
#[derive(Clone, Copy)]
pub struct NoHandler;

/// One direction of a binary operator: the instance and the other operand.
#[doc(hidden)]
pub trait BinaryHandler<T>: Copy + 'static {
    /// Whether a handler is registered for this direction.
    const PRESENT: bool;
    /// Calls the handler; `None` when absent.
    fn call(
        self,
        cx: &Cx,
        cell: &PyCell<T>,
        other: *mut ffi::PyObject,
    ) -> PyResult<*mut ffi::PyObject>;
}

impl<T> BinaryHandler<T> for NoHandler {
    const PRESENT: bool = false;
    fn call(self, _: &Cx, _: &PyCell<T>, _: *mut ffi::PyObject) -> PyResult<*mut ffi::PyObject> {
        // SAFETY: attached thread (only called from trampolines).
        Ok(unsafe { object::not_implemented() })
    }
}

/// A registered binary handler `F` with argument type `A`, result `R`, receiver kind `K`.
#[doc(hidden)]
pub struct Binary<F, A, R, K>(core::marker::PhantomData<(F, A, R, K)>);

impl<F, A, R, K> Clone for Binary<F, A, R, K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F, A, R, K> Copy for Binary<F, A, R, K> {}

impl<T, F, A, R, K> BinaryHandler<T> for Binary<F, A, R, K>
where
    T: PyClass,
    F: Receiver<T, (A,), R, K>,
    A: Arg + 'static,
    R: HandlerOutput + 'static,
    K: 'static,
{
    const PRESENT: bool = true;
    #[inline(always)]
    fn call(
        self,
        cx: &Cx,
        cell: &PyCell<T>,
        other: *mut ffi::PyObject,
    ) -> PyResult<*mut ffi::PyObject> {
        // SAFETY: an argument CPython passed, alive for the call; attached thread.
        let a = match unsafe { method::slot_arg::<A>(&other, 0, method::name_of::<F>) } {
            Ok(a) => a,
            Err(e) => return operand_mismatch(e),
        };
        output(cx, zst::<F>().invoke(cell, (a,))?)
    }
}

/// An operand that does not convert to the handler's argument type (a `TypeError`) means
/// the operator does not apply: `NotImplemented`, so Python tries the other operand and
/// then raises its usual "unsupported operand type(s)" error. Other errors propagate.
#[cold]
#[inline(never)]
fn operand_mismatch(err: PyErr) -> PyResult<*mut ffi::PyObject> {
    if err.is_instance_of(crate::ExceptionType::TypeError) {
        // SAFETY: attached thread (only called from trampolines).
        Ok(unsafe { object::not_implemented() })
    } else {
        Err(err)
    }
}

/// `binaryfunc` for number operators — `nb_add`, `nb_subtract`, ... : `F` handles
/// `instance op other`, `G` handles `other op instance` (the reflected form); anything else,
/// or a missing handler, is `NotImplemented`. A handler never sees a receiver that is not a
/// `T`.
pub(crate) unsafe extern "C" fn binaryfunc_number<T, F, G>(
    lhs: *mut ffi::PyObject,
    rhs: *mut ffi::PyObject,
) -> *mut ffi::PyObject
where
    T: PyClass,
    F: BinaryHandler<T>,
    G: BinaryHandler<T>,
{
    let lhs_is_t = crate::cell::is_instance::<T>(lhs);
    let (slf, other, forward) = if lhs_is_t {
        (lhs, rhs, true)
    } else if G::PRESENT && crate::cell::is_instance::<T>(rhs) {
        (rhs, lhs, false)
    } else {
        // SAFETY: attached thread.
        return unsafe { object::not_implemented() };
    };
    // SAFETY: `slf` was checked to be a T instance just above.
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |cx: &Cx| {
        // SAFETY: checked above.
        let cell = unsafe { cell::<T>(slf) };
        if forward {
            zst::<F>().call(cx, cell, other)
        } else {
            zst::<G>().call(cx, cell, other)
        }
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}

/// One direction of `pow(a, b[, m])`.
#[doc(hidden)]
pub trait PowerHandler<T>: Copy + 'static {
    /// Whether a handler is registered for this direction.
    const PRESENT: bool;
    /// Calls the handler.
    fn call(
        self,
        cx: &Cx,
        cell: &PyCell<T>,
        other: *mut ffi::PyObject,
        modulo: *mut ffi::PyObject,
    ) -> PyResult<*mut ffi::PyObject>;
}

impl<T> PowerHandler<T> for NoHandler {
    const PRESENT: bool = false;
    fn call(
        self,
        _: &Cx,
        _: &PyCell<T>,
        _: *mut ffi::PyObject,
        _: *mut ffi::PyObject,
    ) -> PyResult<*mut ffi::PyObject> {
        // SAFETY: attached thread (only called from trampolines).
        Ok(unsafe { object::not_implemented() })
    }
}

impl<T, F, A, R, K> PowerHandler<T> for Binary<F, A, R, K>
where
    T: PyClass,
    F: Receiver<T, (A, Option<Object>), R, K>,
    A: Arg + 'static,
    R: HandlerOutput + 'static,
    K: 'static,
{
    const PRESENT: bool = true;
    #[inline(always)]
    fn call(
        self,
        cx: &Cx,
        cell: &PyCell<T>,
        other: *mut ffi::PyObject,
        modulo: *mut ffi::PyObject,
    ) -> PyResult<*mut ffi::PyObject> {
        // SAFETY: an argument CPython passed, alive for the call; attached thread.
        let a = match unsafe { method::slot_arg::<A>(&other, 0, method::name_of::<F>) } {
            Ok(a) => a,
            Err(e) => return operand_mismatch(e),
        };
        // SAFETY: an argument CPython passed, alive for the call; attached thread.
        let m = unsafe { method::slot_arg::<Option<Object>>(&modulo, 1, method::name_of::<F>) }?;
        output(cx, zst::<F>().invoke(cell, (a, m))?)
    }
}

/// `ternaryfunc` — `nb_power`: `a ** b`, `pow(a, b, m)` (`m` is `None` when absent), with
/// the same operand checks as [`binaryfunc_number`].
pub(crate) unsafe extern "C" fn ternaryfunc_power<T, F, G>(
    lhs: *mut ffi::PyObject,
    rhs: *mut ffi::PyObject,
    modulo: *mut ffi::PyObject,
) -> *mut ffi::PyObject
where
    T: PyClass,
    F: PowerHandler<T>,
    G: PowerHandler<T>,
{
    // SAFETY: comparing with the None singleton's address.
    let two_args = modulo.is_null() || modulo == unsafe { ffi::Py_None() };
    let (slf, other, forward) = if crate::cell::is_instance::<T>(lhs) {
        (lhs, rhs, true)
    } else if G::PRESENT && two_args && crate::cell::is_instance::<T>(rhs) {
        // Like Python classes' `__rpow__`, the reflected form serves two-argument `pow` only.
        (rhs, lhs, false)
    } else {
        // SAFETY: attached thread.
        return unsafe { object::not_implemented() };
    };
    // SAFETY: `slf` was checked to be a T instance just above.
    let cx = move || unsafe { Cx::of_instance::<T>(slf) };
    let body = |cx: &Cx| {
        // SAFETY: checked above.
        let cell = unsafe { cell::<T>(slf) };
        if forward {
            zst::<F>().call(cx, cell, other, modulo)
        } else {
            zst::<G>().call(cx, cell, other, modulo)
        }
    };
    // SAFETY: called by CPython with the thread attached.
    unsafe { guard(cx, body) }
}
