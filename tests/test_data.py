import numpy as np
import torch

from segtrain.data import build_dataset
from segtrain.data.palette import colorize, voc_palette

from .conftest import compose_config


def test_voc_palette():
    palette = voc_palette()
    assert palette[0].tolist() == [0, 0, 0]
    assert palette[1].tolist() == [128, 0, 0]
    assert palette[2].tolist() == [0, 128, 0]
    assert palette[3].tolist() == [128, 128, 0]
    assert palette[15].tolist() == [192, 128, 128]  # person
    assert palette[255].tolist() == [224, 224, 192]
    labels = torch.tensor([[0, 1], [255, 2]])
    assert colorize(labels, palette)[:, 1, 0].tolist() == [224, 224, 192]


def test_synthetic_scenes_are_deterministic_and_cover_every_class():
    cfg = compose_config("dataset.num_train=40", "dataset.num_val=5").dataset
    train = build_dataset(cfg, "train")
    image, label = train[3]
    again_image, again_label = build_dataset(cfg, "train")[3]
    assert torch.equal(image, again_image) and torch.equal(label, again_label)
    assert image.shape == (3, 64, 64) and label.shape == (64, 64) and label.dtype == torch.long
    val_image, _ = build_dataset(cfg, "val")[3]
    assert not torch.equal(image, val_image)

    labels = torch.stack([train[i][1] for i in range(len(train))])
    values = set(labels.unique().tolist())
    assert values == {0, 1, 2, 3, 4, 255}
    fractions = torch.bincount(labels[labels != 255], minlength=5).double() / (labels != 255).sum()
    # thin wires and small dots are rare but present; background does not swamp everything
    assert 0.005 < fractions[3] < 0.1 and 0.005 < fractions[4] < 0.1
    assert fractions[0] < 0.9


def test_synthetic_labels_are_painted_in_the_colours_the_scenes_draw_them_in():
    """One palette for drawing and painting: each object class's mean colour in the scenes is nearest to its own
    palette entry (the VOC palette painted discs green and wires olive)."""
    from segtrain.data.synthetic import CLASS_COLOURS, SyntheticScenes

    scenes = SyntheticScenes("train", 20, 64, 0)
    items = [scenes.raw_item(i) for i in range(len(scenes))]
    objects = sorted(CLASS_COLOURS)
    painted = scenes.palette[objects].float()
    for cls in objects:
        drawn = torch.from_numpy(np.concatenate([image[label == cls] for image, label in items])).float().mean(0)
        assert objects[int((painted - drawn).norm(dim=1).argmin())] == cls, (cls, drawn)
        low, high = CLASS_COLOURS[cls]
        assert all(lo <= v <= hi for lo, v, hi in zip(low, scenes.palette[cls].tolist(), high))
