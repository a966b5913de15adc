//! Python exceptions as Rust values: [`PyErr`], [`PyResult`], the built-in exception kinds,
//! custom exception types, and the conversion of a Rust panic into `PanicException`.
//!
//! A `PyErr` is usually *lazy*: a kind plus a message, turned into a Python exception only
//! when it is restored at the trampoline boundary (so building an error that a handler then
//! discards costs no Python allocation). An exception that Python already raised is
//! *fetched* into a `PyErr` and restored unchanged.
//!
//! # Safety (module level)
//! The functions that touch the interpreter are only called with the thread attached: from a
//! trampoline, from module init, or from code that holds an `Object` (which only exists on an
//! attached thread).

use core::any::TypeId;
use core::ffi::CStr;
use std::borrow::Cow;

use pyo3_ffi as ffi;

use crate::object::{self, Object};
use crate::trampoline::Cx;

/// The result type of every fallible handler and conversion.
pub type PyResult<T> = Result<T, PyErr>;

/// A Python exception type: one of CPython's built-ins, or a custom type declared with
/// [`PyException`] and registered by [`ModuleBuilder::add_exception`](crate::ModuleBuilder::add_exception).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExceptionType(Kind);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Builtin(Builtin),
    Custom { id: TypeId, name: &'static CStr },
}

macro_rules! builtin_exceptions {
    ($($name:ident => $ffi:ident, $ctor:ident;)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[allow(clippy::enum_variant_names)]
        enum Builtin { $($name),* }

        impl Builtin {
            fn type_object(self) -> *mut ffi::PyObject {
                match self {
                    // SAFETY: reading the address stored in a CPython exception-type global,
                    // initialised before any extension code runs.
                    $(Builtin::$name => unsafe { ffi::$ffi }),*
                }
            }
        }

        impl ExceptionType {
            $(
                #[doc = concat!("Python's built-in `", stringify!($name), "`.")]
                #[allow(non_upper_case_globals)]
                pub const $name: ExceptionType = ExceptionType(Kind::Builtin(Builtin::$name));
            )*
        }

        impl PyErr {
            $(
                #[doc = concat!("A lazy `", stringify!($name), "` with the given message.")]
                pub fn $ctor(msg: impl Into<Cow<'static, str>>) -> PyErr {
                    PyErr::new(ExceptionType::$name, msg)
                }
            )*
        }
    };
}

builtin_exceptions! {
    Exception => PyExc_Exception, exception;
    TypeError => PyExc_TypeError, type_error;
    ValueError => PyExc_ValueError, value_error;
    IndexError => PyExc_IndexError, index_error;
    KeyError => PyExc_KeyError, key_error;
    OverflowError => PyExc_OverflowError, overflow_error;
    ZeroDivisionError => PyExc_ZeroDivisionError, zero_division_error;
    RuntimeError => PyExc_RuntimeError, runtime_error;
    BufferError => PyExc_BufferError, buffer_error;
    MemoryError => PyExc_MemoryError, memory_error;
    AttributeError => PyExc_AttributeError, attribute_error;
    NotImplementedError => PyExc_NotImplementedError, not_implemented_error;
    StopIteration => PyExc_StopIteration, stop_iteration;
    SystemError => PyExc_SystemError, system_error;
    ArithmeticError => PyExc_ArithmeticError, arithmetic_error;
    LookupError => PyExc_LookupError, lookup_error;
    AssertionError => PyExc_AssertionError, assertion_error;
    OSError => PyExc_OSError, os_error;
}

/// A custom exception type, declared in Rust and created per module by
/// [`ModuleBuilder::add_exception`](crate::ModuleBuilder::add_exception).
///
/// ```
/// use pontoneer::{PyErr, PyException, ExceptionType};
/// struct ParseError;
/// impl PyException for ParseError {
///     const NAME: &'static core::ffi::CStr = c"ParseError";
///     const BASE: ExceptionType = ExceptionType::ValueError;
/// }
/// let err = PyErr::custom::<ParseError>("bad token");
/// assert_eq!(err.message(), Some("bad token"));
/// ```
pub trait PyException: 'static {
    /// The exception's `__name__` (the module name is prepended for `__qualname__`).
    const NAME: &'static CStr;
    /// The base class.
    const BASE: ExceptionType = ExceptionType::Exception;
    /// The docstring.
    const DOC: Option<&'static CStr> = None;
}

impl ExceptionType {
    /// The handle of a custom exception type declared with [`PyException`].
    pub fn of<E: PyException>() -> ExceptionType {
        ExceptionType(Kind::Custom {
            id: TypeId::of::<E>(),
            name: E::NAME,
        })
    }

    /// A borrowed pointer to the type object. Custom types are looked up in the module that
    /// `cx` belongs to.
    pub(crate) fn resolve(self, cx: &Cx) -> Result<*mut ffi::PyObject, PyErr> {
        match self.0 {
            Kind::Builtin(b) => Ok(b.type_object()),
            Kind::Custom { id, name } => cx.exception_type(id).ok_or_else(|| {
                PyErr::system_error(format!(
                    "pontoneer: exception type {} was not registered with add_exception",
                    name.to_string_lossy()
                ))
            }),
        }
    }

    /// The builtin base type object, for module init (custom bases are not supported).
    pub(crate) fn builtin_ptr(self) -> Option<*mut ffi::PyObject> {
        match self.0 {
            Kind::Builtin(b) => Some(b.type_object()),
            Kind::Custom { .. } => None,
        }
    }
}

/// A Python exception, pending or already raised.
pub struct PyErr {
    state: State,
}

enum State {
    /// Not yet a Python object: a type and a message.
    Lazy {
        kind: ExceptionType,
        msg: Cow<'static, str>,
    },
    /// Raised by Python and fetched; restored unchanged.
    Fetched(Fetched),
    /// A Rust panic, raised as the module's `PanicException`.
    Panic(String),
}

#[cfg(Py_3_12)]
struct Fetched(Object);

#[cfg(not(Py_3_12))]
struct Fetched {
    ptype: Option<Object>,
    pvalue: Option<Object>,
    ptraceback: Option<Object>,
}

impl PyErr {
    /// A lazy exception of `kind` with `msg`.
    pub fn new(kind: ExceptionType, msg: impl Into<Cow<'static, str>>) -> PyErr {
        PyErr {
            state: State::Lazy {
                kind,
                msg: msg.into(),
            },
        }
    }

    /// A lazy exception of the custom type `E` (registered with `add_exception`).
    pub fn custom<E: PyException>(msg: impl Into<Cow<'static, str>>) -> PyErr {
        PyErr::new(ExceptionType::of::<E>(), msg)
    }

    /// Takes the exception currently set in the interpreter. If none is set (a C-API call
    /// broke its contract), a `SystemError` saying so.
    pub fn fetch() -> PyErr {
        match PyErr::take() {
            Some(e) => e,
            None => {
                PyErr::system_error("pontoneer: a C-API call failed without setting an exception")
            }
        }
    }

    /// Takes the exception currently set in the interpreter, if any.
    pub fn take() -> Option<PyErr> {
        #[cfg(Py_3_12)]
        {
            // SAFETY: attached thread (module contract); returns a new reference or NULL.
            let exc = unsafe { ffi::PyErr_GetRaisedException() };
            core::ptr::NonNull::new(exc).map(|p| PyErr {
                // SAFETY: a non-NULL result is a new reference we now own.
                state: State::Fetched(Fetched(unsafe { Object::from_owned_ptr(p) })),
            })
        }
        #[cfg(not(Py_3_12))]
        {
            let (mut t, mut v, mut tb) = (
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
            );
            // SAFETY: attached thread; the three out-pointers are valid locals.
            unsafe { ffi::PyErr_Fetch(&mut t, &mut v, &mut tb) };
            let own = |p: *mut ffi::PyObject| {
                // SAFETY: PyErr_Fetch hands over new references (or NULL).
                core::ptr::NonNull::new(p).map(|p| unsafe { Object::from_owned_ptr(p) })
            };
            let ptype = own(t)?;
            Some(PyErr {
                state: State::Fetched(Fetched {
                    ptype: Some(ptype),
                    pvalue: own(v),
                    ptraceback: own(tb),
                }),
            })
        }
    }

    /// The exception for a caught panic payload.
    pub(crate) fn from_panic(payload: Box<dyn core::any::Any + Send>) -> PyErr {
        let msg = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "panic with a non-string payload".to_owned()
        };
        PyErr {
            state: State::Panic(msg),
        }
    }

    /// The message of a lazy error (`None` for errors fetched from Python).
    pub fn message(&self) -> Option<&str> {
        match &self.state {
            State::Lazy { msg, .. } => Some(msg),
            State::Panic(msg) => Some(msg),
            State::Fetched(_) => None,
        }
    }

    /// Whether this error is of type `kind` or a subclass of it.
    pub fn is_instance_of(&self, kind: ExceptionType) -> bool {
        match &self.state {
            State::Lazy { kind: k, .. } => *k == kind,
            State::Panic(_) => false,
            State::Fetched(f) => match kind.builtin_ptr() {
                // SAFETY: both are valid objects; attached thread (an Object exists).
                Some(t) => unsafe { ffi::PyErr_GivenExceptionMatches(f.type_ptr(), t) != 0 },
                None => false,
            },
        }
    }

    /// Rewrites a lazy error's message (used to add the function and argument to a
    /// conversion error). Fetched errors are left as they are.
    pub(crate) fn map_lazy_message(mut self, f: impl FnOnce(&str) -> String) -> PyErr {
        if let State::Lazy { msg, .. } = &mut self.state {
            *msg = Cow::Owned(f(msg));
        }
        self
    }

    /// The same error as a `BufferError` (what `bf_getbuffer` must raise): a lazy error keeps
    /// its message; an exception raised by Python becomes a `BufferError` naming it; a panic
    /// stays a panic.
    pub(crate) fn into_buffer_error(self) -> PyErr {
        match self.state {
            State::Lazy { msg, .. } => PyErr::buffer_error(msg),
            State::Panic(_) => self,
            State::Fetched(ref f) => {
                let text = f.describe();
                PyErr::buffer_error(text)
            }
        }
    }

    /// Sets this error as the interpreter's current exception.
    pub(crate) fn restore(self, cx: &Cx) {
        match self.state {
            State::Lazy { kind, msg } => match kind.resolve(cx) {
                Ok(t) => set_message(t, &msg),
                Err(e) => e.restore(cx),
            },
            State::Panic(msg) => {
                let t = cx
                    .panic_exception()
                    // SAFETY: reading CPython's SystemError global.
                    .unwrap_or(unsafe { ffi::PyExc_SystemError });
                set_message(t, &format!("Rust panic: {msg}"));
            }
            #[cfg(Py_3_12)]
            // SAFETY: attached thread; SetRaisedException steals the reference.
            State::Fetched(Fetched(exc)) => unsafe {
                ffi::PyErr_SetRaisedException(exc.into_raw())
            },
            #[cfg(not(Py_3_12))]
            State::Fetched(Fetched {
                ptype,
                pvalue,
                ptraceback,
            }) => {
                let raw = |o: Option<Object>| o.map_or(core::ptr::null_mut(), Object::into_raw);
                // SAFETY: attached thread; PyErr_Restore steals the three references.
                unsafe { ffi::PyErr_Restore(raw(ptype), raw(pvalue), raw(ptraceback)) }
            }
        }
    }

    /// Restores the error and reports it with `sys.unraisablehook` (for slots that have no
    /// error channel: `releasebuffer`, `dealloc`). `obj` is named as the context.
    pub(crate) fn write_unraisable(self, cx: &Cx, obj: *mut ffi::PyObject) {
        self.restore(cx);
        // SAFETY: attached thread, an exception is set; `obj` is NULL or a valid object.
        unsafe { ffi::PyErr_WriteUnraisable(obj) }
    }
}

impl Fetched {
    /// `"TypeName: str(value)"`, for wrapping into another exception's message.
    fn describe(&self) -> String {
        let value = self.value_ptr();
        if value.is_null() {
            return "exception".to_owned();
        }
        // SAFETY: a live object (owned by `self`), attached thread.
        let obj = unsafe { Object::from_borrowed_ptr(core::ptr::NonNull::new_unchecked(value)) };
        let text = obj.str().unwrap_or_default();
        // SAFETY: `str()` may have raised; do not leave that behind.
        unsafe { ffi::PyErr_Clear() };
        format!("{}: {text}", obj.type_name())
    }
}

#[cfg(not(Py_3_12))]
impl Fetched {
    fn value_ptr(&self) -> *mut ffi::PyObject {
        self.pvalue
            .as_ref()
            .map_or(core::ptr::null_mut(), Object::as_ptr)
    }

    fn type_ptr(&self) -> *mut ffi::PyObject {
        self.ptype
            .as_ref()
            .map_or(core::ptr::null_mut(), Object::as_ptr)
    }
}

#[cfg(Py_3_12)]
impl Fetched {
    fn value_ptr(&self) -> *mut ffi::PyObject {
        self.0.as_ptr()
    }

    fn type_ptr(&self) -> *mut ffi::PyObject {
        // SAFETY: a live exception instance; reading its type.
        unsafe { ffi::Py_TYPE(self.0.as_ptr()).cast() }
    }
}

/// `PyErr_SetObject(t, str(msg))`, falling back to the encoding error if the message cannot
/// be made into a `str` (it always can: Rust strings are UTF-8).
fn set_message(t: *mut ffi::PyObject, msg: &str) {
    // SAFETY: attached thread; the pointer/length pair describes valid UTF-8.
    let text = unsafe {
        ffi::PyUnicode_FromStringAndSize(msg.as_ptr().cast(), msg.len() as ffi::Py_ssize_t)
    };
    if text.is_null() {
        return; // MemoryError is already set.
    }
    // SAFETY: `t` is an exception type, `text` a new reference we release after the call.
    unsafe {
        ffi::PyErr_SetObject(t, text);
        object::release(text);
    }
}

impl core::fmt::Debug for PyErr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.state {
            State::Lazy { kind, msg } => write!(f, "PyErr({kind:?}: {msg})"),
            State::Panic(msg) => write!(f, "PyErr(PanicException: {msg})"),
            State::Fetched(_) => f.write_str("PyErr(<raised Python exception>)"),
        }
    }
}

impl core::fmt::Display for PyErr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.message() {
            Some(m) => f.write_str(m),
            None => f.write_str("<raised Python exception>"),
        }
    }
}

impl std::error::Error for PyErr {}

impl From<core::num::TryFromIntError> for PyErr {
    fn from(e: core::num::TryFromIntError) -> PyErr {
        PyErr::overflow_error(e.to_string())
    }
}

impl From<std::collections::TryReserveError> for PyErr {
    fn from(_: std::collections::TryReserveError) -> PyErr {
        PyErr::memory_error("cannot allocate memory")
    }
}

impl From<core::str::Utf8Error> for PyErr {
    fn from(e: core::str::Utf8Error) -> PyErr {
        PyErr::value_error(e.to_string())
    }
}
