"""A small workload for valgrind memcheck: every cell forward+backward with lengths and reverse
(float64, odd H, 2 threads; with one and with two batch groups), the same forward picking its
projected input rows from a table, the LSTM with a projection (w_hr), a streaming session, the
bfloat16 and int8 ops and an int8 stream, float32 forwards on weights packed once, and forwards
on shared rows (chunks of rows the threads take in turn). Run by tools/memcheck.py."""

import numpy as np

from fastrnn import _kernels, _native
from fastrnn import functional as F
from fastrnn._cells import CELLS

rng = np.random.default_rng(0)
T, B, I, H = 5, 3, 4, 37
lengths = np.array([5, 2, 0])
for cell, spec in CELLS.items():
    G = spec.gates
    nl = (spec.nonlinearities or (None,))[0]
    x = rng.standard_normal((T, B, I))
    w = rng.standard_normal((G * H, I))
    u = rng.standard_normal((G * H, H))
    b = rng.standard_normal(G * H)
    for rev, groups in ((False, 0), (True, 0), (False, 2), (True, 2)):
        _kernels.set_batch_groups(groups)
        need_dx = groups == 2  # the runs without groups take the C backward with dx NULL
        y, h, c, ctx = F.cell_forward(cell, x, None, None, w, u, b, b, nonlinearity=nl,
                                      lengths=lengths, reverse=rev)
        F.cell_backward(ctx, np.ones_like(y), None, None, need_dx=need_dx)
    table = rng.standard_normal((7, G * H))
    ids = rng.integers(0, 7, (T, B)).astype(np.int64)
    out = _native.forward_rows(cell, table, ids, None, None, u, b, b, nonlinearity=nl,
                               lengths=lengths, reverse=True)
    F.cell_backward(out[-1], np.ones_like(out[0]), None, None)
_kernels.set_batch_groups(0)
P = 5  # the LSTM with a projection: every path, need_dx both ways
for rev in (False, True):
    y, h, c, ctx = F.cell_forward("lstm", rng.standard_normal((T, B, I)), None, None,
                                  rng.standard_normal((4 * H, I)),
                                  rng.standard_normal((4 * H, P)), rng.standard_normal(4 * H),
                                  None, lengths=lengths, reverse=rev,
                                  w_hr=rng.standard_normal((P, H)))
    F.cell_backward(ctx, np.ones_like(y), None, np.ones_like(c), need_dx=rev)
stream = _kernels.Stream(
    [("lstm", rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H)), None, None, ""),
     ("dense", np.ones((H, 2)), None, "softmax")], 2, np.float64)
stream.run(rng.standard_normal((4, 2, I)))
# reduced precision (the kernels valgrind's CPU model offers: portable or AVX2)
for cell, spec in CELLS.items():
    G = spec.gates
    nl = (spec.nonlinearities or (None,))[0]
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    w, u = (rng.standard_normal((G * H, n)).astype(np.float32) for n in (I, H))
    b = rng.standard_normal(G * H).astype(np.float32)
    y, h, c, ctx = F.cell_forward(cell, x, None, None, w, u, b, b, nonlinearity=nl,
                                  lengths=lengths, reverse=True, precision="bfloat16")
    F.cell_backward(ctx, np.ones_like(y), None, None)
    F.cell_forward(cell, x, None, None, w, u, b, b, nonlinearity=nl, lengths=lengths,
                   training=False, precision="int8")
    # float32 weights packed once (fr_cell_prepack_s), read by the forward's threads (and, for
    # another H, a buffer that is not read)
    for packed in (_kernels.prepack(cell, w, u, b, b),
                   _kernels.prepack(cell, w[:G * (H - 1)].copy(),
                                    u[:G * (H - 1), :H - 1].copy(), b[:G * (H - 1)].copy(),
                                    None)):
        y = np.empty((T, B, H), np.float32)
        h, c = np.empty((B, H), np.float32), np.empty((B, H), np.float32)
        _kernels.cell_forward(cell, y, h, c if spec.has_cell_state else None, None, x, None, None,
                              w, u, b, b, lengths, _native.NONLINEARITIES[nl] if nl else 0, True,
                              2, packed=packed)
# shared rows (forced: 3 chunks of 6 rows for 2 threads), forward with lengths and reversed
_kernels.set_team_threads(2)
_kernels.set_shared_rows(3)
for cell, spec in CELLS.items():
    G = spec.gates
    nl = (spec.nonlinearities or (None,))[0]
    for rev in (False, True):
        y, h, c, ctx = F.cell_forward(cell, rng.standard_normal((11, 18, I)), None, None,
                                      rng.standard_normal((G * H, I)),
                                      rng.standard_normal((G * H, H)), rng.standard_normal(G * H),
                                      None, nonlinearity=nl, reverse=rev,
                                      lengths=None if rev else np.arange(11, 11 - 18, -1) % 12)
        F.cell_backward(ctx, np.ones_like(y), None, None)
assert _kernels.shared_passes() == 2 * len(CELLS)
_kernels.set_shared_rows(0)
_kernels.set_team_threads(0)
_kernels.Stream([("gru", rng.standard_normal((3 * H, I)).astype(np.float32),
                  rng.standard_normal((3 * H, H)).astype(np.float32), None, None, "")], 2,
                np.float32, "int8").run(rng.standard_normal((3, 2, I)).astype(np.float32))
print("ok")
