"""Downloads from a live server that answers like the Hugging Face file endpoint.

Every test runs the public API or the CLI in a fresh process with ``HF_ENDPOINT`` at the local server and an
empty ``HF_HOME``, as a user's process would: huggingface_hub reads both when it is imported, and nothing here
patches it or mocks a download.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from latentbridge import spaces
from latentbridge.interposer import V4_PAIRS, load_file, v4_filename
from latentbridge.interposer.models import V4_REPO, V4_SUBFOLDER
from latentbridge.tiny import layouts

from .contract import run_cli_process
from .hub_server import Running
from .interposer.helpers import write_bridge, write_v4


@pytest.fixture
def server():
    running = Running()
    yield running
    running.close()


@pytest.fixture
def user(tmp_path, server):
    """The environment of a user's process: the local hub, an empty cache, downloads on."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "LATENTBRIDGE_", "HUGGINGFACE_")) and k != "XDG_CACHE_HOME"}
    env.update(HF_ENDPOINT=server.url, HF_HOME=str(tmp_path / "hf-home"), XDG_CACHE_HOME=str(tmp_path / "xdg"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", LATENTBRIDGE_HUB_TIMEOUT="5")
    return env


def run_python(code: str, env: dict[str, str], *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=300)


def cache_files(env: dict[str, str]) -> list[Path]:
    """Every file a later run could take for a downloaded weight (blobs in progress excluded)."""
    snapshots = Path(env["HF_HOME"]) / "hub"
    return sorted(p for p in snapshots.rglob("snapshots/**/*") if p.is_file())


def publish_v4(server, tmp_path: Path, src: str, dst: str, seed: int = 0) -> Path:
    path = write_v4(tmp_path / "published" / V4_SUBFOLDER, src, dst, seed)
    server.hub.add(V4_REPO, f"{V4_SUBFOLDER}/{path.name}", path)
    return path


CONVERT = """
import sys, torch
from latentbridge.interposer import convert
x = torch.load(sys.argv[1])
torch.save(convert(x, sys.argv[3], sys.argv[4], domain=sys.argv[5]), sys.argv[2])
"""


def test_convert_sdxl_to_sd1_downloads_the_published_v4_file_then_reuses_the_cache(tmp_path, server, user):
    published = publish_v4(server, tmp_path, "xl", "v1")
    x = torch.randn(1, 4, 16, 16)
    torch.save(x, tmp_path / "x.pt")
    done = run_python(CONVERT, user, tmp_path / "x.pt", tmp_path / "y.pt", "sdxl", "sd1", "raw")
    assert done.returncode == 0, done.stderr
    net, _ = load_file(published)
    with torch.no_grad():
        want = net(x)
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), want, atol=1e-4, rtol=0)
    assert server.hub.count("GET") == 1 and [p.name for p in cache_files(user)] == [published.name]

    before = server.hub.count()
    again = run_python(CONVERT, user, tmp_path / "x.pt", tmp_path / "y2.pt", "sdxl", "sd1", "raw")
    assert again.returncode == 0, again.stderr
    assert server.hub.count() == before, "a second run asked the hub again instead of using its cache"
    assert torch.equal(torch.load(tmp_path / "y2.pt"), torch.load(tmp_path / "y.pt"))


def test_every_published_v4_pair_downloads_by_its_name_and_subfolder(tmp_path, server, user):
    files = {(a, b): publish_v4(server, tmp_path, a, b, seed=i) for i, (a, b) in enumerate(V4_PAIRS)}  # distinct bytes
    code = """
import sys, torch
from latentbridge import spaces
from latentbridge.interposer import convert, V4_PAIRS
out = {}
for a, b in V4_PAIRS:
    s = spaces.get(a)
    torch.manual_seed(0)
    x = torch.randn(1, s.channels, 8, 8)
    out[f"{a}-{b}"] = convert(x, a, b, domain="raw")
torch.save(out, sys.argv[1])
"""
    done = run_python(code, user, tmp_path / "out.pt")
    assert done.returncode == 0, done.stderr
    got = torch.load(tmp_path / "out.pt")
    from latentbridge import spaces

    for (a, b), path in files.items():
        torch.manual_seed(0)
        x = torch.randn(1, spaces.get(a).channels, 8, 8)
        net, _ = load_file(path)
        with torch.no_grad():
            torch.testing.assert_close(got[f"{a}-{b}"], net(x), atol=1e-4, rtol=0)
    assert server.hub.count("GET") == len(V4_PAIRS)
    wanted = {f"/{V4_REPO}/resolve/main/{V4_SUBFOLDER}/{v4_filename(a, b)}" for a, b in V4_PAIRS}
    assert {p for m, p in server.hub.requests if m == "GET"} == wanted


def test_a_multi_hop_route_downloads_only_the_hop_it_lacks(tmp_path, server, user):
    published = publish_v4(server, tmp_path, "xl", "v1")
    local = tmp_path / "models"
    write_bridge(local, "sana", "sdxl", domain="raw")
    user["LATENTBRIDGE_MODELS"] = str(local)
    x = torch.randn(1, 32, 4, 4)
    torch.save(x, tmp_path / "x.pt")
    done = run_python(CONVERT, user, tmp_path / "x.pt", tmp_path / "y.pt", "sana", "sd1", "raw")
    assert done.returncode == 0, done.stderr
    first, _ = load_file(local / "sana-to-sdxl.safetensors")
    second, _ = load_file(published)
    with torch.no_grad():
        want = second(first(x))
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), want, atol=1e-4, rtol=0)
    assert server.hub.count("GET") == 1


def test_discovery_skips_a_repo_the_cache_lacks_and_finds_its_file_once_downloaded(tmp_path, server, user):
    publish_v4(server, tmp_path, "xl", "v1")
    code = """
from pathlib import Path
from latentbridge import hub
from latentbridge.interposer.models import V4_REPO, V4_SUBFOLDER, discover, v4_filename
def where():
    return ["file" if isinstance(e.location, Path) else "hub" for e in discover() if (e.src, e.dst) == ("sdxl", "sd1")]
print(hub.repo_cached(V4_REPO), where())
hub.download(hub.HubFile(V4_REPO, v4_filename("xl", "v1"), V4_SUBFOLDER))
print(hub.repo_cached(V4_REPO), where())
"""
    done = run_python(code, user)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["False ['hub']", "True ['file']"]
    assert server.hub.count("GET") == 1


def test_convert_dry_run_names_the_download_and_makes_no_request(tmp_path, server, user):
    publish_v4(server, tmp_path, "xl", "v1")
    from latentbridge import io

    latent = io.save_latent(tmp_path / "a.safetensors", torch.randn(1, 4, 8, 8), space="sdxl", domain="raw")
    done = run_cli_process("convert", latent, "--to", "sd1", "--dry-run", env=user)
    assert done.code == 0, done.err
    assert f"hf://{V4_REPO}/{V4_SUBFOLDER}/xl-to-v1_interposer-v4.0.safetensors" in done.out
    assert "download" in done.out and server.hub.count() == 0


def diffusers_tiny_file(path: Path, latent_channels: int, variant: str = "standard") -> Path:
    """A random-weight combined file in the diffusers AutoencoderTiny layout (what the hub repos publish)."""
    torch.manual_seed(1)
    tensors = {}
    for role, shift in (("encoder", 0), ("decoder", 1)):
        for key, value in layouts.build(role, variant, latent_channels).state_dict().items():
            index, rest = key.split(".", 1)
            tensors[f"{role}.layers.{int(index) - shift}.{rest}"] = torch.randn_like(value) * 0.05
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


TINY = """
import sys, torch
from latentbridge import tiny
m = tiny.load(sys.argv[2])
torch.manual_seed(0)
z = torch.randn(1, m.latent_channels, 4, 4)
out = {"decoded": m.decode(z)} if m.has_decoder else {}
if m.has_encoder:
    out["encoded"] = m.encode(torch.rand(1, 3, 32, 32))
torch.save(out, sys.argv[1])
"""

PUBLISHED = [n for n in spaces.tiny_names(video=False) if spaces.tiny_model(n)[0].hub]  # every tiny HubFile


def hub_file(name: str):
    return spaces.tiny_model(name)[0].hub


@pytest.mark.parametrize("name", PUBLISHED)
def test_tiny_autoencoders_by_name_download_their_published_combined_file(tmp_path, server, user, name):
    model, space = spaces.tiny_model(name)
    file = model.hub
    local = diffusers_tiny_file(tmp_path / "published" / file.filename, space.taesd_channels, model.variant)
    server.hub.add(file.repo_id, file.path, local)
    done = run_python(TINY, user, tmp_path / "out.pt", name)
    assert done.returncode == 0, done.stderr
    got = torch.load(tmp_path / "out.pt")
    from latentbridge import tiny

    m = tiny.load(local)
    torch.manual_seed(0)
    z = torch.randn(1, m.latent_channels, 4, 4)
    torch.testing.assert_close(got["decoded"], m.decode(z), atol=1e-4, rtol=0)
    torch.testing.assert_close(got["encoded"], m.encode(torch.rand(1, 3, 32, 32)), atol=1e-4, rtol=0)
    assert server.hub.count("GET") == 1


def test_one_half_by_name_comes_from_the_combined_file_and_the_cache_serves_the_other(tmp_path, server, user):
    file = hub_file("taef1")
    server.hub.add(file.repo_id, file.path, diffusers_tiny_file(tmp_path / "p" / file.filename, 16))
    done = run_python(TINY, user, tmp_path / "out.pt", "taef1_decoder")
    assert done.returncode == 0, done.stderr
    assert set(torch.load(tmp_path / "out.pt")) == {"decoded"}
    before = server.hub.count()
    again = run_python(TINY, user, tmp_path / "out2.pt", "taef1_encoder")
    assert again.returncode == 0, again.stderr
    assert set(torch.load(tmp_path / "out2.pt")) == {"encoded"} and server.hub.count() == before


def test_offline_mode_makes_no_request_and_says_so(tmp_path, server, user):
    publish_v4(server, tmp_path, "xl", "v1")
    user["HF_HUB_OFFLINE"] = "1"
    from latentbridge import io

    latent = io.save_latent(tmp_path / "a.safetensors", torch.randn(1, 4, 8, 8), space="sdxl", domain="raw")
    done = run_cli_process("decode", latent, "--model", "taesdxl", "-o", tmp_path / "a.png", env=user)
    assert done.code == 2 and "offline" in done.err and len(done.err.strip().splitlines()) == 1, done.err
    assert server.hub.count() == 0 and not (tmp_path / "a.png").exists()


def decode_with(name: str, tmp_path: Path, env: dict[str, str]):
    from latentbridge import io

    latent = io.save_latent(tmp_path / "a.safetensors", torch.randn(1, 16, 4, 4), space="flux1", domain="raw",
                            overwrite=True)
    return run_cli_process("decode", latent, "--model", name, "-o", tmp_path / "a.png", env=env)


@pytest.mark.parametrize("failure", [{"status": 404}, {"status": 500}, {"drop": True}], ids=["404", "500", "drop"])
def test_a_failing_server_gives_one_error_naming_the_repo_and_file_and_caches_nothing(tmp_path, server, user, failure):
    file = hub_file("taef1")
    data = diffusers_tiny_file(tmp_path / "p" / file.filename, 16).read_bytes()
    if failure.get("status") != 404:
        server.hub.add(file.repo_id, file.path, data, **failure)
    done = decode_with("taef1", tmp_path, user)
    lines = done.err.strip().splitlines()
    assert done.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.err
    assert f"hf://{file.repo_id}/{file.path}" in lines[0] and "Traceback" not in done.err
    assert cache_files(user) == [] and not (tmp_path / "a.png").exists()
    if failure.get("drop"):  # what a broken transfer left behind never passes for the file: the next run is right
        server.hub.add(file.repo_id, file.path, data)
        assert decode_with("taef1", tmp_path, user).code == 0
        assert [p.read_bytes() for p in cache_files(user)] == [data]


def test_a_server_error_is_asked_again_exactly_the_set_number_of_times(tmp_path, server, user):
    file = hub_file("taef1")
    server.hub.add(file.repo_id, file.path, b"x", status=503)
    user["LATENTBRIDGE_HUB_ATTEMPTS"] = "3"
    done = decode_with("taef1", tmp_path, user)
    assert done.code == 2 and "3 attempts" in done.err and "HF_HUB_OFFLINE=1" in done.err, done.err
    assert server.hub.count("HEAD") == 3 and server.hub.count("GET") == 0


def test_no_network_fails_after_the_default_attempts_and_says_how_to_work_offline(tmp_path, user):
    with socket.socket() as s:  # a port nobody listens on: every connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    user["HF_ENDPOINT"] = f"http://127.0.0.1:{port}"
    done = decode_with("taef1", tmp_path, user)
    lines = done.err.strip().splitlines()
    assert done.code == 2 and len(lines) == 1, done.err
    assert "2 attempts" in lines[0] and "HF_HUB_OFFLINE=1" in lines[0] and "hf://madebyollin/taef1" in lines[0]


@pytest.mark.parametrize("value", ["0", "-1", "two", "nan"])
def test_a_bad_attempts_setting_is_refused_by_name(tmp_path, server, user, value):
    user["LATENTBRIDGE_HUB_ATTEMPTS"] = value
    done = decode_with("taef1", tmp_path, user)
    assert done.code == 2 and "LATENTBRIDGE_HUB_ATTEMPTS" in done.err and server.hub.count() == 0, done.err


def test_doctor_lists_the_hub_cache_it_searches(tmp_path, user):
    done = run_cli_process("doctor", env=user)
    assert done.code == 0 and str(Path(user["HF_HOME"]) / "hub") in done.out, done.out


def test_hub_settings_are_read_when_called(monkeypatch):
    from latentbridge import hub

    monkeypatch.setenv("LATENTBRIDGE_HUB_ATTEMPTS", "4")
    monkeypatch.setenv("LATENTBRIDGE_HUB_TIMEOUT", "2.5")
    assert (hub.attempts(), hub.timeout()) == (4, 2.5)
    monkeypatch.delenv("LATENTBRIDGE_HUB_ATTEMPTS")
    assert hub.attempts() == hub.DEFAULT_ATTEMPTS


def test_the_local_hub_answers_an_unknown_file_with_entry_not_found_and_logs_the_request(server):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(f"{server.url}/a/b/resolve/main/c.bin", method="HEAD"))
    assert e.value.code == 404 and e.value.headers["X-Error-Code"] == "EntryNotFound"
    assert json.dumps(server.hub.requests) == json.dumps([["HEAD", "/a/b/resolve/main/c.bin"]])
