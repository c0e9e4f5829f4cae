"""`segtrain-data inspect ROOT`: how `dataset=folder` reads a folder tree it has never seen.

inspect_tree(root, out) finds, in this order:
- the photo and mask folders, by their pixels: a mask folder pairs by file names with a folder of less flat
  pictures, its photos (the share of the 8 commonest values: about 1 for masks, 0.2 and up for small JPEG colour
  masks, a few % for photos; palette and 1-bit images are masks); photos and masks that share a folder are told
  apart by the end of their names; a mask folder pairs with the photo folder of the most alike path;
- the rule that names a photo's mask: the same name, a mask suffix (`img1.png` -> `img1_mask.png`), or an image
  suffix replaced by a mask suffix (`21_training.tif` -> `21_manual1.gif`; MMSegmentation's img_suffix and
  seg_map_suffix), with `{split}` where the split's name is part of it; further mask folders for the same photos
  are regions of interest when they are binary, cover much of each image and hold every labelled pixel (DRIVE's
  field-of-view masks), else other mask sets (a second observer, coarse labels), named with the keys that read
  them;
- the splits: split files (`train.txt` of names or `IMAGE LABEL` pairs), split folders and `{split}` folder
  patterns (`train/` with `trainannot/`), several folders per split (`Tile 1/`, `Tile 2/`), or none (a held-out
  fraction); a layout no key describes gets a pair list written into `out`;
- the mask encoding, from every mask of both splits: class indices, stored values (0/255; 0/1 in some files and
  0/255 in others), palettes read by index (VOC) or by colour (palettes renumbered file by file), RGB colours,
  lossy masks (JPEG and lossy WebP: the values inside regions; resized: the values their interpolated edges
  blend) and the tolerance that keeps their classes apart; void candidates; colours only transparent pixels hold;
  the photos' channels.

Nothing is guessed silently. Each key comes with one line of evidence, and where the data could mean two things
(255 a class or void? which folder validates?) the choice made is given with the key that changes it. Every
stored value or colour is its own class, in stored order, unless it is 255 beside class indices 0..k or drawn
along every edge between the others (segtrain's and PASCAL VOC's void): no class is merged or swapped, and a
value that looks like void borders (white, CamVid's 11) stays a class, the keys that would make it void said.
Only compression can cost a class: a colour drawn in lines thinner than JPEG's blocks keeps no colour of its own,
and the share of pixels left void is said. The classes YAML is named class_0, class_1, ... for the user to
rename."""
import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..config import hydra_text, override_argument
from ..errors import SegtrainError
from ..progress import track
from .files import IGNORE_INDEX, IMAGE_SUFFIXES
from .folder import FolderLayout, line_fields, resolve_path
from .labels import (blended_pixels, centres, colour_distance, colour_key, flat_pixels, lossy_format, read_mask,
                     roundest, value_distance, widest_tolerance)

SEPARATORS = "_- ."
SAMPLED = 6  # files per folder read to tell photos from masks
FEW_VALUES = 64  # an image with at most this many distinct values (colours) is a mask
FLAT = 0.5  # ... or one whose 8 commonest values hold this share of its pixels (a lossy mask); photos: a few %
LOOSE = 0.1  # the least share of its 8 commonest values a mask folder has (small JPEG colour masks: 0.2 and up)
ROLES = {"train": ("train", "training", "trn", "tr"), "val": ("val", "valid", "validation", "dev", "eval"),
         "test": ("test", "testing", "tst", "te")}
LABEL_HINTS = ("label", "annot", "gt", "manual", "mask", "seg", "class", "truth")
OTHER_HINTS = ("color", "colour", "instance", "vis", "overlay", "edge", "boundar", "2nd", "polygon", "coarse")
BETWEEN = 0.95  # a value along this share of the edges between values lies between all others, as void borders do
THIN = 0.5  # ... when it is thin: at least this many neighbours of other values per pixel (lines, not regions)


@dataclass
class Group:
    """Files of one folder (or of one name ending in a shared folder) that are all photos or all masks."""
    folder: Path
    files: List[Path]
    kind: str  # photo | mask
    ending: Optional[str] = None  # in a folder holding photos and masks: the end of these files' names
    modes: Counter = field(default_factory=Counter)  # PIL modes of the sampled files
    flat: float = 0.0  # the median share of the 8 commonest values in its sampled files (1 for palette images)
    values: int = 0  # the most distinct values a sampled single-channel file holds (more than 256: no class mask)


@dataclass(frozen=True)
class Rule:
    """A photo NAME<image_suffix> has the mask NAME<mask_suffix>; image_suffix None: NAME is the stem of any
    image file (dataset.image_suffix unset)."""
    image_suffix: Optional[str]
    mask_suffix: str

    def name(self, filename: str) -> Optional[str]:
        if self.image_suffix is None:
            return filename[:filename.rfind(".")] if Path(filename).suffix.lower() in IMAGE_SUFFIXES else None
        return filename[:-len(self.image_suffix)] if filename.endswith(self.image_suffix) and \
            len(filename) > len(self.image_suffix) else None

    def partner(self, filename: str) -> Optional[str]:
        name = self.name(filename)
        return None if name is None else name + self.mask_suffix


@dataclass
class Setting:
    key: str  # dataset.mask_suffix
    value: Any
    evidence: str
    default: bool = False  # the key's default already says so: shown with its evidence, left out of the command


@dataclass
class Inspection:
    """What inspect_tree found: the settings (in command order), the choices it made (each naming its key),
    problems that keep the settings from reading the data, and the classes ({name, value: the stored value, or
    color: the stored colour}; palette masks read by index have both)."""
    root: Path
    classes_file: Path
    settings: List[Setting] = field(default_factory=list)
    choices: List[str] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    classes: List[dict] = field(default_factory=list)
    summary: str = ""

    def overrides(self) -> List[tuple]:
        """(key, value) of the command, dataset=folder first."""
        return [("dataset", "folder"), ("dataset.root", str(self.root)),
                ("dataset.classes", str(self.classes_file))] + [(s.key, s.value) for s in self.settings
                                                                if not s.default]

    def set(self, key: str, value, evidence: str) -> None:
        self.settings.append(Setting(key, value, evidence, value is None or DEFAULTS.get(key) == value))

    def value(self, key: str, default=None):
        return next((s.value for s in self.settings if s.key == key), default)


# ----------------------------------------------------------------------------------------------------------------
# photos and masks


def pixel_codes(path: Path):
    """(one int64 code per pixel, of a copy at most 512 px wide, PIL mode): values, or colours as R<<16|G<<8|B."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            mode = image.mode
            if max(image.size) > 512:  # nearest neighbour keeps every value a stored one
                factor = max(image.size) / 512
                image = image.resize((max(1, round(image.width / factor)), max(1, round(image.height / factor))),
                                     Image.NEAREST)
            pixels = np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None, None
    if pixels.ndim == 3:
        rgb = pixels[..., :3].astype(np.int64)
        return ((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]).ravel(), mode
    return pixels.astype(np.int64).ravel(), mode


def file_kind(path: Path):
    """(photo | mask | None for an unreadable file, PIL mode, the share of its 8 commonest values, its distinct
    values if it has one channel, else 0)."""
    codes, mode = pixel_codes(path)
    if codes is None:
        return None, None, 0.0, 0
    if mode in ("P", "1"):  # palette and 1-bit images are drawn, not photographed
        return "mask", mode, 1.0, 0
    counts = np.sort(np.unique(codes, return_counts=True)[1])[::-1]
    flat = float(counts[:8].sum() / counts.sum())
    values = len(counts) if codes.max(initial=0) < 65536 and mode not in ("RGB", "RGBA", "CMYK", "YCbCr") else 0
    return ("mask" if len(counts) <= FEW_VALUES or flat >= FLAT else "photo"), mode, flat, values


def evenly(items, count: int):
    """`count` items spread evenly over `items` (first and last included), or all of them."""
    if len(items) <= count:
        return list(items)
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def common_ending(names) -> Optional[str]:
    """The longest end all `names` share, from a separator on (`_mask.png` of `a_mask.png`, `b_mask.png`)."""
    if not names:
        return None
    ending = names[0]
    for name in names[1:]:
        while not name.endswith(ending):
            ending = ending[1:]
    cut = next((i for i, c in enumerate(ending) if c in SEPARATORS), None)
    return ending[cut:] if cut is not None and len(ending) > cut + 1 else None


def folder_groups(folder: Path, files: List[Path], depth: int = 0) -> List[Group]:
    """A folder's image files as groups of one kind; photos and masks sharing the folder are split by the name
    ending one kind has and the other has not, and what is left again (CHASE's Image_01L.jpg beside two
    observers' Image_01L_1stHO.png and Image_01L_2ndHO.png: a sample may hold masks of one ending only)."""
    sample = evenly(files, SAMPLED)
    looked = [(path, *file_kind(path)) for path in sample]  # (path, kind, mode, flatness, distinct values)
    kinds = {kind for _, kind, *_ in looked if kind}

    def group(paths, kind, ending=None):
        seen = [look for look in looked if look[0] in paths and look[2]]
        return Group(folder, paths, kind, ending, Counter(mode for _, _, mode, _, _ in seen),
                     float(np.median([flat for *_, flat, _ in seen])) if seen else 0.0,
                     max((values for *_, values in seen), default=0))

    if len(kinds) <= 1:
        return [group(files, kinds.pop())] if kinds else []
    for kind, other in (("mask", "photo"), ("photo", "mask")):
        names = [p.name for p, k, *_ in looked if k == kind]
        ending = common_ending(names) if len(names) > 1 else None  # one file's name ends in its own way
        if ending and not any(p.name.endswith(ending) for p, k, *_ in looked if k == other):
            rest = [p for p in files if not p.name.endswith(ending)]
            return [group([p for p in files if p.name.endswith(ending)], kind, ending)] + (
                folder_groups(folder, rest, depth + 1) if depth < 3 else [group(rest, other)])
    return [group(files, Counter(k for _, k, *_ in looked if k).most_common(1)[0][0])]


def survey(root: Path):
    """(groups of photos and masks, text files that may be split lists) under root; hidden folders skipped."""
    folders, texts = {}, []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        images = sorted(Path(dirpath) / n for n in filenames if Path(n).suffix.lower() in IMAGE_SUFFIXES
                        and not n.startswith("."))
        if images:
            folders[Path(dirpath)] = images
        texts += sorted(Path(dirpath) / n for n in filenames if n.endswith(".txt") and not n.startswith("."))
    if not folders:
        raise SegtrainError(f"inspect {root}: no image files ({', '.join(IMAGE_SUFFIXES)}) under it")
    groups = []
    for folder in track(list(folders), len(folders), "looking at folders", unit="folder"):
        groups += folder_groups(folder, folders[folder])
    return groups, texts


# ----------------------------------------------------------------------------------------------------------------
# pairing


def name_stems(filename: str):
    """The names a file could have under a suffix rule, longest first: its name cut at each separator and at its
    extension (`21_training.tif`: `21_training`, `21`)."""
    end = filename.rfind(".")
    end = end if end > 0 else len(filename)
    cuts = [end] + [i for i in range(end - 1, 0, -1) if filename[i] in SEPARATORS]
    return [filename[:i] for i in cuts]


def with_prefix(sorted_names, prefix: str):
    """The names of a sorted list that start with `prefix` (the first 50)."""
    import bisect

    start = bisect.bisect_left(sorted_names, prefix)
    found = []
    for name in sorted_names[start:start + 50]:
        if not name.startswith(prefix):
            break
        found.append(name)
    return found


def find_rules(photos: List[str], masks: List[str]):
    """[(rule, photos whose mask it names)] for the rules that pair some photos with masks, best first."""
    sorted_masks = sorted(masks)
    votes = Counter()
    for photo in evenly(photos, 64):
        for stem in name_stems(photo):
            matches = [m for m in with_prefix(sorted_masks, stem) if len(m) > len(stem) and m[len(stem)] in
                       SEPARATORS]
            if matches:
                for mask in matches:
                    image_suffix = photo[len(stem):]
                    votes[Rule(None if image_suffix == Path(photo).suffix else image_suffix, mask[len(stem):])] += 1
                break
    present = set(masks)
    ranked = []
    for rule, _ in votes.most_common(8):
        covered = sum(rule.partner(p) in present for p in photos)
        if covered:
            ranked.append((rule, covered))
    return sorted(ranked, key=lambda rc: -rc[1])


def path_likeness(photos: Group, masks: Group) -> float:
    """How alike two groups' paths are (difflib's ratio): `val` goes with `valannot`, `Tile 1/images` with `Tile
    1/masks`, where the names alone would pair them with any split or tile."""
    import difflib

    return difflib.SequenceMatcher(None, f"{photos.folder}/{photos.ending or ''}",
                                   f"{masks.folder}/{masks.ending or ''}").ratio()


@dataclass
class Pairing:
    masks: Group
    rule: Rule
    covered: int  # masks that have their photo


def mask_candidates(groups: List[Group]) -> List[Group]:
    """The groups flat enough to be masks, with no file holding more distinct values than a class mask of its
    depth may: 256 (8-bit), 64 for deeper files, which are depth maps and the like unless they hold a few
    (Cityscapes' instance ids hold about 50)."""
    return [g for g in groups if g.flat >= LOOSE and g.values <= (
        64 if set(g.modes) & {"I;16", "I;16B", "I;16L", "I", "F"} else 256)]


def pair_groups(groups: List[Group]):
    """(photo groups, {photo group index: [Pairing, ...]}, groups neither): a group pairs as masks with the less
    flat group (the photos) whose names give at least half its files, the one with the most alike path; a mask folder
    holding several kinds of masks for the same photos (`_labelIds.png`, `_color.png`) is split by their suffixes.
    Photos and masks are told apart by flatness, not by a threshold alone: a compressed colour mask is far flatter
    than its photo, whatever the image size."""
    paired, used = defaultdict(list), set()
    for masks in mask_candidates(groups):
        mask_names = [p.name for p in masks.files]
        best = None
        for photo in groups:
            if photo is masks or photo.flat >= masks.flat:
                continue
            rules = find_rules([p.name for p in photo.files], mask_names)
            if rules:  # photos by their pixels and by a name that says no mask (Cityscapes' noisy _color.png)
                key = (2 * rules[0][1] >= len(mask_names), photo.kind == "photo", not says_mask(photo),
                       path_likeness(photo, masks), rules[0][1])
                if best is None or key > best[0]:
                    best = (key, photo, rules)
        if best is None:
            continue
        _, photo, rules = best
        used.add(id(masks))
        good = [(rule, covered) for rule, covered in rules if covered >= 0.9 * rules[0][1]]
        if len(good) > 1 and all(r.image_suffix == good[0][0].image_suffix for r, _ in good):
            for rule, covered in good:  # several kinds of masks in one folder
                files = [p for p in masks.files if p.name.endswith(rule.mask_suffix)]
                paired[id(photo)].append(Pairing(Group(masks.folder, files, "mask", rule.mask_suffix,
                                                       Counter([file_kind(files[0])[1]])), rule, covered))
            continue
        rule, _ = good[0]
        partners = {rule.partner(p.name) for p in photo.files}
        paired[id(photo)].append(Pairing(masks, rule, sum(p.name in partners for p in masks.files)))
    photos = [g for g in groups if id(g) in paired and id(g) not in used]
    unused = [g for g in groups if id(g) not in paired and id(g) not in used]
    return photos, {i: paired[id(g)] for i, g in enumerate(photos)}, unused


# ----------------------------------------------------------------------------------------------------------------
# regions of interest


def region_share(path: Path):
    """(the share of non-zero pixels of a binary mask (two values, one of them 0, or one) or None, its values)."""
    codes = mask_values(path)
    if codes is None:
        return None, None
    values = np.unique(codes)
    if len(values) > 2 or values.min() != 0 and len(values) == 2:
        return None, codes
    return float((codes > 0).mean()), codes


def mask_values(path: Path):
    """A mask's values as the decoder reads them (grey palettes as their grey levels; colours: their brightest
    channel), or None for an unreadable file."""
    try:
        stored, palette = read_mask(path)
    except SegtrainError:
        return None
    if palette is not None and stored.ndim == 2:
        used = np.flatnonzero(np.bincount(stored.ravel(), minlength=1))
        if (palette[used] == palette[used][:, :1]).all():
            stored = palette[:, 0][stored]
    if stored.ndim == 3:
        stored = stored.max(axis=2)
    return stored.astype(np.int64)


def is_region_of(candidate: Pairing, label: Pairing, photos: Group) -> Optional[str]:
    """Evidence that `candidate` holds regions of interest for `label`'s masks (binary, covering a large part of
    each image, every labelled (non-zero) pixel inside), else None."""
    shares, inside, labelled = [], 0, 0
    for photo in evenly(photos.files, SAMPLED):
        region_name, label_name = candidate.rule.partner(photo.name), label.rule.partner(photo.name)
        if region_name is None or label_name is None:
            continue
        region_path, label_path = candidate.masks.folder / region_name, label.masks.folder / label_name
        if not (region_path.is_file() and label_path.is_file()):
            continue
        share, region = region_share(region_path)
        labels = mask_values(label_path)
        if share is None or labels is None or labels.shape != region.shape:
            return None
        shares.append(share)
        inside += int(((labels > 0) & (region > 0)).sum())
        labelled += int((labels > 0).sum())
    if not shares or min(shares) < 0.2 or (labelled and inside < 0.99 * labelled):
        return None
    low, high = round(100 * min(shares)), round(100 * max(shares))
    return (f"binary masks covering {low}{f'-{high}' if high != low else ''}% of each image, holding every labelled "
            "pixel: regions of interest (pixels outside are void)")


def says_mask(group: Group) -> bool:
    """Whether a group's path or its files' common name ending says mask, label or a rendering of one (gtFine/,
    `_color.png`): ranks it below other photos paired by the same names."""
    text = "/".join(group.folder.parts[-3:] + (common_ending([p.name for p in group.files[:50]]) or "",)).lower()
    return any(h in text for h in LABEL_HINTS + OTHER_HINTS)


def hint_score(group: Group) -> int:
    """How much a mask folder's name says label (mask, gt, ...) rather than colour, instance or edges."""
    text = f"{group.folder.name}{group.ending or ''}".lower()
    return sum(h in text for h in LABEL_HINTS) - 2 * sum(h in text for h in OTHER_HINTS)


# ----------------------------------------------------------------------------------------------------------------
# layout: folders, names and splits


def role(name: str) -> Optional[str]:
    """train | val | test | trainval for a split's (or split file's) name, None for other names."""
    words = [w for w in name.lower().replace("-", "_").replace(" ", "_").split("_") if w]
    if not words:
        return None
    if any(w.startswith("trainval") for w in words):
        return "trainval"
    for found, names in ROLES.items():
        if words[0] in names or words[0].startswith(names[0]):
            return found
    return None


def relative(root: Path, path: Path) -> str:
    """`path` under `root` in POSIX form, `.` for the root itself."""
    return path.relative_to(root).as_posix() if path != root else "."


@dataclass
class Entry:
    """One photo folder with its mask folder (the label), and its regions of interest if any."""
    photos: Group
    label: Pairing
    region: Optional[Pairing] = None
    alternatives: List[Pairing] = field(default_factory=list)  # further mask folders for the same photos


def entries_of(photos: List[Group], paired) -> List[Entry]:
    """Each photo folder's label masks and regions of interest; among several mask folders the label is the one
    whose name says label (mask, gt, annot, manual, ...) and not colour, instance or edges."""
    entries = []
    for index, pairings in sorted(paired.items()):
        group = photos[index]
        regions = {}
        for candidate in pairings:
            for label in pairings:
                if candidate is not label and id(candidate) not in regions and is_region_of(candidate, label, group):
                    regions[id(candidate)] = candidate
        labels = [p for p in pairings if id(p) not in regions] or pairings
        labels.sort(key=lambda p: (-hint_score(p.masks), -p.covered, str(p.masks.folder)))
        region = next(iter(regions.values()), None) if len(labels) < len(pairings) else None
        entries.append(Entry(group, labels[0], region, [p for p in labels[1:]]))
    return entries


def split_value(root: Path, entries: List[Entry]):
    """([split name per entry], image_dir pattern) when the entries' photo folders differ in one run of path parts
    (`train` / `val`, `Tile 1` / `Tile 2`, `train/aachen` / `val/frankfurt`), else None."""
    parts = [Path(relative(root, e.photos.folder)).parts for e in entries]
    if len({len(p) for p in parts}) != 1 or len({e.photos.ending for e in entries}) != 1:
        return None
    varying = [i for i in range(len(parts[0])) if len({p[i] for p in parts}) > 1]
    if not varying or varying != list(range(varying[0], varying[-1] + 1)):
        return None
    first, last = varying[0], varying[-1] + 1
    names = ["/".join(p[first:last]) for p in parts]
    return names, "/".join(parts[0][:first] + ("{split}",) + parts[0][last:])


def with_split(text: str, split: Optional[str]) -> str:
    """`text` with its first `split` replaced by `{split}` (unchanged for None: a layout without split folders)."""
    return text.replace(split, "{split}", 1) if split and split in text else text


def common_pattern(root: Path, entries, names, pick) -> Optional[str]:
    """The folder pattern (with {split}) that one pairing of every entry (`pick(entry)`: its candidates) shares."""
    shared = None
    for entry, name in zip(entries, names):
        patterns = {with_split(relative(root, p.masks.folder), name): p for p in pick(entry)}
        shared = set(patterns) if shared is None else shared & set(patterns)
    return min(shared, key=lambda s: (s.count("{split}") == 0, s)) if shared else None


def one_rule(rules, names) -> Optional[Rule]:
    """The rule every split's pairing follows once the split's name in its suffixes is {split}."""
    found = {Rule(None if r.image_suffix is None else with_split(r.image_suffix, n), with_split(r.mask_suffix, n))
             for r, n in zip(rules, names)}
    return found.pop() if len(found) == 1 else None


def as_image_suffix(rule: Rule, image_suffix: Optional[str], photos: List[str]) -> Optional[Rule]:
    """`rule` re-expressed for another image suffix (an ROI folder paired by the extension, the masks by
    `_training.tif`), if it names the same files."""
    if rule.image_suffix == image_suffix:
        return rule
    target = Rule(image_suffix, "")
    endings = set()
    for photo in photos:
        partner, name = rule.partner(photo), target.name(photo)
        if partner is None or name is None or not partner.startswith(name):
            return None
        endings.add(partner[len(name):])
    return Rule(image_suffix, endings.pop()) if len(endings) == 1 else None


def split_lists(root: Path, texts, entry: Entry):
    """{role: [split files]} of the text files that list this entry's photos by name, or as IMAGE LABEL pairs
    that exist under the root; lists naming photos without masks (VOC's ImageSets/Main) are not split files."""
    photo_names = {entry.label.rule.name(p.name): p.name for p in entry.photos.files}
    masks = {p.name for p in entry.label.masks.files}
    found = defaultdict(list)
    for text in texts:
        found_role = role(text.stem)
        if found_role is None or text.stat().st_size > 50_000_000:
            continue
        try:
            lines = [line_fields(line, text, n) for n, line in enumerate(text.read_text().splitlines(), 1)
                     if line.strip() and not line.lstrip().startswith("#")]
        except (SegtrainError, UnicodeDecodeError):
            continue
        if not lines:
            continue
        sample = evenly(lines, 40)
        if all(len(fields) == 2 for fields in lines):
            if all(resolve_path(root, f)[0] is not None for fields in sample for f in fields):
                found[found_role].append((text, "pairs", len(lines)))
        elif all(len(fields) == 1 for fields in lines):
            named = [photo_names.get(f[0]) or photo_names.get(entry.label.rule.name(f[0]) or "") for f in sample]
            if all(n and entry.label.rule.partner(n) in masks for n in named):
                found[found_role].append((text, "names", len(lines)))
    for lists in found.values():
        lists.sort(key=lambda t: (len(t[0].parts), str(t[0])))
    return found


def roles_of(names: List[str]):
    """{train: [...], val: [...]} of split names, and the choices made."""
    by_role = defaultdict(list)
    for name in names:
        by_role[role(name.split("/")[0])].append(name)
    choices = []
    train, val = by_role.get("train", []), by_role.get("val", [])
    if not val and by_role.get("test"):
        val = by_role["test"]
        choices.append(f"no validation folder: {', '.join(val)} validates (dataset.val_split); keep a test split "
                       "apart if you report on it")
    elif by_role.get("test"):
        choices.append(f"{', '.join(by_role['test'])} left out (a test split); dataset.val_split chooses")
    others = by_role.get(None, [])
    if not train and others:
        train, others = others, []
        if not val and len(train) > 1:
            train, val = train[:-1], train[-1:]
            choices.append(f"folders {', '.join(train)} train and the last, {val[0]}, validates (folder names say "
                           "no split): dataset.train_split and dataset.val_split choose")
    if others:
        choices.append(f"{', '.join(others)} left out (not a train or val name); add them to dataset.train_split")
    if by_role.get("trainval"):
        choices.append(f"{', '.join(by_role['trainval'])} left out (train and val together)")
    return train, val, choices


DEFAULTS = {"dataset.image_dir": "images", "dataset.mask_dir": "masks", "dataset.mask_suffix": ".png",
            "dataset.train_split": "train", "dataset.val_split": "val", "dataset.roi_suffix": ".png"}


def folder_text(root: Path, groups) -> str:
    """`train/, val/` for evidence lines: the folders of some groups, the first few."""
    names = sorted({relative(root, g.folder) + "/" for g in groups})
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def example(rule: Rule, photos: Group) -> str:
    """`photo -> mask` for the first photo, for evidence lines."""
    photo = photos.files[0].name
    return f"{photo} -> {rule.partner(photo)}"


def set_split(ins: Inspection, key: str, names: List[str], evidence: str) -> None:
    """A split key: one name, or a list of several folders."""
    value = names[0] if len(names) == 1 else list(names)
    ins.set(key, value, evidence)


def find_layout(root: Path, ins: Inspection, out: Path) -> None:
    """The keys that name the files and splits (image_dir, mask_dir, suffixes, splits, regions of interest)."""
    groups, texts = survey(root)
    photos, paired, unused = pair_groups(groups)
    entries = entries_of(photos, paired)
    if not entries:
        masks = mask_candidates(groups)
        raise SegtrainError(f"inspect {root}: found {'no mask folder' if not masks else 'mask folders'} "
                            + (f"({folder_text(root, masks)}) " if masks else "")
                            + f"{'but none ' if masks else ''}paired with a photo folder "
                            f"({folder_text(root, [g for g in groups if g not in masks]) or 'none found'}) by file "
                            "names; a mask is named as its photo, with a suffix (img1.png -> img1_mask.png) or part "
                            "of the name replaced (21_training.tif -> 21_manual1.gif); labels in .mat files (NYUDv2, "
                            "SIFT Flow) have a dataset= of their own")
    if unused:
        ins.choices.append(f"not used (no photo or mask pairs with them by name): {folder_text(root, unused)} "
                           f"({sum(len(g.files) for g in unused)} files)")
    layout = split_value(root, entries) if len(entries) > 1 else None
    if len(entries) > 1 and layout is None:
        return pair_list_layout(root, ins, out, entries, "the photo folders differ in more than one place")
    if layout is None:
        return one_folder_layout(root, ins, out, entries[0], texts)
    names, image_pattern = layout
    label_pattern = common_pattern(root, entries, names, lambda e: [e.label] + e.alternatives)
    if label_pattern is None:
        return pair_list_layout(root, ins, out, entries, "the mask folders follow no one pattern")
    for entry, name in zip(entries, names):  # every split's label from the same folder pattern
        chosen = next(p for p in [entry.label] + entry.alternatives
                      if with_split(relative(root, p.masks.folder), name) == label_pattern)
        others = [p for p in [entry.label] + entry.alternatives if p is not chosen]
        entry.label, entry.alternatives = chosen, others
    rule = one_rule([e.label.rule for e in entries], names)
    if rule is None:
        return pair_list_layout(root, ins, out, entries, "the mask names follow no one rule")
    photo_count = sum(len(e.photos.files) for e in entries)
    missing = photo_count - sum(e.label.covered for e in entries)
    if missing:
        return pair_list_layout(root, ins, out, entries, f"{missing} photos have no mask")
    ins.set("dataset.image_dir", image_pattern, f"{photo_count} photos in "
            f"{folder_text(root, [e.photos for e in entries])} ({modes_text(e.photos for e in entries)})")
    ins.set("dataset.mask_dir", label_pattern, "a mask for every photo in "
            + folder_text(root, [e.label.masks for e in entries]))
    set_rule(ins, rule, entries[0])
    other_mask_sets(root, ins, entries, names)
    set_regions(root, ins, entries, names, rule)
    train, val, choices = roles_of(names)
    ins.choices += choices
    if not train:
        ins.problems.append(f"no folder to train on among {', '.join(names)}; set dataset.train_split")
        return
    if not val and len(train) > 1:
        train, val = train[:-1], train[-1:]
        ins.choices.append(f"no validation folder: the last one, {val[0]}, validates; dataset.val_split chooses")
    counts = Counter()
    for entry, name in zip(entries, names):
        counts[name] += len(entry.photos.files)

    def where(chosen):
        return ", ".join(f"{image_pattern.replace('{split}', n)}/ ({counts[n]})" for n in chosen[:3]) + (
            f" and {len(chosen) - 3} more" if len(chosen) > 3 else "")

    set_split(ins, "dataset.train_split", train, f"photos of {where(train)}")
    if val:
        set_split(ins, "dataset.val_split", val, f"photos of {where(val)}")
    else:
        hold_out(ins, train[0])


def hold_out(ins: Inspection, train: str) -> None:
    """No validation split on disk: dataset.val_fraction=0.2, and the choice said."""
    ins.set("dataset.val_fraction", 0.2, f"no validation split on disk: 20% of {train!r}, chosen by "
            "dataset.split_seed, validates")
    ins.choices.append("20% of the train images validate (dataset.val_fraction=0.2): each run's splits/ folder "
                       "lists which")


def whole_folder(ins: Inspection) -> None:
    """One folder pair read whole, held out from: the default split names renamed where a train.txt or val.txt
    under the root (listing none of these photos) would be read as the split."""
    for key, default, name in (("dataset.train_split", "train", "all"), ("dataset.val_split", "val", "held_out")):
        if (ins.root / f"{default}.txt").is_file():
            ins.set(key, name, f"{default}.txt lists none of these photos: not read as the split")
    hold_out(ins, ins.value("dataset.train_split", "train"))


def modes_text(groups) -> str:
    """The PIL modes of groups' sampled files in words (RGB, grey, 16-bit grey, ...)."""
    modes = Counter()
    for group in groups:
        modes.update(group.modes)
    names = {"L": "grey", "I;16": "16-bit grey", "I;16B": "16-bit grey", "I": "32-bit grey", "F": "float grey",
             "P": "palette"}
    return ", ".join(dict.fromkeys(names.get(m, m) for m, _ in modes.most_common()))


def set_rule(ins: Inspection, rule: Rule, entry: Entry) -> None:
    """dataset.image_suffix (where the rule has one) and dataset.mask_suffix, with an example pair."""
    how = example(entry.label.rule, entry.photos)
    if rule.image_suffix is not None:
        ins.set("dataset.image_suffix", rule.image_suffix, f"{how}: the end of a photo's name replaced by "
                "dataset.mask_suffix")
    ins.set("dataset.mask_suffix", rule.mask_suffix, how + ("" if rule.image_suffix is not None else
                                                            ": a photo's name without its extension, then this"))


def other_mask_sets(root: Path, ins: Inspection, entries, names) -> None:
    """A choice line naming each other set of masks for the same photos (a second observer, coarse labels) with the
    keys that read it instead: several fit, the command reads one."""
    mask_dir, mask_suffix = ins.value("dataset.mask_dir", DEFAULTS["dataset.mask_dir"]), \
        ins.value("dataset.mask_suffix", DEFAULTS["dataset.mask_suffix"])
    chosen = f"{mask_dir}/*{mask_suffix}"
    found = {}
    for entry, name in zip(entries, names):
        photos = [p.name for p in entry.photos.files]
        for other in entry.alternatives:
            folder = with_split(relative(root, other.masks.folder), name)
            rule = as_image_suffix(other.rule, entry.label.rule.image_suffix, photos)
            suffix = with_split(rule.mask_suffix, name) if rule else None
            keys = ([override_argument("dataset.mask_dir", folder)] if folder != mask_dir else []) + (
                [override_argument("dataset.mask_suffix", suffix)] if suffix and suffix != mask_suffix else [])
            where = f"{folder}/*{suffix or other.masks.ending or ''}"
            found.setdefault(where, " ".join(keys) if rule else "dataset.image_suffix, dataset.mask_dir and "
                             "dataset.mask_suffix")
    if found:
        ins.choices.append(f"several sets of masks fit these photos; the command reads {chosen}. "
                           + "; ".join(f"For {where}: {keys}" for where, keys in list(found.items())[:4]))


def set_regions(root: Path, ins: Inspection, entries, names, rule: Rule) -> None:
    """dataset.roi_dir and dataset.roi_suffix where every split has regions of interest named by one pattern."""
    regions = [e.region for e in entries]
    if not any(regions):
        return
    if not all(regions):
        ins.choices.append(f"regions of interest in {folder_text(root, [r.masks for r in regions if r])} only, not "
                           "for every split: not used (dataset.roi_dir)")
        return
    pattern = common_pattern(root, entries, names, lambda e: [e.region])
    rules = [as_image_suffix(e.region.rule, e.label.rule.image_suffix, [p.name for p in e.photos.files])
             for e in entries]
    roi_rule = one_rule(rules, names) if pattern and all(rules) else None
    if roi_rule is None:
        ins.choices.append(f"regions of interest in {folder_text(root, [r.masks for r in regions])} are named by no "
                           "one pattern: not used (dataset.roi_dir, dataset.roi_suffix)")
        return
    entry = entries[0]
    ins.set("dataset.roi_dir", pattern, is_region_of(entry.region, entry.label, entry.photos))
    ins.set("dataset.roi_suffix", roi_rule.mask_suffix, example(rules[0], entry.photos))


def one_folder_layout(root: Path, ins: Inspection, out: Path, entry: Entry, texts) -> None:
    """One photo folder and its masks: splits from split files, else held out."""
    image_dir, mask_dir = relative(root, entry.photos.folder), relative(root, entry.label.masks.folder)
    lists = split_lists(root, texts, entry)
    train_lists = lists.get("train", [])
    val_lists = lists.get("val") or lists.get("test") or []
    if train_lists and val_lists:
        (train, kind, train_lines), (val, _, val_lines) = train_lists[0], val_lists[0]
        if kind == "names":
            set_folders(root, ins, entry, image_dir, mask_dir)
            other_mask_sets(root, ins, [entry], [None])
        for key, path, lines in (("dataset.train_split", train, train_lines), ("dataset.val_split", val, val_lines)):
            value = path.stem if path.parent == root else relative(root, path)
            ins.set(key, value, f"{relative(root, path)} lists {lines} {'photos' if kind == 'names' else 'pairs'}")
        if not lists.get("val"):
            ins.choices.append(f"no val list: {relative(root, val)} validates (dataset.val_split)")
        left = [t for r, found in lists.items() for t, _, _ in found if t not in (train, val)]
        if left:
            ins.choices.append(f"split files not used: {', '.join(relative(root, t) for t in left[:4])}; "
                               "dataset.train_split / dataset.val_split choose")
        set_regions(root, ins, [entry], [None], entry.label.rule)
        return
    missing = len(entry.photos.files) - entry.label.covered
    if missing:
        return pair_list_layout(root, ins, out, [entry], f"{missing} of {len(entry.photos.files)} photos have no mask")
    entry.label.rule = photos_only(entry)
    set_folders(root, ins, entry, image_dir, mask_dir)
    other_mask_sets(root, ins, [entry], [None])
    set_regions(root, ins, [entry], [None], entry.label.rule)
    whole_folder(ins)


def photos_only(entry: Entry) -> Rule:
    """The entry's rule, with the photos' common name ending as its image suffix where their folder also holds
    other image files than the photos and these masks (a second observer's masks beside the photos): without it
    any image file there would be read as a photo."""
    rule = entry.label.rule
    photos = {p.name for p in entry.photos.files}
    others = [p for p in entry.photos.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.name not in
              photos and not p.name.endswith(rule.mask_suffix) and not p.name.startswith(".")]
    ending = common_ending(sorted(photos)) if rule.image_suffix is None and others else None
    if ending is None or any(p.name.endswith(ending) for p in others):
        return rule
    return as_image_suffix(rule, ending, sorted(photos)) or rule


def set_folders(root: Path, ins: Inspection, entry: Entry, image_dir: str, mask_dir: str) -> None:
    ins.set("dataset.image_dir", image_dir, f"{len(entry.photos.files)} photos ({modes_text([entry.photos])})")
    ins.set("dataset.mask_dir", mask_dir, f"{len(entry.label.masks.files)} masks"
            + (", in the photos' folder" if mask_dir == image_dir else ""))
    set_rule(ins, entry.label.rule, entry)


def pair_list_layout(root: Path, ins: Inspection, out: Path, entries, why: str) -> None:
    """Layouts no folder key describes: a pair list of every photo that has a mask, written into `out`, with a
    held-out fraction validating."""
    lines = []
    for entry in entries:
        masks = {p.name for p in entry.label.masks.files}
        for photo in entry.photos.files:
            partner = entry.label.rule.partner(photo.name)
            if partner in masks:
                pair = (relative(root, photo), relative(root, entry.label.masks.folder / partner))
                lines.append("\t".join(pair) if any(" " in p for p in pair) else " ".join(pair))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "pairs.txt"
    path.write_text("".join(f"{line}\n" for line in lines))
    left = sum(len(e.photos.files) for e in entries) - len(lines)
    regions = [e.region for e in entries if e.region]
    if regions:
        ins.choices.append(f"regions of interest in {folder_text(root, [r.masks for r in regions])} not used with a "
                           "pair list: dataset.roi_dir and dataset.roi_suffix would name them")
    ins.set("dataset.train_split", str(path.resolve()), f"written: {len(lines)} photo/mask pairs ({why}, so no "
            "folder keys describe the layout)" + (f"; {left} photos without a mask left out" if left else ""))
    hold_out(ins, "pairs.txt")


# ----------------------------------------------------------------------------------------------------------------
# the files of each split, as dataset=folder reads them


def split_items(root: Path, ins: Inspection):
    """{train: [(image, mask)], val: [...]} as FolderLayout reads them with the settings found."""
    from omegaconf import OmegaConf

    from ..config.schemas import FolderDatasetConfig

    cfg = OmegaConf.merge(OmegaConf.structured(FolderDatasetConfig), {
        "name": "folder", "root": str(root), **{s.key.split(".", 1)[1]: s.value for s in ins.settings}})
    layout = FolderLayout(cfg, root)
    items = {}
    for role_name, split in (("train", cfg.train_split), ("val", cfg.val_split)):
        if isinstance(split, str):
            items[role_name] = layout.split_pairs(split, cfg.train_split, cfg.val_split, cfg.val_fraction,
                                                  cfg.split_seed)
        else:
            items[role_name] = [pair for entry in split for pair in layout.pairs(str(entry))]
    return items


# ----------------------------------------------------------------------------------------------------------------
# mask encoding


def colour_code(rgb) -> int:
    """[R, G, B] as R<<16 | G<<8 | B."""
    return (int(rgb[0]) << 16) | (int(rgb[1]) << 8) | int(rgb[2])


def colour_of(code: int):
    """R<<16 | G<<8 | B as [R, G, B]."""
    return [code >> 16, (code >> 8) & 255, code & 255]


PAIR = 1 << 25  # two codes (values, indices or colours, all below 2**24 + 1) as one number


def neighbour_pairs(codes: np.ndarray) -> Counter:
    """{lower code * PAIR + higher code: how often they are 4-neighbours} over the edges of a mask."""
    a = np.concatenate([codes[:, 1:].ravel(), codes[1:].ravel()])
    b = np.concatenate([codes[:, :-1].ravel(), codes[:-1].ravel()])
    differ = a != b
    keys = np.minimum(a[differ], b[differ]) * PAIR + np.maximum(a[differ], b[differ])
    found, counts = np.unique(keys, return_counts=True)
    return Counter(dict(zip(found.tolist(), counts.tolist())))


@dataclass
class Tally:
    """Pixels of every stored value, palette index and colour over the masks read, which of them meet, which lie
    between their neighbours (blends), which values share a mask, and which colours are transparent."""
    files: Counter = field(default_factory=Counter)  # values | palette | colours | grey (RGB files with R=G=B)
    example: Dict[str, Path] = field(default_factory=dict)
    values: np.ndarray = field(default_factory=lambda: np.zeros(65536, np.int64))
    value_pairs: Counter = field(default_factory=Counter)
    value_blends: np.ndarray = field(default_factory=lambda: np.zeros(65536, np.int64))  # blended_pixels
    value_sets: Counter = field(default_factory=Counter)  # value files: the set of values each holds
    indices: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))
    index_pairs: Counter = field(default_factory=Counter)
    index_colours: Dict[int, Dict[int, Path]] = field(default_factory=lambda: defaultdict(dict))
    colours: Counter = field(default_factory=Counter)
    colour_pairs: Counter = field(default_factory=Counter)
    colour_blends: Counter = field(default_factory=Counter)
    transparent: Counter = field(default_factory=Counter)  # RGBA files: pixels of each colour left transparent
    lossy: Counter = field(default_factory=Counter)  # files per lossy format (lossy_format)
    flat: Counter = field(default_factory=Counter)  # lossy files: codes of the pixels inside regions (flat_pixels)

    def add_values(self, values: np.ndarray) -> None:
        self.values += np.bincount(values.ravel(), minlength=65536)[:65536]
        self.value_pairs.update(neighbour_pairs(values))
        self.value_blends += np.bincount(values[blended_pixels(values)], minlength=65536)[:65536]
        self.value_sets[frozenset(np.flatnonzero(np.bincount(values.ravel())).tolist())] += 1

    def add_colours(self, codes: np.ndarray, rgb: np.ndarray) -> None:
        found, counts = np.unique(codes, return_counts=True)
        self.colours.update(dict(zip(found.tolist(), counts.tolist())))
        self.colour_pairs.update(neighbour_pairs(codes))
        found, counts = np.unique(codes[blended_pixels(rgb)], return_counts=True)
        self.colour_blends.update(dict(zip(found.tolist(), counts.tolist())))

    def add(self, path: Path) -> None:
        stored, palette, transparent = read_mask(path, with_alpha=True)
        if stored.dtype.kind not in "ui" or (stored.size and stored.max() > 65535):
            raise SegtrainError(f"{path}: mask values must be whole numbers 0..65535 (found {stored.dtype})")
        lossy = lossy_format(path)
        if lossy:
            self.lossy[lossy] += 1
            inside = flat_pixels(stored)
            codes = rgb_codes(stored) if stored.ndim == 3 else stored.astype(np.int64)
            found, counts = np.unique(codes[inside], return_counts=True)
            self.flat.update(dict(zip(found.tolist(), counts.tolist())))
        if palette is not None and stored.ndim == 2:
            used = np.flatnonzero(np.bincount(stored.ravel(), minlength=1))
            if (palette[used] == palette[used][:, :1]).all():  # a grey palette: its grey levels (GIF masks)
                return self.count("values", path, values=palette[:, 0][stored].astype(np.int64))
            for index in used.tolist():
                self.index_colours[index].setdefault(colour_code(palette[index]), path)
            self.indices += np.bincount(stored.ravel(), minlength=256)[:256]
            self.index_pairs.update(neighbour_pairs(stored.astype(np.int64)))
            return self.count("palette", path, rgb=palette[stored])
        if stored.ndim == 3:
            grey = bool((stored[..., 0] == stored[..., 1]).all() and (stored[..., 0] == stored[..., 2]).all())
            if grey:
                self.add_values(stored[..., 0].astype(np.int64))
            if transparent is not None:
                found, counts = np.unique(rgb_codes(stored)[transparent], return_counts=True)
                self.transparent.update(dict(zip(found.tolist(), counts.tolist())))
            return self.count("grey" if grey else "colours", path, rgb=stored)
        return self.count("values", path, values=stored.astype(np.int64))

    def count(self, kind: str, path: Path, values=None, rgb=None) -> None:
        self.files[kind] += 1
        self.example.setdefault(kind, path)
        if values is not None:
            self.add_values(values)
        if rgb is not None:
            self.add_colours(rgb_codes(rgb), rgb)


def rgb_codes(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) colours as (H, W) int64 codes R<<16 | G<<8 | B."""
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


@dataclass
class Codes:
    """The stored codes (values, palette indices or colours) of one reading of the masks."""
    kind: str  # values | indices | colours
    codes: np.ndarray
    counts: np.ndarray
    pairs: Counter  # which codes meet, how often (neighbour_pairs)
    blends: Dict[int, int] = field(default_factory=dict)  # pixels of each code between its neighbours' codes

    def describe(self, code) -> str:
        return f"colour {tuple(colour_of(int(code)))}" if self.kind == "colours" else \
            f"{'index' if self.kind == 'indices' else 'value'} {int(code)}"

    def distance(self, a, b) -> int:
        return colour_distance(a, b) if self.kind == "colours" else value_distance(a, b)

    def __post_init__(self):
        self.neighbours, self.edges = Counter(), sum(self.pairs.values())
        for pair, count in self.pairs.items():
            self.neighbours[pair // PAIR] += count
            self.neighbours[pair % PAIR] += count

    def thin(self, code) -> bool:
        """Drawn as lines, not regions: at least THIN neighbours of other codes per pixel."""
        return self.neighbours[code] >= THIN * self.pixels(code)

    def between(self, code) -> float:
        """The share of the edges between codes that run along a thin `code`: 1 when the others meet only across
        it, as they do across void borders; 0 for a code drawn as regions."""
        return self.neighbours[code] / self.edges if self.edges and self.thin(code) else 0.0

    def pixels(self, code) -> int:
        return int(self.counts[self.codes == code].sum())


def reading(tally: Tally, kind: str) -> Codes:
    """The masks' codes read one way: as colours, palette indices, or values (palette indices among them)."""
    if kind == "colours":
        found = np.array(sorted(tally.colours), np.int64)
        return Codes(kind, found, np.array([tally.colours[c] for c in found.tolist()], np.int64),
                     tally.colour_pairs, dict(tally.colour_blends))
    if kind == "indices":
        return Codes(kind, np.flatnonzero(tally.indices), tally.indices[np.flatnonzero(tally.indices)],
                     tally.index_pairs)
    counts = tally.values.copy()  # palette files beside value files: their indices are values
    counts[:256] += tally.indices
    found = np.flatnonzero(counts)
    return Codes(kind, found, counts[found], tally.value_pairs + tally.index_pairs,
                 dict(zip(found.tolist(), tally.value_blends[found].tolist())))


def percent(part, whole) -> str:
    """`part` of `whole` as a percentage, with two significant digits below 0.1%."""
    share = 100 * part / max(whole, 1)
    return f"{share:.1f}%" if share >= 0.1 or share == 0 else f"{share:.2g}%"


def resampled_classes(codes: Codes):
    """The class values (colours) of masks resized with interpolation (or recompressed), else None: a few far-apart
    values hold most pixels, and many others lie between two of them, most of their pixels between their
    neighbours' values (blended_pixels: along edges, never inside a region as a class's would be) or on thin
    lines and rare. The classes are every value but those blends (thin ones under 0.1% of the pixels, where three
    classes meet, too)."""
    total = codes.counts.sum()
    parts = (lambda c: colour_of(c)) if codes.kind == "colours" else (lambda c: [c])

    def blend(code, big):  # between neighbours' values, or on thin lines and rare; between two of `big`
        blended = codes.blends.get(code, 0) >= 0.5 * codes.pixels(code) or (
            codes.thin(code) and codes.pixels(code) < 0.01 * total)
        return blended and any(
            all(min(x, y) <= v <= max(x, y) for v, x, y in zip(parts(code), parts(a), parts(b)))
            for i, a in enumerate(big) for b in big[i + 1:] if code not in (a, b))

    big = centres(codes.codes, codes.counts, codes.distance, share=0.02, colours=codes.kind == "colours",
                  cells=False)
    big = [c for c in big if codes.blends.get(c, 0) < 0.5 * codes.pixels(c) or not blend(c, big)]  # 50 of 0/100
    if len(big) < 2 or codes.counts[np.isin(codes.codes, big)].sum() < 0.5 * total:
        return None

    others = [c for c in codes.codes.tolist() if c not in big]
    blends = [c for c in others if blend(c, big)]
    if len(blends) < 8 or sum(codes.pixels(c) for c in blends) < 0.8 * sum(codes.pixels(c) for c in others):
        return None
    return sorted(big + [c for c in others
                         if c not in blends and (not codes.thin(c) or codes.pixels(c) >= 0.001 * total)])


def void_index(codes: Codes, stored: List[int]) -> bool:
    """255 beside class indices 0..k (k >= 1), or running along all edges between the other values (VOC's borders):
    segtrain's and VOC's void."""
    others = sorted(c for c in stored if c != IGNORE_INDEX)
    return IGNORE_INDEX in stored and len(others) >= 2 and (others == list(range(len(others))) or
                                                             codes.between(IGNORE_INDEX) >= BETWEEN)


def shares_text(codes: Codes, chosen, total) -> str:
    """`0 (61.2%), 255 (38.8%)` for the first six of `chosen`."""
    shown = [f"{int(c) if codes.kind != 'colours' else tuple(colour_of(int(c)))} "
             f"({percent(codes.counts[codes.codes == c].sum(), total)})" for c in chosen[:6]]
    return ", ".join(shown) + (f" and {len(chosen) - 6} more" if len(chosen) > 6 else "")


def find_encoding(ins: Inspection, tally: Tally) -> None:
    """The keys that say what the stored values mean, and the classes: one per stored value (colour), in stored
    order, 255 void beside class indices 0..k; lossy masks read by the tolerance that keeps their values apart."""
    files = tally.files
    consistent = all(len(colours) == 1 for colours in tally.index_colours.values())
    if files["colours"] or (files["palette"] and not consistent):
        if files["values"]:
            ins.problems.append(f"masks mix colour files ({tally.example.get('colours') or tally.example['palette']})"
                                f" and single-value files ({tally.example['values']}); dataset=folder reads one kind")
            return
        kind = "colours"
        if files["palette"] and not consistent:
            index, seen = next((i, c) for i, c in sorted(tally.index_colours.items()) if len(c) > 1)
            (first, a), (second, b) = list(seen.items())[:2]
            how = (f"palette PNGs numbered file by file: index {index} is {tuple(colour_of(first))} in {a.name} and "
                   f"{tuple(colour_of(second))} in {b.name}: read by their colours")
        else:
            how = f"colour masks ({files['colours'] + files['grey']} RGB files): read through the classes' colours"
        ins.set("dataset.mask_format", "rgb", how)
    elif files["palette"] and not files["values"] and not files["grey"]:
        kind = "indices"
        ins.set("dataset.mask_format", "index", "palette PNGs whose palette is the same in every file at the indices"
                " used: read by index (VOC-style), the palette's colours kept for pictures")
    else:
        kind = "values"
        if files["grey"]:
            ins.set("dataset.mask_format", "index", f"RGB masks with R = G = B ({files['grey']} files): read as values")
    codes = reading(tally, kind)
    total = int(codes.counts.sum())
    resampled = None if tally.lossy else resampled_classes(codes)
    lossy = bool(tally.lossy) or resampled is not None
    if tally.lossy:  # the values (colours) inside regions: compression blends them only at edges
        inside = np.array(sorted(tally.flat), np.int64)
        stored = [rounder(codes, c) for c in centres(inside, np.array([tally.flat[c] for c in inside.tolist()],
                                                                      np.int64), codes.distance,
                                                     colours=kind == "colours")]
    else:
        stored = resampled or [int(c) for c in codes.codes]
    if kind == "values" and not lossy and one_class_two_ways(ins, tally, codes, total):
        return
    void = [IGNORE_INDEX] if kind != "colours" and void_index(codes, stored) else []
    classes = [c for c in stored if c not in void]
    if len(classes) > 255:
        ins.problems.append(f"the masks hold {len(classes)} distinct {codes.kind}: more than 255 classes (instance "
                            "ids, or photos taken for masks?)")
        return
    if not classes:
        ins.problems.append("every mask pixel is void (255)")
        return
    tolerance, unreachable = 0, 0
    if lossy:
        targets = sorted(classes + void)
        gap = min((codes.distance(a, b) for i, a in enumerate(targets) for b in targets[i + 1:]), default=256)
        tolerance = min(127, (gap - 1) // 2)
        if tolerance < 1:
            ins.problems.append(f"lossy masks whose {codes.kind} {', '.join(map(str, targets[:6]))} are {gap} apart: "
                                "compression mixed them; store the masks losslessly (PNG)")
            return
        far = np.array([min(codes.distance(c, t) for t in targets) > tolerance for c in codes.codes])
        unreachable = int(codes.counts[far].sum())
        noise = len(codes.codes) - len(targets)
        why = " and ".join(f"{n} {name} masks" for name, n in tally.lossy.items()) if tally.lossy else \
            "masks resized or recompressed"
        ins.set("dataset.mask_tolerance", tolerance, f"{why}: {len(codes.codes)} {codes.kind}, "
                f"{percent(codes.counts[np.isin(codes.codes, targets)].sum(), total)} of the pixels at "
                f"{shares_text(codes, targets, total)}, {noise} more scattered around them; each takes the class "
                f"within {tolerance}" + (" (a threshold at 128)" if targets == [0, 255] else ""))
    set_meaning(ins, codes, classes, void, tolerance, unreachable, total)
    ins.classes = [{"name": f"class_{i}", **({"color": colour_of(c)} if kind == "colours" else {"value": int(c)})}
                   for i, c in enumerate(classes)]
    if kind == "indices":
        colours = [colour_of(next(iter(tally.index_colours[c]))) for c in classes]
        if len({tuple(c) for c in colours}) == len(colours):
            for entry, colour in zip(ins.classes, colours):
                entry["color"] = colour
    void_candidates(ins, codes, classes, void, total)
    if kind == "colours":
        transparent_choices(ins, tally, codes, classes, total)
    if not lossy:
        perhaps_lossy(ins, codes, classes, total)


def rounder(codes: Codes, code: int) -> int:
    """A lossy mask's centre as its roundest neighbour (per channel; segtrain.data.labels.roundest) where the masks
    hold that code too: compression moves a region's commonest value by a step or two."""
    parts = colour_of(code) if codes.kind == "colours" else [code]
    rounded = [roundest(v) for v in parts]
    rounded = colour_code(rounded) if codes.kind == "colours" else rounded[0]
    return rounded if codes.pixels(rounded) else code


def one_class_two_ways(ins: Inspection, tally: Tally, codes: Codes, total: int) -> bool:
    """Binary masks whose foreground some files store as 1 and others as 255, never both in one file (real sets mix
    them): one class read through a label map, the key that makes them two classes said; False for other masks."""
    if set().union(*tally.value_sets) - {0} != {1, IGNORE_INDEX} or any({1, IGNORE_INDEX} <= values
                                                                       for values in tally.value_sets):
        return False
    files = Counter()
    for values, count in tally.value_sets.items():
        files[IGNORE_INDEX if IGNORE_INDEX in values else 1] += count
    ins.set("dataset.label_map", {0: 0, 1: 1, IGNORE_INDEX: 1},
            f"binary masks stored two ways, {files[1]} files as 0/1 and {files[IGNORE_INDEX]} as 0/255, none with 1 "
            f"and 255 together: 0 is class_0 ({percent(codes.pixels(0), total)}), 1 and 255 are class_1 "
            f"({percent(codes.pixels(1) + codes.pixels(IGNORE_INDEX), total)})")
    ins.choices.append("1 and 255 never share a mask: read as one class, class_1 (dataset.label_map); if they are "
                       "two classes, set dataset.label_values=[0,1,255] instead and add a class to the classes YAML")
    ins.classes = [{"name": "class_0", "value": 0}, {"name": "class_1", "value": [1, IGNORE_INDEX]}]
    return True


def transparent_choices(ins: Inspection, tally: Tally, codes: Codes, classes, total: int) -> None:
    """A colour that only RGBA masks' transparent pixels hold (nothing drawn there) stays a class of its own; said,
    with the keys that make those pixels another class or void."""
    for index, code in enumerate(classes):
        if not tally.transparent.get(code) or tally.transparent[code] != codes.pixels(code):
            continue
        rest = [c for c in classes if c != code]
        mapping = {colour_key(c): i for i, c in enumerate(rest)}
        mapping[colour_key(code)] = 0
        ins.choices.append(f"{codes.describe(code)} (class_{index}, {percent(codes.pixels(code), total)} of the "
                           "pixels) is transparent (alpha 0) wherever it occurs: pixels the masks leave unlabelled, "
                           f"read as a class of its own. If they are {'class_0' if index else 'class_1'}: "
                           f"{override_argument('dataset.label_map', mapping)}; if they are void: "
                           f"{override_argument('dataset.ignore_values', [colour_of(code)])}; either way delete "
                           f"class_{index} from the classes YAML")


def perhaps_lossy(ins: Inspection, codes: Codes, classes, total: int) -> None:
    """Many classes, most of them rare, beside a few that hold most pixels: perhaps resized or compressed masks
    that resampled_classes could not tell; every value stays a class, and the keys that read them as lossy are
    said."""
    rare = [c for c in classes if codes.pixels(c) < 0.005 * total]
    big = centres(codes.codes, codes.counts, codes.distance, share=0.02, colours=codes.kind == "colours",
                  cells=False)
    if codes.kind == "indices" or len(classes) < 12 or 2 * len(rare) < len(classes) or len(big) < 2:
        return
    if codes.kind == "values":
        tolerance = widest_tolerance(list(zip(big, range(len(big)))))
        keys = f"dataset.label_values=[{','.join(map(str, big))}] dataset.mask_tolerance={tolerance}"
    else:
        tolerance = min(127, (min(colour_distance(a, b) for i, a in enumerate(big) for b in big[i + 1:]) - 1) // 2)
        keys = (f"dataset.mask_tolerance={tolerance} "
                + override_argument("dataset.label_map", {colour_key(c): i for i, c in enumerate(big)})
                + " dataset.unmapped=ignore")
    ins.choices.append(f"the masks hold {len(classes)} {codes.kind}, {len(rare)} of them each under 0.5% of the "
                       "pixels: they may be lossy (resized or compressed masks), blends of "
                       f"{shares_text(codes, big, total)}. Then read them with {keys} and a classes YAML of {len(big)} "
                       "classes; the command below keeps every stored value a class")


def set_meaning(ins: Inspection, codes: Codes, classes, void, tolerance, unreachable, total) -> None:
    """label_values / ignore_values, or a label map where lossy pixels far from every class are void."""
    described = f"{codes.kind} {shares_text(codes, classes, total)}: one class each, in this order"
    if unreachable:
        key = colour_key if codes.kind == "colours" else int
        mapping = {key(c): i for i, c in enumerate(classes)}
        mapping.update({key(c): IGNORE_INDEX for c in void})
        ins.set("dataset.label_map", mapping, described)
        ins.set("dataset.unmapped", "ignore", f"{percent(unreachable, total)} of the pixels (compressed edges) are "
                f"farther than {tolerance} from every class's {codes.kind[:-1]}: void")
        ins.choices.append(f"{percent(unreachable, total)} of the pixels are farther than {tolerance} from every "
                           f"class's {codes.kind[:-1]} and void (dataset.unmapped=ignore): edges that compression "
                           f"blended, or a class drawn only in thin lines that kept no {codes.kind[:-1]} of its own; "
                           f"if a class is missing above, add its {codes.kind[:-1]} to dataset.label_map")
        return
    if codes.kind != "colours" and classes != list(range(len(classes))):
        ins.set("dataset.label_values", classes, described)
    elif codes.kind != "colours":
        ins.set("dataset.label_values", None, f"class indices {shares_text(codes, classes, total)}")
    if void:
        beside = f"class indices 0..{len(classes) - 1}" if classes == list(range(len(classes))) else \
            f"{len(classes)} class values"
        ins.set("dataset.ignore_values", void, f"255 ({percent(codes.pixels(IGNORE_INDEX), total)} of the pixels, "
                f"along {100 * codes.between(IGNORE_INDEX):.0f}% of the edges between values) beside {beside}: void, "
                "as in VOC")
        ins.choices.append(f"255 is read as void; if it is a class, set "
                           f"{override_argument('dataset.label_values', classes + [IGNORE_INDEX])} without "
                           "dataset.ignore_values and add a class to the classes YAML")
    if codes.kind == "values" and classes == [0, IGNORE_INDEX]:
        ins.choices.append("the masks hold only 0 and 255: read as two classes (255 is class_1, not void: a "
                           "mask of one class leaves nothing to learn); dataset.label_values decides")


def void_candidates(ins: Inspection, codes: Codes, classes, void, total) -> None:
    """Classes that lie between all the others (they meet only across it), as void borders do (VOC, the synthetic
    scenes): said, with the keys that make them void; never made void here (a boundary class is drawn the same
    way)."""
    if len(classes) < 3 or ins.value("dataset.mask_tolerance"):
        return
    for index, code in enumerate(classes):
        if codes.between(code) < BETWEEN:
            continue
        rest = [c for c in classes if c != code]
        if codes.kind == "colours":
            keys = override_argument("dataset.ignore_values", [colour_of(code)])
        else:
            keys = override_argument("dataset.ignore_values", sorted(void + [code]))
            if rest != list(range(len(rest))):
                keys = f"{override_argument('dataset.label_values', rest)} {keys}"
            elif ins.value("dataset.label_values") is not None:
                keys = f"no dataset.label_values, {keys}"
        ins.choices.append(f"{codes.describe(code)} (class_{index}, {percent(codes.pixels(code), total)} of the pixels)"
                           f" runs along {100 * codes.between(code):.0f}% of the edges between the others, as void "
                           f"borders do: read as a class. If it means void: {keys}, and delete class_{index} from "
                           "the classes YAML")


# ----------------------------------------------------------------------------------------------------------------
# the whole inspection


KNOWN_LAYOUTS = (  # (folders under the root, mask suffix, the dataset= that reads it with its official classes)
    (("leftImg8bit", "gtFine"), "_gtFine_labelIds.png", "cityscapes", "the 19 benchmark classes"),
    (("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"), None, "voc", "the 21 VOC classes"),
)


def known_layout(ins: Inspection) -> None:
    """Notes a layout that a dataset= of its own reads with the official classes (Cityscapes, VOC)."""
    for folders, suffix, name, classes in KNOWN_LAYOUTS:
        if all((ins.root / f).is_dir() for f in folders) and suffix in (None, ins.value("dataset.mask_suffix")):
            ins.choices.append(f"this is the {name} layout: `segtrain dataset={name} dataset.root={ins.root}` reads "
                               f"it with {classes} (the command below keeps every stored value a class)")


def write_classes(ins: Inspection) -> None:
    """The classes YAML: class_0, ... with the colours seen, the stored value of each in a comment."""
    ins.classes_file.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# segtrain-data inspect {ins.root}: one class per stored "
             f"{'value' if 'value' in ins.classes[0] else 'colour'}, in class index order. Rename them; keep the "
             "order and the colours.", "classes:"]
    for entry in ins.classes:
        colour = f", color: {entry['color']}" if "color" in entry else ""
        value = entry.get("value")
        stored = "" if value is None else f"  # stored value {value}" if not isinstance(value, list) else \
            f"  # stored values {', '.join(map(str, value))}"
        lines.append(f"  - {{name: {entry['name']}{colour}}}{stored}")
    ins.classes_file.write_text("\n".join(lines) + "\n")


def photo_channels(items) -> str:
    """The photos' channels in words, from the headers of up to 50 of them."""
    from .folder import image_channels

    photos = evenly(sorted({image for pairs in items.values() for image, *_ in pairs}), 50)
    channels = Counter(image_channels(p) for p in photos)
    if len(channels) > 1:
        return "grey and colour photos: dataset.channels=auto reads them all as 3 channels"
    return "grey photos: 1 input channel (dataset.channels=auto)" if 1 in channels else \
        "colour photos: 3 input channels (dataset.channels=auto)"


def inspect_tree(root, out) -> Inspection:
    """Inspect the folder tree at `root`; the classes YAML goes to `out`/classes.yaml (and a pair list, for layouts
    no folder key describes). Problems that keep the settings from reading the data are in `problems`. Raises
    SegtrainError when the tree holds no photos paired with masks."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise SegtrainError(f"inspect {root}: no such folder")
    out = Path(out)
    ins = Inspection(root, (out / "classes.yaml").resolve())
    find_layout(root, ins, out)
    if ins.problems:
        return ins
    try:
        items = split_items(root, ins)
    except SegtrainError as error:
        ins.problems.append(str(error))
        return ins
    masks = list(dict.fromkeys(mask for pairs in items.values() for _, mask, *_ in pairs))
    tally = Tally()
    for path in track(masks, len(masks), "reading masks"):
        try:
            tally.add(path)
        except SegtrainError as error:
            ins.problems.append(str(error))
    if ins.problems:
        return ins
    find_encoding(ins, tally)
    ins.summary = (f"{len(items['train'])} train and {len(items['val'])} val photos with masks; "
                   f"{photo_channels(items)}")
    known_layout(ins)
    if not ins.problems:
        write_classes(ins)
    return ins


def report(ins: Inspection, width: int = 116) -> str:
    """The evidence for each key and the choices made, as printed (wrapped at `width`, never inside a word)."""
    import textwrap

    def wrapped(text, first, then):
        return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=then, break_long_words=False,
                             break_on_hyphens=False)

    lines = wrapped(f"segtrain-data inspect {ins.root}: {ins.summary}", "", "    ") + [""]
    column = 34
    written = [Setting("dataset.classes", "classes.yaml", f"{len(ins.classes)} classes written to "
                       f"{ins.classes_file}: class_0 ... class_{len(ins.classes) - 1}, to rename")] if ins.classes else []
    for setting in ins.settings + written:
        value = setting.value if isinstance(setting.value, str) else hydra_text(setting.value)
        text = f"{setting.key}={value}" if setting.value is not None else f"{setting.key} unset"
        if len(text) >= column:  # the evidence on a line of its own
            lines.append(f"  {text}")
            text = ""
        lines += wrapped(f"{'(default) ' if setting.default else ''}{setting.evidence}", f"  {text:<{column}} ",
                         " " * (column + 3))
    for title, notes in (("Choices made (the key named changes each):", ins.choices),
                         ("Problems (the keys above do not read the data yet):", ins.problems)):
        if notes:
            lines += ["", title] + [line for note in notes for line in wrapped(note, "  - ", "    ")]
    return "\n".join(lines)


def to_json(ins: Inspection, command: str) -> str:
    """inspect.json: the settings with their evidence, choices, problems, classes and the command."""
    return json.dumps({"root": str(ins.root), "classes_file": str(ins.classes_file), "command": command,
                       "settings": [{"key": s.key, "value": s.value, "evidence": s.evidence, "default": s.default}
                                    for s in ins.settings],
                       "choices": ins.choices, "problems": ins.problems, "classes": ins.classes}, indent=2)
