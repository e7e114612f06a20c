"""Previews: latents to RGB at nearly no cost, by factors, a small neural net or a tiny decoder.

``preview(latent, space, method=..., domain=...)`` is the entry point; factors, the fitter and the neural previewer
are importable for tools that need them.
"""

from .api import MARKER, METHODS, best_method, preview, resize
from .factors import FORMS, Factors, builtin, default_factors, feature_count, features, load_factors, save_factors
from .fit import NormalEquations, area_target, best_form, factors_psnr, fit_factors, psnr, score_factors
from .neural import Previewer, PreviewerConfig

__all__ = [
    "FORMS",
    "MARKER",
    "METHODS",
    "Factors",
    "NormalEquations",
    "Previewer",
    "PreviewerConfig",
    "area_target",
    "best_form",
    "best_method",
    "builtin",
    "default_factors",
    "factors_psnr",
    "feature_count",
    "features",
    "fit_factors",
    "load_factors",
    "preview",
    "psnr",
    "resize",
    "save_factors",
    "score_factors",
]
