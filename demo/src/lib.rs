//! `pontoneer_demo`: the example extension module whose Python behaviour is fixed by the
//! demo contract (`FloatBuffer`, a read-only 1-D buffer of float64, and `Matrix`, a
//! writable 2-D C-contiguous float64 buffer), written with pontoneer's builders.
//!
//! The idiom it teaches: data that may change while exported lives in `Cell`s and is changed
//! through `&self` (`set`, `m.set`), and operations that move or free the memory take
//! `&mut self` (`append`), which the layer refuses while a buffer view is alive.

use core::cell::Cell;
use core::ffi::CStr;

use pontoneer::prelude::*;
use pontoneer::protocols::mapping::MappingProtocolBuilder;
use pontoneer::protocols::number::NumberProtocolBuilder;
use pontoneer::protocols::sequence::SequenceProtocolBuilder;
use pontoneer::protocols::type_protocol::TypeProtocolBuilder;
use pontoneer::protocols::{CompareOp, Index};

/// A growable, read-only-exported vector of float64.
#[derive(Default)]
pub struct FloatBuffer {
    data: Vec<Cell<f64>>,
}

impl PyClass for FloatBuffer {
    const NAME: &'static CStr = c"FloatBuffer";
    const DOC: Option<&'static CStr> =
        Some(c"FloatBuffer() -> an empty, growable buffer of float64 (read-only buffer export)");
}

impl FloatBuffer {
    /// A buffer holding `values` (for Rust hosts that create instances themselves).
    pub fn from_values(values: impl IntoIterator<Item = f64>) -> FloatBuffer {
        FloatBuffer {
            data: values.into_iter().map(Cell::new).collect(),
        }
    }

    /// A copy of the items.
    pub fn values(&self) -> Vec<f64> {
        self.data.iter().map(Cell::get).collect()
    }

    /// The address of the first item (what zero-copy consumers must see).
    pub fn data_address(&self) -> usize {
        self.data.as_ptr() as usize
    }

    /// `FloatBuffer.from_count(n)`: `[0.0, 1.0, ..., n-1]`.
    fn from_count(n: usize) -> PyResult<FloatBuffer> {
        let mut data = pontoneer::try_vec_with_capacity(n)?;
        // As in the C reference: an i32 counter when the count allows, since x86-64 has a
        // packed i32 -> f64 conversion (two per instruction) but none for 64-bit integers
        // before AVX-512.
        match i32::try_from(n) {
            Ok(n) => data.extend((0..n).map(|i| Cell::new(f64::from(i)))),
            Err(_) => data.extend((0..n).map(|i| Cell::new(i as f64))),
        }
        Ok(FloatBuffer { data })
    }

    /// `b.append(x)`: refused by the layer while a view is exported (`&mut self`).
    fn append(&mut self, x: f64) -> PyResult<()> {
        self.data.try_reserve(1)?;
        self.data.push(Cell::new(x));
        Ok(())
    }

    fn sum(&self) -> f64 {
        self.data.iter().map(Cell::get).sum()
    }

    fn repr(&self) -> String {
        format!("FloatBuffer(len={})", self.data.len())
    }

    fn buffer(&self, _flags: BufferFlags) -> PyResult<BufferInfo<'_>> {
        Ok(BufferInfo::from_cells(&self.data).readonly())
    }

    fn len(&self) -> usize {
        self.data.len()
    }

    /// `b[i]` (mapping slot: the fast path for `b[i]`, with `list`'s index rules).
    fn item(&self, i: Index) -> PyResult<f64> {
        Ok(self.data[i.resolve(self.data.len())?].get())
    }

    /// `b[i]` through `sq_item` (iteration); CPython already added `len` to negative `i`.
    fn seq_item(&self, i: isize) -> PyResult<f64> {
        self.item(Index(i))
    }

    /// `b[i] = x`: through `&self` and a `Cell`, so it works while a view is exported and the
    /// change is visible through the view.
    fn set_item(&self, i: Index, x: f64) -> PyResult<()> {
        self.data[i.resolve(self.data.len())?].set(x);
        Ok(())
    }

    /// `del b[i]`: moves memory, so `&mut self` (refused while exported).
    fn del_item(&mut self, i: Index) -> PyResult<()> {
        let i = i.resolve(self.data.len())?;
        self.data.remove(i);
        Ok(())
    }

    /// `x in b`: `any(item == x)` with Python's `==` (like `list` and `array.array`): exact
    /// for floats (fast path) and for every other number type, `False` for non-numbers.
    /// `x` is borrowed for the call (`&Object`): no reference is taken.
    fn contains(&self, x: &Object) -> PyResult<bool> {
        if let Some(v) = x.as_exact_f64() {
            return Ok(self.data.iter().any(|c| c.get() == v));
        }
        for c in &self.data {
            if Object::from_value(c.get())?.eq(x)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `b + c`: a new FloatBuffer. `c` is borrowed as a FloatBuffer for the call; any other
    /// operand does not convert, which the number protocol answers with `NotImplemented`.
    fn concat(&self, other: PyRef<'_, FloatBuffer>) -> PyResult<FloatBuffer> {
        let mut data = pontoneer::try_vec_with_capacity(self.data.len() + other.data.len())?;
        data.extend_from_slice(&self.data);
        data.extend_from_slice(&other.data);
        Ok(FloatBuffer { data })
    }

    /// `-b`: every item negated (`-0.0` for `0.0`).
    fn neg(&self) -> PyResult<FloatBuffer> {
        let mut data = pontoneer::try_vec_with_capacity(self.data.len())?;
        data.extend(self.data.iter().map(|c| Cell::new(-c.get())));
        Ok(FloatBuffer { data })
    }

    /// `==` and `!=` between FloatBuffers (another type does not convert to
    /// `PyRef<FloatBuffer>`: `NotImplemented`); orderings are `NotImplemented`.
    fn compare(&self, other: PyRef<'_, FloatBuffer>, op: CompareOp) -> Outcome<bool> {
        let equal = self.data.len() == other.data.len()
            && self
                .data
                .iter()
                .zip(other.data.iter())
                .all(|(a, b)| a.get() == b.get());
        match op {
            CompareOp::Eq => Outcome::Value(equal),
            CompareOp::Ne => Outcome::Value(!equal),
            _ => Outcome::NotImplemented,
        }
    }
}

/// A fixed-size, zero-filled, writable 2-D float64 matrix.
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Box<[Cell<f64>]>,
    /// `(rows, cols)` and `(cols * 8, 8)`, kept next to the data so that buffer views can
    /// point at them: an export allocates nothing.
    shape: [isize; 2],
    strides: [isize; 2],
}

impl PyClass for Matrix {
    const NAME: &'static CStr = c"Matrix";
    const DOC: Option<&'static CStr> =
        Some(c"Matrix(rows, cols) -> a zero-filled float64 matrix (writable C-contiguous buffer)");
}

impl Matrix {
    fn new(rows: usize, cols: usize) -> PyResult<Matrix> {
        let too_large =
            || PyErr::overflow_error(format!("Matrix({rows}, {cols}) is too large to allocate"));
        let n = rows.checked_mul(cols).ok_or_else(too_large)?;
        let row_bytes = cols.checked_mul(size_of::<f64>()).ok_or_else(too_large)?;
        let bytes = n.checked_mul(size_of::<f64>()).ok_or_else(too_large)?;
        if bytes > isize::MAX as usize || row_bytes > isize::MAX as usize {
            return Err(too_large());
        }
        let mut data = pontoneer::try_vec_with_capacity(n)?;
        data.resize(n, Cell::new(0.0));
        Ok(Matrix {
            rows,
            cols,
            data: data.into_boxed_slice(),
            // Both fit in isize: `rows` came from a Python int (<= isize::MAX), and
            // `row_bytes` was checked above.
            shape: [rows as isize, cols as isize],
            strides: [row_bytes as isize, size_of::<f64>() as isize],
        })
    }

    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn cell(&self, r: isize, c: isize) -> PyResult<&Cell<f64>> {
        match (usize::try_from(r), usize::try_from(c)) {
            (Ok(r), Ok(c)) if r < self.rows && c < self.cols => Ok(&self.data[r * self.cols + c]),
            _ => Err(PyErr::index_error(format!(
                "Matrix index ({r}, {c}) out of range for shape ({}, {})",
                self.rows, self.cols
            ))),
        }
    }

    fn get(&self, r: isize, c: isize) -> PyResult<f64> {
        self.cell(r, c).map(Cell::get)
    }

    /// Works while exported: the element lives in a `Cell`, and the change is seen through
    /// every view.
    fn set(&self, r: isize, c: isize, x: f64) -> PyResult<()> {
        self.cell(r, c).map(|cell| cell.set(x))
    }

    fn buffer(&self, _flags: BufferFlags) -> PyResult<BufferInfo<'_>> {
        BufferInfo::from_cells(&self.data).with_borrowed_layout(&self.shape, &self.strides, 0)
    }
}

/// The module body: declares `FloatBuffer` and `Matrix`.
pub fn init(m: &mut ModuleBuilder) -> PyResult<()> {
    m.doc(c"pontoneer's demo module: FloatBuffer and Matrix, per the demo contract.")?;

    let t = m
        .add_type::<FloatBuffer>()?
        .def_init_default()
        .def_staticmethod(
            (
                c"from_count",
                c"from_count(n) -> FloatBuffer [0.0, 1.0, ..., n-1]",
            ),
            FloatBuffer::from_count,
        )
        .def_method_mut(
            (c"append", c"append(x): add float(x) at the end"),
            FloatBuffer::append,
        )
        .def_method((c"sum", c"sum() -> float"), FloatBuffer::sum)
        .def_repr(FloatBuffer::repr);
    BufferProtocolBuilder::new(t).def_getbuffer(FloatBuffer::buffer);
    SequenceProtocolBuilder::new(t)
        .def_len(FloatBuffer::len)
        .def_getitem(FloatBuffer::seq_item)
        .def_contains(FloatBuffer::contains);
    MappingProtocolBuilder::new(t)
        .def_getitem(FloatBuffer::item)
        .def_setitem_delitem(FloatBuffer::set_item, FloatBuffer::del_item);
    NumberProtocolBuilder::new(t)
        .def_add(FloatBuffer::concat)
        .def_neg(FloatBuffer::neg);
    TypeProtocolBuilder::new(t).def_richcompare(FloatBuffer::compare);

    let t = m
        .add_type::<Matrix>()?
        .def_init(Matrix::new)
        .def_getter((c"shape", c"(rows, cols)"), Matrix::shape)
        .def_method((c"get", c"get(r, c) -> float"), Matrix::get)
        .def_method((c"set", c"set(r, c, x)"), Matrix::set);
    BufferProtocolBuilder::new(t).def_getbuffer(Matrix::buffer);
    Ok(())
}

pontoneer::module!(pontoneer_demo, init);
