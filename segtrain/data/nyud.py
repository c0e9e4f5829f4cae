"""NYUDv2 in the layout FCN reads (docs/reference.md section 1): 40 classes, RGB, depth and HHA images per id.

Modalities: rgb, depth (log depth, 1 channel), hha, rgbd (early fusion: one 4-channel input) and rgb_hha (late
fusion: the input holds RGB then HHA and the model is one network per stream, scores summed)."""
import numpy as np

from ..errors import SegtrainError
from .files import IMAGENET_STD, FileDataset, read_image, read_mat, read_split, require_root, rgb_mean
from .palette import voc_palette

CLASS_NAMES = ("wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture",
               "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat",
               "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel", "shower curtain",
               "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag",
               "otherstructure", "otherfurniture", "otherprop")
RGB = dict(mean=rgb_mean((116.190, 97.203, 92.318)), std=IMAGENET_STD, scale=(255.0,) * 3)
HHA = dict(mean=tuple(v / 255 for v in (132.431, 94.076, 118.477)), std=IMAGENET_STD, scale=(255.0,) * 3)  # PNG order
LOG_DEPTH = dict(mean=(7.844,), std=(1.0,), scale=(1.0,))  # log(depth) is used as it is, less its mean
MODALITIES = {"rgb": (RGB,), "depth": (LOG_DEPTH,), "hha": (HHA,), "rgbd": (RGB, LOG_DEPTH), "rgb_hha": (RGB, HHA)}

LAYOUT = ("a folder holding data/images/img_<id>.png, data/depth/img_<id>.png, data/hha/img_<id>.png, "
          "segmentation/img_<id>.mat and {train,val,test}.txt (ids like 5449)")
SOURCE = ("FCN's nyud data (https://github.com/shelhamer/fcn.berkeleyvision.org/tree/master/data/nyud), or convert "
          "nyu_depth_v2_labeled.mat with scripts/nyud_from_mat.py")


def read_log_depth(path) -> np.ndarray:
    depth = read_image(path, mode=None).astype(np.float32)
    if depth.ndim != 2 or (depth <= 0).any():
        raise SegtrainError(f"{path}: depth must be one channel with every value > 0 (FCN takes its log)")
    return np.log(depth)


class NYUDv2(FileDataset):
    class_names = CLASS_NAMES

    def __init__(self, cfg, split: str):
        self.palette = voc_palette()
        self.root = require_root(cfg.root, cfg.name, LAYOUT, SOURCE)
        self.modality = str(cfg.modality)
        parts = MODALITIES[self.modality]
        self.mean, self.std, self.scale = (sum((p[k] for p in parts), ()) for k in ("mean", "std", "scale"))
        # rgb_hha is two streams; rgbd one 4-channel stream
        self.input_channels = (3, 3) if self.modality == "rgb_hha" else (len(self.mean),)
        if split == "trainval" and not (self.root / "trainval.txt").is_file():
            ids = read_split(self.root / "train.txt") + read_split(self.root / "val.txt")
        else:
            ids = read_split(self.root / f"{split}.txt")
        super().__init__(ids, self.load_item)

    def item_files(self, index: int):
        """The label scan's cache key: the label (images are read for their size, but keyed by the label)."""
        return [self.root / "segmentation" / f"img_{self.items[index]}.mat"]

    def load_item(self, image_id: str):
        data = self.root / "data"
        channels = []
        if self.modality in ("rgb", "rgbd", "rgb_hha"):
            channels.append(read_image(data / "images" / f"img_{image_id}.png"))
        if self.modality in ("depth", "rgbd"):
            channels.append(read_log_depth(data / "depth" / f"img_{image_id}.png")[..., None])
        if self.modality in ("hha", "rgb_hha"):
            channels.append(read_image(data / "hha" / f"img_{image_id}.png"))
        shapes = {c.shape[:2] for c in channels}
        label_path = self.root / "segmentation" / f"img_{image_id}.mat"
        if len(shapes) > 1:
            raise SegtrainError(f"{data}/*/img_{image_id}.png: the {self.modality} images differ in size {shapes}")
        # 0 = void, 1..40 = classes: shift down by one, void wraps to 255 (ignored), as FCN does
        label = read_mat(label_path, "segmentation").astype(np.uint8) - np.uint8(1)
        return np.concatenate([c.astype(np.float32) for c in channels], axis=2), label, label_path


def convert_labeled_mat(labeled_mat, class_mapping_mat, splits_mat, out) -> int:
    """Writes FCN's layout from the raw NYUDv2 download: nyu_depth_v2_labeled.mat (MATLAB v7.3, read with h5py;
    `images` (N, 3, W, H), `depths` (N, W, H) in metres, `labels` (N, W, H) 0..894), classMapping40.mat
    (`mapClass`: 894 -> 40 classes) and splits.mat (1-based `trainNdxs`, `testNdxs`). Ids are 5000 + index.
    Depth is stored in millimetres (uint16, at least 1, so its log exists). HHA needs Gupta et al.'s encoder
    and camera data, so data/hha/ is left to the user. Returns the number of images written."""
    from pathlib import Path

    import h5py
    import scipy.io
    from PIL import Image

    out = Path(out)
    for sub in ("data/images", "data/depth", "segmentation"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    map_class = read_mat(class_mapping_mat, "mapClass").ravel().astype(np.uint8)
    lookup = np.concatenate([[0], map_class])  # label 0 (unlabelled) stays 0
    with h5py.File(labeled_mat, "r") as raw:
        images, depths, labels = raw["images"], raw["depths"], raw["labels"]
        for index in range(images.shape[0]):
            image_id = 5001 + index
            Image.fromarray(np.ascontiguousarray(images[index].transpose(2, 1, 0))).save(
                out / "data" / "images" / f"img_{image_id}.png")
            depth_mm = np.clip(np.round(depths[index].T * 1000), 1, 65535).astype(np.uint16)
            Image.fromarray(depth_mm).save(out / "data" / "depth" / f"img_{image_id}.png")
            label40 = lookup[labels[index].T.astype(np.int64)]
            scipy.io.savemat(out / "segmentation" / f"img_{image_id}.mat", {"segmentation": label40})
    for key, name in (("trainNdxs", "trainval"), ("testNdxs", "test")):
        ids = read_mat(splits_mat, key).ravel().astype(int)
        (out / f"{name}.txt").write_text("".join(f"{5000 + i}\n" for i in ids))
    return images.shape[0]
