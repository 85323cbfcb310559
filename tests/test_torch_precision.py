"""Reduced precision in the PyTorch drop-in: bfloat16 under CPU autocast, int8 inference.

Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` the drop-ins run fastrnn's bfloat16
kernels on float32 input and return torch's output dtypes (bfloat16 for LSTM and RNN,
float32 for the GRU, as torch's autocast does). :func:`fastrnn.torch.quantize_dynamic` makes
them run fastrnn's int8 inference kernels. Accuracy: the largest absolute error against the
float32 result is at most 1.5x torch's own (bf16 autocast; ``torch.ao`` dynamic int8
quantization where torch has one), and one layer equals :mod:`fastrnn.reference` of the same
rounding (float32 tolerances ``rtol=1e-4, atol=1e-5``, widened by one bfloat16 rounding of
the output where torch returns bfloat16). Prepared weights follow the parameters'
``_version`` counters.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

import fastrnn.torch as ft  # noqa: E402
from fastrnn import functional, reference  # noqa: E402

TORCH_CLS = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
FAST_CLS = {"RNN": ft.RNN, "LSTM": ft.LSTM, "GRU": ft.GRU}
CELL = {"RNN": "rnn", "LSTM": "lstm", "GRU": "gru"}
KINDS = ["RNN", "LSTM", "GRU"]
BF16 = dict(device_type="cpu", dtype=torch.bfloat16)
T, B, I, H = 20, 4, 16, 32


def make_pair(kind, **kwargs):
    torch.manual_seed(0)
    ref = TORCH_CLS[kind](I, H, **kwargs)
    fast = FAST_CLS[kind](I, H, **kwargs)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def data():
    return torch.randn(T, B, I, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def precisions(monkeypatch):
    """The precision of every kernel forward call."""
    seen = []
    fwd = ft._ops_forward

    def counted(*a, **k):
        seen.append(k.get("precision", "float32"))
        return fwd(*a, **k)

    monkeypatch.setattr(ft, "_ops_forward", counted)
    return seen


def max_err(a, b):
    return (a.float() - b.float()).abs().max().item()


def _bf16(t):
    return t.to(torch.bfloat16).float()


def _lstm_like_onednn_bf16(m, x):
    """torch's bf16 autocast of an nn.LSTM as oneDNN's bf16 RNN computes it (bfloat16 input,
    weights and recurrent state into float32 sums, float32 gates and cell state, bfloat16
    output), in torch ops (differentiable): the anchor where this CPU cannot run torch's own
    (oneDNN's bf16 RNN needs AVX-512; on an AVX2-only CPU torch 2.13 raises)."""
    dirs = 2 if m.bidirectional else 1
    inp, hs, cs = x, [], []
    for layer in range(m.num_layers):
        outs = []
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w_ih, w_hh = (_bf16(getattr(m, f"weight_{k}{sfx}")) for k in ("ih", "hh"))
            b = getattr(m, f"bias_ih{sfx}") + getattr(m, f"bias_hh{sfx}")
            h = x.new_zeros(x.shape[1], m.hidden_size)
            c = torch.zeros_like(h)
            xs = _bf16(inp) @ w_ih.T + b
            steps = range(x.shape[0] - 1, -1, -1) if d else range(x.shape[0])
            ys = [None] * x.shape[0]
            for t in steps:
                i, f, g, o = (xs[t] + _bf16(h) @ w_hh.T).chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                ys[t] = h
            outs.append(torch.stack(ys))
            hs.append(h)
            cs.append(c)
        inp = torch.cat(outs, dim=2)
    return inp.to(torch.bfloat16), (torch.stack(hs).to(torch.bfloat16),
                                    torch.stack(cs).to(torch.bfloat16))


def torch_autocast(m, x):
    """``m(x)`` under torch's bf16 autocast; an nn.LSTM that this CPU cannot run that way
    goes through :func:`_lstm_like_onednn_bf16` (checked: torch raises there)."""
    try:
        with torch.autocast(**BF16):
            return m(x)
    except RuntimeError as e:
        if not (isinstance(m, nn.LSTM) and "primitive descriptor" in str(e)):
            raise
    return _lstm_like_onednn_bf16(m, x)


@pytest.mark.parametrize("kind", KINDS)
def test_autocast_bf16_runs_fastrnn_bf16_kernels_with_torchs_dtypes_and_accuracy(kind,
                                                                               precisions):
    ref, fast = make_pair(kind, num_layers=2, bidirectional=True)
    x = data()
    y32, h32 = ref(x)
    y_ref, h_ref = torch_autocast(ref, x)
    with torch.autocast(**BF16):
        with warnings.catch_warnings():
            warnings.simplefilter("error", ft.FallbackWarning)
            y, h = fast(x)
    assert precisions == ["bfloat16"] * 4
    h, h_ref, h32 = ((h[0], h_ref[0], h32[0]) if kind == "LSTM" else (h, h_ref, h32))
    assert (y.dtype, h.dtype) == (y_ref.dtype, h_ref.dtype)
    assert max_err(y, y32) <= 1.5 * max_err(y_ref, y32)
    assert max_err(h, h32) <= 1.5 * max_err(h_ref, h32)


@pytest.mark.parametrize("kind", KINDS)
def test_autocast_bf16_equals_the_reference_of_the_same_rounding(kind):
    _, fast = make_pair(kind)
    x = data()
    with torch.autocast(**BF16):
        y, h = fast(x)
    w = [p.detach().numpy() for p in fast.parameters()]
    nl = "tanh" if kind == "RNN" else None
    y_ref, h_ref, _, _ = reference.cell_forward(CELL[kind], x.numpy(), None, None, *w,
                                                nonlinearity=nl, training=False,
                                                precision="bfloat16")
    h = h[0] if kind == "LSTM" else h
    # torch returns bfloat16 for LSTM and RNN: one more rounding of the output
    tol = dict(rtol=2 ** -8, atol=1e-5) if y.dtype == torch.bfloat16 else dict(rtol=1e-4,
                                                                              atol=1e-5)
    torch.testing.assert_close(y.float(), torch.from_numpy(y_ref), **tol)
    torch.testing.assert_close(h[0].float(), torch.from_numpy(h_ref), **tol)


@pytest.mark.parametrize("kind", KINDS)
def test_autocast_bf16_trains_with_float32_gradients_near_torchs(kind):
    """The backward of a bf16 forward: float32 gradients for float32 parameters, whose
    error against the float32 gradients is within 1.5x torch's autocast gradients' (plus
    a float32 allowance)."""
    grads = {}
    for name, m, cast in (("f32", make_pair(kind)[0], False), ("torch", make_pair(kind)[0],
                                                                True),
                          ("fast", make_pair(kind)[1], True)):
        x = data().requires_grad_(True)
        if name == "torch":
            y, _ = torch_autocast(m, x)
        else:
            with torch.autocast(**BF16, enabled=cast):
                y, _ = m(x)
        y.float().pow(2).sum().backward()
        grads[name] = [x.grad, *(p.grad for p in m.parameters())]
    for g_fast, g_torch, g32 in zip(grads["fast"], grads["torch"], grads["f32"], strict=True):
        assert g_fast.dtype == torch.float32
        assert max_err(g_fast, g32) <= 1.5 * max_err(g_torch, g32) + 1e-4


def test_autocast_prepares_weights_once_and_again_after_an_in_place_update(monkeypatch):
    _, fast = make_pair("LSTM", num_layers=2)
    calls = []
    prepare = functional.prepare_weights
    monkeypatch.setattr(functional, "prepare_weights",
                        lambda *a, **k: calls.append(k["precision"]) or prepare(*a, **k))
    x = data()
    with torch.autocast(**BF16):
        first = fast(x)[0]
        assert torch.equal(fast(x)[0], first)
        assert calls == ["bfloat16"] * 2  # one per layer, kept for the second call
        optimizer = torch.optim.SGD(fast.parameters(), lr=0.1)
        fast(x)[0].float().sum().backward()
        optimizer.step()  # in place: the parameters' versions change
        updated = fast(x)[0]
    assert len(calls) == 4
    fresh = ft.LSTM(I, H, num_layers=2)
    fresh.load_state_dict(fast.state_dict())
    with torch.autocast(**BF16):
        assert torch.equal(updated, fresh(x)[0])


@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
def test_writes_through_param_data(precision):
    """Writes through ``param.data`` (a manual SGD step as in pytorch/examples' word language
    model, ``p.data.clamp_()``) leave ``_version`` as it was. Under autocast the next call
    runs the new weights, as torch's autocast does (it casts them again in each region). An
    int8 drop-in keeps the weights it quantized, as torch's dynamically quantized modules do,
    until ``quantize_dynamic`` is called again."""
    _, fast = make_pair("LSTM", num_layers=2)
    if precision == "int8":
        ft.quantize_dynamic(fast)
    x = data()

    def run(module):
        if precision == "int8":
            return module(x)[0]
        with torch.autocast(**BF16):
            return module(x)[0]

    before = run(fast)
    versions = [p._version for p in fast.parameters()]
    for p in fast.parameters():
        p.data.mul_(0.5)
    assert [p._version for p in fast.parameters()] == versions
    after = run(fast)
    if precision == "int8":
        assert torch.equal(after, before)  # the weights of the moment of quantization
        ft.quantize_dynamic(fast)
        after = run(fast)
    fresh = ft.LSTM(I, H, num_layers=2)
    fresh.load_state_dict(fast.state_dict())
    if precision == "int8":
        ft.quantize_dynamic(fresh)
    assert not torch.equal(before, after)
    assert torch.equal(after, run(fresh))


def test_autocast_float64_input_and_other_dtypes():
    """Autocast leaves float64 alone (so does the drop-in: its float64 kernels); autocast to
    float16 is not accelerated (torch's own implementation, after a FallbackWarning)."""
    ref, fast = make_pair("GRU")
    fast.double()
    ref.double()
    x = data().double()
    with torch.autocast(**BF16):
        y = fast(x)[0]
    assert y.dtype == torch.float64 and torch.equal(y, fast(x)[0])
    ref.float()
    fast.float()
    ft._warned.clear()
    with torch.autocast("cpu", dtype=torch.float16):
        with pytest.warns(ft.FallbackWarning, match="autocast"):
            y = fast(x.float())[0]
        assert torch.equal(y, ref(x.float())[0])


# --------------------------------------------------------------------------------------
# int8


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.ao.quantization
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("kind", KINDS)
def test_quantize_dynamic_int8_accuracy_against_torch_and_the_reference(kind, precisions):
    ref, _ = make_pair(kind, num_layers=2)
    model = nn.Sequential(TORCH_CLS[kind](I, H, num_layers=2))
    model[0].load_state_dict(ref.state_dict())
    assert ft.quantize_dynamic(model) is model and type(model[0]) is FAST_CLS[kind]
    x = data()
    y32 = ref(x)[0]
    y = model(x)[0]
    assert precisions == ["int8", "int8"] and not y.requires_grad
    if kind != "RNN":  # torch.ao has no dynamically quantized vanilla RNN
        tq = torch.ao.quantization.quantize_dynamic(nn.Sequential(ref), {TORCH_CLS[kind]},
                                                    dtype=torch.qint8)
        assert max_err(y, y32) <= 1.5 * max_err(tq(x)[0], y32)
    one = ft.quantize_dynamic(FAST_CLS[kind](I, H))
    w = [p.detach().numpy() for p in one.parameters()]
    y_ref, h_ref, _, _ = reference.cell_forward(CELL[kind], x.numpy(), None, None, *w,
                                                nonlinearity="tanh" if kind == "RNN" else None,
                                                training=False, precision="int8")
    y1, h1 = one(x)
    torch.testing.assert_close(y1, torch.from_numpy(y_ref), rtol=1e-4, atol=1e-5)


def test_quantize_dynamic_follows_in_place_updates_restores_and_pickles(precisions):
    _, fast = make_pair("LSTM")
    ft.quantize_dynamic(fast)
    x = data()
    before = fast(x)[0]
    with torch.no_grad():
        fast.weight_hh_l0.mul_(0.5)
    after = fast(x)[0]
    fresh = ft.quantize_dynamic(ft.LSTM(I, H))
    fresh.load_state_dict(fast.state_dict())
    assert not torch.equal(before, after) and torch.equal(after, fresh(x)[0])
    buf = io.BytesIO()
    torch.save(fast, buf)  # the int8 state is not part of the module's: torch's LSTM
    buf.seek(0)
    with torch.serialization.safe_globals([nn.LSTM]):
        loaded = torch.load(buf)
    assert type(loaded) is nn.LSTM
    precisions.clear()
    ft.restore(fast)
    ft.accelerate(fast)
    out = fast(x)[0]
    assert precisions == ["float32"]
    np.testing.assert_allclose(out.detach().numpy(), loaded(x)[0].detach().numpy(),
                               rtol=1e-5, atol=1e-6)
