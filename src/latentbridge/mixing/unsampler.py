"""The unsampler: noised copies of a clean latent at each sampler sigma, made when the sampler asks for them.

The Iterative Mixer's Batch Unsampler stacked every noised latent into one batch (a 10000-latent batch by default);
here the copy for step k is computed on demand, so memory stays at one latent and one noise tensor whatever the
number of steps. :meth:`Unsampler.materialise` builds the batch only when a caller needs it (ComfyUI's Batch
Unsampler output), and :class:`NoisedBatch` feeds such a batch back to the sampler.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import spaces
from ..errors import InputError
from . import noise as _noise
from .process import accepts_kind, check_sigmas, process_for


class Unsampler:
    """Lazy noised copies ``z'_k = alpha(sigma_k) * z + sigma_k * eps_k`` of a clean **model-domain** latent ``z``.

    ``sigmas`` are the levels, one per sampler step (sigma_0 first). ``prediction`` picks the forward process
    (eps/v: ``z + sigma eps``; flow: ``(1 - sigma) z + sigma eps``). The noise ``eps`` is drawn from ``seed`` and
    shared by every step as DemoFusion does, or drawn independently per step with ``shared_noise=False``; pass
    ``noise`` to use your own (shared) tensor. The reference is kept, never modified.
    """

    @accepts_kind
    def __init__(
        self,
        reference: torch.Tensor,
        sigmas: torch.Tensor | Sequence[float],
        *,
        prediction: str = "eps",
        seed: int = 0,
        shared_noise: bool = True,
        noise: torch.Tensor | None = None,
    ) -> None:
        if not isinstance(reference, torch.Tensor) or not reference.is_floating_point() or reference.ndim < 2:
            raise InputError("the reference must be a floating-point latent tensor (B, C, ...) in the model domain")
        self.process = process_for(prediction)
        self.prediction = prediction
        sig = torch.as_tensor(sigmas).detach()
        if sig.ndim != 1 or sig.numel() < 1:
            raise InputError(f"the unsampler needs a 1-D list of sigmas (one per step); got shape {tuple(sig.shape)}")
        if sig.numel() > 1:
            check_sigmas(sig, prediction, what="the unsampler's sigmas")
        elif not 0 <= float(sig[0]) <= (1 if prediction == "flow" else float("inf")):
            raise InputError(f"sigma {float(sig[0])} is out of range for a {prediction} model")
        self.sigmas = sig.double().cpu()
        self.reference = reference
        self.seed = _noise.check_seed(seed)
        if noise is not None:
            if not shared_noise:
                raise InputError("pass either noise (one tensor shared by every step) or shared_noise=False, not both")
            if not spaces.check_tensor(noise, "noise").is_floating_point():
                raise InputError(f"the noise must be a floating-point tensor; got {noise.dtype}")
            if noise.shape != reference.shape:
                raise InputError(f"the noise has shape {tuple(noise.shape)} but the reference {tuple(reference.shape)}: "
                                 "they must match")
        self.shared_noise = shared_noise
        self._noise = noise.to(reference.device, reference.dtype) if noise is not None else None

    def __len__(self) -> int:
        return self.sigmas.numel()

    @property
    def shape(self) -> torch.Size:
        """Shape of one noised copy (the reference's)."""
        return self.reference.shape

    def noise(self, k: int) -> torch.Tensor:
        """The standard normal noise used for step ``k``."""
        if self.shared_noise:
            if self._noise is None:
                self._noise = _noise.randn(self.reference, self.seed, _noise.UNSAMPLE, 0)
            return self._noise
        return _noise.randn(self.reference, self.seed, _noise.UNSAMPLE, k)

    def __getitem__(self, k: int) -> torch.Tensor:
        """The copy noised to ``sigmas[k]`` (computed now; a new tensor)."""
        if not isinstance(k, int) or not -len(self) <= k < len(self):
            raise IndexError(f"step {k!r} is outside the {len(self)} steps of this unsampler")
        k %= len(self)
        return self.process.add_noise(self.reference, self.noise(k), float(self.sigmas[k]))

    def materialise(self) -> torch.Tensor:
        """Every copy at once, step-major in sampler order: ``(steps * B, C, ...)``, sigma_0's batch first."""
        b = self.reference.shape[0]
        batch = self.reference.new_empty((len(self) * b, *self.reference.shape[1:]))
        for k in range(len(self)):
            batch[k * b:(k + 1) * b] = self[k]
        return batch


class NoisedBatch:
    """A materialised batch of noised copies (``steps * B`` latents, sigma_0's first) indexed like an Unsampler."""

    def __init__(self, batch: torch.Tensor, steps: int, *, sigmas: torch.Tensor | Sequence[float] | None = None) -> None:
        if not isinstance(batch, torch.Tensor) or batch.ndim < 2:
            raise InputError("a noised batch must be a latent tensor (steps * B, C, ...)")
        if steps < 1 or batch.shape[0] % steps:
            raise InputError(f"the noised batch holds {batch.shape[0]} latents, which does not split into {steps} steps: "
                             f"unsample with the same number of steps as the sampler ({steps})")
        self.batch, self.steps = batch, steps
        self.sigmas = None if sigmas is None else torch.as_tensor(sigmas).detach().double().cpu()
        if self.sigmas is not None and self.sigmas.numel() != steps:
            raise InputError(f"{self.sigmas.numel()} sigmas given for a noised batch of {steps} steps")

    def __len__(self) -> int:
        return self.steps

    @property
    def shape(self) -> torch.Size:
        b = self.batch.shape[0] // self.steps
        return torch.Size((b, *self.batch.shape[1:]))

    def __getitem__(self, k: int) -> torch.Tensor:
        if not isinstance(k, int) or not -self.steps <= k < self.steps:
            raise IndexError(f"step {k!r} is outside the {self.steps} steps of this noised batch")
        b = self.batch.shape[0] // self.steps
        k %= self.steps
        return self.batch[k * b:(k + 1) * b]
