#!/usr/bin/env python3
"""PyTorch eager baseline of bench/train.mjs: the SNGAN CNN GAN (32x32, hinge loss, Adam 2e-4 / (0.5, 0.999),
n_dis 1), one step = one D step + one G step, with no normalization, SN (torch.nn.utils.parametrizations.
spectral_norm on every D layer) and a straightforward BSSN parametrization on every D layer; eager, and on CUDA
also captured whole into one torch.cuda.graph (norm "<norm>+graph").
Prints one JSON object: {"torch", "device", "results": [{"norm", "stepsPerSecond"}]}. `--device cpu` runs the same
on the CPU (Debian's python3-torch), to prove the script before any GPU time is spent on it."""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize


class BSSNParam(nn.Module):
    """c * W / mean(sigma(W1), sigma(W2)) with one power iteration per forward (u, v buffers), as bssn computes."""

    def __init__(self, weight, scale=1.0, eps=1e-12):
        super().__init__()
        self.scale, self.eps = scale, eps
        w1 = weight.reshape(weight.shape[0], -1)
        w2 = weight.transpose(0, 1).reshape(weight.shape[1], -1) if weight.dim() > 2 else w1.t()
        for name, n in (("u1", w1.shape[0]), ("v1", w1.shape[1]), ("u2", w2.shape[0]), ("v2", w2.shape[1])):
            self.register_buffer(name, F.normalize(torch.randn(n, device=weight.device), dim=0, eps=eps))

    def forward(self, w):
        w1 = w.reshape(w.shape[0], -1)
        w2 = w.transpose(0, 1).reshape(w.shape[1], -1) if w.dim() > 2 else w1.t()
        if self.training:
            with torch.no_grad():
                self.v1.copy_(F.normalize(torch.mv(w1.t(), self.u1), dim=0, eps=self.eps))
                self.u1.copy_(F.normalize(torch.mv(w1, self.v1), dim=0, eps=self.eps))
                self.v2.copy_(F.normalize(torch.mv(w2.t(), self.u2), dim=0, eps=self.eps))
                self.u2.copy_(F.normalize(torch.mv(w2, self.v2), dim=0, eps=self.eps))
        # Clones, as PyTorch's spectral_norm does: the next forward of the same step (D runs on real, then on fake
        # data) updates u and v in place while this forward's graph still needs their values for the backward.
        u1, v1, u2, v2 = (x.clone(memory_format=torch.contiguous_format) for x in (self.u1, self.v1, self.u2, self.v2))
        s1 = torch.dot(u1, torch.mv(w1, v1))
        s2 = torch.dot(u2, torch.mv(w2, v2))
        return self.scale * w / ((s1 + s2) / 2)


def discriminator(norm):
    convs = [(3, 64, 3, 1), (64, 64, 4, 2), (64, 128, 3, 1), (128, 128, 4, 2), (128, 256, 3, 1), (256, 256, 4, 2), (256, 512, 3, 1)]
    layers = []
    for cin, cout, k, s in convs:
        layers += [nn.Conv2d(cin, cout, k, s, 1), nn.LeakyReLU(0.1)]
    layers += [nn.Flatten(), nn.Linear(512 * 4 * 4, 1)]
    d = nn.Sequential(*layers)
    for m in d.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if norm == "sn":
                nn.utils.parametrizations.spectral_norm(m)
            elif norm == "bssn":
                parametrize.register_parametrization(m, "weight", BSSNParam(m.weight))
    return d


def generator(z_dim=128):
    def up(cin, cout):
        return [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(nn.Linear(z_dim, 4 * 4 * 512), nn.Unflatten(1, (512, 4, 4)), *up(512, 256), *up(256, 128), *up(128, 64),
                         nn.Conv2d(64, 3, 3, 1, 1), nn.Tanh())


def gan_step(G, D, opt_g, opt_d, real, z_d, z_g):
    """One D step (hinge loss on real and G(z_d)) and one G step on z_g() (drawn after the D step, as eager draws it)."""
    with torch.no_grad():
        fake = G(z_d)
    loss_d = F.relu(1 - D(real)).mean() + F.relu(1 + D(fake)).mean()
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    loss_g = -D(G(z_g())).mean()
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()


def run(norm, batch, steps, warmup, device):
    torch.manual_seed(0)
    G, D = generator().to(device), discriminator(norm).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.rand(batch, 3, 32, 32, device=device) * 2 - 1

    def step():
        gan_step(G, D, opt_g, opt_d, real, torch.randn(batch, 128, device=device), lambda: torch.randn(batch, 128, device=device))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return {"norm": norm, "stepsPerSecond": steps / (time.perf_counter() - start)}


def run_graph(norm, batch, steps, warmup, device):
    """The same step captured whole into one torch.cuda.graph (static z and real batch, capturable Adam), replayed
    with new noise drawn into the static inputs before each replay: PyTorch's best for a launch-bound step."""
    torch.manual_seed(0)
    G, D = generator().to(device), discriminator(norm).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), capturable=True)
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), capturable=True)
    real = torch.rand(batch, 3, 32, 32, device=device) * 2 - 1
    z_d = torch.randn(batch, 128, device=device)
    z_g = torch.randn(batch, 128, device=device)

    def step():
        gan_step(G, D, opt_g, opt_d, real, z_d, lambda: z_g)

    # Warm-up on a side stream, as torch.cuda.graphs' docs ask (cuDNN/cuBLAS plans, optimizer state).
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(max(3, min(warmup, 11))):
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()

    def replay():
        z_d.normal_()
        z_g.normal_()
        graph.replay()

    for _ in range(warmup):
        replay()
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        replay()
    torch.cuda.synchronize(device)
    return {"norm": norm + "+graph", "stepsPerSecond": steps / (time.perf_counter() - start)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    # PyTorch's defaults, which bssn follows: TF32 for convolutions, not for matrix products.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = True
    results = [run(n, args.batch, args.steps, args.warmup, device) for n in ("none", "sn", "bssn")]
    if device.type == "cuda":  # torch.cuda.graph needs a GPU; the CPU proves the eager script only
        results += [run_graph(n, args.batch, args.steps, args.warmup, device) for n in ("none", "sn", "bssn")]
    print(json.dumps({"torch": torch.__version__, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "results": results}))


if __name__ == "__main__":
    main()
