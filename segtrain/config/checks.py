"""What a composed config is checked for before any work, each problem one SegtrainError line naming the key:
keys no schema has (`+key=value` adds them past Hydra's check), every value in the range its schema field states
(segtrain.config.schemas), keys set where the chosen option ignores them, and the rules that tie keys together."""
import dataclasses
from enum import Enum
from typing import get_args, get_origin

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..errors import SegtrainError
from .schemas import SET, Check, Only


class BadValue(SegtrainError):
    """A value a check refuses: `key=value: why`. A command line's check shows the value as the user wrote it."""

    def __init__(self, key: str, value, why: str):
        super().__init__(f"{key}={_shown(value)}: {why}")
        self.key, self.why = key, why

    def as_written(self, overrides) -> SegtrainError:
        """The same line with the value as `overrides` (KEY=VALUE strings) wrote it, where one sets this key."""
        written = next((o for o in reversed(list(overrides)) if o.lstrip("+~").partition("=")[0] == self.key), None)
        return SegtrainError(f"{written}: {self.why}") if written else self


# keys without a default that a command line must give: (placeholder, what it is) for their one-line error
REQUIRED = {"ckpt": ("PATH", "a checkpoint, e.g. RUN/checkpoints/best.pt"),
            "input": ("PATH", "an image or a folder of images"),
            "output": ("FOLDER", "the folder for NAME.png and NAME_overlay.png")}


def check_config(cfg, keys=None, written=()) -> None:
    """Unknown keys, ranges and keys without effect over every schema-typed node of `cfg` (a training config or a
    checkpoint app's), then the rules between keys. `keys` (dotted): check only these and what lies below them,
    e.g. what a command line overrode on a checkpoint's stored config (which was checked when it trained).
    `written` (dotted): keys a command line set, which have no effect under the chosen options even when set to
    their default (`loss=dice loss.gamma=2`); any other key is without effect only when it differs from it."""
    def wanted(path):
        return keys is None or any(path == k or path.startswith(f"{k}.") or k.startswith(f"{path}.")
                                   for k in keys)

    _walk(cfg, "", wanted, set(written))
    _refuse_training_keys(cfg)
    if keys is None or any(k.split(".")[0] in ("augment", "schedule", "trainer", "loss", "dataset") for k in keys):
        _check_rules(cfg)


# what segtrain-eval, -predict and -export use of the stored training config's trainer group; the rest of it, and
# the optimizer, schedule, loss and augment groups, only train
TRAINER_KEYS_AFTER_TRAINING = ("device", "amp", "deterministic", "val_batch_size", "num_workers")
APP_PROGRAMS = {"EvalConfig": "segtrain-eval", "PredictConfig": "segtrain-predict", "ExportConfig": "segtrain-export"}


# the stored training config's groups that only training reads (of trainer, all but TRAINER_KEYS_AFTER_TRAINING)
TRAINING_GROUPS = ("optimizer", "schedule", "loss", "augment", "trainer")


def refuse_training_groups(overrides, program: str) -> None:
    """A checkpoint app's `group=choice` of a stored training group is one line, not Hydra's "No match in the
    defaults list": of a group only training reads (`augment=deeplab` on segtrain-eval) the line its keys get
    (`_refuse_training_keys`); of model or dataset, that the checkpoint's own decides and its keys can be
    overridden. `overrides`: KEY=VALUE strings as the command line wrote them."""
    for override in overrides:
        group = override.lstrip("+~").partition("=")[0]
        if group in TRAINING_GROUPS:
            raise SegtrainError(f"{override}: a training key; it has no effect on {program}")
        if group in ("model", "dataset"):
            raise SegtrainError(f"{override}: the checkpoint's {group} is the one its network was trained with; "
                                f"override its keys ({group}.KEY=VALUE) instead")


def _refuse_training_keys(cfg) -> None:
    """A checkpoint app's override of a key that only training reads is one line saying it has no effect there."""
    program = APP_PROGRAMS.get(getattr(OmegaConf.get_type(cfg), "__name__", ""))
    if program is None:
        return
    for group in TRAINING_GROUPS:
        node = cfg.get(group) or {}
        for key in node:
            if group != "trainer" or key not in TRAINER_KEYS_AFTER_TRAINING:
                raise BadValue(f"{group}.{key}", OmegaConf.to_container(node)[key],
                               f"a training key; it has no effect on {program}")


def _walk(node, prefix: str, wanted, written) -> None:
    schema = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema):
        return  # an open node (a checkpoint app's overrides of the stored config): checked once applied
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key in node.keys():
        path = f"{prefix}{key}"
        if key not in fields:
            raise SegtrainError(f"{path}: not a key of the {prefix.split('.')[0] or 'top-level'} schema (added with "
                                "+?); `segtrain --cfg job` lists the keys")
        if not wanted(path):
            continue
        if OmegaConf.is_missing(node, key):
            if not dataclasses.is_dataclass(fields[key].type):  # a group's node: its option fills it
                raise SegtrainError(f"{path}={REQUIRED.get(path, ('VALUE', 'a value'))[0]} is required "
                                    f"({REQUIRED.get(path, ('VALUE', 'the schema has no default'))[1]})")
            continue
        child = node[key]
        if isinstance(child, DictConfig):
            _walk(child, f"{path}.", wanted, written)
            continue
        value = OmegaConf.to_container(child) if isinstance(child, ListConfig) else child
        check: Check = fields[key].metadata.get("check")
        if check is not None and value is not None and not check.test(value):
            raise BadValue(path, value, f"expected {check.expected}")
        only: Only = fields[key].metadata.get("only")
        if only is not None and not only.applies(node) and (value != field_default(fields[key]) or path in written):
            raise BadValue(path, value, f"has no effect {_where(node, prefix, only)}")


def field_default(f: dataclasses.Field):
    """A schema field's default value (a fresh list or dict where it has a factory)."""
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _where(node, prefix: str, only: Only) -> str:
    """'with loss=cross_entropy (only loss=bootstrap uses it)', 'without dataset.roi_dir'."""
    group = prefix.rstrip(".")
    if only.options == (SET,):
        return f"without {group}.{only.selector}"
    selected = node.get(only.selector)
    name = f"{group}={selected}" if only.selector == "name" else f"{group}.{only.selector}={selected}"
    wanted = "|".join(map(str, only.options))
    uses = f"{group}={wanted}" if only.selector == "name" else f"{group}.{only.selector}={wanted}"
    why = dict(only.why).get(str(selected))
    return f"with {name} (only {uses} uses it)" + (f": {why}" if why else "")


def _shown(value) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_shown(v) for v in value) + "]"
    return str(value)


def _check_rules(cfg) -> None:
    """Rules between keys, where the training config has them."""
    augment, schedule, trainer = (cfg.get(group) for group in ("augment", "schedule", "trainer"))
    loss, dataset = cfg.get("loss"), cfg.get("dataset")
    if isinstance(augment, DictConfig) and OmegaConf.get_type(augment) is not dict \
            and augment.scale_min > augment.scale_max:
        raise SegtrainError(f"augment.scale_min={augment.scale_min} is above augment.scale_max={augment.scale_max}")
    if isinstance(schedule, DictConfig) and isinstance(trainer, DictConfig) and "warmup_iters" in schedule \
            and "max_iters" in trainer and 0 < trainer.max_iters <= schedule.warmup_iters:
        raise BadValue("schedule.warmup_iters", schedule.warmup_iters, "the warm-up would last the whole run "
                       f"(trainer.max_iters={trainer.max_iters}), so the learning rate would never reach "
                       "optimizer.lr; expected fewer iterations than trainer.max_iters")
    if isinstance(loss, DictConfig) and str(loss.get("name")) == "bootstrap" \
            and (loss.get("top_k") is None) == (loss.get("top_fraction") is None):
        raise SegtrainError("loss=bootstrap: set exactly one of loss.top_k (pixels per image) and "
                            "loss.top_fraction (of each image's labelled pixels); the other =null")
    if isinstance(dataset, DictConfig) and dataset.get("scale") is not None \
            and dataset.get("short_side") is not None:
        raise SegtrainError(f"dataset.scale={dataset.scale} and dataset.short_side={dataset.short_side} both "
                            "resize the images; set one of them (the other =null)")


def expected_of(schema, key: str) -> str:
    """What a schema field takes, for a one-line error about a value of the wrong type: its range where it states
    one, else its type ('true or false', 'one of off, fp16, bf16', 'a whole number', ...)."""
    f = next((f for f in dataclasses.fields(schema) if f.name == key), None) if dataclasses.is_dataclass(schema) \
        else None
    if f is None:
        return "a value of the key's type"
    if "check" in f.metadata:
        return f.metadata["check"].expected
    kind = f.type
    if get_origin(kind) is not None and type(None) in get_args(kind):  # Optional[X]
        kind = next(a for a in get_args(kind) if a is not type(None))
    if isinstance(kind, type) and issubclass(kind, Enum):
        return "one of " + ", ".join(m.value for m in kind)
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text"}.get(kind, "a value of "
                                                                                              "the key's type")
