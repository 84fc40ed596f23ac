"""ASL-DVS: the ``.mat`` reader (tonic's decoding), its checks of damaged or foreign files, the 24 letter
folders and the seeded 4:1 split (fake MATLAB 5 files in the original layout)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import scipy.io

from lightning_snn.data import ASLDVSDataModule, DatasetError
from lightning_snn.data.asl_dvs import ASL_DVS_CLASSES, read_asl_dvs_file
from tests.data.event_helpers import assert_reads_back
from tests.fakes import ASL_DVS_LETTERS, make_events, write_asl_dvs_mat, write_fake_asl_dvs

pytestmark = pytest.mark.usefixtures("no_downloads")


def test_class_list():
    assert ASL_DVS_CLASSES == ASL_DVS_LETTERS and len(ASL_DVS_CLASSES) == 24
    assert "j" not in ASL_DVS_CLASSES and "z" not in ASL_DVS_CLASSES


@pytest.mark.parametrize("dtype", [np.float64, np.uint32])
def test_reader_returns_the_written_events(tmp_path, dtype):
    events = make_events(500, 240, 180, 100_000, np.random.default_rng(1))
    path = write_asl_dvs_mat(tmp_path / "a_0001.mat", events, dtype=dtype)
    got = assert_reads_back(read_asl_dvs_file, path, events)
    raw = scipy.io.loadmat(path)  # the file counts rows from the bottom; tonic's ASLDVS flips them: 179 - y
    assert np.array_equal(got["y"], 179 - raw["y"].ravel().astype(np.int64))


def _fields(n: int = 50) -> dict[str, np.ndarray]:
    ev = make_events(n, 240, 180, 100_000, np.random.default_rng(2))
    return {"ts": ev["t"][:, None], "x": ev["x"][:, None], "y": ev["y"][:, None], "pol": ev["p"][:, None]}


@pytest.mark.parametrize("damage,match", [
    ("truncated", "cannot be read as a MATLAB file"),
    ("garbage", "cannot be read as a MATLAB file"),
    ("missing_field", r"lacks the field\(s\) pol"),
    ("lengths", "fields of different lengths"),
    ("fraction", "field x holds values that are not whole numbers"),
    ("polarity", "polarities other than 0 and 1"),
    ("empty", "holds no events"),
    ("matrix", "field ts is a .* array of shape"),
])
def test_damaged_or_foreign_file_is_named(tmp_path, damage, match):
    path = tmp_path / "b_0001.mat"
    fields = _fields()
    if damage == "missing_field":
        del fields["pol"]
    elif damage == "lengths":
        fields["y"] = fields["y"][:-1]
    elif damage == "fraction":
        fields["x"] = fields["x"] + 0.5
    elif damage == "polarity":
        fields["pol"] = fields["pol"] * 2 - 1  # a -1 / 1 encoding would silently turn OFF into ON
    elif damage == "empty":
        fields = {k: v[:0] for k, v in fields.items()}
    elif damage == "matrix":
        fields["ts"] = np.zeros((5, 10))
    scipy.io.savemat(path, fields)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-40])
    elif damage == "garbage":
        path.write_bytes(b"not a MATLAB file at all" * 20)
    with pytest.raises(DatasetError, match=rf"ASL-DVS file {path}.*{match}"):
        read_asl_dvs_file(path)


def test_truncated_file_stops_setup(tmp_path):
    write_fake_asl_dvs(tmp_path, n_per_class=2, n_events=30)
    bad = tmp_path / "ASLDVS" / "a" / "a_0001.mat"
    bad.write_bytes(bad.read_bytes()[:-25])
    with pytest.raises(DatasetError, match=f"ASL-DVS file {bad} cannot be read"):
        ASLDVSDataModule(root=str(tmp_path), T=2, cache_dir=str(tmp_path / "cache")).setup("fit")


def test_events_outside_the_sensor_are_named(tmp_path):
    events = make_events(30, 240, 180, 100_000, np.random.default_rng(0))
    events["x"][4] = 250
    write_fake_asl_dvs(tmp_path, n_per_class=2, n_events=30)
    bad = write_asl_dvs_mat(tmp_path / "ASLDVS" / "c" / "c_0001.mat", events)
    dm = ASLDVSDataModule(root=str(tmp_path), T=2, cache=False)
    dm.setup("fit")
    (dataset, index), = [(ds, i) for ds in (dm.train_set, dm.test_set) for i, s in enumerate(ds.samples) if s.path == str(bad)]
    with pytest.raises(DatasetError, match=rf"{bad} has 1 of 30 events outside the 240x180 sensor"):
        dataset[index]


def test_seeded_stratified_split(tmp_path):
    for letter in ASL_DVS_LETTERS:  # only listed, never read
        (tmp_path / "ASLDVS" / letter).mkdir(parents=True)
        for i in range(1, 6):
            (tmp_path / "ASLDVS" / letter / f"{letter}_{i:04d}.mat").touch()

    def ids(train: bool, **kw) -> list[str]:
        return [s.sample_id for s in ASLDVSDataModule(root=str(tmp_path), cache=False, **kw).list_samples(train)]

    train, test = ids(True), ids(False)
    assert len(train) == 96 and len(test) == 24 and not set(train) & set(test)  # 4:1 in every letter
    assert all(sum(s.startswith(f"{c}/") for s in test) == 1 for c in ASL_DVS_LETTERS)
    assert (ids(True), ids(False)) == (train, test)
    assert ids(False, split_seed=3) != test
    assert len(ids(False, train_ratio=0.6)) == 48
    assert ids(False, split="first") == [f"{c}/{c}_0005.mat" for c in ASL_DVS_LETTERS]


def test_missing_and_stray_folders(tmp_path):
    write_fake_asl_dvs(tmp_path, n_per_class=2, n_events=5)
    shutil.copytree(tmp_path / "ASLDVS" / "a", tmp_path / "ASLDVS" / "j")
    with pytest.warns(UserWarning, match=r"ASL-DVS: ignoring folder .*ASLDVS/j \(2 \.mat files\)"):
        ASLDVSDataModule(root=str(tmp_path), cache=False).list_samples(True)
    shutil.rmtree(tmp_path / "ASLDVS" / "q")
    with pytest.raises(FileNotFoundError, match=r"class folder .*ASLDVS/q is missing"):
        ASLDVSDataModule(root=str(tmp_path), cache=False).setup("fit")
    with pytest.raises(ValueError, match="cannot be downloaded automatically"):
        ASLDVSDataModule(root=str(tmp_path), download=True)
