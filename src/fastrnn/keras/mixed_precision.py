"""Keras's dtype policies: mixed bfloat16 compute and int8-quantized inference.

As in Keras 3 (``keras.mixed_precision``), a policy names the dtype a layer computes in
(``compute_dtype``) and the dtype its weights are kept in (``variable_dtype``)::

    from fastrnn.keras import mixed_precision
    mixed_precision.set_global_policy("mixed_bfloat16")   # every layer created from now on
    layer = LSTM(64, dtype="mixed_bfloat16")              # or one layer

Under ``"mixed_bfloat16"`` the recurrent layers (SimpleRNN, LSTM, GRU, also inside
Bidirectional) run fastrnn's bfloat16 kernels (``precision="bfloat16"`` of
:func:`fastrnn.functional.cell_forward`: GEMM operands rounded to bfloat16, float32
accumulation, gate maths, states and gradients) on float32 master weights. The other layers
(Dense, Embedding, ...) keep computing in float32: their outputs and gradients are what
they are under ``"float32"``. Unlike Keras, outputs stay float32 arrays (NumPy has no
bfloat16), and no loss scaling is needed (bfloat16 has float32's exponent range).

``Sequential.quantize("int8")`` (Keras 3's ``model.quantize``) turns each recurrent layer's
policy into ``"int8_from_<its policy>"``: its inference then runs the int8 kernels on weights
quantized once (per output channel, symmetric) and reused until the weights change. int8 is
inference only: training a quantized layer raises a ValueError.

Policies accepted: ``"float32"``, ``"float64"``, ``"mixed_bfloat16"`` and the quantized
``"int8_from_float32"`` / ``"int8_from_mixed_bfloat16"``. Keras's ``"bfloat16"``,
``"float16"`` and ``"mixed_float16"`` would keep weights or compute in a type fastrnn has no
kernels for; they are a ValueError.
"""

from __future__ import annotations

from typing import Any

from .backend import floatx, standardize_float_dtype

__all__ = [
    "DTypePolicy",
    "Policy",
    "QUANTIZATION_MODES",
    "QuantizedDTypePolicy",
    "dtype_policy",
    "get",
    "global_policy",
    "set_dtype_policy",
    "set_global_policy",
]

#: The modes of :meth:`fastrnn.keras.models.Sequential.quantize` (Keras has more; fastrnn's
#: kernels have int8).
QUANTIZATION_MODES: tuple[str, ...] = ("int8",)

_MIXED = {"mixed_bfloat16": "bfloat16"}
_GLOBAL: DTypePolicy | None = None


class DTypePolicy:
    """A layer's dtype policy (Keras 3's ``keras.DTypePolicy``).

    Its properties: ``name``, ``compute_dtype`` (what the layer computes in: ``"bfloat16"``
    for the recurrent layers under ``"mixed_bfloat16"``, whose other layers compute in
    float32), ``variable_dtype`` (the weights' dtype), ``quantization_mode`` (``"int8"`` for
    a quantized policy, else None) and ``precision`` (the ops' ``precision=``).

    Parameters
    ----------
    name : str
        ``"float32"``, ``"float64"`` or ``"mixed_bfloat16"`` (default: the float type,
        :func:`fastrnn.keras.models.floatx`).

    Raises
    ------
    ValueError
        For a name fastrnn has no kernels for.
    """

    def __init__(self, name: str | None = None) -> None:
        if name is None:
            name = floatx()
        if not isinstance(name, str):
            raise TypeError(f"a dtype policy name must be a string, got {type(name).__name__}")
        if name in _MIXED:
            self._compute, self._variable = _MIXED[name], "float32"
        else:
            try:
                self._variable = standardize_float_dtype(name, "dtype policy")
            except ValueError:
                raise ValueError(
                    f"dtype must be 'float32' or 'float64' or the policy 'mixed_bfloat16' (or "
                    f"the quantized 'int8_from_<policy>' that Sequential.quantize('int8') "
                    f"makes), got {name!r}") from None
            self._compute = self._variable
        self._name = name

    @property
    def name(self) -> str:
        """The policy's name."""
        return self._name

    @property
    def compute_dtype(self) -> str:
        """The dtype the (recurrent) layers compute in."""
        return self._compute

    @property
    def variable_dtype(self) -> str:
        """The dtype of the weights."""
        return self._variable

    @property
    def quantization_mode(self) -> str | None:
        """None: not quantized."""
        return None

    @property
    def precision(self) -> str:
        """The ``precision=`` a recurrent layer of this policy passes to the ops
        (:data:`fastrnn.functional.PRECISIONS`)."""
        return "bfloat16" if self._compute == "bfloat16" else "float32"

    def get_config(self) -> dict[str, Any]:
        """``{"name": ...}`` (Keras's config of a policy)."""
        return {"name": self.name}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DTypePolicy) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f'<{type(self).__name__} "{self.name}">'


#: Keras 2's name of the class (still exported by Keras 3's ``keras.mixed_precision``).
Policy = DTypePolicy


class QuantizedDTypePolicy(DTypePolicy):
    """The policy of a quantized layer: ``"int8_from_<source>"`` (Keras 3's naming).

    Parameters
    ----------
    mode : str
        One of :data:`QUANTIZATION_MODES`.
    source_name : str, optional
        The policy the layer had (default: the float type).
    """

    def __init__(self, mode: str, source_name: str | None = None) -> None:
        if mode not in QUANTIZATION_MODES:
            raise ValueError(f"quantization mode must be one of {QUANTIZATION_MODES}, got "
                             f"{mode!r}")
        super().__init__(source_name)
        self._source = self._name
        self._mode = mode
        self._name = f"{mode}_from_{self._source}"

    @property
    def quantization_mode(self) -> str | None:
        """The quantization mode (``"int8"``)."""
        return self._mode

    @property
    def source_name(self) -> str:
        """The policy the layer had before it was quantized."""
        return self._source

    @property
    def precision(self) -> str:
        """``"int8"``: the ops' precision of the layer's inference."""
        return self._mode


def get(policy: Any) -> DTypePolicy:
    """A policy from a name, a policy, or Keras's serialized form of one.

    Parameters
    ----------
    policy : str, DTypePolicy, dict or None
        A name (``"mixed_bfloat16"``, ``"int8_from_float32"``, a float dtype), a policy, a
        Keras 3 config ``{"class_name": "DTypePolicy", "config": {"name": ...}}``, or None
        (the global policy).

    Returns
    -------
    DTypePolicy

    Raises
    ------
    ValueError, TypeError
        For anything else (the message names what is accepted).
    """
    if policy is None:
        return global_policy()
    if isinstance(policy, DTypePolicy):
        return policy
    if isinstance(policy, dict):
        cfg = policy.get("config")
        name = cfg.get("name") if isinstance(cfg, dict) else policy.get("name")
        if not isinstance(name, str):
            raise ValueError(f"a serialized dtype policy needs a 'name', got {policy!r}")
        policy = name
    if isinstance(policy, str):
        mode, sep, source = policy.partition("_from_")
        if sep and mode in QUANTIZATION_MODES:
            return QuantizedDTypePolicy(mode, source)
        return DTypePolicy(policy)
    try:  # a numpy dtype or type (np.float32, np.dtype("float64"))
        return DTypePolicy(standardize_float_dtype(policy, "dtype"))
    except ValueError:
        raise ValueError(f"dtype must be 'float32' or 'float64' or the policy "
                         f"'mixed_bfloat16' (a name or a DTypePolicy), got {policy!r}") from None


def set_global_policy(policy: Any) -> None:
    """Set the policy of every layer created from now on (Keras's
    ``mixed_precision.set_global_policy``).

    Parameters
    ----------
    policy : str or DTypePolicy or None
        E.g. ``"mixed_bfloat16"``; None restores the default (the float type). A quantized
        policy cannot be global (quantize a built model instead).

    Raises
    ------
    ValueError
        For an unsupported or quantized policy.
    """
    global _GLOBAL
    if policy is None:
        _GLOBAL = None
        return
    p = get(policy)
    if p.quantization_mode is not None:
        raise ValueError(f"a quantized policy ({p.name!r}) cannot be the global policy: build "
                         "the model, then call model.quantize('int8')")
    _GLOBAL = p


def global_policy() -> DTypePolicy:
    """The policy new layers get when they are given no ``dtype`` (default: the float type).

    Returns
    -------
    DTypePolicy
    """
    return _GLOBAL if _GLOBAL is not None else DTypePolicy(floatx())


#: Keras 3's ``keras.config`` names of the same functions.
set_dtype_policy = set_global_policy
dtype_policy = global_policy
