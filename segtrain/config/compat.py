"""Older configs as this version reads them (detectron2's config/compat.py is the model).

Every checkpoint written since config version 1 carries `config_version`; a stored config is upgraded step by step
from its version to CONFIG_VERSION, each step keyed on that number. Checkpoints written before the stamp existed
are version 0: the first step recognises their layouts by the keys they hold, the only evidence they carry.
A command line that sets a key which moved gets one line naming where it went."""
import logging

from ..errors import SegtrainError

log = logging.getLogger("segtrain")

CONFIG_VERSION = 1  # stamped into every new checkpoint as state["config_version"]

# a key that moved -> where it went (a checkpoint holding it is read with it moved; a command line setting it gets
# one line naming the new key)
MOVED_KEYS = {
    "trainer.sample_rate": "loss.sample_rate",
    "trainer.sampling": "augment.crop_size (null: whole images, N: a random N x N crop of every sample)",
    "trainer.patch_size": "augment.crop_size",
}


def refuse_moved_keys(overrides) -> None:
    """A `key=value` of a key that moved is one line naming its new place."""
    for override in overrides:
        key = override.lstrip("+~").partition("=")[0]
        if key in MOVED_KEYS:
            raise SegtrainError(f"{override}: {key} is now {MOVED_KEYS[key]}")


def _unversioned_to_1(stored: dict, model_schema) -> dict:
    """Version 0 (no stamp) to 1. Checkpoints written before evaluation had its own config stored `crf` and
    `inference`; before the loss group owned it, FCN's `sample_rate` was the trainer's; before the augment group
    owned every crop, `trainer.sampling=patch` cropped `trainer.patch_size` patches after any augment (and
    `augment.crop_size` meant only DeepLab's crop); while one schema served every model, each stored
    `batch_norm`, `dropout`, `learned_upsampling` and `pretrained` (dropped where they hold what the family
    always has)."""
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
    model = without_fixed_options(stored["model"], model_schema) if model_schema is not None else stored["model"]
    return {**stored, "model": model, "trainer": trainer, "loss": loss, "augment": augment}


# version -> the step from it to the next
UPGRADES = {0: _unversioned_to_1}


def upgrade(stored: dict, version: int = 0, model_schema=None) -> dict:
    """A stored training config (plain dicts) of config version `version` as CONFIG_VERSION reads it. A version
    newer than this segtrain's is one line: the checkpoint needs a newer segtrain."""
    if not isinstance(version, int) or version > CONFIG_VERSION:
        raise SegtrainError(f"the checkpoint's config version {version} is newer than this segtrain's "
                            f"({CONFIG_VERSION}); upgrade segtrain to read it")
    for step in range(version, CONFIG_VERSION):
        stored = UPGRADES[step](stored, model_schema)
    return stored


def without_fixed_options(stored_model: dict, schema) -> dict:
    """A stored model config without the keys its family's schema has no option for (`schema.always`); such a
    key goes only where it holds what the family always has, else an error."""
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
    for override in overrides:
        key = override.lstrip("+~").partition("=")[0]
        option = key[len("model."):]
        if key.startswith("model.") and option in schema.always:
            raise SegtrainError(f"{override}: {model_name} has no {option} option; {schema.always[option][1]}")
