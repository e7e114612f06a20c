import json
import os
import sys

import pytest
import torch

from latentbridge import io, spaces
from latentbridge.cli import in_flags, main

from ..contract import assert_refused, run_cli, snapshot


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_spaces_json_lists_the_whole_registry(capsys):
    code, out, _ = run(capsys, "spaces", "--json")
    data = json.loads(out)
    assert code == 0 and {"sd1", "flux2", "sana"} <= {d["id"] for d in data}
    assert next(d for d in data if d["id"] == "flux2")["packing"] == {"patch": 2, "unpacked_channels": 32}


def test_spaces_json_lists_every_spaces_preview_ladder(capsys):
    code, out, _ = run(capsys, "spaces", "--json")
    rungs = {d["id"]: d["previewers"] for d in json.loads(out)}
    assert code == 0 and rungs["flux2"] == [{"name": "previewer-flux2", "scale": 1},
                                            {"name": "previewer-flux2-x2", "scale": 2}]
    assert rungs["sana"] == [{"name": "previewer-sana", "scale": 1}]


def test_spaces_table_shows_every_space_with_its_temporal_downscale(capsys):
    code, out, _ = run(capsys, "spaces")
    rows = {line.split()[0]: line.split()[1:4] for line in out.splitlines()[1:]}
    assert code == 0 and set(rows) == {s.id for s in spaces.all()}
    assert rows["wan22"] == ["48", "16", "4"] and rows["ltxv"] == ["128", "32", "8"] and rows["sd1"] == ["4", "8", "1"]


def test_info_reports_shape_metadata_and_detection(tmp_path, capsys):
    path = io.save_latent(tmp_path / "a.safetensors", torch.randn(1, 128, 8, 8), space="flux2", domain="raw")
    code, out, _ = run(capsys, "info", path, "--json")
    info = json.loads(out)
    assert code == 0 and info["shape"] == [1, 128, 8, 8] and info["space"] == "flux2"
    assert info["detected"]["candidates"][0]["space"] == "flux2"


def test_info_says_when_sd1_and_sdxl_cannot_be_told_apart(tmp_path, capsys):
    path = io.save_latent(tmp_path / "a.npy", torch.randn(1, 4, 16, 16) * 6.5)
    code, out, _ = run(capsys, "info", path)
    assert code == 0 and "cannot tell" in out and "sd1" in out and "sdxl" in out


@pytest.mark.parametrize("scale", [5, 6.5, 8])
def test_a_command_that_needs_the_space_of_an_unlabelled_latent_asks_for_the_space_flag(tmp_path, scale):
    path = io.save_latent(tmp_path / "a.npy", torch.randn(1, 4, 32, 32) * scale)
    before = snapshot(tmp_path)
    result = run_cli("preview", path, "-o", tmp_path / "p.png")
    assert_refused(result, before, tmp_path, match="say which with --space (and --domain)")
    assert "space=" not in result.err


def test_core_parameter_names_become_cli_flags_in_error_lines():
    assert in_flags("say which with space= (and domain=).") == "say which with --space (and --domain)."
    assert in_flags("pass space='sd1'; myspace= stays") == "pass --space sd1; myspace= stays"


def test_info_on_nan_latent_exits_2_with_an_error_line(tmp_path, capsys):
    x = torch.randn(1, 4, 8, 8)
    x[0, 0] = float("nan")
    path = tmp_path / "a.safetensors"
    from safetensors.torch import save_file

    save_file({"latent": x}, str(path))
    code, _, err = run(capsys, "info", path)
    assert code == 2 and err.startswith("error:") and "NaN" in err


@pytest.mark.parametrize("content, message", [(b"garbage", "not a readable safetensors"), (b"", "not a readable")])
def test_info_on_corrupt_file_exits_2_with_one_error_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    code, _, err = run(capsys, "info", path)
    assert code == 2 and err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1


def test_unknown_space_option_suggests_the_closest(tmp_path, capsys):
    path = io.save_latent(tmp_path / "a.npy", torch.randn(1, 4, 8, 8))
    code, _, err = run(capsys, "info", path, "--space", "sdx")
    assert code == 2 and err.startswith("error:") and "sdxl" in err


def test_usage_errors_use_the_error_line_format(capsys):
    with pytest.raises(SystemExit) as e:
        main(["info"])
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("error:")


def test_missing_input_file_exits_2(capsys, tmp_path):
    code, _, err = run(capsys, "info", tmp_path / "nope.safetensors")
    assert code == 2 and "no such file" in err


def test_debug_shows_the_traceback(capsys, tmp_path):
    code, _, err = run(capsys, "--debug", "info", tmp_path / "nope.safetensors")
    assert code == 2 and "Traceback" in err


def test_doctor_lists_where_weights_are_looked_for(capsys):
    code, out, _ = run(capsys, "doctor")
    assert code == 0 and "torch" in out and "weight folders searched" in out


def test_demo_writes_pictures_into_the_named_folder(tmp_path, capsys):
    code, _out, _ = run(capsys, "demo", "-o", tmp_path / "demo")
    assert code == 0
    assert (tmp_path / "demo" / "examples.png").is_file()


def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly(monkeypatch, capsys):
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `latentbridge spaces | head -0`
    with os.fdopen(write_end, "w", buffering=1) as closed_pipe:
        monkeypatch.setattr(sys, "stdout", closed_pipe)
        assert main(["spaces"]) == 0
    assert capsys.readouterr().err == ""


def test_info_on_a_48_gb_checkpoint_reads_only_its_header(tmp_path, capsys):
    from tests.interposer.test_models import huge_checkpoint

    path = huge_checkpoint(tmp_path / "model.safetensors")
    code, out, _ = run(capsys, "info", path, "--json")
    info = json.loads(out)
    assert code == 0 and info["format"] == "safetensors (header only)"
    assert info["tensors"] == {"model.w": {"dtype": "F32", "shape": [12_000_000_000]}}


def test_a_48_gb_checkpoint_given_as_a_latent_is_refused_before_its_data_is_read(tmp_path):
    from tests.contract import assert_refused, run_cli, snapshot
    from tests.interposer.test_models import huge_checkpoint

    path = huge_checkpoint(tmp_path / "model.safetensors")
    before = snapshot(tmp_path)
    assert_refused(run_cli("convert", path, "--to", "sd1", "-o", tmp_path / "out.safetensors"), before, tmp_path,
                   match="model checkpoint")
