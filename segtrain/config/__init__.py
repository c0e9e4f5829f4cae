"""segtrain's configuration, one concern a module (detectron2's config/ is the model):

    schemas   the typed dataclasses every YAML option builds on, each value's range beside its field, and the
              table that registers them in Hydra's ConfigStore
    checks    what a composed config is checked for before any work (unknown keys, ranges, keys without effect)
    compat    moved keys and the upgrades of older checkpoints' configs, keyed on their stamped config version
    compose   the one compose() of a command line, and stored_config() for a checkpoint's (no Hydra)
"""
from .checks import check_config
from .compat import CONFIG_VERSION, MOVED_KEYS
from .compose import (app_option, app_overrides, check_command_line, checkpoint_run_dir, compose, config_dir, flatten,
                      help_groups, hydra_text, option_schema, override_argument, register_configs, stored_config,
                      to_plain)
from .schemas import MODEL_SCHEMAS, SCHEMAS, STORED_GROUPS

__all__ = ["CONFIG_VERSION", "MODEL_SCHEMAS", "MOVED_KEYS", "SCHEMAS", "STORED_GROUPS", "app_option", "app_overrides",
           "check_command_line", "check_config", "checkpoint_run_dir", "compose", "config_dir", "flatten",
           "help_groups", "hydra_text", "option_schema", "override_argument", "register_configs", "stored_config",
           "to_plain"]
