//! Handler signatures and positional argument extraction for methods, static methods,
//! module functions and constructors: arguments arrive as a C array (`METH_FASTCALL`,
//! vectorcall) or directly (`METH_O`, `METH_NOARGS`, chosen for handlers of one or no
//! argument), never as a tuple or dict on the hot path.
//!
//! A handler is any fn item or non-capturing closure of the right shape:
//! - [`Method`]: `Fn(&T, A1, .., An) -> R`
//! - [`MethodMut`]: `Fn(&mut T, A1, .., An) -> R`
//! - [`Function`]: `Fn(A1, .., An) -> R` (static methods, module functions, constructors)
//!
//! with `n ≤ 6`, each `Ai:` [`Arg`] (an owned [`FromPy`](crate::FromPy) value, or a borrowed
//! `&Object`/`PyRef<'_, T>`) and `R: HandlerOutput`. A signature that does not fit is a
//! compile error at the `def_*` call.
//!
//! # Safety (module level)
//! The raw-argument helpers are called by trampolines with the pointers CPython passed.

use core::ffi::CStr;

use pyo3_ffi as ffi;

use crate::convert::Arg;
use crate::error::{PyErr, PyResult};
use crate::object::Object;

/// The most positional arguments a handler may take.
pub const MAX_ARGS: usize = 6;

/// A handler with a `&T` receiver.
pub trait Method<T, A: FromArgs, R>: Copy + 'static {
    /// Calls the handler.
    fn call(self, this: &T, args: A::Items<'_>) -> R;
}

/// A handler with a `&mut T` receiver.
pub trait MethodMut<T, A: FromArgs, R>: Copy + 'static {
    /// Calls the handler.
    fn call_mut(self, this: &mut T, args: A::Items<'_>) -> R;
}

/// A handler without a receiver.
pub trait Function<A: FromArgs, R>: Copy + 'static {
    /// Calls the handler.
    fn call(self, args: A::Items<'_>) -> R;
}

/// A handler with the raw receiver: `Fn(RawSelf<T>, A1, .., An) -> R`. The layer takes no
/// borrow; the handler decides (see [`RawSelf`]).
pub trait RawMethod<T, A: FromArgs, R>: Copy + 'static {
    /// Calls the handler.
    fn call_raw(self, this: RawSelf<'_, T>, args: A::Items<'_>) -> R;
}

/// The raw receiver, for embedders who need the object itself: its pointer, its export
/// count, and — `unsafe`, bypassing the borrow flag — its value. The type is still checked
/// (a `RawSelf<T>` only ever wraps a `T` instance), but aliasing is the handler's business.
///
/// ```
/// # pontoneer::doctest_module(|m| {
/// use pontoneer::prelude::*;
/// use pontoneer::RawSelf;
/// #[derive(Default)]
/// struct Blob { data: Vec<u8> }
/// impl PyClass for Blob { const NAME: &'static core::ffi::CStr = c"Blob"; }
/// fn grow(this: RawSelf<'_, Blob>, n: usize) -> PyResult<usize> {
///     this.ensure_not_exported()?;
///     let mut blob = this.borrow_mut()?;     // the checked way
///     let len = blob.data.len();
///     blob.data.resize(len + n, 0);
///     Ok(blob.data.len())
/// }
/// fn len_unchecked(this: RawSelf<'_, Blob>) -> usize {
///     // SAFETY: no &mut Blob exists while this read-only handler runs: every mutation of a
///     // Blob goes through `grow`, which holds the borrow flag and never calls back into Python.
///     unsafe { this.get() }.data.len()
/// }
/// m.add_type::<Blob>()?.def_init_default()
///     .def_method_raw(c"grow", grow)
///     .def_method_raw(c"size", len_unchecked);
/// # Ok(()) }, "b = m.Blob(); assert b.grow(3) == 3 and b.size() == 3");
/// ```
pub struct RawSelf<'a, T> {
    cell: &'a crate::cell::PyCell<T>,
}

impl<'a, T: crate::PyClass> RawSelf<'a, T> {
    /// The object (borrowed).
    pub fn as_ptr(&self) -> *mut ffi::PyObject {
        (self.cell as *const crate::cell::PyCell<T>)
            .cast_mut()
            .cast()
    }
    /// Number of live buffer exports.
    pub fn exports(&self) -> isize {
        self.cell.exports()
    }
    /// `BufferError` while buffers are exported.
    pub fn ensure_not_exported(&self) -> PyResult<()> {
        // SAFETY: the cell is a live T instance, attached thread.
        unsafe { crate::cell::ensure_not_exported::<T>(self.as_ptr()) }
    }
    /// A checked shared borrow (`RuntimeError` on conflict).
    pub fn borrow(&self) -> PyResult<impl core::ops::Deref<Target = T> + 'a> {
        self.cell.try_borrow()
    }
    /// A checked exclusive borrow (`RuntimeError` on conflict, `BufferError` while
    /// exporting).
    pub fn borrow_mut(&self) -> PyResult<impl core::ops::DerefMut<Target = T> + 'a> {
        self.cell.try_borrow_mut()
    }
    /// The value, without touching the borrow flag.
    ///
    /// # Safety
    /// No `&mut T` to this value may exist while the returned reference is used (none is
    /// created by the layer unless some handler holds an exclusive borrow: a `&mut T` method
    /// running further up the stack, or a live [`borrow_mut`](Self::borrow_mut)).
    pub unsafe fn get(&self) -> &'a T {
        // SAFETY: caller's contract.
        unsafe { self.cell.value_unchecked() }
    }
    /// The value mutably, without touching the borrow flag or the export count.
    ///
    /// # Safety
    /// No other reference to this value may exist while the returned one is used, and the
    /// caller must not move or free memory that a buffer view exports (check
    /// [`exports`](Self::exports)).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get_mut(&self) -> &'a mut T {
        // SAFETY: caller's contract.
        unsafe { self.cell.value_mut_unchecked() }
    }
}

/// Marker: the handler takes the raw receiver [`RawSelf<T>`].
#[derive(Clone, Copy, Debug)]
pub struct Raw;

impl<T: crate::PyClass, F: RawMethod<T, A, R>, A: FromArgs, R> Receiver<T, A, R, Raw> for F {
    #[inline(always)]
    fn invoke(self, cell: &crate::cell::PyCell<T>, args: A::Items<'_>) -> PyResult<R> {
        Ok(self.call_raw(RawSelf { cell }, args))
    }
}

/// A tuple of handler parameters ([`Arg`]s), converted from positional Python arguments.
pub trait FromArgs: Sized {
    /// The number of arguments.
    const N: usize;
    /// The values a handler receives for one call (borrowing the arguments for `'a`).
    type Items<'a>;
    /// Converts exactly `Self::N` arguments; `name` gives the function name for messages.
    ///
    /// # Safety
    /// Every pointer in `args` is a live object kept alive for `'a`; the thread is attached.
    #[doc(hidden)]
    unsafe fn from_args<'a>(
        args: &'a [*mut ffi::PyObject],
        name: fn() -> &'static str,
    ) -> PyResult<Self::Items<'a>>;
}

// Each handler impl names the parameters twice: `Fn(&T, A0, ..)` lets the compiler read the
// parameter types off the handler's signature, and `for<'a> Fn(&T, A0::Item<'a>, ..)` requires
// the handler to accept borrowed parameters (`&Object`, `PyRef<'_, T>`) for *any* lifetime, so
// they cannot escape the call. For owned parameters the two bounds are the same. The handler is
// called through `call_n`, where only the second bound applies.
macro_rules! arities {
    ($($n:expr => ($($a:ident $i:tt),*);)*) => {$(
        impl<T, F, R, $($a: Arg,)*> Method<T, ($($a,)*), R> for F
        where
            F: Fn(&T, $($a),*) -> R + Copy + 'static,
            F: for<'a> Fn(&T, $($a::Item<'a>),*) -> R,
        {
            #[inline(always)]
            #[allow(non_snake_case, unused_variables, clippy::unused_unit)]
            fn call<'a>(self, this: &T, args: ($($a::Item<'a>,)*)) -> R {
                #[inline(always)]
                fn call_n<T, R, $($a,)*>(f: impl Fn(&T, $($a),*) -> R, this: &T, args: ($($a,)*)) -> R {
                    f(this, $(args.$i),*)
                }
                call_n(self, this, args)
            }
        }

        impl<T, F, R, $($a: Arg,)*> MethodMut<T, ($($a,)*), R> for F
        where
            F: Fn(&mut T, $($a),*) -> R + Copy + 'static,
            F: for<'a> Fn(&mut T, $($a::Item<'a>),*) -> R,
        {
            #[inline(always)]
            #[allow(non_snake_case, unused_variables, clippy::unused_unit)]
            fn call_mut<'a>(self, this: &mut T, args: ($($a::Item<'a>,)*)) -> R {
                #[inline(always)]
                fn call_n<T, R, $($a,)*>(f: impl Fn(&mut T, $($a),*) -> R, this: &mut T, args: ($($a,)*)) -> R {
                    f(this, $(args.$i),*)
                }
                call_n(self, this, args)
            }
        }

        impl<F, R, $($a: Arg,)*> Function<($($a,)*), R> for F
        where
            F: Fn($($a),*) -> R + Copy + 'static,
            F: for<'a> Fn($($a::Item<'a>),*) -> R,
        {
            #[inline(always)]
            #[allow(non_snake_case, unused_variables, clippy::unused_unit)]
            fn call<'a>(self, args: ($($a::Item<'a>,)*)) -> R {
                #[inline(always)]
                fn call_n<R, $($a,)*>(f: impl Fn($($a),*) -> R, args: ($($a,)*)) -> R {
                    f($(args.$i),*)
                }
                call_n(self, args)
            }
        }

        impl<T, F, R, $($a: Arg,)*> RawMethod<T, ($($a,)*), R> for F
        where
            F: Fn(RawSelf<'_, T>, $($a),*) -> R + Copy + 'static,
            F: for<'a> Fn(RawSelf<'_, T>, $($a::Item<'a>),*) -> R,
        {
            #[inline(always)]
            #[allow(non_snake_case, unused_variables, clippy::unused_unit)]
            fn call_raw<'a>(self, this: RawSelf<'_, T>, args: ($($a::Item<'a>,)*)) -> R {
                #[inline(always)]
                fn call_n<T, R, $($a,)*>(f: impl Fn(RawSelf<'_, T>, $($a),*) -> R, this: RawSelf<'_, T>, args: ($($a,)*)) -> R {
                    f(this, $(args.$i),*)
                }
                call_n(self, this, args)
            }
        }

        impl<$($a: Arg,)*> FromArgs for ($($a,)*) {
            const N: usize = $n;
            type Items<'a> = ($($a::Item<'a>,)*);
            #[inline(always)]
            #[allow(unused_variables, clippy::unused_unit)]
            unsafe fn from_args<'a>(
                args: &'a [*mut ffi::PyObject],
                name: fn() -> &'static str,
            ) -> PyResult<Self::Items<'a>> {
                if args.len() != $n {
                    return Err(arg_count_error(name(), $n, args.len()));
                }
                Ok(($(
                    // SAFETY: caller's contract (live arguments for 'a, attached thread).
                    unsafe { convert_arg::<$a>(&args[$i], $i, name) }?,
                )*))
            }
        }
    )*};
}

arities! {
    0 => ();
    1 => (A0 0);
    2 => (A0 0, A1 1);
    3 => (A0 0, A1 1, A2 2);
    4 => (A0 0, A1 1, A2 2, A3 3);
    5 => (A0 0, A1 1, A2 2, A3 3, A4 4);
    6 => (A0 0, A1 1, A2 2, A3 3, A4 4, A5 5);
}

/// Converts argument `index` (0-based), naming the function and position on failure.
///
/// # Safety
/// `*slot` is a live object kept alive for `'a`; the thread is attached.
#[inline(always)]
unsafe fn convert_arg<'a, A: Arg>(
    slot: &'a *mut ffi::PyObject,
    index: usize,
    name: fn() -> &'static str,
) -> PyResult<A::Item<'a>> {
    // SAFETY: caller's contract; the view takes and gives back no reference.
    let obj = unsafe { Object::from_slot(slot) };
    // SAFETY: attached (caller's contract).
    unsafe { A::from_arg(obj) }.map_err(|e| arg_error(e, name(), index))
}

#[cold]
#[inline(never)]
fn arg_error(e: PyErr, name: &str, index: usize) -> PyErr {
    e.map_lazy_message(|m| format!("{name}() argument {}: {m}", index + 1))
}

#[cold]
#[inline(never)]
fn arg_count_error(name: &str, expected: usize, given: usize) -> PyErr {
    PyErr::type_error(match expected {
        0 => format!("{name}() takes no arguments ({given} given)"),
        1 => format!("{name}() takes exactly one argument ({given} given)"),
        n => format!("{name}() takes exactly {n} arguments ({given} given)"),
    })
}

/// The Python-facing name of a handler, for error messages: the last path segment of a fn
/// item (`FloatBuffer::append` → `append`); closures are named after the function they are
/// written in.
#[inline(always)]
pub(crate) fn name_of<F>() -> &'static str {
    last_segment(core::any::type_name::<F>())
}

/// The non-generic part of [`name_of`].
#[inline(never)]
fn last_segment(full: &'static str) -> &'static str {
    let trimmed = full.strip_suffix("::{{closure}}").unwrap_or(full);
    // Rust paths only contain ':' in "::" separators; a char split keeps the binary free of
    // the substring searcher.
    trimmed.rsplit(':').next().unwrap_or(trimmed)
}

/// The name of class `T`, for constructor messages (`Matrix() argument 1: ...`).
pub(crate) fn class_name<T: crate::PyClass>() -> &'static str {
    T::NAME.to_str().unwrap_or("?")
}

/// The `METH_FASTCALL` argument array as a slice.
///
/// # Safety
/// `args` points to `nargs` valid object pointers (or `nargs` is 0).
#[inline(always)]
pub(crate) unsafe fn fast_args<'a>(
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> &'a [*mut ffi::PyObject] {
    if nargs <= 0 {
        &[]
    } else {
        // SAFETY: caller's contract.
        unsafe { core::slice::from_raw_parts(args, nargs as usize) }
    }
}

/// The vectorcall argument array as a slice; keyword arguments are refused.
///
/// # Safety
/// CPython's vectorcall contract for `args`, `nargsf`, `kwnames`.
#[inline(always)]
pub(crate) unsafe fn vector_args<'a>(
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
    type_name: &'static CStr,
) -> PyResult<&'a [*mut ffi::PyObject]> {
    // SAFETY: `kwnames` is NULL or a tuple.
    if !kwnames.is_null() && unsafe { tuple_len(kwnames) } != 0 {
        return Err(no_keywords(type_name));
    }
    // PyVectorcall_NARGS: the top bit is PY_VECTORCALL_ARGUMENTS_OFFSET, the rest the count.
    let n = (nargsf & !(1usize << (usize::BITS - 1))) as ffi::Py_ssize_t;
    // SAFETY: caller's contract.
    Ok(unsafe { fast_args(args.cast_mut(), n) })
}

/// `len(t)` of a tuple: the `PyTuple_GET_SIZE` field read where the layout is visible.
///
/// # Safety
/// `t` is a tuple.
#[inline(always)]
unsafe fn tuple_len(t: *mut ffi::PyObject) -> ffi::Py_ssize_t {
    #[cfg(not(Py_LIMITED_API))]
    // SAFETY: caller's contract.
    return unsafe { ffi::PyTuple_GET_SIZE(t) };
    #[cfg(Py_LIMITED_API)]
    // SAFETY: caller's contract.
    return unsafe { ffi::PyTuple_Size(t) };
}

#[cold]
#[inline(never)]
fn no_keywords(type_name: &CStr) -> PyErr {
    PyErr::type_error(format!(
        "{}() takes no keyword arguments",
        type_name.to_string_lossy()
    ))
}

/// The positional arguments of a `tp_new` call (a tuple), copied to a small array.
pub(crate) struct TupleArgs {
    items: [*mut ffi::PyObject; MAX_ARGS],
    len: usize,
}

impl TupleArgs {
    /// Reads exactly `expected` positional arguments (`TypeError` for any other count or
    /// for keyword arguments).
    ///
    /// # Safety
    /// `args` is a tuple and `kwargs` NULL or a dict, as CPython passes to `tp_new`.
    pub(crate) unsafe fn new(
        args: *mut ffi::PyObject,
        kwargs: *mut ffi::PyObject,
        type_name: &'static CStr,
        expected: usize,
    ) -> PyResult<TupleArgs> {
        // SAFETY: `kwargs` is NULL or a dict.
        if !kwargs.is_null() && unsafe { ffi::PyDict_Size(kwargs) } != 0 {
            return Err(no_keywords(type_name));
        }
        // SAFETY: `args` is a tuple.
        let n = unsafe { tuple_len(args) }.max(0) as usize;
        if n != expected || n > MAX_ARGS {
            return Err(arg_count_error(&type_name.to_string_lossy(), expected, n));
        }
        let mut items = [core::ptr::null_mut(); MAX_ARGS];
        for (i, slot) in items.iter_mut().enumerate().take(n) {
            // SAFETY: `i < n`; PyTuple_GetItem returns a borrowed reference.
            *slot = unsafe { ffi::PyTuple_GetItem(args, i as ffi::Py_ssize_t) };
        }
        Ok(TupleArgs { items, len: n })
    }

    /// The arguments.
    pub(crate) fn as_slice(&self) -> &[*mut ffi::PyObject] {
        &self.items[..self.len]
    }
}

/// Marker: the handler takes `&T`.
#[derive(Clone, Copy, Debug)]
pub struct Shared;
/// Marker: the handler takes `&mut T` (refused while borrowed or exporting buffers).
#[derive(Clone, Copy, Debug)]
pub struct Exclusive;

/// A handler with either receiver kind: `Fn(&T, ..)` (`K = Shared`) or `Fn(&mut T, ..)`
/// (`K = Exclusive`). The marker is inferred from the handler's signature, so protocol slots
/// accept both forms through one installer and one trampoline.
pub trait Receiver<T, A: FromArgs, R, K>: Copy + 'static {
    /// Borrows the instance as the handler needs and calls it.
    #[doc(hidden)]
    fn invoke(self, cell: &crate::cell::PyCell<T>, args: A::Items<'_>) -> PyResult<R>;
}

impl<T: crate::PyClass, F: Method<T, A, R>, A: FromArgs, R> Receiver<T, A, R, Shared> for F {
    #[inline(always)]
    fn invoke(self, cell: &crate::cell::PyCell<T>, args: A::Items<'_>) -> PyResult<R> {
        let this = cell.try_borrow()?;
        Ok(self.call(&this, args))
    }
}

impl<T: crate::PyClass, F: MethodMut<T, A, R>, A: FromArgs, R> Receiver<T, A, R, Exclusive> for F {
    #[inline(always)]
    fn invoke(self, cell: &crate::cell::PyCell<T>, args: A::Items<'_>) -> PyResult<R> {
        let mut this = cell.try_borrow_mut()?;
        Ok(self.call_mut(&mut this, args))
    }
}

/// Converts one slot argument (a `PyObject *` parameter of the slot function, borrowed for
/// the call), naming the handler on failure.
///
/// # Safety
/// `*slot` is a live object kept alive for `'a`; the thread is attached.
#[inline(always)]
pub(crate) unsafe fn slot_arg<'a, A: Arg>(
    slot: &'a *mut ffi::PyObject,
    index: usize,
    name: fn() -> &'static str,
) -> PyResult<A::Item<'a>> {
    // SAFETY: caller's contract.
    unsafe { convert_arg::<A>(slot, index, name) }
}
