"""One pass over a split's labels: every file read and checked once (DataLoader worker processes), the pixels of
each label value counted, cached by path, size and mtime so the same data scans in a second the next time.

The trainer scans the train and val splits before the first iteration (a bad file stops the run before any
work); `segtrain-data check` and `loss.class_weights=median_frequency|inverse_log` read the same counts."""
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import SegtrainError
from ..processes import worker_signals
from ..progress import track
from .files import describe_error

log = logging.getLogger("segtrain")
NUM_VALUES = 256  # label values after decoding: classes 0..254, 255 ignored


def cache_dir() -> Path:
    """$SEGTRAIN_CACHE, else $XDG_CACHE_HOME/segtrain (~/.cache/segtrain)."""
    if os.environ.get("SEGTRAIN_CACHE"):
        return Path(os.environ["SEGTRAIN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "segtrain"


@dataclass
class LabelScan:
    counts: np.ndarray  # (items, tasks, 256) int64: pixels of each label value in each item
    label_sizes: List[tuple]  # (height, width) per item
    image_sizes: List[tuple]
    cached: int  # items taken from the cache
    image_sum: Optional[np.ndarray] = None  # with_images: per-channel sums of the images in 0..1
    image_sq: Optional[np.ndarray] = None  # and of their squares
    image_pixels: int = 0
    problems: List[str] = field(default_factory=list)  # keep_going: the bad files' lines (left out of the rest)

    def class_pixels(self, num_classes: int, task: int = 0) -> np.ndarray:
        return self.counts[:, task, :num_classes].sum(0)

    def images_with(self, num_classes: int, task: int = 0) -> np.ndarray:
        return (self.counts[:, task, :num_classes] > 0).sum(0)


def label_item(dataset, index: int):
    """(label as (tasks, H, W) numpy, image (height, width)) of any dataset: file datasets read the label alone."""
    if hasattr(dataset, "label_item"):
        label, _, image_size = dataset.label_item(index)
        label = np.asarray(label)
    else:  # generated data (dataset=synthetic): its raw item, not normalised
        image, label = dataset.raw_item(index)
        image_size = image.shape[:2]
    return label.reshape(-1, *label.shape[-2:]), tuple(int(v) for v in image_size)


def sparse_counts(label: np.ndarray) -> dict:
    """{label value: pixels} for the values present."""
    counts = np.bincount(label.ravel(), minlength=NUM_VALUES)
    present = np.flatnonzero(counts)
    return dict(zip(present.tolist(), counts[present].tolist()))


class _ScanItems(Dataset):
    """What a worker process computes for one item: label counts, sizes and, for `with_images`, per-channel
    sums of the image in 0..1. A SegtrainError comes back as its message (one line, in order)."""

    def __init__(self, dataset, indices, with_images: bool):
        self.dataset, self.indices, self.with_images = dataset, indices, with_images

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        index = self.indices[i]
        try:
            label, image_size = label_item(self.dataset, index)
            result = {"counts": [sparse_counts(task) for task in label],
                      "label_size": list(label.shape[-2:]), "image_size": list(image_size)}
            if self.with_images:
                image = raw_image(self.dataset, index)
                image = image.reshape(-1, image.shape[-1])
                result["pixel_sum"] = image.astype(np.float64).sum(0).tolist()
                result["pixel_sq"] = (image.astype(np.float64) ** 2).sum(0).tolist()
                result["pixel_count"] = int(image.shape[0])
        except SegtrainError as error:
            return index, str(error)
        except Exception as error:  # noqa: BLE001 - a decoder's own error: still one line naming the file
            name = self.dataset.item_label(index) if hasattr(self.dataset, "item_label") else f"item {index}"
            return index, f"{name}: {describe_error(error)}"
        return index, result


def raw_image(dataset, index: int) -> np.ndarray:
    """(H, W, C) float in 0..1 as stored (before mean/std)."""
    if hasattr(dataset, "raw_image"):
        return dataset.raw_image(index)
    return np.asarray(dataset.raw_item(index)[0], np.float32) / 255  # generated uint8 scenes


def _identity(batch):
    return batch


def _file_key(dataset, index: int):
    """(cache key, [(size, mtime_ns), ...]) of an item's files, or None when it has none to stat."""
    files = dataset.item_files(index) if hasattr(dataset, "item_files") else []
    if not files:
        return None
    try:
        stats = [[os.stat(f).st_size, os.stat(f).st_mtime_ns] for f in files]
    except OSError:
        return None  # a missing file: the scan itself reports it
    return "|".join(str(Path(f).resolve()) for f in files), stats


def scan_labels(dataset, desc: str, with_images: bool = False, workers=None, keep_going: bool = False) -> LabelScan:
    """Reads every label of `dataset` once (workers: processes, default up to 8 of the machine's cores). Every
    file is read: the bad ones raise one SegtrainError naming how many and the first few; with keep_going the scan
    returns instead, with their lines in `problems` (dataset order) and the good files counted."""
    signature = dataset.label_signature() if hasattr(dataset, "label_signature") else None
    cache_file = cache_dir() / "labels" / (hashlib.sha1(signature.encode()).hexdigest() + ".json") \
        if signature else None
    cache = {}
    if cache_file is not None and cache_file.is_file():
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cache = {}
    results, keys, todo = {}, {}, []
    for index in range(len(dataset)):
        key = _file_key(dataset, index) if signature else None
        keys[index] = key
        entry = cache.get(key[0]) if key else None
        if entry is not None and entry["stat"] == key[1] and not with_images:
            results[index] = entry
        else:
            todo.append(index)
    cached = len(results)
    if todo:
        if workers is None:
            workers = min(8, os.cpu_count() or 1) if len(todo) >= 64 else 0
        loader = DataLoader(_ScanItems(dataset, todo, with_images), batch_size=None, num_workers=workers,
                            collate_fn=_identity, generator=torch.Generator().manual_seed(0),
                            worker_init_fn=worker_signals if workers else None)
        errors = {}
        for index, result in track(loader, len(todo), desc):
            if isinstance(result, str):
                errors[index] = result
            else:
                results[index] = result
        problems = [errors[i] for i in sorted(errors)]
        if problems and not keep_going:
            raise SegtrainError(problems_line(problems))
        if cache_file is not None:
            for index in todo:
                if keys[index] and index in results:
                    cache[keys[index][0]] = {k: v for k, v in results[index].items() if not k.startswith("pixel_")
                                             } | {"stat": keys[index][1]}
            _write_cache(cache_file, cache)
    else:
        problems = []
    good = sorted(results)  # every item, unless keep_going left bad ones out
    tasks = len(results[good[0]]["counts"]) if good else 1
    counts = np.zeros((len(good), tasks, NUM_VALUES), np.int64)
    for row, index in enumerate(good):
        for task, task_counts in enumerate(results[index]["counts"]):
            for value, count in task_counts.items():
                counts[row, task, int(value)] = count
    scan = LabelScan(counts, [tuple(results[i]["label_size"]) for i in good],
                     [tuple(results[i]["image_size"]) for i in good], cached, problems=problems)
    if with_images and good:
        scan.image_sum = np.sum([results[i]["pixel_sum"] for i in good], axis=0)
        scan.image_sq = np.sum([results[i]["pixel_sq"] for i in good], axis=0)
        scan.image_pixels = sum(results[i]["pixel_count"] for i in good)
    return scan


SHOWN_PROBLEMS = 3  # bad files named in the one line; the log and dataset_report list them all


def problems_line(problems) -> str:
    """Bad files as one line: how many, the first few with their reasons."""
    shown = "; ".join(problems[:SHOWN_PROBLEMS])
    if len(problems) == 1:
        return shown
    more = f"; and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
    return f"{len(problems)} bad files: {shown}{more}"


def _write_cache(path: Path, cache: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, path)
    except OSError as error:  # a read-only home: scanning still worked, it just is not remembered
        log.warning("label scan cache not written (%s); set SEGTRAIN_CACHE to a writable folder", error)


CLASS_WEIGHTINGS = ("median_frequency", "inverse_log")


def class_weights(scan: LabelScan, class_counts, method: str) -> List[float]:
    """Per-class loss weights from the train split's pixel counts, per task, concatenated:
    median_frequency (SegNet, Eigen & Fergus): freq(c) = pixels of c / labelled pixels of the images holding c,
    weight = median(freq) / freq(c); inverse_log (ENet): weight = 1 / ln(1.02 + pixels of c / labelled pixels).
    A class that never occurs gets weight 0 (it contributes nothing to the loss anyway)."""
    if method not in CLASS_WEIGHTINGS:
        raise SegtrainError(f"loss.class_weights={method}: expected a list of numbers (one per class), "
                            f"{' or '.join(CLASS_WEIGHTINGS)}")
    weights = []
    for task, num_classes in enumerate(class_counts):
        counts = scan.counts[:, task, :num_classes].astype(np.float64)  # (items, classes)
        labelled = counts.sum(1, keepdims=True)  # per image, void excluded
        pixels = counts.sum(0)
        present = pixels > 0
        if method == "median_frequency":
            freq = np.divide(pixels, (labelled * (counts > 0)).sum(0), out=np.zeros(num_classes), where=present)
            task_weights = np.divide(np.median(freq[present]), freq, out=np.zeros(num_classes), where=present)
        else:
            task_weights = np.where(present, 1.0 / np.log(1.02 + pixels / max(pixels.sum(), 1)), 0.0)
        weights += task_weights.tolist()
    return weights
