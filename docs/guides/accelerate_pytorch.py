"""Accelerate a PyTorch model: fastrnn.torch.accelerate(model), or the drop-in classes.

    python docs/guides/accelerate_pytorch.py           # about 10 seconds
    python docs/guides/accelerate_pytorch.py --quick   # a few seconds
"""

import argparse
import time

import torch
from torch import nn

import fastrnn
import fastrnn.torch as ft

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
args = parser.parse_args()

B, T, FEATURES, HIDDEN = (16, 50, 8, 64) if args.quick else (32, 100, 32, 128)
STEPS = 5 if args.quick else 30
torch.manual_seed(0)
torch.set_num_threads(1)         # compare both libraries on the same number of threads
fastrnn.set_num_threads(1)


class Tagger(nn.Module):
    """An ordinary PyTorch model: a 2-layer GRU and a linear head on every step."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(FEATURES, HIDDEN, num_layers=2, batch_first=True)
        self.head = nn.Linear(HIDDEN, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out)


def ms_per_training_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Median time of forward + backward + Adam step, in milliseconds."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for _ in range(STEPS):
        start = time.perf_counter()
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return 1e3 * sorted(times)[len(times) // 2]


x, y = torch.randn(B, T, FEATURES), torch.randn(B, T, 1)
model = Tagger()
t_torch = ms_per_training_step(model, x, y)

# The one line: every nn.RNN/nn.LSTM/nn.GRU inside becomes fastrnn's subclass, in place,
# with the very same parameter tensors (optimizers, hooks and state_dict keep working).
ft.accelerate(model)
print(f"model.gru is now {type(model.gru).__module__}.{type(model.gru).__name__}")
t_fast = ms_per_training_step(model, x, y)
print(f"training step: torch {t_torch:.1f} ms, fastrnn {t_fast:.1f} ms "
      f"({t_torch / t_fast:.1f}x), batch {B} x {T} steps, GRU({HIDDEN}) x 2, 1 thread")

# Same maths: compare a fresh torch model with its accelerated copy on the same weights.
plain = Tagger()
fast = Tagger()
fast.load_state_dict(plain.state_dict())
ft.accelerate(fast)
with torch.no_grad():
    diff = (plain(x) - fast(x)).abs().max().item()
print(f"outputs of torch's GRU and fastrnn's differ by at most {diff:.1e}")
ft.restore(fast)                 # and back to torch's own modules
print(f"after restore: {type(fast.gru).__module__}.{type(fast.gru).__name__}")

# Or write the model with the drop-in classes directly: same arguments as torch.nn's.
lstm = ft.LSTM(FEATURES, HIDDEN, batch_first=True, bidirectional=True)
out, (h_n, c_n) = lstm(x)
print(f"ft.LSTM(..., bidirectional=True): output {tuple(out.shape)}, h_n {tuple(h_n.shape)}")
