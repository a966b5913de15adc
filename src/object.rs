//! Owned Python references: [`Object`], and the crate's only reference-count changes.
//!
//! # Safety (module level)
//! Every function here is called with the thread attached to the interpreter (inside a
//! trampoline, module init, or an embedding call that holds the GIL). `Object` is `!Send`, so
//! an `Object` created on an attached thread stays on that thread. Its `Drop` checks that the
//! thread is still attached before decrementing (a `thread_local!` can outlive the thread
//! state); an `Object` dropped on a detached thread is leaked on purpose rather than touched.

use core::ffi::CStr;
use core::marker::PhantomData;
use core::ptr::NonNull;

use pyo3_ffi as ffi;

use crate::error::{PyErr, PyResult};

/// An owned (strong) reference to a Python object.
///
/// Creating an `Object` takes a reference; dropping it gives the reference back. Handlers
/// receive arguments of unknown type as `&Object` (borrowed for the call, no reference taken)
/// or as `Object` (owned: they may keep it for as long as they like, on the same thread, since
/// `Object` is `!Send`); `clone` a borrowed one to keep it.
///
/// ```
/// # pontoneer::doctest_interpreter(|| {
/// use pontoneer::Object;
/// let text = Object::from_value("spam").unwrap();
/// assert_eq!(text.repr().unwrap(), "'spam'");
/// assert_eq!(text.type_name(), "str");
/// # });
/// ```
#[repr(transparent)]
pub struct Object {
    ptr: NonNull<ffi::PyObject>,
    _not_send: PhantomData<*mut ()>,
}

impl Object {
    /// Takes ownership of a new (strong) reference.
    ///
    /// # Safety
    /// `ptr` must be a valid object pointer carrying a strong reference that the caller gives
    /// away, and the thread must be attached to the interpreter.
    #[inline]
    pub unsafe fn from_owned_ptr(ptr: NonNull<ffi::PyObject>) -> Object {
        Object {
            ptr,
            _not_send: PhantomData,
        }
    }

    /// Takes ownership of the result of a C-API call that returns a new reference or `NULL`
    /// with an exception set; `NULL` becomes the fetched exception.
    ///
    /// # Safety
    /// `ptr` is NULL or a valid new reference; the thread must be attached.
    #[inline]
    pub unsafe fn from_result(ptr: *mut ffi::PyObject) -> PyResult<Object> {
        match NonNull::new(ptr) {
            // SAFETY: the caller hands over a new reference.
            Some(ptr) => Ok(unsafe { Object::from_owned_ptr(ptr) }),
            None => Err(PyErr::fetch()),
        }
    }

    /// Creates an owned reference from a borrowed one (increments the reference count).
    ///
    /// # Safety
    /// `ptr` must be a valid object pointer; the thread must be attached.
    #[inline]
    pub unsafe fn from_borrowed_ptr(ptr: NonNull<ffi::PyObject>) -> Object {
        // SAFETY: valid object, attached thread (caller's contract).
        unsafe { ffi::Py_INCREF(ptr.as_ptr()) };
        // SAFETY: we just took the reference we now own.
        unsafe { Object::from_owned_ptr(ptr) }
    }

    /// Views a borrowed argument slot (a `PyObject*` that CPython passed and keeps alive for
    /// the call) as an `&Object`, without touching the reference count. This is how
    /// handlers receive `&Object` arguments: a C function's borrowed argument, at no cost.
    ///
    /// # Safety
    /// `*slot` must be a valid, non-NULL object pointer that stays alive (and is not
    /// released through this view) while the returned reference is used, and the thread must be attached.
    #[inline(always)]
    pub(crate) unsafe fn from_slot(slot: &*mut ffi::PyObject) -> &Object {
        // SAFETY: `Object` is `repr(transparent)` over `NonNull<PyObject>` (plus a
        // zero-sized marker), which has the layout of a non-NULL `*mut PyObject`; the
        // caller guarantees non-NULL and liveness for `'a`.
        unsafe { &*(slot as *const *mut ffi::PyObject).cast::<Object>() }
    }

    /// Converts a Rust value into a new Python object (see [`IntoPy`](crate::IntoPy)).
    /// Registered classes cannot be converted this way, since they need the module that
    /// registered them; return them from a handler instead.
    pub fn from_value<V: crate::convert::IntoPy>(value: V) -> PyResult<Object> {
        crate::trampoline::with_detached_context(|cx| {
            let raw = value.into_py(cx)?;
            // SAFETY: `into_py` returns a new, non-NULL reference on success.
            Ok(unsafe { Object::from_owned_ptr(NonNull::new_unchecked(raw)) })
        })
    }

    /// The raw pointer, still owned by `self`.
    #[inline]
    pub fn as_ptr(&self) -> *mut ffi::PyObject {
        self.ptr.as_ptr()
    }

    /// Gives the reference away: the caller becomes responsible for it.
    #[inline]
    pub fn into_raw(self) -> *mut ffi::PyObject {
        let ptr = self.ptr.as_ptr();
        core::mem::forget(self);
        ptr
    }

    /// `True` when this is Python's `None`.
    #[inline]
    pub fn is_none(&self) -> bool {
        // SAFETY: comparing with the None singleton's address reads nothing.
        self.as_ptr() == unsafe { ffi::Py_None() }
    }

    /// The name of the object's type (`type(obj).__name__`), for messages.
    /// `"?"` on a thread that does not hold the GIL (a type's name may change meanwhile).
    pub fn type_name(&self) -> String {
        if !thread_attached() {
            return "?".to_owned();
        }
        // SAFETY: `self` is a live object, the thread is attached; `type_name_of` only reads
        // its type.
        unsafe { type_name_of(self.as_ptr()) }
    }

    /// `repr(obj)` as a Rust string.
    pub fn repr(&self) -> PyResult<String> {
        attached()?;
        // SAFETY: live object, attached thread (checked above).
        let r = unsafe { Object::from_result(ffi::PyObject_Repr(self.as_ptr())) }?;
        r.to_str().map(str::to_owned)
    }

    /// `str(obj)` as a Rust string.
    pub fn str(&self) -> PyResult<String> {
        attached()?;
        // SAFETY: live object, attached thread (checked above).
        let r = unsafe { Object::from_result(ffi::PyObject_Str(self.as_ptr())) }?;
        r.to_str().map(str::to_owned)
    }

    /// Borrows the UTF-8 text of a `str` object (`TypeError` for other types).
    pub fn to_str(&self) -> PyResult<&str> {
        attached()?;
        // SAFETY: attached thread; PyUnicode_Check only reads the type flags.
        if unsafe { ffi::PyUnicode_Check(self.as_ptr()) } == 0 {
            return Err(PyErr::type_error(format!(
                "expected str, got {}",
                self.type_name()
            )));
        }
        let mut len: ffi::Py_ssize_t = 0;
        // SAFETY: `self` is a str; the UTF-8 buffer is cached in the object and lives as long
        // as the object, which `&self` keeps alive for the returned borrow.
        let data = unsafe { ffi::PyUnicode_AsUTF8AndSize(self.as_ptr(), &mut len) };
        if data.is_null() {
            return Err(PyErr::fetch());
        }
        // SAFETY: CPython returns `len` bytes of valid UTF-8 at `data`, kept alive by `self`.
        let bytes = unsafe { core::slice::from_raw_parts(data.cast::<u8>(), len as usize) };
        // SAFETY: PyUnicode_AsUTF8AndSize only succeeds with valid UTF-8.
        Ok(unsafe { core::str::from_utf8_unchecked(bytes) })
    }

    /// `obj.name` (`getattr`).
    pub fn getattr(&self, name: &CStr) -> PyResult<Object> {
        attached()?;
        // SAFETY: live object, NUL-terminated name, attached thread.
        unsafe { Object::from_result(ffi::PyObject_GetAttrString(self.as_ptr(), name.as_ptr())) }
    }

    /// `obj()`: calls the object with no arguments.
    pub fn call0(&self) -> PyResult<Object> {
        attached()?;
        // SAFETY: live object, attached thread.
        unsafe { Object::from_result(ffi::PyObject_CallNoArgs(self.as_ptr())) }
    }

    /// `obj(arg)`: calls the object with one positional argument.
    pub fn call1(&self, arg: &Object) -> PyResult<Object> {
        attached()?;
        // SAFETY: live objects, attached thread; the argument is borrowed for the call.
        unsafe {
            Object::from_result(ffi::PyObject_CallFunctionObjArgs(
                self.as_ptr(),
                arg.as_ptr(),
                core::ptr::null_mut::<ffi::PyObject>(),
            ))
        }
    }

    /// `obj.name = value`.
    pub fn set_attr(&self, name: &CStr, value: &Object) -> PyResult<()> {
        attached()?;
        // SAFETY: attached thread; live objects; NUL-terminated name.
        if unsafe { ffi::PyObject_SetAttrString(self.as_ptr(), name.as_ptr(), value.as_ptr()) } < 0
        {
            return Err(PyErr::fetch());
        }
        Ok(())
    }

    /// `obj(*args)`: calls the object with positional arguments.
    pub fn call(&self, args: &[&Object]) -> PyResult<Object> {
        attached()?;
        let ptrs: Vec<*mut ffi::PyObject> = args.iter().map(|a| a.as_ptr()).collect();
        // SAFETY: attached thread; a tuple of the borrowed arguments (PyTuple_Pack takes
        // its own references), then the call.
        unsafe {
            let tuple = Object::from_result(ffi::PyTuple_New(ptrs.len() as ffi::Py_ssize_t))?;
            for (i, &p) in ptrs.iter().enumerate() {
                ffi::PyTuple_SetItem(tuple.as_ptr(), i as ffi::Py_ssize_t, new_ref(p));
            }
            Object::from_result(ffi::PyObject_Call(
                self.as_ptr(),
                tuple.as_ptr(),
                core::ptr::null_mut(),
            ))
        }
    }

    /// `obj[key]` with a string key (e.g. reading a result from a namespace dict).
    pub fn get_item(&self, key: &str) -> PyResult<Object> {
        let key = Object::from_value(key)?;
        // SAFETY: attached thread (from_value succeeded only with it); live objects.
        unsafe { Object::from_result(ffi::PyObject_GetItem(self.as_ptr(), key.as_ptr())) }
    }

    /// `obj[key] = value` with a string key.
    pub fn set_item(&self, key: &str, value: &Object) -> PyResult<()> {
        let key = Object::from_value(key)?;
        // SAFETY: attached thread; live objects; SetItem takes its own references.
        if unsafe { ffi::PyObject_SetItem(self.as_ptr(), key.as_ptr(), value.as_ptr()) } < 0 {
            return Err(PyErr::fetch());
        }
        Ok(())
    }

    /// A new Python instance of the registered class `T` holding `value`. `owner` is the
    /// module that registered `T` (or `T`'s type object itself, e.g. from
    /// [`standalone_type`](crate::standalone_type)); `TypeError` if it has no class for `T`.
    pub fn new_instance<T: crate::PyClass>(owner: &Object, value: T) -> PyResult<Object> {
        attached()?;
        // SAFETY: attached thread; `owner` is a live object.
        let tp = unsafe { crate::module::class_in::<T>(owner.as_ptr()) }.ok_or_else(|| {
            PyErr::type_error(format!(
                "{} has no registered class {}",
                owner.type_name(),
                T::NAME.to_string_lossy()
            ))
        })?;
        // SAFETY: `tp` is the type created for T; attached thread.
        let raw = unsafe { crate::cell::alloc_instance(tp, value) }?;
        // SAFETY: alloc_instance returns a new, non-NULL reference.
        Ok(unsafe { Object::from_owned_ptr(NonNull::new_unchecked(raw)) })
    }

    /// Converts this object to a Rust value (see [`FromPy`](crate::FromPy)).
    pub fn extract<V: crate::convert::FromPy>(&self) -> PyResult<V> {
        attached()?;
        V::from_py(self)
    }

    /// `obj == other`, with Python's semantics (`__eq__`, reflected, identity fallback).
    pub fn eq(&self, other: &Object) -> PyResult<bool> {
        attached()?;
        // SAFETY: attached thread; live objects.
        match unsafe { ffi::PyObject_RichCompareBool(self.as_ptr(), other.as_ptr(), ffi::Py_EQ) } {
            -1 => Err(PyErr::fetch()),
            r => Ok(r == 1),
        }
    }

    /// The value of an exact `float` object (not a subclass, not an int): the fast path of
    /// numeric comparisons.
    #[inline]
    pub fn as_exact_f64(&self) -> Option<f64> {
        // No attachment check needed: an exact float's type and value never change, and
        // `self` keeps it alive, so this only reads immutable memory.
        // SAFETY: live object; the type pointer and, for an exact float, its value are
        // immutable; PyFloat_AsDouble cannot fail (or touch reference counts) on a float.
        unsafe {
            if ffi::PyFloat_CheckExact(self.as_ptr()) == 0 {
                return None;
            }
            #[cfg(not(Py_LIMITED_API))]
            let value = ffi::PyFloat_AS_DOUBLE(self.as_ptr());
            #[cfg(Py_LIMITED_API)]
            let value = ffi::PyFloat_AsDouble(self.as_ptr());
            Some(value)
        }
    }

    /// `obj is other`.
    #[inline]
    pub fn is(&self, other: &Object) -> bool {
        self.as_ptr() == other.as_ptr()
    }
}

/// Taking a new reference needs the GIL: cloning on a thread that does not hold it (an
/// `Object` kept past [`with_gil`](crate::embed::with_gil), or touched in a thread-local
/// destructor) panics instead of racing the interpreter's reference counts.
impl Clone for Object {
    #[inline]
    fn clone(&self) -> Object {
        if !thread_attached() {
            detached_clone();
        }
        // SAFETY: `self` keeps the object alive; the thread is attached (checked above).
        unsafe { Object::from_borrowed_ptr(self.ptr) }
    }
}

#[cold]
#[inline(never)]
fn detached_clone() -> ! {
    panic!("pontoneer: Object cloned on a thread that does not hold the GIL")
}

impl Drop for Object {
    #[inline]
    fn drop(&mut self) {
        if thread_attached() {
            // SAFETY: we own one strong reference and the thread is attached.
            unsafe { ffi::Py_DECREF(self.ptr.as_ptr()) }
        }
        // Otherwise (a thread-local destroyed after its thread detached): leak, never touch.
    }
}

impl core::fmt::Debug for Object {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.repr() {
            Ok(r) => f.write_str(&r),
            Err(_) => write!(f, "<{} object at {:p}>", self.type_name(), self.as_ptr()),
        }
    }
}

/// Whether this thread currently holds the interpreter (is "attached").
///
/// This runs on every `Object` drop, so it avoids `PyGILState_Check` (about 50 instructions
/// on 3.11) where CPython offers something cheaper that answers the same question:
/// - 3.12 and later: the current thread state is per-thread and cleared while the thread is
///   detached, so "attached" is "the unchecked current thread state is not NULL".
/// - up to 3.11: the current thread state is the GIL holder's, process-wide. It is ours when
///   it is the thread state CPython registered for this thread (two loads, nothing
///   dereferenced). A thread running in a sub-interpreter has an unregistered state; for it
///   the answer comes from `PyGILState_Check`, as before.
#[inline]
pub(crate) fn thread_attached() -> bool {
    #[cfg(all(not(Py_LIMITED_API), Py_3_12))]
    {
        // SAFETY: PyThreadState_GetUnchecked may be called from any thread at any time.
        !unsafe { ffi::compat::PyThreadState_GetUnchecked() }.is_null()
    }
    #[cfg(all(not(Py_LIMITED_API), not(Py_3_12)))]
    {
        // SAFETY: these three functions may be called from any thread at any time; the
        // pointers are only compared, never dereferenced.
        unsafe {
            let holder = ffi::compat::PyThreadState_GetUnchecked();
            if holder.is_null() {
                return false; // nobody holds the GIL, so this thread does not
            }
            holder == ffi::PyGILState_GetThisThreadState() || ffi::PyGILState_Check() != 0
        }
    }
    #[cfg(Py_LIMITED_API)]
    {
        // The stable ABI has no cheap check; an `Object` only exists on attached threads.
        true
    }
}

/// `RuntimeError` unless the thread is attached: guards the `Object` helpers that call
/// into the interpreter, so that a stashed `Object` used later cannot race the GIL.
#[inline]
pub(crate) fn attached() -> PyResult<()> {
    if thread_attached() {
        Ok(())
    } else {
        Err(PyErr::runtime_error(
            "pontoneer: Object used on a thread that does not hold the GIL",
        ))
    }
}

/// A new reference to `ptr` (`Py_NewRef`).
///
/// # Safety
/// `ptr` must be a valid object; the thread must be attached.
#[inline]
pub(crate) unsafe fn new_ref(ptr: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: caller's contract.
    unsafe { ffi::Py_INCREF(ptr) };
    ptr
}

/// Gives back one strong reference (`Py_DECREF`).
///
/// # Safety
/// The caller owns one strong reference to `ptr`; the thread must be attached.
#[inline]
pub(crate) unsafe fn release(ptr: *mut ffi::PyObject) {
    // SAFETY: caller's contract.
    unsafe { ffi::Py_DECREF(ptr) }
}

/// A new reference to `None`.
///
/// # Safety
/// The thread must be attached.
#[inline]
pub(crate) unsafe fn none() -> *mut ffi::PyObject {
    // SAFETY: None is immortal-ish and always valid; attached thread.
    unsafe { new_ref(ffi::Py_None()) }
}

/// A new reference to `NotImplemented`.
///
/// # Safety
/// The thread must be attached.
#[inline]
pub(crate) unsafe fn not_implemented() -> *mut ffi::PyObject {
    // SAFETY: NotImplemented is a valid singleton; attached thread.
    unsafe { new_ref(ffi::Py_NotImplemented()) }
}

/// A new reference to `True` or `False`.
///
/// # Safety
/// The thread must be attached.
#[inline]
pub(crate) unsafe fn bool_object(v: bool) -> *mut ffi::PyObject {
    // SAFETY: the bool singletons are always valid; attached thread.
    unsafe { new_ref(if v { ffi::Py_True() } else { ffi::Py_False() }) }
}

/// `type(obj).__name__`, for messages. Never fails (falls back to `"?"`).
///
/// # Safety
/// `obj` must be a valid object; the thread must be attached.
pub(crate) unsafe fn type_name_of(obj: *mut ffi::PyObject) -> String {
    // SAFETY: valid object (caller).
    let tp = unsafe { ffi::Py_TYPE(obj) };
    // SAFETY: `tp` is a valid type object.
    unsafe { type_object_name(tp) }
}

/// The `__name__` of a type object, for messages.
///
/// # Safety
/// `tp` must be a valid type object; the thread must be attached.
pub(crate) unsafe fn type_object_name(tp: *mut ffi::PyTypeObject) -> String {
    #[cfg(not(Py_LIMITED_API))]
    {
        // SAFETY: tp_name is a NUL-terminated string owned by the type.
        let full = unsafe { CStr::from_ptr((*tp).tp_name) }.to_string_lossy();
        // tp_name is "module.Name" for heap types; __name__ is the last component.
        full.rsplit('.').next().unwrap_or("?").to_owned()
    }
    #[cfg(Py_LIMITED_API)]
    {
        // SAFETY: valid type object, attached thread.
        match unsafe { Object::from_result(ffi::PyType_GetName(tp)) } {
            Ok(name) => name
                .to_str()
                .map(str::to_owned)
                .unwrap_or_else(|_| "?".into()),
            Err(_) => "?".to_owned(),
        }
    }
}
