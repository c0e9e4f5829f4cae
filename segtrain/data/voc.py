"""PASCAL VOC 2012, SBD and their combinations (train_aug, seg11valid), read as they unpack (docs/reference.md 1)."""
from pathlib import Path

from ..errors import SegtrainError
from .files import IMAGENET_STD, FileDataset, read_image, read_label_png, read_mat, read_split, require_root, rgb_mean
from .palette import voc_palette

CLASS_NAMES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
FCN_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
VOC_SPLITS = ("train", "val", "trainval")
SPLITS = VOC_SPLITS + ("train_aug", "sbd_train", "sbd_val", "seg11valid")

VOC_LAYOUT = ("VOCdevkit/VOC2012/ holding JPEGImages/<id>.jpg, SegmentationClass/<id>.png and "
              "ImageSets/Segmentation/{train,val,trainval}.txt")
VOC_SOURCE = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ (VOCtrainval_11-May-2012.tar)"
SBD_LAYOUT = "benchmark_RELEASE/dataset/ holding img/<id>.jpg, cls/<id>.mat, train.txt and val.txt"
SBD_SOURCE = "http://home.bharathh.info/pubs/codes/SBD/download.html (benchmark.tgz)"


def _voc_item(root: Path, image_id: str):
    return root / "JPEGImages" / f"{image_id}.jpg", root / "SegmentationClass" / f"{image_id}.png"


def _sbd_item(sbd: Path, image_id: str):
    return sbd / "img" / f"{image_id}.jpg", sbd / "cls" / f"{image_id}.mat"


def load_item(item):
    image_path, label_path = item
    image = read_image(image_path)
    if label_path.suffix == ".mat":  # SBD: GTcls.Segmentation, values 0..20
        label = read_mat(label_path, "GTcls")[0]["Segmentation"][0]
    else:
        label = read_label_png(label_path)
    return image, label, label_path


class VOCSegmentation(FileDataset):
    """Splits: VOC's train / val / trainval; SBD's sbd_train / sbd_val (FCN trains on sbd_train); train_aug, the
    10582 images of (VOC train + SBD train + SBD val) - VOC val, labelled by VOC where VOC has a label, else by
    SBD, or by PNGs in `aug_label_dir` ('P' or 'L', e.g. SegmentationClassAug); and seg11valid, FCN's 736 VOC2011
    val images not in SBD train, from ImageSets/Segmentation/seg11valid.txt when present, else computed from
    `voc2011_root` and `sbd_root`."""

    class_names = CLASS_NAMES
    mean = rgb_mean(FCN_MEAN_BGR)
    std = IMAGENET_STD

    def __init__(self, cfg, split: str):
        self.palette = voc_palette()
        if split not in SPLITS:
            raise SegtrainError(f"dataset={cfg.name}: split {split!r} is not one of {', '.join(SPLITS)}")
        root = require_root(cfg.root, cfg.name, VOC_LAYOUT, VOC_SOURCE)
        split_dir = root / "ImageSets" / "Segmentation"
        if split in VOC_SPLITS:
            items = [_voc_item(root, i) for i in read_split(split_dir / f"{split}.txt")]
        elif split in ("sbd_train", "sbd_val"):
            sbd = self._sbd_root(cfg, split)
            items = [_sbd_item(sbd, i) for i in read_split(sbd / f"{split[4:]}.txt")]
        elif split == "train_aug":
            sbd = self._sbd_root(cfg, split)
            ids = set(read_split(split_dir / "train.txt")) | set(read_split(sbd / "train.txt")) | set(
                read_split(sbd / "val.txt"))
            items = [self._aug_item(cfg, root, sbd, i) for i in sorted(ids - set(read_split(split_dir / "val.txt")))]
        else:  # seg11valid
            listed = split_dir / "seg11valid.txt"
            if listed.is_file():
                items = [_voc_item(root, i) for i in read_split(listed)]
            else:
                voc2011 = require_root(cfg.voc2011_root, cfg.name, f"(for seg11valid, as {listed} is missing) "
                                       "TrainVal/VOCdevkit/VOC2011/ with ImageSets/Segmentation/val.txt",
                                       "http://host.robots.ox.ac.uk/pascal/VOC/voc2011/, or copy FCN's "
                                       "data/pascal/seg11valid.txt to " + str(listed))
                sbd_train = set(read_split(self._sbd_root(cfg, split) / "train.txt"))
                val = read_split(voc2011 / "ImageSets" / "Segmentation" / "val.txt")
                items = [_voc_item(voc2011, i) for i in val if i not in sbd_train]
        super().__init__(items, load_item)

    @staticmethod
    def _sbd_root(cfg, split: str) -> Path:
        return require_root(cfg.sbd_root, cfg.name, f"(dataset.sbd_root, for split {split}) {SBD_LAYOUT}",
                            SBD_SOURCE)

    @staticmethod
    def _aug_item(cfg, root: Path, sbd: Path, image_id: str):
        voc_image, voc_label = _voc_item(root, image_id)
        sbd_image, sbd_label = _sbd_item(sbd, image_id)
        image = voc_image if voc_image.is_file() else sbd_image
        if cfg.aug_label_dir:
            return image, Path(cfg.aug_label_dir) / f"{image_id}.png"
        return image, voc_label if voc_label.is_file() else sbd_label
