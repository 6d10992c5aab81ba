#!/usr/bin/python3
"""Fits the polynomial behind attn's vectorised gelu (src/kernels/transcendental_activations.cpp).

The Gaussian tail Q(u) = 0.5 erfc(u / sqrt 2) is written as exp(-u^2 / 2) t P(t) with
t = 4 / (4 + u): t P(t) is smooth over u in [0, inf) and tends to 1 / (u sqrt(2 pi)), so one
polynomial in t covers the whole range. P is fitted by least squares with relative weights on
Chebyshev nodes in t (close to the minimax fit), the reference worked out in 40 digits. Prints
the coefficients, highest degree first, and the worst relative error of the fit, in double and
evaluated in float32 arithmetic (without fma, so a little worse than the kernel). (Centring the
polynomial, in t - 5/8, did not make the kernel more accurate: about half of its few ulp come
from rounding the coefficients to float.) Needs Debian's python3-numpy and
python3-mpmath. Usage: scripts/fit_gelu_tail.py [degree (default 9)]
"""
import sys

import mpmath as mp
import numpy as np

mp.mp.dps = 40
K = 4.0        # t = K / (K + u)
U_MAX = 14.5   # beyond, exp(-u^2 / 2) is below float's smallest subnormal


def p_exact(u):
    """P(t) for t = K / (K + u): Q(u) exp(u^2 / 2) / t."""
    u = mp.mpf(u)
    q_scaled = 0.5 * mp.erfc(u / mp.sqrt(2)) * mp.exp(u * u / 2)
    return float(q_scaled / (mp.mpf(K) / (K + u)))


def main():
    degree = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    t_low = K / (K + U_MAX)
    nodes = 600
    t = t_low + (1 - t_low) * (np.cos(np.pi * (np.arange(nodes) + 0.5) / nodes) + 1) / 2
    target = np.array([p_exact(K / ti - K) for ti in t])
    design = np.vander(t, degree + 1) / target[:, None]
    coeffs, *_ = np.linalg.lstsq(design, np.ones(nodes), rcond=None)
    coeffs32 = coeffs.astype(np.float32)

    u = np.linspace(0, U_MAX, 5001)
    t_check = K / (K + u)
    exact = np.array([p_exact(ui) for ui in u])
    err_double = np.max(np.abs(np.polyval(coeffs, t_check) / exact - 1))
    t32 = (np.float32(K) / (np.float32(K) + u.astype(np.float32))).astype(np.float32)
    horner = np.full_like(t32, coeffs32[0])
    for c in coeffs32[1:]:
        horner = (horner * t32 + c).astype(np.float32)
    err_float = np.max(np.abs(horner / exact - 1))
    for c in coeffs32:
        print(f"{float(c):.9e}f,")
    print(f"# degree {degree}: worst relative error {err_double:.2e} in double, {err_float:.2e} in float32")


if __name__ == "__main__":
    main()
