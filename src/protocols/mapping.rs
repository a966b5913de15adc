//! The mapping protocol: `len(obj)`, `obj[key]`, `obj[key] = value`, `del obj[key]`.
//!
//! | Python | builder method | C slot |
//! | --- | --- | --- |
//! | `len(obj)` | [`def_len`](MappingProtocolBuilder::def_len) | `mp_length` |
//! | `obj[key]` | [`def_getitem`](MappingProtocolBuilder::def_getitem) | `mp_subscript` |
//! | `obj[key] = v`, `del obj[key]` | [`def_setitem`](MappingProtocolBuilder::def_setitem) (one handler, `Option<V>`) or [`def_setitem_delitem`](MappingProtocolBuilder::def_setitem_delitem) (two) | `mp_ass_subscript` |
//!
//! Keys are any [`Arg`]: take `&Object` to receive slices and anything else as is
//! (borrowed for the call), an [`Index`](crate::protocols::Index) for `list`-like integer indexing,
//! a `String` for string keys. `mp_subscript` is also the fast path for integer indexing:
//! CPython tries it before `sq_item`.

use core::ffi::c_void;

use pyo3_ffi as ffi;

use crate::cell::PyClass;
use crate::convert::{Arg, FromPy, HandlerOutput};
use crate::method::Receiver;
use crate::trampoline::{self, assert_zst};
use crate::type_builder::TypeBuilder;

/// Installs mapping-protocol slots on a [`TypeBuilder`].
///
/// ```
/// # pontoneer::doctest_module(|m| {
/// use std::collections::BTreeMap;
/// use pontoneer::prelude::*;
/// use pontoneer::protocols::mapping::MappingProtocolBuilder;
/// #[derive(Default)]
/// struct Registry { items: BTreeMap<String, i64> }
/// impl PyClass for Registry { const NAME: &'static core::ffi::CStr = c"Registry"; }
/// fn get(r: &Registry, k: String) -> PyResult<i64> {
///     r.items.get(&k).copied().ok_or_else(|| PyErr::key_error(k))
/// }
/// fn set(r: &mut Registry, k: String, v: Option<i64>) -> PyResult<()> {
///     match v {
///         Some(v) => { r.items.insert(k, v); Ok(()) }
///         None => r.items.remove(&k).map(drop).ok_or_else(|| PyErr::key_error(k)),
///     }
/// }
/// let t = m.add_type::<Registry>()?.def_init_default();
/// MappingProtocolBuilder::new(t)
///     .def_len(|r: &Registry| r.items.len())
///     .def_getitem(get)
///     .def_setitem(set);
/// # Ok(()) }, "r = m.Registry(); r['a'] = 1; assert r['a'] == 1 and len(r) == 1; del r['a']; assert len(r) == 0");
/// ```
pub struct MappingProtocolBuilder<'t, T> {
    ty: &'t mut TypeBuilder<T>,
}

impl<'t, T: PyClass> MappingProtocolBuilder<'t, T> {
    /// Wraps a type builder.
    pub fn new(ty: &'t mut TypeBuilder<T>) -> Self {
        MappingProtocolBuilder { ty }
    }

    /// `mp_length` — `len(obj)`. The handler returns `usize`.
    pub fn def_len<F, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (), R, K>,
        R: HandlerOutput<Value = usize> + 'static,
        K: 'static,
    {
        super::install_len(self.ty, ffi::Py_mp_length, handler);
        self
    }

    /// `mp_subscript` — `obj[key]`.
    pub fn def_getitem<F, Key, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (Key,), R, K>,
        Key: Arg + 'static,
        R: HandlerOutput + 'static,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::binaryfunc = trampoline::binaryfunc_self::<T, F, Key, R, K>;
        // SAFETY: typeslots — mp_subscript is a `binaryfunc`, called with the instance first.
        unsafe { self.ty.push_slot(ffi::Py_mp_subscript, f as *mut c_void) };
        self
    }

    /// `mp_ass_subscript` — `obj[key] = value` (`Some(value)`) and `del obj[key]` (`None`),
    /// in one handler with one receiver kind.
    pub fn def_setitem<F, Key, V, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (Key, Option<V>), R, K>,
        Key: Arg + 'static,
        V: FromPy + 'static,
        R: HandlerOutput<Value = ()> + 'static,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::objobjargproc = trampoline::objobjargproc::<T, F, Key, V, R, K>;
        // SAFETY: typeslots — mp_ass_subscript is an `objobjargproc`.
        unsafe {
            self.ty
                .push_slot(ffi::Py_mp_ass_subscript, f as *mut c_void)
        };
        self
    }

    /// `mp_ass_subscript` with separate handlers for `obj[key] = value` and `del obj[key]`,
    /// each with the receiver it needs. The idiom for exporters: set an element in a `Cell`
    /// through `&T` (allowed while a buffer view is exported, and seen through it), delete
    /// through `&mut T` (refused with `BufferError` while exported).
    pub fn def_setitem_delitem<S, Key, V, RS, KS, D, RD, KD>(self, set: S, del: D) -> Self
    where
        S: Receiver<T, (Key, V), RS, KS>,
        D: Receiver<T, (Key,), RD, KD>,
        Key: Arg + 'static,
        V: Arg + 'static,
        RS: HandlerOutput<Value = ()> + 'static,
        RD: HandlerOutput<Value = ()> + 'static,
        KS: 'static,
        KD: 'static,
    {
        assert_zst(&set);
        assert_zst(&del);
        let f: ffi::objobjargproc =
            trampoline::objobjargproc_split::<T, S, D, Key, V, RS, RD, KS, KD>;
        // SAFETY: typeslots — mp_ass_subscript is an `objobjargproc`.
        unsafe {
            self.ty
                .push_slot(ffi::Py_mp_ass_subscript, f as *mut c_void)
        };
        self
    }
}
