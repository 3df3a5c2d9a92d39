"""The 2-D toy densities of the FFJORD lineage, with exact log-densities.

Grathwohl et al. 2019 ("FFJORD: Free-form Continuous Dynamics for Scalable Reversible
Generative Models") popularised these sets through its ``toy_data.py``; later work (flow
matching, score-based and energy-based toy experiments) reuses them. The generative
definitions below follow that file, with its finite deterministic grids (``linspace`` angles,
equal counts per component) replaced by the continuous uniform laws they discretise, so
that every set has an exact density (z ~ N(0, I) throughout):

============  ==========================================================  =====  ========
name          generative definition                                        ref.   entropy
============  ==========================================================  =====  ========
8gaussians    k ~ U{0..7}, x = (4 (cos kπ/4, sin kπ/4) + 0.5 z) / 1.414   2.834  2.831880
checkerboard  uniform on the 8 dark 2×2 squares of [−4, 4]²                3.466  3.465736
rings         k ~ U{0..3}, θ ~ U[0, 2π), x = r_k (cos θ, sin θ) + 0.08 z,  2.626  2.623183
              r = 3 · (1, 0.75, 0.5, 0.25)
moons         k ~ U{0, 1}, t ~ U[0, π], x = 2 m_k(t) + (−1, −0.2) + 0.2 z  2.393  2.393879
              (scikit-learn's make_moons arcs m_k, noise 0.1, times 2)
2spirals      u ~ U[0, 1), n = 3π √u, b ~ U[0, 0.5)², ς ~ U{±1},          2.642  2.645450
              x = ς (a(n) + b) / 3 + 0.1 z,  a(n) = (−n cos n, n sin n)
============  ==========================================================  =====  ========

"ref." (``reference_nll``) is the true-density NLL −E_p[log p] quoted in DESIGN.md, to three
decimals, and "entropy" (``entropy``) the exact differential entropy of the density
implemented here, by grid quadrature of −p log p over ``bounds`` (spectrally accurate for these
smooth densities; exact for the checkerboard). They agree to within 0.004 nats, the accuracy of
the Monte Carlo estimates the published figures come from; ``tests/test_datasets.py`` checks
both, the first by Monte Carlo with samples from ``sample``.

Gaussians, checkerboard and rings have closed-form densities; moons and 2spirals integrate a
closed-form kernel over the curve parameter with composite Gauss–Legendre quadrature
(``quadrature_nodes``), converged over ``bounds``: doubling the nodes changes log p by less
than 1e-9 wherever log p > −100. Far outside ``bounds`` (log p in the thousands of nats below
zero) the integrands become too sharp for the default rules and the relative error of log p
grows to ~1e-5.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import Tensor

from ebmflow.datasets.base import Bounds, Dataset, generator_device
from ebmflow.errors import ConfigError
from ebmflow.validation import check_positive_int

_GL_ORDER = 16  # points per Gauss–Legendre panel
_CHUNK_ELEMENTS = 1 << 16  # points × nodes per block of a quadrature log-density
_SQRT_HALF = math.sqrt(0.5)
_TINY = 1e-250  # below this a linear-space quadrature sum is recomputed in log space


@functools.cache
def _gauss_legendre(order: int) -> tuple[Tensor, Tensor]:
    """Nodes and weights of the ``order``-point Gauss–Legendre rule on [−1, 1], float64.

    Golub–Welsch: the nodes are the eigenvalues of the Jacobi matrix of the Legendre
    polynomials (off-diagonal k / √(4k² − 1)), the weights 2 v₀² from the eigenvectors.
    """
    k = torch.arange(1, order, dtype=torch.float64)
    off = k / torch.sqrt(4.0 * k * k - 1.0)
    jacobi = torch.diag(off, 1) + torch.diag(off, -1)
    nodes, vectors = torch.linalg.eigh(jacobi)
    weights = 2.0 * vectors[0] ** 2
    return nodes, weights


def composite_gauss_legendre(edges: Tensor) -> tuple[Tensor, Tensor]:
    """Nodes and weights (float64) of 16-point Gauss–Legendre rules on the panels
    [edges[j], edges[j + 1]]; ``16 · (len(edges) − 1)`` nodes in all."""
    nodes, weights = _gauss_legendre(_GL_ORDER)
    edges = edges.to(torch.float64)
    half = 0.5 * (edges[1:] - edges[:-1])
    mid = 0.5 * (edges[1:] + edges[:-1])
    return (mid[:, None] + half[:, None] * nodes).reshape(-1), (half[:, None] * weights).reshape(-1)


def _check_quadrature_nodes(owner: str, n_nodes: int) -> int:
    n_nodes = check_positive_int(owner, "quadrature_nodes", n_nodes, minimum=_GL_ORDER)
    if n_nodes % _GL_ORDER:
        raise ConfigError(
            f"{owner}: quadrature_nodes must be a multiple of {_GL_ORDER} (panels of "
            f"{_GL_ORDER}-point Gauss–Legendre rules), got {n_nodes!r}"
        )
    return n_nodes


def log_ndtr_diff(hi: Tensor, lo: Tensor) -> Tensor:
    """log(Φ(hi) − Φ(lo)) for hi > lo, accurate in both tails: where the interval lies right
    of 0 it uses Φ(−lo) − Φ(−hi), so both terms are lower-tail values."""
    right = (hi + lo) > 0
    upper = torch.where(right, -lo, hi)
    lower = torch.where(right, -hi, lo)
    log_upper = torch.special.log_ndtr(upper)
    return log_upper + torch.log1p(-torch.exp(torch.special.log_ndtr(lower) - log_upper))


def _ndtr_diff(hi: Tensor, lo: Tensor) -> Tensor:
    """Φ(hi) − Φ(lo) for hi > lo with the same tail handling as :func:`log_ndtr_diff`
    (relative accuracy ~1e-15 until it underflows below ~1e-308). With Φ(x) = ½ erfc(−x/√2)
    and ς = +1 right of 0, −1 left of it: Φ(hi) − Φ(lo) = ½ ς (erfc(ς lo/√2) − erfc(ς hi/√2))."""
    sign = ((hi + lo > 0).to(hi.dtype) * 2 - 1) * _SQRT_HALF
    erfc = torch.special.erfc
    return (erfc(sign * lo) - erfc(sign * hi)) * (sign * _SQRT_HALF)


class Toy2D(Dataset):
    """Base class of the 2-D sets: ``event_shape = (2,)``, exact ``log_prob``, ``bounds``.

    Attributes:
        reference_nll: the true-density NLL −E_p[log p] in nats quoted in DESIGN.md (three
            decimals; a Monte Carlo figure, within 0.004 of ``entropy``).
        entropy: the exact differential entropy −∫ p log p of this density, in nats (six
            decimals, by grid quadrature; see the module docstring).
    """

    event_shape = (2,)
    has_log_prob = True
    reference_nll: float
    entropy: float

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log p(x) for ``x`` of shape ``(n, 2)``; computed in float64 on ``x``'s device
        and returned in ``x``'s floating dtype. Points outside the support give −inf."""
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != 2:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ConfigError(
                f"{self.name} dataset: log_prob expects a tensor of shape (n, 2), got {shape}"
            )
        dtype = x.dtype if torch.is_floating_point(x) else torch.float32
        return self._log_prob(x.to(torch.float64)).to(dtype)

    def _log_prob(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class EightGaussians(Toy2D):
    """Eight Gaussians on a circle (FFJORD's ``8gaussians``).

    k ~ U{0, …, 7}, μ_k = (scale / 1.414) (cos kπ/4, sin kπ/4), x = μ_k + (0.5 / 1.414) z with
    scale = 4 and z ~ N(0, I): the FFJORD recipe (centres times 4, noise std 0.5, all divided
    by 1.414). So σ = 0.5 / 1.414 and

        log p(x) = logsumexp_k(−‖x − μ_k‖² / (2σ²)) − log 8 − log(2πσ²).

    Entropy −E_p[log p]: see ``entropy`` and ``reference_nll``.
    """

    name = "8gaussians"
    reference_nll = 2.834
    entropy = 2.831880
    bounds: Bounds = ((-6.0, 6.0), (-6.0, 6.0))
    scale = 4.0
    noise_std = 0.5
    divisor = 1.414

    def _centers(self, device: torch.device | None = None) -> Tensor:
        angle = torch.arange(8, dtype=torch.float64, device=device) * (math.pi / 4)
        return torch.stack([angle.cos(), angle.sin()], 1) * (self.scale / self.divisor)

    def _sample(self, n, generator):
        device = generator_device(generator)
        k = torch.randint(0, 8, (n,), generator=generator, device=device)
        z = torch.randn(n, 2, generator=generator, dtype=torch.float64, device=device)
        return self._centers(device)[k] + (self.noise_std / self.divisor) * z

    def _log_prob(self, x):
        sigma = self.noise_std / self.divisor
        d2 = (x[:, None, :] - self._centers(x.device)).pow(2).sum(-1)
        return (
            torch.logsumexp(-d2 / (2 * sigma**2), 1)
            - math.log(8.0)
            - math.log(2 * math.pi * sigma**2)
        )


class Checkerboard(Toy2D):
    """Uniform on the 8 dark squares of a 4 × 4 board of 2 × 2 squares on [−4, 4]²
    (FFJORD's ``checkerboard``).

    FFJORD's recipe: x₁ ~ U[−2, 2), x₂ = U[0, 1) − 2 B + (⌊x₁⌋ mod 2) with B ~ U{0, 1}, then
    x = 2 (x₁, x₂). Square (i, j) = (⌊x₁/2⌋, ⌊x₂/2⌋) (i, j ∈ {−2, …, 1}) is dark when i + j is
    even, so

        log p(x) = −log 32 on the dark squares, −inf elsewhere.

    Entropy −E_p[log p]: see ``entropy`` and ``reference_nll``.
    """

    name = "checkerboard"
    reference_nll = 3.466
    entropy = 3.465736
    bounds: Bounds = ((-5.0, 5.0), (-5.0, 5.0))

    def _sample(self, n, generator):
        device = generator_device(generator)
        x1 = torch.rand(n, generator=generator, dtype=torch.float64, device=device) * 4 - 2
        u2 = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        b = torch.randint(0, 2, (n,), generator=generator, device=device)
        x2 = u2 - 2 * b + torch.floor(x1).remainder(2)
        return 2 * torch.stack([x1, x2], 1)

    def _log_prob(self, x):
        inside = (x.abs() <= 4).all(1)
        square = torch.floor(x / 2).clamp(-2, 1)
        dark = (square.sum(1).remainder(2) == 0) & inside
        return torch.where(dark, x.new_tensor(-math.log(32.0)), x.new_tensor(-math.inf))


class Rings(Toy2D):
    """Four concentric noisy rings (FFJORD's ``rings``).

    k ~ U{0, …, 3}, θ ~ U[0, 2π), x = r_k (cos θ, sin θ) + σ z with r = 3 · (1, 0.75, 0.5, 0.25)
    and σ = 0.08. A ring of radius r convolved with N(0, σ² I) has, at ρ = ‖x‖,

        p_r(x) = 1 / (2πσ²) · exp(−(ρ² + r²) / (2σ²)) · I₀(ρ r / σ²)

    (I₀: modified Bessel function of the first kind), evaluated stably with the scaled
    I₀ₑ(z) = e^{−z} I₀(z):

        log p(x) = logsumexp_k(−(ρ − r_k)² / (2σ²) + log I₀ₑ(ρ r_k / σ²)) − log 4 − log(2πσ²).

    Entropy −E_p[log p]: see ``entropy`` and ``reference_nll``.
    """

    name = "rings"
    reference_nll = 2.626
    entropy = 2.623183
    bounds: Bounds = ((-4.0, 4.0), (-4.0, 4.0))
    radii = (3.0, 2.25, 1.5, 0.75)
    noise_std = 0.08

    def _sample(self, n, generator):
        device = generator_device(generator)
        radii = torch.tensor(self.radii, dtype=torch.float64, device=device)
        k = torch.randint(0, 4, (n,), generator=generator, device=device)
        theta = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        theta = theta * (2 * math.pi)
        z = torch.randn(n, 2, generator=generator, dtype=torch.float64, device=device)
        return radii[k, None] * torch.stack([theta.cos(), theta.sin()], 1) + self.noise_std * z

    def _log_prob(self, x):
        sigma2 = self.noise_std**2
        radii = torch.tensor(self.radii, dtype=torch.float64, device=x.device)
        rho = x.norm(dim=1, keepdim=True)
        log_terms = -((rho - radii) ** 2) / (2 * sigma2) + torch.log(
            torch.special.i0e(rho * radii / sigma2)
        )
        return torch.logsumexp(log_terms, 1) - math.log(4.0) - math.log(2 * math.pi * sigma2)


def _chunked_logsumexp(x: Tensor, n_nodes: int, log_terms: Callable[[Tensor], Tensor]) -> Tensor:
    """logsumexp over the last axis of ``log_terms(block)`` (shape (m, n_nodes)), evaluated on
    row blocks of ``x`` so that memory stays bounded."""
    chunk = max(1, _CHUNK_ELEMENTS // n_nodes)
    parts = [torch.logsumexp(log_terms(block), 1) for block in x.split(chunk)]
    return torch.cat(parts) if parts else x.new_empty(0)


class Moons(Toy2D):
    """scikit-learn's two interleaved half-moons, with FFJORD's ``moons`` scaling.

    FFJORD: ``make_moons(noise=0.1) * 2 + (−1, −0.2)``. With the arcs' deterministic
    ``linspace`` replaced by t ~ U[0, π]:

        k ~ U{0, 1},  m_0(t) = (cos t, sin t),  m_1(t) = (1 − cos t, ½ − sin t),
        x = c_k(t) + σ z,   c_k(t) = 2 m_k(t) + (−1, −0.2),  σ = 2 · 0.1 = 0.2,

    so

        p(x) = ½ Σ_k (1/π) ∫₀^π N(x; c_k(t), σ² I) dt,

    computed in log space by composite Gauss–Legendre quadrature in t:
    log p(x) = logsumexp_{k,i}(log(w_i / 2π) − ‖x − c_k(t_i)‖² / (2σ²)) − log(2πσ²).

    Entropy −E_p[log p]: see ``entropy`` and ``reference_nll``.

    Args:
        quadrature_nodes: nodes t_i per arc, a multiple of 16. At the default log p changes
            by < 1e-11 over ``bounds`` when the nodes are doubled.
    """

    name = "moons"
    reference_nll = 2.393
    entropy = 2.393879
    bounds: Bounds = ((-5.0, 5.0), (-3.5, 4.0))
    noise_std = 0.2
    shift = (-1.0, -0.2)

    def __init__(self, quadrature_nodes: int = 256) -> None:
        self.quadrature_nodes = _check_quadrature_nodes("moons dataset", quadrature_nodes)

    def _arc(self, t: Tensor, k: Tensor) -> Tensor:
        """c_k(t) = 2 m_k(t) + (−1, −0.2), shape (*t.shape, 2)."""
        inner = k == 1
        mx = torch.where(inner, 1 - t.cos(), t.cos())
        my = torch.where(inner, 0.5 - t.sin(), t.sin())
        return torch.stack([2 * mx + self.shift[0], 2 * my + self.shift[1]], -1)

    def _sample(self, n, generator):
        device = generator_device(generator)
        k = torch.randint(0, 2, (n,), generator=generator, device=device)
        t = torch.rand(n, generator=generator, dtype=torch.float64, device=device) * math.pi
        z = torch.randn(n, 2, generator=generator, dtype=torch.float64, device=device)
        return self._arc(t, k) + self.noise_std * z

    def _log_prob(self, x):
        sigma2 = self.noise_std**2
        edges = torch.linspace(
            0.0, math.pi, self.quadrature_nodes // _GL_ORDER + 1, dtype=torch.float64
        )
        t, w = composite_gauss_legendre(edges)
        arc = torch.cat([torch.zeros_like(t), torch.ones_like(t)])
        centres = self._arc(torch.cat([t, t]), arc).to(x.device)  # c_k(t_i), (2q, 2)
        # −‖x − c‖² / (2σ²) = x·c / σ² − ‖c‖² / (2σ²) − ‖x‖² / (2σ²): one matrix product
        bias = torch.log(torch.cat([w, w]).to(x.device) / (2 * math.pi)) - centres.pow(2).sum(1) / (
            2 * sigma2
        )
        weight = centres.T / sigma2

        def log_terms(block: Tensor) -> Tensor:
            return torch.addmm(bias, block, weight)

        log_sum = _chunked_logsumexp(x, centres.shape[0], log_terms)
        return log_sum - x.pow(2).sum(1) / (2 * sigma2) - math.log(2 * math.pi * sigma2)


class TwoSpirals(Toy2D):
    """Two interleaved spirals (FFJORD's ``2spirals``).

    FFJORD's recipe, in continuous form: n = 3π √u with u ~ U[0, 1) (540° of turn, about
    uniform along the spiral), a(n) = (−n cos n, n sin n), a box offset b ~ U[0, 0.5)², a
    spiral sign ς ~ U{+1, −1}, and then

        x = ς (a(n) + b) / 3 + σ z,   σ = 0.1.

    With v = √u ∈ [0, 1] (density 2v), box width w = 0.5 / 3 and Φ the standard normal CDF,
    b/3 + σ z has the per-coordinate density g(d) / w, g(d) = Φ(d/σ) − Φ((d − w)/σ), so

        q(y) = ∫₀¹ (2v / w²) · g(y₁ − a₁(3πv)/3) · g(y₂ − a₂(3πv)/3) dv,
        p(x) = ½ (q(x) + q(−x)).

    q is a composite Gauss–Legendre sum over v (the substitution u = v² makes the integrand
    smooth at the centre; panels are equal steps in u, i.e. about equal arc length). Only the
    nodes within about 1.3 (in arc length) of a point's nearest passage of a spiral contribute
    measurably, so for each spiral a point sums a window of nodes around its nearest node (two
    windows for a point between two arms) and bounds the nodes left out by

        g(d₁) g(d₂) = P(y + σZ ∈ box) ≤ exp(−(r − w/√2)² / (2σ²)),   r = distance to the box centre.

    Where that bound cannot show the windows exact to 1e-13 relative (far from the spirals),
    the point gets the full sum, in log space where it would underflow.

    Args:
        quadrature_nodes: nodes v_i, a multiple of 16. At the default, doubling the nodes
            changes log p by < 1e-9 wherever log p > −100 in ``bounds`` (by < 1e-6 in its far
            corners, where log p ≈ −380).
    """

    name = "2spirals"
    reference_nll = 2.642
    entropy = 2.645450
    bounds: Bounds = ((-4.5, 4.5), (-4.5, 4.5))
    turns = 3 * math.pi
    box = 0.5
    divisor = 3.0
    noise_std = 0.1
    #: arc length (1/3)·½(n√(1 + n²) + asinh n) of one spiral at n = 3π, after the division by 3
    _length = (turns * math.sqrt(1 + turns**2) + math.asinh(turns)) / (2 * divisor)
    _window_length = 1.3  # arc length each side of the nearest node summed for every point
    _coarse_stride = 4  # every 4th node is used to find the nearest one
    _tolerance = 1e-13  # relative bound on the terms a window leaves out

    def __init__(self, quadrature_nodes: int = 1024) -> None:
        self.quadrature_nodes = _check_quadrature_nodes("2spirals dataset", quadrature_nodes)

    @staticmethod
    def _spiral(n: Tensor) -> Tensor:
        """a(n) = (−n cos n, n sin n)."""
        return torch.stack([-n * n.cos(), n * n.sin()], -1)

    def _sample(self, n, generator):
        device = generator_device(generator)
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        b = torch.rand(n, 2, generator=generator, dtype=torch.float64, device=device)
        sign = torch.randint(0, 2, (n, 1), generator=generator, device=device) * 2 - 1
        z = torch.randn(n, 2, generator=generator, dtype=torch.float64, device=device)
        curve = self._spiral(self.turns * u.sqrt())
        return sign * (curve + self.box * b) / self.divisor + self.noise_std * z

    def _log_prob(self, x):
        s, w_box = self.noise_std, self.box / self.divisor
        q = self.quadrature_nodes
        edges = torch.linspace(0.0, 1.0, q // _GL_ORDER + 1, dtype=torch.float64).sqrt()
        v, w = (t.to(x.device) for t in composite_gauss_legendre(edges))
        corner = self._spiral(self.turns * v) / self.divisor  # a(3πv_i)/3: the box's corner
        weights = 2 * v * w / w_box**2

        def kernel(y: Tensor, index: Tensor) -> Tensor:
            """(2v_i w_i / w²) g g for points y (m, 2) and node indices (m, k) or (k,)."""
            z = (y[:, None, :] - corner[index]) / s
            g = _ndtr_diff(z, z - w_box / s)
            return g[..., 0] * g[..., 1] * weights[index]

        def log_kernel(y: Tensor) -> Tensor:
            """log of ``kernel(y, every node)`` without underflow."""
            z = (y[:, None, :] - corner) / s
            return log_ndtr_diff(z, z - w_box / s).sum(-1) + weights.log()

        half = math.ceil(self._window_length * q / self._length)
        log_p = torch.empty(len(x), dtype=x.dtype, device=x.device)
        todo = torch.arange(len(x), device=x.device)  # points whose log p is not yet exact
        for n_windows in (1, 2):  # one window per spiral, then two (a point between two arms)
            if len(todo) == 0 or n_windows * (2 * half + 1) >= q:
                break
            chunk = max(1, _CHUNK_ELEMENTS // (n_windows * (2 * half + 1)))
            failed = []
            for rows in todo.split(chunk):
                log_p[rows], fail = self._window_log_prob(x[rows], kernel, corner, half, n_windows)
                failed.append(rows[fail])
            todo = torch.cat(failed)
        if len(todo):
            log_p[todo] = self._full_log_prob(x[todo], kernel, log_kernel, q)
        return log_p

    def _window_log_prob(self, x, kernel, corner, half, n_windows):
        """log p from ``n_windows`` windows of 2·half + 1 nodes per spiral, each around the
        point's nearest node not yet in a window, and a mask of the points for which the
        bound cannot show that the nodes left out change p by less than ``_tolerance``."""
        s, w_box = self.noise_std, self.box / self.divisor
        q, stride = len(corner), self._coarse_stride
        centre = corner + w_box / 2  # box centres c_i
        coarse_index = torch.arange(0, q, stride, device=x.device)
        coarse = centre[coarse_index]
        # δ_c: how far the nodes whose nearest coarse node (in index) is c lie from it, so
        # that r_k ≥ r_c − δ_c for each of them
        nearest_coarse = (torch.arange(q, device=x.device) / stride).round().long()
        nearest_coarse = nearest_coarse.clamp(max=len(coarse_index) - 1)
        gap = (centre - coarse[nearest_coarse]).norm(dim=1)
        delta = torch.zeros(len(coarse_index), dtype=x.dtype, device=x.device)
        delta = delta.scatter_reduce(0, nearest_coarse, gap, reduce="amax")
        offsets = torch.arange(2 * half + 1, device=x.device)
        total, bounds = [], []
        for sign in (1.0, -1.0):
            y = sign * x
            r2 = y.pow(2).sum(1, keepdim=True) - 2 * y @ coarse.T + coarse.pow(2).sum(1)
            r = r2.clamp_min(0).sqrt()  # distances to the coarse nodes, (m, q / stride)
            q_sum = torch.zeros(len(x), dtype=x.dtype, device=x.device)
            covered = torch.zeros_like(r, dtype=torch.bool)  # coarse nodes inside a window
            # coarse nodes none of whose neighbours within ``stride`` nodes is left out
            inner = torch.zeros_like(r, dtype=torch.bool)
            firsts: list[Tensor] = []
            for _ in range(n_windows):
                nearest = torch.where(covered, math.inf, r).argmin(1)
                first = (coarse_index[nearest] - half).clamp(0, q - 2 * half - 1)[:, None]
                last = first + 2 * half
                index = first + offsets
                new = torch.ones_like(index, dtype=torch.bool)  # not summed by a window before
                for earlier in firsts:
                    new &= (index < earlier) | (index > earlier + 2 * half)
                q_sum = q_sum + (kernel(y, index) * new).sum(1)
                firsts.append(first)
                covered |= (coarse_index >= first) & (coarse_index <= last)
                inner |= ((first == 0) | (coarse_index >= first + stride)) & (
                    (last == q - 1) | (coarse_index <= last - stride)
                )
            total.append(q_sum)
            r_out = torch.where(inner, math.inf, r - delta).amin(1)
            # log of the bound (1/w²) exp(−(r − w/√2)² / (2σ²)) on the nodes left out,
            # whose weights 2v_i w_i sum to at most 1
            reach = w_box * _SQRT_HALF
            bounds.append(-2 * math.log(w_box) - (r_out - reach).clamp_min(0) ** 2 / (2 * s * s))
        p = 0.5 * (total[0] + total[1])
        log_left_out = torch.logaddexp(bounds[0], bounds[1]) - math.log(2.0)
        failed = (p < _TINY) | (log_left_out > p.log() + math.log(self._tolerance))
        return p.log(), failed

    def _full_log_prob(self, x, kernel, log_kernel, q):
        """log p summing every node, in linear space, then in log space where it underflows."""
        every = torch.arange(q, device=x.device)
        chunk = max(1, _CHUNK_ELEMENTS // q)
        p = (
            torch.cat(
                [0.5 * (kernel(y, every).sum(1) + kernel(-y, every).sum(1)) for y in x.split(chunk)]
            )
            if len(x)
            else x.new_empty(0)
        )
        log_p = p.log()
        tiny = p < _TINY
        if tiny.any():
            y = x[tiny]
            log_p[tiny] = torch.logaddexp(
                _chunked_logsumexp(y, q, log_kernel), _chunked_logsumexp(-y, q, log_kernel)
            ) - math.log(2.0)
        return log_p
