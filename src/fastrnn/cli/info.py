"""``fastrnn info``: the build (version, SIMD path, OpenMP, threads) and a quick self-check."""

from __future__ import annotations

import argparse
import sys

from fastrnn.cli.command import CommandError

__all__ = ["add_arguments", "run", "self_check"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``info`` options to ``p``.

    Parameters
    ----------
    p : argparse.ArgumentParser
        The command's parser.
    """
    from fastrnn.bench import positive_int

    p.add_argument("--threads", type=positive_int, default=None,
                   help="threads for the check (default: OMP_NUM_THREADS or all cores)")


def run(args: argparse.Namespace) -> int:
    """Print the build description, then run :func:`self_check`.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``info`` options.

    Returns
    -------
    int
        The exit status: 0, or 1 when the self-check finds a mismatch.

    Raises
    ------
    CommandError
        When the native extension cannot be loaded.
    """
    from fastrnn.bench import prepare_threads

    prepare_threads(args.threads)
    import fastrnn

    try:
        info = fastrnn.info()
    except ImportError as e:
        raise CommandError(f"fastrnn's native extension cannot be loaded: {e}") from None
    import numpy as np

    avail = ", ".join(info.get("simd_available", [])) or "?"
    print(f"fastrnn {info['version']}")
    print(f"  SIMD path     {info.get('simd', '?')} (available: {avail})")
    print(f"  OpenMP        {'yes' if info.get('openmp') else 'no'}")
    print(f"  threads       {info['num_threads']} (max {info.get('max_threads', '?')})")
    print(f"  compiler      {info.get('compiler', '?')}")
    for line in precision_lines(info):
        print(line)
    print(f"  numpy         {np.__version__}")
    sys.stdout.flush()
    return self_check()


def precision_lines(info: dict) -> list[str]:
    """The reduced-precision paths of the build and the CPU features behind them.

    Parameters
    ----------
    info : dict
        :func:`fastrnn.info`'s description (its ``precision`` entry, when the build has
        reduced-precision kernels).

    Returns
    -------
    list of str
        One line per precision (bfloat16, int8) naming the kernel path it runs and whether
        the CPU has AVX512_BF16, AVX512_VNNI and AVX-VNNI; empty without the entry.
    """
    prec = info.get("precision")
    if not isinstance(prec, dict):
        return []

    def has(flag: str) -> str:
        return "yes" if prec.get(flag) else "no"

    return [f"  bfloat16      {prec.get('bfloat16', '?')} path (CPU AVX512_BF16: "
            f"{has('avx512_bf16')})",
            f"  int8          {prec.get('int8', '?')} path (CPU AVX512_VNNI: "
            f"{has('avx512_vnni')}, AVX-VNNI: {has('avx_vnni')})"]


def self_check() -> int:
    """Time a tiny LSTM forward+backward through fastrnn.functional; compare to the reference.

    Returns
    -------
    int
        0 when outputs and gradients match :mod:`fastrnn.reference` in float64 (or the
        reference is not available), else 1.

    Raises
    ------
    CommandError
        When :mod:`fastrnn.functional` cannot be imported.
    """
    import statistics
    import time

    import numpy as np

    from fastrnn._cells import CELLS

    try:
        from fastrnn import functional as F
    except ImportError as e:
        raise CommandError(f"fastrnn.functional cannot be imported: {e}") from None
    T, B, I, H = 20, 4, 16, 32
    GH = CELLS["lstm"].gates * H
    rng = np.random.default_rng(0)
    k = 1.0 / np.sqrt(H)

    def args(dt: type) -> tuple:
        r = np.random.default_rng(0)
        x = r.standard_normal((T, B, I)).astype(dt)
        h0 = r.standard_normal((B, H)).astype(dt)
        c0 = r.standard_normal((B, H)).astype(dt)
        ws = [r.uniform(-k, k, s).astype(dt) for s in ((GH, I), (GH, H), (GH,), (GH,))]
        return x, h0, c0, *ws

    dy64 = rng.standard_normal((T, B, H))

    def step(ops: object, a: tuple, dy: np.ndarray) -> list[np.ndarray]:
        y, hn, cn, ctx = ops.lstm_forward(*a, training=True)  # type: ignore[attr-defined]
        grads = ops.lstm_backward(ctx, dy, None, None)  # type: ignore[attr-defined]
        return [y, hn, cn, *grads]

    a32 = args(np.float32)
    dy32 = dy64.astype(np.float32)
    step(F, a32, dy32)
    times = []
    for _ in range(20):
        t = time.perf_counter()
        step(F, a32, dy32)
        times.append(time.perf_counter() - t)
    print(f"LSTM T={T} B={B} I={I} H={H} float32 forward+backward through "
          f"fastrnn.functional: {statistics.median(times) * 1e3:.3f} ms (median of 20)")
    try:
        from fastrnn import reference as R
    except ImportError:
        print("check against fastrnn.reference: skipped (fastrnn.reference not available)")
        return 0
    a64 = args(np.float64)
    got, want = step(F, a64, dy64), step(R, a64, dy64)
    diff = max(float(np.max(np.abs(g - w))) for g, w in zip(got, want, strict=True))
    ok = diff <= 1e-9
    print(f"check against fastrnn.reference (float64, outputs and all gradients): "
          f"max |diff| = {diff:.2e} {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1
