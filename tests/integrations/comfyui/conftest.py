"""A stand-in for ComfyUI's ``folder_paths`` module, so the nodes' logic is tested without ComfyUI.

It keeps the parts of the real module's behaviour the pack relies on (ComfyUI 0.8): input/output folders, the
``name [output]`` annotation, the counter of ``get_save_image_path``, and model folders as
``folder_names_and_paths[name] = ([paths], extensions)`` where ``add_model_folder_path`` creates unknown names with
an empty extension set, as extra_model_paths.yaml does before custom nodes load.
"""

from __future__ import annotations

import os
import re
import sys
import types
from pathlib import Path

import pytest

from latentbridge import weights

SUPPORTED = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}


def make_folder_paths(base: Path) -> types.ModuleType:
    fp = types.ModuleType("folder_paths")
    fp.base_path = str(base)
    fp.models_dir = str(base / "models")
    fp.supported_pt_extensions = set(SUPPORTED)
    fp.folder_names_and_paths = {name: ([str(base / "models" / name)], set(SUPPORTED))
                                 for name in ("checkpoints", "vae_approx", "latent_upscale_models")}
    folders = {"input": base / "input", "output": base / "output", "temp": base / "temp"}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)

    fp.get_input_directory = lambda: str(folders["input"])
    fp.get_output_directory = lambda: str(folders["output"])

    def annotated_filepath(name):
        for kind, folder in folders.items():
            if name.endswith(f"[{kind}]"):
                return name[: -len(kind) - 3], str(folder)
        return name, None

    def add_model_folder_path(name, path, is_default=False):
        if name not in fp.folder_names_and_paths:
            fp.folder_names_and_paths[name] = ([path], set())
            return
        paths = fp.folder_names_and_paths[name][0]
        if path not in paths:
            paths.insert(0, path) if is_default else paths.append(path)

    def get_full_path(name, filename):
        for folder in fp.folder_names_and_paths.get(name, ([], set()))[0]:
            if os.path.isfile(os.path.join(folder, filename)):
                return os.path.join(folder, filename)
        return None

    def get_filename_list(name):
        paths, exts = fp.folder_names_and_paths[name]
        return sorted({str(p.relative_to(folder)) for folder in map(Path, paths) if folder.is_dir()
                       for p in folder.rglob("*") if p.is_file() and (not exts or p.suffix in exts)})

    def get_save_image_path(prefix, output_dir, image_width=0, image_height=0):
        subfolder, name = os.path.dirname(os.path.normpath(prefix)), os.path.basename(os.path.normpath(prefix))
        folder = os.path.join(output_dir, subfolder)
        os.makedirs(folder, exist_ok=True)
        pattern = re.compile(re.escape(name) + r"_(\d+)_")
        counters = [int(m.group(1)) for f in os.listdir(folder) if (m := pattern.match(f))]
        return folder, name, max(counters, default=0) + 1, subfolder, prefix

    fp.annotated_filepath = annotated_filepath
    fp.add_model_folder_path = add_model_folder_path
    fp.get_folder_paths = lambda name: list(fp.folder_names_and_paths[name][0])
    fp.get_full_path = get_full_path
    fp.get_filename_list = get_filename_list
    fp.get_save_image_path = get_save_image_path
    return fp


@pytest.fixture(autouse=True)
def _fresh_weight_dirs(monkeypatch):
    """Folders registered with latentbridge.weights by one test never leak into another."""
    monkeypatch.setattr(weights, "_registered", [])


@pytest.fixture
def comfy(tmp_path, monkeypatch) -> types.ModuleType:
    """A fake ``folder_paths`` with input/, output/ and models/ under tmp_path, importable as ComfyUI's."""
    fp = make_folder_paths(tmp_path / "comfyui")
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    return fp


@pytest.fixture
def fake_comfy(monkeypatch):
    """ComfyUI's sampling modules replaced by the small stand-in in fake_comfy.py."""
    from tests.integrations.comfyui import fake_comfy as module

    module.install(monkeypatch)
    return module
