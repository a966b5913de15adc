//! Protocol builders: each wraps a [`TypeBuilder`](crate::TypeBuilder) and installs the slots
//! of one protocol from plain Rust functions. One file per protocol; adding a slot is one
//! method in one of these files (plus a trampoline in `trampoline.rs` only if its C typedef
//! is new, plus its test rows).
//!
//! Shared vocabulary lives here: [`CompareOp`], [`Index`], and the small traits that say
//! what a slot's handler may return ([`InPlaceOutput`], [`IntoHash`]).

pub mod buffer;
pub mod mapping;
pub mod number;
pub mod sequence;
pub mod type_protocol;

use core::ffi::c_int;

use pyo3_ffi as ffi;

use crate::convert::{FromPy, Outcome};
use crate::error::{PyErr, PyResult};
use crate::object::Object;

/// The comparison a `tp_richcompare` handler is asked for (`<`, `<=`, `==`, `!=`, `>`,
/// `>=`).
///
/// ```
/// use pontoneer::protocols::CompareOp;
/// use core::cmp::Ordering;
/// assert!(CompareOp::Le.matches(Ordering::Equal));
/// assert_eq!(CompareOp::Lt.reflected(), CompareOp::Gt);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum CompareOp {
    /// `<` (`Py_LT`)
    Lt = ffi::Py_LT,
    /// `<=` (`Py_LE`)
    Le = ffi::Py_LE,
    /// `==` (`Py_EQ`)
    Eq = ffi::Py_EQ,
    /// `!=` (`Py_NE`)
    Ne = ffi::Py_NE,
    /// `>` (`Py_GT`)
    Gt = ffi::Py_GT,
    /// `>=` (`Py_GE`)
    Ge = ffi::Py_GE,
}

/// The Mojo library's name for [`CompareOp`].
pub type RichCompareOps = CompareOp;

impl CompareOp {
    /// From CPython's `op` argument (`Py_LT` ... `Py_GE`).
    pub fn from_raw(op: c_int) -> Option<CompareOp> {
        Some(match op {
            ffi::Py_LT => CompareOp::Lt,
            ffi::Py_LE => CompareOp::Le,
            ffi::Py_EQ => CompareOp::Eq,
            ffi::Py_NE => CompareOp::Ne,
            ffi::Py_GT => CompareOp::Gt,
            ffi::Py_GE => CompareOp::Ge,
            _ => return None,
        })
    }

    /// Whether `ordering` satisfies this comparison.
    pub fn matches(self, ordering: core::cmp::Ordering) -> bool {
        use core::cmp::Ordering::*;
        match self {
            CompareOp::Lt => ordering == Less,
            CompareOp::Le => ordering != Greater,
            CompareOp::Eq => ordering == Equal,
            CompareOp::Ne => ordering != Equal,
            CompareOp::Gt => ordering == Greater,
            CompareOp::Ge => ordering != Less,
        }
    }

    /// The comparison with operands swapped (`a < b` ⇔ `b > a`).
    pub fn reflected(self) -> CompareOp {
        match self {
            CompareOp::Lt => CompareOp::Gt,
            CompareOp::Le => CompareOp::Ge,
            CompareOp::Eq => CompareOp::Eq,
            CompareOp::Ne => CompareOp::Ne,
            CompareOp::Gt => CompareOp::Lt,
            CompareOp::Ge => CompareOp::Le,
        }
    }
}

/// A sequence index as `list` takes it: any object with `__index__`; `TypeError` otherwise,
/// and `IndexError` (not `OverflowError`) for integers beyond `Py_ssize_t`, as `list` does.
/// [`Index::resolve`] applies negative indexing and the bounds check.
///
/// ```
/// use pontoneer::protocols::Index;
/// assert_eq!(Index(-1).resolve(3).unwrap(), 2);
/// assert!(Index(3).resolve(3).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Index(pub isize);

impl Index {
    /// The position in a sequence of length `len`: negative values count from the end;
    /// `IndexError` when out of range.
    pub fn resolve(self, len: usize) -> PyResult<usize> {
        let i = if self.0 < 0 {
            self.0.checked_add_unsigned(len).filter(|i| *i >= 0)
        } else {
            Some(self.0)
        };
        match i {
            Some(i) if (i as usize) < len => Ok(i as usize),
            _ => Err(PyErr::index_error("index out of range")),
        }
    }
}

/// Installs a `len(obj)` handler in `slot`, which must be one of the two `lenfunc` slots
/// (`Py_mp_length`, `Py_sq_length`): shared by the mapping and sequence builders.
pub(crate) fn install_len<T, F, R, K>(
    ty: &mut crate::type_builder::TypeBuilder<T>,
    slot: c_int,
    handler: F,
) where
    T: crate::cell::PyClass,
    F: crate::method::Receiver<T, (), R, K>,
    R: crate::convert::HandlerOutput<Value = usize> + 'static,
    K: 'static,
{
    debug_assert!(slot == ffi::Py_mp_length || slot == ffi::Py_sq_length);
    crate::trampoline::assert_zst(&handler);
    let f: ffi::lenfunc = crate::trampoline::lenfunc::<T, F, R, K>;
    // SAFETY: typeslots — mp_length and sq_length are both `lenfunc`s.
    unsafe { ty.push_slot(slot, f as *mut core::ffi::c_void) };
}

/// A comparison operator passed as CPython's integer code (`Py_LT` = 0 ... `Py_GE` = 5), as
/// `tp_richcompare` receives it; `ValueError` for any other integer.
impl FromPy for CompareOp {
    fn from_py(obj: &Object) -> PyResult<CompareOp> {
        crate::object::attached()?;
        // SAFETY: attached (checked above).
        unsafe { CompareOp::from_py_attached(obj) }
    }
    unsafe fn from_py_attached(obj: &Object) -> PyResult<CompareOp> {
        // SAFETY: caller's contract.
        let code = unsafe { c_int::from_py_attached(obj) }?;
        CompareOp::from_raw(code).ok_or_else(|| {
            PyErr::value_error(format!(
                "{code} is not a comparison operator (Py_LT=0 ... Py_GE=5)"
            ))
        })
    }
}

impl FromPy for Index {
    #[inline]
    fn from_py(obj: &Object) -> PyResult<Index> {
        crate::object::attached()?;
        // SAFETY: attached (checked above).
        unsafe { Index::from_py_attached(obj) }
    }
    #[inline]
    unsafe fn from_py_attached(obj: &Object) -> PyResult<Index> {
        let p = obj.as_ptr();
        // SAFETY: live object, attached thread (caller's contract).
        if unsafe { ffi::PyLong_CheckExact(p) } != 0 {
            // SAFETY: an int; -1 with an exception set means it does not fit.
            let i = unsafe { ffi::PyLong_AsSsize_t(p) };
            // SAFETY: attached thread.
            if i == -1 && !unsafe { ffi::PyErr_Occurred() }.is_null() {
                return Err(index_overflow());
            }
            return Ok(Index(i));
        }
        index_slow(obj)
    }
}

/// `list`'s error for an integer index beyond `Py_ssize_t`.
#[cold]
#[inline(never)]
fn index_overflow() -> PyErr {
    drop(PyErr::fetch());
    PyErr::index_error("cannot fit 'int' into an index-sized integer")
}

#[cold]
#[inline(never)]
fn index_slow(obj: &Object) -> PyResult<Index> {
    // SAFETY: live object, attached thread (conversions run in trampolines).
    if unsafe { ffi::PyIndex_Check(obj.as_ptr()) } == 0 {
        return Err(PyErr::type_error(format!(
            "indices must be integers, not {}",
            obj.type_name()
        )));
    }
    // SAFETY: live object; overflow raises IndexError, as list indexing does.
    let i = unsafe { ffi::PyNumber_AsSsize_t(obj.as_ptr(), ffi::PyExc_IndexError) };
    // SAFETY: attached thread.
    if i == -1 && !unsafe { ffi::PyErr_Occurred() }.is_null() {
        return Err(PyErr::fetch());
    }
    Ok(Index(i))
}

/// What an in-place operator handler (`+=`, ...) may return: `()` (done: the slot returns
/// the object itself) or an [`Outcome<()>`] (`NotImplemented` makes Python fall back to the
/// binary operator).
pub trait InPlaceOutput: crate::IntoPy {
    /// As an outcome.
    fn into_outcome(self) -> Outcome<()>;
}

impl InPlaceOutput for () {
    fn into_outcome(self) -> Outcome<()> {
        Outcome::Value(())
    }
}

impl InPlaceOutput for Outcome<()> {
    fn into_outcome(self) -> Outcome<()> {
        self
    }
}

/// What a `tp_hash` handler may return. A hash of -1 is reported as -2 (-1 means "error"
/// to CPython).
pub trait IntoHash: crate::IntoPy {
    /// The hash as CPython's `Py_hash_t`.
    fn into_hash(self) -> ffi::Py_hash_t;
}

macro_rules! hashes {
    ($($t:ty),*) => {$(
        impl IntoHash for $t {
            fn into_hash(self) -> ffi::Py_hash_t {
                match self as ffi::Py_hash_t {
                    -1 => -2,
                    h => h,
                }
            }
        }
    )*};
}
hashes!(isize, i64, i32, u64, u32, usize);
