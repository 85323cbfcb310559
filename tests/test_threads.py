"""Thread settings: validation and the cap, threadpoolctl, and fork safety (issue 21).

The fork scenarios run in a subprocess of their own (a new session, killed whole on time-out), and
every forked child arms an alarm: a regression fails with the scenario's output instead of
hanging the test run. Before the fork handlers (csrc/fork.c), every scenario here that forks
after a 2-thread call hung in the child: libgomp's worker pool does not survive fork, and the
child's first 2-thread region waited forever for workers that fork had not copied.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from _scenario import run_scenario  # noqa: E402

import fastrnn
from fastrnn import _native, _threads
from fastrnn import functional as F

PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
HANG_GUARD_S = 60  # a scenario's whole run; only a hang guard, never a timing


@pytest.fixture(autouse=True)
def _restore_threads():
    old = _threads._num_threads
    yield
    _threads._num_threads = old
    _threads._limits.clear()


def _lstm_args(seed=0, T=30, B=4, I=16, H=64):
    r = np.random.default_rng(seed)
    return (r.standard_normal((T, B, I)), np.zeros((B, H)), np.zeros((B, H)),
            r.standard_normal((4 * H, I)) * 0.1, r.standard_normal((4 * H, H)) * 0.1,
            np.zeros(4 * H), np.zeros(4 * H))


# ---- validation and the cap ------------------------------------------------------------------

@pytest.mark.parametrize("bad", [0, -1, 2**31, 99999999999, _threads.MAX_THREADS + 1, 1.5, "2",
                                 True, 2.0])
def test_set_num_threads_rejects_what_is_not_a_count(bad):
    with pytest.raises(ValueError, match=r"set_num_threads: n must be a positive int in 1\.\.8192"):
        fastrnn.set_num_threads(bad)


def test_set_num_threads_takes_numpy_ints():
    fastrnn.set_num_threads(np.int64(2))
    assert fastrnn.get_num_threads() == 2 and type(fastrnn.get_num_threads()) is int


def test_count_above_the_cap_is_clamped_with_one_warning():
    """set_num_threads(1000) on a small machine used to start 1000 threads; now the kernels get
    the cap (4 per usable CPU), a call works, and the warning comes once."""
    cap = _threads.thread_cap()
    assert cap == _threads.THREADS_PER_CPU * _threads.usable_cpus()
    if cap >= _threads.MAX_THREADS:
        pytest.skip("2048 CPUs or more: no valid setting exceeds the cap")
    n = min(cap + 1000, _threads.MAX_THREADS)
    _threads._warned.clear()
    fastrnn.set_num_threads(n)
    with pytest.warns(RuntimeWarning, match=f"set_num_threads asks for {n} threads; using {cap}"):
        assert fastrnn.get_num_threads() == cap
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fastrnn.get_num_threads() == cap
        y = F.lstm_forward(*_lstm_args(), training=False)[0]
    assert np.isfinite(y).all()


def test_largest_setting_runs_instead_of_overflowing():
    """The issue's set_num_threads(2**31) was accepted and then every call raised a bare
    OverflowError; the largest accepted setting now runs at the cap."""
    fastrnn.set_num_threads(_threads.MAX_THREADS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        F.lstm_forward(*_lstm_args(), training=False)


@pytest.mark.parametrize("value, want", [("3", 3), (" 3 ", 3), ("4,2", 4), ("2, 1", 2),
                                         ("", None), ("  ", None)])
def test_omp_num_threads_forms(monkeypatch, value, want):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    fastrnn.set_num_threads(None)
    expect = want if want is not None else _threads.usable_cpus()
    assert fastrnn.get_num_threads() == min(expect, _threads.thread_cap())


@pytest.mark.parametrize("value", ["99999999999", "abc", "0", "-2", "+4", "1.5", ",2", "8193",
                                   "\u0663", "9" * 5000])
def test_bad_omp_num_threads_is_an_error_naming_it(monkeypatch, value):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    fastrnn.set_num_threads(None)
    with pytest.raises(ValueError, match=r"OMP_NUM_THREADS=.* is not a thread count.*1\.\.8192"):
        fastrnn.get_num_threads()
    with pytest.raises(ValueError, match="OMP_NUM_THREADS"):  # not OverflowError from the bridge
        F.lstm_forward(*_lstm_args(), training=False)
    fastrnn.set_num_threads(1)  # an explicit count takes precedence over the variable
    F.lstm_forward(*_lstm_args(), training=False)


def test_explicit_nthreads_argument_is_validated():
    a = np.ones((8, 8), np.float32)
    with pytest.raises(ValueError, match=r"nthreads must be a positive int in 1\.\.8192"):
        _native.gemm(a, a, nthreads=2**31)
    with pytest.raises(ValueError, match="nthreads"):
        _native.gemm(a, a, nthreads=0)
    np.testing.assert_allclose(_native.gemm(a, a, nthreads=2), a @ a)


# ---- threadpoolctl ---------------------------------------------------------------------------

def _spy_threads(monkeypatch):
    """Record the thread count each recurrent kernel call receives."""
    from fastrnn import _kernels

    seen = []

    def spy_on(name):
        real = getattr(_kernels, name)

        def spy(*args):
            seen.append(args[-1])
            return real(*args)

        monkeypatch.setattr(_kernels, name, spy)

    spy_on("cell_forward")  # the validating path's entry
    spy_on("forward_ready")  # the ready path's (an inference call of arrays as they are)
    return seen


def test_threadpoolctl_lists_and_limits_fastrnn(monkeypatch):
    tpc = pytest.importorskip("threadpoolctl")
    fastrnn.set_num_threads(2)
    mine = [d for d in tpc.threadpool_info() if d["internal_api"] == "fastrnn"]
    assert len(mine) == 1, tpc.threadpool_info()
    assert mine[0]["user_api"] == "openmp" and mine[0]["num_threads"] == 2
    assert mine[0]["version"] == fastrnn.__version__
    seen = _spy_threads(monkeypatch)
    args = _lstm_args()
    with tpc.threadpool_limits(1):
        assert fastrnn.get_num_threads() == 1
        F.lstm_forward(*args, training=False)
        with tpc.threadpool_limits(2):  # nested: the inner limit rules, then the outer again
            assert fastrnn.get_num_threads() == 2
        assert fastrnn.get_num_threads() == 1
        F.lstm_forward(*args, training=False)
    assert fastrnn.get_num_threads() == 2 and not _threads._limits
    F.lstm_forward(*args, training=False)
    assert seen == [1, 1, 2]
    with tpc.threadpool_limits(1, user_api="openmp"):
        assert fastrnn.get_num_threads() == 1
    with tpc.threadpool_limits(1, user_api="blas"):
        assert fastrnn.get_num_threads() == 2


def test_threadpoolctl_limit_only_caps_and_yields_to_later_settings():
    tpc = pytest.importorskip("threadpoolctl")
    fastrnn.set_num_threads(2)
    with tpc.threadpool_limits(3):  # a limit above the setting does not raise the count
        assert fastrnn.get_num_threads() == 2
    with tpc.threadpool_limits(1):
        fastrnn.set_num_threads(3)  # a setting made under a limit takes effect when it ends
        assert fastrnn.get_num_threads() == 1
    assert fastrnn.get_num_threads() == 3
    limiter = tpc.threadpool_limits(1)  # the plain-call form, restored by hand
    assert fastrnn.get_num_threads() == 1
    limiter.restore_original_limits()
    assert fastrnn.get_num_threads() == 3 and not _threads._limits


def test_threadpoolctl_info_survives_a_bad_omp_num_threads(monkeypatch):
    tpc = pytest.importorskip("threadpoolctl")
    monkeypatch.setenv("OMP_NUM_THREADS", "abc")
    fastrnn.set_num_threads(None)
    mine = [d for d in tpc.threadpool_info() if d["internal_api"] == "fastrnn"]
    assert mine and mine[0]["num_threads"] is None


def _run(code: str, env: dict | None = None) -> str:
    """Run code in a fresh interpreter (tests/_scenario.py): stdout; a hang fails the test."""
    return run_scenario(code, env, HANG_GUARD_S)


@pytest.mark.parametrize("first", ["fastrnn.functional", "threadpoolctl"])
def test_threadpoolctl_registration_either_import_order(first):
    """fastrnn's kernels (loaded by fastrnn.functional) and threadpoolctl, imported in either
    order: fastrnn is listed once and limited."""
    pytest.importorskip("threadpoolctl")
    out = _run(f"""
        import {first}
        import fastrnn.functional, threadpoolctl
        info = [d for d in threadpoolctl.threadpool_info() if d["internal_api"] == "fastrnn"]
        assert len(info) == 1, threadpoolctl.threadpool_info()
        with threadpoolctl.threadpool_limits(1):
            assert fastrnn.get_num_threads() == 1
        print("ok")
    """)
    assert out.strip() == "ok"


def test_fastrnn_does_not_import_threadpoolctl():
    out = _run("import sys, fastrnn.functional; print('threadpoolctl' in sys.modules)")
    assert out.strip() == "False"


# ---- fork ------------------------------------------------------------------------------------

# Shared by the fork scenarios: every kernel family, run with the thread count in force; the
# shapes are ones whose first call in a forked child hung before the fork handlers.
WORK = """
import os, signal, sys, threading
import numpy as np
import fastrnn
from fastrnn import _native, functional as F

SHAPES = [("lstm", 50, 1, 64, 64), ("lstm", 20, 24, 100, 200), ("gru", 30, 32, 64, 128),
          ("gru", 30, 1, 32, 256), ("rnn", 40, 16, 32, 128)]

def problem(cell, T, B, I, H, seed):
    r = np.random.default_rng(seed)
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    return (r.standard_normal((T, B, I)).astype(np.float32), np.zeros((B, H), np.float32),
            (r.standard_normal((G * H, I)) * 0.1).astype(np.float32),
            (r.standard_normal((G * H, H)) * 0.1).astype(np.float32),
            np.zeros(G * H, np.float32))

def work(seed=0):
    outs = []
    for cell, T, B, I, H in SHAPES:
        x, h0, w_ih, w_hh, b = problem(cell, T, B, I, H, seed)
        kw = {"nonlinearity": "tanh"} if cell == "rnn" else {}
        state = (h0, h0.copy()) if cell == "lstm" else (h0,)
        fw, bw = getattr(F, cell + "_forward"), getattr(F, cell + "_backward")
        outs.append(fw(x, *state, w_ih, w_hh, b, b, training=False, **kw)[0])
        o = fw(x, *state, w_ih, w_hh, b, b, **kw)
        dy = np.ones_like(o[0])
        g = bw(o[-1], dy, *(np.zeros_like(s) for s in state))
        outs += [o[0], *g]
    a = np.linspace(-1, 1, 256 * 192, dtype=np.float32).reshape(256, 192)
    outs.append(_native.gemm(a, a.T.copy()))
    return outs

def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
"""


def test_os_fork_child_runs_single_threaded_then_with_threads_again():
    """Parent: 1-thread results, then 2 threads (idle workers left behind), then fork. Child:
    starts single-threaded and equals the parent's 1-thread results bit for bit; after
    set_num_threads(2), its 2-thread results equal the parent's. Three forks in a row; the parent
    keeps working with 2 threads between them."""
    out = _run(WORK + """
fastrnn.set_num_threads(1)
one = work()
fastrnn.set_num_threads(2)
two = work()
for k in range(3):
    pid = os.fork()
    if pid == 0:
        signal.alarm(40)
        ok = fastrnn.get_num_threads() == 1 and same(work(), one)
        fastrnn.set_num_threads(2)
        ok = ok and fastrnn.get_num_threads() == 2 and same(work(), two)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"fork {k}: status {status}"
    assert same(work(), two)
print("ok")
""")
    assert out.strip() == "ok"


def test_fork_while_other_threads_run_kernels():
    """Forks made while another thread runs 2-thread calls (its team spinning, scratch blocks
    moving through the kept list), and from a non-main thread that has a team of its own: each
    child finishes its calls with the parent's results."""
    out = _run(WORK + """
fastrnn.set_num_threads(1)
one = work()
fastrnn.set_num_threads(2)
two = work()
stop = threading.Event()

def busy():
    while not stop.is_set():
        work(1)

def fork_and_check(tag):
    pid = os.fork()
    if pid == 0:
        signal.alarm(40)
        ok = same(work(), one)
        fastrnn.set_num_threads(2)
        os._exit(0 if ok and same(work(), two) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"{tag}: status {status}"

t = threading.Thread(target=busy)
t.start()
try:
    for k in range(4):
        fork_and_check(f"main thread, fork {k}")
finally:
    stop.set()
    t.join()

def from_thread():
    work()  # this thread's own 2-thread team
    for k in range(2):
        fork_and_check(f"other thread, fork {k}")

errors = []

def run_from_thread():
    try:
        from_thread()
    except BaseException as e:
        errors.append(repr(e))

t = threading.Thread(target=run_from_thread)
t.start()
t.join()
assert not errors, errors
print("ok")
""")
    assert out.strip() == "ok"


def test_multiprocessing_fork_pool():
    """A fork-start Pool mapping fastrnn calls after the parent ran 2-thread calls: every task
    returns the parent's results (single-threaded by default; 2 threads when the pool's
    initializer sets them)."""
    out = _run(WORK + """
import multiprocessing as mp

def task(seed):
    return fastrnn.get_num_threads(), work(seed)

fastrnn.set_num_threads(1)
one = [work(s) for s in range(4)]
fastrnn.set_num_threads(2)
two = [work(s) for s in range(4)]
ctx = mp.get_context("fork")
for init, want_threads, want in ((None, 1, one), (fastrnn.set_num_threads, 2, two)):
    with ctx.Pool(2, initializer=init, initargs=(2,) if init else ()) as pool:
        got = pool.map_async(task, range(4)).get(timeout=40)
    assert [n for n, _ in got] == [want_threads] * 4, [n for n, _ in got]
    assert all(same(g, w) for (_, g), w in zip(got, want))
print("ok")
""")
    assert out.strip() == "ok"


def test_torch_dataloader_workers():
    """A torch DataLoader with 2 fork-started workers whose dataset calls fastrnn, after the
    parent ran 2-thread calls: every item equals the parent's, with the workers' default (one
    thread) and with 2 threads set by worker_init_fn; two epochs each (new workers each)."""
    pytest.importorskip("torch")
    out = _run(WORK + """
import torch
from torch.utils.data import DataLoader, Dataset

class Seqs(Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        x, h0, w_ih, w_hh, b = problem("lstm", 20, 8, 32, 96, i)
        y = F.lstm_forward(x, h0, h0, w_ih, w_hh, b, b, training=False)[0]
        return fastrnn.get_num_threads(), torch.from_numpy(y)

fastrnn.set_num_threads(1)
one = [Seqs()[i][1] for i in range(6)]
fastrnn.set_num_threads(2)
two = [Seqs()[i][1] for i in range(6)]
work()
for init, threads, want in ((None, 1, one), (lambda _: fastrnn.set_num_threads(2), 2, two)):
    loader = DataLoader(Seqs(), batch_size=None, num_workers=2, multiprocessing_context="fork",
                        worker_init_fn=init, timeout=40)
    for epoch in range(2):
        got = list(loader)
        assert [n for n, _ in got] == [threads] * 6, (threads, epoch, [n for n, _ in got])
        assert all(torch.equal(g, w) for (_, g), w in zip(got, want)), (threads, epoch)
print("ok")
""")
    assert out.strip() == "ok"
