"""The cell table: every recurrent cell fastrnn runs, described once.

Everything above the C kernels that needs to know a cell's shape asks this table (the ops'
argument checks, the Cython bridge, the drop-in, the Keras layers, streaming and the
benchmark); nothing else branches on the cell. The C side has one descriptor per cell in the
cell's own file (``csrc/rnn.c``, ``csrc/lstm.c``, ``csrc/gru.c``), selected by ``code``;
``tests/test_cells.py`` checks that the two agree.

Adding a cell kind means: its C file (pointwise forward and backward maths and descriptor),
its NumPy maths in :mod:`fastrnn.reference`, and a row here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CELLS", "NONLINEARITIES", "Cell", "cell_spec"]


@dataclass(frozen=True)
class Cell:
    """One recurrent cell kind.

    Attributes
    ----------
    name : str
        The name the ops take (``cell="lstm"``).
    code : int
        The C kernels' ``FR_CELL_*`` value (``csrc/fastrnn.h``).
    gates : int
        G: ``w_ih`` is (G*H, I), ``w_hh`` (G*H, H), biases (G*H,).
    gate_order : tuple of str
        The gates' order along the G*H axis (PyTorch's order).
    has_cell_state : bool
        Whether the cell carries a second state ``c`` beside ``h`` (the LSTM).
    nonlinearities : tuple of str
        The non-linearities the cell takes (first: the default); empty for a cell whose
        non-linearities are fixed (``nonlinearity`` must then be None).
    title : str
        The cell in messages ("an LSTM").
    """

    name: str
    code: int
    gates: int
    gate_order: tuple[str, ...]
    has_cell_state: bool
    nonlinearities: tuple[str, ...]
    title: str


CELLS: dict[str, Cell] = {
    c.name: c
    for c in (
        Cell("rnn", code=0, gates=1, gate_order=("h",), has_cell_state=False,
             nonlinearities=("tanh", "relu"), title="an RNN"),
        Cell("lstm", code=1, gates=4, gate_order=("i", "f", "g", "o"), has_cell_state=True,
             nonlinearities=(), title="an LSTM"),
        Cell("gru", code=2, gates=3, gate_order=("r", "z", "n"), has_cell_state=False,
             nonlinearities=(), title="a GRU"),
    )
}

#: The vanilla RNN's non-linearities and their C codes (``FR_RNN_TANH``, ``FR_RNN_RELU``).
NONLINEARITIES: dict[str, int] = {"tanh": 0, "relu": 1}


def cell_spec(name: str) -> Cell:
    """The table's row for ``name``.

    Parameters
    ----------
    name : str
        A cell name (``"rnn"``, ``"lstm"`` or ``"gru"``).

    Returns
    -------
    Cell
        Its row.

    Raises
    ------
    ValueError
        For a name that is not in the table, listing the names that are.
    """
    try:
        return CELLS[name]
    except (KeyError, TypeError):
        raise ValueError(f"cell must be one of {sorted(CELLS)}, got {name!r}") from None
