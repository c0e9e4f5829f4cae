import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from segtrain.config import config_dir

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
    with pytest.raises(ConfigCompositionException) as info:
        compose_config(override)
    assert message in str(info.value) + str(info.value.__cause__)


def test_unknown_key_in_a_yaml_option_is_rejected(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "typo.yaml").write_text("defaults:\n  - fcn_schema\nname: fcn8s\nwdith: 0.5\n")
    with pytest.raises(ConfigCompositionException) as info:
        compose_config(f"hydra.searchpath=[file://{tmp_path}]", "model=typo")
    assert "wdith" in str(info.value) + str(info.value.__cause__)


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
    """Model YAMLs restate no schema default, voc_aug extends voc, the FCN recipes share one Caffe solver, and the
    dataset presets for whole images of varying sizes are one file."""
    from segtrain.config import MODEL_SCHEMAS

    configs = Path(config_dir())
    for path in sorted((configs / "model").glob("*.yaml")):
        choice = OmegaConf.load(path)
        schema = MODEL_SCHEMAS[choice.defaults[0]]()
        for key, value in choice.items():
            if key not in ("defaults", "name"):
                assert value != getattr(schema, key), f"{path.name}: {key}={value} is the schema's default"
    assert list(OmegaConf.load(configs / "dataset" / "voc_aug.yaml").defaults) == ["voc", "_self_"]
    for path in sorted((configs / "experiment").glob("fcn*.yaml")):
        assert "_fcn_caffe" in OmegaConf.load(path).defaults, path.name
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
    from segtrain.config import compose_stored_config, to_plain
    from segtrain.errors import SegtrainError

    stored = to_plain(compose_config("model=frrn_a"))
    union = {"batch_norm": True, "dropout": 0.0, "learned_upsampling": False, "pretrained": None}
    old = {**stored, "model": {**stored["model"], **union}}
    assert to_plain(compose_stored_config(old, [])) == stored
    with pytest.raises(SegtrainError, match=r"^the checkpoint's model.dropout=0.5: frrn_a has no dropout option"):
        compose_stored_config({**old, "model": {**old["model"], "dropout": 0.5}}, [])
    with pytest.raises(SegtrainError, match=r"^model.pretrained=imagenet: frrn_a has no pretrained option; FRRN is "
                                            r"trained from scratch"):
        compose_stored_config(stored, ["model.pretrained=imagenet"])


def test_configs_are_found_in_a_checkout_that_is_only_on_the_path(monkeypatch):
    """As scripts/device_check.py runs segtrain on a GPU machine: no install, so no segtrain.configs package."""
    import importlib.resources

    installed = Path(config_dir())

    def no_such_package(anchor):
        raise ModuleNotFoundError(f"No module named {anchor!r}", name=anchor)

    monkeypatch.setattr(importlib.resources, "files", no_such_package)
    found = Path(config_dir())
    assert found == installed.resolve() and (found / "config.yaml").is_file()
