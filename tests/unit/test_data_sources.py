"""ImageSource: folder trees (messy and flat), CSV manifests, built-in datasets, the open_source dispatcher."""
from __future__ import annotations

import collections
import gzip
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alworkbench.config import SourceConfig
from alworkbench.data import FASHION_MNIST_CLASSES, ImageSource, natural_sorted, open_source
from alworkbench.data.fixtures import make_messy_folder
from alworkbench.errors import ConfigError, DatasetMissingError, ImageLoadError, ManifestError, UnknownItemError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"]
needs_fashion = pytest.mark.skipif(not all((FASHION_DIR / f).is_file() for f in FASHION_FILES),
                                   reason="Debian package dataset-fashion-mnist is not installed")


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy") / "photo dump"
    info = make_messy_folder(root)
    return info, ImageSource.from_folder(root, progress=False)


# ------------------------------------------------------------------------------------------ folder


def test_messy_folder_keeps_exactly_the_good_images(messy):
    info, src = messy
    assert len(src) == info["n_good"] == src.report.n_images
    assert {item.id: item.label for item in src.items} == info["good"]
    assert [item.id for item in src.items] == sorted(info["good"])  # sorted path order
    assert src.classes == ["café", "cats and dogs", "zèbre 2"]
    assert src.kind == "folder" and src.name == "photo dump" and src.root == info["root"]
    assert src.tags is None


def test_messy_folder_reports_every_bad_file_with_its_reason(messy):
    info, src = messy
    assert {s.path: s.reason for s in src.report.skipped} == info["skipped"]
    assert {"empty file (0 bytes)", "truncated image", "not an image (SVG/XML text)", "not an image (text)",
            "unsupported format: GIMP XCF"} <= set(info["skipped"].values())


def test_messy_folder_duplicates_keep_the_first(messy):
    info, src = messy
    assert [(d.path, d.duplicate_of) for d in src.report.duplicates] == list(info["duplicates"].items())
    dup = src.report.duplicates[0]
    kept = src.item(dup.duplicate_of)
    assert dup.sha256 == kept.sha256
    assert dup.path not in {item.id for item in src.items}
    assert src.report.to_dict()["duplicates"][0]["duplicate_of"] == dup.duplicate_of


def test_messy_folder_hidden_and_non_image_files_are_ignored(messy):
    info, src = messy
    seen = {item.id for item in src.items} | {s.path for s in src.report.skipped} | {
        d.path for d in src.report.duplicates}
    for hidden in info["hidden"] + ["README.txt", "zèbre 2/labels.csv"]:
        assert hidden not in seen


def test_messy_folder_items_point_at_real_files_with_content_hashes(messy):
    info, src = messy
    for item in src.items:
        assert os.path.isabs(item.uri) and os.path.isfile(item.uri)
        assert Path(item.uri).relative_to(info["root"]).as_posix() == item.id
        assert item.sha256 == hashlib.sha256(Path(item.uri).read_bytes()).hexdigest()
    assert src.item("zèbre 2/nested/deeper/inner.png").label == "zèbre 2"  # nested files: top-level class


def test_messy_folder_load_every_item_as_rgb(messy):
    info, src = messy
    for item in src.items:
        im = src.load(item)
        assert im.mode == "RGB"
    special = info["special"]
    w, h = special["exif_stored_size"]
    assert src.load(special["exif_rotated"]).size == (h, w)
    assert src.load(special["tiny"]).size == (1, 1)
    assert src.load(special["large"], max_side=256).size == (256, 192)
    # right half of the transparent-palette image is blue, the transparent left half white
    pt = src.load(special["palette_transparent"])
    assert pt.getpixel((2, 8)) == (255, 255, 255) and pt.getpixel((12, 8)) == (0, 0, 255)


def test_ground_truth_and_index_of(messy):
    _info, src = messy
    gt = src.ground_truth()
    assert gt == [item.label for item in src.items]
    for i in (0, len(src) - 1):
        assert src.index_of(src.items[i].id) == i
    with pytest.raises(UnknownItemError, match="not in image source"):
        src.index_of("nope.png")


def test_folder_ingest_is_deterministic_across_worker_counts(messy):
    info, src = messy
    again = ImageSource.from_folder(info["root"], progress=False, workers=1)
    assert again.items == src.items
    assert again.report.to_dict() == src.report.to_dict()


def test_flat_folder_is_unlabelled(tmp_path):
    for i in range(3):
        Image.new("RGB", (4, 4), (i * 40, 0, 0)).save(tmp_path / f"img {i}.png")
    (tmp_path / "empty.PNG").write_bytes(b"")
    src = ImageSource.from_folder(tmp_path, progress=False)
    assert [item.id for item in src.items] == ["img 0.png", "img 1.png", "img 2.png"]
    assert src.classes is None and src.ground_truth() == [None, None, None]
    assert [(s.path, s.reason) for s in src.report.skipped] == [("empty.PNG", "empty file (0 bytes)")]


def test_class_folders_sort_naturally(tmp_path):
    for i, name in enumerate(("class 10", "class 2", "Class 1")):
        (tmp_path / name).mkdir()
        Image.new("RGB", (2, 2), (i * 10, 5, 5)).save(tmp_path / name / "x.png")
    src = ImageSource.from_folder(tmp_path, progress=False)
    assert src.classes == ["Class 1", "class 2", "class 10"]
    assert natural_sorted(["b10", "b9", "a"]) == ["a", "b9", "b10"]


def test_missing_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ImageSource.from_folder(tmp_path / "nowhere")


def test_load_of_a_file_deleted_after_ingest_raises_image_load_error(tmp_path):
    Image.new("RGB", (2, 2)).save(tmp_path / "a.png")
    src = ImageSource.from_folder(tmp_path, progress=False)
    os.remove(tmp_path / "a.png")
    with pytest.raises(ImageLoadError, match="file not found"):
        src.load(src.items[0])


# ------------------------------------------------------------------------------------------ CSV


def _img(path: Path, colour=(0, 0, 0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), colour).save(path)
    return path


def test_csv_labels_tags_and_skips(tmp_path):
    data = tmp_path / "data"
    _img(data / "imgs" / "a.png", (1, 0, 0))
    _img(data / "imgs" / "b c.png", (2, 0, 0))
    _img(data / "imgs" / "d.png", (3, 0, 0))
    _img(tmp_path / "outside.png", (4, 0, 0))
    (data / "imgs" / "e.png").write_bytes((data / "imgs" / "a.png").read_bytes())  # duplicate content
    os.symlink(tmp_path / "outside.png", data / "imgs" / "link.png")
    manifest = data / "labels.csv"
    manifest.write_text(
        "\ufeffPath,Label,tags\n"
        "imgs/a.png,cat,indoor|night\n"
        "imgs/b c.png,dog,outdoor; day\n"
        f"{data / 'imgs' / 'd.png'},cat,\n"
        "../outside.png,cat,day\n"
        f"{tmp_path / 'outside.png'},dog,day\n"
        "imgs/link.png,dog,day\n"
        "imgs/missing.png,dog,day\n"
        "imgs/a.png,cat,indoor\n"
        "imgs/e.png,cat,indoor\n"
        ",dog,day\n", encoding="utf-8")
    src = ImageSource.from_csv(manifest, progress=False)
    assert [item.id for item in src.items] == ["imgs/a.png", "imgs/b c.png", "imgs/d.png"]
    assert [item.label for item in src.items] == ["cat", "dog", "cat"]
    assert [item.tags for item in src.items] == [("indoor", "night"), ("day", "outdoor"), None]
    assert src.classes == ["cat", "dog"] and src.tags == ["day", "indoor", "night", "outdoor"]
    assert src.ground_truth() == [("indoor", "night"), ("day", "outdoor"), None]
    assert src.kind == "csv" and src.name == "labels" and src.root == str(data)
    skipped = [(s.path, s.reason) for s in src.report.skipped]
    assert skipped == [
        ("../outside.png", "path escapes manifest root"),
        (str(tmp_path / "outside.png"), "path escapes manifest root"),
        ("imgs/link.png", "path escapes manifest root"),
        ("imgs/missing.png", "file not found"),
        ("imgs/a.png", "listed twice in manifest (first at row 2)"),
        ("labels.csv:11", "empty path"),
    ]
    assert [(d.path, d.duplicate_of) for d in src.report.duplicates] == [("imgs/e.png", "imgs/a.png")]
    assert src.load(src.items[1]).getpixel((0, 0)) == (2, 0, 0)


def test_csv_root_argument_and_bad_images(tmp_path):
    images = tmp_path / "images"
    _img(images / "x.png")
    (images / "bad.png").write_text("not really a png")
    manifest = tmp_path / "meta" / "m.csv"
    manifest.parent.mkdir()
    manifest.write_text("path\nx.png\nbad.png\n")
    src = ImageSource.from_csv(manifest, root=images, progress=False)
    assert [item.id for item in src.items] == ["x.png"] and src.classes is None and src.tags is None
    assert [(s.path, s.reason) for s in src.report.skipped] == [("bad.png", "not an image (text)")]
    assert src.ground_truth() == [None]


def test_csv_without_path_column_names_the_columns(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,label\na.png,cat\n")
    with pytest.raises(ManifestError, match=r"no 'path' column \(columns found: 'file', 'label'\)"):
        ImageSource.from_csv(manifest)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ManifestError, match="empty file"):
        ImageSource.from_csv(tmp_path / "empty.csv")


# ------------------------------------------------------------------------------------------ built-ins


def test_digits_builtin():
    from sklearn.datasets import load_digits

    src = ImageSource.builtin("digits")
    assert len(src) == 1797 and src.classes == [str(i) for i in range(10)]
    assert src.pixels.shape == (1797, 8, 8) and src.pixels.dtype == np.uint8 and src.pixels.max() == 255
    splits = collections.Counter(item.split for item in src.items)
    assert splits == {"train": 1438, "test": 359}
    assert src.items[0].id == "digits/train/0" and src.items[-1].id == "digits/test/358"
    assert src.items[1438].id == "digits/test/0" and src.items[0].uri == "builtin://digits/train/0"
    bunch = load_digits()
    assert [item.label for item in src.items] == [str(t) for t in bunch.target]
    i = 1500
    expected = np.rint(bunch.images[i] * 255 / 16).astype(np.uint8)
    im = src.load(src.items[i])
    assert im.mode == "RGB" and im.size == (8, 8)
    assert (np.asarray(im)[..., 0] == expected).all() and (np.asarray(im)[..., 2] == expected).all()
    assert src.items[i].sha256 == hashlib.sha256(expected.tobytes()).hexdigest()
    assert src.load(src.items[i].id).tobytes() == im.tobytes()
    assert not src.pixels.flags.writeable
    assert src.root is None and src.report.n_images == 1797


def test_builtin_limit_is_a_stratified_deterministic_subset():
    full = ImageSource.builtin("digits")
    sub = ImageSource.builtin("digits", limit=100)
    again = ImageSource.builtin("digits", limit=100)
    assert len(sub) == 100 and [i.id for i in sub.items] == [i.id for i in again.items]
    assert collections.Counter(i.split for i in sub.items) == {"train": 80, "test": 20}
    per_class = collections.Counter(i.label for i in sub.items)
    assert set(per_class) == set(full.classes) and max(per_class.values()) - min(per_class.values()) <= 2
    for item, row in zip(sub.items, sub.pixels):
        assert (full.pixels[full.index_of(item.id)] == row).all()
        assert full.item(item.id) == item
    assert len(ImageSource.builtin("digits", limit=10**6)) == 1797
    with pytest.raises(ConfigError, match="positive integer"):
        ImageSource.builtin("digits", limit=0)


def test_unknown_builtin_suggests_a_name():
    with pytest.raises(ConfigError, match="did you mean 'fashion-mnist'"):
        ImageSource.builtin("fashion_mnist")


def _write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def test_fashion_mnist_env_override_with_small_idx_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (30, 28, 28)), rng.integers(0, 256, (10, 28, 28))
    _write_idx(tmp_path / "train-images-idx3-ubyte", train, gz=True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(30) % 10, gz=True)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", test, gz=False)  # uncompressed files work too
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", (np.arange(10) + 3) % 10, gz=False)
    monkeypatch.setenv("ALWB_FASHION_MNIST_DIR", str(tmp_path))
    src = ImageSource.builtin("fashion-mnist")
    assert len(src) == 40 and src.classes == list(FASHION_MNIST_CLASSES)
    assert src.items[30].id == "fashion-mnist/test/0" and src.items[30].label == "Dress"
    assert (np.asarray(src.load(src.items[31]))[..., 1] == test[1]).all()


def test_fashion_mnist_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("ALWB_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DatasetMissingError) as info:
        ImageSource.builtin("fashion-mnist")
    assert str(info.value) == (
        f"Fashion-MNIST not found in {tmp_path}: run `sudo apt-get install dataset-fashion-mnist` "
        "or set ALWB_FASHION_MNIST_DIR")
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"garbage!" * 4))
    for name in FASHION_FILES[1:]:
        (tmp_path / name).write_bytes(gzip.compress(b"garbage!" * 4))
    with pytest.raises(Exception, match="is not a 3-D uint8 IDX file"):
        ImageSource.builtin("fashion-mnist")


@needs_fashion
def test_fashion_mnist_real_files(monkeypatch):
    monkeypatch.delenv("ALWB_FASHION_MNIST_DIR", raising=False)
    src = ImageSource.builtin("fashion-mnist")
    assert len(src) == 70000 and src.pixels.shape == (70000, 28, 28)
    assert src.classes == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                           "Bag", "Ankle boot"]
    assert collections.Counter(i.split for i in src.items) == {"train": 60000, "test": 10000}
    assert collections.Counter(i.label for i in src.items) == {c: 7000 for c in FASHION_MNIST_CLASSES}
    item = src.items[60123]
    assert item.id == "fashion-mnist/test/123" and item.uri == "builtin://fashion-mnist/test/123"
    with gzip.open(FASHION_DIR / "t10k-images-idx3-ubyte.gz", "rb") as fh:
        raw = np.frombuffer(fh.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION_DIR / "t10k-labels-idx1-ubyte.gz", "rb") as fh:
        raw_labels = np.frombuffer(fh.read(), dtype=np.uint8, offset=8)
    assert item.label == FASHION_MNIST_CLASSES[raw_labels[123]]
    im = src.load(item)
    assert im.size == (28, 28) and (np.asarray(im)[..., 0] == raw[123]).all()
    assert item.sha256 == hashlib.sha256(raw[123].tobytes()).hexdigest()
    sub = ImageSource.builtin("fashion-mnist", limit=500)
    assert len(sub) == 500 and collections.Counter(i.split for i in sub.items) == {"train": 429, "test": 71}
    assert set(i.label for i in sub.items) == set(FASHION_MNIST_CLASSES)


# ------------------------------------------------------------------------------------------ open_source


def test_open_source_dispatch(tmp_path, messy):
    info, src = messy
    assert len(open_source("digits")) == 1797
    assert len(open_source({"kind": "builtin", "dataset": "digits", "limit": 50})) == 50
    assert len(open_source(SourceConfig(kind="builtin", dataset="digits", limit=20))) == 20
    assert open_source(info["root"], progress=False).items == src.items
    assert open_source(Path(info["root"]), progress=False).items == src.items
    project = Path(info["root"]).parent
    rel = os.path.relpath(info["root"], project)
    assert open_source({"kind": "folder", "path": rel}, base_dir=project, progress=False).items == src.items
    _img(tmp_path / "i" / "a.png")
    (tmp_path / "m.csv").write_text("path,label\ni/a.png,x\n")
    assert open_source(str(tmp_path / "m.csv")).kind == "csv"
    assert open_source({"path": "m.csv"}, base_dir=tmp_path).classes == ["x"]


def test_open_source_errors(tmp_path):
    with pytest.raises(ConfigError, match="path does not exist"):
        open_source(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="did you mean the built-in dataset 'digits'"):
        open_source("digit")
    with pytest.raises(ConfigError, match="source.path does not exist"):
        open_source({"kind": "folder", "path": "nope"}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="source.kind must be one of builtin, folder, csv; got 'zip'"):
        open_source({"kind": "zip", "path": "x"})
    with pytest.raises(ConfigError, match="source.dataset is required"):
        open_source({"kind": "builtin"})
    with pytest.raises(ConfigError, match="built-in datasets only"):
        open_source({"kind": "folder", "path": str(tmp_path), "limit": 3})
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="neither a folder nor a .csv"):
        open_source(str(tmp_path / "notes.txt"))


def test_data_package_imports_no_heavy_modules():
    code = ("import sys, alworkbench.data, alworkbench.data.fixtures; "
            "bad = [m for m in ('torch', 'torchvision', 'fiftyone', 'ipywidgets', 'IPython', 'anywidget') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
