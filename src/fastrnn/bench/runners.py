"""The implementations the benchmark compares, each set up for one case as a call to time.

- ``fastrnn``: fastrnn's ops (:mod:`fastrnn.functional`);
- ``reference``: the pure-NumPy oracle :mod:`fastrnn.reference`;
- ``torch``: ``torch.nn.RNN/LSTM/GRU`` (inference under ``torch.inference_mode()``,
  training = forward + ``y.backward(dy)`` + ``torch.optim.SGD`` step; training-data the
  same with an input that needs no gradient);
- ``dropin``: fastrnn's drop-in modules ``fastrnn.torch.RNN/LSTM/GRU``, measured exactly
  like ``torch``;
- ``onnxruntime``: a one-node ONNX model with the LSTM/GRU/RNN operator (inference only).

Training for the functional implementations (fastrnn, reference) is forward with
``training=True``, backward with the same random ``dy`` and an in-place SGD update of
the four parameter arrays, so that every training row does the same work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastrnn._cells import CELLS as _CELL_TABLE
from fastrnn.bench.cases import Case

LR = 1e-6  # SGD step of the training rows (tiny: the weights barely move between repeats)

Runner = Callable[[], Any]  # one call of the measured work; returns the output sequence y


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
            elif impl == "torch":
                import torch  # noqa: F401
            elif impl == "dropin":
                import fastrnn.torch  # noqa: F401
            elif impl == "onnxruntime":
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


def _functional_runner(ops: Any, case: Case, p: dict[str, Any]) -> Runner:
    """fastrnn.functional or fastrnn.reference: forward, or forward + backward + SGD."""
    import numpy as np

    cell = case.cell
    fwd = getattr(ops, f"{cell}_forward")
    bwd = getattr(ops, f"{cell}_backward")
    states = no_states(cell)  # zero initial states; no gradient at the final ones
    x, dy = p["x"], p["dy"]
    w = [np.array(p[k]) for k in ("w_ih", "w_hh", "b_ih", "b_hh")]  # own copies (SGD moves them)
    lr = np.float32(LR)

    def forward(training: bool) -> tuple:
        return fwd(x, *states, *w, training=training)

    if case.mode == "inference":

        def run() -> Any:
            return forward(False)[0]

        return run

    need_dx = case.mode == "training"

    def run_train() -> Any:
        out = forward(True)
        y, ctx = out[0], out[-1]
        grads = bwd(ctx, dy, *states, need_dx=need_dx)
        for param, g in zip(w, grads[-4:], strict=True):
            g *= lr
            param -= g
        return y

    return run_train


def _torch_runner(kind: str, case: Case, p: dict[str, Any], threads: int) -> Runner:
    """torch.nn modules (kind 'torch') or fastrnn.torch drop-ins (kind 'dropin')."""
    import torch

    torch.set_num_threads(threads)
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
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            tname = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0",
                     "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}[name]
            getattr(mod, tname).copy_(torch.from_numpy(p[name]))
    x = torch.from_numpy(p["x"].copy())

    if case.mode == "inference":
        mod.eval()

        def run() -> Any:
            with torch.inference_mode():
                y, _ = mod(x)
            return y.numpy()

        return run

    mod.train()
    # training: every implementation computes dx; training-data: x is data (no gradient)
    x.requires_grad_(case.mode == "training")
    dy = torch.from_numpy(p["dy"])
    opt = torch.optim.SGD(mod.parameters(), lr=LR)

    def run_train() -> Any:
        opt.zero_grad(set_to_none=True)
        x.grad = None
        y, _ = mod(x)
        y.backward(dy)  # the gradient of (y * dy).sum(), without the extra elementwise ops
        opt.step()
        return y.detach().numpy()

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


def _ort_runner(case: Case, p: dict[str, Any], threads: int) -> Runner:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(
        onnx_model_bytes(case, p), so, providers=["CPUExecutionProvider"]
    )
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
    """
    if impl == "fastrnn":
        return _functional_runner(fastrnn_ops(), case, p)
    if impl == "reference":
        return _functional_runner(_reference_ops(), case, p)
    if impl in ("torch", "dropin"):
        return _torch_runner(impl, case, p, threads)
    if impl == "onnxruntime":
        return _ort_runner(case, p, threads)
    raise ValueError(f"unknown implementation {impl!r}")

