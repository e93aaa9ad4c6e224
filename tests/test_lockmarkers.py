"""make lock keeps the platform markers the multi-arch image needs (tools/lockmarkers.py)."""

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tools.lockmarkers import with_markers

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[1]
DIRECT = [
    'tensorflow-cpu==2.21.0; platform_machine == "x86_64"  # x86',
    'tensorflow==2.21.0; platform_machine != "x86_64"',
    "keras==3.15.1",
    "# a comment",
]


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the frozen list below is what an x86_64 machine writes")
def test_a_frozen_x86_lock_gets_the_markers_and_the_arm64_pin():
    frozen = ["keras==3.15.1", "numpy==2.4.6", "tensorflow_cpu==2.21.0"]
    assert with_markers(frozen, DIRECT) == [
        "keras==3.15.1",
        "numpy==2.4.6",
        'tensorflow==2.21.0; platform_machine != "x86_64"',
        'tensorflow_cpu==2.21.0; platform_machine == "x86_64"',
    ]


def test_a_missing_package_that_applies_here_is_an_error():
    with pytest.raises(SystemExit, match="did not list it"):
        with_markers([], [f'keras==3.15.1; python_version >= "{sys.version_info.major}"'])
    with pytest.raises(SystemExit, match="pin it with =="):
        with_markers([], ['tensorflow>=2; python_version < "3"'])


def test_the_committed_lock_is_what_the_tool_writes_from_it():
    lock = (REPO / "requirements/lock.txt").read_text().splitlines()
    direct = (REPO / "requirements/direct.txt").read_text().splitlines()
    frozen = [line.split(";")[0].strip() for line in lock[2:] if ";" not in line or "x86_64\"" in line.split(";")[1]
              and "!=" not in line.split(";")[1]]  # fmt: skip
    assert with_markers(lock[:2] + frozen, direct) == lock
    command = [sys.executable, "-m", "tools.lockmarkers", "requirements/direct.txt"]
    out = subprocess.run(command, input="\n".join(frozen), capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.splitlines() == [line for line in lock[2:]]
