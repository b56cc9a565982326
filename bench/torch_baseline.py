#!/usr/bin/env python3
"""PyTorch baselines for bench/normalize.mjs: the same workloads, timed with CUDA events on the same card.

- sn_eager:    torch.nn.utils.parametrizations.spectral_norm on Conv2d/Linear modules (what PyTorch users run):
               reading every module's .weight in training mode (one power iteration + division per layer).
- bssn_eager:  a straightforward PyTorch BSSN: both reshapes' power iterations, c * W / mean(sigma1, sigma2).
- bssn_graph:  the same step captured in a CUDA graph and replayed.

Usage: torch_baseline.py WORKLOADS.json [--iters 200] [--warmup 20] [--device cuda|cpu]; prints one JSON object on
stdout. `--device cpu` (Debian's python3-torch) times with the host clock and has no CUDA graph (bssn_graph_us null):
it proves the script before any GPU time is spent on it.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


def time_us(fn, warmup, iters, device):
    for _ in range(warmup):
        fn()
    if device.type != "cuda":
        samples = []
        for _ in range(iters):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1e6)
        return statistics.median(samples)
    torch.cuda.synchronize()
    pairs = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        pairs.append((start, end))
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) * 1000.0 for s, e in pairs)


def sn_modules(shapes, device):
    modules = []
    for shape in shapes:
        if len(shape) == 4:
            m = nn.Conv2d(shape[1], shape[0], (shape[2], shape[3]), bias=False)
        else:
            m = nn.Linear(shape[1], shape[0], bias=False)
        modules.append(nn.utils.parametrizations.spectral_norm(m).to(device).train())
    return modules


class EagerBSSN:
    """Straightforward BSSN in PyTorch: state updated in place so the step can be captured in a CUDA graph."""

    def __init__(self, shapes, device, scale=1.0, eps=1e-12):
        gen = torch.Generator(device=device).manual_seed(0)
        self.weights = [torch.randn(*s, device=device, generator=gen) * 0.02 for s in shapes]
        self.scale, self.eps = scale, eps
        self.state = []
        for w in self.weights:
            r, c = w.shape[0], w.shape[1]
            cols1, cols2 = w.numel() // r, w.numel() // c
            vecs = [torch.randn(n, device=device, generator=gen) for n in (r, cols1, c, cols2)]
            self.state.append([F.normalize(v, dim=0, eps=eps) for v in vecs])
        self.outputs = [torch.empty_like(w) for w in self.weights]

    @torch.no_grad()
    def step(self):
        for w, (u1, v1, u2, v2), out in zip(self.weights, self.state, self.outputs):
            w1 = w.reshape(w.shape[0], -1)
            v1.copy_(F.normalize(torch.mv(w1.t(), u1), dim=0, eps=self.eps))
            u1.copy_(F.normalize(torch.mv(w1, v1), dim=0, eps=self.eps))
            sigma1 = torch.dot(u1, torch.mv(w1, v1))
            if w.dim() > 2:
                w2 = w.transpose(0, 1).reshape(w.shape[1], -1)
                v2.copy_(F.normalize(torch.mv(w2.t(), u2), dim=0, eps=self.eps))
                u2.copy_(F.normalize(torch.mv(w2, v2), dim=0, eps=self.eps))
                sigma2 = torch.dot(u2, torch.mv(w2, v2))
            else:
                sigma2 = sigma1
            torch.mul(w, self.scale / ((sigma1 + sigma2) / 2), out=out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workloads")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with open(args.workloads) as f:
        workloads = json.load(f)
    results = []
    for wl in workloads:
        modules = sn_modules(wl["shapes"], device)
        sn = time_us(lambda: [m.weight for m in modules], args.warmup, args.iters, device)
        eager = EagerBSSN(wl["shapes"], device)
        bssn = time_us(eager.step, args.warmup, args.iters, device)
        if device.type != "cuda":
            results.append({"name": wl["name"], "sn_eager_us": sn, "bssn_eager_us": bssn, "bssn_graph_us": None})
            continue
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                eager.step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            eager.step()
        graphed = time_us(graph.replay, args.warmup, args.iters)
        results.append({"name": wl["name"], "sn_eager_us": sn, "bssn_eager_us": bssn, "bssn_graph_us": graphed})
        del modules, eager, graph
        torch.cuda.empty_cache()
    print(json.dumps({"torch": torch.__version__, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "results": results}))


if __name__ == "__main__":
    main()
