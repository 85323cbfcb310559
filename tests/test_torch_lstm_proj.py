"""``fastrnn.torch.LSTM(proj_size=P)`` on fastrnn's projection kernels: parity with
torch.nn forward and backward (dtypes, packed sequences with unsorted lengths,
bidirectional, two layers, batch_first, given states, unbatched), gradcheck and
gradgradcheck, torch.compile, the custom operators with ``w_hr``, state_dict and pickling."""

from __future__ import annotations

import io
import warnings

import pytest

torch = pytest.importorskip("torch")  # CI installs torch: this runs there

from _torch_helpers import F64, count_kernel_calls  # noqa: E402
from _torch_helpers import make_pair as _make_pair  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

import fastrnn.torch as ft  # noqa: E402

# torch's own LSTMP warns once that oneDNN does not take projections
pytestmark = pytest.mark.filterwarnings(
    "ignore:LSTM with projections is not supported with oneDNN")


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts of fastrnn's forward/backward calls; fails a test on any fallback warning."""
    def check_forward(k):
        assert k.get("w_hr") is not None  # the projection reached the kernels

    calls = count_kernel_calls(monkeypatch, check_forward)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ft.FallbackWarning)
        yield calls


def make_pair(*args, dtype=F64, **kwargs):
    """torch.nn.LSTM and fastrnn.torch.LSTM with the same weights."""
    return _make_pair("LSTM", *args, dtype=dtype, **kwargs)


def outputs_and_grads(module, inputs, leaves, packed=False):
    out, (h_n, c_n) = module(*inputs)
    y = pad_packed_sequence(out)[0] if packed else out
    torch.manual_seed(5)
    loss = (y * torch.randn_like(y)).sum() + (h_n * torch.randn_like(h_n)).sum() \
        + (c_n * torch.randn_like(c_n)).sum()
    return (y, h_n, c_n, *torch.autograd.grad(loss, [*leaves, *module.parameters()]))


def assert_all_close(got, want, dtype):
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == F64 else dict(rtol=2e-4, atol=2e-5)
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        torch.testing.assert_close(a, b, **tol, msg=lambda m, k=k: f"output {k}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_torch_nn_with_given_states(dtype, bidirectional, batch_first, bias,
                                            kernel_calls):
    ref, fast = make_pair(5, 7, num_layers=2, proj_size=3, bidirectional=bidirectional,
                          batch_first=batch_first, bias=bias, dtype=dtype)
    D = 2 if bidirectional else 1
    torch.manual_seed(1)
    x = torch.randn(4, 6, 5, dtype=dtype, requires_grad=True)  # (B, T, I) or (T, B, I)
    Bsz = 4 if batch_first else 6
    h0 = torch.randn(2 * D, Bsz, 3, dtype=dtype, requires_grad=True)
    c0 = torch.randn(2 * D, Bsz, 7, dtype=dtype, requires_grad=True)
    want = outputs_and_grads(ref, (x, (h0, c0)), [x, h0, c0])
    got = outputs_and_grads(fast, (x, (h0, c0)), [x, h0, c0])
    assert got[0].shape[-1] == 3 * D and got[1].shape[-1] == 3 and got[2].shape[-1] == 7
    assert_all_close(got, want, dtype)
    assert kernel_calls == {"forward": 2 * D, "backward": 2 * D}


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_packed_unsorted_lengths_match_torch_nn(dtype, kernel_calls):
    ref, fast = make_pair(4, 6, num_layers=2, proj_size=2, bidirectional=True, dtype=dtype)
    torch.manual_seed(2)
    x = torch.randn(7, 5, 4, dtype=dtype, requires_grad=True)
    lengths = torch.tensor([3, 7, 1, 5, 7])
    h0 = torch.randn(4, 5, 2, dtype=dtype, requires_grad=True)
    c0 = torch.randn(4, 5, 6, dtype=dtype, requires_grad=True)

    def inputs():
        return pack_padded_sequence(x, lengths, enforce_sorted=False), (h0, c0)

    want = outputs_and_grads(ref, inputs(), [x, h0, c0], packed=True)
    got = outputs_and_grads(fast, inputs(), [x, h0, c0], packed=True)
    assert_all_close(got, want, dtype)
    assert kernel_calls["forward"] == 4


def test_unbatched_and_default_states_match_torch_nn(kernel_calls):
    ref, fast = make_pair(3, 5, proj_size=4)
    x = torch.randn(6, 3, dtype=F64)
    a, (ha, ca) = ref(x)
    b, (hb, cb) = fast(x)
    assert b.shape == (6, 4) and hb.shape == (1, 4) and cb.shape == (1, 5)
    for u, v in ((a, b), (ha, hb), (ca, cb)):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-13)
    with torch.no_grad():  # inference: the cache-free forward
        torch.testing.assert_close(fast(x)[0], a, rtol=1e-12, atol=1e-13)


def test_gradcheck_and_gradgradcheck_through_the_drop_in():
    """First order on fastrnn's backward kernels, second order on the differentiable path
    (the torch-ops forward with the projection)."""
    _, fast = make_pair(3, 4, proj_size=2, bidirectional=True)
    torch.manual_seed(3)
    x = torch.randn(3, 2, 3, dtype=F64, requires_grad=True)
    h0 = torch.randn(2, 2, 2, dtype=F64, requires_grad=True)
    c0 = torch.randn(2, 2, 4, dtype=F64, requires_grad=True)
    names = [n for n, _ in fast.named_parameters()]

    def f(x, h0, c0, *ws):
        y, (h, c) = torch.func.functional_call(fast, dict(zip(names, ws, strict=True)),
                                               (x, (h0, c0)))
        return y, h, c

    leaves = (x, h0, c0, *fast.parameters())
    assert torch.autograd.gradcheck(f, leaves)
    assert torch.autograd.gradgradcheck(f, leaves)


def test_double_backward_equals_torch_nn():
    ref, fast = make_pair(3, 4, proj_size=2)
    x = torch.randn(5, 2, 3, dtype=F64, requires_grad=True)
    got = []
    for m in (ref, fast):
        y, _ = m(x)
        (gx,) = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
        got.append((gx, *torch.autograd.grad(gx.pow(2).sum(), [x, *m.parameters()])))
    assert_all_close(got[1], got[0], F64)


def test_torch_func_grad_matches_torch_nn():
    ref, fast = make_pair(3, 4, proj_size=2)
    x = torch.randn(4, 2, 3, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ft.FallbackWarning)  # torch.func: torch ops path
        g = [torch.func.grad(lambda x, m=m: m(x)[0].sin().sum())(x) for m in (ref, fast)]
    torch.testing.assert_close(g[1], g[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_compile_fullgraph_runs_the_projection_kernels_equal_to_eager(dtype, kernel_calls):
    _, fast = make_pair(3, 5, num_layers=2, proj_size=2, bidirectional=True, batch_first=True,
                        dtype=dtype)
    torch.manual_seed(4)
    x = torch.randn(2, 4, 3, dtype=dtype, requires_grad=True)
    leaves = [x, *fast.parameters()]

    def loss(out):
        return out[0].pow(2).sum() + out[1][0].sum() + out[1][1].sum()

    eager = fast(x)
    g_eager = torch.autograd.grad(loss(eager), leaves)
    torch._dynamo.reset()
    compiled = torch.compile(fast, fullgraph=True, backend="aot_eager")
    kernel_calls.update(forward=0, backward=0)
    out = compiled(x)
    g = torch.autograd.grad(loss(out), leaves)
    assert kernel_calls == {"forward": 4, "backward": 4}
    for a, b in zip((out[0], *out[1], *g), (eager[0], *eager[1], *g_eager), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_export_with_proj_size_runs_the_projection_kernels_equal_to_eager(dtype, kernel_calls):
    """torch.export of a two-layer bidirectional LSTMP with dynamic T and B: the exported
    program holds fastrnn::cell_forward (one per layer-direction, no aten LSTM), its calls reach
    the projection kernels (w_hr), and it matches eager fastrnn and torch.nn at other sizes."""
    ref, fast = make_pair(3, 5, num_layers=2, proj_size=2, bidirectional=True, dtype=dtype)
    torch.manual_seed(8)
    x = torch.randn(5, 2, 3, dtype=dtype)
    hx = (torch.randn(4, 2, 2, dtype=dtype), torch.randn(4, 2, 5, dtype=dtype))
    T, B = torch.export.Dim("T", min=2), torch.export.Dim("B", min=2)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning,
                                message=".*_flat_weights.*")  # torch's note
        ep = torch.export.export(fast, (x, hx),
                                 dynamic_shapes=({0: T, 1: B}, ({1: B}, {1: B})))
    targets = [n.target for n in ep.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.fastrnn.cell_forward.default) == 4
    assert not any("lstm" in str(t) for t in targets), targets
    x2 = torch.randn(7, 3, 3, dtype=dtype)
    hx2 = (torch.randn(4, 3, 2, dtype=dtype), torch.randn(4, 3, 5, dtype=dtype))
    kernel_calls.update(forward=0, backward=0)
    got = ep.module()(x2, hx2)
    assert kernel_calls["forward"] == 4
    eager, expected = fast(x2, hx2), ref(x2, hx2)
    for a, b, c in zip((got[0], *got[1]), (eager[0], *eager[1]), (expected[0], *expected[1]),
                       strict=True):
        assert a.shape == c.shape
        assert torch.equal(a, b)
        tol = dict(rtol=1e-9, atol=1e-11) if dtype == F64 else dict(rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a, c, **tol)


@pytest.mark.parametrize("with_lengths", [False, True])
def test_custom_op_with_w_hr_passes_opcheck_and_gradchecks(with_lengths):
    torch.manual_seed(6)
    T, B, I, H, P = 4, 3, 2, 3, 2
    lengths = torch.tensor([4, 1, 0]) if with_lengths else None
    x = torch.randn(T, B, I, dtype=F64, requires_grad=True)
    h0 = torch.randn(B, P, dtype=F64, requires_grad=True)
    c0 = torch.randn(B, H, dtype=F64, requires_grad=True)
    ws = [torch.randn(*s, dtype=F64, requires_grad=True)
          for s in ((4 * H, I), (4 * H, P), (4 * H,), (4 * H,), (P, H))]
    args = ("lstm", "", True, lengths, True, x, h0, c0, *ws)
    torch.library.opcheck(torch.ops.fastrnn.cell_forward.default, args,
                          test_utils=("test_schema", "test_autograd_registration",
                                      "test_faketensor"))

    def f(x, h0, c0, *ws):
        y, h_n, c_n, _ = torch.ops.fastrnn.cell_forward("lstm", "", True, lengths, True, x, h0,
                                                        c0, *ws)
        return y, h_n, c_n

    expected = ft._torch_forward("lstm", None, True,
                                 None if lengths is None else lengths.numpy(), x, h0, c0, *ws)
    for a, b in zip(f(x, h0, c0, *ws), expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(f, (x, h0, c0, *ws))
    assert torch.autograd.gradgradcheck(f, (x, h0, c0, *ws))


def test_is_grads_batched_matches_torch_nn():
    ref, fast = make_pair(3, 4, proj_size=2)
    x = torch.randn(4, 2, 3, dtype=F64, requires_grad=True)
    v = torch.randn(3, 4, 2, 2, dtype=F64)
    got = [torch.autograd.grad(m(x)[0], x, v, is_grads_batched=True)[0] for m in (ref, fast)]
    torch.testing.assert_close(got[1], got[0], rtol=1e-10, atol=1e-12)


def test_state_dict_and_pickle_round_trip():
    ref, fast = make_pair(3, 5, num_layers=2, proj_size=2, bidirectional=True)
    assert set(fast.state_dict()) == set(ref.state_dict())
    assert fast.state_dict()["weight_hr_l1_reverse"].shape == (2, 5)
    back = nn.LSTM(3, 5, num_layers=2, proj_size=2, bidirectional=True, dtype=F64)
    back.load_state_dict(fast.state_dict())
    buf = io.BytesIO()
    torch.save(fast, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)  # pickled as torch.nn.LSTM
    assert type(loaded) is nn.LSTM and loaded.proj_size == 2
    again = ft.accelerate(loaded)
    x = torch.randn(4, 2, 3, dtype=F64)
    for m in (back, again):
        for a, b in zip(m(x)[1], fast(x)[1], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


def test_bfloat16_autocast_with_projection_falls_back_with_a_warning():
    ft._warned.clear()
    ref, fast = make_pair(3, 4, proj_size=2, dtype=torch.float32)
    x = torch.randn(4, 2, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.warns(ft.FallbackWarning, match="proj_size"):
            b = fast(x)[0]
        a = ref(x)[0]
    ft._warned.clear()
    torch.testing.assert_close(b, a)


def test_int8_with_projection_falls_back_with_a_warning():
    ft._warned.clear()
    ref, fast = make_pair(3, 4, proj_size=2, dtype=torch.float32)
    ft.quantize_dynamic(fast)
    x = torch.randn(4, 2, 3)
    with pytest.warns(ft.FallbackWarning, match="proj_size"):
        b = fast(x)[0]
    ft._warned.clear()
    torch.testing.assert_close(b, ref(x)[0])
