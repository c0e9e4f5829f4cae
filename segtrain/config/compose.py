"""The one way configs are composed: `compose()` runs Hydra on configs/ for a command line's overrides (segtrain,
the checkpoint apps, segtrain-data, scripts, tests), and `stored_config()` reads a checkpoint's stored config
through the same schemas without Hydra. A bad override is one SegtrainError line either way: an unknown choice
lists the group's choices, a typo names the nearest key, a value of the wrong type says what the key takes."""
import dataclasses
import difflib
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..errors import SegtrainError
from .checks import APP_PROGRAMS, REQUIRED, BadValue, check_config, expected_of, field_default, refuse_training_groups
from .compat import refuse_fixed_options, refuse_moved_keys, upgrade
from .schemas import MODEL_SCHEMAS, SCHEMAS, STORED_GROUPS, TrainConfig, register_schemas


def config_dir() -> str:
    """The folder holding config.yaml: `segtrain/configs` in an installed wheel, `configs/` in a checkout (through
    the editable install's mapping, or found beside the package when the checkout is only on PYTHONPATH, as
    scripts/device_check.py runs it on a GPU machine where nothing may be installed)."""
    from importlib.resources import files

    try:
        return str(files("segtrain.configs"))
    except ModuleNotFoundError:
        return str(Path(__file__).resolve().parents[2] / "configs")


def register_configs() -> None:
    """The schemas in Hydra's ConfigStore and the resolvers the YAMLs use."""
    OmegaConf.register_new_resolver("segtrain_help_groups", help_groups, replace=True)
    OmegaConf.register_new_resolver("segtrain_help_keys", help_keys, replace=True)
    # segtrain-eval's output folder, RUN/eval/<name>-<time> (configs/eval.yaml)
    OmegaConf.register_new_resolver("segtrain_run_dir", checkpoint_run_dir, replace=True)
    OmegaConf.register_new_resolver("segtrain_eval_name", lambda ckpt, name: name or Path(ckpt).stem, replace=True)
    register_schemas()


def compose(overrides=(), config_name: str = "config", hydra_keys: bool = False) -> DictConfig:
    """The config Hydra composes from configs/`config_name`.yaml and `overrides` (KEY=VALUE strings in Hydra's
    grammar), with the `hydra` node when `hydra_keys`. Works inside a running Hydra app too. A command line that
    does not compose is one SegtrainError line naming the override and what it could be."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = list(overrides)
    register_configs()
    refuse_moved_keys(overrides)
    if f"segtrain-{config_name}" in APP_PROGRAMS.values():
        refuse_training_groups(overrides, f"segtrain-{config_name}")

    def run(given):
        if GlobalHydra.instance().is_initialized():  # inside a Hydra app: its search path is this config_dir
            return hydra_compose(config_name, overrides=given, return_hydra_config=hydra_keys)
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return hydra_compose(config_name, overrides=given, return_hydra_config=hydra_keys)

    try:
        return run(overrides)
    except Exception as error:  # noqa: BLE001 - Hydra's and OmegaConf's many error kinds alike
        raise SegtrainError(_describe(error, overrides, run)) from None


def check_command_line(overrides, config_name: str = "config") -> DictConfig:
    """compose() then check_config(): the config a command line gives, or one SegtrainError line naming its first
    problem with the value as the command line wrote it."""
    cfg = compose(overrides, config_name)
    try:
        check_config(cfg, written=[_key(o) for o in overrides if not o.startswith("~")])
    except BadValue as error:
        raise error.as_written(overrides) from None
    return cfg


# keys users know from papers and other tools under another name -> segtrain's key
KNOWN_AS = {"loss.alpha": "loss.class_weights (focal's alpha_t, one per class)"}


def _describe(error: Exception, overrides, run) -> str:
    """One line for an override that does not compose: the override, then why, in the schema's terms."""
    # the first line that says something (Hydra's "In 'model/x': ... raised while composing config:" heads one)
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    text = next((line for line in lines if not line.endswith(":")), lines[0] if lines else type(error).__name__)
    cause = [line for line in str(error.__cause__ or "").strip().splitlines() if line.strip()]
    detail = " ".join(cause + [text])
    bad = (next((o for o in overrides if f"'{_key(o)}'" in detail), None)  # a key Hydra names
           or next((o for o in overrides if o in detail), None)
           or next((o for o in overrides if f"'{_key(o)}/{o.partition('=')[2]}" in detail), None))  # group/choice
    if bad is None:
        return f"{' '.join(overrides)}: {cause[0] if cause else text}" if overrides else text
    key, value = _key(bad), bad.partition("=")[2]
    group, _, leaf = key.rpartition(".")
    if "Could not find" in detail and "." not in key:  # an unknown choice of a group
        return f"{bad}: {key} has no choice {value!r}; {help_groups(key)}"
    try:
        rest = run([o for o in overrides if o != bad])
    except Exception:  # noqa: BLE001 - the rest does not compose either: no more to say
        rest = None
    node = OmegaConf.select(rest, group) if rest is not None and group else rest
    schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
    if "not in" in detail or "Could not append" in detail or "Key '" in detail and "not" in detail:
        if group == "model" and schema in MODEL_SCHEMAS.values() and leaf in schema.always:
            refuse_fixed_options([bad], schema, node.name)
        keys = list(node.keys()) if isinstance(node, DictConfig) else []
        near = [KNOWN_AS[key]] if key in KNOWN_AS else [
            f"{group}.{k}" for k in difflib.get_close_matches(leaf, keys, n=1)] if group else []
        return f"{bad}: {group or 'the config'} has no key {leaf!r}" + (f"; did you mean {near[0]}?" if near else "")
    if schema is not None and ("convert" in detail or "Invalid value" in detail or "expected" in detail):
        return f"{bad}: expected {expected_of(schema, leaf)}"
    return f"{bad}: {cause[0] if cause else text}"


def _key(override: str) -> str:
    return override.lstrip("+~").partition("=")[0]


def option_schema(group: str, name):
    """The schema a stored group's config builds on: the one of its group, or for model, dataset and optimizer the
    one its YAML option (configs/<group>/<name>.yaml) names, followed through options it extends (voc_aug ->
    voc). No Hydra: the option's defaults list is read as the file it is."""
    schemas = [schema for (g, _), schema in SCHEMAS.items() if g == group]
    if len(schemas) == 1:
        return schemas[0]
    path = Path(config_dir()) / group / f"{name}.yaml"
    if not path.is_file():
        choices = sorted(p.stem for p in path.parent.glob("*.yaml") if not p.stem.startswith("_"))
        raise SegtrainError(f"the checkpoint's {group}.name={name}: this segtrain has no {group} {name!r} (it has "
                            f"{', '.join(choices)})")
    for entry in OmegaConf.load(path).get("defaults", []):
        if isinstance(entry, str) and entry != "_self_":
            return SCHEMAS.get((group, entry)) or option_schema(group, entry)
    raise SegtrainError(f"{path}: its defaults list names no schema")


def stored_config(stored: dict, overrides=(), version: int = 0) -> DictConfig:
    """A checkpoint's stored training config (plain dicts, config version `version`) upgraded to this version's
    keys, validated by the schemas `segtrain` composes with, with `overrides` (dotlist strings) on top; the keys
    they set are checked as a command line's are. No Hydra runs: a Python caller can load checkpoints freely."""
    from omegaconf.errors import OmegaConfBaseException

    name = stored.get("model", {}).get("name")
    model_schema = option_schema("model", name)
    stored = upgrade(stored, version, model_schema)
    dotlist = list(overrides)
    refuse_moved_keys(dotlist)
    refuse_fixed_options(dotlist, model_schema, name)
    try:
        nodes = {group: OmegaConf.structured(option_schema(group, stored.get(group, {}).get("name")))
                 for group in STORED_GROUPS}
        cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), nodes, stored)
    except OmegaConfBaseException as e:
        raise SegtrainError(f"the checkpoint's config does not fit this segtrain's schemas "
                            f"({str(e).strip().splitlines()[0]})") from None
    cfg = _merge_dotlist(cfg, dotlist)
    try:
        check_config(cfg, keys=[_key(o) for o in dotlist])
    except BadValue as error:
        raise error.as_written(dotlist) from None
    return cfg


def _merge_dotlist(cfg: DictConfig, dotlist) -> DictConfig:
    """`cfg` with each KEY=VALUE of `dotlist` merged in turn (values read as YAML): a key its schema lacks is one
    line naming the nearest key, a value of the wrong type one saying what the key takes."""
    from omegaconf.errors import OmegaConfBaseException

    for override in dotlist:
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([override]))
        except OmegaConfBaseException as e:
            key = _key(override)
            group, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, group) if group else cfg
            if "not in" in str(e):
                keys = list(node.keys()) if isinstance(node, DictConfig) else []
                near = difflib.get_close_matches(leaf, keys, n=1)
                raise SegtrainError(f"{override}: {group or 'the config'} has no key {leaf!r}"
                                    + (f"; did you mean {group}.{near[0]}?" if near else "")) from None
            raise SegtrainError(f"{override}: expected {expected_of(OmegaConf.get_type(node), leaf)}") from None
    return cfg


def app_option(group: str, choice=None, app: str = "predict") -> DictConfig:
    """A checkpoint app's `group` config (crf, inference) for a Python caller, as the app's command line would
    compose it but without Hydra (a caller's own Hydra app may be running): `choice` None gives the app's default
    option (configs/`app`.yaml: crf=none, inference=whole); an option's name, configs/`group`/NAME.yaml through
    its defaults list (crf="deeplab_resnet", inference="multiscale"); a dict, the group's keys set over the
    option its "name" key names, else over the default ({"mode": "slide", "tile": 256}, as the command line's
    inference.mode=slide inference.tile=256). Checked by the group's schema as the command line is: a bad value
    is one SegtrainError line naming the key."""
    from collections.abc import Mapping

    choices = sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml") if not p.stem.startswith("_"))
    default = next(entry[group] for entry in OmegaConf.load(Path(config_dir()) / f"{app}.yaml").defaults
                   if isinstance(entry, Mapping) and group in entry)
    if choice is None or isinstance(choice, str):
        base, keys = choice or default, {}
    elif isinstance(choice, Mapping):
        keys = flatten(OmegaConf.to_container(choice, enum_to_str=True) if isinstance(choice, DictConfig)
                       else dict(choice))
        base = str(keys.pop("name", default))  # crf's names are options too: {"name": "deeplab_resnet", ...}
    else:
        raise SegtrainError(f"{group}={choice!r}: expected None, the name of one of the {group} options "
                            f"({', '.join(choices)}) or a dict of {group} keys")
    if base not in choices:
        raise SegtrainError(f"{group}={base}: {group} has no choice {base!r}; {help_groups(group)}")
    root = OmegaConf.structured(SCHEMAS[(None, f"{app}_schema")])
    root[group] = _option_node(group, base)
    dotlist = [f"{group}.{key}={hydra_text(value)}" for key, value in keys.items()]  # as a command line writes it
    try:
        root = _merge_dotlist(root, dotlist)
        check_config(root, keys=[group])
    except BadValue as error:
        error = error.as_written(dotlist)
        if "has no effect" in str(error) and isinstance(choice, Mapping) and "name" not in choice \
                and "name" in root[group]:
            raise SegtrainError(f"{error}; a dict of {group} keys sets them over {group}={base}: give its 'name' "
                                "too") from None
        raise error from None
    return root[group]


def _option_node(group: str, name: str) -> DictConfig:
    """configs/`group`/`name`.yaml as Hydra composes it: its defaults list (schemas and other options of the
    group) in order, its own keys where `_self_` stands (last without one)."""
    data = OmegaConf.load(Path(config_dir()) / group / f"{name}.yaml")
    defaults = list(data.pop("defaults", []))
    parts = []
    for entry in defaults if "_self_" in defaults else [*defaults, "_self_"]:
        if entry == "_self_":
            parts.append(data)
        elif (group, entry) in SCHEMAS:
            parts.append(OmegaConf.structured(SCHEMAS[(group, entry)]))
        else:
            parts.append(_option_node(group, entry))
    return OmegaConf.merge(*parts)


def help_groups(*groups) -> str:
    """`--help`'s list of `groups` and their choices (the YAML files under configs/; the typed schemas the
    choices build on, and bases such as experiment/_fcn_caffe.yaml, are not choices and are left out)."""
    lines = []
    for group in groups:
        choices = sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml") if not p.stem.startswith("_"))
        lines.append(f"{group}: {', '.join(choices)}")
    return "\n".join(lines)


def help_keys(app: str) -> str:
    """`--help`'s list of a checkpoint app's own keys (configs/`app`.yaml's schema: ckpt=, out=, ...), one line
    each: KEY=DEFAULT (KEY=PLACEHOLDER where it is required) and what the key does (its field's `help`). The
    groups (crf, inference) have their own list; the stored training config's keys are the checkpoint's."""
    schema = SCHEMAS[(None, f"{app}_schema")]
    own = [f for f in dataclasses.fields(schema)
           if f.name not in STORED_GROUPS and not dataclasses.is_dataclass(f.type)]
    shown = [f"{f.name}={REQUIRED[f.name][0] if f.name in REQUIRED else hydra_text(field_default(f))}" for f in own]
    width = max(map(len, shown))
    return "\n".join(f"{key:<{width}}  {f.metadata['help']}" for key, f in zip(shown, own))


def checkpoint_run_dir(ckpt: str) -> str:
    """The run a checkpoint belongs to: RUN for RUN/checkpoints/NAME.pt, else the checkpoint's own folder."""
    folder = Path(ckpt).resolve().parent
    return str(folder.parent if folder.name == "checkpoints" else folder)


def to_plain(cfg) -> dict:
    """A resolved config as plain dicts/lists/str (what checkpoints store)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} as {"a.b": 1}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


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


def app_overrides(cfg) -> list:
    """The command line's overrides of the training config stored in a checkpoint (segtrain-eval, -predict and
    -export collect them in open nodes named after the training groups), as dotlist strings."""
    import json

    plain = to_plain(cfg)
    # JSON is YAML: strings stay strings ("null", "{split}annot")
    return [f"{key}={json.dumps(value)}" for group in STORED_GROUPS
            for key, value in flatten(plain.get(group) or {}, f"{group}.").items()]
