"""fastrnn's custom operators: torch.compile, torch.export, batched gradients and torch.func.

Inside ``torch.compile`` and ``torch.export`` the drop-ins call ``fastrnn::cell_forward``
(and autograd ``fastrnn::cell_backward``), which stay in the graphs: the tests count the
kernel calls a compiled model makes and compare compiled with eager (bit-equal: the same
kernels run). Batched gradients run the backward op once per gradient; torch.func transforms
and forward-mode AD run the cells' maths in torch ops. Float64 results agree with torch.nn's
to ``rtol=1e-9, atol=1e-11``.
"""

from __future__ import annotations

import gc
import warnings

import pytest

torch = pytest.importorskip("torch")

from _torch_helpers import (  # noqa: E402
    F64,
    KINDS,
    TOL,
    count_kernel_calls,
    make_pair,
)
from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

import fastrnn.torch as ft  # noqa: E402


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts of fastrnn's forward and backward kernel calls (eager and compiled alike)."""
    return count_kernel_calls(monkeypatch)


def states(kind, LD, B, H, dtype, requires_grad=True):
    torch.manual_seed(2)
    hs = [torch.randn(LD, B, H, dtype=dtype, requires_grad=requires_grad)
          for _ in range(2 if kind == "LSTM" else 1)]
    return (tuple(hs) if kind == "LSTM" else hs[0]), hs


def loss_of(kind, out):
    y, hn = out
    return y.pow(2).sum() + (hn[0] if kind == "LSTM" else hn).sum()


# --------------------------------------------------------------------------------------
# torch.compile


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("kind", KINDS)
def test_compile_fullgraph_runs_fastrnn_kernels_equal_to_eager(kind, dtype, kernel_calls):
    """Two bidirectional layers, batch_first, given states: outputs and every gradient of the
    compiled model equal eager fastrnn's bit for bit, from fastrnn's kernels (4 forward and 4
    backward calls: one per layer-direction), with no fallback warning."""
    _, fast = make_pair(kind, 3, 4, num_layers=2, bidirectional=True, batch_first=True,
                        dtype=dtype)
    torch.manual_seed(1)
    x = torch.randn(2, 5, 3, dtype=dtype, requires_grad=True)
    hx, hs = states(kind, 4, 2, 4, dtype)
    leaves = [x, *hs, *fast.parameters()]
    eager = fast(x, hx)
    g_eager = torch.autograd.grad(loss_of(kind, eager), leaves)
    torch._dynamo.reset()
    compiled = torch.compile(fast, fullgraph=True, backend="aot_eager")
    kernel_calls.update(forward=0, backward=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ft.FallbackWarning)
        out = compiled(x, hx)
        g = torch.autograd.grad(loss_of(kind, out), leaves)
    assert kernel_calls == {"forward": 4, "backward": 4}
    for a, b in zip((out[0], *(out[1] if kind == "LSTM" else (out[1],)), *g),
                    (eager[0], *(eager[1] if kind == "LSTM" else (eager[1],)), *g_eager),
                    strict=True):
        assert torch.equal(a, b)


def test_compile_with_inductor_in_a_model_matches_torch_nn(kernel_calls):
    """The default backend (inductor) on a model holding a drop-in between Linear layers,
    trained one step: equal to the same model with torch.nn's LSTM."""

    class Net(nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.inp = nn.Linear(3, 5, dtype=F64)
            self.rnn = rnn
            self.out = nn.Linear(4, 1, dtype=F64)

        def forward(self, x):
            y, (h, _) = self.rnn(torch.tanh(self.inp(x)))
            return self.out(y).sum() + h.sum()

    ref_rnn, fast_rnn = make_pair("LSTM", 5, 4, num_layers=2)
    torch.manual_seed(3)
    ref = Net(ref_rnn)
    fast = Net(fast_rnn)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(6, 2, 3, dtype=F64)
    torch._dynamo.reset()
    compiled = torch.compile(fast, fullgraph=True)
    kernel_calls.update(forward=0, backward=0)
    loss = compiled(x)
    loss.backward()
    assert kernel_calls == {"forward": 2, "backward": 2}
    ref_loss = ref(x)
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, **TOL)
    for (name, p), q in zip(fast.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, **TOL, msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_compile_inference_unbatched_and_eval_dropout(kind, kernel_calls):
    """Under no_grad the compiled forward keeps no training cache; unbatched input; a model
    with dropout in eval mode."""
    ref, fast = make_pair(kind, 3, 4, num_layers=2, dropout=0.5)
    ref.eval()
    fast.eval()
    x = torch.randn(5, 3, dtype=F64)
    torch._dynamo.reset()
    compiled = torch.compile(fast, fullgraph=True, backend="aot_eager")
    kernel_calls.update(forward=0, backward=0)
    with torch.no_grad():
        out = compiled(x)
        expected = ref(x)
    assert kernel_calls["forward"] == 2
    torch.testing.assert_close(out[0], expected[0], **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_compiled_graph_without_gradients_calls_the_inference_op(kind):
    """Traced under no_grad, the graph calls ``fastrnn::cell_infer`` (no autograd kernel on its
    way, no cache) for every layer-direction and never ``fastrnn::cell_forward``; traced with
    gradients it calls ``cell_forward``. Both equal eager fastrnn bit for bit."""
    _, fast = make_pair(kind, 3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 3, dtype=F64)
    graphs = []

    def record(gm, example_inputs):
        graphs.append([n.target for n in gm.graph.nodes if n.op == "call_function"])
        return gm.forward

    for grad in (False, True):
        torch._dynamo.reset()
        graphs.clear()
        compiled = torch.compile(fast, fullgraph=True, backend=record)
        with torch.set_grad_enabled(grad):
            got = compiled(x)
            want = fast(x)
        ops = {torch.ops.fastrnn.cell_forward: "forward",
               torch.ops.fastrnn.cell_forward.default: "forward",
               torch.ops.fastrnn.cell_infer: "infer", torch.ops.fastrnn.cell_infer.default: "infer"}
        called = [ops[t] for t in graphs[0] if t in ops]
        assert called == ["forward" if grad else "infer"] * 4, (grad, graphs[0])
        torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)


def test_inference_op_passes_opcheck_and_vmap():
    """``fastrnn::cell_infer``: schema, fake tensors and AOT dispatch (opcheck); its vmap rule
    equals a loop of calls; its outputs are ``cell_forward``'s without training."""
    torch.manual_seed(4)
    T, B, I, H = 4, 3, 2, 3
    ws = [torch.randn(*s, dtype=F64) for s in ((4 * H, I), (4 * H, H), (4 * H,), (4 * H,))]
    x = torch.randn(T, B, I, dtype=F64)
    h0, c0 = torch.randn(B, H, dtype=F64), torch.randn(B, H, dtype=F64)
    lengths = torch.tensor([4, 1, 0])
    args = ("lstm", "", True, lengths, x, h0, c0, *ws)
    torch.library.opcheck(torch.ops.fastrnn.cell_infer.default, args,
                          test_utils=("test_schema", "test_faketensor",
                                      "test_aot_dispatch_dynamic"))
    got = torch.ops.fastrnn.cell_infer(*args)
    want = torch.ops.fastrnn.cell_forward("lstm", "", True, lengths, False, x, h0, c0, *ws)
    for g, w in zip(got, want[:3], strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
    xs = torch.randn(3, T, B, I, dtype=F64)
    batched = torch.vmap(lambda v: torch.ops.fastrnn.cell_infer("lstm", "", False, None, v, h0,
                                                                c0, *ws))(xs)
    for k, g in enumerate(batched):
        looped = [torch.ops.fastrnn.cell_infer("lstm", "", False, None, v, h0, c0, *ws)[k]
                  for v in xs]
        torch.testing.assert_close(g, torch.stack(looped), rtol=0, atol=0)


def test_compile_packed_sequence_runs_kernels_outside_the_graph(kernel_calls):
    """A packed sequence breaks the graph (as with torch.nn) and runs fastrnn's kernels."""
    ref, fast = make_pair("GRU", 3, 4, bidirectional=True)
    x = torch.randn(5, 3, 3, dtype=F64)
    lengths = torch.tensor([5, 2, 4])

    def run(module):
        out, h = module(pack_padded_sequence(torch.sin(x), lengths, enforce_sorted=False))
        return out.data.sum() * 2 + h.sum()

    torch._dynamo.reset()
    kernel_calls.update(forward=0, backward=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ft.FallbackWarning)
        got = torch.compile(run, backend="aot_eager")(fast)
    assert kernel_calls["forward"] == 2
    torch.testing.assert_close(got, run(ref), **TOL)


def test_importing_leaves_torch_compile_of_torch_modules_as_it_was():
    """Dynamo's allow_rnn is process-wide: with it, a compiled torch.nn.LSTM trains through
    torch's experimental support, which fails in torch 2.13. Importing fastrnn.torch leaves it
    unset (the compiled torch.nn.LSTM trains); the first drop-in made, or converted by
    accelerate, sets it."""
    from _scenario import run_scenario

    out = run_scenario("""
        import torch
        import fastrnn.torch as ft
        print("after import", torch._dynamo.config.allow_rnn)
        torch.manual_seed(0)
        m = torch.nn.LSTM(6, 5)
        x = torch.randn(4, 3, 6)
        y = torch.compile(m)(x)[0]
        y.pow(2).sum().backward()
        g = m.weight_hh_l0.grad.clone()
        m.zero_grad()
        m(x)[0].pow(2).sum().backward()
        print("compiled torch.nn.LSTM trains", torch.allclose(g, m.weight_hh_l0.grad))
        ft.accelerate(torch.nn.Sequential(torch.nn.GRU(2, 2)))
        print("after accelerate", torch._dynamo.config.allow_rnn)
    """)
    assert "after import False" in out
    assert "compiled torch.nn.LSTM trains True" in out
    assert "after accelerate True" in out
    out = run_scenario("""
        import torch
        import fastrnn.torch as ft
        ft.RNN(2, 3)
        print("after constructing", torch._dynamo.config.allow_rnn)
    """)
    assert "after constructing True" in out


# --------------------------------------------------------------------------------------
# torch.export


@pytest.mark.parametrize("kind", KINDS)
def test_export_keeps_fastrnn_ops_with_dynamic_shapes(kind):
    ref, fast = make_pair(kind, 3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 3, dtype=F64)
    hx, _ = states(kind, 4, 2, 4, F64, requires_grad=False)
    T, B = torch.export.Dim("T", min=2), torch.export.Dim("B", min=2)
    h_dims = ({1: B}, {1: B}) if kind == "LSTM" else {1: B}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's note on _flat_weights
        ep = torch.export.export(fast, (x, hx), dynamic_shapes=({0: T, 1: B}, h_dims))
    targets = [n.target for n in ep.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.fastrnn.cell_forward.default) == 4
    assert not any("lstm" in str(t) or "gru" in str(t) or "rnn_" in str(t) for t in targets)
    x2 = torch.randn(7, 3, 3, dtype=F64)
    hx2, _ = states(kind, 4, 3, 4, F64, requires_grad=False)
    got, expected = ep.module()(x2, hx2), ref(x2, hx2)
    torch.testing.assert_close(got[0], expected[0], **TOL)
    torch.testing.assert_close(got[1], expected[1], **TOL)


# --------------------------------------------------------------------------------------
# The custom operators themselves


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("cell,nonlinearity,G", [("rnn", "relu", 1), ("lstm", "", 4),
                                                  ("gru", "", 3)])
def test_custom_ops_pass_opcheck_gradcheck_and_gradgradcheck(cell, nonlinearity, G,
                                                             with_lengths):
    """torch.library.opcheck (schema, fake tensors, autograd registration, AOT dispatch),
    gradcheck and gradgradcheck (the backward op's own autograd) of the forward op."""
    torch.manual_seed(0)
    T, B, I, H = 4, 3, 2, 3
    lengths = torch.tensor([4, 1, 0]) if with_lengths else None
    x = torch.randn(T, B, I, dtype=F64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=F64, requires_grad=True)
    c0 = torch.randn(B, H, dtype=F64, requires_grad=True) if cell == "lstm" else None
    ws = [torch.randn(*s, dtype=F64, requires_grad=True)
          for s in ((G * H, I), (G * H, H), (G * H,), (G * H,))]
    args = (cell, nonlinearity, True, lengths, True, x, h0, c0, *ws)
    # With lengths, cache elements past a sequence's end are never written or read: their
    # values are unspecified, which the AOT-dispatch comparison of outputs cannot allow.
    utils = ("test_schema", "test_autograd_registration", "test_faketensor",
             *(() if with_lengths else ("test_aot_dispatch_dynamic",)))
    torch.library.opcheck(torch.ops.fastrnn.cell_forward.default, args, test_utils=utils)

    def f(x, h0, c0, *ws):
        y, h_n, c_n, _ = torch.ops.fastrnn.cell_forward(cell, nonlinearity, True, lengths,
                                                        True, x, h0, c0, *ws)
        return (y, h_n, c_n) if cell == "lstm" else (y, h_n)

    got = f(x, h0, c0, *ws)
    expected = ft._torch_forward(cell, nonlinearity or None, True,
                                 None if lengths is None else lengths.numpy(), x, h0, c0, *ws)
    for a, b in zip(got, expected, strict=False):
        torch.testing.assert_close(a, b, **TOL)
    assert torch.autograd.gradcheck(f, (x, h0, c0, *ws))
    assert torch.autograd.gradgradcheck(f, (x, h0, c0, *ws))


@pytest.mark.parametrize("cell,nonlinearity,G", [("rnn", "tanh", 1), ("lstm", "", 4),
                                                  ("gru", "", 3)])
def test_custom_ops_under_vmap_equal_a_loop_of_calls(cell, nonlinearity, G):
    """torch.vmap of each operator (its registered vmap rule) equals the operator called on
    each slice; a batched gradient through the forward operator vmaps the backward one."""
    torch.manual_seed(2)
    N, T, B, I, H = 3, 4, 2, 3, 5
    ws = [torch.randn(*s, dtype=F64) for s in ((G * H, I), (G * H, H), (G * H,), (G * H,))]
    xs = torch.randn(N, T, B, I, dtype=F64)
    h0 = torch.randn(B, H, dtype=F64)
    c0 = torch.randn(B, H, dtype=F64) if cell == "lstm" else None

    def fwd(x):
        return torch.ops.fastrnn.cell_forward(cell, nonlinearity, False, None, True, x, h0, c0,
                                              *ws)

    def bwd(dy, x):
        cache = fwd(x)[3]
        return torch.ops.fastrnn.cell_backward(cell, nonlinearity, False, None, cache, x, h0,
                                               c0, *ws, dy, None, None, True)

    dys = torch.randn(N, T, B, H, dtype=F64)
    looped = [bwd(d, x) for d, x in zip(dys, xs, strict=True)]
    for got, want in ((torch.vmap(fwd)(xs), [fwd(x) for x in xs]),
                      (torch.vmap(bwd)(dys, xs), looped)):
        for k, g in enumerate(got):
            torch.testing.assert_close(g, torch.stack([w[k] for w in want]), rtol=0, atol=0)

    x = xs[0].clone().requires_grad_(True)
    y = fwd(x)[0]
    batched, = torch.autograd.grad(y, x, dys, retain_graph=True, is_grads_batched=True)
    looped = [torch.autograd.grad(y, x, d, retain_graph=True)[0] for d in dys]
    torch.testing.assert_close(batched, torch.stack(looped), rtol=0, atol=0)


def test_backward_op_refuses_an_inference_cache():
    x = torch.randn(2, 1, 1, dtype=F64)
    w = torch.randn(1, 1, dtype=F64)
    *_, cache = torch.ops.fastrnn.cell_forward("rnn", "tanh", False, None, False, x, None,
                                               None, w, w, None, None)
    with pytest.raises(RuntimeError, match="training=True"):
        torch.ops.fastrnn.cell_backward("rnn", "tanh", False, None, cache, x, None, None, w, w,
                                        None, None, torch.ones(2, 1, 1, dtype=F64), None, None,
                                        True)


@pytest.mark.parametrize("proj", [False, True])
def test_backward_op_reuses_the_forward_context_only_for_unchanged_inputs(proj, monkeypatch):
    """The backward op given the forward op's own cache and the same inputs reuses the
    forward's context (no new validation); a cache copy, or an input changed in place since,
    rebuilds it from the arguments; every way gives the gradients of the inputs it is given."""
    torch.manual_seed(3)
    T, B, I, H, P = 4, 2, 3, 5, 2
    Hs = P if proj else H
    x = torch.randn(T, B, I, dtype=F64)
    ws = [torch.randn(4 * H, I, dtype=F64), torch.randn(4 * H, Hs, dtype=F64),
          torch.randn(4 * H, dtype=F64), torch.randn(4 * H, dtype=F64)]
    w_hr = torch.randn(P, H, dtype=F64) if proj else None
    grads = (torch.randn(T, B, Hs, dtype=F64), torch.randn(B, Hs, dtype=F64),
             torch.randn(B, H, dtype=F64))
    prepares = []
    for name in ("prepare", "prepare_proj"):
        f = getattr(ft._validate, name)
        monkeypatch.setattr(ft._validate, name,
                            lambda *a, f=f, **k: prepares.append(1) or f(*a, **k))

    def forward():
        return torch.ops.fastrnn.cell_forward("lstm", "", False, None, True, x, None, None, *ws,
                                              w_hr)[3]

    def backward(cache):
        return torch.ops.fastrnn.cell_backward("lstm", "", False, None, cache, x, None, None,
                                               *ws, *grads, True, w_hr)

    cache = forward()
    prepares.clear()
    reused = backward(cache)
    assert prepares == []  # the forward's context
    rebuilt = backward(cache.clone())
    assert prepares == [1]
    for a, b in zip(reused, rebuilt, strict=True):
        assert torch.equal(a, b)
    cache = forward()
    with torch.no_grad():
        ws[1].mul_(0.5)  # in place after the forward: the version changes
    prepares.clear()
    changed = backward(cache)
    assert prepares == [1]  # rebuilt, with the weights as they are now
    for a, b in zip(changed, backward(cache.clone()), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(changed[0], reused[0])


def test_backward_op_reuses_the_forward_context_through_autograd(monkeypatch):
    """Through autograd (the caller keeps no reference to the cache: autograd's saved copy is
    another tensor object on the same memory) the backward op still reuses the forward's
    context, with the gradients of a rebuilt one; the kept entry goes with the cache's
    memory."""
    torch.manual_seed(4)
    x = torch.randn(5, 3, 2, dtype=F64, requires_grad=True)
    ws = [torch.randn(12, 2, dtype=F64, requires_grad=True),
          torch.randn(12, 3, dtype=F64, requires_grad=True),
          torch.randn(12, dtype=F64, requires_grad=True),
          torch.randn(12, dtype=F64, requires_grad=True)]
    prepares = []
    f = ft._validate.prepare
    monkeypatch.setattr(ft._validate, "prepare", lambda *a, **k: prepares.append(1) or f(*a, **k))
    n0 = len(ft._CONTEXTS)

    def grads(forget):
        y, h, c, _ = torch.ops.fastrnn.cell_forward("lstm", "", False, None, True, x, None, None,
                                                    *ws)
        assert len(ft._CONTEXTS) == n0 + 1
        if forget:
            ft._CONTEXTS.clear()
        prepares.clear()
        out = torch.autograd.grad((y * y).sum() + h.sum() + c.sum(), [x, *ws])
        return out, list(prepares)

    reused, seen = grads(False)
    assert seen == []  # the forward's context
    rebuilt, seen = grads(True)
    assert seen == [1]
    for a, b in zip(reused, rebuilt, strict=True):
        assert torch.equal(a, b)
    gc.collect()
    assert len(ft._CONTEXTS) == n0  # the caches are gone, and their entries with them


# --------------------------------------------------------------------------------------
# Batched gradients and torch.func


def as_function(module, kind, lengths=None):
    """``f(x, *states, *params)`` returning the module's outputs as a tuple of tensors."""
    names = [n for n, _ in module.named_parameters()]
    n_states = 2 if kind == "LSTM" else 1

    def f(x, *rest):
        hs, ps = rest[:n_states], rest[n_states:]
        inp = x if lengths is None else pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, hn = torch.func.functional_call(module, dict(zip(names, ps, strict=True)),
                                             (inp, hs if kind == "LSTM" else hs[0]))
        hn = hn if kind == "LSTM" else (hn,)
        return (out.data if lengths is not None else out, *hn)

    return f


def leaves(module, kind, T=4, B=3, I=2, H=3, LD=2):
    torch.manual_seed(1)
    x = torch.randn(T, B, I, dtype=F64, requires_grad=True)
    hs = [torch.randn(LD, B, H, dtype=F64, requires_grad=True)
          for _ in range(2 if kind == "LSTM" else 1)]
    ps = [p.detach().clone().requires_grad_(True) for p in module.parameters()]
    return (x, *hs, *ps)


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_is_grads_batched_matches_torch(kind, packed, kernel_calls):
    ref, fast = make_pair(kind, 2, 3, bidirectional=True)
    lengths = torch.tensor([4, 2, 3]) if packed else None
    args = leaves(fast, kind)
    results = []
    for module in (ref, fast):
        outs = as_function(module, kind, lengths)(*args)
        torch.manual_seed(5)
        gs = [torch.randn(6, *o.shape, dtype=F64) for o in outs]
        results.append(torch.autograd.grad(outs, args, gs, is_grads_batched=True))
    kernel_calls.update(forward=0, backward=0)
    outs = as_function(fast, kind, lengths)(*args)
    torch.autograd.grad(outs, args, [torch.randn(6, *o.shape, dtype=F64) for o in outs],
                        is_grads_batched=True)
    assert kernel_calls == {"forward": 2, "backward": 12}  # 2 directions x 6 gradients
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_vectorized_jacobian_matches_torch(kind):
    ref, fast = make_pair(kind, 2, 3, num_layers=2)
    x = torch.randn(3, 2, 2, dtype=F64)
    jac = [torch.autograd.functional.jacobian(lambda x, m=m: m(x)[0], x, vectorize=True)
           for m in (ref, fast)]
    torch.testing.assert_close(jac[1], jac[0], **TOL)
    hess = [torch.autograd.functional.hessian(lambda x, m=m: m(x)[0].pow(2).sum(), x)
            for m in (ref, fast)]
    torch.testing.assert_close(hess[1], hess[0], **TOL)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.func's own imports
@pytest.mark.parametrize("kind", KINDS)
def test_torch_func_transforms_match_torch(kind):
    """grad, jacrev, jacfwd and forward-mode AD equal torch.nn's; vmap (which torch.nn's
    modules do not support) equals a loop of torch.nn calls."""
    ref, fast = make_pair(kind, 2, 3, bidirectional=True)
    x = torch.randn(4, 3, 2, dtype=F64)
    for transform in (torch.func.grad(lambda x, m: m(x)[0].pow(2).sum()),
                      torch.func.jacrev(lambda x, m: m(x)[0]),
                      torch.func.jacfwd(lambda x, m: m(x)[0])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ft.FallbackWarning)
            got = transform(x, fast)
        torch.testing.assert_close(got, transform(x, ref), **TOL)
    xs = torch.randn(5, 4, 3, 2, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ft.FallbackWarning)
        got = torch.func.vmap(lambda x: fast(x)[0])(xs)
    torch.testing.assert_close(got, torch.stack([ref(x)[0] for x in xs]), **TOL)
    tangent = torch.randn_like(x)
    import torch.autograd.forward_ad as fwad
    results = []
    for m in (ref, fast):
        with fwad.dual_level(), warnings.catch_warnings():
            warnings.simplefilter("ignore", ft.FallbackWarning)
            results.append(fwad.unpack_dual(m(fwad.make_dual(x, tangent))[0]).tangent)
    torch.testing.assert_close(results[1], results[0], **TOL)


def test_torch_func_transform_warns_once_that_kernels_do_not_run(monkeypatch):
    monkeypatch.setattr(ft, "_warned", set())
    _, fast = make_pair("GRU", 2, 3)
    with pytest.warns(ft.FallbackWarning, match="torch ops"):
        torch.func.grad(lambda x: fast(x)[0].sum())(torch.randn(3, 2, dtype=F64))
