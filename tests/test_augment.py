"""Augmentation (albumentations), its crop (patch training) and FCN's cell sampling."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from segtrain.data import build_dataset, pad_collate
from segtrain.data.augment import Augmented
from segtrain.data.samplers import InfiniteSampler
from segtrain.losses import drop_cells

from .conftest import compose_config


def augmented(name, *overrides):
    cfg = compose_config(f"augment={name}", "dataset.image_size=64", *overrides)
    return build_dataset(cfg.dataset, "train"), Augmented(build_dataset(cfg.dataset, "train"), cfg.augment, 0)


@pytest.mark.parametrize("name", ["deeplab", "unet", "photometric"])
def test_each_sample_is_augmented_by_its_position_only(name):
    plain, data = augmented(name)
    first, again, other = data[(3, 10)], data[(3, 10)], data[(3, 11)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])
    image, label = first
    assert image.dtype == torch.float32 and label.dtype == torch.int64
    # nearest-neighbour labels: no value that was not there before, except the 255 of padding
    assert set(label.unique().tolist()) <= set(plain[3][1].unique().tolist()) | {255}


def test_deeplab_scales_pads_with_ignore_and_crops():
    plain, data = augmented("deeplab", "augment.crop_size=80")
    shapes, padded = set(), 0
    for position in range(12):
        image, label = data[(position % 4, position)]
        shapes.add(tuple(image.shape))
        if (label[-1] == 255).all():  # padded at the bottom (the scaled scene is under 80 px): image is the mean
            padded += 1
            # the mean as the nearest stored (uint8) value: 0 after normalisation, within half a level
            assert image[:, -1].abs().max() <= 0.5 / 255 / min(plain.std) + 1e-6
    assert shapes == {(3, 80, 80)} and padded > 0


def test_photometric_changes_colours_not_labels():
    plain, data = augmented("photometric")
    changed = 0
    for position in range(6):
        image, label = data[(0, position)]
        assert torch.equal(label, plain[0][1])
        changed += int(not torch.allclose(image, plain[0][0]))
    assert changed >= 3


def test_workers_load_the_same_augmented_batches_as_the_main_process():
    _, data = augmented("deeplab", "augment.crop_size=48")

    def batches(workers):
        loader = DataLoader(data, batch_size=2, sampler=InfiniteSampler(len(data), 0, with_position=True),
                            num_workers=workers, collate_fn=pad_collate)
        stream = iter(loader)
        return [next(stream) for _ in range(3)]

    for (a_images, a_labels), (b_images, b_labels) in zip(batches(0), batches(2)):
        assert torch.equal(a_images, b_images) and torch.equal(a_labels, b_labels)


@pytest.mark.parametrize("name", ["none", "unet", "photometric"])
def test_any_augment_crops_patches_of_its_crop_size(name):
    plain, data = augmented(name, "augment.crop_size=40")
    assert {tuple(data[(i, i)][0].shape) for i in range(5)} == {(3, 40, 40)}
    if name == "none":  # a window of the scene, nothing else changed
        image, label = data[(2, 7)]
        whole_image, whole_label = plain[2]
        found = [(y, x) for y in range(25) for x in range(25)
                 if torch.equal(whole_label[y:y + 40, x:x + 40], label)
                 and torch.equal(whole_image[:, y:y + 40, x:x + 40], image)]
        assert found
    _, whole = augmented(name)
    assert whole[(0, 0)][0].shape[-2:] == (64, 64)  # crop_size null (the default): whole images


def test_checkpoints_with_the_trainers_patch_sampling_are_read_with_the_augments_crop(caplog):
    """Before augment.crop_size served every augment, trainer.sampling=patch cropped trainer.patch_size after any
    augment, and crop_size (321 by default) meant DeepLab's crop only."""
    from segtrain.config import stored_config, to_plain

    def stored(augment, sampling, crop_size, patch_size=224):
        old = to_plain(compose_config(f"augment={augment}"))
        old["trainer"].update(sampling=sampling, patch_size=patch_size)
        old["augment"]["crop_size"] = crop_size
        return stored_config(old).augment.crop_size  # unstamped: config version 0

    assert stored("none", "whole", 321) is None
    assert stored("unet", "patch", 321, 40) == 40
    assert stored("deeplab", "whole", 321) == 321
    assert not caplog.records
    assert stored("deeplab", "patch", 80, 40) == 40
    assert "cropped 80 px, then trainer.sampling=patch 40 px" in caplog.text


def test_drop_cells_keeps_whole_cells_at_the_rate():
    torch.manual_seed(0)
    targets = torch.zeros(4, 64, 96, dtype=torch.long)
    dropped = drop_cells(targets, 0.25, 8, 255)
    cells = (dropped == 255).float().reshape(4, 8, 8, 12, 8).permute(0, 1, 3, 2, 4)  # (n, 8, 12, 8, 8) blocks
    per_cell = cells.flatten(3).mean(-1)
    assert set(per_cell.unique().tolist()) <= {0.0, 1.0}  # whole cells, never parts
    assert 0.65 < float(per_cell.mean()) < 0.85  # about 1 - p of them dropped
    multi = drop_cells(torch.zeros(2, 2, 16, 16, dtype=torch.long), 0.5, 8, 255)
    assert torch.equal(multi[:, 0], multi[:, 1])  # both tasks lose the same cells


def test_training_with_augmentation_patches_and_cell_sampling(tiny_cfg, tmp_path):
    from segtrain.train import train

    result = train(tiny_cfg("augment=deeplab", "augment.crop_size=24", "loss.sample_rate=0.5"), tmp_path)
    assert np.isfinite(result["mean_iu"])
