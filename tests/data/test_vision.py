import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import datasets as tvd

from lightning_snn.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    Cutout,
    DatasetError,
    FashionMNISTDataModule,
    ImageNetDataModule,
    MNISTDataModule,
    SpikingDataModule,
)
from lightning_snn.data.transforms import build_train_transform
from tests.fakes import FAKE_WRITERS, write_fake_cifar, write_fake_imagefolder, write_fake_mnist

# (DataModule class, extra constructor kwargs, expected input shape, num_classes)
CASES = [
    (MNISTDataModule, {}, (1, 28, 28), 10),
    (FashionMNISTDataModule, {}, (1, 28, 28), 10),
    (CIFAR10DataModule, {"cutout": True, "autoaugment": True}, (3, 32, 32), 10),
    (CIFAR100DataModule, {}, (3, 32, 32), 100),
    (ImageNetDataModule, {"image_size": 32, "num_classes": 5}, (3, 32, 32), 5),
]


def _write(cls, root: Path, kwargs: dict) -> None:
    if cls is ImageNetDataModule:
        write_fake_imagefolder(root, num_classes=kwargs["num_classes"], n_per_class=3, size=20)
    else:
        FAKE_WRITERS[cls.__name__](root)


@pytest.mark.parametrize("cls,kwargs,shape,num_classes", CASES, ids=[c[0].__name__ for c in CASES])
def test_loads_fake_data(tmp_path, cls, kwargs, shape, num_classes):
    _write(cls, tmp_path, kwargs)
    dm = cls(root=str(tmp_path), batch_size=8, **kwargs)
    assert isinstance(dm, SpikingDataModule)
    # available before setup, for LightningCLI's link_arguments
    assert dm.num_classes == num_classes and dm.input_shape == shape
    dm.setup("fit")
    assert dm.val_set is dm.test_set  # val_split 0.0 validates on the test split
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        x, y = next(iter(loader))
        assert x.dtype == torch.float32 and x.shape == (8, *shape)
        assert y.dtype == torch.long and y.shape == (8,)
        assert 0 <= int(y.min()) and int(y.max()) < num_classes
    dm.setup("test")
    x, y = next(iter(dm.predict_dataloader()))
    assert x.shape == (8, *shape)


def test_fake_writers_cover_every_datamodule_default(tmp_path):
    # every FAKE_WRITERS entry is valid for its DataModule's default arguments
    import lightning_snn.data as data

    for name, writer in FAKE_WRITERS.items():
        if name in ("DigitsDataModule", "ImageNetDataModule"):  # no files / covered (slower) elsewhere
            continue
        root = tmp_path / name
        writer(root)
        dm = getattr(data, name)(root=str(root), batch_size=4)
        dm.setup("fit")
        labels = {int(y) for _, y in dm.train_set}
        assert labels == set(range(dm.num_classes)), name


def test_fakes_are_the_real_format(tmp_path):
    """Stock torchvision readers (md5 check aside) and the CIFAR site recipe read the fakes."""
    folder = write_fake_cifar(tmp_path, 10, n_train=10, n_test=5)
    with open(folder / "data_batch_1", "rb") as f:
        entry = pickle.load(f, encoding="bytes")  # as on https://www.cs.toronto.edu/~kriz/cifar.html
    assert entry[b"data"].dtype == np.uint8 and entry[b"data"].shape == (2, 3072) and b"labels" in entry

    class NoMd5CIFAR10(tvd.CIFAR10):
        def _check_integrity(self) -> bool:
            return True

        def _load_meta(self) -> None:
            with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]

    stock = NoMd5CIFAR10(str(tmp_path), train=True)
    assert len(stock) == 10 and stock.classes[0] == "airplane"
    ours = CIFAR10DataModule(root=str(tmp_path)).dataset_cls(str(tmp_path), train=True)
    np.testing.assert_array_equal(stock.data, ours.data)
    assert stock.targets == ours.targets

    write_fake_mnist(tmp_path, "MNIST", n_train=7, n_test=3)
    mnist = tvd.MNIST(str(tmp_path), train=True)  # stock reader, uncompressed idx files
    assert mnist.data.shape == (7, 28, 28) and mnist.targets.shape == (7,)


def test_val_split_holds_out_train(tmp_path):
    write_fake_cifar(tmp_path, 10, n_train=50, n_test=20)
    dm = CIFAR10DataModule(root=str(tmp_path), batch_size=4, val_split=0.2, seed=3)
    dm.setup("fit")
    assert len(dm.train_set) == 40 and len(dm.val_set) == 10
    assert not set(dm.train_set.indices) & set(dm.val_set.indices)
    # the held-out part uses the evaluation transform, the training part the augmentation
    assert dm.val_set.dataset.transform is dm.test_transform
    assert dm.train_set.dataset.transform is dm.train_transform
    again = CIFAR10DataModule(root=str(tmp_path), val_split=0.2, seed=3)
    again.setup("fit")
    assert again.val_set.indices == dm.val_set.indices


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("cls", [MNISTDataModule, FashionMNISTDataModule, CIFAR10DataModule, CIFAR100DataModule])
def test_missing_root_names_path(tmp_path, cls):
    root = tmp_path / "nowhere"
    dm = cls(root=str(root))
    with pytest.raises(FileNotFoundError, match=str(root)):
        dm.setup("fit")


def test_missing_cifar_batch_names_file(tmp_path):
    folder = write_fake_cifar(tmp_path, 10)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError) as err:
        CIFAR10DataModule(root=str(tmp_path)).setup("fit")
    msg = str(err.value)
    assert str(folder) in msg and "data_batch_3" in msg and "download: true" in msg


def test_missing_dataset_folder_in_existing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        CIFAR100DataModule(root=str(tmp_path)).setup("test")
    with pytest.raises(FileNotFoundError, match=os.path.join("FashionMNIST", "raw")):
        FashionMNISTDataModule(root=str(tmp_path)).setup("test")


def test_truncated_cifar_batch_names_file(tmp_path):
    folder = write_fake_cifar(tmp_path, 10)
    path = folder / "data_batch_2"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DatasetError, match="data_batch_2") as err:
        CIFAR10DataModule(root=str(tmp_path)).setup("fit")
    assert isinstance(err.value, RuntimeError) and "truncated" in str(err.value)


def test_wrong_cifar_shape_names_file_and_shape(tmp_path):
    folder = write_fake_cifar(tmp_path, 100, n_train=100, n_test=100)
    with open(folder / "test", "wb") as f:
        pickle.dump({"data": np.zeros((4, 100), np.uint8), "fine_labels": [0, 1, 2, 3]}, f)
    with pytest.raises(DatasetError, match=r"cifar-100-python.test.*\(4, 100\)"):
        CIFAR100DataModule(root=str(tmp_path)).setup("test")


def test_truncated_mnist_idx_names_file(tmp_path):
    raw = write_fake_mnist(tmp_path, "MNIST", n_train=20, n_test=10)
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte") as err:
        MNISTDataModule(root=str(tmp_path)).setup("fit")
    assert "truncated" in str(err.value)


def test_gzipped_mnist_is_explained(tmp_path):
    import gzip

    raw = write_fake_mnist(tmp_path, "MNIST", n_train=20, n_test=10)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / (name + ".gz")).write_bytes(gzip.compress((raw / name).read_bytes()))
        (raw / name).unlink()
    with pytest.raises(FileNotFoundError, match="gunzip"):
        MNISTDataModule(root=str(tmp_path)).setup("test")


def test_imagefolder_missing_val(tmp_path):
    write_fake_imagefolder(tmp_path, num_classes=3, n_per_class=1, size=8)
    for p in sorted((tmp_path / "val").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (tmp_path / "val").rmdir()
    dm = ImageNetDataModule(root=str(tmp_path), num_classes=3, image_size=16)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "val")):
        dm.setup("fit")


def test_imagefolder_missing_root_and_class_count(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent")):
        ImageNetDataModule(root=str(tmp_path / "absent")).setup("fit")
    write_fake_imagefolder(tmp_path, num_classes=3, n_per_class=1, size=8)
    with pytest.raises(ValueError, match="3 class folders but num_classes is 1000"):
        ImageNetDataModule(root=str(tmp_path)).setup("fit")
    with pytest.raises(ValueError, match="cannot be downloaded"):
        ImageNetDataModule(root=str(tmp_path), download=True)


# ---------------------------------------------------------------------------------- transforms
@pytest.mark.parametrize("length", [4, 5])
def test_cutout_zeroes_exact_square(length):
    h = w = 16
    inside = 0
    for seed in range(40):
        cut = Cutout(n_holes=1, length=length, generator=torch.Generator().manual_seed(seed))
        out = cut(torch.ones(3, h, w))
        assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])  # same hole in every channel
        zero = out[0] == 0
        rows = zero.any(dim=1).nonzero().flatten()
        cols = zero.any(dim=0).nonzero().flatten()
        # the zeroed pixels always form one (possibly border-clipped) full rectangle
        assert zero.sum() == len(rows) * len(cols)
        assert torch.equal(rows, torch.arange(rows[0], rows[-1] + 1))
        fully_inside = 0 < rows[0] and rows[-1] < h - 1 and 0 < cols[0] and cols[-1] < w - 1
        if fully_inside:
            inside += 1
            assert len(rows) == len(cols) == length and zero.sum() == length * length
        else:
            assert len(rows) <= length and len(cols) <= length
    assert inside > 5


def test_cutout_in_train_transform():
    from PIL import Image

    t = build_train_transform((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), crop_size=32, cutout_length=8)
    assert isinstance(t.transforms[-1], Cutout) and t.transforms[-1].length == 8
    out = t(Image.fromarray(np.full((32, 32, 3), 255, np.uint8)))
    assert out.shape == (3, 32, 32)
    assert 0 < int((out == 0).all(dim=0).sum()) <= 64  # normalised white is 1.0; the hole is 0


@pytest.mark.parametrize("dm_cls", [CIFAR10DataModule, CIFAR100DataModule])
def test_cutout_order_sets_the_hole_value(dm_cls):
    """Rate-BP's order (ToTensor -> Cutout -> Normalize): the hole is black, -mean/std after normalisation;
    the default order (after Normalize): the hole is 0 in normalised units, i.e. the mean colour."""
    from PIL import Image

    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    image = Image.fromarray(np.full((32, 32, 3), 200, np.uint8))
    holes = {}
    for order in ("before_normalize", "after_normalize"):
        dm = dm_cls(augment=False, cutout=True, cutout_length=16, mean=mean, std=std, cutout_order=order)
        names = [type(t).__name__ for t in dm.train_transform.transforms]
        expected = ["ToTensor", "Cutout", "Normalize"] if order == "before_normalize" else ["ToTensor", "Normalize", "Cutout"]
        assert names == expected
        torch.manual_seed(0)
        out = dm.train_transform(image)
        plain = (200 / 255 - torch.tensor(mean)) / torch.tensor(std)
        hole = ~torch.isclose(out, plain.view(3, 1, 1).expand_as(out)).all(dim=0)
        assert 0 < int(hole.sum()) <= 256
        holes[order] = out[:, hole]
    black = -torch.tensor(mean) / torch.tensor(std)
    torch.testing.assert_close(holes["before_normalize"], black.view(3, 1).expand_as(holes["before_normalize"]))
    assert torch.equal(holes["after_normalize"], torch.zeros_like(holes["after_normalize"]))
    with pytest.raises(ValueError, match="cutout_order must be one of"):
        dm_cls(cutout=True, cutout_order="before_crop")


def test_cifar_recipe_transforms():
    dm = CIFAR10DataModule(augment=True, cutout=True, autoaugment=True)
    names = [type(t).__name__ for t in dm.train_transform.transforms]
    assert names == ["RandomCrop", "RandomHorizontalFlip", "AutoAugment", "ToTensor", "Normalize", "Cutout"]
    assert dm.train_transform.transforms[0].padding == 4
    assert CIFAR100DataModule(cutout=True).train_transform.transforms[-1].length == 8
    plain = CIFAR10DataModule(augment=False)
    assert [type(t).__name__ for t in plain.train_transform.transforms] == ["ToTensor", "Normalize"]
    mnist = MNISTDataModule()
    assert [type(t).__name__ for t in mnist.train_transform.transforms] == [
        "RandomHorizontalFlip",
        "ToTensor",
        "Normalize",
    ]


def test_loader_options(tmp_path):
    write_fake_mnist(tmp_path, "MNIST", n_train=10, n_test=10)
    dm = MNISTDataModule(root=str(tmp_path), batch_size=4, num_workers=2, pin_memory=False)
    train = dm.train_dataloader()  # lazily runs setup("fit")
    assert train.persistent_workers and train.num_workers == 2 and not train.drop_last
    assert isinstance(train.sampler, torch.utils.data.RandomSampler)
    assert isinstance(dm.val_dataloader().sampler, torch.utils.data.SequentialSampler)
    dm0 = MNISTDataModule(root=str(tmp_path), batch_size=4)
    assert not dm0.test_dataloader().persistent_workers


def test_trainer_fast_dev_run(tmp_path):
    import lightning as L

    class Linear(L.LightningModule):
        def __init__(self, in_features: int, num_classes: int) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(in_features, num_classes)

        def _loss(self, batch):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.fc(x.flatten(1)), y)

        def training_step(self, batch, batch_idx):
            return self._loss(batch)

        def validation_step(self, batch, batch_idx):
            self.log("val/loss", self._loss(batch))

        def test_step(self, batch, batch_idx):
            self.log("test/loss", self._loss(batch))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    FAKE_WRITERS["CIFAR10DataModule"](tmp_path)
    dm = CIFAR10DataModule(root=str(tmp_path), batch_size=8, cutout=True)
    model = Linear(int(np.prod(dm.input_shape)), dm.num_classes)
    trainer = L.Trainer(
        fast_dev_run=True, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
    )
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)


# ---------------------------------------------------------------------------------- damaged files and stray data
def _md5(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()


def _check_bit_rot(tmp_path: Path, monkeypatch, classes: int, n_test: int) -> None:
    """A test file holding the official image count must match its official md5: one flipped pixel bit is caught.

    The official files cannot ship with the tests: a generated test split stands in, its own md5 stands in for
    the official sum in torchvision's list (which the check reads) and, unless ``n_test`` is the official
    10,000, its image count stands in for the official count."""
    from lightning_snn.data.vision import CheckedCIFAR10, CheckedCIFAR100

    cls, dm_cls = (CheckedCIFAR10, CIFAR10DataModule) if classes == 10 else (CheckedCIFAR100, CIFAR100DataModule)
    folder = write_fake_cifar(tmp_path, classes, n_train=100, n_test=n_test)
    test_file, meta_file = folder / cls.test_list[0][0], folder / cls.meta["filename"]
    assert cls.test_list[0][1] == (tvd.CIFAR10 if classes == 10 else tvd.CIFAR100).test_list[0][1]  # torchvision's sums
    assert cls.official_images[test_file.name] == 10_000
    monkeypatch.setitem(cls.official_images, test_file.name, n_test)
    monkeypatch.setattr(cls, "test_list", [[test_file.name, _md5(test_file)]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(meta_file)})
    dm_cls(root=str(tmp_path)).setup("test")  # intact: loads

    raw = bytearray(test_file.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit of one pixel
    test_file.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=rf"{test_file} is damaged: its md5 is [0-9a-f]{{32}}, the official"):
        dm_cls(root=str(tmp_path)).setup("test")
    dm = dm_cls(root=str(tmp_path), verify_md5=False)  # the documented way to load a modified copy
    dm.setup("test")
    assert len(dm.test_set) == n_test
    if n_test == 10_000:
        return
    meta_file.write_bytes(meta_file.read_bytes() + b"\0")  # the meta file is checked along with official data
    monkeypatch.setattr(cls, "test_list", [[test_file.name, _md5(test_file)]])
    with pytest.raises(DatasetError, match=rf"{meta_file} is damaged"):
        dm_cls(root=str(tmp_path)).setup("test")


@pytest.mark.parametrize("classes", [10, 100])
def test_cifar_bit_rot_fails_the_official_md5(tmp_path, monkeypatch, classes):
    _check_bit_rot(tmp_path, monkeypatch, classes, n_test=100)


@pytest.mark.slow
def test_cifar_bit_rot_fails_the_official_md5_at_the_official_size(tmp_path, monkeypatch):
    _check_bit_rot(tmp_path, monkeypatch, 10, n_test=10_000)  # 30 MB: the gate itself is not stood in for


def test_cifar_files_of_another_size_are_not_held_to_official_sums(tmp_path):
    write_fake_cifar(tmp_path, 10, n_train=10, n_test=10)  # not the official image counts
    dm = CIFAR10DataModule(root=str(tmp_path))
    assert dm.verify_md5
    dm.setup("fit")
    assert len(dm.train_set) == 10


def test_truncated_jpeg_is_named_when_read(tmp_path):
    write_fake_imagefolder(tmp_path, num_classes=2, n_per_class=2, size=64)
    bad = sorted((tmp_path / "train" / "n00000001").glob("*.JPEG"))[0]
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    dm = ImageNetDataModule(root=str(tmp_path), num_classes=2, image_size=32, batch_size=4, augment=False)
    dm.setup("fit")
    with pytest.raises(DatasetError, match=rf"image {bad} cannot be decoded \(OSError: image file is truncated"):
        for _ in dm.train_dataloader():
            pass


def test_imagenet_names_extra_class_folders_and_stray_files(tmp_path):
    write_fake_imagefolder(tmp_path, num_classes=3, n_per_class=1, size=8)
    (tmp_path / "train" / "n99999999").mkdir()
    (tmp_path / "train" / "n99999999" / "x.JPEG").write_bytes((tmp_path / "train" / "n00000000" / "train_0_0.JPEG").read_bytes())
    with pytest.raises(ValueError, match=rf"4 class folders \(1 not in {tmp_path / 'val'}: n99999999\) but num_classes is 3"):
        ImageNetDataModule(root=str(tmp_path), num_classes=3, image_size=16).setup("fit")
    (tmp_path / "train" / "n99999999" / "x.JPEG").unlink()
    (tmp_path / "train" / "n99999999").rmdir()
    (tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"an unsorted validation image")
    (tmp_path / "val" / "n00000002" / "val_2_0.JPEG.part").write_bytes(b"an interrupted copy")
    with pytest.warns(UserWarning) as record:
        ImageNetDataModule(root=str(tmp_path), num_classes=3, image_size=16).setup("test")
    messages = " | ".join(str(w.message) for w in record)
    assert "1 file(s) outside the class folders" in messages and "ILSVRC2012_val_00000001.JPEG" in messages
    assert "1 non-image file(s) in class folders" in messages and "val_2_0.JPEG.part" in messages
