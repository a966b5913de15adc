//! The number protocol: every `nb_*` slot.
//!
//! Binary and ternary operators are the one place where CPython does not guarantee the
//! receiver: `1.0 + b` calls `b`'s `nb_add` as `nb_add(1.0, b)`. The trampoline therefore
//! checks both operands: the forward handler (`def_add`) runs when the left operand is a
//! `T`, the reflected one (`def_radd`) when only the right operand is, and everything else
//! is `NotImplemented` (so Python tries the other operand, then raises `TypeError`).
//! In-place operators (`def_iadd`, ...) receive the left operand, usually as `&mut T`, and
//! the slot returns the object itself.
//!
//! | Python | builder methods | C slot |
//! | --- | --- | --- |
//! | `-a`, `+a`, `abs(a)`, `~a` | `def_neg`, `def_pos`, `def_abs`, `def_invert` | `nb_negative`, `nb_positive`, `nb_absolute`, `nb_invert` |
//! | `int(a)`, `float(a)`, `operator.index(a)` | `def_int`, `def_float`, `def_index` | `nb_int`, `nb_float`, `nb_index` |
//! | `bool(a)` | `def_bool` | `nb_bool` |
//! | `a + b`, `b + a`, `a += b` | `def_add`, `def_radd`, `def_add_and_radd`, `def_iadd` | `nb_add`, `nb_inplace_add` |
//! | `a - b` | `def_sub`, `def_rsub`, `def_sub_and_rsub`, `def_isub` | `nb_subtract`, `nb_inplace_subtract` |
//! | `a * b` | `def_mul`, `def_rmul`, `def_mul_and_rmul`, `def_imul` | `nb_multiply`, `nb_inplace_multiply` |
//! | `a / b` | `def_truediv`, `def_rtruediv`, `def_truediv_and_rtruediv`, `def_itruediv` | `nb_true_divide`, `nb_inplace_true_divide` |
//! | `a // b` | `def_floordiv`, `def_rfloordiv`, `def_floordiv_and_rfloordiv`, `def_ifloordiv` | `nb_floor_divide`, `nb_inplace_floor_divide` |
//! | `a % b` | `def_mod`, `def_rmod`, `def_mod_and_rmod`, `def_imod` | `nb_remainder`, `nb_inplace_remainder` |
//! | `divmod(a, b)` | `def_divmod`, `def_rdivmod`, `def_divmod_and_rdivmod` | `nb_divmod` |
//! | `a << b`, `a >> b` | `def_lshift`, `def_rlshift`, ..., `def_ilshift`, `def_irshift` | `nb_lshift`, `nb_rshift` (+ in-place) |
//! | `a & b`, `a \| b`, `a ^ b` | `def_and`, `def_or`, `def_xor` (+ `r`, `_and_r`, `i` forms) | `nb_and`, `nb_or`, `nb_xor` (+ in-place) |
//! | `a @ b` | `def_matmul`, `def_rmatmul`, `def_matmul_and_rmatmul`, `def_imatmul` | `nb_matrix_multiply`, `nb_inplace_matrix_multiply` |
//! | `a ** b`, `pow(a, b, m)` | `def_pow`, `def_rpow`, `def_pow_and_rpow`, `def_ipow` | `nb_power`, `nb_inplace_power` |
//!
//! Forward and reflected handlers of one operator share one C slot: install both with the
//! `def_<op>_and_r<op>` method. Calling `def_<op>` and `def_r<op>` separately on the same
//! type is refused when the module is created (the second would silently replace the
//! first).

use core::ffi::{c_int, c_void};

use pyo3_ffi as ffi;

use crate::cell::PyClass;
use crate::convert::{Arg, HandlerOutput};
use crate::method::Receiver;
use crate::object::Object;
use crate::protocols::InPlaceOutput;
use crate::trampoline::{self, Binary, NoHandler, assert_zst};
use crate::type_builder::TypeBuilder;

/// Installs number-protocol slots on a [`TypeBuilder`].
///
/// ```
/// # pontoneer::doctest_module(|m| {
/// use pontoneer::prelude::*;
/// use pontoneer::protocols::number::NumberProtocolBuilder;
/// #[derive(Clone, Copy)]
/// struct Meters(f64);
/// impl PyClass for Meters { const NAME: &'static core::ffi::CStr = c"Meters"; }
/// fn add(a: &Meters, b: Object) -> Outcome<Meters> {
///     match PyRef::<Meters>::borrow(&b) {
///         Ok(b) => Outcome::Value(Meters(a.0 + b.0)),
///         Err(_) => Outcome::NotImplemented,
///     }
/// }
/// fn scale(a: &Meters, k: f64) -> Meters { Meters(a.0 * k) }
/// let t = m.add_type::<Meters>()?
///     .def_init(|v: f64| Meters(v))
///     .def_getter(c"value", |a: &Meters| a.0);
/// NumberProtocolBuilder::new(t)
///     .def_add(add)
///     .def_mul_and_rmul(scale, scale)
///     .def_neg(|a: &Meters| Meters(-a.0));
/// # Ok(()) }, "a = m.Meters(2.0); assert (a + a).value == 4.0 and (3 * a).value == 6.0 and (-a).value == -2.0
/// try:\n    1.0 + a\nexcept TypeError: pass\nelse: raise AssertionError");
/// ```
pub struct NumberProtocolBuilder<'t, T> {
    ty: &'t mut TypeBuilder<T>,
}

macro_rules! unary_ops {
    ($($(#[$doc:meta])* $name:ident => $slot:ident;)*) => {$(
        $(#[$doc])*
        pub fn $name<F, R, K>(self, handler: F) -> Self
        where
            F: Receiver<T, (), R, K>,
            R: HandlerOutput + 'static,
            K: 'static,
        {
            assert_zst(&handler);
            let f: ffi::unaryfunc = trampoline::unaryfunc::<T, F, R, K>;
            // SAFETY: typeslots — this slot is a `unaryfunc`, called with the instance.
            unsafe { self.ty.push_slot(ffi::$slot, f as *mut c_void) };
            self
        }
    )*};
}

macro_rules! binary_ops {
    ($($syntax:literal: $fwd:ident, $rev:ident, $both:ident, $slot:ident;)*) => {$(
        #[doc = concat!("`", stringify!($slot), "` — `", $syntax, "` with the instance on the left. ",
            "The handler gets the other operand as any [`Arg`](crate::Arg) type, e.g. `PyRef<'_, T>` or `&Object` (an operand that does not ",
            "convert makes the operator `NotImplemented`) and returns a value or an ",
            "[`Outcome`](crate::Outcome).")]
        pub fn $fwd<F, A, R, K>(self, handler: F) -> Self
        where
            F: Receiver<T, (A,), R, K>,
            A: Arg + 'static,
            R: HandlerOutput + 'static,
            K: 'static,
        {
            assert_zst(&handler);
            self.install(
                ffi::$slot,
                trampoline::binaryfunc_number::<T, Binary<F, A, R, K>, NoHandler>,
                Half::Forward,
            )
        }

        #[doc = concat!("`", stringify!($slot), "`, reflected — `", $syntax, "` with the instance ",
            "on the right and a left operand that is not a `T`. The handler gets the instance ",
            "and the *left* operand.")]
        pub fn $rev<F, A, R, K>(self, handler: F) -> Self
        where
            F: Receiver<T, (A,), R, K>,
            A: Arg + 'static,
            R: HandlerOutput + 'static,
            K: 'static,
        {
            assert_zst(&handler);
            self.install(
                ffi::$slot,
                trampoline::binaryfunc_number::<T, NoHandler, Binary<F, A, R, K>>,
                Half::Reflected,
            )
        }

        #[doc = concat!("`", stringify!($slot), "` — both operand orders of `", $syntax, "`.")]
        pub fn $both<F, A, R, K, G, B, S, L>(self, forward: F, reflected: G) -> Self
        where
            F: Receiver<T, (A,), R, K>,
            A: Arg + 'static,
            R: HandlerOutput + 'static,
            K: 'static,
            G: Receiver<T, (B,), S, L>,
            B: Arg + 'static,
            S: HandlerOutput + 'static,
            L: 'static,
        {
            assert_zst(&forward);
            assert_zst(&reflected);
            self.install(
                ffi::$slot,
                trampoline::binaryfunc_number::<T, Binary<F, A, R, K>, Binary<G, B, S, L>>,
                Half::Both,
            )
        }
    )*};
}

macro_rules! inplace_ops {
    ($($syntax:literal: $name:ident => $slot:ident;)*) => {$(
        #[doc = concat!("`", stringify!($slot), "` — `", $syntax, "`. The handler (usually `&mut T`) ",
            "returns `()` or an [`Outcome<()>`](crate::Outcome); the slot returns the object ",
            "itself, or `NotImplemented` so that Python falls back to the binary operator.")]
        pub fn $name<F, A, R, K>(self, handler: F) -> Self
        where
            F: Receiver<T, (A,), R, K>,
            A: Arg + 'static,
            R: HandlerOutput + 'static,
            R::Value: InPlaceOutput,
            K: 'static,
        {
            assert_zst(&handler);
            let f: ffi::binaryfunc = trampoline::binaryfunc_inplace::<T, F, A, R, K, true>;
            // SAFETY: typeslots — in-place number slots are `binaryfunc`s, called with the
            // left operand (an instance of this type) first.
            unsafe { self.ty.push_slot(ffi::$slot, f as *mut c_void) };
            self
        }
    )*};
}

/// Which operand orders an installed binary slot handles.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Half {
    Forward,
    Reflected,
    Both,
}

impl<'t, T: PyClass> NumberProtocolBuilder<'t, T> {
    /// Wraps a type builder.
    pub fn new(ty: &'t mut TypeBuilder<T>) -> Self {
        NumberProtocolBuilder { ty }
    }

    fn install(self, slot: c_int, f: ffi::binaryfunc, half: Half) -> Self {
        self.install_raw(slot, f as *mut c_void, half)
    }

    fn install_raw(self, slot: c_int, f: *mut c_void, half: Half) -> Self {
        let previous = self.ty.binary_half(slot);
        if let Some(prev) = previous {
            if prev != half as u8 && half != Half::Both && prev != Half::Both as u8 {
                self.ty.record_error(format!(
                    "{}: forward and reflected handlers of one operator were installed \
                     separately (slot {slot}); use the def_<op>_and_r<op> method to install both",
                    T::NAME.to_string_lossy()
                ));
            }
        }
        self.ty.set_binary_half(slot, half as u8);
        // SAFETY: typeslots — binary number slots are `binaryfunc`s and `nb_power` a
        // `ternaryfunc`; the trampolines passed by the callers have exactly those types and
        // check both operands.
        unsafe { self.ty.push_slot(slot, f) };
        self
    }

    unary_ops! {
        /// `nb_negative` — `-obj`.
        def_neg => Py_nb_negative;
        /// `nb_positive` — `+obj`.
        def_pos => Py_nb_positive;
        /// `nb_absolute` — `abs(obj)`.
        def_abs => Py_nb_absolute;
        /// `nb_invert` — `~obj`.
        def_invert => Py_nb_invert;
        /// `nb_int` — `int(obj)` (the result must be an `int`).
        def_int => Py_nb_int;
        /// `nb_float` — `float(obj)` (the result must be a `float`).
        def_float => Py_nb_float;
        /// `nb_index` — `operator.index(obj)`, and `obj` used as an index or a size.
        def_index => Py_nb_index;
    }

    /// `nb_bool` — `bool(obj)`, `if obj:`. The handler returns `bool`.
    pub fn def_bool<F, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (), R, K>,
        R: HandlerOutput<Value = bool> + 'static,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::inquiry = trampoline::inquiry::<T, F, R, K>;
        // SAFETY: typeslots — nb_bool is an `inquiry`.
        unsafe { self.ty.push_slot(ffi::Py_nb_bool, f as *mut c_void) };
        self
    }

    binary_ops! {
        "a + b": def_add, def_radd, def_add_and_radd, Py_nb_add;
        "a - b": def_sub, def_rsub, def_sub_and_rsub, Py_nb_subtract;
        "a * b": def_mul, def_rmul, def_mul_and_rmul, Py_nb_multiply;
        "a / b": def_truediv, def_rtruediv, def_truediv_and_rtruediv, Py_nb_true_divide;
        "a // b": def_floordiv, def_rfloordiv, def_floordiv_and_rfloordiv, Py_nb_floor_divide;
        "a % b": def_mod, def_rmod, def_mod_and_rmod, Py_nb_remainder;
        "divmod(a, b)": def_divmod, def_rdivmod, def_divmod_and_rdivmod, Py_nb_divmod;
        "a << b": def_lshift, def_rlshift, def_lshift_and_rlshift, Py_nb_lshift;
        "a >> b": def_rshift, def_rrshift, def_rshift_and_rrshift, Py_nb_rshift;
        "a & b": def_and, def_rand, def_and_and_rand, Py_nb_and;
        "a | b": def_or, def_ror, def_or_and_ror, Py_nb_or;
        "a ^ b": def_xor, def_rxor, def_xor_and_rxor, Py_nb_xor;
        "a @ b": def_matmul, def_rmatmul, def_matmul_and_rmatmul, Py_nb_matrix_multiply;
    }

    inplace_ops! {
        "a += b": def_iadd => Py_nb_inplace_add;
        "a -= b": def_isub => Py_nb_inplace_subtract;
        "a *= b": def_imul => Py_nb_inplace_multiply;
        "a /= b": def_itruediv => Py_nb_inplace_true_divide;
        "a //= b": def_ifloordiv => Py_nb_inplace_floor_divide;
        "a %= b": def_imod => Py_nb_inplace_remainder;
        "a <<= b": def_ilshift => Py_nb_inplace_lshift;
        "a >>= b": def_irshift => Py_nb_inplace_rshift;
        "a &= b": def_iand => Py_nb_inplace_and;
        "a |= b": def_ior => Py_nb_inplace_or;
        "a ^= b": def_ixor => Py_nb_inplace_xor;
        "a @= b": def_imatmul => Py_nb_inplace_matrix_multiply;
    }

    /// `nb_power` — `a ** b` and `pow(a, b, m)` with the instance on the left. The handler
    /// gets the exponent and the modulo (`None` for the two-argument form).
    pub fn def_pow<F, A, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (A, Option<Object>), R, K>,
        A: Arg + 'static,
        R: HandlerOutput + 'static,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::ternaryfunc = trampoline::ternaryfunc_power::<T, Binary<F, A, R, K>, NoHandler>;
        self.install_raw(ffi::Py_nb_power, f as *mut c_void, Half::Forward)
    }

    /// `nb_power`, reflected — `b ** a` with the instance as the exponent and a base that is
    /// not a `T`. As with Python classes' `__rpow__`, three-argument `pow(b, a, m)` does not use
    /// the reflected form (it is `NotImplemented`, hence `TypeError`).
    pub fn def_rpow<F, A, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (A, Option<Object>), R, K>,
        A: Arg + 'static,
        R: HandlerOutput + 'static,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::ternaryfunc = trampoline::ternaryfunc_power::<T, NoHandler, Binary<F, A, R, K>>;
        self.install_raw(ffi::Py_nb_power, f as *mut c_void, Half::Reflected)
    }

    /// `nb_power` — both operand orders.
    pub fn def_pow_and_rpow<F, A, R, K, G, B, S, L>(self, forward: F, reflected: G) -> Self
    where
        F: Receiver<T, (A, Option<Object>), R, K>,
        A: Arg + 'static,
        R: HandlerOutput + 'static,
        K: 'static,
        G: Receiver<T, (B, Option<Object>), S, L>,
        B: Arg + 'static,
        S: HandlerOutput + 'static,
        L: 'static,
    {
        assert_zst(&forward);
        assert_zst(&reflected);
        let f: ffi::ternaryfunc =
            trampoline::ternaryfunc_power::<T, Binary<F, A, R, K>, Binary<G, B, S, L>>;
        self.install_raw(ffi::Py_nb_power, f as *mut c_void, Half::Both)
    }

    /// `nb_inplace_power` — `a **= b`; the handler gets the exponent and `None` as modulo.
    pub fn def_ipow<F, A, R, K>(self, handler: F) -> Self
    where
        F: Receiver<T, (A, Option<Object>), R, K>,
        A: Arg + 'static,
        R: HandlerOutput + 'static,
        R::Value: InPlaceOutput,
        K: 'static,
    {
        assert_zst(&handler);
        let f: ffi::ternaryfunc = trampoline::ternaryfunc_inplace::<T, F, A, R, K>;
        // SAFETY: typeslots — nb_inplace_power is a `ternaryfunc`, called with the left
        // operand (an instance of this type) first.
        unsafe {
            self.ty
                .push_slot(ffi::Py_nb_inplace_power, f as *mut c_void)
        };
        self
    }
}
