//! A host program that embeds Python and hands it Rust-made objects.
//!
//! It registers `pontoneer_demo`'s types before the interpreter starts (inittab), creates a
//! `FloatBuffer` in Rust, lets a Python snippet view it as a numpy array without copying and
//! compute on it, reads the result back in Rust, then finalizes the interpreter and does it
//! all again in a fresh one (module state lives in module objects, so the types are simply
//! created again). A class with no module (`standalone_type`) is made a builtin in each
//! interpreter. No `unsafe` anywhere.
//!
//! Run it with `cargo run --example embed`.

#[path = "../../demo/src/lib.rs"]
mod demo;

use demo::FloatBuffer;
use pontoneer::{Object, PyClass, PyRef, PyResult, embed, standalone_type};

/// A class with no module at all, placed in `builtins` by the host.
#[derive(Default)]
struct Tally {
    count: u64,
}

impl PyClass for Tally {
    const NAME: &'static core::ffi::CStr = c"Tally";
}

/// Creates the standalone `Tally` type, makes it a builtin, and lets Python count with it.
fn with_standalone_type() -> PyResult<u64> {
    let tally = standalone_type::<Tally, _>(c"builtins", |t| {
        t.def_init_default()
            .def_method_mut(c"add", |t: &mut Tally, n: u64| t.count += n)
            .def_getter(c"count", |t: &Tally| t.count);
    })?;
    embed::import("builtins")?.set_attr(c"Tally", &tally)?;
    let ns = embed::run("t = Tally()\nfor i in range(5):\n    t.add(i)\n", &[])?;
    let t = ns.get_item("t")?;
    Ok(PyRef::<Tally>::borrow(&t)?.count)
}

/// Views the buffer as a numpy array (zero-copy), computes on it, reports the address numpy
/// sees so the host can check that no copy was made.
const SNIPPET: &str = r#"
import numpy as np
a = np.frombuffer(samples, dtype=np.float64)
address = a.__array_interface__["data"][0]
total = float((a * 2.0).sum())
mean = float(a.mean())
del a
"#;

/// What one interpreter lifetime computed.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    /// `sum(2 * x)` computed by numpy.
    pub total: f64,
    /// The mean computed by numpy.
    pub mean: f64,
    /// Whether numpy read the Rust memory in place.
    pub zero_copy: bool,
    /// The items as Rust sees them afterwards (unchanged).
    pub items_after: usize,
}

fn with_numpy(values: Vec<f64>) -> PyResult<Outcome> {
    let module = embed::import("pontoneer_demo")?;
    let samples = Object::new_instance(&module, FloatBuffer::from_values(values))?;
    let rust_address = PyRef::<FloatBuffer>::borrow(&samples)?.data_address();
    let ns = embed::run(SNIPPET, &[("samples", &samples)])?;
    let address = ns.get_item("address")?.extract::<usize>()?;
    let samples_after = PyRef::<FloatBuffer>::borrow(&samples)?;
    Ok(Outcome {
        total: ns.get_item("total")?.extract()?,
        mean: ns.get_item("mean")?.extract()?,
        zero_copy: address == rust_address,
        items_after: samples_after.values().len(),
    })
}

fn with_memoryview_and_tally(values: Vec<f64>) -> PyResult<(f64, u64)> {
    Ok((with_memoryview(values)?, with_standalone_type()?))
}

fn with_memoryview(values: Vec<f64>) -> PyResult<f64> {
    let module = embed::import("pontoneer_demo")?;
    let samples = Object::new_instance(&module, FloatBuffer::from_values(values))?;
    let ns = embed::run("total = sum(memoryview(samples))", &[("samples", &samples)])?;
    ns.get_item("total")?.extract()
}

/// Two interpreter lifetimes: numpy in the first, plain memoryview in the second (numpy
/// itself does not support being imported again after `Py_Finalize`).
pub fn run() -> Result<(Outcome, f64, u64, u64), String> {
    let values: Vec<f64> = (0..1000).map(|i| f64::from(i) * 0.5).collect();

    embed::append_inittab(c"pontoneer_demo", demo::init)?;
    embed::initialize();
    let (first, tally_first) = embed::with_gil(|| {
        Ok::<_, pontoneer::PyErr>((with_numpy(values.clone())?, with_standalone_type()?))
    })
    .map_err(|e| embed::with_gil(|| embed::describe(e)))?;
    embed::finalize()?;

    embed::append_inittab(c"pontoneer_demo", demo::init)?;
    embed::initialize();
    let (second, tally_second) = embed::with_gil(|| with_memoryview_and_tally(values))
        .map_err(|e| embed::with_gil(|| embed::describe(e)))?;
    embed::finalize()?;
    Ok((first, second, tally_first, tally_second))
}

#[allow(dead_code)]
fn main() {
    match run() {
        Ok((first, second, tally_first, tally_second)) => {
            println!("numpy over a Rust FloatBuffer: {first:?}");
            println!("after Py_Finalize and a fresh interpreter: sum = {second}");
            println!(
                "a standalone builtin class in each interpreter: {tally_first}, {tally_second}"
            );
        }
        Err(e) => {
            eprintln!("embedding failed: {e}");
            std::process::exit(1);
        }
    }
}
