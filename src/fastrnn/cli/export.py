"""``fastrnn export``: convert a saved model file to ONNX
(:func:`fastrnn.keras.onnx_export.export_onnx`)."""

from __future__ import annotations

import argparse
import collections
import os

from fastrnn.cli.command import CommandError, check_writable, int_at_least

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``export`` options to ``p``.

    Parameters
    ----------
    p : argparse.ArgumentParser
        The command's parser.
    """
    p.add_argument("model", help="the model file (whatever fastrnn's load_model reads: a "
                                 "model saved by fastrnn, 'fastrnn train' or 'fastrnn demo')")
    p.add_argument("output", help="the ONNX file to write (replaced if it exists)")
    p.add_argument("--opset", type=int_at_least(1), default=None, metavar="N",
                   help="the ONNX opset to write (default 17)")
    p.add_argument("--states", action="store_true",
                   help="add every recurrent layer's initial states as inputs and its final "
                        "states as outputs (the default for models with stateful layers)")


def run(args: argparse.Namespace) -> int:
    """Load ``args.model``, export it to ``args.output`` and print what was written.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``export`` options.

    Returns
    -------
    int
        The exit status, 0.

    Raises
    ------
    CommandError
        For a missing or unreadable model file, a missing ``onnx`` package, a layer with no
        ONNX form (named), or a bad ``--opset``.
    """
    check_writable(args.output, "output")
    try:
        import onnx  # noqa: F401 - checked first, for a clear message
    except ImportError:
        raise CommandError("exporting to ONNX needs the 'onnx' package: pip install onnx "
                           "(or pip install 'fastrnn[onnx]')") from None
    from fastrnn.keras.models import ModelFileError, load_model
    from fastrnn.keras.onnx_export import DEFAULT_OPSET, OnnxExportError, export_onnx

    if not os.path.exists(args.model):
        raise CommandError(f"{args.model}: no such model file")
    try:
        model = load_model(args.model, compile=False)
    except ModelFileError as e:
        raise CommandError(f"{args.model}: {e}") from None
    opset = DEFAULT_OPSET if args.opset is None else args.opset
    try:
        proto = export_onnx(model, args.output, opset=opset,
                            states=True if args.states else None)
    except OnnxExportError as e:
        raise CommandError(f"{args.model}: cannot export to ONNX: {e}") from None
    except ValueError as e:  # a bad --opset
        raise CommandError(str(e), status=2) from None
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    recurrent = ", ".join(f"{ops[k]} {k}" for k in ("LSTM", "GRU", "RNN") if ops[k]) or "none"
    inputs = ", ".join(i.name for i in proto.graph.input)
    outputs = ", ".join(o.name for o in proto.graph.output)
    print(f"wrote {args.output}: ONNX opset {opset}, {len(proto.graph.node)} nodes "
          f"(recurrent: {recurrent}); inputs: {inputs}; outputs: {outputs}")
    return 0
