"""Energy parameterisations of a diffusion network: models *trained as energies*.

With f(x, σ) the raw output of a noise-conditional network in VE coordinates
(``DiffusersScoreModel.network_output``):

``"half-norm"``:  E(x, σ) = ½ ‖f(x, σ)‖²           (s = −J_fᵀ f)
``"residual"``:   E(x, σ) = ‖x − f(x, σ)‖²         (s = −2 (I − J_f)ᵀ (x − f))

(the forms of Salimans & Ho 2021, "Should EBMs model the energy or the score?", and Du et al.
2023, "Reduce, Reuse, Recycle"). The score is −∇ₓE by autograd, so training with
``multiscale-dsm`` differentiates through an input gradient (ebmflow's
``energy_and_score(create_graph=True)``), and MALA and HMC get exact energies: no
line-integral estimate is needed for a model trained this way. A network trained as a plain
ε-model is not such an energy; convert it and use the segment integrals instead.

Training differentiates twice through the network; PyTorch's CPU flash-attention kernel has
no double backward, so on the CPU use a UNet without attention blocks (``add_attention=False``)
or run under ``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)``.
"""

from __future__ import annotations

from torch import Tensor

import ebmflow

FORMS = ("half-norm", "residual")


class NetworkEnergy(ebmflow.Energy):
    """E = ½‖f‖² or ‖x − f‖² of a noise-conditional network (see the module docstring).

    Args:
        model: a component with ``network_output(x, sigma)`` (e.g. a ``diffusers-unet``
            score model, whose weights this energy then trains).
        form: ``"half-norm"`` or ``"residual"``.
    """

    noise_conditional = True

    def __init__(self, model: ebmflow.Energy, form: str = "half-norm") -> None:
        super().__init__()
        if not callable(getattr(model, "network_output", None)):
            raise ebmflow.ComponentArgumentError(
                f"unet-energy: model must have network_output(x, sigma) (a diffusers-unet score "
                f"model), got {type(model).__name__}"
            )
        if form not in FORMS:
            raise ebmflow.ConfigError(
                f"unet-energy: form must be one of {', '.join(FORMS)}, got {form!r}"
            )
        self.model = model
        self.form = form
        self.event_shape = model.event_shape

    def forward(self, x: Tensor, sigma=None) -> Tensor:
        f = self.model.network_output(x, sigma)
        r = f if self.form == "half-norm" else x - f
        squares = ebmflow.sum_squares(r)
        return 0.5 * squares if self.form == "half-norm" else squares
