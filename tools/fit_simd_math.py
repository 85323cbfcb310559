"""Fit the polynomial coefficients of csrc/simd_math.h (vectorised exp, and expm1 for tanh).

Run ``python tools/fit_simd_math.py``: it prints the coefficient lists pasted into simd_math.h and
the maximum relative error of each approximation (exact arithmetic; rounding comes on top).
Relative-error minimax fits by Lawson's algorithm (iteratively reweighted least squares, mpmath
at 40 digits) of

- exp(r) ~ 1 + r + r^2 (c0 + c1 r + ...) on |r| <= ln2/2 (the range left by exp's reduction
  x = n ln2 + r);
- expm1(r) ~ r + r^2 (c0 + c1 r + ...) on the same range, relative to expm1 (tanh(x) is
  -m / (2 + m) with m = expm1(-2|x|), reduced as exp's argument).
"""

from __future__ import annotations

import mpmath as mp

mp.mp.dps = 40


def lawson(f, base, basis, xs, iters=300):
    """Coefficients c minimising max |(base(x) + sum c_j basis_j(x)) / f(x) - 1| over xs."""
    fx = [f(x) for x in xs]
    bx = [base(x) for x in xs]
    phi = [[b(x) for b in basis] for x in xs]
    n = len(basis)
    w = [mp.mpf(1) / len(xs)] * len(xs)
    c = None
    for _ in range(iters):
        # weighted least squares on the relative residual: (bx + phi.c - fx) / fx
        ata = mp.zeros(n, n)
        atb = mp.zeros(n, 1)
        for i in range(len(xs)):
            row = [p / fx[i] for p in phi[i]]
            rhs = (fx[i] - bx[i]) / fx[i]
            for j in range(n):
                atb[j] += w[i] * row[j] * rhs
                for k in range(n):
                    ata[j, k] += w[i] * row[j] * row[k]
        c = mp.lu_solve(ata, atb)
        err = [abs((bx[i] + mp.fsum(c[j] * phi[i][j] for j in range(n))) / fx[i] - 1)
               for i in range(len(xs))]
        w = [wi * ei for wi, ei in zip(w, err, strict=True)]
        s = mp.fsum(w)
        w = [wi / s for wi in w]
    return [c[j] for j in range(n)], max(err)


def report(name, coeffs, err):
    print(f"{name}: {len(coeffs)} coefficients, max relative error {mp.nstr(err, 3)}")
    print("    " + ", ".join(mp.nstr(c, 21) for c in coeffs))


def fit_reduced(f, base, deg_q, npts=400):
    """f(r) ~ base(r) + r^2 (c0 + c1 r + ... + c_deg_q r^deg_q) on |r| <= ln2/2."""
    h = mp.log(2) / 2
    xs = [h * mp.cos(mp.pi * (i + mp.mpf(1) / 2) / npts) for i in range(npts)]
    basis = [(lambda r, j=j: r ** (j + 2)) for j in range(deg_q + 1)]
    return lawson(f, base, basis, xs)


if __name__ == "__main__":
    def exp_base(r):
        return 1 + r

    def expm1_base(r):
        return r

    report("float exp (degree 5)", *fit_reduced(mp.exp, exp_base, 3))
    report("float expm1 (degree 6)", *fit_reduced(mp.expm1, expm1_base, 4))
    report("double exp (degree 11)", *fit_reduced(mp.exp, exp_base, 9))
    report("double expm1 (degree 11)", *fit_reduced(mp.expm1, expm1_base, 9))
