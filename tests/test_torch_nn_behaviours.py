"""Behaviours that PyTorch's own RNN tests (test_nn.py, nn/test_packed_sequence.py) check,
each on the drop-in beside torch.nn (our own tests of the same behaviours; tests/
test_torch_dropin.py, test_torch_higher_order.py, test_torch_compile.py and
test_torch_module_db.py cover the rest: argument errors, gradcheck/gradgradcheck, dropout
masks, packed and unsorted sequences, batch_first, unbatched input, state_dict, pickling).

Float64 results agree with torch.nn's to ``rtol=1e-9, atol=1e-11``.
"""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")

from _torch_helpers import F64, FAST_CLS, KINDS, TOL, TORCH_CLS, make_pair  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils import parametrizations  # noqa: E402
from torch.nn.utils.rnn import (  # noqa: E402
    pack_padded_sequence,
    pack_sequence,
    pad_packed_sequence,
)

import fastrnn.torch as ft  # noqa: E402


def flat(out):
    y, h = out
    y = y.data if isinstance(y, nn.utils.rnn.PackedSequence) else y
    return (y, *(h if isinstance(h, tuple) else (h,)))


def assert_outputs_equal(got, expected):
    for a, b in zip(flat(got), flat(expected), strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_initial_state_equals_none(kind):
    """test_rnn_initial_hidden_state: explicit zero states give what no state gives."""
    _, fast = make_pair(kind, 3, 4, num_layers=2)
    x = torch.randn(5, 2, 3, dtype=F64)
    h0 = torch.zeros(2, 2, 4, dtype=F64)
    hx = (h0, h0.clone()) if kind == "LSTM" else h0
    assert_outputs_equal(fast(x, hx), fast(x))


@pytest.mark.parametrize("kind", KINDS)
def test_input_size_zero_is_refused_and_an_empty_batch_runs(kind):
    """test_RNN_input_size_zero (torch refuses input_size=0 in its constructor: so does the
    drop-in, with torch's message) and an empty batch through forward and backward."""
    for cls in (TORCH_CLS[kind], FAST_CLS[kind]):
        with pytest.raises(ValueError, match="input_size must be greater than zero"):
            cls(0, 4)
    ref, fast = make_pair(kind, 3, 4, num_layers=2)
    x = torch.zeros(5, 0, 3, dtype=F64, requires_grad=True)
    outs = []
    for m in (ref, fast):
        out = m(x)
        grads = torch.autograd.grad(flat(out)[0].sum(), [x, *m.parameters()],
                                    allow_unused=True, materialize_grads=True)
        outs.append((*flat(out), *grads))
    for a, b in zip(outs[1], outs[0], strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_zero_and_one_and_changed_after_construction(kind):
    """test_RNN_dropout / test_RNN_change_dropout: p = 0 is deterministic, p = 1 zeroes the
    next layer's input, and assigning ``module.dropout`` later takes effect — each as in
    torch.nn under the same seed."""
    ref, fast = make_pair(kind, 3, 4, num_layers=2, dropout=0.0)
    x = torch.randn(5, 2, 3, dtype=F64)
    for p in (0.0, 1.0, 0.4, 0.0):
        ref.dropout = fast.dropout = p
        outs = []
        for m in (ref, fast):
            torch.manual_seed(7)
            outs.append(m(x))
        assert_outputs_equal(outs[1], outs[0])
    ref.dropout = fast.dropout = 1.0
    torch.manual_seed(7)
    y, h = fast(x)
    # layer 2 saw zeros: its output is the same at every batch row as a zero-input run
    zero = FAST_CLS[kind](4, 4, dtype=F64)
    zero.load_state_dict({k[:-1] + "0": v for k, v in fast.state_dict().items()
                          if k.endswith("_l1")})
    torch.testing.assert_close(y, zero(torch.zeros(5, 2, 4, dtype=F64))[0], **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_state_differs_between_calls_in_training_only(kind):
    """test_RNN_dropout_state: two training calls draw different masks; eval calls agree."""
    _, fast = make_pair(kind, 3, 4, num_layers=2, dropout=0.5)
    x = torch.randn(5, 2, 3, dtype=F64)
    assert not torch.equal(fast(x)[0], fast(x)[0])
    fast.eval()
    assert torch.equal(fast(x)[0], fast(x)[0])


def test_dropout_with_one_layer_warns_like_torch():
    """test_RNN_dropout_warning: torch's constructor warning, from the drop-in too."""
    for cls in (nn.LSTM, ft.LSTM):
        with pytest.warns(UserWarning, match="dropout option adds dropout after all but last"):
            cls(3, 4, num_layers=1, dropout=0.2)


def test_nonlinearity_attribute_and_positional_argument():
    """test_RNN_nonlinearity / _passed_as_arg."""
    for args in ((3, 4), (3, 4, 1, "relu")):
        ref, fast = make_pair("RNN", *args)
        assert fast.nonlinearity == ref.nonlinearity == ("relu" if len(args) > 2 else "tanh")
        x = torch.randn(4, 2, 3, dtype=F64)
        assert_outputs_equal(fast(x), ref(x))


@pytest.mark.parametrize("kind", KINDS)
def test_backward_twice_with_retain_graph_gives_the_same_gradients(kind):
    """test_rnn_retain_variables."""
    _, fast = make_pair(kind, 3, 4, bidirectional=True)
    x = torch.randn(5, 2, 3, dtype=F64, requires_grad=True)
    y = fast(x)[0].pow(2).sum()
    first = torch.autograd.grad(y, [x, *fast.parameters()], retain_graph=True)
    second = torch.autograd.grad(y, [x, *fast.parameters()])
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("norm", ["weight_norm", "spectral_norm"])
@pytest.mark.parametrize("kind", KINDS)
def test_parametrized_weights_weight_norm_and_spectral_norm(kind, norm):
    """test_rnn_weight_norm / spectral_norm: a parametrized weight_hh_l0 is used in forward
    and its original tensors get the gradients, as in torch.nn."""
    grads = []
    for m in make_pair(kind, 3, 4):
        torch.manual_seed(5)  # spectral_norm's random start vector: the same in both
        getattr(parametrizations, norm)(m, "weight_hh_l0")
        m.eval()  # spectral_norm's power iteration: the same vector in both
        x = torch.randn(5, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
        m(x)[0].sum().backward()
        grads.append([p.grad for p in m.parametrizations.weight_hh_l0.parameters()])
        grads.append([m(x)[0]])
    for a, b in zip(grads[2] + grads[3], grads[0] + grads[1], strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_weights_replaced_between_calls_are_the_ones_used(kind):
    """A parameter replaced between two calls is the one the next call uses, as in torch.nn:
    through the module's attribute (torch's ``__setattr__`` updates the flat weight list),
    straight in ``_parameters`` (as ``torch.nn.utils.stateless`` swaps them: the flat list is
    checked at the next call) and deleted then shadowed by a plain tensor attribute."""
    x = torch.randn(5, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    pair = make_pair(kind, 3, 4, num_layers=2)
    g = torch.Generator().manual_seed(4)
    new = {n: torch.randn(p.shape, dtype=F64, generator=g)
           for n, p in pair[0].named_parameters()}
    outs = [pair[1](x)]
    for name, how in (("weight_hh_l0", "attribute"), ("weight_ih_l1", "dict"),
                      ("bias_ih_l1", "plain")):
        for m in pair:
            m(x)  # the flat weight list as it is now
            if how == "attribute":
                setattr(m, name, nn.Parameter(new[name].clone()))
            elif how == "dict":
                m._parameters[name] = nn.Parameter(new[name].clone())
            else:
                delattr(m, name)
                setattr(m, name, new[name].clone())
        outs.append(pair[1](x))
        assert_outputs_equal(outs[-1], pair[0](x))
        with pytest.raises(AssertionError):  # the replacement changed the outputs
            assert_outputs_equal(outs[-1], outs[-2])


@pytest.mark.parametrize("kind", KINDS)
def test_module_hooks_see_the_drop_ins_inputs_and_gradients(kind):
    """Forward hooks and full backward hooks fire with torch.nn's arguments."""
    seen = []
    for m in make_pair(kind, 3, 4):
        log = {}
        m.register_forward_hook(lambda mod, inp, out, log=log: log.update(fwd=flat(out)))
        m.register_full_backward_hook(lambda mod, gi, go, log=log: log.update(gi=gi[0]))
        x = torch.randn(5, 2, 3, dtype=F64, requires_grad=True,
                        generator=torch.Generator().manual_seed(2))
        m(x)[0].sum().backward()
        seen.append(log)
    for k in ("fwd",):
        for a, b in zip(seen[1][k], seen[0][k], strict=True):
            torch.testing.assert_close(a, b, **TOL)
    torch.testing.assert_close(seen[1]["gi"], seen[0]["gi"], **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_packed_round_trip_total_length_sorted_and_unsorted(kind):
    """nn/test_packed_sequence.py through a module: pack_sequence (sorted) and
    pack_padded_sequence (unsorted) give the same per-sequence results, and
    pad_packed_sequence with total_length pads as torch.nn's output is padded."""
    ref, fast = make_pair(kind, 3, 4, bidirectional=True)
    torch.manual_seed(3)
    seqs = [torch.randn(n, 3, dtype=F64) for n in (5, 3, 2)]
    for m in (ref, fast):
        sorted_out = m(pack_sequence(seqs))
        unsorted = [seqs[1], seqs[2], seqs[0]]
        padded = nn.utils.rnn.pad_sequence(unsorted)
        out = m(pack_padded_sequence(padded, torch.tensor([3, 2, 5]), enforce_sorted=False))
        y_sorted, _ = pad_packed_sequence(sorted_out[0], total_length=7)
        y_unsorted, lengths = pad_packed_sequence(out[0], total_length=7)
        assert y_sorted.shape == (7, 3, 8) and lengths.tolist() == [3, 2, 5]
        torch.testing.assert_close(y_unsorted[:, [2, 0, 1]], y_sorted, **TOL)
        h_sorted = flat(sorted_out)[1]
        torch.testing.assert_close(flat(out)[1][:, [2, 0, 1]], h_sorted, **TOL)
    assert_outputs_equal(fast(pack_sequence(seqs)), ref(pack_sequence(seqs)))


@pytest.mark.parametrize("kind", KINDS)
def test_packed_sequence_type_casts_reach_the_module(kind):
    """test_type_casts: a PackedSequence cast with .double()/.float()/.to() runs in a module
    of that dtype (float32 and float64 both on fastrnn's kernels)."""
    ref, fast = make_pair(kind, 3, 4)
    packed = pack_sequence([torch.randn(4, 3), torch.randn(2, 3)])
    for cast in (lambda p: p.double(), lambda p: p.to(F64)):
        assert_outputs_equal(fast(cast(packed)), ref(cast(packed)))
    ref.float()
    fast.float()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ft.FallbackWarning)
        got = fast(packed.float())
    for a, b in zip(flat(got), flat(ref(packed.float())), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_flatten_parameters_to_and_zero_grad_are_torchs(kind):
    """flatten_parameters() (a no-op on the CPU), .to() returning the module itself, and
    zero_grad leaving no gradients, as torch.nn."""
    ref, fast = make_pair(kind, 3, 4)
    fast.flatten_parameters()
    assert fast.to("cpu") is fast and fast.to("cpu", dtype=F64) is fast
    fast(torch.randn(2, 1, 3, dtype=F64))[0].sum().backward()
    fast.zero_grad()
    assert all(p.grad is None for p in fast.parameters())
    x = torch.randn(4, 2, 3, dtype=F64)
    assert_outputs_equal(fast(x), ref(x))
