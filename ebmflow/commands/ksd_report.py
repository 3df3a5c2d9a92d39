"""``ebmflow evaluate CHECKPOINT --ksd``: a kernel Stein discrepancy test of samples against
the model's own score (:func:`ebmflow.evaluate.ksd`).

The samples are the final positions of ``--chains`` independent chains of a registered
sampler run on the checkpoint's energy (``--sampler``, ``--sampler-arg``, ``--steps``), or
the tensor ``samples`` of a file (``--samples FILE``, as ``ebmflow sample --out
FILE.safetensors`` writes it). The test asks whether they come from p ∝ exp(−E): a small
p-value says the samples and the model disagree, through a sampler that has not converged
or a file drawn from something else. Only the score enters, so score-only models are tested
alike. No dataset is needed.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ebmflow.commands.arguments import (
    MAX_SAMPLER_STEPS,
    add_component_options,
    check_int_option,
)
from ebmflow.commands.options import progress_of
from ebmflow.errors import ConfigError

#: the test forms n × n float64 matrices: 10 000 samples take about 0.8 GB per matrix.
MAX_KSD_SAMPLES = 10_000
#: a ``--samples`` file larger than this is refused before it is read.
MAX_SAMPLES_FILE_BYTES = 2**30
#: MALA's warm-up tunes its step size over this fraction of ``--steps`` when no
#: ``--sampler-arg`` is given, so that the default sampler needs no step size.
DEFAULT_WARMUP_FRACTION = 0.5


def add_ksd_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``--ksd`` on the ``evaluate`` command."""
    group = parser.add_argument_group("kernel Stein discrepancy (--ksd)")
    group.add_argument(
        "--ksd",
        action="store_true",
        help="test samples against the model's own score with the kernel Stein "
        "discrepancy (IMQ kernel, wild bootstrap) instead of the NLL; no --data needed "
        "(default: off)",
    )
    group.add_argument(
        "--samples",
        default=None,
        metavar="FILE",
        help="test the tensor 'samples' of this .safetensors file (as `ebmflow sample "
        "--out` writes it) instead of drawing samples (default: draw them)",
    )
    add_component_options(group, "sampler", "mala")  # type: ignore[arg-type]
    group.add_argument(
        "--steps",
        type=int,
        default=1000,
        help="sampler steps per chain; mala without --sampler-arg adapts its step size "
        "during the first half (default: 1000)",
    )
    group.add_argument(
        "--chains",
        type=int,
        default=1000,
        help=f"independent chains, one sample each (at most {MAX_KSD_SAMPLES}) (default: 1000)",
    )
    group.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="wild-bootstrap draws for the p-value (default: 1000)",
    )


def run_ksd(args: argparse.Namespace, energy: Any, device: Any) -> int:
    """Draw or read the samples, test them, print the report; the exit status."""
    check_int_option("--bootstrap", args.bootstrap, 1, 10**6)
    import torch

    from ebmflow.evaluate import ksd

    if args.samples is not None:
        samples, source = _read_samples(args.samples, energy), {"samples": str(args.samples)}
    else:
        samples, source = _draw_samples(args, energy, device)
    gen = torch.Generator(device=samples.device).manual_seed(args.seed)
    result = ksd(samples, energy, sigma=args.sigma, n_bootstrap=args.bootstrap, generator=gen)
    report = {
        "checkpoint": str(args.checkpoint),
        "test": "kernel Stein discrepancy",
        **source,
        "n": result.n,
        "ksd2": result.ksd2,
        "p_value": result.p_value,
        "alpha": result.alpha,
        "reject": result.reject,
        "n_bootstrap": result.n_bootstrap,
        "kernel": {"name": "imq", "c": result.c, "beta": result.beta},
        "seed": args.seed,
        "sigma": args.sigma,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    origin = (
        f"from {args.samples}"
        if args.samples is not None
        else f"from {args.sampler}, {source['steps']} steps per chain"
    )
    print(
        f"kernel Stein discrepancy of {result.n} samples ({origin}) against the model's "
        f"score: KSD² = {result.ksd2:.4g}, p-value = {result.p_value:.4g} "
        f"(n = {result.n}, {result.n_bootstrap} bootstrap draws)"
    )
    verdict = (
        "rejected: the samples do not look like draws from the model"
        if result.reject
        else "not rejected: the samples are consistent with the model"
    )
    print(f"{verdict} (level {result.alpha:g})")
    return 0


def _draw_samples(args: argparse.Namespace, energy: Any, device: Any) -> tuple[Any, dict]:
    """The final positions of ``--chains`` chains of ``--sampler`` started from N(0, I)."""
    check_int_option("--chains", args.chains, 10, MAX_KSD_SAMPLES)
    check_int_option("--steps", args.steps, 1, MAX_SAMPLER_STEPS)
    import torch

    if energy.event_shape is None:
        raise ConfigError(
            f"{type(energy).__name__} declares no event_shape, so the sample shape is "
            "unknown; give samples with --samples FILE"
        )
    sampler_args = dict(args.sampler_args)
    if args.sampler == "mala" and not sampler_args:
        sampler_args["adapt_steps"] = int(DEFAULT_WARMUP_FRACTION * args.steps)
    sampler = args.host.create("sampler", args.sampler, **sampler_args)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    dtype = next(
        (t.dtype for t in (*energy.parameters(), *energy.buffers()) if t.is_floating_point()),
        torch.get_default_dtype(),
    )
    x0 = torch.randn((args.chains, *energy.event_shape), generator=gen, dtype=dtype, device=device)
    run_kwargs: dict[str, Any] = {"generator": gen, "progress": progress_of(args)}
    if args.sigma is not None:
        run_kwargs["sigma"] = args.sigma
    result = sampler.run(energy, x0, args.steps, **run_kwargs)
    source = {"sampler": args.sampler, "sampler_args": sampler_args, "steps": args.steps}
    if "acceptance_rate" in result.diagnostics:
        source["acceptance_rate"] = round(result.diagnostics["acceptance_rate"], 4)
    return result.samples.detach(), source


def _read_samples(path: str, energy: Any) -> Any:
    """The tensor ``samples`` of the safetensors file ``path``, checked against the energy's
    event shape and the test's size limit."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    from ebmflow.files import read_regular_file

    try:
        data = read_regular_file(path, max_bytes=MAX_SAMPLES_FILE_BYTES, error=ConfigError)
        tensors = load(data)
    except FileNotFoundError:
        raise ConfigError(f"--samples {path}: no such file") from None
    except (SafetensorError, ValueError) as exc:
        raise ConfigError(f"--samples {path}: not a readable safetensors file ({exc})") from None
    if "samples" not in tensors:
        raise ConfigError(
            f"--samples {path}: no tensor named 'samples' (it holds {sorted(tensors)}); "
            "write one with `ebmflow sample CHECKPOINT --out FILE.safetensors`"
        )
    samples = tensors["samples"]
    wanted = getattr(energy, "event_shape", None)
    if wanted is not None and tuple(samples.shape[1:]) != tuple(wanted):
        raise ConfigError(
            f"--samples {path}: samples of shape {tuple(samples.shape[1:])}, but the energy "
            f"takes {tuple(wanted)}"
        )
    if not 10 <= samples.shape[0] <= MAX_KSD_SAMPLES:
        raise ConfigError(
            f"--samples {path}: {samples.shape[0]} samples; the test takes 10 to "
            f"{MAX_KSD_SAMPLES} (it forms n × n matrices)"
        )
    dtype = next((t.dtype for t in energy.parameters() if t.is_floating_point()), None)
    device = next((t.device for t in (*energy.parameters(), *energy.buffers())), None)
    return samples.to(device=device, dtype=dtype or samples.dtype)
