"""dataset=folder on data as users have it (segtrain.data.fake's layouts), the label scan, segtrain-data."""
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segtrain.data import build_dataset, pad_collate
from segtrain.data.fake import make_folder, scene
from segtrain.data.scan import class_weights, scan_labels
from segtrain.errors import SegtrainError

from .conftest import TINY, compose_config

BIN = Path(sys.executable).parent
SIZE = 40


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    out = tmp_path_factory.mktemp("own")
    make_folder(out, SIZE)
    return out


def folder(root, *overrides, classes=None):
    return compose_config("dataset=folder", f"dataset.root={root}",
                          f"dataset.classes={classes or Path(root) / 'classes.yaml'}", *overrides).dataset


def scene_classes(n):
    """The class indices (void 255) the fake scene n of make_folder holds."""
    label = scene(500 + n, SIZE)[1]
    return np.where(label == 5, 255, label)


def error(match, build):
    with pytest.raises(SegtrainError, match=match) as info:
        build()
    assert "\n" not in str(info.value)
    return str(info.value)


def test_pairs_lists_with_the_authors_absolute_paths_and_a_void_value(fake):
    cfg = folder(fake / "folder_pairs", "dataset.train_split=lists/train.txt", "dataset.val_split=lists/val.txt")
    train = build_dataset(cfg, cfg.train_split)
    assert len(train) == 6 and train.items[0] == (fake / "folder_pairs" / "JPEG" / "img000.jpg",
                                                  fake / "folder_pairs" / "annot" / "img000.png")
    message = error(r"annot/img000\.png: mask values 5 are outside the 5 classes", lambda: train[0])
    assert "dataset.ignore_values=[5]" in message
    cfg.ignore_values = [5]
    train = build_dataset(cfg, cfg.train_split)
    assert torch.equal(train[0][1], torch.from_numpy(scene_classes(0)).long())

    (fake / "folder_pairs" / "lists" / "bad.txt").write_text("/home/author/JPEG/img000.jpg /elsewhere/nothing.png\n")
    message = error(r"bad\.txt line 1: no file '/elsewhere/nothing\.png'", lambda: build_dataset(cfg, "lists/bad.txt"))
    assert f"tried {fake / 'folder_pairs' / 'elsewhere' / 'nothing.png'}, {fake / 'folder_pairs' / 'nothing.png'}" \
        in message
    (fake / "folder_pairs" / "lists" / "three.txt").write_text("a b c\n")
    error(r"three\.txt line 1: 3 fields; expected NAME or 'IMAGE_PATH LABEL_PATH'",
          lambda: build_dataset(cfg, "lists/three.txt"))


def test_split_names_may_carry_the_image_extension(fake, tmp_path):
    (fake / "folder" / "ext.txt").write_text("img000.jpg\nimg001.png\nimg002\n")
    cfg = folder(fake / "folder")
    assert [p.name for p, _ in build_dataset(cfg, "ext").items] == ["img000.jpg", "img001.png", "img002.jpg"]
    (fake / "folder" / "typo.txt").write_text("img000\nimg999.jpg\n")
    error(r"typo\.txt line 2: no image named 'img999\.jpg' in .*images", lambda: build_dataset(cfg, "typo"))


def test_split_placeholder_folders_and_rgb_colour_masks(fake):
    cfg = folder(fake / "folder_rgb", "dataset.image_dir='{split}'", "dataset.mask_dir='{split}annot'")
    train = build_dataset(cfg, "train")
    assert len(train) == 6 and len(build_dataset(cfg, "val")) == 3
    white = int((scene(500, SIZE)[1] == 5).sum())
    message = error(r"trainannot/img000\.png: colour \(255, 255, 255\) \(\d+ pixels\) is not a class colour",
                    lambda: train[0])
    assert f"({white} pixels)" in message and "dataset.ignore_values as [R, G, B]" in message
    cfg.ignore_values = [[255, 255, 255]]
    assert torch.equal(build_dataset(cfg, "train")[0][1], torch.from_numpy(scene_classes(0)).long())
    cfg.mask_format = "index"
    error("the mask is a colour image but dataset.mask_format=index", lambda: build_dataset(cfg, "train")[0])
    error(r"folder_rgb/test \(split 'test', dataset.image_dir\) is not a folder", lambda: build_dataset(cfg, "test"))


def test_binary_masks_need_to_say_what_255_means(fake):
    cfg = folder(fake / "folder_binary", "dataset.mask_suffix=_mask.png")
    train = build_dataset(cfg, "train")  # one folder pair, no split files: all of it is the train split
    assert len(train) == 9 and train.items[0][1].name == "img000_mask.png"
    message = error("holds only 0 and 255 and the dataset has 2 classes", lambda: train[0])
    assert "dataset.label_values=[0,255] if 255 is 'object'" in message
    assert "dataset.ignore_values=[255]" not in message  # a setting that would make 'object' vanish (issue 22)
    error(r"no split 'val' .* set dataset.val_fraction=0.2", lambda: build_dataset(cfg, "val"))
    cfg.label_values = [0, 255]
    label = build_dataset(cfg, "train")[0][1]
    assert set(label.unique().tolist()) == {0, 1}
    assert torch.equal(label, torch.from_numpy(np.isin(scene_classes(0), [1, 2, 3, 4])).long())


def test_val_fraction_holds_out_a_seeded_part_of_train(fake):
    def split(*overrides):
        cfg = folder(fake / "folder_binary", "dataset.mask_suffix=_mask.png", "dataset.val_fraction=0.34",
                     *overrides)
        return [[p.name for p, _ in build_dataset(cfg, s).items] for s in ("train", "val")]

    train, val = split()
    assert len(val) == 3 and len(train) == 6 and not set(train) & set(val)
    assert split() == [train, val]  # the same every time
    assert split("dataset.split_seed=1") != [train, val]
    error("already has a 'val' split", lambda: build_dataset(folder(fake / "folder", "dataset.val_fraction=0.2"),
                                                             "val"))


def test_scale_and_short_side_resize_images_and_labels(fake):
    cfg = folder(fake / "folder", "dataset.scale=0.5")
    image, label = build_dataset(cfg, "train")[0]
    assert image.shape[-2:] == (20, 20) and label.shape == (20, 20)
    image, label = build_dataset(cfg, "val", evaluation=True)[0]
    assert image.shape[-2:] == (20, 20) and label.shape == (SIZE, SIZE)  # scored at the label's size
    cfg = folder(fake / "folder", "dataset.short_side=30")
    assert build_dataset(cfg, "train")[0][0].shape[-2:] == (30, 30)
    error("both resize the images", lambda: build_dataset(folder(fake / "folder", "dataset.scale=0.5",
                                                                 "dataset.short_side=30"), "train"))


def test_evaluation_of_resized_images_scores_at_the_label_size(fake):
    from segtrain.engine import evaluate
    from segtrain.metrics import ConfusionMatrix

    cfg = folder(fake / "folder", "dataset.scale=0.5")
    val = build_dataset(cfg, "val", evaluation=True)
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 5, 3, padding=1)
    batch = pad_collate([val[0], val[1]])
    assert batch[2].tolist() == [[20, 20, SIZE, SIZE]] * 2
    metrics, _ = evaluate(model, [batch], 5, torch.device("cpu"), torch.autocast("cpu", enabled=False))
    expected = ConfusionMatrix(5)
    for image, label in (val[0], val[1]):
        scores = torch.nn.functional.interpolate(model(image[None]), size=label.shape, mode="bilinear",
                                                 align_corners=False)
        expected.update(label, scores.argmax(1)[0])
    assert metrics == expected.compute()


def test_grey_images_train_as_one_channel(tmp_path):
    for split, names in (("train", ["a", "b"]), ("val", ["c"])):
        for name in names:
            (tmp_path / "images" / split).mkdir(parents=True, exist_ok=True)
            (tmp_path / "masks" / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8), 100, np.uint8)).save(tmp_path / "images" / split / f"{name}.png")
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "masks" / split / f"{name}.png")
    (tmp_path / "classes.yaml").write_text("classes: [background, cell]\n")
    train = build_dataset(folder(tmp_path), "train")
    assert train.input_channels == (1,) and train.mean == (0.449,)
    assert train[0][0].shape == (1, 8, 8) and train[0][0][0, 0, 0].item() == pytest.approx((100 / 255 - 0.449) / 0.226)
    error(r"dataset.mean=\[0.5, 0.5, 0.5\] has 3 entries but the images have 1 channel",
          lambda: build_dataset(folder(tmp_path, "dataset.mean=[0.5,0.5,0.5]"), "train"))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / "train" / "b.png")
    error(r"b\.png: a colour image, but the dataset reads 1 channel", lambda: build_dataset(folder(tmp_path),
                                                                                            "train")[1])
    assert build_dataset(folder(tmp_path, "dataset.channels=3"), "train")[1][0].shape == (3, 8, 8)


@pytest.fixture
def counted(tmp_path):
    """Three 4x4 masks whose counts are written out by hand below, 2 images of 3 classes plus void."""
    masks = [np.array([[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1], [255, 255, 255, 255]], np.uint8),  # 8 bg, 4 a, 4 void
             np.array([[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 0, 0], [0, 0, 0, 0]], np.uint8),  # 12 bg, 4 b
             np.array([[1, 1, 1, 1]] * 4, np.uint8)]  # 16 a
    for name, mask in zip("xyz", masks):
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "masks").mkdir(exist_ok=True)
        Image.fromarray(np.full((4, 4, 3), [51, 102, 204] if name != "z" else [0, 0, 0], np.uint8)).save(
            tmp_path / "images" / f"{name}.png")
        Image.fromarray(mask).save(tmp_path / "masks" / f"{name}.png")
    (tmp_path / "train.txt").write_text("x\ny\nz\n")
    (tmp_path / "val.txt").write_text("x\n")
    (tmp_path / "classes.yaml").write_text("classes: [background, a, b]\n")
    return tmp_path


def test_median_frequency_and_inverse_log_weights_by_hand(counted):
    scan = scan_labels(build_dataset(folder(counted), "train"), "test")
    # freq(c) = pixels of c / labelled pixels of the images holding c
    freq = {"bg": 20 / (12 + 16), "a": 20 / (12 + 16), "b": 4 / 16}
    median = sorted(freq.values())[1]
    assert class_weights(scan, [3], "median_frequency") == pytest.approx(
        [median / freq["bg"], median / freq["a"], median / freq["b"]])
    p = np.array([20, 20, 4]) / 44
    assert class_weights(scan, [3], "inverse_log") == pytest.approx(list(1 / np.log(1.02 + p)))
    error("expected a list of numbers", lambda: class_weights(scan, [3], "median"))


def test_label_scan_is_cached_by_path_size_and_mtime(counted):
    cfg = folder(counted)
    first = scan_labels(build_dataset(cfg, "train"), "test")
    again = scan_labels(build_dataset(cfg, "train"), "test")
    assert first.cached == 0 and again.cached == 3 and np.array_equal(first.counts, again.counts)
    Image.fromarray(np.full((4, 4), 2, np.uint8)).save(counted / "masks" / "z.png")  # changed: read again
    changed = scan_labels(build_dataset(cfg, "train"), "test")
    assert changed.cached == 2 and changed.counts[2, 0, 2] == 16
    Image.fromarray(np.full((4, 4), 7, np.uint8)).save(counted / "masks" / "y.png")
    error(r"y\.png: mask values 7 are outside the 3 classes", lambda: scan_labels(build_dataset(cfg, "train"), "t"))


@pytest.mark.slow
def test_segtrain_data_check_and_preview(counted, tmp_path):
    args = ["dataset=folder", f"dataset.root={counted}", f"dataset.classes={counted / 'classes.yaml'}"]
    result = subprocess.run([BIN / "segtrain-data", "check", *args, f"out={tmp_path / 'report'}"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report" / "dataset_report.json").read_text())
    train = report["splits"]["train"]
    assert train["images"] == 3 and train["label_values"] == [0, 1, 2, 255] and train["ignored_pixels"] == 4
    assert {n: (c["pixels"], c["images"]) for n, c in train["classes"].items()} == {
        "background": (20, 2), "a": (20, 2), "b": (4, 1)}
    assert report["splits"]["val"]["classes"]["b"]["images"] == 0 and report["never_in_train"] == []
    # two images of (51, 102, 204) and one black, per channel
    assert report["mean"] == pytest.approx([2 / 3 * 0.2, 2 / 3 * 0.4, 2 / 3 * 0.8], abs=1e-4)
    assert report["std"] == pytest.approx([np.std([0.2, 0.2, 0]), np.std([0.4, 0.4, 0]), np.std([0.8, 0.8, 0])],
                                          abs=1e-4)
    assert "| b | 9.09 | 1 |" in (tmp_path / "report" / "dataset_report.md").read_text()

    result = subprocess.run([BIN / "segtrain-data", "preview", *args, f"out={tmp_path / 'report'}",
                             "num_images=2"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    preview = Image.open(tmp_path / "report" / "preview.png")
    assert preview.width >= 3 * 160 and preview.height >= 2 * 160

    result = subprocess.run([BIN / "segtrain-data", "check", *args, "dataset.label_values=[0,1]"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "label_values" in result.stderr


def run_segtrain(tmp_path, *args):
    return subprocess.run([BIN / "segtrain", *TINY[:1], "model.batch_norm=true", "trainer.max_iters=2",
                           "trainer.batch_size=2", "trainer.val_interval=2", "trainer.ckpt_interval=2",
                           "trainer.log_interval=1", "trainer.device=cpu", *args],
                          capture_output=True, text=True, cwd=tmp_path)


def test_a_bad_val_mask_fails_the_run_before_any_training(fake, tmp_path):
    root = tmp_path / "data"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
        for p in (fake / "folder" / sub).iterdir():
            (root / sub / p.name).write_bytes(p.read_bytes())
    for name in ("train.txt", "val.txt", "classes.yaml"):
        (root / name).write_bytes((fake / "folder" / name).read_bytes())
    Image.fromarray(np.full((SIZE, SIZE), 9, np.uint8)).save(root / "masks" / "img007.png")  # in val
    run_dir = tmp_path / "run"
    result = run_segtrain(tmp_path, "dataset=folder", f"dataset.root={root}",
                          f"dataset.classes={root / 'classes.yaml'}", f"hydra.run.dir={run_dir}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"segtrain: error: {root / 'masks' / 'img007.png'}: "
                                                             "mask values 9 are outside the 5 classes")
    assert not (run_dir / "checkpoints").exists() and "iter 1/" not in result.stdout + result.stderr


@pytest.mark.slow
def test_binary_folder_trains_with_label_values_val_fraction_and_median_frequency(fake, tmp_path):
    run_dir = tmp_path / "run"
    root = fake / "folder_binary"
    result = run_segtrain(tmp_path, "dataset=folder", f"dataset.root={root}", f"dataset.classes={root / 'classes.yaml'}",
                          "dataset.mask_suffix=_mask.png", "dataset.label_values=[0,255]", "dataset.val_fraction=0.34",
                          "dataset.scale=0.5", "loss.class_weights=median_frequency", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    val = (run_dir / "splits" / "val.txt").read_text().splitlines()
    train = (run_dir / "splits" / "train.txt").read_text().splitlines()
    assert len(val) == 3 and len(train) == 6 and val[0].startswith("images/img") and "masks/" in val[0]
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert len(state["class_weights"]) == 2 and state["class_weights"][0] < state["class_weights"][1]
    assert "loss.class_weights=median_frequency: background" in result.stdout + result.stderr
    evaluated = subprocess.run([BIN / "segtrain-eval", f"ckpt={run_dir / 'checkpoints' / 'last.pt'}"],
                               capture_output=True, text=True, cwd=tmp_path)
    assert evaluated.returncode == 0 and "identical" in evaluated.stdout, evaluated.stderr[-2000:]

    # the written split lists are a pairs list the folder dataset reads back
    cfg = folder(root, "dataset.label_values=[0,255]", f"dataset.val_split={run_dir / 'splits' / 'val.txt'}")
    assert len(build_dataset(cfg, cfg.val_split)) == 3

    output = tmp_path / "predicted"
    predicted = subprocess.run([BIN / "segtrain-predict", f"ckpt={run_dir / 'checkpoints' / 'last.pt'}",
                                f"input={root / 'images' / 'img000.png'}", f"output={output}"],
                               capture_output=True, text=True, cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert Image.open(output / "img000.png").size == (SIZE, SIZE)  # at the image's own size, not the scaled one
    # the network gets the very tensor evaluation gives it (resized and normalised by the same code), so the
    # labels are evaluation's too
    from segtrain.checkpoint import restore
    from segtrain.segmenter import network_input
    from segtrain.data import item_name
    from segtrain.data.files import Normalize, read_image

    train_cfg, model, state = restore(run_dir / "checkpoints" / "last.pt")
    for split in ("train", "val"):
        data = build_dataset(train_cfg.dataset, split, evaluation=True)
        found = [i for i in range(len(data)) if item_name(data, i) == "img000.png"]
        if found:
            image, label = data[found[0]]
    given = network_input(read_image(root / "images" / "img000.png"),
                          Normalize(state["data"]["mean"], state["data"]["std"], (255.0,) * 3), (0.5, None))
    assert torch.equal(given, image)
    with torch.no_grad():
        scores = torch.nn.functional.interpolate(model(image[None]), size=label.shape, mode="bilinear",
                                                 align_corners=False)
    assert np.array_equal(np.array(Image.open(output / "img000.png")), scores.argmax(1)[0].numpy())
    from segtrain import Segmenter  # the Python API: the same labels, at the image's own size

    api = Segmenter.from_checkpoint(run_dir / "checkpoints" / "last.pt", device="cpu")
    assert np.array_equal(api.predict(root / "images" / "img000.png"), np.array(Image.open(output / "img000.png")))


def test_a_long_cpu_run_is_announced_once(caplog):
    from segtrain.progress import Progress
    from segtrain.train import warn_if_long_on_cpu

    progress = Progress(100_000, per_step=8)
    progress.began -= 10.0
    progress.tick(10)  # 8 img/s
    with caplog.at_level(logging.WARNING, logger="segtrain"):
        warn_if_long_on_cpu(progress, 99_990, 1.0)
        warn_if_long_on_cpu(progress, 100, 1.0)
        warn_if_long_on_cpu(progress, 99_990, 0.0625)  # already the narrowest: no narrower width proposed
    assert len(caplog.records) == 2 and "about 27.8 hours" in caplog.text
    assert "model.width (e.g. 0.25)" in caplog.records[0].message and "model.width" not in caplog.records[1].message


def test_a_class_without_train_pixels_is_a_warning_naming_the_keys(fake, tmp_path, caplog):
    """0/255 masks read with 255 as void: the object class is gone from both splits and a background-only val
    split would score a mean IU of 1.0; the log says so before training."""
    from segtrain.train import load_data

    root = fake / "folder_binary"
    keys = ["dataset=folder", f"dataset.root={root}", f"dataset.classes={root / 'classes.yaml'}",
            "dataset.mask_suffix=_mask.png", "dataset.val_fraction=0.34"]
    with caplog.at_level(logging.WARNING, logger="segtrain"):
        load_data(compose_config(*keys, "dataset.ignore_values=[255]"), tmp_path / "run", False)
    absent = [r.getMessage() for r in caplog.records if "never occurs" in r.getMessage()]
    assert absent == ["class 'object' never occurs in the train labels (6 files) nor in the val labels: mean IU and "
                      "mean Dice leave it out; check dataset.label_values, dataset.ignore_values and "
                      "dataset.mask_format"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="segtrain"):  # the README's reading: no such line
        load_data(compose_config(*keys, "dataset.label_values=[0,255]"), tmp_path / "run2", False)
    assert not [r for r in caplog.records if "never occurs" in r.getMessage()]
