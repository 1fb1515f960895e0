"""CIFAR10 test images for verify, bench and show: shipped, user-supplied, or synthetic.

poolkit ships the first 1,000 images of the official test set (see assets/README.md), so it works
offline. A user with the whole set points `--data-root` (or POOLKIT_DATA) at the folder holding
`cifar-10-batches-py/`; when torchvision's md5 check passes we load it with
`torchvision.datasets.CIFAR10(root, train=False, transform=ToTensor())` as the tutorials do, otherwise
we read the python-format `test_batch` ourselves and say so.

Images are decoded once into one float tensor and sliced into batches: the same numbers as
torchvision's per-item `ToTensor()` (a test proves it), without a PIL round trip per image.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolkit.common.errors import DataError, one_line

# numpy, torch and torchvision are imported inside the functions that use them, on purpose: the CLI
# imports DATA_KINDS from here at start-up, and `poolkit --help` must not pay for torch.
if TYPE_CHECKING:
    import numpy as np

SHIPPED_ROOT = Path(__file__).parent.parent / "assets"
BASE_FOLDER = "cifar-10-batches-py"
OFFICIAL_TEST_MD5 = "40351d587109b95175f43aff81a1287e"
OFFICIAL_TEST_SIZE = 10_000
IMAGE_SHAPE = (3, 32, 32)
SYNTHETIC_SEED = 0
SYNTHETIC_IMAGES = 1_000
DATA_KINDS = ("cifar10", "synthetic")  # what --data accepts


@dataclass
class DataSource:
    """What every report says about its data."""

    kind: str  # cifar10 | synthetic
    origin: str  # shipped | data-root | synthetic
    path: str | None
    images: int
    full_official_test_set: bool
    loader: str  # torchvision | poolkit-reader | synthetic
    note: str = ""
    classes: list[str] = field(default_factory=list)
    fit: str = ""  # how the images were fitted to a model's input (`image_fit.py`); "" as stored, 3x32x32


@dataclass
class ImageSet:
    """Decoded images (N, C, H, W) float32 in [0, 1], their labels, and where they came from."""

    source: DataSource
    images: np.ndarray
    labels: np.ndarray

    def batches(self, batch_size: int = 64, limit: int | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(first image index, images, labels) for each batch, the last one possibly short."""
        n_batches = -(-len(self.images) // batch_size)
        for b in range(n_batches if limit is None else min(limit, n_batches)):
            start = b * batch_size
            yield start, self.images[start : start + batch_size], self.labels[start : start + batch_size]

    def count_batches(self, batch_size: int, limit: int | None = None) -> int:
        n = -(-len(self.images) // batch_size)
        return n if limit is None else min(limit, n)


def to_float_images(data_uint8: np.ndarray) -> np.ndarray:
    """(N, 3072) or (N, 32, 32, 3) uint8 -> (N, 3, 32, 32) float32, exactly as ToTensor() computes it."""
    import torch

    array = data_uint8.reshape(-1, 3, 32, 32) if data_uint8.ndim == 2 else data_uint8.transpose(0, 3, 1, 2)
    # The same torch ops as ToTensor (uint8 -> float32, then div(255)), once for the whole set.
    return torch.from_numpy(array.copy()).to(dtype=torch.float32).div(255).numpy()


# What CIFAR10's python-format pickles need, and nothing else: numpy arrays (rebuilt from dtype and
# bytes), numpy scalars, and the bytes helper protocol-2 pickles use. No other callable can be named,
# so a crafted file cannot run code when read (pickle calls whatever a file names).
SAFE_GLOBALS = frozenset(
    {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class CifarUnpickler(pickle.Unpickler):
    """A pickle reader that admits only the containers and arrays the CIFAR10 format has."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refused {module}.{name}: not part of the CIFAR10 format")
        return super().find_class(module, name)


def load_pickle(path: Path, what: str = "batch") -> Any:
    """Read a CIFAR10 python-format pickle with the restricted reader; any problem is a one-line DataError."""
    try:
        with open(path, "rb") as fh:
            return CifarUnpickler(fh, encoding="latin1").load()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    except Exception as exc:  # noqa: BLE001 - a crafted or broken pickle fails in many ways
        raise DataError(f"{path} is not a python-format CIFAR10 {what} ({one_line(exc)})") from None


def read_python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a python-format CIFAR batch (any number of images): uint8 (N, 3072) and int64 labels."""
    import numpy as np

    entry = load_pickle(path)
    try:
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
    except (KeyError, ValueError, TypeError, AttributeError, OverflowError) as exc:
        raise DataError(f"{path} is not a python-format CIFAR10 batch ({type(exc).__name__}: {exc})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or labels.ndim != 1 or len(labels) != len(data):
        raise DataError(f"{path} is not a CIFAR10 batch: data has shape {data.shape}, labels shape {labels.shape}")
    if not len(data):
        raise DataError(f"{path} holds no images: nothing to check")
    return data, labels


def read_class_names(folder: Path) -> list[str]:
    """The class names from `batches.meta`, or none when the file is absent; a malformed one is a DataError."""
    meta = folder / "batches.meta"
    if not meta.exists():
        return []
    entry = load_pickle(meta, "batches.meta")
    names = entry.get("label_names") if isinstance(entry, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, (str, bytes)) for n in names):
        raise DataError(f"{meta} is not a CIFAR10 batches.meta: no list of label_names")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def find_batch_folder(root: Path) -> Path:
    """`root/cifar-10-batches-py`, or `root` itself when it is that folder; else a DataError."""
    for candidate in (root / BASE_FOLDER, root):
        if (candidate / "test_batch").is_file():
            return candidate
    raise DataError(
        f"no CIFAR10 test set under {root}: looked for {root / BASE_FOLDER / 'test_batch'} and {root / 'test_batch'}; "
        f"point --data-root (or POOLKIT_DATA) at the folder holding {BASE_FOLDER}/, add --download, or use --data synthetic"
    )


def load_cifar10(data_root: Path | None = None, download: bool = False) -> ImageSet:
    """The CIFAR10 test images: from `data_root` (or POOLKIT_DATA) when given, else the shipped 1,000."""
    import numpy as np

    root_text = str(data_root) if data_root else os.environ.get("POOLKIT_DATA")
    if not root_text:
        folder = SHIPPED_ROOT / BASE_FOLDER
        data, labels = read_python_batch(folder / "test_batch")
        source = DataSource(
            "cifar10",
            "shipped",
            str(folder),
            len(data),
            False,
            "poolkit-reader",
            f"the first {len(data):,} images of the official CIFAR10 test set, shipped with poolkit",
            read_class_names(folder),
        )
        return ImageSet(source, to_float_images(data), labels)

    root = Path(root_text).expanduser()
    if download:
        _download(root)
    folder = find_batch_folder(root)
    torchvision_set = _torchvision_set(folder)
    if torchvision_set is not None:
        images = to_float_images(np.asarray(torchvision_set.data))
        labels = np.asarray(torchvision_set.targets, dtype=np.int64)
        source = DataSource(
            "cifar10",
            "data-root",
            str(folder),
            len(images),
            len(images) == OFFICIAL_TEST_SIZE,
            "torchvision",
            "torchvision.datasets.CIFAR10(train=False) passed its md5 check",
            list(torchvision_set.classes),
        )
        return ImageSet(source, images, labels)
    data, labels = read_python_batch(folder / "test_batch")
    official = len(data) == OFFICIAL_TEST_SIZE and _md5(folder / "test_batch") == OFFICIAL_TEST_MD5
    source = DataSource(
        "cifar10",
        "data-root",
        str(folder),
        len(data),
        official,
        "poolkit-reader",
        f"torchvision's md5 check did not pass; read {len(data):,} images from test_batch with poolkit's reader"
        + (" (it is the full official test set)" if official else ""),
        read_class_names(folder),
    )
    return ImageSet(source, to_float_images(data), labels)


def _torchvision_set(folder: Path):  # -> torchvision.datasets.CIFAR10 | None
    """torchvision's dataset when its md5 check passes (it checks every official file), else None."""
    import torchvision

    try:
        return torchvision.datasets.CIFAR10(
            str(folder.parent), train=False, download=False, transform=torchvision.transforms.ToTensor()
        )
    except RuntimeError:
        return None


def _download(root: Path) -> None:
    import torchvision

    try:
        torchvision.datasets.CIFAR10(str(root), train=False, download=True)
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        raise DataError(f"--download into {root} failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None


def synthetic_images(count: int = SYNTHETIC_IMAGES, shape: tuple[int, ...] = IMAGE_SHAPE) -> ImageSet:
    """CIFAR10-shaped random images from a fixed seed: the same on every machine."""
    import numpy as np

    rng = np.random.default_rng(SYNTHETIC_SEED)
    images = rng.random((count, *shape), dtype=np.float32)
    labels = rng.integers(0, 10, size=count, dtype=np.int64)
    source = DataSource(
        "synthetic",
        "synthetic",
        None,
        count,
        False,
        "synthetic",
        f"uniform random values in [0, 1), numpy seed {SYNTHETIC_SEED}",
    )
    return ImageSet(source, images, labels)


def load_images(
    data: str = "cifar10", data_root: Path | None = None, download: bool = False, shape: tuple[int, ...] = IMAGE_SHAPE
) -> ImageSet:
    """What `--data` asked for."""
    if download and not data_root:
        raise DataError("--download needs --data-root: the folder to download CIFAR10 into")
    if data == "cifar10":
        return load_cifar10(data_root, download)
    if data == "synthetic":
        return synthetic_images(shape=shape)
    raise DataError(f"unknown --data '{data}' (cifar10 or synthetic)")
