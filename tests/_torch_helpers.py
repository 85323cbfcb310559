"""Helpers shared by the PyTorch drop-in tests (imported after their ``torch`` import).

``make_pair`` builds a torch.nn module and a fastrnn drop-in with the same weights;
``count_kernel_calls`` counts the drop-in's forward and backward kernel calls.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

import fastrnn.torch as ft

F64 = torch.float64
#: float64 tolerance of the drop-ins against torch.nn
TOL = dict(rtol=1e-9, atol=1e-11)
TORCH_CLS = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
FAST_CLS = {"RNN": ft.RNN, "LSTM": ft.LSTM, "GRU": ft.GRU}
KINDS = ["RNN", "LSTM", "GRU"]


def make_pair(kind: str, *args, dtype: torch.dtype = F64, **kwargs) -> tuple:
    """A torch.nn module and a drop-in of ``kind`` with the same weights (seed 0)."""
    torch.manual_seed(0)
    ref = TORCH_CLS[kind](*args, dtype=dtype, **kwargs)
    fast = FAST_CLS[kind](*args, dtype=dtype, **kwargs)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def count_kernel_calls(monkeypatch, check_forward: Callable[[dict], None] | None = None
                       ) -> dict:
    """Patch ``ft._ops_forward``/``ft._ops_backward`` to count their calls; returns the
    live counts ``{"forward": n, "backward": n}``. ``check_forward`` sees each forward
    call's keyword arguments."""
    calls = {"forward": 0, "backward": 0}
    fwd, bwd = ft._ops_forward, ft._ops_backward

    def counted_forward(*a, **k):
        calls["forward"] += 1
        if check_forward is not None:
            check_forward(k)
        return fwd(*a, **k)

    def counted_backward(*a, **k):
        calls["backward"] += 1
        return bwd(*a, **k)

    monkeypatch.setattr(ft, "_ops_forward", counted_forward)
    monkeypatch.setattr(ft, "_ops_backward", counted_backward)
    return calls
