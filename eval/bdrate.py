"""Bjontegaard delta rate and delta quality between two rate-distortion curves.

BD-rate (VCEG-M33): express log(rate) as a function of quality for the anchor and the test curve,
integrate both over the quality range the two curves share, and turn the mean difference back into a
ratio: ``exp(mean(log R_test - log R_anchor)) - 1``. -0.25 means the test codec needs 25 % fewer bits
than the anchor for the same quality. BD-quality (BD-PSNR) swaps the axes: the mean quality gain at equal
log-rate.

Interpolation:

* ``"pchip"`` (default): piecewise cubic Hermite interpolation with Fritsch-Carlson slopes, through every
  point, shape-preserving (no overshoot between points); what the JVET common-test-conditions sheet and
  most current tools use.
* ``"cubic"``: the original least-squares cubic polynomial (degree ``min(3, points - 1)``).

Both are exact for the cases the tests construct: identical curves give 0, and a curve that needs exactly
twice the bits at every quality gives +1 (+100 %).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from camcodec.errors import InputError

METHODS = ("pchip", "cubic")


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivatives at the knots of the monotone piecewise cubic Hermite interpolant (Fritsch-Carlson)."""
    h = np.diff(x)
    delta = np.diff(y) / h
    if len(x) == 2:
        return np.array([delta[0], delta[0]])
    slopes = np.zeros_like(x)
    for k in range(1, len(x) - 1):
        d0, d1 = delta[k - 1], delta[k]
        if d0 * d1 > 0:
            w0, w1 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            slopes[k] = (w0 + w1) / (w0 / d0 + w1 / d1)

    def end(h0: float, h1: float, d0: float, d1: float) -> float:
        slope = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
        if np.sign(slope) != np.sign(d0):
            return 0.0
        if np.sign(d0) != np.sign(d1) and abs(slope) > 3 * abs(d0):
            return 3 * d0
        return slope

    slopes[0] = end(h[0], h[1], delta[0], delta[1])
    slopes[-1] = end(h[-1], h[-2], delta[-1], delta[-2])
    return slopes


def _pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Integral over [lo, hi] (inside [x0, xn]) of the PCHIP interpolant through (x, y)."""
    slopes = _pchip_slopes(x, y)

    def antiderivative(at: float) -> float:
        """Integral of the interpolant from x[0] to ``at``."""
        k = int(np.clip(np.searchsorted(x, at, side="right") - 1, 0, len(x) - 2))
        h = x[1 : k + 1] - x[:k]
        # Whole segments before k: h (y0 + y1) / 2 + h^2 (m0 - m1) / 12.
        whole = float(np.sum(h * (y[:k] + y[1 : k + 1]) / 2 + h * h * (slopes[:k] - slopes[1 : k + 1]) / 12))
        width = x[k + 1] - x[k]
        t = (at - x[k]) / width
        # Integrals from 0 to t of the four cubic Hermite basis functions.
        h00 = t - t**3 + t**4 / 2
        h10 = t**4 / 4 - 2 * t**3 / 3 + t**2 / 2
        h01 = t**3 - t**4 / 2
        h11 = t**4 / 4 - t**3 / 3
        part = width * (h00 * y[k] + h10 * width * slopes[k] + h01 * y[k + 1] + h11 * width * slopes[k + 1])
        return whole + float(part)

    return antiderivative(hi) - antiderivative(lo)


def _poly_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Integral over [lo, hi] of the least-squares polynomial of degree min(3, n-1) through (x, y)."""
    coeffs = np.polyint(np.polyfit(x, y, min(3, len(x) - 1)))
    return float(np.polyval(coeffs, hi) - np.polyval(coeffs, lo))


def _curve(rates: Sequence[float], quality: Sequence[float], what: str) -> tuple[np.ndarray, np.ndarray]:
    """(quality, log rate) sorted by quality; None when the curve cannot be interpolated."""
    r = np.asarray(rates, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if r.shape != q.shape or r.ndim != 1:
        raise InputError(f"{what}: rates and qualities must be two equal-length lists")
    if np.any(~np.isfinite(r)) or np.any(r <= 0):
        raise InputError(f"{what}: rates must be positive and finite")
    order = np.argsort(q, kind="stable")
    return q[order], np.log(r[order])


def _usable(x: np.ndarray) -> bool:
    return len(x) >= 2 and bool(np.all(np.isfinite(x))) and bool(np.all(np.diff(x) > 0))


def _mean_difference(
    x_anchor: np.ndarray, y_anchor: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, method: str
) -> float:
    """Mean of (test - anchor) over the shared x range, or NaN when the curves share none."""
    if method not in METHODS:
        raise InputError(f"unknown BD interpolation {method!r}; choose from {', '.join(METHODS)}")
    if not (_usable(x_anchor) and _usable(x_test)):
        return math.nan
    lo, hi = max(x_anchor[0], x_test[0]), min(x_anchor[-1], x_test[-1])
    if not hi > lo:
        return math.nan
    integral = _pchip_integral if method == "pchip" else _poly_integral
    return (integral(x_test, y_test, lo, hi) - integral(x_anchor, y_anchor, lo, hi)) / (hi - lo)


def bd_rate(
    anchor_rates: Sequence[float],
    anchor_quality: Sequence[float],
    test_rates: Sequence[float],
    test_quality: Sequence[float],
    method: str = "pchip",
) -> float:
    """Relative rate difference of test vs anchor at equal quality (0.25 = 25 % more bits).

    NaN when a curve has fewer than two points, repeats a quality value, holds a non-finite quality,
    or when the two curves share no quality range.
    """
    qa, la = _curve(anchor_rates, anchor_quality, "anchor")
    qt, lt = _curve(test_rates, test_quality, "test")
    return math.expm1(_mean_difference(qa, la, qt, lt, method))


def bd_quality(
    anchor_rates: Sequence[float],
    anchor_quality: Sequence[float],
    test_rates: Sequence[float],
    test_quality: Sequence[float],
    method: str = "pchip",
) -> float:
    """Mean quality gain of test vs anchor at equal rate (e.g. BD-PSNR in dB); NaN as for ``bd_rate``."""
    qa, la = _curve(anchor_rates, anchor_quality, "anchor")
    qt, lt = _curve(test_rates, test_quality, "test")
    # Same curves with the axes swapped: quality as a function of log rate, sorted by rate.
    oa, ot = np.argsort(la, kind="stable"), np.argsort(lt, kind="stable")
    if not (np.all(np.isfinite(qa)) and np.all(np.isfinite(qt))):
        return math.nan
    return _mean_difference(la[oa], qa[oa], lt[ot], qt[ot], method)
