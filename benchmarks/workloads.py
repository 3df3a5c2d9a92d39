"""Realistic workloads: training iterations and sampling runs at the sizes people train EBMs
at, each against a hand-written PyTorch loop doing the same work.

- PCD-20 and JEM-20 iterations with a convolutional energy on 32×32×3 images (batch 64):
  20 ULA / SGLD steps from a replay buffer, the contrastive (and, for JEM, cross-entropy)
  loss, backward and an Adam step;
- a multiscale-DSM iteration with a small UNet-style noise-conditional energy (the
  denoising loss needs the score's gradient with respect to the weights: double backward);
- annealed Langevin sampling of that UNet (batch 64, 10 levels × 5 steps);
- a diffusers pipeline with a 2-step MALA corrector on a tiny ``UNet2DModel``
  (:mod:`benchmarks.diffusers_mala`; needs the ebmflow-diffusers plugin);
- the small-batch overhead of ``langevin`` and ``mala`` in µs per step
  (:mod:`benchmarks.overhead`).

The hand-written loops are what a careful user writes: detach, require grad, forward,
``torch.autograd.grad``, update; both sides use copies of the same network, the same
optimiser settings and a generator with the same seed. Target 1.05 throughout.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

import ebmflow
from benchmarks import overhead
from benchmarks.harness import Case, Skip, Value, pick

GROUP = "workloads"
TARGET = 1.05
#: repetitions of each workload per size (one call takes seconds on a CPU core), in place
#: of the run's ``--repeats``
REPEATS = {"full": 7, "quick": 3, "tiny": 1}


class TinyUNet(nn.Module):
    """A two-level UNet D(x, σ) for (3, 32, 32) images: conv, strided conv down, transposed
    conv up, skip concatenation, conv out; σ enters as a per-channel bias from log σ."""

    def __init__(self, channels: int = 3, width: int = 16) -> None:
        super().__init__()
        self.inc = nn.Conv2d(channels, width, 3, padding=1)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.mid = nn.Conv2d(2 * width, 2 * width, 3, padding=1)
        self.up = nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1)
        self.out = nn.Conv2d(2 * width, channels, 3, padding=1)
        self.embed = nn.Linear(1, 3 * width)
        self.act = nn.SiLU()
        self.width = width

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        w = self.width
        b = self.embed(sigma.log().view(-1, 1))[:, :, None, None]
        h1 = self.act(self.inc(x) + b[:, :w])
        h2 = self.act(self.down(h1) + b[:, w:])
        h2 = self.act(self.mid(h2))
        u = self.act(self.up(h2))
        return self.out(torch.cat([u, h1], 1))


def unet_energy_value(net: TinyUNet, x: Tensor, sigma: Tensor) -> Tensor:
    """E(x, σ) = ½ ‖x − D(x, σ)‖² / σ², per image."""
    r = (x - net(x, sigma)).flatten(1)
    return 0.5 * (r * r).sum(1) / sigma**2


class UNetEnergy(ebmflow.Energy):
    """The UNet as an ebmflow noise-conditional energy (the same function as the hand loop)."""

    noise_conditional = True

    def __init__(self, net: TinyUNet) -> None:
        super().__init__()
        self.net = net
        self.event_shape = (3, 32, 32)

    def forward(self, x, sigma=None):
        return unet_energy_value(self.net, x, sigma)


def _seeded_net(factory, seed: int = 0):
    with torch.random.fork_rng():  # the caller's RNG state is restored
        torch.manual_seed(seed)
        return factory()


def _adam(params):
    return torch.optim.Adam(params, lr=1e-4, betas=(0.0, 0.999))


def _box(shape, gen) -> Tensor:
    return torch.rand(shape, generator=gen, device=gen.device) * 2 - 1


def hand_pcd_image(net, optimizer, batch, chains, k, eta, gen):
    """PCD-k on images: slots of a tensor buffer, 5% fresh starts, ULA, write back, loss."""
    n, dev = batch.shape[0], batch.device
    slots = torch.randint(chains.shape[0], (n,), generator=gen, device=dev)
    fresh = torch.rand(n, generator=gen, device=dev) < 0.05
    x = torch.where(fresh[:, None, None, None], _box(batch.shape, gen), chains[slots])
    noise = math.sqrt(2 * eta)
    for _ in range(k):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(net(x).sum(), x)
        x = x - eta * g + noise * torch.randn(x.shape, generator=gen, device=dev)
    x = x.detach()
    chains[slots] = x
    e = net(torch.cat([batch, x]))
    loss = e[:n].mean() - e[n:].mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def hand_jem_image(net, optimizer, x, y, chains, k, gen, eta=1.0, noise=0.01, data_noise=0.03):
    """JEM on images: CE + SGLD negatives (η = 1, noise 0.01) from a replay buffer."""
    n, dev = x.shape[0], x.device
    x_pos = x + data_noise * torch.randn(x.shape, generator=gen, device=dev)
    slots = torch.randint(chains.shape[0], (n,), generator=gen, device=dev)
    fresh = torch.rand(n, generator=gen, device=dev) < 0.05
    x_neg = torch.where(fresh[:, None, None, None], _box(x.shape, gen), chains[slots])
    for _ in range(k):
        x_neg = x_neg.detach().requires_grad_(True)
        e = -torch.logsumexp(net(x_neg), -1)
        (g,) = torch.autograd.grad(e.sum(), x_neg)
        x_neg = x_neg - eta * g + noise * torch.randn(x_neg.shape, generator=gen, device=dev)
    x_neg = x_neg.detach()
    chains[slots] = x_neg
    logits = net(torch.cat([x_pos, x_neg]))
    lp, ln = logits[:n], logits[n:]
    ce = torch.nn.functional.cross_entropy(lp, y)
    loss = ce - torch.logsumexp(lp, -1).mean() + torch.logsumexp(ln, -1).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def hand_multiscale_dsm(net, optimizer, x, levels, gen):
    """Multiscale DSM with NCSN's discrete levels and λ(σ) = σ²:
    ½ mean ‖σ s(x̃, σ) + z‖², s = −∇ₓE (kept in the graph: double backward)."""
    index = torch.randint(len(levels), (x.shape[0],), generator=gen, device=x.device)
    sigma = levels[index].to(x.dtype)
    z = torch.randn(x.shape, generator=gen, device=x.device)
    xt = (x + sigma.view(-1, 1, 1, 1) * z).requires_grad_(True)
    e = unet_energy_value(net, xt, sigma)
    (g,) = torch.autograd.grad(e.sum(), xt, create_graph=True)
    r = (-sigma.view(-1, 1, 1, 1) * g + z).flatten(1)
    loss = 0.5 * (r * r).sum(1).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def hand_annealed_unet(net, x, sigmas, steps_per_level, epsilon, gen):
    """Annealed Langevin on the UNet energy: η_i = ε σ_i² / (2 σ_L²), T steps per level,
    the denoising step x + σ_L² s at the end."""
    b = x.shape[0]
    sigma_l = sigmas[-1]

    def grad(z, sigma):
        z = z.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(unet_energy_value(net, z, sigma).sum(), z)
        return g

    for sigma in sigmas:
        eta = 0.5 * epsilon * (sigma / sigma_l) ** 2
        noise = math.sqrt(2 * eta)
        s = torch.full((b,), sigma, device=x.device)
        for _ in range(steps_per_level):
            x = x - eta * grad(x, s) + noise * torch.randn(x.shape, generator=gen, device=x.device)
    return (x - sigma_l**2 * grad(x, torch.full((b,), sigma_l, device=x.device))).detach()


def _synced(fn, dev: torch.device):
    """``fn`` that waits for the device's queue, so that its time covers the GPU work."""
    if dev.type != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize(dev)
        return out

    return run


def _train_case(name, objective, energy, ref_step, batch, iterations, note, dev, repeats) -> Case:
    optimizer = _adam(energy.parameters())

    def ours():
        gen = torch.Generator(device=dev).manual_seed(1)
        for _ in range(iterations):
            out = objective(energy, batch, generator=gen)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()

    def reference():
        gen = torch.Generator(device=dev).manual_seed(1)
        for _ in range(iterations):
            ref_step(gen)

    return Case(
        name,
        GROUP,
        _synced(ours, dev),
        _synced(reference, dev),
        iterations,
        "iteration",
        TARGET,
        note,
        repeats,
    )


def cases(
    size: str = "full", device: str = "cpu", cpu_extras: bool = True, **_options
) -> list[Case | Skip | Value]:
    """The workloads on ``device``; with ``cpu_extras`` (and a CPU device) also the diffusers
    pipeline and the small-batch overhead in µs, which are CPU figures."""
    dev = torch.device(device)
    iterations = pick(size, 1, 1, 1)
    batch = pick(size, 64, 64, 4)
    k = pick(size, 20, 20, 2)
    capacity = pick(size, 1000, 1000, 16)
    images = _box((batch, 3, 32, 32), torch.Generator().manual_seed(0)).to(dev)
    out: list[Case | Skip | Value] = []

    # PCD-k, convnet energy
    net = _seeded_net(lambda: ebmflow.create("energy", "convnet", channels=3, image_size=32)).to(
        dev
    )
    ref_net = copy.deepcopy(net)
    ref_opt = _adam(ref_net.parameters())
    chains = _box((capacity, 3, 32, 32), torch.Generator().manual_seed(2)).to(dev)
    eta = 0.01
    try:
        pcd = ebmflow.create(
            "objective",
            "pcd",
            sampler={"name": "langevin", "step_size": eta},
            k=k,
            event_shape=[3, 32, 32],
            capacity=capacity,
        ).to(dev)
        out.append(
            _train_case(
                f"pcd, PCD-{k} iteration, convnet 32×32×3, batch {batch}",
                pcd,
                net,
                lambda gen: hand_pcd_image(ref_net, ref_opt, images, chains, k, eta, gen),
                images,
                iterations,
                f"pcd + Adam vs hand-written PCD loop (ULA k={k})",
                dev,
                REPEATS[size],
            )
        )
    except (ebmflow.UnknownComponentError, ImportError) as exc:
        out.append(Skip("pcd, convnet 32×32×3", GROUP, f"ebmflow-cd is not available: {exc}"))

    # JEM-k, convolutional classifier energy
    try:
        jem = ebmflow.create(
            "objective", "jem", k=k, event_shape=[3, 32, 32], capacity=capacity
        ).to(dev)
        clf = _seeded_net(
            lambda: ebmflow.create(
                "energy", "classifier-convnet", channels=3, image_size=32, widths=[32, 64]
            )
        )
    except (ebmflow.UnknownComponentError, ImportError) as exc:
        out.append(Skip("jem, convnet 32×32×3", GROUP, f"ebmflow-jem is not available: {exc}"))
    else:
        clf = clf.to(dev)
        labels = torch.randint(10, (batch,), generator=torch.Generator().manual_seed(3)).to(dev)
        ref_clf = copy.deepcopy(clf.network)
        clf_opt = _adam(ref_clf.parameters())
        jem_chains = chains.clone()
        out.append(
            _train_case(
                f"jem, SGLD-{k} iteration, conv classifier 32×32×3, batch {batch}",
                jem,
                clf,
                lambda gen: hand_jem_image(ref_clf, clf_opt, images, labels, jem_chains, k, gen),
                (images, labels),
                iterations,
                f"jem + Adam vs hand-written JEM loop (SGLD k={k})",
                dev,
                REPEATS[size],
            )
        )

    # multiscale DSM with the UNet energy
    unet = _seeded_net(TinyUNet).to(dev)
    n_levels = 10
    try:
        dsm = ebmflow.create(
            "objective",
            "multiscale-dsm",
            noise_schedule={"name": "geometric", "sigma_max": 1.0, "sigma_min": 0.01},
            n_levels=n_levels,
        )
    except (ebmflow.UnknownComponentError, ImportError) as exc:
        out.append(Skip("multiscale-dsm, UNet", GROUP, f"ebmflow-score is not available: {exc}"))
    else:
        ref_unet = copy.deepcopy(unet)
        unet_opt = _adam(ref_unet.parameters())
        levels = dsm.levels.to(device=dev, dtype=torch.float32)
        out.append(
            _train_case(
                f"multiscale-dsm iteration, UNet 32×32×3, batch {batch}",
                dsm,
                UNetEnergy(copy.deepcopy(unet)),
                lambda gen: hand_multiscale_dsm(ref_unet, unet_opt, images, levels, gen),
                images,
                pick(size, 3, 2, 1),
                f"multiscale-dsm ({n_levels} levels) + Adam vs hand-written DSM (double backward)",
                dev,
                REPEATS[size],
            )
        )

    # annealed Langevin sampling of the UNet energy
    levels_n, per_level = pick(size, 10, 10, 2), pick(size, 5, 5, 1)
    annealed = ebmflow.create(
        "sampler",
        "annealed-langevin",
        noise_schedule={"name": "geometric", "sigma_max": 1.0, "sigma_min": 0.01},
        n_levels=levels_n,
        steps_per_level=per_level,
        epsilon=2e-5,
    )
    sigmas = [float(s) for s in annealed.sigmas]
    energy = UNetEnergy(unet)
    x0 = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(4)).to(dev)

    def ours():
        return annealed.run(energy, x0, levels_n * per_level, generator=_gen(dev)).samples

    def reference():
        return hand_annealed_unet(unet, x0, sigmas, per_level, 2e-5, _gen(dev))

    out.append(
        Case(
            f"annealed-langevin, UNet 32×32×3, batch {batch}, {levels_n} levels × {per_level}",
            GROUP,
            _synced(ours, dev),
            _synced(reference, dev),
            levels_n * per_level,
            target=TARGET,
            note="vs hand-written annealed ULA with the denoising step",
            repeats=REPEATS[size],
        )
    )
    if cpu_extras and dev.type == "cpu":
        out.extend(_diffusers_cases(size))
        out.extend(overhead.values(size, GROUP))
    return out


def _gen(dev: torch.device) -> torch.Generator:
    return torch.Generator(device=dev).manual_seed(1)


def _diffusers_cases(size: str) -> list[Case | Skip]:
    try:
        from benchmarks.diffusers_mala import mala_corrector_case
    except ImportError as exc:
        return [Skip("diffusers MALA corrector", GROUP, f"diffusers is not available: {exc}")]
    return [mala_corrector_case(size)]
