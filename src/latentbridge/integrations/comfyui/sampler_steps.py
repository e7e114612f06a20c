"""Any ComfyUI sampler with a hook before each sigma transition: how the mixing nodes run every name in
``comfy.samplers.KSampler.SAMPLERS``.

Iterative mixing changes the latent each step starts from (DemoFusion's blended z_t), once per sigma transition and
never for the evaluations inside a step (heun's second one, a corrector). ComfyUI's samplers are closed loops, so each
is driven in the way that keeps the most of it, chosen from how ComfyUI 0.8 writes it (the table per sampler is in
docs/comfyui-samplers.md):

* ``state``: samplers that evaluate the model once per step, on their own state at sigma_i (euler, lms, the
  dpmpp_2m / 3m family with their SDE variants, ipndm, deis, res_multistep, lcm, ddpm, er_sde, ...) run once over the
  whole schedule; the model wrapper blends that state in place just before the evaluation. History and noise stay
  the sampler's own, so with zero weights the result is ComfyUI's to the bit. Should a ComfyUI version make one of
  them evaluate twice in a step, the run stops with an error rather than mix an inner evaluation.
* ``unipc``: uni_pc and uni_pc_bh2 run as ComfyUI runs them, each predictor-corrector update preceded by the blend of
  the solver's state (kept in its own scaling), so their history is kept too.
* ``step``: every other sampler runs one ComfyUI call per sigma transition with the blend in between. The noise
  sampler is made once for the run, as the sampler would make it, so single-step samplers (heun, dpm_2,
  dpmpp_2s_ancestral, dpmpp_sde, seeds_2/3, ...) give ComfyUI's result too; :data:`CHANGES` says what changes for the
  others.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from tqdm.auto import trange

STATE = frozenset({
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "lms", "dpmpp_2m", "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp",
    "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp",
    "er_sde", "ddim",
})
UNIPC = frozenset({"uni_pc", "uni_pc_bh2"})
EXACT_STEPS = frozenset({
    "heun", "dpm_2", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde",
    "dpmpp_sde_gpu", "seeds_2", "seeds_3", "exp_heun_2_x0", "exp_heun_2_x0_sde",
})
CHANGES = {  # samplers run step by step whose result differs from ComfyUI's even with zero weights, and how
    "heunpp2": "each step is a Euler step (Heun++ looks two sigmas ahead and weighs by the run's first sigma)",
    "sa_solver": "history restarts at each step (a first-order predictor, no corrector)",
    "sa_solver_pece": "history restarts at each step (a first-order predictor, no corrector)",
    "dpm_fast": "solved between each pair of sigmas rather than over the whole range in its own steps",
    "dpm_adaptive": "solved between each pair of sigmas rather than over the whole range in its own steps",
}
OTHER = ("samplers this pack does not know (added by a newer ComfyUI or another node pack) run one call per step: "
         "exact for single-step samplers, a multistep sampler's history restarts at each step")
LEGACY = {"flow_euler": "euler"}  # step rules of earlier versions of the nodes, kept for saved workflows
_BROWNIAN = {"dpmpp_sde": True, "dpmpp_sde_gpu": False}  # step samplers whose own noise is a Brownian tree (cpu?)
_ENDS_EARLY = frozenset({"dpm_fast", "dpm_adaptive"})  # ComfyUI stops them at the last non-zero sigma
_FALLBACK = ("euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde", "lcm", "uni_pc")

Hook = Callable[[torch.Tensor, int], torch.Tensor]


def sampler_names() -> list[str]:
    """ComfyUI's sampler names and the earlier step rules (a short stand-in list outside ComfyUI)."""
    try:
        import comfy.samplers
    except ImportError:
        names = list(_FALLBACK)
    else:
        names = list(comfy.samplers.KSampler.SAMPLERS)
    return names + [name for name in LEGACY if name not in names]


def comfy_name(name: str) -> str:
    """The ComfyUI sampler a node's sampler name runs (``flow_euler`` is ComfyUI's euler: the same update)."""
    return LEGACY.get(name, name)


def mode(name: str) -> str:
    """How the sampler is driven: ``state``, ``unipc`` or ``step``."""
    name = comfy_name(name)
    return "state" if name in STATE else "unipc" if name in UNIPC else "step"


def what_changes(name: str) -> str | None:
    """None when mixing keeps the sampler's state (zero weights give ComfyUI's result), else what changes."""
    name = comfy_name(name)
    if name in STATE or name in UNIPC or name in EXACT_STEPS:
        return None
    return CHANGES.get(name, OTHER)


def describe() -> str:
    """The samplers whose state mixing does not keep, and what changes, for a node description."""
    changed = "; ".join(f"{name}: {text}" for name, text in CHANGES.items())
    return (f"Every ComfyUI sampler works, mixed once per sigma transition before the step (never the evaluations "
            f"inside a step); with the mixing weight at 0 the result is the plain sampler's, except: {changed}; "
            f"{OTHER}.")


def _accepts(function: Callable, option: str) -> bool:
    try:
        return option in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def run(name: str, model: Any, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Mapping | None, callback: Any,
        disable: bool | None, hook: Hook, options: Mapping[str, Any] | None = None) -> torch.Tensor:
    """Run ComfyUI's sampler ``name`` from ``x`` over ``sigmas`` (KSAMPLER calling convention, ``model`` being
    ComfyUI's KSamplerX0Inpaint), calling ``hook(state, i)`` before transition i; ``options`` the sampler takes (such
    as ``eta``) are passed on, others dropped."""
    import comfy.samplers

    name = comfy_name(name)
    sampler = comfy.samplers.sampler_object(name)
    function = sampler.sampler_function
    given = {k: v for k, v in (options or {}).items() if _accepts(function, k)}
    given = {**getattr(sampler, "extra_options", {}), **given}
    extra = dict(extra_args or {})
    how = mode(name)
    if how == "state":
        return _run_state(name, function, model, x, sigmas, extra, callback, disable, hook, given)
    if how == "unipc":
        return _run_unipc(function, model, hook(x, 0), sigmas, extra, callback, disable, hook, given)
    return _run_steps(name, function, model, x, sigmas, extra, callback, disable, hook, given)


class _StateModel:
    """ComfyUI's model wrapper as a one-evaluation-per-step sampler sees it: step i's evaluation first blends the
    sampler's state in place. The callback each step sends after it tells the steps apart."""

    def __init__(self, model: Any, hook: Hook, name: str) -> None:
        self.model, self.hook, self.name = model, hook, name
        self.calls = self.steps_seen = 0

    def __getattr__(self, attribute: str) -> Any:  # inner_model, latent_image, ... as ComfyUI's samplers read them
        return getattr(self.__dict__["model"], attribute)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if self.calls > self.steps_seen:
            raise RuntimeError(f"ComfyUI's sampler {self.name} evaluated the model twice in one step in this ComfyUI "
                               "version, so iterative mixing cannot tell its state from an inner evaluation: choose "
                               "another sampler")
        i, self.calls = self.calls, self.calls + 1
        if i < len(self.hook):
            mixed = self.hook(x, i)
            if mixed is not x:
                x.copy_(mixed)
        return self.model(x, sigma, **kwargs)

    def step_done(self, data: dict) -> None:
        self.steps_seen = int(data["i"]) + 1


def _run_state(name: str, function: Callable, model: Any, x: torch.Tensor, sigmas: torch.Tensor, extra: dict,
               callback: Any, disable: bool | None, hook: Hook, options: dict) -> torch.Tensor:
    wrapped = _StateModel(model, hook, name)

    def step_done(data: dict) -> None:
        wrapped.step_done(data)
        if callback is not None:
            callback(data)

    return function(wrapped, x.clone(), sigmas, extra_args=extra, callback=step_done, disable=disable, **options)


def _noise_sampler(name: str, x: torch.Tensor, sigmas: torch.Tensor, extra: dict) -> Callable:
    """The noise sampler ``name`` makes for itself over the whole schedule, made once so that steps share it."""
    from comfy.k_diffusion import sampling

    seed = extra.get("seed")
    if name in _BROWNIAN:
        return sampling.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=seed,
                                                 cpu=_BROWNIAN[name])
    return sampling.default_noise_sampler(x, seed=seed)


def _run_steps(name: str, function: Callable, model: Any, x: torch.Tensor, sigmas: torch.Tensor, extra: dict,
               callback: Any, disable: bool | None, hook: Hook, options: dict) -> torch.Tensor:
    if _accepts(function, "noise_sampler") and "noise_sampler" not in options:
        options = {**options, "noise_sampler": _noise_sampler(name, x, sigmas, extra)}
    transitions = len(sigmas) - 1 - (name in _ENDS_EARLY)
    for i in trange(transitions, disable=disable):
        step_callback = None if callback is None else (lambda data, i=i: callback({**data, "i": i}))
        # a fresh copy of the arguments: some samplers write into extra_args, uni_pc into sigmas
        x = function(model, hook(x, i), sigmas[i:i + 2].clone(), extra_args=dict(extra), callback=step_callback,
                     disable=True, **options)
    return x


def _run_unipc(function: Callable, model: Any, x: torch.Tensor, sigmas: torch.Tensor, extra: dict, callback: Any,
               disable: bool | None, hook: Hook, options: dict) -> torch.Tensor:
    """ComfyUI's uni_pc with each update from sigma_k (k >= 1) preceded by the blend of the solver's state, which it
    keeps divided by sqrt(1 + sigma^2); the start (k = 0) comes in blended."""
    from comfy.extra_samplers import uni_pc

    solver = uni_pc.UniPC

    class MixingUniPC(solver):
        updates = 0

        def multistep_uni_pc_update(self, x, model_prev_list, t_prev_list, *args, **kwargs):
            MixingUniPC.updates += 1
            k = MixingUniPC.updates - 1  # the transition this update makes starts at sigma_k
            if 0 < k < len(hook):
                scale = (1.0 + t_prev_list[-1].reshape(-1)[0].to(x.dtype) ** 2).sqrt()
                scaled = x * scale
                blended = hook(scaled, k)
                if blended is not scaled:  # a zero weight leaves the state untouched, to the bit
                    x = blended / scale
            return super().multistep_uni_pc_update(x, model_prev_list, t_prev_list, *args, **kwargs)

    uni_pc.UniPC = MixingUniPC
    try:
        return function(model, x, sigmas.clone(), extra_args=extra, callback=callback, disable=disable, **options)
    finally:
        uni_pc.UniPC = solver
