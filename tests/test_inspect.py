"""segtrain-data inspect (issue 22, item 9): on every fake layout the tests write, the command it prints trains and
reads each stored value (colour) as a class of its own with exactly the pixels the fixture wrote (stored.json,
counted before the files were written), void only where the layout's void is 255."""
import json
import shlex
from collections import Counter

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
    after checking every code the masks hold is a class or the layout's void, and that the splits use every mask."""
    truth = json.loads((root / "stored.json").read_text())
    cfg = compose_config(*overrides, "trainer.device=cpu")
    found, used = {}, set()
    for split in (cfg.dataset.train_split, cfg.dataset.val_split):
        dataset = build_dataset(cfg.dataset, split)
        expected = Counter()
        for _, mask, *_ in dataset.items:
            used.add(mask.relative_to(root).as_posix())
            expected.update(truth[mask.relative_to(root).as_posix()])
        assert set(expected) <= set(codes) | void, f"codes neither a class nor void: {set(expected) - set(codes)}"
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
    """The settings a choice line proposes between `start` and `end`."""
    line = next(line for line in printed.splitlines() if start in line)
    return shlex.split(line.split(start, 1)[1].split(end, 1)[0])


def rewrite_classes(path, keep=None, add=None):
    classes = OmegaConf.to_container(OmegaConf.load(path))["classes"]
    classes = [c for c in classes if c["name"] != keep] if keep else classes + [{"name": add}]
    path.write_text(json.dumps({"classes": classes}))


@pytest.mark.parametrize("layout, void_code", [("folder_pairs", "5"), ("folder_rgb", "255,255,255")])
def test_following_the_void_border_advice_makes_exactly_the_borders_void(layout, void_code, fake, tmp_path, capsys):
    root = fake / layout
    overrides, codes, printed = inspect(root, tmp_path, capsys)
    index = codes.index(void_code)
    keys = advice(printed, "If it means void: ", f", and delete class_{index}")
    rewrite_classes(tmp_path / "classes.yaml", keep=f"class_{index}")
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
    import numpy as np

    (tmp_path / "photos").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), np.uint8)).save(tmp_path / "photos" /
                                                                                          "a.png")
    with pytest.raises(SegtrainError, match=r"found no mask folder paired with a photo folder \(photos/\)"):
        data_run(["inspect", str(tmp_path), f"out={tmp_path / 'out'}"])
    with pytest.raises(SegtrainError, match="no such folder"):
        data_run(["inspect", str(tmp_path / "nothing"), f"out={tmp_path / 'out'}"])
