"""The one layer check: forward (optionally against a reference) and backward against finite differences.

For a layer f and a random upstream gradient g, the scalar L(x, params) = sum(f(x) * g) has
dL/dx = f.backward(g) and dL/dp = Parameter.grad, so both are compared with central differences
(L(v + eps) - L(v - eps)) / (2 eps) of that one scalar, entry by entry. Everything runs in float64
(layers built with dtype=np.float64, sparse weights converted with
``as_format(w, fmt, dtype=np.float64)``): the truncation error is O(eps**2) and the rounding error
O(ulp * |L| / eps), both far below the tolerances used.

Parameters are perturbed in place in ``Parameter.data``: for a sparse weight that is the format's value
array, so only stored entries are parameters. Layers cache state in forward, so forward runs again
before every backward.

The helper also checks what every layer promises besides the numbers: forward and backward leave
their arguments untouched, backward returns an array of the input's shape, and parameter gradients
accumulate across backward calls until `zero_grad`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["check_layer_gradients", "numerical_gradient"]


def numerical_gradient(f: Callable[[], float], v: np.ndarray, eps: float) -> np.ndarray:
    """Central differences of the scalar f() with respect to every entry of `v`, perturbed in place."""
    assert v.dtype == np.float64, f"finite differences need float64 values, found {v.dtype}"
    out = np.zeros(v.shape, dtype=np.float64)
    for idx in np.ndindex(*v.shape):
        old = v[idx]
        v[idx] = old + eps
        plus = f()
        v[idx] = old - eps
        minus = f()
        v[idx] = old
        out[idx] = (plus - minus) / (2 * eps)
    return out


def _assert_close(got, want, rtol, atol, what):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: expected shape {want.shape}, found {got.shape}"
    err = np.abs(got - want)
    bad = ~(err <= atol + rtol * np.abs(want))  # NaN counts as bad
    if np.any(bad):
        i = tuple(int(j) for j in np.argwhere(bad)[0])
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} entries off; first at {i}: "
                             f"analytic {got[i]!r}, finite differences {want[i]!r} "
                             f"(max abs error {float(np.nanmax(err)):.3g})")


def check_layer_gradients(layer, x, *, eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-7,
                          seed: int = 0, reference: Callable | None = None) -> dict:
    """Check `layer`'s input and parameter gradients (and, given `reference`, its forward) in float64.

    `reference(x)` is an independent NumPy implementation of the forward pass; its output must match
    forward(x) to rtol/atol. Returns {"out", "g", "dx", "grads"} (grads by parameter name) for further
    checks by the caller.
    """
    x = np.array(x, dtype=np.float64)
    named = list(layer.named_parameters())
    for name, p in named:
        assert p.data.dtype == np.float64, f"parameter {name}: build the layer in float64, found {p.data.dtype}"
    rng = np.random.default_rng(seed)

    x_before = x.copy()
    out = np.array(layer.forward(x))
    np.testing.assert_array_equal(x, x_before, err_msg="forward modified its input")
    assert out.dtype == np.float64, f"forward of a float64 layer returned {out.dtype}"
    assert np.all(np.isfinite(out)), "forward returned NaN or inf"
    if reference is not None:
        _assert_close(out, reference(x.copy()), rtol, atol, "forward vs reference")
    g = rng.standard_normal(out.shape)

    # analytic gradients: zero_grad, a fresh forward, then backward
    layer.zero_grad()
    layer.forward(x)
    g_before = g.copy()
    dx = np.array(layer.backward(g))
    np.testing.assert_array_equal(g, g_before, err_msg="backward modified its upstream gradient")
    assert dx.shape == x.shape, f"backward returned shape {dx.shape}, expected the input's {x.shape}"
    grads = {name: p.grad.copy() for name, p in named}
    for name, p in named:
        assert p.grad.shape == p.data.shape, f"{name}: grad shape {p.grad.shape} != data shape {p.data.shape}"

    xv = x.copy()  # perturbed in place by the finite differences

    def objective():
        return float(np.sum(np.asarray(layer.forward(xv)) * g))

    _assert_close(dx, numerical_gradient(objective, xv, eps), rtol, atol, "input gradient")
    for name, p in named:
        _assert_close(grads[name], numerical_gradient(objective, p.data, eps), rtol, atol,
                      f"gradient of parameter {name}")

    # gradients accumulate until zero_grad
    layer.forward(x)
    layer.backward(g.copy())
    for name, p in named:
        _assert_close(p.grad, 2 * grads[name], 1e-12, 1e-12, f"accumulated gradient of {name}")
    layer.zero_grad()
    return {"out": out, "g": g, "dx": dx, "grads": grads}
