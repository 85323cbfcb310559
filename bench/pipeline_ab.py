"""Paired before/after of ``fastrnn bench --pipeline``: rounds alternate between two checkouts.

Each round runs one pipeline round (src/fastrnn/bench/pipeline.py of the head checkout, which
uses only the public API) in a fresh process per checkout, base then head; the figures per
condition are medians over the rounds, side by side.

    python bench/pipeline_ab.py --base ../base-checkout --head . --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PIPELINE = os.path.join(HERE, "..", "src", "fastrnn", "bench", "pipeline.py")


def one(checkout: str, threads: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        env = dict(os.environ, PYTHONPATH=os.path.join(os.path.abspath(checkout), "src"))
        subprocess.run([sys.executable, PIPELINE, "--rounds", "1", "--threads", str(threads),
                        "--json", f.name], env=env, check=True, stdout=subprocess.DEVNULL)
        with open(f.name) as g:
            return json.load(g)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", required=True)
    p.add_argument("--head", required=True)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    sys.path.insert(0, os.path.dirname(PIPELINE))
    from pipeline import summarize

    raw: dict[str, list] = {"base": [], "head": []}
    for _ in range(a.rounds):
        for side in ("base", "head"):
            raw[side].append(one(getattr(a, side), a.threads)["rounds"][0])
    sums = {side: summarize(r) for side, r in raw.items()}
    print(f"{a.rounds} rounds, {a.threads} threads; base {a.base}, head {a.head}")
    print(f"{'condition':<14} {'fr base':>9} {'fr head':>9} {'torch':>9} {'fr/torch':>9}  "
          f"target (head)")
    for cond, h in sums["head"].items():
        b = sums["base"][cond]
        unit = (lambda v: f"{v * 1e3:.2f}ms") if cond == "quiet" else (lambda v: f"{v:.2f}x")
        tn = statistics.median(r[cond]["torch"] for r in raw["head"] + raw["base"])
        if cond != "quiet" and cond in ("after numpy", "after other", "busy process"):
            tn = statistics.median([h["torch"], b["torch"]])
        elif cond != "quiet":
            tn = statistics.median([h["torch"], b["torch"]])
        fot = f"{h['fastrnn_over_torch']:.2f}" if "fastrnn_over_torch" in h else ""
        tgt = f"{h['target']}: {'met' if h['met'] else 'NOT met'}" if "target" in h else ""
        print(f"{cond:<14} {unit(b['fastrnn']):>9} {unit(h['fastrnn']):>9} {unit(tn):>9} "
              f"{fot:>9}  {tgt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
