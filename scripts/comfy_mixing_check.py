"""Check the iterative-mixing nodes and the pack's errors in a real ComfyUI, through its workflow runner.

1. For every ComfyUI sampler, the Iterative Mixing KSampler with ``maximum`` 0 and no clean-up next to ComfyUI's own
   KSampler (same seed, steps, cfg, scheduler, latent): the saved latents must agree within ``--tolerance`` for every
   sampler whose state the nodes keep; the others are reported with what changes (from the node description).
2. Bad workflows (a wrong space, mismatched shapes, missing weights, bad numbers, undecidable spaces) must end in node
   errors whose text names node inputs and ComfyUI folders, never a ``--flag`` or a ``latentbridge`` command, and a
   good workflow run after them must succeed (the server keeps serving).

Usage (the ComfyUI venv, sources and models as the runner expects them)::

    python scripts/comfy_mixing_check.py --runner PATH/run_workflow.py --pack PATH/clone-of-this-repo \
        --work /tmp/mixing-check [--samplers euler,uni_pc] [--json report.json]
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from latentbridge.integrations.comfyui import sampler_steps

# ComfyUI 0.8's comfy.samplers.KSampler.SAMPLERS
SAMPLERS = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "exp_heun_2_x0",
    "exp_heun_2_x0_sde", "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm",
    "lcm", "ipndm", "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
)
SLOW = ("dpm_adaptive",)  # adaptive steps on random weights: no bound on the evaluations; compared only when named
CLI = re.compile(r"--[a-z]|latentbridge (?:fit-preview|train|info|spaces|convert|preview|dataset|upscale|encode)")
CKPT = "random_sd15_tiny.safetensors"
BASE = {  # a checkpoint, prompts, and a non-empty SD1.5 latent of a 64x64 image
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse on a cliff at dusk", "clip": ["1", 1]}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
    "4": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 4227264}},
    "5": {"class_type": "VAEEncode", "inputs": {"pixels": ["4", 0], "vae": ["1", 2]}},
}


def mixing_ksampler(sampler: str, steps: int, maximum: float, latent: list, cfg: float) -> dict:
    return {"class_type": "LatentBridgeMixingKSampler", "inputs": {
        "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": latent, "seed": 7, "cfg": cfg,
        "scheduler": "karras", "preset": "sd1", "steps": steps, "sampler": sampler, "schedule": "preset",
        "alpha_1": 0.0, "blend": "preset", "denoise": 1.0, "cleanup": 0.0, "maximum": maximum}}


def equivalence(samplers: list[str], steps: int, cfg: float) -> dict:
    wf = dict(BASE)
    for k, name in enumerate(samplers):
        n = 10 + 4 * k
        wf[str(n)] = {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "seed": 7, "steps": steps, "cfg": cfg, "sampler_name": name, "scheduler": "karras",
            "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["5", 0], "denoise": 1.0}}
        wf[str(n + 1)] = {"class_type": "SaveLatent", "inputs": {"samples": [str(n), 0],
                                                                  "filename_prefix": f"check/core_{name}"}}
        wf[str(n + 2)] = mixing_ksampler(name, steps, 0.0, ["5", 0], cfg)
        wf[str(n + 3)] = {"class_type": "SaveLatent", "inputs": {"samples": [str(n + 2), 0],
                                                                  "filename_prefix": f"check/mixing_{name}"}}
    return wf


def bad_workflows() -> dict[str, dict]:
    """Workflows that must end in a node error, by name."""
    upscaled = {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["5", 0], "upscale_method": "bicubic",
                                                           "scale_by": 2.0}}
    preview = {"class_type": "LatentBridgePreview", "inputs": {"samples": ["5", 0], "method": "linear",
                                                               "space": "auto", "size": 0}}
    out = {
        "wrong_space": {"6": {**preview, "inputs": {**preview["inputs"], "space": "flux1"}},
                        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}}},
        # scaled to the std of SD-family latents of photos (about 5.5), where sd1, sdxl and playground25 compete
        "undecided_space": {"6": {"class_type": "LatentMultiply", "inputs": {"samples": ["5", 0], "multiplier": 8.0}},
                            "7": {**preview, "inputs": {**preview["inputs"], "samples": ["6", 0]}},
                            "8": {"class_type": "PreviewImage", "inputs": {"images": ["7", 0]}}},
        "undecided_space_with_vae": {"6": {**preview, "inputs": {**preview["inputs"], "vae": ["1", 2]}},
                                     "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}}},
        "undecided_interposer_source": {
            "6": {"class_type": "LatentBridgeInterposer", "inputs": {"samples": ["5", 0], "source": "auto",
                                                                    "target": "flux1"}},
            "7": {"class_type": "LatentBridgeLatentInfo", "inputs": {"samples": ["6", 0], "space": "auto"}}},
        "missing_weights": {"6": {**preview, "inputs": {**preview["inputs"], "method": "tiny", "space": "sdxl"}},
                            "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}}},
        "mismatched_shapes": {
            "6": upscaled,
            "7": {"class_type": "LatentBridgeBatchUnsampler", "inputs": {
                "model": ["1", 0], "samples": ["5", 0], "scheduler": "karras", "steps": 4, "denoise": 1.0, "seed": 7,
                "noise": "shared"}},
            "8": {"class_type": "LatentBridgeMixingSampler", "inputs": {
                "sampler": "uni_pc", "schedule": "cosine", "alpha_1": 3.0, "blend": "lerp", "start": 0.0, "stop": 1.0,
                "minimum": 0.0, "maximum": 1.0, "noise": "shared", "eta": 1.0, "noised_batch": ["7", 0]}},
            "9": {"class_type": "SamplerCustom", "inputs": {
                "model": ["1", 0], "add_noise": True, "noise_seed": 7, "cfg": 5.0, "positive": ["2", 0],
                "negative": ["3", 0], "sampler": ["8", 0], "sigmas": ["7", 1], "latent_image": ["6", 0]}},
            "10": {"class_type": "LatentBridgeLatentInfo", "inputs": {"samples": ["9", 0], "space": "sd1"}}},
        "bad_numbers_schedule": {
            "6": {"class_type": "LatentBridgeMixingSampler", "inputs": {
                "sampler": "lcm", "schedule": "cosine", "alpha_1": 3.0, "blend": "lerp", "start": 0.5, "stop": 0.4,
                "minimum": 0.0, "maximum": 1.0, "noise": "shared", "eta": 1.0}},
            "7": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "karras", "steps": 4,
                                                             "denoise": 1.0}},
            "8": {"class_type": "SamplerCustom", "inputs": {
                "model": ["1", 0], "add_noise": True, "noise_seed": 7, "cfg": 5.0, "positive": ["2", 0],
                "negative": ["3", 0], "sampler": ["6", 0], "sigmas": ["7", 0], "latent_image": ["5", 0]}},
            "9": {"class_type": "LatentBridgeLatentInfo", "inputs": {"samples": ["8", 0], "space": "sd1"}}},
        "bad_numbers_size": {
            "6": {"class_type": "LatentBridgeUpscale", "inputs": {
                "samples": ["5", 0], "method": "bicubic", "scale_by": 2.0, "width": 100, "height": 0, "space": "auto",
                "model": "auto", "diffusion_model": ["1", 0]}},
            "7": {"class_type": "LatentBridgeLatentInfo", "inputs": {"samples": ["6", 0], "space": "auto"}}},
    }
    return {name: {**BASE, **nodes} for name, nodes in out.items()}


def good_workflow() -> dict:
    return {**BASE, "6": {"class_type": "LatentBridgeLatentInfo", "inputs": {"samples": ["5", 0], "space": "auto",
                                                                          "model": ["1", 0]}}}


def run(runner: str, pack: str, base: Path, files: list[Path], summary: Path, timeout: int) -> dict:
    cmd = [sys.executable, runner, "--nodes", pack, "--base", str(base), "--summary-json", str(summary),
           "--timeout", str(timeout), *map(str, files)]
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
    return json.loads(summary.read_text())


def errors_of(result: dict) -> list[str]:
    messages = [m[1] for m in result.get("messages", []) if isinstance(m, list) and m[0] == "execution_error"]
    return [f"{m.get('node_type')}: {m.get('exception_type')}: {m.get('exception_message')}" for m in messages]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runner", required=True, help="run_workflow.py of the ComfyUI test harness")
    p.add_argument("--pack", required=True, help="the pack as ComfyUI loads it: a clone of this repository")
    p.add_argument("--work", required=True, type=Path, help="folder for workflows, the ComfyUI base and the report")
    p.add_argument("--samplers", default=",".join(s for s in SAMPLERS if s not in SLOW),
                   help="samplers to compare (default: all of ComfyUI 0.8 but dpm_adaptive)")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--cfg", type=float, default=1.0, help="1: one model evaluation per call (fast); any value works")
    p.add_argument("--tolerance", type=float, default=1e-5)
    p.add_argument("--timeout", type=int, default=3600)
    p.add_argument("--skip-equivalence", action="store_true")
    p.add_argument("--json", type=Path, help="write the report here")
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    report: dict = {"equivalence": {}, "bad": {}, "good_after_bad": None}
    files = []
    samplers = [s for s in a.samplers.split(",") if s]
    if not a.skip_equivalence:
        files.append(a.work / "equivalence.json")
        files[-1].write_text(json.dumps(equivalence(samplers, a.steps, a.cfg)))
    for name, wf in bad_workflows().items():
        files.append(a.work / f"bad_{name}.json")
        files[-1].write_text(json.dumps(wf))
    files.append(a.work / "good_after_bad.json")
    files[-1].write_text(json.dumps(good_workflow()))
    base = a.work / "comfy"
    summary = run(a.runner, a.pack, base, files, a.work / "summary.json", a.timeout)
    results = {Path(r["workflow"]).stem: r for r in summary["workflows"]}
    ok = True
    if not a.skip_equivalence:
        print(f"weight 0 against ComfyUI's KSampler ({a.steps} steps, karras, cfg {a.cfg:g}, 8x8 SD1.5 latent):")
        for name in samplers:
            # the counter right after the name: "core_euler_0..." never matches core_euler_ancestral_...
            core = glob.glob(str(base / "output" / "check" / f"core_{name}_0*.latent"))
            mixed = glob.glob(str(base / "output" / "check" / f"mixing_{name}_0*.latent"))
            change = sampler_steps.what_changes(name)
            if not core or not mixed:
                report["equivalence"][name] = {"error": "no latent saved"}
                ok = False
                print(f"  {name:32s} NO OUTPUT")
                continue
            x, y = (load_file(f[0])["latent_tensor"] for f in (core, mixed))
            diff = float((x - y).abs().max())
            kept = change is None
            passed = diff <= a.tolerance if kept else True
            ok &= passed
            report["equivalence"][name] = {"max_abs_diff": diff, "state_kept": kept, "changes": change,
                                           "latent_std": float(x.float().std()), "passed": passed}
            print(f"  {name:32s} max |diff| {diff:.3g}  " + ("state kept" if kept else f"changes: {change}")
                  + ("" if passed else "  FAILED"))
    print("bad workflows:")
    for name in bad_workflows():
        result = results.get(f"bad_{name}", {})
        errors = errors_of(result)
        clean = result.get("status") == "error" and errors and not any(CLI.search(e) for e in errors)
        ok &= bool(clean)
        report["bad"][name] = {"status": result.get("status"), "errors": errors, "clean": bool(clean)}
        print(f"  {name}: {result.get('status')} {'ok' if clean else 'FAILED'}")
        for e in errors:
            print(f"    {e}")
    good = results.get("good_after_bad", {}).get("status")
    report["good_after_bad"] = good
    ok &= good == "success"
    print(f"good workflow after them: {good}")
    if a.json:
        a.json.write_text(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
