"""A character-level LSTM language model: the engine behind ``fastrnn demo`` and ``generate``.

The demo trains ``Embedding -> LSTM -> Dense`` to predict the next character of a text. With
no text given it reads the Python standard library's own source files (every Python
installation has them, a virtual environment included), so it runs anywhere with nothing
to download, and its samples turn from noise into Python-looking code as it learns.

Everything here uses the public Keras-style API (:mod:`fastrnn.keras.models`,
:mod:`fastrnn.keras.layers`) and streaming sessions (``model.stream``) for generation. Read it
top to bottom as an example of both::

    from fastrnn.cli.demo import default_corpus, CharVocab, build_char_model, generate

    corpus = default_corpus(max_chars=200_000)
    vocab = CharVocab.from_text(corpus.text)
    ids = vocab.encode(corpus.text)
    model = build_char_model(len(vocab))
    ...  # model.train_on_batch(x, y) on windows of ids (see run_demo)
    print(generate(model, vocab, prime="def ", length=200))

A saved char model is an ordinary fastrnn model file (``model.save``) with one more member,
``fastrnn-charlm.json``, holding the vocabulary; :func:`load_char_model` reads both.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

import fastrnn
from fastrnn import get_num_threads
from fastrnn.bench.grid import PAUSE_S
from fastrnn.keras import losses, optimizers, saving
from fastrnn.keras.layers import LSTM, Dense, Embedding
from fastrnn.keras.models import ModelFileError, Sequential, load_model, set_random_seed
from fastrnn.keras.saving import read_json_member

__all__ = ["DEFAULT_MODEL", "CharVocab", "Corpus", "CorpusError", "build_char_model",
           "compare_with_reference", "corpus_prime", "default_corpus", "default_out", "generate",
           "interleaved", "load_char_model", "load_with_metadata", "other_run", "pick_threads",
           "read_text", "reference_ops", "run_demo", "same_threads", "save_char_model",
           "save_with_metadata", "speed_lines"]

DEFAULT_MODEL = "fastrnn-demo-model.fr"
VOCAB_MEMBER = "fastrnn-charlm.json"
_MIN_DEFAULT_CORPUS = 20_000  # characters of Python source we insist on finding
_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}


class CorpusError(ValueError):
    """No usable text: the file is missing, binary, empty or too short."""


# ---- the text ----------------------------------------------------------------------------


@dataclass
class Corpus:
    """Training text and where it came from."""

    text: str
    source: str
    location: str = ""


def _clean(text: str) -> str:
    """One newline convention and no tabs (4 spaces, as in Python source)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")


def stdlib_dir() -> str:
    """The directory of the standard library's ``.py`` files (also right inside a venv).

    Returns
    -------
    str
    """
    return os.path.dirname(os.path.abspath(os.__file__))


def _python_files(root: str) -> Iterator[str]:
    """``root``'s public top-level modules in name order, then its packages' modules."""
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return
    for name in names:
        if name.endswith(".py") and not name.startswith("_"):
            yield os.path.join(root, name)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        if dirpath == root:
            continue
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield os.path.join(dirpath, name)


def default_corpus(max_chars: int = 1_000_000, roots: list[str] | None = None) -> Corpus:
    """Python source text from the standard library, read in a fixed order.

    The public top-level modules of the standard library directory come first (``abc.py``,
    ``argparse.py``, ``ast.py``, ...), then its packages, until ``max_chars`` characters are
    gathered. Where a Python installation ships no ``.py`` sources (some embedded builds),
    fastrnn's own source files are used instead.

    Parameters
    ----------
    max_chars : int
        Upper bound on the corpus length.
    roots : list of str, optional
        Directories to try in order (default: the standard library, then fastrnn).

    Returns
    -------
    Corpus

    Raises
    ------
    CorpusError
        If fewer than 20,000 characters of Python source can be found.
    """
    default = roots is None
    if roots is None:
        roots = [stdlib_dir(), os.path.dirname(os.path.abspath(fastrnn.__file__))]
    for root in roots:
        parts: list[str] = []
        n = 0
        for path in _python_files(root):
            try:
                with open(path, "rb") as f:  # (UTF-8: at most 4 bytes a character)
                    text = _clean(f.read(4 * (max_chars - n) + 4).decode("utf-8",
                                                                          errors="replace"))
            except OSError:
                continue
            parts.append(text)
            n += len(text) + 2
            if n >= max_chars:
                break
        text = "\n\n".join(parts)[:max_chars]
        if len(text) >= min(max_chars, _MIN_DEFAULT_CORPUS):
            what = ("the standard library's Python source" if root == roots[0] or not default
                    else "fastrnn's own Python source (no standard library sources found)")
            files = f"{len(parts)} file{'s' if len(parts) > 1 else ''}"
            return Corpus(text, what, f"{files} in {root}")
    raise CorpusError(f"found no Python source files under {roots[0]} to train on; give a text "
                      "file with --text FILE")


def read_text(path: str, max_chars: int = 1_000_000) -> Corpus:
    """Read a UTF-8 text file (at most ``max_chars`` characters) as a corpus.

    Parameters
    ----------
    path : str
        The file.
    max_chars : int
        Upper bound on the corpus length.

    Returns
    -------
    Corpus

    Raises
    ------
    CorpusError
        If the file cannot be read, looks binary, or is empty.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(4 * max_chars)
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CorpusError(f"{path}: is a directory, expected a text file") from None
    except OSError as e:
        raise CorpusError(f"{path}: cannot read ({e.strerror or e})") from None
    if b"\x00" in raw[:8192]:
        raise CorpusError(f"{path}: looks like a binary file, expected UTF-8 text")
    text = _clean(raw.decode("utf-8", errors="replace"))[:max_chars]
    if not text.strip():
        raise CorpusError(f"{path}: the file is empty")
    return Corpus(text, os.path.basename(path), os.path.abspath(path))


def corpus_prime(text: str) -> str:
    """Where samples of a user's text start: the start of its first line that is not blank.

    Parameters
    ----------
    text : str

    Returns
    -------
    str
        That line's first word with the space after it (``"First "`` for ``"First
        Citizen:"``), or its first 20 characters when it has no space among them; a
        newline for a text of blank lines.
    """
    for line in text.split("\n"):
        line = line.strip()
        if line:
            cut = line.find(" ")
            return line[:cut + 1] if 0 < cut < 20 else line[:20]
    return "\n"


def default_out(text: str | None) -> str:
    """The file a demo saves its model to when ``--out`` is not given.

    Parameters
    ----------
    text : str or None
        The ``--text`` file (None: the default Python corpus).

    Returns
    -------
    str
        :data:`DEFAULT_MODEL` for the default corpus, else the text file's name with
        ``.fr`` in the current directory (``my_book.txt`` -> ``my_book.fr``;
        ``my_book-model.fr`` if that would be the text file itself).
    """
    if not text:
        return DEFAULT_MODEL
    stem = os.path.splitext(os.path.basename(os.path.normpath(text)))[0] or "text"
    out = stem + ".fr"
    return stem + "-model.fr" if os.path.abspath(out) == os.path.abspath(text) else out


def other_run(path: str, text: str | None) -> str:
    """What a demo would overwrite at ``path`` that another run made, if anything.

    Parameters
    ----------
    path : str
        The model file about to be written.
    text : str or None
        The text of this run (None: the default Python corpus).

    Returns
    -------
    str
        ``""`` when there is no file at ``path`` or it holds a demo's model of the same
        text (a new run of the same demo replaces it); else what the file holds, e.g.
        ``"a model trained on /home/me/poems.txt"``.
    """
    if not os.path.lexists(path):
        return ""
    try:
        meta = read_json_member(path, VOCAB_MEMBER)  # bounded, as when loading
        source = str(meta.get("source", ""))
    except (OSError, ValueError, AttributeError):  # ModelFileError is a ValueError
        return "a file that is not a model of 'fastrnn demo'"
    if "text" in meta:  # the text's absolute path, "" for the default corpus
        same = meta["text"] == (os.path.abspath(text) if text else "")
    else:  # saved before the path was kept: the text's file name
        same = source == os.path.basename(text) if text else "Python source" in source
    return "" if same else f"a model trained on {meta.get('text') or source}"


# ---- characters <-> ids --------------------------------------------------------------------


class CharVocab:
    """The characters a model knows, each mapped to an id ``0 .. len(vocab) - 1``.

    Parameters
    ----------
    chars : str
        The vocabulary, one character per id (no repeats).
    """

    def __init__(self, chars: str) -> None:
        if not chars or len(set(chars)) != len(chars):
            raise ValueError("chars must be a non-empty string without repeated characters")
        self.chars = chars
        self._codes = np.array([ord(c) for c in chars], dtype=np.uint32)
        self._order = np.argsort(self._codes)

    @classmethod
    def from_text(cls, text: str, max_size: int = 256) -> CharVocab:
        """The characters of ``text``, without the rarest, in code point order.

        The rarest are those seen less than once in 100,000 characters, or beyond the
        ``max_size`` most frequent.

        Parameters
        ----------
        text : str
        max_size : int
            The most characters kept.

        Returns
        -------
        CharVocab
        """
        counts = Counter(text)
        min_count = max(1, len(text) // 100_000)
        keep = [c for c, k in counts.most_common(max_size) if k >= min_count]
        return cls("".join(sorted(keep)))

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, ch: str) -> bool:
        return ch in self.chars

    def encode(self, text: str, drop_unknown: bool = True) -> np.ndarray:
        """Ids of ``text``'s characters.

        Parameters
        ----------
        text : str
        drop_unknown : bool
            Drop characters not in the vocabulary (else a ValueError names the first).

        Returns
        -------
        numpy.ndarray
            int32 ids.
        """
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        pos = np.searchsorted(self._codes[self._order], codes)
        pos = np.minimum(pos, len(self.chars) - 1)
        ids = self._order[pos]
        known = self._codes[ids] == codes
        if not known.all():
            if not drop_unknown:
                bad = text[int(np.argmin(known))]
                raise ValueError(f"character {bad!r} is not in the vocabulary")
            ids = ids[known]
        return ids.astype(np.int32)

    def decode(self, ids: Any) -> str:
        """The text of a sequence of ids.

        Parameters
        ----------
        ids : iterable of int

        Returns
        -------
        str
        """
        return "".join(self.chars[int(i)] for i in ids)


# ---- the model -----------------------------------------------------------------------------


#: The dtype policy of the recurrent layers for each precision (int8 is a quantized float32
#: model: :func:`with_precision`).
PRECISION_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "int8": "float32"}


def build_char_model(vocab_size: int, embed_dim: int = 48, units: int = 256, layers: int = 1,
                     learning_rate: float = 3e-3, precision: str = "float32") -> Sequential:
    """``Embedding -> LSTM (x layers) -> Dense`` predicting the next character's logits.

    Compiled with Adam (``clipnorm=1``) and sparse categorical cross-entropy on logits.

    Parameters
    ----------
    vocab_size : int
    embed_dim : int
        Size of each character's vector.
    units : int
        Hidden size of each LSTM layer.
    layers : int
        Number of stacked LSTM layers.
    learning_rate : float
    precision : {"float32", "bfloat16"}
        What the LSTM layers compute in (bfloat16: the ``"mixed_bfloat16"`` policy; the
        weights stay float32).

    Returns
    -------
    Sequential
        Input ``(batch, time)`` character ids; output ``(batch, time, vocab_size)`` logits.

    Raises
    ------
    ValueError
        For ``precision="int8"`` (inference only: :func:`with_precision`) or another one.
    """
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"training precision must be 'float32' or 'bfloat16', got "
                         f"{precision!r} (int8 is for inference only)")
    model = Sequential(name="char_lstm")
    model.add(Embedding(vocab_size, embed_dim))
    for _ in range(layers):
        model.add(LSTM(units, return_sequences=True, dtype=PRECISION_POLICIES[precision]))
    model.add(Dense(vocab_size))
    model.compile(optimizer=optimizers.Adam(learning_rate, clipnorm=1.0),
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _describe(model: Sequential) -> str:
    parts = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Embedding":
            parts.append(f"Embedding({layer.input_dim}, {layer.output_dim})")
        elif kind == "Dense":
            parts.append(f"Dense({layer.units})")
        else:
            parts.append(f"{kind}({layer.units})")
    return " -> ".join(parts)


def _ratio(reference: float, native: float) -> str:
    """'2.3x faster' or '1.2x slower' (fastrnn against the NumPy reference), honestly."""
    r = reference / native
    return f"{r:5.1f}x faster" if r >= 1.0 else f"{1.0 / r:5.1f}x slower"


def save_with_metadata(model: Sequential, path: str, member: str, meta: dict) -> None:
    """``model.save(path)`` plus one JSON member ``member`` in the same archive.

    :func:`fastrnn.keras.models.load_model` ignores the extra member; the file is replaced
    atomically (written beside ``path``, then renamed), as ``model.save`` does: an existing
    file keeps its permission bits and a symlink's target is written.

    Parameters
    ----------
    model : Sequential
    path : str
        The model file.
    member : str
        The name of the JSON member.
    meta : dict
        Its content (JSON-serialisable).
    """
    path = saving.save_target(os.fspath(path))
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    try:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as z:
            z.writestr(member, json.dumps(meta, ensure_ascii=True, allow_nan=False))
        saving.replace_keeping_mode(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_with_metadata(path: str, member: str, kind: str) -> tuple[Sequential, dict]:
    """Read a model saved by :func:`save_with_metadata` and its JSON member.

    Parameters
    ----------
    path : str
        The model file.
    member : str
        The name of the JSON member.
    kind : str
        What a file with that member is, and how to make one, for the message when it has
        none (``"forecaster (make one with 'fastrnn train')"``).

    Returns
    -------
    model : Sequential
    meta : dict
        The member's content.

    Raises
    ------
    FileNotFoundError, ModelFileError
        If the file is missing or unreadable, or the member is missing or not a JSON
        object.
    """
    model = load_model(path, compile=False)
    meta = read_json_member(path, member)  # bounded: size, nesting, no zip bomb
    if meta is None:
        raise ModelFileError(f"{path} is a fastrnn model but not a {kind}")
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: {member} is unreadable (not a JSON object)")
    return model, meta


def save_char_model(model: Sequential, vocab: CharVocab, path: str,
                    info: dict | None = None) -> None:
    """Save the model (``model.save``) with the vocabulary inside the same file.

    Parameters
    ----------
    model : Sequential
    vocab : CharVocab
    path : str
        The model file.
    info : dict, optional
        More to store beside the vocabulary (e.g. the training corpus).
    """
    meta = {"format": "fastrnn.charlm", "version": 1, "vocab": vocab.chars, **(info or {})}
    save_with_metadata(model, path, VOCAB_MEMBER, meta)


def load_char_model(path: str) -> tuple[Sequential, CharVocab, dict]:
    """Read a model saved by :func:`save_char_model`.

    Parameters
    ----------
    path : str
        The model file.

    Returns
    -------
    model : Sequential
    vocab : CharVocab
    info : dict
        What else was saved beside the vocabulary (e.g. the training corpus).

    Raises
    ------
    FileNotFoundError, ModelFileError
        If the file is missing, unreadable, or holds no character vocabulary.
    """
    model, meta = load_with_metadata(path, VOCAB_MEMBER, "character language model (it has "
                                     "no vocabulary; make one with 'fastrnn demo')")
    try:
        vocab = CharVocab(meta["vocab"])
    except (KeyError, ValueError, TypeError) as e:
        raise ModelFileError(f"{path}: the vocabulary is unreadable ({e})") from None
    first, last = model.layers[0], model.layers[-1]
    if type(first).__name__ != "Embedding" or first.input_dim != len(vocab) \
            or getattr(last, "units", None) != len(vocab):
        raise ModelFileError(f"{path}: the model does not match its vocabulary of "
                             f"{len(vocab)} characters")
    return model, vocab, meta


# ---- generation ----------------------------------------------------------------------------


def generate(model: Sequential, vocab: CharVocab, prime: str = "\n", length: int = 200,
             temperature: float = 0.7, rng: np.random.Generator | None = None) -> str:
    """Sample ``length`` characters after ``prime``, one step at a time.

    A streaming session (``model.stream()``) carries the LSTM state from character to
    character, so each new character costs one step of the network, not a whole sequence.

    Parameters
    ----------
    model : Sequential
        A character model (ids in, logits out).
    vocab : CharVocab
    prime : str
        Text to start from (every character must be in the vocabulary).
    length : int
        Characters to generate.
    temperature : float
        Divides the logits: below 1 is more conservative, above 1 more adventurous.
    rng : numpy.random.Generator, optional

    Returns
    -------
    str
        ``prime`` followed by the generated characters.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    rng = rng if rng is not None else np.random.default_rng()
    start = prime or ("\n" if "\n" in vocab else vocab.chars[0])
    ids = vocab.encode(start, drop_unknown=False)
    session = model.stream(batch_size=1)
    logits = session.run(ids)[-1]
    out = []
    for _ in range(length):
        z = logits.astype(np.float64) / temperature
        p = np.exp(z - z.max())
        cdf = np.cumsum(p)
        nxt = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")),
                  len(vocab) - 1)
        out.append(nxt)
        logits = session.step(nxt)
    return prime + vocab.decode(out)


# ---- the NumPy reference, for the speed comparison ---------------------------------------


@contextlib.contextmanager
def reference_ops(model: Sequential) -> Iterator[None]:
    """Run ``model``'s recurrent layers on :mod:`fastrnn.reference` (pure NumPy) instead of
    the native kernels inside a ``with`` block (:meth:`Sequential.set_ops`; used to time the
    same model both ways, never needed otherwise).

    Parameters
    ----------
    model : Sequential
        The model whose recurrent layers switch (back to :mod:`fastrnn.functional` on exit).

    Yields
    ------
    None
    """
    from fastrnn import functional, reference

    model.set_ops(reference)
    try:
        yield
    finally:
        model.set_ops(functional)


def _clone(model: Sequential, learning_rate: float) -> Sequential:
    twin = Sequential.from_config(model.get_config())
    twin.set_weights(model.get_weights())
    twin.compile(optimizer=optimizers.Adam(learning_rate, clipnorm=1.0),
                 loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    return twin


def with_precision(model: Sequential, precision: str) -> Sequential:
    """A copy of ``model`` (same weights) whose recurrent layers run in ``precision``.

    Parameters
    ----------
    model : Sequential
        A built model (not changed).
    precision : {"float32", "bfloat16", "int8"}
        float32 and bfloat16 set the recurrent layers' policy (``"float32"``,
        ``"mixed_bfloat16"``); int8 quantizes them (``Sequential.quantize("int8")``: inference
        only).

    Returns
    -------
    Sequential
        Not compiled.
    """
    if precision not in PRECISION_POLICIES:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_POLICIES)}, got "
                         f"{precision!r}")
    cfg = model.get_config()
    for lc in cfg["layers"]:
        if lc["class_name"] in ("SimpleRNN", "LSTM", "GRU"):
            lc["config"] = {**lc["config"], "dtype": PRECISION_POLICIES[precision]}
    twin = Sequential.from_config(cfg)
    twin.set_weights(model.get_weights())
    if precision == "int8":
        twin.quantize("int8")
    return twin


def model_precision(model: Sequential) -> str:
    """What the model's recurrent layers compute in (their ``precision``; float32 without).

    Parameters
    ----------
    model : Sequential

    Returns
    -------
    str
        ``"float32"``, ``"bfloat16"``, ``"int8"``, or the layers' precisions joined by ``/``
        where they differ.
    """
    precs = dict.fromkeys(layer.precision for layer in model.layers
                          if hasattr(layer, "precision"))
    return "/".join(precs) or "float32"


def compare_precisions(model: Sequential, x_val: np.ndarray, y_val: np.ndarray,
                       batch_size: int, chars: int = 100) -> list[dict[str, Any]]:
    """The trained model's inference in float32, bfloat16 and int8: quality and speed.

    Each precision runs a copy of ``model`` with the same weights (:func:`with_precision`):
    the validation loss (its perplexity, against float32's), the seconds of a ``predict``
    of the validation batch and of one generated character (a streaming step), timed in
    turns (:func:`interleaved`) so that other load slows every precision alike.

    Parameters
    ----------
    model : Sequential
        A trained character model (not changed).
    x_val, y_val : numpy.ndarray
        Validation windows: ids and next ids.
    batch_size : int
        Of ``predict`` and ``evaluate``.
    chars : int
        Streaming steps per timing.

    Returns
    -------
    list of dict
        One per precision: ``precision``, ``val_loss``, ``perplexity``, ``ppl_change``
        (relative to float32), ``predict_s``, ``char_s``.
    """
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    twins = {p: with_precision(model, p) for p in PRECISION_POLICIES}
    rows: dict[str, dict[str, Any]] = {}
    for p, twin in twins.items():
        twin.compile(loss=loss)
        val = float(twin.evaluate(x_val, y_val, batch_size=batch_size, verbose=0))
        rows[p] = {"precision": p, "val_loss": val, "perplexity": math.exp(min(val, 50.0))}
    for r in rows.values():
        r["ppl_change"] = r["perplexity"] / rows["float32"]["perplexity"] - 1.0
    xb = x_val[:batch_size]
    ids = np.resize(x_val[0], max(chars, 1))
    sessions = {p: twin.stream(batch_size=1) for p, twin in twins.items()}

    def predict(twin: Sequential) -> Callable[[], object]:
        return lambda: twin.predict(xb, batch_size=batch_size, verbose=0)

    def stream(session: Any) -> Callable[[], None]:
        def run() -> None:
            for i in ids:
                session.step(int(i))
        return run

    for p, twin in twins.items():  # warm up: prepared weights, kernel scratch
        predict(twin)()
        sessions[p].step(int(ids[0]))
    t_pred = interleaved({p: predict(t) for p, t in twins.items()}, 5, budget_s=10.0)
    t_char = interleaved({p: stream(s) for p, s in sessions.items()}, 5, budget_s=5.0)
    for p, r in rows.items():
        r["predict_s"] = t_pred[p]
        r["char_s"] = t_char[p] / len(ids)
    return list(rows.values())


def precision_lines(rows: list[dict[str, Any]], batch_size: int, seq_len: int) -> list[str]:
    """The demo's precision table (:func:`compare_precisions`).

    Parameters
    ----------
    rows : list of dict
        From :func:`compare_precisions`.
    batch_size, seq_len : int
        The validation batch's shape (for the column's name).

    Returns
    -------
    list of str
        A title, a header and one row per precision.
    """
    base = rows[0]
    out = ["Inference of the trained model in each precision (same weights; bfloat16: the "
           "'mixed_bfloat16' policy; int8: model.quantize('int8')):",
           f"  {'precision':10} {'val perplexity':>22} {f'predict {batch_size}x{seq_len}':>22}"
           f" {'one character':>22}"]
    for r in rows:
        ppl = f"{r['perplexity']:.3f}"
        pred, char = _ms(r["predict_s"]), _ms(r["char_s"])
        if r is not base:
            ppl += f" ({100 * r['ppl_change']:+.1f}%)"
            pred += f" ({base['predict_s'] / r['predict_s']:.2f}x)"
            char += f" ({base['char_s'] / r['char_s']:.2f}x)"
        out.append(f"  {r['precision']:10} {ppl:>22} {pred:>22} {char:>22}")
    out.append("  (x: float32's time / this one's, > 1: faster; noisy on a busy machine)")
    return out


def interleaved(fns: dict[str, Callable[[], object]], rounds: int,
                budget_s: float, pause_s: float = PAUSE_S) -> dict[str, float]:
    """Median seconds of each function, called in turn (a, b, a, b, ...).

    Taking turns makes other work on the machine slow every function alike, so their
    ratio is fair where the machine is busy; at least one round runs, and no new round
    starts past ``budget_s``. Each timed call comes after a pause of ``pause_s`` and one
    untimed call of the same function, as the benchmark grid times its samples: without the
    pause each side ran inside the other's spin window (OpenBLAS's idle threads spin for
    milliseconds after a call), which measured fastrnn's training step of the demo model
    at twice its time alone, and NumPy's at 1.3x.

    Parameters
    ----------
    fns : dict of str to callable
        The functions to time, by name (called without arguments).
    rounds : int
        Timed calls of each function at most.
    budget_s : float
        Seconds after which no new round starts.
    pause_s : float
        Seconds of sleep before each function's turn.

    Returns
    -------
    dict
        Name -> the median of its timed call times (seconds).
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    for r in range(max(rounds, 1)):
        if r and time.perf_counter() - start >= budget_s:
            break
        for name, fn in fns.items():
            time.sleep(pause_s)
            fn()  # untimed: wakes the threads the pause let sleep, as a busy program has them
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


@contextlib.contextmanager
def same_threads(n: int) -> Iterator[str]:
    """Run fastrnn and numpy's BLAS on ``n`` threads each inside a ``with`` block.

    fastrnn's thread count is restored on exit; numpy's BLAS stays on ``n`` threads.

    Parameters
    ----------
    n : int
        The thread count of both.

    Yields
    ------
    str
        numpy's BLAS and its thread count (:func:`fastrnn.bench.pin_blas_threads`), e.g.
        ``"OpenBLAS, 1 thread(s)"``.
    """
    from fastrnn import set_num_threads
    from fastrnn.bench import pin_blas_threads

    old = get_num_threads()
    set_num_threads(n)
    try:
        yield pin_blas_threads(n)
    finally:
        set_num_threads(old)


def _reference_step(model: Sequential) -> Callable[[int], np.ndarray]:
    """One character step of the model computed with :mod:`fastrnn.reference` (NumPy):
    returns a function id -> logits that carries the LSTM states from call to call."""
    from fastrnn import reference

    emb, *lstms, dense = model.layers
    table = emb.embeddings.value
    weights = [(layer.kernel.value, layer.recurrent_kernel.value, layer.bias.value)
               for layer in lstms]
    states = [[None, None] for _ in lstms]

    def step(i: int) -> np.ndarray:
        x = table[i][None, None]  # (T=1, B=1, features)
        for (w_ih, w_hh, b), st in zip(weights, states, strict=True):
            x, st[0], st[1], _ = reference.lstm_forward(x, st[0], st[1], w_ih, w_hh, b, None,
                                                        training=False)
        return x[0, 0] @ dense.kernel.value + dense.bias.value

    return step


def compare_with_reference(model: Sequential, x: np.ndarray, y: np.ndarray, steps: int = 3,
                           learning_rate: float = 3e-3, chars: int = 200,
                           threads: int | None = None) -> dict[str, Any]:
    """Time the same model on the native kernels and on the NumPy reference, fairly.

    Both run on the same number of threads (fastrnn's and numpy's BLAS, :func:`same_threads`)
    and take turns (:func:`interleaved`), so that other load on the machine slows both
    alike. Training: seconds per ``train_on_batch`` on ``(x, y)`` of two copies of ``model``
    (``model`` itself is not changed), one with its recurrent layers on the native kernels,
    one on :mod:`fastrnn.reference`. Generation: seconds per character, a streaming
    session's ``step`` against the reference op called one step at a time.

    Parameters
    ----------
    model : Sequential
        A character model (not changed).
    x, y : numpy.ndarray
        One training batch of ids and next ids.
    steps : int
        Training steps timed on each (fewer if they take more than 10 s).
    learning_rate : float
        The copies' Adam learning rate.
    chars : int
        Characters generated each way.
    threads : int, optional
        The thread count of both (default: fastrnn's current one).

    Returns
    -------
    dict
        ``train_native``, ``train_reference``, ``char_native``, ``char_reference``
        (seconds), ``threads`` (int) and ``blas`` (numpy's BLAS and its threads).
    """
    threads = get_num_threads() if threads is None else threads
    with same_threads(threads) as blas:
        native, ref = _clone(model, learning_rate), _clone(model, learning_rate)
        with reference_ops(ref):
            native.train_on_batch(x, y)  # warm up: optimizer slots, kernel scratch
            ref.train_on_batch(x, y)
            out: dict[str, Any] = {
                f"train_{k}": v for k, v in interleaved(
                    {"native": lambda: native.train_on_batch(x, y),
                     "reference": lambda: ref.train_on_batch(x, y)},
                    steps, budget_s=10.0).items()}
        block = max(chars // 5, 1)
        ids = np.resize(x[0], block)
        session = model.stream(batch_size=1)
        ref_step = _reference_step(model)
        session.step(int(ids[0]))
        ref_step(int(ids[0]))

        def run(step: Callable[[int], object]) -> Callable[[], None]:
            def chars_() -> None:
                for i in ids:
                    step(int(i))
            return chars_

        per_block = interleaved({"native": run(session.step), "reference": run(ref_step)},
                                5, budget_s=5.0)
    out.update({f"char_{k}": v / block for k, v in per_block.items()})
    out.update(threads=threads, blas=blas)
    return out


def speed_lines(speed: dict[str, Any], batch_size: int, seq_len: int) -> list[str]:
    """The demo's speed table: fastrnn against the NumPy reference on the same threads.

    Parameters
    ----------
    speed : dict
        From :func:`compare_with_reference`.
    batch_size, seq_len : int
        The training batch's shape (for the row's name).

    Returns
    -------
    list of str
        A title (two lines) naming the thread count of both, a header and two rows.
    """
    n = speed["threads"]
    tn, tr = speed["train_native"], speed["train_reference"]
    cn, cr = speed["char_native"], speed["char_reference"]
    what = f"training step ({batch_size} x {seq_len} characters)"
    w = max(len(what), 24)
    return [f"Speed of this model, both on {n} thread{'s' if n > 1 else ''}: fastrnn's C "
            "kernels against fastrnn.reference, its NumPy twin",
            f"({speed['blas']}; same weights, same maths), taking turns so that other load "
            "slows both alike:",
            f"  {'':{w}}   fastrnn       NumPy",
            f"  {what:{w}}  {_ms(tn)}  {_ms(tr)}  {_ratio(tr, tn)}",
            f"  {'generating one character':{w}}  {_ms(cn)}  {_ms(cr)}  {_ratio(cr, cn)}"]


def pick_threads(model: Sequential, x: np.ndarray, y: np.ndarray) -> tuple[int, str]:
    """Use one thread when that trains faster than all of them.

    A machine busy with other work makes threads wait for each other at every timestep.

    Parameters
    ----------
    model : Sequential
        The model to time (trained on ``x``, ``y`` a few steps).
    x, y : numpy.ndarray
        One training batch.

    Returns
    -------
    threads : int
        The thread count in effect.
    note : str
        A note for the user (empty when all threads are kept).
    """
    from fastrnn import set_num_threads

    n = get_num_threads()
    if n == 1:
        return 1, ""
    model.train_on_batch(x, y)  # warm up
    timing = {}
    for k in (n, 1, n, 1):
        set_num_threads(k)
        t = time.perf_counter()
        model.train_on_batch(x, y)
        dt = time.perf_counter() - t
        timing[k] = min(dt, timing.get(k, dt))
    if timing[1] < 0.8 * timing[n]:
        set_num_threads(1)
        return 1, (f" (faster than {n} right now: this machine is busy with other work; "
                   f"--threads {n} to insist)")
    set_num_threads(n)
    return n, ""


# ---- the demo ------------------------------------------------------------------------------


class _Progress:
    """One line per epoch: redrawn in place on a terminal; on a pipe or in a log only the
    line of the finished epoch is written (through ``print_fn``)."""

    def __init__(self, epochs: int, print_fn: Callable[[str], None]) -> None:
        self.epochs = epochs
        self.print_fn = print_fn
        self.live = sys.stdout.isatty()
        self._last = 0.0
        self._shown = 0

    def _line(self, epoch: int, frac: float, elapsed: float, loss: float, rate: float) -> str:
        done = int(round(20 * min(max(frac, 0.0), 1.0)))
        bar = "━" * done + "╌" * (20 - done)
        if self.live:
            bar = f"\x1b[32m{'━' * done}\x1b[90m{'━' * (20 - done)}\x1b[0m"
        ppl = math.exp(min(loss, 50.0))
        return (f"Epoch {epoch}/{self.epochs} {bar} {elapsed:4.1f}s  loss {loss:.3f}  "
                f"ppl {ppl:5.2f}  {rate:7,.0f} chars/s")

    def _draw(self, text: str, end: str = "") -> None:
        sys.stdout.write("\r" + text + " " * max(0, self._shown - len(text)) + end)
        sys.stdout.flush()
        self._shown = 0 if end else len(text)

    def update(self, epoch: int, frac: float, elapsed: float, loss: float,
               rate: float) -> None:
        now = time.perf_counter()
        if self.live and now - self._last >= 0.1:
            self._last = now
            self._draw(self._line(epoch, frac, elapsed, loss, rate))

    def finish(self, epoch: int, elapsed: float, loss: float, rate: float,
               extra: str = "") -> None:
        text = self._line(epoch, 1.0, elapsed, loss, rate) + extra
        if self.live:
            self._draw(text, end="\n")
        else:
            self.print_fn(text)

    def abort(self) -> None:
        if self.live and self._shown:
            self._draw("", end="\n")


def _show_sample(text: str, lines: int = 8, width: int = 96) -> str:
    rows = text.split("\n")[:lines]
    return "\n".join("  │ " + (r if len(r) <= width else r[:width - 1] + "…") for r in rows)


@dataclass
class DemoSettings:
    """Settings of :func:`run_demo` (the ``fastrnn demo`` options)."""

    text: str | None = None
    max_chars: int = 1_000_000
    units: int = 256
    embed: int = 48
    layers: int = 1
    seq_len: int = 64
    batch_size: int = 32
    learning_rate: float = 3e-3
    epochs: int = 5
    minutes: float = 0.8
    steps_per_epoch: int | None = None
    sample_length: int = 240
    temperature: float = 0.7
    prime: str | None = None  # None: "def " for the Python corpus, else corpus_prime(text)
    compare_steps: int = 3
    precision: str = "float32"  # of training: "float32" or "bfloat16"
    compare_precisions: bool = True  # the inference table in float32, bfloat16 and int8
    out: str = DEFAULT_MODEL
    seed: int = 0
    threads_fixed: bool = False  # True: keep the thread count (else one thread if faster)


def run_demo(s: DemoSettings, print_fn: Callable[[str], None] = print) -> dict:
    """Train a character-level LSTM on ``s.text`` (default: the standard library's source),
    showing progress and samples, then time it against the NumPy reference and save it.

    Parameters
    ----------
    s : DemoSettings
    print_fn : callable
        Where the lines go.

    Returns
    -------
    dict
        ``loss``, ``val_loss`` (last epoch), ``chars_per_s``, ``seconds`` (training),
        ``speed`` (see :func:`compare_with_reference`; empty if not compared), ``samples``
        (one per epoch), ``path``, ``threads``, ``precisions`` (see
        :func:`compare_precisions`; empty if not compared).
    """
    t_start = time.perf_counter()
    corpus = read_text(s.text, s.max_chars) if s.text else default_corpus(s.max_chars)
    vocab = CharVocab.from_text(corpus.text)
    ids = vocab.encode(corpus.text)
    window = s.seq_len + 1
    n_val = max(len(ids) // 20, window)
    if len(ids) - n_val < window or len(vocab) < 2:
        raise CorpusError(f"{corpus.source}: too short ({len(ids):,} usable characters); "
                          f"need at least {window + n_val:,} for --seq-len {s.seq_len}")
    train_ids, val_ids = ids[:-n_val], ids[-n_val:]
    set_random_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    model = build_char_model(len(vocab), s.embed, s.units, s.layers, s.learning_rate,
                             s.precision)

    windows = np.lib.stride_tricks.sliding_window_view(train_ids, window)
    val_windows = np.lib.stride_tricks.sliding_window_view(val_ids, window)
    val_pick = val_windows[np.linspace(0, len(val_windows) - 1,
                                       min(len(val_windows), 4 * s.batch_size)).astype(int)]
    x_val, y_val = val_pick[:, :-1], val_pick[:, 1:]

    def batch() -> tuple[np.ndarray, np.ndarray]:
        w = windows[rng.integers(0, len(windows), s.batch_size)]
        return w[:, :-1], w[:, 1:]

    if s.prime is not None:
        prime = s.prime
    else:
        prime = corpus_prime(corpus.text) if s.text else "def "
    if not all(c in vocab for c in prime):
        prime = "\n"
    threads, note = (get_num_threads(), "") if s.threads_fixed else pick_threads(model, *batch())
    budget = None if s.steps_per_epoch else s.minutes * 60.0 / s.epochs
    print_fn("fastrnn demo: a character-level LSTM language model, trained on this CPU")
    print_fn(f"  text     {len(ids):,} characters ({len(vocab)} distinct) of {corpus.source}")
    if corpus.location:
        print_fn(f"           ({corpus.location})")
    print_fn(f"  model    {_describe(model)}, {model.count_params():,} parameters")
    print_fn(f"  samples  start from {prime!r}" + ("" if s.prime is not None else
                                                    " (--prime TEXT to change)"))
    plan = (f"{s.epochs} epochs of {budget:.0f} s" if budget is not None
            else f"{s.epochs} epochs of {s.steps_per_epoch} steps")
    print_fn(f"  training {plan}: batches of {s.batch_size} windows x {s.seq_len} characters, "
             f"Adam(lr={s.learning_rate:g}), {threads} thread{'s' if threads > 1 else ''}{note}"
             + ("" if s.precision == "float32" else
                f", LSTM in {s.precision} ('mixed_bfloat16' policy)"))
    print_fn("")

    progress = _Progress(s.epochs, print_fn)
    samples: list[str] = []
    chars_done = 0
    train_time = 0.0
    loss_mean = val_loss = float("nan")
    interrupted = False
    try:
        for epoch in range(1, s.epochs + 1):
            t0 = time.perf_counter()
            total, steps, frac = 0.0, 0, 0.0
            while frac < 1.0:
                xb, yb = batch()
                t_step = time.perf_counter()
                total += float(model.train_on_batch(xb, yb))
                now = time.perf_counter()
                train_time += now - t_step
                chars_done += xb.size
                steps += 1
                elapsed = now - t0
                loss_mean = total / steps
                frac = steps / s.steps_per_epoch if budget is None else elapsed / budget
                progress.update(epoch, frac, elapsed, loss_mean, chars_done / train_time)
            val_loss = float(model.evaluate(x_val, y_val, batch_size=s.batch_size, verbose=0))
            progress.finish(epoch, elapsed, loss_mean, chars_done / train_time,
                            extra=f"  val ppl {math.exp(min(val_loss, 50.0)):.2f}")
            sample = generate(model, vocab, prime, s.sample_length, s.temperature, rng)
            samples.append(sample)
            print_fn(f"  sample at temperature {s.temperature:g}:")
            print_fn(_show_sample(sample))
            print_fn("")
    except KeyboardInterrupt:
        interrupted = True
        progress.abort()
        print_fn("Stopped by Ctrl-C: saving the model as it is (Ctrl-C again to quit).")
        if not np.isfinite(val_loss):
            val_loss = float(model.evaluate(x_val, y_val, batch_size=s.batch_size, verbose=0))

    rate = chars_done / train_time if train_time > 0 else 0.0
    print_fn(f"Trained on {chars_done:,} characters in {train_time:.1f} s "
             f"({rate:,.0f} characters/s): loss {loss_mean:.3f}, validation perplexity "
             f"{math.exp(min(val_loss, 50.0)):.2f}")

    speed: dict[str, Any] = {}
    if s.compare_steps > 0 and not interrupted:
        xb, yb = batch()
        speed = compare_with_reference(model, xb, yb, s.compare_steps, s.learning_rate,
                                       threads=threads)
        print_fn("")
        for line in speed_lines(speed, s.batch_size, s.seq_len):
            print_fn(line)
    precisions: list[dict[str, Any]] = []
    if s.compare_precisions and not interrupted:
        with same_threads(threads):
            precisions = compare_precisions(model, x_val, y_val, s.batch_size)
        print_fn("")
        for line in precision_lines(precisions, s.batch_size, s.seq_len):
            print_fn(line)

    replaced = os.path.lexists(s.out)
    save_char_model(model, vocab, s.out, {"source": corpus.source, "seq_len": s.seq_len,
                                          "text": os.path.abspath(s.text) if s.text else ""})
    print_fn("")
    print_fn(f"Saved the model of {corpus.source} to {s.out}"
             f"{', replacing the earlier one' if replaced else ''} "
             f"({time.perf_counter() - t_start:.0f} s in all). Next, try:")
    next_prime = "class " if not s.text else prime
    print_fn(f"  fastrnn generate {shlex.quote(s.out)} --prime {shlex.quote(next_prime)} "
             "--length 400 --temperature 0.6")
    return {"loss": loss_mean, "val_loss": val_loss, "chars_per_s": rate,
            "seconds": train_time, "speed": speed, "samples": samples, "path": s.out,
            "threads": threads, "precisions": precisions}


def _ms(seconds: float) -> str:
    if seconds >= 0.1:
        return f"{seconds * 1e3:7,.0f} ms"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:7.1f} ms"
    return f"{seconds * 1e6:7.1f} us"
