//! Shared helpers for the integration tests: one embedded interpreter per test binary, the
//! demo and test modules loaded into it from their Rust sources, and Python snippets.
#![allow(dead_code)]

use pontoneer::{Object, PyResult, embed};

#[path = "../../demo/src/lib.rs"]
pub mod demo;
#[path = "../testmod/src/slots.rs"]
pub mod slots;
#[path = "../testmod/src/types.rs"]
pub mod testmod;

/// Runs `f` holding the GIL of the process's embedded interpreter.
pub fn with_py<R>(f: impl FnOnce() -> R) -> R {
    embed::initialize();
    embed::with_gil(f)
}

/// `import name`, loading `pontoneer_demo` / `pontoneer_testmod` from the Rust sources of
/// this test binary the first time (no extension file involved).
pub fn module(name: &str) -> Object {
    if let Ok(m) = embed::import(name) {
        return m;
    }
    // SAFETY-free: clearing the ImportError of the failed attempt.
    let _ = pontoneer::PyErr::take();
    let def = match name {
        "pontoneer_demo" => embed::leak_module_def(c"pontoneer_demo", demo::init),
        "pontoneer_testmod" => embed::leak_module_def(c"pontoneer_testmod", testmod::init),
        _ => panic!("unknown test module {name}"),
    };
    expect(embed::load_module(def, name))
}

/// Unwraps a Python result, printing the traceback on failure.
pub fn expect<T>(r: PyResult<T>) -> T {
    r.unwrap_or_else(|e| panic!("Python error: {}", embed::describe(e)))
}

/// Runs `code` with the demo module bound to `d` and the test module bound to `t`.
pub fn run(code: &str) {
    let d = module("pontoneer_demo");
    let t = module("pontoneer_testmod");
    expect(embed::run(code, &[("d", &d), ("t", &t)]));
}

/// Evaluates `expr` with `d` and `t` bound.
pub fn eval(expr: &str) -> Object {
    let d = module("pontoneer_demo");
    let t = module("pontoneer_testmod");
    expect(embed::eval(expr, &[("d", &d), ("t", &t)]))
}
