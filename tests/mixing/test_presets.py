import pytest

from latentbridge import mixing, spaces
from latentbridge.errors import InputError


@pytest.mark.parametrize("name", sorted(mixing.PRESETS))
def test_preset_settings_are_valid(name):
    p = mixing.PRESETS[name]
    prediction = mixing.prediction_of(name)
    mixing.schedule(p.schedule, p.steps, alpha_1=p.alpha_1)
    assert mixing.samplers.check_sampler(p.sampler, prediction) == p.sampler
    assert p.blend in mixing.BLENDS and 0 < p.denoise <= 1 and 0 <= p.cleanup < 1


@pytest.mark.parametrize("space", spaces.all(), ids=lambda s: s.id)
def test_preset_exists_for_every_space_with_a_sampler_for_its_kind(space):
    p = mixing.preset(space.id)
    mixing.samplers.check_sampler(p.sampler, space.prediction)


def test_preset_by_alias_kind_and_unknown():
    assert mixing.preset("sd15") is mixing.PRESETS["sd1"]
    assert mixing.preset("flow").sampler == "flow_euler"
    with pytest.raises(InputError, match="no mixing preset"):
        mixing.preset("sd9")
