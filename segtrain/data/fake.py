"""Tiny fake copies of every dataset format segtrain reads, with the real file types (JPEG, palette and 'L' PNGs,
16-bit depth PNGs, MATLAB .mat files, the raw NYUDv2 HDF5), for tests and for smoke-testing the real loading code:

    python scripts/make_fake_datasets.py OUT     # then e.g. SEGTRAIN_DATA=OUT segtrain dataset=voc

Images are the synthetic scenes (so a short run learns something); their 5 scene classes are written in each
dataset's own label encoding (SCENE_TO_RAW), object borders in its void value."""
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from .palette import voc_palette
from .synthetic import CLASS_NAMES, render_scene

# scene class 0..4, then void -> the dataset's raw label values
SCENE_TO_RAW = {
    "voc": [0, 15, 12, 2, 5, 255],  # background, person, dog, bicycle, bottle; 255 border
    "sbd": [0, 15, 12, 2, 5, 0],  # SBD has no ignore value
    "nyud": [1, 2, 5, 40, 11, 0],  # wall, floor, chair, otherprop, picture; 0 void
    "siftflow_semantic": [28, 6, 32, 22, 26, 0],  # sky, building, tree, road, sign; 0 void
    "siftflow_geometric": [1, 3, 3, 2, 3, -1],  # sky, vertical, vertical, horizontal, vertical; -1 void
    "folder": [0, 1, 2, 3, 4, 255],
    "folder_void": [0, 1, 2, 3, 4, 5],  # void stored as the value after the classes
    "folder_binary": [0, 255, 255, 255, 255, 0],  # object (any shape) 255, borders background
    "cityscapes": [7, 26, 11, 17, 24, 0],  # road, car, building, pole, person label ids; 0 unlabeled
}
FOLDER_COLOURS = [[0, 0, 0], [200, 40, 40], [220, 220, 40], [40, 200, 40], [40, 40, 220]]
VOID_COLOUR = [255, 255, 255]


def scene(seed: int, size: int, width=None):
    """(image (H, W, 3) uint8, scene label (H, W) with void as 5); width < size crops to a non-square image."""
    image, label = render_scene(np.random.default_rng(seed), size)
    label = np.where(label == 255, 5, label)
    return image[:, :width], label[:, :width]


def encode(label, kind: str, dtype=np.uint8):
    return np.asarray(SCENE_TO_RAW[kind], dtype=np.int64)[label].astype(dtype)


def save_png(array, path: Path, palette=None):
    """An 'L' PNG (or RGB, 16-bit), or with `palette` a 'P' PNG holding the same indices."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if palette is not None:
        image.putpalette(palette.flatten().tolist())  # 'L' -> 'P', indices unchanged
    image.save(path)


def save_jpg(array, path: Path, quality: int = 95):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=quality)


def write_lines(path: Path, ids):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


class StoredTruth:
    """Each mask's pixels per stored value ("7") or colour ("200,40,40"), counted from the arrays before they are
    written (a lossy mask: the values meant, before compression; with a region of interest: inside it), never
    through a decoder; `write` leaves them in <root>/stored.json, keyed by the mask's path under the root."""

    def __init__(self):
        self.masks = {}

    def add(self, root: Path, mask: Path, codes: np.ndarray, region=None) -> None:
        colours = codes.ndim == 3
        codes = (codes if region is None else codes[region]).reshape((-1, 3) if colours else (-1,))
        keys, counts = np.unique(codes, axis=0, return_counts=True)
        found = {",".join(str(int(v)) for v in np.atleast_1d(key)): int(n) for key, n in zip(keys, counts)}
        self.masks.setdefault(root, {})[mask.relative_to(root).as_posix()] = found

    def write(self, name: str = "stored.json") -> None:
        import json

        for root, masks in self.masks.items():
            (root / name).write_text(json.dumps(masks, indent=1, sort_keys=True))


def make_voc(out: Path, size: int):
    """VOC2012 (train 6, val 4; widths vary), SBD (train 5, val 3; three images shared with VOC) and VOC2011."""
    voc = out / "VOCdevkit" / "VOC2012"
    sbd = out / "benchmark_RELEASE" / "dataset"
    voc_ids = [f"2007_{i:06d}" for i in range(10)]
    sbd_only = [f"2008_{i:06d}" for i in range(5)]
    scenes = {image_id: scene(100 + n, size, width=size - 8 * (n % 3)) for n, image_id in enumerate(voc_ids)}
    scenes.update({image_id: scene(200 + n, size) for n, image_id in enumerate(sbd_only)})
    truth = StoredTruth()
    for image_id in voc_ids:
        image, label = scenes[image_id]
        save_jpg(image, voc / "JPEGImages" / f"{image_id}.jpg")
        save_png(encode(label, "voc"), voc / "SegmentationClass" / f"{image_id}.png", palette=voc_palette())
        truth.add(voc, voc / "SegmentationClass" / f"{image_id}.png", encode(label, "voc"))
    truth.write()
    for image_id in [voc_ids[0], voc_ids[1], voc_ids[6]] + sbd_only:
        image, label = scenes[image_id]
        save_jpg(image, sbd / "img" / f"{image_id}.jpg")
        segmentation = encode(label, "sbd")
        (sbd / "cls").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(sbd / "cls" / f"{image_id}.mat", {"GTcls": {
            "Segmentation": segmentation, "Boundaries": np.zeros((1, 1), object),
            "CategoriesPresent": np.unique(segmentation[segmentation > 0]).astype(np.uint8)}})
    splits = voc / "ImageSets" / "Segmentation"
    write_lines(splits / "train.txt", voc_ids[:6])
    write_lines(splits / "val.txt", voc_ids[6:])
    write_lines(splits / "trainval.txt", voc_ids)
    write_lines(sbd / "train.txt", [voc_ids[0], voc_ids[6]] + sbd_only[:3])
    write_lines(sbd / "val.txt", [voc_ids[1]] + sbd_only[3:])
    voc2011 = out / "TrainVal" / "VOCdevkit" / "VOC2011"  # VOC2011 val = VOC2012 val here
    write_lines(voc2011 / "ImageSets" / "Segmentation" / "val.txt", voc_ids[6:])
    for image_id in voc_ids[6:]:
        for sub, suffix in (("JPEGImages", ".jpg"), ("SegmentationClass", ".png")):
            (voc2011 / sub).mkdir(parents=True, exist_ok=True)
            (voc2011 / sub / f"{image_id}{suffix}").write_bytes((voc / sub / f"{image_id}{suffix}").read_bytes())


def make_nyud(out: Path, size: int):
    """FCN's NYUDv2 layout (ids 5001..5008), and the raw download those files convert from."""
    import h5py

    root = out / "nyud"
    ids = list(range(5001, 5009))
    images, depths, labels = [], [], []
    for n, image_id in enumerate(ids):
        image, label = scene(300 + n, size)
        depth_mm = (800 + 40 * np.arange(size)[:, None] + 10 * label).astype(np.uint16)  # 0.8 m and up, never 0
        save_png(image, root / "data" / "images" / f"img_{image_id}.png")
        save_png(depth_mm, root / "data" / "depth" / f"img_{image_id}.png")
        save_png(255 - image, root / "data" / "hha" / f"img_{image_id}.png")
        (root / "segmentation").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(root / "segmentation" / f"img_{image_id}.mat", {"segmentation": encode(label, "nyud")})
        images.append(image), depths.append(depth_mm / 1000.0), labels.append(label)
    write_lines(root / "train.txt", ids[:3])
    write_lines(root / "val.txt", ids[3:5])
    write_lines(root / "test.txt", ids[5:])

    raw = out / "nyud_raw"
    raw.mkdir(parents=True, exist_ok=True)
    # the raw labels use 894 classes: class c of the 40 is written as 100 + c, and mapClass sends it back
    map_class = np.full((1, 894), 39.0)
    map_class[0, 99 + np.arange(1, 41)] = np.arange(1, 41)
    raw_labels = [np.where(lab > 0, 100 + lab.astype(np.uint16), 0) for lab in (encode(x, "nyud") for x in labels)]
    with h5py.File(raw / "nyu_depth_v2_labeled.mat", "w") as f:  # MATLAB v7.3 is HDF5, arrays transposed
        f["images"] = np.stack([im.transpose(2, 1, 0) for im in images])
        f["depths"] = np.stack([d.T for d in depths])
        f["labels"] = np.stack([lab.T for lab in raw_labels])
    scipy.io.savemat(raw / "classMapping40.mat", {"mapClass": map_class})
    scipy.io.savemat(raw / "splits.mat", {"trainNdxs": np.arange(1, 6)[:, None].astype(float),
                                          "testNdxs": np.arange(6, 9)[:, None].astype(float)})


def make_siftflow(out: Path, size: int):
    from .siftflow import FOLDER

    root = out / "siftflow"
    ids = [f"coast_natu{n}" for n in range(6)] + [f"street_urb{n}" for n in range(3)]
    for n, image_id in enumerate(ids):
        image, label = scene(400 + n, size)
        save_jpg(image, root / "Images" / FOLDER / f"{image_id}.jpg")
        for sub, kind in (("SemanticLabels", "siftflow_semantic"), ("GeoLabels", "siftflow_geometric")):
            (root / sub / FOLDER).mkdir(parents=True, exist_ok=True)
            scipy.io.savemat(root / sub / FOLDER / f"{image_id}.mat", {"S": encode(label, kind, np.int16)})
    write_lines(root / "trainval.txt", ids[:6])
    write_lines(root / "test.txt", ids[6:])


def write_classes(path: Path, names, colours=None):
    path.write_text("classes:\n" + "".join(
        f"  - {{name: {name}" + (f", color: {list(colour)}" if colours else "") + "}\n"
        for name, colour in zip(names, colours or [None] * len(names))))


def make_folder(out: Path, size: int):
    """The folder layouts users have: names in split files (folder); 'IMAGE LABEL' pair lists holding the
    author's absolute paths and a void value (folder_pairs); one folder of 0/255 binary masks named NAME_mask.png
    with no splits (folder_binary); CamVid's {split}/{split}annot folders of RGB colour masks (folder_rgb)."""
    root = out / "folder"
    names = [f"img{n:03d}" for n in range(9)]
    scenes = [scene(500 + n, size) for n in range(len(names))]
    truth = StoredTruth()
    colours = np.asarray(FOLDER_COLOURS + [VOID_COLOUR], np.uint8)
    for n, (name, (image, label)) in enumerate(zip(names, scenes)):
        if n % 2:  # both kinds of image file in one folder
            save_png(image, root / "images" / f"{name}.png")
        else:
            save_jpg(image, root / "images" / f"{name}.jpg")
        split = "train" if n < 6 else "val"
        for layout, mask, codes in (
                ("folder", f"masks/{name}.png", encode(label, "folder")),
                ("folder_pairs", f"annot/{name}.png", encode(label, "folder_void")),
                ("folder_binary", f"masks/{name}_mask.png", encode(label, "folder_binary")),
                ("folder_rgb", f"{split}annot/{name}.png", colours[label])):
            save_png(codes, out / layout / mask)
            truth.add(out / layout, out / layout / mask, codes)
        save_jpg(image, out / "folder_pairs" / "JPEG" / f"{name}.jpg")
        save_png(image, out / "folder_binary" / "images" / f"{name}.png")
        save_png(image, out / "folder_rgb" / split / f"{name}.png")
    truth.write()
    write_lines(root / "train.txt", names[:6])
    write_lines(root / "val.txt", names[6:])
    write_classes(root / "classes.yaml", CLASS_NAMES, FOLDER_COLOURS)
    author = "/home/author/datasets/scenes"  # where the list's author kept the data
    for split, chosen in (("train", names[:6]), ("val", names[6:])):
        write_lines(out / "folder_pairs" / "lists" / f"{split}.txt",
                    [f"{author}/JPEG/{name}.jpg {author}/annot/{name}.png" for name in chosen])
    write_classes(out / "folder_pairs" / "classes.yaml", CLASS_NAMES)
    write_classes(out / "folder_binary" / "classes.yaml", ["background", "object"])
    write_classes(out / "folder_rgb" / "classes.yaml", CLASS_NAMES, FOLDER_COLOURS)


MASK_LAYOUTS = {  # the keys that read each layout of make_masks_as_shipped, with the truth's class names
    "folder_palette": ["dataset.ignore_values=[[255,255,255]]"],
    "folder_jpeg": ["dataset.mask_suffix=_mask.jpg", "dataset.label_values=[0,255]", "dataset.mask_tolerance=127"],
    "folder_label_map": ["dataset.label_map={1:0,2:0,3:1,4:1,5:2,6:2,7:3,8:3,9:4,10:4}", "dataset.unmapped=ignore"],
}


def make_masks_as_shipped(out: Path, size: int):
    """Masks as annotation tools and peers ship them, each folder with train.txt / val.txt and classes.yaml, and
    truth.json: each split's pixels per class, counted from the scenes (not by any decoder):
    - folder_palette: palette PNGs whose palette order changes from file to file (only the colours, the classes
      YAML's, carry the class; void is white);
    - folder_jpeg: 0/255 binary masks (object / background) stored as JPEG, NAME_mask.jpg;
    - folder_label_map: two stored values per class (2c + 1 and 2c + 2, alternating by column), void 99."""
    import json

    names = [f"img{n:03d}" for n in range(9)]
    colours = FOLDER_COLOURS + [VOID_COLOUR]
    truth = {layout: {"train": [0] * 5, "val": [0] * 5} for layout in MASK_LAYOUTS}
    truth["folder_jpeg"] = {"train": [0, 0], "val": [0, 0]}
    stored = StoredTruth()
    for n, name in enumerate(names):
        image, label = scene(700 + n, size)
        split = "train" if n < 6 else "val"
        order = np.random.default_rng(n).permutation(len(colours))  # palette index -> colour, per file
        palette = np.zeros((256, 3), np.uint8)
        palette[:len(colours)] = np.asarray(colours, np.uint8)[order]
        index_of = np.argsort(order)  # colour (scene class, void 5) -> its palette index in this file
        save_png(index_of[label].astype(np.uint8), out / "folder_palette" / "masks" / f"{name}.png", palette)
        binary = np.where((label >= 1) & (label <= 4), 255, 0).astype(np.uint8)
        save_jpg(binary, out / "folder_jpeg" / "masks" / f"{name}_mask.jpg", quality=75)  # a grey JPEG
        columns = np.arange(label.shape[1])[None] % 2
        values = np.where(label == 5, 99, 2 * label + 1 + columns).astype(np.uint8)
        save_png(values, out / "folder_label_map" / "masks" / f"{name}.png")
        for layout, mask, codes in (("folder_palette", f"{name}.png", np.asarray(colours, np.uint8)[label]),
                                    ("folder_jpeg", f"{name}_mask.jpg", binary),
                                    ("folder_label_map", f"{name}.png", values)):
            stored.add(out / layout, out / layout / "masks" / mask, codes)
        for layout in MASK_LAYOUTS:
            save_png(image, out / layout / "images" / f"{name}.png")
        for c in range(5):
            count = int((label == c).sum())
            truth["folder_palette"][split][c] += count
            truth["folder_label_map"][split][c] += count
        truth["folder_jpeg"][split][0] += int((label == 0).sum()) + int((label == 5).sum())
        truth["folder_jpeg"][split][1] += int(((label >= 1) & (label <= 4)).sum())
    for layout in MASK_LAYOUTS:
        write_lines(out / layout / "train.txt", names[:6])
        write_lines(out / layout / "val.txt", names[6:])
        (out / layout / "truth.json").write_text(json.dumps(truth[layout]))
    stored.write()
    write_classes(out / "folder_palette" / "classes.yaml", CLASS_NAMES, FOLDER_COLOURS)
    write_classes(out / "folder_jpeg" / "classes.yaml", ["background", "object"])
    write_classes(out / "folder_label_map" / "classes.yaml", CLASS_NAMES)


def make_cityscapes(out: Path, size: int):
    """Cityscapes' tree: two cities per split, frames <city>_000000_0000NN, labelIds PNGs; the left quarter of
    each train frame's background is stored as id 9 (parking, not one of the 19 classes: void). Beside each, a
    `_gtFine_color.png` rendering (noise here: a mask file whose pixels alone look like a photo's)."""
    root = out / "cityscapes"
    truth = StoredTruth()
    for split, cities in (("train", ("aachen", "bochum")), ("val", ("frankfurt",))):
        for c, city in enumerate(cities):
            for n in range(2):
                frame = f"{city}_000000_{n:06d}"
                image, label = scene(900 + 10 * c + n + (50 if split == "val" else 0), size)
                ids = encode(label, "cityscapes")
                if split == "train":
                    ids[:, :size // 4][ids[:, :size // 4] == 7] = 9
                save_png(image, root / "leftImg8bit" / split / city / f"{frame}_leftImg8bit.png")
                save_png(ids, root / "gtFine" / split / city / f"{frame}_gtFine_labelIds.png")
                noise = np.random.default_rng(n).integers(0, 256, (size, size, 4), np.uint8)
                save_png(noise, root / "gtFine" / split / city / f"{frame}_gtFine_color.png")
                truth.add(root, root / "gtFine" / split / city / f"{frame}_gtFine_labelIds.png", ids)
    truth.write()


def field_of_view(size: int) -> np.ndarray:
    """A retinal photo's field of view: the disc the camera sees, (size, size) bool."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    return yy ** 2 + xx ** 2 < (0.45 * size) ** 2


def make_retina(out: Path, size: int):
    """A retinal vessel set as DRIVE ships it: training/images/21_training.tif (RGB TIFF) with the vessels in
    training/1st_manual/21_manual1.gif (0/255 GIF) and the field of view in training/mask/21_training_mask.gif;
    test/ likewise (01_test.tif, ...), with a second observer's test/2nd_manual/01_manual2.gif. Outside the field
    the photo is black and the vessels 0; the scenes' wires are the vessels."""
    root = out / "retina"
    region = field_of_view(size)
    truth = StoredTruth()
    for split, names in (("training", ["21", "22", "23", "24"]), ("test", ["01", "02"])):
        for n, name in enumerate(names):
            image, label = scene(1100 + n + (10 if split == "test" else 0), size)
            vessels = np.where((label == 3) & region, 255, 0).astype(np.uint8)
            for folder, file, pixels in (("images", f"{name}_{split}.tif", np.where(region[..., None], image, 0)),
                                         ("1st_manual", f"{name}_manual1.gif", vessels),
                                         ("mask", f"{name}_{split}_mask.gif", region.astype(np.uint8) * 255)):
                (root / split / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / folder / file)
            truth.add(root, root / split / "1st_manual" / f"{name}_manual1.gif", vessels, region)
            if split == "test":  # the second observer takes the dots for vessels too
                (root / split / "2nd_manual").mkdir(exist_ok=True)
                Image.fromarray(np.where(np.isin(label, (3, 4)) & region, 255, 0).astype(np.uint8)).save(
                    root / split / "2nd_manual" / f"{name}_manual2.gif")
    truth.write()
    write_classes(root / "classes.yaml", ["background", "vessel"])


def make_hrf(out: Path, size: int):
    """A retinal set as HRF ships it, no split folders: images/01_dr.JPG (a JPEG, upper-case extension) with the
    vessels in manual1/01_dr.tif (0/255) and the field of view in mask/01_dr_mask.tif (an RGB TIFF); kinds dr, g
    and h of two patients. stored.json counts the vessels inside the field."""
    root = out / "hrf"
    region = field_of_view(size)
    truth = StoredTruth()
    for n, name in enumerate(f"{p:02d}_{kind}" for p in (1, 2) for kind in ("dr", "g", "h")):
        image, label = scene(1200 + n, size)
        vessels = np.where((label == 3) & region, 255, 0).astype(np.uint8)
        for folder, file, pixels in (("images", f"{name}.JPG", np.where(region[..., None], image, 0)),
                                     ("manual1", f"{name}.tif", vessels),
                                     ("mask", f"{name}_mask.tif", np.repeat(region[..., None], 3, 2) * 255)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.astype(np.uint8)).save(root / folder / file, format="JPEG" if folder == "images"
                                                          else None)
        truth.add(root, root / "manual1" / f"{name}.tif", vessels, region)
    truth.write()
    write_classes(root / "classes.yaml", ["background", "vessel"])


def make_chase(out: Path, size: int):
    """A retinal set as CHASE_DB1 ships it, one flat folder: Image_01L.jpg with two observers' vessels,
    Image_01L_1stHO.png and Image_01L_2ndHO.png (0/255; the second also takes the dots for vessels).
    stored.json counts the first observer's masks, stored_2ndHO.json the second's."""
    root = out / "chase"
    first, second = StoredTruth(), StoredTruth()
    for n, name in enumerate(f"Image_{p:02d}{eye}" for p in (1, 2, 3) for eye in "LR"):
        image, label = scene(1300 + n, size)
        save_jpg(image, root / f"{name}.jpg")
        for truth, observer, drawn in ((first, "1stHO", (3,)), (second, "2ndHO", (3, 4))):
            vessels = np.where(np.isin(label, drawn), 255, 0).astype(np.uint8)
            save_png(vessels, root / f"{name}_{observer}.png")
            truth.add(root, root / f"{name}_{observer}.png", vessels)
    first.write()
    second.write("stored_2ndHO.json")
    write_classes(root / "classes.yaml", ["background", "vessel"])


def make_tiles(out: Path, size: int):
    """A set shipped as tiles with the same file names in each: `Tile 1/images/patch_0.png` with
    `Tile 1/masks/patch_0.png` (class indices, 255 void), tiles 1 to 3."""
    root = out / "tiles"
    truth = StoredTruth()
    for t in (1, 2, 3):
        for n in range(2):
            image, label = scene(60 + 10 * t + n, size)
            save_png(image, root / f"Tile {t}" / "images" / f"patch_{n}.png")
            save_png(encode(label, "folder"), root / f"Tile {t}" / "masks" / f"patch_{n}.png")
            truth.add(root, root / f"Tile {t}" / "masks" / f"patch_{n}.png", encode(label, "folder"))
    truth.write()
    write_classes(root / "classes.yaml", CLASS_NAMES)


def make_fake_datasets(out, size: int = 48) -> Path:
    out = Path(out)
    for make in (make_voc, make_nyud, make_siftflow, make_folder, make_masks_as_shipped, make_cityscapes,
                 make_retina, make_hrf, make_chase, make_tiles):
        make(out, size)
    return out
