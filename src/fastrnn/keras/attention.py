"""Attention over a sequence: :class:`Attention` (Luong, dot or concat scores) and
:class:`AdditiveAttention` (Bahdanau), Keras 3's maths, weights and masks.

Inputs are ``[query, value]`` or ``[query, value, key]`` (key defaults to value), of shapes
``(batch, Tq, dim)``, ``(batch, Tv, dim_v)``, ``(batch, Tv, dim)``; the output is
``(batch, Tq, dim_v)``::

    scores = score(query, key)                      # (batch, Tq, Tv)
    weights = softmax(scores with masked keys at -1e9)
    output = weights @ value                        # zero where the query is masked

These are multi-input layers (see :mod:`fastrnn.keras.merging`); the call argument
``use_causal_mask=True`` (each query step attends to key steps <= its own) is also a keyword
of ``forward``, and an eager call takes ``return_attention_scores=True``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import rng
from .base import Variable, check_float
from .merging import MultiInputLayer

__all__ = ["AdditiveAttention", "Attention"]

_BIG = 1.0e9  # Keras subtracts this from masked scores


def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class _BaseAttention(MultiInputLayer):
    """Masks, softmax, dropout and the weighted sum; subclasses compute the scores."""

    min_inputs = 2
    max_inputs = 3

    def __init__(self, use_scale: bool, dropout: float, seed: int | None,
                 causal: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.causal = bool(causal)
        self.use_scale = bool(use_scale)
        self.dropout = check_float(type(self).__name__, "dropout", dropout, 0.0, 1.0,
                                   hi_open=True)
        self.seed = seed
        self._rng = rng(seed) if seed is not None else None
        self.last_attention_scores: np.ndarray | None = None

    def check_input_shape(self, shapes: Any) -> None:
        names = ("query", "value", "key")
        for nm, s in zip(names, shapes, strict=False):
            if len(s) != 3:
                raise ValueError(f"layer {self.name!r} ({type(self).__name__}) expects {nm} of "
                                 f"shape (batch, steps, dim), got shape {tuple(s)}")
        q, v = shapes[0], shapes[1]
        k = shapes[2] if len(shapes) > 2 else v
        if q[-1] is None or k[-1] is None or v[-1] is None:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) needs known last "
                             f"dimensions, got shapes {[tuple(s) for s in shapes]}")
        if q[-1] != k[-1]:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) expects query and "
                             f"key of one last dimension, got query {tuple(q)} and key "
                             f"{tuple(k)}")
        if k[1] is not None and v[1] is not None and k[1] != v[1]:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) expects key and "
                             f"value of one length, got key {tuple(k)} and value {tuple(v)}")

    def compute_output_shape(self, input_shape: Any) -> tuple:
        q, v = tuple(input_shape[0]), tuple(input_shape[1])
        return q[:-1] + (v[-1],)

    def compute_mask(self, inputs: Any, mask: Any) -> np.ndarray | None:
        if not mask or mask[0] is None:
            return None
        return np.asarray(mask[0], dtype=bool)

    # scores(q, k) -> (scores, ctx) and scores_backward(ds, ctx) -> (dq, dk)
    def _scores(self, q: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def _scores_backward(self, ds: np.ndarray, ctx: Any) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def forward(self, xs, masks, training, use_causal_mask: bool | None = None):
        if use_causal_mask is None:
            use_causal_mask = self.causal
        q, v = xs[0], xs[1]
        k = xs[2] if len(xs) > 2 else v
        qm = masks[0] if masks else None
        vm = masks[1] if masks and len(masks) > 1 else None
        s, sctx = self._scores(q, k)
        smask = None if vm is None else np.asarray(vm, dtype=bool)[:, None, :]
        if use_causal_mask:
            causal = np.tril(np.ones((s.shape[1], s.shape[2]), dtype=bool))[None]
            smask = causal if smask is None else smask & causal
        if smask is not None:
            s = np.where(smask, s, s - _BIG)
        w = _softmax(s).astype(q.dtype, copy=False)
        self.last_attention_scores = w
        keep = None
        wd = w
        if training and self.dropout > 0:
            g = self._rng if self._rng is not None else rng()
            keep = (g.random(w.shape) >= self.dropout) / (1.0 - self.dropout)
            wd = (w * keep).astype(q.dtype, copy=False)
        out = np.matmul(wd, v)
        if qm is not None:
            out = np.where(np.asarray(qm, dtype=bool)[..., None], out, 0).astype(q.dtype,
                                                                                copy=False)
        self._cache = (v, w, wd, keep, qm, sctx, len(xs)) if training else None
        return out, (None if qm is None else np.asarray(qm, dtype=bool))

    def backward(self, dy, need_dx=True):
        v, w, wd, keep, qm, sctx, n = self._cache
        self._cache = None
        if qm is not None:
            dy = np.where(np.asarray(qm, dtype=bool)[..., None], dy, 0)
        dv = np.matmul(wd.transpose(0, 2, 1), dy)
        dw = np.matmul(dy, v.transpose(0, 2, 1))
        if keep is not None:
            dw = dw * keep
        ds = w * (dw - (dw * w).sum(axis=-1, keepdims=True))
        dq, dk = self._scores_backward(ds, sctx)
        dt = v.dtype
        if n == 2:
            return [dq.astype(dt, copy=False), (dv + dk).astype(dt, copy=False)]
        return [dq.astype(dt, copy=False), dv.astype(dt, copy=False), dk.astype(dt, copy=False)]

    def __call__(self, inputs: Any, mask: Any = None, training: Any = None,
                 return_attention_scores: bool = False, use_causal_mask: bool | None = None
                 ) -> Any:
        """Eager call on ``[query, value(, key)]`` with ``mask=[query_mask, value_mask]``, or a
        call on symbolic tensors (functional API).

        In a functional model ``use_causal_mask=True`` is recorded on the layer (its
        ``causal`` attribute, saved with it): a layer is causal in all its calls or in none.
        """
        from .symbolic import is_symbolic

        if is_symbolic(inputs):
            if use_causal_mask is not None and bool(use_causal_mask) != self.causal:
                if getattr(self, "_inbound_nodes", None):
                    raise ValueError(f"layer {self.name!r} ({type(self).__name__}) was called "
                                     f"with use_causal_mask={self.causal} before; a layer "
                                     "shared by several calls must use one setting")
                self.causal = bool(use_causal_mask)
            kw = {"return_attention_scores": True} if return_attention_scores else {}
            return super().__call__(inputs, mask=mask, training=training, **kw)
        if mask is not None and isinstance(mask, (list, tuple)) and len(mask) < len(inputs):
            mask = list(mask) + [None] * (len(inputs) - len(mask))
        y = super().__call__(inputs, mask=mask, training=training,
                             use_causal_mask=use_causal_mask)
        if return_attention_scores:
            return y, self.last_attention_scores
        return y

    def get_config(self) -> dict:
        return {**super().get_config(), "use_scale": self.use_scale, "dropout": self.dropout,
                "seed": self.seed, "causal": self.causal}


class Attention(_BaseAttention):
    """Dot-product (Luong) attention, Keras 3's ``layers.Attention``.

    Parameters
    ----------
    use_scale : bool
        Learn a scalar ``scale`` multiplying the scores (default False).
    score_mode : {'dot', 'concat'}
        ``'dot'``: ``query @ key.T``; ``'concat'``:
        ``concat_score_weight * sum(tanh(scale * (query + key)))``.
    dropout : float
        Dropout on the attention weights in training.
    seed : int, optional
    causal : bool
        Keras 2's argument: always apply the causal mask (what ``use_causal_mask=True`` at a
        functional call records).

    Notes
    -----
    Weights, in Keras's order: ``scale`` () with ``use_scale``, ``concat_score_weight`` ()
    with ``score_mode='concat'``.
    """

    def __init__(self, use_scale: bool = False, score_mode: str = "dot", dropout: float = 0.0,
                 seed: int | None = None, causal: bool = False, **kwargs: Any) -> None:
        super().__init__(use_scale, dropout, seed, causal, **kwargs)
        if score_mode not in ("dot", "concat"):
            raise ValueError(f"Attention: score_mode must be 'dot' or 'concat', got "
                             f"{score_mode!r}")
        self.score_mode = score_mode

    def _scalar(self, name: str) -> Variable:
        v = self.add_weight(name, (), "ones")
        v.value = v.value.reshape(())  # stored 0-d, as Keras's shape () weight
        return v

    def build(self, input_shape: Any) -> None:
        self.scale = self._scalar("scale") if self.use_scale else None
        self.concat_score_weight = (self._scalar("concat_score_weight")
                                    if self.score_mode == "concat" else None)
        self.built = True

    def _scores(self, q, k):
        if self.score_mode == "dot":
            raw = np.matmul(q, k.transpose(0, 2, 1))
            s = raw if self.scale is None else raw * self.scale.value
            return s, (q, k, raw)
        a = q[:, :, None, :] + k[:, None, :, :]
        if self.scale is not None:
            a_in = a
            a = a * self.scale.value
        else:
            a_in = None
        t = np.tanh(a)
        tsum = t.sum(axis=-1)
        s = self.concat_score_weight.value * tsum
        return s, (q, k, t, tsum, a_in)

    def _scores_backward(self, ds, ctx):
        if self.score_mode == "dot":
            q, k, raw = ctx
            if self.scale is not None:
                self.scale.grad = np.asarray((ds * raw).sum(), dtype=q.dtype)
                ds = ds * self.scale.value
            return np.matmul(ds, k), np.matmul(ds.transpose(0, 2, 1), q)
        q, k, t, tsum, a_in = ctx
        csw = self.concat_score_weight
        csw.grad = np.asarray((ds * tsum).sum(), dtype=q.dtype)
        da = (csw.value * ds)[..., None] * (1.0 - t * t)
        if self.scale is not None:
            self.scale.grad = np.asarray((da * a_in).sum(), dtype=q.dtype)
            da = da * self.scale.value
        return da.sum(axis=2), da.sum(axis=1)

    def get_config(self) -> dict:
        return {**super().get_config(), "score_mode": self.score_mode}


class AdditiveAttention(_BaseAttention):
    """Additive (Bahdanau) attention, Keras 3's ``layers.AdditiveAttention``:
    ``scores = sum(scale * tanh(query + key), axis=-1)``.

    Parameters
    ----------
    use_scale : bool
        Learn a ``scale`` vector of the query's dimension (default True).
    dropout : float
    seed : int, optional
    """

    def __init__(self, use_scale: bool = True, dropout: float = 0.0, seed: int | None = None,
                 causal: bool = False, **kwargs: Any) -> None:
        super().__init__(use_scale, dropout, seed, causal, **kwargs)

    def build(self, input_shape: Any) -> None:
        dim = int(input_shape[0][-1])
        self.scale = (self.add_weight("scale", (dim,), "glorot_uniform")
                      if self.use_scale else None)
        self.built = True

    def _scores(self, q, k):
        t = np.tanh(q[:, :, None, :] + k[:, None, :, :])
        s = (t * self.scale.value).sum(axis=-1) if self.scale is not None else t.sum(axis=-1)
        return s, t

    def _scores_backward(self, ds, t):
        dt = ds[..., None]
        if self.scale is not None:
            self.scale.grad = (dt * t).sum(axis=(0, 1, 2)).astype(t.dtype, copy=False)
            dt = dt * self.scale.value
        da = dt * (1.0 - t * t)
        return da.sum(axis=2), da.sum(axis=1)
