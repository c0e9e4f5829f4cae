"""Typed schemas for every config group, registered in Hydra's ConfigStore.

Each YAML option names its schema in its defaults list (e.g. `- sgd_schema`), so an unknown key or a value of
the wrong type fails while Hydra composes the config, before any work starts.
"""
import logging
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Tuple

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

log = logging.getLogger("segtrain")


class Amp(str, Enum):
    off = "off"
    fp16 = "fp16"
    bf16 = "bf16"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@dataclass
class ModelConfig:
    """What every network takes. Each family's schema below adds only the options its networks honour; `always`
    names what a family has no option for, as key -> (the value it always has, why), for the error that a
    `model.KEY=` override gets and for checkpoints written when every model stored those keys."""
    always: ClassVar[Dict[str, Tuple[Any, str]]] = {}
    name: str = MISSING
    width: float = 1.0  # channel multiplier; 1.0 is the published network
    frozen_bn: bool = False  # BN as fixed affine maps with the (pretrained) statistics, as DeepLab v2 trains
    init_from: Optional[str] = None  # a segtrain checkpoint whose same-named, same-shaped weights start this model
    init_from_strict: bool = True  # a same-named weight of another shape is an error (false: it is skipped)
    crf: Optional[str] = None  # crfrnn: CRF-as-RNN, mean-field iterations as the last layers, trained end to end
    crf_iterations: int = 5  # mean-field iterations while training (the paper's 5)
    crf_test_iterations: int = 10  # and when evaluating (the paper's 10)
    crf_sigma_alpha: float = 160.0  # bilateral kernel's position scale, pixels (the release's theta_alpha)
    crf_sigma_beta: float = 3.0  # its colour scale, 0..255 (theta_beta)
    crf_sigma_gamma: float = 3.0  # spatial kernel's position scale, pixels (theta_gamma)


BILINEAR_LOGITS = "its logits are upsampled by bilinear interpolation, which has nothing to learn"


@dataclass
class ImageNetBackboneConfig(ModelConfig):
    pretrained: Optional[str] = None  # imagenet (torchvision's weights, through its cache) or a state dict's path


@dataclass
class FCNConfig(ImageNetBackboneConfig):
    """fcn32s, fcn16s, fcn8s, fcn8s_atonce, fcn32s_fixed (VGG16) and fcn_alexnet."""
    batch_norm: bool = False  # BN after every backbone conv (torchvision's vgg16_bn layout)
    dropout: float = 0.5  # after fc6 and fc7
    learned_upsampling: bool = False  # the release keeps the bilinear upsampling fixed


@dataclass
class FCNGoogLeNetConfig(ImageNetBackboneConfig):
    always: ClassVar[Dict[str, Tuple[Any, str]]] = {
        "batch_norm": (True, "torchvision's GoogLeNet has BN after every conv")}
    dropout: float = 0.4  # before the score layer, as GoogLeNet's classifier
    learned_upsampling: bool = False


@dataclass
class DeepLabLargeFOVConfig(ImageNetBackboneConfig):
    always: ClassVar[Dict[str, Tuple[Any, str]]] = {"learned_upsampling": (False, BILINEAR_LOGITS)}
    batch_norm: bool = False
    dropout: float = 0.5  # after fc6 and fc7


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
    dropout: float = 0.5  # after fc6 and fc7


@dataclass
class UNetConfig(ModelConfig):
    always: ClassVar[Dict[str, Tuple[Any, str]]] = {
        "learned_upsampling": (True, "its up-convolutions change the channel count and are always learned"),
        "pretrained": (None, "U-Net is trained from scratch (it has no pretrained backbone to load)")}
    batch_norm: bool = False  # unet_same: true
    dropout: float = 0.5  # at the end of the contracting path


@dataclass
class FRRNConfig(ModelConfig):
    always: ClassVar[Dict[str, Tuple[Any, str]]] = {
        "batch_norm": (True, "FRRN has BN after every 3x3 convolution"),
        "dropout": (0.0, "FRRN has no dropout layers"),
        "learned_upsampling": (False, "FRRN upsamples with fixed bilinear and nearest interpolation"),
        "pretrained": (None, "FRRN is trained from scratch (there are no ImageNet weights for it)")}


# schema name (what a configs/model/*.yaml names in its defaults) -> schema
MODEL_SCHEMAS = {
    "fcn_schema": FCNConfig,
    "fcn_googlenet_schema": FCNGoogLeNetConfig,
    "deeplab_largefov_schema": DeepLabLargeFOVConfig,
    "deeplab_aspp_schema": DeepLabASPPConfig,
    "deconvnet_schema": DeconvNetConfig,
    "unet_schema": UNetConfig,
    "frrn_schema": FRRNConfig,
}


@dataclass
class DatasetConfig:
    name: str = MISSING
    num_classes: Optional[int] = None  # None: the dataset's own count (e.g. from the folder dataset's classes YAML)
    # a split's name; dataset=folder also takes a list read as one split (with {split} in image_dir/mask_dir,
    # one folder each: ["Tile 1", "Tile 2"]). Any, not str: the dataset group's schema merges into this node
    train_split: Any = "train"
    val_split: Any = "val"
    scale: Optional[float] = None  # resize images (labels nearest) by this factor, for training and evaluation
    short_side: Optional[int] = None  # or so that the shorter side has this many pixels (not both)


@dataclass
class VOCDatasetConfig(DatasetConfig):
    root: Optional[str] = None  # VOCdevkit/VOC2012
    sbd_root: Optional[str] = None  # benchmark_RELEASE/dataset: splits train_aug, sbd_train, sbd_val
    voc2011_root: Optional[str] = None  # TrainVal/VOCdevkit/VOC2011: seg11valid without seg11valid.txt
    aug_label_dir: Optional[str] = None  # converted train_aug labels ('P' or 'L' PNGs), e.g. SegmentationClassAug


class NYUDModality(str, Enum):
    rgb = "rgb"
    depth = "depth"
    hha = "hha"
    rgbd = "rgbd"  # early fusion: one 4-channel input
    rgb_hha = "rgb_hha"  # late fusion: a network per stream, scores summed


@dataclass
class NYUDDatasetConfig(DatasetConfig):
    root: Optional[str] = None
    modality: NYUDModality = NYUDModality.rgb


class SiftFlowTask(str, Enum):
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


@dataclass
class FolderDatasetConfig(DatasetConfig):
    root: Optional[str] = None
    classes: Optional[str] = None  # YAML: `classes: [{name: ..., color: [R, G, B]}, ...]`, one per mask value
    image_dir: str = "images"  # relative to root; "{split}" is replaced by the split's name
    mask_dir: str = "masks"  # e.g. "{split}annot" (CamVid)
    image_suffix: Optional[str] = None  # the end of an image's name (e.g. "_training.tif"; null: its extension)
    mask_suffix: str = ".png"  # replaces it to name the mask: <mask_dir>/<name><mask_suffix>, e.g. "_mask.png"
    mask_format: str = "auto"  # index (class indices) | rgb (colours from the classes YAML) | auto (by the file)
    label_values: Optional[List[int]] = None  # stored value of class 0, 1, ...: [0, 255] for 0/255 binary masks
    ignore_values: List[Any] = field(default_factory=list)  # stored values ([R, G, B] colours) meaning void
    mask_tolerance: int = 0  # lossy (JPEG) masks: a value or colour within this (per channel) of one class's
    # {stored value: class index} for many-to-one codes; colours as "[R,G,B]" keys in YAML, RxGxB on the command
    # line (dataset.label_map={128x64x128:0}). Any, not a typed dict: Hydra then merges a command-line dict in
    label_map: Any = None
    unmapped: str = "error"  # a stored value label_map does not list: error | ignore (void)
    roi_dir: Optional[str] = None  # regions of interest (e.g. a field of view): 0 outside, ignored there
    roi_suffix: str = ".png"  # a region file is <roi_dir>/<name><roi_suffix>, paired as masks are
    val_fraction: Optional[float] = None  # no val split on disk: hold out this fraction of train (seeded)
    split_seed: int = 0  # the seed of that hold-out
    channels: str = "auto"  # auto (as the files hold: 1 for grey, else 3) | 1 | 3
    exif_orientation: str = "apply"  # apply (turn photos as their EXIF tag says, as shown) | ignore (as stored)
    # 16/32-bit and float images read as RGB: auto (the type's full range; floats 0..1) | [lo, hi] | percentile
    intensity_range: Any = "auto"
    mean: Optional[List[float]] = None  # per channel in 0..1; None: ImageNet's (RGB) or 0.449 (grey)
    std: Optional[List[float]] = None  # None: ImageNet's (RGB) or 0.226 (grey)


@dataclass
class SyntheticDatasetConfig(DatasetConfig):
    num_train: int = 1000
    num_val: int = 100
    image_size: int = 64
    seed: int = 0  # the scenes' seed, independent of the training seed


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = MISSING
    weight_decay: float = 0.0
    bias_lr_mult: float = 1.0  # FCN: 2
    bias_decay: bool = True  # FCN: false (biases get no weight decay)
    head_lr_mult: float = 1.0  # DeepLab: 10 for the classifier (its biases then 10 x bias_lr_mult = 20)


@dataclass
class SGDConfig(OptimizerConfig):
    momentum: float = 0.9
    nesterov: bool = False


@dataclass
class AdamWConfig(OptimizerConfig):
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


class ScheduleName(str, Enum):
    fixed = "fixed"
    step = "step"
    poly = "poly"
    cosine = "cosine"


@dataclass
class ScheduleConfig:
    name: ScheduleName = MISSING
    power: float = 0.9  # poly: lr = base_lr * (1 - iter / max_iters) ** power
    step_size: int = 2000  # step: lr x gamma every step_size iterations (DeepLab v1: 2000)
    gamma: float = 0.1
    warmup_iters: int = 0  # linear warm-up from warmup_start x lr over the first iterations (any schedule)
    warmup_start: float = 0.001


class AugmentName(str, Enum):
    none = "none"
    deeplab = "deeplab"
    unet = "unet"
    photometric = "photometric"


@dataclass
class AugmentConfig:
    name: AugmentName = AugmentName.none
    # a random crop_size x crop_size crop of every training sample (padded with the mean, labels with 255, where
    # the image is smaller): DeepLab's crop, or patch training with any augment; null: whole images
    crop_size: Optional[int] = None
    scale_min: float = 0.5  # deeplab: random scale range
    scale_max: float = 1.5
    flip: bool = True  # deeplab: horizontal; unet: horizontal and vertical
    grid: int = 3  # unet: grid cells per side of the elastic deformation
    magnitude: int = 10  # unet: largest displacement of a grid point, pixels
    brightness: float = 0.2  # photometric: ColorJitter ranges
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.05


class LossName(str, Enum):
    cross_entropy = "cross_entropy"
    unet_weighted = "unet_weighted"
    bootstrap = "bootstrap"


@dataclass
class LossConfig:
    name: LossName = LossName.cross_entropy
    normalize: bool = True  # mean over the labelled pixels; false sums them, as the FCN Caffe release does
    # one number per class (per task, concatenated, for multi-task data), or median_frequency / inverse_log:
    # computed from the train split's label counts (segtrain.data.scan)
    class_weights: Optional[Any] = None
    w0: float = 10.0  # unet_weighted: border weight between touching objects
    sigma: float = 5.0  # unet_weighted: its width, pixels
    top_k: Optional[int] = None  # bootstrap: the hardest pixels per image in the loss (FRRN: 512 x 64 = 32768)
    top_fraction: Optional[float] = None  # bootstrap: or this fraction of each image's labelled pixels
    sample_rate: float = 1.0  # FCN's p: each cell of the final score map is kept in the loss with probability p


@dataclass
class TrainerConfig:
    max_iters: int = 1000
    batch_size: int = 8  # the global batch: split evenly over torchrun's processes
    val_batch_size: int = 8
    val_interval: int = 250  # validate (and maybe write best.pt) every N iterations and at the end
    ckpt_interval: int = 250  # write last.pt every N iterations and at the end
    log_interval: int = 20  # loss/lr/speed to the log and TensorBoard every N iterations
    accumulate: int = 1  # batches whose gradients are summed per optimizer step (Caffe's iter_size)
    num_vis_images: int = 4  # image panels written to TensorBoard at each validation
    num_workers: Any = "auto"  # DataLoader processes: auto (0 for generated data, else up to 8 per process) or N
    device: Device = Device.auto
    amp: Amp = Amp.off  # fp16 (CUDA, with a GradScaler) or bf16 (CUDA, or a CPU with bfloat16 instructions)
    channels_last: bool = False  # NHWC weights and inputs (faster convolutions with AMP on recent GPUs)
    compile: bool = False  # torch.compile the training forward/backward (first iterations compile)
    sync_bn: bool = False  # torchrun with several processes: BN statistics over the global batch (CUDA)
    # auto: deterministic kernels on a CPU (free there), cuDNN autotuning on CUDA; true: bit-exact resume on CUDA too
    deterministic: Any = "auto"
    resume: Optional[str] = None  # auto: last.pt in this run dir, or a checkpoint path
    best_with_state: bool = False  # best.pt also holds the optimizer/scheduler state (resumable, ~2x larger)


class CRFBackend(str, Enum):
    torch = "torch"  # segtrain.meanfield: CPU or CUDA, batched (the default: as fast or faster, same answers)
    pydensecrf = "pydensecrf"  # Krähenbühl's C++ code, CPU only: the reference


@dataclass
class CRFConfig:
    """segtrain-eval / segtrain-predict only: the dense CRF applied to the network's probabilities."""
    name: str = "none"  # none | dense
    w1: float = 4.0  # bilateral (appearance) kernel weight
    sigma_alpha: float = 121.0  # its position scale (pixels)
    sigma_beta: float = 5.0  # its colour scale (0..255)
    w2: float = 3.0  # Gaussian (smoothness) kernel weight
    sigma_gamma: float = 3.0  # its position scale (pixels)
    iterations: int = 10
    backend: CRFBackend = CRFBackend.torch
    workers: int = 2  # CPU processes running the CRF in parallel (either backend); 0: in the evaluating process
    batch_images: int = 4  # torch on a GPU: images refined together, on the evaluating device


class InferenceMode(str, Enum):
    whole = "whole"
    slide = "slide"


@dataclass
class InferenceConfig:
    """segtrain-eval / segtrain-predict only: how each image is scored."""
    mode: InferenceMode = InferenceMode.whole
    tile: int = 512  # slide: window size in pixels
    overlap: float = 0.333  # slide: fraction of a window shared with the next
    scales: List[float] = field(default_factory=lambda: [1.0])  # several: probabilities averaged over scales
    flip: bool = False  # also score the mirrored image and average


@dataclass
class PublishedConfig:
    """What an experiment= recipe should reach, as data (segtrain-report shows it beside the measured figure)."""
    mean_iu: Optional[float] = None  # in percent, on the split `source` names
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
    seed: int = 0
    published: Optional[PublishedConfig] = None  # set by experiment= recipes


# The training config's groups a checkpoint stores; segtrain-eval, -predict and -export take overrides of them
# (`dataset.val_split=train`) on their command line, checked against these schemas once the checkpoint is read.
STORED_GROUPS = ("model", "dataset", "optimizer", "schedule", "loss", "augment", "trainer")


@dataclass
class CheckpointAppConfig:
    """What segtrain-eval, segtrain-predict and segtrain-export share: the checkpoint, and overrides of the
    training config stored in it (open here; checked against the training schemas when applied)."""
    ckpt: str = MISSING
    model: Dict[str, Any] = field(default_factory=dict)
    dataset: Dict[str, Any] = field(default_factory=dict)
    optimizer: Dict[str, Any] = field(default_factory=dict)
    schedule: Dict[str, Any] = field(default_factory=dict)
    loss: Dict[str, Any] = field(default_factory=dict)
    augment: Dict[str, Any] = field(default_factory=dict)
    trainer: Dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalConfig(CheckpointAppConfig):
    ensemble: List[str] = field(default_factory=list)  # more checkpoints: the product of their probabilities
    name: Optional[str] = None  # the output folder's name before its time stamp (default: the checkpoint's stem)
    crf: CRFConfig = MISSING
    inference: InferenceConfig = MISSING


@dataclass
class PredictConfig(CheckpointAppConfig):
    input: str = MISSING  # an image or a folder of images
    output: str = MISSING  # the folder for NAME.png and NAME_overlay.png
    alpha: float = 0.5  # the overlay's opacity
    skip_classes: Optional[List[str]] = None  # names or indices left unpainted (default: background)
    roi: Optional[str] = None  # regions of interest: a folder of NAME<roi_suffix> files, or one file; 0 -> void
    roi_suffix: Optional[str] = None  # default: the checkpoint's dataset.roi_suffix
    crf: CRFConfig = MISSING
    inference: InferenceConfig = MISSING


@dataclass
class ExportConfig(CheckpointAppConfig):
    format: str = "onnx"
    out: Optional[str] = None  # default: the checkpoint's path with .onnx
    height: int = 512  # the example input's size
    width: int = 512
    dynamic: bool = True  # batch, height and width dynamic (false: fixed at height x width)


def checkpoint_run_dir(ckpt: str) -> str:
    """The run a checkpoint belongs to: RUN for RUN/checkpoints/NAME.pt, else the checkpoint's own folder."""
    folder = Path(ckpt).resolve().parent
    return str(folder.parent if folder.name == "checkpoints" else folder)


def help_groups(*groups) -> str:
    """`--help`'s list of `groups` and their choices (the YAML files under configs/; the typed schemas the
    choices build on, and bases such as experiment/_fcn_caffe.yaml, are not choices and are left out)."""
    lines = []
    for group in groups:
        choices = sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml") if not p.stem.startswith("_"))
        lines.append(f"{group}: {', '.join(choices)}")
    return "\n".join(lines)


def register_configs() -> None:
    OmegaConf.register_new_resolver("segtrain_help_groups", help_groups, replace=True)
    # segtrain-eval's output folder, RUN/eval/<name>-<time> (configs/eval.yaml)
    OmegaConf.register_new_resolver("segtrain_run_dir", checkpoint_run_dir, replace=True)
    OmegaConf.register_new_resolver("segtrain_eval_name", lambda ckpt, name: name or Path(ckpt).stem, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for name, schema in (("eval_schema", EvalConfig), ("predict_schema", PredictConfig),
                         ("export_schema", ExportConfig)):
        node = OmegaConf.structured(schema)
        for group in STORED_GROUPS:  # open: any key of the stored config, checked when the checkpoint is read
            OmegaConf.set_struct(node[group], False)
        cs.store(name=name, node=node)
    for name, schema in MODEL_SCHEMAS.items():
        cs.store(group="model", name=name, node=schema)
    cs.store(group="dataset", name="synthetic_schema", node=SyntheticDatasetConfig)
    cs.store(group="dataset", name="voc_schema", node=VOCDatasetConfig)
    cs.store(group="dataset", name="nyud_schema", node=NYUDDatasetConfig)
    cs.store(group="dataset", name="siftflow_schema", node=SiftFlowDatasetConfig)
    cs.store(group="dataset", name="folder_schema", node=FolderDatasetConfig)
    cs.store(group="dataset", name="cityscapes_schema", node=CityscapesDatasetConfig)
    cs.store(group="optimizer", name="sgd_schema", node=SGDConfig)
    cs.store(group="optimizer", name="adamw_schema", node=AdamWConfig)
    cs.store(group="schedule", name="schedule_schema", node=ScheduleConfig)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    cs.store(group="loss", name="loss_schema", node=LossConfig)
    cs.store(group="augment", name="augment_schema", node=AugmentConfig)
    cs.store(group="crf", name="crf_schema", node=CRFConfig)
    cs.store(group="inference", name="inference_schema", node=InferenceConfig)


def config_dir() -> str:
    """The folder holding config.yaml: `segtrain/configs` in an installed wheel, `configs/` in a checkout."""
    from importlib.resources import files

    return str(files("segtrain.configs"))


def to_plain(cfg: Any) -> dict:
    """A resolved config as plain dicts/lists/str (what checkpoints store)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


# key -> (test, the range it states): checked before any work, one line naming the key and the range
VALUE_RANGES = {
    "trainer.max_iters": (lambda v: v >= 1, "a whole number >= 1"),
    "trainer.batch_size": (lambda v: v >= 1, "a whole number >= 1"),
    "trainer.val_batch_size": (lambda v: v >= 1, "a whole number >= 1"),
    "trainer.val_interval": (lambda v: v >= 1, "a whole number >= 1"),
    "trainer.ckpt_interval": (lambda v: v >= 1, "a whole number >= 1"),
    "trainer.log_interval": (lambda v: v >= 1, "a whole number >= 1"),
    "trainer.accumulate": (lambda v: v >= 1, "a whole number >= 1"),
    "loss.sample_rate": (lambda v: 0 < v <= 1, "a probability in (0, 1]"),
    "trainer.num_vis_images": (lambda v: v >= 0, ">= 0"),
    "model.width": (lambda v: v > 0, "a channel multiplier > 0 (1.0 is the published network)"),
    "model.dropout": (lambda v: 0 <= v < 1, "a probability in [0, 1)"),
    "model.crf_iterations": (lambda v: v >= 1, "a whole number of mean-field iterations >= 1"),
    "model.crf_test_iterations": (lambda v: v >= 1, "a whole number of mean-field iterations >= 1"),
    "model.crf_sigma_alpha": (lambda v: v > 0, "a scale in pixels > 0"),
    "model.crf_sigma_beta": (lambda v: v > 0, "a colour scale > 0"),
    "model.crf_sigma_gamma": (lambda v: v > 0, "a scale in pixels > 0"),
    "crf.w1": (lambda v: v >= 0, "a kernel weight >= 0"),
    "crf.w2": (lambda v: v >= 0, "a kernel weight >= 0"),
    "crf.sigma_alpha": (lambda v: v > 0, "a scale in pixels > 0"),
    "crf.sigma_beta": (lambda v: v > 0, "a colour scale > 0"),
    "crf.sigma_gamma": (lambda v: v > 0, "a scale in pixels > 0"),
    "crf.iterations": (lambda v: v >= 0, "a whole number of mean-field iterations >= 0"),
    "crf.workers": (lambda v: v >= 0, "a whole number of processes >= 0"),
    "crf.batch_images": (lambda v: v >= 1, "a whole number >= 1"),
    "optimizer.lr": (lambda v: v > 0, "a learning rate > 0"),
    "optimizer.weight_decay": (lambda v: v >= 0, ">= 0"),
    "schedule.step_size": (lambda v: v >= 1, "a whole number >= 1"),
    "schedule.gamma": (lambda v: v > 0, "> 0"),
    "schedule.power": (lambda v: v >= 0, ">= 0"),
    "schedule.warmup_iters": (lambda v: v >= 0, ">= 0"),
    "schedule.warmup_start": (lambda v: 0 <= v <= 1, "a fraction of the learning rate in [0, 1]"),
    "augment.crop_size": (lambda v: v >= 1, "a whole number of pixels >= 1"),
    "augment.scale_min": (lambda v: v > 0, "> 0"),
    "augment.scale_max": (lambda v: v > 0, "> 0"),
    "augment.grid": (lambda v: v >= 1, ">= 1"),
    "augment.magnitude": (lambda v: v >= 0, ">= 0"),
    "loss.sigma": (lambda v: v > 0, "> 0"),
    "loss.top_k": (lambda v: v >= 1, "a whole number of pixels >= 1"),
    "loss.top_fraction": (lambda v: 0 < v <= 1, "a fraction in (0, 1]"),
    "dataset.val_fraction": (lambda v: 0 < v < 1, "a fraction in (0, 1)"),
    "dataset.scale": (lambda v: v > 0, "a factor > 0"),
    "dataset.short_side": (lambda v: v >= 1, "a whole number of pixels >= 1"),
    "dataset.mask_tolerance": (lambda v: v >= 0, "a distance in stored values >= 0"),
}


def check_config(cfg) -> None:
    """Values in their ranges and no keys the schemas do not know (`+key=value` adds them past Hydra's check):
    the first problem as a one-line SegtrainError naming the key."""
    import dataclasses

    from omegaconf import DictConfig, OmegaConf

    from .errors import SegtrainError

    def unknown(node, prefix=""):
        schema = OmegaConf.get_type(node)
        if dataclasses.is_dataclass(schema):
            known = {f.name for f in dataclasses.fields(schema)}
            for key in node.keys():
                if key not in known:
                    return f"{prefix}{key}"
        for key in node.keys():
            child = node._get_node(key)
            if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
                found = unknown(child, f"{prefix}{key}.")
                if found:
                    return found
        return None

    extra = unknown(cfg)
    if extra:
        group = extra.split(".")[0]
        raise SegtrainError(f"{extra}: not a key of the {group} schema (added with +?); "
                            f"`segtrain --cfg job` lists the keys")
    workers = cfg.trainer.num_workers
    if not (workers == "auto" or (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 0)):
        raise SegtrainError(f"trainer.num_workers={workers}: expected auto or a whole number >= 0")
    if cfg.trainer.deterministic not in ("auto", True, False):
        raise SegtrainError(f"trainer.deterministic={cfg.trainer.deterministic}: expected auto, true or false")
    check_ranges(cfg)
    std = cfg.dataset.get("std")
    if std is not None and not all(v > 0 for v in std):  # dividing by 0 gives NaN inputs, and a NaN loss later
        raise SegtrainError(f"dataset.std={list(std)}: expected a standard deviation > 0 per channel")
    if cfg.augment.scale_min > cfg.augment.scale_max:
        raise SegtrainError(f"augment.scale_min={cfg.augment.scale_min} is above augment.scale_max="
                            f"{cfg.augment.scale_max}")


def compose_stored_config(stored: dict, overrides):
    """The stored config re-validated by the same schemas `segtrain` composes with, then the overrides."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from .errors import SegtrainError

    register_configs()
    choices = [f"{group}={stored[group]['name']}" for group in ("model", "dataset", "optimizer", "schedule")]
    stored = with_keys_moved(stored)
    dotlist = list(overrides)
    refuse_moved_keys(dotlist)
    try:
        if GlobalHydra.instance().is_initialized():  # inside `segtrain` (resuming): its Hydra composes
            cfg = compose("config", overrides=choices)
        else:
            with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
                cfg = compose("config", overrides=choices)
        schema = OmegaConf.get_type(cfg.model)
        stored["model"] = without_fixed_options(stored["model"], schema)
        refuse_fixed_options(dotlist, schema, stored["model"]["name"])
        cfg = OmegaConf.merge(cfg, stored)
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotlist))
    except (HydraException, OmegaConfBaseException) as e:
        raise SegtrainError(f"config override {' '.join(overrides)}: {str(e).splitlines()[0]}") from None
    check_config(cfg)
    return cfg


# a key that moved -> where it went (a checkpoint holding it is read with it moved; a command line setting it gets
# one line naming the new key)
MOVED_KEYS = {
    "trainer.sample_rate": "loss.sample_rate",
    "trainer.sampling": "augment.crop_size (null: whole images, N: a random N x N crop of every sample)",
    "trainer.patch_size": "augment.crop_size",
}


def refuse_moved_keys(overrides) -> None:
    from .errors import SegtrainError

    for override in overrides:
        key = override.lstrip("+~").partition("=")[0]
        if key in MOVED_KEYS:
            raise SegtrainError(f"{override}: {key} is now {MOVED_KEYS[key]}")


def with_keys_moved(stored: dict) -> dict:
    """A stored config as this version's schemas have it: checkpoints written before evaluation had its own
    config stored `crf` and `inference`; before the loss group owned it, FCN's `sample_rate` was the trainer's;
    before the augment group owned every crop, `trainer.sampling=patch` cropped `trainer.patch_size` patches after
    any augment (and `augment.crop_size` meant only DeepLab's crop)."""
    stored = {k: v for k, v in stored.items() if k not in ("crf", "inference")}
    trainer, loss, augment = (dict(stored.get(group, {})) for group in ("trainer", "loss", "augment"))
    if "sample_rate" in trainer:
        loss["sample_rate"] = trainer.pop("sample_rate")
    if "sampling" in trainer:
        sampling, patch_size = trainer.pop("sampling"), trainer.pop("patch_size", None)
        crops = [size for size in (augment.get("crop_size") if augment.get("name") == "deeplab" else None,
                                   patch_size if sampling == "patch" else None) if size]
        augment["crop_size"] = min(crops) if crops else None
        if len(crops) == 2:
            log.warning("the checkpoint's augment=deeplab cropped %d px, then trainer.sampling=patch %d px; it now "
                        "crops once, augment.crop_size=%d (this matters only when resuming it)", *crops, min(crops))
    return {**stored, "trainer": trainer, "loss": loss, "augment": augment}


def without_fixed_options(stored_model: dict, schema) -> dict:
    """A stored model config without the keys its family's schema no longer has. Checkpoints written while one
    schema served every model stored `batch_norm`, `dropout`, `learned_upsampling` and `pretrained` for all of
    them; such a key goes only where it holds what the family always has (`schema.always`), else an error."""
    from .errors import SegtrainError

    kept = {}
    for key, value in stored_model.items():
        if key in schema.always:
            always, why = schema.always[key]
            if value != always:
                raise SegtrainError(f"the checkpoint's model.{key}={value}: {stored_model['name']} has no "
                                    f"{key} option; {why}")
            continue
        kept[key] = value
    return kept


def refuse_fixed_options(overrides, schema, model_name: str) -> None:
    """A `model.KEY=VALUE` override of what the model's family has no option for (`schema.always`): one line
    saying what it always has, rather than the schema's bare "not a key"."""
    from .errors import SegtrainError

    for override in overrides:
        key = override.lstrip("+~").partition("=")[0]
        option = key[len("model."):]
        if key.startswith("model.") and option in schema.always:
            raise SegtrainError(f"{override}: {model_name} has no {option} option; {schema.always[option][1]}")


def check_ranges(cfg) -> None:
    """Every key of VALUE_RANGES that `cfg` has (a training config, or segtrain-eval's and -predict's crf.*) in
    its range, else a one-line SegtrainError naming the key and the range."""
    from omegaconf import OmegaConf

    from .errors import SegtrainError

    for key, (test, expected) in VALUE_RANGES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and not isinstance(value, bool) and not test(value):
            raise SegtrainError(f"{key}={value}: expected {expected}")


def override_argument(key: str, value) -> str:
    """`key=value` as one command-line word that the shell and Hydra's override grammar give back as `value`:
    Hydra-quoted when the value holds characters its grammar reads (`=`, `,`, quotes, brackets), then
    shell-quoted when it holds spaces or shell characters. Lists and dicts become Hydra's `[a,b]` and `{k:v}`,
    their strings quoted."""
    import shlex

    word = f"{key}={hydra_text(value)}"
    if "'" in word and not any(c in word for c in '"$`\\!'):
        return f'"{word}"'
    return shlex.quote(word)


def hydra_text(value, element: bool = False) -> str:
    """A value as Hydra's override grammar writes it (strings quoted where it would read them otherwise; always
    inside lists and dicts, where a bare `1` or `true` would not stay a string)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_text(v, True)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_text(v, True) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if not element:
        try:
            if OverridesParser.create().parse_override(f"key={text}").value() == text:
                return text
        except Exception:  # noqa: BLE001 - any parse error: quote it
            pass
    return "'" + text.replace("'", "\\'") + "'"


def strict_json(value, **kwargs) -> str:
    """JSON with NaN and infinities written as null (bare NaN is not JSON)."""
    import json
    import math

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), allow_nan=False, **kwargs)
