#!/usr/bin/env python3
"""PyTorch reference for xfer's extra benchmark workloads `embed-minilm`,
`finetune-mobilenet_v2` (see its function below; plain torch, no torchvision) and
`imagefolder-read`.

imagefolder-read: torchvision's ImageFolder (PIL decode, convert("RGB")) with
RandomResizedCrop(224) + RandomHorizontalFlip + ToTensor + Normalize(ImageNet) in a
DataLoader(batch_size=32, shuffle=True, num_workers=2, persistent_workers=True,
prefetch_factor=2, drop_last=True); one step = one batch. The folder is $XFER_BENCH_FOLDER,
else the one xfer-bench generated ($TMPDIR/xfer-bench-imagefolder-<--images>; run xfer-bench
first). Prints `imagefolder-read ms_per_step=<ms per batch> peak_rss_mb=<mb> images_per_s=<n>`
(peak RSS of the main process and its workers together).

all-MiniLM-L6-v2 sentence embeddings (BERT encoder, mean pooling over the attention mask,
L2 normalisation), batch 32 of the fixture sentences (repeated), tokenised with the model's
own tokenizer.json. Prints the line format of shared/bench/torch_peer.py plus sentences/s:

    embed-minilm ms_per_step=<median ms per batch> peak_rss_mb=<mb> sentences_per_s=<n>

Needs: torch and tokenizers. The model is read from $XFER_SHARED/models/all-MiniLM-L6-v2 with
a small safetensors reader (no `safetensors` package needed). Nothing downloads.
"""
import argparse, json, math, os, resource, statistics, struct, sys, time

import torch
import torch.nn.functional as F


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dt = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=dt[v["dtype"]]) if b > a else torch.empty(0)
        out[k] = t.reshape(v["shape"]).float()
    return out


def encoder(w, cfg, ids, mask):
    h, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    eps = cfg["layer_norm_eps"]
    pos = torch.arange(ids.shape[1])
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][pos] \
        + w["embeddings.token_type_embeddings.weight"][torch.zeros_like(ids)]
    x = F.layer_norm(x, (h,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        lin = lambda t, n: F.linear(t, w[p + n + ".weight"], w[p + n + ".bias"])
        b, s, _ = x.shape
        split = lambda t: t.view(b, s, nh, h // nh).transpose(1, 2)
        q, k, v = split(lin(x, "attention.self.query")), split(lin(x, "attention.self.key")), split(lin(x, "attention.self.value"))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(h // nh) + bias, -1) @ v
        a = lin(a.transpose(1, 2).reshape(b, s, h), "attention.output.dense")
        x = F.layer_norm(a + x, (h,), w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
        m = lin(F.gelu(lin(x, "intermediate.dense")), "output.dense")
        x = F.layer_norm(m + x, (h,), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    m = mask[..., None].float()
    return F.normalize((x * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)


def embed_minilm(shared):
    from tokenizers import Tokenizer
    mdir = os.path.join(shared, "models", "all-MiniLM-L6-v2")
    cfg = json.load(open(os.path.join(mdir, "config.json")))
    w = load_safetensors(os.path.join(mdir, "model.safetensors"))
    tok = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
    tok.enable_truncation(256)
    tok.enable_padding()
    sents = json.load(open(os.path.join(shared, "fixtures", "minilm_embeddings.json")))["sentences"]
    batch = [sents[i % len(sents)] for i in range(32)]

    def step():
        enc = tok.encode_batch(batch)
        ids = torch.tensor([e.ids for e in enc])
        mask = torch.tensor([e.attention_mask for e in enc])
        with torch.no_grad():
            return encoder(w, cfg, ids, mask)
    return step, len(batch)


# ---- finetune-mobilenet_v2 ---------------------------------------------------
def _make_divisible(v, d=8):
    n = max(d, int(v + d / 2) // d * d)
    return n + d if n < 0.9 * v else n


class InvertedResidual(torch.nn.Module):
    """torchvision's block: [1x1 expand, BN, ReLU6], 3x3 depthwise, BN, ReLU6, 1x1 project, BN."""
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        nn = torch.nn
        hidden = int(round(cin * t))
        layers = []
        if t != 1:
            layers.append(nn.Sequential(nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()))
        layers += [nn.Sequential(nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                                 nn.BatchNorm2d(hidden), nn.ReLU6()),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.res = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.res else self.conv(x)


class MobileNetV2(torch.nn.Module):
    """Same module names as torchvision.models.mobilenet_v2 (width 1.0)."""
    def __init__(self, num_classes=1000):
        super().__init__()
        nn = torch.nn
        feats = [nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6())]
        cin = 32
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                           (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(n):
                feats.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        feats.append(nn.Sequential(nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6()))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(x)


def finetune_mobilenet_v2():
    """Batch 16 of 3x128x128, batch norm in training mode, dropout 0.2, a new 10-class head,
    cross-entropy, SGD lr 0.01 momentum 0.9 on every parameter: one full training step."""
    torch.manual_seed(0)
    net = MobileNetV2(1000)
    net.classifier[1] = torch.nn.Linear(1280, 10)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(16, 3, 128, 128)
    y = torch.randint(0, 10, (16,))

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return step


def child_pids():
    pids = []
    for task in os.listdir("/proc/self/task"):
        try:
            pids += open(f"/proc/self/task/{task}/children").read().split()
        except OSError:
            pass
    return pids


def vm_hwm_mb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def imagefolder_read(images):
    import tempfile
    from torchvision import datasets, transforms
    folder = os.environ.get("XFER_BENCH_FOLDER") or os.path.join(
        tempfile.gettempdir(), f"xfer-bench-imagefolder-{images}")
    if not os.path.isdir(folder):
        sys.exit(f"{folder} not found: run `xfer-bench imagefolder-read --images {images}` first")
    t = transforms.Compose([
        transforms.RandomResizedCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    ds = datasets.ImageFolder(folder, transform=t)
    g = torch.Generator().manual_seed(0)
    dl = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=2,
                                     persistent_workers=True, prefetch_factor=2,
                                     drop_last=True, generator=g)
    state = {"it": iter(dl)}

    def step():
        try:
            x, _ = next(state["it"])
        except StopIteration:
            state["it"] = iter(dl)
            x, _ = next(state["it"])
        assert tuple(x.shape) == (32, 3, 224, 224)
    return step, 32


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("workloads", nargs="*", default=["embed-minilm", "finetune-mobilenet_v2"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    shared = os.environ.get("XFER_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    for name in a.workloads:
        if name == "embed-minilm":
            step, n, unit = *embed_minilm(shared), "sentences_per_s"
        elif name == "finetune-mobilenet_v2":
            step, n, unit = finetune_mobilenet_v2(), None, None
        elif name == "imagefolder-read":
            step, n, unit = *imagefolder_read(a.images), "images_per_s"
        else:
            sys.exit(f"unknown workload {name}")
        for _ in range(3):
            step()
        times = []
        for _ in range(a.steps):
            t = time.perf_counter()
            step()
            times.append((time.perf_counter() - t) * 1000)
        med = statistics.median(times)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if name == "imagefolder-read":  # the worker processes hold their own memory
            rss += sum(vm_hwm_mb(pid) for pid in child_pids())
        extra = f" {unit}={n * 1000 / med:.1f}" if n else ""
        print(f"{name} ms_per_step={med:.3f} peak_rss_mb={rss:.0f}{extra}", flush=True)

if __name__ == "__main__":
    sys.exit(main())
