//! Test-only classes that exercise every protocol slot the builders install (shared by
//! `pontoneer_testmod` and the Rust integration tests).
//!
//! Fault injection is by value: a handler whose receiver or argument holds `666` panics, one
//! that holds `777` returns `Err(ValueError)` — so the same slot can be driven to succeed,
//! fail and panic from Python.

use core::ffi::CStr;
use std::collections::BTreeMap;

use pontoneer::prelude::*;
use pontoneer::protocols::CompareOp;
use pontoneer::protocols::mapping::MappingProtocolBuilder;
use pontoneer::protocols::number::NumberProtocolBuilder;
use pontoneer::protocols::sequence::SequenceProtocolBuilder;
use pontoneer::protocols::type_protocol::TypeProtocolBuilder;

const PANIC: f64 = 666.0;
const FAIL: f64 = 777.0;

/// Panics or fails when `v` is one of the trigger values.
fn trip(v: f64, what: &str) -> PyResult<()> {
    if v == PANIC {
        panic!("deliberate panic in {what}");
    }
    if v == FAIL {
        return Err(PyErr::value_error(format!("deliberate failure in {what}")));
    }
    Ok(())
}

/// A 2-D vector with every number slot, comparisons and a hash.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Vec2 {
    x: f64,
    y: f64,
}

impl PyClass for Vec2 {
    const NAME: &'static CStr = c"Vec2";
}

/// The other operand as a `Vec2` (by value), if it is one.
fn as_vec(other: &Object) -> Option<Vec2> {
    PyRef::<Vec2>::borrow(other).ok().map(|v| *v)
}

/// The other operand as a real number, if it is one (not a `Vec2`).
fn as_scalar(other: &Object) -> Option<f64> {
    if as_vec(other).is_some() {
        return None;
    }
    other.extract::<f64>().ok()
}

impl Vec2 {
    fn new(x: f64, y: f64) -> Vec2 {
        Vec2 { x, y }
    }
    fn x(&self) -> f64 {
        self.x
    }
    fn y(&self) -> f64 {
        self.y
    }
    fn repr(&self) -> PyResult<String> {
        trip(self.x, "repr")?;
        Ok(format!("Vec2({}, {})", self.x, self.y))
    }
    fn check(&self, what: &str) -> PyResult<()> {
        trip(self.x, what)
    }

    // Comparison and hash.
    fn compare(&self, other: Object, op: CompareOp) -> PyResult<Outcome<bool>> {
        self.check("richcompare")?;
        let Some(o) = as_vec(&other) else {
            return Ok(Outcome::NotImplemented);
        };
        Ok(match op {
            CompareOp::Eq => Outcome::Value(*self == o),
            CompareOp::Ne => Outcome::Value(*self != o),
            _ => Outcome::NotImplemented,
        })
    }
    fn hash(&self) -> PyResult<i64> {
        self.check("hash")?;
        // hash(Vec2(-1, 0)) must come out as -2: -1 means "error" to CPython.
        Ok(if self.y == 0.0 {
            self.x as i64
        } else {
            (self.x * 31.0 + self.y) as i64
        })
    }

    // Unary operators.
    fn neg(&self) -> PyResult<Vec2> {
        self.check("neg")?;
        Ok(Vec2::new(-self.x, -self.y))
    }
    fn pos(&self) -> PyResult<Vec2> {
        self.check("pos")?;
        Ok(*self)
    }
    fn abs(&self) -> PyResult<f64> {
        self.check("abs")?;
        Ok(self.x.hypot(self.y))
    }
    fn invert(&self) -> PyResult<Vec2> {
        self.check("invert")?;
        Ok(Vec2::new(self.y, self.x))
    }
    fn int(&self) -> PyResult<i64> {
        self.check("int")?;
        Ok(self.x as i64)
    }
    fn float(&self) -> PyResult<f64> {
        self.check("float")?;
        Ok(self.x)
    }
    fn index(&self) -> PyResult<i64> {
        self.check("index")?;
        Ok(self.x as i64)
    }
    fn bool(&self) -> PyResult<bool> {
        self.check("bool")?;
        Ok(self.x != 0.0 || self.y != 0.0)
    }

    // Binary operators: `Vec2 op Vec2` componentwise, `Vec2 op scalar` scaling.
    fn add(&self, other: Object) -> PyResult<Outcome<Vec2>> {
        self.check("add")?;
        Ok(match (as_vec(&other), as_scalar(&other)) {
            (Some(o), _) => Outcome::Value(Vec2::new(self.x + o.x, self.y + o.y)),
            (None, Some(k)) => Outcome::Value(Vec2::new(self.x + k, self.y + k)),
            _ => Outcome::NotImplemented,
        })
    }
    /// `k + v` for a scalar `k`.
    fn radd(&self, other: f64) -> PyResult<Vec2> {
        self.check("radd")?;
        Ok(Vec2::new(other + self.x, other + self.y))
    }
    fn sub(&self, other: Object) -> PyResult<Outcome<Vec2>> {
        self.check("sub")?;
        Ok(match as_vec(&other) {
            Some(o) => Outcome::Value(Vec2::new(self.x - o.x, self.y - o.y)),
            None => Outcome::NotImplemented,
        })
    }
    /// `k - v` for a scalar `k` (operand order matters).
    fn rsub(&self, other: f64) -> PyResult<Vec2> {
        self.check("rsub")?;
        Ok(Vec2::new(other - self.x, other - self.y))
    }
    fn mul(&self, k: Object) -> PyResult<Outcome<Vec2>> {
        self.check("mul")?;
        Ok(match as_scalar(&k) {
            Some(k) => Outcome::Value(Vec2::new(self.x * k, self.y * k)),
            None => Outcome::NotImplemented,
        })
    }
    fn truediv(&self, k: f64) -> PyResult<Vec2> {
        self.check("truediv")?;
        if k == 0.0 {
            return Err(PyErr::zero_division_error("Vec2 division by zero"));
        }
        Ok(Vec2::new(self.x / k, self.y / k))
    }
    fn floordiv(&self, k: f64) -> PyResult<Vec2> {
        self.check("floordiv")?;
        if k == 0.0 {
            return Err(PyErr::zero_division_error("Vec2 division by zero"));
        }
        Ok(Vec2::new((self.x / k).floor(), (self.y / k).floor()))
    }
    fn rem(&self, k: f64) -> PyResult<Vec2> {
        self.check("mod")?;
        Ok(Vec2::new(self.x.rem_euclid(k), self.y.rem_euclid(k)))
    }
    fn divmod(&self, k: f64) -> PyResult<(Vec2, Vec2)> {
        Ok((self.floordiv(k)?, self.rem(k)?))
    }
    fn lshift(&self, n: u32) -> PyResult<Vec2> {
        self.check("lshift")?;
        let f = f64::from(1u32 << n.min(31));
        Ok(Vec2::new(self.x * f, self.y * f))
    }
    fn rshift(&self, n: u32) -> PyResult<Vec2> {
        self.check("rshift")?;
        let f = f64::from(1u32 << n.min(31));
        Ok(Vec2::new(self.x / f, self.y / f))
    }
    fn and(&self, m: i64) -> PyResult<Vec2> {
        self.check("and")?;
        Ok(Vec2::new(
            (self.x as i64 & m) as f64,
            (self.y as i64 & m) as f64,
        ))
    }
    fn or(&self, m: i64) -> PyResult<Vec2> {
        self.check("or")?;
        Ok(Vec2::new(
            (self.x as i64 | m) as f64,
            (self.y as i64 | m) as f64,
        ))
    }
    fn xor(&self, m: i64) -> PyResult<Vec2> {
        self.check("xor")?;
        Ok(Vec2::new(
            (self.x as i64 ^ m) as f64,
            (self.y as i64 ^ m) as f64,
        ))
    }
    /// `a @ b`: the dot product.
    fn matmul(&self, other: PyRef<Vec2>) -> PyResult<f64> {
        self.check("matmul")?;
        Ok(self.x * other.x + self.y * other.y)
    }
    /// `v ** k` and `pow(v, k, m)`: componentwise.
    fn pow(&self, k: f64, modulo: Option<Object>) -> PyResult<Vec2> {
        self.check("pow")?;
        let m = modulo.map(|m| m.extract::<f64>()).transpose()?;
        let f = |v: f64| match m {
            Some(m) => v.powf(k).rem_euclid(m),
            None => v.powf(k),
        };
        Ok(Vec2::new(f(self.x), f(self.y)))
    }
    /// `k ** v`: componentwise.
    fn rpow(&self, k: f64, _modulo: Option<Object>) -> PyResult<Vec2> {
        self.check("rpow")?;
        Ok(Vec2::new(k.powf(self.x), k.powf(self.y)))
    }

    // In-place operators (`&mut self`).
    fn iadd(&mut self, other: PyRef<Vec2>) -> PyResult<()> {
        trip(self.x, "iadd")?;
        self.x += other.x;
        self.y += other.y;
        Ok(())
    }
    fn isub(&mut self, other: Object) -> PyResult<Outcome<()>> {
        trip(self.x, "isub")?;
        let Some(o) = as_vec(&other) else {
            return Ok(Outcome::NotImplemented);
        };
        self.x -= o.x;
        self.y -= o.y;
        Ok(Outcome::Value(()))
    }
    fn imul(&mut self, k: f64) -> PyResult<()> {
        trip(self.x, "imul")?;
        self.x *= k;
        self.y *= k;
        Ok(())
    }
    fn itruediv(&mut self, k: f64) -> PyResult<()> {
        *self = self.truediv(k)?;
        Ok(())
    }
    fn ifloordiv(&mut self, k: f64) -> PyResult<()> {
        *self = self.floordiv(k)?;
        Ok(())
    }
    fn imod(&mut self, k: f64) -> PyResult<()> {
        *self = self.rem(k)?;
        Ok(())
    }
    fn ilshift(&mut self, n: u32) -> PyResult<()> {
        *self = self.lshift(n)?;
        Ok(())
    }
    fn irshift(&mut self, n: u32) -> PyResult<()> {
        *self = self.rshift(n)?;
        Ok(())
    }
    fn iand(&mut self, m: i64) -> PyResult<()> {
        *self = self.and(m)?;
        Ok(())
    }
    fn ior(&mut self, m: i64) -> PyResult<()> {
        *self = self.or(m)?;
        Ok(())
    }
    fn ixor(&mut self, m: i64) -> PyResult<()> {
        *self = self.xor(m)?;
        Ok(())
    }
    /// `a @= b` keeps `a` a Vec2: scales it by the dot product.
    fn imatmul(&mut self, other: PyRef<Vec2>) -> PyResult<()> {
        let d = self.matmul(other)?;
        self.x *= d;
        self.y *= d;
        Ok(())
    }
    fn ipow(&mut self, k: f64, modulo: Option<Object>) -> PyResult<()> {
        *self = self.pow(k, modulo)?;
        Ok(())
    }
}

/// A string-keyed mapping of floats (`&mut` setitem with `Option` for delete).
#[derive(Default)]
pub struct StrMap {
    items: BTreeMap<String, f64>,
}

impl PyClass for StrMap {
    const NAME: &'static CStr = c"StrMap";
}

impl StrMap {
    fn len(&self) -> usize {
        self.items.len()
    }
    fn get(&self, key: String) -> PyResult<f64> {
        match key.as_str() {
            "panic" => panic!("deliberate panic in mp_subscript"),
            "fail" => Err(PyErr::value_error("deliberate failure in mp_subscript")),
            _ => self
                .items
                .get(&key)
                .copied()
                .ok_or_else(|| PyErr::key_error(key)),
        }
    }
    fn set(&mut self, key: String, value: Option<f64>) -> PyResult<()> {
        match value {
            Some(v) => {
                trip(v, "mp_ass_subscript")?;
                self.items.insert(key, v);
                Ok(())
            }
            None => match self.items.remove(&key) {
                Some(_) => Ok(()),
                None => Err(PyErr::key_error(key)),
            },
        }
    }
}

/// An iterator: `Countdown(n)` yields `n - 1, ..., 0`.
pub struct Countdown {
    n: i64,
}

impl PyClass for Countdown {
    const NAME: &'static CStr = c"Countdown";
}

impl Countdown {
    fn next(&mut self) -> PyResult<Option<i64>> {
        trip(self.n as f64, "tp_iternext")?;
        if self.n <= 0 {
            return Ok(None);
        }
        self.n -= 1;
        Ok(Some(self.n))
    }
}

/// A callable: `Adder(k)(x) == x + k`.
pub struct Adder {
    k: f64,
}

impl PyClass for Adder {
    const NAME: &'static CStr = c"Adder";
}

impl Adder {
    fn call(&self, x: f64) -> PyResult<f64> {
        trip(x, "tp_call")?;
        Ok(x + self.k)
    }
}

/// A sequence of integers with every `sq_*` slot.
#[derive(Default)]
pub struct Seq {
    items: Vec<i64>,
}

impl PyClass for Seq {
    const NAME: &'static CStr = c"Seq";
}

fn seq_items(items: Vec<i64>) -> Seq {
    Seq { items }
}

impl Seq {
    fn new(n: usize) -> Seq {
        Seq {
            items: (0..n as i64).collect(),
        }
    }
    fn tolist(&self) -> Vec<i64> {
        self.items.clone()
    }
    fn len(&self) -> usize {
        self.items.len()
    }
    /// `i` was already made non-negative by CPython when it could (sq_length exists).
    fn item(&self, i: isize) -> PyResult<i64> {
        let v = usize::try_from(i)
            .ok()
            .and_then(|i| self.items.get(i).copied())
            .ok_or_else(|| PyErr::index_error("Seq index out of range"))?;
        trip(v as f64, "sq_item")?;
        Ok(v)
    }
    fn set_item(&mut self, i: isize, value: Option<i64>) -> PyResult<()> {
        let i = usize::try_from(i)
            .ok()
            .filter(|&i| i < self.items.len())
            .ok_or_else(|| PyErr::index_error("Seq assignment index out of range"))?;
        match value {
            Some(v) => {
                trip(v as f64, "sq_ass_item")?;
                self.items[i] = v;
            }
            None => {
                self.items.remove(i);
            }
        }
        Ok(())
    }
    fn contains(&self, x: i64) -> PyResult<bool> {
        trip(x as f64, "sq_contains")?;
        Ok(self.items.contains(&x))
    }
    fn concat(&self, other: PyRef<Seq>) -> PyResult<Seq> {
        if let Some(&first) = other.items.first() {
            trip(first as f64, "sq_concat")?;
        }
        Ok(seq_items(
            self.items.iter().chain(&other.items).copied().collect(),
        ))
    }
    fn repeat(&self, n: isize) -> PyResult<Seq> {
        trip(n as f64, "sq_repeat")?;
        let n = usize::try_from(n).unwrap_or(0);
        let mut items = Vec::new();
        items.try_reserve(self.items.len().saturating_mul(n))?;
        for _ in 0..n {
            items.extend_from_slice(&self.items);
        }
        Ok(seq_items(items))
    }
    fn iconcat(&mut self, other: SeqItems) -> PyResult<()> {
        trip(
            other.0.first().copied().unwrap_or(0) as f64,
            "sq_inplace_concat",
        )?;
        self.items.extend(other.0);
        Ok(())
    }
    fn irepeat(&mut self, n: isize) -> PyResult<()> {
        trip(n as f64, "sq_inplace_repeat")?;
        let once = core::mem::take(&mut self.items);
        for _ in 0..usize::try_from(n).unwrap_or(0) {
            self.items.extend_from_slice(&once);
        }
        Ok(())
    }
}

/// The items of a `Seq` or of a list of ints, taken by value (so `s += s` works: no borrow
/// of the right operand is held while the left one is mutated).
pub struct SeqItems(Vec<i64>);

impl pontoneer::FromPy for SeqItems {
    fn from_py(obj: &Object) -> PyResult<SeqItems> {
        if let Ok(s) = PyRef::<Seq>::borrow(obj) {
            return Ok(SeqItems(s.items.clone()));
        }
        let Ok(len) = obj.getattr(c"__len__") else {
            return Err(PyErr::type_error(format!(
                "can only extend Seq with a Seq or a sequence of ints, not {}",
                obj.type_name()
            )));
        };
        let n = len.call0()?.extract::<usize>()?;
        let mut items = Vec::with_capacity(n);
        for i in 0..n {
            let index = Object::from_value(i)?;
            let item = obj.getattr(c"__getitem__")?.call1(&index)?;
            items.push(item.extract::<i64>()?);
        }
        Ok(SeqItems(items))
    }
}

/// Registers the slot test classes.
pub fn add(m: &mut ModuleBuilder) -> PyResult<()> {
    let t = m
        .add_type::<Vec2>()?
        .def_init(Vec2::new)
        .def_getter(c"x", Vec2::x)
        .def_getter(c"y", Vec2::y);
    TypeProtocolBuilder::new(t)
        .def_repr(Vec2::repr)
        .def_richcompare(Vec2::compare)
        .def_hash(Vec2::hash);
    NumberProtocolBuilder::new(t)
        .def_neg(Vec2::neg)
        .def_pos(Vec2::pos)
        .def_abs(Vec2::abs)
        .def_invert(Vec2::invert)
        .def_int(Vec2::int)
        .def_float(Vec2::float)
        .def_index(Vec2::index)
        .def_bool(Vec2::bool)
        .def_add_and_radd(Vec2::add, Vec2::radd)
        .def_sub_and_rsub(Vec2::sub, Vec2::rsub)
        .def_mul_and_rmul(Vec2::mul, Vec2::mul)
        .def_truediv(Vec2::truediv)
        .def_floordiv(Vec2::floordiv)
        .def_mod(Vec2::rem)
        .def_divmod(Vec2::divmod)
        .def_lshift(Vec2::lshift)
        .def_rshift(Vec2::rshift)
        .def_and(Vec2::and)
        .def_or(Vec2::or)
        .def_xor(Vec2::xor)
        .def_matmul(Vec2::matmul)
        .def_pow_and_rpow(Vec2::pow, Vec2::rpow)
        .def_iadd(Vec2::iadd)
        .def_isub(Vec2::isub)
        .def_imul(Vec2::imul)
        .def_itruediv(Vec2::itruediv)
        .def_ifloordiv(Vec2::ifloordiv)
        .def_imod(Vec2::imod)
        .def_ilshift(Vec2::ilshift)
        .def_irshift(Vec2::irshift)
        .def_iand(Vec2::iand)
        .def_ior(Vec2::ior)
        .def_ixor(Vec2::ixor)
        .def_imatmul(Vec2::imatmul)
        .def_ipow(Vec2::ipow);

    let t = m.add_type::<StrMap>()?.def_init_default();
    MappingProtocolBuilder::new(t)
        .def_len(StrMap::len)
        .def_getitem(StrMap::get)
        .def_setitem(StrMap::set);

    let t = m
        .add_type::<Countdown>()?
        .def_init(|n: i64| Countdown { n });
    TypeProtocolBuilder::new(t)
        .def_iter_self()
        .def_next(Countdown::next);

    let t = m.add_type::<Adder>()?.def_init(|k: f64| Adder { k });
    TypeProtocolBuilder::new(t).def_call(Adder::call);

    let t = m
        .add_type::<Seq>()?
        .def_init(Seq::new)
        .def_method(c"tolist", Seq::tolist);
    SequenceProtocolBuilder::new(t)
        .def_len(Seq::len)
        .def_getitem(Seq::item)
        .def_setitem(Seq::set_item)
        .def_contains(Seq::contains)
        .def_concat(Seq::concat)
        .def_repeat(Seq::repeat)
        .def_iconcat(Seq::iconcat)
        .def_irepeat(Seq::irepeat);
    Ok(())
}
