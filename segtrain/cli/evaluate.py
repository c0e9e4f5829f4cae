"""`segtrain-eval ckpt=PATH [crf=dense|...] [inference=whole|slide|multiscale] [ensemble=[PATH,...]] [KEY=VALUE ...]`

A Hydra app (configs/eval.yaml): `segtrain-eval --help` lists its groups, `--cfg job` shows the composed config,
`-m` sweeps. It rebuilds the model and dataset from the config stored in the checkpoint, evaluates on the
validation split and prints a per-class table and the four metrics. Keys of the stored training config can be
overridden (dataset.val_split=train, trainer.device=cpu) and are checked against the training schemas.

Each evaluation writes into its own folder, by default RUN/eval/<name>-<time>/ (RUN: the checkpoint's run;
<name>: name=, default the checkpoint's stem): metrics.json, metrics.md (the table), config.yaml (the training
config as evaluated, with the evaluation's own keys), and the confusion matrix (confusion.csv, confusion.png).

`ensemble=[B.pt]` adds checkpoints trained on the same dataset and scores the product of all the networks' class
probabilities: `ckpt=DECONVNET.pt ensemble=[FCN8S.pt]` is the DeconvNet paper's EDeconvNet. `crf=...` refines
the probabilities with a fully connected CRF and reports the metrics without and with it side by side.

Sweeps: `segtrain-eval -m ckpt=A.pt,B.pt crf=dense crf.w1=3,4,5` runs each combination; the network scores each
checkpoint's split once and the later jobs only rerun the CRF. `-m eval_sweep=optuna_crf` searches the CRF's
parameters with Optuna, maximising the mean IU after the CRF. The sweep folder gets sweep_summary.md and .json.
The work is segtrain.evaluate's.
"""
from ..evaluate import evaluate, finished_job
from . import checkpoint_app

main, run, cli = checkpoint_app("segtrain-eval", "eval", evaluate, finish=finished_job, fresh_folder=True)

if __name__ == "__main__":
    cli()
