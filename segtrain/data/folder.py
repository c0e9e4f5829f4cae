"""The user's own data, in the layouts it comes in:

    <root>/images/<name>.jpg|png|...  <root>/masks/<name><mask_suffix>  <root>/<split>.txt (optional)
    <root>/images/<split>/ and <root>/masks/<split>/                   (split subfolders)
    image_dir: "{split}", mask_dir: "{split}annot"                     (CamVid: train/, trainannot/, ...)
    <root>/images/ and <root>/masks/ alone                             (one `train` split; dataset.val_fraction)

A split file's line is `NAME` (with or without the image's extension) or `IMAGE LABEL` (paths relative to the root;
absolute paths from another machine are found under the root by their longest trailing part that exists).
classes.yaml:  classes: [{name: background, color: [0, 0, 0]}, {name: road, color: [128, 64, 128]}, ...]
Masks are decoded by segtrain.data.labels (index or colour masks, label_values, ignore_values)."""
from pathlib import Path

import numpy as np
import torch

from ..errors import SegtrainError
from .files import (GREY, IMAGE_SUFFIXES, TURNED, FileDataset, Normalize, grey_full_intensity, image_header,
                    image_mode, read_image, require_root, to_depth, yaml_problem)
from .labels import IGNORE_INDEX, LabelEncoding, read_mask
from .palette import voc_palette

LAYOUT = ("<root>/images/<name>.jpg and <root>/masks/<name>.png, split by <root>/<split>.txt (names or "
          "'IMAGE LABEL' pairs), by <root>/images/<split>/ subfolders, by dataset.image_dir/mask_dir with {split}, "
          "or one folder pair held out with dataset.val_fraction")
GREY_MEAN, GREY_STD = (0.449,), (0.226,)  # ImageNet's channel average, until `segtrain-data check` gives the data's
IMAGENET_MEAN, IMAGENET_STD_RGB = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def read_classes(path):
    """(names, palette (256, 3) uint8, colours as listed (None where the YAML gives none))."""
    from omegaconf import OmegaConf

    if path is None or not Path(path).is_file():
        where = f" (looked for {Path(path).resolve()})" if path is not None else ""
        raise SegtrainError(f"dataset.classes={path}: no such file{where}; expected a YAML with `classes: "
                            "[{name: ..., color: [R, G, B]}, ...]` (color optional), one entry per class 0, 1, ...")
    try:
        entries = OmegaConf.to_container(OmegaConf.load(path))["classes"]
        if not isinstance(entries, list):  # a mapping would be read as its keys: classes in no stated order
            raise ValueError(f"classes is a {type(entries).__name__}, not a list")
        names = [str(e["name"]) if isinstance(e, dict) else str(e) for e in entries]
        colours = [[int(c) for c in e["color"]] if isinstance(e, dict) and e.get("color") is not None else None
                   for e in entries]
        if any(c is not None and (len(c) != 3 or not all(0 <= v <= 255 for v in c)) for c in colours):
            raise ValueError("a color is not [R, G, B] in 0..255")
    except Exception as e:  # noqa: BLE001 - any malformed file gets the same one-line message
        problem = yaml_problem(e, Path(path).read_text(errors="replace"))
        raise SegtrainError(f"dataset.classes={path}: not a classes YAML ({problem}); expected "
                            "`classes: [{name: ..., color: [R, G, B]}, ...]`") from None
    if not 1 <= len(names) <= 255:
        raise SegtrainError(f"dataset.classes={path}: lists {len(names)} classes; expected 1 to 255")
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated is not None:  # the metrics and reports key classes by name: one would vanish from them
        where = [str(i) for i, name in enumerate(names) if name == repeated]
        raise SegtrainError(f"dataset.classes={path}: the class name {repeated!r} is listed {len(where)} times "
                            f"(entries {', '.join(where)}); give each class a name of its own")
    shared = next((c for c in colours if c is not None and colours.count(c) > 1), None)
    if shared is not None:  # a colour mask's pixel of that colour would mean either class
        which = [f"{names[i]!r} (entry {i})" for i, c in enumerate(colours) if c == shared]
        raise SegtrainError(f"dataset.classes={path}: the classes {', '.join(which[:-1])} and {which[-1]} share the "
                            f"colour {shared}; give each class a colour of its own")
    palette = voc_palette()
    for index, colour in enumerate(colours):
        if colour is not None:
            palette[index] = torch.tensor(colour, dtype=torch.uint8)
    return tuple(names), palette, colours


def resolve_path(root: Path, written: str):
    """(the file `written` in a split file names, the paths tried): as given under the root (a leading / too),
    else its longest trailing part that exists under the root."""
    parts = Path(written.lstrip("/")).parts
    tried = [root.joinpath(*parts[k:]) for k in range(len(parts))]
    for path in tried:
        if path.is_file():
            return path, tried
    return None, tried


def images_in(folder: Path, mask_suffix: str, masks: Path, image_suffix=None):
    """{name: image path} for the images of a folder (masks excluded when images and masks share it). The name
    is what `image_suffix` leaves of the file name (`21_training.tif` -> `21` with `_training.tif`), by default
    the stem of any image file."""
    same = folder.resolve() == masks.resolve() if masks.is_dir() else False
    found = {}
    for path in sorted(folder.iterdir()):
        if same and path.name.endswith(mask_suffix):
            continue
        if image_suffix:
            if path.name.endswith(image_suffix) and len(path.name) > len(image_suffix):
                found[path.name[:-len(image_suffix)]] = path
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            found[path.stem] = path
    return found


def region_file(folder: Path, image: Path, image_suffix, suffix: str, keys: str) -> Path:
    """<folder>/<name><suffix>: the region-of-interest file of `image`, its name what `image_suffix` leaves of the
    image's file name (else its stem); missing, a one-line error naming the most similar file there and `keys`
    (what names it)."""
    name = image.name[:-len(image_suffix)] if image_suffix and image.name.endswith(image_suffix) else image.stem
    region = folder / f"{name}{suffix}"
    if not region.is_file():
        similar = closest_file(folder, region.name)
        raise SegtrainError(f"{region}: region-of-interest file is missing for {image.name}" + (
            f"; the most similar file in {folder} is {similar.name}" if similar else "") + f"; {keys}")
    return region


def closest_file(folder: Path, name: str):
    """The file of `folder` whose name is most like `name` (difflib), or None."""
    import difflib

    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    match = difflib.get_close_matches(name, names, n=1, cutoff=0.0)
    return folder / match[0] if match else None


def intensity_range(setting):
    """dataset.intensity_range as read_image takes it: "auto", "percentile" or (lo, hi) with lo < hi."""
    if isinstance(setting, str) and setting in ("auto", "percentile"):
        return setting
    try:
        low, high = (float(v) for v in setting)
    except (TypeError, ValueError):
        low = high = None
    if low is None or not low < high:
        raise SegtrainError(f"dataset.intensity_range={setting}: expected auto, percentile or [LO, HI] with LO < HI")
    return low, high


def line_fields(line: str, split_file: Path, number: int):
    """A split file line's fields: tab-separated when it has a tab, shell-quoted when it has quotes (names with
    spaces), else split on whitespace."""
    import shlex

    if "\t" in line:
        return [field.strip() for field in line.split("\t") if field.strip()]
    if '"' in line or "'" in line:
        try:
            return shlex.split(line)
        except ValueError as e:
            raise SegtrainError(f"{split_file} line {number}: {e} (quote a path with spaces as \"a b.png\")") \
                from None
    return line.split()


def require_folder(folder: Path, key: str, split: str):
    if not folder.is_dir():
        raise SegtrainError(f"dataset=folder: {folder} (split {split!r}, dataset.{key}) is not a folder; expected "
                            f"{LAYOUT}")
    return folder


class FolderLayout:
    """Which (image, mask) files make up each split of a folder dataset."""

    def __init__(self, cfg, root: Path):
        self.cfg, self.root = cfg, root

    def suffixes(self, split: str):
        """(image suffix or None, mask suffix) of a split: `{split}` in either is the split's name."""
        image_suffix = self.cfg.get("image_suffix")
        return (image_suffix.replace("{split}", split) if image_suffix else None,
                self.cfg.mask_suffix.replace("{split}", split))

    def split_file(self, split: str) -> Path:
        return self.root / split if split.endswith(".txt") else self.root / f"{split}.txt"

    def folders(self, split: str):
        """(images, masks) folders of a split: {split} placeholders filled, else split subfolders if present."""
        image_dir, mask_dir = self.cfg.image_dir, self.cfg.mask_dir
        if "{split}" in image_dir or "{split}" in mask_dir:
            return (require_folder(self.root / image_dir.format(split=split), "image_dir", split),
                    require_folder(self.root / mask_dir.format(split=split), "mask_dir", split))
        images, masks = self.root / image_dir, self.root / mask_dir
        if (images / split).is_dir():
            return images / split, require_folder(masks / split, "mask_dir", split)
        return None

    def has_split(self, split: str) -> bool:
        if self.split_file(split).is_file():
            return True
        try:
            return self.folders(split) is not None
        except SegtrainError:
            return False

    def pairs(self, split: str):
        """[(image path, mask path)] of a split as stored, in file order."""
        if self.split_file(split).is_file():
            return self.listed_pairs(self.split_file(split))
        return self.folder_pairs(*self.folders(split), split)

    def whole_folder(self, split: str):
        """Every image of image_dir: a dataset shipped as one folder pair has a single (train) split."""
        return self.folder_pairs(require_folder(self.root / self.cfg.image_dir, "image_dir", split),
                                 require_folder(self.root / self.cfg.mask_dir, "mask_dir", split), split)

    def folder_pairs(self, images: Path, masks: Path, split: str):
        """(image, mask) for every image of the folder; an image without its mask is an error naming the most
        similar file there and the keys that pair names."""
        image_suffix, mask_suffix = self.suffixes(split)
        pairs = [(path, masks / f"{name}{mask_suffix}")
                 for name, path in images_in(images, mask_suffix, masks, image_suffix).items()]
        if not pairs and image_suffix:
            raise SegtrainError(f"dataset.image_suffix={image_suffix}: no file in {images} ends with it"
                                + self.suffix_hint(images, split))
        missing = [(image, mask) for image, mask in pairs if not mask.is_file()]
        if 2 * len(missing) > len(pairs):  # most images unpaired: the keys that pair names are wrong
            image, mask = missing[0]
            similar = closest_file(masks, mask.name)
            raise SegtrainError(f"{mask}: label file is missing for {image.name}" + (
                f" ({len(missing)} of {len(pairs)} images have none)" if len(missing) > 1 else "") + (
                f"; the most similar file in {masks} is {similar.name}" if similar else f"; {masks} holds no file")
                + "; dataset.image_suffix (the end of an image's name, default its extension) is replaced by "
                f"dataset.mask_suffix={mask_suffix} to name its mask")
        return pairs  # a few masks missing: each a bad file when its label is read, reported with the others

    def suffix_hint(self, images: Path, split: str) -> str:
        """Why no image name ends with dataset.image_suffix: it names another split (`_training.tif` read in
        `test/`), which `{split}` would take from each split; and how the names there end."""
        written = str(self.cfg.image_suffix)
        names = [str(s) for key in ("train_split", "val_split") for s in (
            [self.cfg[key]] if isinstance(self.cfg[key], str) else self.cfg[key])]
        other = next((name for name in names if name != split and name and name in written), None)
        files = sorted(p.name for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return ((f"; it names the split {other!r}: dataset.image_suffix={written.replace(other, '{split}', 1)} takes "
                 "each split's own name" if other else "")
                + (f" (the names there are like {files[0]})" if files else f" ({images} holds no image)"))

    def listed_pairs(self, split_file: Path):
        lines = [(number, line_fields(line, split_file, number))
                 for number, line in enumerate(split_file.read_text().splitlines(), 1)
                 if line.strip() and not line.lstrip().startswith("#")]
        if not lines:
            raise SegtrainError(f"{split_file}: split file lists nothing")
        by_stem, pairs = None, []
        for number, fields in lines:
            where = f"{split_file} line {number}"
            if len(fields) == 2:
                found = [resolve_path(self.root, written) for written in fields]
                for written, (path, tried) in zip(fields, found):
                    if path is None:
                        raise SegtrainError(f"{where}: no file {written!r} under dataset.root={self.root}; tried "
                                            + ", ".join(str(t) for t in tried))
                pairs.append((found[0][0], found[1][0]))
            elif len(fields) == 1:
                images = require_folder(self.root / self.cfg.image_dir, "image_dir", split_file.stem)
                masks = self.root / self.cfg.mask_dir
                image_suffix, mask_suffix = self.suffixes(split_file.stem)
                if by_stem is None:
                    by_stem = images_in(images, mask_suffix, masks, image_suffix)
                name = fields[0]
                stem = name[:-len(image_suffix)] if image_suffix and name.endswith(image_suffix) else \
                    Path(name).stem if Path(name).suffix.lower() in IMAGE_SUFFIXES else name
                if stem not in by_stem:
                    raise SegtrainError(f"{where}: no image named {name!r} in {images}; a line is NAME or "
                                        "'IMAGE_PATH LABEL_PATH'")
                pairs.append((by_stem[stem], masks / f"{stem}{mask_suffix}"))
            else:
                raise SegtrainError(f"{where}: {len(fields)} fields; expected NAME or 'IMAGE_PATH LABEL_PATH' (paths "
                                    "with spaces: separate the two by a tab, or quote each, as in \"my data/a.png\" "
                                    "\"my data/a_mask.png\")")
        return pairs

    def split_pairs(self, split: str, train_split: str, val_split: str, val_fraction, seed: int):
        """A split's pairs; with val_fraction, the val split is a seeded fraction held out of the train split
        (and the train split the rest)."""
        if val_fraction is None:
            if self.has_split(split):
                return self.pairs(split)
            if split == train_split and not self.has_split(val_split):
                return self.whole_folder(split)
            self.folders(split)  # a {split} folder that is missing names itself
            raise SegtrainError(f"dataset=folder: no split {split!r} in {self.root} (no {self.split_file(split)} nor "
                                f"{split} subfolders); set dataset.val_fraction=0.2 to hold out part of "
                                f"{train_split!r}, or lay the splits out as {LAYOUT}")
        if not 0 < val_fraction < 1:
            raise SegtrainError(f"dataset.val_fraction={val_fraction}: expected a fraction in (0, 1)")
        if self.has_split(val_split):
            raise SegtrainError(f"dataset.val_fraction={val_fraction} but {self.root} already has a {val_split!r} "
                                f"split; drop dataset.val_fraction or point dataset.val_split elsewhere")
        if split not in (train_split, val_split):
            return self.pairs(split)
        pool = self.pairs(train_split) if self.has_split(train_split) else self.whole_folder(train_split)
        held = max(1, round(len(pool) * val_fraction))
        if held >= len(pool):
            raise SegtrainError(f"dataset.val_fraction={val_fraction} of {len(pool)} images leaves none to train on")
        order = np.random.default_rng(seed).permutation(len(pool))
        chosen = sorted(order[:held].tolist()) if split == val_split else sorted(order[held:].tolist())
        return [pool[i] for i in chosen]


def read_region(path: Path, shape, partner: str) -> np.ndarray:
    """A region-of-interest file as (H, W) bool, True inside (any non-zero value or colour); its size must be
    `shape` (H, W), that of `partner` (named in the error)."""
    region, _ = read_mask(path)
    region = region if region.ndim == 2 else region.max(axis=2)
    if region.shape != tuple(shape):
        raise SegtrainError(f"{path}: region of interest is {region.shape[1]}x{region.shape[0]} but {partner} is "
                            f"{shape[1]}x{shape[0]} (width x height)")
    return region > 0


def require_mask(image: Path, mask: Path) -> None:
    """An image whose mask is missing (a few of a folder: the rest pair) is a bad file naming the most similar file
    there."""
    if not mask.is_file():
        similar = closest_file(mask.parent, mask.name)
        raise SegtrainError(f"{mask}: label file is missing for {image.name}"
                            + (f"; the most similar file in {mask.parent} is {similar.name}" if similar else ""))


def image_channels(path: Path) -> int:
    mode = image_mode(path) or image_header(path)[1]  # a file PIL cannot read: its one-line error
    return 1 if mode in ("L", "I;16", "I;16B", "I;16L", "I", "F", "1", "LA") else 3


class FolderDataset(FileDataset):
    def __init__(self, cfg, split: str):
        # first: a moved dataset names dataset.root (and dataset.classes, when that moved with it)
        self.root = require_root(cfg.root, cfg.name, LAYOUT, "your own data", cfg.classes)
        self.class_names, self.palette, colours = read_classes(cfg.classes)
        self.encoding = LabelEncoding(self.class_names, colours, cfg.label_values, cfg.ignore_values,
                                      str(cfg.mask_format), cfg.classes, cfg.mask_tolerance, cfg.label_map,
                                      str(cfg.unmapped))
        self.with_roi = cfg.get("roi_dir") is not None
        layout = FolderLayout(cfg, self.root)
        if isinstance(split, str):
            pairs = layout.split_pairs(split, cfg.train_split, cfg.val_split, cfg.val_fraction, cfg.split_seed)
            if self.with_roi:  # a val split held out of train takes its regions from train's folder
                pairs = self.with_regions(pairs, layout, cfg, cfg.train_split if cfg.val_fraction is not None
                                          else split)
        else:  # several splits (folders) read as one
            if cfg.val_fraction is not None:
                raise SegtrainError(f"dataset.val_fraction={cfg.val_fraction} holds out part of one split; with a "
                                    f"list of splits ({list(split)}) give dataset.val_split its own list")
            pairs = []
            for entry in split:
                if not layout.has_split(str(entry)):
                    layout.folders(str(entry))  # a missing {split} folder names itself
                    raise SegtrainError(f"dataset=folder: no split {str(entry)!r} in {self.root}; expected {LAYOUT}")
                entry_pairs = layout.pairs(str(entry))
                pairs += self.with_regions(entry_pairs, layout, cfg, str(entry)) if self.with_roi else entry_pairs
        if not pairs:
            raise SegtrainError(f"dataset=folder: split {split!r} in {self.root} holds no images ({LAYOUT})")
        if str(cfg.exif_orientation) not in ("apply", "ignore"):
            raise SegtrainError(f"dataset.exif_orientation={cfg.exif_orientation}: expected apply or ignore")
        self.exif = str(cfg.exif_orientation) == "apply"
        self.intensity_range = intensity_range(cfg.intensity_range)
        self.channels_key = str(cfg.channels)
        self.channels = self.resolve_channels(self.channels_key, pairs[0][0])
        self.input_channels = (self.channels,)
        # grey files at 16 bits when any of them is deeper than 8, each scaled from its own depth (load_image)
        self.scale = (grey_full_intensity(pair[0] for pair in pairs),) if self.channels == 1 else (255.0,) * 3
        default_mean, default_std = (GREY_MEAN, GREY_STD) if self.channels == 1 else (IMAGENET_MEAN,
                                                                                       IMAGENET_STD_RGB)
        self.mean = tuple(cfg.mean) if cfg.mean is not None else default_mean
        self.std = tuple(cfg.std) if cfg.std is not None else default_std
        for key, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != self.channels:
                raise SegtrainError(f"dataset.{key}={list(values)} has {len(values)} entries but the images have "
                                    f"{self.channels} channel(s) (dataset.channels={cfg.channels})")
        super().__init__(pairs, self.load_pair)

    @staticmethod
    def resolve_channels(channels: str, first_image: Path) -> int:
        if channels == "auto":
            return image_channels(first_image)
        if channels not in ("1", "3"):
            raise SegtrainError(f"dataset.channels={channels}: expected auto, 1 or 3")
        return int(channels)

    def hold_grey_at(self, full: float) -> None:
        """Grey images held at full intensity `full` (65535: 16 bits) instead of their own split's choice, so that
        both splits (and the checkpoint's stored scale) keep the depth of the deepest file of the dataset."""
        self.scale = (float(full),)
        self.normalize = Normalize(self.mean, self.std, self.scale)

    def load_image(self, path: Path) -> np.ndarray:
        if self.channels == 3:
            return read_image(path, exif=self.exif, intensity_range=self.intensity_range)
        if image_channels(path) != 1:
            raise SegtrainError(f"{path}: a colour image, but the dataset reads 1 channel (dataset.channels="
                                f"{self.channels_key}); set dataset.channels=3")
        grey = read_image(path, mode=GREY, exif=self.exif)
        return to_depth(grey, self.intensity_range, path, int(self.scale[0]))[..., None]

    def with_regions(self, pairs, layout, cfg, split: str):
        """(image, mask, region of interest) items: the region file is named as the mask is, from the image's
        name, in dataset.roi_dir with dataset.roi_suffix."""
        image_suffix, _ = layout.suffixes(split)
        folder = self.root / str(cfg.roi_dir).replace("{split}", split)
        roi_suffix = str(cfg.roi_suffix).replace("{split}", split)
        keys = f"dataset.roi_dir and dataset.roi_suffix={roi_suffix} name it"
        return [(image, mask, region_file(folder, image, image_suffix, roi_suffix, keys)) for image, mask in pairs]

    def load_pair(self, item):
        image_path, mask_path, *roi = item
        require_mask(image_path, mask_path)
        image, label = self.load_image(image_path), self.read_label(mask_path, *roi)
        self.check_orientation(image_path, mask_path, image.shape[:2], label.shape)
        return image, label, mask_path

    def load_label(self, item):
        image_path, mask_path, *roi = item
        require_mask(image_path, mask_path)
        label, size = self.read_label(mask_path, *roi), image_header(image_path, self.exif)[0]
        self.check_orientation(image_path, mask_path, size, label.shape)
        return label, mask_path, size

    def check_orientation(self, image_path: Path, mask_path: Path, image_size, mask_size) -> None:
        """A mask that fits its photo as stored but not as its EXIF orientation shows it (or the reverse) is one
        line naming the key that decides."""
        if tuple(image_size) == tuple(mask_size) or tuple(image_size)[::-1] != tuple(mask_size):
            return
        turn = image_header(image_path)[2]
        if turn not in (5, 6, 7, 8):
            return
        height, width = mask_size
        shown = ("as stored, not as its EXIF orientation shows it", "ignore") if self.exif else \
            ("as its EXIF orientation shows it, not as stored", "apply")
        raise SegtrainError(f"{mask_path}: the mask is {width}x{height}, the size of {image_path.name} {shown[0]} "
                            f"({TURNED[turn]}); set dataset.exif_orientation={shown[1]} if the masks were drawn on "
                            f"that view")

    def read_label(self, mask_path: Path, roi_path=None) -> np.ndarray:
        """Class indices; outside the region of interest (its value 0) ignored, for the loss and the metrics."""
        stored, palette, transparent = read_mask(mask_path, with_alpha=True)
        label = self.encoding.decode(stored, mask_path, palette, transparent)
        if roi_path is None:
            return label
        return np.where(read_region(roi_path, label.shape, f"its mask {mask_path.name}"), label,
                        IGNORE_INDEX).astype(np.uint8)

    def label_signature(self) -> str:
        return self.encoding.signature() + (" roi" if self.with_roi else "")
