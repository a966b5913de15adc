"""Builds the demo extension module `pontoneer_demo` (demo/) and the test-only module
`pontoneer_testmod` (tests/testmod/) with setuptools-rust.

    python setup.py build_ext --inplace     # .so files next to this file, for pytest
    pip install .                           # installs pontoneer_demo

The Rust library itself is a plain cargo crate; this file only drives cargo for the two
cdylibs. `PYO3_BUILD_EXTENSION_MODULE=1` tells pyo3-ffi not to link libpython (the
interpreter that imports the module provides it), and a separate CARGO_TARGET_DIR keeps
these builds from invalidating the `cargo test` build, which does link libpython.
"""

import os
import sys

from setuptools import setup
from setuptools_rust import Binding, RustExtension

HERE = os.path.dirname(os.path.abspath(__file__))

os.environ["PYO3_BUILD_EXTENSION_MODULE"] = "1"
os.environ.setdefault("PYO3_PYTHON", sys.executable)
os.environ.setdefault("CARGO_TARGET_DIR", os.path.join(HERE, "target", "ext"))

features = ["abi3-py311"] if os.environ.get("PONTONEER_ABI3") == "1" else []

setup(
    name="pontoneer-demo",
    version="0.1.0",
    description="pontoneer's demo extension module (FloatBuffer, Matrix)",
    rust_extensions=[
        RustExtension(
            "pontoneer_demo",
            path="demo/Cargo.toml",
            binding=Binding.NoBinding,
            features=features,
            py_limited_api="cp311" if features else "auto",
            debug=False,
        ),
        RustExtension(
            "pontoneer_testmod",
            path="tests/testmod/Cargo.toml",
            binding=Binding.NoBinding,
            features=features,
            py_limited_api="cp311" if features else "auto",
            debug=False,
        ),
        RustExtension(
            "pontoneer_conformance",
            path="tests/conformance_mod/Cargo.toml",
            binding=Binding.NoBinding,
            features=features,
            py_limited_api="cp311" if features else "auto",
            debug=False,
        ),
    ],
    # Modules live at the top level (the repository root after --inplace), not in src/,
    # which holds the Rust library.
    package_dir={"": "."},
    packages=[],
    py_modules=[],
    zip_safe=False,
)
