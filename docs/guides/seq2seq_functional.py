"""Encoder-decoder (seq2seq) with the functional API: train, then decode step by step.

    python docs/guides/seq2seq_functional.py           # about 20 seconds
    python docs/guides/seq2seq_functional.py --quick   # a few seconds
"""

import argparse

import numpy as np

import fastrnn.keras as keras
from fastrnn.keras.models import set_random_seed

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
args = parser.parse_args()

N = 3000 if args.quick else 10000
EPOCHS = 15 if args.quick else 30
LENGTH, SYMBOLS, LATENT = 5, 6, 48
START = SYMBOLS                  # the decoder's start token (one more than the symbols)
TOKENS = SYMBOLS + 1
set_random_seed(0)
rng = np.random.default_rng(0)

# 1. The task: read a sequence of symbols, write it reversed. One-hot vectors in and out.
source = rng.integers(0, SYMBOLS, (N, LENGTH))
target = source[:, ::-1]
encoder_input_data = np.eye(SYMBOLS, dtype=np.float32)[source]              # (N, 5, 6)
decoder_input_data = np.eye(TOKENS, dtype=np.float32)[                      # teacher forcing:
    np.concatenate([np.full((N, 1), START), target[:, :-1]], axis=1)]        # start, y0, y1..
decoder_target_data = np.eye(TOKENS, dtype=np.float32)[target]              # y0, y1, ...

# 2. The training model: the encoder's final states start the decoder.
encoder_inputs = keras.Input(shape=(None, SYMBOLS), name="encoder_inputs")
encoder = keras.layers.LSTM(LATENT, return_state=True, name="encoder")
_, state_h, state_c = encoder(encoder_inputs)
decoder_inputs = keras.Input(shape=(None, TOKENS), name="decoder_inputs")
decoder_lstm = keras.layers.LSTM(LATENT, return_sequences=True, return_state=True,
                                 name="decoder")
decoder_seq, _, _ = decoder_lstm(decoder_inputs, initial_state=[state_h, state_c])
decoder_dense = keras.layers.Dense(TOKENS, activation="softmax", name="next_token")
model = keras.Model([encoder_inputs, decoder_inputs], decoder_dense(decoder_seq))
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
model.summary()
history = model.fit([encoder_input_data, decoder_input_data], decoder_target_data,
                    batch_size=64, epochs=EPOCHS, validation_split=0.1, verbose=0)
print(f"teacher-forced validation accuracy {history.history['val_accuracy'][-1]:.3f} "
      f"(chance {1 / SYMBOLS:.3f})")

# 3. Inference models from the trained layers: the encoder alone, and a decoder that takes
#    its state as inputs and returns the next state, so it can run one step at a time.
encoder_model = keras.Model(encoder_inputs, [state_h, state_c])
h_in = keras.Input(shape=(LATENT,), name="h_in")
c_in = keras.Input(shape=(LATENT,), name="c_in")
step_seq, h_out, c_out = decoder_lstm(decoder_inputs, initial_state=[h_in, c_in])
decoder_model = keras.Model([decoder_inputs, h_in, c_in],
                            [decoder_dense(step_seq), h_out, c_out])


def decode(batch: np.ndarray) -> np.ndarray:
    """Greedy decoding: feed back each predicted token (a whole batch at once)."""
    h, c = encoder_model.predict(batch, verbose=0)
    token = np.full(len(batch), START)
    out = []
    for _ in range(LENGTH):
        probs, h, c = decoder_model.predict([np.eye(TOKENS, dtype=np.float32)[token][:, None],
                                             h, c], verbose=0)
        token = probs[:, -1].argmax(axis=-1)
        out.append(token)
    return np.stack(out, axis=1)


test = rng.integers(0, SYMBOLS, (500, LENGTH))
decoded = decode(np.eye(SYMBOLS, dtype=np.float32)[test])
print(f"greedy decoding of 500 new sequences: {np.mean(decoded == test[:, ::-1]):.3f} of the "
      f"symbols right, {np.mean((decoded == test[:, ::-1]).all(axis=1)):.3f} of the sequences")
print("e.g.", test[0].tolist(), "->", decoded[0].tolist())
