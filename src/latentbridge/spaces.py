"""The registry of latent spaces: every family's constants as data, domain conversions, detection.

The numbers and their sources are listed in docs/spaces.md.

Three domains name where a latent lives:

* ``raw``: what the VAE encoder emits and its decoder takes; what a ComfyUI ``LATENT`` holds.
  For FLUX.2 this is ComfyUI's 128-channel tensor at /16, already 2x2-packed and batch-norm
  normalised by the VAE wrapper (diffusers' un-normalised 32-channel tensor needs the VAE's
  batch-norm statistics and is handled by the diffusers integration).
* ``model``: what the diffusion model and samplers see; what diffusers callbacks receive
  (in spatial NCHW form).
* ``taesd``: what the tiny autoencoders take: the model domain, but FLUX.2 unpacked to 32 channels at /8.

Conversions between them are exact affine maps and reshapes.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import torch

from .errors import AmbiguousError, InputError, UnknownSpaceError
from .hub import HubFile

Domain = Literal["raw", "model", "taesd"]  # where a latent lives: see the module docstring
DOMAINS: tuple[Domain, ...] = get_args(Domain)
# The domain preview(), upscale() and interposer.convert() assume when not told: what samplers, diffusion pipelines
# and their callbacks hand a Python caller. ComfyUI LATENTs and latent files state their own (raw, mostly).
DEFAULT_DOMAIN: Domain = "model"
Prediction = Literal["eps", "v", "flow"]  # what the diffusion model predicts; selects the forward (noising) process
PREDICTIONS: tuple[Prediction, ...] = get_args(Prediction)

COMFY = "comfyanonymous/ComfyUI:comfy/latent_formats.py"
TAESD = "madebyollin/taesd:taesd.py"
INTERPOSER = "city96/SD-Latent-Interposer:comfy_latent_interposer.py"
HUNYUAN3 = "tencent/HunyuanImage-3.0: HunyuanImage3Config DEFAULT_VAE_CONFIG"
FITTED = "fitted by latentbridge (latentbridge fit-preview, see src/latentbridge/models/README.md)"


def _rgb(table: str) -> tuple[tuple[float, float, float], ...]:
    """Parse an R G B table (one latent channel per row) into a tuple of rows."""
    rows = tuple(tuple(float(v) for v in line.split()) for line in table.strip().splitlines())
    if any(len(r) != 3 for r in rows):
        raise ValueError("every row of an RGB factor table needs exactly 3 numbers")
    return rows  # type: ignore[return-value]


@dataclass(frozen=True)
class Packing:
    """Space-to-channel packing of ``patch`` x ``patch`` cells; packed channel = c*p*p + i*p + j."""

    patch: int
    unpacked_channels: int


@dataclass(frozen=True)
class TinyModel:
    """A published tiny autoencoder of a space: its name, its TAESD architecture variant, and where the hub has it.

    Image models (TAESD family) are published as ``<name>_encoder`` / ``<name>_decoder`` halves and sometimes as one
    combined ``hub`` file; video models (TAEHV family, ``video=True``) as one file named ``<name>``.
    """

    name: str
    variant: str = "standard"  # TAESD architecture variant (tiny/layouts.py): standard | flux_2 | f32
    hub: HubFile | None = None  # the published combined file, where there is one
    video: bool = False  # a TAEHV-family model that takes whole clips (B, C, T, H, W)


@dataclass(frozen=True)
class PreviewRung:
    """One rung of a space's neural preview ladder: the model ``name`` its file is found by (``<name>.safetensors``,
    shipped with latentbridge or in the user's model folders) and its ``scale``, output pixels per taesd-domain
    latent pixel along each side (FLUX.2: 1 gives /8, 2 gives /4)."""

    name: str
    scale: int = 1


@dataclass(frozen=True)
class MixingPreset:
    """Starting settings of one mixing upscale for a family (see latentbridge.mixing.presets for where they come from)."""

    steps: int  # sampler steps of the mixing pass
    alpha_1: float  # cosine exponent: larger lets go of the noised copy sooner
    schedule: str = "cosine"  # see mixing.schedules
    sampler: str = "euler"
    blend: str = "lerp"
    denoise: float = 1.0  # fraction of the schedule the mixing pass runs (1 = from the noisiest sigma)
    cleanup: float = 0.15  # fraction of the schedule the clean-up pass re-runs (0 = no clean-up)
    scale: float = 2.0  # upscale factor before mixing


@dataclass(frozen=True)
class LatentSpace:
    """One latent space: shape, normalisation between domains, preview factors and the models that serve it."""

    id: str
    title: str
    channels: int  # channels in the raw and model domains
    downscale: int  # image pixels per latent pixel in the raw and model domains
    aliases: tuple[str, ...] = ()
    ndim: int = 4  # 4 for images (B, C, H, W); 5 for video VAEs (B, C, T, H, W)
    temporal_downscale: int = 1  # pixel frames per latent frame; 1 for images (docs/spaces.md)
    scaling_factor: float = 1.0  # model = (raw - shift or mean) * scaling_factor (/ std)
    shift_factor: float = 0.0
    latents_mean: tuple[float, ...] | None = None  # per-channel, for EDM-style normalisation
    latents_std: tuple[float, ...] | None = None
    packing: Packing | None = None  # model-domain packing that the taesd domain undoes
    rgb_factors: tuple[tuple[float, float, float], ...] | None = None  # rows = taesd-domain channels, to [-1, 1]
    rgb_bias: tuple[float, float, float] | None = None
    tiny_models: tuple[TinyModel, ...] = ()  # published tiny autoencoders, the preferred image one first
    previewers: tuple[PreviewRung, ...] | None = None  # the neural preview ladder; None: one rung, previewer-<id>
    interposer_code: str | None = None  # code in city96's v4.0 file names
    prediction: Prediction = "eps"
    comfy_format: str | None = None  # ComfyUI latent_formats class name
    families: tuple[str, ...] = ()  # model families that share this space
    diffusers_pipelines: tuple[str, ...] = ()  # class-name prefixes of the diffusers pipelines that sample in it
    diffusers_vaes: tuple[str, ...] = ()  # diffusers VAE classes whose latents it is (shared ones: told by config)
    mixing: MixingPreset | None = None  # mixing-upscale starting settings (others use their prediction's)
    guidance: float | None = None  # the family's usual classifier-free guidance scale in diffusers
    prior: float = 0.5  # how common the space is in the wild: ranks equally fitting detection candidates
    notes: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)  # field name -> where the number comes from

    def __post_init__(self) -> None:
        if self.channels < 1 or self.downscale < 1 or self.temporal_downscale < 1:
            raise ValueError(f"{self.id}: channels, downscale and temporal_downscale must be positive")
        if self.ndim not in (4, 5):
            raise ValueError(f"{self.id}: ndim is 4 (B, C, H, W) or 5 (B, C, T, H, W), not {self.ndim}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"{self.id}: prediction is one of {', '.join(PREDICTIONS)}, not {self.prediction!r}")
        if self.ndim == 4 and self.temporal_downscale != 1:
            raise ValueError(f"{self.id}: an image space (ndim=4) has temporal_downscale=1")
        if self.rgb_factors is not None and len(self.rgb_factors) != self.taesd_channels:
            raise ValueError(f"{self.id}: {len(self.rgb_factors)} factor rows for {self.taesd_channels} channels")
        for stats in (self.latents_mean, self.latents_std):
            if stats is not None and len(stats) != self.channels:
                raise ValueError(f"{self.id}: per-channel statistics need {self.channels} values")
        scales = [r.scale for r in self.preview_rungs]
        if len(set(scales)) != len(scales) or any(s < 1 or self.taesd_downscale % s for s in scales):
            raise ValueError(f"{self.id}: preview rungs need distinct scales that divide {self.taesd_downscale}")

    @property
    def tiny(self) -> str | None:
        """Name of the preferred image (TAESD-family) tiny autoencoder, or None."""
        return next((m.name for m in self.tiny_models if not m.video), None)

    @property
    def preview_rungs(self) -> tuple[PreviewRung, ...]:
        """The neural preview ladder, coarsest (cheapest) rung first; a space that declares none has one rung at
        latent resolution named ``previewer-<id>``."""
        rungs = self.previewers if self.previewers is not None else (PreviewRung(f"previewer-{self.id}"),)
        return tuple(sorted(rungs, key=lambda r: r.scale))

    @property
    def taesd_channels(self) -> int:
        """Channels in the ``taesd`` domain (the unpacked latent)."""
        return self.packing.unpacked_channels if self.packing else self.channels

    @property
    def taesd_downscale(self) -> int:
        """Image pixels per latent pixel in the ``taesd`` domain."""
        return self.downscale // self.packing.patch if self.packing else self.downscale

    @property
    def is_flow(self) -> bool:
        """True for flow-matching models, whose forward process is ``(1 - s) z + s e``."""
        return self.prediction == "flow"

    def channels_in(self, domain: Domain) -> int:
        """Channel count of a latent of this space in ``domain``."""
        return self.taesd_channels if check_domain(domain) == "taesd" else self.channels

    def downscale_in(self, domain: Domain) -> int:
        """Spatial downscale factor of this space in ``domain``."""
        return self.taesd_downscale if check_domain(domain) == "taesd" else self.downscale

    def latent_frames(self, frames: int) -> int:
        """Latent frames for ``frames`` pixel frames: the causal video VAEs keep the first frame, then one per
        ``temporal_downscale`` (Wan: 81 frames -> 21), as in docs/spaces.md."""
        return 1 + (frames - 1) // self.temporal_downscale if frames > 0 else 0

    def latent_shape(self, height: int, width: int, *, domain: Domain = "raw", batch: int = 1,
                     frames: int = 1) -> tuple[int, ...]:
        """Shape of the latent for an image (or a clip of ``frames`` frames) of ``height`` x ``width`` pixels."""
        d = self.downscale_in(domain)
        spatial = (height // d, width // d)
        time = (self.latent_frames(frames),) if self.ndim == 5 else ()
        return (batch, self.channels_in(domain), *time, *spatial)

    def to_model(self, raw: torch.Tensor) -> torch.Tensor:
        """raw -> model domain."""
        if self.latents_mean is not None and self.latents_std is not None:
            mean, std = self._stat(self.latents_mean, raw), self._stat(self.latents_std, raw)
            return (raw - mean) * (self.scaling_factor / std)
        return (raw - self.shift_factor) * self.scaling_factor

    def from_model(self, model: torch.Tensor) -> torch.Tensor:
        """model -> raw domain (exact inverse of :meth:`to_model`)."""
        if self.latents_mean is not None and self.latents_std is not None:
            mean, std = self._stat(self.latents_mean, model), self._stat(self.latents_std, model)
            return model * (std / self.scaling_factor) + mean
        return model / self.scaling_factor + self.shift_factor

    def to_taesd(self, model: torch.Tensor) -> torch.Tensor:
        """model -> taesd domain (unpacks FLUX.2)."""
        return unpack(model, self.packing.patch) if self.packing else model

    def from_taesd(self, latent: torch.Tensor) -> torch.Tensor:
        """taesd -> model domain (packs FLUX.2)."""
        return pack(latent, self.packing.patch) if self.packing else latent

    def _stat(self, values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
        shape = (1, len(values)) + (1,) * (like.ndim - 2)
        return torch.tensor(values, dtype=like.dtype, device=like.device).view(shape)


def check_domain(domain: object) -> Domain:
    """``domain`` itself if it is one of :data:`DOMAINS`, else an :class:`InputError` that lists them."""
    if domain not in DOMAINS:
        raise InputError(f"unknown domain {domain!r}: use one of {', '.join(DOMAINS)}")
    return domain  # type: ignore[return-value]


def pack(latent: torch.Tensor, patch: int = 2) -> torch.Tensor:
    """(B, C, H, W) -> (B, C*p*p, H/p, W/p); packed channel index = c*p*p + i*p + j."""
    b, c, h, w = latent.shape
    if h % patch or w % patch:
        raise InputError(f"cannot pack a {h}x{w} latent into {patch}x{patch} patches: crop or pad it to a multiple of {patch}")
    x = latent.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(b, c * patch * patch, h // patch, w // patch)


def unpack(latent: torch.Tensor, patch: int = 2) -> torch.Tensor:
    """Exact inverse of :func:`pack`."""
    b, c, h, w = latent.shape
    if c % (patch * patch):
        raise InputError(f"cannot unpack {c} channels into {patch}x{patch} patches")
    x = latent.reshape(b, c // (patch * patch), patch, patch, h, w)
    return x.permute(0, 1, 4, 2, 5, 3).reshape(b, c // (patch * patch), h * patch, w * patch)


_SD15_RGB = _rgb("""
      0.3512   0.2297   0.3227
      0.3250   0.4974   0.2350
     -0.2829   0.1762   0.2721
     -0.2120  -0.2616  -0.7177
""")

_SDXL_RGB = _rgb("""
      0.3651   0.4232   0.4341
     -0.2533  -0.0042   0.1068
      0.1076   0.1111  -0.0362
     -0.3165  -0.2492  -0.2188
""")

_PLAYGROUND_RGB = _rgb("""
      0.3920   0.4054   0.4549
     -0.2634  -0.0196   0.0653
      0.0568   0.1687  -0.0755
     -0.3112  -0.2359  -0.2076
""")

_SD_X4_RGB = _rgb("""
     -0.2340  -0.3863  -0.3257
      0.0994   0.0885  -0.0908
     -0.2833  -0.2349  -0.3741
      0.2523  -0.0055  -0.1651
""")

_SD3_RGB = _rgb("""
     -0.0922  -0.0175   0.0749
      0.0311   0.0633   0.0954
      0.1994   0.0927   0.0458
      0.0856   0.0339   0.0902
      0.0587   0.0272  -0.0496
     -0.0006   0.1104   0.0309
      0.0978   0.0306   0.0427
     -0.0042   0.1038   0.1358
     -0.0194   0.0020   0.0669
     -0.0488   0.0130  -0.0268
      0.0922   0.0988   0.0951
     -0.0278   0.0524  -0.0542
      0.0332   0.0456   0.0895
     -0.0069  -0.0030  -0.0810
     -0.0596  -0.0465  -0.0293
     -0.1448  -0.1463  -0.1189
""")

_FLUX1_RGB = _rgb("""
     -0.0346   0.0244   0.0681
      0.0034   0.0210   0.0687
      0.0275  -0.0668  -0.0433
     -0.0174   0.0160   0.0617
      0.0859   0.0721   0.0329
      0.0004   0.0383   0.0115
      0.0405   0.0861   0.0915
     -0.0236  -0.0185  -0.0259
     -0.0245   0.0250   0.1180
      0.1008   0.0755  -0.0421
     -0.0515   0.0201   0.0011
      0.0428  -0.0012  -0.0036
      0.0817   0.0765   0.0749
     -0.1264  -0.0522  -0.1103
     -0.0280  -0.0881  -0.0499
     -0.1262  -0.0982  -0.0778
""")

# Applied after unpacking the 128-channel model latent to 32 channels at /8.
_FLUX2_RGB = _rgb("""
      0.0058   0.0113   0.0073
      0.0495   0.0443   0.0836
     -0.0099   0.0096   0.0644
      0.2144   0.3009   0.3652
      0.0166  -0.0039  -0.0054
      0.0157   0.0103  -0.0160
     -0.0398   0.0902  -0.0235
     -0.0052   0.0095   0.0109
     -0.3527  -0.2712  -0.1666
     -0.0301  -0.0356  -0.0180
     -0.0107   0.0078   0.0013
      0.0746   0.0090  -0.0941
      0.0156   0.0169   0.0070
     -0.0034  -0.0040  -0.0114
      0.0032   0.0181   0.0080
     -0.0939  -0.0008   0.0186
      0.0018   0.0043   0.0104
      0.0284   0.0056  -0.0127
     -0.0024  -0.0022  -0.0030
      0.1207  -0.0026   0.0065
      0.0128   0.0101   0.0142
      0.0137  -0.0072  -0.0007
      0.0095   0.0092  -0.0059
      0.0000  -0.0077  -0.0049
     -0.0465  -0.0204  -0.0312
      0.0095   0.0012  -0.0066
      0.0290  -0.0034   0.0025
      0.0220   0.0169  -0.0048
     -0.0332  -0.0457  -0.0468
     -0.0085   0.0389   0.0609
     -0.0076   0.0003  -0.0043
     -0.0111  -0.0460  -0.0614
""")

_CASCADE_C_RGB = _rgb("""
     -0.0326  -0.0204  -0.0127
     -0.1592  -0.0427   0.0216
      0.0873   0.0638  -0.0020
     -0.0602   0.0442   0.1304
      0.0800  -0.0313  -0.1796
     -0.0810  -0.0638  -0.1581
      0.1791   0.1180   0.0967
      0.0740   0.1416   0.0432
     -0.1745  -0.1888  -0.1373
      0.2412   0.1577   0.0928
      0.1908   0.0998   0.0682
      0.0209   0.0365  -0.0092
      0.0448  -0.0650  -0.1728
     -0.1658  -0.1045  -0.1308
      0.0542   0.1545   0.1325
     -0.0352  -0.1672  -0.2541
""")

_CASCADE_B_RGB = _rgb("""
      0.1121   0.2006   0.1023
     -0.2093  -0.0222  -0.0195
     -0.3087  -0.1535   0.0366
      0.0290  -0.1574  -0.4078
""")

_WAN21_RGB = _rgb("""
     -0.1299  -0.1692   0.2932
      0.0671   0.0406   0.0442
      0.3568   0.2548   0.1747
      0.0372   0.2344   0.1420
      0.0313   0.0189  -0.0328
      0.0296  -0.0956  -0.0665
     -0.3477  -0.4059  -0.2925
      0.0166   0.1902   0.1975
     -0.0412   0.0267  -0.1364
     -0.1293   0.0740   0.1636
      0.0680   0.3019   0.1128
      0.0032   0.0581   0.0639
     -0.1251   0.0927   0.1699
      0.0060  -0.0633   0.0005
      0.3477   0.2275   0.2950
      0.1984   0.0913   0.1861
""")

_HUNYUAN21_RGB = _rgb("""
     -0.0154  -0.0397  -0.0521
      0.0005   0.0093   0.0006
     -0.0805  -0.0773  -0.0586
     -0.0494  -0.0487  -0.0498
     -0.0212  -0.0076  -0.0261
     -0.0179  -0.0417  -0.0505
      0.0158   0.0310   0.0239
      0.0409   0.0516   0.0201
      0.0350   0.0553   0.0036
     -0.0447  -0.0327  -0.0479
     -0.0038  -0.0221  -0.0365
     -0.0423  -0.0718  -0.0654
      0.0039   0.0368   0.0104
      0.0655   0.0217   0.0122
      0.0490   0.1638   0.2053
      0.0932   0.0829   0.0650
     -0.0186  -0.0209  -0.0135
     -0.0080  -0.0076  -0.0148
     -0.0284  -0.0201   0.0011
     -0.0642  -0.0294  -0.0777
     -0.0035   0.0076  -0.0140
      0.0519   0.0731   0.0887
     -0.0102   0.0095   0.0704
      0.0068   0.0218  -0.0023
     -0.0726  -0.0486  -0.0519
      0.0260   0.0295   0.0263
      0.0250   0.0333   0.0341
      0.0168  -0.0120  -0.0174
      0.0226   0.1037   0.0114
      0.2577   0.1906   0.1604
     -0.0646  -0.0137  -0.0018
     -0.0112   0.0309   0.0358
     -0.0347   0.0146  -0.0481
      0.0234   0.0179   0.0201
      0.0157   0.0313   0.0225
      0.0423   0.0675   0.0524
     -0.0031   0.0027  -0.0255
      0.0447   0.0555   0.0330
     -0.0152   0.0103   0.0299
     -0.0755  -0.0489  -0.0635
      0.0853   0.0788   0.1017
     -0.0272  -0.0294  -0.0471
      0.0440   0.0400  -0.0137
      0.0335   0.0317  -0.0036
     -0.0344  -0.0621  -0.0984
     -0.0127  -0.0630  -0.0620
     -0.0648   0.0360   0.0924
     -0.0781  -0.0801  -0.0409
      0.0363   0.0613   0.0499
      0.0238   0.0034   0.0041
     -0.0135   0.0258   0.0310
      0.0614   0.1086   0.0589
      0.0428   0.0350   0.0205
      0.0153   0.0173  -0.0018
     -0.0288  -0.0455  -0.0091
      0.0344   0.0109  -0.0157
     -0.0205  -0.0247  -0.0187
      0.0487   0.0126   0.0064
     -0.0220  -0.0013   0.0074
     -0.0203  -0.0094  -0.0048
     -0.0719   0.0429  -0.0442
      0.1042   0.0497   0.0356
     -0.0659  -0.0578  -0.0280
     -0.0060  -0.0322  -0.0234
""")

# Fitted by latentbridge (closed-form affine, TAESana latents of 619 training images -> the image averaged per
# /32 cell; held-out photos 27.3 dB); no factors were ever published for Sana.
_SANA_RGB = _rgb("""
     -0.0016  -0.0103  -0.0042
     -0.0024   0.0050   0.0064
      0.0128  -0.0060  -0.0341
     -0.0087   0.0008  -0.0059
      0.0161   0.0256  -0.0228
      0.0196   0.0107  -0.0009
     -0.1451   0.0337   0.0822
      0.0079  -0.0026  -0.0089
     -0.0028  -0.0100   0.0012
     -0.0529  -0.0306   0.0204
     -0.0201  -0.0090  -0.0369
      0.0074   0.0096   0.0035
      0.0289   0.0030   0.0133
      0.0142  -0.0032  -0.0013
      0.0185   0.0135   0.0040
      0.0107  -0.0265   0.0181
      0.0167  -0.0195   0.0106
     -0.0109  -0.0060  -0.0054
     -0.0130  -0.0028   0.0007
     -0.0056   0.0056   0.0141
      0.0063   0.0353  -0.0704
     -0.0065  -0.0059  -0.0057
     -0.0066  -0.0094  -0.0176
      0.0018   0.0023   0.0058
     -0.2040  -0.2180  -0.2009
     -0.0107  -0.0052   0.0554
     -0.0096   0.0314  -0.0280
     -0.0018   0.0160   0.0004
     -0.0068   0.0020  -0.0020
      0.0126   0.0071  -0.0021
     -0.0208  -0.0047   0.0145
      0.0022   0.0131  -0.0044
""")

# Published in ComfyUI's latent_formats.py (docs/spaces.md lists the source of every number).
_WAN22_RGB = _rgb("""
      0.0119   0.0103   0.0046
     -0.1062  -0.0504   0.0165
      0.0140   0.0409   0.0491
     -0.0813  -0.0677   0.0607
      0.0656   0.0851   0.0808
      0.0264   0.0463   0.0912
      0.0295   0.0326   0.0590
     -0.0244  -0.0270   0.0025
      0.0443  -0.0102   0.0288
     -0.0465  -0.0090  -0.0205
      0.0359   0.0236   0.0082
     -0.0776   0.0854   0.1048
      0.0564   0.0264   0.0561
      0.0006   0.0594   0.0418
     -0.0319  -0.0542  -0.0637
     -0.0268   0.0024   0.0260
      0.0539   0.0265   0.0358
     -0.0359  -0.0312  -0.0287
     -0.0285  -0.1032  -0.1237
      0.1041   0.0537   0.0622
     -0.0086  -0.0374  -0.0051
      0.0390   0.0670   0.2863
      0.0069   0.0144   0.0082
      0.0006  -0.0167   0.0079
      0.0313  -0.0574  -0.0232
     -0.1454  -0.0902  -0.0481
      0.0714   0.0827   0.0447
     -0.0304  -0.0574  -0.0196
      0.0401   0.0384   0.0204
     -0.0758  -0.0297  -0.0014
      0.0568   0.1307   0.1372
     -0.0055  -0.0310  -0.0380
      0.0239  -0.0305   0.0325
     -0.0663  -0.0673  -0.0140
     -0.0416  -0.0047  -0.0023
      0.0166   0.0112  -0.0093
     -0.0211   0.0011   0.0331
      0.1833   0.1466   0.2250
     -0.0368   0.0370   0.0295
     -0.3441  -0.3543  -0.2008
     -0.0479  -0.0489  -0.0420
     -0.0660  -0.0153   0.0800
     -0.0101   0.0068   0.0156
     -0.0690  -0.0452  -0.0927
     -0.0145   0.0041   0.0015
      0.0421   0.0451   0.0373
      0.0504  -0.0483  -0.0356
     -0.0837   0.0168   0.0055
""")

_HUNYUANVIDEO_RGB = _rgb("""
     -0.0395  -0.0331   0.0445
      0.0696   0.0795   0.0518
      0.0135  -0.0945  -0.0282
      0.0108  -0.0250  -0.0765
     -0.0209   0.0032   0.0224
     -0.0804  -0.0254  -0.0639
     -0.0991   0.0271  -0.0669
     -0.0646  -0.0422  -0.0400
     -0.0696  -0.0595  -0.0894
     -0.0799  -0.0208  -0.0375
      0.1166   0.1627   0.0962
      0.1165   0.0432   0.0407
     -0.2315  -0.1920  -0.1355
     -0.0270   0.0401  -0.0821
     -0.0616  -0.0997  -0.0727
      0.0249  -0.0469  -0.1703
""")

_HUNYUANVIDEO15_RGB = _rgb("""
      0.0568  -0.0521  -0.0131
      0.0014   0.0735   0.0326
      0.0186   0.0531  -0.0138
     -0.0031   0.0051   0.0288
      0.0110   0.0556   0.0432
     -0.0041  -0.0023  -0.0485
      0.0530   0.0413   0.0253
      0.0283   0.0251   0.0339
      0.0277  -0.0372  -0.0093
      0.0393   0.0944   0.1131
      0.0020   0.0251   0.0037
     -0.0017   0.0012   0.0234
      0.0468   0.0436   0.0203
      0.0354   0.0439  -0.0233
      0.0090   0.0123   0.0346
      0.0382   0.0029   0.0217
      0.0261  -0.0300   0.0030
     -0.0088  -0.0220  -0.0283
     -0.0272  -0.0121  -0.0363
     -0.0664  -0.0622   0.0144
      0.0414   0.0479   0.0529
      0.0355   0.0612  -0.0247
      0.0147   0.0264   0.0174
      0.0438   0.0038   0.0542
      0.0431  -0.0573  -0.0033
     -0.0162  -0.0211  -0.0406
     -0.0487  -0.0295  -0.0393
      0.0005  -0.0109   0.0253
      0.0296   0.0591   0.0353
      0.0119   0.0181  -0.0306
     -0.0085  -0.0362   0.0229
      0.0005  -0.0106   0.0242
""")

_LTXV_RGB = _rgb("""
     1.1202e-02 -6.3815e-04 -1.0021e-02
     8.6031e-02  6.5813e-02  9.5409e-04
    -1.2576e-02 -7.5734e-03 -4.0528e-03
     9.4063e-03 -2.1688e-03  2.6093e-03
     3.7636e-03  1.2765e-02  9.1548e-03
     2.1024e-02 -5.2973e-03  3.4373e-03
    -8.8896e-03 -1.9703e-02 -1.8761e-02
    -1.3160e-02 -1.0523e-02  1.9709e-03
    -1.5152e-03 -6.9891e-03 -7.5810e-03
    -1.7247e-03  4.6560e-04 -3.3839e-03
     1.3617e-02  4.7077e-03 -2.0045e-03
     1.0256e-02  7.7318e-03  1.3948e-02
    -1.6108e-02 -6.2151e-03  1.1561e-03
     7.3407e-03  1.5628e-02  4.4865e-04
     9.5357e-04 -2.9518e-03 -1.4760e-02
     1.9143e-02  1.0868e-02  1.2264e-02
     4.4575e-03  3.6682e-05 -6.8508e-03
    -4.5681e-04  3.2570e-03  7.7929e-03
     3.3902e-02  3.3405e-02  3.7454e-02
    -2.3001e-02 -2.4877e-03 -3.1033e-03
     5.0265e-02  3.8841e-02  3.3539e-02
    -4.1018e-03 -1.1095e-03  1.5859e-03
    -1.2689e-01 -1.3107e-01 -2.1005e-01
     2.6276e-02  1.4189e-02 -3.5963e-03
    -4.8679e-03  8.8486e-03  7.8029e-03
    -1.6610e-03 -4.8597e-03 -5.2060e-03
    -2.1010e-03  2.3610e-03  9.3796e-03
    -2.2482e-02 -2.1305e-02 -1.5087e-02
    -1.5753e-02 -1.0646e-02 -6.5083e-03
    -4.6975e-03  5.0288e-03 -6.7390e-03
     1.1951e-02  2.0712e-02  1.6191e-02
    -6.3704e-03 -8.4827e-03 -9.5483e-03
     7.2610e-03 -9.9326e-03 -2.2978e-02
    -9.1904e-04  6.2882e-03  9.5720e-03
    -3.7178e-02 -3.7123e-02 -5.6713e-02
    -1.3373e-01 -1.0720e-01 -5.3801e-02
    -5.3702e-03  8.1256e-03  8.8397e-03
    -1.5247e-01 -2.1437e-01 -2.1843e-01
     3.1441e-02  7.0335e-03 -9.7541e-03
     2.1528e-03 -8.9817e-03 -2.1023e-02
     3.8461e-03 -5.8957e-03 -1.5014e-02
    -4.3470e-03 -1.2940e-02 -1.5972e-02
    -5.4781e-03 -1.0842e-02 -3.0204e-03
    -6.5347e-03  3.0806e-03 -1.0163e-02
    -5.0414e-03 -7.1503e-03 -8.9686e-04
    -8.5851e-03 -2.4351e-03  1.0674e-03
    -9.0016e-03 -9.6493e-03  1.5692e-03
     5.0914e-03  1.2099e-02  1.9968e-02
     1.3758e-02  1.1669e-02  8.1958e-03
    -1.0518e-02 -1.1575e-02 -4.1307e-03
    -2.8410e-02 -3.1266e-02 -2.2149e-02
     2.9336e-03  3.6511e-02  1.8717e-02
    -1.6703e-02 -1.6696e-02 -4.4529e-03
     4.8818e-02  4.0063e-02  8.7410e-03
    -1.5066e-02 -5.7328e-04  2.9785e-03
    -1.7613e-02 -8.1034e-03  1.3086e-02
    -9.2633e-03  1.0803e-02 -6.3489e-03
     3.0851e-03  4.7750e-04  1.2347e-02
    -2.2785e-02 -2.3043e-02 -2.6005e-02
    -2.4787e-02 -1.5389e-02 -2.2104e-02
    -2.3572e-02  1.0544e-03  1.2361e-02
    -7.8915e-03 -1.2271e-03 -6.0968e-03
    -1.1478e-02 -1.2543e-03  6.2679e-03
    -5.4229e-02  2.6644e-02  6.3394e-03
     4.4216e-03 -7.3338e-03 -1.0464e-02
    -4.5013e-03  1.6082e-03  1.4420e-02
     1.3673e-02  8.8877e-03  4.1253e-03
    -1.0145e-02  9.0072e-03  1.5695e-02
    -5.6234e-03  1.1847e-03  8.1261e-03
    -3.7171e-03 -5.3538e-03  1.2590e-03
     2.9476e-02  2.1424e-02  3.0424e-02
    -3.4925e-02 -2.4340e-02 -2.5316e-02
    -3.4127e-02 -2.2406e-02 -1.0589e-02
    -1.7342e-02 -1.3249e-02 -1.0719e-02
    -2.1478e-03 -8.6051e-03 -2.9878e-03
     1.2089e-03 -4.2391e-03 -6.8569e-03
     9.0411e-04 -6.6886e-03 -6.7547e-05
     1.6048e-02 -1.0057e-02 -2.8929e-02
     1.2290e-03  1.0163e-02  1.8861e-02
     1.7264e-02  2.7257e-04  1.3785e-02
    -1.3482e-02 -3.6427e-03  6.7481e-04
     4.6782e-03 -5.2423e-03  2.4467e-03
    -5.9113e-03 -6.2244e-03 -1.8162e-03
     1.5496e-02  1.4582e-02  1.9514e-03
     7.4958e-03  1.5886e-03 -8.2305e-03
     1.9086e-02  1.6360e-03 -3.9674e-03
    -5.7021e-03 -2.7307e-03 -4.1066e-03
     1.7450e-03  1.4602e-02  2.5794e-02
    -8.2788e-04  2.2902e-03  4.5161e-03
     1.1632e-02  8.9193e-03 -7.2813e-03
     7.5721e-03  2.6784e-03  1.1393e-02
     5.1939e-03  3.6903e-03  1.4049e-02
    -1.8383e-02 -2.2529e-02 -2.4477e-02
     5.8842e-04 -5.7874e-03 -1.4770e-02
    -1.6125e-02 -8.6101e-03 -1.4533e-02
     2.0540e-02  2.0729e-02  6.4338e-03
     3.3587e-03 -1.1226e-02 -1.6444e-02
    -1.4742e-03 -1.0489e-02  1.7097e-03
     2.8130e-02  2.3546e-02  3.2791e-02
    -1.8532e-02 -1.2842e-02 -8.7756e-03
    -8.0533e-03 -1.0771e-02 -1.7536e-02
    -3.9009e-03  1.6150e-02  3.3359e-02
    -7.4554e-03 -1.4154e-02 -6.1910e-03
     3.4734e-03 -1.1370e-02 -1.0581e-02
     1.1476e-02  3.9281e-03  2.8231e-03
     7.1639e-03 -1.4741e-03 -3.8066e-03
     2.2250e-03 -8.7552e-03 -9.5719e-03
     2.4146e-02  2.1696e-02  2.8056e-02
    -5.4365e-03 -2.4291e-02 -1.7802e-02
     7.4263e-03  1.0510e-02  1.2705e-02
     6.2669e-03  6.2658e-03  1.9211e-02
     1.6378e-02  9.4933e-03  6.6971e-03
     1.7173e-02  2.3601e-02  2.3296e-02
    -1.4568e-02 -9.8279e-03 -1.1556e-02
     1.4431e-02  1.4430e-02  6.6362e-03
    -6.8230e-03  1.8863e-02  1.4555e-02
     6.1156e-03  3.4700e-03 -2.6662e-03
    -2.6983e-03 -5.9402e-03 -9.2276e-03
     1.0235e-02  7.4173e-03 -7.6243e-03
    -1.3255e-02  1.9322e-02 -9.2153e-04
     2.4222e-03 -4.8039e-03 -1.5759e-02
     2.6244e-02  2.5951e-02  2.0249e-02
     1.5711e-02  1.8498e-02  2.7407e-03
    -2.1714e-03  4.7214e-03 -2.2443e-02
    -7.4747e-03  7.4166e-03  1.4430e-02
    -8.3906e-03 -7.9776e-03  9.7927e-03
     3.8321e-02  9.6622e-03 -1.9268e-02
    -1.4605e-02 -6.7032e-03  3.9675e-03
""")

_MOCHI_RGB = _rgb("""
     -0.0069  -0.0045   0.0018
      0.0154  -0.0692  -0.0274
      0.0333   0.0019   0.0206
     -0.1390   0.0628   0.1678
     -0.0725   0.0134  -0.1898
      0.0074  -0.0270  -0.0209
     -0.0176  -0.0277  -0.0221
      0.5294   0.5204   0.3852
     -0.0326  -0.0446  -0.0143
     -0.0659   0.0153  -0.0153
      0.0185  -0.0217   0.0014
     -0.0396  -0.0495  -0.0281
""")

_COSMOS1_RGB = _rgb("""
      0.1817   0.2284   0.2423
     -0.0586  -0.0862  -0.3108
     -0.4703  -0.4255  -0.3995
      0.0803   0.1963   0.1001
     -0.0820  -0.1050   0.0400
      0.2511   0.3098   0.2787
     -0.1830  -0.2117  -0.0040
     -0.0621  -0.2187  -0.0939
      0.3619   0.1082   0.1455
      0.3164   0.3922   0.2575
      0.1152   0.0231  -0.0462
     -0.1434  -0.3609  -0.3665
      0.0635   0.1471   0.1680
     -0.3635  -0.1963  -0.3248
     -0.1865   0.0365   0.2346
      0.0447   0.0994   0.0881
""")

_QWENIMAGE21_RGB = _rgb("""
     -0.0158  -0.0115  -0.0174
      0.0030   0.0120   0.0027
      0.0637   0.0470  -0.0127
      0.0360   0.0661  -0.0030
      0.0159   0.0181   0.0082
      0.0132   0.0326   0.0169
      0.0191   0.0261   0.0136
     -0.0146  -0.0276  -0.0361
      0.0187  -0.0024  -0.0072
     -0.1059  -0.0090   0.0350
     -0.0195  -0.0226  -0.0138
     -0.0295   0.0024  -0.0215
      0.0191  -0.0393  -0.0001
     -0.0144  -0.0166  -0.0272
      0.0389   0.0430   0.0445
     -0.0153  -0.0336   0.0031
      0.0339   0.0122   0.0220
     -0.0136  -0.0078  -0.0120
     -0.0340  -0.0282  -0.0245
     -0.0133  -0.0176  -0.0133
      0.0109  -0.0087   0.0096
     -0.0010   0.0044   0.0016
      0.0301   0.0053   0.0361
     -0.0281  -0.0205  -0.0032
     -0.0725   0.0002   0.0160
     -0.0036   0.0158   0.0807
      0.0087   0.0040  -0.0053
     -0.0260   0.0183  -0.0077
     -0.0039  -0.0035  -0.0107
     -0.0026   0.0172   0.0237
      0.0088   0.0078   0.0078
     -0.0087  -0.0310  -0.0122
     -0.0027   0.0018   0.0094
     -0.0064   0.0292  -0.0256
      0.0594   0.1049   0.1180
      0.0103  -0.0103  -0.0026
     -0.0091   0.0025  -0.0015
      0.0178   0.0243   0.0292
     -0.0063  -0.0012   0.0202
      0.0452   0.0246   0.0143
      0.0149   0.0270   0.0052
      0.1484   0.0801   0.0804
     -0.0120   0.0040   0.0010
      0.0181   0.0051  -0.0021
      0.0132   0.0050   0.0019
      0.0291   0.0020   0.0092
      0.0066  -0.0410  -0.1314
     -0.1153  -0.0629  -0.0802
      0.0258   0.0378   0.0298
      0.0375   0.1139   0.0468
     -0.0142  -0.0126  -0.0276
      0.0339   0.0153   0.0138
      0.0346   0.0211   0.0267
      0.0369  -0.0431  -0.0993
     -0.0052  -0.0092   0.0056
     -0.0279   0.0410  -0.0357
      0.0036   0.0017  -0.0083
     -0.0441  -0.0367  -0.0454
     -0.0001  -0.0092  -0.0001
     -0.0222  -0.0183  -0.0051
      0.0039   0.0053  -0.0184
     -0.0094  -0.0075  -0.0143
     -0.0066  -0.0088  -0.0063
      0.0220   0.0074   0.0100
""")

_DIFFUSERS = "diffusion_pytorch_model.safetensors"
_TAESDXL = TinyModel("taesdxl", hub=HubFile("madebyollin/taesdxl", _DIFFUSERS))

_REGISTRY: list[LatentSpace] = [
    LatentSpace(
        id="sd1", title="Stable Diffusion 1.x / 2.x", channels=4, downscale=8, scaling_factor=0.18215,
        aliases=("v1", "sd15", "sd1.5", "sd1x", "sd2", "sd21", "sd2.1", "SD15", "stable-diffusion-1.5"),
        rgb_factors=_SD15_RGB, interposer_code="v1", comfy_format="SD15",
        tiny_models=(TinyModel("taesd", hub=HubFile("madebyollin/taesd", _DIFFUSERS)), TinyModel("taesdv", video=True)),
        diffusers_pipelines=("StableDiffusion",), diffusers_vaes=("AutoencoderKL",), prior=1.0, guidance=7.5,
        mixing=MixingPreset(steps=30, alpha_1=3.0, sampler="dpmpp_2m", cleanup=0.15),
        families=("SD1.x", "SD2.x", "PixArt-alpha", "SVD", "Stable Zero123"),
        notes="SD2.x shares the SD1 VAE and scale; 768-px SD2 models are v-prediction.",
        sources={"scaling_factor": COMFY, "rgb_factors": COMFY, "tiny": "madebyollin/taesd:README.md",
                 "interposer_code": INTERPOSER},
    ),
    LatentSpace(
        id="sdxl", title="Stable Diffusion XL", channels=4, downscale=8, scaling_factor=0.13025,
        aliases=("xl", "SDXL", "sd-xl", "ssd1b", "pixart-sigma", "auraflow", "hunyuandit"),
        rgb_factors=_SDXL_RGB, rgb_bias=(0.1084, -0.0175, -0.0011), interposer_code="xl",
        tiny_models=(_TAESDXL,), diffusers_pipelines=("StableDiffusionXL",), diffusers_vaes=("AutoencoderKL",),
        prior=1.0, guidance=5.0, mixing=MixingPreset(steps=30, alpha_1=3.0, sampler="dpmpp_2m", cleanup=0.15),
        comfy_format="SDXL", families=("SDXL", "SDXL refiner", "SSD-1B", "AuraFlow", "PixArt-Sigma", "HunyuanDiT"),
        notes="Raw SDXL latents are statistically close to raw SD1 latents: detection cannot tell them apart.",
        sources={"scaling_factor": COMFY, "rgb_factors": COMFY + " (since e5ecdfdd)", "tiny": "madebyollin/taesd:README.md",
                 "interposer_code": INTERPOSER},
    ),
    LatentSpace(
        id="playground25", title="Playground v2.5 (SDXL VAE, EDM normalisation)", channels=4, downscale=8,
        scaling_factor=0.5, latents_mean=(-1.6574, 1.886, -1.383, 2.5155), latents_std=(8.4927, 5.9022, 6.5498, 5.2299),
        aliases=("playground", "playground-v2.5", "SDXL_Playground_2_5"), rgb_factors=_PLAYGROUND_RGB,
        tiny_models=(_TAESDXL,), comfy_format="SDXL_Playground_2_5", prediction="eps", diffusers_vaes=("AutoencoderKL",),
        notes="Same VAE as SDXL; TAESDXL expects raw*0.13025, so tiny previews are approximate.",
        sources={"scaling_factor": COMFY, "latents_mean": COMFY, "latents_std": COMFY, "rgb_factors": COMFY},
    ),
    LatentSpace(
        id="sd_x4", title="SD x4 upscaler", channels=4, downscale=4, scaling_factor=0.08333,
        aliases=("x4", "sd-x4-upscaler", "SD_X4"), rgb_factors=_SD_X4_RGB, comfy_format="SD_X4", prediction="v",
        sources={"scaling_factor": COMFY, "downscale": "comfyanonymous/ComfyUI:comfy/sd.py", "rgb_factors": COMFY},
    ),
    LatentSpace(
        id="sd3", title="Stable Diffusion 3 / 3.5", channels=16, downscale=8, scaling_factor=1.5305, shift_factor=0.0609,
        aliases=("v3", "sd35", "sd3.5", "SD3"), rgb_factors=_SD3_RGB, rgb_bias=(0.2394, 0.2135, 0.1925),
        tiny_models=(TinyModel("taesd3", hub=HubFile("madebyollin/taesd3", _DIFFUSERS)),), interposer_code="v3",
        comfy_format="SD3", prediction="flow", diffusers_pipelines=("StableDiffusion3",), diffusers_vaes=("AutoencoderKL",),
        prior=0.7, guidance=7.0, mixing=MixingPreset(steps=28, alpha_1=1.5, sampler="flow_euler", cleanup=0.1),
        sources={"scaling_factor": COMFY, "shift_factor": COMFY, "rgb_factors": COMFY + " (since 8dfa0cc5)",
                 "tiny": "madebyollin/taesd:README.md", "interposer_code": INTERPOSER},
    ),
    LatentSpace(
        id="flux1", title="FLUX.1", channels=16, downscale=8, scaling_factor=0.3611, shift_factor=0.1159,
        aliases=("fx", "flux", "flux.1", "Flux", "lumina2", "z-image", "hidream", "chroma", "omnigen2"),
        rgb_factors=_FLUX1_RGB, rgb_bias=(-0.0329, -0.0718, -0.0851), interposer_code="fx",
        tiny_models=(TinyModel("taef1", hub=HubFile("madebyollin/taef1", _DIFFUSERS)),),
        diffusers_pipelines=("Flux",), diffusers_vaes=("AutoencoderKL",), prior=1.0, guidance=3.5,
        mixing=MixingPreset(steps=28, alpha_1=1.5, sampler="flow_euler", cleanup=0.1),
        comfy_format="Flux", prediction="flow",
        families=("FLUX.1", "Lumina 2", "Z-Image", "HiDream", "Chroma", "OmniGen2", "Kandinsky 5 image"),
        notes="The transformer packs 2x2 patches internally; the latent itself is not packed.",
        sources={"scaling_factor": COMFY, "shift_factor": COMFY, "rgb_factors": COMFY + " (since 7d29fbf7)",
                 "tiny": "madebyollin/taesd:README.md", "interposer_code": INTERPOSER},
    ),
    LatentSpace(
        id="flux2", title="FLUX.2", channels=128, downscale=16, packing=Packing(patch=2, unpacked_channels=32),
        aliases=("flux.2", "Flux2"), rgb_factors=_FLUX2_RGB, rgb_bias=(-0.0329, -0.0718, -0.0851),
        tiny_models=(TinyModel("taef2", variant="flux_2", hub=HubFile("madebyollin/taef2", "taef2.safetensors")),),
        previewers=(PreviewRung("previewer-flux2"), PreviewRung("previewer-flux2-x2", scale=2)),
        comfy_format="Flux2", prediction="flow", diffusers_pipelines=("Flux2",), diffusers_vaes=("AutoencoderKLFlux2",),
        prior=0.8,
        notes=("raw = model = ComfyUI's LATENT: the 32-channel VAE latent packed 2x2 (channel 4c+2i+j) and "
               "batch-norm normalised; taesd = that latent unpacked to 32 channels at /8 (what TAEF2 takes). "
               "The published bias equals FLUX.1's."),
        sources={"packing": "comfyanonymous/ComfyUI:comfy/ldm/models/autoencoder.py", "rgb_factors": COMFY,
                 "tiny": TAESD + " (32 channels, flux_2 variant)"},
    ),
    LatentSpace(
        id="cascade_c", title="Stable Cascade stage C", channels=16, downscale=42,
        aliases=("cc", "stage_c", "SC_Prior", "stable-cascade-c"), rgb_factors=_CASCADE_C_RGB,
        interposer_code="cc", comfy_format="SC_Prior",
        notes="Spatial size is image // 42 in ComfyUI (diffusers uses 42.67); the EfficientNet encoder works at /32.",
        sources={"scaling_factor": COMFY, "downscale": "comfyanonymous/ComfyUI:comfy_extras/nodes_stable_cascade.py",
                 "rgb_factors": COMFY, "interposer_code": "city96/SD-Latent-Interposer:vae.py (unused)"},
    ),
    LatentSpace(
        id="cascade_b", title="Stable Cascade stage A/B", channels=4, downscale=4, scaling_factor=1 / 0.43,
        aliases=("ca", "stage_b", "stage_a", "SC_B", "stable-cascade-b"), rgb_factors=_CASCADE_B_RGB,
        interposer_code="ca", comfy_format="SC_B",
        notes="ComfyUI scales by 1/0.43; diffusers uses 0.3764 (conflict noted in the reference).",
        sources={"scaling_factor": COMFY + " (commit d7897fff)", "rgb_factors": COMFY, "interposer_code": INTERPOSER},
    ),
    LatentSpace(
        id="sana", title="Sana (DC-AE f32c32)", channels=32, downscale=32, scaling_factor=0.41407,
        aliases=("dc-ae", "dcae", "sana1.5", "dc-ae-f32c32"), prediction="flow", prior=0.6,
        tiny_models=(TinyModel("taesana", variant="f32"),),  # only the upstream .pth halves are published
        diffusers_pipelines=("Sana",), diffusers_vaes=("AutoencoderDC",),
        rgb_factors=_SANA_RGB, rgb_bias=(-0.0262, -0.1216, -0.2195),
        notes="scaling_factor from mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers as hard-coded by third-party ports.",
        sources={"scaling_factor": "mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers config (third-party ports)",
                 "tiny": TAESD + " (f32 variant)", "rgb_factors": FITTED},
    ),
    LatentSpace(
        id="wan21", title="Wan 2.1 VAE (Qwen-Image, Cosmos-Predict2)", channels=16, downscale=8, ndim=5,
        temporal_downscale=4,
        latents_mean=(-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                      0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921),
        latents_std=(2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                     3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160),
        aliases=("wan", "wan2.1", "qwen-image", "qwenimage", "Wan21"), rgb_factors=_WAN21_RGB,
        rgb_bias=(-0.1835, -0.0868, -0.3360), comfy_format="Wan21", prediction="flow", prior=0.6,
        tiny_models=(TinyModel("taew2_1", video=True), TinyModel("lighttaew2_1", video=True)),
        diffusers_pipelines=("Wan", "QwenImage"), diffusers_vaes=("AutoencoderKLWan", "AutoencoderKLQwenImage"),
        families=("Wan 2.1", "Qwen-Image", "Cosmos-Predict2 T2I"),
        notes="5-D latents (B, C, T, H, W); images are one frame. Wan 2.2 14B also uses this VAE.",
        sources={"latents_mean": COMFY, "latents_std": COMFY, "rgb_factors": COMFY},
    ),
    LatentSpace(
        id="wan22", title="Wan 2.2 VAE (TI2V-5B)", channels=48, downscale=16, ndim=5, temporal_downscale=4,
        latents_mean=(-0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
                      -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
                      -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
                      -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
                      -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
                      0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667),
        latents_std=(0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
                     0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
                     0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
                     0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
                     0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
                     0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744),
        aliases=("wan2.2-5b", "wan2.2-ti2v", "Wan22"), rgb_factors=_WAN22_RGB, rgb_bias=(0.0317, -0.0878, -0.1388),
        comfy_format="Wan22", prediction="flow", families=("Wan 2.2 TI2V-5B",),
        tiny_models=(TinyModel("taew2_2", video=True), TinyModel("taew2_2_super", video=True),
                     TinyModel("lighttaew2_2", video=True)),
        diffusers_pipelines=("Wan",), diffusers_vaes=("AutoencoderKLWan",),
        notes="The VAE packs 2x2 pixels before its /8 convolutions, hence /16. Wan 2.2 14B uses wan21.",
        sources={"latents_mean": COMFY, "latents_std": COMFY, "rgb_factors": COMFY, "downscale": COMFY},
    ),
    LatentSpace(
        id="hunyuanvideo", title="HunyuanVideo", channels=16, downscale=8, ndim=5, temporal_downscale=4,
        scaling_factor=0.476986, aliases=("hunyuan-video", "hyv", "HunyuanVideo"), rgb_factors=_HUNYUANVIDEO_RGB,
        rgb_bias=(0.0259, -0.0192, -0.0761), comfy_format="HunyuanVideo", prediction="flow",
        tiny_models=(TinyModel("taehv", video=True),), diffusers_pipelines=("HunyuanVideo", "HunyuanSkyreels"),
        diffusers_vaes=("AutoencoderKLHunyuanVideo",),
        families=("HunyuanVideo", "HunyuanVideo I2V", "SkyReels V1", "Kandinsky 5 video"),
        sources={"scaling_factor": COMFY, "rgb_factors": COMFY},
    ),
    LatentSpace(
        id="hunyuanvideo15", title="HunyuanVideo 1.5", channels=32, downscale=16, ndim=5, temporal_downscale=4,
        scaling_factor=1.03682, aliases=("hunyuan-video-1.5", "hyv15", "HunyuanVideo15"),
        rgb_factors=_HUNYUANVIDEO15_RGB, rgb_bias=(0.0456, -0.0202, -0.0644), comfy_format="HunyuanVideo15",
        tiny_models=(TinyModel("taehv1_5", video=True), TinyModel("taehv1_5_super", video=True)),
        diffusers_pipelines=("HunyuanVideo15",), diffusers_vaes=("AutoencoderKLHunyuanVideo15",),
        prediction="flow", sources={"scaling_factor": COMFY, "rgb_factors": COMFY},
    ),
    LatentSpace(
        id="ltxv", title="LTX-Video / LTX-2", channels=128, downscale=32, ndim=5, temporal_downscale=8,
        aliases=("ltx", "ltx-video", "ltx2", "ltx-2", "LTXV"), rgb_factors=_LTXV_RGB,
        rgb_bias=(-0.0571, -0.1657, -0.2512), comfy_format="LTXV", prediction="flow",
        tiny_models=(TinyModel("taeltx_2", video=True), TinyModel("taeltx2_3", video=True),
                     TinyModel("taeltx2_3_wide", video=True)),
        diffusers_pipelines=("LTX",), diffusers_vaes=("AutoencoderKLLTXVideo", "AutoencoderKLLTX2Video"),
        families=("LTX-Video", "LTX-2", "LTX-2.3"),
        notes=("raw = model: the per-channel statistics live inside the VAE. ComfyUI's LTXAV (video and audio "
               "packed together) is a different tensor and is not this space."),
        sources={"rgb_factors": COMFY, "temporal_downscale": COMFY},
    ),
    LatentSpace(
        id="mochi", title="Mochi 1", channels=12, downscale=8, ndim=5, temporal_downscale=6,
        latents_mean=(-0.06730895953510081, -0.038011381506090416, -0.07477820912866141, -0.05565264470995561,
                      0.012767231469026969, -0.04703542746246419, 0.043896967884726704, -0.09346305707025976,
                      -0.09918314763016893, -0.008729793427399178, -0.011931556316503654, -0.0321993391887285),
        latents_std=(0.9263795028493863, 0.9248894543193766, 0.9393059390890617, 0.959253732819592,
                     0.8244560132752793, 0.917259975397747, 0.9294154431013696, 1.3720942357788521,
                     0.881393668867029, 0.9168315692124348, 0.9185249279345552, 0.9274757570805041),
        aliases=("mochi1", "mochi-1", "Mochi"), rgb_factors=_MOCHI_RGB, rgb_bias=(-0.0940, -0.1418, -0.1453),
        comfy_format="Mochi", prediction="flow", diffusers_pipelines=("Mochi",), diffusers_vaes=("AutoencoderKLMochi",),
        sources={"latents_mean": COMFY, "latents_std": COMFY, "rgb_factors": COMFY},
    ),
    LatentSpace(
        id="cogvideox", title="CogVideoX-2b", channels=16, downscale=8, ndim=5, temporal_downscale=4,
        scaling_factor=1.15258426, aliases=("cogvideox-2b", "cogvideo", "CogVideoX"), comfy_format="CogVideoX",
        tiny_models=(TinyModel("taecvx", video=True),), diffusers_pipelines=("CogVideoX",),
        diffusers_vaes=("AutoencoderKLCogVideoX",),
        prediction="v", notes="The 5b-class checkpoints use another scale: cogvideox15. ComfyUI publishes no factors.",
        sources={"scaling_factor": COMFY + " (THUDM/CogVideoX-2b vae/config.json)"},
    ),
    LatentSpace(
        id="cogvideox15", title="CogVideoX-5b / 1.5-5B", channels=16, downscale=8, ndim=5, temporal_downscale=4,
        scaling_factor=0.7, aliases=("cogvideox-5b", "cogvideox-1.5-5b", "CogVideoX1_5"), comfy_format="CogVideoX1_5",
        diffusers_pipelines=("CogVideoX",), diffusers_vaes=("AutoencoderKLCogVideoX",),
        prediction="v", families=("CogVideoX-5b", "CogVideoX-1.5-5B", "CogVideoX-Fun V1.5"),
        notes="Same VAE as cogvideox; only the scale differs. ComfyUI publishes no factors.",
        sources={"scaling_factor": COMFY + " (THUDM/CogVideoX-5b vae/config.json)"},
    ),
    LatentSpace(
        id="cosmos1", title="Cosmos 1 (CV8x8x8 tokenizer)", channels=16, downscale=8, ndim=5, temporal_downscale=8,
        aliases=("cosmos-predict1", "cosmos1cv8x8x8", "Cosmos1CV8x8x8"), rgb_factors=_COSMOS1_RGB,
        rgb_bias=(-0.1223, -0.1889, -0.1976), comfy_format="Cosmos1CV8x8x8",
        diffusers_pipelines=("CosmosTextToWorld", "CosmosVideoToWorld"), diffusers_vaes=("AutoencoderKLCosmos",),
        notes="Cosmos-Predict2 uses the Wan 2.1 VAE (wan21); Cosmos 1 diffusion models are EDM-preconditioned.",
        sources={"rgb_factors": COMFY, "temporal_downscale": COMFY},
    ),
    LatentSpace(
        id="hunyuanimage21", title="HunyuanImage 2.1", channels=64, downscale=32, scaling_factor=0.75289,
        aliases=("hunyuanimage", "hunyuan-image-2.1", "HunyuanImage21"), rgb_factors=_HUNYUAN21_RGB,
        rgb_bias=(0.0007, -0.0256, -0.0206), comfy_format="HunyuanImage21", prediction="flow",
        diffusers_pipelines=("HunyuanImage",), diffusers_vaes=("AutoencoderKLHunyuanImage",),
        sources={"scaling_factor": COMFY, "downscale": "comfyanonymous/ComfyUI:comfy/sd.py", "rgb_factors": COMFY},
    ),
    LatentSpace(
        id="qwenimage21", title="Qwen-Image 2.1", channels=64, downscale=16,
        latents_mean=(0.5126, 0.7721, -0.0631, 1.3506, -0.7855, -2.1025, -0.3458, 1.3722,
                      1.8873, -1.7177, -0.6510, 0.2732, 0.7562, -0.6163, -1.0277, 3.8363,
                      2.0210, 0.0472, 0.9320, 2.0087, 2.4954, -0.1391, -1.4249, 1.8464,
                      -0.5236, 1.2826, 3.7046, -1.3035, 2.7286, -1.4518, -1.9036, -1.9955,
                      -0.0342, -1.0265, -0.7636, 3.0555, 0.0746, -3.0751, -0.1076, 1.7376,
                      -1.0914, -1.9435, -0.2784, -1.3680, 0.4809, -0.4433, 0.3764, 0.5729,
                      -2.0595, 1.0960, -1.3260, -2.0211, -5.0179, 0.5275, 4.0162, 1.8505,
                      0.3026, 1.9373, 1.4937, 0.2632, 0.5547, -1.7121, -0.1562, 0.0304),
        latents_std=(3.2001, 3.2936, 3.4321, 3.0091, 3.1061, 4.0379, 4.0705, 3.7910,
                     3.0785, 3.6500, 3.9308, 3.0904, 2.8778, 3.7675, 3.7320, 5.0756,
                     3.2864, 4.0397, 3.1317, 4.0443, 2.9249, 3.9454, 3.0988, 4.2489,
                     3.4896, 3.8513, 3.9323, 3.4719, 3.7498, 4.2830, 3.5694, 4.2467,
                     3.9037, 3.2947, 5.0770, 3.5075, 3.2700, 3.4767, 2.8063, 5.1125,
                     3.5327, 4.7833, 3.1286, 4.1819, 3.8527, 3.8312, 3.5605, 4.3875,
                     3.9624, 4.0168, 3.5643, 4.0550, 5.5614, 4.2963, 4.4080, 3.4959,
                     3.8747, 3.7608, 3.5735, 3.1490, 3.7662, 3.6746, 3.4563, 3.8161),
        aliases=("qwen-image-2.1", "qwenimage2.1", "QwenImage21"), rgb_factors=_QWENIMAGE21_RGB,
        rgb_bias=(-0.1228, -0.1869, -0.3083), comfy_format="QwenImage21", prediction="flow",
        diffusers_pipelines=("QwenImage21",), diffusers_vaes=("AutoencoderKLQwenImage21",),
        notes="model = (raw - mean) / std, no scale. The VAE reads and writes RGBA images.",
        sources={"latents_mean": COMFY, "latents_std": COMFY, "rgb_factors": COMFY},
    ),
    LatentSpace(
        id="hunyuanimage3", title="HunyuanImage 3.0", channels=32, downscale=16, scaling_factor=0.562679178327931,
        aliases=("hunyuan-image-3", "hunyuanimage3.0", "HunyuanImage3"), prediction="flow",
        notes=("The VAE is HunyuanVideo 1.5's 3-D architecture used on single images (one latent frame, so 4-D here). "
               "ComfyUI has no latent format for it; no preview factors are published."),
        sources={"scaling_factor": HUNYUAN3},
    ),
    LatentSpace(
        id="chroma_radiance", title="Chroma Radiance (pixel space)", channels=3, downscale=1,
        aliases=("radiance", "pixel", "ChromaRadiance"),
        rgb_factors=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)), comfy_format="ChromaRadiance",
        prediction="flow", notes="RGB in [-1, 1]; raw, model and taesd are all the image itself.",
        sources={"rgb_factors": COMFY},
    ),
]


def _key(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", name.lower())


_BY_KEY: dict[str, LatentSpace] = {}


def _index(space: LatentSpace) -> None:
    """Enter ``space``'s id and aliases into the name index; refuses names another space already has."""
    keys = {_key(n): n for n in (space.id, *space.aliases)}
    for key, name in keys.items():
        other = _BY_KEY.get(key)
        if other is not None and other is not space:
            raise ValueError(f"{space.id}: the name {name!r} already names {other.id}")
    _BY_KEY.update(dict.fromkeys(keys, space))


for _s in _REGISTRY:
    _index(_s)


def register(space: LatentSpace) -> LatentSpace:
    """Add ``space`` to the registry at run time; every lookup (names, detection, tiny autoencoders, diffusers
    classes, mixing presets) finds it from then on. Its id and aliases must be new."""
    if not isinstance(space, LatentSpace):
        raise TypeError(f"register() takes a LatentSpace, got {type(space).__name__}")
    _index(space)
    _REGISTRY.append(space)
    return space


def unregister(name: str | LatentSpace) -> None:
    """Remove a space added with :func:`register` (or any other) from the registry."""
    space = get(name)
    del _REGISTRY[next(i for i, s in enumerate(_REGISTRY) if s is space)]
    for key in [k for k, v in _BY_KEY.items() if v is space]:
        del _BY_KEY[key]


def get(name: str | LatentSpace) -> LatentSpace:
    """Look a space up by id or alias (case, '-', '_' and '.' ignored); errors suggest the closest names."""
    if isinstance(name, LatentSpace):
        return name
    if not isinstance(name, str):
        raise UnknownSpaceError(f"a latent space is named by a str such as 'sd1'; got {type(name).__name__} {name!r}")
    found = _BY_KEY.get(name) or _BY_KEY.get(_key(str(name)))  # exact ids skip the normalising regex
    if found is None:
        known = sorted({s.id for s in _REGISTRY})
        close = difflib.get_close_matches(_key(str(name)), list(_BY_KEY), n=3, cutoff=0.5)
        hint = sorted({_BY_KEY[c].id for c in close})
        suggestion = f"did you mean {' or '.join(hint)}? " if hint else ""
        raise UnknownSpaceError(f"unknown latent space {name!r}: {suggestion}known spaces: {', '.join(known)}")
    return found


def all() -> tuple[LatentSpace, ...]:  # noqa: A001 - the public name the API promises
    """Every registered space, in registry order."""
    return tuple(_REGISTRY)


def tiny_model(name: str) -> tuple[TinyModel, LatentSpace] | None:
    """The published tiny autoencoder called ``name`` (case ignored) and the first space that lists it, or None."""
    key = name.lower()
    return next(((m, s) for s in _REGISTRY for m in s.tiny_models if m.name == key), None)


def tiny_names(*, video: bool | None = None) -> tuple[str, ...]:
    """Names of every published tiny autoencoder in the registry (only image or only video ones if ``video`` says)."""
    names = (m.name for s in _REGISTRY for m in s.tiny_models if video is None or m.video == video)
    return tuple(dict.fromkeys(names))


def from_diffusers(obj: object, *, ask: str = "space=") -> LatentSpace:
    """The space of a diffusers pipeline, a VAE, either's class, or a VAE's config (a mapping with ``_class_name``).

    A pipeline's class names its family (the longest prefix in ``diffusers_pipelines``); its VAE's class
    (``diffusers_vaes``) wins where the two disagree; the VAE's config (latent channels, per-channel statistics or
    scaling constants) separates spaces that share a class (Wan 2.1 and 2.2, SD1 and SDXL VAEs). An unknown VAE
    class is judged by its config alone. ``ask`` is the parameter the error tells the caller to pass instead.
    """
    if isinstance(obj, Mapping):
        return _from_vae(str(obj.get("_class_name") or "VAE config"), obj, ask)
    cls = obj if isinstance(obj, type) else type(obj)
    vae = None if isinstance(obj, type) else getattr(obj, "vae", None)
    families = _longest_prefix(cls.__name__)
    if not families:
        if vae is not None:
            return _from_vae(type(vae).__name__, getattr(vae, "config", None), ask)
        return _from_vae(cls.__name__, None if isinstance(obj, type) else getattr(obj, "config", None), ask)
    if vae is not None:
        vae_name, config = type(vae).__name__, getattr(vae, "config", None)
        by_class = [s for s in _REGISTRY if vae_name in s.diffusers_vaes]
        if by_class and not any(s is c for s in families for c in by_class):  # e.g. QwenImage21Pipeline vs QwenImagePipeline
            return _from_vae(vae_name, config, ask)
        if len(families) > 1 and config is not None:
            families = _narrow(families, config, strict=False)
    return _one(families, cls.__name__, None, ask)


def _longest_prefix(name: str) -> list[LatentSpace]:
    """The spaces whose longest matching ``diffusers_pipelines`` prefix of ``name`` is the longest of all."""
    best = [(max((len(p) for p in s.diffusers_pipelines if name.startswith(p)), default=0), s) for s in _REGISTRY]
    top = max((n for n, _ in best), default=0)
    return [s for n, s in best if top and n == top]


def _from_vae(name: str, config: Mapping | None, ask: str) -> LatentSpace:
    found = [s for s in _REGISTRY if name in s.diffusers_vaes]
    strict = not found  # an unknown class: only its config can tell, and must
    if config is not None and (strict or len(found) > 1):
        found = _narrow(found or list(_REGISTRY), config, strict=strict)
    return _one(found, name, config, ask)


def _narrow(found: list[LatentSpace], config: Mapping, *, strict: bool) -> list[LatentSpace]:
    """Keep the spaces whose channels and normalisation a diffusers VAE config states."""
    channels = config.get("latent_channels") or config.get("z_dim")
    if channels:
        found = [s for s in found if channels in (s.channels, s.taesd_channels)]
    if len(found) <= 1 and not strict:
        return found
    mean, std = config.get("latents_mean"), config.get("latents_std")
    if mean is not None and std is not None:
        return [s for s in found if s.latents_std is not None and len(s.latents_std) == len(std)]
    if config.get("scaling_factor") is not None:
        scale, shift = float(config["scaling_factor"]), float(config.get("shift_factor") or 0.0)
        return [s for s in found if s.latents_std is None and s.packing is None
                and math.isclose(s.scaling_factor, scale, rel_tol=1e-4) and math.isclose(s.shift_factor, shift, abs_tol=1e-4)]
    return [] if strict else found


def _one(found: list[LatentSpace], name: str, config: Mapping | None, ask: str) -> LatentSpace:
    if len(found) == 1:
        return found[0]
    details = ""
    if config is not None:
        channels = config.get("latent_channels") or config.get("z_dim")
        details = (f" ({channels} channels, scaling_factor {float(config.get('scaling_factor') or 1.0):g}, "
                   f"shift_factor {float(config.get('shift_factor') or 0.0):g})")
    if found:
        raise AmbiguousError(f"this {name}{details} may hold {' or '.join(s.id for s in found)} latents: pass {ask}")
    raise InputError(f"cannot tell the latent space of this {name}{details}: pass {ask} (see 'latentbridge spaces')")


def list_spaces(pattern: str = "*") -> list[str]:
    """Ids of the spaces that match the shell-style ``pattern``."""
    return [s.id for s in _REGISTRY if fnmatch.fnmatch(s.id, pattern.lower())]


def ranks_of(space: LatentSpace) -> tuple[int, ...]:
    """The tensor ranks a latent of ``space`` may have: a video space's clips (5-D); an image space's pictures
    (4-D) and, unless packed, clips of them (5-D: SVD, AnimateDiff and TAESDV work on SD1 frames)."""
    return (4, 5) if space.ndim == 4 and space.packing is None else (space.ndim,)


def validate(latent: torch.Tensor, space: str | LatentSpace, domain: Domain = "raw", *, finite: bool = True) -> None:
    """Raise :class:`InputError` unless ``latent`` has the rank and channels of ``space`` in ``domain``."""
    sp, domain = get(space), check_domain(domain)
    if not check_tensor(latent).is_floating_point():
        raise InputError(f"latents must be floating point, got {latent.dtype}: convert with .float()")
    want = sp.channels_in(domain)
    ranks = ranks_of(sp)
    layout = " or frames ".join("(B, C, T, H, W)" if r == 5 else "(B, C, H, W)" for r in ranks)
    if latent.ndim not in ranks or latent.shape[1] != want:
        raise InputError(
            f"a {sp.id} latent in the {domain} domain has shape {layout} with C={want}; got {tuple(latent.shape)}. "
            f"Check space= and domain=, or convert the latent first"
        )
    if finite and (bad := count_nonfinite(latent)):
        raise InputError(f"the latent holds {bad} NaN or infinite values: it is corrupt or came from a diverged sampler")


def count_nonfinite(t: torch.Tensor) -> int:
    """How many values of ``t`` are NaN or infinite. Any such value makes the sum non-finite, so a finite sum (one
    reduction, 10-50x faster than testing each value) answers 0; only otherwise are the values counted (a sum of
    huge finite values can overflow, so it never answers alone)."""
    if bool(torch.isfinite(t.sum())):
        return 0
    return int((~torch.isfinite(t)).sum())


def check_tensor(latent: object, what: str = "latent") -> torch.Tensor:
    """``latent`` when it is a torch.Tensor that holds values (a meta tensor has a shape and no values)."""
    if not isinstance(latent, torch.Tensor):
        raise InputError(f"expected a torch.Tensor {what}, got {type(latent).__name__}")
    if latent.device.type == "meta":
        raise InputError(f"{what} of shape {tuple(latent.shape)} on the meta device hold no values: pass a tensor on "
                         "a real device")
    return latent


def convert_domain(latent: torch.Tensor, space: str | LatentSpace, src: Domain, dst: Domain) -> torch.Tensor:
    """Convert ``latent`` of ``space`` from domain ``src`` to ``dst`` (raw, model, taesd); exact up to float rounding."""
    sp = get(space)
    validate(latent, sp, src, finite=False)
    check_domain(dst)
    if src == dst:
        return latent.clone()
    model = sp.to_model(latent) if src == "raw" else sp.from_taesd(latent) if src == "taesd" else latent
    if dst == "model":
        return model if model is not latent else latent.clone()
    return sp.from_model(model) if dst == "raw" else sp.to_taesd(model)


@dataclass(frozen=True)
class Candidate:
    """One explanation of a tensor: a space, a domain, a confidence in [0, 1] and why."""

    space: LatentSpace
    domain: Domain
    confidence: float
    reason: str


def _ranking(candidates: tuple[Candidate, ...]) -> str:
    return ", ".join(f"{c.space.id} ({c.domain}, {c.confidence:.0%})" for c in candidates[:5])


@dataclass(frozen=True)
class Detection:
    """Ranked candidates for a tensor, and whether no space is sure enough to name (docs/spaces.md)."""

    candidates: tuple[Candidate, ...]
    ambiguous: bool
    summary: str

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def ranking(self) -> str:
        """The leading candidates with their confidences, e.g. ``sd1 (raw, 54%), sdxl (raw, 26%)``."""
        return _ranking(self.candidates)

    def require(self) -> Candidate:
        """The single answer, or an :class:`InputError` that says why there is none."""
        if not self.candidates:
            raise InputError(self.summary)
        if self.ambiguous:
            raise AmbiguousError(self.summary)
        return self.candidates[0]


# Detection names a space only when it holds at least this share of the ranking and other spaces fit the
# tensor's layout too (docs/spaces.md, "Detection"): statistics alone rarely separate spaces more surely than this.
MIN_CONFIDENCE = 0.9


def _typical_std(sp: LatentSpace, domain: Domain) -> float:
    """Typical std of a clean latent of ``sp`` in ``domain``, from its normalisation constants."""
    if domain != "raw" or sp.packing is not None:
        return sp.scaling_factor if sp.latents_std is not None else 1.0
    if sp.latents_std is not None and sp.latents_mean is not None:  # pooled std of per-channel distributions
        n, mean = len(sp.latents_std), sum(sp.latents_mean) / len(sp.latents_mean)
        return math.sqrt(sum(s * s + (m - mean) ** 2 for s, m in zip(sp.latents_std, sp.latents_mean, strict=True)) / n)
    return 1.0 / sp.scaling_factor


def _domain_classes(sp: LatentSpace) -> tuple[tuple[str, ...], ...]:
    """The domains of ``sp`` grouped by identical tensors; the first of each group names it."""
    if sp.packing is not None:
        return ("raw", "model"), ("taesd",)
    if sp.latents_std is None and sp.scaling_factor == 1.0 and sp.shift_factor == 0.0:
        return (DOMAINS,)
    return ("raw",), ("model", "taesd")


def detect(tensor: torch.Tensor, hints: Mapping[str, object] | None = None) -> Detection:
    """Rank the spaces and domains that could have produced ``tensor``.

    ``hints`` may hold ``space``, ``domain`` (e.g. from file metadata) and ``image_size`` (H, W) of the image the
    latent stands for. The tensor's layout (4-D image or 5-D video, channels, ``image_size``) rules spaces in or
    out; among the spaces it leaves, only the std of the values ranks them. The answer is ambiguous unless one space
    holds at least :data:`MIN_CONFIDENCE` of the ranking (SD1 and SDXL raw latents never do: docs/spaces.md).
    """
    if hints is not None and not isinstance(hints, Mapping):
        raise InputError(f"hints= is a mapping such as {{'space': 'sd1'}}; got {type(hints).__name__}")
    hints = dict(hints or {})
    x = check_tensor(tensor).detach()
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim not in (4, 5):
        return Detection((), False, f"a latent has 4 dimensions (B, C, H, W) or 5 (B, C, T, H, W); got shape {tuple(x.shape)}")
    finite = x[torch.isfinite(x)].float()
    if finite.numel() == 0:
        return Detection((), False, "the tensor holds no finite values: it cannot be a latent")
    std = float(finite.std()) if finite.numel() > 1 else 0.0
    channels, height, width = x.shape[1], x.shape[-2], x.shape[-1]
    want_space = get(str(hints["space"])) if hints.get("space") else None
    want_domain = check_domain(str(hints["domain"])) if hints.get("domain") else None
    image_size = hints.get("image_size")
    if image_size is not None and (not isinstance(image_size, Sequence) or isinstance(image_size, str)
                                   or len(image_size) != 2 or any(not isinstance(n, int) for n in image_size)):
        raise InputError(f"hints['image_size'] is the (height, width) of the picture in pixels; got {image_size!r}")

    scored: list[tuple[float, Candidate]] = []
    for sp in _REGISTRY:
        if want_space is not None and sp is not want_space:
            continue
        for group in _domain_classes(sp):
            domain = group[0]
            if (want_domain is not None and want_domain not in group) or x.ndim != sp.ndim:
                continue
            if sp.channels_in(domain) != channels:
                continue
            reasons = [f"{channels} channels"]
            if sp.packing is not None:
                reasons.append("unpacked (32 channels at /8)" if domain == "taesd" else "packed 2x2 (128 channels at /16)")
            weight = sp.prior
            exp_std = _typical_std(sp, domain)
            if std > 0:
                weight *= math.exp(-0.5 * (math.log(std / exp_std) / 0.35) ** 2)
                reasons.append(f"std {std:.2f} (typical {exp_std:.2f})")
            if image_size is not None:
                ih, iw = image_size  # type: ignore[misc]
                factor = sp.downscale_in(domain)
                if abs(ih / factor - height) > 1 or abs(iw / factor - width) > 1:
                    continue
                reasons.append(f"image {ih}x{iw} / {factor} = latent {height}x{width}")
            scored.append((weight, Candidate(sp, domain, 0.0, f"{' = '.join(group)}: " + ", ".join(reasons))))
    if not scored:
        fits = [f"{s.id} ({s.channels} ch{', or ' + str(s.taesd_channels) + ' unpacked' if s.packing else ''})" for s in _REGISTRY]
        return Detection((), False, f"no known space has {channels}-channel {x.ndim}-D latents"
                         f"{' matching the hints' if hints else ''}; known: {', '.join(fits)}")
    total = sum(w for w, _ in scored) or 1.0
    ranked = sorted(((w / total, c) for w, c in scored), key=lambda t: -t[0])
    cands = tuple(Candidate(c.space, c.domain, round(p, 4), c.reason) for p, c in ranked)
    share: dict[str, float] = {}
    for c in cands:
        share[c.space.id] = share.get(c.space.id, 0.0) + c.confidence
    top = cands[0]
    ambiguous = len(share) > 1 and share[top.space.id] < MIN_CONFIDENCE
    if not ambiguous:
        return Detection(cands, False, f"{top.space.id} in the {top.domain} domain ({top.confidence:.0%}): {top.reason}")
    layout = f"{channels}-channel {'video (B, C, T, H, W)' if x.ndim == 5 else 'image'}"
    return Detection(cands, True, f"cannot tell which space this {layout} latent is from: {_ranking(cands)}; only its "
                     f"statistics separate them and no space reaches {MIN_CONFIDENCE:.0%}. Say which with space= "
                     "(and domain=)")
