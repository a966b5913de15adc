//! The type protocol: comparisons, `repr`/`str`, `hash`, iteration, calling.
//!
//! | Python | builder method | C slot |
//! | --- | --- | --- |
//! | `a < b`, `a == b`, ... | [`def_richcompare`](TypeProtocolBuilder::def_richcompare) | `tp_richcompare` |
//! | `repr(a)` | [`def_repr`](TypeProtocolBuilder::def_repr) | `tp_repr` |
//! | `str(a)` | [`def_str`](TypeProtocolBuilder::def_str) | `tp_str` |
//! | `hash(a)` | [`def_hash`](TypeProtocolBuilder::def_hash) | `tp_hash` |
//! | `iter(a)` | [`def_iter`](TypeProtocolBuilder::def_iter) | `tp_iter` |
//! | `next(a)` | [`def_next`](TypeProtocolBuilder::def_next) | `tp_iternext` |
//! | `a(*args)` | [`def_call`](TypeProtocolBuilder::def_call) | `tp_call` |

use core::ffi::c_void;

use pyo3_ffi as ffi;

use crate::cell::PyClass;
use crate::convert::{Arg, HandlerOutput, IntoPy};
use crate::method::{FromArgs, Receiver};
use crate::protocols::{CompareOp, IntoHash};
use crate::trampoline::{self, assert_zst};
use crate::type_builder::TypeBuilder;

/// Installs type-protocol slots on a [`TypeBuilder`].
///
/// ```
/// # pontoneer::doctest_module(|m| {
/// use pontoneer::prelude::*;
/// use pontoneer::protocols::{CompareOp, type_protocol::TypeProtocolBuilder};
/// #[derive(Default)]
/// struct Version { major: u32 }
/// impl PyClass for Version { const NAME: &'static core::ffi::CStr = c"Version"; }
/// fn compare(v: &Version, other: Object, op: CompareOp) -> Outcome<bool> {
///     match PyRef::<Version>::borrow(&other) {
///         Ok(o) => Outcome::Value(op.matches(v.major.cmp(&o.major))),
///         Err(_) => Outcome::NotImplemented,
///     }
/// }
/// let t = m.add_type::<Version>()?.def_init(|major: u32| Version { major });
/// TypeProtocolBuilder::new(t)
///     .def_richcompare(compare)
///     .def_hash(|v: &Version| v.major as u64)
///     .def_str(|v: &Version| format!("v{}", v.major));
/// # Ok(()) }, "assert m.Version(1) < m.Version(2) and str(m.Version(3)) == 'v3' and hash(m.Version(4)) == 4");
/// ```
pub struct TypeProtocolBuilder<'t, T> {
    ty: &'t mut TypeBuilder<T>,
}

impl<'t, T: PyClass> TypeProtocolBuilder<'t, T> {
    /// Wraps a type builder.
    pub fn new(ty: &'t mut TypeBuilder<T>) -> Self {
        TypeProtocolBuilder { ty }
    }

    /// `tp_richcompare` — `a < b`, `a <= b`, `a == b`, `a != b`, `a > b`, `a >= b`.
    ///
    /// The handler gets the other operand as any [`Arg`] type — `&Object` for
    /// anything, or e.g. `PyRef<'_, T>` to compare with instances only: an operand that does
    /// not convert is `NotImplemented` — and a [`CompareOp`]. It usually returns an
    /// [`Outcome<bool>`](crate::Outcome): `NotImplemented` lets Python try the reflected
    /// comparison and finally fall back to identity (`==`) or `TypeError` (orderings).
    ///
    /// As in Python, a type that defines comparisons but no [`def_hash`](Self::def_hash) is
    /// unhashable (`hash(obj)` raises `TypeError`).
    /// [CPython: `tp_richcompare`](https://docs.python.org/3/c-api/typeobj.html#c.PyTypeObject.tp_richcompare)
    pub fn def_richcompare<F, A, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (A, CompareOp), R, K>,
        A: Arg + 'static,
        R: HandlerOutput + 'static,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::richcmpfunc = trampoline::richcmpfunc::<T, F, A, R, K>;
        // SAFETY: typeslots — tp_richcompare is a `richcmpfunc`.
        unsafe { self.ty.push_slot(ffi::Py_tp_richcompare, f as *mut c_void) };
        self
    }

    /// `tp_repr` — `repr(obj)`.
    pub fn def_repr<F, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (), R, K>,
        R: HandlerOutput + 'static,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::reprfunc = trampoline::unaryfunc::<T, F, R, K>;
        // SAFETY: typeslots — tp_repr is a `reprfunc` (same C type as `unaryfunc`).
        unsafe { self.ty.push_slot(ffi::Py_tp_repr, f as *mut c_void) };
        self
    }

    /// `tp_str` — `str(obj)`.
    pub fn def_str<F, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (), R, K>,
        R: HandlerOutput + 'static,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::reprfunc = trampoline::unaryfunc::<T, F, R, K>;
        // SAFETY: typeslots — tp_str is a `reprfunc`.
        unsafe { self.ty.push_slot(ffi::Py_tp_str, f as *mut c_void) };
        self
    }

    /// `tp_hash` — `hash(obj)`. The handler returns an integer ([`IntoHash`]); a hash of -1
    /// is reported as -2, since -1 means "error" to CPython.
    pub fn def_hash<F, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (), R, K>,
        R: HandlerOutput + 'static,
        R::Value: IntoHash,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::hashfunc = trampoline::hashfunc::<T, F, R, K>;
        // SAFETY: typeslots — tp_hash is a `hashfunc`.
        unsafe { self.ty.push_slot(ffi::Py_tp_hash, f as *mut c_void) };
        self
    }

    /// `tp_iter` — `iter(obj)`, `for x in obj`. Returns the iterator: often a new instance
    /// of another registered class, or the object itself for iterators.
    pub fn def_iter<F, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (), R, K>,
        R: HandlerOutput + 'static,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::getiterfunc = trampoline::unaryfunc::<T, F, R, K>;
        // SAFETY: typeslots — tp_iter is a `getiterfunc` (same C type as `unaryfunc`).
        unsafe { self.ty.push_slot(ffi::Py_tp_iter, f as *mut c_void) };
        self
    }

    /// `tp_iternext` — `next(obj)`. The handler returns `Option<V>` (or `PyResult` of it):
    /// `None` ends the iteration without creating a `StopIteration` object. Usually takes
    /// `&mut T`.
    pub fn def_next<F, R, K, V>(self, handler: F) -> Self
    where
        F: Receiver<T, (), R, K>,
        R: HandlerOutput<Value = Option<V>> + 'static,
        V: IntoPy + 'static,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::iternextfunc = trampoline::iternextfunc::<T, F, R, K, V>;
        // SAFETY: typeslots — tp_iternext is an `iternextfunc`.
        unsafe { self.ty.push_slot(ffi::Py_tp_iternext, f as *mut c_void) };
        self
    }

    /// `tp_iter` returning the object itself: for iterator types, together with
    /// [`def_next`](Self::def_next).
    pub fn def_iter_self(self) -> Self {
        let f: ffi::getiterfunc = trampoline::getiterfunc_self;
        // SAFETY: typeslots — tp_iter is a `getiterfunc`.
        unsafe { self.ty.push_slot(ffi::Py_tp_iter, f as *mut c_void) };
        self
    }

    /// `tp_call` — `obj(*args)`, positional arguments converted like a method's. (Instances
    /// are called through `tp_call`: vectorcall for instances needs a per-instance function
    /// pointer, which the fixed layout does not have.)
    pub fn def_call<F, A, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, A, R, K>,
        A: FromArgs + 'static,
        R: HandlerOutput + 'static,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::ternaryfunc = trampoline::ternaryfunc_call::<T, F, A, R, K>;
        // SAFETY: typeslots — tp_call is a `ternaryfunc`.
        unsafe { self.ty.push_slot(ffi::Py_tp_call, f as *mut c_void) };
        self
    }
}
