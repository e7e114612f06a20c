from pathlib import Path

import pytest

from latentbridge.errors import InputError
from latentbridge.interposer import ModelEntry, plan, reachable, v4_entry
from latentbridge.weights import HubFile

DISK = Path("/models")


def hub(name: str) -> HubFile:
    return HubFile("city96/SD-Latent-Interposer", name, "v4.0")


def declared() -> list[ModelEntry]:
    return [
        v4_entry("flux1", "sdxl", DISK / "fx-to-xl.safetensors"),
        v4_entry("sdxl", "sd1", DISK / "xl-to-v1.safetensors"),
        v4_entry("flux1", "sd1", hub("fx-to-v1_interposer-v4.0.safetensors")),
        v4_entry("sd1", "sd3", DISK / "v1-to-v3.safetensors"),
        ModelEntry("flux2", "sana", "bridge", DISK / "f2s.safetensors", "taesd", "taesd", 1e5),
        ModelEntry("sana", "flux2", "bridge", DISK / "s2f.safetensors", "taesd", "taesd", 2e5),
    ]


def test_plan_takes_a_direct_model_over_a_chain_even_if_it_must_be_downloaded():
    route = plan("flux1", "sd1", models=declared())
    assert [(s.src, s.dst) for s in route.steps] == [("flux1", "sd1")]
    assert route.downloads == 1


def test_plan_chains_models_when_no_direct_one_exists():
    route = plan("sdxl", "sd3", models=declared())
    assert [(s.src, s.dst) for s in route.steps] == [("sdxl", "sd1"), ("sd1", "sd3")]
    assert route.cost()[0] == 2
    text = route.describe()
    assert "sdxl -> sd1 -> sd3" in text and "GFLOP per image megapixel" in text and "chain" in text


def test_plan_prefers_a_local_file_between_equal_hop_counts():
    models = [*declared(), v4_entry("flux1", "sd3", hub("fx-to-v3_interposer-v4.0.safetensors")),
              v4_entry("flux1", "sd3", DISK / "fx-to-v3_interposer-v4.0.safetensors")]
    route = plan("fx", "v3", models=models)
    assert route.hops == 1 and route.steps[0].local


def test_plan_accepts_aliases_and_codes():
    assert plan("fx", "xl", models=declared()).steps[0].location == DISK / "fx-to-xl.safetensors"


def test_plan_same_space_needs_no_model():
    route = plan("flux2", "Flux2", models=[])
    assert route.hops == 0 and "same space" in route.describe()


def test_plan_states_its_expected_cost():
    route = plan("flux2", "sana", models=declared())
    assert route.gflops_per_megapixel() == pytest.approx(1e5 * 1e6 / 64 / 1e9)


def test_impossible_route_lists_what_is_possible():
    with pytest.raises(InputError) as e:
        plan("sana", "sd1", models=declared())
    msg = str(e.value)
    assert "no interposer route from sana to sd1" in msg
    assert "flux2 -> sana" in msg and "flux1 -> sd1, sd3, sdxl" in msg


def test_reachable_follows_chains():
    reach = reachable(declared())
    assert reach["flux1"] == {"sdxl", "sd1", "sd3"} and reach["sana"] == {"flux2"}
