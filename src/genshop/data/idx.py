"""IDX files, the format of MNIST (LeCun et al. 1998) and Fashion-MNIST (Xiao et al. 2017).

Read so that a user with the full 70,000 MNIST or Fashion-MNIST digits can train the image
models of the GAN posts of *Scientific Spaces* (kexue.fm archives 6016, 6110, 6387) and of
GLANN (6394) with the same commands (`genshop.data.user_images`).

Layout (all integers big-endian): bytes 0–1 are zero; byte 2 is the type of the values
(0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64); byte 3 is the
number of dimensions d; then d uint32 sizes n_1 … n_d; then the n_1·…·n_d values in row-major
order. A file that begins with gzip's magic bytes 1f 8b is read through gzip (the `.gz` files
of the MNIST and Fashion-MNIST downloads). The file must end where its header says the data
ends: a shorter one is truncated, a longer one is not an IDX file.
"""

from __future__ import annotations

import gzip
import math
import re
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from genshop.errors import DataError

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"
MAX_BYTES = 4 * 2**30
NAME_PATTERN = re.compile(r"idx[1-9][-.]ubyte(\.gz)?$")


def is_idx_name(name: str) -> bool:
    """Names like `train-images-idx3-ubyte`, `t10k-labels-idx1-ubyte.gz`, `x.idx3-ubyte`."""
    return NAME_PATTERN.search(Path(name).name) is not None


def read_idx(path: Path) -> np.ndarray:
    """The array of an IDX file (gzipped or not), in native byte order; a file that is not one,
    or is truncated, raises a one-line DataError naming it."""
    try:
        with _open(path) as f:
            dtype, dims = _header(path, f)
            size = math.prod(dims) * dtype.itemsize
            if size > MAX_BYTES:
                raise DataError(f"{path} holds {size / 2**30:.1f} GiB of values; genshop reads "
                                f"IDX files of up to {MAX_BYTES / 2**30:.0f} GiB")
            payload = f.read(size + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path} cannot be read ({type(err).__name__}: "
                        f"{str(err).splitlines()[0][:80]}); download it again") from None
    if len(payload) < size:
        raise DataError(f"{path} is truncated: its header announces {size:,} bytes of values, "
                        f"the file holds {len(payload):,}; download it again")
    if len(payload) > size:
        raise DataError(f"{path} holds more bytes than its IDX header announces; it is not an "
                        "IDX file (or is damaged)")
    return np.frombuffer(payload, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _open(path: Path) -> BinaryIO:
    with open(path, "rb") as f:
        compressed = f.read(len(GZIP_MAGIC)) == GZIP_MAGIC
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def _header(path: Path, f: BinaryIO) -> tuple[np.dtype, tuple[int, ...]]:
    magic = f.read(4)
    if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in IDX_TYPES or magic[3] == 0:
        raise DataError(f"{path} is not an IDX file (its magic number is {magic.hex() or 'empty'}"
                        ", expected 0000TTDD: type TT, DD dimensions, e.g. 00000803 for MNIST "
                        "images)")
    sizes = f.read(4 * magic[3])
    if len(sizes) < 4 * magic[3]:
        raise DataError(f"{path} is truncated inside its IDX header; download it again")
    return np.dtype(IDX_TYPES[magic[2]]), struct.unpack(f">{magic[3]}I", sizes)
