import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from segtrain.config import config_dir
from segtrain.errors import SegtrainError

from .conftest import compose_config

GROUPS = ("model", "dataset", "optimizer", "schedule", "trainer")
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((Path(config_dir()) / group).glob("*.yaml"))]


def test_default_run_is_fcn8s_on_synthetic_at_demo_width():
    cfg = compose_config()
    assert (cfg.model.name, cfg.dataset.name) == ("fcn8s", "synthetic")
    assert cfg.model.width == 0.125  # dataset_preset/synthetic.yaml
    assert compose_config("model.width=0.5").model.width == 0.5  # the command line still wins


@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_group_option_composes(group, option):
    cfg = compose_config(f"{group}={option}")
    if "name" in cfg[group]:
        assert cfg[group].name == option
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # nothing left unset


@pytest.mark.parametrize("override,message", [
    ("model.widht=0.5", "widht"),  # unknown key
    ("trainer.max_iters=many", "max_iters"),  # wrong type
    ("trainer.amp=fp8", "fp8"),  # not one of off|fp16|bf16
    ("model=fcn9s", "fcn9s"),  # unknown group option
    ("optimizer.momentum=0.9", "momentum"),  # adamw has no momentum
])
def test_bad_overrides_fail_at_composition(override, message):
    with pytest.raises(SegtrainError) as info:
        compose_config(override)
    assert message in str(info.value)


def test_unknown_key_in_a_yaml_option_is_rejected(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "typo.yaml").write_text("defaults:\n  - fcn_schema\nname: fcn8s\nwdith: 0.5\n")
    with pytest.raises(SegtrainError) as info:
        compose_config(f"hydra.searchpath=[file://{tmp_path}]", "model=typo")
    assert "wdith" in str(info.value)


def test_cli_config_typo_fails_before_any_work(tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run([Path(sys.executable).with_name("segtrain"), "trainer.max_itres=5",
                             f"hydra.run.dir={run_dir}"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "max_itres" in result.stderr
    assert not run_dir.exists()


def test_wheel_ships_the_configs(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path,
                    Path(__file__).parents[1]], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("segtrain-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for group, option in OPTIONS:
        assert f"segtrain/configs/{group}/{option}.yaml" in names
    assert {"segtrain/configs/config.yaml", "segtrain/configs/dataset_preset/synthetic.yaml",
            "segtrain/configs/model_preset/fcn/synthetic.yaml"} <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script in ("segtrain = segtrain.cli.train:run", "segtrain-eval = segtrain.cli.evaluate:cli",
                   "segtrain-predict = segtrain.cli.predict:cli", "segtrain-export = segtrain.cli.export:cli"):
        assert script in scripts

    # installed from the wheel (not the checkout) and run from elsewhere, the CLI finds its configs
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, wheel], check=True,
                   capture_output=True, timeout=300)
    code = "import sys, segtrain; print(segtrain.__file__); from segtrain.cli.train import run; run()"
    result = subprocess.run([sys.executable, "-c", code, "--cfg", "job", "model=fcn16s"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(str(site))
    assert "name: fcn16s" in result.stdout and "batch_norm: true" in result.stdout  # model_preset/fcn/synthetic

    # the scripts use whatever segtrain is installed, not the checkout they sit in
    script = Path(__file__).parents[1] / "scripts" / "make_fake_datasets.py"
    result = subprocess.run([sys.executable, "-c", f"import runpy, sys, segtrain; print(segtrain.__file__); "
                             f"sys.argv = ['x', 'fake']; runpy.run_path({str(script)!r}, run_name='__main__')"],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(str(site)) and (tmp_path / "fake" / "folder" / "classes.yaml").is_file()


def test_choices_state_only_what_differs():
    """No group YAML restates a schema default (each default lives in one place), voc_aug extends voc, the FCN
    recipes share one Caffe solver (the VOC ones one split pair too), the DeepLab recipes theirs, and the dataset
    presets for whole images of varying sizes are one file."""
    import dataclasses

    from segtrain.config import option_schema

    configs = Path(config_dir())
    for group in ("model", "dataset", "optimizer", "schedule", "loss", "augment", "trainer", "crf", "inference"):
        for path in sorted((configs / group).glob("*.yaml")):
            choice = OmegaConf.to_container(OmegaConf.load(path))
            fields = {f.name: f for f in dataclasses.fields(option_schema(group, choice.get("name", path.stem)))}
            for key, value in choice.items():
                if key in fields and key != "name":
                    f = fields[key]
                    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                    assert value != default, f"{group}/{path.name}: {key}={value} is the schema's default"
    assert list(OmegaConf.load(configs / "dataset" / "voc_aug.yaml").defaults) == ["voc", "_self_"]
    assert "_fcn_caffe" in OmegaConf.load(configs / "experiment" / "_fcn_voc.yaml").defaults
    for path in sorted((configs / "experiment").glob("fcn*.yaml")):
        base = "_fcn_voc" if path.stem.endswith("_voc") else "_fcn_caffe"
        assert base in OmegaConf.load(path).defaults, path.name
        assert "dataset" not in OmegaConf.load(path) or "val_split" not in OmegaConf.load(path).dataset, path.name
    for path in sorted((configs / "experiment").glob("deeplab*.yaml")):
        assert "_deeplab_caffe" in OmegaConf.load(path).defaults, path.name
    for name in ("folder", "nyud", "voc", "voc_aug"):
        assert list(OmegaConf.load(configs / "dataset_preset" / f"{name}.yaml").defaults) == ["varying_sizes"]


@pytest.mark.parametrize("option", [path.stem for path in sorted((Path(config_dir()) / "model").glob("*.yaml"))])
def test_each_model_takes_only_its_familys_options(option):
    """A model's config holds its family schema's keys and nothing else, and what the family has no option
    for (`always`) is never a key of it: the builder gets only options it honours."""
    import dataclasses

    from segtrain.config import MODEL_SCHEMAS

    schema = MODEL_SCHEMAS[OmegaConf.load(Path(config_dir()) / "model" / f"{option}.yaml").defaults[0]]
    fields = {f.name for f in dataclasses.fields(schema)}
    assert set(compose_config(f"model={option}").model) == fields
    assert not set(schema.always) & fields


def test_the_synthetic_preset_sizes_every_family():
    """dataset=synthetic gives every network BN and no dropout through its family's model_preset (a family
    without those options always has them): the settings one preset once set for all."""
    from segtrain.config import MODEL_SCHEMAS

    for path in sorted((Path(config_dir()) / "model").glob("*.yaml")):
        model = compose_config(f"model={path.stem}").model
        schema = OmegaConf.get_type(model)
        batch_norm = model.batch_norm if "batch_norm" in model else schema.always["batch_norm"][0]
        dropout = model.dropout if "dropout" in model else schema.always["dropout"][0]
        assert (model.width, batch_norm, dropout) == (0.125, True, 0.0), path.stem
        assert schema in MODEL_SCHEMAS.values()
    on_voc = compose_config("dataset=voc").model  # other datasets keep the published network
    assert (on_voc.width, on_voc.batch_norm, on_voc.dropout) == (1.0, False, 0.5)


@pytest.mark.parametrize("overrides,line", [
    (["model=deeplab_aspp", "model.dropout=0.5"],
     "model.dropout=0.5: deeplab_aspp has no dropout option; DeepLab v2's ResNet-101 uses none"),
    (["trainer.patch_size=64"], "trainer.patch_size=64: trainer.patch_size is now augment.crop_size"),
])
def test_an_option_the_model_lacks_or_a_moved_key_is_one_line_saying_why(tmp_path, overrides, line):
    run_dir = tmp_path / "run"
    result = subprocess.run([Path(sys.executable).with_name("segtrain"), *overrides, f"hydra.run.dir={run_dir}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and not run_dir.exists()
    assert result.stderr.strip() == f"segtrain: error: {line}"


def test_checkpoints_from_the_one_union_schema_still_load():
    """Before each family had its schema, every checkpoint stored batch_norm, dropout, learned_upsampling and
    pretrained. Such a key is dropped where it holds what the family always has; any other value, or an override
    of such a key, is one line."""
    from segtrain.config import stored_config, to_plain

    stored = to_plain(compose_config("model=frrn_a"))
    union = {"batch_norm": True, "dropout": 0.0, "learned_upsampling": False, "pretrained": None}
    old = {**stored, "model": {**stored["model"], **union}}
    assert to_plain(stored_config(old)) == stored
    with pytest.raises(SegtrainError, match=r"^the checkpoint's model.dropout=0.5: frrn_a has no dropout option"):
        stored_config({**old, "model": {**old["model"], "dropout": 0.5}})
    with pytest.raises(SegtrainError, match=r"^model.pretrained=imagenet: frrn_a has no pretrained option; FRRN is "
                                            r"trained from scratch"):
        stored_config(stored, ["model.pretrained=imagenet"])


def _option_using(group, schema):
    """A choice of `group` whose YAML builds on `schema` (its fields are then in the composed config)."""
    from segtrain.config import option_schema

    for path in sorted((Path(config_dir()) / group).glob("*.yaml")):
        if not path.stem.startswith("_") and option_schema(group, path.stem) is schema:
            return path.stem
    raise AssertionError(f"no {group} option builds on {schema.__name__}")


def _schema_nodes():
    """(dotted prefix, schema, a config holding it) for every schema of the training and checkpoint-app configs."""
    from segtrain.config import SCHEMAS
    from segtrain.config.schemas import CheckpointAppConfig

    for (group, name), schema in SCHEMAS.items():
        if group is None:
            if issubclass(schema, CheckpointAppConfig):
                app = name.replace("_schema", "")
                yield "", schema, lambda app=app: compose_config_app(app)
            else:
                yield "", schema, compose_config
        elif group in ("crf", "inference"):
            yield f"{group}.", schema, lambda group=group: compose_config_app("eval", f"{group}=" + (
                "dense" if group == "crf" else "slide"))
        else:
            option = _option_using(group, schema)
            yield f"{group}.", schema, lambda group=group, option=option: compose_config(f"{group}={option}")


def compose_config_app(app, *overrides):
    from segtrain.config import compose

    extra = ["input=x", "output=y"] if app == "predict" else []
    return compose(["ckpt=x.pt", *extra, *overrides], app)


CANDIDATES = [0, -1, 1, 0.5, 1.5, 1e9, -1e9, 10 ** 9, 2 ** 32, [], [-1.0], [2.0, 0.999], [0.9], [0.5, 0.5, 0.5],
              [[300, 0, 0]], "abc"]


def test_every_schema_field_states_its_range_and_fails_outside_it_in_one_line():
    """Each numeric and list field of every schema declares its range beside it; a value just outside it (or of
    another type) is one line `key=value: expected ...`, from the same check_config the console scripts run on
    the composed command line (Hydra passes a well-typed value through unchanged, so updating the composed config
    is what composing with the override gives). Wrong types are refused by the schema itself and described by
    the field's range. The console scripts' exit 2 for such lines is checked on samples below."""
    import dataclasses
    import typing

    from omegaconf import OmegaConf

    from segtrain.config import check_config
    from segtrain.config.checks import expected_of

    walked = 0
    for prefix, schema, make in _schema_nodes():
        base = make()
        for f in dataclasses.fields(schema):
            kind = typing.get_origin(f.type) or f.type
            args = [a for a in typing.get_args(f.type) if a is not type(None)]
            numeric = kind in (int, float, list) or (kind is typing.Union and args and
                                                     (typing.get_origin(args[0]) or args[0]) in (int, float, list))
            check = f.metadata.get("check")
            if numeric:
                assert check is not None, f"{prefix}{f.name}: a numeric or list field without a stated range"
            if check is None or OmegaConf.get_type(OmegaConf.select(base, prefix.rstrip(".")) if prefix else base) \
                    is not schema:
                continue
            key = f"{prefix}{f.name}"
            for bad in (v for v in CANDIDATES if _fits(f.type, v)):
                cfg = base.copy()
                OmegaConf.update(cfg, key, bad, force_add=False)
                stored = OmegaConf.select(cfg, key)  # as the schema converted it (List[str] makes 1 "1")
                if check.test(OmegaConf.to_container(stored) if OmegaConf.is_config(stored) else stored):
                    continue
                with pytest.raises(SegtrainError) as info:
                    check_config(cfg)
                assert str(info.value).startswith(f"{key}=") and str(info.value).endswith(
                    f": expected {check.expected}"), key
                assert "\n" not in str(info.value)
                walked += 1
                break
            if numeric:  # another type: refused by the schema, described by the range
                with pytest.raises(Exception):
                    OmegaConf.update(base.copy(), key, "abc", force_add=False)
                assert expected_of(schema, f.name) == check.expected
    assert walked > 100


def _fits(annotation, value) -> bool:
    """Whether OmegaConf would take `value` for a field of this type (so that the range, not the type, is tested)."""
    import typing

    kind = typing.get_origin(annotation) or annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if kind is typing.Union and args:
        return _fits(args[0], value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is list:
        return isinstance(value, list)
    return not isinstance(value, list) or annotation is typing.Any


@pytest.mark.parametrize("overrides,line", [
    (["dataset.image_size=0"], "dataset.image_size=0: expected a whole number of pixels in [8, 4096]"),
    (["dataset.num_train=0"], "dataset.num_train=0: expected a whole number of images >= 1"),
    (["dataset.num_val=0"], "dataset.num_val=0: expected a whole number of images >= 1"),
    (["seed=-1"], "seed=-1: expected a seed in [0, 4.29497e+09]"),
    (["model.width=100"], "model.width=100: expected a channel multiplier in (0, 16]"),
    (["optimizer=adamw", "optimizer.betas=[2,0.999]"], "optimizer.betas=[2,0.999]: expected a list of 2 numbers in "
                                                       "[0, 1)"),
    (["optimizer=adamw", "optimizer.betas=[0.9]"], "optimizer.betas=[0.9]: expected a list of 2 numbers in [0, 1)"),
    (["optimizer=sgd", "optimizer.momentum=-1"], "optimizer.momentum=-1: expected a number in [0, 1)"),
    (["optimizer=adamw", "optimizer.eps=-1"], "optimizer.eps=-1: expected a number > 0"),
    (["augment.crop_size=100000"], "augment.crop_size=100000: expected a whole number of pixels in [8, 8192]"),
    (["trainer.max_iters=abc"], "trainer.max_iters=abc: expected a whole number of iterations >= 1"),
    (["trainer.max_iters=1.5"], "trainer.max_iters=1.5: expected a whole number of iterations >= 1"),
    (["trainer.amp=fp8"], "trainer.amp=fp8: expected one of off, fp16, bf16"),
    (["trainer.max_iter=5"], "trainer.max_iter=5: trainer has no key 'max_iter'; did you mean trainer.max_iters?"),
    (["loss.class_weights=[-1,1,1,1,1]"], "loss.class_weights=[-1,1,1,1,1]: expected null, median_frequency, "
                                          "inverse_log or a list of weights >= 0 (not all 0), one per class"),
    (["loss.top_k=5"], "loss.top_k=5: has no effect with loss=cross_entropy (only loss=bootstrap uses it)"),
    (["loss=dice", "loss.gamma=2"], "loss.gamma=2: has no effect with loss=dice (only loss=focal uses it)"),
    (["loss=focal", "loss.alpha=[0.25,0.75]"], "loss.alpha=[0.25,0.75]: loss has no key 'alpha'; did you mean "
                                               "loss.class_weights (focal's alpha_t, one per class)?"),
    (["augment.hue=0.9"], "augment.hue=0.9: expected a number in [0, 0.5]"),
    (["augment=photometric", "augment.scale_min=0.7"],
     "augment.scale_min=0.7: has no effect with augment=photometric (only augment=deeplab uses it)"),
    (["dataset=folder", "dataset.roi_suffix=_fov.png"], "dataset.roi_suffix=_fov.png: has no effect without "
                                                        "dataset.roi_dir"),
    (["schedule.warmup_iters=5000"], "schedule.warmup_iters=5000: the warm-up would last the whole run "
                                     "(trainer.max_iters=300), so the learning rate would never reach optimizer.lr; "
                                     "expected fewer iterations than trainer.max_iters"),
])
def test_a_bad_command_line_is_one_line_and_exit_2_before_hydra_starts(overrides, line, capsys):
    """The console script's check before Hydra creates the run folder (segtrain.cli.train)."""
    from segtrain.cli.train import refuse_overrides_that_do_not_compose

    with pytest.raises(SystemExit) as info:
        refuse_overrides_that_do_not_compose(["segtrain", *overrides])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"segtrain: error: {line}"]


@pytest.mark.parametrize("override,line", [
    ("inference.tile=0", "inference.tile=0: expected a window size in pixels >= 8"),
    ("inference.scales=[]", "inference.scales=[]: expected a list of 1 or more scales in (0, 16]"),
    ("inference.scales=[0]", "inference.scales=[0]: expected a list of 1 or more scales in (0, 16]"),
    ("inference.overlap=1.5", "inference.overlap=1.5: expected a fraction in [0, 1)"),
    ("optimizer.lr=0.5", "optimizer.lr=0.5: a training key; it has no effect on segtrain-eval"),
    ("trainer.max_iters=3", "trainer.max_iters=3: a training key; it has no effect on segtrain-eval"),
    # RUN/eval/NAME-TIME stays one folder of RUN/eval/ (a name with a separator wrote elsewhere, ../.. out of RUN)
    ("name=a/b", "name=a/b: expected a folder name without / or \\ (not . or ..)"),
    ("name=../../x", "name=../../x: expected a folder name without / or \\ (not . or ..)"),
    ("name=a\\b", "name=a\\b: expected a folder name without / or \\ (not . or ..)"),
])
def test_the_checkpoint_apps_own_keys_are_checked_too(override, line):
    from segtrain.config import check_command_line

    with pytest.raises(SegtrainError) as info:
        check_command_line(["ckpt=x.pt", "inference=slide", override], "eval")
    assert str(info.value) == line
    # what evaluation and prediction do use of the trainer group stays open to them
    check_command_line(["ckpt=x.pt", "input=a", "output=b", "trainer.device=cpu", "trainer.num_workers=0"], "predict")


@pytest.mark.parametrize("program", ["segtrain-eval", "segtrain-predict", "segtrain-export"])
@pytest.mark.parametrize("override", ["optimizer=adamw", "schedule=cosine", "loss=dice", "augment=deeplab",
                                      "trainer=default"])
def test_a_training_group_chosen_on_a_checkpoint_command_is_the_training_keys_line(program, override, capsys):
    """Not Hydra's "Could not override 'augment'. No match in the defaults list": the command line's check (a -m
    sweep's too) and compose() for Python callers give the line a training key (optimizer.lr=) gets."""
    from segtrain.cli import compose_app, require_checkpoints

    line = f"{override}: a training key; it has no effect on {program}"
    argv = [f"ckpt={__file__}", "input=a", "output=b"][:3 if program == "segtrain-predict" else 1]
    for flags in ([], ["-m"]):
        with pytest.raises(SystemExit) as info:
            require_checkpoints(program, [*flags, *argv, override])
        assert info.value.code == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"{program}: error: {line}"]
    with pytest.raises(SegtrainError) as error:
        compose_app(program.removeprefix("segtrain-"), [*argv, override])
    assert str(error.value) == line
    if override == "loss=dice":  # model and dataset: the checkpoint's own; their keys can be overridden
        for choice in ("model=fcn16s", "dataset=voc"):
            with pytest.raises(SegtrainError) as error:
                compose_app(program.removeprefix("segtrain-"), [*argv, choice])
            group = choice.partition("=")[0]
            assert str(error.value) == (f"{choice}: the checkpoint's {group} is the one its network was trained "
                                        f"with; override its keys ({group}.KEY=VALUE) instead")


@pytest.mark.parametrize("argv,line", [
    (["input=images"], "output=FOLDER is required (the folder for NAME.png and NAME_overlay.png)"),
    (["output=labels"], "input=PATH is required (an image or a folder of images)"),
])
def test_a_missing_mandatory_key_is_one_line_naming_it(argv, line, capsys):
    """Before Hydra starts (segtrain-eval's missing ckpt= is require_checkpoints' line)."""
    from segtrain.cli import require_checkpoints

    with pytest.raises(SystemExit) as info:
        require_checkpoints("segtrain-predict", [f"ckpt={__file__}", *argv])  # any file passes for a checkpoint
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"segtrain-predict: error: {line}"]
    with pytest.raises(SystemExit):
        require_checkpoints("segtrain-eval", ["crf=dense"])
    assert capsys.readouterr().err.strip().splitlines() == [
        "segtrain-eval: error: ckpt=PATH is required (a checkpoint, e.g. RUN/checkpoints/best.pt)"]


def test_a_classes_yaml_giving_a_name_colour_or_key_twice_is_one_line_naming_both(tmp_path):
    """Metrics, reports and TensorBoard key classes by name: a repeated name would drop a class from them."""
    from segtrain.data.folder import read_classes

    path = tmp_path / "classes.yaml"
    path.write_text("classes: [background, road, car, road]\n")
    with pytest.raises(SegtrainError) as info:
        read_classes(path)
    assert str(info.value) == (f"dataset.classes={path}: the class name 'road' is listed 2 times (entries 1, 3); "
                               "give each class a name of its own")
    path.write_text("classes:\n  - {name: background, color: [0, 0, 0]}\n  - {name: road, color: [128, 64, 128]}\n"
                    "  - {name: car, color: [128, 64, 128]}\n  - {name: sky}\n")
    with pytest.raises(SegtrainError) as info:  # a colour mask's pixel of that colour would mean either class
        read_classes(path)
    assert str(info.value) == (f"dataset.classes={path}: the classes 'road' (entry 1) and 'car' (entry 2) share the "
                               "colour [128, 64, 128]; give each class a colour of its own")
    # a key given twice (YAML's error is several lines): one line quoting both as the file writes them
    path.write_text('classes:\n  - {"name": background, name: bg}\n  - road\n')
    with pytest.raises(SegtrainError) as info:
        read_classes(path)
    assert str(info.value) == (f'dataset.classes={path}: not a classes YAML (line 2: key name given twice in one '
                               'mapping, first as "name" on line 2); expected `classes: [{name: ..., color: [R, G, '
                               'B]}, ...]`')
    path.write_text("classes: [a, b]\nclasses: [c, d]\n")
    with pytest.raises(SegtrainError, match=r"\(line 2: key classes given twice in one mapping, first on line 1\)"):
        read_classes(path)
    path.write_text("classes: {road: 1, car: 0}\n")  # a mapping: its keys in no stated class order
    with pytest.raises(SegtrainError, match=r"not a classes YAML \(ValueError: classes is a dict, not a list\)"):
        read_classes(path)


def test_checkpoints_carry_their_config_version_and_upgrades_key_on_it(finished_run):
    """Every new checkpoint is stamped with the config version; an unstamped (version 0) config is upgraded by
    what its keys show, a stamped one is read as its version says (a moved key there is no guess but an error),
    and a version newer than this segtrain's is one line."""
    from segtrain.checkpoint import load_checkpoint
    from segtrain.config import CONFIG_VERSION, stored_config, to_plain

    state = load_checkpoint(finished_run[0] / "checkpoints" / "last.pt")
    assert state["config_version"] == CONFIG_VERSION == 1
    old = {**state["config"], "trainer": {**state["config"]["trainer"], "sample_rate": 0.5}}
    old["loss"] = {k: v for k, v in old["loss"].items() if k != "sample_rate"}
    assert to_plain(stored_config(old, version=0))["loss"]["sample_rate"] == 0.5  # version 0: moved
    with pytest.raises(SegtrainError, match="does not fit this segtrain's schemas"):
        stored_config(old, version=1)  # stamped 1: trainer.sample_rate was never a key of it
    with pytest.raises(SegtrainError, match=r"config version 2 is newer than this segtrain's \(1\)"):
        stored_config(state["config"], version=2)


def test_configs_are_found_in_a_checkout_that_is_only_on_the_path(monkeypatch):
    """As scripts/device_check.py runs segtrain on a GPU machine: no install, so no segtrain.configs package."""
    import importlib.resources

    installed = Path(config_dir())

    def no_such_package(anchor):
        raise ModuleNotFoundError(f"No module named {anchor!r}", name=anchor)

    monkeypatch.setattr(importlib.resources, "files", no_such_package)
    found = Path(config_dir())
    assert found == installed.resolve() and (found / "config.yaml").is_file()
