"""Long dependencies: the adding problem, the vanishing gradient, and gradient clipping.

    python docs/guides/long_dependencies.py           # T = 100: under a minute
    python docs/guides/long_dependencies.py --quick   # T = 50: a few seconds
"""

import argparse

import numpy as np

import fastrnn
import fastrnn.keras as keras
from fastrnn import functional as F
from fastrnn.keras import layers
from fastrnn.keras.models import set_random_seed

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="shorter sequences, a few seconds")
args = parser.parse_args()

T = 50 if args.quick else 100         # how far apart the two numbers to add can be
N = 5000 if args.quick else 10_000    # training sequences
EPOCHS = 12
fastrnn.set_num_threads(1)            # 32 units are too few to share among threads
rng = np.random.default_rng(0)


def adding_problem(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n sequences (n, T, 2): a random number and a marker per step; target: the marked sum."""
    values = rng.random((n, T))
    markers = np.zeros((n, T))
    rows = np.arange(n)
    markers[rows, rng.integers(0, T // 2, n)] = 1.0   # one marker in the first half
    markers[rows, rng.integers(T // 2, T, n)] = 1.0   # one in the second half
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    y = (values * markers).sum(axis=1, keepdims=True).astype(np.float32)
    return x, y


def gradient_reaching_first_step(model: keras.Sequential, x: np.ndarray) -> float:
    """|d h_T / d x_1| / |d h_T / d x_T|: how much of the last step's gradient gets back to the
    first input, through the recurrent layer alone (fastrnn.functional, on its own weights)."""
    rnn = model.layers[0]
    w_ih, w_hh, b_ih, b_hh = rnn.op_weights()
    x_tm = np.ascontiguousarray(x.transpose(1, 0, 2))     # the ops are time-major: (T, B, I)
    y, h_n, c_n, ctx = F.cell_forward(rnn.cell, x_tm, None, None, w_ih, w_hh, b_ih, b_hh,
                                      nonlinearity=rnn.nonlinearity)
    dx = F.cell_backward(ctx, None, np.ones_like(h_n), None)[0]   # gradient of sum(h_T)
    norms = np.linalg.norm(dx, axis=(1, 2))                       # one norm per step
    return float(norms[0] / norms[-1])


x_train, y_train = adding_problem(N)
x_val, y_val = adding_problem(500)
baseline = float(np.mean((y_val - 1.0) ** 2))          # always answer 1.0 (the mean)
print(f"adding problem, T = {T}: always answering 1.0 scores MSE {baseline:.3f}")

for cell in (layers.SimpleRNN, layers.LSTM, layers.GRU):
    set_random_seed(0)                                  # the same start for every cell
    model = keras.Sequential([keras.Input(shape=(T, 2)), cell(32), layers.Dense(1)])
    # clipnorm=1.0: rescale any gradient longer than 1 before the update. A recurrent net's
    # gradient can also explode (grow at every step back); clipping keeps one bad batch from
    # throwing the weights far away.
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=5e-3, clipnorm=1.0), loss="mse")
    before = gradient_reaching_first_step(model, x_val)
    history = model.fit(x_train, y_train, batch_size=50, epochs=EPOCHS,
                        validation_data=(x_val, y_val), verbose=0)
    after = gradient_reaching_first_step(model, x_val)
    mse = history.history["val_loss"][-1]
    verdict = "learned it" if mse < 0.25 * baseline else "stays at the baseline"
    print(f"{cell.__name__:>9}: validation MSE {mse:.3f} ({verdict}); gradient reaching "
          f"step 1: {before:.0e} of step {T}'s before training, {after:.0e} after")
