//! The sequence protocol: `len`, integer indexing, `in`, concatenation and repetition.
//!
//! | Python | builder method | C slot |
//! | --- | --- | --- |
//! | `len(obj)` | [`def_len`](SequenceProtocolBuilder::def_len) | `sq_length` |
//! | `obj[i]` | [`def_getitem`](SequenceProtocolBuilder::def_getitem) | `sq_item` |
//! | `obj[i] = v`, `del obj[i]` | [`def_setitem`](SequenceProtocolBuilder::def_setitem) | `sq_ass_item` |
//! | `x in obj` | [`def_contains`](SequenceProtocolBuilder::def_contains) | `sq_contains` |
//! | `obj + other` | [`def_concat`](SequenceProtocolBuilder::def_concat) | `sq_concat` |
//! | `obj * n` | [`def_repeat`](SequenceProtocolBuilder::def_repeat) | `sq_repeat` |
//! | `obj += other` | [`def_iconcat`](SequenceProtocolBuilder::def_iconcat) | `sq_inplace_concat` |
//! | `obj *= n` | [`def_irepeat`](SequenceProtocolBuilder::def_irepeat) | `sq_inplace_repeat` |
//!
//! **Negative indices.** When the type has `sq_length`, CPython adds `len(obj)` to a
//! negative index *before* calling `sq_item`/`sq_ass_item` (`obj[-1]` arrives as
//! `len - 1`; `obj[-len - 1]` arrives as `-1`): handlers must still bounds-check. Without
//! `sq_length` they receive the index unchanged. `obj[i]` syntax goes through `mp_subscript`
//! first when the type has one (see [`mapping`](super::mapping)), which is faster.
//!
//! **`sq_concat` is not an operator slot.** Its result is returned as is (it cannot say
//! `NotImplemented`), so a type whose `+` must refuse foreign operands politely uses
//! [`NumberProtocolBuilder::def_add`](super::number::NumberProtocolBuilder::def_add).

use core::ffi::c_void;

use pyo3_ffi as ffi;

use crate::cell::PyClass;
use crate::convert::{Arg, FromPy, HandlerOutput};
use crate::method::Receiver;
use crate::trampoline::{self, assert_zst};
use crate::type_builder::TypeBuilder;

/// Installs sequence-protocol slots on a [`TypeBuilder`].
///
/// ```
/// # pontoneer::doctest_module(|m| {
/// use pontoneer::prelude::*;
/// use pontoneer::protocols::sequence::SequenceProtocolBuilder;
/// struct Squares { n: usize }
/// impl PyClass for Squares { const NAME: &'static core::ffi::CStr = c"Squares"; }
/// fn item(s: &Squares, i: isize) -> PyResult<usize> {
///     usize::try_from(i).ok().filter(|&i| i < s.n).map(|i| i * i)
///         .ok_or_else(|| PyErr::index_error("Squares index out of range"))
/// }
/// let t = m.add_type::<Squares>()?.def_init(|n: usize| Squares { n });
/// SequenceProtocolBuilder::new(t)
///     .def_len(|s: &Squares| s.n)
///     .def_getitem(item)
///     .def_contains(|s: &Squares, x: usize| (x as f64).sqrt().fract() == 0.0 && x < s.n * s.n);
/// # Ok(()) }, "s = m.Squares(4); assert list(s) == [0, 1, 4, 9] and s[-1] == 9 and 4 in s and 5 not in s");
/// ```
pub struct SequenceProtocolBuilder<'t, T> {
    ty: &'t mut TypeBuilder<T>,
}

impl<'t, T: PyClass> SequenceProtocolBuilder<'t, T> {
    /// Wraps a type builder.
    pub fn new(ty: &'t mut TypeBuilder<T>) -> Self {
        SequenceProtocolBuilder { ty }
    }

    /// `sq_length` — `len(obj)`. The handler returns `usize`.
    pub fn def_len<F, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (), R, K>,
        R: HandlerOutput<Value = usize> + 'static,
        K: 'static,
    {
        super::install_len(self.ty, ffi::Py_sq_length, handler);
        self
    }

    /// `sq_item` — `obj[i]`, iteration without `tp_iter`. The handler gets `isize` (see the
    /// module docs on negative indices) and raises `IndexError` when out of range (which
    /// also ends `for` loops).
    pub fn def_getitem<F, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (isize,), R, K>,
        R: HandlerOutput + 'static,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::ssizeargfunc = trampoline::ssizeargfunc::<T, F, R, K>;
        // SAFETY: typeslots — sq_item is an `ssizeargfunc`.
        unsafe { self.ty.push_slot(ffi::Py_sq_item, f as *mut c_void) };
        self
    }

    /// `sq_ass_item` — `obj[i] = v` (`Some(v)`) and `del obj[i]` (`None`).
    pub fn def_setitem<F, V, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (isize, Option<V>), R, K>,
        V: FromPy + 'static,
        R: HandlerOutput<Value = ()> + 'static,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::ssizeobjargproc = trampoline::ssizeobjargproc::<T, F, V, R, K>;
        // SAFETY: typeslots — sq_ass_item is an `ssizeobjargproc`.
        unsafe { self.ty.push_slot(ffi::Py_sq_ass_item, f as *mut c_void) };
        self
    }

    /// `sq_contains` — `x in obj`. The handler returns `bool`.
    pub fn def_contains<F, A, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (A,), R, K>,
        A: Arg + 'static,
        R: HandlerOutput<Value = bool> + 'static,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::objobjproc = trampoline::objobjproc::<T, F, A, R, K>;
        // SAFETY: typeslots — sq_contains is an `objobjproc`.
        unsafe { self.ty.push_slot(ffi::Py_sq_contains, f as *mut c_void) };
        self
    }

    /// `sq_concat` — `obj + other` when no `nb_add` handles it (see the module docs).
    pub fn def_concat<F, A, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (A,), R, K>,
        A: Arg + 'static,
        R: HandlerOutput + 'static,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::binaryfunc = trampoline::binaryfunc_self::<T, F, A, R, K>;
        // SAFETY: typeslots — sq_concat is a `binaryfunc`, called with the instance first.
        unsafe { self.ty.push_slot(ffi::Py_sq_concat, f as *mut c_void) };
        self
    }

    /// `sq_repeat` — `obj * n` (and `n * obj`): the handler gets `n`.
    pub fn def_repeat<F, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (isize,), R, K>,
        R: HandlerOutput + 'static,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::ssizeargfunc = trampoline::ssizeargfunc::<T, F, R, K>;
        // SAFETY: typeslots — sq_repeat is an `ssizeargfunc`.
        unsafe { self.ty.push_slot(ffi::Py_sq_repeat, f as *mut c_void) };
        self
    }

    /// `sq_inplace_concat` — `obj += other`; the slot returns the object itself. The handler
    /// returns `()`: unlike number slots, this slot cannot answer `NotImplemented` (CPython
    /// returns its result as is), so an operand that does not convert is a `TypeError`.
    pub fn def_iconcat<F, A, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (A,), R, K>,
        A: Arg + 'static,
        R: HandlerOutput<Value = ()> + 'static,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::binaryfunc = trampoline::binaryfunc_inplace::<T, F, A, R, K, false>;
        // SAFETY: typeslots — sq_inplace_concat is a `binaryfunc`, called with the instance.
        unsafe {
            self.ty
                .push_slot(ffi::Py_sq_inplace_concat, f as *mut c_void)
        };
        self
    }

    /// `sq_inplace_repeat` — `obj *= n`; the slot returns the object itself (the handler
    /// returns `()`; this slot cannot answer `NotImplemented`).
    pub fn def_irepeat<F, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (isize,), R, K>,
        R: HandlerOutput<Value = ()> + 'static,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::ssizeargfunc = trampoline::ssizeargfunc_inplace::<T, F, R, K>;
        // SAFETY: typeslots — sq_inplace_repeat is an `ssizeargfunc`.
        unsafe {
            self.ty
                .push_slot(ffi::Py_sq_inplace_repeat, f as *mut c_void)
        };
        self
    }
}
