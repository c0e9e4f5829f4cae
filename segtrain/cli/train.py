"""`segtrain [KEY=VALUE ...]`: compose the config and train. `segtrain --help` lists the groups' options."""
import os
import sys
import tempfile

import hydra
from hydra.core.hydra_config import HydraConfig

from ..config import config_dir, register_configs
from ..errors import SegtrainError
from . import exit_with_error

register_configs()


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg) -> float:
    from ..train import train  # torch is imported only once the config is known to be valid

    try:
        result = train(cfg, HydraConfig.get().runtime.output_dir)
    except SegtrainError as error:
        exit_with_error("segtrain", error)
    return result["best_mean_iu"]  # what a Hydra sweeper (e.g. Optuna) maximises


def run() -> None:
    """The console script: under torchrun, ranks other than 0 keep Hydra's files out of the run directory that
    rank 0 owns (train() uses rank 0's directory on every rank)."""
    if int(os.environ.get("RANK", "0")) > 0:
        sys.argv += ["hydra.output_subdir=null", f"hydra.run.dir={tempfile.mkdtemp(prefix='segtrain-rank')}"]
    main()


if __name__ == "__main__":
    run()
