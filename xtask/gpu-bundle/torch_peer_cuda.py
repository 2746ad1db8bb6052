#!/usr/bin/env python3
"""The PyTorch reference of shared/bench/WORKLOADS.md on a CUDA device.

Reuses the workloads of torch_peer.py (copied beside this file by `cargo xtask gpu-bundle`)
unchanged: with torch.set_default_device every tensor and module they create lives on the
device. Timing as torch_peer.py (3 untimed warm-up steps, median of N steps), plus a
torch.cuda.synchronize() at the end of each timed step so the GPU's work is counted. TF32 is
off (cuDNN enables it for convolutions by default), so PyTorch computes in full f32 as
candle does. Prints `<workload> ms_per_step=<median> peak_rss_mb=<MB>`.

Usage: python3 torch_peer_cuda.py [--device cuda] [--steps N] [WORKLOAD ...]
"""
import argparse, os, resource, statistics, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import torch_peer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("workloads", nargs="*", default=list(torch_peer.WORKLOADS))
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    torch.set_default_device(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        print(f"# torch {torch.__version__} cuda {torch.version.cuda} on "
              f"{torch.cuda.get_device_name(dev)}, cudnn {torch.backends.cudnn.version()}",
              flush=True)
    for name in a.workloads:
        step = torch_peer.WORKLOADS[name]()
        for _ in range(3):
            step()
        sync()
        times = []
        for _ in range(a.steps):
            t = time.perf_counter()
            step()
            sync()
            times.append((time.perf_counter() - t) * 1000)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{name} ms_per_step={statistics.median(times):.3f} peak_rss_mb={rss:.0f}",
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
