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
    found = [s.rstrip(";,)'") for s in re.findall(r"dataset\.[a-z_]+=\S+", message.split("set ", 1)[1])]
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
    # two keys as written for one value or colour: one would silently replace the other (the command line's
    # dataset.label_map={7:0,007:1} gives keys 7 and '007')
    for label_map, line in [({7: 0, "007": 1}, "keys 7 and 007 both give the stored value 7 a class"),
                            ({"128x64x128": 0, "[128,64,128]": 1},
                             "keys 128x64x128 and [128,64,128] both give the colour (128, 64, 128) a class")]:
        with pytest.raises(SegtrainError) as info:
            LabelEncoding(["a", "b"], label_map=label_map)
        assert str(info.value) == f"dataset.label_map: {line}; keep one"


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
    problems = scan_labels(build_dataset(cfg.dataset, "training"), "test", workers=0, keep_going=True).problems
    assert len(problems) == 1 and re.fullmatch(r".*22_manual1.gif: label file is missing for 22_training.tif; the "
                                               r"most similar file in .* is 22_manual.gif", problems[0]), problems
    with pytest.raises(SegtrainError, match=r"label file is missing for 21_training.tif \(4 of 4 images have none\)"
                                            r"; the most similar file in .* is 21_manual1.gif; dataset.image_suffix "
                                            r".* dataset.mask_suffix=_manual2.gif"):  # none pair: the naming keys
        build_dataset(compose_config(*keys, "dataset.mask_suffix=_manual2.gif").dataset, "training")
    with pytest.raises(SegtrainError, match=r"dataset.image_suffix=_training.tif: no file in .*test/images ends with "
                                            r"it; it names the split 'training': dataset.image_suffix=_{split}.tif "
                                            r"takes each split's own name \(the names there are like 01_test.tif\)"):
        build_dataset(compose_config(*keys, "dataset.image_suffix=_training.tif").dataset, "test")


def test_pair_lists_with_spaces_in_names(shipped, tmp_path):
    import shutil

    root = tmp_path / "my data"
    shutil.copytree(shipped / "folder_label_map", root)
    (root / "images" / "img000.png").rename(root / "images" / "img 000.png")
    (root / "train.txt").write_text("images/img 000.png\tmasks/img000.png\n\"images/img001.png\" 'masks/img001.png'\n")
    dataset = build_dataset(compose_config(*base(root), *MASK_LAYOUTS["folder_label_map"]).dataset, "train")
    assert [(i.name, m.name) for i, m in dataset.items] == [("img 000.png", "img000.png"), ("img001.png", "img001.png")]
    (root / "train.txt").write_text("images/img 000.png masks/img 000 copy.png\n")
    with pytest.raises(SegtrainError, match=r"train.txt line 1: 5 fields; expected NAME or 'IMAGE_PATH LABEL_PATH' "
                                            r"\(paths with spaces: separate the two by a tab, or quote each"):
        build_dataset(compose_config(*base(root), *MASK_LAYOUTS["folder_label_map"]).dataset, "train")


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


def lossy_set(root, kind):
    """Six masks stored as JPEG at qualities 40 to 95 (50 to 95 for three grey levels, where 40 leaves a value
    halfway between two): 0/255 objects (kind binary, truth: the scene's objects) or three classes as 0/100/200
    (kind grey, truth: each stored value's nearest class value, counted with numpy); every mask holds every class.
    Returns the truth per class."""
    from segtrain.data.fake import save_jpg, save_png, scene, write_classes

    truth = np.zeros(3, np.int64)
    for n, quality in enumerate([40 if kind == "binary" else 50, 50, 60, 75, 90, 95]):
        image, label = scene(1900 + n, 32)
        classes = ((label >= 1) & (label <= 4)).astype(int) if kind == "binary" else np.array([0, 1, 2, 1, 2, 0])[label]
        values = np.array([0, 255] if kind == "binary" else [0, 100, 200], np.uint8)
        save_jpg(values[classes], root / "masks" / f"{n}.jpg", quality=quality)
        save_png(image, root / "images" / f"{n}.png")
        if kind == "grey":
            from PIL import Image

            stored = np.asarray(Image.open(root / "masks" / f"{n}.jpg")).astype(int)
            distance = np.sort(np.abs(stored[..., None] - values.astype(int)), -1)
            assert (distance[..., 0] < distance[..., 1]).all()  # no value halfway between two classes
            classes = np.abs(stored[..., None] - values.astype(int)).argmin(-1)
        truth += np.bincount(classes.ravel(), minlength=3)
    write_classes(root / "classes.yaml", ["background", "object"] if kind == "binary" else ["a", "b", "c"])
    return truth[:2] if kind == "binary" else truth


@pytest.mark.parametrize("kind, start", [("binary", []), ("binary", ["dataset.mask_tolerance=127"]),
                                         ("binary", ["dataset.label_values=[0,255]"]), ("grey", []),
                                         ("grey", ["dataset.mask_tolerance=127"])])
def test_every_lossy_mask_gets_the_same_advice_and_it_reads_them_exactly(kind, start, tmp_path):
    """Whatever the quality of each file, and whichever lossy-mask key is already set, every bad file's message
    proposes the same settings, and following them reads every mask as the truth."""
    from segtrain.data.check import verify

    root = tmp_path / kind
    truth = lossy_set(root, kind)
    keys = [*base(root), "dataset.mask_suffix=.jpg", "dataset.val_fraction=0.2", *start]
    problems, _ = verify(compose_config(*keys))
    assert len(problems) >= 3 and all("lossy" in p for p in problems), problems
    proposed = {tuple(suggested_settings(p)) for p in problems}
    assert len(proposed) == 1, proposed
    settings = dict(s.split("=", 1) for s in start) | dict(s.split("=", 1) for s in proposed.pop())  # followed
    problems, pixels = verify(compose_config(*base(root), "dataset.mask_suffix=.jpg", "dataset.val_fraction=0.2",
                                             *[f"{k}={v}" for k, v in settings.items()]))
    assert not problems and sum(classes for classes, _ in pixels.values()).tolist() == truth.tolist()


def test_colour_jpeg_advice_names_the_label_map_that_voids_blended_edges(tmp_path):
    """With the widest tolerance already set, colours blended beyond it (edges between two class colours) are
    named with the label map and dataset.unmapped=ignore that make them void; following it reads every pixel away
    from the edges as its class."""
    from segtrain.data.check import verify
    from segtrain.data.fake import save_jpg, save_png, write_classes

    root = tmp_path / "colour"
    colours = np.asarray([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    yy, xx = np.mgrid[:48, :48]
    labels = []
    for n in range(4):
        label = ((xx // (12 + n)) + (yy // 16)) % 4  # stripes: every class meets every other
        save_jpg(colours[label], root / "masks" / f"{n}.jpg", quality=60)
        save_png(np.zeros((48, 48, 3), np.uint8) + n, root / "images" / f"{n}.png")
        labels.append(label)
    write_classes(root / "classes.yaml", ["bg", "red", "green", "blue"], colours.tolist())
    keys = [*base(root), "dataset.mask_suffix=.jpg", "dataset.train_split=all", "dataset.val_split=all",
            "dataset.image_dir=images", "dataset.mask_dir=masks"]
    (root / "all.txt").write_text("".join(f"{n}\n" for n in range(4)))
    problems, _ = verify(compose_config(*keys, "dataset.mask_tolerance=127"))
    assert problems and all("dataset.mask_tolerance=127" not in p for p in problems), problems
    settings = suggested_settings(problems[0])
    assert settings[1:] == ["dataset.unmapped=ignore"] and settings[0].startswith("dataset.label_map={0x0x0:0,"), \
        settings
    dataset = build_dataset(compose_config(*keys, "dataset.mask_tolerance=127", *settings).dataset, "all")
    for index, (image, _, *_) in enumerate(dataset.items):
        label = labels[int(image.stem)]
        inside = (label == np.roll(label, 3, 0)) & (label == np.roll(label, -3, 0)) & \
            (label == np.roll(label, 3, 1)) & (label == np.roll(label, -3, 1))
        assert np.array_equal(dataset[index][1].numpy()[inside], label[inside])


def grey_palette_masks(root):
    """Palette PNGs of class indices 0..2 with a grey identity palette (index i shows (i, i, i)), a classes YAML
    with other colours; returns the truth per class."""
    from segtrain.data.fake import save_png, scene, write_classes

    truth = np.zeros(3, np.int64)
    grey = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, 1)
    for n in range(5):
        image, label = scene(2000 + n, 24)
        classes = np.array([0, 1, 2, 1, 2, 0], np.uint8)[label]
        save_png(classes, root / "masks" / f"{n}.png", palette=grey)
        save_png(image, root / "images" / f"{n}.png")
        truth += np.bincount(classes.ravel(), minlength=3)
    write_classes(root / "classes.yaml", ["bg", "a", "b"], [[0, 0, 0], [255, 0, 0], [0, 0, 255]])
    return truth


def test_a_grey_palette_is_read_by_its_grey_levels_and_rgb_is_pointed_to_index(tmp_path):
    """A grey identity palette carries no class colour: read by its grey levels, the class indices, even though
    the YAML has colours; forcing mask_format=rgb is an error whose advice is mask_format=index, never a void
    colour that would lose classes 1 and 2."""
    root = tmp_path / "grey"
    truth = grey_palette_masks(root)
    keys = ["dataset.val_fraction=0.2"]
    assert (np.array(shares(root, keys)) + np.array(shares(root, keys, "val"))).tolist() == truth.tolist()
    with pytest.raises(SegtrainError) as info:
        shares(root, keys + ["dataset.mask_format=rgb"])
    message = str(info.value)
    assert "if its indices are class indices, set dataset.mask_format=index" in message and \
        "ignore_values" not in message, message
    followed = keys + suggested_settings(message)
    assert (np.array(shares(root, followed)) + np.array(shares(root, followed, "val"))).tolist() == truth.tolist()


def test_a_transparent_colour_is_named_with_the_keys_for_background_and_void(tmp_path):
    """An RGBA mask's transparent pixels (nothing drawn) in a colour no class has: the error says so, with the
    label map that makes them the first class and the ignore_values that make them void; both read as said."""
    from PIL import Image

    from segtrain.data.labels import read_mask

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:2, :, :3] = (200, 40, 40)
    rgba[2:, :2] = (255, 255, 255, 0)  # left unlabelled
    Image.fromarray(rgba, "RGBA").save(tmp_path / "m.png")
    stored, palette, transparent = read_mask(tmp_path / "m.png", with_alpha=True)
    encoding = LabelEncoding(["bg", "red"], [[0, 0, 0], [200, 40, 40]])
    with pytest.raises(SegtrainError) as info:
        encoding.decode(stored, tmp_path / "m.png", palette, transparent)
    message = str(info.value)
    assert "colour (255, 255, 255) (4 pixels) is transparent (alpha 0) wherever it occurs" in message, message
    background = message.split("if they are 'bg', set ", 1)[1].split(";", 1)[0].strip("'")
    mapped = LabelEncoding(["bg", "red"], label_map=command_line_map(background.split("=", 1)[1]))
    assert mapped.decode(stored, "m.png").tolist() == [[1] * 4, [1] * 4, [0, 0, 0, 0], [0, 0, 0, 0]]
    void = LabelEncoding(["bg", "red"], [[0, 0, 0], [200, 40, 40]], ignore_values=[[255, 255, 255]])
    assert "dataset.ignore_values=[[255,255,255]]" in message
    assert void.decode(stored, "m.png").tolist() == [[1] * 4, [1] * 4, [255, 255, 0, 0], [255, 255, 0, 0]]


def command_line_map(text):
    """A label map as the command line gives it (Hydra's `{0x0x0:0,...}` parsed as a dict)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(f"k={text}").value()


def test_a_value_both_mapped_and_void_is_refused():
    with pytest.raises(SegtrainError, match=r"dataset.label_map gives a class to 2 and dataset.ignore_values makes "
                                            r"it void; keep one"):
        LabelEncoding(["a", "b", "c"], label_map={0: 0, 1: 1, 2: 2}, ignore_values=[2])
    with pytest.raises(SegtrainError, match=r"gives a class to \(9, 9, 9\)"):
        LabelEncoding(["a"], label_map={"9x9x9": 0}, ignore_values=[[9, 9, 9]])


def test_a_missing_mask_is_one_of_the_problems_check_reports(shipped, tmp_path):
    """One image without its mask beside a mask with a value no key explains: check reads the rest, lists both in
    its report (well-formed tables), names the most similar file, and no key advice (the other images pair)."""
    import shutil

    from PIL import Image

    from segtrain.cli.data import run as data_run

    root = tmp_path / "data"
    shutil.copytree(shipped / "folder_label_map", root)
    (root / "masks" / "img002.png").unlink()
    Image.fromarray(np.full((48, 48), 77, np.uint8)).save(root / "masks" / "img007.png")
    keys = [*base(root), *MASK_LAYOUTS["folder_label_map"], "dataset.unmapped=error", "dataset.ignore_values=[99]"]
    with pytest.raises(SegtrainError, match=r"^2 bad files: .*img002.png: label file is missing for img002.png; "
                                            r"the most similar file in .* is img00\d.png; .*img007.png"):
        data_run(["check", f"out={tmp_path / 'report'}", *keys])
    report = (tmp_path / "report" / "dataset_report.md").read_text()
    assert "## 2 problem(s)" in report and "dataset.image_suffix" not in report
    tables = [block.splitlines() for block in report.split("\n\n") if block.startswith("|")]
    assert len(tables) == 2 and all(len({line.count("|") for line in table}) == 1 for table in tables), tables
    assert tables[0][0] == "| | train | val |"
    for path in (root / "masks").iterdir():  # every label bad: the report says so, with no table
        path.write_bytes(b"not a png")
    with pytest.raises(SegtrainError):
        data_run(["check", f"out={tmp_path / 'bad'}", *keys])
    report = (tmp_path / "bad" / "dataset_report.md").read_text()
    assert "No split could be read." in report and "|" not in report


def test_the_same_images_in_both_splits_are_a_warning(shipped, tmp_path, capsys):
    from segtrain.cli.data import run as data_run

    root = shipped / "folder_label_map"
    data_run(["check", f"out={tmp_path}", *base(root), *MASK_LAYOUTS["folder_label_map"], "dataset.val_split=train"])
    warning = "dataset.train_split and dataset.val_split share 6 of the 6 val images (e.g. img000.png)"
    assert warning in capsys.readouterr().err
    assert warning in json.loads((tmp_path / "dataset_report.json").read_text())["warnings"][0]
