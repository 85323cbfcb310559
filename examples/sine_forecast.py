"""Forecast a noisy wave with a SimpleRNN, written exactly as you would in Keras.

The series is two sine waves plus noise. The model sees the last 40 values and predicts the
next one; we compare it with the naive forecast (repeat the last value), then let it run on
its own for 120 steps, feeding each prediction back in as the next input.

    python examples/sine_forecast.py                  # about 20 seconds
    python examples/sine_forecast.py --plot sine.png  # also draw the forecast (matplotlib)
    python examples/sine_forecast.py --quick          # a few seconds, for smoke tests
"""

import argparse

import numpy as np

import fastrnn.keras as keras
from fastrnn.keras import layers
from fastrnn.keras.models import set_random_seed

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="tiny run for smoke tests")
parser.add_argument("--plot", metavar="PNG", help="save a plot of the forecasts")
args = parser.parse_args()

set_random_seed(0)
rng = np.random.default_rng(0)
WINDOW = 40
STEPS = 600 if args.quick else 4000
EPOCHS = 2 if args.quick else 15

# 1. The data: one long series, cut into (window -> next value) samples.
t = np.arange(STEPS)
series = np.sin(2 * np.pi * t / 50) + 0.5 * np.sin(2 * np.pi * t / 17)
series += 0.1 * rng.standard_normal(STEPS)
series = series.astype(np.float32)

windows = np.lib.stride_tricks.sliding_window_view(series, WINDOW + 1)
x = windows[:, :WINDOW, None]            # (samples, 40 timesteps, 1 feature)
y = windows[:, WINDOW:]                  # (samples, 1): the value after the window
split = int(0.8 * len(x))                # train on the past, validate on the future
x_train, y_train, x_val, y_val = x[:split], y[:split], x[split:], y[split:]

# 2. The model: Keras code, fastrnn imports.
model = keras.Sequential([
    keras.Input(shape=(WINDOW, 1)),
    layers.SimpleRNN(32),
    layers.Dense(1),
])
model.compile(optimizer="adam", loss="mse")
model.summary()

# 3. Train with a progress bar, validating on data the model has not seen.
history = model.fit(x_train, y_train, batch_size=32, epochs=EPOCHS,
                    validation_data=(x_val, y_val), verbose=2)

# 4. How good is it? Compare with the naive forecast "tomorrow = today".
mse = model.evaluate(x_val, y_val, verbose=0)
naive = float(np.mean((x_val[:, -1, 0] - y_val[:, 0]) ** 2))
print(f"\nvalidation MSE: SimpleRNN {mse:.4f}, naive last-value forecast {naive:.4f} "
      f"({naive / mse:.1f}x worse)")
print(f"(the noise alone has variance {0.1 ** 2:.4f}: no forecast can beat that)")

# 5. Free-running forecast: the model's own predictions become its next inputs.
HORIZON = 120
context = list(series[split:split + WINDOW])
for _ in range(HORIZON):
    nxt = model.predict(np.array(context[-WINDOW:])[None, :, None], verbose=0)[0, 0]
    context.append(nxt)
future = np.array(context[WINDOW:])
truth = series[split + WINDOW:split + WINDOW + HORIZON]
n = min(len(truth), HORIZON)
err = float(np.sqrt(np.mean((future[:n] - truth[:n]) ** 2)))
print(f"free-running {n}-step forecast: RMS error {err:.3f} (the wave's amplitude is ~1.5)")

if args.plot:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), dpi=100)
    ax1.plot(history.history["loss"], label="training")
    ax1.plot(history.history["val_loss"], label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("MSE")
    ax1.set_yscale("log")
    ax1.legend()
    ax2.plot(np.arange(n), truth[:n], color="black", label="truth")
    ax2.plot(np.arange(n), future[:n], label="SimpleRNN, feeding back its own predictions")
    ax2.set_xlabel("steps ahead")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(args.plot)
    print(f"saved {args.plot}")
