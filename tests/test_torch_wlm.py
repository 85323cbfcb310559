"""The word-language-model program (pytorch/examples' ``word_language_model``) with one line
added, ``fastrnn.torch.accelerate(model)``, in miniature and without its data files.

An embedding encoder, a recurrent module (LSTM, GRU or tanh RNN, two layers with dropout,
tied or untied decoder) and a linear decoder train for a few truncated-BPTT steps exactly as
the program does (hidden state carried and detached, gradient clipping, a manual SGD step);
the per-step losses equal torch.nn's at the same seed (float32 rounding). The whole model is
then saved with ``torch.save(model)`` and loaded with a plain ``torch.load`` (torch's default
``weights_only=True``, torch's own classes allowlisted as the program does) in a process that
has not imported fastrnn, and in this one; the loaded models' test losses equal torch.nn's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import _wlm_model as wlm  # noqa: E402
from torch import nn  # noqa: E402

import fastrnn  # noqa: E402
import fastrnn.torch as ft  # noqa: E402

# the drop-in must run fastrnn's kernels throughout, never torch's implementation
pytestmark = pytest.mark.filterwarnings("error::fastrnn.torch.FallbackWarning")
TESTS = Path(__file__).resolve().parent
PKG_PARENT = Path(fastrnn.__file__).resolve().parent.parent
NTOKEN, EMSIZE, NLAYERS, BATCH, BPTT, STEPS, LR, CLIP = 40, 12, 2, 4, 6, 6, 20.0, 0.25
#: the classes the program allowlists before its final torch.load
SAFE = "[wlm.WordModel, nn.Dropout, nn.Linear, nn.GRU, nn.LSTM, nn.RNN, nn.Embedding]"
_LOADER = f"""
import sys
import torch
from torch import nn
import _wlm_model as wlm
data = torch.load(sys.argv[1])
results = {{}}
for path in sys.argv[3:]:
    with torch.serialization.safe_globals({SAFE}):
        model = torch.load(path)  # torch's default: weights_only=True
    model.rnn.flatten_parameters()
    results[path] = {{"type": type(model.rnn).__module__ + "." + type(model.rnn).__qualname__,
                     "tied": model.decoder.weight is model.encoder.weight,
                     "loss": wlm.evaluate(model, data, {BPTT})}}
assert "fastrnn" not in sys.modules, "the loader imported fastrnn"
torch.save(results, sys.argv[2])
"""


def corpus(seed: int, steps: int) -> torch.Tensor:
    """Token ids (steps * BPTT + 1, BATCH): the example's batchified columns."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, NTOKEN, (steps * BPTT + 1, BATCH), generator=g)


def train(kind: str, tied: bool, accelerated: bool) -> tuple[wlm.WordModel, list[float]]:
    """The program's ``train()`` for STEPS batches from seed 1111; returns the model and
    the per-batch losses."""
    torch.manual_seed(1111)
    model = wlm.WordModel(kind, NTOKEN, EMSIZE, EMSIZE, NLAYERS, dropout=0.2, tied=tied)
    if accelerated:
        ft.accelerate(model)  # the one added line
    data = corpus(0, STEPS)
    model.train()
    hidden = model.init_hidden(BATCH)
    losses = []
    for i in range(0, data.shape[0] - 1, BPTT):
        model.zero_grad()
        hidden = wlm.detach(hidden)
        out, hidden = model(data[i:i + BPTT], hidden)
        loss = nn.functional.nll_loss(out, data[i + 1:i + 1 + BPTT].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-LR)
        losses.append(loss.item())
    return model, losses


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN_TANH"])
def test_word_language_model_trains_saves_and_loads_as_with_torch_nn(kind, tied, tmp_path):
    ref, ref_losses = train(kind, tied, accelerated=False)
    fast, fast_losses = train(kind, tied, accelerated=True)
    assert type(fast.rnn) in (ft.LSTM, ft.GRU, ft.RNN)
    torch.testing.assert_close(fast_losses, ref_losses, rtol=2e-5, atol=0)
    assert ref_losses[-1] != ref_losses[0]  # it did train
    test_data = corpus(1, 3)
    torch.save(test_data, tmp_path / "test.pt")
    for name, model in (("torch", ref), ("fastrnn", fast)):
        with open(tmp_path / f"{name}.pt", "wb") as f:
            torch.save(model, f)  # the whole model, as the program saves it
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(PKG_PARENT)]))
    r = subprocess.run([sys.executable, "-c", _LOADER, str(tmp_path / "test.pt"),
                        str(tmp_path / "out.pt"), "torch.pt", "fastrnn.pt"],
                       env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = torch.load(tmp_path / "out.pt")
    results = {name: out[f"{name}.pt"] for name in ("torch", "fastrnn")}
    torch_cls = type(ref.rnn)
    assert results["fastrnn"]["type"] == f"{torch_cls.__module__}.{torch_cls.__qualname__}"
    assert results["fastrnn"]["tied"] is tied
    # the test losses of the two saved models, loaded without fastrnn
    assert results["fastrnn"]["loss"] == pytest.approx(results["torch"]["loss"], rel=2e-5)
    # in this process (fastrnn imported): loads as torch's module; accelerate() again
    with torch.serialization.safe_globals([wlm.WordModel, nn.Dropout, nn.Linear, nn.GRU,
                                           nn.LSTM, nn.RNN, nn.Embedding]):
        loaded = torch.load(tmp_path / "fastrnn.pt")
    assert type(loaded.rnn) is torch_cls
    ft.accelerate(loaded)
    loaded.rnn.flatten_parameters()
    assert type(loaded.rnn) is type(fast.rnn)
    assert (loaded.decoder.weight is loaded.encoder.weight) is tied
    assert wlm.evaluate(loaded, test_data, BPTT) == pytest.approx(
        results["fastrnn"]["loss"], rel=1e-6)
