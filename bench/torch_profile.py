"""PyTorch's profiler on the bench workloads: the share of step time by op, to set beside
`xfer-bench WORKLOAD --profile` (docs/benchmarks.md, "Where a step's time goes").

    OMP_NUM_THREADS=2 PEER/bin/python bench/torch_profile.py --steps 10 finetune-mobilenet_v2 dann-lenet

Workloads come from shared/bench/torch_peer.py and bench/torch_extra.py unchanged. Prints, per
workload, the ops with the most self CPU time (aten ops; autograd's backward nodes as
`...Backward0`), in ms per step and as a share of the profiled steps' wall time.
"""
import argparse
import importlib.util
import os
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("XFER_SHARED", os.path.join(HERE, "..", "..", "shared"))


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("workloads", nargs="+")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    peer = load("torch_peer", os.path.join(SHARED, "bench", "torch_peer.py"))
    extra = load("torch_extra", os.path.join(HERE, "torch_extra.py"))
    for name in a.workloads:
        if name in peer.WORKLOADS:
            step = peer.WORKLOADS[name]()
        elif name == "finetune-mobilenet_v2":
            step = extra.finetune_mobilenet_v2()
        elif name == "embed-minilm":
            step = extra.embed_minilm(SHARED)[0]
        else:
            sys.exit(f"unknown workload {name}")
        for _ in range(3):
            step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t = time.perf_counter()
            for _ in range(a.steps):
                step()
            wall = (time.perf_counter() - t) * 1000 / a.steps
        rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        print(f"torch-profile {name} ms_per_step={wall:.2f}")
        for e in rows[: a.top]:
            ms = e.self_cpu_time_total / 1000 / a.steps
            print(f"torch-profile {name} {e.key} calls_per_step={e.count / a.steps:.1f} "
                  f"ms_per_step={ms:.2f} share={100 * ms / wall:.1f}%")


if __name__ == "__main__":
    main()
