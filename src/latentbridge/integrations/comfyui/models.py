"""ComfyUI's folders for the pack: model folders through ``folder_paths`` (extra_model_paths.yaml included).

The pack reads weights from ComfyUI's ``vae_approx`` (tiny autoencoders, previewers) and ``latent_upscale_models``
folders and from an ``interposers`` folder it registers (``models/interposers``, plus any ``interposers:`` entry of
extra_model_paths.yaml). Each of these folders is also handed to :func:`latentbridge.weights.add_search_dir` under a
``folder`` equal to the folder's name, so core code that resolves a weight with ``folder="vae_approx"``,
``"latent_upscale_models"`` or ``"interposers"`` finds what the user put in ComfyUI's folders.

``folder_paths`` is ComfyUI's module; it is imported only when a function here runs, so the pack imports (and its
logic is tested) without ComfyUI.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from latentbridge import weights
from latentbridge.errors import InputError, WeightsNotFoundError

VAE_APPROX = "vae_approx"
LATENT_UPSCALE = "latent_upscale_models"
INTERPOSERS = "interposers"
MODEL_FOLDERS = (VAE_APPROX, LATENT_UPSCALE, INTERPOSERS)  # ComfyUI folder name = latentbridge.weights kind
OWN_FOLDERS = (INTERPOSERS,)  # folders ComfyUI does not define itself: the pack registers them


def folder_paths() -> ModuleType:
    """ComfyUI's ``folder_paths`` module; InputError outside ComfyUI."""
    try:
        import folder_paths as module
    except ImportError:
        raise InputError("this node needs ComfyUI's folder_paths module: run it inside ComfyUI") from None
    return module


def register_model_folders(fp: ModuleType | None = None) -> dict[str, list[str]]:
    """Register the pack's own model folders with ComfyUI and every model folder with latentbridge.weights.

    Idempotent. Does nothing outside ComfyUI. Returns the folders of each kind, in ComfyUI's search order.
    """
    if fp is None:
        try:
            fp = folder_paths()
        except InputError:
            return {}
    for name in OWN_FOLDERS:
        _ensure_folder(fp, name)
    found = {}
    for name in MODEL_FOLDERS:
        found[name] = fp.get_folder_paths(name)
        for path in found[name]:
            weights.add_search_dir(path, folder=name)
    return found


def _ensure_folder(fp: ModuleType, name: str) -> None:
    """Add ``models/<name>`` for weight files; keep folders that extra_model_paths.yaml named before it (it loads
    before custom nodes, and ComfyUI then lists them with no extension filter)."""
    default = os.path.join(fp.models_dir, name)
    paths = list(fp.folder_names_and_paths[name][0]) if name in fp.folder_names_and_paths else []
    if default not in paths:
        paths.append(default)
    fp.folder_names_and_paths[name] = (paths, set(fp.supported_pt_extensions))


def model_files(kind: str) -> list[str]:
    """The weight files ComfyUI lists for ``kind`` (names relative to their folder, for a COMBO input)."""
    return folder_paths().get_filename_list(kind)


def model_path(kind: str, filename: str) -> Path:
    """The full path of ``filename`` in ComfyUI's ``kind`` folders; WeightsNotFoundError names them."""
    fp = folder_paths()
    register_model_folders(fp)
    found = fp.get_full_path(kind, filename)
    if found is None:
        where = ", ".join(fp.get_folder_paths(kind)) or f"(no {kind} folder is configured)"
        raise WeightsNotFoundError(f"{filename} is not in ComfyUI's {kind} folders ({where}): put the file there, "
                                   f"or name its folder under '{kind}:' in extra_model_paths.yaml, then refresh")
    return Path(found)
