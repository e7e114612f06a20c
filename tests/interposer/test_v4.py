import pytest
import torch
from safetensors.torch import save_file

from latentbridge import spaces
from latentbridge.errors import WeightsFormatError
from latentbridge.interposer import FusedV4, V4Config, V4Interposer, check_state_dict, load_file, v4_filename

from .helpers import known_weights, write_v4

PAIRS = [("v1", "xl"), ("xl", "v3"), ("v3", "v1"), ("fx", "v3"), ("ca", "v1")]


def test_v4_state_dict_has_the_published_keys_and_shapes():
    sd = V4Interposer(V4Config(4, 4)).state_dict()
    assert len(sd) == 147 == 8 + 11 * 12 + 5 + 2
    assert tuple(sd["head.short.weight"].shape) == (64, 4, 3, 3)
    assert tuple(sd["core.12.long.4.weight"].shape) == (64, 64, 3, 3)
    assert tuple(sd["core.13.running_var"].shape) == (64,)
    assert sd["core.13.num_batches_tracked"].dtype == torch.int64
    assert tuple(sd["tail.weight"].shape) == (4, 64, 3, 3)
    assert sum(v.numel() for k, v in sd.items() if "running" not in k and "num_batches" not in k) == 1_411_972
    assert sum(p.numel() for p in V4Interposer(V4Config(16, 16)).parameters()) == 1_432_720


@pytest.mark.parametrize("src,dst", PAIRS)
def test_v4_file_gives_the_reference_networks_output(reference, tmp_path, src, dst):
    path = write_v4(tmp_path, src, dst, seed=3)
    net, entry = load_file(path)
    a, b = spaces.get(src), spaces.get(dst)
    ref = reference.InterposerModel(ch_in=a.channels, ch_out=b.channels, scale=a.downscale / b.downscale)
    ref.eval()
    from safetensors.torch import load_file as read

    ref.load_state_dict(read(str(path)), strict=True)
    x = torch.randn(2, a.channels, 16, 12) * 4
    with torch.no_grad():
        want = ref(x)
        assert torch.equal(net(x), want)
        assert (FusedV4(net)(x) - want).abs().max() <= 1e-5 * float(want.abs().max())
    assert (entry.src, entry.dst, entry.arch, entry.domain_in) == (a.id, b.id, "v4", "raw")


@pytest.mark.parametrize("shape", [(1, 4, 32, 32), (3, 4, 5, 7), (1, 4, 1, 9), (2, 4, 2, 2)])
def test_fused_v4_equals_unfused_within_1e_5(shape):
    net = V4Interposer(V4Config(4, 16))
    net.load_state_dict(known_weights(net, seed=1))
    net.eval()
    x = torch.randn(shape) * 5
    with torch.no_grad():
        want, got = net(x), FusedV4(net)(x)
        assert (got - want).abs().max() <= 1e-5 * max(1.0, float(want.abs().max()))
        exact = FusedV4(net.double())(x.double())
        assert (exact - net(x.double())).abs().max() < 1e-10


def test_fused_v4_handles_the_half_scale_of_cascade_models():
    net = V4Interposer(V4Config(4, 4, scale=0.5))
    net.load_state_dict(known_weights(net))
    net.eval()
    x = torch.randn(1, 4, 20, 14)
    with torch.no_grad():
        assert FusedV4(net)(x).shape == net(x).shape == (1, 4, 10, 7)


def test_v4_file_with_other_keys_lists_the_difference(tmp_path):
    sd = known_weights(V4Interposer(V4Config(4, 4)))
    del sd["core.3.long.2.bias"]
    sd["core.3.extra.weight"] = torch.zeros(3)
    sd["core.5.norm.running_mean"] = torch.zeros(32)
    path = tmp_path / v4_filename("v1", "xl")
    save_file(sd, str(path))
    with pytest.raises(WeightsFormatError) as e:
        load_file(path)
    msg = str(e.value)
    assert "1 missing (core.3.long.2.bias)" in msg and "1 unexpected (core.3.extra.weight)" in msg
    assert "core.5.norm.running_mean (32,) != (64,)" in msg


def test_v4_file_with_wrong_channels_for_the_pair_is_refused(tmp_path):
    path = write_v4(tmp_path / "a", "v1", "xl")
    wrong = tmp_path / v4_filename("fx", "xl")
    wrong.write_bytes(path.read_bytes())
    with pytest.raises(WeightsFormatError, match="flux1 -> sdxl needs 16 -> 4"):
        load_file(wrong)


def test_check_state_dict_accepts_the_exact_layout():
    check_state_dict(V4Interposer(V4Config(16, 4, blocks=3)).state_dict(), V4Config(16, 4, blocks=3))
