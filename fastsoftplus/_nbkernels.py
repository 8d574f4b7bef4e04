"""Scalar softplus kernels for Numba (PLACEHOLDER: being replaced by the shared polynomial algorithm).

Signatures are final: every function is ``@njit(inline="always")`` and takes scalars of one
precision (float32 or float64): ``softplus_f64(x, beta, threshold)``, ``grad_f64(x, beta, threshold)``,
``backward_f64(g, x, beta, threshold)``, ``inverse_f64(y, beta, threshold)`` and the ``_f32`` twins.
``threshold`` is ``inf`` for "no cut-off".
"""
import math

import numpy as np
from numba import njit


@njit(inline="always")
def softplus_f64(x, beta, threshold):
    z = x * beta
    if z > threshold:
        return x
    return (max(z, 0.0) + math.log1p(math.exp(-abs(z)))) / beta


@njit(inline="always")
def softplus_f32(x, beta, threshold):
    z = x * beta
    if z > threshold:
        return x
    zd = np.float64(x) * np.float64(beta)
    return np.float32((max(zd, 0.0) + math.log1p(math.exp(-abs(zd)))) / np.float64(beta))


@njit(inline="always")
def grad_f64(x, beta, threshold):
    z = x * beta
    if z > threshold:
        return 1.0
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    t = math.exp(z)
    return t / (1.0 + t)


@njit(inline="always")
def grad_f32(x, beta, threshold):
    z = x * beta
    if z > threshold:
        return np.float32(1.0)
    return np.float32(grad_f64(np.float64(x) * np.float64(beta), 1.0, math.inf))


@njit(inline="always")
def backward_f64(g, x, beta, threshold):
    return g * grad_f64(x, beta, threshold)


@njit(inline="always")
def backward_f32(g, x, beta, threshold):
    z = x * beta
    if z > threshold:
        return g
    return np.float32(np.float64(g) * grad_f64(np.float64(x) * np.float64(beta), 1.0, math.inf))


@njit(inline="always")
def inverse_f64(y, beta, threshold):
    z = y * beta
    if z > threshold:
        return y
    if not (z > 0):
        return math.nan if z == z else z
    return (z + math.log(-math.expm1(-z))) / beta


@njit(inline="always")
def inverse_f32(y, beta, threshold):
    z = y * beta
    if z > threshold:
        return y
    return np.float32(inverse_f64(np.float64(y) * np.float64(beta), 1.0, math.inf) / np.float64(beta))
