"""Writers of tiny fake datasets in each dataset's REAL on-disk format.

The files are byte-compatible with the originals (so the production readers, not test doubles, are
exercised): CIFAR batches are protocol-2 pickles whose strings are Python-2 ``str`` objects, like the
files from https://www.cs.toronto.edu/~kriz/cifar.html (keys load as ``"data"`` with
``encoding="latin1"`` and as ``b"data"`` with ``encoding="bytes"``); MNIST files are uncompressed idx
files with the real magic numbers; ImageNet is an ImageFolder tree of real JPEG files. The event
datasets use their original formats: N-MNIST and N-Caltech101 40-bit ATIS ``.bin`` events, CIFAR10-DVS jAER
AEDAT 2.0 (big-endian DVS128 addresses), DVS128 Gesture cAER AEDAT 3.1 packets with ``_labels.csv`` files and
the ``trials_to_train/test.txt`` lists (checked against SpikingJelly's independent readers in the tests),
ASL-DVS MATLAB 5 ``.mat`` files with ``ts, x, y, pol`` column vectors.

``FAKE_WRITERS`` maps a DataModule class name to a callable ``(root) -> None`` that writes a dataset
small enough for ``fast_dev_run`` and valid for that DataModule's default arguments, with every
class represented in every split.
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path
from typing import Callable, Union

import numpy as np

PathLike = Union[str, os.PathLike]

__all__ = [
    "ASL_DVS_LETTERS",
    "CIFAR10DVS_CLASSES",
    "EVENTS",
    "FAKE_WRITERS",
    "make_events",
    "write_aedat2_dvs128",
    "write_aedat31_polarity",
    "write_asl_dvs_mat",
    "write_fake_cifar",
    "write_fake_cifar10dvs",
    "write_fake_dvs_gesture",
    "write_fake_imagefolder",
    "write_fake_asl_dvs",
    "write_fake_mnist",
    "write_fake_ncaltech101",
    "write_fake_nmnist",
    "write_fake_shd",
    "write_nmnist_bin",
    "write_shd_h5",
]


class _Py2StrPickler(pickle._Pickler):  # type: ignore[name-defined]
    """Protocol-2 pickler writing ``str`` and ``bytes`` as Python-2 ``str`` (BINSTRING opcodes).

    That is how the original CIFAR files were written (by Python 2), so fakes unpickle exactly like
    them under both ``encoding="latin1"`` (torchvision) and ``encoding="bytes"`` (the CIFAR site).
    """

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: Union[str, bytes]) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def _dump_py2(obj: object, path: Path) -> None:
    with open(path, "wb") as f:
        _Py2StrPickler(f, protocol=2).dump(obj)


def _labels(n: int, num_classes: int, rng: np.random.Generator) -> list[int]:
    """``n`` labels covering every class once ``n >= num_classes`` (then shuffled)."""
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    return [int(v) for v in labels]


def write_fake_cifar(
    root: PathLike, num_classes: int = 10, n_train: int = 50, n_test: int = 20, seed: int = 0
) -> Path:
    """Write a fake CIFAR-10 (``num_classes=10``) or CIFAR-100 (``100``) under ``root``.

    CIFAR-10: ``root/cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta`` (``n_train``
    spread over the 5 batches). CIFAR-100: ``root/cifar-100-python/train, test, meta`` with fine and
    coarse labels. Images are random uint8 rows of 3072 values (R plane, G plane, B plane).
    Returns the dataset folder.
    """
    if num_classes not in (10, 100):
        raise ValueError(f"num_classes must be 10 or 100, got {num_classes}")
    rng = np.random.default_rng(seed)

    def images(n: int) -> np.ndarray:
        return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)

    if num_classes == 10:
        folder = Path(root) / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        labels = _labels(n_train, 10, rng)
        chunks = np.array_split(np.arange(n_train), 5)
        for i, idx in enumerate(chunks, start=1):
            _dump_py2(
                {
                    "batch_label": f"training batch {i} of 5",
                    "labels": [labels[j] for j in idx],
                    "data": images(len(idx)),
                    "filenames": [f"fake_{j}.png" for j in idx],
                },
                folder / f"data_batch_{i}",
            )
        _dump_py2(
            {
                "batch_label": "testing batch 1 of 1",
                "labels": _labels(n_test, 10, rng),
                "data": images(n_test),
                "filenames": [f"fake_test_{j}.png" for j in range(n_test)],
            },
            folder / "test_batch",
        )
        names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        _dump_py2({"num_cases_per_batch": max(len(c) for c in chunks), "label_names": names, "num_vis": 3072},
                  folder / "batches.meta")
        return folder

    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        fine = _labels(n, 100, rng)
        _dump_py2(
            {
                "filenames": [f"fake_{split}_{j}.png" for j in range(n)],
                "batch_label": f"{split}ing batch 1 of 1",
                "fine_labels": fine,
                "coarse_labels": [f // 5 for f in fine],
                "data": images(n),
            },
            folder / split,
        )
    _dump_py2(
        {
            "fine_label_names": [f"fine_{i:02d}" for i in range(100)],
            "coarse_label_names": [f"coarse_{i:02d}" for i in range(20)],
        },
        folder / "meta",
    )
    return folder


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Uncompressed idx file of uint8: magic 0x0000 08 <ndim>, big-endian dims, raw bytes."""
    assert array.dtype == np.uint8
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.tobytes())


def write_fake_mnist(
    root: PathLike, variant: str = "MNIST", n_train: int = 50, n_test: int = 20, seed: int = 0
) -> Path:
    """Write fake MNIST / FashionMNIST idx files under ``root/<variant>/raw/`` (torchvision's place).

    Files: ``train-images-idx3-ubyte`` (magic 2051, [n_train, 28, 28]), ``train-labels-idx1-ubyte``
    (magic 2049, [n_train]), and the ``t10k-*`` pair for the test split. Returns the raw folder.
    """
    if variant not in ("MNIST", "FashionMNIST"):
        raise ValueError(f"variant must be 'MNIST' or 'FashionMNIST', got {variant!r}")
    rng = np.random.default_rng(seed)
    raw = Path(root) / variant / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.asarray(_labels(n, 10, rng), dtype=np.uint8))
    return raw


def write_fake_imagefolder(
    root: PathLike, num_classes: int = 4, n_per_class: int = 2, size: int = 16, seed: int = 0
) -> Path:
    """Write ``root/train/<class>/*.JPEG`` and ``root/val/<class>/*.JPEG`` (real RGB JPEGs).

    Class folders are named like ImageNet synsets (``n00000000``, ``n00000001``, ...); each split
    gets ``n_per_class`` images of ``size`` x ``size`` per class. Returns ``root``.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    for split in ("train", "val"):
        for c in range(num_classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n_per_class):
                pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{split}_{c}_{i}.JPEG", format="JPEG")
    return root


# ====================================================================== event datasets
#: structured dtype of the events handed to the writers (image coordinates, t in microseconds)
EVENTS = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])


def make_events(
    n: int, width: int, height: int, duration_us: int, rng: np.random.Generator, t0: int = 0
) -> np.ndarray:
    """``n`` random events on a ``width`` x ``height`` sensor, time-sorted in ``[t0, t0 + duration_us)``."""
    ev = np.empty(n, dtype=EVENTS)
    ev["x"] = rng.integers(0, width, n)
    ev["y"] = rng.integers(0, height, n)
    ev["t"] = np.sort(rng.integers(t0, t0 + duration_us, n))
    ev["p"] = rng.integers(0, 2, n)
    return ev


def write_nmnist_bin(path: PathLike, events: np.ndarray) -> Path:
    """One N-MNIST ``.bin`` file: 5 bytes per event, x (8 bits), y (8), polarity (1) + timestamp (23).

    Byte layout of Orchard's files: ``x, y, p << 7 | t[22:16], t[15:8], t[7:0]`` (t < 2^23 us).
    """
    t = events["t"].astype(np.int64)
    if len(t) and (t.min() < 0 or t.max() >= 1 << 23):
        raise ValueError("N-MNIST timestamps must lie in [0, 2^23) us")
    raw = np.empty((len(events), 5), dtype=np.uint8)
    raw[:, 0] = events["x"]
    raw[:, 1] = events["y"]
    raw[:, 2] = (events["p"].astype(np.int64) << 7) | ((t >> 16) & 0x7F)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.tobytes())
    return path


def write_aedat2_dvs128(path: PathLike, events: np.ndarray) -> Path:
    """One CIFAR10-DVS recording: jAER AEDAT 2.0 text header, then big-endian (address, timestamp) u32 pairs.

    ``events`` are in image coordinates as the CIFAR10-DVS readers (SpikingJelly's, ours) return them,
    i.e. the DVS128 address is ``(127 - x) << 8 | (127 - y) << 1 | (1 - p)``.
    """
    header = (
        b"#!AER-DAT2.0\r\n"
        b"# This is a raw AE data file - do not edit\r\n"
        b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
        b"# Timestamps tick is 1 us\r\n"
        b"# created Thu Jan 01 00:00:00 CST 2015\r\n"
    )
    addr = ((127 - events["x"]) << 8) | ((127 - events["y"]) << 1) | (1 - events["p"])
    data = np.empty(len(events), dtype=[("address", ">u4"), ("timestamp", ">u4")])
    data["address"] = addr
    data["timestamp"] = events["t"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + data.tobytes())
    return path


def _aedat3_packet(event_type: int, payload: np.ndarray, ts_overflow: int = 0) -> bytes:
    n = len(payload)
    header = struct.pack("<HHIIIIII", event_type, 1, 8, 4, ts_overflow, n, n, n)
    return header + payload.tobytes()


def write_aedat31_polarity(path: PathLike, events: np.ndarray, packet_events: int = 256) -> Path:
    """One DVS128 Gesture recording: cAER AEDAT 3.1 text header, then little-endian event packets.

    The stream starts with a special-event packet (type 0, a timestamp reset, as cAER writes) followed
    by polarity packets (type 1) of up to ``packet_events`` events: 28-byte header ``eventType,
    eventSource, eventSize=8, eventTSOffset=4, eventTSOverflow, eventCapacity, eventNumber, eventValid``
    and 8-byte events ``data = x << 17 | y << 2 | p << 1 | valid`` + ``int32 timestamp``.
    """
    header = (
        b"#!AER-DAT3.1\r\n"
        b"#Format: RAW\r\n"
        b"#Source 1: DVS128\r\n"
        b"#Start-Time: 2017-01-01 00:00:00 (TZ+0000)\r\n"
        b"#!END-HEADER\r\n"
    )
    special = np.zeros(1, dtype=[("data", "<u4"), ("timestamp", "<i4")])
    special["data"] = (2 << 1) | 1  # TIMESTAMP_RESET, valid
    chunks = [header, _aedat3_packet(0, special)]
    data = np.empty(len(events), dtype=[("data", "<u4"), ("timestamp", "<i4")])
    data["data"] = (events["x"] << 17) | (events["y"] << 2) | (events["p"] << 1) | 1
    data["timestamp"] = events["t"]
    for start in range(0, len(data), packet_events):
        chunks.append(_aedat3_packet(1, data[start : start + packet_events]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(chunks))
    return path


def write_fake_nmnist(
    root: PathLike, n_train: int = 2, n_test: int = 1, n_events: int = 300, seed: int = 0
) -> Path:
    """Fake N-MNIST in tonic's layout: ``root/NMNIST/{Train,Test}/<digit>/<id>.bin``.

    ``n_train`` / ``n_test`` recordings per digit, each ``n_events`` events on the 34x34 ATIS over the
    ~300 ms of the three saccades. Returns the ``NMNIST`` folder.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "NMNIST"
    sample = 0
    for split, n in (("Train", n_train), ("Test", n_test)):
        for digit in range(10):
            for _ in range(n):
                sample += 1
                write_nmnist_bin(folder / split / str(digit) / f"{sample:05d}.bin",
                                 make_events(n_events, 34, 34, 300_000, rng))
    return folder


CIFAR10DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_fake_cifar10dvs(root: PathLike, n_per_class: int = 5, n_events: int = 2000, seed: int = 0) -> Path:
    """Fake CIFAR10-DVS: ``root/CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat`` (AEDAT 2.0, 128x128).

    ``n_per_class`` recordings per class (the 9:1 split leaves one of 5 for testing), each
    ``n_events`` events over ~1.3 s (the real recordings last about that long). Returns the folder.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "CIFAR10DVS"
    for name in CIFAR10DVS_CLASSES:
        for i in range(n_per_class):
            write_aedat2_dvs128(folder / name / f"cifar10_{name}_{i}.aedat",
                                make_events(n_events, 128, 128, 1_300_000, rng))
    return folder


def write_fake_dvs_gesture(
    root: PathLike,
    train: tuple[str, ...] = ("user01_fluorescent", "user02_led"),
    test: tuple[str, ...] = ("user24_fluorescent",),
    events_per_gesture: int = 400,
    seed: int = 0,
) -> Path:
    """Fake DVS128 Gesture as in ``DvsGesture.tar.gz``: ``root/DvsGesture/`` with one AEDAT 3.1 recording
    and one ``<name>_labels.csv`` per trial, plus ``trials_to_train.txt`` / ``trials_to_test.txt``.

    Every recording holds the 11 gestures (classes 1..11 in the CSV) in a random order, each a window
    of ~0.5 s with ``events_per_gesture`` events, and some events between windows (not part of any
    sample). Returns the ``DvsGesture`` folder.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "DvsGesture"
    folder.mkdir(parents=True, exist_ok=True)
    for listing, names in (("trials_to_train.txt", train), ("trials_to_test.txt", test)):
        (folder / listing).write_text("".join(f"{n}.aedat\n" for n in names) + "\n")
        for name in names:
            t = 1_000_000 + int(rng.integers(0, 1000))
            parts, rows = [], []
            for cls in rng.permutation(11) + 1:
                parts.append(make_events(50, 128, 128, 200_000, rng, t0=t))  # between gestures
                t += 200_000
                start, end = t, t + 500_000
                parts.append(make_events(events_per_gesture, 128, 128, end - start, rng, t0=start))
                rows.append(f"{cls},{start},{end}\n")
                t = end
            write_aedat31_polarity(folder / f"{name}.aedat", np.concatenate(parts))
            (folder / f"{name}_labels.csv").write_text("class,startTime_usec,endTime_usec\n" + "".join(rows))
    return folder


def write_fake_ncaltech101(root: PathLike, n_per_class: int = 2, n_events: int = 300, seed: int = 0) -> Path:
    """Fake N-Caltech101: ``root/Caltech101/<class>/image_NNNN.bin`` (ATIS 40-bit events, as N-MNIST).

    ``n_per_class`` recordings in each of the 101 class folders (the 9:1 split leaves one of 2 for testing),
    each ``n_events`` events within the 240x180 canvas over the ~300 ms of the three saccades. Returns the
    ``Caltech101`` folder.
    """
    from lightning_snn.data.ncaltech101 import NCALTECH101_CLASSES

    rng = np.random.default_rng(seed)
    folder = Path(root) / "Caltech101"
    for name in NCALTECH101_CLASSES:
        for i in range(1, n_per_class + 1):
            write_nmnist_bin(folder / name / f"image_{i:04d}.bin", make_events(n_events, 240, 180, 300_000, rng))
    return folder


def write_asl_dvs_mat(path: PathLike, events: np.ndarray, dtype: type = np.float64) -> Path:
    """One ASL-DVS recording: a MATLAB 5 file with column vectors ``ts``, ``x``, ``y``, ``pol`` of ``dtype``.

    ``events`` are in image coordinates as the readers (tonic's, ours) return them; the file counts rows
    from the bottom of the 180-row DAVIS240c, ``y_file = 179 - y``.
    """
    import scipy.io

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {"ts": events["t"], "x": events["x"], "y": 179 - events["y"], "pol": events["p"]}
    scipy.io.savemat(path, {k: np.asarray(v, dtype=dtype).reshape(-1, 1) for k, v in fields.items()})
    return path


ASL_DVS_LETTERS = tuple("abcdefghiklmnopqrstuvwxy")  # 24 letters: no j, no z


def write_fake_asl_dvs(root: PathLike, n_per_class: int = 2, n_events: int = 200, seed: int = 0) -> Path:
    """Fake ASL-DVS: ``root/ASLDVS/<letter>/<letter>_NNNN.mat`` for the 24 letters, ``n_per_class`` each
    (the 4:1 split leaves one of 2 for testing), ``n_events`` events over ~100 ms on 240x180. Returns the folder."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "ASLDVS"
    for letter in ASL_DVS_LETTERS:
        for i in range(1, n_per_class + 1):
            write_asl_dvs_mat(folder / letter / f"{letter}_{i:04d}.mat", make_events(n_events, 240, 180, 100_000, rng))
    return folder


def _fake_digits(root: PathLike) -> None:
    """DigitsDataModule reads scikit-learn's bundled data: nothing to write."""


def _fake_mnist(root: PathLike) -> None:
    write_fake_mnist(root, "MNIST", n_train=40, n_test=20)


def _fake_fashion_mnist(root: PathLike) -> None:
    write_fake_mnist(root, "FashionMNIST", n_train=40, n_test=20)


def _fake_cifar10(root: PathLike) -> None:
    write_fake_cifar(root, 10, n_train=50, n_test=20)


def _fake_cifar100(root: PathLike) -> None:
    write_fake_cifar(root, 100, n_train=200, n_test=100)


def _fake_imagenet(root: PathLike) -> None:
    # ImageNetDataModule's default num_classes is 1000: one tiny JPEG per class and split
    write_fake_imagefolder(root, num_classes=1000, n_per_class=1, size=8)


def write_shd_h5(path: PathLike, times: list, units: list, labels: list) -> Path:
    """One SHD split in the layout of ``shd_train.h5`` / ``shd_test.h5`` (Cramer et al. 2020): variable-length
    ``spikes/times`` (float16 seconds) and ``spikes/units`` (uint16 channels), ``labels`` (uint16) and the
    ``extra`` group (``speaker``, ``keys``)."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        t_ds = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.float16))
        u_ds = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u) in enumerate(zip(times, units)):
            t_ds[i] = np.asarray(t, dtype=np.float16)
            u_ds[i] = np.asarray(u, dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        f.create_dataset("extra/speaker", data=np.arange(len(labels), dtype=np.uint16) % 12)
        f.create_dataset("extra/keys", data=np.array([f"{d}" for d in range(20)], dtype="S8"))
    return path


def write_fake_shd(root: PathLike, n_per_class: int = 1, n_spikes: int = 300, seed: int = 0) -> Path:
    """``<root>/shd_train.h5`` and ``<root>/shd_test.h5`` with ``n_per_class`` recordings of each of the 20
    classes: ascending spike times in [0, 1.3) s on channels 0..699."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split in ("train", "test"):
        labels = [c for c in range(20) for _ in range(n_per_class)]
        times = [np.sort(rng.uniform(0.0, 1.3, n_spikes)) for _ in labels]
        units = [rng.integers(0, 700, n_spikes) for _ in labels]
        write_shd_h5(root / f"shd_{split}.h5", times, units, labels)
    return root


FAKE_WRITERS: dict[str, Callable[[PathLike], None]] = {
    "DigitsDataModule": _fake_digits,
    "MNISTDataModule": _fake_mnist,
    "FashionMNISTDataModule": _fake_fashion_mnist,
    "CIFAR10DataModule": _fake_cifar10,
    "CIFAR100DataModule": _fake_cifar100,
    "ImageNetDataModule": _fake_imagenet,
    "NMNISTDataModule": write_fake_nmnist,
    "CIFAR10DVSDataModule": write_fake_cifar10dvs,
    "DVSGestureDataModule": write_fake_dvs_gesture,
    "NCaltech101DataModule": write_fake_ncaltech101,
    "ASLDVSDataModule": write_fake_asl_dvs,
    "SHDDataModule": write_fake_shd,
}
