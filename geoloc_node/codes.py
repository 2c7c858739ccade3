"""Binary hash codes: sign bits packed into bytes, compared by Hamming distance.

A code of K bits is stored as K/8 bytes, most significant bit first (numpy's ``packbits`` order), so that a code written
by one tool reads the same in every other. Hamming distance is a popcount of the XOR: ``np.bitwise_count`` on
numpy >= 2, a 256-entry lookup table on numpy 1.x (ROS 2 Humble's message packages are built against numpy 1, so the
Jetson image runs the core there).
"""

from __future__ import annotations

import numpy as np

from .errors import CodeLengthError

#: Code lengths the project supports end to end (model head, table, search).
SUPPORTED_BITS = (64, 128, 256, 512)

_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount(x: np.ndarray) -> np.ndarray:
    """Number of set bits of each element of an unsigned integer array (same shape, uint8)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    x = np.asarray(x)  # numpy 1.x: count per byte through the table, then add the bytes of each element
    counts = _POPCOUNT8[x.view(np.uint8)]
    return counts.reshape(*x.shape, x.dtype.itemsize).sum(axis=-1, dtype=np.uint8)


def check_bits(bits: int) -> int:
    """Return ``bits`` if it is a supported code length, else raise :class:`CodeLengthError`."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or int(bits) not in SUPPORTED_BITS:
        raise CodeLengthError(f"code length {bits!r} bits is not supported; use one of {SUPPORTED_BITS}")
    return int(bits)


def code_bytes(bits: int) -> int:
    """Bytes of one packed code of ``bits`` bits."""
    return check_bits(bits) // 8


def pack_signs(values: np.ndarray) -> np.ndarray:
    """Pack the signs of real values (last axis = bits) into bytes: bit 1 where value > 0, else 0.

    ``values`` of shape (..., K) gives uint8 of shape (..., K/8). NaN values are refused: a NaN has no sign, and a code
    built from one would silently match the wrong tiles.
    """
    values = np.asarray(values)
    if values.ndim == 0:
        raise CodeLengthError("pack_signs needs an array whose last axis holds the bits")
    check_bits(values.shape[-1])
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise ValueError("cannot pack NaN values into a binary code")
    return np.packbits(values > 0, axis=-1)


def unpack_bits(codes: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Inverse of :func:`pack_signs`: uint8 (..., K/8) -> uint8 0/1 array (..., K)."""
    codes = as_codes(codes, bits)
    return np.unpackbits(codes, axis=-1)


def as_codes(codes: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Validate packed codes: uint8 with a supported number of bytes on the last axis (and ``bits`` if given)."""
    codes = np.asarray(codes)
    if codes.dtype != np.uint8:
        raise CodeLengthError(f"packed codes must be uint8, got {codes.dtype}")
    if codes.ndim == 0:
        raise CodeLengthError("packed codes need at least one axis")
    nbits = codes.shape[-1] * 8
    if nbits not in SUPPORTED_BITS:
        raise CodeLengthError(f"packed code of {codes.shape[-1]} bytes ({nbits} bits) is not supported; "
                              f"use one of {SUPPORTED_BITS} bits")
    if bits is not None and nbits != check_bits(bits):
        raise CodeLengthError(f"code has {nbits} bits, expected {bits}")
    return codes


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distance between packed codes, broadcasting over leading axes: (..., B) x (..., B) -> int (...)."""
    a = as_codes(a)
    b = as_codes(b)
    if a.shape[-1] != b.shape[-1]:
        raise CodeLengthError(f"cannot compare codes of {a.shape[-1] * 8} and {b.shape[-1] * 8} bits")
    return popcount(np.bitwise_xor(a, b)).sum(axis=-1, dtype=np.int32)
