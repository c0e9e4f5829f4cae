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
    (tmp_path / "model" / "typo.yaml").write_text("defaults:\n  - model_schema\nname: fcn8s\nwdith: 0.5\n")
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
    assert {"segtrain/configs/config.yaml", "segtrain/configs/dataset_preset/synthetic.yaml"} <= names
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
    assert "name: fcn16s" in result.stdout

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
    from segtrain.config import ModelConfig

    configs = Path(config_dir())
    schema = ModelConfig()
    for path in sorted((configs / "model").glob("*.yaml")):
        for key, value in OmegaConf.load(path).items():
            if key not in ("defaults", "name"):
                assert value != getattr(schema, key), f"{path.name}: {key}={value} is the schema's default"
    assert list(OmegaConf.load(configs / "dataset" / "voc_aug.yaml").defaults) == ["voc", "_self_"]
    for path in sorted((configs / "experiment").glob("fcn*.yaml")):
        assert "_fcn_caffe" in OmegaConf.load(path).defaults, path.name
    for name in ("folder", "nyud", "voc", "voc_aug"):
        assert list(OmegaConf.load(configs / "dataset_preset" / f"{name}.yaml").defaults) == ["varying_sizes"]
