"""Speed up an existing PyTorch model with one line: ``fastrnn.torch.accelerate(model)``.

The model is ordinary PyTorch: a 2-layer ``nn.GRU`` reading an 8-channel signal and a
linear head that tells which of four frequencies it carries. We train it for a while with
torch's own GRU, then call ``accelerate``: every ``nn.RNN``/``nn.LSTM``/``nn.GRU`` inside
becomes fastrnn's drop-in subclass, in place, keeping the very same parameter tensors, so
the optimizer, ``state_dict`` and the rest of the code do not change. Outputs agree with
torch's to float32 rounding, and training simply continues, faster.

How much faster depends on the cell and the shapes: fastrnn's fused GRU and RNN kernels
are often several times faster than torch's on the CPU; for the LSTM torch's own kernel
(oneDNN) is already strong and the two are close. The timings below are measured, not
claimed.

    python examples/torch_accelerate.py             # about 20 seconds
    python examples/torch_accelerate.py --threads 4 # both libraries on 4 threads
    python examples/torch_accelerate.py --quick     # a few seconds, for smoke tests
"""

import argparse
import time

import numpy as np
import torch
from torch import nn

import fastrnn
import fastrnn.torch

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="tiny run for smoke tests")
parser.add_argument("--threads", type=int, default=1,
                    help="threads for torch and fastrnn alike (default 1: a model this small "
                         "gains little from more, and timings stay steady on a busy machine)")
args = parser.parse_args()

torch.manual_seed(0)
torch.set_num_threads(args.threads)  # the same thread count for both
fastrnn.set_num_threads(args.threads)
rng = np.random.default_rng(0)
N, T, CHANNELS, CLASSES = (256, 50, 8, 4) if args.quick else (2048, 100, 8, 4)
EPOCHS = 1 if args.quick else 3
BATCH = 32


def make_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy signals (n, T, CHANNELS); the label is which of 4 frequencies they carry."""
    labels = rng.integers(0, CLASSES, n)
    freq = (0.02 + 0.03 * labels)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, (n, 1, CHANNELS))
    t = np.arange(T)[None, :, None]
    x = np.sin(2 * np.pi * freq * t + phase) + 0.8 * rng.standard_normal((n, T, CHANNELS))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(labels)


class Classifier(nn.Module):
    """A GRU reads the signal; a linear layer classifies its last hidden state."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(CHANNELS, 64, num_layers=2, batch_first=True)
        self.head = nn.Linear(64, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out[:, -1])


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                y: torch.Tensor) -> tuple[float, float]:
    """One pass over the data; returns (seconds per step, mean loss)."""
    model.train()
    order = torch.randperm(len(x))
    losses, start = [], time.perf_counter()
    for i in range(0, len(x), BATCH):
        idx = order[i:i + BATCH]
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return (time.perf_counter() - start) / len(losses), float(np.mean(losses))


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


x_train, y_train = make_data(N)
x_val, y_val = make_data(N // 4)
model = Classifier()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batches of {BATCH} "
      f"signals, {T} steps x {CHANNELS} channels\n")
torch_times = []
for epoch in range(EPOCHS):
    per_step, loss = train_epoch(model, optimizer, x_train, y_train)
    torch_times.append(per_step)
    print(f"epoch {epoch + 1}, torch's GRU:   {per_step * 1e3:6.1f} ms/step, loss {loss:.3f}, "
          f"validation accuracy {accuracy(model, x_val, y_val):.1%}")

# The one line. Same parameters, same optimizer; only the recurrent layers change.
with torch.no_grad():
    model.eval()
    before = model(x_val)
fastrnn.torch.accelerate(model)
with torch.no_grad():
    after = model(x_val)
print(f"\naccelerate(model): model.gru is now {type(model.gru).__module__}."
      f"{type(model.gru).__name__}; outputs differ from torch's by at most "
      f"{(after - before).abs().max().item():.1e}\n")

fast_times = []
for epoch in range(EPOCHS, 2 * EPOCHS):
    per_step, loss = train_epoch(model, optimizer, x_train, y_train)
    fast_times.append(per_step)
    print(f"epoch {epoch + 1}, fastrnn's GRU: {per_step * 1e3:6.1f} ms/step, loss {loss:.3f}, "
          f"validation accuracy {accuracy(model, x_val, y_val):.1%}")

t_torch, t_fast = min(torch_times), min(fast_times)
print(f"\ntraining step (forward + backward + Adam, whole model): torch {t_torch * 1e3:.1f} ms, "
      f"with fastrnn {t_fast * 1e3:.1f} ms: {t_torch / t_fast:.2f}x")

# accelerate() changes no parameter, so the state_dict loads into a plain torch model.
plain = Classifier()
plain.load_state_dict(model.state_dict())
plain.eval()
model.eval()
with torch.no_grad():
    diff = (plain(x_val) - model(x_val)).abs().max().item()
print(f"its state_dict loads unchanged into the plain torch model (outputs agree to {diff:.1e})")
