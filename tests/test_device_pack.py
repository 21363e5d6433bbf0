"""scripts/device_pack.sh and scripts/device_env.sh: what a device call carries, unpacked as the device scripts do."""

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pack_then_env_unpacks_packages_and_data(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "probe-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("crystaldos_probe/__init__.py", "VALUE = 42\n")
    data = tmp_path / "preview.nc"
    data.write_bytes(os.urandom(50_000))
    pack = ROOT / "build" / "devpack"
    saved = tmp_path / "saved_devpack"
    if pack.exists():  # a pack made for a device call stays as it was
        shutil.move(pack, saved)
    try:
        done = subprocess.run(["bash", str(ROOT / "scripts" / "device_pack.sh"), str(data)], env={**os.environ, "WHEELS": str(wheels)},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert (pack / "site.tar.xz").exists() and (pack / "data" / "preview.nc.xz").exists()
        assert "limit 67108864" in done.stdout
        # A python without site-packages misses pymatgen, so the env script unpacks the packages.
        python = tmp_path / "bare-python"
        python.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
        python.chmod(0o755)
        site, unpacked = tmp_path / "site", tmp_path / "unpacked"
        probe = f'PY={python}; source scripts/device_env.sh; {python} -c "import crystaldos_probe; print(crystaldos_probe.VALUE)"'
        env = {**os.environ, "DEVICE_SITE": str(site), "DEVPACK_DATA": str(unpacked), "TMPDIR": str(tmp_path)}
        done = subprocess.run(["bash", "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "42"
        assert hashlib.sha256((unpacked / "preview.nc").read_bytes()).digest() == hashlib.sha256(data.read_bytes()).digest()
        # Bad input is named.
        done = subprocess.run(["bash", str(ROOT / "scripts" / "device_pack.sh"), str(tmp_path / "missing.nc")],
                              env={**os.environ, "WHEELS": str(wheels)}, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and "no such data file" in done.stderr
    finally:
        shutil.rmtree(pack, ignore_errors=True)
        if saved.exists():
            shutil.move(saved, pack)


def test_slimming_leaves_bulky_paths_out_of_what_travels_and_puts_everything_back(tmp_path):
    """scripts/device_slim.sh in a scratch repository: `on` untracks and ignores the paths (files and HEAD untouched),
    `off` restores the index and the ignore file; it refuses to start over staged changes."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "device_slim.sh", repo / "scripts" / "device_slim.sh")
    (repo / "big").mkdir()
    (repo / "big" / "chunk.nc").write_bytes(os.urandom(4096))
    (repo / "code.py").write_text("x = 1\n")

    def git(*args):
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout

    def slim(*args):
        return subprocess.run(["bash", "scripts/device_slim.sh", *args], cwd=repo, capture_output=True, text=True, check=False)

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")
    head = git("rev-parse", "HEAD")
    exclude_before = (repo / ".git" / "info" / "exclude").read_text()

    done = slim("on", "big")
    assert done.returncode == 0, done.stderr
    # What the device tool sends: tracked files plus untracked ones git does not ignore.
    travels = set(git("ls-files", "--cached", "--others", "--exclude-standard").split())
    assert travels == {"code.py", "scripts/device_slim.sh"}
    assert (repo / "big" / "chunk.nc").exists() and git("rev-parse", "HEAD") == head
    assert slim("on", "big").returncode != 0  # not twice

    done = slim("off")
    assert done.returncode == 0, done.stderr
    assert git("status", "--porcelain") == "" and (repo / ".git" / "info" / "exclude").read_text() == exclude_before
    (repo / "code.py").write_text("x = 2\n")
    git("add", "code.py")
    refused = slim("on", "big")
    assert refused.returncode != 0 and "staged" in refused.stderr
