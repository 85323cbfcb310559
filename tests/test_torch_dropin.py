"""The PyTorch drop-in (fastrnn.torch) against torch's own modules.

Tolerances (stated once, used everywhere): float64 outputs, states and gradients agree with
torch's to ``rtol=1e-9, atol=1e-11``; float32 to ``rtol=1e-4, atol=1e-5`` (two different
summation orders of float32 GEMMs over a few dozen terms).
"""

from __future__ import annotations

import copy
import os
import pickle
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

import fastrnn  # noqa: E402
import fastrnn.torch as ft  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: Where the package under test was imported from (src/ of a checkout, or site-packages).
PKG_PARENT = Path(fastrnn.__file__).resolve().parents[1]
TOL = {torch.float64: dict(rtol=1e-9, atol=1e-11), torch.float32: dict(rtol=1e-4, atol=1e-5)}
TORCH_CLS = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
FAST_CLS = {"RNN": ft.RNN, "LSTM": ft.LSTM, "GRU": ft.GRU}


def close(a, b, dtype, what):
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    torch.testing.assert_close(a, b, **TOL[dtype], msg=lambda m: f"{what}: {m}")


def make_pair(kind, *args, **kwargs):
    """A torch module and a fastrnn module with the same weights."""
    ref = TORCH_CLS[kind](*args, **kwargs)
    fast = FAST_CLS[kind](*args, **kwargs)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


# --------------------------------------------------------------------------------------
# Random configurations: outputs, final states and every gradient against torch.


def _config(seed):
    r = np.random.default_rng(seed)
    kind = ["RNN", "LSTM", "GRU"][seed % 3]
    c = dict(
        kind=kind,
        num_layers=int(r.integers(1, 4)),
        bidirectional=bool(r.integers(2)),
        batch_first=bool(r.integers(2)),
        bias=bool(r.random() < 0.8),
        dtype=[torch.float64, torch.float32][(seed // 3) % 2],
        inp=["padded", "packed_sorted", "packed_unsorted", "unbatched"][(seed // 6) % 4],
        h0=bool(r.integers(2)),
        T=int(r.integers(1, 7)),
        B=int(r.integers(1, 5)),
        I=int(r.integers(1, 6)),
        H=int(r.integers(1, 7)),
        nonlinearity=["tanh", "relu"][int(r.integers(2))],
    )
    return c


def _forward_and_grads(module, cfg, x0, h0s, lengths, loss_w):
    """Run ``module`` on fresh leaves copied from the given tensors; return outputs + grads."""
    x = x0.clone().requires_grad_(True)
    hs = [h.clone().requires_grad_(True) for h in h0s]
    if cfg["inp"].startswith("packed"):
        inp = pack_padded_sequence(x, lengths, batch_first=cfg["batch_first"],
                                   enforce_sorted=cfg["inp"] == "packed_sorted")
    else:
        inp = x
    hx = None if not hs else (tuple(hs) if cfg["kind"] == "LSTM" else hs[0])
    out, hn = module(inp, hx)
    outs = [out.data if cfg["inp"].startswith("packed") else out]
    outs += list(hn) if cfg["kind"] == "LSTM" else [hn]
    if cfg["inp"].startswith("packed"):
        # Also compare the padded view, which checks the packed order and sorted indices.
        padded, lens = pad_packed_sequence(out, batch_first=cfg["batch_first"])
        outs.append(padded)
        assert torch.equal(lens, lengths)
        assert torch.equal(out.batch_sizes, inp.batch_sizes)
    loss_w = loss_w or [1.0] * len(outs)
    loss = sum((o * w).sum() for o, w in zip(outs, loss_w, strict=True))
    module.zero_grad()
    loss.backward()
    grads = {"x": x.grad}
    for i, h in enumerate(hs):
        grads[f"h0[{i}]"] = h.grad
    for name, p in module.named_parameters():
        grads[name] = p.grad
    return [o.detach() for o in outs], grads


@pytest.mark.parametrize("seed", range(48))
def test_random_config_matches_torch(seed):
    cfg = _config(seed)
    torch.manual_seed(seed)
    dt = cfg["dtype"]
    kind, T, B, I, H = cfg["kind"], cfg["T"], cfg["B"], cfg["I"], cfg["H"]
    kw = dict(num_layers=cfg["num_layers"], bias=cfg["bias"], batch_first=cfg["batch_first"],
              bidirectional=cfg["bidirectional"], dtype=dt)
    if kind == "RNN":
        kw["nonlinearity"] = cfg["nonlinearity"]
    ref, fast = make_pair(kind, I, H, **kw)
    with torch.no_grad():  # non-zero biases of both signs, weights large enough to matter
        for p_ref, p_fast in zip(ref.parameters(), fast.parameters(), strict=True):
            p_ref.uniform_(-0.8, 0.8)
            p_fast.copy_(p_ref)
    D = 2 if cfg["bidirectional"] else 1
    unbatched = cfg["inp"] == "unbatched"
    if unbatched:
        x0 = torch.randn(T, I, dtype=dt)
    else:
        x0 = torch.randn((B, T, I) if cfg["batch_first"] else (T, B, I), dtype=dt)
    lengths = None
    if cfg["inp"].startswith("packed"):
        lengths = torch.randint(1, T + 1, (B,))
        lengths[int(torch.randint(0, B, ()))] = T  # the longest is T
        if cfg["inp"] == "packed_sorted":
            lengths = lengths.sort(descending=True).values
    hshape = (cfg["num_layers"] * D, H) if unbatched else (cfg["num_layers"] * D, B, H)
    n_states = 2 if kind == "LSTM" else 1
    h0s = [torch.randn(hshape, dtype=dt) for _ in range(n_states)] if cfg["h0"] else []
    # Output gradients: random weights for every output (same for both modules).
    ref_outs, _ = _forward_and_grads(ref, cfg, x0, h0s, lengths, None)
    loss_w = [torch.randn(o.shape, dtype=dt) for o in ref_outs]

    ref_outs, ref_grads = _forward_and_grads(ref, cfg, x0, h0s, lengths, loss_w)
    fast_outs, fast_grads = _forward_and_grads(fast, cfg, x0, h0s, lengths, loss_w)
    assert len(ref_outs) == len(fast_outs)
    for i, (a, b) in enumerate(zip(fast_outs, ref_outs, strict=True)):
        close(a, b, dt, f"output {i} ({cfg})")
    assert ref_grads.keys() == fast_grads.keys()
    for name in ref_grads:
        assert fast_grads[name] is not None, f"no gradient for {name}"
        close(fast_grads[name], ref_grads[name], dt, f"grad {name} ({cfg})")


def test_configs_cover_the_grid():
    cfgs = [_config(s) for s in range(48)]
    for key in ("kind", "num_layers", "bidirectional", "batch_first", "dtype", "inp", "h0"):
        values = {c[key] for c in cfgs}
        assert len(values) >= 2, key
    assert {c["num_layers"] for c in cfgs} == {1, 2, 3}
    assert {(c["kind"], c["dtype"], c["inp"]) for c in cfgs} == {
        (k, d, i) for k in TORCH_CLS for d in TOL
        for i in ("padded", "packed_sorted", "packed_unsorted", "unbatched")}


# --------------------------------------------------------------------------------------
# gradcheck in float64, every parameter included.


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_gradcheck_float64(kind):
    torch.manual_seed(1)
    m = FAST_CLS[kind](3, 3, num_layers=2, bidirectional=True, dtype=torch.float64)
    names = [n for n, _ in m.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in m.parameters())
    x = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
    n_states = 2 if kind == "LSTM" else 1
    h0s = tuple(torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
                for _ in range(n_states))
    lengths = torch.tensor([2, 4, 3])

    def f(x, *rest):
        hs, ps = rest[:n_states], rest[n_states:]
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        hx = hs if kind == "LSTM" else hs[0]
        out, hn = torch.func.functional_call(m, dict(zip(names, ps, strict=True)), (packed, hx))
        hn = hn if kind == "LSTM" else (hn,)
        return (out.data, *hn)

    assert torch.autograd.gradcheck(f, (x, *h0s, *params), eps=1e-6, atol=1e-7, rtol=1e-6)


# --------------------------------------------------------------------------------------
# Dropout between layers: torch's own random draws, so a seed gives torch's exact masks.


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("packed", [False, True])
def test_dropout_matches_torch_bit_for_bit_masks(kind, packed):
    dt = torch.float64
    ref, fast = make_pair(kind, 4, 5, num_layers=3, dropout=0.4, bidirectional=True, dtype=dt)
    x0 = torch.randn(6, 3, 4, dtype=dt)
    lengths = torch.tensor([3, 6, 2])
    results = []
    for m in (ref, fast):
        m.train()
        x = x0.clone().requires_grad_(True)
        inp = pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x
        torch.manual_seed(123)
        out, hn = m(inp)
        data = out.data if packed else out
        (data.square().sum() + (hn[0] if kind == "LSTM" else hn).sum()).backward()
        results.append((data.detach(), x.grad, [p.grad for p in m.parameters()]))
    (a, ga, pa), (b, gb, pb) = results
    close(b, a, dt, "output")
    close(gb, ga, dt, "input grad")
    for u, v in zip(pb, pa, strict=True):
        close(v, u, dt, "param grad")
    # Dropout did something: in eval mode the output differs.
    fast.eval()
    with torch.no_grad():
        out_eval, _ = fast(pack_padded_sequence(x0, lengths, enforce_sorted=False)
                           if packed else x0)
    assert not torch.allclose(out_eval.data if packed else out_eval, b)


# --------------------------------------------------------------------------------------
# Inference paths, errors, fallbacks.


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_no_grad_and_inference_mode(kind):
    torch.manual_seed(0)
    ref, fast = make_pair(kind, 3, 4, num_layers=2, batch_first=True)
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        a, ha = ref(x)
        b, hb = fast(x)
    assert b.grad_fn is None
    close(b, a, torch.float32, "no_grad output")
    with torch.inference_mode():
        c, hc = fast(x)
    close(c, a, torch.float32, "inference_mode output")
    # requires_grad only on the input still gives input gradients with frozen weights
    for p in fast.parameters():
        p.requires_grad_(False)
    xg = x.clone().requires_grad_(True)
    fast(xg)[0].sum().backward()
    xr = x.clone().requires_grad_(True)
    ref(xr)[0].sum().backward()
    close(xg.grad, xr.grad, torch.float32, "input grad with frozen weights")
    assert all(p.grad is None for p in fast.parameters())


def _error(fn):
    with pytest.raises(Exception) as e:
        fn()
    return type(e.value), str(e.value)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_bad_arguments_raise_torchs_errors(kind):
    ref, fast = make_pair(kind, 3, 4, num_layers=2)
    x = torch.randn(5, 2, 3)
    h = torch.zeros(2, 2, 4)
    bad_h = torch.zeros(3, 2, 4)
    lstm = kind == "LSTM"
    cases = [
        lambda m: m(torch.randn(5, 2, 3, 1)),                       # 4-D input
        lambda m: m(torch.randn(5, 2, 7)),                          # wrong input_size
        lambda m: m(x, (bad_h, h) if lstm else bad_h),              # wrong state shape
        lambda m: m(x, (h[0], h[0]) if lstm else h[0]),             # 2-D state, 3-D input
        lambda m: m(x.double()),                                    # dtype mismatch
    ]
    for case in cases:
        t_ref, msg_ref = _error(lambda case=case: case(ref))
        t_fast, msg_fast = _error(lambda case=case: case(fast))
        assert t_fast is t_ref, (msg_fast, msg_ref)
        assert msg_fast == msg_ref


@pytest.fixture()
def fresh_warnings():
    ft._warned.clear()
    yield
    ft._warned.clear()


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_projection_runs_on_fastrnn_without_a_warning(fresh_warnings):
    """proj_size > 0 runs fastrnn's projection kernels (tests/test_torch_lstm_proj.py has
    the full parity); no fallback warning."""
    torch.manual_seed(0)
    ref, fast = make_pair("LSTM", 3, 6, proj_size=2, num_layers=2)
    x = torch.randn(4, 2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ft.FallbackWarning)
        b, (hb, cb) = fast(x)
    a, (ha, ca) = ref(x)
    for u, v in ((a, b), (ha, hb), (ca, cb)):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-6)
    assert not ft._warned


def test_other_dtype_falls_back(fresh_warnings):
    torch.manual_seed(0)
    ref, fast = make_pair("GRU", 3, 4, dtype=torch.bfloat16)
    x = torch.randn(4, 2, 3, dtype=torch.bfloat16)
    with pytest.warns(ft.FallbackWarning, match="bfloat16"):
        b, hb = fast(x)
    a, ha = ref(x)
    assert torch.equal(a, b) and torch.equal(ha, hb)


def test_other_device_falls_back(fresh_warnings):
    # The meta device stands in for CUDA & co. (this CPU-only build has no other device).
    fast = ft.LSTM(3, 4, num_layers=2, device="meta")
    with pytest.warns(ft.FallbackWarning, match="device 'meta'"):
        y, (h, c) = fast(torch.randn(5, 2, 3, device="meta"))
    assert y.device.type == "meta" and y.shape == (5, 2, 4) and h.shape == (2, 2, 4)


def test_torch_func_transform_falls_back(fresh_warnings):
    torch.manual_seed(0)
    ref, fast = make_pair("GRU", 3, 4)
    x = torch.randn(5, 2, 3)
    with pytest.warns(ft.FallbackWarning, match="torch.func"):
        g_fast = torch.func.grad(lambda x: fast(x)[0].sum())(x)
    g_ref = torch.func.grad(lambda x: ref(x)[0].sum())(x)
    assert torch.equal(g_fast, g_ref)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.trace itself
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_tracing_falls_back(fresh_warnings):
    _, fast = make_pair("RNN", 3, 4)
    x = torch.randn(4, 2, 3)
    with pytest.warns(ft.FallbackWarning, match="TorchScript"):
        traced = torch.jit.trace(fast, (x,), check_trace=False)
    torch.testing.assert_close(traced(x)[0], fast(x)[0])


def test_accelerated_path_emits_no_warning(fresh_warnings):
    _, fast = make_pair("LSTM", 3, 4, bidirectional=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast(torch.randn(4, 2, 3))[0].sum().backward()


def test_runs_fastrnn_kernels_not_torch(monkeypatch):
    calls = []
    real = ft._ops_forward

    def spy(cell, nonlinearity, reverse, lengths, training, *args, **options):
        calls.append((cell, reverse, training))
        return real(cell, nonlinearity, reverse, lengths, training, *args, **options)

    monkeypatch.setattr(ft, "_ops_forward", spy)
    for kind, cell in (("RNN", "rnn"), ("LSTM", "lstm"), ("GRU", "gru")):
        _, fast = make_pair(kind, 3, 4, num_layers=2, bidirectional=True)
        x = torch.randn(4, 2, 3)
        calls.clear()
        fast(x)[0].sum().backward()
        assert calls == [(cell, False, True), (cell, True, True)] * 2
        # Nothing needs a gradient: the kernels run without a cache (training=False).
        calls.clear()
        with torch.no_grad():
            fast(x)
        assert calls == [(cell, False, False), (cell, True, False)] * 2


def test_input_without_grad_skips_dx_and_matches_torch(monkeypatch):
    """Data that needs no gradient: the first layer's backward is asked for no dx (one GEMM
    less), later layers' are, and every parameter's gradient still equals torch's."""
    calls = []
    real = ft._ops_backward

    def spy(ctx, dy, dh_n, dc_n, need_dx):
        out = real(ctx, dy, dh_n, dc_n, need_dx)
        calls.append((need_dx, out[0] is None))
        return out

    monkeypatch.setattr(ft, "_ops_backward", spy)
    for kind in ("RNN", "LSTM", "GRU"):
        torch.manual_seed(3)
        ref, fast = make_pair(kind, 3, 5, num_layers=2, bidirectional=True,
                              dtype=torch.float64)
        x = torch.randn(6, 4, 3, dtype=torch.float64)
        w = torch.randn(6, 4, 10, dtype=torch.float64)
        calls.clear()
        for mod in (ref, fast):
            (mod(x)[0] * w).sum().backward()
        # backward runs layer 2 (both directions) first, then layer 1
        assert calls == [(True, False)] * 2 + [(False, True)] * 2, calls
        for (name, a), b in zip(ref.named_parameters(), fast.parameters(), strict=True):
            close(b.grad, a.grad, torch.float64, f"{kind} {name}")
        assert x.grad is None


def test_kernels_see_torch_memory_without_copies(monkeypatch):
    seen = []
    real = ft._ops_forward

    def spy(cell, nonlinearity, reverse, lengths, training, x, h0, c0, *weights, **options):
        out = real(cell, nonlinearity, reverse, lengths, training, x, h0, c0, *weights,
                   **options)
        seen.append((x, h0, c0, weights, out))
        return out

    monkeypatch.setattr(ft, "_ops_forward", spy)
    _, fast = make_pair("LSTM", 3, 4)
    x = torch.randn(5, 2, 3, requires_grad=True)
    h0, c0 = torch.randn(1, 2, 4), torch.randn(1, 2, 4)
    y, (h, c) = fast(x, (h0, c0))
    (xa, ha, ca, wa, out), = seen
    assert xa.ctypes.data == x.data_ptr()
    assert ha.ctypes.data == h0.data_ptr() and ca.ctypes.data == c0.data_ptr()
    for a, p in zip(wa, fast.parameters(), strict=True):
        assert a.ctypes.data == p.data_ptr()
    # Outputs come back as tensors over the kernel's own arrays, no copy on the way out.
    assert y.data_ptr() == out[0].ctypes.data
    assert h.data_ptr() == out[1].ctypes.data and c.data_ptr() == out[2].ctypes.data


def test_backward_frees_the_kernel_cache_like_torch_frees_saved_tensors():
    import gc
    import weakref

    _, fast = make_pair("LSTM", 16, 64, dtype=torch.float64)
    x = torch.randn(50, 8, 16, dtype=torch.float64, requires_grad=True)
    for retain in (True, False):
        y, states = fast(x)
        holder = y.grad_fn.saved_tensors[0]  # the empty tensor that carries the context
        cache = weakref.ref(holder.fastrnn_ctx.cache)
        assert cache().size > 4 * y.numel()  # gates + cell states, alive until backward
        del holder
        gc.collect()
        assert cache() is not None
        y.sum().backward(retain_graph=retain)
        # The cache goes with the graph (its block back to the kept ones), even while y and
        # the states are still referenced; a retained graph keeps it for another backward.
        assert (cache() is not None) == retain
        if retain:
            y.sum().backward()
            assert cache() is None
        x.grad = None
        fast.zero_grad(set_to_none=True)
        del y, states


def test_backward_twice_and_inplace_errors():
    _, fast = make_pair("GRU", 3, 4)
    x = torch.randn(4, 2, 3, requires_grad=True)
    out, _ = fast(x)
    loss = out.sum()
    loss.backward(retain_graph=True)
    g = x.grad.clone()
    loss.backward()  # the retained graph runs again and accumulates the same gradient
    torch.testing.assert_close(x.grad, 2 * g)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()
    out, _ = fast(x)
    with torch.no_grad():
        fast.weight_hh_l0.add_(1.0)  # like an optimizer step before backward
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


# --------------------------------------------------------------------------------------
# state_dict, repr, accelerate / restore.


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_state_dict_round_trip_both_ways(kind):
    kw = dict(num_layers=2, bidirectional=True, batch_first=True, dropout=0.25, bias=False)
    t1 = TORCH_CLS[kind](3, 5, **kw)
    f1 = FAST_CLS[kind](3, 5, **kw)
    assert repr(f1) == repr(t1)
    assert list(f1.state_dict()) == list(t1.state_dict())
    f1.load_state_dict(t1.state_dict())  # torch -> fastrnn
    t2 = TORCH_CLS[kind](3, 5, **kw)
    t2.load_state_dict(f1.state_dict())  # fastrnn -> torch
    for k, v in t1.state_dict().items():
        assert torch.equal(f1.state_dict()[k], v)
        assert torch.equal(t2.state_dict()[k], v)
    assert isinstance(f1, TORCH_CLS[kind])


class _MyLSTM(nn.LSTM):
    """A user subclass: accelerate leaves it alone."""


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
        self.lstm = nn.LSTM(4, 5, num_layers=2, batch_first=True, bidirectional=True)
        self.blocks = nn.ModuleList([nn.GRU(10, 6, batch_first=True),
                                     nn.RNN(6, 6, nonlinearity="relu", batch_first=True)])
        self.custom = _MyLSTM(6, 2, batch_first=True)
        self.head = nn.Linear(2, 1)

    def forward(self, x):
        y, _ = self.lstm(self.enc(x))
        for b in self.blocks:
            y, _ = b(y)
        y, _ = self.custom(y)
        return self.head(y[:, -1])


def test_accelerate_and_restore_in_place():
    torch.manual_seed(0)
    net = _Net().double()
    before = {n: p for n, p in net.named_parameters()}
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(3, 7, 3, dtype=torch.float64)
    want = net(x)
    assert ft.accelerate(net) is net
    assert type(net.lstm) is ft.LSTM and type(net.blocks[0]) is ft.GRU
    assert type(net.blocks[1]) is ft.RNN and net.blocks[1].nonlinearity == "relu"
    assert type(net.custom) is _MyLSTM
    assert {n: p for n, p in net.named_parameters()} == before  # the very same tensors
    assert all(torch.equal(v, sd[k]) for k, v in net.state_dict().items())
    close(net(x), want, torch.float64, "accelerated model output")
    assert ft.restore(net) is net
    assert type(net.lstm) is nn.LSTM and type(net.blocks[0]) is nn.GRU
    assert type(net.blocks[1]) is nn.RNN
    assert torch.equal(net(x), want)
    # A bare module is accelerated itself.
    g = nn.GRU(2, 3)
    assert type(ft.accelerate(g)) is ft.GRU
    with pytest.raises(TypeError, match="torch.nn.Module"):
        ft.accelerate("not a module")


def test_training_follows_torch_loss_trajectory():
    torch.manual_seed(0)
    net = _Net().double()
    fast = ft.accelerate(copy.deepcopy(net))
    assert type(fast.lstm) is ft.LSTM
    x = torch.randn(8, 9, 3, dtype=torch.float64)
    target = torch.randn(8, 1, dtype=torch.float64)
    losses = []
    for model in (net, fast):
        opt = torch.optim.Adam(model.parameters(), lr=0.02)
        traj = []
        for _ in range(20):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), target)
            loss.backward()
            opt.step()
            traj.append(loss.item())
        losses.append(traj)
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-8, atol=0)
    assert losses[0][-1] < 0.9 * losses[0][0]  # it did train


# --------------------------------------------------------------------------------------
# Saving a whole model: a drop-in pickles as the torch.nn class it subclasses.

#: torch's own classes, allowlisted as a program loading a whole torch.nn model with
#: torch.load's default weights_only=True does (pytorch/examples' word language model).
_LOADER = """
import sys
import torch
from torch import nn
torch.set_default_dtype(torch.float64)
with torch.serialization.safe_globals([nn.ModuleDict, nn.LSTM, nn.GRU, nn.RNN, nn.Linear]):
    model = torch.load(sys.argv[1])  # torch's default: weights_only=True
assert "fastrnn" not in sys.modules, "the loader imported fastrnn"
x = torch.load(sys.argv[2])
torch.save({"types": {k: type(m).__qualname__ for k, m in model.items()},
            "alias": model["alias"] is model["lstm"],
            "out": [model[k](x)[0] for k in ("lstm", "gru", "rnn")],
            "state": model.state_dict()}, sys.argv[3])
"""


def _saved_model():
    torch.manual_seed(5)
    model = nn.ModuleDict({
        "lstm": nn.LSTM(3, 4, num_layers=2, bidirectional=True),
        "gru": nn.GRU(3, 4, batch_first=True, dropout=0.5, num_layers=2),
        "rnn": nn.RNN(3, 2, nonlinearity="relu", bias=False),
        "head": nn.Linear(4, 1),
    }).double()
    model["alias"] = model["lstm"]  # a module held twice stays one module
    return ft.accelerate(model).eval()


def test_whole_model_loads_in_a_torch_process_without_fastrnn(tmp_path):
    model = _saved_model()
    assert type(model["lstm"]) is ft.LSTM and type(model["rnn"]) is ft.RNN
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    torch.save(model, tmp_path / "model.pt")
    torch.save(x, tmp_path / "x.pt")
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "model.pt")
    assert not [g for g in unsafe if "fastrnn" in g], unsafe
    env = dict(os.environ, PYTHONPATH=str(PKG_PARENT))  # fastrnn importable, not imported
    r = subprocess.run([sys.executable, "-c", _LOADER, str(tmp_path / "model.pt"),
                        str(tmp_path / "x.pt"), str(tmp_path / "out.pt")],
                       env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = torch.load(tmp_path / "out.pt")
    assert got["types"] == {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN", "head": "Linear",
                            "alias": "LSTM"}
    assert got["alias"]
    for k, out in zip(("lstm", "gru", "rnn"), got["out"], strict=True):
        close(out, model[k](x)[0], torch.float64, f"{k} loaded without fastrnn")
    assert list(got["state"]) == list(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(got["state"][k], v), k


def test_whole_model_loads_in_a_process_with_fastrnn_and_accelerate_reapplies(tmp_path):
    model = _saved_model()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    torch.save(model, tmp_path / "model.pt")
    rng = torch.get_rng_state()
    with torch.serialization.safe_globals([nn.ModuleDict, nn.LSTM, nn.GRU, nn.RNN,
                                           nn.Linear]):
        loaded = torch.load(tmp_path / "model.pt")
    assert torch.equal(torch.get_rng_state(), rng)  # loading draws no random numbers
    also = torch.load(tmp_path / "model.pt", weights_only=False)
    for m in (loaded, also):
        assert [type(v) for v in m.values()] == [nn.LSTM, nn.GRU, nn.RNN, nn.Linear, nn.LSTM]
        assert m["alias"] is m["lstm"]
        assert m["rnn"].nonlinearity == "relu" and not m["gru"].training
        assert repr(m) == repr(model)
    ft.accelerate(loaded)
    assert type(loaded["lstm"]) is ft.LSTM and type(loaded["gru"]) is ft.GRU
    for k in ("lstm", "gru", "rnn"):
        assert torch.equal(loaded[k](x)[0], model[k](x)[0]), k
    sd = model.state_dict()
    assert list(loaded.state_dict()) == list(sd)
    assert all(torch.equal(v, sd[k]) for k, v in loaded.state_dict().items())
    # The loaded module trains: its parameters are real tensors, not the meta ones it was
    # rebuilt from.
    loaded["lstm"](x)[0].sum().backward()
    assert all(p.grad is not None and p.device.type == "cpu"
               for p in loaded["lstm"].parameters())


class _MyFastLSTM(ft.LSTM):
    """A user subclass of a drop-in: pickles as itself."""


def test_copies_keep_the_drop_in_class_and_subclasses_pickle_as_themselves():
    model = _saved_model()
    deep = copy.deepcopy(model)
    assert type(deep["lstm"]) is ft.LSTM and deep["alias"] is deep["lstm"]
    assert deep["lstm"].weight_ih_l0 is not model["lstm"].weight_ih_l0
    shallow = copy.copy(model["gru"])
    assert type(shallow) is ft.GRU and shallow.weight_hh_l0 is model["gru"].weight_hh_l0
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    assert torch.equal(deep["lstm"](x)[0], model["lstm"](x)[0])
    assert type(pickle.loads(pickle.dumps(model["lstm"]))) is nn.LSTM
    mine = _MyFastLSTM(3, 4)
    assert type(pickle.loads(pickle.dumps(mine))) is _MyFastLSTM


# --------------------------------------------------------------------------------------
# DistributedDataParallel, 2 processes, gloo on localhost.


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_match_single_process(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("_ddp_worker", ROOT / "tests" / "_ddp_worker.py")
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    path = os.pathsep.join([str(PKG_PARENT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")
    for _attempt in range(3):  # a port taken between probing and binding: try another
        port = _free_port()
        procs = [subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "_ddp_worker.py"), str(r), "2",
             f"tcp://127.0.0.1:{port}", str(tmp_path / f"rank{r}.npz")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in range(2)]
        try:
            logs = [p.communicate(timeout=90)[0].decode() for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        if not any("ddress already in use" in log for log in logs):
            break
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log

    want = worker.single_process_run()
    n_params = len(list(worker.build()[0].parameters()))
    assert len(want) == 2 * worker.STEPS * n_params  # gradients and parameters, every step
    for r in range(2):
        with np.load(tmp_path / f"rank{r}.npz") as got:
            assert sorted(got.files) == sorted(want)
            for name, g in want.items():
                np.testing.assert_allclose(got[name], g, rtol=1e-9, atol=1e-12,
                                           err_msg=f"rank {r}: {name}")


# --------------------------------------------------------------------------------------
# torch stays optional.


def test_import_error_without_torch_and_fastrnn_does_not_import_torch():
    env = dict(os.environ, PYTHONPATH=str(PKG_PARENT))
    code = ("import sys; import fastrnn; assert 'torch' not in sys.modules, 'torch imported'; "
            "sys.modules['torch'] = None\n"
            "try:\n    import fastrnn.torch\nexcept ImportError as e:\n    print(e)\n"
            "else:\n    raise SystemExit('no ImportError')")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "fastrnn[torch]" in r.stdout
