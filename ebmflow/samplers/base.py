"""The Sampler interface: ``init`` and ``step`` over an explicit state, and ``run``.

In the manner of BlackJAX: the state caches what a step needs again (position, energy,
score), so Metropolis-adjusted samplers spend one energy+gradient evaluation per step;
``step`` reads everything from its arguments and never keeps hidden counters.

Compiled sampling: ``run(..., compile=True)`` (or :func:`compile_energy` for code that calls
``step`` itself) evaluates the energy and its score through one ``torch.compile`` graph —
forward and gradient fused — while the sampler's update, noise and checks stay eager, so
the same generator gives the same samples as an eager run up to float rounding. On CUDA,
``compile="reduce-overhead"`` also replays that graph as a CUDA graph (fixed shapes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ebmflow.config import Configurable
from ebmflow.energy import Energy, Sigma, broadcast_sigma
from ebmflow.errors import ComponentArgumentError, ConfigError, SamplerDivergedError
from ebmflow.registry import PluginHost, current_host
from ebmflow.samplers.frozen import frozen_parameters
from ebmflow.validation import check_positive_int


@dataclass(frozen=True)
class SamplerState:
    """One batch of chains.

    Attributes:
        x: positions ``(B, *event_shape)``.
        energy: ``E(x, σ)``, shape ``(B,)``; ``None`` for score-only models.
        score: ``−∇ₓE(x, σ)``, like ``x``.
        sigma: the noise level the chains target (``None`` = clean energy).
        step: how many steps produced this state.
        accept_prob: Metropolis acceptance probability of the last step, ``(B,)`` (MH
            samplers only).
        extras: sampler-specific tensors (HMC's step size, PT's ladder, ...).
    """

    x: Tensor
    energy: Tensor | None
    score: Tensor
    sigma: Tensor | None = None
    step: int = 0
    accept_prob: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    def replace(self, **changes: Any) -> SamplerState:
        return dataclasses.replace(self, **changes)


@dataclass
class SampleResult:
    """What :meth:`Sampler.run` returns.

    Attributes:
        samples: final positions ``(B, *event_shape)``.
        state: the final :class:`SamplerState` (pass it to ``step`` to continue).
        diagnostics: ``energy_trace`` (mean energy after each step, ``(n_steps,)``),
            ``acceptance_rate`` (mean over steps and chains, MH samplers),
            ``acceptance_per_chain`` ``(B,)``, and whatever the sampler adds.
        trajectory: every ``thin``-th position ``(n_steps // thin, B, *event_shape)`` when
            ``run(thin=...)`` asked for it, else ``None`` (memory does not grow with steps).
    """

    samples: Tensor
    state: SamplerState
    diagnostics: dict[str, Any]
    trajectory: Tensor | None = None


def check_finite(owner: str, step: int, energy: Tensor | None, x: Tensor) -> None:
    """Raise :class:`SamplerDivergedError` if any chain's energy (or, for score-only models,
    position) is not finite. The common case costs one reduction."""
    values = energy if energy is not None else x
    if math.isfinite(float(values.sum())):
        return
    finite = torch.isfinite(values)
    if finite.ndim > 1:
        finite = finite.flatten(1).all(dim=1)
    n_bad = int((~finite).sum())
    if n_bad == 0:  # finite values whose sum overflowed
        return
    what = "energy" if energy is not None else "position"
    raise SamplerDivergedError(
        f"{owner} diverged at step {step}: non-finite {what} in {n_bad} of "
        f"{x.shape[0]} chains (try a smaller step size)",
        step=step,
        n_chains=n_bad,
    )


#: events with at most this many numbers get full-shape per-row tensors from :func:`per_row`.
SMALL_EVENT = 16


def per_row(values: Tensor, event_shape: Sequence[int], small_event: int = SMALL_EVENT) -> Tensor:
    """One value per chain, ``values`` (B,), shaped to act on a batch (B, *event_shape): the
    broadcast view (B, 1, …, 1), or for an event of at most ``small_event`` numbers a
    contiguous (B, *event_shape) copy. Elementwise ops (``torch.where``, products) broadcast
    over a short inner dimension (2-d points) run an unvectorised loop per row and cost
    several times the copy; for large events the view is as fast and costs no memory."""
    if not len(event_shape):
        return values
    view = values.view(-1, *(1,) * len(event_shape))
    if math.prod(event_shape) <= small_event:
        return view.expand(-1, *event_shape).contiguous()
    return view


def gaussian_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``x``, from ``generator`` (never reseeds anything)."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


#: ``compile=`` values: ``torch.compile`` modes. The ones marked ``True`` capture CUDA graphs.
COMPILE_MODES = {
    "default": False,
    "max-autotune-no-cudagraphs": False,
    "reduce-overhead": True,
    "max-autotune": True,
}


def _energy_and_score(energy: Energy, x: Tensor, sigma: Tensor | None):
    return energy.energy_and_score(x, sigma)


_COMPILED: dict[str, Callable[..., Any]] = {}


def _compiled_function(mode: str) -> Callable[..., Any]:
    """One compiled ``_energy_and_score`` per mode; torch.compile's guards tell energies
    apart (instances of one class with the same structure share a graph)."""
    fn = _COMPILED.get(mode)
    if fn is None:
        fn = _COMPILED[mode] = torch.compile(_energy_and_score, mode=mode)
    return fn


def trace_autograd() -> contextlib.AbstractContextManager:
    """Let Dynamo trace ``torch.autograd.grad`` into the graph (forward and gradient in one
    graph) where this torch has the option; otherwise the graph breaks at the gradient and
    only the forward (with its AOT backward) is compiled."""
    import torch._dynamo.config as dynamo_config

    if hasattr(dynamo_config, "trace_autograd_ops"):
        return dynamo_config.patch(trace_autograd_ops=True)
    return contextlib.nullcontext()


def resolve_compile_mode(owner: str, compile: bool | str) -> str | None:
    """The torch.compile mode a ``compile=`` value names (``None`` for no compilation);
    anything else raises :class:`~ebmflow.ConfigError` naming ``owner`` and the accepted
    values."""
    if compile is None or compile is False:
        return None
    if compile is True:
        return "default"
    if isinstance(compile, str) and compile in COMPILE_MODES:
        return compile
    raise ConfigError(
        f"{owner}: compile must be False, True or a torch.compile mode "
        f"({', '.join(map(repr, COMPILE_MODES))}); got {compile!r}"
    )


def check_cuda_graphs(owner: str, mode: str, device: torch.device) -> None:
    """Refuse a CUDA-graph ``mode`` for tensors that are not on a CUDA device."""
    if COMPILE_MODES[mode] and device.type != "cuda":
        raise ConfigError(
            f"{owner}: compile={mode!r} captures CUDA graphs and needs CUDA tensors, but the "
            f"chains are on {device}; use compile=True (or 'default') there"
        )


class CompiledEnergy(Energy):
    """``energy`` whose energy+score evaluation runs as one ``torch.compile`` graph.

    Made by :func:`compile_energy`. ``energy_and_score(x, sigma)`` (what samplers call)
    goes through the compiled graph; ``forward`` and ``create_graph=True`` (training by
    score matching, which needs double backward) use the wrapped energy as it is. The
    parameters are the wrapped energy's (nothing is copied), so training it changes what the
    compiled graph computes.

    In CUDA-graph modes (``"reduce-overhead"``, ``"max-autotune"``) each call starts a new
    CUDA-graph step and returns copies, so a sampler may keep earlier results (MALA keeps
    the current point's energy and score) without the next replay overwriting them.
    """

    def __init__(self, energy: Energy, mode: str = "default") -> None:
        super().__init__()
        self.energy = energy
        self.mode = mode
        self.has_energy = energy.has_energy
        self.noise_conditional = energy.noise_conditional
        self.event_shape = energy.event_shape
        self.event_space = energy.event_space
        self._cuda_graphs = COMPILE_MODES[mode]

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"

    def forward(self, x: Tensor, sigma: Sigma = None, **kwargs: Any) -> Tensor:
        return self.energy(x, sigma, **kwargs)

    def energy_and_score(
        self, x: Tensor, sigma: Sigma = None, *, create_graph: bool = False
    ) -> tuple[Tensor | None, Tensor]:
        if create_graph:
            return self.energy.energy_and_score(x, sigma, create_graph=True)
        if self._cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with trace_autograd():  # torch.compile is imported and called on first use
            e, s = _compiled_function(self.mode)(self.energy, x, sigma)
        if self._cuda_graphs:
            e, s = (None if e is None else e.clone()), s.clone()
        return e, s

    def score(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        return self.energy_and_score(x, sigma)[1]


def compile_energy(energy: Energy, mode: bool | str = True) -> Energy:
    """``energy`` with its energy+score evaluation compiled (see :class:`CompiledEnergy`).

    ``mode``: ``True`` (= ``"default"``) or a ``torch.compile`` mode; ``"reduce-overhead"``
    also captures CUDA graphs and needs the energy on a CUDA device. ``False`` returns
    ``energy`` unchanged. The first call for a new energy class or input shape compiles
    (seconds to tens of seconds); later calls, in this run or another, reuse the graph.
    """
    resolved = resolve_compile_mode("compile_energy", mode)
    if resolved is None:
        return energy
    if not isinstance(energy, Energy):
        raise ComponentArgumentError(
            f"compile_energy: expected an ebmflow.Energy, got {type(energy).__name__}"
        )
    if isinstance(energy, CompiledEnergy):
        if energy.mode == resolved:
            return energy
        energy = energy.energy
    param: Tensor | None = next(energy.parameters(), None)
    if param is None:
        param = next(energy.buffers(), None)
    if param is not None:
        check_cuda_graphs("compile_energy", resolved, param.device)
    return CompiledEnergy(energy, resolved)


class Sampler(Configurable):
    """Base class of MCMC samplers.

    Subclasses implement :meth:`step`; :meth:`init` and :meth:`run` are shared. A sampler
    holds only hyperparameters, so one instance can drive any number of runs.
    """

    #: whether ``step`` needs energy values (MH samplers), not just scores.
    needs_energy: bool = False
    #: the energies' event spaces (``Energy.event_space``) this sampler proposes in;
    #: :meth:`check_compatible` refuses an energy over any other.
    event_spaces: tuple[str, ...] = ("continuous",)

    @property
    def name(self) -> str:
        return type(self).__name__

    def init(self, energy: Energy, x: Tensor, sigma: Sigma = None) -> SamplerState:
        """Evaluate energy and score at ``x`` and return the starting state."""
        self.check_compatible(energy, x)
        sigma_t = broadcast_sigma(sigma, x)
        e, s = energy.energy_and_score(x, sigma_t)
        check_finite(self.name, 0, e, x)
        return SamplerState(x=x.detach(), energy=e, score=s, sigma=sigma_t)

    def step(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
    ) -> SamplerState:
        """One transition; returns the new state. A fixed Markov kernel: the parameters it
        reads from ``state`` (HMC's step size) are changed only by :meth:`adapt`."""
        raise NotImplementedError

    def adapt(self, state: SamplerState) -> SamplerState:
        """Warm-up between steps: ``state`` with the kernel's parameters tuned from the step
        that produced it (HMC's step size, :mod:`ebmflow.samplers.adaptation`). The default
        tunes nothing. Runs call it through :meth:`step_and_adapt`."""
        return state

    def step_and_adapt(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
    ) -> SamplerState:
        """One step of a run: :meth:`step`, then the warm-up :meth:`adapt`. Code that drives
        chains itself (objectives, ensembles, annealing) calls this, so a sampler's warm-up
        works wherever it runs; :meth:`step` alone is the fixed kernel."""
        return self.adapt(self.step(energy, state, generator))

    def target_state(self, state: SamplerState) -> SamplerState:
        """The chains of ``state`` that sample the target energy itself, one per starting
        point given to :meth:`init`: the whole state for ordinary samplers. Ensemble
        samplers whose state holds more chains (parallel tempering's hotter replicas)
        return the rows at the target. :func:`~ebmflow.samplers.chains.run_chains` (the
        negatives of CD, PCD and JEM) takes its chains from here."""
        return state

    def check_compatible(self, energy: Energy, x: Tensor) -> None:
        """Raise an ebmflow error naming this sampler unless ``x`` can start chains on
        ``energy``: an :class:`~ebmflow.Energy`, a floating-point ``(B, *event_shape)`` tensor
        matching the energy's event shape, dtype and device, and energy values if the
        sampler's Metropolis test needs them, and an energy whose ``event_space`` is one of
        the sampler's ``event_spaces``. :meth:`init` calls it; a sampler that
        overrides ``init`` calls it first, so its errors read like every other sampler's."""
        if not isinstance(energy, Energy):
            raise ComponentArgumentError(
                f"{self.name}: expected an ebmflow.Energy, got {type(energy).__name__}"
            )
        space = getattr(energy, "event_space", "continuous")
        if space not in self.event_spaces:
            accepted = " or ".join(map(repr, self.event_spaces))
            hint = (
                "a continuous sampler such as 'langevin', 'mala' or 'hmc'"
                if space == "continuous"
                else "a discrete sampler such as 'gibbs', 'gwg' or 'dmala' (ebmflow-discrete)"
            )
            raise ConfigError(
                f"{self.name} samples {accepted} event spaces, but {type(energy).__name__} is "
                f"defined on a {space!r} event space; use {hint}"
            )
        if not isinstance(x, Tensor) or x.ndim < 1:
            raise ConfigError(f"{self.name}: x must be a tensor of shape (B, *event_shape)")
        if not torch.is_floating_point(x):
            raise ComponentArgumentError(
                f"{self.name}: x must be a floating-point tensor, got {x.dtype}"
            )
        if energy.event_shape is not None and tuple(x.shape[1:]) != tuple(energy.event_shape):
            raise ConfigError(
                f"{self.name}: x has event shape {tuple(x.shape[1:])} but "
                f"{type(energy).__name__} expects {tuple(energy.event_shape)} (x is (B, *event))"
            )
        if self.needs_energy and not energy.has_energy:
            raise ConfigError(
                f"{self.name} needs energy values for its Metropolis test, but "
                f"{type(energy).__name__} is score-only; use 'langevin' or "
                "'annealed-langevin', or give the model an energy"
            )
        param: Tensor | None = next(energy.parameters(), None)
        if param is None:
            param = next(energy.buffers(), None)
        if param is not None and (
            param.device != x.device or (param.is_floating_point() and param.dtype != x.dtype)
        ):
            raise ConfigError(
                f"{self.name}: x is {x.dtype} on {x.device} but {type(energy).__name__} is "
                f"{param.dtype} on {param.device}; move one with .to()"
            )

    def run(
        self,
        energy: Energy,
        x0: Tensor,
        n_steps: int,
        *,
        sigma: Sigma = None,
        generator: torch.Generator | None = None,
        thin: int | None = None,
        progress: bool = False,
        callback: Callable[[SamplerState], Any] | None = None,
        compile: bool | str = False,
    ) -> SampleResult:
        """Run ``n_steps`` transitions from ``x0``.

        Args:
            sigma: noise level for noise-conditional energies.
            generator: the only source of randomness; the same generator state gives the
                same samples.
            thin: keep every ``thin``-th position in ``SampleResult.trajectory``; by default
                no trajectory is kept.
            progress: show a tqdm progress bar with the energy and acceptance.
            callback: called with the state after every step (the energy's parameters
                do not require gradients during a run; they are restored after it).
            compile: evaluate the energy and score through ``torch.compile`` (see
                :func:`compile_energy`): ``True`` or a torch.compile mode;
                ``"reduce-overhead"`` adds CUDA graphs (CUDA only, fixed shapes). The
                samples equal an eager run's up to float rounding. The first run of a new
                energy compiles, which takes seconds; later runs reuse the graph.
        """
        n_steps = check_positive_int(self.name, "n_steps", n_steps, minimum=0)
        if thin is not None:
            thin = check_positive_int(self.name, "thin", thin)
        mode = resolve_compile_mode(self.name, compile)
        if mode is not None:
            if isinstance(x0, Tensor):
                check_cuda_graphs(self.name, mode, x0.device)
            energy = compile_energy(energy, mode)
        with frozen_parameters(energy):  # one compiled graph serves init and the steps
            state = self.init(energy, x0, sigma)
            return self.continue_run(
                energy,
                state,
                n_steps,
                generator=generator,
                thin=thin,
                progress=progress,
                callback=callback,
            )

    def continue_run(
        self,
        energy: Energy,
        state: SamplerState,
        n_steps: int,
        *,
        generator: torch.Generator | None = None,
        thin: int | None = None,
        progress: bool = False,
        callback: Callable[[SamplerState], Any] | None = None,
    ) -> SampleResult:
        """Like :meth:`run`, starting from an existing state."""
        x = state.x
        trace = torch.empty(n_steps, device=x.device, dtype=torch.float32)
        accept_sum = torch.zeros(x.shape[0], device=x.device, dtype=torch.float32)
        # the trajectory is one tensor allocated up front: keeping a small tensor per
        # step instead fragments the heap between the steps' temporaries (resident memory
        # grows to many times the trajectory's size) and torch.stack doubles the peak
        n_kept = 0 if thin is None else n_steps // thin
        trajectory = x.new_empty((n_kept, *x.shape)) if n_kept else None
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_steps, desc=self.name, leave=False)
        # the parameters' gradients are never needed here (see ebmflow.samplers.frozen)
        with frozen_parameters(energy):
            for i in range(n_steps):
                state = self.step_and_adapt(energy, state, generator)
                e = state.energy
                if e is None:
                    trace[i] = float("nan")
                elif e.dtype == trace.dtype:
                    torch.sum(e, dim=0, out=trace[i])  # one op; divided by B once, below
                else:
                    trace[i] = e.sum()
                if state.accept_prob is not None:
                    accept_sum += state.accept_prob
                if trajectory is not None and thin is not None and (i + 1) % thin == 0:
                    trajectory[(i + 1) // thin - 1] = state.x
                if callback is not None:
                    callback(state)
                if bar is not None:
                    bar.update(1)
                    if (i + 1) % max(1, n_steps // 50) == 0:
                        postfix = {"E": f"{trace[i].item() / x.shape[0]:.3g}"}
                        if state.accept_prob is not None:
                            postfix["acc"] = f"{(accept_sum.mean() / (i + 1)).item():.2f}"
                        bar.set_postfix(postfix)
        if bar is not None:
            bar.close()
        trace /= x.shape[0]  # the per-step sums become mean energies
        diagnostics: dict[str, Any] = {"energy_trace": trace, "n_steps": n_steps}
        if n_steps and state.accept_prob is not None:
            per_chain = accept_sum / n_steps
            diagnostics["acceptance_per_chain"] = per_chain
            diagnostics["acceptance_rate"] = float(per_chain.mean())
        diagnostics.update(self.diagnostics(state))
        return SampleResult(state.x, state, diagnostics, trajectory)

    def diagnostics(self, state: SamplerState) -> dict[str, Any]:
        """Extra sampler-specific diagnostics at the end of a run (e.g. the step size)."""
        return {}


def build_sampler(
    owner: str,
    sampler: Any,
    default: str | Mapping[str, Any] = "langevin",
    *,
    host: PluginHost | None = None,
) -> Sampler:
    """The sampler a component runs, from an ``ebmflow.Sampler``, a registered name or a
    config dict (``{"name": "mala", "step_size": 0.01}``); ``None`` builds ``default``.
    A name or dict is built by ``host``, by default :func:`ebmflow.current_host` — the host
    building ``owner``, so a sampler registered only with an isolated
    :class:`~ebmflow.PluginHost` is found. Errors name ``owner`` and what is accepted."""
    spec = default if sampler is None else sampler
    if isinstance(spec, (str, Mapping)):
        host = current_host() if host is None else host
        built = host.create("sampler", dict(spec) if isinstance(spec, Mapping) else spec)
        if not isinstance(built, Sampler):
            raise ComponentArgumentError(
                f"{owner}: sampler {spec!r} built a {type(built).__name__}, not an ebmflow.Sampler"
            )
        return built
    if isinstance(spec, Sampler):
        return spec
    example = dict(default) if isinstance(default, Mapping) else {"name": default}
    raise ComponentArgumentError(
        f"{owner}: sampler must be an ebmflow.Sampler, a registered sampler name or a config "
        f"dict such as {example}; got {type(sampler).__name__} {sampler!r}"
    )
