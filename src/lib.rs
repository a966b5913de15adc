//! # pontoneer
//!
//! Build CPython extension types by hand, directly on the raw C API (through
//! [`pyo3_ffi`]), without PyO3's high-level layer and without procedural macros — as fast as
//! hand-written C, and sound where a raw layer usually asks for `unsafe`.
//!
//! - [`module!`] emits `PyInit_<name>` for a multi-phase module whose body declares types,
//!   functions, constants and exception types on a [`ModuleBuilder`].
//! - [`TypeBuilder<T>`] assembles a heap type for a Rust type `T: PyClass`: construction,
//!   methods (`&T` and `&mut T` receivers), static methods, properties, `repr`/`str`.
//! - Protocol builders install slots from plain Rust functions:
//!   [`TypeProtocolBuilder`],
//!   [`NumberProtocolBuilder`],
//!   [`MappingProtocolBuilder`],
//!   [`SequenceProtocolBuilder`] and
//!   [`BufferProtocolBuilder`].
//!
//! Handlers are fn items or non-capturing closures. Each one gets its own monomorphized
//! `extern "C"` trampoline that calls it directly; arguments are converted with [`Arg`]
//! (owned [`FromPy`] values, or `&Object`/[`PyRef<'_, T>`](PyRef) borrowed for the call at no
//! reference-count cost), results with [`IntoPy`]; an `Err` becomes the Python exception and a panic becomes
//! `<module>.PanicException`. An object that is not a `T` never reaches a `&T`, and a runtime
//! borrow flag gives `&T`/`&mut T` the semantics of `RefCell` (`RuntimeError` on conflict).
//!
//! ```
//! use pontoneer::prelude::*;
//!
//! #[derive(Default)]
//! pub struct Accumulator { total: f64 }
//! impl PyClass for Accumulator { const NAME: &'static core::ffi::CStr = c"Accumulator"; }
//!
//! impl Accumulator {
//!     fn add(&mut self, x: f64) { self.total += x }
//!     fn total(&self) -> f64 { self.total }
//! }
//!
//! pontoneer::module!(accumulate, |m: &mut ModuleBuilder| {
//!     m.add_type::<Accumulator>()?
//!         .def_init_default()
//!         .def_method_mut(c"add", Accumulator::add)
//!         .def_method(c"total", Accumulator::total)
//!         .def_repr(|a: &Accumulator| format!("Accumulator({})", a.total));
//!     Ok(())
//! });
//! # fn main() {}
//! ```
//!
//! See the README for the layout of the crate, the safety model and the design decisions.

pub use pyo3_ffi as ffi;

mod alloc;
mod cell;
/// The exporter conformance kit (feature `conformance`): any exporter vs CPython's buffer rules.
#[cfg(feature = "conformance")]
pub mod conformance;
mod convert;
pub mod embed;
mod error;
mod method;
mod module;
mod object;
pub mod protocols;
mod trampoline;
mod type_builder;

pub use alloc::try_vec_with_capacity;
#[doc(hidden)]
pub use cell::PyCell;
pub use cell::{PyClass, PyRef, PyRefMut, ensure_not_exported, exports};
pub use convert::{Arg, FromPy, HandlerOutput, IntoPy, Outcome};
pub use error::{ExceptionType, PyErr, PyException, PyResult};
pub use method::{
    Exclusive, FromArgs, Function, MAX_ARGS, Method, MethodMut, Raw, RawMethod, RawSelf, Receiver,
    Shared,
};
pub use module::{ModuleBuilder, ModuleDef, ModuleSlots, standalone_type};
pub use object::Object;
pub use protocols::buffer::{BufferFlags, BufferInfo, BufferProtocolBuilder, Element};
pub use protocols::mapping::MappingProtocolBuilder;
pub use protocols::number::NumberProtocolBuilder;
pub use protocols::sequence::SequenceProtocolBuilder;
pub use protocols::type_protocol::TypeProtocolBuilder;
pub use protocols::{CompareOp, Index, RichCompareOps};
#[doc(hidden)]
pub use trampoline::Cx;
pub use type_builder::{Def, TypeBuilder};

/// Everything a module definition usually needs.
pub mod prelude {
    pub use crate::{
        BufferFlags, BufferInfo, BufferProtocolBuilder, CompareOp, Element, ExceptionType, Index,
        MappingProtocolBuilder, ModuleBuilder, NumberProtocolBuilder, Object, Outcome, PyClass,
        PyErr, PyException, PyRef, PyRefMut, PyResult, SequenceProtocolBuilder, TypeBuilder,
        TypeProtocolBuilder,
    };
}

/// Runs `f` with the GIL held in an embedded interpreter (doctest support).
#[doc(hidden)]
pub fn doctest_interpreter<R>(f: impl FnOnce() -> R) -> R {
    embed::initialize();
    embed::with_gil(f)
}

/// Builds a module from `body` in an embedded interpreter, then runs `code` with the module
/// bound to `m`; panics with the Python traceback if anything fails (doctest support).
#[doc(hidden)]
pub fn doctest_module<F>(body: F, code: &str)
where
    F: Fn(&mut ModuleBuilder) -> PyResult<()> + Copy + 'static,
{
    doctest_interpreter(|| {
        let def = embed::leak_module_def(c"doctest_module", body);
        let result = embed::load_module(def, "doctest_module")
            .and_then(|m| embed::run(code, &[("m", &m)]).map(drop));
        if let Err(e) = result {
            panic!("Python error: {}", embed::describe(e));
        }
    })
}
