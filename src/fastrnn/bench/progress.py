"""The benchmark's progress bar."""

from __future__ import annotations

import sys
import time


class Progress:
    """A one-line text progress bar on stderr (a line per step when stderr is not a tty)."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total = max(total, 1)
        self.current = 0  # 1-based index of the step running
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._last_len = 0

    def step(self, label: str) -> None:
        """Start the next step."""
        self.current += 1
        self._show(label, newline_ok=True)

    def note(self, label: str) -> None:
        """Change the label of the current step (shown on a tty only)."""
        self._show(label, newline_ok=False)

    def _show(self, label: str, newline_ok: bool) -> None:
        if not self.enabled or (not self.tty and not newline_ok):
            return
        width = 24
        fill = int(round((self.current - 1) / self.total * width))
        el = int(time.perf_counter() - self.t0)
        line = (f"[{'#' * fill}{'.' * (width - fill)}] {self.current}/{self.total} "
                f"{el // 60}:{el % 60:02d}  {label}")
        if self.tty:
            pad = " " * max(0, self._last_len - len(line))
            sys.stderr.write("\r" + line + pad)
            self._last_len = len(line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        """Clear the bar (on a tty)."""
        if self.enabled and self.tty:
            sys.stderr.write("\r" + " " * self._last_len + "\r")
            sys.stderr.flush()

