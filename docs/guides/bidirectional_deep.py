"""Bidirectional and deep (stacked) recurrent networks.

    python docs/guides/bidirectional_deep.py           # about half a minute
    python docs/guides/bidirectional_deep.py --quick   # a few seconds
"""

import argparse

import numpy as np

import fastrnn.keras as keras
from fastrnn.keras import layers
from fastrnn.keras.models import set_random_seed

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
args = parser.parse_args()

T = 20
N = 1000 if args.quick else 4000
EPOCHS = 15 if args.quick else 30
rng = np.random.default_rng(0)

# The task: at every step, output the input of the *next* step (0 after the last one).
# A left-to-right RNN has not seen it yet; a backward pass over the sequence has.
x = rng.uniform(-1, 1, (N, T, 1)).astype(np.float32)
y = np.zeros_like(x)
y[:, :-1] = x[:, 1:]
print(f"target: the next step's input; predicting 0 everywhere scores MSE {np.mean(y ** 2):.3f}")


def train(name: str, rnn_layers: list) -> None:
    set_random_seed(0)
    model = keras.Sequential([keras.Input(shape=(T, 1)), *rnn_layers, layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(x, y, batch_size=32, epochs=EPOCHS, validation_split=0.2, verbose=0)
    print(f"{name:>26}: {model.count_params():6,} weights, validation MSE "
          f"{history.history['val_loss'][-1]:.3f}")


# One direction: the output at step t depends on steps 1..t only.
train("LSTM", [layers.LSTM(32, return_sequences=True)])

# Bidirectional runs a second copy of the layer from the last step back to the first and
# concatenates the two outputs at every step (merge_mode="concat": 2 x 32 features).
train("Bidirectional(LSTM)", [layers.Bidirectional(layers.LSTM(32, return_sequences=True))])

# Deep: stack recurrent layers. Every layer but the last of a many-to-one model needs
# return_sequences=True, so that the next layer gets a whole sequence.
train("2 x Bidirectional(LSTM)", [
    layers.Bidirectional(layers.LSTM(32, return_sequences=True)),
    layers.Bidirectional(layers.LSTM(32, return_sequences=True)),
])
