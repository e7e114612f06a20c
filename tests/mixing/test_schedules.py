import math

import pytest
import torch

from latentbridge import mixing
from latentbridge.errors import InputError


def _progress(k: int, steps: int, start: float, stop: float) -> float:
    return min(1.0, max(0.0, (k / steps - start) / (stop - start)))


@pytest.mark.parametrize("alpha_1", [0.5, 1.0, 2.4, 3.0, 7.0])
@pytest.mark.parametrize("stop", [0.5, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("steps", [1, 7, 20, 50])
def test_schedule_cosine_is_demofusion_corrected_formula(alpha_1, stop, steps):
    w = mixing.schedule("cosine", steps, alpha_1=alpha_1, stop=stop)
    want = [((1 + math.cos(math.pi * _progress(k, steps, 0.0, stop))) / 2) ** alpha_1 for k in range(steps)]
    assert w.shape == (steps,) and w.dtype == torch.float32
    assert torch.allclose(w.double(), torch.tensor(want, dtype=torch.float64), atol=1e-6)
    assert w[0] == 1.0  # the first step takes the noised copy whole


@pytest.mark.parametrize("alpha_1", [1.0, 2.4, 3.0])
def test_schedule_cosine_matches_demofusion_timestep_form(alpha_1):
    # DemoFusion's code: c1 = ((1 + cos(pi (T - t) / T)) / 2) ** alpha_1 for training timesteps t = T .. 0
    steps, train = 20, 1000
    ts = [train - k * train // steps for k in range(steps)]
    want = torch.tensor([((1 + math.cos(math.pi * (train - t) / train)) / 2) ** alpha_1 for t in ts])
    assert torch.allclose(mixing.schedule("cosine", steps, alpha_1=alpha_1), want.float(), atol=1e-6)


@pytest.mark.parametrize("alpha_1", [1.0, 2.4, 3.0])
@pytest.mark.parametrize("stop", [1.0, 2.0])
def test_schedule_cosine_mixer_is_the_iterative_mixers_orientation(alpha_1, stop):
    # the Iterative Mixer gives w_i = ((1 + cos(pi (S_eff - i) / S_eff)) / 2) ** alpha to the sampler; the copy gets 1 - w
    steps = 20
    s_eff = stop * steps
    w_sampler = [((1 + math.cos(math.pi * (s_eff - i) / s_eff)) / 2) ** alpha_1 for i in range(steps)]
    got = mixing.schedule("cosine_mixer", steps, alpha_1=alpha_1, stop=stop)
    assert torch.allclose(got.double(), 1 - torch.tensor(w_sampler, dtype=torch.float64), atol=1e-6)


def test_schedule_cosine_and_mixer_agree_only_at_alpha_1():
    one = [mixing.schedule(name, 20, alpha_1=1.0) for name in ("cosine", "cosine_mixer")]
    three = [mixing.schedule(name, 20, alpha_1=3.0) for name in ("cosine", "cosine_mixer")]
    assert torch.allclose(one[0], one[1], atol=1e-6)
    assert (three[1][1:] > three[0][1:]).all()  # the mixer keeps far more of the copy for alpha > 1
    # reference table (S = 20, alpha 2.4): mixer copy weight 0.8105 at step 10, DemoFusion 0.1895
    assert mixing.schedule("cosine_mixer", 20, alpha_1=2.4)[10].item() == pytest.approx(0.8105, abs=1e-4)
    assert mixing.schedule("cosine", 20, alpha_1=2.4)[10].item() == pytest.approx(0.1895, abs=1e-4)


@pytest.mark.parametrize("start,stop", [(0.0, 1.0), (0.2, 0.8), (0.1, 1.5)])
def test_schedule_linear_formula(start, stop):
    steps = 30
    want = [1 - _progress(k, steps, start, stop) for k in range(steps)]
    assert torch.allclose(mixing.schedule("linear", steps, start=start, stop=stop), torch.tensor(want), atol=1e-6)


@pytest.mark.parametrize("alpha_1", [0.4, 1.0, 2.4])
@pytest.mark.parametrize("stop", [1.0, 1.3])
def test_schedule_logistic_formula_runs_exactly_from_one_to_zero(alpha_1, stop):
    steps, k = 40, 5 * alpha_1

    def s(v: float) -> float:
        return 1 / (1 + math.exp(-v))

    want = [(s(k * (0.5 - _progress(i, steps, 0, stop))) - s(-k / 2)) / (s(k / 2) - s(-k / 2)) for i in range(steps)]
    got = mixing.schedule("logistic", steps, alpha_1=alpha_1, stop=stop)
    assert torch.allclose(got.double(), torch.tensor(want, dtype=torch.float64), atol=1e-6)
    assert got[0] == pytest.approx(1.0)
    assert mixing.schedule("logistic", steps, alpha_1=alpha_1, stop=0.5)[-1] == pytest.approx(0.0, abs=1e-6)


def test_schedule_stop_above_one_keeps_the_copy_until_the_last_step():
    assert mixing.schedule("cosine", 20, stop=1.0)[-1] < 1e-5
    assert mixing.schedule("cosine", 20, stop=2.0)[-1] > 0.05
    assert (mixing.schedule("linear", 20, stop=0.5)[10:] == 0).all()


def test_schedule_min_max_clamp_the_weights():
    plain = mixing.schedule("cosine", 25, alpha_1=2.0)
    clamped = mixing.schedule("cosine", 25, alpha_1=2.0, minimum=0.1, maximum=0.8)
    assert torch.equal(clamped, plain.clamp(0.1, 0.8))
    assert clamped.min() == pytest.approx(0.1) and clamped.max() == pytest.approx(0.8)


@pytest.mark.parametrize("kwargs,match", [
    ({"alpha_1": 0.0}, "alpha_1 must be > 0"),
    ({"alpha_1": -1.0}, "alpha_1 must be > 0"),
    ({"alpha_1": float("nan")}, "alpha_1 must be > 0"),
    ({"start": -0.1}, "start is a fraction"),
    ({"start": 1.0}, "start is a fraction"),
    ({"stop": 0.0}, "stop must be a fraction greater than start"),
    ({"start": 0.5, "stop": 0.4}, "stop must be a fraction greater than start"),
    ({"minimum": 0.6, "maximum": 0.5}, "minimum <= maximum"),
    ({"maximum": 1.5}, "minimum <= maximum"),
])
def test_schedule_bad_options_say_what_to_change(kwargs, match):
    with pytest.raises(InputError, match=match):
        mixing.schedule("cosine", 20, **kwargs)


def test_schedule_bad_name_and_steps():
    with pytest.raises(InputError, match="use one of cosine"):
        mixing.schedule("cosnie", 20)
    for steps in (0, -3, 2.5, True):
        with pytest.raises(InputError, match="steps must be a positive integer"):
            mixing.schedule("cosine", steps)
