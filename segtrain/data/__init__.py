from ..errors import SegtrainError
from .synthetic import SyntheticScenes


def _synthetic(cfg, split: str):
    num_images = {"train": cfg.num_train, "val": cfg.num_val}
    if split not in num_images:
        raise SegtrainError(f"dataset=synthetic has splits 'train' and 'val', not {split!r}")
    return SyntheticScenes(split, num_images[split], cfg.image_size, cfg.seed)


# dataset name (the `dataset=` choice) -> builder(dataset config, split)
DATASETS = {
    "synthetic": _synthetic,
}


def build_dataset(cfg, split: str):
    """A Dataset of (normalised float image (3, H, W), long label (H, W)) with class_names, palette,
    ignore_index, mean and std attributes."""
    if cfg.name not in DATASETS:
        raise SegtrainError(f"dataset.name={cfg.name!r} is not known; expected one of {sorted(DATASETS)}")
    dataset = DATASETS[cfg.name](cfg, split)
    if len(dataset.class_names) != cfg.num_classes:
        raise SegtrainError(f"dataset.num_classes={cfg.num_classes} but dataset {cfg.name} has "
                            f"{len(dataset.class_names)} classes")
    return dataset
