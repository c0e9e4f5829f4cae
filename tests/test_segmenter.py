"""segtrain.Segmenter, the Python API for trained checkpoints (issue 25): the labels segtrain-predict writes, for
paths, PIL images and arrays read by the datasets' rules, alone and in batches; its options checked as the
command line's are."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from segtrain.data.fake import encode, save_png, scene, write_classes
from segtrain.errors import SegtrainError

from .test_images import photo_with_orientation, train_tiny


def varied(ckpt, out):
    """A copy of checkpoint `ckpt` whose FCN classifiers (the score layers) are seeded random: a tiny run labels
    every pixel background, and equal labels of two code paths would mean little."""
    import torch

    state = torch.load(ckpt, weights_only=True)
    generator = torch.Generator().manual_seed(0)
    for key in [k for k in state["model"] if k.startswith("score")]:
        state["model"][key] = torch.randn(state["model"][key].shape, generator=generator) * key.endswith("weight") * 3
    torch.save(state, out)
    return out


@pytest.fixture(scope="module")
def photos(finished_run, tmp_path_factory):
    """(checkpoint, folder of images, {name: (H, W) as shown}) on the tiny synthetic run (its classifiers made
    random): RGB of two sizes (one repeated, so that batches form), an EXIF-rotated photo, an 8-bit grey and a
    16-bit grey file."""
    folder = tmp_path_factory.mktemp("photos")
    ckpt = varied(finished_run[0] / "checkpoints" / "last.pt", folder.parent / "varied.pt")
    rng = np.random.default_rng(0)
    Image.fromarray(scene(1, 53)[0][:37]).save(folder / "wide.jpg")
    Image.fromarray(scene(2, 70, width=20)[0]).save(folder / "tall.png")
    Image.fromarray(rng.integers(0, 255, (70, 20, 3), dtype=np.uint8)).save(folder / "tall2.png")
    photo_with_orientation(scene(3, 40, width=28)[0], 6, folder / "turned.png")  # stored 28 high, shown 40
    Image.fromarray(scene(4, 32)[0]).convert("L").save(folder / "grey.png")
    Image.fromarray((np.arange(24 * 30).reshape(24, 30) * 90).astype(np.uint16)).save(folder / "deep.png")
    sizes = {"wide": (37, 53), "tall": (70, 20), "tall2": (70, 20), "turned": (40, 28), "grey": (32, 32),
             "deep": (24, 30)}
    return ckpt, folder, sizes


@pytest.fixture(scope="module")
def segmenter(photos):
    from segtrain import Segmenter

    return Segmenter.from_checkpoint(photos[0], device="cpu")


def written(folder, name):
    return np.array(Image.open(folder / f"{name}.png"))


def test_import_segtrain_imports_no_torch_until_the_segmenter_is_used():
    code = ("import sys, segtrain; assert 'torch' not in sys.modules; from segtrain import Segmenter; "
            "assert Segmenter.__module__ == 'segtrain.segmenter'; segtrain.Nothing")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "AttributeError: module 'segtrain' has no attribute 'Nothing'" in result.stderr, result.stderr


def test_the_api_gives_segtrain_predicts_labels_and_overlays(photos, segmenter, tmp_path):
    from segtrain.cli.predict import run as run_predict

    ckpt, folder, sizes = photos
    assert run_predict([f"ckpt={ckpt}", f"input={folder}", f"output={tmp_path / 'cli'}"]) == 0
    found = {}
    for name, size in sizes.items():
        path = next(folder.glob(f"{name}.*"))
        labels = found[name] = segmenter.predict(path)
        assert labels.dtype == np.uint8 and labels.shape == size  # as shown: the EXIF turn applied
        assert np.array_equal(labels, written(tmp_path / "cli", name)), name
        overlay = np.array(segmenter.overlay(str(path), labels))
        assert np.array_equal(overlay, written(tmp_path / "cli", f"{name}_overlay"))
    assert len(set(np.unique(np.concatenate([labels.ravel() for labels in found.values()])))) >= 3
    with Image.open(folder / "turned.png") as opened:  # a PIL image opened from a file: its rules, EXIF included
        assert np.array_equal(segmenter.predict(opened), found["turned"])
    assert segmenter.class_names == ["background", "block", "disc", "wire", "dot"]
    assert segmenter.input_channels == 3
    assert segmenter.palette.dtype == np.uint8 and segmenter.palette.shape[1] == 3
    assert Image.open(tmp_path / "cli" / "wide.png").getpalette() == segmenter.palette.flatten().tolist()

    probs = segmenter.predict_proba(folder / "wide.jpg")
    assert probs.dtype == np.float32 and probs.shape == (5, 37, 53)
    assert np.allclose(probs.sum(0), 1, atol=1e-5)
    assert np.array_equal(probs.argmax(0), written(tmp_path / "cli", "wide"))

    # a batch of mixed sizes (the two tall images share a forward pass) gives predict()'s labels one by one
    images = [folder / "tall.png", folder / "wide.jpg", folder / "tall2.png", folder / "turned.png",
              np.array(Image.open(folder / "tall2.png")), folder / "grey.png"]
    names = ["tall", "wide", "tall2", "turned", "tall2", "grey"]
    batches = []
    hook = segmenter.model.register_forward_hook(lambda module, args, out: batches.append(len(args[0])))
    try:
        batch = segmenter.predict_batch(images, batch_size=3)
    finally:
        hook.remove()
    assert batches == [2, 1, 1, 1, 1] and len(batch) == len(images)  # windows of 3: tall with tall2, the array alone
    for name, labels in zip(names, batch):
        assert np.array_equal(labels, found[name])
    with pytest.raises(SegtrainError, match=r"^images\[1\]: an array of shape \(3, 3, 2\): expected"):
        segmenter.predict_batch([images[4], np.zeros((3, 3, 2), np.uint8)])
    with pytest.raises(SegtrainError, match="batch_size=0: expected a whole number >= 1"):
        segmenter.predict_batch(images, batch_size=0)
    with pytest.raises(SegtrainError, match=r"labels of shape \(5, 5\) for an image of 53x37"):
        segmenter.overlay(folder / "wide.jpg", np.zeros((5, 5), np.uint8))
    for one in (images[4], str(folder / "wide.jpg"), folder / "wide.jpg"):  # rows or characters are no images
        with pytest.raises(SegtrainError, match=r"^predict_batch: expected a list of images, got one \w+; for one "):
            segmenter.predict_batch(one)
    labels = found["wide"]
    with pytest.raises(SegtrainError, match=r"^labels of dtype float64: expected integer class indices"):
        segmenter.overlay(folder / "wide.jpg", labels + 0.6)
    named = np.array(segmenter.overlay(folder / "wide.jpg", labels, skip_classes=segmenter.class_names[1]))
    assert np.array_equal(named, np.array(segmenter.overlay(folder / "wide.jpg", labels, skip_classes=[1])))


def test_crf_and_inference_options_give_the_command_lines_labels(photos, tmp_path):
    from segtrain import Segmenter
    from segtrain.cli.predict import run as run_predict

    ckpt, folder, _ = photos
    image = folder / "wide.jpg"
    assert run_predict([f"ckpt={ckpt}", f"input={image}", f"output={tmp_path / 'cli'}", "crf=deeplab_resnet",
                        "crf.iterations=3", "crf.workers=0", "inference=slide", "inference.tile=32"]) == 0
    refined = Segmenter.from_checkpoint(ckpt, device="cpu", crf={"name": "deeplab_resnet", "iterations": 3},
                                        inference={"mode": "slide", "tile": 32})
    labels = refined.predict(image)
    assert np.array_equal(labels, written(tmp_path / "cli", "wide"))
    plain = Segmenter.from_checkpoint(ckpt, device="cpu", inference={"mode": "slide", "tile": 32})
    probs = plain.predict_proba(image)
    assert not np.array_equal(labels, probs.argmax(0))  # the CRF changed something
    assert np.array_equal(refined.predict_proba(image), probs)  # the network's probabilities, before the CRF


def test_options_and_devices_are_checked_as_the_command_line_checks_them(photos):
    from segtrain import Segmenter

    ckpt = photos[0]
    with pytest.raises(SegtrainError, match=r"^crf=bogus: crf has no choice 'bogus'; crf: deconvnet, deeplab, "):
        Segmenter.from_checkpoint(ckpt, crf="bogus")
    # a dict starts from the default option, crf=none: the advice names the key that decides, and following it works
    with pytest.raises(SegtrainError, match=r"^crf.w1=5: has no effect with crf=none \(only crf=dense uses it\); a "
                                            r"dict of crf keys sets them over crf=none: give its 'name' too$"):
        Segmenter.from_checkpoint(ckpt, crf={"w1": 5})
    assert Segmenter.from_checkpoint(ckpt, device="cpu", crf={"name": "dense", "w1": 5}).crf.w1 == 5
    # the CRF in the calling process unless asked (spawned workers rerun a script without a __main__ guard)
    assert Segmenter.from_checkpoint(ckpt, device="cpu", crf="dense").crf.workers == 0
    assert Segmenter.from_checkpoint(ckpt, device="cpu", crf={"name": "dense", "workers": 2}).crf.workers == 2
    with pytest.raises(SegtrainError, match=r"^crf.w1=-1: expected a kernel weight >= 0$"):
        Segmenter.from_checkpoint(ckpt, crf={"name": "dense", "w1": -1})
    with pytest.raises(SegtrainError, match=r"^inference.tile=64: has no effect with inference.mode=whole"):
        Segmenter.from_checkpoint(ckpt, inference={"tile": 64})
    with pytest.raises(SegtrainError, match=r"^inference.tiles=64: inference has no key 'tiles'; did you mean "
                                            r"inference.tile\?$"):
        Segmenter.from_checkpoint(ckpt, inference={"mode": "slide", "tiles": 64})
    with pytest.raises(SegtrainError, match=r"^inference=3: expected None, the name of one of the inference "):
        Segmenter.from_checkpoint(ckpt, inference=3)
    with pytest.raises(SegtrainError, match=r"^device='tpu0': expected auto, cpu, cuda or cuda:N$"):
        Segmenter.from_checkpoint(ckpt, device="tpu0")
    with pytest.raises(SegtrainError, match=r"^checkpoint .*nowhere.pt: no such file$"):
        Segmenter.from_checkpoint(ckpt.parent / "nowhere.pt")
    with pytest.raises(SegtrainError, match=r"^dataset.scale=-1: expected"):
        Segmenter.from_checkpoint(ckpt, overrides=["dataset.scale=-1"])
    from segtrain.checkpoint import restore

    train_cfg, model, state = restore(ckpt)  # an RGB-HHA model (two streams) as its checkpoint would describe it
    with pytest.raises(SegtrainError, match=r"^checkpoint: the model takes \[3, 3\] input streams .* evaluate it "
                                            r"with segtrain-eval$"):
        Segmenter(model, train_cfg, {**state["data"], "input_channels": [3, 3]}, "cpu")


def test_the_app_options_compose_as_the_command_line_composes_them():
    from omegaconf import OmegaConf

    from segtrain.config import app_option, compose

    for group, names in (("crf", ["deconvnet", "deeplab", "deeplab_resnet", "deeplab_v2_vgg", "dense", "none"]),
                         ("inference", ["multiscale", "slide", "whole"])):
        for name in [None, *names]:
            composed = compose(["ckpt=x", "input=x", "output=x", *([f"{group}={name}"] if name else [])], "predict")
            assert OmegaConf.to_container(app_option(group, name)) == OmegaConf.to_container(composed[group])
    assert app_option("crf", {"name": "deconvnet", "iterations": 4}).sigma_alpha == 20.0  # the option, then the key


@pytest.mark.slow
def test_arrays_follow_the_file_rules_their_dtype_names(photos, segmenter):
    _, folder, _ = photos
    rgb = np.array(Image.open(folder / "tall.png"))
    labels = segmenter.predict(folder / "tall.png")
    assert np.array_equal(segmenter.predict(rgb), labels)
    assert np.array_equal(segmenter.predict(rgb / 255.0), labels)  # floats: fractions of full intensity
    assert np.array_equal(segmenter.predict(rgb.astype(np.float32) / 255), labels)
    grey = np.array(Image.open(folder / "grey.png"))
    assert np.array_equal(segmenter.predict(grey), segmenter.predict(folder / "grey.png"))
    assert np.array_equal(segmenter.predict(grey[..., None]), segmenter.predict(grey))
    deep = np.array(Image.open(folder / "deep.png"))
    assert deep.dtype == np.uint16 and np.array_equal(segmenter.predict(deep), segmenter.predict(folder / "deep.png"))
    assert np.array_equal(segmenter.predict(np.repeat(deep[..., None], 3, axis=2)), segmenter.predict(deep))

    with pytest.raises(SegtrainError, match=r"^a float array with values \d+..\d+: floats are fractions of full "
                                            r"intensity, 0..1 \(array / 255 for 8-bit values"):
        segmenter.predict(rgb.astype(np.float64))
    with pytest.raises(SegtrainError, match="NaN or infinite"):
        segmenter.predict(np.full((8, 8), np.nan))
    with pytest.raises(SegtrainError, match=r"^an array of shape \(70, 20, 4\): expected \(H, W\) grey or "
                                            r"\(H, W, 3\) RGB; RGBA\? pass array\[..., :3\]$"):
        segmenter.predict(np.dstack([rgb, np.full((70, 20), 255, np.uint8)]))
    assert np.array_equal(segmenter.predict(np.dstack([rgb, np.zeros((70, 20), np.uint8)])[..., :3]), labels)
    with pytest.raises(SegtrainError, match=r"^an array of dtype int64: expected uint8, uint16 or float"):
        segmenter.predict(rgb.astype(np.int64))
    assert np.array_equal(segmenter.predict(rgb.astype(np.int64).astype(np.uint8)), labels)  # the advice
    with pytest.raises(SegtrainError, match=r"^an array of shape \(0, 5\)"):
        segmenter.predict(np.zeros((0, 5), np.uint8))
    with pytest.raises(SegtrainError, match="^an image of type list: expected a path, a PIL image or a numpy array"):
        segmenter.predict(rgb.tolist())
    with pytest.raises(SegtrainError, match=r"nowhere.png: image file is missing"):
        segmenter.predict(folder / "nowhere.png")


@pytest.mark.slow
def test_a_grey_16_bit_model_reads_paths_and_arrays_as_its_training_did(tmp_path):
    from segtrain import Segmenter
    from segtrain.cli.predict import run as run_predict

    for n in range(3):
        image, label = scene(170 + n, 32)
        (tmp_path / "images").mkdir(exist_ok=True)
        deep = np.asarray(Image.fromarray(image).convert("L"), np.uint16) * 257  # 16-bit grey, full range
        Image.fromarray(deep).save(tmp_path / "images" / f"g{n}.png")
        save_png(encode(label, "folder"), tmp_path / "masks" / f"g{n}.png")
    (tmp_path / "train.txt").write_text("g0\ng1\n")
    (tmp_path / "val.txt").write_text("g2\n")
    write_classes(tmp_path / "classes.yaml", ["background", "disc", "block", "wire", "dot"])
    train_tiny(tmp_path, tmp_path / "run")
    ckpt = varied(tmp_path / "run" / "checkpoints" / "last.pt", tmp_path / "varied.pt")
    assert run_predict([f"ckpt={ckpt}", f"input={tmp_path / 'images'}", f"output={tmp_path / 'labels'}"]) == 0
    grey = Segmenter.from_checkpoint(ckpt, device="cpu")
    assert grey.input_channels == 1 and grey.info["scale"] == [65535.0]
    for n in range(3):
        path = tmp_path / "images" / f"g{n}.png"
        stored = np.array(Image.open(path))
        labels = grey.predict(path)
        assert len(np.unique(labels)) > 1 and np.array_equal(labels, written(tmp_path / "labels", f"g{n}"))
        assert np.array_equal(grey.predict(stored), labels)
        assert np.array_equal(grey.predict_proba(stored / 65535.0), grey.predict_proba(path))  # fractions of 65535
        assert np.array_equal(np.array(grey.overlay(path, labels)), written(tmp_path / "labels", f"g{n}_overlay"))
    assert grey.predict_batch([path, stored], batch_size=2)[1].shape == (32, 32)
    assert np.array_equal(grey.predict((stored // 257).astype(np.uint8)), labels)  # 8 bits scaled to 16: x 257
    with pytest.raises(SegtrainError, match=r"shape \(32, 32, 3\) and dtype uint16: this grey model takes an "
                                            r"\(H, W\) array"):
        grey.predict(np.repeat(stored[..., None], 3, axis=2))
    with pytest.raises(SegtrainError, match=r"^a float array with values \d+..\d+: floats are fractions"):
        grey.predict(stored.astype(np.float32))
    Image.fromarray((stored // 257).astype(np.uint8)).save(tmp_path / "eight.png")
    assert np.array_equal(grey.predict(tmp_path / "eight.png"), labels)
