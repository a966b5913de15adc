//! Conversions between Python objects and the Rust values handlers take and return.
//!
//! - [`FromPy`]: an argument. `f64` (anything `float()` accepts), integers (anything with
//!   `__index__`; out of range → `OverflowError`, negative for an unsigned type →
//!   `ValueError`), `bool` (only `True`/`False`), `String`, [`Object`] (any object),
//!   `Option<V>` (`None` → `None`).
//! - [`Arg`]: a handler parameter — every `FromPy` type, plus the borrowed forms `&Object`
//!   and [`PyRef<'_, T>`](PyRef)/[`PyRefMut<'_, T>`](PyRefMut), which cost no reference.
//! - [`IntoPy`]: a return value. Numbers, `bool`, `String`/`&str`, `()` → `None`,
//!   [`Object`], `Option<V>`, tuples (up to 4), `Vec<V>` → `list`, [`Outcome<V>`], and any
//!   [`PyClass`] value → a **new instance of its registered type**.
//! - [`HandlerOutput`]: what a handler may return: a plain `V: IntoPy`, or `PyResult<V>`.
//!
//! One impl per type, no blanket magic beyond `PyClass`.
//!
//! # Safety (module level)
//! Conversions run inside trampolines (thread attached) on live objects.

use pyo3_ffi as ffi;

use crate::cell::{PyClass, PyRef, PyRefMut};
use crate::error::{PyErr, PyResult};
use crate::object::{self, Object};
use crate::trampoline::Cx;

/// A Rust value that can be taken from a Python argument.
///
/// Type mismatches are reported as `TypeError`; the calling trampoline adds the function
/// name and argument position (`append() argument 1: must be a real number, not str`).
pub trait FromPy: Sized {
    /// Converts the borrowed object `obj`.
    fn from_py(obj: &Object) -> PyResult<Self>;

    /// [`from_py`](Self::from_py) for a thread known to hold the GIL: what trampolines call.
    /// A conversion that must check the thread in `from_py` (because it calls into the
    /// interpreter) skips the check here.
    ///
    /// # Safety
    /// The thread must be attached.
    #[doc(hidden)]
    #[inline(always)]
    unsafe fn from_py_attached(obj: &Object) -> PyResult<Self> {
        Self::from_py(obj)
    }
}

/// A Rust value that can be returned to Python as a new reference.
pub trait IntoPy: Sized {
    /// Converts `self` into a new reference (never NULL on `Ok`).
    #[doc(hidden)]
    fn into_py(self, cx: &Cx) -> PyResult<*mut ffi::PyObject>;
}

/// What a handler may return: a value, or a `PyResult` of one.
pub trait HandlerOutput {
    /// The value type.
    type Value: IntoPy;
    /// The value, or the handler's error.
    fn into_result(self) -> PyResult<Self::Value>;
}

impl<V: IntoPy> HandlerOutput for V {
    type Value = V;
    #[inline(always)]
    fn into_result(self) -> PyResult<V> {
        Ok(self)
    }
}

impl<V: IntoPy> HandlerOutput for PyResult<V> {
    type Value = V;
    #[inline(always)]
    fn into_result(self) -> PyResult<V> {
        self
    }
}

/// The result of a binary operator or comparison: a value, or `NotImplemented` (so that
/// Python tries the other operand, then raises `TypeError`).
///
/// ```
/// use pontoneer::Outcome;
/// fn add_small(x: &i64, other: pontoneer::Object) -> pontoneer::PyResult<Outcome<i64>> {
///     match other.extract::<i64>() {
///         Ok(y) => Ok(Outcome::Value(x + y)),
///         Err(_) => Ok(Outcome::NotImplemented),
///     }
/// }
/// # let _ = add_small;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<V> {
    /// The operation's result.
    Value(V),
    /// `NotImplemented`: this operand does not handle the other one.
    NotImplemented,
}

impl<V: IntoPy> IntoPy for Outcome<V> {
    #[inline(always)]
    fn into_py(self, cx: &Cx) -> PyResult<*mut ffi::PyObject> {
        match self {
            Outcome::Value(v) => v.into_py(cx),
            // SAFETY: attached thread (module contract).
            Outcome::NotImplemented => Ok(unsafe { object::not_implemented() }),
        }
    }
}

/// Lets a `PyResult<Outcome<V>>`-returning handler write `Ok(v.into())`.
impl<V> From<V> for Outcome<V> {
    fn from(v: V) -> Outcome<V> {
        Outcome::Value(v)
    }
}

// ---------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------

// A note on threads: `FromPy::from_py` is a safe function that anyone may call, also on a
// thread that does not hold the GIL (an `Object` kept past `with_gil`, a thread-local
// destructor). The impls below therefore only read immutable memory of the argument on
// their fast paths (an exact float's value, an exact int's digits, singleton addresses), and
// check that the thread is attached before anything that calls into the interpreter.

impl FromPy for Object {
    #[inline]
    fn from_py(obj: &Object) -> PyResult<Object> {
        object::attached()?;
        // SAFETY: attached (checked above).
        unsafe { Object::from_py_attached(obj) }
    }
    #[inline(always)]
    unsafe fn from_py_attached(obj: &Object) -> PyResult<Object> {
        // SAFETY: `obj` keeps the object alive; the thread is attached (caller's contract).
        Ok(unsafe { Object::from_borrowed_ptr(core::ptr::NonNull::new_unchecked(obj.as_ptr())) })
    }
}

impl FromPy for f64 {
    #[inline]
    fn from_py(obj: &Object) -> PyResult<f64> {
        let p = obj.as_ptr();
        // SAFETY: live object, attached thread.
        if unsafe { ffi::PyFloat_CheckExact(p) } != 0 {
            // SAFETY: checked to be a float.
            return Ok(unsafe { float_value(p) });
        }
        float_slow(obj)
    }
}

#[inline(always)]
unsafe fn float_value(p: *mut ffi::PyObject) -> f64 {
    #[cfg(not(Py_LIMITED_API))]
    {
        // SAFETY: caller checked PyFloat_CheckExact.
        unsafe { ffi::PyFloat_AS_DOUBLE(p) }
    }
    #[cfg(Py_LIMITED_API)]
    {
        // SAFETY: caller checked PyFloat_CheckExact; cannot fail for a float.
        unsafe { ffi::PyFloat_AsDouble(p) }
    }
}

#[cold]
#[inline(never)]
fn float_slow(obj: &Object) -> PyResult<f64> {
    object::attached()?;
    // SAFETY: live object, attached thread. PyFloat_AsDouble accepts __float__ and __index__.
    let v = unsafe { ffi::PyFloat_AsDouble(obj.as_ptr()) };
    if v == -1.0 {
        if let Some(err) = PyErr::take() {
            return Err(
                if err.is_instance_of(crate::ExceptionType::TypeError)
                    && !has_number_conversion(obj)
                {
                    PyErr::type_error(format!("must be a real number, not {}", obj.type_name()))
                } else {
                    err
                },
            );
        }
    }
    Ok(v)
}

/// Whether the object's type has `__float__` or `__index__` (then its own `TypeError` is
/// kept, since it came from user code).
fn has_number_conversion(obj: &Object) -> bool {
    // SAFETY: live object, attached thread; HasAttrString swallows errors.
    unsafe {
        let tp = ffi::Py_TYPE(obj.as_ptr()).cast::<ffi::PyObject>();
        ffi::PyObject_HasAttrString(tp, c"__float__".as_ptr()) != 0
            || ffi::PyObject_HasAttrString(tp, c"__index__".as_ptr()) != 0
    }
}

impl FromPy for f32 {
    fn from_py(obj: &Object) -> PyResult<f32> {
        f64::from_py(obj).map(|v| v as f32)
    }
}

/// `__index__` → `Py_ssize_t`: `TypeError` for non-integers, `OverflowError` beyond range.
///
/// # Safety
/// The thread must be attached (an overflowing int sets an exception).
#[inline]
unsafe fn index_value(obj: &Object) -> PyResult<isize> {
    let p = obj.as_ptr();
    // SAFETY: live object, attached thread.
    if unsafe { ffi::PyLong_CheckExact(p) } != 0 {
        // SAFETY: an int; -1 with an exception means overflow.
        let v = unsafe { ffi::PyLong_AsSsize_t(p) };
        if v == -1 && has_error() {
            return Err(int_overflow());
        }
        return Ok(v);
    }
    index_slow(obj)
}

#[inline(always)]
fn has_error() -> bool {
    // SAFETY: attached thread.
    !unsafe { ffi::PyErr_Occurred() }.is_null()
}

#[cold]
#[inline(never)]
fn index_slow(obj: &Object) -> PyResult<isize> {
    // SAFETY: live object, attached thread.
    if unsafe { ffi::PyIndex_Check(obj.as_ptr()) } == 0 {
        return Err(PyErr::type_error(format!(
            "'{}' object cannot be interpreted as an integer",
            obj.type_name()
        )));
    }
    // SAFETY: live object; returns a new reference or NULL with an exception set.
    let int = unsafe { Object::from_result(ffi::PyNumber_Index(obj.as_ptr())) }?;
    // SAFETY: `int` is an int.
    let v = unsafe { ffi::PyLong_AsSsize_t(int.as_ptr()) };
    if v == -1 && has_error() {
        return Err(int_overflow());
    }
    Ok(v)
}

/// Replaces CPython's overflow error with a lazy one, so that the trampoline can name the
/// function and argument.
#[cold]
#[inline(never)]
fn int_overflow() -> PyErr {
    let err = PyErr::fetch();
    if err.is_instance_of(crate::ExceptionType::OverflowError) {
        PyErr::overflow_error("Python int too large to convert to C ssize_t")
    } else {
        err
    }
}

macro_rules! signed_from_py {
    ($($t:ty),*) => {$(
        impl FromPy for $t {
            #[inline]
            fn from_py(obj: &Object) -> PyResult<$t> {
                object::attached()?;
                // SAFETY: attached (checked above).
                unsafe { <$t>::from_py_attached(obj) }
            }
            #[inline]
            unsafe fn from_py_attached(obj: &Object) -> PyResult<$t> {
                // SAFETY: attached (caller's contract).
                let v = unsafe { index_value(obj) }?;
                <$t>::try_from(v).map_err(|_| {
                    PyErr::overflow_error(format!("{v} does not fit in {}", stringify!($t)))
                })
            }
        }
    )*};
}
signed_from_py!(i8, i16, i32, i64, isize);

macro_rules! unsigned_from_py {
    ($($t:ty),*) => {$(
        impl FromPy for $t {
            #[inline]
            fn from_py(obj: &Object) -> PyResult<$t> {
                object::attached()?;
                // SAFETY: attached (checked above).
                unsafe { <$t>::from_py_attached(obj) }
            }
            #[inline]
            unsafe fn from_py_attached(obj: &Object) -> PyResult<$t> {
                // SAFETY: attached (caller's contract).
                let v = unsafe { index_value(obj) }?;
                if v < 0 {
                    return Err(PyErr::value_error(format!("must be non-negative, got {v}")));
                }
                <$t>::try_from(v).map_err(|_| {
                    PyErr::overflow_error(format!("{v} does not fit in {}", stringify!($t)))
                })
            }
        }
    )*};
}
unsigned_from_py!(u8, u16, u32, u64, usize);

impl FromPy for bool {
    fn from_py(obj: &Object) -> PyResult<bool> {
        // SAFETY: comparing with the bool singletons' addresses.
        let (t, f) = unsafe { (ffi::Py_True(), ffi::Py_False()) };
        match obj.as_ptr() {
            p if p == t => Ok(true),
            p if p == f => Ok(false),
            _ => Err(PyErr::type_error(format!(
                "must be bool, not {}",
                obj.type_name()
            ))),
        }
    }
}

impl FromPy for String {
    fn from_py(obj: &Object) -> PyResult<String> {
        // SAFETY: live object, attached thread.
        if unsafe { ffi::PyUnicode_Check(obj.as_ptr()) } == 0 {
            return Err(PyErr::type_error(format!(
                "must be str, not {}",
                obj.type_name()
            )));
        }
        obj.to_str().map(str::to_owned)
    }
}

impl<V: FromPy> FromPy for Option<V> {
    fn from_py(obj: &Object) -> PyResult<Option<V>> {
        if obj.is_none() {
            Ok(None)
        } else {
            V::from_py(obj).map(Some)
        }
    }
    #[inline]
    unsafe fn from_py_attached(obj: &Object) -> PyResult<Option<V>> {
        if obj.is_none() {
            Ok(None)
        } else {
            // SAFETY: caller's contract.
            unsafe { V::from_py_attached(obj) }.map(Some)
        }
    }
}

/// A handler parameter converted from one Python argument: what a handler's signature
/// names (`f64`, `&Object`, `PyRef<'_, T>`), and the value it gets for one call
/// ([`Item<'a>`](Arg::Item), which may borrow the argument for the call).
///
/// - every [`FromPy`] type: converted to an owned value;
/// - `&Object`: the argument itself, borrowed for the call — no reference-count traffic,
///   as a C function receives its `PyObject *` arguments (clone it to keep it);
/// - [`PyRef<'_, T>`](PyRef) / [`PyRefMut<'_, T>`](PyRefMut): a borrow of another instance
///   of a registered class for the call (type check and borrow flag, no reference taken).
///
/// Handlers must accept any lifetime for borrowed parameters (`fn f(&self, o: &Object)`,
/// or a closure with an annotated `&Object` parameter), so a borrowed argument cannot
/// outlive the call: that is checked by the compiler at the `def_*` call.
///
/// ```
/// # pontoneer::doctest_module(|m| {
/// use pontoneer::prelude::*;
/// #[derive(Default)]
/// struct Probe;
/// impl PyClass for Probe { const NAME: &'static core::ffi::CStr = c"Probe"; }
/// // Borrowed for the call: no reference is taken (`a.clone()` would take one to keep).
/// fn same(_: &Probe, a: &Object, b: &Object) -> bool { a.is(b) }
/// fn kind(_: &Probe, x: &Object) -> String { x.type_name() }
/// m.add_type::<Probe>()?.def_init_default()
///     .def_method(c"same", same)
///     .def_method(c"kind", kind);
/// # Ok(()) }, "p = m.Probe(); o = object(); assert p.same(o, o) and not p.same(o, 1); assert p.kind(2.5) == 'float'");
/// ```
pub trait Arg {
    /// The value a handler receives for one call, borrowing the argument for `'a`.
    type Item<'a>;
    /// Converts the borrowed argument `obj`.
    ///
    /// # Safety
    /// The thread must be attached (trampolines call this).
    #[doc(hidden)]
    unsafe fn from_arg(obj: &Object) -> PyResult<Self::Item<'_>>;
}

impl<V: FromPy> Arg for V {
    type Item<'a> = V;
    #[inline(always)]
    unsafe fn from_arg(obj: &Object) -> PyResult<V> {
        // SAFETY: caller's contract (attached).
        unsafe { V::from_py_attached(obj) }
    }
}

impl Arg for &Object {
    type Item<'a> = &'a Object;
    #[inline(always)]
    unsafe fn from_arg(obj: &Object) -> PyResult<&Object> {
        Ok(obj)
    }
}

impl<T: PyClass> Arg for PyRef<'_, T> {
    type Item<'a> = PyRef<'a, T>;
    #[inline(always)]
    unsafe fn from_arg(obj: &Object) -> PyResult<PyRef<'_, T>> {
        // SAFETY: caller's contract (attached).
        unsafe { PyRef::borrow_attached(obj) }
    }
}

impl<T: PyClass> Arg for PyRefMut<'_, T> {
    type Item<'a> = PyRefMut<'a, T>;
    #[inline(always)]
    unsafe fn from_arg(obj: &Object) -> PyResult<PyRefMut<'_, T>> {
        // SAFETY: caller's contract (attached).
        unsafe { PyRefMut::borrow_attached(obj) }
    }
}

// ---------------------------------------------------------------------------------------
// Return values
// ---------------------------------------------------------------------------------------

/// A new reference from a C-API constructor, or the exception it raised.
#[inline(always)]
fn created(p: *mut ffi::PyObject) -> PyResult<*mut ffi::PyObject> {
    if p.is_null() {
        Err(PyErr::fetch())
    } else {
        Ok(p)
    }
}

impl IntoPy for Object {
    #[inline(always)]
    fn into_py(self, _: &Cx) -> PyResult<*mut ffi::PyObject> {
        Ok(self.into_raw())
    }
}

impl IntoPy for () {
    #[inline(always)]
    fn into_py(self, _: &Cx) -> PyResult<*mut ffi::PyObject> {
        // SAFETY: attached thread.
        Ok(unsafe { object::none() })
    }
}

impl IntoPy for bool {
    #[inline(always)]
    fn into_py(self, _: &Cx) -> PyResult<*mut ffi::PyObject> {
        // SAFETY: attached thread.
        Ok(unsafe { object::bool_object(self) })
    }
}

impl IntoPy for f64 {
    #[inline(always)]
    fn into_py(self, _: &Cx) -> PyResult<*mut ffi::PyObject> {
        // SAFETY: attached thread.
        created(unsafe { ffi::PyFloat_FromDouble(self) })
    }
}

impl IntoPy for f32 {
    fn into_py(self, cx: &Cx) -> PyResult<*mut ffi::PyObject> {
        f64::from(self).into_py(cx)
    }
}

macro_rules! int_into_py {
    ($($t:ty => $via:ty, $f:ident;)*) => {$(
        impl IntoPy for $t {
            #[inline(always)]
            fn into_py(self, _: &Cx) -> PyResult<*mut ffi::PyObject> {
                // SAFETY: attached thread.
                created(unsafe { ffi::$f(self as $via) })
            }
        }
    )*};
}
int_into_py! {
    i8 => core::ffi::c_long, PyLong_FromLong;
    i16 => core::ffi::c_long, PyLong_FromLong;
    i32 => core::ffi::c_long, PyLong_FromLong;
    i64 => core::ffi::c_longlong, PyLong_FromLongLong;
    isize => ffi::Py_ssize_t, PyLong_FromSsize_t;
    u8 => core::ffi::c_ulong, PyLong_FromUnsignedLong;
    u16 => core::ffi::c_ulong, PyLong_FromUnsignedLong;
    u32 => core::ffi::c_ulong, PyLong_FromUnsignedLong;
    u64 => core::ffi::c_ulonglong, PyLong_FromUnsignedLongLong;
    usize => usize, PyLong_FromSize_t;
}

impl IntoPy for &str {
    fn into_py(self, _: &Cx) -> PyResult<*mut ffi::PyObject> {
        // SAFETY: attached thread; pointer/length describe valid UTF-8.
        created(unsafe {
            ffi::PyUnicode_FromStringAndSize(self.as_ptr().cast(), self.len() as ffi::Py_ssize_t)
        })
    }
}

impl IntoPy for String {
    fn into_py(self, cx: &Cx) -> PyResult<*mut ffi::PyObject> {
        self.as_str().into_py(cx)
    }
}

impl<V: IntoPy> IntoPy for Option<V> {
    fn into_py(self, cx: &Cx) -> PyResult<*mut ffi::PyObject> {
        match self {
            Some(v) => v.into_py(cx),
            // SAFETY: attached thread.
            None => Ok(unsafe { object::none() }),
        }
    }
}

impl<V: IntoPy> IntoPy for Vec<V> {
    fn into_py(self, cx: &Cx) -> PyResult<*mut ffi::PyObject> {
        // SAFETY: attached thread; a new list of the right length, owned by `list`.
        let list = unsafe { Object::from_result(ffi::PyList_New(self.len() as ffi::Py_ssize_t)) }?;
        for (i, v) in self.into_iter().enumerate() {
            let item = v.into_py(cx)?;
            // SAFETY: `i` is in range; PyList_SetItem steals `item` into the empty slot.
            unsafe { ffi::PyList_SetItem(list.as_ptr(), i as ffi::Py_ssize_t, item) };
        }
        Ok(list.into_raw())
    }
}

macro_rules! tuple_into_py {
    ($($n:expr => ($($v:ident $i:tt),*);)*) => {$(
        impl<$($v: IntoPy),*> IntoPy for ($($v,)*) {
            fn into_py(self, cx: &Cx) -> PyResult<*mut ffi::PyObject> {
                // SAFETY: attached thread; a new tuple of the right length, owned by `t`.
                let t = unsafe { Object::from_result(ffi::PyTuple_New($n)) }?;
                $(
                    let item = self.$i.into_py(cx)?;
                    // SAFETY: a fresh tuple of length $n, index in range, slot still empty;
                    // the tuple steals `item`.
                    unsafe { tuple_init_item(t.as_ptr(), $i, item) };
                )*
                Ok(t.into_raw())
            }
        }
    )*};
}
/// Fills slot `i` of a fresh tuple (stealing `item`): the `PyTuple_SET_ITEM` store where the
/// tuple layout is visible, `PyTuple_SetItem` under the stable ABI.
///
/// # Safety
/// `t` is a tuple just created with more than `i` items, slot `i` still empty; `item` is a new
/// reference; attached thread.
#[inline(always)]
unsafe fn tuple_init_item(t: *mut ffi::PyObject, i: ffi::Py_ssize_t, item: *mut ffi::PyObject) {
    #[cfg(not(Py_LIMITED_API))]
    // SAFETY: caller's contract.
    unsafe {
        ffi::PyTuple_SET_ITEM(t, i, item)
    };
    #[cfg(Py_LIMITED_API)]
    // SAFETY: caller's contract.
    unsafe {
        ffi::PyTuple_SetItem(t, i, item)
    };
}

tuple_into_py! {
    1 => (A 0);
    2 => (A 0, B 1);
    3 => (A 0, B 1, C 2);
    4 => (A 0, B 1, C 2, D 3);
}

/// A registered class value becomes a new instance of the type registered for it in the
/// module the call belongs to.
impl<T: PyClass> IntoPy for T {
    #[inline]
    fn into_py(self, cx: &Cx) -> PyResult<*mut ffi::PyObject> {
        let tp = cx.type_object::<T>()?;
        // SAFETY: `tp` is the type registered for T; attached thread.
        unsafe { crate::cell::alloc_instance(tp, self) }
    }
}
