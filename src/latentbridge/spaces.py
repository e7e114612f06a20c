"""The registry of latent spaces: every family's constants as data, domain conversions, detection.

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
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from .errors import AmbiguousError, InputError, UnknownSpaceError

DOMAINS = ("raw", "model", "taesd")

COMFY = "comfyanonymous/ComfyUI:comfy/latent_formats.py"
TAESD = "madebyollin/taesd:taesd.py"
INTERPOSER = "city96/SD-Latent-Interposer:comfy_latent_interposer.py"
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
class LatentSpace:
    """One latent space: shape, normalisation between domains, preview factors and the models that serve it."""

    id: str
    title: str
    channels: int  # channels in the raw and model domains
    downscale: int  # image pixels per latent pixel in the raw and model domains
    aliases: tuple[str, ...] = ()
    ndim: int = 4  # 4 for images (B, C, H, W); 5 for video VAEs (B, C, T, H, W)
    scaling_factor: float = 1.0  # model = (raw - shift or mean) * scaling_factor (/ std)
    shift_factor: float = 0.0
    latents_mean: tuple[float, ...] | None = None  # per-channel, for EDM-style normalisation
    latents_std: tuple[float, ...] | None = None
    packing: Packing | None = None  # model-domain packing that the taesd domain undoes
    rgb_factors: tuple[tuple[float, float, float], ...] | None = None  # rows = taesd-domain channels, to [-1, 1]
    rgb_bias: tuple[float, float, float] | None = None
    tiny: str | None = None  # TAESD-family weight name
    interposer_code: str | None = None  # code in city96's v4.0 file names
    prediction: str = "eps"  # eps | v | flow: selects the forward (noising) process
    comfy_format: str | None = None  # ComfyUI latent_formats class name
    families: tuple[str, ...] = ()  # model families that share this space
    notes: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)  # field name -> where the number comes from

    def __post_init__(self) -> None:
        if self.rgb_factors is not None and len(self.rgb_factors) != self.taesd_channels:
            raise ValueError(f"{self.id}: {len(self.rgb_factors)} factor rows for {self.taesd_channels} channels")
        for stats in (self.latents_mean, self.latents_std):
            if stats is not None and len(stats) != self.channels:
                raise ValueError(f"{self.id}: per-channel statistics need {self.channels} values")

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

    def channels_in(self, domain: str) -> int:
        """Channel count of a latent of this space in ``domain``."""
        return self.taesd_channels if _domain(domain) == "taesd" else self.channels

    def downscale_in(self, domain: str) -> int:
        """Spatial downscale factor of this space in ``domain``."""
        return self.taesd_downscale if _domain(domain) == "taesd" else self.downscale

    def latent_shape(self, height: int, width: int, *, domain: str = "raw", batch: int = 1) -> tuple[int, ...]:
        """Shape of the latent for an image of ``height`` x ``width`` pixels."""
        d = self.downscale_in(domain)
        spatial = (height // d, width // d)
        frames = (1,) if self.ndim == 5 else ()
        return (batch, self.channels_in(domain), *frames, *spatial)

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


def _domain(name: str) -> str:
    if name not in DOMAINS:
        raise InputError(f"unknown domain {name!r}: use one of {', '.join(DOMAINS)}")
    return name


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

_REGISTRY: tuple[LatentSpace, ...] = (
    LatentSpace(
        id="sd1", title="Stable Diffusion 1.x / 2.x", channels=4, downscale=8, scaling_factor=0.18215,
        aliases=("v1", "sd15", "sd1.5", "sd1x", "sd2", "sd21", "sd2.1", "SD15", "stable-diffusion-1.5"),
        rgb_factors=_SD15_RGB, tiny="taesd", interposer_code="v1", comfy_format="SD15",
        families=("SD1.x", "SD2.x", "PixArt-alpha", "SVD", "Stable Zero123"),
        notes="SD2.x shares the SD1 VAE and scale; 768-px SD2 models are v-prediction.",
        sources={"scaling_factor": COMFY, "rgb_factors": COMFY, "tiny": "madebyollin/taesd:README.md",
                 "interposer_code": INTERPOSER},
    ),
    LatentSpace(
        id="sdxl", title="Stable Diffusion XL", channels=4, downscale=8, scaling_factor=0.13025,
        aliases=("xl", "SDXL", "sd-xl", "ssd1b", "pixart-sigma", "auraflow", "hunyuandit"),
        rgb_factors=_SDXL_RGB, rgb_bias=(0.1084, -0.0175, -0.0011), tiny="taesdxl", interposer_code="xl",
        comfy_format="SDXL", families=("SDXL", "SDXL refiner", "SSD-1B", "AuraFlow", "PixArt-Sigma", "HunyuanDiT"),
        notes="Raw SDXL latents are statistically close to raw SD1 latents: detection cannot tell them apart.",
        sources={"scaling_factor": COMFY, "rgb_factors": COMFY + " (since e5ecdfdd)", "tiny": "madebyollin/taesd:README.md",
                 "interposer_code": INTERPOSER},
    ),
    LatentSpace(
        id="playground25", title="Playground v2.5 (SDXL VAE, EDM normalisation)", channels=4, downscale=8,
        scaling_factor=0.5, latents_mean=(-1.6574, 1.886, -1.383, 2.5155), latents_std=(8.4927, 5.9022, 6.5498, 5.2299),
        aliases=("playground", "playground-v2.5", "SDXL_Playground_2_5"), rgb_factors=_PLAYGROUND_RGB,
        tiny="taesdxl", comfy_format="SDXL_Playground_2_5", prediction="eps",
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
        tiny="taesd3", interposer_code="v3", comfy_format="SD3", prediction="flow",
        sources={"scaling_factor": COMFY, "shift_factor": COMFY, "rgb_factors": COMFY + " (since 8dfa0cc5)",
                 "tiny": "madebyollin/taesd:README.md", "interposer_code": INTERPOSER},
    ),
    LatentSpace(
        id="flux1", title="FLUX.1", channels=16, downscale=8, scaling_factor=0.3611, shift_factor=0.1159,
        aliases=("fx", "flux", "flux.1", "Flux", "lumina2", "z-image", "hidream", "chroma", "omnigen2"),
        rgb_factors=_FLUX1_RGB, rgb_bias=(-0.0329, -0.0718, -0.0851), tiny="taef1", interposer_code="fx",
        comfy_format="Flux", prediction="flow",
        families=("FLUX.1", "Lumina 2", "Z-Image", "HiDream", "Chroma", "OmniGen2", "Kandinsky 5 image"),
        notes="The transformer packs 2x2 patches internally; the latent itself is not packed.",
        sources={"scaling_factor": COMFY, "shift_factor": COMFY, "rgb_factors": COMFY + " (since 7d29fbf7)",
                 "tiny": "madebyollin/taesd:README.md", "interposer_code": INTERPOSER},
    ),
    LatentSpace(
        id="flux2", title="FLUX.2", channels=128, downscale=16, packing=Packing(patch=2, unpacked_channels=32),
        aliases=("flux.2", "Flux2"), rgb_factors=_FLUX2_RGB, rgb_bias=(-0.0329, -0.0718, -0.0851),
        tiny="taef2", comfy_format="Flux2", prediction="flow",
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
        aliases=("dc-ae", "dcae", "sana1.5", "dc-ae-f32c32"), tiny="taesana", prediction="flow",
        rgb_factors=_SANA_RGB, rgb_bias=(-0.0262, -0.1216, -0.2195),
        notes="scaling_factor from mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers as hard-coded by third-party ports.",
        sources={"scaling_factor": "mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers config (third-party ports)",
                 "tiny": TAESD + " (f32 variant)", "rgb_factors": FITTED},
    ),
    LatentSpace(
        id="wan21", title="Wan 2.1 VAE (Qwen-Image, Cosmos-Predict2)", channels=16, downscale=8, ndim=5,
        latents_mean=(-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                      0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921),
        latents_std=(2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                     3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160),
        aliases=("wan", "wan2.1", "qwen-image", "qwenimage", "Wan21"), rgb_factors=_WAN21_RGB,
        rgb_bias=(-0.1835, -0.0868, -0.3360), comfy_format="Wan21", prediction="flow",
        families=("Wan 2.1", "Qwen-Image", "Cosmos-Predict2 T2I"),
        notes="5-D latents (B, C, T, H, W); images are one frame.",
        sources={"latents_mean": COMFY, "latents_std": COMFY, "rgb_factors": COMFY},
    ),
    LatentSpace(
        id="hunyuanimage21", title="HunyuanImage 2.1", channels=64, downscale=32, scaling_factor=0.75289,
        aliases=("hunyuanimage", "hunyuan-image-2.1", "HunyuanImage21"), rgb_factors=_HUNYUAN21_RGB,
        rgb_bias=(0.0007, -0.0256, -0.0206), comfy_format="HunyuanImage21", prediction="flow",
        sources={"scaling_factor": COMFY, "downscale": "comfyanonymous/ComfyUI:comfy/sd.py", "rgb_factors": COMFY},
    ),
    LatentSpace(
        id="chroma_radiance", title="Chroma Radiance (pixel space)", channels=3, downscale=1,
        aliases=("radiance", "pixel", "ChromaRadiance"),
        rgb_factors=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)), comfy_format="ChromaRadiance",
        prediction="flow", notes="RGB in [-1, 1]; raw, model and taesd are all the image itself.",
        sources={"rgb_factors": COMFY},
    ),
)


def _key(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", name.lower())


_BY_KEY: dict[str, LatentSpace] = {}
for _s in _REGISTRY:
    for _name in (_s.id, *_s.aliases):
        if _BY_KEY.setdefault(_key(_name), _s) is not _s:
            raise RuntimeError(f"alias {_name!r} names two spaces")


def get(name: str | LatentSpace) -> LatentSpace:
    """Look a space up by id or alias (case, '-', '_' and '.' ignored); errors suggest the closest names."""
    if isinstance(name, LatentSpace):
        return name
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
    return _REGISTRY


def list_spaces(pattern: str = "*") -> list[str]:
    """Ids of the spaces that match the shell-style ``pattern``."""
    return [s.id for s in _REGISTRY if fnmatch.fnmatch(s.id, pattern.lower())]


def validate(latent: torch.Tensor, space: str | LatentSpace, domain: str = "raw", *, finite: bool = True) -> None:
    """Raise :class:`InputError` unless ``latent`` has the rank and channels of ``space`` in ``domain``."""
    sp, domain = get(space), _domain(domain)
    if not isinstance(latent, torch.Tensor):
        raise InputError(f"expected a torch.Tensor latent, got {type(latent).__name__}")
    if not latent.is_floating_point():
        raise InputError(f"latents must be floating point, got {latent.dtype}: convert with .float()")
    want = sp.channels_in(domain)
    layout = "(B, C, T, H, W)" if sp.ndim == 5 else "(B, C, H, W)"
    if latent.ndim != sp.ndim or latent.shape[1] != want:
        raise InputError(
            f"a {sp.id} latent in the {domain} domain has shape {layout} with C={want}; got {tuple(latent.shape)}. "
            f"Check the space and domain (pass --space/--domain), or convert the latent first"
        )
    if finite and not bool(torch.isfinite(latent).all()):
        bad = int((~torch.isfinite(latent)).sum())
        raise InputError(f"the latent holds {bad} NaN or infinite values: it is corrupt or came from a diverged sampler")


def convert_domain(latent: torch.Tensor, space: str | LatentSpace, src: str, dst: str) -> torch.Tensor:
    """Convert ``latent`` of ``space`` from domain ``src`` to ``dst`` (raw, model, taesd); exact up to float rounding."""
    sp = get(space)
    validate(latent, sp, src, finite=False)
    _domain(dst)
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
    domain: str
    confidence: float
    reason: str


@dataclass(frozen=True)
class Detection:
    """Ranked candidates for a tensor, and whether the top ones are too close to call."""

    candidates: tuple[Candidate, ...]
    ambiguous: bool
    summary: str

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    def require(self) -> Candidate:
        """The single answer, or an :class:`InputError` that says why there is none."""
        if not self.candidates:
            raise InputError(self.summary)
        if self.ambiguous:
            raise AmbiguousError(self.summary)
        return self.candidates[0]


# How much more common a space is in the wild: breaks ties only between equally fitting candidates.
_PRIOR = {"sd1": 1.0, "sdxl": 1.0, "flux1": 1.0, "flux2": 0.8, "sd3": 0.7, "sana": 0.6, "wan21": 0.6}
_AMBIGUITY_RATIO = 1.6  # top two spaces within this likelihood ratio: refuse to choose


def _typical_std(sp: LatentSpace, domain: str) -> float:
    """Typical std of a clean latent of ``sp`` in ``domain``, from its normalisation constants."""
    if domain != "raw" or sp.packing is not None:
        return sp.scaling_factor if sp.latents_std is not None else 1.0
    if sp.latents_std is not None:
        return math.sqrt(sum(s * s for s in sp.latents_std) / len(sp.latents_std)) / sp.scaling_factor
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
    latent stands for. The answer is ambiguous when the statistics cannot separate spaces (SD1 vs SDXL raw latents).
    """
    hints = dict(hints or {})
    x = tensor.detach()
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
    want_domain = _domain(str(hints["domain"])) if hints.get("domain") else None
    image_size = hints.get("image_size")

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
            weight = _PRIOR.get(sp.id, 0.5)
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
    rivals = [c for c in cands[1:] if c.space is not cands[0].space]
    ambiguous = bool(rivals) and cands[0].confidence < _AMBIGUITY_RATIO * max(rivals[0].confidence, 1e-12)
    top = cands[0]
    if ambiguous:
        names = ", ".join(f"{c.space.id} ({c.domain}, {c.confidence:.0%})" for c in cands[:4])
        summary = (f"cannot tell which space this {channels}-channel latent is from: {names} fit about equally "
                   f"(their statistics overlap); say which with --space (and --domain)")
    else:
        summary = f"{top.space.id} in the {top.domain} domain ({top.confidence:.0%}): {top.reason}"
    return Detection(cands, ambiguous, summary)
