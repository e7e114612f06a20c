"""The node table: stable ids, one category, tooltips everywhere, and the ways ComfyUI loads the pack."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

import latentbridge.integrations.comfyui as integration
from latentbridge.integrations.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, registry
from latentbridge.integrations.comfyui.node import CATEGORY

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[3]
PACK = ROOT / "src" / "latentbridge" / "integrations" / "comfyui"

# Ids saved in users' workflows: a released id is never renamed, removed or reused for another node.
RELEASED_IDS = {"LatentBridgeSaveLatent", "LatentBridgeLoadLatent", "LatentBridgeLatentInfo", "LatentBridgeInterposer",
                "LatentBridgePreview", "LatentBridgeTinyVAELoader", "LatentBridgeTinyVAEEncode", "LatentBridgeTinyVAEDecode",
                "LatentBridgeUpscale", "LatentBridgeBatchUnsampler", "LatentBridgeMixingSampler",
                "LatentBridgeMixingKSampler"}


def test_registry_keeps_every_released_node_id():
    assert RELEASED_IDS <= set(NODE_CLASS_MAPPINGS)
    assert all(re.fullmatch(r"LatentBridge[A-Z]\w+", node_id) for node_id in NODE_CLASS_MAPPINGS)


def test_registry_refuses_duplicate_ids():
    class Twin:
        NODE_ID, DISPLAY_NAME = "LatentBridgeSaveLatent", "twin"

    group = type(sys)("twin_group")
    group.NODES = (Twin,)
    with pytest.raises(RuntimeError, match="defined twice"):
        registry.node_mappings((*registry.GROUPS, group))


@pytest.mark.parametrize("node_id", sorted(NODE_CLASS_MAPPINGS))
def test_node_has_category_description_and_a_tooltip_on_every_input(node_id, comfy):
    cls = NODE_CLASS_MAPPINGS[node_id]
    assert cls.CATEGORY == CATEGORY
    assert cls.DESCRIPTION and NODE_DISPLAY_NAME_MAPPINGS[node_id].endswith("(latentbridge)")
    assert callable(getattr(cls(), cls.FUNCTION))
    inputs = cls.INPUT_TYPES()
    for section in ("required", "optional"):
        for name, spec in inputs.get(section, {}).items():
            assert len(spec) == 2 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
    if getattr(cls, "RETURN_TYPES", ()):
        assert len(getattr(cls, "OUTPUT_TOOLTIPS", ())) == len(cls.RETURN_TYPES)


def test_pack_folder_loads_as_a_top_level_module_like_custom_nodes():
    """ComfyUI imports a custom_nodes folder under a name of its own: absolute imports must carry the pack."""
    spec = importlib.util.spec_from_file_location("custom_nodes_latentbridge_probe", PACK / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.NODE_CLASS_MAPPINGS == NODE_CLASS_MAPPINGS


def test_pack_file_exports_the_mappings_and_calls_setup(monkeypatch):
    path = ROOT / "examples" / "comfyui" / "latentbridge_nodes.py"
    assert len([line for line in path.read_text().splitlines() if line.strip()]) == 2
    calls = []
    monkeypatch.setattr(integration, "setup", lambda: calls.append(1))
    spec = importlib.util.spec_from_file_location("latentbridge_nodes_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.NODE_DISPLAY_NAME_MAPPINGS == NODE_DISPLAY_NAME_MAPPINGS and calls == [1]


def _requirement_names(lines: list[str]) -> dict[str, str]:
    stripped = [line.split("#")[0].strip() for line in lines]
    return {re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower(): line for line in stripped if line}


def test_pack_requirements_never_list_torch_or_comfy():
    """ComfyUI-Manager pip-installs a custom_nodes folder's requirements.txt: it must not replace the user's torch."""
    names = _requirement_names((ROOT / "requirements.txt").read_text().splitlines())
    assert not set(names) & {"torch", "torchvision", "torchaudio", "comfy", "comfyui"}


def test_pack_requirements_are_the_projects_dependencies_but_torch():
    project = _requirement_names(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    project.pop("torch")
    assert _requirement_names((ROOT / "requirements.txt").read_text().splitlines()) == project


def _load_root_init(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_repository_root_loads_as_a_custom_nodes_folder_inside_comfyui(comfy, monkeypatch):
    """A clone in custom_nodes/ is imported through the repository's own __init__.py (ComfyUI has folder_paths)."""
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p) != ROOT / "src"])
    module = _load_root_init("custom_nodes_latentbridge_root_probe")
    assert module.NODE_CLASS_MAPPINGS == NODE_CLASS_MAPPINGS and str(ROOT / "src") in sys.path


def test_repository_root_init_does_nothing_outside_comfyui(monkeypatch):
    """pytest (which imports the root __init__.py as a package) and build tools get an empty module."""
    monkeypatch.delitem(sys.modules, "folder_paths", raising=False)
    before = list(sys.path)
    module = _load_root_init("latentbridge_root_probe")
    assert not hasattr(module, "NODE_CLASS_MAPPINGS") and sys.path == before


def test_core_never_imports_comfyui():
    comfy_import = re.compile(r"^\s*(?:import|from)\s+(?:comfy|comfy_extras|comfy_api|folder_paths|nodes)\b", re.M)
    core = [p for p in (ROOT / "src" / "latentbridge").rglob("*.py") if PACK not in p.parents]
    offenders = [str(p.relative_to(ROOT)) for p in core if comfy_import.search(p.read_text())]
    assert not offenders, f"core modules import ComfyUI: {offenders}"
