import errno
import os

import pytest
import torch
from tests.contract import small_disk, snapshot

from latentbridge import io
from latentbridge.errors import InputError
from latentbridge.io import atomic, atomic_path


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_the_old_file_when_overwriting_fails(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target, overwrite=True) as tmp:
        tmp.write_bytes(b"new")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_path_writes_the_file_on_success(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"done")
    assert target.read_bytes() == b"done"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_path_refuses_an_unwritable_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        import os

        if os.access(folder, os.W_OK):  # running as root: permissions are not enforced
            pytest.skip("permissions are not enforced for this user")
        with pytest.raises(InputError, match="permission"), atomic_path(folder / "x.bin"):
            pass
    finally:
        folder.chmod(0o700)


def test_atomic_path_gives_the_file_the_usual_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(mask)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o644


LATENT = torch.randn(1, 4, 64, 64)
WRITERS = {
    "safetensors": lambda d: io.save_latent(d / "x.safetensors", LATENT),
    "comfyui latent": lambda d: io.save_latent(d / "x.latent", LATENT),
    "npy": lambda d: io.save_latent(d / "x.npy", LATENT),
    "pt": lambda d: io.save_latent(d / "x.pt", LATENT),
    "png": lambda d: io.save_image(d / "x.png", torch.rand(1, 3, 256, 256)),
    "batch of pngs": lambda d: io.save_images([d / f"{i}.png" for i in range(8)], torch.rand(8, 3, 64, 64)),
    "animation": lambda d: io.save_animation(d / "x.gif", [torch.rand(3, 128, 128) for _ in range(6)]),
    "torch.save in atomic_path": lambda d: _torch_save(d / "x.ckpt"),
}


def _torch_save(path):
    with atomic_path(path) as tmp:
        torch.save({"w": torch.randn(64, 1024)}, tmp)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_full_disk_gives_a_true_message_and_leaves_nothing(tmp_path, writer):
    with small_disk(tmp_path / "disk", "64k") as disk:
        with pytest.raises(InputError, match="no space left") as caught:
            WRITERS[writer](disk)
        assert "nothing was written" in str(caught.value)
        assert list(disk.iterdir()) == []


def test_a_read_only_file_system_is_named(tmp_path):
    with small_disk(tmp_path / "ro", read_only=True) as disk, pytest.raises(InputError, match="read-only"):
        io.save_latent(disk / "x.safetensors", LATENT)


def test_a_dangling_link_as_output_is_named_not_said_to_appear(tmp_path):
    link = tmp_path / "out.safetensors"
    link.symlink_to(tmp_path / "missing" / "target.safetensors")
    with pytest.raises(InputError, match="link to .* which does not exist"):
        io.save_latent(link, LATENT)
    assert link.is_symlink() and sorted(tmp_path.iterdir()) == [link]
    io.save_latent(link, LATENT, overwrite=True)  # overwriting replaces the link itself
    assert not link.is_symlink() and io.load_latent(link).tensor.shape == LATENT.shape


@pytest.mark.parametrize(("name", "words"), [
    ("a-file/x.png", "is a file, not a folder"),
    ("missing/x.png", "does not exist"),
    ("a" * 300 + ".png", "too long"),
    ("existing.png", "already exists"),
])
def test_unwritable_outputs_get_a_message_naming_why(tmp_path, name, words):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "existing.png").write_bytes(b"old")
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match=words):
        io.save_image(tmp_path / name, torch.rand(1, 3, 8, 8))
    assert snapshot(tmp_path) == before


def test_a_batch_that_fails_while_moving_into_place_restores_the_old_files(tmp_path, monkeypatch):
    old = [io.save_image(tmp_path / f"{i}.png", torch.zeros(1, 3, 8, 8)) for i in range(3)]
    before = snapshot(tmp_path)
    replace = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(errno.EIO, "Input/output error")
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(InputError, match="Input/output error"):
        io.save_images(old, torch.ones(3, 3, 8, 8), overwrite=True)
    monkeypatch.undo()
    assert snapshot(tmp_path) == before


def test_remove_partials_removes_writes_cut_short(tmp_path):
    with atomic_path(tmp_path / "x.bin") as tmp:
        tmp.write_bytes(b"half")
        io.remove_partials()  # what the CLI does when a signal ends it mid-write
        assert not tmp.exists()
        tmp.write_bytes(b"whole")
    assert (tmp_path / "x.bin").read_bytes() == b"whole" and io.atomic.PARTIALS == set()


def test_a_signal_just_after_the_temporary_file_is_created_leaves_no_partial(tmp_path, monkeypatch):
    """The moment a stop signal is most likely to land in the CLI's tests: the file exists, its name just came back."""
    real_open = os.open

    def open_then_interrupted(*args, **kwargs):
        os.close(real_open(*args, **kwargs))
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "open", open_then_interrupted)
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "z.npy"):
        pass
    assert list(tmp_path.iterdir()) == [] and not atomic.PARTIALS
