"""The Python cell table (fastrnn._cells.CELLS) against the C kernels' cell descriptors."""

import pytest

from fastrnn import _kernels
from fastrnn._cells import CELLS


@pytest.mark.parametrize("name", sorted(CELLS))
def test_gate_count_matches_c(name):
    cell = CELLS[name]
    assert _kernels.cell_gates(cell.code) == cell.gates
    assert len(cell.gate_order) == cell.gates


@pytest.mark.parametrize("code", [-1, max(c.code for c in CELLS.values()) + 1, 1 << 20])
def test_unknown_code_is_refused(code):
    with pytest.raises(ValueError, match="unknown cell code"):
        _kernels.cell_gates(code)


def test_codes_are_distinct():
    assert len({c.code for c in CELLS.values()}) == len(CELLS)
