"""The exporter conformance kit from Python: ``pontoneer_conformance.check_buffer`` and
``report`` over CPython's own exporters, numpy's, pontoneer's, and the deliberately broken
``BadExporter`` modes; the C table published as a capsule; ``scripts/check_buffer.py``.

The expected verdicts are the ones documented in the README ("Exporter conformance kit"):
CPython and numpy each break a rule or two, pontoneer's exporters break none, and every
broken ``BadExporter`` is caught on exactly the fields its bug breaks.
"""

import array
import ctypes
import json
import mmap
import os
import subprocess
import sys

import pytest

import pontoneer_conformance as pc
import pontoneer_demo as demo
import pontoneer_testmod as tm

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO_ROOT, "scripts", "check_buffer.py")
PY313 = sys.version_info >= (3, 13)

WRITABLE, FORMAT, ND, STRIDES = 0x1, 0x4, 0x8, 0x18
C_CONTIG, F_CONTIG, ANY_CONTIG, INDIRECT = 0x38, 0x58, 0x98, 0x118


def req(flags, x):
    return flags & x == x


def fields(violations):
    return {v["field"] for v in violations}


def released_memoryview():
    m = memoryview(b"x")
    m.release()
    return m


# (id, factory, violated fields under the permissive policy, every violation's request satisfies)
CPYTHON = [
    ("bytearray", lambda: bytearray(b"abc"), set(), None),
    ("bytearray-empty", lambda: bytearray(), set(), None),
    ("array-d", lambda: array.array("d", [1.0, 2.0, 3.0]), set(), None),
    ("array-b-empty", lambda: array.array("b"), set(), None),
    ("array-u", lambda: array.array("w" if PY313 else "u", "ab"), set(), None),
    ("array-q", lambda: array.array("q", range(4)), set(), None),
    ("array-f", lambda: array.array("f", [0.5] * 3), set(), None),
    ("memoryview-bytes", lambda: memoryview(b"abcdef"), set(), None),
    ("memoryview-step-2", lambda: memoryview(bytearray(10))[::2], set(), None),
    ("memoryview-reversed", lambda: memoryview(bytearray(10))[::-1], set(), None),
    ("memoryview-cast-2x2", lambda: memoryview(bytearray(32)).cast("d", [2, 2]), set(), None),
    ("memoryview-cast-0d", lambda: memoryview(bytearray(8)).cast("d", []), set(), None),
    ("mmap", lambda: mmap.mmap(-1, 4096), set(), None),
    # PyBuffer_FillInfo (bytes, read-only mmap) refuses WRITABLE but leaves view->obj as is.
    ("bytes", lambda: b"abc", {"obj"}, lambda f: req(f, WRITABLE)),
    ("mmap-read-only", lambda: mmap.mmap(-1, 4096, access=mmap.ACCESS_READ), {"obj"},
     lambda f: req(f, WRITABLE)),
    # memoryview's 1-D contiguity test ignores abstract.c's "len 0 is contiguous".
    ("memoryview-empty-step-2", lambda: memoryview(bytearray(10))[5:5:2], {"return value"},
     lambda f: not req(f, STRIDES) or req(f, C_CONTIG) or req(f, F_CONTIG) or req(f, ANY_CONTIG)),
    # A released memoryview answers ValueError, view->obj untouched.
    ("memoryview-released", released_memoryview, {"exception", "obj"}, None),
]


@pytest.mark.parametrize("factory, want, on", [c[1:] for c in CPYTHON], ids=[c[0] for c in CPYTHON])
def test_cpython_exporters(factory, want, on):
    violations = pc.check_buffer(factory())
    assert fields(violations) == want, [v["message"] for v in violations[:5]]
    for v in violations:
        assert on is None or on(v["flags"]), v["message"]


def test_bytes_verdict_in_detail():
    violations = pc.check_buffer(b"abc")
    assert violations and all(v["field"] == "obj" for v in violations)
    first = violations[0]
    assert first["request"] == "PyBUF_WRITABLE" and first["phase"] == "direct"
    assert first["found"].startswith("0xa5a5") and "never set" in first["found"]
    assert first["rule"].startswith("NULL (bf_getbuffer step 1")
    assert first["message"] == (
        f"PyBUF_WRITABLE: obj: found {first['found']}, rule: {first['rule']}"
    )


def test_python_level_exporter():
    if sys.version_info < (3, 12):
        pytest.skip("__buffer__ (PEP 688) needs Python 3.12")

    class Exporter:
        def __init__(self):
            self.data = bytearray(b"abcd")

        def __buffer__(self, flags):
            return memoryview(self.data)

        def __release_buffer__(self, view):
            pass

    r = pc.report(Exporter(), False, None)
    assert r["truth"]["format"] == "B"
    # The slot wrapper passes the request on to the memoryview __buffer__ returns: the
    # verdict is memoryview's (conforming), and view->obj is a per-view wrapper object.
    assert r["violations"] == [], r["text"]
    strict = pc.check_buffer_strict(Exporter())
    obj = [v for v in strict if v["field"] == "obj"]
    assert obj and all("another object than the exporter" in v["found"] for v in obj)


# numpy -----------------------------------------------------------------------------------


def numpy_cases(np):
    ro = np.arange(4.0)
    ro.flags.writeable = False
    return [
        ("1-D", np.arange(5), set(), None),
        ("0-d", np.array(3.0), set(), None),
        ("empty 2-D", np.zeros((0, 3)), set(), None),
        ("complex", np.zeros(3, complex), set(), None),
        ("structured", np.zeros(3, "i4,f8"), set(), None),
        # numpy refuses with ValueError (not BufferError) and leaves view->obj untouched.
        ("C 2-D", np.arange(6.0).reshape(2, 3), {"exception", "obj"}, lambda f: req(f, F_CONTIG)),
        ("Fortran 2-D", np.asfortranarray(np.arange(6.0).reshape(2, 3)), {"exception", "obj"},
         lambda f: not req(f, STRIDES) or req(f, C_CONTIG)),
        ("non-contiguous", np.arange(12.0).reshape(3, 4)[:, ::2], {"exception", "obj"},
         lambda f: not req(f, STRIDES) or req(f, C_CONTIG) or req(f, F_CONTIG) or req(f, ANY_CONTIG)),
        ("read-only", ro, {"exception", "obj"}, lambda f: req(f, WRITABLE)),
        ("memoryview of Fortran", memoryview(np.asfortranarray(np.ones((2, 3)))), set(), None),
    ]


def test_numpy_exporters(np):
    for name, obj, want, on in numpy_cases(np):
        violations = pc.check_buffer(obj)
        assert fields(violations) == want, (name, [v["message"] for v in violations[:5]])
        for v in violations:
            assert on is None or on(v["flags"]), (name, v["message"])
            if v["field"] == "exception":
                assert v["found"].startswith("ValueError"), (name, v["message"])


def test_numpy_truths(np):
    r = pc.report(np.asfortranarray(np.arange(6.0).reshape(2, 3)), False, None)
    t = r["truth"]
    assert (t["request"], t["shape"], t["strides"], t["format"]) == ("PyBUF_FULL_RO", [2, 3], [8, 16], "d")
    assert (t["c_contiguous"], t["f_contiguous"], t["readonly"]) == (False, True, False)
    t = pc.report(np.array(3.0), False, None)["truth"]
    assert (t["ndim"], t["shape"], t["len"], t["itemsize"]) == (0, [], 8, 8)


def test_numpy_strict_policy(np):
    # ndim 0 without PyBUF_ND is allowed; pontoneer's strict policy wants memoryview's 1.
    violations = pc.check_buffer_strict(np.arange(5))
    ndim = [v for v in violations if v["field"] == "ndim"]
    assert ndim and all(v["found"] == "0" for v in ndim)


# pontoneer -------------------------------------------------------------------------------

PONTONEER = [
    ("FloatBuffer.from_count(5)", lambda: demo.FloatBuffer.from_count(5), None),
    ("FloatBuffer()", lambda: demo.FloatBuffer(), None),
    ("Matrix(3, 4)", lambda: demo.Matrix(3, 4), None),
    ("Matrix(0, 2)", lambda: demo.Matrix(0, 2), None),
    ("Empty()", lambda: tm.Empty(), tm.exports),
    ("FortranMatrix(3, 4)", lambda: tm.FortranMatrix(3, 4), tm.exports),
    ("FortranMatrix(1, 4)", lambda: tm.FortranMatrix(1, 4), tm.exports),
    ("Reversed(6)", lambda: tm.Reversed(6), tm.exports),
    ("Reversed(0)", lambda: tm.Reversed(0), tm.exports),
    ("Cube(2, 3, 4)", lambda: tm.Cube(2, 3, 4), tm.exports),
    ("Cube(2, 0, 3)", lambda: tm.Cube(2, 0, 3), tm.exports),
    ("Faulty(0)", lambda: tm.Faulty(0), tm.exports),
] + [
    (f"{name}(5)", (lambda n=name: getattr(tm, n)(5)), None)
    for name in ["Array_b", "Array_B", "Array_h", "Array_H", "Array_i", "Array_I", "Array_l",
                 "Array_L", "Array_q", "Array_Q", "Array_n", "Array_N", "Array_f", "Array_d",
                 "Array_bool"]
]


@pytest.mark.parametrize("factory, exports", [p[1:] for p in PONTONEER], ids=[p[0] for p in PONTONEER])
@pytest.mark.parametrize("strict", [False, True], ids=["permissive", "strict"])
def test_pontoneer_exporters_conform(factory, exports, strict):
    r = pc.report(factory(), strict, exports)
    assert r["conforming"], r["text"]
    assert r["truth"]["request"] == "PyBUF_FULL_RO"


# deliberately broken exporters -----------------------------------------------------------

BROKEN = {
    "good_vector": set(),
    "good_matrix": set(),
    "ignores_flags": {"format", "readonly", "return value", "shape", "strides"},
    "keeps_obj_on_error": {"obj"},
    "wrong_exception": {"exception"},
    "leaks_reference": {"refcount"},
    "keys_on_view_address": {"exports"},
    "wrong_len": {"len"},
    "true_ndim_without_nd": {"ndim"},
    "any_before_f": {"return value"},
    "clears_shape_on_release": {"shape"},
}


def test_every_mode_has_an_expected_verdict():
    assert {m for m, _ in pc.MODES} == set(BROKEN)


@pytest.mark.parametrize("mode", sorted(BROKEN))
@pytest.mark.parametrize("strict", [False, True], ids=["permissive", "strict"])
def test_bad_exporters_are_caught(mode, strict):
    obj = pc.BadExporter(mode)
    r = pc.report(obj, strict, lambda o: o.exports())
    assert fields(r["violations"]) == BROKEN[mode], r["text"]
    assert r["conforming"] == (obj.bug is None)
    assert obj.exports() >= 0


def test_bad_exporter_details():
    # ignores_flags grants PyBUF_WRITABLE on read-only data.
    v = [v for v in pc.check_buffer(pc.BadExporter("ignores_flags"))
         if v["request"] == "PyBUF_WRITABLE" and v["field"] == "return value"][0]
    assert v["found"] == "granted (rc 0)"
    assert "PyBUF_WRITABLE on read-only data" in v["rule"]
    # any_before_f: only requests carrying both the F and the ANY contiguity flags.
    for v in pc.check_buffer(pc.BadExporter("any_before_f")):
        assert req(v["flags"], F_CONTIG) and req(v["flags"], ANY_CONTIG), v["message"]
    # clears_shape_on_release: only visible with views held at once.
    for v in pc.check_buffer(pc.BadExporter("clears_shape_on_release")):
        assert v["phase"] == "nested" and "(0, 0)" in v["found"], v["message"]
    # keys_on_view_address: invisible without an export-count observer, and only copies leak.
    assert pc.check_buffer(pc.BadExporter("keys_on_view_address")) == []
    r = pc.report(pc.BadExporter("keys_on_view_address"), False, lambda o: o.exports())
    assert {v["phase"] for v in r["violations"]} <= {"copy", "nested", "object"}
    # wrong_len: every granted request, with the rule's arithmetic.
    v = pc.check_buffer(pc.BadExporter("wrong_len"))[0]
    assert (v["found"], v["rule"]) == ("6", "48 = product(shape (2, 3)) * itemsize 8")


def test_bad_exporter_rejects_unknown_modes():
    with pytest.raises(ValueError, match="unknown mode"):
        pc.BadExporter("nope")


# the report ------------------------------------------------------------------------------


def test_report_structure():
    r = pc.report(demo.Matrix(2, 3), False, None)
    assert set(r) == {"conforming", "policy", "python_version", "checks", "text", "truth",
                      "requests", "violations"}
    assert r["policy"] == "permissive" and r["conforming"] is True
    assert r["python_version"] == "%d.%d" % sys.version_info[:2]
    phases = [q["phase"] for q in r["requests"]]
    assert phases.count("probe") == 1
    assert phases.count("direct") == phases.count("copy") == 17 + 512 + 5
    assert phases.count("nested") == 12
    simple = next(q for q in r["requests"] if q["request"] == "PyBUF_SIMPLE")
    assert set(simple) == {"request", "flags", "phase", "expect", "why", "granted", "detail",
                           "violations"}
    assert simple["granted"] and simple["expect"] == "must grant"
    assert simple["detail"].startswith("granted: ndim 1, shape NULL, strides NULL")
    f = next(q for q in r["requests"] if q["request"] == "PyBUF_F_CONTIGUOUS")
    assert (f["granted"], f["expect"]) == (False, "must refuse")
    assert f["detail"].startswith("refused: BufferError")
    t = r["truth"]
    assert (t["shape"], t["strides"], t["format"], t["itemsize"], t["len"]) == ([2, 3], [24, 8], "d", 8, 48)
    assert r["checks"] > 5000


def test_cpython_313_refuses_read_and_write_flags_itself():
    r = pc.report(bytearray(3), False, None)
    for q in r["requests"]:
        if q["flags"] in (0x100, 0x200) and q["phase"] == "direct":
            if PY313:
                assert q["expect"] == "cpython refuses" and not q["granted"]
            else:
                assert q["expect"] == "may refuse"


def test_not_an_exporter():
    with pytest.raises(TypeError, match="bytes-like object is required, not 'float'"):
        pc.check_buffer(3.5)


def test_observer_errors_are_reported_not_raised():
    def broken(obj):
        raise RuntimeError("observer down")

    r = pc.report(bytearray(2), False, broken)
    assert [v["field"] for v in r["violations"]] == ["exports"]
    assert "observer down" in r["violations"][0]["found"]


# the C table, as a C harness would use it ------------------------------------------------


def test_capsule_c_api_from_ctypes():
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    table = get_pointer(pc._C_API, b"pontoneer_conformance._C_API")

    check_t = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_void_p, ctypes.c_void_p)
    free_t = ctypes.PYFUNCTYPE(None, ctypes.c_void_p)
    format_t = ctypes.PYFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                 ctypes.c_long)

    class Capi(ctypes.Structure):
        _fields_ = [("abi_version", ctypes.c_int), ("options_init", ctypes.c_void_p),
                    ("check", check_t), ("report_free", free_t), ("report_format", format_t)]

    capi = Capi.from_address(table)
    assert capi.abi_version == 1
    report = ctypes.create_string_buffer(8192)  # more than sizeof(pcf_report)
    obj = pc.BadExporter("wrong_exception")
    assert capi.check(obj, None, ctypes.addressof(report)) == 0
    checks, nrequests = ctypes.c_long.from_buffer(report, 0).value, ctypes.c_long.from_buffer(report, 8).value
    nviolations = ctypes.c_long.from_buffer(report, 24).value
    text = ctypes.create_string_buffer(1 << 16)
    capi.report_format(ctypes.addressof(report), text, len(text), 3)
    capi.report_free(ctypes.addressof(report))
    py = pc.report(obj, False, None)
    assert (checks, nrequests, nviolations) == (py["checks"], len(py["requests"]), len(py["violations"]))
    lines = text.value.decode().splitlines()
    assert lines[0].startswith(f"NOT CONFORMING: {nviolations} violations")
    assert lines[2] == "  " + py["violations"][0]["message"]
    assert lines[-1] == f"  ... and {nviolations - 3} more"


# the command line ------------------------------------------------------------------------


def run_cli(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(pc.__file__), REPO_ROOT]
                                        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_cli_conforming_and_not():
    ok = run_cli("array.array('d', [1, 2])", "mmap:mmap(-1, 4096)")
    assert ok.returncode == 0, ok.stderr
    assert "array.array('d', [1, 2]): conforming;" in ok.stdout
    assert "truth (from PyBUF_FULL_RO): ndim 1, shape (2,), strides (8,), format 'd'" in ok.stdout
    bad = run_cli("b'abc'")
    assert bad.returncode == 1
    assert "b'abc': NOT CONFORMING" in bad.stdout
    assert "x PyBUF_WRITABLE: obj: found 0xa5a5a5a5a5a5a5a5" in bad.stdout


def test_cli_strict_observer_and_json():
    r = run_cli("--exports", "lambda o: o.exports()",
                "pontoneer_conformance.BadExporter('keys_on_view_address')")
    assert r.returncode == 1 and "exports: found" in r.stdout, r.stdout + r.stderr
    r = run_cli("--json", "--strict", "pontoneer_demo.FloatBuffer.from_count(2)")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)["pontoneer_demo.FloatBuffer.from_count(2)"]
    assert report["policy"] == "strict" and report["conforming"]


def test_cli_errors():
    r = run_cli("3")
    assert r.returncode == 2 and "bytes-like object is required" in r.stderr
    r = run_cli("no_such_module_xyz.thing")
    assert r.returncode == 2 and "ModuleNotFoundError" in r.stderr
