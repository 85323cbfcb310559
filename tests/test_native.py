"""Properties of the native kernels that the cross-implementation suite does not cover.

- shapes large enough to split the recurrence across threads and the input projection into
  several chunks (incl. the reverse + lengths gather path), on every SIMD path the machine has;
- determinism: bitwise-identical results run after run for a fixed thread count;
- thread-count invariance within rounding;
- the build/threads API.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastrnn
from fastrnn import _kernels, _native
from fastrnn import functional as F
from fastrnn import reference as R
from fastrnn._cells import CELLS

ARCHES = _kernels.available_arches()
G = {"rnn": 1, "lstm": 4, "gru": 3}
# Calls a test repeats to catch a rare race: fewer under the sanitizers (tools/sanitize.sh sets
# FASTRNN_TEST_SANITIZED), where each call is several times slower and memory errors, not the
# race's odds, are what the run looks for.
RACE_REPEATS = 40 if os.environ.get("FASTRNN_TEST_SANITIZED") else 300


@pytest.fixture
def threads():
    old = fastrnn.get_num_threads()
    yield
    fastrnn.set_num_threads(old)


def _problem(cell, T, B, I, H, dtype, rng, lengths=False):
    g = G[cell]
    s = 1.0 / np.sqrt(H)
    args = dict(
        x=rng.standard_normal((T, B, I)).astype(dtype),
        h0=rng.standard_normal((B, H)).astype(dtype),
        w_ih=(rng.uniform(-s, s, (g * H, I))).astype(dtype),
        w_hh=(rng.uniform(-s, s, (g * H, H))).astype(dtype),
        b_ih=rng.uniform(-s, s, g * H).astype(dtype),
        b_hh=rng.uniform(-s, s, g * H).astype(dtype),
    )
    if cell == "lstm":
        args["c0"] = rng.standard_normal((B, H)).astype(dtype)
    if lengths:
        L = rng.integers(0, T + 1, B)
        L[0] = T
        args["lengths"] = L
    return args


def _run(mod, cell, args, reverse, dy, dh, dc):
    kw = dict(lengths=args.get("lengths"), reverse=reverse)
    if cell == "lstm":
        y, h, c, ctx = mod.lstm_forward(args["x"], args["h0"], args["c0"], args["w_ih"],
                                        args["w_hh"], args["b_ih"], args["b_hh"], **kw)
        grads = mod.lstm_backward(ctx, dy, dh, dc)
        return (y, h, c, *grads)
    f = getattr(mod, f"{cell}_forward")
    y, h, ctx = f(args["x"], args["h0"], args["w_ih"], args["w_hh"], args["b_ih"], args["b_hh"],
                  **kw)
    grads = getattr(mod, f"{cell}_backward")(ctx, dy, dh)
    return (y, h, *grads)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("reverse,lengths", [(False, False), (True, False), (True, True),
                                             (False, True)])
def test_large_shapes_all_paths(arch, threads, cell, reverse, lengths):
    """T*B > 256 (several projection chunks), H spanning several panels, 2 threads."""
    fastrnn.set_num_threads(2)
    rng = np.random.default_rng(7)
    T, B, I, H = 23, 13, 37, 71
    args = _problem(cell, T, B, I, H, np.float64, rng, lengths)
    dy = rng.standard_normal((T, B, H))
    dh = rng.standard_normal((B, H))
    dc = rng.standard_normal((B, H))
    got = _run(F, cell, args, reverse, dy, dh, dc)
    want = _run(R, cell, args, reverse, dy, dh, dc)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-11)


@pytest.fixture
def groups():
    yield
    _kernels.set_batch_groups(0)
    _kernels.set_team_threads(0)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("reverse,lengths", [(False, False), (True, True), (False, True)])
@pytest.mark.parametrize("nthreads,ngroups", [(2, 2), (4, 2), (4, 4), (3, 3), (6, 2)])
@pytest.mark.parametrize("projected", [False, True], ids=["w_ih", "projected"])
@pytest.mark.parametrize("B", [13, 48])
def test_batch_groups(threads, groups, cell, reverse, lengths, nthreads, ngroups, projected, B):
    """Teams split into groups of batch rows (each group owning its rows for the whole
    sequence, its threads splitting the hidden units) give the reference's results, forward and
    backward, with uneven groups (B = 13: each step's rows copied side by side before the input
    projection; B = 48: groups of 24 or 12 rows, projected where they are in x), several threads
    per group and projected input."""
    fastrnn.set_num_threads(nthreads)
    _kernels.set_team_threads(nthreads)  # a team whatever the load and the work's size
    _kernels.set_batch_groups(ngroups)
    rng = np.random.default_rng(17)
    T, H = 23, 71
    I = G[cell] * H if projected else 37
    args = _problem(cell, T, B, I, H, np.float64, rng, lengths)
    if projected:
        args["w_ih"] = None
    dy = rng.standard_normal((T, B, H))
    dh = rng.standard_normal((B, H))
    dc = rng.standard_normal((B, H))
    got = _run(F, cell, args, reverse, dy, dh, dc)
    want = _run(R, cell, args, reverse, dy, dh, dc)
    for a, b in zip(got, want, strict=True):
        if b is None:  # dw_ih of a projected input
            assert a is None
        else:
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-11)


def test_batch_groups_reverse_lengths_no_race(threads, groups):
    """Reverse + lengths gathers each chunk's input rows into a buffer shared by the team. Batch
    groups have no per-step barrier, so a group whose rows are idle (length 0) runs ahead to the
    next chunk's gather: without a barrier before it, it overwrote rows the busy group had not
    projected yet (about 5 wrong results in 300 calls here before the fix)."""
    fastrnn.set_num_threads(2)
    _kernels.set_batch_groups(2)
    rng = np.random.default_rng(0)
    T, B, I, H = 256, 32, 64, 40
    x = rng.standard_normal((T, B, I))
    w = rng.standard_normal((4 * H, I)) * 0.1
    u = rng.standard_normal((4 * H, H)) * 0.1
    b = np.zeros(4 * H)
    L = np.where(np.arange(B) < B // 2, 0, T).astype(np.int64)  # group 0 idle, group 1 busy
    want = R.lstm_forward(x, None, None, w, u, b, b, lengths=L, reverse=True,
                          training=False)[0]
    bad = 0
    for _ in range(RACE_REPEATS):
        y = F.lstm_forward(x, None, None, w, u, b, b, lengths=L, reverse=True,
                           training=False)[0]
        bad += not np.allclose(y, want, rtol=1e-10, atol=1e-11)
    assert bad == 0


def test_batch_groups_bad_count(groups):
    with pytest.raises(ValueError, match="n must be >= 0"):
        _kernels.set_batch_groups(-1)


@pytest.fixture
def tuning():
    _kernels.set_group_tuning(True)
    yield
    _kernels.set_group_tuning(True)


def test_group_tuning_measures_both_plans_then_keeps_the_faster(tuning):
    """Passes of one key run the rule's plan and the other in turn; after 3 undisturbed calls
    of each, the other is kept where it is 3% faster, the rule's otherwise; disturbed calls
    do not count."""
    for alt_ns, want in ((90.0, 1), (98.0, 0)):
        _kernels.set_group_tuning(True)
        key = 12345
        # a pass that starts beside others runs the rule's plan and takes no turn
        assert _kernels.tune_pick(key, 1, 2, explore=False)[0] == 1
        picks = []
        for k in range(10):
            g, ticket = _kernels.tune_pick(key, 1, 2)
            picks.append(g)
            _kernels.tune_report(ticket, 1.0, undisturbed=False)  # not counted
            if k < 6:
                _kernels.tune_report(ticket, alt_ns if g == 2 else 100.0)
        assert picks[:6] == [1, 2, 1, 2, 1, 2]
        assert _kernels.tune_decision(key) == want
        assert set(picks[6:]) == {2 if want else 1}


def test_group_tuning_off_runs_the_rule_and_a_full_table_too(tuning):
    _kernels.set_group_tuning(False)
    assert {_kernels.tune_pick(7, 1, 2)[0] for _ in range(4)} == {1}
    _kernels.set_group_tuning(True)
    for key in range(1, 65):  # FR_TUNE_SLOTS keys
        _kernels.tune_pick(key, 2, 1)
    assert {_kernels.tune_pick(999, 2, 1)[0] for _ in range(4)} == {2}
    assert _kernels.tune_decision(999) == -1


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_group_tuning_gives_the_same_results_whichever_plan(threads, groups, tuning, cell):
    """A shape whose rule is not clear-cut runs either plan while it is measured, and keeps one:
    every call's outputs and gradients are the same bits as with either plan forced."""
    fastrnn.set_num_threads(2)
    _kernels.set_team_threads(2)  # a team whatever the load
    rng = np.random.default_rng(3)
    T, B, I, H = 12, 7, 50, 100
    args = _problem(cell, T, B, I, H, np.float32, rng, False)
    dy, dh, dc = (rng.standard_normal(s).astype(np.float32) for s in ((T, B, H), (B, H), (B, H)))
    forced = []
    for g in (1, 2):
        _kernels.set_batch_groups(g)
        forced.append(_run(F, cell, args, False, dy, dh, dc))
    _kernels.set_batch_groups(0)
    for a, b in zip(*forced, strict=True):
        np.testing.assert_array_equal(a, b)
    try:
        for _ in range(10):
            for a, b in zip(_run(F, cell, args, False, dy, dh, dc), forced[0], strict=True):
                np.testing.assert_array_equal(a, b)
    finally:
        _kernels.set_team_threads(0)


def test_batch_groups_while_a_steps_weights_fit_a_cores_l2(groups):
    """Every group reads all the weights a step reads, from its own core's L2: groups are taken
    while those bytes fit 3/4 of it (at least 1 MiB), and small groups only where they cut the
    busiest thread's work."""
    _kernels.set_batch_groups(0)
    mr = _kernels.kernel_info()["float32"]["mr"]
    limit = max(1 << 20, _kernels.l2_bytes() // 4 * 3)
    assert _kernels.groups_rule(2, 48, mr, 10, limit, 10) == 2
    assert _kernels.groups_rule(2, 48, mr, 10, limit + 1, 10) == 1
    assert _kernels.groups_rule(1, 48, mr, 10, 1 << 16, 10) == 1  # a team of one
    # 24 rows in 7 blocks: 4 blocks x 24 rows in one group against 7 x 12 in two
    assert _kernels.groups_rule(2, 24, mr, 7, 1 << 16, 10) == 2
    # 12 rows in 8 blocks: 4 x 12 against 8 x 6, no cut
    assert _kernels.groups_rule(2, 12, mr, 8, 1 << 16, 10) == 1
    _kernels.set_batch_groups(2)  # forced: wherever the team allows
    assert _kernels.groups_rule(2, 12, mr, 8, limit + 1, 10) == 2


@pytest.fixture
def stream_bytes():
    yield
    _kernels.set_stream_cache_bytes(0)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("precision", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("H", [64, 45], ids=["aligned", "partial"])
@pytest.mark.parametrize("reverse,lengths", [(False, False), (True, True)])
def test_streamed_training_cache_gives_the_same_bits(arch, threads, stream_bytes, cell,
                                                     precision, H, reverse, lengths):
    """A forward whose training cache is large enough (recurrence.h's FR_STREAM_CACHE_BYTES;
    forced from 1 byte here) stores it non-temporally, on 2 threads: the same outputs and
    gradients, bit for bit, as with ordinary stores (the backward reads every cache element).
    H = 45: rows off the vectors' alignment and partial vectors, which store as before."""
    fastrnn.set_num_threads(2)
    rng = np.random.default_rng(21)
    dtype = np.float64 if precision == "float64" else np.float32
    T, B, I = 19, 9, 30
    args = _problem(cell, T, B, I, H, dtype, rng, lengths)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    dh = rng.standard_normal((B, H)).astype(dtype)
    dc = rng.standard_normal((B, H)).astype(dtype)
    kw = {} if precision != "bfloat16" else {"precision": "bfloat16"}
    if cell == "rnn":
        kw["nonlinearity"] = "tanh"

    def run():
        st = (args["h0"], args.get("c0"))
        o = F.cell_forward(cell, args["x"], *st, args["w_ih"], args["w_hh"], args["b_ih"],
                           args["b_hh"], lengths=args.get("lengths"), reverse=reverse, **kw)
        grads = F.cell_backward(o[-1], dy, dh, dc if cell == "lstm" else None)
        return [a for a in (*o[:-1], *grads) if a is not None]

    plain = run()
    _kernels.set_stream_cache_bytes(1)
    streamed = run()
    assert len(plain) == len(streamed)
    for a, b in zip(plain, streamed, strict=True):
        np.testing.assert_array_equal(a, b)


def test_stream_cache_bytes_bad_value(stream_bytes):
    with pytest.raises(ValueError, match="n must be >= 0"):
        _kernels.set_stream_cache_bytes(-1)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_float32_paths_agree(arch, cell):
    rng = np.random.default_rng(3)
    T, B, I, H = 9, 6, 19, 45
    args = _problem(cell, T, B, I, H, np.float32, rng, lengths=True)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    got = _run(F, cell, args, True, dy, None, None)
    args64 = {k: (v.astype(np.float64) if v.dtype == np.float32 else v) for k, v in args.items()}
    want = _run(R, cell, args64, True, dy.astype(np.float64), None, None)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_deterministic_bitwise(threads, cell):
    fastrnn.set_num_threads(2)
    rng = np.random.default_rng(11)
    T, B, I, H = 17, 24, 40, 96
    args = _problem(cell, T, B, I, H, np.float32, rng, lengths=True)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    first = _run(F, cell, args, False, dy, None, None)
    for _ in range(3):
        again = _run(F, cell, args, False, dy, None, None)
        for a, b in zip(first, again, strict=True):
            assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_thread_count_invariance(threads, cell):
    rng = np.random.default_rng(5)
    T, B, I, H = 12, 32, 48, 130
    args = _problem(cell, T, B, I, H, np.float64, rng)
    dy = rng.standard_normal((T, B, H))
    fastrnn.set_num_threads(1)
    one = _run(F, cell, args, False, dy, None, None)
    fastrnn.set_num_threads(2)
    two = _run(F, cell, args, False, dy, None, None)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_step_barriers_spinning_and_oversubscribed(threads, cell):
    """Batch-1 sequences: one barrier per step. Two threads on this machine use the spinning
    team barrier; more threads than processors use libgomp's. Both equal one thread's results
    (the split over hidden units never changes a sum), forward and backward, over many steps."""
    import os

    rng = np.random.default_rng(21)
    T, B, I, H = 300, 1, 24, 200  # 7 hidden panels: enough work for several threads per step
    args = _problem(cell, T, B, I, H, np.float64, rng)
    dy = rng.standard_normal((T, B, H))
    fastrnn.set_num_threads(1)
    one = _run(F, cell, args, False, dy, None, None)
    for n in (2, (os.cpu_count() or 1) + 2):
        fastrnn.set_num_threads(n)
        got = _run(F, cell, args, False, dy, None, None)
        for a, b in zip(one, got, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_smaller_team_than_asked_is_correct_and_does_not_hang(tmp_path):
    """When the OpenMP runtime gives fewer threads than asked (OMP_THREAD_LIMIT, a call from
    inside another parallel region), the kernels redo the work with the team they got: the
    results equal the reference, and the spinning step barrier never waits for a thread that
    does not exist."""
    import os
    import subprocess
    import sys

    script = tmp_path / "limit.py"
    script.write_text(
        "import numpy as np, fastrnn\n"
        "from fastrnn import functional as F, reference as R\n"
        "fastrnn.set_num_threads(2)\n"
        "rng = np.random.default_rng(3)\n"
        "T, B, I, H = 40, 2, 24, 200\n"
        "for cell in ('rnn', 'lstm', 'gru'):\n"
        "    G = {'rnn': 1, 'lstm': 4, 'gru': 3}[cell]\n"
        "    x = rng.standard_normal((T, B, I))\n"
        "    w = [rng.standard_normal((G * H, I)) * .1, rng.standard_normal((G * H, H)) * .1,\n"
        "         rng.standard_normal(G * H) * .1, rng.standard_normal(G * H) * .1]\n"
        "    dy = rng.standard_normal((T, B, H))\n"
        "    outs = []\n"
        "    for mod in (F, R):\n"
        "        fw, bw = getattr(mod, cell + '_forward'), getattr(mod, cell + '_backward')\n"
        "        if cell == 'lstm':\n"
        "            o = fw(x, None, None, *w)\n"
        "            g = bw(o[-1], dy, None, None)\n"
        "        else:\n"
        "            o = fw(x, None, *w, **({'nonlinearity': 'tanh'} if cell == 'rnn' else {}))\n"
        "            g = bw(o[-1], dy, None)\n"
        "        outs.append([o[0], *[a for a in g if a is not None]])\n"
        "    for a, b in zip(*outs):\n"
        "        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)\n"
        "print('ok')\n")
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_inference_keeps_no_context():
    rng = np.random.default_rng(0)
    args = _problem("lstm", 5, 2, 3, 4, np.float64, rng)
    y, h, c, ctx = F.lstm_forward(args["x"], args["h0"], args["c0"], args["w_ih"], args["w_hh"],
                                  args["b_ih"], args["b_hh"], training=False)
    assert ctx is None
    y2, h2, c2, ctx2 = F.lstm_forward(args["x"], args["h0"], args["c0"], args["w_ih"],
                                      args["w_hh"], args["b_ih"], args["b_hh"])
    assert ctx2 is not None
    assert np.array_equal(y, y2) and np.array_equal(h, h2) and np.array_equal(c, c2)


def test_threads_api(threads):
    fastrnn.set_num_threads(3)
    assert fastrnn.get_num_threads() == 3
    fastrnn.set_num_threads(None)
    assert fastrnn.get_num_threads() >= 1
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="n must be a positive int"):
            fastrnn.set_num_threads(bad)


def test_info_reports_build():
    d = fastrnn.info()
    assert d["version"] == fastrnn.__version__
    assert d["simd"] in d["simd_available"]
    assert "generic" in d["simd_available"]
    assert isinstance(d["openmp"], bool)
    assert d["num_threads"] == fastrnn.get_num_threads()


def test_set_arch_rejects_unknown():
    with pytest.raises(ValueError, match="arch must be one of"):
        _kernels.set_arch("sse9")


def test_forced_arch_env():
    """FASTRNN_ARCH forces a path at import time; a path the CPU lacks is a clear error."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": ":".join(sys.path)}
    code = "import fastrnn._kernels as k; print(k.get_arch())"
    for name in ARCHES:
        out = subprocess.run([sys.executable, "-c", code], env={**env, "FASTRNN_ARCH": name},
                             capture_output=True, text=True, check=True).stdout.split()
        assert out == [name]
    res = subprocess.run([sys.executable, "-c", code], env={**env, "FASTRNN_ARCH": "nonsense"},
                         capture_output=True, text=True)
    assert res.returncode != 0
    assert "FASTRNN_ARCH='nonsense' is not a SIMD path this CPU" in res.stderr


# ---- projected input (w_ih=None: W_ih is the identity) ----------------------------------------


def _strip_dw_ih(cell, outs):
    """Outputs of _run without dw_ih, and dw_ih (y, h, [c,] dx, dh0, [dc0,] dw_ih, ...)."""
    k = 6 if cell == "lstm" else 4
    return outs[:k] + outs[k + 1:], outs[k]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("reverse,lengths", [(False, False), (True, False), (True, True),
                                             (False, True)])
def test_projected_input_is_identity_w_ih(arch, threads, cell, reverse, lengths, dtype):
    """w_ih=None: x holds the input projection (I = G*H). Equals the reference with W_ih the
    identity matrix, on every SIMD path, over several projection chunks and panels, 2 threads;
    dx is then the gradient of the input pre-activations and dw_ih is None."""
    fastrnn.set_num_threads(2)
    rng = np.random.default_rng(11)
    T, B, H = 23, 13, 37
    gh = G[cell] * H
    args = _problem(cell, T, B, gh, H, dtype, rng, lengths)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    dh = rng.standard_normal((B, H)).astype(dtype)
    dc = rng.standard_normal((B, H)).astype(dtype)
    got, dw_got = _strip_dw_ih(cell, _run(F, cell, dict(args, w_ih=None), reverse, dy, dh, dc))
    want, dw_want = _strip_dw_ih(cell, _run(R, cell, dict(args, w_ih=np.eye(gh, dtype=dtype)),
                                            reverse, dy, dh, dc))
    ref_none, dw_ref = _strip_dw_ih(cell, _run(R, cell, dict(args, w_ih=None), reverse, dy, dh,
                                               dc))
    assert dw_got is None and dw_ref is None and dw_want.shape == (gh, gh)
    tol = dict(rtol=1e-10, atol=1e-11) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)
    for a, b, c in zip(got, want, ref_none, strict=True):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, **tol)
        np.testing.assert_allclose(c, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_projected_input_equals_projecting_outside(threads, cell):
    """Projecting x by W_ih outside and passing w_ih=None gives the same outputs, and
    dgx @ W_ih and dgx^T x give the usual dx and dw_ih."""
    fastrnn.set_num_threads(2)
    rng = np.random.default_rng(12)
    T, B, I, H = 9, 6, 5, 21
    args = _problem(cell, T, B, I, H, np.float64, rng, lengths=True)
    dy = rng.standard_normal((T, B, H))
    full = _run(F, cell, args, True, dy, None, None)
    xp = args["x"] @ args["w_ih"].T
    proj = _run(F, cell, dict(args, x=xp, w_ih=None), True, dy, None, None)
    k = 3 if cell == "lstm" else 2  # outputs before dx
    for a, b in zip(full[:k], proj[:k], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    dgx = proj[k]
    np.testing.assert_allclose(dgx @ args["w_ih"], full[k], rtol=1e-11, atol=1e-12)
    dw = dgx.reshape(T * B, -1).T @ args["x"].reshape(T * B, I)
    np.testing.assert_allclose(dw, full[k + (3 if cell == "lstm" else 2)], rtol=1e-11,
                               atol=1e-12)


def test_projected_input_needs_g_times_h_columns():
    rng = np.random.default_rng(13)
    args = _problem("lstm", 3, 2, 7, 4, np.float64, rng)
    with pytest.raises(ValueError, match=r"w_ih=None.*\(T, B, 16\)"):
        F.lstm_forward(args["x"], None, None, None, args["w_hh"], None, None)
    y = np.empty((3, 2, 4))
    h = np.empty((2, 4))
    c = np.empty((2, 4))
    with pytest.raises(ValueError, match="w_ih=None.*I = G\\*H = 16"):
        _kernels.cell_forward("lstm", y, h, c, None, args["x"], None, None, None, args["w_hh"],
                              None, None, None, 0, False, 1)


# ---- rows by index and the fused optimizer update ----------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("nthreads", [1, 2, 3])
def test_scatter_add_rows(dtype, nthreads):
    rng = np.random.default_rng(14)
    for V, n, rows in ((7, 5, 40), (300, 512, 3000), (1, 1, 1), (5, 3, 0), (4, 0, 9)):
        dst = rng.standard_normal((V, n)).astype(dtype)
        src = rng.standard_normal((rows, n)).astype(dtype)
        idx = rng.integers(0, V, rows).astype(np.int64)
        want = dst.copy()
        for r in range(rows):  # row order, as the kernel sums
            want[idx[r]] += src[r]
        _kernels.scatter_add_rows(dst, src, idx, nthreads)
        np.testing.assert_array_equal(dst, want)


def test_scatter_add_rows_rejects_bad_input():
    dst = np.zeros((4, 3))
    src = np.ones((2, 3))
    for bad in ([0, 4], [-1, 0]):
        with pytest.raises(ValueError, match=r"idx must lie in \[0, 4\)"):
            _kernels.scatter_add_rows(dst, src, np.array(bad, dtype=np.int64))
        assert not dst.any()  # nothing written
    with pytest.raises(ValueError, match="src must have shape"):
        _kernels.scatter_add_rows(dst, np.ones((2, 4)), np.array([0, 1], dtype=np.int64))
    with pytest.raises(TypeError, match="idx must have dtype int64"):
        _kernels.scatter_add_rows(dst, src, np.array([0, 1], dtype=np.int32))
    with pytest.raises(TypeError, match="src must have dtype float64"):
        _kernels.scatter_add_rows(dst, src.astype(np.float32), np.array([0, 1], dtype=np.int64))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 17, 1000, 600_000])
def test_adam_update_is_bitwise_the_numpy_formulation(dtype, n):
    """Same operations in the same order as optimizers.Adam's NumPy code (and the scalars
    rounded to the dtype, as NumPy does with Python floats): bit-identical, threads or not."""
    rng = np.random.default_rng(15)
    w = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    m = (rng.standard_normal(n) * 0.1).astype(dtype)
    v = (np.abs(rng.standard_normal(n)) * 0.1).astype(dtype)
    b1, b2, alpha, eps = 0.9, 0.999, 1.234e-3, 1e-7
    w2, m2, v2 = w.copy(), m.copy(), v.copy()
    m2 += (g - m2) * (1.0 - b1)
    v2 += (g * g - v2) * (1.0 - b2)
    d = np.sqrt(v2)
    d += eps
    w2 -= (m2 * alpha) / d
    _kernels.adam_update(w, g, m, v, 1.0 - b1, 1.0 - b2, alpha, eps, 2)
    for got, want in ((w, w2), (m, m2), (v, v2)):
        np.testing.assert_array_equal(got, want)


def test_adam_update_rejects_mismatched_arrays():
    w = np.zeros(4, np.float32)
    with pytest.raises(TypeError, match="g must have dtype float32"):
        _kernels.adam_update(w, np.zeros(4), np.zeros(4, np.float32), np.zeros(4, np.float32),
                             0.1, 0.001, 0.01, 1e-7)
    with pytest.raises(ValueError, match="m must have shape"):
        _kernels.adam_update(w, w.copy(), np.zeros(5, np.float32), w.copy(), 0.1, 0.001, 0.01,
                             1e-7)
    with pytest.raises(ValueError, match="v must be C-contiguous"):
        _kernels.adam_update(w, w.copy(), w.copy(), np.zeros(8, np.float32)[::2], 0.1, 0.001,
                             0.01, 1e-7)


# ---- projected input picked from a table (cell_forward_rows) ----------------------------------


def _rows_case(cell, rng, T=23, B=13, H=37, V=17, dtype=np.float64):
    g = G[cell]
    table = rng.standard_normal((V, g * H)).astype(dtype)
    ids = rng.integers(0, V, (T, B)).astype(np.int64)
    w_hh = (rng.standard_normal((g * H, H)) * 0.2).astype(dtype)
    b_ih = rng.standard_normal(g * H).astype(dtype)
    b_hh = rng.standard_normal(g * H).astype(dtype)
    return table, ids, w_hh, b_ih, b_hh


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("reverse,lengths", [(False, False), (True, False), (True, True),
                                             (False, True)])
@pytest.mark.parametrize("ngroups", [0, 2])
def test_forward_rows_equals_forward_on_picked_rows(threads, groups, arch, cell, reverse,
                                                    lengths, ngroups):
    """The kernel that picks projected input rows from a table by id gives bitwise the
    outputs and the training cache of the projected-input forward on x = table[ids], on every
    SIMD path, with and without batch groups; the public backward of its context (x None)
    equals the reference's with w_ih None on those rows."""
    fastrnn.set_num_threads(2)
    _kernels.set_batch_groups(ngroups)
    rng = np.random.default_rng(5)
    T, B, H = 23, 13, 37
    table, ids, w_hh, b_ih, b_hh = _rows_case(cell, rng, T, B, H)
    L = rng.integers(0, T + 1, B).astype(np.int64) if lengths else None
    h0 = rng.standard_normal((B, H))
    c0 = rng.standard_normal((B, H)) if cell == "lstm" else None
    n = _kernels.cache_size(cell, T, B, H)

    def run(rows):
        y, hn, cache = np.zeros((T, B, H)), np.zeros((B, H)), np.zeros(n)
        cn = np.zeros((B, H)) if cell == "lstm" else None
        if rows:
            _kernels.cell_forward_rows(cell, y, hn, cn, cache, table, ids, h0, c0, w_hh, b_ih,
                                       b_hh, L, 0, reverse, 2)
        else:
            _kernels.cell_forward(cell, y, hn, cn, cache, table[ids], h0, c0, None, w_hh, b_ih,
                                  b_hh, L, 0, reverse, 2)
        return [a for a in (y, hn, cn, cache) if a is not None]

    for a, b in zip(run(True), run(False), strict=True):
        assert np.array_equal(a, b)

    kw = dict(lengths=L, reverse=reverse)
    dy = rng.standard_normal((T, B, H))
    nl = "tanh" if cell == "rnn" else None
    c0 = c0 if CELLS[cell].has_cell_state else None
    *_, ctx = _native.forward_rows(cell, table, ids, h0, c0, w_hh, b_ih, b_hh, nonlinearity=nl,
                                   **kw)
    got = F.cell_backward(ctx, dy, None)
    *_, rctx = R.cell_forward(cell, table[ids], h0, c0, None, w_hh, b_ih, b_hh, nonlinearity=nl,
                              **kw)
    want = R.cell_backward(rctx, dy, None)
    for a, b in zip(got, want, strict=True):
        if b is None:
            assert a is None
        else:
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-11)


def test_forward_rows_bad_ids_and_shapes():
    rng = np.random.default_rng(0)
    T, B, H = 4, 3, 5
    table, ids, w_hh, b_ih, b_hh = _rows_case("gru", rng, T, B, H, V=6)
    y, hn = np.zeros((T, B, H)), np.zeros((B, H))
    for bad in (-1, 6):
        wrong = ids.copy()
        wrong[2, 1] = bad
        with pytest.raises(ValueError, match=r"ids must lie in \[0, 6\)"):
            _kernels.cell_forward_rows("gru", y, hn, None, None, table, wrong, None, None, w_hh,
                                       b_ih, b_hh, None, 0, False, 1)
    with pytest.raises(ValueError, match="table"):
        _kernels.cell_forward_rows("gru", y, hn, None, None, table[:, :-1], ids, None, None,
                                   w_hh, b_ih, b_hh, None, 0, False, 1)
    with pytest.raises(TypeError, match="ids must have dtype int64"):
        _kernels.cell_forward_rows("gru", y, hn, None, None, table, ids.astype(np.int32), None,
                                   None, w_hh, b_ih, b_hh, None, 0, False, 1)
    with pytest.raises(ValueError, match="x is needed unless w_ih is None"):
        _kernels.cell_backward("gru", np.zeros((T, B, 3)), np.zeros((B, H)), None,
                               np.zeros((3 * H, 3)), np.zeros((3 * H, H)), None, None,
                               np.zeros(_kernels.cache_size("gru", T, B, H)), None,
                               np.zeros((3 * H, 3)), w_hh, None, None, None, None, 0, False, 1)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_without_dx(cell, dtype):
    """need_dx=False: dx is None and every other gradient is the one of a full backward
    (bitwise) and the reference's (float64), with lengths, reverse and threads."""
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    T, B, I, H = 9, 6, 5, 7
    rng = np.random.default_rng(11)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    w = (rng.standard_normal((G * H, I)) * 0.4).astype(dtype)
    u = (rng.standard_normal((G * H, H)) * 0.4).astype(dtype)
    b = (rng.standard_normal(G * H) * 0.1).astype(dtype)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    dh = rng.standard_normal((B, H)).astype(dtype)
    lengths = np.array([9, 3, 0, 5, 9, 1])
    for reverse in (False, True):
        kw = {"lengths": lengths, "reverse": reverse}
        args = (x, h0, h0, w, u, b, b) if cell == "lstm" else (x, h0, w, u, b, b)
        grads = (dy, dh, None) if cell == "lstm" else (dy, dh)
        fw, bw = getattr(F, cell + "_forward"), getattr(F, cell + "_backward")
        rfw, rbw = getattr(R, cell + "_forward"), getattr(R, cell + "_backward")
        for nt in (1, 2):
            fastrnn.set_num_threads(nt)
            try:
                full = bw(fw(*args, **kw)[-1], *grads)
                part = bw(fw(*args, **kw)[-1], *grads, need_dx=False)
            finally:
                fastrnn.set_num_threads(None)
            assert part[0] is None and full[0] is not None
            for k, (a, p) in enumerate(zip(full[1:], part[1:], strict=True)):
                assert (a is None) == (p is None), k
                if a is not None:
                    np.testing.assert_array_equal(a, p, err_msg=f"output {k + 1}")
        if dtype == np.float64:
            ref = rbw(rfw(*args, **kw)[-1], *grads)
            rpart = rbw(rfw(*args, **kw)[-1], *grads, need_dx=False)  # the oracle's own option
            assert rpart[0] is None
            for k, (r, rp, p) in enumerate(zip(ref[1:], rpart[1:], part[1:], strict=True)):
                if r is not None:
                    np.testing.assert_array_equal(rp, r, err_msg=f"reference output {k + 1}")
                    np.testing.assert_allclose(p, r, rtol=1e-10, atol=1e-11,
                                               err_msg=f"output {k + 1}")


def test_cell_backward_dx_none_rules():
    """dx may be None only with w_ih given (with w_ih None it receives the gate grads)."""
    T, B, H = 3, 2, 4
    rng = np.random.default_rng(0)
    xp = rng.standard_normal((T, B, 4 * H))
    u = rng.standard_normal((4 * H, H)) * 0.3
    ctx = F.lstm_forward(xp, None, None, None, u, None, None)[-1]
    with pytest.raises(ValueError, match="dx is required when w_ih is None"):
        _kernels.cell_backward("lstm", None, np.empty((B, H)), np.empty((B, H)), None,
                               np.zeros((4 * H, H)), None, None, ctx.cache, None, None, u,
                               None, np.ones((B, H)), None, None, 0, False, 1)
    # the functional API still returns dx None on request with projected input
    out = F.lstm_backward(ctx, None, np.ones((B, H)), None, need_dx=False)
    assert out[0] is None and out[3] is None and np.isfinite(out[4]).all()


@pytest.mark.parametrize("precision", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_cell_backward_writes_the_weight_gradients(cell, precision):
    """The backward writes dw_ih and dw_hh (fastrnn.h's write rule): buffers full of NaN come
    back with the gradients the functional API returns, and a sequence of no steps (T = 0)
    writes zeros. db_ih / db_hh still accumulate."""
    dt = np.float64 if precision == "float64" else np.float32
    prec = {} if precision == "float64" else {"precision": precision}
    kw = {"nonlinearity": "tanh"} if cell == "rnn" else {}
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    rng = np.random.default_rng(3)
    for T, B, I, H in ((5, 3, 6, 33), (0, 2, 4, 8)):
        x = rng.standard_normal((T, B, I)).astype(dt)
        w = (rng.standard_normal((G * H, I)) * 0.3).astype(dt)
        u = (rng.standard_normal((G * H, H)) * 0.3).astype(dt)
        b = rng.standard_normal(G * H).astype(dt)
        out = F.cell_forward(cell, x, None, None, w, u, b, b, **kw, **prec)
        ctx = out[-1]
        dy = np.cos(out[0]).astype(dt)
        want = F.cell_backward(ctx, dy, None, None)
        p = ctx.p
        dw_ih = np.full((G * H, I), np.nan, dt)
        dw_hh = np.full((G * H, H), np.nan, dt)
        db_ih, db_hh = np.ones(G * H, dt), np.ones(G * H, dt)
        dc0 = np.empty((B, H), dt) if cell == "lstm" else None
        _kernels.cell_backward(cell, np.empty((T, B, I), dt), np.empty((B, H), dt), dc0, dw_ih,
                               dw_hh, db_ih, db_hh, ctx.cache, p.x, p.w_ih, p.w_hh, dy, None,
                               None, None, ctx.act, False, 2, ctx.hq)
        np.testing.assert_array_equal(dw_ih, want[3])
        np.testing.assert_array_equal(dw_hh, want[4])
        np.testing.assert_array_equal(db_ih, want[5] + 1)
        if T == 0:
            assert not dw_ih.any() and not dw_hh.any()
