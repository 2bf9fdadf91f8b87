"""Your own images as a data set: IDX files (MNIST / Fashion-MNIST) and folders of PNG / JPEG.

For the image models of the GAN posts of *Scientific Spaces* (kexue.fm archives 6016, 6110,
6387) and of GLANN (6394), trained on more digits than the 10,000 genshop fetches itself:
`genshop train gan --data PATH` takes

* an IDX images file (`train-images-idx3-ubyte`, gzipped or not; `genshop.data.idx`) of shape
  (N, H, W), uint8 → N grayscale images (1, H, W). A labels file beside it, named as the
  downloads name it (`images` → `labels`, `idx3` → `idx1`), is read too and must have N
  entries;
* a folder (searched recursively, hidden files skipped) of `.png` / `.jpg` / `.jpeg` files in
  name order: 8-bit grayscale (Pillow modes "L", "1") → 1 channel, RGB (and palette "P",
  converted) → 3 channels. Every image must have the size and channels of the first; other
  files in the folder are ignored.

Pixel values v ∈ {0, …, 255} become v / 255 in float32. A bad file (wrong magic number,
truncated, not an image, another size or mode) raises a one-line DataError naming it. Images are
kept as uint8 (a quarter of float32's memory); loads are cached per process, keyed by the
files' paths, sizes and modification times.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from genshop.data.examples import Examples
from genshop.data.idx import is_idx_name, read_idx
from genshop.errors import BadInputError, DataError

SUFFIXES = (".png", ".jpg", ".jpeg")
CHANNELS = {"1": ("L", 1), "L": ("L", 1), "P": ("RGB", 3), "RGB": ("RGB", 3)}
MAX_BYTES = 4 * 2**30


def is_image_path(name: str) -> bool:
    """An IDX file name, or an existing folder (of images); never the empty name (which Path
    reads as the current folder)."""
    return bool(name) and (is_idx_name(name) or Path(name).is_dir())


@dataclass(frozen=True, eq=False)
class ImageFiles:
    """Images read from a user path, as a data set of kind "images"."""

    name: str  # the path as given
    pixels: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor | None = None  # int64 (N,), from an IDX labels file
    kind: str = "images"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.pixels.shape[1:])

    def training_set(self, seed: int = 0, size: int | None = None) -> torch.Tensor:
        """All images (or `size` of them, chosen by `seed`), float32 in [0, 1], seeded order."""
        return self.training_data(seed, size).x

    def training_data(self, seed: int = 0, size: int | None = None) -> Examples:
        """`training_set`'s images, with the IDX file's labels when it has a labels file."""
        order = torch.randperm(len(self.pixels), generator=torch.Generator().manual_seed(seed))
        labels = None if self.labels is None else self.labels[order[:size]]
        return Examples(self.pixels[order[:size]].float().div_(255), labels)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images drawn uniformly with replacement, float32 in [0, 1]."""
        if n < 0:
            raise BadInputError(f"cannot draw {n} samples; ask for n >= 0")
        return self.pixels[torch.randint(len(self.pixels), (n,), generator=generator)].float() \
            .div_(255)


def load_images(path: str | Path) -> ImageFiles:
    """The images of an IDX file or of a folder of PNG / JPEG files (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        files = image_files(path)
        return _load_folder(str(path), tuple(_stamp(f) for f in files))
    if not path.is_file():
        raise DataError(f"no IDX file {path}; give an IDX images file (e.g. "
                        "train-images-idx3-ubyte.gz) or a folder of PNG/JPEG images")
    labels = labels_file(path)
    return _load_idx(str(path), _stamp(path), labels and _stamp(labels))


def labels_file(images: Path) -> Path | None:
    """The IDX labels file beside `images` (`train-images-idx3-ubyte` → `train-labels-idx1-ubyte`,
    with or without `.gz`), if there is one."""
    stem = images.name.removesuffix(".gz").replace("images", "labels").replace("idx3", "idx1")
    if stem == images.name.removesuffix(".gz"):
        return None
    found = [images.with_name(n) for n in (stem, stem + ".gz") if images.with_name(n).is_file()]
    return found[0] if found else None


def image_files(folder: Path) -> list[Path]:
    """The PNG / JPEG files under `folder` (recursively, hidden ones skipped), in name order."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise DataError(f"{folder} holds no .png, .jpg or .jpeg files; give a folder of images "
                        "or an IDX images file (e.g. train-images-idx3-ubyte.gz)")
    return files


def _stamp(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=2)
def _load_idx(name: str, images: tuple[str, int, int],
              labels: tuple[str, int, int] | None) -> ImageFiles:
    path = Path(images[0])
    array = read_idx(path)
    if array.ndim != 3 or array.dtype != np.uint8 or array.shape[0] == 0:
        raise DataError(f"{path} holds a {array.dtype} array of shape {array.shape}; an IDX "
                        "images file holds uint8 images of shape (N, rows, columns), N >= 1")
    return ImageFiles(name, torch.from_numpy(array).unsqueeze(1),
                      labels and _idx_labels(Path(labels[0]), len(array)))


def _idx_labels(path: Path, count: int) -> torch.Tensor:
    labels = read_idx(path)
    if labels.shape != (count,) or labels.dtype != np.uint8:
        raise DataError(f"{path} holds a {labels.dtype} array of shape {labels.shape}; the labels "
                        f"of its {count} images must be uint8 of shape ({count},)")
    return torch.from_numpy(labels).long()


@functools.lru_cache(maxsize=2)
def _load_folder(name: str, stamps: tuple[tuple[str, int, int], ...]) -> ImageFiles:
    files = [Path(s[0]) for s in stamps]
    first = _read_image(files[0])
    if len(files) * first.nbytes > MAX_BYTES:
        raise DataError(f"{name} holds {len(files):,} images of {first.shape}, "
                        f"{len(files) * first.nbytes / 2**30:.1f} GiB as uint8; genshop reads "
                        f"up to {MAX_BYTES / 2**30:.0f} GiB")
    pixels = np.empty((len(files), *first.shape), dtype=np.uint8)
    pixels[0] = first
    for i, path in enumerate(files[1:], start=1):
        image = _read_image(path)
        if image.shape != first.shape:
            raise DataError(f"{path} is {_describe(image)} but {files[0]} is {_describe(first)}; "
                            "every image of a folder must have the same size and channels")
        pixels[i] = image
    return ImageFiles(name, torch.from_numpy(pixels))


def _read_image(path: Path) -> np.ndarray:
    """uint8 (C, H, W) of one PNG / JPEG file."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in CHANNELS:
                raise DataError(f"{path} has Pillow mode {image.mode}; genshop reads 8-bit "
                                "grayscale or RGB images (without transparency): convert it, "
                                "e.g. with Pillow's Image.convert('L') or convert('RGB')")
            mode, channels = CHANNELS[image.mode]
            array = np.asarray(image.convert(mode), dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise DataError(f"{path} is not a readable PNG/JPEG image "
                        f"({str(err).splitlines()[0][:80]})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path} is a damaged or truncated image ({type(err).__name__}: "
                        f"{str(err).splitlines()[0][:80]})") from None
    return array.reshape(*array.shape[:2], channels).transpose(2, 0, 1)


def _describe(image: np.ndarray) -> str:
    channels, height, width = image.shape
    return f"{width}×{height} with {channels} channel{'s' if channels > 1 else ''}"
