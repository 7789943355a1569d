"""The library installable on its own: a wheel built from the repository, installed (not editable)
into a fresh environment outside the checkout, runs every command's --help and a tiny preprocess
and training from a user's own config file; the experiment configs (``configs``) are not in it."""

import pathlib
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
COMMANDS = ("train", "preprocess", "evaluate", "export", "predict")

_TINY = '''"""A user's own config outside the checkout, built on the installed library's default."""
from facelift_jax.config import get_config as library_config


def get_config():
    c = library_config()
    c.image_size = 32
    c.preprocess.update(num_latents=4, chunk_size=4, num_videos=1, frames_per_video=4, preview_latents=1)
    c.model.encoder, c.model.pretrained, c.data.pool_size = "vit", "", 0
    c.model.vit.update(width=16, depth=1, heads=2, patch=16, stem_width=16)
    c.model.decoder.update(width=16, depth=1, heads=2)
    c.batch.multiview, c.batch.multiframe = 2, 2
    c.optim.steps_per_epoch, c.optim.warmup_steps = 2, 0
    c.train.update(num_steps=2, log_every=1, eval_every=0, checkpoint_every=1, keep_checkpoints=2, plot_examples=2)
    c.eval.update(num_latents=4, num_videos=1, frames_per_video=3, batch_size=4, photos="")
    return c
'''


@pytest.mark.slow
def test_a_wheel_installed_outside_the_checkout_runs_every_command(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheels), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("facelift_jax-*.whl")
    assert sorted({n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}) == [
        "bridges", "facelift_jax", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"]

    # A fresh environment whose only facelift_jax is the wheel's: the dependencies are this test
    # environment's site-packages, named by a .pth file (so its editable install's hook is not read).
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    site = pathlib.Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                       check=True, capture_output=True, text=True).stdout.strip())
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    run = lambda *args, **kw: subprocess.run([str(python), *args], cwd=outside, capture_output=True,  # noqa: E731
                                             text=True, **kw)

    where = run("-c", "import importlib.util as u, facelift_jax; print(facelift_jax.__file__); "
                      "print(u.find_spec('configs'))", timeout=120)
    assert where.returncode == 0, where.stderr
    assert where.stdout.split() == [str(site / "facelift_jax" / "__init__.py"), "None"], where.stdout

    for command in COMMANDS:
        proc = run("-m", f"facelift_jax.{command}", "--help", timeout=300)
        # absl's --help (train, preprocess) exits 1 after printing; argparse's exits 0
        assert proc.returncode in (0, 1) and "--config" in proc.stdout + proc.stderr, (command, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, (command, proc.stderr[-2000:])

    (outside / "tiny.py").write_text(_TINY)
    proc = run("-m", "facelift_jax.preprocess", "--config", "tiny.py", "--out", "data", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (outside / "data" / "multiview" / "template.npy").is_file()
    proc = run("-m", "facelift_jax.train", "--config", "tiny.py", "--workdir", "run", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (outside / "run" / "export").is_dir() and (outside / "run" / "checkpoints" / "2").is_dir()
