"""Keras programs written with the functional API run with one import changed.

Each test is our own small equivalent of a well-known Keras program (the keras-io character
level LSTM seq2seq translator, and the functional sections of the "Working with RNNs" guide),
with synthetic data of the same shapes and tiny sizes. The program bodies use only what
``import keras`` / ``from keras import layers`` give; here those names are
``import fastrnn.keras as keras`` and ``from fastrnn.keras import layers``.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastrnn.keras as keras
from fastrnn.keras import layers


@pytest.fixture(autouse=True)
def _seed():
    keras.set_random_seed(7)


def _toy_corpus(n_pairs: int = 48):
    """Synthetic "translation" pairs: target = source reversed, upper-cased."""
    rs = np.random.default_rng(0)
    letters = list("abcdef")
    inputs, targets = [], []
    for _ in range(n_pairs):
        word = "".join(rs.choice(letters, rs.integers(2, 6)))
        inputs.append(word)
        targets.append("\t" + word[::-1].upper() + "\n")  # start and end markers
    return inputs, targets


def test_character_level_seq2seq_translator(tmp_path):
    input_texts, target_texts = _toy_corpus()
    input_characters = sorted({c for t in input_texts for c in t})
    target_characters = sorted({c for t in target_texts for c in t})
    num_encoder_tokens = len(input_characters)
    num_decoder_tokens = len(target_characters)
    max_encoder_seq_length = max(len(t) for t in input_texts)
    max_decoder_seq_length = max(len(t) for t in target_texts)
    input_token_index = {c: i for i, c in enumerate(input_characters)}
    target_token_index = {c: i for i, c in enumerate(target_characters)}
    latent_dim = 16

    encoder_input_data = np.zeros((len(input_texts), max_encoder_seq_length,
                                   num_encoder_tokens), dtype="float32")
    decoder_input_data = np.zeros((len(input_texts), max_decoder_seq_length,
                                   num_decoder_tokens), dtype="float32")
    decoder_target_data = np.zeros_like(decoder_input_data)
    for i, (input_text, target_text) in enumerate(zip(input_texts, target_texts,
                                                      strict=True)):
        for t, char in enumerate(input_text):
            encoder_input_data[i, t, input_token_index[char]] = 1.0
        encoder_input_data[i, t + 1:, input_token_index["a"]] = 1.0  # pad with a space-like
        for t, char in enumerate(target_text):
            decoder_input_data[i, t, target_token_index[char]] = 1.0
            if t > 0:  # the target is one step ahead of the decoder input
                decoder_target_data[i, t - 1, target_token_index[char]] = 1.0
        decoder_input_data[i, t + 1:, target_token_index["\n"]] = 1.0
        decoder_target_data[i, t:, target_token_index["\n"]] = 1.0

    # training model
    encoder_inputs = keras.Input(shape=(None, num_encoder_tokens))
    encoder = keras.layers.LSTM(latent_dim, return_state=True)
    encoder_outputs, state_h, state_c = encoder(encoder_inputs)
    encoder_states = [state_h, state_c]
    decoder_inputs = keras.Input(shape=(None, num_decoder_tokens))
    decoder_lstm = keras.layers.LSTM(latent_dim, return_sequences=True, return_state=True)
    decoder_outputs, _, _ = decoder_lstm(decoder_inputs, initial_state=encoder_states)
    decoder_dense = keras.layers.Dense(num_decoder_tokens, activation="softmax")
    decoder_outputs = decoder_dense(decoder_outputs)
    model = keras.Model([encoder_inputs, decoder_inputs], decoder_outputs)
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit([encoder_input_data, decoder_input_data], decoder_target_data,
                        batch_size=16, epochs=15, validation_split=0.2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    model.save(str(tmp_path / "s2s_model.keras"))

    # inference: restore the model and build the sampling models from its layers
    model = keras.models.load_model(str(tmp_path / "s2s_model.keras"))
    encoder_inputs = model.input[0]
    encoder_outputs, state_h_enc, state_c_enc = model.layers[2].output
    encoder_states = [state_h_enc, state_c_enc]
    encoder_model = keras.Model(encoder_inputs, encoder_states)
    decoder_inputs = model.input[1]
    decoder_state_input_h = keras.Input(shape=(latent_dim,))
    decoder_state_input_c = keras.Input(shape=(latent_dim,))
    decoder_states_inputs = [decoder_state_input_h, decoder_state_input_c]
    decoder_lstm = model.layers[3]
    decoder_outputs, state_h_dec, state_c_dec = decoder_lstm(
        decoder_inputs, initial_state=decoder_states_inputs)
    decoder_states = [state_h_dec, state_c_dec]
    decoder_dense = model.layers[4]
    decoder_outputs = decoder_dense(decoder_outputs)
    decoder_model = keras.Model([decoder_inputs] + decoder_states_inputs,
                                [decoder_outputs] + decoder_states)
    reverse_target_char_index = {i: c for c, i in target_token_index.items()}

    def decode_sequence(input_seq):
        states_value = encoder_model.predict(input_seq, verbose=0)
        target_seq = np.zeros((1, 1, num_decoder_tokens))
        target_seq[0, 0, target_token_index["\t"]] = 1.0
        decoded_sentence, probs = "", []
        while True:
            output_tokens, h, c = decoder_model.predict([target_seq] + states_value, verbose=0)
            probs.append(output_tokens[0, -1])
            sampled_token_index = int(np.argmax(output_tokens[0, -1, :]))
            sampled_char = reverse_target_char_index[sampled_token_index]
            decoded_sentence += sampled_char
            if sampled_char == "\n" or len(decoded_sentence) > max_decoder_seq_length:
                break
            target_seq = np.zeros((1, 1, num_decoder_tokens))
            target_seq[0, 0, sampled_token_index] = 1.0
            states_value = [h, c]
        return decoded_sentence, np.array(probs)

    sentence, probs = decode_sequence(encoder_input_data[0:1])
    assert 1 <= len(sentence) <= max_decoder_seq_length + 1
    # the step-by-step decoder agrees with the training model fed its own samples
    fed = np.zeros((1, len(probs), num_decoder_tokens), dtype="float32")
    fed[0, 0, target_token_index["\t"]] = 1.0
    for t in range(1, len(probs)):
        fed[0, t, int(np.argmax(probs[t - 1]))] = 1.0
    full = model.predict([encoder_input_data[0:1], fed], verbose=0)
    np.testing.assert_allclose(full[0], probs, atol=1e-5)


def test_working_with_rnns_outputs_and_states():
    """The guide's encoder-decoder with Embedding inputs and the encoder's states passed as
    the decoder's initial state."""
    encoder_vocab = 50
    decoder_vocab = 40
    encoder_input = layers.Input(shape=(None,))
    encoder_embedded = layers.Embedding(input_dim=encoder_vocab, output_dim=16)(encoder_input)
    output, state_h, state_c = layers.LSTM(24, return_state=True, name="encoder")(
        encoder_embedded)
    encoder_state = [state_h, state_c]
    decoder_input = layers.Input(shape=(None,))
    decoder_embedded = layers.Embedding(input_dim=decoder_vocab, output_dim=16)(decoder_input)
    decoder_output = layers.LSTM(24, name="decoder")(decoder_embedded,
                                                    initial_state=encoder_state)
    output = layers.Dense(10)(decoder_output)
    model = keras.Model([encoder_input, decoder_input], output)
    lines = []
    model.summary(print_fn=lines.append)
    assert "encoder[0][1]" in lines[0] and "encoder[0][2]" in lines[0]
    rs = np.random.default_rng(1)
    x = [rs.integers(0, encoder_vocab, (32, 9)), rs.integers(0, decoder_vocab, (32, 6))]
    y = rs.integers(0, 10, 32)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  optimizer="sgd", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_working_with_rnns_cross_batch_statefulness_and_state_reuse():
    rs = np.random.default_rng(2)
    paragraph1 = rs.random((20, 10, 5)).astype(np.float32)
    paragraph2 = rs.random((20, 10, 5)).astype(np.float32)
    paragraph3 = rs.random((20, 10, 5)).astype(np.float32)

    lstm_layer = layers.LSTM(64, stateful=True)
    output = lstm_layer(paragraph1)
    output = lstm_layer(paragraph2)
    output = lstm_layer(paragraph3)
    lstm_layer.reset_states()

    # the same thing with state reuse: the state after two paragraphs seeds a new layer
    lstm_layer = layers.LSTM(64, stateful=True)
    output = lstm_layer(paragraph1)
    output = lstm_layer(paragraph2)
    existing_state = lstm_layer.states
    new_lstm_layer = layers.LSTM(64)
    new_lstm_layer.build((None, 10, 5))
    new_lstm_layer.set_weights(lstm_layer.get_weights())
    new_output = new_lstm_layer(paragraph3, initial_state=existing_state)
    np.testing.assert_allclose(new_output, lstm_layer(paragraph3), atol=1e-6)
    assert output.shape == (20, 64)


def test_working_with_rnns_bidirectional_and_functional_classifier():
    """A functional version of the guide's Bidirectional model, trained briefly."""
    inputs = keras.Input(shape=(5, 10))
    x = layers.Bidirectional(layers.LSTM(64, return_sequences=True))(inputs)
    x = layers.Bidirectional(layers.LSTM(32))(x)
    outputs = layers.Dense(10)(x)
    model = keras.Model(inputs, outputs)
    rs = np.random.default_rng(3)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  optimizer="adam", metrics=["accuracy"])
    x_train, y_train = rs.random((64, 5, 10)), rs.integers(0, 10, 64)
    model.fit(x_train, y_train, validation_data=(x_train[:16], y_train[:16]), batch_size=16,
              epochs=1, verbose=0)
    assert model.predict(x_train[:3], verbose=0).shape == (3, 10)
