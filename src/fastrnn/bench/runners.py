"""The implementations the benchmark compares, each set up for one case as a call to time.

- ``fastrnn``: fastrnn's ops (:mod:`fastrnn.functional`; inference on weights packed once,
  :func:`fastrnn.functional.prepare_weights`, as a deployment runs them and as ONNX Runtime's
  session packs its own);
- ``reference``: the pure-NumPy oracle :mod:`fastrnn.reference`;
- ``torch``: ``torch.nn.RNN/LSTM/GRU`` (inference under ``torch.inference_mode()``,
  training = forward + ``y.backward(dy)`` + ``torch.optim.SGD`` step; training-data the
  same with an input that needs no gradient);
- ``dropin``: fastrnn's drop-in modules ``fastrnn.torch.RNN/LSTM/GRU``, measured exactly
  like ``torch``;
- ``onnxruntime``: a one-node ONNX model with the LSTM/GRU/RNN operator (inference only);
- ``fastrnn-bf16``, ``fastrnn-int8``: fastrnn's ops with ``precision="bfloat16"`` /
  ``"int8"`` (inference on weights prepared once, :func:`fastrnn.functional.prepare_weights`;
  training passes the weights that the SGD step moves, so they are converted every call);
- ``torch-bf16``: ``torch.nn`` under ``torch.autocast("cpu", dtype=torch.bfloat16)``;
- ``torch-int8``: ``torch.ao.quantization.quantize_dynamic`` of ``torch.nn.LSTM``/``GRU``
  (int8 weights, activations quantized per call; inference only);
- ``ort-int8``: a one-node ONNX model with ONNX Runtime's ``com.microsoft``
  ``DynamicQuantizeLSTM`` (int8 weights per output channel; inference only).

Training for the functional implementations (fastrnn, reference) is forward with
``training=True``, backward with the same random ``dy`` and an in-place SGD update of
the four parameter arrays, so that every training row does the same work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastrnn._cells import CELLS as _CELL_TABLE
from fastrnn.bench.cases import PRECISION_OF, Case

LR = 1e-6  # SGD step of the training rows (tiny: the weights barely move between repeats)

Runner = Callable[[], Any]  # one call of the measured work; returns the output sequence y


class Unavailable(Exception):
    """An implementation that is installed but cannot run a case on this machine (the reason
    is the message): the benchmark reports the case as unavailable, not as an error."""


def _torch_bf16_probe(mod: Any, x: Any) -> None:
    """Raise :class:`Unavailable` where torch's bfloat16 autocast of ``mod`` does not run on this
    CPU: torch's LSTM under autocast runs oneDNN's bf16 RNN primitive, which needs AVX-512
    (torch 2.13 on a Zen 3, AVX2 only: "could not create a primitive descriptor")."""
    import torch

    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            mod(x[:1])
    except RuntimeError as e:
        if "primitive descriptor" not in str(e):
            raise
        raise Unavailable(f"torch's bfloat16 {type(mod).__name__} (oneDNN) does not run on "
                          f"this CPU: {str(e).split('.')[0]}") from e


def fastrnn_ops() -> Any:
    """The module whose ops the ``fastrnn`` rows measure.

    Returns
    -------
    module
        :mod:`fastrnn.functional`.
    """
    from fastrnn import functional

    return functional


def _reference_ops() -> Any:
    from fastrnn import reference

    return reference


def probe_impls(wanted: Sequence[str]) -> dict[str, str | None]:
    """Import what each implementation needs.

    Parameters
    ----------
    wanted : sequence of str
        Implementations (of :data:`fastrnn.bench.cases.IMPLS`).

    Returns
    -------
    dict
        impl -> None (ready) or why not (the import error).
    """
    status: dict[str, str | None] = {}
    for impl in wanted:
        try:
            if impl == "fastrnn":
                fastrnn_ops()
            elif impl == "reference":
                _reference_ops()
            elif impl == "fastrnn-bf16" or impl == "fastrnn-int8":
                ops = fastrnn_ops()
                if PRECISION_OF[impl] not in getattr(ops, "PRECISIONS", ("float32",)):
                    raise ImportError(f"this fastrnn has no {PRECISION_OF[impl]} kernels")
            elif impl in ("torch", "torch-bf16", "torch-int8"):
                import torch  # noqa: F401
            elif impl == "dropin":
                import fastrnn.torch  # noqa: F401
            elif impl in ("onnxruntime", "ort-int8"):
                import onnx  # noqa: F401
                import onnxruntime  # noqa: F401
            status[impl] = None
        except ImportError as e:
            status[impl] = f"{type(e).__name__}: {e}"
    return status


def no_states(cell: str) -> tuple[None, ...]:
    """The state arguments of the functional ops where every state is zero.

    Parameters
    ----------
    cell : str
        A cell of the cell table.

    Returns
    -------
    tuple of None
        ``(None, None)`` for a cell with a cell state (the LSTM's ``h0, c0``; its backward's
        ``dh_n, dc_n``), ``(None,)`` otherwise.
    """
    return (None, None) if _CELL_TABLE[cell].has_cell_state else (None,)


def _functional_runner(ops: Any, case: Case, p: dict[str, Any],
                       precision: str = "float32") -> Runner:
    """fastrnn.functional or fastrnn.reference: forward, or forward + backward + SGD."""
    import numpy as np

    cell = case.cell
    h0 = c0 = None  # zero initial states; no gradient at the final ones
    x, dy = p["x"], p["dy"]
    w = [np.array(p[k]) for k in ("w_ih", "w_hh", "b_ih", "b_hh")]  # own copies (SGD moves them)
    lr = np.float32(LR)
    kw: dict[str, Any] = {} if precision == "float32" else {"precision": precision}
    kw["nonlinearity"] = "tanh" if _CELL_TABLE[cell].nonlinearities else None

    if case.mode == "inference":
        if hasattr(ops, "prepare_weights"):  # what a deployment does: weights prepared once
            kw["prepared"] = ops.prepare_weights(cell, *w, precision=precision,
                                                 check="identity")

        def run() -> Any:
            return ops.cell_forward(cell, x, h0, c0, *w, training=False, **kw)[0]

        return run

    need_dx = case.mode == "training"

    def run_train() -> Any:
        y, _, _, ctx = ops.cell_forward(cell, x, h0, c0, *w, training=True, **kw)
        grads = ops.cell_backward(ctx, dy, None, None, need_dx=need_dx)
        for param, g in zip(w, grads[-4:], strict=True):
            g *= lr
            param -= g
        return y

    return run_train


def _torch_module(kind: str, case: Case, p: dict[str, Any]) -> Any:
    """A one-layer torch.nn (kind 'torch') or fastrnn.torch (kind 'dropin') module holding
    the case's weights."""
    import torch

    if kind == "dropin":
        import fastrnn.torch as ns
    else:
        ns = torch.nn
    I, H = case.I, case.H
    if case.cell == "rnn":
        mod = ns.RNN(I, H, nonlinearity="tanh")
    elif case.cell == "lstm":
        mod = ns.LSTM(I, H)
    else:
        mod = ns.GRU(I, H)
    with torch.no_grad():
        for name, tname in (("w_ih", "weight_ih_l0"), ("w_hh", "weight_hh_l0"),
                            ("b_ih", "bias_ih_l0"), ("b_hh", "bias_hh_l0")):
            getattr(mod, tname).copy_(torch.from_numpy(p[name]))
    return mod


def _torch_runner(kind: str, case: Case, p: dict[str, Any], threads: int) -> Runner:
    """torch.nn modules (kind 'torch'; 'torch-bf16' under bf16 autocast; 'torch-int8'
    dynamically quantized) or fastrnn.torch drop-ins (kind 'dropin')."""
    import contextlib
    import warnings

    import torch

    torch.set_num_threads(threads)
    mod = _torch_module("dropin" if kind == "dropin" else "torch", case, p)
    if kind == "torch-int8":
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():  # torch.ao's deprecation notices
            warnings.simplefilter("ignore")
            mod = quantize_dynamic(torch.nn.Sequential(mod), {type(mod)}, dtype=torch.qint8)[0]

    def autocast() -> Any:
        if kind == "torch-bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    x = torch.from_numpy(p["x"].copy())
    if kind == "torch-bf16":
        _torch_bf16_probe(mod, x)

    if case.mode == "inference":
        mod.eval()

        def run() -> Any:
            with torch.inference_mode(), autocast():
                y, _ = mod(x)
            return y.float().numpy()

        return run

    mod.train()
    # training: every implementation computes dx; training-data: x is data (no gradient)
    x.requires_grad_(case.mode == "training")
    dy = torch.from_numpy(p["dy"])
    opt = torch.optim.SGD(mod.parameters(), lr=LR)

    def run_train() -> Any:
        opt.zero_grad(set_to_none=True)
        x.grad = None
        with autocast():
            y, _ = mod(x)
        y.backward(dy.to(y.dtype))  # the gradient of (y * dy).sum(), without extra ops
        opt.step()
        return y.detach().float().numpy()

    return run_train


_ONNX_GATE_ORDER = {"rnn": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}  # from PyTorch's order


def to_onnx_gates(cell: str, a: Any) -> Any:
    """Reorder PyTorch gate blocks (LSTM i,f,g,o; GRU r,z,n) to ONNX's (i,o,f,c; z,r,h).

    Parameters
    ----------
    cell : str
        A cell of the cell table.
    a : numpy.ndarray
        A weight (G*H, K) or bias (G*H,) in PyTorch's gate order.

    Returns
    -------
    numpy.ndarray
        The same blocks in ONNX's order, contiguous.
    """
    import numpy as np

    blocks = np.split(a, _CELL_TABLE[cell].gates, axis=0)
    return np.ascontiguousarray(np.concatenate([blocks[i] for i in _ONNX_GATE_ORDER[cell]], 0))


def onnx_model_bytes(case: Case, p: dict[str, Any]) -> bytes:
    """A one-node ONNX model (RNN/LSTM/GRU operator, weights as initializers).

    Parameters
    ----------
    case : Case
        Its cell and shape.
    p : dict
        The inputs and weights (:func:`fastrnn.bench.cases.make_params`).

    Returns
    -------
    bytes
        The serialized model (opset 14): input ``X`` (T, B, I), outputs ``Y``, ``Y_h``
        (and ``Y_c`` for the LSTM).
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    cell, T, B, I, H = case.cell, case.T, case.B, case.I, case.H
    W = to_onnx_gates(cell, p["w_ih"])[None]
    R = to_onnx_gates(cell, p["w_hh"])[None]
    bias = np.concatenate([to_onnx_gates(cell, p["b_ih"]), to_onnx_gates(cell, p["b_hh"])])[None]
    attrs: dict[str, Any] = {"hidden_size": H}
    if cell == "rnn":
        attrs["activations"] = ["Tanh"]
    if cell == "gru":
        attrs["linear_before_reset"] = 1  # PyTorch's GRU: r * (W_hn h + b_hn)
    outputs = ["Y", "Y_h"] + (["Y_c"] if _CELL_TABLE[cell].has_cell_state else [])
    node = helper.make_node(
        {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[cell], ["X", "W", "R", "B"], outputs, **attrs
    )
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        [node],
        f"fastrnn_bench_{cell}",
        [helper.make_tensor_value_info("X", f32, [T, B, I])],
        [helper.make_tensor_value_info("Y", f32, [T, 1, B, H])]
        + [helper.make_tensor_value_info(n, f32, [1, B, H]) for n in outputs[1:]],
        initializer=[numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (bias, "B"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model.SerializeToString()


def quantize_per_channel(w: Any, qmax: int = 127) -> tuple[Any, Any]:
    """Symmetric int8 per output row (as ONNX Runtime's quantizer does for its LSTM).

    Parameters
    ----------
    w : numpy.ndarray, shape (N, K)
        Float32 weights, one output channel per row.
    qmax : int
        The largest magnitude of a quantized weight: 127, or 63 for ONNX Runtime's
        ``reduce_range`` (7-bit weights, :func:`ort_weight_qmax`).

    Returns
    -------
    (q, scale)
        ``q`` int8 (N, K) with ``w ~= q * scale[:, None]`` and ``|q| <= qmax``; ``scale``
        float32 (N,) (1 for an all-zero row).
    """
    import numpy as np

    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / np.float32(qmax), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -qmax, qmax).astype(np.int8)
    return q, scale


def ort_weight_qmax() -> int:
    """The int8 weight range of the ONNX Runtime anchor on this CPU: 127, or 63 (7 bits, ONNX
    Runtime's ``reduce_range``) where the CPU has no VNNI. There ONNX Runtime multiplies u8
    activations by s8 weights with ``vpmaddubsw``, whose pairs of products saturate int16 with
    full-range weights: LSTM (12,3,10,16) 0.17 from the float32 output on Zen 3 with 8-bit
    weights, 0.006 with 7-bit ones."""
    from fastrnn import _native

    prec = _native.build_info()["precision"]
    return 127 if prec["avx512_vnni"] or prec["avx_vnni"] else 63


def onnx_int8_lstm_bytes(case: Case, p: dict[str, Any]) -> bytes:
    """A one-node ONNX model with ONNX Runtime's ``com.microsoft.DynamicQuantizeLSTM``.

    The weights are quantized per output channel (symmetric int8, zero points 0; 7 bits on a
    CPU without VNNI, :func:`ort_weight_qmax`) and stored
    transposed, ``W`` (1, I, 4H) and ``R`` (1, H, 4H) in ONNX's gate order (i, o, f, c), with
    their scales and zero points (1, 4H); the operator quantizes the activations itself at
    run time.

    Parameters
    ----------
    case : Case
        An LSTM case (its shape).
    p : dict
        The inputs and weights (:func:`fastrnn.bench.cases.make_params`).

    Returns
    -------
    bytes
        The serialized model: input ``X`` (T, B, I), outputs ``Y``, ``Y_h``, ``Y_c``.

    Raises
    ------
    ValueError
        For a cell other than the LSTM (ONNX Runtime quantizes no other).
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    if case.cell != "lstm":
        raise ValueError(f"DynamicQuantizeLSTM is an LSTM; got cell {case.cell!r}")
    T, B, I, H = case.T, case.B, case.I, case.H
    inits = []
    qmax = ort_weight_qmax()
    for name, key in (("W", "w_ih"), ("R", "w_hh")):
        q, scale = quantize_per_channel(to_onnx_gates("lstm", p[key]), qmax)
        inits += [numpy_helper.from_array(np.ascontiguousarray(q.T[None]), name),
                  numpy_helper.from_array(scale[None], f"{name}_scale"),
                  numpy_helper.from_array(np.zeros((1, 4 * H), np.int8), f"{name}_zero_point")]
    bias = np.concatenate([to_onnx_gates("lstm", p["b_ih"]), to_onnx_gates("lstm", p["b_hh"])])
    inits.append(numpy_helper.from_array(bias[None], "B"))
    node = helper.make_node(
        "DynamicQuantizeLSTM",
        ["X", "W", "R", "B", "", "", "", "", "W_scale", "W_zero_point", "R_scale",
         "R_zero_point"],
        ["Y", "Y_h", "Y_c"], domain="com.microsoft", hidden_size=H)
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        [node], "fastrnn_bench_lstm_int8",
        [helper.make_tensor_value_info("X", f32, [T, B, I])],
        [helper.make_tensor_value_info("Y", f32, [T, 1, B, H])]
        + [helper.make_tensor_value_info(n, f32, [1, B, H]) for n in ("Y_h", "Y_c")],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    return model.SerializeToString()


def _ort_runner(case: Case, p: dict[str, Any], threads: int, int8: bool = False) -> Runner:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    model = onnx_int8_lstm_bytes(case, p) if int8 else onnx_model_bytes(case, p)
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    feed = {"X": p["x"]}

    def run() -> Any:
        return sess.run(["Y"], feed)[0][:, 0]

    return run


def build_runner(impl: str, case: Case, p: dict[str, Any], threads: int) -> Runner:
    """Set up ``impl`` for ``case`` (weights loaded, sessions built) and return its call.

    Parameters
    ----------
    impl : str
        One of :data:`fastrnn.bench.cases.IMPLS`.
    case : Case
        The cell, shape and mode.
    p : dict
        The inputs and weights (:func:`fastrnn.bench.cases.make_params`).
    threads : int
        Threads for torch and ONNX Runtime (fastrnn's are set by
        :func:`fastrnn.bench.machine.prepare_threads`).

    Returns
    -------
    Runner
        One call of the measured work, returning the output sequence ``y``.

    Raises
    ------
    ValueError
        For an unknown implementation.
    Unavailable
        Where the implementation cannot run the case on this machine.
    """
    if impl in ("fastrnn", "fastrnn-bf16", "fastrnn-int8"):
        return _functional_runner(fastrnn_ops(), case, p, PRECISION_OF[impl])
    if impl == "reference":
        return _functional_runner(_reference_ops(), case, p)
    if impl in ("torch", "dropin", "torch-bf16", "torch-int8"):
        return _torch_runner(impl, case, p, threads)
    if impl in ("onnxruntime", "ort-int8"):
        return _ort_runner(case, p, threads, int8=impl == "ort-int8")
    raise ValueError(f"unknown implementation {impl!r}")

