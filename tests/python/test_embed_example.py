"""The embedding example (examples/embed/main.rs), seen from the outside: the host program
builds and runs, and prints what numpy computed over a Rust-made FloatBuffer (zero-copy), the
result after Py_Finalize and a fresh interpreter, and a standalone class used as a builtin in
each interpreter."""

import os
import shutil
import subprocess

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(shutil.which("cargo") is None, reason="needs cargo to build the host")
def test_host_program_embeds_python_and_reads_results_back():
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        ["cargo", "run", "-q", "--example", "embed"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    expected = sum(i * 0.5 for i in range(1000))
    assert lines[0] == (
        f"numpy over a Rust FloatBuffer: Outcome {{ total: {2 * expected:.1f}, "
        f"mean: {expected / 1000}, zero_copy: true, items_after: 1000 }}"
    )
    assert lines[1] == f"after Py_Finalize and a fresh interpreter: sum = {expected:g}"
    assert lines[2] == "a standalone builtin class in each interpreter: 10, 10"
