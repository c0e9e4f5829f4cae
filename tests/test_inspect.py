"""segtrain-data inspect (issue 22, item 9): on every fake layout the tests write, the command it prints trains and
reads each stored value (colour) as a class of its own with exactly the pixels the fixture wrote (stored.json,
counted before the files were written), void only where the layout's void is 255."""
import json
import shlex
from collections import Counter

import numpy as np
import pytest
from omegaconf import OmegaConf

from segtrain.cli.data import run as data_run
from segtrain.data import build_dataset
from segtrain.data.fake import (make_cityscapes, make_folder, make_masks_as_shipped, make_retina, make_tiles,
                                make_voc)
from segtrain.data.scan import scan_labels
from segtrain.errors import SegtrainError

from .conftest import compose_config

# layout folder under the fake tree -> the stored codes inspect makes void (255 beside class indices; VOC's borders)
VOID = {"folder": {"255"}, "folder_pairs": set(), "folder_binary": set(), "folder_rgb": set(),
        "folder_palette": set(), "folder_jpeg": set(), "folder_label_map": set(), "cityscapes": set(),
        "VOCdevkit/VOC2012": {"255"}, "retina": set(), "tiles": {"255"}}
TRAIN = ["model.width=0.0625", "trainer.max_iters=2", "trainer.batch_size=2", "trainer.val_batch_size=2",
         "trainer.num_workers=0", "trainer.device=cpu", "trainer.num_vis_images=1", "trainer.log_interval=1"]


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect")
    for make in (make_folder, make_masks_as_shipped, make_cityscapes, make_voc, make_retina, make_tiles):
        make(out, 32)
    return out


def inspect(root, out, capsys):
    """(the printed command's overrides, the stored code of each class as stored.json writes it, the output)."""
    data_run(["inspect", str(root), f"out={out}"])
    printed = capsys.readouterr().out
    command = shlex.split(printed[printed.rindex("\nsegtrain "):].replace("\\\n", " "))
    assert command[:2] == ["segtrain", "dataset=folder"], printed
    classes = json.loads((out / "inspect.json").read_text())["classes"]
    codes = [str(c["value"]) if "value" in c else ",".join(map(str, c["color"])) for c in classes]
    return command[1:], codes, printed


def read_through(root, overrides, codes, void):
    """{split: (class pixels by stored code, the truth's)} with the fixture's truth summed over the split's masks,
    after checking every code the masks hold is a class or the layout's void (and no void code a class), and that
    the splits use every mask."""
    truth = json.loads((root / "stored.json").read_text())
    cfg = compose_config(*overrides, "trainer.device=cpu")
    found, used = {}, set()
    for split in (cfg.dataset.train_split, cfg.dataset.val_split):
        dataset = build_dataset(cfg.dataset, split)
        expected = Counter()
        for _, mask, *_ in dataset.items:
            used.add(mask.relative_to(root).as_posix())
            expected.update(truth[mask.relative_to(root).as_posix()])
        assert set(expected) <= set(codes) | void and not set(codes) & void, (codes, sorted(expected))
        pixels = scan_labels(dataset, "test", workers=0).class_pixels(len(codes)).tolist()
        found[str(split)] = (dict(zip(codes, pixels)), {code: expected.get(code, 0) for code in codes})
    assert used == set(truth)  # no mask left out of both splits
    return found


@pytest.mark.parametrize("layout", sorted(VOID))
def test_the_printed_command_reads_the_true_classes_and_trains(layout, fake, tmp_path, capsys):
    from segtrain.train import train

    root = fake / layout
    overrides, codes, _ = inspect(root, tmp_path / "found", capsys)
    for split, (read, truth) in read_through(root, overrides, codes, VOID[layout]).items():
        assert read == truth, split
    result = train(compose_config(*overrides, *TRAIN), tmp_path / "run")
    assert result["iteration"] == 2 and 0 <= result["mean_iu"] <= 1


def advice(printed: str, start: str, end: str):
    """The settings a choice proposes between `start` and `end` (its wrapped lines joined)."""
    line = next(line for line in printed.replace("\n    ", " ").splitlines() if start in line)
    return shlex.split(line.split(start, 1)[1].split(end, 1)[0])


def rewrite_classes(path, drop=None, add=None):
    """The classes YAML inspect wrote, with the class named `drop` deleted or one named `add` appended."""
    classes = OmegaConf.to_container(OmegaConf.load(path))["classes"]
    classes = [c for c in classes if c["name"] != drop] if drop else classes + [{"name": add}]
    path.write_text(json.dumps({"classes": classes}))


@pytest.mark.parametrize("layout, void_code", [("folder_pairs", "5"), ("folder_rgb", "255,255,255")])
def test_following_the_void_border_advice_makes_exactly_the_borders_void(layout, void_code, fake, tmp_path, capsys):
    root = fake / layout
    overrides, codes, printed = inspect(root, tmp_path, capsys)
    index = codes.index(void_code)
    keys = advice(printed, "If it means void: ", f", and delete class_{index}")
    rewrite_classes(tmp_path / "classes.yaml", drop=f"class_{index}")
    for split, (read, truth) in read_through(root, overrides + keys, codes[:index] + codes[index + 1:],
                                             {void_code}).items():
        assert read == truth, split


def test_following_the_255_is_a_class_advice_reads_it_as_a_class(fake, tmp_path, capsys):
    root = fake / "tiles"
    overrides, codes, printed = inspect(root, tmp_path, capsys)
    keys = advice(printed, "if it is a class, set ", " without dataset.ignore_values")
    rewrite_classes(tmp_path / "classes.yaml", add="class_5")
    overrides = [o for o in overrides if not o.startswith("dataset.ignore_values=")] + keys
    for split, (read, truth) in read_through(root, overrides, codes + ["255"], set()).items():
        assert read == truth and read["255"] > 0, split


def test_a_tree_without_masks_paired_by_name_is_one_line(tmp_path):
    from PIL import Image

    (tmp_path / "photos").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), np.uint8)).save(tmp_path / "photos" /
                                                                                          "a.png")
    with pytest.raises(SegtrainError, match=r"found no mask folder paired with a photo folder \(photos/\)"):
        data_run(["inspect", str(tmp_path), f"out={tmp_path / 'out'}"])
    with pytest.raises(SegtrainError, match="no such folder"):
        data_run(["inspect", str(tmp_path / "nothing"), f"out={tmp_path / 'out'}"])


def keys_found(tmp_path, capsys, root):
    """({key: value} of the printed command, the stored code of each class, the output)."""
    overrides, codes, printed = inspect(root, tmp_path / "found", capsys)
    return dict(o.split("=", 1) for o in overrides), codes, printed


def test_photos_and_masks_sharing_a_folder_under_a_path_with_spaces(tmp_path, capsys):
    from segtrain.data.fake import encode, save_png, scene

    root = tmp_path / "my data"
    truth = Counter()
    for n in range(5):
        image, label = scene(80 + n, 32)
        save_png(image, root / "data" / f"s{n}.tif")
        save_png(encode(label, "folder"), root / "data" / f"s{n}_label.tif")
        truth.update(Counter(encode(label, "folder").ravel().tolist()))
    keys, codes, _ = keys_found(tmp_path, capsys, root)
    assert keys["dataset.root"] == str(root) and keys["dataset.image_dir"] == keys["dataset.mask_dir"] == "data"
    assert keys["dataset.mask_suffix"] == "_label.tif" and keys["dataset.val_fraction"] == "0.2"
    assert codes == ["0", "1", "2", "3", "4"] and keys["dataset.ignore_values"] == "[255]"
    cfg = compose_config(*[f"{k}={v}" for k, v in keys.items()])
    read = sum(scan_labels(build_dataset(cfg.dataset, split), "test", workers=0).counts[:, 0].sum(0)
               for split in ("train", "val"))
    assert {value: int(read[value]) for value in truth} == dict(truth)  # the held-out fifth included


def test_resized_binary_masks_take_the_threshold_between_their_two_values(tmp_path, capsys):
    """0/255 masks shrunk with bilinear interpolation hold every value in between, on their edges."""
    from PIL import Image

    from segtrain.data.fake import save_png, scene

    truth = 0
    for n in range(6):
        image, label = scene(90 + n, 128)
        save_png(np.asarray(Image.fromarray(image).resize((48, 48), Image.BILINEAR)), tmp_path / "in" / "images" /
                 f"{n}.png")
        mask = np.asarray(Image.fromarray(np.where((label >= 1) & (label <= 4), 255, 0).astype(np.uint8)).resize(
            (48, 48), Image.BILINEAR))
        save_png(mask, tmp_path / "in" / "labels" / f"{n}.png")
        truth += int((mask >= 128).sum())
    keys, codes, printed = keys_found(tmp_path, capsys, tmp_path / "in")
    assert codes == ["0", "255"] and keys["dataset.mask_tolerance"] == "127", printed
    cfg = compose_config(*[f"{k}={v}" for k, v in keys.items()])
    pixels = sum(scan_labels(build_dataset(cfg.dataset, split), "test", workers=0).class_pixels(2)[1]
                 for split in ("train", "val"))
    assert pixels == truth  # every value of 128 and up is the second class, nothing void


def test_colour_jpeg_masks_void_only_their_blended_edges(tmp_path, capsys):
    from segtrain.data.fake import FOLDER_COLOURS, save_jpg, save_png

    colours = np.asarray(FOLDER_COLOURS[:3], np.uint8)  # black background, red blocks, yellow discs
    yy, xx = np.mgrid[:96, :96]
    inside = []
    for n in range(4):
        label = np.zeros((96, 96), np.uint8)
        label[10 + 5 * n:50, 10:60] = 1
        label[(yy - 70) ** 2 + (xx - 65 + 4 * n) ** 2 < 20 ** 2] = 2
        save_png(np.random.default_rng(n).integers(0, 255, (96, 96, 3), np.uint8), tmp_path / "in" / "images" /
                 f"{n}.png")
        save_jpg(colours[label], tmp_path / "in" / "masks" / f"{n}.jpg", quality=90)
        inside.append((n, label, (label == np.roll(label, 4, 0)) & (label == np.roll(label, -4, 0)) &
                       (label == np.roll(label, 4, 1)) & (label == np.roll(label, -4, 1))))
    keys, codes, printed = keys_found(tmp_path, capsys, tmp_path / "in")
    found = np.array([c.split(",") for c in codes], int)
    assert len(found) == 3 and np.abs(found - colours).max() <= 8, printed
    assert keys["dataset.unmapped"] == "ignore" and "if a class is missing" in printed.replace("\n    ", " ")
    dataset = build_dataset(compose_config(*[f"{k}={v}" for k, v in keys.items()]).dataset, "train")
    for index, (image, mask, *_) in enumerate(dataset.items):
        n, label, away_from_edges = inside[int(image.stem)]
        assert np.array_equal(dataset[index][1].numpy()[away_from_edges], label[away_from_edges])
