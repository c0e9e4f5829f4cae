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
    """The `dataset.KEY=VALUE` settings an error line proposes after 'set', once each."""
    found = [s.rstrip(";,)") for s in re.findall(r"dataset\.[a-z_]+=\S+", message.split("set ", 1)[1])]
    return list(dict.fromkeys(found))  # each bad file of a line proposes the same


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


def test_every_bad_file_of_both_splits_is_reported_at_once(shipped, tmp_path, caplog):
    import shutil

    from PIL import Image

    from segtrain.cli.data import run as data_run
    from segtrain.train import train

    root = tmp_path / "data"
    shutil.copytree(shipped / "folder_label_map", root)
    keys = [*base(root), *MASK_LAYOUTS["folder_label_map"], "dataset.unmapped=error", "dataset.ignore_values=[99]"]
    bad = [root / "masks" / "img001.png", root / "masks" / "img004.png", root / "masks" / "img007.png"]
    for path in bad[:2]:  # train: a value no key explains
        Image.fromarray(np.full((48, 48), 77, np.uint8)).save(path)
    bad[2].write_bytes(bad[2].read_bytes()[:40])  # val: cut short
    cfg = compose_config(*keys, "model.width=0.0625", "trainer.max_iters=1", "trainer.device=cpu",
                         "trainer.num_workers=0")
    with pytest.raises(SegtrainError) as info:
        train(cfg, tmp_path / "run")
    line = str(info.value)
    assert line.startswith("3 bad files: ") and line.endswith("(all 3 listed in the run's log)")
    assert all(str(path) in line for path in bad) and "\n" not in line
    assert sum("bad label file" in r.message for r in caplog.records) == 3
    assert not (tmp_path / "run" / "checkpoints").exists()
    with pytest.raises(SegtrainError, match=r"^3 bad files: .* \(all listed in .*dataset_report.md\)$"):
        data_run(["check", f"out={tmp_path / 'report'}", *keys])
    report = (tmp_path / "report" / "dataset_report.md").read_text()
    assert report.index("## 3 problem(s)") < report.index("| images |")
    assert json.loads((tmp_path / "report" / "dataset_report.json").read_text())["splits"]["train"]["images"] == 6


def test_name_patterns_pair_images_and_masks_per_split(tmp_path):
    """A retinal set's layout (segtrain.data.fake.make_retina): training/images/21_training.tif with
    training/1st_manual/21_manual1.gif, and test/images/01_test.tif; TIFF images, GIF masks of 0/255."""
    from PIL import Image

    from segtrain.data.fake import make_retina

    make_retina(tmp_path, 32)
    root = tmp_path / "retina"
    keys = [*base(root), 'dataset.image_dir="{split}/images"', 'dataset.mask_dir="{split}/1st_manual"',
            'dataset.image_suffix="_{split}.tif"', "dataset.mask_suffix=_manual1.gif", "dataset.label_values=[0,255]",
            "dataset.train_split=training", "dataset.val_split=test"]
    cfg = compose_config(*keys)
    train, test = build_dataset(cfg.dataset, "training"), build_dataset(cfg.dataset, "test")
    assert [(i.name, m.name) for i, m in train.items] == [(f"{n}_training.tif", f"{n}_manual1.gif")
                                                          for n in (21, 22, 23, 24)]
    assert [(i.name, m.name) for i, m in test.items] == [("01_test.tif", "01_manual1.gif"),
                                                         ("02_test.tif", "02_manual1.gif")]
    truth = (np.array(Image.open(root / "test" / "1st_manual" / "01_manual1.gif")) > 0).astype(np.int64)
    assert np.array_equal(test[0][1].numpy(), truth)
    (root / "training" / "1st_manual" / "22_manual1.gif").rename(root / "training" / "1st_manual" / "22_manual.gif")
    with pytest.raises(SegtrainError, match=r"22_manual1.gif: label file is missing for 22_training.tif; the most "
                                            r"similar file in .* is 22_manual.gif; dataset.image_suffix .* "
                                            r"dataset.mask_suffix=_manual1.gif"):
        build_dataset(cfg.dataset, "training")


def test_pair_lists_with_spaces_in_names(shipped, tmp_path):
    import shutil

    root = tmp_path / "my data"
    shutil.copytree(shipped / "folder_label_map", root)
    (root / "images" / "img000.png").rename(root / "images" / "img 000.png")
    (root / "train.txt").write_text("images/img 000.png\tmasks/img000.png\n\"images/img001.png\" 'masks/img001.png'\n")
    dataset = build_dataset(compose_config(*base(root), *MASK_LAYOUTS["folder_label_map"]).dataset, "train")
    assert [(i.name, m.name) for i, m in dataset.items] == [("img 000.png", "img000.png"), ("img001.png", "img001.png")]


def test_a_region_of_interest_removes_exactly_the_pixels_outside_it(shipped, tmp_path):
    import shutil

    import torch
    from PIL import Image

    from segtrain.data.fake import scene
    from segtrain.engine import evaluate
    from segtrain.runtime import val_loader_for

    root = tmp_path / "data"
    shutil.copytree(shipped / "folder_label_map", root)
    yy, xx = np.mgrid[:48, :48]
    field_of_view = ((yy - 24) ** 2 + (xx - 24) ** 2 < 20 ** 2).astype(np.uint8) * 255
    (root / "fov").mkdir()
    for n in range(9):
        Image.fromarray(field_of_view).save(root / "fov" / f"img{n:03d}_fov.png")
    keys = [*base(root), *MASK_LAYOUTS["folder_label_map"], "dataset.roi_dir=fov", "dataset.roi_suffix=_fov.png"]
    truth = np.zeros(5, np.int64)  # the scenes' classes inside the field, counted without any decoder
    for n in range(6):
        label = scene(700 + n, 48)[1]
        truth += np.bincount(label[(field_of_view > 0) & (label < 5)], minlength=5)
    assert shares(root, keys) == truth.tolist()
    everywhere = json.loads((root / "truth.json").read_text())["val"]
    inside = sum(int(((scene(700 + n, 48)[1] < 5) & (field_of_view > 0)).sum()) for n in range(6, 9))
    cfg = compose_config(*keys, "trainer.device=cpu", "trainer.num_workers=0")
    for with_roi, expected in ((False, sum(everywhere)), (True, inside)):
        dataset_cfg = cfg.dataset if with_roi else \
            compose_config(*base(root), *MASK_LAYOUTS["folder_label_map"]).dataset
        dataset = build_dataset(dataset_cfg, "val", evaluation=True)
        model = torch.nn.Conv2d(3, 5, 1)
        metrics, _ = evaluate(model, val_loader_for(cfg, dataset, torch.device("cpu")), 5, torch.device("cpu"),
                              torch.autocast("cpu", enabled=False))
        assert int(np.asarray(metrics["confusion"]).sum()) == expected  # scored: exactly the labelled pixels
    (root / "fov" / "img003_fov.png").unlink()
    with pytest.raises(SegtrainError, match=r"img003_fov.png: region-of-interest file is missing for img003.png"):
        build_dataset(cfg.dataset, "train")


def test_cityscapes_as_it_unpacks_reads_the_19_classes(tmp_path):
    from segtrain.data.fake import make_cityscapes, scene

    make_cityscapes(tmp_path, 32)
    cfg = compose_config("dataset=cityscapes", f"dataset.root={tmp_path / 'cityscapes'}")
    train = build_dataset(cfg.dataset, "train")
    assert len(train) == 4 and len(train.class_names) == 19 and train.class_names[13] == "car"
    assert train.items[0][1].name == "aachen_000000_000000_gtFine_labelIds.png"
    label = train[0][1].numpy()
    image, scene_label = scene(900, 32)
    expected = np.array([0, 13, 2, 5, 11, 255])[scene_label]  # road, car, building, pole, person; void
    expected[:, :8][expected[:, :8] == 0] = 255  # stored as parking (id 9): not evaluated
    assert np.array_equal(label, expected)
    assert tuple(train.palette[13].tolist()) == (0, 0, 142)
    with pytest.raises(SegtrainError, match="split 'tst' is not one of train, val, test, train_extra"):
        build_dataset(cfg.dataset, "tst")
    for name in ("frrn_a_cityscapes", "frrn_b_cityscapes"):
        recipe = compose_config(f"experiment={name}")
        assert recipe.dataset.name == "cityscapes" and recipe.loss.top_k == 512 * 64


def test_several_folders_make_one_split_and_keep_equal_names_apart(tmp_path):
    from segtrain.data import item_name
    from segtrain.data.fake import make_tiles

    make_tiles(tmp_path, 32)
    root = tmp_path / "tiles"
    stored = json.loads((root / "stored.json").read_text())  # pixels per stored value, as written
    truth = [sum(stored[f"Tile {t}/masks/patch_{n}.png"].get(str(c), 0) for t in (1, 2) for n in (0, 1))
             for c in range(5)]
    cfg = compose_config(*base(root), 'dataset.image_dir="{split}/images"', 'dataset.mask_dir="{split}/masks"',
                         'dataset.train_split=["Tile 1","Tile 2"]', 'dataset.val_split=["Tile 3"]')
    train = build_dataset(cfg.dataset, cfg.dataset.train_split)
    assert len(train) == 4 and len(build_dataset(cfg.dataset, cfg.dataset.val_split)) == 2
    assert [item_name(train, i) for i in range(4)] == [f"Tile {t}/images/patch_{n}.png" for t in (1, 2)
                                                       for n in (0, 1)]
    assert scan_labels(train, "test", workers=0).class_pixels(5).tolist() == truth
