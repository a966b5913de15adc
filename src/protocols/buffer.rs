//! The buffer protocol: `memoryview(obj)`, `bytes(obj)`, `numpy.asarray(obj)`, and every C
//! consumer of `PyObject_GetBuffer`.
//!
//! A handler describes the memory with a [`BufferInfo`]; the layer answers the consumer's
//! request exactly as CPython's rules say (`request::plan`, a pure function), fills the
//! `Py_buffer`, counts the export, and releases it. See [`BufferInfo`] for the safety model.
//!
//! # Safety (module level)
//! `fill_view` and `release_view` write and read a `Py_buffer` that CPython (or a C consumer)
//! passed to `bf_getbuffer`/`bf_releasebuffer`. Per-view storage for N-D shapes lives in a
//! heap block owned by `view->internal`, which consumers may not alter (they may pass a copy
//! of the view to release; the block is found through the copy's `internal`).

pub mod request;

use core::cell::Cell;
use core::ffi::{CStr, c_int, c_void};
use core::marker::PhantomData;

use pyo3_ffi as ffi;

pub use request::BufferFlags;
use request::{Geometry, Plan};

use crate::cell::PyClass;
use crate::error::{PyErr, PyResult};
use crate::trampoline::{self, assert_zst};
use crate::type_builder::TypeBuilder;

/// An element type a buffer may hold: its size is the buffer's `itemsize` and `FORMAT` its
/// `struct`-module format character.
///
/// # Safety
/// `FORMAT` must describe exactly `Self`'s native size and representation (as
/// `struct.calcsize(FORMAT) == size_of::<Self>()`), and every bit pattern a consumer may
/// write must be a valid `Self` (consumers write through writable buffers).
pub unsafe trait Element: Copy + 'static {
    /// The `struct` format, native size and alignment.
    const FORMAT: &'static CStr;
}

macro_rules! elements {
    ($($t:ty => $f:literal),* $(,)?) => {$(
        // SAFETY: the native struct format for this primitive, and every bit pattern is a
        // valid value.
        unsafe impl Element for $t { const FORMAT: &'static CStr = $f; }
    )*};
}
elements! {
    i8 => c"b", u8 => c"B", i16 => c"h", u16 => c"H", i32 => c"i", u32 => c"I",
    i64 => c"q", u64 => c"Q", isize => c"n", usize => c"N", f32 => c"f", f64 => c"d",
}

/// A C `long` exported with format `'l'` (Rust's `i64` uses `'q'`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct CLong(pub core::ffi::c_long);

/// A C `unsigned long` exported with format `'L'`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct CULong(pub core::ffi::c_ulong);

/// A C `_Bool` exported with format `'?'`. (Not Rust's `bool`: a consumer may write any byte
/// through a writable view, and only 0 and 1 are valid `bool`s.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct CBool(pub u8);

elements! { CLong => c"l", CULong => c"L", CBool => c"?" }

// SAFETY: read-only exports only: a `&[bool]` is exported with `readonly = 1`, and consumers
// must not write read-only buffers, so no invalid `bool` can be written.
unsafe impl Element for bool {
    const FORMAT: &'static CStr = c"?";
}

/// Where a view's shape and strides come from.
enum Layout<'a> {
    /// 1-D contiguous: `[nitems]`, `[itemsize]`; nothing stored, nothing allocated.
    Contiguous1D,
    /// A block `[ndim, shape.., strides..]` made for this export, moved into
    /// `view->internal` and freed on release.
    Owned(Box<[isize]>),
    /// Arrays that live in the exporting object itself (as long as its data): pointed at,
    /// nothing allocated.
    Borrowed {
        shape: &'a [isize],
        strides: &'a [isize],
    },
}

/// Describes the memory a buffer handler exports: the Mojo fields `buf`, `nitems`,
/// `itemsize`, `format`, `readonly`, plus N-D `shape` and `strides`.
///
/// # Safety model
/// A `BufferInfo<'a>` borrows the memory it describes for `'a`, the lifetime of the `&'a T`
/// the handler received. The layer then keeps that memory valid for as long as any view is
/// exported:
/// - the view holds a strong reference to the object, so `T` is not dropped;
/// - every `&mut T` access through the layer is refused with `BufferError` while the export
///   count is non-zero, so safe code cannot move, resize or free the memory.
///
/// Hence the safe constructors: [`from_slice`](Self::from_slice) (`&'a [E]`, exported
/// read-only: Rust may assume the data does not change) and [`from_cells`](Self::from_cells)
/// (`&'a [Cell<E>]`, writable: Rust already expects the data to change behind a shared
/// reference, so consumers may write it, and `&T` handlers may `set` items while exported).
/// Only raw pointers need [`from_raw_parts`](Self::from_raw_parts), which is `unsafe`.
///
/// ```
/// # pontoneer::doctest_module(|m| {
/// use core::cell::Cell;
/// use pontoneer::prelude::*;
///
/// struct Samples { data: Vec<Cell<f64>> }
/// impl PyClass for Samples { const NAME: &'static core::ffi::CStr = c"Samples"; }
///
/// fn buffer(s: &Samples, _flags: BufferFlags) -> PyResult<BufferInfo<'_>> {
///     Ok(BufferInfo::from_cells(&s.data))
/// }
/// let t = m.add_type::<Samples>()?
///     .def_init(|n: usize| Samples { data: (0..n).map(|i| Cell::new(i as f64)).collect() });
/// BufferProtocolBuilder::new(t).def_getbuffer(buffer);
/// # Ok(()) }, "v = memoryview(m.Samples(3)); assert v.tolist() == [0.0, 1.0, 2.0] and not v.readonly");
/// ```
pub struct BufferInfo<'a> {
    buf: *mut c_void,
    nitems: usize,
    itemsize: usize,
    format: &'static CStr,
    readonly: bool,
    /// Shape and strides.
    layout: Layout<'a>,
    /// Whether the format string must still be checked (raw constructor).
    unchecked_format: bool,
    _borrow: PhantomData<&'a [Cell<u8>]>,
}

impl<'a> BufferInfo<'a> {
    /// A read-only 1-D buffer over `data`.
    pub fn from_slice<E: Element>(data: &'a [E]) -> BufferInfo<'a> {
        const { assert!(size_of::<E>() > 0, "buffer elements must not be zero-sized") };
        BufferInfo {
            buf: data.as_ptr().cast_mut().cast(),
            nitems: data.len(),
            itemsize: size_of::<E>(),
            format: E::FORMAT,
            readonly: true,
            layout: Layout::Contiguous1D,
            unchecked_format: false,
            _borrow: PhantomData,
        }
    }

    /// A writable 1-D buffer over `data` (call [`readonly`](Self::readonly) to export it
    /// read-only).
    pub fn from_cells<E: Element>(data: &'a [Cell<E>]) -> BufferInfo<'a> {
        const { assert!(size_of::<E>() > 0, "buffer elements must not be zero-sized") };
        BufferInfo {
            // Cell<E> has the same in-memory representation as E.
            buf: data.as_ptr().cast_mut().cast(),
            nitems: data.len(),
            itemsize: size_of::<E>(),
            format: E::FORMAT,
            readonly: false,
            layout: Layout::Contiguous1D,
            unchecked_format: false,
            _borrow: PhantomData,
        }
    }

    /// A buffer over raw memory.
    ///
    /// # Safety
    /// `buf` must point to `nitems * itemsize` bytes that stay valid, unmoved and (unless
    /// `readonly`) writable by consumers for as long as any view exported from this info is
    /// alive — i.e. until the export count drops back (use [`crate::exports`] /
    /// [`crate::ensure_not_exported`] in the code that frees or moves it). The memory must
    /// not be accessed through Rust references that assume it does not change while
    /// writable views exist. `format` must be a valid `struct` format whose size is
    /// `itemsize` (checked at export time; a mismatch raises `BufferError`).
    pub unsafe fn from_raw_parts(
        buf: *mut c_void,
        nitems: usize,
        itemsize: usize,
        format: &'static CStr,
        readonly: bool,
    ) -> BufferInfo<'a> {
        BufferInfo {
            buf,
            nitems,
            itemsize,
            format,
            readonly,
            layout: Layout::Contiguous1D,
            unchecked_format: true,
            _borrow: PhantomData,
        }
    }

    /// Exports the buffer read-only (`readonly = 1`; `PyBUF_WRITABLE` requests are refused).
    pub fn readonly(mut self) -> BufferInfo<'a> {
        self.readonly = true;
        self
    }

    /// Reshapes to `shape` in C (row-major) order. `ValueError` unless the product of
    /// `shape` is `nitems`.
    pub fn with_shape(self, shape: &[usize]) -> PyResult<BufferInfo<'a>> {
        let strides = contiguous_strides(shape, self.itemsize, false)?;
        self.with_layout(shape, &strides, 0)
    }

    /// Reshapes to `shape` in Fortran (column-major) order.
    pub fn with_shape_fortran(self, shape: &[usize]) -> PyResult<BufferInfo<'a>> {
        let strides = contiguous_strides(shape, self.itemsize, true)?;
        self.with_layout(shape, &strides, 0)
    }

    /// An arbitrary strided view of the memory: `shape`, `strides` in bytes (any sign), and
    /// the index of the item at position `[0, 0, ...]`. `ValueError` unless every position
    /// stays within the described memory (so this is safe however the strides are chosen).
    pub fn with_strides(
        self,
        shape: &[usize],
        strides: &[isize],
        first: usize,
    ) -> PyResult<BufferInfo<'a>> {
        if shape.len() != strides.len() {
            return Err(PyErr::value_error(format!(
                "shape has {} dimensions but strides has {}",
                shape.len(),
                strides.len()
            )));
        }
        self.with_layout(shape, strides, first)
    }

    /// Like [`with_strides`](Self::with_strides), but the shape and strides arrays are
    /// borrowed from the exporting object (for as long as its data), so an export allocates
    /// nothing: `view->shape` and `view->strides` point at them. The idiom for fixed-layout
    /// types: store `shape: [isize; N]` and `strides: [isize; N]` next to the data.
    pub fn with_borrowed_layout(
        mut self,
        shape: &'a [isize],
        strides: &'a [isize],
        first: usize,
    ) -> PyResult<BufferInfo<'a>> {
        if shape.len() != strides.len() {
            return Err(PyErr::value_error(format!(
                "shape has {} dimensions but strides has {}",
                shape.len(),
                strides.len()
            )));
        }
        if let Some(n) = shape.iter().find(|&&n| n < 0) {
            return Err(PyErr::value_error(format!("negative extent {n} in shape")));
        }
        let (base, count) = self.check_layout(shape, strides, first)?;
        self.apply(base, count);
        self.layout = Layout::Borrowed { shape, strides };
        Ok(self)
    }

    fn with_layout(
        mut self,
        shape: &[usize],
        strides: &[isize],
        first: usize,
    ) -> PyResult<BufferInfo<'a>> {
        let overflow = || PyErr::overflow_error("buffer geometry overflows");
        let mut block = Vec::with_capacity(1 + 2 * shape.len());
        block.push(shape.len() as isize);
        for &n in shape {
            block.push(isize::try_from(n).map_err(|_| overflow())?);
        }
        block.extend_from_slice(strides);
        let (base, count) = self.check_layout(&block[1..1 + shape.len()], strides, first)?;
        self.apply(base, count);
        self.layout = Layout::Owned(block.into_boxed_slice());
        Ok(self)
    }

    /// Checks that every position of the layout stays within the described memory; returns
    /// the byte offset of the first item and the item count.
    fn check_layout(
        &self,
        shape: &[isize],
        strides: &[isize],
        first: usize,
    ) -> PyResult<(isize, usize)> {
        let ndim = shape.len();
        // pyo3-ffi declares PyBUF_MAX_NDIM as c_int before 3.11 and usize after.
        #[allow(clippy::unnecessary_cast)]
        let max_ndim = ffi::PyBUF_MAX_NDIM as usize;
        if ndim > max_ndim {
            return Err(PyErr::value_error(format!(
                "a buffer has at most {max_ndim} dimensions, got {ndim}"
            )));
        }
        let overflow = || PyErr::overflow_error("buffer geometry overflows");
        let itemsize = isize::try_from(self.itemsize).map_err(|_| overflow())?;
        let total = isize::try_from(self.nitems)
            .ok()
            .and_then(|n| n.checked_mul(itemsize))
            .ok_or_else(overflow)?;
        let count = shape
            .iter()
            .try_fold(1usize, |acc, &n| acc.checked_mul(n as usize))
            .ok_or_else(overflow)?;
        let base = isize::try_from(first)
            .ok()
            .and_then(|f| f.checked_mul(itemsize))
            .ok_or_else(overflow)?;
        if count != 0 {
            // Lowest and highest byte offsets any position reaches, relative to the memory.
            let (mut lo, mut hi) = (base, base);
            for (&n, &s) in shape.iter().zip(strides) {
                let reach = (n - 1).checked_mul(s).ok_or_else(overflow)?;
                if reach < 0 {
                    lo = lo.checked_add(reach).ok_or_else(overflow)?;
                } else {
                    hi = hi.checked_add(reach).ok_or_else(overflow)?;
                }
            }
            if lo < 0 || hi.checked_add(itemsize).is_none_or(|end| end > total) {
                return Err(PyErr::value_error(format!(
                    "strided layout reaches bytes {lo}..{} outside the {total} bytes of the buffer",
                    hi.saturating_add(itemsize)
                )));
            }
        } else if base > total {
            return Err(PyErr::value_error("first item lies outside the buffer"));
        }
        Ok((base, count))
    }

    /// Moves `buf` to the first item and sets the item count.
    fn apply(&mut self, base: isize, count: usize) {
        // SAFETY: `check_layout` proved `base <= total`: the offset stays within (or one past)
        // the described memory.
        self.buf = unsafe { self.buf.cast::<u8>().offset(base) }.cast();
        self.nitems = count;
    }

    /// Shape and strides, or `None` for the 1-D contiguous case.
    fn dims(&self) -> Option<(&[isize], &[isize])> {
        match &self.layout {
            Layout::Contiguous1D => None,
            Layout::Owned(b) => {
                let ndim = b[0] as usize;
                Some((&b[1..1 + ndim], &b[1 + ndim..]))
            }
            Layout::Borrowed { shape, strides } => Some((shape, strides)),
        }
    }

    /// The address of the item at position `[0, 0, ...]`.
    pub fn buf(&self) -> *mut c_void {
        self.buf
    }
    /// The number of items (the product of the shape).
    pub fn nitems(&self) -> usize {
        self.nitems
    }
    /// The size of one item in bytes.
    pub fn itemsize(&self) -> usize {
        self.itemsize
    }
    /// The `struct` format of one item.
    pub fn format(&self) -> &'static CStr {
        self.format
    }
    /// Whether consumers may not write.
    pub fn is_readonly(&self) -> bool {
        self.readonly
    }
    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.dims().map_or(1, |(shape, _)| shape.len())
    }
    /// The extents, or `None` for the 1-D case (`[nitems]`).
    pub fn shape(&self) -> Option<&[isize]> {
        self.dims().map(|(shape, _)| shape)
    }
    /// The strides in bytes, or `None` for the 1-D contiguous case (`[itemsize]`).
    pub fn strides(&self) -> Option<&[isize]> {
        self.dims().map(|(_, strides)| strides)
    }
}

/// Contiguous strides as CPython's `PyBuffer_FillContiguousStrides` computes them (plain
/// products: a zero extent makes the outer strides 0, as the demo contract's `cols * 8`).
fn contiguous_strides(shape: &[usize], itemsize: usize, fortran: bool) -> PyResult<Vec<isize>> {
    let overflow = || PyErr::overflow_error("buffer geometry overflows");
    let mut strides = vec![0isize; shape.len()];
    let mut step = isize::try_from(itemsize).map_err(|_| overflow())?;
    let order: Box<dyn Iterator<Item = usize>> = if fortran {
        Box::new(0..shape.len())
    } else {
        Box::new((0..shape.len()).rev())
    };
    for i in order {
        strides[i] = step;
        let n = isize::try_from(shape[i]).map_err(|_| overflow())?;
        step = step.checked_mul(n).ok_or_else(overflow)?;
    }
    Ok(strides)
}

/// Installs the buffer protocol on a type: `bf_getbuffer` and `bf_releasebuffer`, always
/// together.
///
/// ```
/// # pontoneer::doctest_module(|m| {
/// use pontoneer::prelude::*;
/// struct Bytes { data: Vec<u8> }
/// impl PyClass for Bytes { const NAME: &'static core::ffi::CStr = c"Bytes"; }
/// let t = m.add_type::<Bytes>()?.def_init(|| Bytes { data: b"hi".to_vec() });
/// BufferProtocolBuilder::new(t)
///     .def_getbuffer(|b: &Bytes, _| Ok(BufferInfo::from_slice(&b.data)))
///     .def_releasebuffer();
/// # Ok(()) }, "assert bytes(m.Bytes()) == b'hi'");
/// ```
pub struct BufferProtocolBuilder<'t, T> {
    ty: &'t mut TypeBuilder<T>,
}

impl<'t, T: PyClass> BufferProtocolBuilder<'t, T> {
    /// Wraps a type builder.
    pub fn new(ty: &'t mut TypeBuilder<T>) -> Self {
        BufferProtocolBuilder { ty }
    }

    /// `bf_getbuffer` (+ `bf_releasebuffer`) — `memoryview(obj)` and every C consumer.
    ///
    /// The handler gets the consumer's [`BufferFlags`] and describes the memory; the layer
    /// refuses what the flags forbid (`BufferError`), fills the view, counts the export and
    /// installs the matching release slot. A handler error becomes a `BufferError` with the
    /// handler's message.
    pub fn def_getbuffer<F>(self, handler: F) -> Self
    where
        F: for<'a> Fn(&'a T, BufferFlags) -> PyResult<BufferInfo<'a>> + Copy + 'static,
    {
        assert_zst(&handler);
        let get: ffi::getbufferproc = trampoline::getbufferproc::<T, F>;
        // SAFETY: typeslots — bf_getbuffer is a `getbufferproc`; the trampoline fills views
        // for instances laid out as PyCell<T>.
        unsafe { self.ty.push_slot(ffi::Py_bf_getbuffer, get as *mut c_void) };
        self.def_releasebuffer()
    }

    /// `bf_releasebuffer`. Already installed by [`def_getbuffer`](Self::def_getbuffer); kept
    /// for parity with the Mojo API. Idempotent, and does not replace a hook installed with
    /// [`def_releasebuffer_with`](Self::def_releasebuffer_with).
    pub fn def_releasebuffer(self) -> Self {
        if !self.ty.has_slot(ffi::Py_bf_releasebuffer) {
            let rel: ffi::releasebufferproc = trampoline::releasebufferproc::<T, NoHook>;
            // SAFETY: typeslots — bf_releasebuffer is a `releasebufferproc`.
            unsafe {
                self.ty
                    .push_slot(ffi::Py_bf_releasebuffer, rel as *mut c_void)
            };
        }
        self
    }

    /// `bf_releasebuffer` with a hook called after each release (the export count is
    /// already decremented). Errors and panics in the hook go to `sys.unraisablehook`.
    pub fn def_releasebuffer_with<H>(self, hook: H) -> Self
    where
        H: Fn(&T) -> PyResult<()> + Copy + 'static,
    {
        assert_zst(&hook);
        let rel: ffi::releasebufferproc = trampoline::releasebufferproc::<T, H>;
        // SAFETY: typeslots — bf_releasebuffer is a `releasebufferproc`.
        unsafe {
            self.ty
                .push_slot(ffi::Py_bf_releasebuffer, rel as *mut c_void)
        };
        self
    }
}

/// The release hook of [`BufferProtocolBuilder::def_releasebuffer`]: nothing to do.
#[derive(Clone, Copy)]
pub(crate) struct NoHook;

/// A release hook: called with the instance after each release.
pub(crate) trait ReleaseHook<T>: Copy + 'static {
    /// Whether there is anything to call (lets the plain release skip the borrow).
    const ACTIVE: bool;
    fn call(self, this: &T) -> PyResult<()>;
}

impl<T> ReleaseHook<T> for NoHook {
    const ACTIVE: bool = false;
    fn call(self, _: &T) -> PyResult<()> {
        Ok(())
    }
}

impl<T, H: Fn(&T) -> PyResult<()> + Copy + 'static> ReleaseHook<T> for H {
    const ACTIVE: bool = true;
    fn call(self, this: &T) -> PyResult<()> {
        self(this)
    }
}

/// Turns a handler error into the `BufferError` the protocol requires, keeping its message.
#[cold]
#[inline(never)]
pub(crate) fn handler_error(err: PyErr) -> PyErr {
    err.into_buffer_error()
}

/// Validates `info`, plans the answer to `flags`, and writes every field of `view` except
/// `obj`.
///
/// The common case — a 1-D contiguous buffer from a safe constructor — is answered inline
/// (a few flag tests and a dozen stores, nothing to validate); everything else goes to the
/// non-generic [`fill_view_general`], so the generic trampoline stays thin.
///
/// # Safety
/// `view` is a valid, writable `Py_buffer`; the memory `info` describes outlives the view
/// (guaranteed by the export count, see [`BufferInfo`]).
#[inline(always)]
pub(crate) unsafe fn fill_view(
    view: *mut ffi::Py_buffer,
    mut info: BufferInfo<'_>,
    flags: c_int,
    type_name: &CStr,
) -> PyResult<()> {
    if matches!(info.layout, Layout::Contiguous1D) && !info.unchecked_format {
        return match request::plan_contiguous_1d(BufferFlags::from_raw(flags), info.readonly) {
            // SAFETY: caller's contract: `view` is valid and writable. A safe constructor
            // guarantees itemsize > 0 and nitems * itemsize <= isize::MAX (a Rust slice).
            Ok(plan) => unsafe {
                let len = (info.nitems * info.itemsize) as isize;
                write_view(view, &mut info, &plan, len);
                Ok(())
            },
            Err(refusal) => Err(refused(refusal, type_name)),
        };
    }
    // A borrowed layout (fixed-shape exporters) asked for strides without contiguity: the
    // answer does not depend on the geometry, which `with_borrowed_layout` already checked.
    if let Layout::Borrowed { shape, .. } = info.layout {
        if !info.unchecked_format {
            let readonly = info.readonly;
            if let Some(plan) =
                request::plan_strided(BufferFlags::from_raw(flags), readonly, shape.len())
            {
                return match plan {
                    // SAFETY: caller's contract: `view` is valid and writable; `with_borrowed_layout`
                    // proved that every position lies within the described memory.
                    Ok(plan) => unsafe {
                        let len = (info.nitems * info.itemsize) as isize;
                        write_view(view, &mut info, &plan, len);
                        Ok(())
                    },
                    Err(refusal) => Err(refused(refusal, type_name)),
                };
            }
        }
    }
    // SAFETY: caller's contract. Passed by reference: a `BufferInfo` is a dozen words.
    unsafe { fill_view_general(view, &mut info, flags, type_name) }
}

/// [`fill_view`] for raw descriptions and N-D or strided layouts.
///
/// # Safety
/// As for [`fill_view`].
#[inline(never)]
unsafe fn fill_view_general(
    view: *mut ffi::Py_buffer,
    info: &mut BufferInfo<'_>,
    flags: c_int,
    type_name: &CStr,
) -> PyResult<()> {
    // Safe constructors guarantee a non-NULL pointer, 0 < itemsize and nitems * itemsize <=
    // isize::MAX (a Rust slice); raw descriptions are validated first, out of line.
    if info.unchecked_format {
        validate_raw(info, type_name)?;
    }
    let itemsize = info.itemsize as isize;
    let len = info.nitems as isize * itemsize;
    let request = BufferFlags::from_raw(flags);
    let plan = match info.dims() {
        None => request::plan_contiguous_1d(request, info.readonly),
        Some((shape, strides)) => request::plan(
            request,
            &Geometry {
                itemsize,
                readonly: info.readonly,
                shape,
                strides,
            },
        ),
    };
    match plan {
        // SAFETY: caller's contract: `view` is valid and writable.
        Ok(plan) => unsafe { write_view(view, info, &plan, len) },
        Err(refusal) => return Err(refused(refusal, type_name)),
    }
    Ok(())
}

#[cold]
#[inline(never)]
fn refused(refusal: request::Refusal, type_name: &CStr) -> PyErr {
    PyErr::buffer_error(refusal.message(&type_name.to_string_lossy()))
}

/// Checks a description made by [`BufferInfo::from_raw_parts`]: positive itemsize,
/// `nitems * itemsize` within `isize`, a non-NULL pointer, a valid format of that size.
#[cold]
#[inline(never)]
fn validate_raw(info: &BufferInfo<'_>, type_name: &CStr) -> PyResult<()> {
    let name = type_name.to_string_lossy();
    let refuse = |msg: String| PyErr::buffer_error(format!("{name}: {msg}"));
    let itemsize = isize::try_from(info.itemsize)
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(|| refuse(format!("invalid itemsize {}", info.itemsize)))?;
    isize::try_from(info.nitems)
        .ok()
        .and_then(|n| n.checked_mul(itemsize))
        .ok_or_else(|| refuse("nitems * itemsize overflows".into()))?;
    if info.buf.is_null() {
        return Err(refuse("buffer pointer is NULL".into()));
    }
    check_format(info.format, itemsize).map_err(refuse)
}

/// Writes the planned fields (all but `obj`).
///
/// # Safety
/// As for [`fill_view`].
#[inline(always)]
unsafe fn write_view(
    view: *mut ffi::Py_buffer,
    info: &mut BufferInfo<'_>,
    plan: &Plan,
    len: isize,
) {
    // SAFETY: `view` is valid and writable (caller). Field by field:
    // - 1-D contiguous exports allocate nothing: `internal` holds the item count and
    //   `shape` points at it, `strides` at `itemsize` (array.array's idiom): these pointers
    //   stay valid for the life of the view struct they point into.
    // - Borrowed layouts point `shape`/`strides` into the exporting object, which the view
    //   keeps alive and which cannot be mutated through `&mut T` while exported.
    // - Owned layouts (N-D or strided, built per export) move their block into `internal`;
    //   `shape`/`strides` point into it; `release_view` frees it.
    unsafe {
        let v = &mut *view;
        v.buf = info.buf;
        v.len = len;
        v.itemsize = info.itemsize as isize;
        v.readonly = c_int::from(info.readonly);
        v.ndim = plan.ndim;
        v.format = if plan.format {
            info.format.as_ptr().cast_mut()
        } else {
            core::ptr::null_mut()
        };
        v.suboffsets = core::ptr::null_mut();
        v.shape = core::ptr::null_mut();
        v.strides = core::ptr::null_mut();
        v.internal = core::ptr::null_mut();
        if !plan.shape {
            return;
        }
        // The layout moves out (an owned block now belongs to the view); `info` keeps an
        // empty one.
        match core::mem::replace(&mut info.layout, Layout::Contiguous1D) {
            Layout::Contiguous1D => {
                v.internal = info.nitems as *mut c_void;
                v.shape = (&raw mut v.internal).cast();
                if plan.strides {
                    v.strides = &raw mut v.itemsize;
                }
            }
            Layout::Borrowed { shape, strides } => {
                v.shape = shape.as_ptr().cast_mut();
                if plan.strides {
                    v.strides = strides.as_ptr().cast_mut();
                }
            }
            Layout::Owned(block) => {
                let ndim = block[0] as usize;
                let raw = Box::into_raw(block).cast::<isize>();
                v.internal = raw.cast();
                v.shape = raw.add(1);
                if plan.strides {
                    v.strides = raw.add(1 + ndim);
                }
            }
        }
    }
}

/// Frees the per-view storage of `view`, if any.
///
/// # Safety
/// `view` is a view (or a copy of one) filled by [`write_view`] and not released before.
pub(crate) unsafe fn release_view(view: *mut ffi::Py_buffer) {
    // SAFETY: valid view (caller). A heap block is recognised by `shape` pointing just past
    // its header, which `internal` points at; a 1-D view's `internal` holds a count and its
    // `shape` points at the `internal` field itself, never one word past the count.
    unsafe {
        let v = &*view;
        let block = v.internal.cast::<isize>();
        if !block.is_null() && v.shape == block.wrapping_add(1) {
            let ndim = *block as usize;
            let slice = core::ptr::slice_from_raw_parts_mut(block, 1 + 2 * ndim);
            drop(Box::from_raw(slice));
        }
    }
}

/// Checks a raw info's format: a valid `struct` format whose size is `itemsize`.
fn check_format(format: &CStr, itemsize: isize) -> Result<(), String> {
    // SAFETY: attached thread (called from getbuffer); NUL-terminated format.
    let size = unsafe { ffi::PyBuffer_SizeFromFormat(format.as_ptr()) };
    if size < 0 {
        // SAFETY: attached thread; drop the struct module's error, we report our own.
        unsafe { ffi::PyErr_Clear() };
        return Err(format!("invalid buffer format {format:?}"));
    }
    if size != itemsize {
        return Err(format!(
            "buffer format {format:?} has size {size} but itemsize is {itemsize}"
        ));
    }
    Ok(())
}

/// Shared by the layout constructors: keeps `Cell`'s guarantee visible to readers.
const _: () = assert!(size_of::<Cell<f64>>() == size_of::<f64>());
