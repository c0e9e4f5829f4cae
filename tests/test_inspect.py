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
from segtrain.data.fake import (make_chase, make_cityscapes, make_folder, make_hrf, make_masks_as_shipped,
                                make_retina, make_tiles, make_voc)
from segtrain.data.scan import scan_labels
from segtrain.errors import SegtrainError

from .conftest import compose_config

# layout folder under the fake tree -> the stored codes inspect makes void (255 beside class indices; VOC's borders)
VOID = {"folder": {"255"}, "folder_pairs": set(), "folder_binary": set(), "folder_rgb": set(),
        "folder_palette": set(), "folder_jpeg": set(), "folder_label_map": set(), "cityscapes": set(),
        "VOCdevkit/VOC2012": {"255"}, "retina": set(), "hrf": set(), "chase": set(), "tiles": {"255"}}
TRAIN = ["model.width=0.0625", "trainer.max_iters=2", "trainer.batch_size=2", "trainer.val_batch_size=2",
         "trainer.num_workers=0", "trainer.device=cpu", "trainer.num_vis_images=1", "trainer.log_interval=1"]


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect")
    for make in (make_folder, make_masks_as_shipped, make_cityscapes, make_voc, make_retina, make_hrf, make_chase,
                 make_tiles):
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


def read_through(root, overrides, codes, void, truth_file="stored.json"):
    """{split: (class pixels by stored code, the truth's)} with the fixture's truth summed over the split's masks,
    after checking every code the masks hold is a class or the layout's void (and no void code a class), and that
    the splits use every mask."""
    truth = json.loads((root / truth_file).read_text())
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


def test_cityscapes_colour_renderings_are_not_taken_for_photos(fake, tmp_path):
    """The fake Cityscapes tree's _gtFine_color.png files are noise: photos by their pixels alone; their names say
    masks, and leftImg8bit/ pairs by the same names."""
    from segtrain.data.inspect import inspect_tree

    ins = inspect_tree(fake / "cityscapes", tmp_path)
    assert ins.value("dataset.image_dir") == "leftImg8bit/{split}" and not ins.problems
    assert ins.value("dataset.mask_suffix") == "_gtFine_labelIds.png"


def two_mask_sets(root, layout):
    """Six photos with two sets of 0/255 masks: labels_fine/ and labels_coarse/ (same names), or masks/NAME_gt1.png
    and masks/NAME_gt2.png; each set's pixels per stored value in stored_<set>.json."""
    from segtrain.data.fake import StoredTruth, save_jpg, save_png, scene

    truths = {}
    for n in range(6):
        image, label = scene(1400 + n, 24)
        save_jpg(image, root / "images" / f"n{n}.jpg")
        for drawn, name in (((3,), "a"), ((3, 4), "b")):
            mask = np.where(np.isin(label, drawn), 255, 0).astype(np.uint8)
            path = root / (f"labels_{'fine' if name == 'a' else 'coarse'}/n{n}.png" if layout == "folders" else
                           f"masks/n{n}_gt{1 if name == 'a' else 2}.png")
            save_png(mask, path)
            truths.setdefault(name, StoredTruth()).add(root, path, mask)
    for name, truth in truths.items():
        truth.write(f"stored_{name}.json")


@pytest.mark.parametrize("layout", ["chase", "folders", "suffixes"])
def test_every_mask_set_that_fits_is_said_and_following_it_reads_that_set(layout, fake, tmp_path, capsys):
    """CHASE's two observers in one flat folder (the photos' folder), coarse and fine label folders, two suffixes
    in one mask folder: the command reads one set, a choice line names the other with the keys that read it."""
    if layout == "chase":
        root, other = fake / "chase", "stored_2ndHO.json"
    else:
        root = tmp_path / layout
        two_mask_sets(root, layout)
    overrides, codes, printed = inspect(root, tmp_path / "found", capsys)
    reads = next(word.split("=", 1)[1] for word in overrides if word.startswith(
        "dataset.mask_dir=" if layout == "folders" else "dataset.mask_suffix="))
    if layout != "chase":
        chosen = "a" if reads in ("labels_fine", "_gt1.png") else "b"
        other, truth = f"stored_{'b' if chosen == 'a' else 'a'}.json", f"stored_{chosen}.json"
        for split, (read, expected) in read_through(root, overrides, codes, set(), truth).items():
            assert read == expected, split
    line = next(line for line in printed.replace("\n    ", " ").splitlines() if "several sets of masks" in line)
    keys = shlex.split(line.split("For ", 1)[1].split(": ", 1)[1].split(";", 1)[0])
    assert keys and all(k.startswith(("dataset.mask_dir=", "dataset.mask_suffix=")) for k in keys), line
    replaced = {k.split("=", 1)[0] for k in keys}
    followed = [o for o in overrides if o.split("=", 1)[0] not in replaced] + keys
    for split, (read, expected) in read_through(root, followed, codes, set(), other).items():
        assert read == expected, split


def test_binary_masks_stored_as_0_1_and_as_0_255_are_one_class(tmp_path, capsys):
    """Half the masks store the object as 1, half as 255 (real sets mix them): one class through a label map, not
    255 made void; and the error the decoder gives without keys leads to the same reading."""
    from segtrain.data.fake import save_jpg, save_png, scene, write_classes

    root = tmp_path / "mixed"
    truth = np.zeros(2, np.int64)
    for n in range(6):
        image, label = scene(1500 + n, 24)
        obj = (label >= 1) & (label <= 4)
        save_jpg(image, root / "images" / f"{n}.jpg")
        save_png((obj * (255 if n % 2 else 1)).astype(np.uint8), root / "masks" / f"{n}.png")
        truth += [int((~obj).sum()), int(obj.sum())]
    keys, codes, printed = keys_found(tmp_path, capsys, root)
    assert keys["dataset.label_map"] == "{0:0,1:1,255:1}" and "dataset.ignore_values" not in keys, printed
    assert "1 and 255 never share a mask" in printed.replace("\n    ", " ")

    def pixels(overrides):
        cfg = compose_config(*overrides)
        return sum(scan_labels(build_dataset(cfg.dataset, split), "test", workers=0).class_pixels(2)
                   for split in ("train", "val"))

    assert pixels([f"{k}={v}" for k, v in keys.items()]).tolist() == truth.tolist()
    write_classes(root / "classes.yaml", ["background", "object"])
    base = ["dataset=folder", f"dataset.root={root}", f"dataset.classes={root / 'classes.yaml'}",
            "dataset.val_fraction=0.2"]
    with pytest.raises(SegtrainError) as info:  # without keys: the 0/255 masks are an error naming the label map
        pixels(base)
    proposed = shlex.split(str(info.value).split("if other masks store the class as 1, set ", 1)[1])[0]
    assert pixels(base + [proposed]).tolist() == truth.tolist()


def lossy_tree(root, kind):
    """Six masks as lossy files: 0/255 objects as lossy WebP stored RGB (kind webp), or 0/100/200 masks drawn at
    twice the size and shrunk with bilinear interpolation (kind resized); with the truth counted from the pixels
    meant (webp: the scene's objects) or from the stored values by their nearest class value (resized; a value
    as far from two is void)."""
    from PIL import Image

    from segtrain.data.fake import save_png, scene

    truth = np.zeros(4, np.int64)  # classes, then void
    for n in range(6):
        image, label = scene(1600 + n, 64 if kind == "resized" else 32)
        if kind == "webp":
            obj = ((label >= 1) & (label <= 4)).astype(np.uint8)
            Image.fromarray(np.repeat(obj[..., None] * 255, 3, 2)).save(root / "masks" / f"{n}.webp", quality=50) \
                if (root / "masks").is_dir() or (root / "masks").mkdir(parents=True) is None else None
            truth[:2] += [int((obj == 0).sum()), int(obj.sum())]
            save_png(image, root / "images" / f"{n}.png")
            continue
        drawn = np.array([0, 100, 200, 100, 200, 0], np.uint8)[label]
        small = np.asarray(Image.fromarray(drawn).resize((32, 32), Image.BILINEAR))
        save_png(small, root / "masks" / f"{n}.png")
        save_png(np.asarray(Image.fromarray(image).resize((32, 32))), root / "images" / f"{n}.png")
        distance = np.abs(small[..., None].astype(int) - [0, 100, 200])
        nearest = distance.argmin(-1)
        tie = (np.sort(distance, -1)[..., 0] == np.sort(distance, -1)[..., 1])
        truth[:3] += np.bincount(nearest[~tie], minlength=3)
        truth[3] += int(tie.sum())
    return truth


@pytest.mark.parametrize("kind", ["webp", "resized"])
def test_lossy_masks_not_named_jpeg_are_told_and_read(kind, tmp_path, capsys):
    """Lossy WebP masks (told by their header, not their name) and bilinear-shrunk masks with many edges (two
    thirds of the pixels at 0): a tolerance and the class values, not a class per noise value."""
    root = tmp_path / kind
    truth = lossy_tree(root, kind)
    keys, codes, printed = keys_found(tmp_path, capsys, root)
    assert "dataset.mask_tolerance" in keys and len(codes) == (2 if kind == "webp" else 3), printed
    cfg = compose_config(*[f"{k}={v}" for k, v in keys.items()])
    read = sum(scan_labels(build_dataset(cfg.dataset, split), "test", workers=0).counts[:, 0].sum(0)
               for split in ("train", "val"))
    classes = len(codes)
    assert read[:classes].tolist() == truth[:classes].tolist() and read[255] == truth[3]


def test_masks_that_may_be_lossy_say_so_and_the_keys_read_them(tmp_path, capsys):
    """0/100/200 masks with rare stray values above 200 scattered inside its regions (no blends along edges): not
    surely lossy, so every value stays a class, and a choice line names dataset.mask_tolerance with the class
    values."""
    from segtrain.data.fake import save_png, scene, write_classes

    root = tmp_path / "stray"
    truth = np.zeros(3, np.int64)
    for n in range(6):
        image, label = scene(1700 + n, 32)
        classes = np.array([0, 1, 2, 1, 2, 0])[label]
        stored = np.array([0, 100, 200], np.uint8)[classes]
        rng = np.random.default_rng(n)
        stray = (rng.random(stored.shape) < 0.05) & (classes == 2)  # above 200: between no two class values
        stored = np.where(stray, stored + rng.integers(1, 31, stored.shape), stored).astype(np.uint8)
        save_png(stored, root / "masks" / f"{n}.png")
        save_png(image, root / "images" / f"{n}.png")
        truth += np.bincount(classes.ravel(), minlength=3)
    keys, codes, printed = keys_found(tmp_path, capsys, root)
    assert len(codes) > 12, printed
    line = next(line for line in printed.replace("\n    ", " ").splitlines() if "may be lossy" in line)
    proposed = shlex.split(line.split("read them with ", 1)[1].split(" and a classes YAML", 1)[0])
    assert proposed == ["dataset.label_values=[0,100,200]", "dataset.mask_tolerance=49"], line
    write_classes(tmp_path / "three.yaml", ["a", "b", "c"])
    overrides = [f"{k}={v}" for k, v in keys.items() if k not in ("dataset.label_values", "dataset.classes")]
    cfg = compose_config(*overrides, f"dataset.classes={tmp_path / 'three.yaml'}", *proposed)
    read = sum(scan_labels(build_dataset(cfg.dataset, split), "test", workers=0).class_pixels(3)
               for split in ("train", "val"))
    assert read.tolist() == truth.tolist()


def test_a_transparent_background_is_a_choice_whose_keys_read_it(tmp_path, capsys):
    """RGBA colour masks, some with a transparent white background (nothing drawn there): white stays a class of
    its own, and the choice line's keys make those pixels the background or void."""
    from PIL import Image

    from segtrain.data.fake import FOLDER_COLOURS, save_png, scene

    root = tmp_path / "rgba"
    truth, hidden = np.zeros(4, np.int64), 0  # black background, red, yellow, green; background left transparent
    colours = np.asarray(FOLDER_COLOURS[:4], np.uint8)
    for n in range(6):
        image, label = scene(1800 + n, 24)
        label = np.where(label > 3, 0, label)
        rgba = np.concatenate([colours[label], np.full(label.shape + (1,), 255, np.uint8)], 2)
        if n % 2:
            rgba[label == 0] = (255, 255, 255, 0)
            hidden += int((label == 0).sum())
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgba, "RGBA").save(root / "masks" / f"{n}.png")
        save_png(image, root / "images" / f"{n}.png")
        truth += np.bincount(label.ravel(), minlength=4)
    keys, codes, printed = keys_found(tmp_path, capsys, root)
    white = codes.index("255,255,255")
    joined = printed.replace("\n    ", " ")
    assert "is transparent (alpha 0) wherever it occurs" in joined
    for start, end, void in (("If they are class_0: ", "; if they are void", False),
                             ("; if they are void: ", "; either way", True)):
        proposed = advice(printed, start, end)
        rewrite_classes(tmp_path / "found" / "classes.yaml", drop=f"class_{white}")
        cfg = compose_config(*[f"{k}={v}" for k, v in keys.items()], *proposed)
        read = sum(scan_labels(build_dataset(cfg.dataset, split), "test", workers=0).counts[:, 0].sum(0)
                   for split in ("train", "val"))
        kept = [codes.index(",".join(map(str, c))) for c in colours]
        kept = [k - (k > white) for k in kept]
        assert [int(read[k]) for k in kept] == [int(truth[0]) - hidden * void, *truth[1:].tolist()]
        assert read[255] == hidden * void
        (tmp_path / "found" / "classes.yaml").unlink()
        keys, codes, printed = keys_found(tmp_path, capsys, root)
