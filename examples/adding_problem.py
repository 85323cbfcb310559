"""The adding problem: why LSTM and GRU exist.

Each input is a sequence of 100 steps with two features: a random number in [0, 1), and a
marker that is 1 at exactly two steps (one in each half) and 0 elsewhere. The target is
the sum of the two marked numbers. To solve it a network must carry a number across up to
100 steps; in a plain RNN the gradient that would teach it to do so shrinks at every step
on the way back (the vanishing gradient), so it never learns and stays at the error of
always answering 1.0 (MSE 1/6, about 0.167). LSTM and GRU keep an additive memory path
whose gradient does not vanish, and after a plateau their error falls to almost zero.

Each validation error is printed as its epoch ends; a cell stops training once it has solved
the task (its error under a tenth of the baseline for two epochs in a row).

    python examples/adding_problem.py                     # about 10 seconds
    python examples/adding_problem.py --plot adding.png   # learning curves (matplotlib)
    python examples/adding_problem.py --quick             # a few seconds, for smoke tests
    python examples/adding_problem.py --precision bfloat16   # the cells in bfloat16
"""

import argparse
import time

import numpy as np

import fastrnn
import fastrnn.keras as keras
from fastrnn.keras import layers, mixed_precision
from fastrnn.keras.models import set_random_seed

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="tiny run for smoke tests")
parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                    help="what the recurrent layers compute in: bfloat16 sets Keras's "
                         "'mixed_bfloat16' policy (float32 weights)")
parser.add_argument("--plot", metavar="PNG", help="save the learning curves as a PNG")
args = parser.parse_args()
if args.precision == "bfloat16":
    mixed_precision.set_global_policy("mixed_bfloat16")

T = 20 if args.quick else 100          # sequence length
N = 500 if args.quick else 10_000      # training sequences
EPOCHS = 2 if args.quick else 12        # at most: a cell that has solved it stops
UNITS = 16                             # enough for the task, and quick
rng = np.random.default_rng(0)
# 16 units are too few to share among threads: one thread is fastest (and the results are the
# same on any thread count)
fastrnn.set_num_threads(1)


def adding_problem(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n sequences (n, T, 2) and their targets (n, 1)."""
    values = rng.random((n, T))
    markers = np.zeros((n, T))
    rows = np.arange(n)
    markers[rows, rng.integers(0, T // 2, n)] = 1.0       # one marker in the first half
    markers[rows, rng.integers(T // 2, T, n)] = 1.0       # one in the second half
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    y = (values * markers).sum(axis=1, keepdims=True).astype(np.float32)
    return x, y


class Progress(keras.callbacks.Callback):
    """Print each epoch's validation MSE as it comes; stop once the task is solved."""

    def __init__(self, name: str, solved_below: float) -> None:
        super().__init__()
        self.name, self.solved_below = name, solved_below
        self.solved_at: int | None = None  # first epoch of the current run under the bar

    def on_train_begin(self, logs: dict | None = None) -> None:
        print(f"{self.name:>9}: validation MSE by epoch", end="", flush=True)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        mse = (logs or {})["val_loss"]
        print(f" {mse:.3f}", end="", flush=True)
        if mse >= self.solved_below:
            self.solved_at = None
        elif self.solved_at is None:
            self.solved_at = epoch + 1
        else:  # the second epoch in a row under the bar: solved, stop
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        print()


x_train, y_train = adding_problem(N)
x_val, y_val = adding_problem(N // 10)
baseline = float(np.mean((y_val - 1.0) ** 2))
print(f"adding problem: {N:,} sequences of {T} steps; always answering 1.0 scores "
      f"MSE {baseline:.3f}\n")

curves = {}
for cell in (layers.SimpleRNN, layers.LSTM, layers.GRU):
    set_random_seed(0)                                    # same start for every cell
    model = keras.Sequential([keras.Input(shape=(T, 2)), cell(UNITS), layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-2, clipnorm=1.0), loss="mse")
    progress = Progress(cell.__name__, solved_below=0.1 * baseline)
    start = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=50, epochs=EPOCHS,
                        validation_data=(x_val, y_val), verbose=0, callbacks=[progress])
    seconds = time.perf_counter() - start
    curves[cell.__name__] = history.history["val_loss"]
    verdict = (f"learned it at epoch {progress.solved_at}" if progress.solved_at
               else "did not learn it")
    print(f"{'':>9}  {verdict} ({seconds:.0f} s)\n")

if args.plot:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for name, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, marker="o", ms=3, label=name)
    ax.axhline(baseline, color="gray", ls="--", lw=1, label="always answer 1.0")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation MSE")
    ax.set_title(f"The adding problem, T = {T}: the vanishing gradient of a plain RNN")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.plot)
    print(f"saved the learning curves to {args.plot}")
