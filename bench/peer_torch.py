#!/usr/bin/python3
"""PyTorch (CPU) twin of the attn reference model, for peer timings.

Reference model (Keras):
  Input (784, 1) -> Attention(use_scale=True)([x, x]) -> Flatten -> Dense(100, relu)
  -> Dense(10, sigmoid); loss = SparseCategoricalCrossentropy(from_logits=True) taken,
  as Keras on TensorFlow does, on the PRE-sigmoid logits of the last Dense;
  Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-7); batch 20.

Attention is Luong dot-product self-attention without projections:
  S = scale * x x^T (scale: trainable scalar, initialised to 1.0, no 1/sqrt(d)),
  W = softmax(S, -1), out = W x.

Modes (--what):
  train-steps  time N training steps (forward, loss, backward, Adam step)
  encoder-steps  the same for RowsEncoder, a Transformer encoder block over MNIST rows
  epoch        a full training epoch + validation pass (or extrapolated from --steps)
  attention    forward+backward of the attention op alone, dense random inputs
  mha          forward+backward of nn.MultiheadAttention (self-attention, all gradients)
  matmul       square float matmul rate (GFLOP/s)
  env          only the environment report (threads, BLAS and allocator mapped)

Every mode prints one JSON line on stdout.  Run with /usr/bin/python3 (Debian's torch).
"""
import argparse
import gzip
import json
import math
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


# ---------------------------------------------------------------- environment

def mapped_libraries():
    """Shared objects mapped into this process, from /proc/self/maps."""
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[5].startswith("/") and ".so" in parts[5]:
                    libs.add(os.path.realpath(parts[5]))
    except OSError:
        pass
    return sorted(libs)


def env_report(threads):
    libs = mapped_libraries()
    blas = [p for p in libs if any(k in os.path.basename(p) for k in ("blas", "lapack"))]
    openblas_variant = "none"
    if any("/openblas-openmp/" in p for p in blas):
        openblas_variant = "openmp"
    elif any("/openblas-pthread/" in p for p in blas):
        openblas_variant = "pthread"
    elif any("openblas" in p for p in blas):
        openblas_variant = "other"
    allocator = "glibc"
    if any("tcmalloc" in os.path.basename(p) for p in libs):
        allocator = "tcmalloc"
    elif any("jemalloc" in os.path.basename(p) for p in libs):
        allocator = "jemalloc"
    return {
        "torch_version": torch.__version__,
        "threads": threads,
        "torch_threads": torch.get_num_threads(),
        "openblas": openblas_variant,
        "blas_libs": blas,
        "allocator": allocator,
        "flush_denormal": None,
        "vars": {k: v for k, v in sorted(os.environ.items())
                 if k.startswith(("OMP_", "GOMP_", "OPENBLAS_", "MKL_", "LD_PRELOAD", "LD_LIBRARY_PATH"))},
        "loadavg": open("/proc/loadavg").read().split()[:3],
    }


def peak_rss_mib():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------- data

def _find(dirs, name):
    for d in dirs:
        for candidate in (os.path.join(d, name), os.path.join(d, name + ".gz")):
            if os.path.isfile(candidate):
                return candidate
    return None


def _read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(dims)


def load_mnist(split, data_dir=None):
    """(images float32 (N,784,1) /255, labels int64 (N,), source string)."""
    dirs = []
    if data_dir:
        dirs.append(data_dir)
    if os.environ.get("ATTN_DATA_DIR"):
        dirs.append(os.environ["ATTN_DATA_DIR"])
    dirs.append(os.path.expanduser("~/.cache/attn/mnist"))
    prefix = "train" if split == "train" else "t10k"
    n = 60000 if split == "train" else 10000
    img_path = _find(dirs, prefix + "-images-idx3-ubyte")
    lbl_path = _find(dirs, prefix + "-labels-idx1-ubyte")
    rng = np.random.default_rng(1234 if split == "train" else 4321)
    if img_path:
        images = _read_idx(img_path).reshape(-1, 784).astype(np.float32) / 255.0
        source = "mnist:" + img_path
    else:
        # Random stand-in with MNIST's sparsity: about 81% zero pixels.
        images = rng.random((n, 784), dtype=np.float32)
        images[rng.random((n, 784)) < 0.81] = 0.0
        source = "random(81% zeros)"
    if lbl_path:
        labels = _read_idx(lbl_path).astype(np.int64)
    else:
        labels = rng.integers(0, 10, size=images.shape[0], dtype=np.int64)
        source += "+random-labels"
    m = min(images.shape[0], labels.shape[0])
    x = torch.from_numpy(np.ascontiguousarray(images[:m])).reshape(m, 784, 1)
    y = torch.from_numpy(labels[:m])
    return x, y, source


# ---------------------------------------------------------------- model

def attention(x, scale):
    """Luong self-attention, no projections: softmax(scale * x x^T) x.  x: (B, T, D)."""
    scores = scale * torch.bmm(x, x.transpose(1, 2))
    weights = torch.softmax(scores, dim=-1)
    return torch.bmm(weights, x)


class AttentionANN(torch.nn.Module):
    def __init__(self, t=784, hidden=100, classes=10):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.0))
        self.dense1 = torch.nn.Linear(t, hidden)
        self.dense2 = torch.nn.Linear(hidden, classes)
        for layer in (self.dense1, self.dense2):
            torch.nn.init.xavier_uniform_(layer.weight)  # glorot-uniform
            torch.nn.init.zeros_(layer.bias)

    def forward(self, x):
        """Returns the pre-sigmoid logits z; the model's output is sigmoid(z)."""
        a = attention(x, self.scale)
        h = F.relu(self.dense1(a.flatten(1)))
        return self.dense2(h)


class RowsEncoder(torch.nn.Module):
    """Twin of bench/rows_encoder.json: an MNIST image as 28 steps (rows) of 28 pixels; Dense(64)
    per step; MultiHeadAttention (4 heads of 16) with a residual Add and LayerNormalization
    (epsilon 1e-3); a feed-forward Dense(128, relu) -> Dense(64) with the same; Flatten;
    Dense(10) logits."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Linear(28, 64)
        self.mha = torch.nn.MultiheadAttention(64, 4, batch_first=True)
        self.norm1 = torch.nn.LayerNorm(64, eps=1e-3)
        self.ff1 = torch.nn.Linear(64, 128)
        self.ff2 = torch.nn.Linear(128, 64)
        self.norm2 = torch.nn.LayerNorm(64, eps=1e-3)
        self.out = torch.nn.Linear(28 * 64, 10)

    def forward(self, x):
        x = self.embed(x.reshape(-1, 28, 28))
        a, _ = self.mha(x, x, x, need_weights=False)
        x = self.norm1(x + a)
        x = self.norm2(x + self.ff2(F.relu(self.ff1(x))))
        return self.out(x.flatten(1))


class MnistConvnet(torch.nn.Module):
    """Twin of examples/mnist_cnn.json, Keras' "Simple MNIST convnet": Conv2D(32, 3, relu),
    MaxPooling2D(2), Conv2D(64, 3, relu), MaxPooling2D(2), Flatten, Dropout(0.5), Dense(10)
    logits (the softmax lives in the cross-entropy). PyTorch's own NCHW layout, its best case."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 32, 3)
        self.conv2 = torch.nn.Conv2d(32, 64, 3)
        self.drop = torch.nn.Dropout(0.5)
        self.out = torch.nn.Linear(5 * 5 * 64, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x.reshape(-1, 1, 28, 28))), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.out(self.drop(x.flatten(1)))


def make_optimizer(model):
    return torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)


def train_step(model, opt, xb, yb):
    opt.zero_grad(set_to_none=True)
    z = model(xb)
    loss = F.cross_entropy(z, yb)  # TF semantics: CE on the pre-sigmoid logits
    loss.backward()
    opt.step()
    return loss, z


# ---------------------------------------------------------------- modes

def batches(n, batch, steps, offset=0):
    """Indices for `steps` consecutive batches, wrapping around n."""
    for i in range(steps):
        start = ((offset + i) * batch) % n
        idx = torch.arange(start, start + batch) % n
        yield idx


def run_train_steps(args, base):
    x, y, source = load_mnist("train", args.data_dir)
    torch.manual_seed(0)
    model = {"encoder-steps": RowsEncoder, "cnn-steps": MnistConvnet}.get(args.what, AttentionANN)()
    opt = make_optimizer(model)
    perm = torch.randperm(x.shape[0])
    x, y = x[perm].contiguous(), y[perm].contiguous()
    for idx in batches(x.shape[0], args.batch, args.warmup):
        train_step(model, opt, x[idx], y[idx])
    times = []
    loss = None
    t_all = time.perf_counter()
    for idx in batches(x.shape[0], args.batch, args.steps, offset=args.warmup):
        xb, yb = x[idx], y[idx]
        t0 = time.perf_counter()
        loss, _ = train_step(model, opt, xb, yb)
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_all
    base.update({
        "what": args.what,
        "steps": args.steps,
        "warmup": args.warmup,
        "batch": args.batch,
        "ms_per_step": 1000.0 * total / max(1, args.steps),
        "ms_per_step_median": 1000.0 * float(np.median(times)) if times else None,
        "ms_per_step_min": 1000.0 * min(times) if times else None,
        "final_loss": float(loss) if loss is not None else None,
        "data": source,
        "peak_rss_mib": peak_rss_mib(),
    })


def run_epoch(args, base):
    x, y, source = load_mnist("train", args.data_dir)
    xv, yv, vsource = load_mnist("test", args.data_dir)
    torch.manual_seed(0)
    model = AttentionANN()
    opt = make_optimizer(model)
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / args.batch)
    val_steps_full = math.ceil(xv.shape[0] / args.batch)
    steps = steps_per_epoch if args.steps <= 0 else min(args.steps, steps_per_epoch)
    val_steps = val_steps_full if args.val_steps <= 0 else min(args.val_steps, val_steps_full)
    perm = torch.randperm(n)
    for idx in batches(n, args.batch, args.warmup):
        train_step(model, opt, x[perm[idx]], y[perm[idx]])

    t0 = time.perf_counter()
    loss_sum = 0.0
    correct = 0
    seen = 0
    model.train()
    for i in range(steps):
        idx = perm[i * args.batch: min(n, (i + 1) * args.batch)]
        loss, z = train_step(model, opt, x[idx], y[idx])
        loss_sum += float(loss) * idx.numel()
        correct += int((z.argmax(1) == y[idx]).sum())
        seen += idx.numel()
    train_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    vloss_sum = 0.0
    vcorrect = 0
    vseen = 0
    with torch.no_grad():
        for i in range(val_steps):
            lo, hi = i * args.batch, min(xv.shape[0], (i + 1) * args.batch)
            z = model(xv[lo:hi])
            vloss_sum += float(F.cross_entropy(z, yv[lo:hi], reduction="sum"))
            vcorrect += int((z.argmax(1) == yv[lo:hi]).sum())
            vseen += hi - lo
    val_s = time.perf_counter() - t0

    extrapolated = steps < steps_per_epoch or val_steps < val_steps_full
    train_epoch_s = train_s * steps_per_epoch / steps
    val_epoch_s = val_s * val_steps_full / max(1, val_steps)
    base.update({
        "what": "epoch",
        "steps": steps,
        "steps_per_epoch": steps_per_epoch,
        "val_steps": val_steps,
        "val_steps_per_epoch": val_steps_full,
        "batch": args.batch,
        "extrapolated": extrapolated,
        "ms_per_step": 1000.0 * train_s / steps,
        "train_seconds": train_epoch_s,
        "val_seconds": val_epoch_s,
        "epoch_seconds": train_epoch_s + val_epoch_s,
        "loss": loss_sum / seen,
        "accuracy": correct / seen,
        "val_loss": vloss_sum / max(1, vseen),
        "val_accuracy": vcorrect / max(1, vseen),
        "data": source,
        "val_data": vsource,
        "peak_rss_mib": peak_rss_mib(),
    })


def attention_peak_estimate_gib(b, t, d, grads):
    """Rough peak of forward+backward: the (B,T,T) tensors alive at once.

    Forward keeps x x^T (for the scale's gradient), the scaled scores (freed after
    softmax unless needed) and the softmax output; backward adds dW, dS and a
    product temporary for the scale's gradient (and dS*scale for full grads).
    """
    tensors = 6 if grads == "full" else 5
    return tensors * b * t * t * 4 / 2**30


def run_attention(args, base):
    torch.manual_seed(0)
    b, t, d = args.batch, args.t, args.d
    est = attention_peak_estimate_gib(b, t, d, args.grads)
    base.update({"what": "attention", "d": d, "t": t, "batch": b, "grads": args.grads,
                 "score_tensor_mib": b * t * t * 4 / 2**20, "est_peak_gib": est})
    if args.max_gib and est > args.max_gib:
        base.update({"status": "skipped", "reason": "estimated peak %.1f GiB > --max-gib %g"
                     % (est, args.max_gib), "peak_rss_mib": peak_rss_mib()})
        return
    try:
        _run_attention(args, base)
        base["status"] = "ok"
    except (RuntimeError, MemoryError) as e:  # torch reports allocation failure as RuntimeError
        base.update({"status": "failed", "error": str(e).splitlines()[0][:300],
                     "peak_rss_mib": peak_rss_mib()})


def _run_attention(args, base):
    b, t, d = args.batch, args.t, args.d
    x = torch.randn(b, t, d)  # dense: no zeros
    x.requires_grad_(args.grads == "full")
    scale = torch.nn.Parameter(torch.tensor(1.0))
    upstream = torch.randn(b, t, d)

    def once():
        out = attention(x, scale)
        out.backward(upstream)
        scale.grad = None
        x.grad = None

    for _ in range(args.warmup):
        once()
    times = []
    t_all = time.perf_counter()
    for _ in range(args.steps):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_all
    # Useful flops: two (B,T,T,D) products forward; backward: dW = g x^T and
    # (full) dx from both products (3 more), (scale) only dW.
    fwd = 2 * 2.0 * b * t * t * d
    bwd = (3 if args.grads == "full" else 1) * 2.0 * b * t * t * d
    ms = 1000.0 * total / max(1, args.steps)
    base.update({
        "steps": args.steps, "warmup": args.warmup,
        "ms_per_batch": ms,
        "ms_per_batch_min": 1000.0 * min(times) if times else None,
        "gemm_gflops": (fwd + bwd) / (ms * 1e6) if ms > 0 else None,
        "peak_rss_mib": peak_rss_mib(),
    })


def run_mha(args, base):
    """nn.MultiheadAttention self-attention, forward + backward with every gradient (input and
    parameters), need_weights=False (no averaged weights to build): attn's bench_mha twin."""
    torch.manual_seed(0)
    b, t, e, heads = args.batch, args.t, args.embed, args.heads
    mha = torch.nn.MultiheadAttention(e, heads, batch_first=True)
    x = torch.randn(b, t, e, requires_grad=True)
    upstream = torch.randn(b, t, e)
    mask = torch.ones(t, t, dtype=torch.bool).triu(1) if args.causal else None
    base.update({"what": "mha", "t": t, "batch": b, "embed": e, "heads": heads, "causal": args.causal})

    def once():
        out, _ = mha(x, x, x, need_weights=False, attn_mask=mask)
        out.backward(upstream)
        mha.zero_grad(set_to_none=True)
        x.grad = None

    try:
        for _ in range(args.warmup):
            once()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            once()
        ms = 1000.0 * (time.perf_counter() - t0) / max(1, args.steps)
        base.update({"status": "ok", "steps": args.steps, "warmup": args.warmup, "ms_per_batch": ms,
                     "peak_rss_mib": peak_rss_mib()})
    except (RuntimeError, MemoryError) as err:
        base.update({"status": "failed", "error": str(err).splitlines()[0][:300], "peak_rss_mib": peak_rss_mib()})


def run_matmul(args, base):
    n = args.n
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    c = torch.empty(n, n)
    for _ in range(max(1, args.warmup)):
        torch.mm(a, b, out=c)
    reps = max(1, args.steps)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b, out=c)
    dt = (time.perf_counter() - t0) / reps
    base.update({
        "what": "matmul", "n": n, "steps": reps,
        "ms_per_matmul": 1000.0 * dt,
        "gflops": 2.0 * n ** 3 / dt / 1e9,
    })


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--what", choices=["train-steps", "encoder-steps", "cnn-steps", "epoch", "attention", "mha", "matmul",
                                      "env"],
                   default="train-steps")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps/iterations (epoch: 0 = the full epoch)")
    p.add_argument("--val-steps", type=int, default=0,
                   help="epoch: validation batches to time (0 = all of them)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--d", type=int, default=1)
    p.add_argument("--t", type=int, default=784)
    p.add_argument("--n", type=int, default=1024, help="matmul size")
    p.add_argument("--heads", type=int, default=4, help="mha: heads")
    p.add_argument("--embed", type=int, default=64, help="mha: features (heads x head size)")
    p.add_argument("--causal", action="store_true", help="mha: causal mask")
    p.add_argument("--grads", choices=["scale", "full"], default="full")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--flush-denormal", action="store_true",
                   help="torch.set_flush_denormal(True) (an option, off by default)")
    p.add_argument("--max-gib", type=float, default=16.0,
                   help="attention: skip when the estimated peak exceeds this (0 = never skip)")
    p.add_argument("--mem-limit-gib", type=float, default=0.0,
                   help="cap the address space (RLIMIT_AS) at this many GiB; 0 = no cap")
    p.add_argument("--label", default=None, help="free-form tag copied into the JSON")
    args = p.parse_args()

    defaults = {
        "train-steps": dict(steps=20, warmup=3, batch=20),
        "encoder-steps": dict(steps=20, warmup=3, batch=32),
        "cnn-steps": dict(steps=20, warmup=3, batch=128),
        "epoch": dict(steps=0, warmup=3, batch=20),
        "attention": dict(steps=10, warmup=2, batch=20),
        "mha": dict(steps=10, warmup=2, batch=8),
        "matmul": dict(steps=20, warmup=3, batch=1),
        "env": dict(steps=0, warmup=0, batch=1),
    }[args.what]
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)

    torch.set_num_threads(args.threads)
    if args.mem_limit_gib > 0:
        cap = int(args.mem_limit_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    base = {"framework": "torch"}
    if args.label:
        base["label"] = args.label
    base["what"] = args.what
    base["threads"] = args.threads
    if args.flush_denormal:
        torch.set_flush_denormal(True)

    t0 = time.perf_counter()
    if args.what in ("train-steps", "encoder-steps", "cnn-steps"):
        run_train_steps(args, base)
    elif args.what == "epoch":
        run_epoch(args, base)
    elif args.what == "attention":
        run_attention(args, base)
    elif args.what == "mha":
        run_mha(args, base)
    elif args.what == "matmul":
        run_matmul(args, base)
    base["wall_seconds"] = time.perf_counter() - t0
    env = env_report(args.threads)
    env["flush_denormal"] = bool(args.flush_denormal)
    base["env"] = env
    print(json.dumps(base), flush=True)


if __name__ == "__main__":
    sys.exit(main())
