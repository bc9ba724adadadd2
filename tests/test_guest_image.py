"""The guest's Python from memory (run/guest_image.py): what the image holds, and a real guest importing
uffdprobe, the standard library and the compiled modules from /run/uffdprobe/py while users' files and
uffdprobe's data still come from the host root."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from uffdprobe.osutil import datafiles
from uffdprobe.run import guest_image, guest_python

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    tree = guest_image.build(tmp_path_factory.mktemp("pyimage"), guest_python.module_path())
    if tree is None:
        pytest.skip("this Python has no sys.stdlib_module_names (3.9): the guest imports over 9p")
    return tree


def test_the_image_holds_the_run_path_as_bytecode_and_extension_modules(image):
    names = {str(p.relative_to(image)) for p in image.rglob("*") if p.is_file()}
    for need in ("uffdprobe/__main__.pyc", "uffdprobe/supervise/supervisor.pyc", "uffdprobe/results/schemas",
                 "json/__init__.pyc", "encodings/utf_8.pyc", "subprocess.pyc", "threading.pyc"):
        assert any(n == need or n.startswith(need + "/") for n in names), need
    assert any(n.startswith("_cffi_backend") and n.endswith(".so") for n in names)
    assert any(n.startswith("uffdprobe/uffd/_native") and n.endswith(".so") for n in names)
    assert not [n for n in names if n.endswith(".py") or "__pycache__" in n or n.startswith("uffdprobe/data/")]
    assert "tkinter" not in {n.split("/")[0] for n in names}


def test_the_image_is_built_once_per_content(image):
    assert guest_image.build(image.parent, guest_python.module_path()) == image


def test_a_python_on_the_image_path_imports_from_it(image):
    env = {"PYTHONPATH": ":".join([str(image)] + guest_python.module_path()),
           "UFFDPROBE_PACKAGE_PARENT": str(datafiles.PACKAGE_PARENT)}
    code = ("import json, sys, uffdprobe.cli.main, uffdprobe.uffd._native as n; from uffdprobe.osutil import "
            "datafiles; print(json.dumps([json.__file__, uffdprobe.cli.main.__file__, n.__file__, "
            "str(datafiles.vm_images())]))")
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60, env=env,
                          cwd="/")
    assert proc.returncode == 0, proc.stderr
    json_file, main_file, native_file, vm_images = json.loads(proc.stdout)
    assert all(f.startswith(str(image) + "/") for f in (json_file, main_file, native_file))
    assert vm_images == str(datafiles.vm_images()), "data files still come from the host's uffdprobe"


@pytest.mark.vm
def test_a_guest_runs_uffdprobe_from_memory(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "uffdprobe", "run", "--kernel", "stock", "--accel", "tcg",
                           "--scenarios-from", str(HERE / "user_scenarios" / "where_from.py"), "--json", str(out),
                           "where-from"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result, = json.loads(out.read_text())["results"]
    files = result["evidence"]["files"]
    for name in ("uffdprobe", "uffdprobe.supervise.supervisor", "json", "encodings", "_cffi_backend",
                 "uffdprobe.uffd._native"):
        assert files[name].startswith(guest_image.GUEST_DIR + "/"), (name, files[name])
    assert files["this scenario file"] == str(HERE / "user_scenarios" / "where_from.py"), "users' files: the host root"
    assert result["evidence"]["vm_images"] == str(datafiles.vm_images())
