//! Build script: Python version cfgs for `#[cfg(Py_3_x)]`, the libpython rpath for binaries
//! that embed the interpreter (tests, examples), and C only when a feature asks for it:
//! - `conformance` (or `capi-tests`): the exporter conformance kit, `capi-tests/conformance.c`
//!   and the rule pieces it shares with the harness, `capi-tests/buffer_common.c` (under the
//!   limited API when `abi3-py311` is on);
//! - `capi-tests` (this crate's own tests): the rest of `capi-tests/`, the C buffer harness.
//!
//! Without either feature no C compiler is invoked, and `cc` itself is not even built.

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

    #[cfg(any(feature = "capi-tests", feature = "conformance"))]
    c::build();
}

/// The C parts, compiled with `cc` (an optional build dependency that only these features
/// pull in: a plain build of the library never compiles `cc` or any C).
#[cfg(any(feature = "capi-tests", feature = "conformance"))]
mod c {
    pub(super) fn build() {
        build_conformance();
        if cfg!(feature = "capi-tests") {
            build_capi_tests();
        }
    }

    /// The C files of the conformance kit (also linked by the harness, which shares
    /// `buffer_common.c`).
    const CONFORMANCE_FILES: [&str; 2] = ["capi-tests/buffer_common.c", "capi-tests/conformance.c"];

    /// A `cc` build with the project's C flags: C11, every warning an error.
    fn c_build() -> cc::Build {
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
        build
    }

    fn build_conformance() {
        let mut build = c_build();
        if std::env::var_os("CARGO_FEATURE_ABI3_PY311").is_some() {
            // The stable-ABI build runs on 3.11+: the kit uses only the limited API there.
            build.define("Py_LIMITED_API", "0x030B0000");
        }
        for file in CONFORMANCE_FILES {
            println!("cargo:rerun-if-changed={file}");
            build.file(file);
        }
        build.compile("pontoneer_conformance");
    }

    fn build_capi_tests() {
        let mut build = c_build();
        for entry in std::fs::read_dir("capi-tests").expect("capi-tests/ exists") {
            let path = entry.expect("readable dir entry").path();
            let is_c = path.extension().is_some_and(|e| e == "c");
            let in_kit = CONFORMANCE_FILES
                .iter()
                .any(|f| path.ends_with(f.trim_start_matches("capi-tests/")));
            if is_c && !in_kit {
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
}
