"""Starting settings per model family, so a first upscale with mixing looks reasonable.

They follow the published defaults (DemoFusion: cosine schedule, alpha_1 = 3, full denoise; the Iterative Mixer's
README: a clean-up pass at denoise 0.05-0.25) with the samplers each family is usually run with. Flow models get
alpha_1 = 1.5: their schedules are shifted towards noise (shift about 3), and 1.5 keeps roughly DemoFusion's copy
weight at the same signal-to-noise ratio as alpha_1 = 3 on SDXL's schedule. They were not tuned on real
checkpoints here (none runs offline); treat them as a first run, not an optimum.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import spaces
from ..errors import InputError, UnknownSpaceError


@dataclass(frozen=True)
class Preset:
    """Settings of one mixing upscale."""

    steps: int  # sampler steps of the mixing pass
    alpha_1: float  # cosine exponent: larger lets go of the noised copy sooner
    schedule: str = "cosine"  # see mixing.schedules
    sampler: str = "euler"
    blend: str = "lerp"
    denoise: float = 1.0  # fraction of the schedule the mixing pass runs (1 = from the noisiest sigma)
    cleanup: float = 0.15  # fraction of the schedule the clean-up pass re-runs (0 = no clean-up)
    scale: float = 2.0  # upscale factor before mixing


PRESETS: dict[str, Preset] = {
    "sd1": Preset(steps=30, alpha_1=3.0, sampler="dpmpp_2m", cleanup=0.15),
    "sdxl": Preset(steps=30, alpha_1=3.0, sampler="dpmpp_2m", cleanup=0.15),
    "sd3": Preset(steps=28, alpha_1=1.5, sampler="flow_euler", cleanup=0.1),
    "flux1": Preset(steps=28, alpha_1=1.5, sampler="flow_euler", cleanup=0.1),
}
_BY_KIND = {"eps": "sdxl", "v": "sdxl", "flow": "flux1"}


def preset(name: str | spaces.LatentSpace) -> Preset:
    """The preset for a space (id or alias) or a model kind (eps, v, flow); other spaces get their kind's."""
    if isinstance(name, str) and name in _BY_KIND:
        return PRESETS[_BY_KIND[name]]
    try:
        sp = spaces.get(name)
    except UnknownSpaceError as e:
        raise InputError(f"no mixing preset for {name!r}: use a latent space ({', '.join(PRESETS)}, ...) or a model "
                         "kind (eps, v, flow)") from e
    return PRESETS.get(sp.id) or PRESETS[_BY_KIND[sp.prediction]]
