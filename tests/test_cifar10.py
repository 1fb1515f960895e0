"""The CIFAR10 loader: the shipped images are the real ones, and the fast path equals ToTensor()."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from poolkit.common.errors import DataError
from poolkit.common.files import sha256_file
from poolkit.services import cifar10
from poolkit.services.cifar10 import load_cifar10, load_images, synthetic_images, to_float_images

SHIPPED = cifar10.SHIPPED_ROOT / cifar10.BASE_FOLDER


def test_shipped_file_is_the_documented_one() -> None:
    assert sha256_file(SHIPPED / "test_batch") == "f3f580dad49b1d77ff8aa60aa8de9cdb067d2d09767b405f47b7ba9bc1b067e2"


def test_shipped_images_match_the_identifying_facts() -> None:
    images = load_cifar10()
    src = images.source
    assert (src.kind, src.origin, src.images, src.full_official_test_set) == ("cifar10", "shipped", 1000, False)
    assert images.images.shape == (1000, 3, 32, 32) and images.images.dtype == np.float32
    assert images.labels[:16].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8]
    red = np.round(images.images[0, 0, 0, :5] * 255).astype(int).tolist()
    assert red == [158, 159, 165, 166, 160]
    assert np.bincount(images.labels, minlength=10).tolist() == [103, 89, 100, 103, 90, 86, 112, 102, 106, 109]
    assert src.classes[:3] == ["airplane", "automobile", "bird"] and src.classes[3] == "cat"


def test_fast_path_equals_torchvision_to_tensor_exactly() -> None:
    from PIL import Image
    from torchvision.transforms import ToTensor

    data, _ = cifar10.read_python_batch(SHIPPED / "test_batch")
    fast = to_float_images(data)
    hwc = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    to_tensor = ToTensor()
    for i in range(len(hwc)):
        slow = to_tensor(Image.fromarray(hwc[i])).numpy()
        assert np.array_equal(fast[i], slow), f"image {i} differs"


def test_torchvision_path_when_its_md5_check_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a full official download torchvision loads the set; we pretend its check passed on the shipped files."""
    import torchvision

    (tmp_path / "cifar-10-batches-py").symlink_to(SHIPPED)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    images = load_cifar10(tmp_path)
    assert images.source.loader == "torchvision" and images.source.origin == "data-root"
    assert np.array_equal(images.images, load_cifar10().images)
    assert np.array_equal(images.labels, load_cifar10().labels)


def write_cifar_batch(folder: Path, data: np.ndarray, labels: list[int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({"batch_label": b"testing batch", "labels": labels, "data": data}, fh)
    (folder / "batches.meta").write_bytes((SHIPPED / "batches.meta").read_bytes())
    return folder


def test_a_small_file_written_here_is_read_by_poolkits_reader(tmp_path: Path) -> None:
    data = np.zeros((5, 3072), dtype=np.uint8)
    data[:, :1024] = 255  # red plane full
    data[2, 1024 + 33] = 51  # image 2, green, y=1, x=1
    write_cifar_batch(tmp_path / "cifar-10-batches-py", data, [0, 1, 2, 3, 4])
    images = load_cifar10(tmp_path)
    assert images.source.loader == "poolkit-reader" and images.source.images == 5
    assert "read 5 images from test_batch" in images.source.note and not images.source.full_official_test_set
    assert images.images[:, 0].min() == 1.0 and images.images[2, 1, 1, 1] == np.float32(51) / np.float32(255)
    assert images.labels.tolist() == [0, 1, 2, 3, 4]
    # the folder itself works too, and POOLKIT_DATA is the fallback for --data-root
    assert load_cifar10(tmp_path / "cifar-10-batches-py").source.images == 5


def test_poolkit_data_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar_batch(tmp_path / "cifar-10-batches-py", np.zeros((3, 3072), dtype=np.uint8), [1, 2, 3])
    monkeypatch.setenv("POOLKIT_DATA", str(tmp_path))
    assert load_cifar10().source.images == 3


def test_nothing_usable_is_a_clear_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_cifar10(tmp_path)
    assert f"looked for {tmp_path / 'cifar-10-batches-py' / 'test_batch'}" in str(info.value)
    assert info.value.exit_code == 2
    (tmp_path / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="is not a python-format CIFAR10 batch"):
        load_cifar10(tmp_path)


def test_synthetic_images_are_seeded_and_say_so() -> None:
    a, b = synthetic_images(), synthetic_images()
    assert np.array_equal(a.images, b.images) and a.images.shape == (1000, 3, 32, 32)
    assert a.source.kind == "synthetic" and "seed 0" in a.source.note
    assert load_images("synthetic", shape=(1, 5, 5)).images.shape == (1000, 1, 5, 5)


def test_batches_of_64_cover_every_image() -> None:
    images = load_cifar10()
    sizes = [len(x) for _, x, _ in images.batches(64)]
    assert sizes == [64] * 15 + [40] and images.count_batches(64) == 16 and images.count_batches(64, 3) == 3


def test_images_are_fitted_to_a_models_input() -> None:
    """Resized with transforms.v2.Resize (antialiased), grayscale for one channel, refused otherwise."""
    import torch
    from torchvision.transforms import v2

    from poolkit.services.image_fit import fit_images

    images = load_cifar10()
    big = fit_images(images, (3, 64, 48), count=4)
    assert big.images.shape == (4, 3, 64, 48) and big.images.dtype == np.float32 and len(big.labels) == 4
    want = v2.Resize((64, 48), antialias=True)(torch.from_numpy(images.images[:4])).numpy()
    np.testing.assert_array_equal(big.images, want)
    assert big.source.fit == "resized 32x32 → 64x48 (torchvision transforms.v2.Resize, bilinear, antialias)"
    gray = fit_images(images, (1, 32, 32), count=2)
    r, g, b = images.images[:2, 0], images.images[:2, 1], images.images[:2, 2]
    np.testing.assert_allclose(gray.images[:, 0], 0.2989 * r + 0.587 * g + 0.114 * b, atol=1e-6)
    assert gray.source.fit == "converted to grayscale (transforms.v2.Grayscale, ITU-R 601-2 luma)"
    assert fit_images(images, (3, 32, 32)) is images
    with pytest.raises(DataError, match=r"^input 4x32x32 has 4 channels: CIFAR10 images have 3 \(or 1, as grayscale\)"):
        fit_images(images, (4, 32, 32))
    with pytest.raises(DataError, match="input 10 is not an image"):
        fit_images(images, (10,))
