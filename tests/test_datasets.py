"""The real on-disk formats, on tiny fake copies written by segtrain.data.fake (scripts/make_fake_datasets.py)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from segtrain.data import build_dataset, pad_collate
from segtrain.data.fake import SCENE_TO_RAW, make_fake_datasets
from segtrain.data.siftflow import FOLDER
from segtrain.errors import SegtrainError

from .conftest import compose_config


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_fake_datasets(tmp_path_factory.mktemp("data"), size=40)


def dataset(fake, name, split=None, *overrides):
    cfg = compose_config(f"dataset={name}", f"dataset.root={fake / ROOTS[name]}", *overrides)
    if name in ("voc", "voc_aug"):
        cfg.dataset.sbd_root = str(fake / "benchmark_RELEASE" / "dataset")
        cfg.dataset.voc2011_root = str(fake / "TrainVal" / "VOCdevkit" / "VOC2011")
    if name == "folder":
        cfg.dataset.classes = str(fake / "folder" / "classes.yaml")
    return build_dataset(cfg.dataset, split or cfg.dataset.train_split)


ROOTS = {"voc": "VOCdevkit/VOC2012", "voc_aug": "VOCdevkit/VOC2012", "nyud": "nyud", "siftflow": "siftflow",
         "folder": "folder"}


def raw_png(path):
    return np.array(Image.open(path))


def test_voc_reads_palette_indices_and_its_splits(fake):
    voc = fake / "VOCdevkit" / "VOC2012"
    assert Image.open(voc / "SegmentationClass" / "2007_000001.png").mode == "P"
    train = dataset(fake, "voc", "train")
    assert len(train) == 6 and len(dataset(fake, "voc", "trainval")) == 10
    image, label = train[1]
    expected = raw_png(voc / "SegmentationClass" / "2007_000001.png")
    assert torch.equal(label, torch.from_numpy(expected).long())  # indices, not colours
    assert image.shape == (3, 40, 32) and set(label.unique().tolist()) <= set(SCENE_TO_RAW["voc"])
    assert 255 in label.unique().tolist()
    # normalised with FCN's mean (RGB in 0..1) and ImageNet's std
    pixels = np.asarray(Image.open(voc / "JPEGImages" / "2007_000001.jpg").convert("RGB"), np.float32)
    assert image[0, 0, 0].item() == pytest.approx((pixels[0, 0, 0] / 255 - 122.67891434 / 255) / 0.229, abs=1e-5)


def test_voc_aug_sbd_and_seg11valid(fake):
    sbd = fake / "benchmark_RELEASE" / "dataset"
    aug = dataset(fake, "voc_aug")
    # (VOC train 6 + SBD train 5 + SBD val 3, 3 shared) minus VOC val: 11 ids
    assert len(aug) == 11 and aug.items == sorted(aug.items)
    ids = [image.stem for image, _ in aug.items]
    assert "2007_000006" not in ids and "2008_000004" in ids
    sources = {image.stem: label.suffix for image, label in aug.items}
    assert sources["2007_000000"] == ".png" and sources["2008_000000"] == ".mat"  # VOC's label where it has one
    _, label = aug[ids.index("2008_000000")]
    sbd_label = scipy.io.loadmat(sbd / "cls" / "2008_000000.mat")["GTcls"][0]["Segmentation"][0]
    assert torch.equal(label, torch.from_numpy(sbd_label).long())

    assert len(dataset(fake, "voc", "sbd_train")) == 5 and len(dataset(fake, "voc", "sbd_val")) == 3
    seg11 = dataset(fake, "voc", "seg11valid")  # VOC2011 val minus SBD train
    assert [image.stem for image, _ in seg11.items] == ["2007_000007", "2007_000008", "2007_000009"]


def test_converted_aug_labels_may_be_L_or_P_pngs(fake, tmp_path):
    for mode in ("L", "P"):
        folder = tmp_path / mode
        folder.mkdir()
        reference = dataset(fake, "voc_aug")
        for (_, label_path), index in zip(reference.items, range(len(reference))):
            label = reference[index][1].numpy().astype(np.uint8)
            image = Image.fromarray(label)
            if mode == "P":
                image.putpalette([0, 0, 0] * 256)
            image.save(folder / f"{label_path.stem}.png")
        aug = dataset(fake, "voc_aug", None, f"dataset.aug_label_dir={folder}")
        assert all(torch.equal(aug[i][1], reference[i][1]) for i in range(len(aug)))


def test_nyud_label_shift_modalities_and_depth(fake):
    root = fake / "nyud"
    rgb = dataset(fake, "nyud", "trainval")  # no trainval.txt: train + val
    assert len(rgb) == 5 and rgb.input_channels == (3,)
    raw = scipy.io.loadmat(root / "segmentation" / "img_5001.mat")["segmentation"]
    _, label = rgb[0]
    assert (label[raw == 0] == 255).all() and (label[raw == 1] == 0).all() and (label[raw == 40] == 39).all()

    rgbd = dataset(fake, "nyud", "test", "dataset.modality=rgbd")
    image, _ = rgbd[0]
    depth = raw_png(root / "data" / "depth" / "img_5006.png").astype(np.float32)
    assert image.shape[0] == 4 and rgbd.input_channels == (4,)
    torch.testing.assert_close(image[3], torch.from_numpy(np.log(depth) - 7.844))
    fused = dataset(fake, "nyud", "test", "dataset.modality=rgb_hha")
    assert fused.input_channels == (3, 3) and fused[0][0].shape[0] == 6
    assert dataset(fake, "nyud", "test", "dataset.modality=depth")[0][0].shape[0] == 1


def test_nyud_converter_reproduces_fcns_layout(fake, tmp_path):
    from segtrain.data.nyud import convert_labeled_mat

    raw = fake / "nyud_raw"
    assert convert_labeled_mat(raw / "nyu_depth_v2_labeled.mat", raw / "classMapping40.mat", raw / "splits.mat",
                               tmp_path) == 8
    assert (tmp_path / "trainval.txt").read_text().split() == ["5001", "5002", "5003", "5004", "5005"]
    assert np.array_equal(raw_png(tmp_path / "data" / "images" / "img_5003.png"),
                          raw_png(fake / "nyud" / "data" / "images" / "img_5003.png"))
    assert np.array_equal(raw_png(tmp_path / "data" / "depth" / "img_5003.png"),
                          raw_png(fake / "nyud" / "data" / "depth" / "img_5003.png"))
    for name in ("img_5003.mat", "img_5008.mat"):
        converted = scipy.io.loadmat(tmp_path / "segmentation" / name)["segmentation"]
        assert np.array_equal(converted, scipy.io.loadmat(fake / "nyud" / "segmentation" / name)["segmentation"])


def test_siftflow_semantic_and_geometric_encodings(fake):
    semantic_raw = scipy.io.loadmat(fake / "siftflow" / "SemanticLabels" / FOLDER / "coast_natu0.mat")["S"]
    geometric_raw = scipy.io.loadmat(fake / "siftflow" / "GeoLabels" / FOLDER / "coast_natu0.mat")["S"]
    semantic = dataset(fake, "siftflow")
    assert len(semantic.class_names) == 33 and len(semantic) == 6
    label = semantic[0][1]
    assert (label[semantic_raw == 0] == 255).all() and (label[semantic_raw == 28] == 27).all()
    geometric = dataset(fake, "siftflow", None, "dataset.task=geometric")
    label = geometric[0][1]
    assert geometric.class_names == ("sky", "horizontal", "vertical")
    assert (label[geometric_raw == -1] == 255).all() and (label[geometric_raw == 1] == 0).all()
    assert (label[geometric_raw == 3] == 2).all()


def test_siftflow_both_trains_two_heads_and_reports_each_task(fake, tmp_path, capsys):
    from segtrain.cli.evaluate import run as run_eval
    from segtrain.losses import segmentation_loss
    from segtrain.train import train

    both = dataset(fake, "siftflow", None, "dataset.task=both")
    image, label = both[0]
    assert label.shape == (2, *image.shape[-2:]) and len(both.class_names) == 36
    assert torch.equal(label[0], dataset(fake, "siftflow")[0][1])
    assert torch.equal(label[1], dataset(fake, "siftflow", None, "dataset.task=geometric")[0][1])
    logits = torch.randn(1, 36, *label.shape[-2:])
    loss = segmentation_loss(logits, label[None], 36, 255, both.tasks)
    separate = (torch.nn.functional.cross_entropy(logits[:, :33], label[None, 0], ignore_index=255)
                + torch.nn.functional.cross_entropy(logits[:, 33:], label[None, 1], ignore_index=255))
    torch.testing.assert_close(loss, separate)

    from .conftest import TINY
    cfg = compose_config(*[o for o in TINY if not o.startswith("dataset.")], "dataset=siftflow", "dataset.task=both",
                         f"dataset.root={fake / 'siftflow'}")
    result = train(cfg, tmp_path)
    assert set(result["tasks"]) == {"semantic", "geometric"}
    assert result["mean_iu"] == result["tasks"]["semantic"]["mean_iu"]
    assert len(result["tasks"]["geometric"]["iu"]) == 3
    capsys.readouterr()
    evaluated = run_eval([f"ckpt={tmp_path / 'checkpoints' / 'last.pt'}"])
    out = capsys.readouterr().out
    assert "[semantic]" in out and "[geometric]" in out and "horizontal" in out and "identical" in out
    assert evaluated["tasks"]["geometric"] == result["tasks"]["geometric"]


def test_folder_dataset_takes_classes_and_colours_from_its_yaml(fake, tmp_path):
    folder = dataset(fake, "folder")
    assert folder.class_names == ("background", "block", "disc", "wire", "dot")
    assert folder.palette[1].tolist() == [200, 40, 40] and len(folder) == 6
    # without split files: images/<split>/ and masks/<split>/
    for sub in ("images", "masks"):
        (tmp_path / sub / "val").mkdir(parents=True)
    for name in ("img006", "img008"):
        (tmp_path / "images" / "val" / f"{name}.jpg").write_bytes((fake / "folder" / "images" / f"{name}.jpg").read_bytes())
        (tmp_path / "masks" / "val" / f"{name}.png").write_bytes((fake / "folder" / "masks" / f"{name}.png").read_bytes())
    cfg = compose_config("dataset=folder", f"dataset.root={tmp_path}", f"dataset.classes={fake / 'folder/classes.yaml'}")
    assert len(build_dataset(cfg.dataset, "val")) == 2


def test_pad_collate_pads_images_with_zero_and_labels_with_ignore():
    images, labels = pad_collate([(torch.ones(3, 4, 5), torch.zeros(4, 5, dtype=torch.long)),
                                  (torch.ones(3, 6, 3), torch.ones(6, 3, dtype=torch.long))])
    assert images.shape == (2, 3, 6, 5) and labels.shape == (2, 6, 5)
    assert images[0, :, 4:].abs().sum() == 0 and (labels[0, 4:] == 255).all() and (labels[1, :, 3:] == 255).all()


def one_line_error(match, build):
    with pytest.raises(SegtrainError, match=match) as info:
        build()
    assert "\n" not in str(info.value)
    return str(info.value)


def test_bad_input_names_the_file_and_the_problem(fake, tmp_path):
    message = one_line_error("not a folder", lambda: dataset(fake, "voc", "train", f"dataset.root={tmp_path}/nope"))
    assert "JPEGImages" in message and "host.robots.ox.ac.uk" in message
    one_line_error("not a folder", lambda: dataset(fake, "nyud", "train", f"dataset.root={tmp_path}/nope"))

    broken = tmp_path / "voc"
    (broken / "ImageSets" / "Segmentation").mkdir(parents=True)
    (broken / "ImageSets" / "Segmentation" / "train.txt").write_text("a\nb\nc\nd\ne\n")
    (broken / "JPEGImages").mkdir()
    (broken / "SegmentationClass").mkdir()
    good_label = np.zeros((8, 8), np.uint8)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(broken / "JPEGImages" / "b.jpg")
    (broken / "JPEGImages" / "c.jpg").write_bytes(b"not a jpeg")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(broken / "JPEGImages" / "d.jpg")
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(broken / "JPEGImages" / "e.jpg")
    Image.fromarray(good_label).save(broken / "SegmentationClass" / "b.png")
    Image.fromarray(good_label).save(broken / "SegmentationClass" / "c.png")
    Image.fromarray(good_label + 30).save(broken / "SegmentationClass" / "d.png")
    Image.fromarray(good_label).save(broken / "SegmentationClass" / "e.png")
    voc = dataset(fake, "voc", "train", f"dataset.root={broken}")
    one_line_error(r"a\.jpg: image file is missing", lambda: voc[0])
    one_line_error(r"b\.png: label file is missing", lambda: (broken / "SegmentationClass" / "b.png").unlink()
                   or voc[1])
    one_line_error(r"c\.jpg: cannot read the image", lambda: voc[2])
    one_line_error(r"d\.png: label values 30 are outside the 21 classes", lambda: voc[3])
    one_line_error(r"e\.png: label is 8x8 but its image is 9x8", lambda: voc[4])
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(broken / "SegmentationClass" / "b.png")
    one_line_error(r"b\.png: label PNG is mode 'RGB'", lambda: voc[1])

    one_line_error("dataset.classes=None: no such file", lambda: build_dataset(
        compose_config("dataset=folder", f"dataset.root={fake / 'folder'}").dataset, "train"))
    one_line_error("split 'tain' is not one of", lambda: dataset(fake, "voc", "tain"))


@pytest.mark.parametrize("name,overrides", [
    ("voc", ["trainer.batch_size=3"]),  # images of different widths in one batch
    ("voc_aug", ["dataset.val_split=seg11valid"]),
    ("nyud", ["dataset.modality=rgbd"]),
    ("nyud", ["dataset.modality=rgb_hha"]),
    ("siftflow", ["dataset.task=geometric"]),
    ("folder", []),
])
@pytest.mark.slow
def test_short_training_run_on_each_fake_copy_through_the_cli(fake, tmp_path, name, overrides):
    extra = {"folder": [f"dataset.root={fake / 'folder'}", f"dataset.classes={fake / 'folder' / 'classes.yaml'}"]}
    command = [sys.executable, "-m", "segtrain.cli.train", f"dataset={name}", "model=fcn8s", "model.width=0.0625",
               "model.batch_norm=true", "model.dropout=0", "trainer.max_iters=2", "trainer.batch_size=2",
               "trainer.val_interval=2", "trainer.ckpt_interval=2", "trainer.log_interval=1",
               "trainer.device=cpu", f"hydra.run.dir={tmp_path}", *extra.get(name, []), *overrides]
    run = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "SEGTRAIN_DATA": str(fake)})
    assert run.returncode == 0, run.stderr[-2000:]
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["iteration"] == 2 and state["config"]["dataset"]["num_classes"] == len(state["class_names"])
    if "dataset.modality=rgb_hha" in overrides:  # late fusion: two streams
        assert any(k.startswith("streams.1.") for k in state["model"])
    if "dataset.modality=rgbd" in overrides:
        assert state["model"]["backbone.body.0.weight"].shape[1] == 4
