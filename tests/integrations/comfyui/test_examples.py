"""The example workflows stay in step with the nodes (they are run in a real ComfyUI by hand, see their README)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from latentbridge.integrations.comfyui import NODE_CLASS_MAPPINGS

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "comfyui"
WORKFLOWS = sorted(EXAMPLES.glob("*.json"))


def pack_nodes(workflow: dict) -> list[tuple[str, dict]]:
    return [(node["class_type"], node["inputs"]) for node in workflow.values()
            if node["class_type"].startswith("LatentBridge")]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_example_workflow_is_api_format_with_known_pack_inputs(path, comfy):
    workflow = json.loads(path.read_text())
    assert all(set(node) == {"class_type", "inputs"} for node in workflow.values()), "export it with 'Export (API)'"
    for class_type, inputs in pack_nodes(workflow):
        spec = NODE_CLASS_MAPPINGS[class_type].INPUT_TYPES()
        known = {**spec["required"], **spec.get("optional", {})}
        assert set(spec["required"]) <= set(inputs) <= set(known), f"{path.name}: {class_type} inputs {sorted(inputs)}"


def test_every_pack_node_appears_in_an_example_workflow():
    used = {class_type for path in WORKFLOWS for class_type, _ in pack_nodes(json.loads(path.read_text()))}
    assert set(NODE_CLASS_MAPPINGS) <= used
