"""Synthetic event recordings written in the N-MNIST on-disk format (for demos when the real data is absent).

:func:`write_nmnist_bin` writes Orchard's 40-bit ``.bin`` layout, the format
:func:`~lightning_snn.data.nmnist.read_nmnist_file` reads, and :func:`write_synthetic_nmnist` builds a
small ``root/NMNIST/{Train,Test}/<digit>/*.bin`` tree that :class:`~lightning_snn.data.NMNISTDataModule` loads
like the real dataset. The recordings are **simulated**, not sensor data: a digit of scikit-learn's bundled
8x8 set is scaled to 24x24, placed on the 34x34 ATIS pixel array and moved along the three-saccade triangle of
N-MNIST (3 x 100 ms); a pixel emits an ON (OFF) event whenever its log intensity rose (fell) by more than a
contrast threshold since its last event, the principle of a dynamic vision sensor. Use them to see the pipeline
work, never to report accuracy.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

__all__ = ["SENSOR_SIZE", "simulate_saccade_events", "write_nmnist_bin", "write_synthetic_nmnist"]

PathLike = Union[str, os.PathLike]
#: (width, height) of the ATIS pixel array of N-MNIST
SENSOR_SIZE = (34, 34)
_MAX_T = 1 << 23  # 23-bit timestamps (us)


def write_nmnist_bin(path: PathLike, events: np.ndarray) -> Path:
    """Write one N-MNIST ``.bin`` file: 5 bytes per event, ``x, y, p << 7 | t[22:16], t[15:8], t[7:0]``.

    ``events`` is a structured array with fields ``x``, ``y``, ``t`` (us) and ``p`` (0/1), as the readers
    return. Raises ``ValueError`` naming the file when a value does not fit the format (x, y in 0..255 with
    y != 240, which marks a timestamp overflow; t in [0, 2^23) us, sorted).
    """
    path = Path(path)
    x = np.asarray(events["x"], dtype=np.int64)
    y = np.asarray(events["y"], dtype=np.int64)
    t = np.asarray(events["t"], dtype=np.int64)
    p = np.asarray(events["p"], dtype=np.int64)
    if len(t):
        if t.min() < 0 or t.max() >= _MAX_T:
            raise ValueError(f"{path}: N-MNIST timestamps must lie in [0, 2^23) us, got [{t.min()}, {t.max()}]")
        if (np.diff(t) < 0).any():
            raise ValueError(f"{path}: N-MNIST events must be sorted by timestamp")
        if x.min() < 0 or x.max() > 255 or y.min() < 0 or y.max() > 255 or (y == 240).any():
            raise ValueError(f"{path}: x and y must lie in 0..255 (y = 240 is reserved for timestamp overflows)")
        if not np.isin(p, (0, 1)).all():
            raise ValueError(f"{path}: polarity must be 0 (OFF) or 1 (ON)")
    raw = np.empty((len(t), 5), dtype=np.uint8)
    raw[:, 0] = x
    raw[:, 1] = y
    raw[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.tobytes())
    return path


def _shift_bilinear(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``img`` moved by (dx, dy) pixels with bilinear interpolation, zeros outside."""
    h, w = img.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    sx, sy = xs - dx, ys - dy
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = sx - x0, sy - y0
    out = np.zeros_like(img, dtype=np.float64)
    for oy, wy in ((0, 1 - fy), (1, fy)):
        for ox, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + oy, x0 + ox
            ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            vals = np.zeros_like(out)
            vals[ok] = img[yy[ok], xx[ok]]
            out += wy * wx * vals
    return out


def simulate_saccade_events(
    image: np.ndarray,
    rng: np.random.Generator,
    step_us: int = 1000,
    amplitude: float = 3.0,
    threshold: float = 0.25,
) -> np.ndarray:
    """Events of a static ``image`` (2-D, values >= 0, at most 34x34) seen by a sensor making N-MNIST's saccades.

    The image is centred on the 34x34 array and moved along a triangle of side ``amplitude`` pixels, one
    side per 100 ms saccade; every ``step_us`` the log intensity is compared with each pixel's reference and
    a change beyond ``threshold`` emits an event (ON for brighter, OFF for darker) and resets the reference.
    Event times are jittered uniformly within the step. Returns a time-sorted structured array
    ``(x, y, t, p)``.
    """
    width, height = SENSOR_SIZE
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or img.shape[0] > height or img.shape[1] > width:
        raise ValueError(f"image must be 2-D and at most {height}x{width}, got shape {img.shape}")
    canvas = np.zeros((height, width))
    top, left = (height - img.shape[0]) // 2, (width - img.shape[1]) // 2
    canvas[top: top + img.shape[0], left: left + img.shape[1]] = img / max(float(img.max()), 1e-9)
    log_of = lambda a: np.log(0.05 + a)  # noqa: E731  (the sensor's logarithmic response, with a dark floor)
    corners = [(0.0, 0.0), (amplitude, amplitude), (-amplitude, amplitude), (0.0, 0.0)]
    ref = log_of(canvas)
    xs, ys, ts, ps = [], [], [], []
    steps = 100_000 // step_us
    for saccade in range(3):
        (ax, ay), (bx, by) = corners[saccade], corners[saccade + 1]
        for k in range(1, steps + 1):
            f = k / steps
            now = log_of(_shift_bilinear(canvas, ax + f * (bx - ax), ay + f * (by - ay)))
            diff = now - ref
            fired = np.abs(diff) >= threshold
            if fired.any():
                y, x = np.nonzero(fired)
                t0 = saccade * 100_000 + (k - 1) * step_us
                xs.append(x)
                ys.append(y)
                ts.append(t0 + rng.integers(0, step_us, len(x)))
                ps.append((diff[fired] > 0).astype(np.int64))
                ref[fired] = now[fired]
    dtype = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])
    if not ts:
        return np.empty(0, dtype=dtype)
    events = np.empty(sum(len(t) for t in ts), dtype=dtype)
    events["x"] = np.concatenate(xs)
    events["y"] = np.concatenate(ys)
    events["t"] = np.concatenate(ts)
    events["p"] = np.concatenate(ps).astype(bool)
    return events[np.argsort(events["t"], kind="stable")]


def write_synthetic_nmnist(root: PathLike, n_train: int = 2, n_test: int = 1, seed: int = 0) -> Path:
    """Write a small **synthetic** N-MNIST under ``root`` (``root/NMNIST/{Train,Test}/<digit>/<id>.bin``).

    ``n_train`` / ``n_test`` recordings per digit, simulated by :func:`simulate_saccade_events` from distinct
    images of scikit-learn's 8x8 digits (scaled 3x to 24x24). The tree loads with
    ``NMNISTDataModule(root=root)``. Returns the ``NMNIST`` folder.
    """
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be >= 1, got {n_train} / {n_test}")
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    folder = Path(root) / "NMNIST"
    sample = 0
    for split, n in (("Train", n_train), ("Test", n_test)):
        for digit in range(10):
            choices = np.flatnonzero(digits.target == digit)
            for _ in range(n):
                sample += 1
                image = np.kron(digits.images[choices[sample % len(choices)]], np.ones((3, 3)))
                write_nmnist_bin(folder / split / str(digit) / f"{sample:05d}.bin", simulate_saccade_events(image, rng))
    return folder
