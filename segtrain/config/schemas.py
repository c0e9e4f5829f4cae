"""The typed schemas of every config group, each value's accepted range beside its field, and the one table that
registers them in Hydra's ConfigStore.

Each YAML option names its schema in its defaults list (`- sgd_schema`), so an unknown key or a value of the wrong
type fails while Hydra composes the config. Ranges (`whole(1000, ge=1)`) and the options a key works with
(`only="bootstrap"`) are checked by segtrain.config.checks, before any work starts. Each default is stated here
once; a YAML option states only what differs from it."""
import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, ClassVar, Dict, List, Optional, Tuple

from omegaconf import MISSING


# --- how a field states its range and the options it works with --------------------------------------------------

@dataclass(frozen=True)
class Check:
    """A value's test and how the one-line error describes what it expects."""
    test: Callable[[Any], bool]
    expected: str


@dataclass(frozen=True)
class Only:
    """The key does something only where the sibling key `selector` is one of `options` (`SET`: is not null).
    Another value there makes a setting of this key an error naming why; `why` gives, for some of those other
    values, the reason the key means nothing there."""
    selector: str
    options: Tuple[Any, ...]
    why: Tuple[Tuple[str, str], ...] = ()  # (a value of the selector, why the key means nothing there)

    def applies(self, node) -> bool:
        value = node.get(self.selector)
        if self.options == (SET,):
            return value is not None
        return str(value) in self.options

    def describe(self) -> str:
        return f"{self.selector} is set" if self.options == (SET,) else \
            f"{self.selector}={'|'.join(map(str, self.options))}"


SET = "<set>"  # Only(selector, SET): the sibling key must not be null


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bounds(ge=None, gt=None, le=None, lt=None) -> Tuple[Callable[[Any], bool], str]:
    """(test, text) of a closed or open interval, e.g. 'in [0, 1)' or '>= 1'."""
    def test(v):
        return ((ge is None or v >= ge) and (gt is None or v > gt) and (le is None or v <= le)
                and (lt is None or v < lt))

    low = f"[{ge:g}" if ge is not None else f"({gt:g}" if gt is not None else None
    high = f"{le:g}]" if le is not None else f"{lt:g})" if lt is not None else None
    if low and high:
        text = f"in {low}, {high}"
    elif low:
        text = (f">= {ge:g}" if ge is not None else f"> {gt:g}")
    elif high:
        text = (f"<= {le:g}" if le is not None else f"< {lt:g}")
    else:
        text = ""
    return test, text


def _field(default, check: Optional[Check], only, help=None):
    metadata = {} if help is None else {"help": help}  # a checkpoint app's own key: its line in --help
    if check is not None:
        metadata["check"] = check
    if only is not None:
        metadata["only"] = only if isinstance(only, Only) else Only("name", (only,) if isinstance(only, str)
                                                                    else tuple(only))
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def number(default=MISSING, *, ge=None, gt=None, le=None, lt=None, what="a number", only=None, help=None):
    """A float field in a range: `number(0.5, ge=0, lt=1)` accepts 0 <= v < 1, else 'expected a number in [0, 1)'.
    `help`: what the key does, for a checkpoint app's --help (its own keys)."""
    test, text = _bounds(ge, gt, le, lt)
    return _field(default, Check(lambda v: _is_number(v) and test(v), f"{what} {text}".strip()), only, help)


def whole(default=MISSING, *, ge=None, le=None, what="a whole number", only=None, help=None):
    """An int field in a range."""
    test, text = _bounds(ge=ge, le=le)
    return _field(default, Check(lambda v: isinstance(v, int) and not isinstance(v, bool) and test(v),
                                 f"{what} {text}".strip()), only, help)


def numbers(default=MISSING, *, ge=None, gt=None, le=None, lt=None, length=None, min_length=1, what="numbers",
            only=None):
    """A list of numbers, each in a range, with `length` entries (or at least `min_length`)."""
    test, text = _bounds(ge, gt, le, lt)
    count = f"{length}" if length is not None else f"{min_length} or more"
    return _field(default, Check(
        lambda v: (isinstance(v, (list, tuple)) and (len(v) == length if length is not None else len(v) >= min_length)
                   and all(_is_number(x) and test(x) for x in v)),
        f"a list of {count} {what} {text}".strip()), only)


def checked(default, test: Callable[[Any], bool], expected: str, only=None, help=None):
    """A field with a test of its own (a value that is a word or a number, say)."""
    return _field(default, Check(test, expected), only, help)


def option(default, only=None, help=None):
    """A field whose type (bool, str, enum) is its whole check; `only` names the options it works with."""
    return _field(default, None, only, help)


def field_check(schema, name: str) -> Optional[Check]:
    f = next((f for f in dataclasses.fields(schema) if f.name == name), None)
    return None if f is None else f.metadata.get("check")


class Choice(str, Enum):
    """A config value from a fixed set; str() gives the value itself (`bf16`), as the code below the config
    compares and passes it."""

    def __str__(self) -> str:
        return str(self.value)

    __format__ = str.__format__


# --- models -------------------------------------------------------------------------------------------------------

@dataclass
class ModelConfig:
    """What every network takes. Each family's schema below adds only the options its networks honour; `always`
    names what a family has no option for, as key -> (the value it always has, why), for the error that a
    `model.KEY=` override gets and for checkpoints written when every model stored those keys."""
    always: ClassVar[Dict[str, Tuple[Any, str]]] = {}
    name: str = MISSING
    width: float = number(1.0, gt=0, le=16, what="a channel multiplier")  # 1.0 is the published network
    frozen_bn: bool = False  # BN as fixed affine maps with the (pretrained) statistics, as DeepLab v2 trains
    init_from: Optional[str] = None  # a segtrain checkpoint whose same-named, same-shaped weights start this model
    init_from_strict: bool = option(True, only=Only("init_from", (SET,)))  # another shape is an error (false: skipped)
    crf: Optional[str] = None  # crfrnn: CRF-as-RNN, mean-field iterations as the last layers, trained end to end
    # mean-field iterations while training (the paper's 5) and when evaluating (the paper's 10)
    crf_iterations: int = whole(5, ge=1, only=Only("crf", ("crfrnn",)))
    crf_test_iterations: int = whole(10, ge=1, only=Only("crf", ("crfrnn",)))
    # the bilateral kernel's position scale (pixels) and colour scale (0..255), the spatial kernel's position scale
    # (the release's theta_alpha, theta_beta, theta_gamma)
    crf_sigma_alpha: float = number(160.0, gt=0, only=Only("crf", ("crfrnn",)))
    crf_sigma_beta: float = number(3.0, gt=0, only=Only("crf", ("crfrnn",)))
    crf_sigma_gamma: float = number(3.0, gt=0, only=Only("crf", ("crfrnn",)))


BILINEAR_LOGITS = "its logits are upsampled by bilinear interpolation, which has nothing to learn"
DROPOUT = dict(ge=0, lt=1, what="a probability")


@dataclass
class ImageNetBackboneConfig(ModelConfig):
    pretrained: Optional[str] = None  # imagenet (torchvision's weights, through its cache) or a state dict's path


@dataclass
class FCNConfig(ImageNetBackboneConfig):
    """fcn32s, fcn16s, fcn8s, fcn8s_atonce, fcn32s_fixed (VGG16) and fcn_alexnet."""
    batch_norm: bool = False  # BN after every backbone conv (torchvision's vgg16_bn layout)
    dropout: float = number(0.5, **DROPOUT)  # after fc6 and fc7
    learned_upsampling: bool = False  # the release keeps the bilinear upsampling fixed


@dataclass
class FCNGoogLeNetConfig(ImageNetBackboneConfig):
    always: ClassVar[Dict[str, Tuple[Any, str]]] = {
        "batch_norm": (True, "torchvision's GoogLeNet has BN after every conv")}
    dropout: float = number(0.4, **DROPOUT)  # before the score layer, as GoogLeNet's classifier
    learned_upsampling: bool = False


@dataclass
class DeepLabLargeFOVConfig(ImageNetBackboneConfig):
    always: ClassVar[Dict[str, Tuple[Any, str]]] = {"learned_upsampling": (False, BILINEAR_LOGITS)}
    batch_norm: bool = False
    dropout: float = number(0.5, **DROPOUT)  # after fc6 and fc7


@dataclass
class DeepLabASPPConfig(ImageNetBackboneConfig):
    always: ClassVar[Dict[str, Tuple[Any, str]]] = {
        "batch_norm": (True, "ResNet-101 has BN after every conv (model.frozen_bn=true fixes it, as DeepLab "
                             "v2 trains)"),
        "dropout": (0.0, "DeepLab v2's ResNet-101 uses none"),
        "learned_upsampling": (False, BILINEAR_LOGITS)}


@dataclass
class DeconvNetConfig(ImageNetBackboneConfig):
    always: ClassVar[Dict[str, Tuple[Any, str]]] = {
        "learned_upsampling": (True, "its deconvolutions are the decoder, always learned")}
    batch_norm: bool = True  # the paper's VGG16 with BN
    dropout: float = number(0.5, **DROPOUT)  # after fc6 and fc7


@dataclass
class UNetConfig(ModelConfig):
    always: ClassVar[Dict[str, Tuple[Any, str]]] = {
        "learned_upsampling": (True, "its up-convolutions change the channel count and are always learned"),
        "pretrained": (None, "U-Net is trained from scratch (it has no pretrained backbone to load)")}
    batch_norm: bool = False  # unet_same: true
    dropout: float = number(0.5, **DROPOUT)  # at the end of the contracting path


@dataclass
class FRRNConfig(ModelConfig):
    always: ClassVar[Dict[str, Tuple[Any, str]]] = {
        "batch_norm": (True, "FRRN has BN after every 3x3 convolution"),
        "dropout": (0.0, "FRRN has no dropout layers"),
        "learned_upsampling": (False, "FRRN upsamples with fixed bilinear and nearest interpolation"),
        "pretrained": (None, "FRRN is trained from scratch (there are no ImageNet weights for it)")}


# --- datasets -----------------------------------------------------------------------------------------------------

MIN_SIDE = 8  # pixels: an image smaller than this on its short side leaves nothing to segment
SEED = dict(ge=0, le=2 ** 32 - 1, what="a seed")  # numpy's seeds


def _split(value) -> bool:
    return isinstance(value, str) and value != "" or (
        isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(v, str) and v for v in value))


@dataclass
class DatasetConfig:
    name: str = MISSING
    # None: the dataset's own count (e.g. from the folder dataset's classes YAML)
    num_classes: Optional[int] = whole(None, ge=1, le=255, what="a class count")
    # a split's name; dataset=folder also takes a list read as one split (with {split} in image_dir/mask_dir,
    # one folder each: ["Tile 1", "Tile 2"]). Any, not str: the dataset group's schema merges into this node
    train_split: Any = checked("train", _split, "a split name or a list of them")
    val_split: Any = checked("val", _split, "a split name or a list of them")
    # resize images (labels nearest) by this factor, or so that the shorter side has this many pixels (not both),
    # for training and evaluation
    scale: Optional[float] = number(None, gt=0, what="a factor")
    short_side: Optional[int] = whole(None, ge=MIN_SIDE, what="a whole number of pixels")


@dataclass
class VOCDatasetConfig(DatasetConfig):
    root: Optional[str] = None  # VOCdevkit/VOC2012
    sbd_root: Optional[str] = None  # benchmark_RELEASE/dataset: splits train_aug, sbd_train, sbd_val
    voc2011_root: Optional[str] = None  # TrainVal/VOCdevkit/VOC2011: seg11valid without seg11valid.txt
    aug_label_dir: Optional[str] = None  # converted train_aug labels ('P' or 'L' PNGs), e.g. SegmentationClassAug


class NYUDModality(Choice):
    rgb = "rgb"
    depth = "depth"
    hha = "hha"
    rgbd = "rgbd"  # early fusion: one 4-channel input
    rgb_hha = "rgb_hha"  # late fusion: a network per stream, scores summed


@dataclass
class NYUDDatasetConfig(DatasetConfig):
    root: Optional[str] = None
    modality: NYUDModality = NYUDModality.rgb


class SiftFlowTask(Choice):
    semantic = "semantic"
    geometric = "geometric"
    both = "both"  # one network with two heads (33 + 3 channels), losses summed, metrics per task


@dataclass
class SiftFlowDatasetConfig(DatasetConfig):
    root: Optional[str] = None
    task: SiftFlowTask = SiftFlowTask.semantic


@dataclass
class CityscapesDatasetConfig(DatasetConfig):
    root: Optional[str] = None  # holding leftImg8bit/ and gtFine/


def _values(value) -> bool:
    """Stored values 0..65535 or [R, G, B] colours 0..255."""
    def one(v):
        if isinstance(v, (list, tuple)):
            return len(v) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in v)
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 65535
    return isinstance(value, (list, tuple)) and all(one(v) for v in value)


def _intensity_range(value) -> bool:
    if value in ("auto", "percentile"):
        return True
    return (isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value)
            and value[0] < value[1])


@dataclass
class FolderDatasetConfig(DatasetConfig):
    root: Optional[str] = None
    classes: Optional[str] = None  # YAML: `classes: [{name: ..., color: [R, G, B]}, ...]`, one per mask value
    image_dir: str = "images"  # relative to root; "{split}" is replaced by the split's name
    mask_dir: str = "masks"  # e.g. "{split}annot" (CamVid)
    image_suffix: Optional[str] = None  # the end of an image's name (e.g. "_training.tif"; null: its extension)
    mask_suffix: str = ".png"  # replaces it to name the mask: <mask_dir>/<name><mask_suffix>, e.g. "_mask.png"
    # index (class indices) | rgb (colours from the classes YAML) | auto (by the file)
    mask_format: str = checked("auto", lambda v: v in ("auto", "index", "rgb"), "auto, index or rgb")
    # stored value of class 0, 1, ...: [0, 255] for 0/255 binary masks
    label_values: Optional[List[int]] = checked(None, lambda v: v is None or (_values(v) and len(v) > 0),
                                                "a list of stored values 0..65535, one per class")
    # stored values ([R, G, B] colours) meaning void
    ignore_values: List[Any] = checked([], _values, "a list of stored values 0..65535 or [R, G, B] colours")
    # lossy (JPEG) masks: a value or colour within this (per channel) of exactly one class's takes that class
    mask_tolerance: int = whole(0, ge=0, le=127, what="a distance in stored values")
    # {stored value: class index} for many-to-one codes; colours as "[R,G,B]" keys in YAML, RxGxB on the command
    # line (dataset.label_map={128x64x128:0}). Any, not a typed dict: Hydra then merges a command-line dict in
    label_map: Any = None
    # a stored value label_map does not list: error | ignore (void)
    unmapped: str = checked("error", lambda v: v in ("error", "ignore"), "error or ignore",
                            only=Only("label_map", (SET,)))
    roi_dir: Optional[str] = None  # regions of interest (e.g. a field of view): 0 outside, ignored there
    roi_suffix: str = option(".png", only=Only("roi_dir", (SET,)))  # <roi_dir>/<name><roi_suffix>, paired as masks
    # no val split on disk: hold out this fraction of train (seeded)
    val_fraction: Optional[float] = number(None, gt=0, lt=1, what="a fraction")
    split_seed: int = whole(0, **SEED, only=Only("val_fraction", (SET,)))  # the seed of that hold-out
    # auto (as the files hold: 1 for grey, else 3) | 1 | 3
    channels: str = checked("auto", lambda v: str(v) in ("auto", "1", "3"), "auto, 1 or 3")
    # apply (turn photos as their EXIF tag says, as shown) | ignore (as stored)
    exif_orientation: str = checked("apply", lambda v: v in ("apply", "ignore"), "apply or ignore")
    # 16/32-bit and float images read as RGB: auto (the type's full range; floats 0..1) | [lo, hi] | percentile
    intensity_range: Any = checked("auto", _intensity_range, "auto, percentile or [LO, HI] with LO < HI")
    # per channel in 0..1; None: ImageNet's (RGB) or 0.449/0.226 (grey)
    mean: Optional[List[float]] = numbers(None, ge=0, le=1, what="means in 0..1")
    std: Optional[List[float]] = numbers(None, gt=0, what="standard deviations")


@dataclass
class SyntheticDatasetConfig(DatasetConfig):
    num_train: int = whole(1000, ge=1, what="a whole number of images")
    num_val: int = whole(100, ge=1, what="a whole number of images")
    image_size: int = whole(64, ge=MIN_SIDE, le=4096, what="a whole number of pixels")
    seed: int = whole(0, **SEED)  # the scenes' seed, independent of the training seed


# --- optimisation -------------------------------------------------------------------------------------------------

@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = number(MISSING, gt=0, what="a learning rate")
    weight_decay: float = number(0.0, ge=0)
    bias_lr_mult: float = number(1.0, ge=0)  # FCN: 2
    bias_decay: bool = True  # FCN: false (biases get no weight decay)
    head_lr_mult: float = number(1.0, ge=0)  # DeepLab: 10 for the classifier (its biases then 10 x bias_lr_mult)


@dataclass
class SGDConfig(OptimizerConfig):
    momentum: float = number(0.9, ge=0, lt=1)
    nesterov: bool = False


@dataclass
class AdamWConfig(OptimizerConfig):
    betas: List[float] = numbers([0.9, 0.999], ge=0, lt=1, length=2)
    eps: float = number(1e-8, gt=0)


class ScheduleName(Choice):
    fixed = "fixed"
    step = "step"
    poly = "poly"
    cosine = "cosine"


@dataclass
class ScheduleConfig:
    name: ScheduleName = MISSING
    power: float = number(0.9, ge=0, only="poly")  # poly: lr = base_lr * (1 - iter / max_iters) ** power
    # step: lr x gamma every step_size iterations (DeepLab v1: 2000)
    step_size: int = whole(2000, ge=1, what="a whole number of iterations", only="step")
    gamma: float = number(0.1, gt=0, only="step")
    # linear warm-up from warmup_start x lr over the first iterations (any schedule)
    warmup_iters: int = whole(0, ge=0, what="a whole number of iterations")
    warmup_start: float = number(0.001, ge=0, le=1, what="a fraction of the learning rate")


class AugmentName(Choice):
    none = "none"
    deeplab = "deeplab"
    unet = "unet"
    photometric = "photometric"


@dataclass
class AugmentConfig:
    name: AugmentName = AugmentName.none
    # a random crop_size x crop_size crop of every training sample (padded with the mean, labels with 255, where
    # the image is smaller): DeepLab's crop, or patch training with any augment; null: whole images
    crop_size: Optional[int] = whole(None, ge=MIN_SIDE, le=8192, what="a whole number of pixels")
    scale_min: float = number(0.5, gt=0, only="deeplab")  # deeplab: random scale range
    scale_max: float = number(1.5, gt=0, only="deeplab")
    flip: bool = option(True, only=("deeplab", "unet"))  # deeplab: horizontal; unet: horizontal and vertical
    grid: int = whole(3, ge=1, only="unet")  # unet: grid cells per side of the elastic deformation
    magnitude: int = whole(10, ge=0, what="a displacement in pixels", only="unet")  # unet: largest grid point move
    # photometric: ColorJitter's ranges (albumentations: brightness, contrast, saturation >= 0; hue in [0, 0.5])
    brightness: float = number(0.2, ge=0, only="photometric")
    contrast: float = number(0.2, ge=0, only="photometric")
    saturation: float = number(0.2, ge=0, only="photometric")
    hue: float = number(0.05, ge=0, le=0.5, only="photometric")


class LossName(Choice):
    cross_entropy = "cross_entropy"
    unet_weighted = "unet_weighted"
    bootstrap = "bootstrap"
    dice = "dice"  # soft Dice over the softmax (Milletari et al. 2016)
    dice_ce = "dice_ce"  # soft Dice + cross-entropy (nnU-Net, Isensee et al. 2021)
    focal = "focal"  # Lin et al. 2017
    lovasz = "lovasz"  # Lovasz-softmax (Berman et al. 2018)


CLASS_WEIGHTINGS = ("median_frequency", "inverse_log")  # computed from the train split's label counts


def _class_weights(value) -> bool:
    return value is None or value in CLASS_WEIGHTINGS or (
        isinstance(value, (list, tuple)) and len(value) > 0 and all(_is_number(w) and w >= 0 for w in value)
        and any(w > 0 for w in value))


@dataclass
class LossConfig:
    name: LossName = LossName.cross_entropy
    # mean over the labelled pixels; false sums them, as the FCN Caffe release does
    normalize: bool = option(True, only=("cross_entropy", "unet_weighted"))
    # one number per class (per task, concatenated, for multi-task data), or median_frequency / inverse_log:
    # computed from the train split's label counts (segtrain.data.scan)
    # (focal: its alpha_t; dice and dice_ce: a weighted mean over the classes' Dice terms)
    class_weights: Optional[Any] = checked(
        None, _class_weights, "null, median_frequency, inverse_log or a list of weights >= 0 (not all 0), one per "
        "class", only=Only("name", ("cross_entropy", "bootstrap", "dice", "dice_ce", "focal"), why=(
            ("lovasz", "Lovasz-softmax averages each present class's IoU surrogate with the same weight whatever its "
                       "pixel count, so it is balanced already; use loss=dice_ce or loss=focal to weigh classes"),
            ("unet_weighted", "U-Net's loss computes its own class-balancing weights from each label map"))))
    gamma: float = number(2.0, ge=0, what="a focusing exponent", only="focal")  # focal: (1 - p_t)^gamma; 0: CE
    w0: float = number(10.0, ge=0, only="unet_weighted")  # unet_weighted: border weight between touching objects
    sigma: float = number(5.0, gt=0, what="a width in pixels", only="unet_weighted")  # its width
    # bootstrap: the hardest pixels per image in the loss (FRRN: 512 x 64 = 32768), or this fraction of each
    # image's labelled pixels
    top_k: Optional[int] = whole(None, ge=1, what="a whole number of pixels", only="bootstrap")
    top_fraction: Optional[float] = number(None, gt=0, le=1, what="a fraction", only="bootstrap")
    # FCN's p: each cell of the final score map is kept in the loss with probability p
    sample_rate: float = number(1.0, gt=0, le=1, what="a probability")


# --- the trainer --------------------------------------------------------------------------------------------------

class Amp(Choice):
    off = "off"
    fp16 = "fp16"
    bf16 = "bf16"


class Device(Choice):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


MONITORS = ("mean_iu", "mean_dice", "pixel_acc")  # what trainer.monitor may name besides <class>_iu


def _workers(value) -> bool:
    return value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)


@dataclass
class TrainerConfig:
    max_iters: int = whole(20000, ge=1, what="a whole number of iterations")
    batch_size: int = whole(8, ge=1)  # the global batch: split evenly over torchrun's processes
    val_batch_size: int = whole(8, ge=1)
    # validate (and maybe write best.pt) every N iterations and at the end; write last.pt every N and at the end
    val_interval: int = whole(1000, ge=1, what="a whole number of iterations")
    ckpt_interval: int = whole(1000, ge=1, what="a whole number of iterations")
    log_interval: int = whole(20, ge=1, what="a whole number of iterations")  # loss/lr/speed to log and TensorBoard
    accumulate: int = whole(1, ge=1)  # batches whose gradients are summed per optimizer step (Caffe's iter_size)
    num_vis_images: int = whole(4, ge=0, le=64)  # image panels written to TensorBoard at each validation
    # DataLoader processes: auto (0 for generated data, else up to 8 per process) or N
    num_workers: Any = checked("auto", _workers, "auto or a whole number >= 0")
    device: Device = Device.auto
    amp: Amp = Amp.off  # fp16 (CUDA, with a GradScaler) or bf16 (CUDA, or a CPU with bfloat16 instructions)
    channels_last: bool = False  # NHWC weights and inputs (faster convolutions with AMP on recent GPUs)
    compile: bool = False  # torch.compile the training forward/backward (first iterations compile)
    sync_bn: bool = False  # torchrun with several processes: BN statistics over the global batch (CUDA)
    # auto: deterministic kernels on a CPU (free there), cuDNN autotuning on CUDA; true: bit-exact resume on CUDA too
    deterministic: Any = checked("auto", lambda v: v == "auto" or isinstance(v, bool), "auto, true or false")
    resume: Optional[str] = None  # auto: last.pt in this run dir, or a checkpoint path
    best_with_state: bool = False  # best.pt also holds the optimizer/scheduler state (resumable, ~2x larger)
    # the validation metric that decides best.pt and early stopping: mean_iu, mean_dice, pixel_acc or <class>_iu
    # (a class's name is checked once the data is loaded: segtrain.metrics.check_monitor)
    monitor: str = checked("mean_iu", lambda v: isinstance(v, str) and (v in MONITORS or len(v) > 3
                                                                        and v.endswith("_iu")),
                           f"{', '.join(MONITORS)} or CLASS_iu (a class's IU)")
    # end the run after this many validations in a row without an improvement of trainer.monitor; null: never
    early_stop_patience: Optional[int] = whole(None, ge=1, what="a whole number of validations")


@dataclass
class PublishedConfig:
    """What an experiment= recipe should reach, as data (segtrain-report shows it beside the measured figure)."""
    mean_iu: Optional[float] = number(None, ge=0, le=100, what="a mean IU in percent")  # on the split `source` names
    source: str = ""


@dataclass
class TrainConfig:
    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    schedule: ScheduleConfig = MISSING
    loss: LossConfig = MISSING
    augment: AugmentConfig = MISSING
    trainer: TrainerConfig = MISSING
    seed: int = whole(0, **SEED)
    published: Optional[PublishedConfig] = None  # set by experiment= recipes


# The training config's groups a checkpoint stores; segtrain-eval, -predict and -export take overrides of them
# (`dataset.val_split=train`) on their command line, checked against these schemas once the checkpoint is read.
STORED_GROUPS = ("model", "dataset", "optimizer", "schedule", "loss", "augment", "trainer")


# --- evaluation, prediction, export -------------------------------------------------------------------------------

class CRFBackend(Choice):
    torch = "torch"  # segtrain.crf's mean field: CPU or CUDA, batched (the default: as fast or faster, same answers)
    pydensecrf = "pydensecrf"  # Krähenbühl's C++ code, CPU only: the reference


DENSE = Only("name", ("dense",))


@dataclass
class CRFConfig:
    """segtrain-eval / segtrain-predict only: the dense CRF applied to the network's probabilities."""
    name: str = checked("none", lambda v: v in ("none", "dense"), "none or dense")
    w1: float = number(4.0, ge=0, what="a kernel weight", only=DENSE)  # bilateral (appearance) kernel weight
    sigma_alpha: float = number(121.0, gt=0, what="a scale in pixels", only=DENSE)  # its position scale
    sigma_beta: float = number(5.0, gt=0, what="a colour scale", only=DENSE)  # its colour scale (0..255)
    w2: float = number(3.0, ge=0, what="a kernel weight", only=DENSE)  # Gaussian (smoothness) kernel weight
    sigma_gamma: float = number(3.0, gt=0, what="a scale in pixels", only=DENSE)  # its position scale
    iterations: int = whole(10, ge=0, what="a whole number of mean-field iterations", only=DENSE)
    backend: CRFBackend = option(CRFBackend.torch, only=DENSE)
    # CPU processes running the CRF in parallel (either backend); 0: in the evaluating process
    workers: int = whole(2, ge=0, le=256, what="a whole number of processes", only=DENSE)
    batch_images: int = whole(4, ge=1, only=DENSE)  # torch on a GPU: images refined together


class InferenceMode(Choice):
    whole = "whole"
    slide = "slide"


@dataclass
class InferenceConfig:
    """segtrain-eval / segtrain-predict only: how each image is scored."""
    mode: InferenceMode = InferenceMode.whole
    tile: int = whole(512, ge=MIN_SIDE, what="a window size in pixels", only=Only("mode", ("slide",)))
    # slide: the fraction of a window shared with the next
    overlap: float = number(0.333, ge=0, lt=1, what="a fraction", only=Only("mode", ("slide",)))
    scales: List[float] = numbers([1.0], gt=0, le=16, what="scales")  # several: probabilities averaged
    flip: bool = False  # also score the mirrored image and average


def _folder_name(value) -> bool:
    """One folder's name: no path separator (on any system) that would put it elsewhere, not `.` or `..`."""
    return isinstance(value, str) and value not in ("", ".", "..") and not any(sep in value for sep in "/\\")


def _texts(value) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value)


@dataclass
class CheckpointAppConfig:
    """What segtrain-eval, segtrain-predict and segtrain-export share: the checkpoint, and overrides of the
    training config stored in it (open here; checked against the training schemas when applied)."""
    ckpt: str = option(MISSING, help="the checkpoint (RUN/checkpoints/best.pt)")
    model: Dict[str, Any] = field(default_factory=dict)
    dataset: Dict[str, Any] = field(default_factory=dict)
    optimizer: Dict[str, Any] = field(default_factory=dict)
    schedule: Dict[str, Any] = field(default_factory=dict)
    loss: Dict[str, Any] = field(default_factory=dict)
    augment: Dict[str, Any] = field(default_factory=dict)
    trainer: Dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalConfig(CheckpointAppConfig):
    ensemble: List[str] = checked([], _texts, "a list of checkpoint paths",
                                  help="more checkpoints, trained on the same data: their probabilities multiplied")
    name: Optional[str] = checked(None, _folder_name, "a folder name without / or \\ (not . or ..)",
                                  help="the output folder's name before its time stamp (RUN/eval/NAME-TIME; null: "
                                       "the checkpoint's stem)")
    crf: CRFConfig = MISSING
    inference: InferenceConfig = MISSING


@dataclass
class PredictConfig(CheckpointAppConfig):
    input: str = option(MISSING, help="an image or a folder of images")
    output: str = option(MISSING, help="the folder for NAME.png (labels) and NAME_overlay.png")
    alpha: float = number(0.5, ge=0, le=1, what="an opacity", help="the overlay's opacity")
    skip_classes: Optional[List[str]] = checked(None, _texts, "a list of class names or indices",
                                                help="classes left unpainted in the overlays (null: background)")
    roi: Optional[str] = option(None, help="regions of interest: a folder of NAME<roi_suffix> files, or one file "
                                           "(0: outside, labelled 255)")
    roi_suffix: Optional[str] = option(None, only=Only("roi", (SET,)),
                                       help="a region file's name after NAME (null: the checkpoint's "
                                            "dataset.roi_suffix)")
    crf: CRFConfig = MISSING
    inference: InferenceConfig = MISSING


@dataclass
class ExportConfig(CheckpointAppConfig):
    format: str = checked("onnx", lambda v: v == "onnx", "onnx (the only format)", help="the file format")
    out: Optional[str] = option(None, help="the ONNX file (null: the checkpoint's path with .onnx)")
    height: int = whole(512, ge=1, le=8192, what="a whole number of pixels",
                        help="the example input's height in pixels")
    width: int = whole(512, ge=1, le=8192, what="a whole number of pixels", help="its width in pixels")
    dynamic: bool = option(True, help="batch, height and width dynamic (false: fixed at height x width)")


# --- registration -------------------------------------------------------------------------------------------------

# (group, name) -> schema: what the YAML options name in their defaults lists. Group None: a primary config.
SCHEMAS = {
    (None, "train_schema"): TrainConfig,
    (None, "eval_schema"): EvalConfig,
    (None, "predict_schema"): PredictConfig,
    (None, "export_schema"): ExportConfig,
    ("model", "fcn_schema"): FCNConfig,
    ("model", "fcn_googlenet_schema"): FCNGoogLeNetConfig,
    ("model", "deeplab_largefov_schema"): DeepLabLargeFOVConfig,
    ("model", "deeplab_aspp_schema"): DeepLabASPPConfig,
    ("model", "deconvnet_schema"): DeconvNetConfig,
    ("model", "unet_schema"): UNetConfig,
    ("model", "frrn_schema"): FRRNConfig,
    ("dataset", "synthetic_schema"): SyntheticDatasetConfig,
    ("dataset", "voc_schema"): VOCDatasetConfig,
    ("dataset", "nyud_schema"): NYUDDatasetConfig,
    ("dataset", "siftflow_schema"): SiftFlowDatasetConfig,
    ("dataset", "folder_schema"): FolderDatasetConfig,
    ("dataset", "cityscapes_schema"): CityscapesDatasetConfig,
    ("optimizer", "sgd_schema"): SGDConfig,
    ("optimizer", "adamw_schema"): AdamWConfig,
    ("schedule", "schedule_schema"): ScheduleConfig,
    ("trainer", "trainer_schema"): TrainerConfig,
    ("loss", "loss_schema"): LossConfig,
    ("augment", "augment_schema"): AugmentConfig,
    ("crf", "crf_schema"): CRFConfig,
    ("inference", "inference_schema"): InferenceConfig,
}
MODEL_SCHEMAS = {name: schema for (group, name), schema in SCHEMAS.items() if group == "model"}


def register_schemas() -> None:
    """Every schema of SCHEMAS in Hydra's ConfigStore. The checkpoint apps' nodes of the stored training groups
    are open: any key of the stored config, checked when the checkpoint is read."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    store = ConfigStore.instance()
    for (group, name), schema in SCHEMAS.items():
        node = OmegaConf.structured(schema)
        if issubclass(schema, CheckpointAppConfig):
            for stored in STORED_GROUPS:
                OmegaConf.set_struct(node[stored], False)
        store.store(group=group, name=name, node=node)
