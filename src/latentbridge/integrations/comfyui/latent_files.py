"""Save Latent and Load Latent: ComfyUI ``.latent`` files that also record the latent space.

Saved files are what ComfyUI's own SaveLatent writes (safetensors with ``latent_tensor`` and the
``latent_format_version_0`` marker, the prompt and workflow in the metadata), so the stock Load Latent reads them;
they also carry ``latentbridge.space``/``domain`` metadata and the LATENT's ``noise_mask`` and ``batch_index``.
Load Latent lists latent files in ComfyUI's ``input`` folder and, annotated ``[output]``, in ``output/latents``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from latentbridge import io, spaces
from latentbridge.errors import InputError
from latentbridge.integrations.comfyui.common import AUTO, NODE_HINT, known_space, latent_samples, new_latent, stated_space
from latentbridge.integrations.comfyui.models import folder_paths
from latentbridge.integrations.comfyui.node import Node, latent_input, node_inputs, space_input
from latentbridge.integrations.comfyui.words import node_errors
from latentbridge.io.latents import FORMATS

OUTPUT_SUBFOLDER = "latents"  # where Save Latent's default prefix writes, and where Load Latent looks in output/
OUTPUT_ANNOTATION = " [output]"  # ComfyUI's suffix for a file name relative to the output folder
SUFFIXES = tuple(FORMATS)  # every latent file type latentbridge.io reads


def list_latent_files() -> list[str]:
    """Latent files in ComfyUI's input folder (relative names), then those in output/latents (annotated)."""
    fp = folder_paths()
    out_root = Path(fp.get_output_directory())
    return (_latent_files_under(Path(fp.get_input_directory()))
            + [name + OUTPUT_ANNOTATION for name in _latent_files_under(out_root / OUTPUT_SUBFOLDER, out_root)])


def _latent_files_under(folder: Path, relative_to: Path | None = None) -> list[str]:
    """Sorted posix paths of the latent files below ``folder`` (hidden files such as partial writes skipped)."""
    if not folder.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath, f).relative_to(relative_to or folder).as_posix() for f in filenames
                  if not f.startswith(".") and Path(f).suffix.lower() in SUFFIXES]
    return sorted(found)


def latent_file_path(name: str) -> Path:
    """The file a Load Latent choice names (``name`` or ``name [output]``), checked to exist inside its folder."""
    fp = folder_paths()
    bare, base = fp.annotated_filepath(name)
    where = name[len(bare):].strip(" []") or "input"  # the folder an annotation such as " [output]" names
    base = base or fp.get_input_directory()
    path = Path(os.path.normpath(os.path.join(base, bare)))
    if os.path.commonpath([os.path.abspath(base), os.path.abspath(path)]) != os.path.abspath(base):
        raise InputError(f"latent file {name!r} points outside ComfyUI's {where} folder: give a path inside it")
    if not path.is_file():
        raise InputError(f"no latent file {bare!r} in ComfyUI's {where} folder ({base}): put .latent files in the "
                         f"input folder or save them into output/{OUTPUT_SUBFOLDER} with Save Latent, then refresh")
    return path


def _extras(latent: dict) -> dict[str, torch.Tensor]:
    """The LATENT's ``noise_mask`` and ``batch_index`` as tensors for the file."""
    extras = {}
    if isinstance(latent.get("noise_mask"), torch.Tensor):
        extras["noise_mask"] = latent["noise_mask"]
    if latent.get("batch_index") is not None:
        extras["batch_index"] = torch.as_tensor([int(i) for i in latent["batch_index"]], dtype=torch.int64)
    return extras


def _workflow_metadata(prompt: Any, extra_pnginfo: Any) -> dict[str, str]:
    """The prompt and workflow, as ComfyUI's SaveLatent stores them, unless ComfyUI runs with --disable-metadata."""
    try:
        from comfy.cli_args import args
    except ImportError:  # outside ComfyUI
        args = None
    if getattr(args, "disable_metadata", False):
        return {}
    meta = {"prompt": json.dumps(prompt)} if prompt is not None else {}
    meta.update({k: json.dumps(v) for k, v in (extra_pnginfo or {}).items()})
    return meta


def _guess(samples: torch.Tensor) -> str:
    """What detection would say, for a message: a guess is shown, never recorded."""
    found = spaces.detect(samples, {"domain": "raw"})
    return f"no latentbridge node stated it and 'space' is auto; detection: {found.summary}"


class SaveLatent(Node):
    NODE_ID = "LatentBridgeSaveLatent"
    DISPLAY_NAME = "Save Latent (latentbridge)"
    DESCRIPTION = ("Write a LATENT into ComfyUI's output folder as a .latent file that the stock Load Latent reads, "
                   "recording its latent space, noise_mask and batch_index.")
    REQUIRED = node_inputs({
        "samples": latent_input("save", note=None),
        "filename_prefix": ("STRING", {"default": f"{OUTPUT_SUBFOLDER}/latentbridge", "tooltip":
                            "file name inside ComfyUI's output folder; a counter and .latent are added. "
                            f"Files under {OUTPUT_SUBFOLDER}/ are listed by Load Latent"}),
        "space": space_input("latent space recorded in the file. auto: the space a latentbridge node "
                             "stated (e.g. Load Latent); detection is only shown, never recorded"),
    })
    HIDDEN = node_inputs({"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"})
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True

    @node_errors()
    def save(self, samples: dict, filename_prefix: str, space: str = AUTO, prompt: Any = None,
             extra_pnginfo: Any = None) -> dict:
        tensor = latent_samples(samples)
        sp, how = known_space(tensor, space, stated_space(samples))
        fp = folder_paths()
        out_dir = fp.get_output_directory()
        target = os.path.abspath(os.path.join(out_dir, filename_prefix))
        if os.path.commonpath([os.path.abspath(out_dir), target]) != os.path.abspath(out_dir):
            raise InputError(f"filename_prefix {filename_prefix!r} points outside ComfyUI's output folder: "
                             f"use a relative prefix such as {OUTPUT_SUBFOLDER}/name")
        folder, name, counter, subfolder, _ = fp.get_save_image_path(filename_prefix, out_dir)
        filename = f"{name}_{counter:05}_.latent"
        metadata = _workflow_metadata(prompt, extra_pnginfo)
        if sp is not None:
            metadata["latentbridge.space_source"] = how
        io.save_latent(Path(folder, filename), tensor, space=sp.id if sp else None, domain="raw",
                       metadata=metadata, extras=_extras(samples))
        shown = f"{subfolder}/{filename}" if subfolder else filename
        recorded = f"space {sp.id} ({how})" if sp else f"no space recorded ({_guess(tensor)})"
        text = f"saved {shown}: {tuple(tensor.shape)} {str(tensor.dtype).removeprefix('torch.')}, {recorded}"
        return {"ui": {"latents": [{"filename": filename, "subfolder": subfolder, "type": "output"}], "text": [text]}}


class LoadLatent(Node):
    NODE_ID = "LatentBridgeLoadLatent"
    DISPLAY_NAME = "Load Latent (latentbridge)"
    DESCRIPTION = ("Read a latent file (.latent from ComfyUI or latentbridge, .safetensors, .npy, .pt) from ComfyUI's "
                   "input folder or output/latents, with the latent space its metadata records.")
    REQUIRED = node_inputs({
        "latent": (list_latent_files, {"tooltip": "latent file from ComfyUI's input folder, or from "
                   f"output/{OUTPUT_SUBFOLDER} (marked [output]); refresh to see new files"}),
        "space": space_input("latent space of the file. auto: what the file's metadata records (nothing "
                             "is guessed); choose one for files that do not say"),
    })
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("the latent (raw domain, float32) with its noise_mask and batch_index, and its space when known",)
    FUNCTION = "load"

    @classmethod
    def VALIDATE_INPUTS(cls, latent: str) -> bool | str:
        try:
            latent_file_path(latent)
        except InputError as e:
            return str(e)
        return True

    @classmethod
    def IS_CHANGED(cls, latent: str, **_: Any) -> str:
        try:
            stat = latent_file_path(latent).stat()
        except InputError:
            return latent  # VALIDATE_INPUTS reports the problem
        return f"{stat.st_mtime_ns}:{stat.st_size}"

    @node_errors()
    def load(self, latent: str, space: str = AUTO) -> tuple[dict]:
        path = latent_file_path(latent)
        lf = io.load_latent(path)
        tensor = lf.tensor.float()
        stated = spaces.get(lf.space) if lf.space else None
        domain = lf.domain or "raw"  # files that do not say are read as ComfyUI's LATENTs: raw
        if domain != "raw":
            known = spaces.get(space) if space != AUTO else stated
            if known is None:
                raise InputError(f"{path.name} holds a latent in the {domain} domain but does not say its space; "
                                 f"{NODE_HINT}")
            tensor = spaces.convert_domain(tensor, known, domain, "raw")
        sp, _ = known_space(tensor, space, stated)
        out: dict[str, Any] = {"samples": tensor}
        if "noise_mask" in lf.extras:
            out["noise_mask"] = lf.extras["noise_mask"]
        if "batch_index" in lf.extras:
            out["batch_index"] = [int(i) for i in lf.extras["batch_index"].flatten()]
        return (new_latent(out, tensor, sp),)


NODES = (SaveLatent, LoadLatent)
