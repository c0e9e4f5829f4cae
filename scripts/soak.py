"""Soak test: a long run of the demo model with validation and checkpoints every 500 iterations, sampling the
process's resident memory (RSS) at each checkpoint; memory that keeps growing is a leak.

    python scripts/soak.py                                   # 10,000 iterations, batch 2 (about 30 min on 2 cores)
    python scripts/soak.py --iters 2000 trainer.batch_size=8

Prints the RSS at the start (first checkpoint), middle and end and their spread; docs/benchmarks.md records it.
"""
import argparse
import tempfile
import time

import segtrain.checkpoint as checkpoint_module
import segtrain.train as train_module
from segtrain.config import compose


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=500, help="validation and checkpoint interval")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = compose([
        f"trainer.max_iters={args.iters}", f"trainer.val_interval={args.every}",
        f"trainer.ckpt_interval={args.every}", "trainer.log_interval=100", "trainer.batch_size=2",
        "trainer.device=cpu", "dataset.num_val=20", *args.overrides])

    samples = []  # (iteration, RSS MiB), taken as each last.pt is written
    real_save = checkpoint_module.save_checkpoint

    def save_and_sample(state, path):
        real_save(state, path)
        if path.name == "last.pt":
            samples.append((state["iteration"], rss_mib()))
            print(f"iteration {state['iteration']}: RSS {samples[-1][1]:.1f} MiB", flush=True)

    checkpoint_module.save_checkpoint = save_and_sample
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        train_module.train(cfg, run_dir)
    start, middle, end = samples[0], samples[len(samples) // 2], samples[-1]
    values = [rss for _, rss in samples]
    print(f"{args.iters} iterations in {time.perf_counter() - began:.0f} s; RSS start (iteration {start[0]}) "
          f"{start[1]:.1f} MiB, middle ({middle[0]}) {middle[1]:.1f} MiB, end ({end[0]}) {end[1]:.1f} MiB; "
          f"spread {100 * (max(values) - min(values)) / start[1]:.1f}% of the start")


if __name__ == "__main__":
    main()
