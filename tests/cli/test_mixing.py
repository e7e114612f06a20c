import torch.nn.functional as F
from PIL import Image

from latentbridge import demo_data
from latentbridge.cli import main
from latentbridge.cli import mixing as mixing_cli


def test_plot_schedule_writes_a_png(tmp_path, capsys):
    out = tmp_path / "s.png"
    assert main(["plot-schedule", "--schedule", "cosine", "--schedule", "linear", "--alpha-1", "1", "--alpha-1", "3",
                 "--steps", "20", "--stop", "1.5", "--values", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "cosine a=1: first 1.0000" in text and "cosine a=3" in text and "linear:" in text
    assert Image.open(out).format == "PNG"


def test_plot_schedule_bad_input_is_one_error_line(tmp_path, capsys):
    out = tmp_path / "s.png"
    assert main(["plot-schedule", "--alpha-1", "0", "-o", str(out)]) == 2
    assert "alpha_1 must be > 0" in capsys.readouterr().err and not out.exists()
    out.write_bytes(b"keep")
    assert main(["plot-schedule", "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"keep"


def test_mixing_demo_writes_plots_and_an_upscale(tmp_path):
    ctx = demo_data.load()
    small = demo_data.DemoContext(ctx.names, F.interpolate(ctx.images, size=(64, 64), mode="area"))  # keep it fast
    lines = mixing_cli.demo(tmp_path, small)
    assert (tmp_path / "mixing_schedules.png").is_file() and (tmp_path / "mixing_upscale.png").is_file()
    assert any("no mixing" in line for line in lines)
