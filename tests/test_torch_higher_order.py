"""Higher-order gradients through the PyTorch drop-in, against torch.nn.

A backward that is itself differentiated (``create_graph=True``) runs the drop-in's
differentiable path (the cells' maths in torch ops); the first-order backward stays on
fastrnn's kernels. Float64 results agree with torch.nn's to ``rtol=1e-9, atol=1e-11``.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from _torch_helpers import F64, KINDS, TOL, make_pair  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

import fastrnn.torch as ft  # noqa: E402


def as_function(module, kind, packed_lengths=None):
    """``f(x, *states, *params)`` returning the module's outputs as a tuple of tensors."""
    names = [n for n, _ in module.named_parameters()]
    n_states = 2 if kind == "LSTM" else 1

    def f(x, *rest):
        hs, ps = rest[:n_states], rest[n_states:]
        inp = x
        if packed_lengths is not None:
            inp = pack_padded_sequence(x, packed_lengths, enforce_sorted=False)
        hx = hs if kind == "LSTM" else hs[0]
        out, hn = torch.func.functional_call(module, dict(zip(names, ps, strict=True)),
                                              (inp, hx))
        hn = hn if kind == "LSTM" else (hn,)
        return (out.data if packed_lengths is not None else out, *hn)

    return f


def leaves(module, kind, T, B, I, H, D, L):
    """Fresh float64 leaves: input (T, B, I), states, then copies of the parameters."""
    torch.manual_seed(1)
    x = torch.randn(T, B, I, dtype=F64, requires_grad=True)
    hs = [torch.randn(L * D, B, H, dtype=F64, requires_grad=True)
          for _ in range(2 if kind == "LSTM" else 1)]
    ps = [p.detach().clone().requires_grad_(True) for p in module.parameters()]
    return (x, *hs, *ps)


# --------------------------------------------------------------------------------------
# gradgradcheck: torch.nn passes it, and so does the drop-in.


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_gradgradcheck_packed_two_layers_with_states(kind, bidirectional):
    _, fast = make_pair(kind, 2, 2, num_layers=2, bidirectional=bidirectional)
    args = leaves(fast, kind, 3, 3, 2, 2, 2 if bidirectional else 1, 2)
    f = as_function(fast, kind, packed_lengths=torch.tensor([2, 3, 1]))
    assert torch.autograd.gradgradcheck(f, args)


@pytest.mark.parametrize("kind", KINDS)
def test_gradgradcheck_padded(kind):
    kw = dict(nonlinearity="relu") if kind == "RNN" else {}  # tanh: the packed test above
    _, fast = make_pair(kind, 2, 3, num_layers=2, **kw)
    args = leaves(fast, kind, 3, 2, 2, 3, 1, 2)
    assert torch.autograd.gradgradcheck(as_function(fast, kind), args)


# --------------------------------------------------------------------------------------
# What torch.nn computes, the drop-in computes: gradient penalties, grad of grad.


def _penalty_step(module, x, w):
    """One WGAN-GP-like step: a loss plus the squared norm of its input gradient."""
    out, _ = module(x)
    score = (out * w).sum()
    (gx,) = torch.autograd.grad(score, x, create_graph=True)
    loss = score + (gx.norm() - 1) ** 2
    loss.backward()
    return loss


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_penalty_training_step_matches_torch(kind):
    ref, fast = make_pair(kind, 3, 4, num_layers=2, bidirectional=True, batch_first=True)
    torch.manual_seed(2)
    x0 = torch.randn(2, 5, 3, dtype=F64)
    w = torch.randn(2, 5, 8, dtype=F64)
    grads = []
    for m in (ref, fast):
        x = x0.clone().requires_grad_(True)
        loss = _penalty_step(m, x, w)
        grads.append((loss, [p.grad for p in m.parameters()], x.grad))
    (l_ref, p_ref, x_ref), (l_fast, p_fast, x_fast) = grads
    torch.testing.assert_close(l_fast, l_ref, **TOL)
    torch.testing.assert_close(x_fast, x_ref, **TOL)
    for (name, _), a, b in zip(ref.named_parameters(), p_ref, p_fast, strict=True):
        assert b is not None and b.abs().sum() > 0, name
        torch.testing.assert_close(b, a, **TOL, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("kind", KINDS)
def test_grad_of_grad_matches_torch(kind):
    """``autograd.grad(..., create_graph=True)`` then a second ``grad`` (a Hessian-vector
    product with respect to the weights, and the mixed one with respect to the input)."""
    ref, fast = make_pair(kind, 3, 4, num_layers=2)
    torch.manual_seed(3)
    lengths = torch.tensor([4, 2, 3])
    x0 = torch.randn(4, 3, 3, dtype=F64)
    v = [torch.randn_like(p) for p in ref.parameters()]
    results = []
    for m in (ref, fast):
        x = x0.clone().requires_grad_(True)
        out, _ = m(pack_padded_sequence(x, lengths, enforce_sorted=False))
        loss = out.data.pow(3).sum()
        params = list(m.parameters())
        g = torch.autograd.grad(loss, params, create_graph=True)
        assert all(t.requires_grad for t in g)
        dot = sum((a * b).sum() for a, b in zip(g, v, strict=True))
        hv = torch.autograd.grad(dot, [*params, x])
        results.append((g, hv))
    (g_ref, hv_ref), (g_fast, hv_fast) = results
    for a, b in zip(g_ref, g_fast, strict=True):
        torch.testing.assert_close(b, a, **TOL)
    for a, b in zip(hv_ref, hv_fast, strict=True):
        assert b.abs().sum() > 0
        torch.testing.assert_close(b, a, **TOL)


# --------------------------------------------------------------------------------------
# The first-order backward stays on fastrnn's kernels.


def test_first_order_backward_stays_on_the_kernels(monkeypatch):
    calls = []
    real_ops, real_torch = ft._ops_backward, ft._torch_forward

    def spy_ops(*args):
        calls.append("kernels")
        return real_ops(*args)

    def spy_torch(*args):
        calls.append("torch ops")
        return real_torch(*args)

    monkeypatch.setattr(ft, "_ops_backward", spy_ops)
    monkeypatch.setattr(ft, "_torch_forward", spy_torch)
    _, fast = make_pair("LSTM", 3, 4, bidirectional=True)
    x = torch.randn(5, 2, 3, dtype=F64, requires_grad=True)
    wrt = [x, *fast.parameters()]
    first = torch.autograd.grad(fast(x)[0].sum(), wrt)
    assert calls == ["kernels"] * 2
    assert not any(t.requires_grad for t in first)
    calls.clear()
    again = torch.autograd.grad(fast(x)[0].sum(), wrt, create_graph=True)  # torch ops
    assert calls == ["torch ops"] * 2
    assert all(t.requires_grad for t in again)
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(b.detach(), a, **TOL)
