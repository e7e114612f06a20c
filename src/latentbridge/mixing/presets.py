"""Starting settings per model family, so a first upscale with mixing looks reasonable.

They follow the published defaults (DemoFusion: cosine schedule, alpha_1 = 3, full denoise; the Iterative Mixer's
README: a clean-up pass at denoise 0.05-0.25) with the samplers each family is usually run with. Flow models get
alpha_1 = 1.5: their schedules are shifted towards noise (shift about 3), and 1.5 keeps roughly DemoFusion's copy
weight at the same signal-to-noise ratio as alpha_1 = 3 on SDXL's schedule. They were not tuned on real
checkpoints here (none runs offline); treat them as a first run, not an optimum. The presets are registry data
(``LatentSpace.mixing`` in spaces.py), so a registered space brings its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .. import spaces
from ..errors import InputError, UnknownSpaceError

Preset = spaces.MixingPreset  # each space's preset is registry data (LatentSpace.mixing)
_BY_PREDICTION = {"eps": "sdxl", "v": "sdxl", "flow": "flux1"}  # whose preset a space without one starts from


class _Presets(Mapping[str, Preset]):
    """Space id -> preset for every registered space that has one, read from the registry when asked."""

    def __getitem__(self, key: str) -> Preset:
        found = next((s.mixing for s in spaces.all() if s.id == key and s.mixing is not None), None)
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[str]:
        return (s.id for s in spaces.all() if s.mixing is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


PRESETS: Mapping[str, Preset] = _Presets()


def preset(name: str | spaces.LatentSpace) -> Preset:
    """The preset for a space (id or alias) or a model prediction (eps, v, flow); other spaces get their
    prediction's."""
    if isinstance(name, str) and name in _BY_PREDICTION:
        return PRESETS[_BY_PREDICTION[name]]
    try:
        sp = spaces.get(name)
    except UnknownSpaceError as e:
        raise InputError(f"no mixing preset for {name!r}: use a latent space ({', '.join(PRESETS)}, ...) or a model "
                         "prediction (eps, v, flow)") from e
    return sp.mixing or PRESETS[_BY_PREDICTION[sp.prediction]]
