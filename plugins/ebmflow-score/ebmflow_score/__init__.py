"""ebmflow-score: score-matching objectives for ebmflow.

ebmflow finds this package through its entry point (group ``ebmflow``, name ``score``), which
names :mod:`ebmflow_score.plugin`. Importing the package imports neither torch nor the
objectives; ``ebmflow.create("objective", "dsm")`` imports :mod:`ebmflow_score.denoising` on
first use. A non-finite loss raises :class:`NonFiniteLossError` (an ``ebmflow.EbmflowError``).

=================  ===========================  ============================================
name               class                        module
=================  ===========================  ============================================
``sm``             ``ScoreMatching``            :mod:`ebmflow_score.exact` (Hyvärinen 2005)
``ssm``            ``SlicedScoreMatching``      :mod:`ebmflow_score.sliced` (Song et al. 2019)
``dsm``            ``DenoisingScoreMatching``   :mod:`ebmflow_score.denoising` (Vincent 2011)
``multiscale-dsm`` ``MultiscaleDSM``            :mod:`ebmflow_score.denoising` (Song & Ermon
                                                2019)
=================  ===========================  ============================================
"""

from ebmflow_score.errors import NonFiniteLossError

__all__ = ["NonFiniteLossError", "__version__"]
__version__ = "0.1.0"
