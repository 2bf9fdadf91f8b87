"""Your own images as a data set: IDX files and folders of PNG / JPEG (genshop.data.user_images,
genshop.data.idx)."""

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from genshop.cli import main
from genshop.data import get_dataset, is_user_path
from genshop.data.idx import read_idx
from genshop.data.user_images import load_images
from genshop.errors import DataError, UnknownNameError


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """An IDX file built by hand: 0, 0, type, ndim, big-endian uint32 sizes, big-endian values."""
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", n)
                                                             for n in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, data: bytes, gz=False):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def digits(n=6, h=5, w=4):
    return (np.arange(n * h * w) * 7 % 256).astype(np.uint8).reshape(n, h, w)


# IDX files -----------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_idx_images_and_their_labels_file_make_a_data_set(tmp_path, gz):
    suffix = ".gz" if gz else ""
    x, y = digits(), np.array([3, 1, 4, 1, 5, 9], np.uint8)
    images = write(tmp_path / f"train-images-idx3-ubyte{suffix}", idx_bytes(x), gz)
    write(tmp_path / f"train-labels-idx1-ubyte{suffix}", idx_bytes(y), gz)
    data = get_dataset(str(images))
    assert (data.kind, data.shape, data.name) == ("images", (1, 5, 4), str(images))
    every = data.training_set()
    assert every.dtype == torch.float32 and every.shape == (6, 1, 5, 4)
    by_first_pixel = {int(v): i for i, v in enumerate(x[:, 0, 0])}  # distinct: 0, 140, 24, …
    order = [by_first_pixel[round(float(v) * 255)] for v in every[:, 0, 0, 0]]
    assert sorted(order) == list(range(6))
    assert torch.equal(every, torch.from_numpy(x[order]).float().unsqueeze(1) / 255)
    assert data.labels.tolist() == [3, 1, 4, 1, 5, 9]
    assert data.sample(9, torch.Generator().manual_seed(0)).shape == (9, 1, 5, 4)
    assert float(every.max()) <= 1.0 and float(every.min()) >= 0.0


def test_the_idx_reader_follows_the_format(tmp_path):
    for code, dtype in [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32),
                        (0x0D, np.float32), (0x0E, np.float64)]:
        a = (np.arange(24) - 5).astype(dtype).reshape(2, 3, 4)
        got = read_idx(write(tmp_path / "a-idx3-ubyte", idx_bytes(a, code)))
        assert got.dtype == dtype and np.array_equal(got, a)
    # MNIST's own training header: magic 2051 = 0x00000803, 60000 × 28 × 28, then the pixels
    header = bytes.fromhex("00000803 0000ea60 0000001c 0000001c")
    with pytest.raises(DataError, match=r"announces 47,040,000 bytes of values, the file holds "
                                        "3"):
        read_idx(write(tmp_path / "t-idx3-ubyte", header + b"abc"))


def test_an_images_file_without_labels_file_has_no_labels(tmp_path):
    data = load_images(write(tmp_path / "x.idx3-ubyte", idx_bytes(digits())))
    assert data.labels is None and data.shape == (1, 5, 4)


@pytest.mark.parametrize(("content", "message"), [
    (idx_bytes(digits())[::-1], r"is not an IDX file \(its magic number is "),
    (b"\x00\x00\x08", "magic number is 000008, expected 0000TTDD"),
    (b"", "magic number is empty"),
    (idx_bytes(digits())[:-1], r"is truncated: its header announces 120 bytes of values, the "
                               "file holds 119"),
    (idx_bytes(digits())[:10], "is truncated inside its IDX header"),
    (idx_bytes(digits()) + b"\0", "holds more bytes than its IDX header announces"),
    (idx_bytes(np.zeros(6, np.uint8)), r"uint8 array of shape \(6,\); an IDX images file holds"),
    (idx_bytes(digits().astype(np.int16), 0x0B), r"holds a int16 array"),
    (gzip.compress(idx_bytes(digits()))[:-12], r"cannot be read \(EOFError"),
])
def test_bad_idx_files_are_one_line_errors_naming_the_file(tmp_path, content, message):
    path = write(tmp_path / "bad-images-idx3-ubyte", content)
    with pytest.raises(DataError, match=message) as err:
        get_dataset(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_labels_file_that_does_not_fit_is_named(tmp_path):
    images = write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(digits()))
    labels = write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(DataError, match=rf"{labels} holds a uint8 array of shape \(5,\); the "
                                        r"labels of its 6 images must be uint8 of shape \(6,\)"):
        get_dataset(str(images))
    with pytest.raises(DataError, match="no IDX file"):
        get_dataset(str(tmp_path / "missing-images-idx3-ubyte.gz"))


# Folders of PNG / JPEG -----------------------------------------------------------------------

def save_png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)
    return array


def test_a_folder_of_grayscale_pngs_is_read_in_name_order_recursively(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (6, 5), dtype=np.uint8) for _ in range(3)]
    save_png(tmp_path / "d" / "b.png", arrays[1])
    save_png(tmp_path / "d" / "a.PNG", arrays[0])
    save_png(tmp_path / "d" / "sub" / "c.png", arrays[2])
    save_png(tmp_path / "d" / ".hidden" / "z.png", np.zeros((9, 9), np.uint8))  # skipped
    (tmp_path / "d" / "README.txt").write_text("not an image, not read")
    data = get_dataset(str(tmp_path / "d"))
    assert (data.kind, data.shape, data.labels) == ("images", (1, 6, 5), None)
    assert torch.equal(data.pixels, torch.from_numpy(np.stack(arrays)).unsqueeze(1))
    assert torch.equal(data.training_set(size=3).sort(0).values,
                       (data.pixels.float() / 255).sort(0).values)


def test_rgb_pngs_and_jpegs_have_three_channels(tmp_path):
    rgb = np.zeros((4, 3, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 255, 128, 7
    save_png(tmp_path / "c" / "a.png", rgb)
    Image.fromarray(np.full((4, 3, 3), 200, np.uint8)).save(tmp_path / "c" / "b.jpg", quality=95)
    data = load_images(tmp_path / "c")
    assert data.shape == (3, 4, 3)
    assert data.pixels[0, :, 0, 0].tolist() == [255, 128, 7]  # channels first, exact for PNG
    assert (data.pixels[1].int() - 200).abs().max() <= 2  # JPEG: lossy, close
    one_bit = (np.arange(12).reshape(4, 3) % 2).astype(bool)
    Image.fromarray(one_bit).save(tmp_path / "g.png")  # mode "1" -> 0 / 255, one channel
    Image.fromarray(np.zeros((4, 3), np.uint8)).save(tmp_path / "g2.png")
    (tmp_path / "mono").mkdir()
    for name in ("g.png", "g2.png"):
        (tmp_path / name).rename(tmp_path / "mono" / name)
    mono = load_images(tmp_path / "mono")
    assert mono.shape == (1, 4, 3) and mono.pixels[0, 0].tolist() == [[0, 255, 0], [255, 0, 255],
                                                                      [0, 255, 0], [255, 0, 255]]


def test_bad_folders_are_one_line_errors_naming_the_file(tmp_path):
    cases = {}
    save_png(tmp_path / "size" / "a.png", np.zeros((6, 5), np.uint8))
    save_png(tmp_path / "size" / "b.png", np.zeros((6, 4), np.uint8))
    cases["size"] = (tmp_path / "size" / "b.png",
                     "is 4×6 with 1 channel but .*a.png is 5×6 with 1 channel; every image")
    save_png(tmp_path / "chan" / "a.png", np.zeros((6, 5), np.uint8))
    save_png(tmp_path / "chan" / "b.png", np.zeros((6, 5, 3), np.uint8))
    cases["chan"] = (tmp_path / "chan" / "b.png", "is 5×6 with 3 channels but")
    save_png(tmp_path / "text" / "a.png", np.zeros((6, 5), np.uint8))
    (tmp_path / "text" / "b.png").write_text("hello")
    cases["text"] = (tmp_path / "text" / "b.png", "is not a readable PNG/JPEG image")
    save_png(tmp_path / "cut" / "a.png", np.arange(900, dtype=np.uint8).reshape(30, 30) * 3)
    (tmp_path / "cut" / "a.png").write_bytes((tmp_path / "cut" / "a.png").read_bytes()[:-40])
    cases["cut"] = (tmp_path / "cut" / "a.png", "is a damaged or truncated image")
    save_png(tmp_path / "alpha" / "a.png", np.zeros((6, 5, 4), np.uint8))
    cases["alpha"] = (tmp_path / "alpha" / "a.png", "has Pillow mode RGBA; genshop reads 8-bit")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    cases["empty"] = (tmp_path / "empty", "holds no .png, .jpg or .jpeg files")
    for folder, (named, message) in cases.items():
        with pytest.raises(DataError, match=message) as err:
            get_dataset(str(tmp_path / folder))
        assert str(err.value).startswith(str(named)) and "\n" not in str(err.value), folder


def test_loads_are_cached_until_a_file_changes(tmp_path):
    save_png(tmp_path / "d" / "a.png", np.zeros((2, 2), np.uint8))
    first = load_images(tmp_path / "d")
    assert load_images(tmp_path / "d") is first
    save_png(tmp_path / "d" / "b.png", np.full((2, 2), 255, np.uint8))
    again = load_images(tmp_path / "d")
    assert again is not first and again.pixels[:, 0, 0, 0].tolist() == [0, 255]


# As --data -----------------------------------------------------------------------------------

def test_registered_names_win_and_unknown_names_list_the_user_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnist").mkdir()  # a folder named like a registered set does not shadow it
    assert get_dataset("mnist").shape == (1, 28, 28) and not is_user_path("mnist")
    assert is_user_path("x.npy") and is_user_path("a-images-idx3-ubyte.gz")
    assert not is_user_path("notes.txt")
    with pytest.raises(UnknownNameError, match=r"an IDX images file \(e.g. "
                                               r"train-images-idx3-ubyte.gz\) or a folder of "
                                               "PNG/JPEG images"):
        get_dataset("notes.txt")


def test_train_gan_takes_an_image_folder_and_names_a_bad_file(tmp_path, capsys):
    rng = np.random.default_rng(1)
    for i in range(4):
        save_png(tmp_path / "ok" / f"{i}.png", rng.integers(0, 256, (28, 28), dtype=np.uint8))
    assert main(["train", "gan", "--data", str(tmp_path / "ok"), "--dry-run"]) == 0
    assert f'"data": "{tmp_path / "ok"}"' in capsys.readouterr().out
    save_png(tmp_path / "bad" / "a.png", np.zeros((28, 28), np.uint8))
    save_png(tmp_path / "bad" / "b.png", np.zeros((27, 28), np.uint8))
    assert main(["train", "gan", "--data", str(tmp_path / "bad"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'bad' / 'b.png'} is 28×27" in err
