"""One rank of the DistributedDataParallel test (gloo, CPU), and the single-process baseline.

Run as ``python _ddp_worker.py RANK WORLD INIT_METHOD OUT.npz``: builds the model with a
fixed seed, accelerates it with fastrnn.torch, wraps it in DDP, runs forward + backward on
this rank's share of the combined batch for a few SGD steps, and writes the (all-reduced,
averaged) gradients and the parameters after every step to ``OUT.npz``.
:func:`single_process_run` computes the same on the whole batch in one process.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import numpy as np
import torch
from torch import nn

import fastrnn.torch as ft

BATCH = 8
STEPS = 3


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)
        self.gru = nn.GRU(8, 5, batch_first=True)
        self.head = nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)
        y, h = self.gru(y)
        return self.head(h[-1])


def build() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = ft.accelerate(Net().double())
    x = torch.randn(BATCH, 6, 3, dtype=torch.float64)
    y = torch.randn(BATCH, 1, dtype=torch.float64)
    return model, x, y


def train(model: nn.Module, params: nn.Module, x: torch.Tensor,
          y: torch.Tensor) -> dict[str, np.ndarray]:
    """``STEPS`` SGD steps of ``model`` (maybe DDP-wrapped) on (x, y); after each step the
    gradients and updated parameters of ``params`` (the unwrapped model)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    out = {}
    for step in range(STEPS):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        for n, p in params.named_parameters():
            out[f"step{step}/grad/{n}"] = p.grad.detach().numpy().copy()
            out[f"step{step}/param/{n}"] = p.detach().numpy().copy()
    return out


def single_process_run() -> dict[str, np.ndarray]:
    """The whole batch in one process, no DDP."""
    model, x, y = build()
    return train(model, model, x, y)


def main(rank: int, world: int, init_method: str, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    try:
        model, x, y = build()
        assert type(model.lstm) is ft.LSTM and type(model.gru) is ft.GRU
        share = BATCH // world
        part = slice(rank * share, (rank + 1) * share)
        np.savez(out, **train(DistributedDataParallel(model), model, x[part], y[part]))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
