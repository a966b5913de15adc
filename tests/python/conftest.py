"""Shared setup for the pytest suite of the ``pontoneer_demo`` Python contract.

The module is built in place into the repository root by
``python setup.py build_ext --inplace``; this file puts that root (computed from
this file's location, so the suite works from any working directory) at the
front of ``sys.path`` before the test modules import ``pontoneer_demo``.

Set ``PONTONEER_DEMO_PATH`` to a directory to test the module found there
instead (for example a stand-in implementation, or another anchor of the same
contract); that directory then goes first.

Run from the repository root with ``python -m pytest tests/python``.
"""

import os
import subprocess
import sys
import textwrap

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_override = os.environ.get("PONTONEER_DEMO_PATH")
_first = os.path.abspath(_override) if _override else REPO_ROOT
if _first in sys.path:
    sys.path.remove(_first)
sys.path.insert(0, _first)

try:
    import pontoneer_demo  # noqa: E402  (needs the path set up above)
except ImportError as exc:
    raise ImportError(
        f"cannot import pontoneer_demo (looked first in {_first}); build it with "
        f"`python setup.py build_ext --inplace` in {REPO_ROOT}: {exc}"
    ) from exc

MODULE_DIR = os.path.dirname(os.path.abspath(pontoneer_demo.__file__))


def pytest_report_header(config):
    return f"pontoneer_demo: {pontoneer_demo.__file__}"


@pytest.fixture
def np():
    """numpy, or skip the test when it is not installed."""
    return pytest.importorskip("numpy")


@pytest.fixture
def make_buffer():
    """Build a FloatBuffer holding ``items`` using only the constructor and append."""

    def make(items):
        b = pontoneer_demo.FloatBuffer()
        for x in items:
            b.append(x)
        return b

    return make


@pytest.fixture
def run_isolated():
    """Run a snippet in a fresh interpreter that imports the same pontoneer_demo.

    Used for rows where a broken implementation could abort the process
    (allocation failures, memory limits): an abort then fails one test instead
    of killing the whole run.  Returns the ``subprocess.CompletedProcess``.
    """

    def run(code):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [MODULE_DIR] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        # The timeout only guards against a hung child; no assertion depends on time.
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )

    return run
