//! Build script: Python version cfgs for `#[cfg(Py_3_x)]`, the libpython rpath for binaries
//! that embed the interpreter (tests, examples), and — only for this crate's own tests, via
//! the `capi-tests` feature — the C buffer harness in `capi-tests/`.

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
    // Test binaries embed the interpreter: without an rpath they would load the system's
    // libpython3.x (Debian's 3.11.2) instead of the one pyo3-ffi was configured for.
    pyo3_build_config::add_libpython_rpath_link_args();
    println!("cargo:rerun-if-changed=build.rs");

    let config = pyo3_build_config::get();
    let version = config.version();
    println!(
        "cargo:rustc-env=PONTONEER_BUILD_PYTHON_VERSION={}.{}",
        version.major, version.minor
    );
    if let Some(exe) = config.executable() {
        println!("cargo:rustc-env=PONTONEER_BUILD_PYTHON={exe}");
    }

    if std::env::var_os("CARGO_FEATURE_CAPI_TESTS").is_some() {
        build_capi_tests();
    }
}

fn build_capi_tests() {
    println!("cargo:rerun-if-changed=capi-tests");
    let include = python_include_dir();
    let mut build = cc::Build::new();
    build
        .include(&include)
        .flag("-std=c11")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .define("_POSIX_C_SOURCE", "200809L");
    for entry in std::fs::read_dir("capi-tests").expect("capi-tests/ exists") {
        let path = entry.expect("readable dir entry").path();
        if path.extension().is_some_and(|e| e == "c") {
            println!("cargo:rerun-if-changed={}", path.display());
            build.file(&path);
        }
    }
    build.compile("pontoneer_capi_tests");
}

/// The include directory of the interpreter pyo3-ffi was configured for.
fn python_include_dir() -> String {
    let config = pyo3_build_config::get();
    let exe = config
        .executable()
        .expect("pyo3-build-config found a Python executable");
    let out = std::process::Command::new(exe)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['include'])",
        ])
        .output()
        .expect("run the configured python");
    assert!(
        out.status.success(),
        "python failed to report its include dir"
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 path")
        .trim()
        .to_owned()
}
