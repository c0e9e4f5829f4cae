"""Masks as people ship them (issue 22): palettes renumbered file by file, lossy (JPEG) masks, many stored values
per class. Every layout's class shares are checked against the truth counted from the scenes that drew them, and
every setting an error message proposes is followed to check that it gives those shares."""
import json
import re

import numpy as np
import pytest

from segtrain.data import build_dataset
from segtrain.data.fake import FOLDER_COLOURS, MASK_LAYOUTS, make_masks_as_shipped
from segtrain.data.labels import LabelEncoding
from segtrain.data.scan import scan_labels
from segtrain.errors import SegtrainError

from .conftest import compose_config

NAMES = ["background", "disc", "block", "wire", "dot"]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    out = tmp_path_factory.mktemp("shipped")
    make_masks_as_shipped(out, 48)
    return out


def base(root):
    return ["dataset=folder", f"dataset.root={root}", f"dataset.classes={root / 'classes.yaml'}"]


def shares(root, keys, split="train"):
    dataset = build_dataset(compose_config(*base(root), *keys).dataset, split)
    return scan_labels(dataset, "test", workers=0).class_pixels(len(dataset.class_names)).tolist()


@pytest.mark.parametrize("layout", sorted(MASK_LAYOUTS))
def test_each_layout_reads_its_true_classes(layout, shipped):
    truth = json.loads((shipped / layout / "truth.json").read_text())
    for split in ("train", "val"):
        assert shares(shipped / layout, MASK_LAYOUTS[layout], split) == truth[split], split


def test_a_renumbered_palette_is_read_by_its_colours_and_index_keeps_the_indices(shipped):
    root = shipped / "folder_palette"
    truth = json.loads((root / "truth.json").read_text())["train"]
    assert shares(root, ["dataset.ignore_values=[[255,255,255]]", "dataset.mask_format=rgb"]) == truth
    indices = shares(root, ["dataset.mask_format=index", "dataset.ignore_values=[5]"])
    assert indices != truth  # the stored indices, as asked: another class per file
    with pytest.raises(SegtrainError) as info:
        shares(root, [])
    message = str(info.value)
    assert "colour (255, 255, 255)" in message and "is not a class colour" in message and "\n" not in message
    assert "mask_format=index" not in message  # it would swap classes: not proposed


def test_a_voc_style_palette_is_read_by_index():
    palette = np.zeros((256, 3), np.uint8)
    palette[:5] = FOLDER_COLOURS
    palette[255] = (224, 224, 192)  # VOC's void colour at index 255
    stored = np.array([[0, 1, 2], [3, 4, 255]], np.uint8)
    encoding = LabelEncoding(NAMES, FOLDER_COLOURS)
    assert np.array_equal(encoding.decode(stored, "m.png", palette), stored)
    shuffled = palette.copy()
    shuffled[[1, 2]] = shuffled[[2, 1]]  # disagrees where the file uses it: by colour
    assert encoding.decode(stored, "m.png", shuffled).tolist() == [[0, 2, 1], [3, 4, 255]]


def suggested_settings(message: str):
    """The `dataset.KEY=VALUE` settings an error line proposes after 'set'."""
    return [s.rstrip(";,)") for s in re.findall(r"dataset\.[a-z_]+=\S+", message.split("set ", 1)[1])]


def test_following_the_lossy_mask_advice_gives_the_true_classes(shipped):
    root = shipped / "folder_jpeg"
    truth = json.loads((root / "truth.json").read_text())["train"]
    keys = ["dataset.mask_suffix=_mask.jpg"]
    for tried in ([], ["dataset.ignore_values=[2]"]):  # the old advice's first step is no way out either
        with pytest.raises(SegtrainError) as info:
            shares(root, keys + tried)
        message = str(info.value)
        assert "look like lossy compression (JPEG)" in message, message
        settings = suggested_settings(message)
        assert settings == ["dataset.label_values=[0,255]", "dataset.mask_tolerance=127"], message
        assert shares(root, keys + settings) == truth


def test_tolerances_snap_to_one_class_and_refuse_two():
    encoding = LabelEncoding(["background", "object"], label_values=[0, 255], tolerance=127)
    noisy = np.array([[0, 3, 127], [128, 250, 255]], np.uint8)
    assert encoding.decode(noisy, "m.jpg").tolist() == [[0, 0, 0], [1, 1, 1]]
    with pytest.raises(SegtrainError, match=r"m.png: mask value 5 is within dataset.mask_tolerance=5 of the values "
                                            r"0, 10 of different classes; lower the tolerance"):
        LabelEncoding(["a", "b"], label_values=[0, 10], tolerance=5).decode(np.array([[5]], np.uint8), "m.png")
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 5, (16, 16))
    rgb = (np.asarray(FOLDER_COLOURS)[classes] + rng.integers(-20, 21, (16, 16, 3))).clip(0, 255).astype(np.uint8)
    with pytest.raises(SegtrainError, match=r"look like lossy compression \(JPEG\): set dataset.mask_tolerance=79"):
        LabelEncoding(NAMES, FOLDER_COLOURS).decode(rgb, "m.jpg")
    assert np.array_equal(LabelEncoding(NAMES, FOLDER_COLOURS, tolerance=79).decode(rgb, "m.jpg"), classes)


def test_label_maps_take_values_and_colours_and_say_what_is_unmapped():
    stored = np.array([[7, 8, 26], [24, 33, 0]], np.uint8)  # Cityscapes-like ids
    mapped = LabelEncoding(["road", "sidewalk", "car"], label_map={7: 0, 8: 1, 26: 2}, unmapped="ignore")
    assert mapped.decode(stored, "m.png").tolist() == [[0, 1, 2], [255, 255, 255]]
    with pytest.raises(SegtrainError, match=r"mask values 0, 24, 33 are not in dataset.label_map; add them, or set "
                                            r"dataset.unmapped=ignore"):
        LabelEncoding(["road", "sidewalk", "car"], label_map={7: 0, 8: 1, 26: 2}).decode(stored, "m.png")
    colours = np.array([[[0, 0, 0], [200, 40, 40]], [[220, 220, 40], [1, 2, 3]]], np.uint8)
    by_colour = LabelEncoding(["dark", "bright"], label_map={"[0,0,0]": 0, "200x40x40": 1, "220,220,40": 1},
                              unmapped="ignore")
    assert by_colour.decode(colours, "m.png").tolist() == [[0, 1], [1, 255]]
    with pytest.raises(SegtrainError, match="dataset.label_values and dataset.label_map both say"):
        LabelEncoding(["a", "b"], label_values=[0, 1], label_map={0: 0, 1: 1})
    with pytest.raises(SegtrainError, match=r"dataset.label_map: 7: 3 is not a class index \(0..1, or 255"):
        LabelEncoding(["a", "b"], label_map={7: 3})


def test_a_label_map_on_the_command_line_trains(shipped, tmp_path):
    from segtrain.train import train

    root = shipped / "folder_label_map"
    cfg = compose_config(*base(root), *MASK_LAYOUTS["folder_label_map"], "model.width=0.0625",
                         "trainer.max_iters=2", "trainer.batch_size=2", "trainer.val_batch_size=2",
                         "trainer.num_workers=0", "trainer.device=cpu", "trainer.num_vis_images=1")
    result = train(cfg, tmp_path)
    assert result["iteration"] == 2 and 0 <= result["mean_iu"] <= 1
