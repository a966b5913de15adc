//! Test-only classes, shared by the `pontoneer_testmod` extension module (pytest) and the
//! Rust integration tests (which include this file with `#[path]` and load it into an
//! embedded interpreter).
//!
//! - Buffer exporters of every shape the C harness checks: an empty buffer, a Fortran-order
//!   matrix, a negative-stride view, a 3-D array, one type per element format.
//! - Fault injection: handlers that panic or fail in every handler kind, a re-entrant
//!   `&mut` access, getbuffer handlers returning inconsistent data.

use core::cell::Cell;
use core::ffi::CStr;

use pontoneer::prelude::*;
use pontoneer::protocols::buffer::{CBool, CLong, CULong};

fn cells<E: Copy>(n: usize, f: impl Fn(usize) -> E) -> PyResult<Vec<Cell<E>>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)?;
    v.extend((0..n).map(|i| Cell::new(f(i))));
    Ok(v)
}

macro_rules! cstr_text {
    ($c:literal) => {
        match $c.to_str() {
            Ok(s) => s,
            Err(_) => "?",
        }
    };
}

macro_rules! format_table {
    ($($name:ident($e:ty, $c:literal, $fmt:literal) = $conv:expr;)*) => {
        $(
            #[doc = concat!("A writable 1-D buffer of `", stringify!($e), "`, format '", $fmt, "'.")]
            pub struct $name { data: Vec<Cell<$e>> }
            impl PyClass for $name { const NAME: &'static CStr = $c; }
            impl $name {
                /// `n` items, item `i` is `i` converted to the element type.
                pub fn new(n: usize) -> PyResult<Self> {
                    let conv: fn(usize) -> $e = $conv;
                    Ok($name { data: cells(n, conv)? })
                }
                /// Exports the items, writable.
                pub fn buffer(&self, _: BufferFlags) -> PyResult<BufferInfo<'_>> {
                    Ok(BufferInfo::from_cells(&self.data))
                }
                /// The address of the first item (to check zero-copy exports).
                pub fn data_ptr(&self) -> usize { self.data.as_ptr() as usize }
            }
        )*

        /// Registers every format exporter.
        fn add_format_exporters(m: &mut ModuleBuilder) -> PyResult<()> {
            $(
                let t = m.add_type::<$name>()?
                    .def_init($name::new)
                    .def_method(c"data_ptr", $name::data_ptr);
                BufferProtocolBuilder::new(t).def_getbuffer($name::buffer);
            )*
            Ok(())
        }

        /// (class name, struct format, itemsize) of every format exporter.
        pub const FORMATS: &[(&str, &str, usize)] = &[
            $((cstr_text!($c), $fmt, size_of::<$e>()),)*
        ];
    };
}

format_table! {
    ArrayI8(i8, c"Array_b", "b") = |i| i as i8;
    ArrayU8(u8, c"Array_B", "B") = |i| i as u8;
    ArrayI16(i16, c"Array_h", "h") = |i| i as i16;
    ArrayU16(u16, c"Array_H", "H") = |i| i as u16;
    ArrayI32(i32, c"Array_i", "i") = |i| i as i32;
    ArrayU32(u32, c"Array_I", "I") = |i| i as u32;
    ArrayLong(CLong, c"Array_l", "l") = |i| CLong(i as core::ffi::c_long);
    ArrayULong(CULong, c"Array_L", "L") = |i| CULong(i as core::ffi::c_ulong);
    ArrayI64(i64, c"Array_q", "q") = |i| i as i64;
    ArrayU64(u64, c"Array_Q", "Q") = |i| i as u64;
    ArrayIsize(isize, c"Array_n", "n") = |i| i as isize;
    ArrayUsize(usize, c"Array_N", "N") = |i| i;
    ArrayF32(f32, c"Array_f", "f") = |i| i as f32;
    ArrayF64(f64, c"Array_d", "d") = |i| i as f64;
    ArrayBool(CBool, c"Array_bool", "?") = |i| CBool((i % 2) as u8);
}

/// An exporter of an empty, read-only float64 buffer.
#[derive(Default)]
pub struct Empty {
    data: Vec<f64>,
}
impl PyClass for Empty {
    const NAME: &'static CStr = c"Empty";
}
impl Empty {
    /// Exports zero items.
    pub fn buffer(&self, _: BufferFlags) -> PyResult<BufferInfo<'_>> {
        Ok(BufferInfo::from_slice(&self.data))
    }
}

/// A writable Fortran-order (column-major) float64 matrix; item `(r, c)` is `r * 100 + c`.
pub struct FortranMatrix {
    rows: usize,
    cols: usize,
    data: Vec<Cell<f64>>,
}
impl PyClass for FortranMatrix {
    const NAME: &'static CStr = c"FortranMatrix";
}
impl FortranMatrix {
    /// `rows × cols`, stored column by column.
    pub fn new(rows: usize, cols: usize) -> PyResult<Self> {
        let n = rows
            .checked_mul(cols)
            .ok_or_else(|| PyErr::overflow_error("too large"))?;
        Ok(FortranMatrix {
            rows,
            cols,
            data: cells(n, |i| ((i % rows.max(1)) * 100 + i / rows.max(1)) as f64)?,
        })
    }
    /// Item `(r, c)`.
    pub fn get(&self, r: usize, c: usize) -> PyResult<f64> {
        if r < self.rows && c < self.cols {
            Ok(self.data[c * self.rows + r].get())
        } else {
            Err(PyErr::index_error("index out of range"))
        }
    }
    /// Exports the matrix in Fortran order.
    pub fn buffer(&self, _: BufferFlags) -> PyResult<BufferInfo<'_>> {
        BufferInfo::from_cells(&self.data).with_shape_fortran(&[self.rows, self.cols])
    }
}

/// A read-only view of `[0.0, 1.0, ..., n-1]` exported back to front (stride -8).
pub struct Reversed {
    data: Vec<f64>,
}
impl PyClass for Reversed {
    const NAME: &'static CStr = c"Reversed";
}
impl Reversed {
    /// `n` items.
    pub fn new(n: usize) -> PyResult<Self> {
        let mut data = Vec::new();
        data.try_reserve_exact(n)?;
        data.extend((0..n).map(|i| i as f64));
        Ok(Reversed { data })
    }
    /// Exports the items last to first.
    pub fn buffer(&self, _: BufferFlags) -> PyResult<BufferInfo<'_>> {
        let n = self.data.len();
        BufferInfo::from_slice(&self.data).with_strides(&[n], &[-8], n.saturating_sub(1))
    }
}

/// A writable 3-D C-order int32 array; item `(i, j, k)` is `i*100 + j*10 + k`.
pub struct Cube {
    shape: [usize; 3],
    data: Vec<Cell<i32>>,
}
impl PyClass for Cube {
    const NAME: &'static CStr = c"Cube";
}
impl Cube {
    /// `a × b × c`.
    pub fn new(a: usize, b: usize, c: usize) -> PyResult<Self> {
        let n = a
            .checked_mul(b)
            .and_then(|n| n.checked_mul(c))
            .ok_or_else(|| PyErr::overflow_error("too large"))?;
        let data = cells(n, |i| {
            let (k, j, i) = (i % c.max(1), (i / c.max(1)) % b.max(1), i / (b * c).max(1));
            (i * 100 + j * 10 + k) as i32
        })?;
        Ok(Cube {
            shape: [a, b, c],
            data,
        })
    }
    /// Exports the array in C order.
    pub fn buffer(&self, _: BufferFlags) -> PyResult<BufferInfo<'_>> {
        BufferInfo::from_cells(&self.data).with_shape(&self.shape)
    }
}

/// Fault injection: a counter whose handlers can panic or fail on request, a re-entrant
/// `&mut` method, and a getbuffer handler that misbehaves in a chosen way.
#[derive(Default)]
pub struct Faulty {
    count: i64,
    /// 0 ok; 1 handler error; 2 panic; 3 bad raw format; 4 nitems*itemsize overflow;
    /// 5 format/itemsize mismatch; 6 panic in the release hook.
    buffer_mode: i64,
    data: Vec<u8>,
}
impl PyClass for Faulty {
    const NAME: &'static CStr = c"Faulty";
}

/// The custom exception type of the test module.
pub struct TestError;
impl PyException for TestError {
    const NAME: &'static CStr = c"TestError";
    const BASE: ExceptionType = ExceptionType::ValueError;
    const DOC: Option<&'static CStr> = Some(c"Raised by Faulty.fail_custom().");
}

impl Faulty {
    fn new(buffer_mode: i64) -> Faulty {
        Faulty {
            count: 0,
            buffer_mode,
            data: vec![1, 2, 3, 4],
        }
    }
    fn bump(&mut self) -> i64 {
        self.count += 1;
        self.count
    }
    fn count(&self) -> i64 {
        self.count
    }
    fn panic(&self) -> i64 {
        panic!("deliberate panic in a &self method")
    }
    fn panic_mut(&mut self) {
        self.count += 1000;
        panic!("deliberate panic in a &mut self method")
    }
    fn fail(&self) -> PyResult<i64> {
        Err(PyErr::value_error("deliberate failure"))
    }
    fn fail_custom(&self) -> PyResult<()> {
        Err(PyErr::custom::<TestError>("custom failure"))
    }
    /// Calls `callback()` while holding `&mut self`: if the callback touches this object,
    /// the layer must refuse with `RuntimeError` rather than alias.
    fn reenter(&mut self, callback: Object) -> PyResult<Object> {
        self.count += 1;
        callback.call0()
    }
    /// Calls `callback()` while holding `&self`: reading is fine, mutating is refused.
    fn reenter_shared(&self, callback: Object) -> PyResult<Object> {
        callback.call0()
    }
    fn static_panic() -> i64 {
        panic!("deliberate panic in a static method")
    }
    fn getter_panic(&self) -> i64 {
        panic!("deliberate panic in a getter")
    }
    fn set_count(&mut self, v: i64) -> PyResult<()> {
        if v < 0 {
            return Err(PyErr::value_error("count must be non-negative"));
        }
        if v == 666 {
            panic!("deliberate panic in a setter");
        }
        self.count = v;
        Ok(())
    }
    fn repr(&self) -> String {
        if self.count == 13 {
            panic!("deliberate panic in repr");
        }
        format!("Faulty(count={})", self.count)
    }
    fn buffer(&self, _: BufferFlags) -> PyResult<BufferInfo<'_>> {
        let ok = BufferInfo::from_slice(&self.data);
        match self.buffer_mode {
            1 => Err(PyErr::value_error("deliberate getbuffer failure")),
            2 => panic!("deliberate panic in getbuffer"),
            // SAFETY: the pointer and size describe `self.data`; the format is wrong on
            // purpose and must be refused by the layer before any consumer sees it.
            3 => Ok(unsafe { BufferInfo::from_raw_parts(ok.buf(), 4, 1, c"not a format!", true) }),
            // SAFETY: never exported: the layer refuses the overflowing size.
            4 => Ok(unsafe { BufferInfo::from_raw_parts(ok.buf(), usize::MAX / 2, 8, c"d", true) }),
            // SAFETY: never exported: 'd' has size 8, not 1.
            5 => Ok(unsafe { BufferInfo::from_raw_parts(ok.buf(), 4, 1, c"d", true) }),
            _ => Ok(ok),
        }
    }
    fn release_hook(&self) -> PyResult<()> {
        match self.buffer_mode {
            6 => panic!("deliberate panic in a release hook"),
            7 => Err(PyErr::runtime_error("deliberate release hook failure")),
            _ => Ok(()),
        }
    }
}

/// A negative control for leak checkers: `keep(obj)` takes a reference to `obj` and never
/// gives it back (safe Rust can leak: `mem::forget`). The refleak run must flag it.
#[derive(Default)]
pub struct Leaky;
impl PyClass for Leaky {
    const NAME: &'static CStr = c"Leaky";
}
impl Leaky {
    fn keep(&self, obj: Object) {
        core::mem::forget(obj);
    }
}

/// A value whose `Drop` panics when armed: `tp_dealloc` has no error channel, so the panic
/// must reach `sys.unraisablehook` and the memory still be freed.
#[derive(Default)]
pub struct DropBomb {
    armed: bool,
}
impl PyClass for DropBomb {
    const NAME: &'static CStr = c"DropBomb";
}
impl Drop for DropBomb {
    fn drop(&mut self) {
        if self.armed {
            panic!("deliberate panic in Drop (tp_dealloc)");
        }
    }
}

/// Number of buffer views `obj` currently exports, for any test exporter (`TypeError` for
/// other objects).
fn exports(obj: Object) -> PyResult<isize> {
    macro_rules! try_types {
        ($($t:ty),*) => {$(
            if let Ok(r) = PyRef::<$t>::borrow(&obj) { return Ok(r.exports()); }
        )*};
    }
    try_types!(
        Empty,
        FortranMatrix,
        Reversed,
        Cube,
        Faulty,
        ArrayF64,
        ArrayU8,
        ArrayI32
    );
    Err(PyErr::type_error(format!(
        "exports() does not know {}",
        obj.type_name()
    )))
}

/// The reference count of `obj` as the handler sees it (a borrowed `&Object` argument must
/// take no reference; an owned `Object` takes exactly one).
fn refcount(obj: &Object) -> isize {
    // SAFETY: `obj` is alive for the call; reading the count of a live object.
    unsafe { pontoneer::ffi::Py_REFCNT(obj.as_ptr()) }
}

fn borrowed_same(a: &Object, b: &Object) -> bool {
    a.is(b)
}

fn borrowed_refcount(a: &Object) -> isize {
    refcount(a)
}

fn owned_refcount(a: Object) -> isize {
    refcount(&a)
}

fn compare_op_name(op: pontoneer::protocols::CompareOp) -> String {
    format!("{op:?}")
}

/// The module body of `pontoneer_testmod`.
pub fn init(m: &mut ModuleBuilder) -> PyResult<()> {
    m.doc(c"Test-only exporters and fault injection for pontoneer's test suite.")?;
    m.add_exception::<TestError>()?;
    m.def_function(c"exports", exports);
    m.def_function(c"module_panic", || -> i64 {
        panic!("deliberate panic in a module function")
    });
    m.def_function(c"borrowed_same", borrowed_same);
    m.def_function(c"borrowed_refcount", borrowed_refcount);
    m.def_function(c"owned_refcount", owned_refcount);
    m.def_function(c"compare_op_name", compare_op_name);

    add_format_exporters(m)?;

    let t = m.add_type::<Empty>()?.def_init_default();
    BufferProtocolBuilder::new(t).def_getbuffer(Empty::buffer);

    let t = m
        .add_type::<FortranMatrix>()?
        .def_init(FortranMatrix::new)
        .def_method(c"get", FortranMatrix::get);
    BufferProtocolBuilder::new(t).def_getbuffer(FortranMatrix::buffer);

    let t = m.add_type::<Reversed>()?.def_init(Reversed::new);
    BufferProtocolBuilder::new(t).def_getbuffer(Reversed::buffer);

    let t = m.add_type::<Cube>()?.def_init(Cube::new);
    BufferProtocolBuilder::new(t).def_getbuffer(Cube::buffer);

    let t = m
        .add_type::<Faulty>()?
        .def_init(Faulty::new)
        .def_method_mut(c"bump", Faulty::bump)
        .def_method(c"panic", Faulty::panic)
        .def_method_mut(c"panic_mut", Faulty::panic_mut)
        .def_method(c"fail", Faulty::fail)
        .def_method(c"fail_custom", Faulty::fail_custom)
        .def_method_mut(c"reenter", Faulty::reenter)
        .def_method(c"reenter_shared", Faulty::reenter_shared)
        .def_staticmethod(c"static_panic", Faulty::static_panic)
        .def_getter(c"count", Faulty::count)
        .def_setter(c"count", Faulty::set_count)
        .def_getter(c"getter_panic", Faulty::getter_panic)
        .def_repr(Faulty::repr);
    BufferProtocolBuilder::new(t)
        .def_getbuffer(Faulty::buffer)
        .def_releasebuffer_with(Faulty::release_hook);

    m.add_type::<DropBomb>()?
        .def_init(|armed: bool| DropBomb { armed });

    m.add_type::<Leaky>()?
        .def_init_default()
        .def_method(c"keep", Leaky::keep);

    super::slots::add(m)
}
