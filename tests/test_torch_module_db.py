"""PyTorch's own module inputs for nn.RNN/LSTM/GRU, through the drop-in and torch.nn side by side.

The torch wheel ships ``torch.testing._internal.common_modules.module_db``; its entries for
``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` generate the module inputs of PyTorch's module tests
(constructor arguments and forward inputs, in training and eval mode, in the dtypes the entry
lists). Every entry and every input runs here through the checks those tests make, on the
drop-in, with torch.nn as the control on the very same weights and inputs: a check is
required of the drop-in wherever torch.nn passes it. Forward outputs agree with torch.nn's
to the tolerances of tests/test_torch_dropin.py (float64 ``rtol=1e-9, atol=1e-11``, float32
``rtol=1e-4, atol=1e-5``). Every input gets gradcheck's fast mode (random projections of the
Jacobian); the costlier checks (full gradcheck with batched gradients, partial derivatives
per parameter, gradgradcheck) run on every eighth or sixteenth input of each entry, so that the
file stays near a minute on a loaded two-core machine.
"""

from __future__ import annotations

import copy
import io
import pickle
import warnings

import pytest

torch = pytest.importorskip("torch")

from torch.testing._internal.common_modules import module_db  # noqa: E402
from torch.utils._pytree import tree_flatten  # noqa: E402

import fastrnn.torch as ft  # noqa: E402

TOL = {torch.float64: dict(rtol=1e-9, atol=1e-11), torch.float32: dict(rtol=1e-4, atol=1e-5)}
FAST_CLS = {torch.nn.RNN: ft.RNN, torch.nn.LSTM: ft.LSTM, torch.nn.GRU: ft.GRU}
ENTRIES = [m for m in module_db if m.module_cls in FAST_CLS]
#: every input gets a fast-mode gradcheck of the total derivative; every SLOW_EVERY-th one a
#: full gradcheck with batched gradients, every PARTIAL_EVERY-th one the per-parameter
#: gradchecks, every GRADGRAD_EVERY-th one a gradgradcheck (each with torch.nn's control)
SLOW_EVERY = 16
PARTIAL_EVERY = 8
GRADGRAD_EVERY = 8

# every entry (proj_size > 0 included) runs on fastrnn: a fallback warning fails the test
pytestmark = pytest.mark.filterwarnings("error::fastrnn.torch.FallbackWarning")


def test_module_db_has_entries_for_all_three_modules():
    assert sorted(m.module_cls.__name__ for m in ENTRIES) == ["GRU", "LSTM", "RNN"]
    for m in ENTRIES:
        assert set(m.dtypes) >= {torch.float32, torch.float64}


def inputs_of(info, dtype, training, requires_grad):
    return [mi for mi in info.module_inputs_func(info, device="cpu", dtype=dtype,
                                                 requires_grad=requires_grad, training=training)
            if mi.forward_input is not None]


def pair(info, module_input, dtype, training):
    """torch.nn's module and the drop-in, the same weights, in ``dtype`` and mode."""
    args, kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
    ref = info.module_cls(*args, **kwargs).to(dtype)
    fast = FAST_CLS[info.module_cls](*args, **kwargs).to(dtype)
    fast.load_state_dict(ref.state_dict())
    ref.train(training)
    fast.train(training)
    return ref, fast


def run(module, module_input):
    return module(*module_input.forward_input.args, **module_input.forward_input.kwargs)


def assert_same(got, expected, dtype, what):
    got, _ = tree_flatten(got)
    expected, _ = tree_flatten(expected)
    assert len(got) == len(expected), what
    for a, b in zip(got, expected, strict=True):
        if a is None or b is None:
            assert a is None and b is None, what
        else:
            torch.testing.assert_close(a, b, **TOL[dtype], msg=lambda m: f"{what}: {m}")


def ids(info):
    return info.module_cls.__name__


# --------------------------------------------------------------------------------------
# forward, dtypes, factory kwargs, repr, pickling, state_dict, meta-device construction


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("info", ENTRIES, ids=ids)
def test_forward_pickle_state_dict_and_construction(info, dtype, training, tmp_path):
    assert dtype in info.dtypes
    fast_cls = FAST_CLS[info.module_cls]
    for k, mi in enumerate(inputs_of(info, dtype, training, requires_grad=False)):
        what = f"{info.name} input {k} {mi.constructor_input.kwargs}"
        ref, fast = pair(info, mi, dtype, training)
        expected = run(ref, mi)
        got = run(fast, mi)
        assert_same(got, expected, dtype, what)
        assert_same(run(fast, mi), got, dtype, what + " (second call)")
        if mi.reference_fn is not None:
            assert_same(got, mi.reference_fn(fast, *mi.forward_input.args,
                                             **mi.forward_input.kwargs), dtype, what)
        # the dtype methods, then factory kwargs: parameters in dtype on the CPU
        getattr(fast, {torch.float32: "float", torch.float64: "double"}[dtype])()
        run(fast, mi)
        args, kwargs = mi.constructor_input.args, mi.constructor_input.kwargs
        made = fast_cls(*args, **kwargs, device="cpu", dtype=dtype)
        for m in (fast, made):
            assert all(p.dtype == dtype and p.device.type == "cpu" for p in m.parameters())
        assert repr(fast) == repr(ref) and str(fast) == str(ref)
        # torch.save / torch.load (weights_only=True, torch's default, with the class
        # allowlisted as torch.nn's own needs) and pickle
        buf = io.BytesIO()
        torch.save(fast, buf)
        buf.seek(0)
        with torch.serialization.safe_globals([info.module_cls]):
            loaded = torch.load(buf)
        assert type(loaded) is info.module_cls
        assert_same(run(loaded, mi), got, dtype, what + " (torch.load)")
        copied = pickle.loads(pickle.dumps(fast))
        assert_same(run(ft.accelerate(copied), mi), got, dtype, what + " (pickle)")
        assert_same(run(copy.deepcopy(fast), mi), got, dtype, what + " (deepcopy)")
        # state_dict both ways
        back = info.module_cls(*args, **kwargs).to(dtype).train(training)
        back.load_state_dict(fast.state_dict())
        assert_same(run(back, mi), expected, dtype, what + " (state_dict to torch)")
        # construction on the meta device: the same parameter metadata as on the CPU
        with torch.device("meta"):
            meta = fast_cls(*args, **kwargs, dtype=dtype)
        for p_meta, p in zip(meta.parameters(), fast.parameters(), strict=True):
            assert p_meta.is_meta and p_meta.shape == p.shape and p_meta.dtype == p.dtype


@pytest.mark.parametrize("info", ENTRIES, ids=ids)
def test_training_attribute_is_read_exactly_when_torch_reads_it(info):
    """test_if_train_and_eval_modes_differ: without ``training`` the forward raises an
    AttributeError naming it exactly when torch.nn's does."""
    for mi in inputs_of(info, torch.float64, True, requires_grad=False):
        outcomes = []
        for m in pair(info, mi, torch.float64, True):
            delattr(m, "training")
            try:
                run(m, mi)
                outcomes.append(None)
            except AttributeError as e:
                assert "'training'" in str(e)
                outcomes.append("training")
        assert outcomes[1] == outcomes[0], mi.constructor_input.kwargs


# --------------------------------------------------------------------------------------
# non-contiguous inputs and output gradients


def non_contiguous(obj):
    """The same values in a non-contiguous layout (every second element of a doubled last
    axis), keeping ``requires_grad``."""
    if isinstance(obj, tuple):
        return tuple(non_contiguous(o) for o in obj)
    if not isinstance(obj, torch.Tensor):
        return obj
    out = torch.repeat_interleave(obj.detach(), 2, dim=-1)[..., ::2]
    assert not out.is_contiguous()
    return out.requires_grad_(obj.requires_grad)


def grads_of(module, args, g_outs):
    out = module(*args)
    outs, _ = tree_flatten(out)
    leaves = [t for t in tree_flatten(args)[0] if isinstance(t, torch.Tensor)]
    leaves += list(module.parameters())
    return out, torch.autograd.grad(outs, leaves, g_outs)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("info", ENTRIES, ids=ids)
def test_non_contiguous_inputs_and_gradients(info, training):
    dtype = torch.float64
    for mi in inputs_of(info, dtype, training, requires_grad=True):
        ref, fast = pair(info, mi, dtype, training)
        args = mi.forward_input.args
        torch.manual_seed(0)
        g_outs = [torch.randn_like(o) for o in tree_flatten(run(ref, mi))[0]]
        expected = grads_of(ref, args, g_outs)
        for a in (args, non_contiguous(args)):
            for g in (g_outs, [non_contiguous(t) for t in g_outs]):
                assert_same(grads_of(fast, a, g), expected, dtype,
                            f"{info.name} {mi.constructor_input.kwargs}")


# --------------------------------------------------------------------------------------
# gradcheck (with batched gradients) and gradgradcheck, torch.nn as the control


def checked(check, module, mi, params, **kwargs):
    """``check`` (gradcheck / gradgradcheck) of the module's outputs against the input
    arguments and ``params``, as PyTorch's module tests build it; False where it fails."""
    args = mi.forward_input.args
    flat, spec = tree_flatten((args, tuple(params)))

    def fn(*flat_args):
        new_args, new_params = torch.utils._pytree.tree_unflatten(list(flat_args), spec)
        names = [n for n, _ in module.named_parameters()]
        out = torch.func.functional_call(module, dict(zip(names, new_params, strict=True)),
                                         new_args)
        return tree_flatten(out)[0]

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ft.FallbackWarning)
            return bool(check(fn, flat, **kwargs))
    except Exception:  # noqa: BLE001 - gradcheck's errors mean "fails" (the control's too)
        return False


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("info", ENTRIES, ids=ids)
def test_gradcheck_batched_gradients_and_gradgradcheck(info, training):
    """gradcheck of the total derivative on every input (fast mode), and on a subsample: in
    full with batched gradients, per parameter (partial derivatives), and gradgradcheck."""
    dtype = torch.float64
    required = 0
    for k, mi in enumerate(inputs_of(info, dtype, training, requires_grad=True)):
        ref, fast = pair(info, mi, dtype, training)
        what = f"{info.name} input {k} {mi.constructor_input.kwargs}"
        params = [p.detach().clone().requires_grad_(True) for p in ref.parameters()]
        gradcheck, gradgradcheck = torch.autograd.gradcheck, torch.autograd.gradgradcheck
        checks = [(gradcheck, params, dict(fast_mode=True))]
        if k % SLOW_EVERY == 0:
            checks.append((gradcheck, params, dict(check_batched_grad=True)))
        if k % PARTIAL_EVERY == 1:  # partial derivatives: the input and one parameter
            for j in range(len(params)):
                one = [p.detach().requires_grad_(i == j) for i, p in enumerate(params)]
                checks.append((gradcheck, one, dict(fast_mode=True)))
        if info.supports_gradgrad and k % GRADGRAD_EVERY == 2:
            checks.append((gradgradcheck, params, dict(fast_mode=True)))
        for check, ps, kwargs in checks:
            if checked(check, ref, mi, ps, **kwargs):  # required where torch.nn passes
                required += 1
                assert checked(check, fast, mi, ps, **kwargs), f"{check.__name__}: {what}"
    assert required > 0
