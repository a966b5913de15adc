"""Reliability tests: model-based, concurrent, re-entrant, sub-interpreter, allocation-failure
and load tests of ``pontoneer_demo`` (FloatBuffer, Matrix) and ``pontoneer_testmod``.

1. Model: a hypothesis ``RuleBasedStateMachine`` runs random sequences of FloatBuffer
   operations (append, ``b[i] = x``, ``del b[i]``, ``b[i]``, len, ``+``, ``-b``, ``==``,
   ``in``, sum, memoryview hold/release) against a Python list, bit for bit. While a view
   is held, append/del raise BufferError and change nothing; ``b[i] = x`` works and is seen
   through every view. Derandomized, no example database: CI runs the same sequences.
2. Threads: 8 threads hammer shared FloatBuffers (and an ``Array_d``) with mixed operations,
   memoryview hold/release and append under a 10 µs switch interval; no item is lost and
   no export is left counted.
3. Re-entrancy: arguments whose ``__float__``/``__index__`` run ``gc.collect()`` or touch the
   very object being called (read, append, delete, take a view). The outcome is either the
   one Python semantics give (the argument is converted first, the index is resolved
   against the length at the time of the access) or a RuntimeError, with the contents
   checked afterwards; never aliasing, never an out-of-bounds access. Views and numpy
   arrays keep their exporter alive after the last name is gone.
4. Sub-interpreters, in a child process each (a crash fails one test): legacy
   sub-interpreters sharing the GIL (``_testcapi.run_in_subinterp``), and on 3.12+
   interpreters with their own GIL and ``check_multi_interp_extensions`` (also several at
   once, in parallel threads). Each sub-interpreter gets its own module and type objects.
5. Allocation failure: ``_testcapi.set_nomemory`` sweeps, in child processes.
6. Load: 1,000,000 memoryview round trips and 1,000,000 mixed slot calls with flat RSS.
"""

import decimal
import fractions
import gc
import json
import math
import os
import random
import struct
import subprocess
import sys
import textwrap
import threading

import pytest

import pontoneer_demo
import pontoneer_testmod

try:
    from hypothesis import HealthCheck, settings
    from hypothesis import strategies as st
    from hypothesis.stateful import (
        RuleBasedStateMachine,
        initialize,
        invariant,
        precondition,
        rule,
    )
except ImportError:  # pragma: no cover - hypothesis is in requirements-test.txt
    RuleBasedStateMachine = None

try:
    import numpy
except ImportError:  # pragma: no cover - numpy is in requirements-test.txt
    numpy = None

FloatBuffer = pontoneer_demo.FloatBuffer
Matrix = pontoneer_demo.Matrix
tm = pontoneer_testmod

# Directories the two extension modules were imported from (the repository root, or
# PONTONEER_DEMO_PATH): children and sub-interpreters import the very same files.
MODULE_DIRS = list(
    dict.fromkeys(
        os.path.dirname(os.path.abspath(m.__file__)) for m in (pontoneer_demo, pontoneer_testmod)
    )
)


def run_child(code, timeout=600):
    """Run ``code`` in a fresh ``python -X dev`` that imports the same extension modules.

    ``-X dev`` installs CPython's debug allocator hooks (buffer under/overrun and
    use-after-free detection in PyMem/PyObject allocations) and the fault handler, so a
    memory error aborts the child visibly. The timeout only guards against a hung child;
    no assertion depends on time.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        MODULE_DIRS + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["RUST_BACKTRACE"] = "0"  # panics print one line; no assertion reads stderr
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    header = f"import sys\nMODULE_DIRS = {MODULE_DIRS!r}\nsys.path[:0] = MODULE_DIRS\n"
    return subprocess.run(
        [sys.executable, "-X", "dev", "-c", header + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def child_report(proc):
    """The last stdout line of a child as JSON; fails with the child's output otherwise."""
    assert proc.returncode == 0, (
        f"child exited with {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
        f"\n--- stderr\n{proc.stderr[-3000:]}"
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"child printed nothing\n--- stderr\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1])


def pack(xs):
    """The exact bytes of ``xs`` as float64 (bitwise comparison: -0.0, NaN payloads)."""
    return struct.pack(f"={len(xs)}d", *xs)


def buffer_of(items):
    b = FloatBuffer()
    for x in items:
        b.append(x)
    return b


def can_append(b):
    """True if ``b.append`` works (so no export is counted); undoes the append."""
    try:
        b.append(0.0)
    except BufferError:
        return False
    del b[-1]
    return True


# ---------------------------------------------------------------------------
# 1. Stateful model test


if RuleBasedStateMachine is not None:
    # Item values: every float (NaN, ±inf, ±0.0, subnormals) and integers (float(x) applies).
    VALUES = st.one_of(st.floats(), st.integers(-(2**53), 2**53))
    # Indexes: around the current length, plus the Py_ssize_t edges and beyond.
    INDEXES = st.one_of(
        st.integers(-12, 12),
        st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**100, -(2**100)]),
    )

    def in_range(i, n):
        return -n <= i < n

    class FloatBufferMachine(RuleBasedStateMachine):
        """FloatBuffer against a list of floats; views are memoryviews (plain, sliced,
        nested) and numpy arrays, each with the slice of the model it must show."""

        def __init__(self):
            super().__init__()
            self.b = FloatBuffer()
            self.model = []
            self.views = []  # (kind, view object, slice of the model it shows)

        @initialize(items=st.lists(VALUES, max_size=8), via_from_count=st.booleans())
        def start(self, items, via_from_count):
            if via_from_count:
                self.b = FloatBuffer.from_count(len(items))
                assert bytes(self.b) == pack([float(i) for i in range(len(items))])
                for i, x in enumerate(items):
                    self.b[i] = x
            else:
                self.b = buffer_of(items)
            self.model = [float(x) for x in items]

        # -- mutations ------------------------------------------------------------------

        @rule(x=VALUES)
        def append(self, x):
            if self.views:
                with pytest.raises(BufferError):
                    self.b.append(x)
            else:
                self.b.append(x)
                self.model.append(float(x))

        @rule(i=INDEXES, x=VALUES)
        def set_item(self, i, x):
            n = len(self.model)
            if in_range(i, n):
                self.b[i] = x  # allowed while exported
                self.model[i] = float(x)
                for kind, v, _ in self.views:
                    if kind == "plain":
                        assert pack([v[i]]) == pack([float(x)]), "write not visible in view"
            else:
                with pytest.raises(IndexError):
                    self.b[i] = x

        @rule(i=INDEXES)
        def del_item(self, i):
            n = len(self.model)
            if self.views:
                # Refused while exported; an index that is not even a Py_ssize_t may be
                # reported first (IndexError). Either way nothing changes.
                expected = BufferError if in_range(i, n) else (BufferError, IndexError)
                with pytest.raises(expected):
                    del self.b[i]
            elif in_range(i, n):
                del self.b[i]
                del self.model[i]
            else:
                with pytest.raises(IndexError):
                    del self.b[i]

        # -- views ----------------------------------------------------------------------

        @rule(kind=st.sampled_from(["plain", "slice", "nested", "numpy"]))
        def hold_view(self, kind):
            if kind == "plain":
                v = memoryview(self.b)
                assert (v.format, v.itemsize, v.ndim, v.readonly) == ("d", 8, 1, True)
                assert v.shape == (len(self.model),) and v.strides == (8,)
                entry = (kind, v, slice(None))
            elif kind == "slice":
                # The temporary base view dies at once; the slice keeps the export.
                entry = (kind, memoryview(self.b)[::-2], slice(None, None, -2))
            elif kind == "nested":
                entry = (kind, memoryview(memoryview(self.b)), slice(None))
            else:
                if numpy is None:
                    return
                a = numpy.frombuffer(self.b, dtype=numpy.float64)
                assert not a.flags.writeable
                entry = (kind, a, slice(None))
            self.views.append(entry)

        @precondition(lambda self: self.views)
        @rule(data=st.data(), how=st.sampled_from(["release", "del"]))
        def release_view(self, data, how):
            kind, v, _ = self.views.pop(data.draw(st.integers(0, len(self.views) - 1)))
            if how == "release" and kind != "numpy":
                v.release()
            del v  # the last reference: the view (or numpy array) dies here

        # -- reads and new objects -----------------------------------------------------------

        @rule(i=INDEXES)
        def get_item(self, i):
            if in_range(i, len(self.model)):
                assert pack([self.b[i]]) == pack([self.model[i]])
            else:
                with pytest.raises(IndexError):
                    self.b[i]

        @rule()
        def length_and_repr(self):
            assert len(self.b) == len(self.model)
            assert repr(self.b) == f"FloatBuffer(len={len(self.model)})"

        @rule(other=st.lists(VALUES, max_size=6), self_first=st.booleans())
        def concat(self, other, self_first):
            c = buffer_of(other)
            om = [float(x) for x in other]
            r = self.b + c if self_first else c + self.b
            assert type(r) is FloatBuffer and r is not self.b and r is not c
            assert bytes(r) == pack(self.model + om if self_first else om + self.model)
            assert bytes(c) == pack(om)
            assert can_append(r)  # a new object, not exporting
            with pytest.raises(TypeError):
                self.b + other  # a list: NotImplemented both ways

        @rule()
        def concat_self(self):
            assert bytes(self.b + self.b) == pack(self.model + self.model)

        @rule()
        def negate(self):
            r = -self.b
            assert type(r) is FloatBuffer and r is not self.b
            assert bytes(r) == pack([-x for x in self.model])

        @rule(change=st.one_of(st.none(), st.tuples(st.integers(0, 20), VALUES), st.just("pop")))
        def equality(self, change):
            om = list(self.model)
            if change == "pop":
                if om:
                    om.pop()
            elif change is not None:
                i, x = change
                if i < len(om):
                    om[i] = float(x)
                else:
                    om.append(float(x))
            c = buffer_of(om)
            equal = len(om) == len(self.model) and all(a == b for a, b in zip(om, self.model))
            assert (self.b == c) is equal and (c == self.b) is equal
            assert (self.b != c) is (not equal)
            assert (self.b == om) is False  # a list: NotImplemented, identity fallback
            assert (self.b == self.b) is all(a == a for a in self.model)  # NaN != NaN
            with pytest.raises(TypeError):
                self.b < c

        @rule(
            x=st.one_of(
                VALUES,
                st.sampled_from(["1.0", None, b"x", (), 1j]),
            ),
            pick=st.integers(0, 100),
            from_model=st.booleans(),
        )
        def contains(self, x, pick, from_model):
            if from_model and self.model:
                x = self.model[pick % len(self.model)]
            if isinstance(x, (int, float)):
                expected = any(y == float(x) for y in self.model)
            else:
                expected = False  # not a real number: not in the buffer
            assert (x in self.b) is expected

        @rule()
        def total(self):
            s = 0.0
            for y in self.model:  # left to right, like the Rust iterator sum
                s += y
            got = self.b.sum()
            assert got == s or (math.isnan(got) and math.isnan(s)), (got, s)

        # -- invariants ------------------------------------------------------------------

        @invariant()
        def matches_model(self):
            expected = pack(self.model)
            assert len(self.b) == len(self.model)
            assert bytes(self.b) == expected  # through a transient export
            assert pack(list(self.b)) == expected  # iteration: sq_item
            for kind, v, sl in self.views:
                shown = v.tobytes()
                assert shown == pack(self.model[sl]), f"{kind} view out of date"

        def teardown(self):
            while self.views:
                kind, v, _ = self.views.pop()
                if kind != "numpy":
                    v.release()
                del v  # refcounting frees it now; no gc.collect needed (and it is slow)
            assert can_append(self.b), "an export is still counted after every view went"

    FloatBufferMachine.TestCase.settings = settings(
        derandomize=True,
        database=None,
        deadline=None,
        max_examples=100,
        stateful_step_count=40,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    TestFloatBufferModel = FloatBufferMachine.TestCase

else:

    @pytest.mark.skip(reason="hypothesis is not installed (pip install -r requirements-test.txt)")
    def test_floatbuffer_model():
        pass


# ---------------------------------------------------------------------------
# 2. Threads (under the GIL)

N_THREADS = 8
OPS_PER_THREAD = 20_000


def test_threads_share_floatbuffers_without_losing_items():
    """8 threads × 20,000 mixed operations on shared FloatBuffers and an Array_d, with
    views held across thread switches and released by another thread than the one that
    took them (10 µs switch interval). Every append either happens (counted) or is refused
    with BufferError because some thread holds a view (counted); at the end the lengths and
    the exact multiset of appended values match the counts, and every exporter has zero
    exports (append works again; ``pontoneer_testmod.exports(arr) == 0``)."""
    grow = [FloatBuffer.from_count(16) for _ in range(3)]  # append only: exact multiset check
    churn = FloatBuffer.from_count(64)  # append and del: length check
    arr = tm.Array_d(32)
    grow_before = [bytes(b) for b in grow]
    appended = [[0] * len(grow) for _ in range(N_THREADS)]
    churn_appended = [0] * N_THREADS
    churn_deleted = [0] * N_THREADS
    refused = [0] * N_THREADS
    errors = []
    pool = []  # views shared by all threads: created by one, released by any
    barrier = threading.Barrier(N_THREADS)

    def worker(tid):
        rng = random.Random(tid)
        value = 1000.0 + tid  # identifies this thread's appends
        try:
            barrier.wait()
            for n in range(OPS_PER_THREAD):
                j = rng.randrange(len(grow))
                b = grow[j]
                op = rng.randrange(12)
                if op == 0:
                    try:
                        b.append(value)
                        appended[tid][j] += 1
                    except BufferError:
                        refused[tid] += 1
                elif op == 1 and len(pool) < 6:  # a view held across thread switches
                    pool.append(memoryview(b if rng.random() < 0.8 else churn))
                elif op == 2:
                    try:
                        v = pool.pop()  # often a view another thread created
                    except IndexError:
                        continue
                    if rng.random() < 0.5:
                        v.release()
                    del v
                elif op == 3:
                    with memoryview(b) as v:
                        assert v.readonly and v.format == "d" and v.shape == (len(b),)
                        assert v[0] == b[0]
                elif op == 4:
                    with memoryview(arr) as v:
                        k = n % 32
                        v[k] = float(k)
                        assert arr.data_ptr() and v[k] == float(k)
                elif op == 5:
                    assert len(b) >= 16
                    assert b.sum() >= 0.0
                elif op == 6:
                    b[3] = 3.0  # set is allowed while other threads hold views
                    assert b[3] == 3.0
                elif op == 7:
                    assert (5.0 in b) and (-1.0 not in b)
                elif op == 8:
                    r = -b
                    assert len(r) >= 16 and r[1] == -1.0
                    assert (b == b) and (b + r)[0] == 0.0
                elif op == 9:
                    try:
                        churn.append(value)
                        churn_appended[tid] += 1
                    except BufferError:
                        refused[tid] += 1
                elif op == 10:
                    try:
                        del churn[-1]
                        churn_deleted[tid] += 1
                    except BufferError:
                        refused[tid] += 1
                    except IndexError:
                        pass  # emptied by the other threads: nothing deleted
                else:  # append while this thread itself holds a view: always refused
                    with memoryview(b):
                        try:
                            b.append(value)
                        except BufferError:
                            refused[tid] += 1
                        else:
                            errors.append(AssertionError("append succeeded under a view"))
                            appended[tid][j] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(N_THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
        while pool:
            pool.pop().release()

    assert not errors, errors[:3]
    assert sum(refused) > 0, "no refusal at all: the threads never overlapped a view"
    for j, b in enumerate(grow):
        n_app = sum(a[j] for a in appended)
        assert len(b) == 16 + n_app
        assert bytes(b)[: 16 * 8] == grow_before[j]  # b[3] = 3.0 rewrote the same value
        tail = list(b)[16:]
        for tid in range(N_THREADS):
            assert tail.count(1000.0 + tid) == appended[tid][j], (j, tid)
        assert can_append(b)
    assert len(churn) == 64 + sum(churn_appended) - sum(churn_deleted)
    assert can_append(churn)
    assert tm.exports(arr) == 0
    assert memoryview(arr).tolist() == [float(k) for k in range(32)]


# ---------------------------------------------------------------------------
# 3. Re-entrancy


class FloatHook:
    """``float(h)`` runs ``action()`` and returns ``value``."""

    def __init__(self, value, action):
        self.value, self.action, self.calls = value, action, 0

    def __float__(self):
        self.calls += 1
        self.action()
        return float(self.value)


class IndexHook:
    """``operator.index(h)`` runs ``action()`` and returns ``value``."""

    def __init__(self, value, action):
        self.value, self.action, self.calls = value, action, 0

    def __index__(self):
        self.calls += 1
        self.action()
        return self.value


def collect_with_garbage():
    """Make cyclic garbage holding pontoneer objects and views of them, then collect it:
    the collection runs their releasebuffer and dealloc slots. The garbage is young, so a
    generation-0 collection frees it (a full one costs ~0.1 s with hypothesis and numpy
    loaded)."""
    for _ in range(3):
        b = FloatBuffer.from_count(4)
        a = tm.Array_d(3)
        m = Matrix(2, 2)
        cycle = [b, memoryview(b), a, memoryview(a), m, memoryview(m)]
        cycle.append(cycle)
    del b, a, m, cycle  # the last cycle is garbage now; nothing allocates before the collect
    freed = gc.collect(0)
    assert freed >= 4, freed  # at least the last cycle (a list and three memoryviews)


def _gc_sites():
    """(id, site): ``site()`` calls one constructor, method or slot whose arguments run
    ``collect_with_garbage`` while being converted, and returns True if the result and the
    objects are what they must be."""

    def f(v):
        return FloatHook(v, collect_with_garbage)

    def i(v):
        return IndexHook(v, collect_with_garbage)

    def site_from_count():
        return list(FloatBuffer.from_count(i(4))) == [0.0, 1.0, 2.0, 3.0]

    def site_matrix_new():
        m = Matrix(i(2), i(3))
        return m.shape == (2, 3) and memoryview(m).tolist() == [[0.0] * 3] * 2

    def site_matrix_set_get():
        m = Matrix(2, 2)
        m.set(i(1), i(0), f(4.5))
        return m.get(i(1), i(0)) == 4.5 and memoryview(m).tolist() == [[0, 0], [4.5, 0]]

    def site_append():
        b = FloatBuffer.from_count(3)
        b.append(f(7.5))
        return list(b) == [0.0, 1.0, 2.0, 7.5]

    def site_setitem():
        b = FloatBuffer.from_count(3)
        b[i(-1)] = f(9.0)
        return list(b) == [0.0, 1.0, 9.0]

    def site_getitem():
        b = FloatBuffer.from_count(3)
        return b[i(1)] == 1.0 and b[i(-3)] == 0.0

    def site_delitem():
        b = FloatBuffer.from_count(3)
        del b[i(0)]
        return list(b) == [1.0, 2.0]

    class EqCollect:
        """``x in b`` converts nothing: it compares ``item == x``, so the collection runs in
        ``__eq__``, with the buffer borrowed."""

        def __init__(self, v):
            self.v = v

        def __eq__(self, other):
            collect_with_garbage()
            return other == self.v

    def site_contains():
        b = FloatBuffer.from_count(3)
        return (EqCollect(2.0) in b) is True and (EqCollect(5.0) in b) is False

    def site_array_new():
        a = tm.Array_d(i(5))
        return memoryview(a).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0] and tm.exports(a) == 0

    def site_faulty_setter():
        x = tm.Faulty(0)
        x.count = i(12)
        return x.count == 12

    return [
        ("from_count", site_from_count),
        ("Matrix()", site_matrix_new),
        ("Matrix.set/get", site_matrix_set_get),
        ("append", site_append),
        ("b[i]=x", site_setitem),
        ("b[i]", site_getitem),
        ("del b[i]", site_delitem),
        ("x in b", site_contains),
        ("Array_d()", site_array_new),
        ("setter", site_faulty_setter),
    ]


@pytest.mark.parametrize("site", [s for _, s in _gc_sites()], ids=[n for n, _ in _gc_sites()])
def test_gc_collect_inside_argument_conversion(site):
    """``__float__``/``__index__`` of an argument make cyclic garbage full of exporters and
    views and run ``gc.collect()`` in the middle of the call: the call gives the normal
    result."""
    for _ in range(3):
        assert site() is True


def test_view_in_garbage_collected_during_append_argument():
    """A view of ``b`` only reachable from cyclic garbage is released by a collection that
    runs while ``append``'s argument is converted: the append is then allowed (the
    arguments are converted before the export check) or refused as a whole; afterwards no
    export is counted."""
    b = FloatBuffer.from_count(3)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        cycle = [memoryview(b)]
        cycle.append(cycle)
        del cycle
        with pytest.raises(BufferError):
            b.append(1.0)  # the garbage view still counts
        try:
            b.append(FloatHook(5.0, gc.collect))
        except BufferError:
            assert list(b) == [0.0, 1.0, 2.0]
        else:
            assert list(b) == [0.0, 1.0, 2.0, 5.0]
    finally:
        if was_enabled:
            gc.enable()
    assert can_append(b)


@pytest.mark.parametrize("where", ["append", "del", "del-index"])
def test_view_taken_during_argument_conversion_blocks_mutation(where):
    """An argument converter that takes (and keeps) a view of the object: a mutation that
    moves memory must see that export and raise BufferError, leaving the contents as they
    were (a check done before converting the arguments would let the view alias freed
    memory)."""
    b = FloatBuffer.from_count(3)
    kept = []

    def take_view():
        kept.append(memoryview(b))

    with pytest.raises(BufferError):
        if where == "append":
            b.append(FloatHook(5.0, take_view))
        elif where == "del":
            del b[IndexHook(0, take_view)]
        else:
            del b[IndexHook(-1, take_view)]
    assert list(b) == [0.0, 1.0, 2.0]
    assert kept[0].tolist() == [0.0, 1.0, 2.0]
    kept[0].release()
    assert can_append(b)


def test_append_whose_argument_appends_to_the_same_buffer():
    """``b.append(x)`` where ``float(x)`` appends to ``b``: Python order (the argument is
    converted first) gives ``[..., 7.0, 5.0]``; a RuntimeError is acceptable, a lost or
    duplicated item is not."""
    b = FloatBuffer.from_count(3)
    x = FloatHook(5.0, lambda: b.append(7.0))
    try:
        b.append(x)
    except RuntimeError:
        assert list(b) in ([0.0, 1.0, 2.0], [0.0, 1.0, 2.0, 7.0])
    else:
        assert list(b) == [0.0, 1.0, 2.0, 7.0, 5.0]
    assert x.calls == 1
    assert can_append(b)


@pytest.mark.parametrize(
    "index, action, expected",
    [
        # float(x) deletes b[0] (len 3 -> 2); the index is resolved against the new length
        (2, "del0", IndexError),
        (-1, "del0", [1.0, 9.0]),
        (1, "del0", [1.0, 9.0]),
        (-3, "del0", IndexError),
        # float(x) appends 7.0 (len 3 -> 4, the storage may move)
        (1, "append", [0.0, 9.0, 2.0, 7.0]),
        (-1, "append", [0.0, 1.0, 2.0, 9.0]),
        (3, "append", [0.0, 1.0, 2.0, 9.0]),
        # float(x) clears the buffer
        (0, "clear", IndexError),
        # float(x) writes b[0] itself (b[i] = y through &self): the outer write wins at i
        (0, "set0", [9.0, 1.0, 2.0]),
        (1, "set0", [-5.0, 9.0, 2.0]),
    ],
)
def test_setitem_whose_value_changes_the_same_buffer(index, action, expected):
    """``b[i] = x`` where ``float(x)`` changes ``b``. Allowed outcomes: what Python semantics
    give (convert the value, then resolve ``i`` against the current length), or a
    RuntimeError with the buffer left as the inner operation made it; never a write
    outside the buffer (caught by the contents check and by -X dev)."""
    b = FloatBuffer.from_count(3)
    actions = {
        "del0": lambda: b.__delitem__(0),
        "append": lambda: b.append(7.0),
        "clear": lambda: [b.__delitem__(-1) for _ in range(len(b))],
        "set0": lambda: b.__setitem__(0, -5.0),
    }
    before_inner = [0.0, 1.0, 2.0]
    after_inner = {
        "del0": [1.0, 2.0],
        "append": [0.0, 1.0, 2.0, 7.0],
        "clear": [],
        "set0": [-5.0, 1.0, 2.0],
    }[action]
    x = FloatHook(9.0, actions[action])
    try:
        b[index] = x
    except RuntimeError:
        assert list(b) in (before_inner, after_inner)
    except IndexError:
        assert expected is IndexError, f"IndexError, expected {expected}"
        assert list(b) == after_inner
    else:
        assert expected is not IndexError, f"no IndexError; contents {list(b)}"
        assert list(b) == expected
    assert x.calls == 1
    assert can_append(b)


@pytest.mark.parametrize(
    "op, index, action, expected",
    [
        # __index__ appends 7.0 first; -1 then means the new last item (as for a list)
        ("get", -1, "append", 7.0),
        ("get", 3, "append", 7.0),
        ("del", -1, "append", [0.0, 1.0, 2.0]),
        # __index__ deletes b[0] first
        ("get", 2, "del0", IndexError),
        ("get", -1, "del0", 2.0),
        ("del", 2, "del0", IndexError),
        ("del", 0, "del0", [2.0]),
    ],
)
def test_index_whose_conversion_changes_the_same_buffer(op, index, action, expected):
    """``b[i]`` / ``del b[i]`` where ``i.__index__`` changes ``b``: the index is resolved
    against the length after the conversion (as ``list`` does), or RuntimeError."""
    b = FloatBuffer.from_count(3)
    act = {"append": lambda: b.append(7.0), "del0": lambda: b.__delitem__(0)}[action]
    i = IndexHook(index, act)
    model = [0.0, 1.0, 2.0]
    if action == "append":
        model.append(7.0)
    else:
        del model[0]
    try:
        result = b[i] if op == "get" else b.__delitem__(i)
    except RuntimeError:
        assert list(b) in ([0.0, 1.0, 2.0], model)
    except IndexError:
        assert expected is IndexError
        assert list(b) == model
    else:
        assert expected is not IndexError
        if op == "get":
            assert result == expected and list(b) == model
        else:
            assert list(b) == expected
    assert i.calls == 1


@pytest.mark.parametrize("action", ["append", "del0", "set0", "read", "view"])
def test_contains_whose_argument_changes_the_same_buffer(action):
    """``x in b`` compares ``item == x`` for each item while ``b`` is borrowed, so ``x.__eq__``
    runs with the buffer borrowed: a mutation that moves memory is refused with RuntimeError
    (content unchanged); reads, ``b[i] = y`` and views work, and the answer is computed from
    the items as they were read."""
    b = FloatBuffer.from_count(3)
    views = []
    acts = {
        "append": lambda: b.append(42.0),
        "del0": lambda: b.__delitem__(0),
        "set0": lambda: b.__setitem__(0, 42.0),
        "read": lambda: (b[0], len(b), b.sum(), list(b)),
        "view": lambda: views.append(memoryview(b)),
    }

    class EqHook:
        calls = 0

        def __eq__(self, other):
            EqHook.calls += 1
            acts[action]()
            return other == 42.0

    x = EqHook()
    try:
        found = x in b
    except RuntimeError:
        assert action in ("append", "del0"), f"RuntimeError for a harmless {action}"
        assert list(b) == [0.0, 1.0, 2.0]
        assert EqHook.calls == 1
    else:
        assert action not in ("append", "del0"), f"{action} while borrowed must be refused"
        assert found is False and EqHook.calls == 3
        expected = [42.0, 1.0, 2.0] if action == "set0" else [0.0, 1.0, 2.0]
        assert list(b) == expected
    for v in views:
        assert v.tolist() == list(b)
        v.release()
    assert can_append(b)


@pytest.mark.parametrize("x", [10**400, -(10**400)], ids=["10**400", "-10**400"])
def test_contains_int_beyond_float_range_is_false(x):
    b = FloatBuffer.from_count(3)
    assert (x in list(b)) is False  # the reference behaviour
    assert (x in b) is False


@pytest.mark.parametrize(
    "x, items",
    [
        (2**53 + 1, [2.0**53]),
        (decimal.Decimal("0.1"), [0.1]),
        (fractions.Fraction(1, 10), [0.1]),
        (fractions.Fraction(1, 4), [0.25]),
        (2**53, [2.0**53]),
        (True, [1.0]),
    ],
    ids=["2**53+1", "Decimal(0.1)", "Fraction(1,10)", "Fraction(1,4)", "2**53", "True"],
)
def test_contains_compares_exactly_like_list(x, items):
    b = FloatBuffer()
    for v in items:
        b.append(v)
    assert (x in b) is (x in items)


def test_matrix_set_whose_value_reads_and_writes_the_matrix():
    """``m.set(r, c, x)`` where ``float(x)`` reads ``m`` (and writes another cell, and takes
    a view): the value is computed from the matrix as it was, the write lands at (r, c),
    and the view sees both writes."""
    m = Matrix(2, 3)
    m.set(0, 0, 1.5)
    m.set(1, 2, 2.0)
    views = []

    class ReadingFloat:
        calls = 0

        def __float__(self):
            self.calls += 1
            views.append(memoryview(m))
            m.set(0, 1, m.get(0, 0) * 10)
            return m.get(0, 0) + m.get(1, 2)

    x = ReadingFloat()
    m.set(1, 1, x)
    assert x.calls == 1
    assert memoryview(m).tolist() == [[1.5, 15.0, 0.0], [0.0, 3.5, 2.0]]
    assert views[0].tolist() == [[1.5, 15.0, 0.0], [0.0, 3.5, 2.0]]
    views[0].release()
    # out-of-range coordinates after a converter ran: IndexError, nothing written
    with pytest.raises(IndexError):
        m.set(IndexHook(2, lambda: m.get(0, 0)), 0, FloatHook(1.0, lambda: None))
    assert memoryview(m).tolist() == [[1.5, 15.0, 0.0], [0.0, 3.5, 2.0]]


def test_view_keeps_exporter_alive_after_last_name_is_gone():
    """A view holds the only reference to its exporter: after a collection the data is
    intact, the exporter still counts the export (append refused), and releasing the view
    lets it go."""
    v = memoryview(FloatBuffer.from_count(3))
    gc.collect()
    assert v.tolist() == [0.0, 1.0, 2.0]
    b = v.obj  # the exporter is still there, still exporting
    assert type(b) is FloatBuffer and not can_append(b)
    v.release()
    assert can_append(b)

    m_view = memoryview(Matrix(2, 2))
    gc.collect()
    m_view[1, 1] = 4.0
    assert m_view.obj.get(1, 1) == 4.0
    m_view.release()

    sliced = memoryview(FloatBuffer.from_count(5))[1::2]  # only the slice survives
    gc.collect()
    assert sliced.tolist() == [1.0, 3.0]
    sliced.release()


def test_refcounts_balanced_by_views():
    """Each live view owns exactly one reference to its exporter; release gives it back."""
    for obj in (FloatBuffer.from_count(4), Matrix(2, 2), tm.Array_d(3)):
        base = sys.getrefcount(obj)
        views = [memoryview(obj) for _ in range(5)]
        assert sys.getrefcount(obj) == base + 5
        for v in views:
            v.release()
        assert sys.getrefcount(obj) == base
        with memoryview(obj):
            pass
        assert sys.getrefcount(obj) == base


def test_numpy_array_outlives_the_name(np):
    """numpy arrays over a FloatBuffer / Matrix whose names are gone keep the exporter alive
    and share its memory both ways; the export ends when the last array goes."""
    a = np.frombuffer(FloatBuffer.from_count(4), dtype=np.float64)
    gc.collect()
    assert a.tolist() == [0.0, 1.0, 2.0, 3.0] and a.sum() == 6.0
    b = a.base.obj if isinstance(a.base, memoryview) else a.base
    assert type(b) is FloatBuffer and not can_append(b)
    b[0] = 10.0
    assert a[0] == 10.0
    del a
    gc.collect()
    assert can_append(b)

    m = Matrix(2, 3)
    arr = np.asarray(m)
    del m
    gc.collect()
    arr[1, 2] = 5.0
    owner = arr.base.obj if isinstance(arr.base, memoryview) else arr.base
    assert type(owner) is Matrix and owner.get(1, 2) == 5.0
    owner.set(0, 0, -1.0)
    assert arr[0, 0] == -1.0
    sub = arr[1:, ::2]  # a numpy view of the numpy view
    del arr, owner
    gc.collect()
    assert sub.tolist() == [[0.0, 5.0]]


# ---------------------------------------------------------------------------
# 4. Sub-interpreters (each test in a child process)

SUB_CODE = r"""
import json, sys
sys.path[:0] = MODULE_DIRS
import pontoneer_demo as d, pontoneer_testmod as t

b = d.FloatBuffer.from_count(4)
v = memoryview(b)
assert v.tolist() == [0.0, 1.0, 2.0, 3.0] and v.readonly and v.format == "d"
try:
    b.append(1.0)
except BufferError:
    pass
else:
    raise AssertionError("append allowed while a view is held")
b[0] = 5.0
assert v[0] == 5.0
v.release()
b.append(9.0)
assert list(b) == [5.0, 1.0, 2.0, 3.0, 9.0]
assert list(-b) == [-5.0, -1.0, -2.0, -3.0, -9.0]
assert (b + b).sum() == 40.0 and b == d.FloatBuffer.from_count(0) + b and 9.0 in b
m = d.Matrix(2, 2)
m.set(1, 0, 3.0)
assert memoryview(m).tolist() == [[0.0, 0.0], [3.0, 0.0]]
a = t.Array_d(3)
with memoryview(a) as va:
    assert t.exports(a) == 1
assert t.exports(a) == 0
for _ in range(ROUNDS):
    x = d.FloatBuffer.from_count(8)
    with memoryview(x):
        pass
    x.append(1.0)
    assert len(x) == 9 and (-x)[8] == -1.0
panicked = False
try:
    t.module_panic()
except t.PanicException as e:
    panicked = "deliberate panic" in str(e)
assert panicked
assert not issubclass(t.PanicException, Exception)
f = t.Faulty(0)
try:
    f.panic()
except t.PanicException:
    pass
assert f.bump() == 1  # no borrow left behind by the panic
# objects (and a live view) left behind for the interpreter's finalization
keep_b = d.FloatBuffer.from_count(3)
keep_v = memoryview(keep_b)
cycle = [d.FloatBuffer.from_count(2), memoryview(t.Array_d(2))]
cycle.append(cycle)
with open(OUT, "a") as fh:
    fh.write(json.dumps({
        "ids": [id(d), id(d.FloatBuffer), id(d.Matrix), id(t.Array_d), id(t.PanicException)],
        "b_type_ok": type(b) is d.FloatBuffer,
    }) + "\n")
"""

MAIN_CODE = r"""
import json, os, sys, threading
import pontoneer_demo as d, pontoneer_testmod as t

main_ids = [id(d), id(d.FloatBuffer), id(d.Matrix), id(t.Array_d), id(t.PanicException)]
main_b = d.FloatBuffer.from_count(3)
main_v = memoryview(main_b)  # a view held in the main interpreter across everything
main_arr = t.Array_d(2)
main_arr_v = memoryview(main_arr)

code = "MODULE_DIRS = %r\nOUT = %r\nROUNDS = %d\n" % (MODULE_DIRS, OUT, ROUNDS) + SUB_CODE
rcs = RUN(code)

# The main interpreter is unaffected.
assert sys.modules["pontoneer_demo"] is d and sys.modules["pontoneer_testmod"] is t
assert [id(d), id(d.FloatBuffer), id(d.Matrix), id(t.Array_d), id(t.PanicException)] == main_ids
assert main_v.tolist() == [0.0, 1.0, 2.0]
try:
    main_b.append(1.0)
except BufferError:
    pass
else:
    raise AssertionError("main: append allowed while a view is held")
main_v.release()
main_b.append(3.0)
assert list(main_b) == [0.0, 1.0, 2.0, 3.0] and type(-main_b) is d.FloatBuffer
assert t.exports(main_arr) == 1
main_arr_v.release()
assert t.exports(main_arr) == 0
try:
    t.module_panic()
except t.PanicException as e:
    assert type(e) is t.PanicException
with open(OUT) as fh:
    records = [json.loads(line) for line in fh]
print(json.dumps({"rcs": rcs, "records": records, "main_ids": main_ids}))
"""

LEGACY_RUN = r"""
import _testcapi
def RUN(code):
    return [_testcapi.run_in_subinterp(code) for _ in range(N_SUB)]
"""

OWN_GIL_RUN = r"""
def run_one(code):
    if sys.version_info >= (3, 13):
        import _interpreters, _testinternalcapi
        config = _interpreters.new_config("isolated")
        assert config.gil == "own" and config.check_multi_interp_extensions
        return _testinternalcapi.run_in_subinterp_with_config(code, config)
    import _testcapi
    return _testcapi.run_in_subinterp_with_config(
        code,
        use_main_obmalloc=False,
        allow_fork=False,
        allow_exec=False,
        allow_threads=True,
        allow_daemon_threads=False,
        check_multi_interp_extensions=True,
        gil=2,  # PyInterpreterConfig_OWN_GIL
    )

def RUN(code):
    rcs = [run_one(code) for _ in range(N_SUB)]
    # then N_PARALLEL at once, each with its own GIL, while this thread keeps working
    par = []
    def worker():
        par.append(run_one(code))
    threads = [threading.Thread(target=worker) for _ in range(N_PARALLEL)]
    for th in threads:
        th.start()
    busy = d.FloatBuffer()
    for i in range(20000):
        busy.append(i)
        with memoryview(busy):
            pass
    for th in threads:
        th.join()
    assert len(busy) == 20000 and busy.sum() == 20000 * 19999 / 2
    # negative control: the config really refuses modules without multi-interpreter support
    control = None
    import importlib.util
    if importlib.util.find_spec("_testsinglephase") is not None:
        control = run_one("import _testsinglephase")
    return {"sequential": rcs, "parallel": par, "control": control}
"""


def _run_subinterpreters(tmp_path, runner, n_sub, n_parallel=0, rounds=200):
    out = tmp_path / "subinterp.jsonl"
    code = (
        f"OUT = {str(out)!r}\nN_SUB = {n_sub}\nN_PARALLEL = {n_parallel}\nROUNDS = {rounds}\n"
        f"SUB_CODE = {SUB_CODE!r}\n"
        + textwrap.dedent(runner)
        + textwrap.dedent(MAIN_CODE)
    )
    return child_report(run_child(code))


def _check_records(report, expected):
    records = report["records"]
    assert len(records) == expected, "a sub-interpreter did not finish its checks"
    main = set(report["main_ids"])
    for rec in records:
        assert rec["b_type_ok"]
        # Recorded while the main module and types were alive: distinct objects.
        assert not set(rec["ids"]) & main, "a sub-interpreter shares the main module's objects"


def test_legacy_subinterpreters_shared_gil(tmp_path):
    """Three legacy sub-interpreters (shared GIL, ``_testcapi.run_in_subinterp``), each
    importing both modules: FloatBuffer, memoryview, Matrix, Array_d exports, panics,
    objects and a live view left for finalization. ``run_in_subinterp`` returns -1 when the
    code raised. The main interpreter's modules, types and a view held across the runs
    are unaffected."""
    report = _run_subinterpreters(tmp_path, LEGACY_RUN, n_sub=3)
    assert report["rcs"] == [0, 0, 0]
    _check_records(report, 3)


@pytest.mark.skipif(
    sys.version_info < (3, 12),
    reason="per-interpreter GIL (Py_mod_multiple_interpreters, PyInterpreterConfig_OWN_GIL) "
    "is CPython 3.12+",
)
@pytest.mark.skipif(
    FloatBuffer.__module__ == "pontoneer_demo"
    and sys.modules["pontoneer_demo"].__file__.endswith(".abi3.so"),
    reason="an abi3-py311 build cannot declare Py_mod_multiple_interpreters (the slot does "
    "not exist in 3.11's stable ABI), so CPython refuses it in own-GIL sub-interpreters",
)
def test_own_gil_subinterpreters(tmp_path):
    """Three sub-interpreters with their own GIL and ``check_multi_interp_extensions``
    (importing succeeds only because pontoneer declares per-interpreter GIL support),
    then three at once in parallel threads while the main interpreter works on its own
    FloatBuffer. A single-phase module is refused under the same config (control)."""
    report = _run_subinterpreters(tmp_path, OWN_GIL_RUN, n_sub=3, n_parallel=3)
    rcs = report["rcs"]
    assert rcs["sequential"] == [0, 0, 0]
    assert rcs["parallel"] == [0, 0, 0]
    if rcs["control"] is not None:
        assert rcs["control"] == -1, "the isolated config accepted a single-phase module"
    _check_records(report, 6)


# ---------------------------------------------------------------------------
# 5. Allocation failure

# op -> (statement, the operation's own exception(s) or None, Faulty mode of ``g``).
# Names in the child: FB, Matrix, t (pontoneer_testmod), b = FB.from_count(5),
# c = FB.from_count(3), m = Matrix(2, 2), arr = t.Array_d(4), f = t.Faulty(0), g = t.Faulty(mode).
NOMEM_OPS = {
    # construction and the brief's operations
    "FloatBuffer()": ("r = FB()", None, 0),
    "from_count(10)": ("r = FB.from_count(10)", None, 0),
    "append": ("b.append(1.5)", None, 0),
    "memoryview(b)": ("r = memoryview(b); r.release()", None, 0),
    "b + c": ("r = b + c", None, 0),
    "Matrix(3, 3)": ("r = Matrix(3, 3)", None, 0),
    "-b": ("r = -b", None, 0),
    # more slots and views
    "memoryview(Matrix)": ("r = memoryview(m); r.release()", None, 0),
    "memoryview(Array_d)": ("r = memoryview(arr); r.release()", None, 0),
    "bytes(b)": ("r = bytes(b)", None, 0),
    "b[i]": ("r = b[1]", None, 0),
    "b[i] = x": ("b[1] = 7.5", None, 0),
    "b == c": ("r = (b == c)", None, 0),
    "x in b": ("r = (2.0 in b)", None, 0),
    "sum": ("r = b.sum()", None, 0),
    "repr": ("r = repr(b)", None, 0),
    # error paths: the exception object itself must be allocated
    "append refused (view held)": ("b.append(1.5)", "BufferError", 0),
    "IndexError": ("b[100]", "IndexError", 0),
    "TypeError (argument)": ("FB.from_count('x')", "TypeError", 0),
    "ValueError (negative count)": ("FB.from_count(-1)", "(ValueError, OverflowError)", 0),
    "Matrix too large": ("Matrix(2**32, 2**32)", "(MemoryError, OverflowError, ValueError)", 0),
    "b < c (NotImplemented)": ("b < c", "TypeError", 0),
    "setter ValueError": ("f.count = -1", "ValueError", 0),
    "custom exception": ("f.fail_custom()", "t.TestError", 0),
    "re-entrant &mut refused": ("f.reenter(f.bump)", "RuntimeError", 0),
    "panic": ("f.panic()", "t.PanicException", 0),
    "module function panic": ("t.module_panic()", "t.PanicException", 0),
    "getbuffer error": ("memoryview(g)", "BufferError", 1),
    "getbuffer panic": ("memoryview(g)", "t.PanicException", 2),
    "getbuffer bad format": ("memoryview(g)", "BufferError", 3),
    # no error channel: reported through sys.unraisablehook (which itself may fail)
    "release hook panic": ("memoryview(g).release()", None, 6),
    "release hook error": ("memoryview(g).release()", None, 7),
}

NOMEM_CHILD = r"""
import gc, json
import _testcapi
import pontoneer_demo, pontoneer_testmod as t
FB, Matrix = pontoneer_demo.FloatBuffer, pontoneer_demo.Matrix
STMT = compile(STMT_SRC, "<op>", "exec")
EXPECTED = eval(EXPECTED_SRC) if EXPECTED_SRC else None
counts = {"ok": 0, "MemoryError": 0, "expected": 0}
c = FB.from_count(3)
gc.collect()
gc.disable()  # deterministic allocation counts: no collection starts inside the window
for stop_after in (True, False):  # one failing allocation; every allocation from k on
    for k in range(K_MAX + 1):
        b = FB.from_count(5)
        m = Matrix(2, 2)
        arr = t.Array_d(4)
        f = t.Faulty(0)
        g = t.Faulty(G_MODE)
        held = memoryview(b) if OP == "append refused (view held)" else None
        ns = {"FB": FB, "Matrix": Matrix, "t": t, "b": b, "c": c, "m": m, "arr": arr, "f": f,
              "g": g, "r": None}
        outcome = None
        try:
            _testcapi.set_nomemory(k, k + 1 if stop_after else 0)
            try:
                exec(STMT, ns)
            finally:
                _testcapi.remove_mem_hooks()
            outcome = "ok"
        except MemoryError:
            outcome = "MemoryError"
        except BaseException as e:
            if EXPECTED is None or not isinstance(e, EXPECTED):
                raise
            outcome = "expected"
        counts[outcome] += 1
        # The objects are intact and usable; no export is left counted.
        if held is not None:
            assert held.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
            held.release()
        items = list(b)
        if OP == "append" and outcome == "ok":
            assert items == [0.0, 1.0, 2.0, 3.0, 4.0, 1.5], items
        elif OP == "b[i] = x" and outcome == "ok":
            assert items == [0.0, 7.5, 2.0, 3.0, 4.0], items
        else:
            assert items == [0.0, 1.0, 2.0, 3.0, 4.0], (k, outcome, items)
        r = ns["r"]
        if outcome == "ok" and r is not None:
            if OP == "b + c":
                assert list(r) == [0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 1.0, 2.0]
            elif OP == "-b":
                assert list(r) == [-0.0, -1.0, -2.0, -3.0, -4.0]
            elif OP == "from_count(10)":
                assert list(r) == [float(i) for i in range(10)]
            elif OP == "FloatBuffer()":
                assert len(r) == 0
            elif OP == "Matrix(3, 3)":
                assert r.shape == (3, 3) and memoryview(r).tolist() == [[0.0] * 3] * 3
            elif OP == "b[i]":
                assert r == 1.0
            elif OP == "repr":
                assert r == "FloatBuffer(len=5)"
        b.append(6.0)  # not exporting, not borrowed
        assert len(b) == len(items) + 1
        assert t.exports(g) == 0
        assert t.exports(arr) == 0 and memoryview(arr).tolist() == [0.0, 1.0, 2.0, 3.0]
        n = f.count
        assert f.bump() == n + 1  # no borrow left behind
        m.set(1, 1, 2.0)
        assert m.get(1, 1) == 2.0 and memoryview(m).tolist() == [[0.0, 0.0], [0.0, 2.0]]
gc.enable()
gc.collect()
print(json.dumps(counts))
"""


@pytest.mark.parametrize("op", list(NOMEM_OPS))
def test_allocation_failure_sweep(op):
    """``_testcapi.set_nomemory(k, k + 1)`` (one failing allocation) and
    ``set_nomemory(k)`` (every allocation from the k-th on), k = 0..200, around one
    operation: each attempt ends in success, MemoryError, or the operation's own error
    (BufferError, IndexError, TypeError, PanicException, ...), never a crash, never another
    exception (a SystemError would mean an error return without an exception); afterwards
    the objects hold what they should and work (no borrow or export left behind). Runs in
    a child process; the hooks are always removed in a ``finally``.

    Scope: set_nomemory hooks CPython's PyMem/PyObject allocators only. Object allocation
    (``PyObject_Malloc`` in pontoneer's ``alloc_instance``), exception objects, memoryview
    objects and Python floats/strings are covered; Rust's ``Vec`` storage (item data,
    per-view shape/strides blocks) goes through Rust's global allocator (``malloc``) and
    is not affected; its failure path (``try_reserve`` -> MemoryError) is exercised by the
    size and memory-limit tests in test_foundation.py.
    """
    stmt, expected, mode = NOMEM_OPS[op]
    report = child_report(
        run_child(
            f"OP = {op!r}\nSTMT_SRC = {stmt!r}\nEXPECTED_SRC = {expected!r}\n"
            f"G_MODE = {mode}\nK_MAX = 200\n" + NOMEM_CHILD
        )
    )
    assert sum(report.values()) == 2 * 201
    # The sweep reached the operation's own allocations: some attempts failed, and the
    # late ones (k beyond the operation's allocation count) succeeded.
    assert report["MemoryError"] > 0 or op in ("append", "b[i] = x", "x in b"), report
    assert report["ok"] + report["expected"] > 0, report


# ---------------------------------------------------------------------------
# 6. Load

LOAD_HEADER = r"""
import gc, json, os, time
import pontoneer_demo
FB = pontoneer_demo.FloatBuffer
PAGE = os.sysconf("SC_PAGE_SIZE")

def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE

def measure(fn, n):
    fn(n // 10)  # warm-up: 10%
    gc.collect()
    before = rss()
    t0 = time.perf_counter()
    fn(n)
    seconds = time.perf_counter() - t0
    gc.collect()
    return rss() - before, seconds
"""

N_LOAD = 1_000_000
MAX_GROWTH = 1 << 20  # 1 MiB


def test_load_memoryview_round_trips():
    """1,000,000 memoryview round trips (half ``memoryview(b).release()``, half
    ``with memoryview(b): pass``) on FloatBuffer, Matrix and Array_d: RSS grows by at
    most 1 MiB after a 10% warm-up, and no export is left counted. Then 300 exporters of
    1 MiB each whose last name goes while a view is held: the memory comes back when the
    view is released (RSS again within budget)."""
    code = LOAD_HEADER + r"""
import pontoneer_testmod as t
b = FB.from_count(8)
m = pontoneer_demo.Matrix(3, 4)
arr = t.Array_d(8)

def round_trips(n):
    mv = memoryview
    for _ in range(n // 6):
        mv(b).release()
        with mv(b):
            pass
        mv(m).release()
        with mv(m):
            pass
        mv(arr).release()
        with mv(arr):
            pass

growth, seconds = measure(round_trips, N)
b.append(1.0)  # no export left
assert t.exports(arr) == 0

def orphaned_views(n):
    for _ in range(n):
        v = memoryview(FB.from_count(131072))  # 1 MiB; the view holds the only reference
        gc.collect()
        assert v[131071] == 131071.0
        v.release()

big_growth, big_seconds = measure(orphaned_views, 300)
print(json.dumps({"growth": growth, "seconds": seconds,
                  "big_growth": big_growth, "big_seconds": big_seconds}))
"""
    report = child_report(run_child(f"N = {N_LOAD}\n" + code))
    print(f"1,000,000 memoryview round trips: {report['seconds']:.2f} s, "
          f"RSS growth {report['growth']} bytes")
    assert report["growth"] <= MAX_GROWTH, report
    assert report["big_growth"] <= MAX_GROWTH, report


def test_load_mixed_slot_calls():
    """1,000,000 slot calls from Python (len, ``b[i]``, ``b[i] = x``, ``in``, ``-b``, ``+``,
    ``==``, in equal shares) on small buffers: RSS grows by at most 1 MiB after a 10%
    warm-up, and the buffers hold what they should."""
    code = LOAD_HEADER + r"""
small = FB.from_count(4)
other = FB.from_count(3)

def mixed(n):
    s, o = small, other
    for i in range(n // 7):
        len(s)
        s[1]
        s[2] = 2.0
        2.0 in s
        -s
        s + o
        s == o

growth, seconds = measure(mixed, N)
assert list(small) == [0.0, 1.0, 2.0, 3.0] and list(other) == [0.0, 1.0, 2.0]
small.append(4.0)
print(json.dumps({"growth": growth, "seconds": seconds}))
"""
    report = child_report(run_child(f"N = {N_LOAD}\n" + code))
    print(f"1,000,000 mixed slot calls: {report['seconds']:.2f} s, "
          f"RSS growth {report['growth']} bytes")
    assert report["growth"] <= MAX_GROWTH, report
