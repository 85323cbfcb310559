"""A word-language model as pytorch/examples' ``word_language_model`` builds it (an embedding
encoder, a torch.nn RNN/LSTM/GRU, a linear decoder, optionally tied), for
tests/test_torch_wlm.py. Written for these tests; it imports torch only, so that a process
loading a pickled model through this module has not imported fastrnn."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WordModel(nn.Module):
    """Encoder, recurrent module and decoder; ``forward(tokens, hidden)`` returns the
    log-probabilities (T*B, ntoken) and the new hidden state."""

    def __init__(self, kind: str, ntoken: int, ninp: int, nhid: int, nlayers: int,
                 dropout: float = 0.2, tied: bool = False) -> None:
        super().__init__()
        self.kind, self.ntoken, self.nhid, self.nlayers = kind, ntoken, nhid, nlayers
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        if kind in ("LSTM", "GRU"):
            self.rnn = getattr(nn, kind)(ninp, nhid, nlayers, dropout=dropout)
        else:
            self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity=kind[4:].lower(),
                              dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tied:
            self.decoder.weight = self.encoder.weight
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, tokens: torch.Tensor, hidden):
        out, hidden = self.rnn(self.drop(self.encoder(tokens)), hidden)
        decoded = self.decoder(self.drop(out)).view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz: int):
        w = next(self.parameters())
        h = w.new_zeros(self.nlayers, bsz, self.nhid)
        return (h, w.new_zeros(self.nlayers, bsz, self.nhid)) if self.kind == "LSTM" else h


def detach(hidden):
    """The hidden state cut from its history (the example's ``repackage_hidden``)."""
    if isinstance(hidden, torch.Tensor):
        return hidden.detach()
    return tuple(detach(h) for h in hidden)


def evaluate(model: WordModel, data: torch.Tensor, bptt: int) -> float:
    """The mean negative log-likelihood of ``data`` (T, B) tokens in eval mode, in chunks of
    ``bptt`` steps with the hidden state carried over (as the example's ``evaluate``)."""
    model.eval()
    total = 0.0
    hidden = model.init_hidden(data.shape[1])
    with torch.no_grad():
        for i in range(0, data.shape[0] - 1, bptt):
            n = min(bptt, data.shape[0] - 1 - i)
            out, hidden = model(data[i:i + n], hidden)
            hidden = detach(hidden)
            total += n * F.nll_loss(out, data[i + 1:i + 1 + n].reshape(-1)).item()
    return total / (data.shape[0] - 1)
