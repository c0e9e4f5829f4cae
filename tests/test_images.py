"""Images as cameras write them (issue 23): EXIF orientation applied as annotation tools and browsers show photos,
in training, evaluation, the data check and prediction."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segtrain.data import build_dataset
from segtrain.data.fake import encode, save_png, scene, write_classes
from segtrain.data.files import EXIF_ORIENTATION, read_image
from segtrain.errors import SegtrainError

from .conftest import compose_config

# what turns the upright picture into the stored pixels, for each orientation tag (the inverse of displaying it)
STORED_FROM_UPRIGHT = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def photo_with_orientation(upright: np.ndarray, tag: int, path):
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = tag
    Image.fromarray(upright).transpose(STORED_FROM_UPRIGHT[tag]).save(path, exif=exif)


@pytest.fixture
def phone_photos(tmp_path):
    """Non-square photos with orientation tags 3 and 6 (and one without), masks drawn on the upright view. PNGs
    with an eXIf chunk, read exactly as stored; the tag is read the same way from a phone's JPEG."""
    truths = {}
    for n, tag in enumerate((3, 6, None)):
        image, label = scene(80 + n, 40, width=28)  # 40 high, 28 wide as shown
        (tmp_path / "images").mkdir(exist_ok=True)
        if tag:
            photo_with_orientation(image, tag, tmp_path / "images" / f"p{n}.png")
        else:
            Image.fromarray(image).save(tmp_path / "images" / f"p{n}.png")
        save_png(encode(label, "folder"), tmp_path / "masks" / f"p{n}.png")
        truths[f"p{n}.png"] = (image, np.where(label == 5, 255, label))
    write_classes(tmp_path / "classes.yaml", ["background", "disc", "block", "wire", "dot"])
    (tmp_path / "train.txt").write_text("p0\np1\np2\n")
    (tmp_path / "val.txt").write_text("p0\n")
    return tmp_path, truths


def keys(root, *extra):
    return ["dataset=folder", f"dataset.root={root}", f"dataset.classes={root / 'classes.yaml'}", *extra]


def train_tiny(root, run_dir, *extra) -> dict:
    """Two iterations of the narrowest FCN-8s on the folder at `root`, on the CPU."""
    from segtrain.train import train

    return train(compose_config(*keys(root), "model.width=0.0625", "trainer.max_iters=2", "trainer.batch_size=1",
                                "trainer.val_batch_size=1", "trainer.device=cpu", "trainer.num_workers=0",
                                "trainer.num_vis_images=1", *extra), run_dir)


def test_photos_are_read_upright_with_their_masks(phone_photos):
    root, truths = phone_photos
    dataset = build_dataset(compose_config(*keys(root)).dataset, "train")
    for index, (image_path, _) in enumerate(dataset.items):
        image, label = dataset.raw_item(index)
        upright, truth = truths[image_path.name]
        assert image.shape[:2] == (40, 28) and np.array_equal(label, truth)
        assert np.array_equal(image, upright)


def test_a_mask_that_fits_only_the_stored_pixels_names_the_key(phone_photos):
    root, _ = phone_photos
    ignoring = build_dataset(compose_config(*keys(root, "dataset.exif_orientation=ignore")).dataset, "train")
    with pytest.raises(SegtrainError, match=r"p1.png: the mask is 28x40, the size of p1.png as its EXIF orientation "
                                            r"shows it, not as stored \(turned 90 degrees\); set "
                                            r"dataset.exif_orientation=apply"):
        ignoring.raw_item(1)
    stored = np.array(Image.open(root / "images" / "p1.png"))  # the pixels as stored (PIL does not turn them)
    Image.fromarray(np.zeros(stored.shape[:2], np.uint8)).save(root / "masks" / "p1.png")  # drawn as stored
    with pytest.raises(SegtrainError, match=r"p1.png: the mask is 40x28, the size of p1.png as stored, not as its "
                                            r"EXIF orientation shows it .*set dataset.exif_orientation=ignore"):
        build_dataset(compose_config(*keys(root)).dataset, "train").raw_item(1)
    assert ignoring.raw_item(1)[0].shape[:2] == stored.shape[:2]  # ignore: the stored pixels, as asked


def test_predict_labels_photos_as_they_are_shown(phone_photos, tmp_path):
    from segtrain.cli.predict import run as predict

    root, _ = phone_photos
    train_tiny(root, tmp_path / "run")
    assert predict([f"ckpt={tmp_path / 'run' / 'checkpoints' / 'last.pt'}", f"input={root / 'images'}",
                    f"output={tmp_path / 'labels'}"]) == 0
    for n in range(3):
        assert np.array(Image.open(tmp_path / "labels" / f"p{n}.png")).shape == (40, 28)


def test_16_bit_images_read_as_rgb_keep_their_picture(tmp_path):
    """A 16-bit grey microscopy image with a known ramp, read with dataset.channels=3: scaled from its bit depth,
    not clipped to a constant white."""
    ramp = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 60).astype(np.uint16)  # 0 .. 61380
    (tmp_path / "images").mkdir()
    Image.fromarray(ramp).save(tmp_path / "images" / "cell.tif")
    save_png(np.zeros((32, 32), np.uint8), tmp_path / "masks" / "cell.png")
    write_classes(tmp_path / "classes.yaml", ["background", "cell"])
    for setting, low, high in (("auto", 0, 65535), ("[0,61380]", 0, 61380)):
        cfg = compose_config(*keys(tmp_path, "dataset.channels=3", f"dataset.intensity_range={setting}")).dataset
        image = build_dataset(cfg, "train").raw_item(0)[0]
        expected = np.clip(np.round((ramp.astype(float) - low) / (high - low) * 255), 0, 255).astype(np.uint8)
        assert image.shape == (32, 32, 3) and np.array_equal(image[..., 1], expected)
        assert image.std() > 50  # a picture, not a constant
    percentile = build_dataset(compose_config(*keys(tmp_path, "dataset.channels=3",
                                                   "dataset.intensity_range=percentile")).dataset, "train")
    assert percentile.raw_item(0)[0].max() == 255 and percentile.raw_item(0)[0].min() == 0
    with pytest.raises(SegtrainError, match=r"dataset.intensity_range=\[5, 1\]: expected auto, percentile"):
        build_dataset(compose_config(*keys(tmp_path, "dataset.intensity_range=[5,1]")).dataset, "train")


def grey_ramps(folder):
    """The ramp k/255 (k = 0..255, 16x16) as an 8-bit PNG, a 16-bit PNG, a 32-bit integer (mode I) and a float
    (mode F) TIFF, with empty masks: each is k x 257 at 16 bits."""
    ramp = np.arange(256, dtype=np.float64).reshape(16, 16) / 255
    (folder / "images").mkdir(parents=True)
    files = {"a8": (ramp * 255).round().astype(np.uint8), "b16": (ramp * 65535).round().astype(np.uint16),
             "c32": (ramp * (2 ** 31 - 1)).round().astype(np.int32), "dF": ramp.astype(np.float32)}
    for name, pixels in files.items():
        Image.fromarray(pixels).save(folder / "images" / f"{name}.{'png' if pixels.itemsize < 4 else 'tif'}")
        save_png(np.zeros((16, 16), np.uint8), folder / "masks" / f"{name}.png")
    write_classes(folder / "classes.yaml", ["background", "cell"])
    return (ramp * 65535).round().astype(np.uint16)


def test_grey_files_of_every_depth_are_scaled_from_their_own_depth(tmp_path, caplog):
    """One-channel reading (dataset.channels=1 or auto) scales 8, 16, 32-bit integer and float files each from its
    own depth to the dataset's (16 bits when any file is deeper than 8), in training, evaluation and prediction."""
    from segtrain.segmenter import read_input
    from segtrain.train import load_data

    expected = grey_ramps(tmp_path)
    for channels in ("1", "auto"):
        dataset = build_dataset(compose_config(*keys(tmp_path, f"dataset.channels={channels}")).dataset, "train")
        assert dataset.scale == (65535.0,)
        for index, (image_path, *_) in enumerate(dataset.items):
            image = dataset.raw_item(index)[0]
            assert image.dtype == np.uint16 and np.array_equal(image[..., 0], expected), image_path.name
            picture = read_input(image_path, True, {"scale": [65535.0]}, True, "auto")  # segtrain-predict's reading
            assert np.array_equal(picture.pixels, image) and picture.scale == (65535.0,)
    percentile = build_dataset(compose_config(*keys(tmp_path, "dataset.intensity_range=percentile")).dataset,
                               "train")
    assert all(percentile.raw_item(i)[0].min() == 0 and percentile.raw_item(i)[0].max() == 65535 for i in range(4))
    with caplog.at_level("WARNING", logger="segtrain"):  # a range above every stored value: constant images
        build_dataset(compose_config(*keys(tmp_path, "dataset.intensity_range=[70000,80000]")).dataset,
                      "train").raw_item(1)
    assert "b16.png: its uint16 values 0..65535 all become 0 under dataset.intensity_range=[70000.0, 80000.0]" \
        in caplog.text
    caplog.clear()
    Image.fromarray(np.arange(2, 18, dtype=np.uint16).repeat(16).reshape(16, 16)).save(tmp_path / "dark.png")
    with caplog.at_level("WARNING", logger="segtrain"):  # its overlay's 8 bits are black, its network input is not
        picture = read_input(tmp_path / "dark.png", True, {"scale": [65535.0]}, True, "auto")
    assert picture.pixels.max() == 17 and "constant image" not in caplog.text
    # a float file with NaN or infinite pixels, or outside 0..1 under auto: one line naming the file
    bad = np.full((16, 16), 0.5, np.float32)
    bad[:4, :4] = np.nan
    Image.fromarray(bad).save(tmp_path / "nan.tif")
    with pytest.raises(SegtrainError, match=r"nan.tif: a float image with NaN or infinite values; expected finite"):
        read_image(tmp_path / "nan.tif", mode="RGB")
    Image.fromarray(np.full((16, 16), 4.0, np.float32)).save(tmp_path / "wide.tif")
    with pytest.raises(SegtrainError, match=r"wide.tif: a float image with values 4..4, not 0..1; set dataset."
                                            r"intensity_range=\[LO,HI\] \(stored values, the same for every file"):
        read_image(tmp_path / "wide.tif", mode="RGB")
    # 8-bit files only: held at 8 bits; a 16-bit file in the other split lifts both splits (and the checkpoint)
    (tmp_path / "train.txt").write_text("a8\n")
    (tmp_path / "val.txt").write_text("b16\n")
    eight = build_dataset(compose_config(*keys(tmp_path)).dataset, "train")
    assert eight.scale == (255.0,) and np.array_equal(eight.raw_item(0)[0][..., 0], expected // 257)
    _, train_set, val_set, _ = load_data(compose_config(*keys(tmp_path)), tmp_path / "run", False)
    assert train_set.scale == val_set.scale == (65535.0,)
    assert np.array_equal(train_set[0][0], eight[0][0])  # the same network input at either depth
    # checkpoints before the scale was stored: each file at its stored depth, as they were read
    for name, full in (("a8.png", 255.0), ("b16.png", 65535.0)):
        picture = read_input(tmp_path / "images" / name, True, {}, True, "auto")
        assert picture.scale == (full,) and np.array_equal(picture.pixels[..., 0],
                                                          np.array(Image.open(tmp_path / "images" / name)))


@pytest.mark.slow
def test_grey_and_colour_files_are_read_with_one_channel_count_for_the_whole_dataset(tmp_path):
    from segtrain.checkpoint import load_checkpoint
    from segtrain.cli.evaluate import run as evaluate

    for n, split in enumerate(("train", "train", "val")):
        image, label = scene(120 + n, 32)
        picture = Image.fromarray(image) if n == 0 else Image.fromarray(image).convert("L")  # val is grey
        (tmp_path / "images").mkdir(exist_ok=True)
        picture.save(tmp_path / "images" / f"i{n}.png")
        save_png(encode(label, "folder"), tmp_path / "masks" / f"i{n}.png")
    (tmp_path / "train.txt").write_text("i0\ni1\n")
    (tmp_path / "val.txt").write_text("i2\n")
    write_classes(tmp_path / "classes.yaml", ["background", "disc", "block", "wire", "dot"])
    # validation on the grey file runs (no conv2d mismatch)
    result = train_tiny(tmp_path, tmp_path / "run", "trainer.val_interval=1")
    stored = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert stored["config"]["dataset"]["channels"] == "3" and stored["data"]["input_channels"] == [3]
    assert evaluate([f"ckpt={tmp_path / 'run' / 'checkpoints' / 'last.pt'}"])["mean_iu"] == result["mean_iu"]


@pytest.mark.slow
def test_a_grey_model_predicts_grey_files_as_its_training_read_them(tmp_path):
    import torch

    from segtrain.checkpoint import restore
    from segtrain.cli.predict import run as predict

    for n in range(3):
        image, label = scene(140 + n, 32)
        (tmp_path / "images").mkdir(exist_ok=True)
        Image.fromarray(image).convert("L").save(tmp_path / "images" / f"g{n}.png")
        save_png(encode(label, "folder"), tmp_path / "masks" / f"g{n}.png")
    (tmp_path / "train.txt").write_text("g0\ng1\n")
    (tmp_path / "val.txt").write_text("g2\n")
    write_classes(tmp_path / "classes.yaml", ["background", "disc", "block", "wire", "dot"])
    train_tiny(tmp_path, tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    assert predict([f"ckpt={ckpt}", f"input={tmp_path / 'images'}", f"output={tmp_path / 'labels'}"]) == 0
    train_cfg, model, state = restore(ckpt)
    assert state["data"]["input_channels"] == [1]
    dataset = build_dataset(train_cfg.dataset, "val", evaluation=True)
    with torch.no_grad():
        expected = model(dataset[0][0][None]).argmax(1)[0].numpy()
    assert np.array_equal(np.array(Image.open(tmp_path / "labels" / "g2.png")), expected)


def test_photometric_augmentation_changes_grey_images(tmp_path, caplog):
    import logging

    from segtrain.data.augment import Augmented

    image, label = scene(160, 32)
    (tmp_path / "images").mkdir()
    Image.fromarray(image).convert("L").save(tmp_path / "images" / "g.png")
    save_png(encode(label, "folder"), tmp_path / "masks" / "g.png")
    write_classes(tmp_path / "classes.yaml", ["background", "disc", "block", "wire", "dot"])
    cfg = compose_config(*keys(tmp_path), "augment=photometric")
    dataset = build_dataset(cfg.dataset, "train")
    assert dataset.input_channels == (1,)
    with caplog.at_level(logging.INFO, logger="segtrain"):
        augmented = Augmented(dataset, cfg.augment, seed=0)
    assert "saturation and hue need colour and are left out" in caplog.text
    plain = dataset[0][0]
    changed = max(float((augmented[(0, position)][0] - plain).abs().max()) for position in range(8))
    assert changed > 0.1  # brightness / contrast moved the normalised pixels (was exactly 0)


def test_a_checkpoint_evaluates_from_any_folder_and_a_moved_dataset_names_its_key(tmp_path, monkeypatch):
    import shutil

    from segtrain.checkpoint import load_checkpoint
    from segtrain.cli.evaluate import run as evaluate

    data = tmp_path / "work" / "data"
    for n in range(2):
        image, label = scene(170 + n, 32)
        save_png(image, data / "images" / f"i{n}.png")
        save_png(encode(label, "folder"), data / "masks" / f"i{n}.png")
    (data / "train.txt").write_text("i0\n")
    (data / "val.txt").write_text("i1\n")
    write_classes(data / "classes.yaml", ["background", "disc", "block", "wire", "dot"])
    monkeypatch.chdir(tmp_path / "work")
    result = train_tiny(Path("data"), tmp_path / "run")  # relative paths, as typed on a command line
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    stored = load_checkpoint(ckpt)["config"]["dataset"]
    assert stored["root"] == str(data) and stored["classes"] == str(data / "classes.yaml")
    monkeypatch.chdir(tmp_path)  # another working folder
    assert evaluate([f"ckpt={ckpt}"])["mean_iu"] == result["mean_iu"]
    shutil.move(str(data), str(tmp_path / "moved"))
    with pytest.raises(SegtrainError) as info:
        evaluate([f"ckpt={ckpt}", "name=moved"])
    # the classes file lay under the moved root: the line names both keys, as following it needs both
    assert str(info.value).startswith(f"dataset=folder: dataset.root={data} is not a folder.")
    assert str(info.value).endswith(f"then set dataset.root=PATH (or SEGTRAIN_DATA), and dataset.classes=PATH "
                                    f"({data / 'classes.yaml'} is missing too)")
    with pytest.raises(SegtrainError) as info:  # a classes file that is still there is not named
        evaluate([f"ckpt={ckpt}", f"dataset.classes={tmp_path / 'moved' / 'classes.yaml'}", "name=moved"])
    assert str(info.value).endswith("then set dataset.root=PATH (or SEGTRAIN_DATA)")
    moved = tmp_path / "moved"
    assert evaluate([f"ckpt={ckpt}", f"dataset.root={moved}", f"dataset.classes={moved / 'classes.yaml'}",
                     "name=found"])["mean_iu"] == result["mean_iu"]
