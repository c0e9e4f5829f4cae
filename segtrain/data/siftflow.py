"""SIFT Flow (docs/reference.md section 1): 256x256 outdoor scenes, 33 semantic and 3 geometric classes in .mat files.
task=both trains FCN's two-headed net: labels (2, H, W), the network's 36 channels split 33 + 3."""
import numpy as np

from ..errors import SegtrainError
from .files import IMAGENET_STD, FileDataset, read_image, read_mat, read_split, require_root, rgb_mean
from .palette import voc_palette

SEMANTIC_CLASSES = ("awning", "balcony", "bird", "boat", "bridge", "building", "bus", "car", "cow", "crosswalk",
                    "desert", "door", "fence", "field", "grass", "moon", "mountain", "person", "plant", "pole",
                    "river", "road", "rock", "sand", "sea", "sidewalk", "sign", "sky", "staircase", "streetlight",
                    "sun", "tree", "window")
GEOMETRIC_CLASSES = ("sky", "horizontal", "vertical")
FOLDER = "spatial_envelope_256x256_static_8outdoorcategories"
LAYOUT = (f"a folder holding Images/{FOLDER}/<id>.jpg, SemanticLabels/{FOLDER}/<id>.mat, "
          f"GeoLabels/{FOLDER}/<id>.mat, trainval.txt and test.txt")
SOURCE = "http://people.csail.mit.edu/celiu/LabelTransfer/code.html (SiftFlowDataset.zip), as FCN uses it"


def semantic_label(path) -> np.ndarray:
    """0 = void, 1..33 -> 0..32; void -> 255."""
    return (read_mat(path, "S").astype(np.int64) - 1).astype(np.uint8)


def geometric_label(path) -> np.ndarray:
    """-1 = void, 1..3 -> 0..2: -1 becomes 0, then minus 1, so void -> 255."""
    label = read_mat(path, "S").astype(np.int64)
    label[label == -1] = 0
    return (label - 1).astype(np.uint8)


class SiftFlow(FileDataset):
    mean = rgb_mean((114.578, 115.294, 108.353))
    std = IMAGENET_STD

    def __init__(self, cfg, split: str):
        self.palette = voc_palette()
        self.root = require_root(cfg.root, cfg.name, LAYOUT, SOURCE)
        self.task = str(cfg.task)
        if self.task not in ("semantic", "geometric", "both"):
            raise SegtrainError(f"dataset.task={self.task}: expected semantic, geometric or both")
        if self.task == "both":  # one network, two heads: 33 semantic then 3 geometric channels, summed loss
            self.tasks = (("semantic", SEMANTIC_CLASSES), ("geometric", GEOMETRIC_CLASSES))
            self.class_names = SEMANTIC_CLASSES + GEOMETRIC_CLASSES
        else:
            self.class_names = SEMANTIC_CLASSES if self.task == "semantic" else GEOMETRIC_CLASSES
        super().__init__(read_split(self.root / f"{split}.txt"), self.load_item)

    def item_files(self, index: int):
        """The label scan's cache key: both label files (either task may be read)."""
        image_id = self.items[index]
        return [self.root / sub / FOLDER / f"{image_id}.mat" for sub in ("SemanticLabels", "GeoLabels")]

    def load_item(self, image_id: str):
        image = read_image(self.root / "Images" / FOLDER / f"{image_id}.jpg")
        semantic_path = self.root / "SemanticLabels" / FOLDER / f"{image_id}.mat"
        geometric_path = self.root / "GeoLabels" / FOLDER / f"{image_id}.mat"
        if self.task == "semantic":
            return image, semantic_label(semantic_path), semantic_path
        if self.task == "geometric":
            return image, geometric_label(geometric_path), geometric_path
        labels = [semantic_label(semantic_path), geometric_label(geometric_path)]
        if labels[0].shape != labels[1].shape:
            raise SegtrainError(f"{geometric_path}: {labels[1].shape} differs from {semantic_path}'s {labels[0].shape}")
        return image, np.stack(labels), f"{semantic_path} or {geometric_path}"
