import torch
import torch.nn.functional as F

from ..errors import SegtrainError
from .files import IGNORE_INDEX
from .folder import FolderDataset
from .nyud import NYUDv2
from .siftflow import SiftFlow
from .synthetic import SyntheticScenes
from .voc import VOCSegmentation


def _synthetic(cfg, split: str):
    num_images = {"train": cfg.num_train, "val": cfg.num_val}
    if split not in num_images:
        raise SegtrainError(f"dataset=synthetic has splits 'train' and 'val', not {split!r}")
    return SyntheticScenes(split, num_images[split], cfg.image_size, cfg.seed)


# dataset name (the `dataset=` choice) -> builder(dataset config, split)
DATASETS = {
    "synthetic": _synthetic,
    "voc": VOCSegmentation,
    "voc_aug": VOCSegmentation,
    "nyud": NYUDv2,
    "siftflow": SiftFlow,
    "folder": FolderDataset,
}


def build_dataset(cfg, split: str):
    """A Dataset of (normalised float image (C, H, W), long label (H, W)) with class_names, palette,
    ignore_index, mean, std and input_channels (channels per input stream) attributes."""
    if cfg.name not in DATASETS:
        raise SegtrainError(f"dataset.name={cfg.name!r} is not known; expected one of {sorted(DATASETS)}")
    dataset = DATASETS[cfg.name](cfg, split)
    if cfg.num_classes is not None and len(dataset.class_names) != cfg.num_classes:
        raise SegtrainError(f"dataset.num_classes={cfg.num_classes} but dataset {cfg.name} has "
                            f"{len(dataset.class_names)} classes")
    return dataset


def pad_collate(batch):
    """Stacks (image, label) pairs of different sizes by padding each at the bottom and right to the largest:
    images with 0 (the mean, after normalisation), labels with the ignore index, so padding never counts."""
    height = max(image.shape[-2] for image, _ in batch)
    width = max(image.shape[-1] for image, _ in batch)

    def pad(x, value):
        return F.pad(x, (0, width - x.shape[-1], 0, height - x.shape[-2]), value=value)

    return (torch.stack([pad(image, 0.0) for image, _ in batch]),
            torch.stack([pad(label, IGNORE_INDEX) for _, label in batch]))


def checkpoint_dataset_info(state: dict, cfg) -> dict:
    """dataset_info as a checkpoint stores it; checkpoints written before it was stored read it off the dataset."""
    return state.get("data") or dataset_info(build_dataset(cfg.dataset, cfg.dataset.val_split))


def dataset_info(dataset) -> dict:
    """What inference on new images needs from a dataset, as plain data (stored in every checkpoint)."""
    return {"class_names": list(dataset.class_names), "mean": list(dataset.mean), "std": list(dataset.std),
            "palette": dataset.palette.tolist(), "input_channels": list(dataset.input_channels)}
