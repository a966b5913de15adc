//! The object layout `[PyObject header][borrow flag][export count][T]`, runtime borrow
//! checking with `RefCell` semantics, the export counter, and the bodies of allocation and
//! destruction.
//!
//! # Safety (module level)
//! A `PyCell<T>` is only ever reached through a pointer to an object whose type was created
//! by a [`TypeBuilder<T>`](crate::TypeBuilder) (its `tp_basicsize` is `size_of::<PyCell<T>>()`
//! and its only constructor is [`alloc_instance`]), so the value is always initialised while
//! the object is alive. The borrow flag and the export counter are plain `Cell`s: every access
//! happens with the thread attached, which serialises them (the GIL; on an own-GIL
//! sub-interpreter, objects never cross interpreters).

use core::cell::{Cell, UnsafeCell};
use core::ffi::CStr;
use core::ops::{Deref, DerefMut};

use pyo3_ffi as ffi;

use crate::error::{PyErr, PyResult};
use crate::object::Object;

/// A Rust type exposed to Python as a class.
///
/// `Send + 'static`: any Python thread may touch or free the object, and the value lives as
/// long as the Python object does. `T`'s `Drop` runs with the thread attached but must not
/// call into Python (it cannot: it has no `Object` to call with, since `Object` is `!Send`).
///
/// ```
/// use pontoneer::PyClass;
/// #[derive(Default)]
/// struct Counter { n: u64 }
/// impl PyClass for Counter {
///     const NAME: &'static core::ffi::CStr = c"Counter";
///     const DOC: Option<&'static core::ffi::CStr> = Some(c"Counts things.");
/// }
/// ```
pub trait PyClass: Sized + Send + 'static {
    /// The class `__name__`; the module name is prepended for `__module__`/`__qualname__`.
    const NAME: &'static CStr;
    /// The class docstring.
    const DOC: Option<&'static CStr> = None;
}

/// The memory of one instance: `[PyObject header][borrow flag][export count][T]`. Opaque;
/// appears only in the hidden plumbing of [`Receiver`](crate::method::Receiver).
#[doc(hidden)]
#[repr(C)]
pub struct PyCell<T> {
    ob_base: ffi::PyObject,
    /// 0: free; n > 0: n shared borrows; -1: borrowed mutably.
    borrow: Cell<isize>,
    /// Number of live buffer views (`bf_getbuffer` successes not yet released).
    exports: Cell<isize>,
    value: UnsafeCell<T>,
}

const MUT: isize = -1;

impl<T: PyClass> PyCell<T> {
    /// The instance size, for `tp_basicsize`.
    pub(crate) const SIZE: usize = {
        // PyObject_Malloc aligns to 16 bytes; a stricter alignment cannot be honoured.
        assert!(
            align_of::<PyCell<T>>() <= 16,
            "pontoneer: a PyClass may not require an alignment above 16 bytes"
        );
        size_of::<PyCell<T>>()
    };

    /// Reinterprets an object pointer as a cell.
    ///
    /// # Safety
    /// `obj` is a live instance of a type created by `TypeBuilder<T>`, and stays alive for `'a`.
    #[inline(always)]
    pub(crate) unsafe fn from_ptr<'a>(obj: *mut ffi::PyObject) -> &'a PyCell<T> {
        // SAFETY: caller's contract; PyCell is repr(C) with the header first.
        unsafe { &*obj.cast::<PyCell<T>>() }
    }

    /// A shared borrow (`&T`); `RuntimeError` while mutably borrowed.
    #[inline(always)]
    pub(crate) fn try_borrow(&self) -> PyResult<Ref<'_, T>> {
        let b = self.borrow.get();
        if b < 0 {
            return Err(borrow_conflict(T::NAME, true));
        }
        // Cannot overflow: each guard lives on a native stack frame, far fewer than isize::MAX.
        self.borrow.set(b + 1);
        Ok(Ref { cell: self })
    }

    /// An exclusive borrow (`&mut T`); `RuntimeError` while borrowed, `BufferError` while a
    /// buffer view is exported (the memory behind a view must not move or be freed).
    #[inline(always)]
    pub(crate) fn try_borrow_mut(&self) -> PyResult<RefMut<'_, T>> {
        if self.borrow.get() != 0 {
            return Err(borrow_conflict(T::NAME, false));
        }
        let exports = self.exports.get();
        if exports != 0 {
            return Err(exported_error(T::NAME, exports));
        }
        self.borrow.set(MUT);
        Ok(RefMut { cell: self })
    }

    /// The value without a borrow (raw receivers).
    ///
    /// # Safety
    /// No `&mut T` exists while the reference is used.
    #[inline(always)]
    pub(crate) unsafe fn value_unchecked(&self) -> &T {
        // SAFETY: caller's contract; the value is initialised (module docs).
        unsafe { &*self.value.get() }
    }

    /// The value mutably without a borrow (raw receivers).
    ///
    /// # Safety
    /// No other reference to the value exists while this one is used.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn value_mut_unchecked(&self) -> &mut T {
        // SAFETY: caller's contract; the value is initialised (module docs).
        unsafe { &mut *self.value.get() }
    }

    /// Number of live buffer exports.
    #[inline(always)]
    pub(crate) fn exports(&self) -> isize {
        self.exports.get()
    }

    /// Records one more export.
    #[inline(always)]
    pub(crate) fn add_export(&self) {
        self.exports.set(self.exports.get() + 1);
    }

    /// Records one export fewer. Returns `false` (and leaves the count at 0) if there was
    /// none: a consumer released more views than it got.
    #[inline(always)]
    pub(crate) fn remove_export(&self) -> bool {
        let n = self.exports.get();
        if n <= 0 {
            return false;
        }
        self.exports.set(n - 1);
        true
    }
}

#[cold]
#[inline(never)]
fn borrow_conflict(name: &CStr, want_shared: bool) -> PyErr {
    PyErr::runtime_error(if want_shared {
        format!(
            "{} object is already mutably borrowed (re-entrant access while a &mut method runs)",
            name.to_string_lossy()
        )
    } else {
        format!(
            "{} object is already borrowed (re-entrant mutation while another method runs)",
            name.to_string_lossy()
        )
    })
}

#[cold]
#[inline(never)]
fn exported_error(name: &CStr, exports: isize) -> PyErr {
    PyErr::buffer_error(format!(
        "cannot modify a {} object that is exporting buffers ({} export{} alive)",
        name.to_string_lossy(),
        exports,
        if exports == 1 { "" } else { "s" }
    ))
}

/// A shared borrow of an instance's value, released on drop (also while unwinding).
pub(crate) struct Ref<'a, T> {
    cell: &'a PyCell<T>,
}

impl<T> Deref for Ref<'_, T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: the borrow flag is > 0 while this guard lives, so no `&mut T` exists.
        unsafe { &*self.cell.value.get() }
    }
}

impl<T> Drop for Ref<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.cell.borrow.set(self.cell.borrow.get() - 1);
    }
}

/// An exclusive borrow of an instance's value, released on drop (also while unwinding).
pub(crate) struct RefMut<'a, T> {
    cell: &'a PyCell<T>,
}

impl<T> Deref for RefMut<'_, T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: the flag is MUT while this guard lives: this guard is the only accessor.
        unsafe { &*self.cell.value.get() }
    }
}

impl<T> DerefMut for RefMut<'_, T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the flag is MUT while this guard lives: this guard is the only accessor.
        unsafe { &mut *self.cell.value.get() }
    }
}

impl<T> Drop for RefMut<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.cell.borrow.set(0);
    }
}

/// Allocates an instance of `tp` holding `value`; returns a new reference.
///
/// # Safety
/// `tp` is a type created by `TypeBuilder<T>` (basicsize `PyCell::<T>::SIZE`); the thread is
/// attached.
#[inline]
pub(crate) unsafe fn alloc_instance<T: PyClass>(
    tp: *mut ffi::PyTypeObject,
    value: T,
) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: attached thread; PyObject_Malloc returns NULL or 16-byte aligned memory of the
    // requested size.
    let mem = unsafe { ffi::PyObject_Malloc(PyCell::<T>::SIZE) }.cast::<PyCell<T>>();
    if mem.is_null() {
        drop(value);
        return Err(PyErr::memory_error("cannot allocate a new instance"));
    }
    // SAFETY: `mem` is fresh, suitably sized and aligned. PyObject_Init sets the refcount to 1
    // and the type, and takes a reference to the heap type (released in `destructor`).
    unsafe {
        ffi::PyObject_Init(mem.cast(), tp);
        (&raw mut (*mem).borrow).write(Cell::new(0));
        (&raw mut (*mem).exports).write(Cell::new(0));
        (&raw mut (*mem).value).write(UnsafeCell::new(value));
    }
    Ok(mem.cast())
}

/// Drops the value of a dying instance in place.
///
/// # Safety
/// `obj` is an instance of a `TypeBuilder<T>` type whose refcount reached 0; the value is
/// dropped exactly once and never accessed again.
pub(crate) unsafe fn drop_value<T: PyClass>(obj: *mut ffi::PyObject) {
    let cell = obj.cast::<PyCell<T>>();
    // SAFETY: caller's contract; a dying object has no borrows (guards hold a reference) and
    // no exports (views hold a reference).
    unsafe { core::ptr::drop_in_place((*cell).value.get()) }
}

/// A shared borrow of another instance for `'a`: received as a handler argument
/// (`other: PyRef<'_, Vec2>`, converted with the argument's type checked and nothing else
/// to pay: no reference is taken, since CPython keeps the argument alive for the call), or
/// taken from an [`Object`] with [`PyRef::borrow`]. The borrow flag is held until dropped.
///
/// ```
/// # pontoneer::doctest_module(|m| {
/// use pontoneer::{PyClass, PyRef};
/// #[derive(Default)]
/// struct Vec2 { x: f64, y: f64 }
/// impl PyClass for Vec2 { const NAME: &'static core::ffi::CStr = c"Vec2"; }
/// fn dot(a: &Vec2, b: PyRef<'_, Vec2>) -> f64 { a.x * b.x + a.y * b.y }
/// m.add_type::<Vec2>()?.def_init_default().def_method(c"dot", dot);
/// # Ok(()) }, "assert m.Vec2().dot(m.Vec2()) == 0.0");
/// ```
pub struct PyRef<'a, T: PyClass> {
    obj: &'a Object,
    _t: core::marker::PhantomData<&'a T>,
}

impl<'a, T: PyClass> PyRef<'a, T> {
    /// Borrows `obj` if it is an instance of `T` (`TypeError` otherwise, `RuntimeError` if
    /// it is mutably borrowed or the thread does not hold the GIL).
    pub fn borrow(obj: &'a Object) -> PyResult<PyRef<'a, T>> {
        crate::object::attached()?;
        // SAFETY: attached (checked above).
        unsafe { Self::borrow_attached(obj) }
    }

    /// [`borrow`](Self::borrow) for trampolines, which know the thread is attached.
    ///
    /// # Safety
    /// The thread must be attached.
    #[inline(always)]
    pub(crate) unsafe fn borrow_attached(obj: &'a Object) -> PyResult<PyRef<'a, T>> {
        let cell = downcast::<T>(obj)?;
        core::mem::forget(cell.try_borrow()?);
        Ok(PyRef {
            obj,
            _t: core::marker::PhantomData,
        })
    }

    /// The object this borrow is on.
    pub fn as_object(&self) -> &'a Object {
        self.obj
    }

    /// Number of buffer views currently exported by this instance.
    pub fn exports(&self) -> isize {
        self.cell().exports()
    }

    fn cell(&self) -> &'a PyCell<T> {
        // SAFETY: checked to be a T instance in `borrow`; `self.obj` keeps it alive for 'a.
        unsafe { PyCell::from_ptr(self.obj.as_ptr()) }
    }
}

impl<T: PyClass> Deref for PyRef<'_, T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: we hold a shared borrow (flag > 0) for our whole life.
        unsafe { &*self.cell().value.get() }
    }
}

impl<T: PyClass> Drop for PyRef<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // Gives back the borrow taken in `borrow` (the guard was forgotten there). A `PyRef`
        // is only created on an attached thread and cannot outlive the borrowed `&Object`,
        // so the thread is still attached here.
        drop(Ref { cell: self.cell() });
    }
}

/// An exclusive borrow of another instance for `'a`, received as a handler argument
/// (`PyRefMut<'_, T>`) or taken with [`PyRefMut::borrow`].
pub struct PyRefMut<'a, T: PyClass> {
    obj: &'a Object,
    _t: core::marker::PhantomData<&'a mut T>,
}

impl<'a, T: PyClass> PyRefMut<'a, T> {
    /// Borrows `obj` mutably if it is an instance of `T` (`TypeError` otherwise,
    /// `RuntimeError` if borrowed or on a thread without the GIL, `BufferError` if exporting
    /// buffers).
    pub fn borrow(obj: &'a Object) -> PyResult<PyRefMut<'a, T>> {
        crate::object::attached()?;
        // SAFETY: attached (checked above).
        unsafe { Self::borrow_attached(obj) }
    }

    /// [`borrow`](Self::borrow) for trampolines, which know the thread is attached.
    ///
    /// # Safety
    /// The thread must be attached.
    #[inline(always)]
    pub(crate) unsafe fn borrow_attached(obj: &'a Object) -> PyResult<PyRefMut<'a, T>> {
        let cell = downcast::<T>(obj)?;
        core::mem::forget(cell.try_borrow_mut()?);
        Ok(PyRefMut {
            obj,
            _t: core::marker::PhantomData,
        })
    }

    /// The object this borrow is on.
    pub fn as_object(&self) -> &'a Object {
        self.obj
    }

    fn cell(&self) -> &'a PyCell<T> {
        // SAFETY: checked to be a T instance in `borrow`; `self.obj` keeps it alive for 'a.
        unsafe { PyCell::from_ptr(self.obj.as_ptr()) }
    }
}

impl<T: PyClass> Deref for PyRefMut<'_, T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: we hold the exclusive borrow for our whole life.
        unsafe { &*self.cell().value.get() }
    }
}

impl<T: PyClass> DerefMut for PyRefMut<'_, T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: we hold the exclusive borrow for our whole life.
        unsafe { &mut *self.cell().value.get() }
    }
}

impl<T: PyClass> Drop for PyRefMut<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // As for `PyRef`: created attached, cannot outlive the borrowed `&Object`.
        drop(RefMut { cell: self.cell() });
    }
}

/// `obj` as a `T` cell, after checking its type against the registry of the module that
/// created the object's type; `TypeError` naming both types otherwise.
#[inline(always)]
pub(crate) fn downcast<T: PyClass>(obj: &Object) -> PyResult<&PyCell<T>> {
    if is_instance::<T>(obj.as_ptr()) {
        // SAFETY: the type check above proves the layout; `obj` keeps the object alive.
        Ok(unsafe { PyCell::from_ptr(obj.as_ptr()) })
    } else {
        Err(not_an_instance(T::NAME, obj))
    }
}

#[cold]
#[inline(never)]
fn not_an_instance(name: &CStr, obj: &Object) -> PyErr {
    PyErr::type_error(format!(
        "expected {}, got {}",
        name.to_string_lossy(),
        obj.type_name()
    ))
}

/// Whether `obj`'s type was created by pontoneer for the Rust type `T`.
///
/// Fast path: the type's `tp_dealloc` is this crate's `destructor::<T>`, which only
/// `TypeBuilder<T>` installs and which no other class can share (it embeds `T`'s `TypeId`,
/// see `trampoline::destructor`). A function may have several addresses (one per codegen
/// unit, or another copy of pontoneer in another extension), so a mismatch is not a "no":
/// the exact check through the module state that created the type decides.
#[inline]
pub(crate) fn is_instance<T: PyClass>(obj: *mut ffi::PyObject) -> bool {
    // SAFETY: `obj` is a live object (callers hold a reference).
    let tp = unsafe { ffi::Py_TYPE(obj) };
    // SAFETY: `tp` is a live type object.
    if unsafe { dealloc_of(tp) }.is_some_and(|d| {
        core::ptr::fn_addr_eq(d, crate::trampoline::destructor::<T> as ffi::destructor)
    }) {
        return true;
    }
    // SAFETY: `tp` is a live type object.
    unsafe { crate::module::type_is(tp, core::any::TypeId::of::<T>()) }
}

/// A type's `tp_dealloc`.
///
/// # Safety
/// `tp` is a live type object; the thread is attached.
#[inline(always)]
unsafe fn dealloc_of(tp: *mut ffi::PyTypeObject) -> Option<ffi::destructor> {
    #[cfg(not(Py_LIMITED_API))]
    {
        // SAFETY: live type object; reading its tp_dealloc field.
        unsafe { (*tp).tp_dealloc }
    }
    #[cfg(Py_LIMITED_API)]
    {
        // SAFETY: live type object; Py_tp_dealloc is readable on every type (3.10+), and the
        // result is the `destructor` stored in the slot.
        let p = unsafe { ffi::PyType_GetSlot(tp, ffi::Py_tp_dealloc) };
        // SAFETY: a non-NULL tp_dealloc slot holds a `destructor`.
        (!p.is_null())
            .then(|| unsafe { core::mem::transmute::<*mut core::ffi::c_void, ffi::destructor>(p) })
    }
}

/// The number of buffer views currently exported by `obj`, for raw handlers.
///
/// # Safety
/// `obj` must be a live instance of `T`'s type (as raw-receiver handlers are given), and the
/// thread must be attached.
pub unsafe fn exports<T: PyClass>(obj: *mut ffi::PyObject) -> isize {
    // SAFETY: caller's contract.
    unsafe { PyCell::<T>::from_ptr(obj) }.exports()
}

/// `BufferError` if `obj` is exporting buffers, for raw handlers that are about to move or
/// free memory they exported.
///
/// # Safety
/// As for [`exports`].
pub unsafe fn ensure_not_exported<T: PyClass>(obj: *mut ffi::PyObject) -> PyResult<()> {
    // SAFETY: caller's contract.
    let n = unsafe { exports::<T>(obj) };
    if n == 0 {
        Ok(())
    } else {
        Err(exported_error(T::NAME, n))
    }
}
