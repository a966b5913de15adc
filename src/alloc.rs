//! Fallible allocation for handler data: `MemoryError` instead of an abort, at `malloc`'s
//! cost.
//!
//! `Vec::with_capacity` aborts the process when the allocation fails, and the stable fallible
//! route (`Vec::new()` then `try_reserve_exact(n)`) goes through `Vec`'s growth machinery
//! (about 50 instructions on top of `malloc` for a 128-byte block). [`try_vec_with_capacity`]
//! asks the global allocator once.

use core::alloc::Layout;

use crate::error::{PyErr, PyResult};

/// An empty `Vec<T>` with room for exactly `n` items, or `MemoryError` (also when
/// `n * size_of::<T>()` overflows `isize`). Allocates nothing for `n == 0` or a zero-sized
/// `T`.
///
/// ```
/// let v: Vec<f64> = pontoneer::try_vec_with_capacity(16).unwrap();
/// assert!(v.is_empty() && v.capacity() == 16);
/// assert!(pontoneer::try_vec_with_capacity::<f64>(usize::MAX).is_err());
/// ```
pub fn try_vec_with_capacity<T>(n: usize) -> PyResult<Vec<T>> {
    if n == 0 || size_of::<T>() == 0 {
        return Ok(Vec::new());
    }
    let layout = Layout::array::<T>(n).map_err(|_| too_large())?;
    // SAFETY: the layout has a non-zero size (n > 0 and T is not zero-sized).
    let ptr = unsafe { std::alloc::alloc(layout) }.cast::<T>();
    if ptr.is_null() {
        return Err(too_large());
    }
    // SAFETY: `ptr` comes from the global allocator with the layout of `[T; n]` (T's
    // alignment, size n * size_of::<T>() <= isize::MAX), which is what a `Vec<T>` of
    // capacity `n` owns; the length 0 is within the capacity and claims no initialised items.
    Ok(unsafe { Vec::from_raw_parts(ptr, 0, n) })
}

#[cold]
#[inline(never)]
fn too_large() -> PyErr {
    PyErr::memory_error("cannot allocate memory")
}
