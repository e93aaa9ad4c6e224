"""Put the platform markers of ``requirements/direct.txt`` back on a frozen lock (``make lock``).

``pip freeze`` writes what one machine installed, without environment markers: on x86_64 it pins
``tensorflow_cpu`` and drops ``tensorflow``, which arm64 needs. This reads the frozen pins on stdin and
writes them with the direct requirements' markers: a frozen pin gets the marker of the direct requirement
of the same name, and a direct requirement whose marker is false here (so nothing was installed for it)
is added as it is written in ``direct.txt``, which must pin it (``==``).

    pip freeze | python -m tools.lockmarkers requirements/direct.txt > lock.txt.new
"""

from __future__ import annotations

import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def with_markers(frozen: list[str], direct: list[str]) -> list[str]:
    marked = {}
    for line in direct:
        text = line.split("#", 1)[0].strip()
        if text and not text.startswith("-"):
            requirement = Requirement(text)
            if requirement.marker is not None:
                marked[canonicalize_name(requirement.name)] = requirement
    out, seen = [], set()
    for line in frozen:
        text = line.strip()
        if not text or text.startswith("#"):
            out.append(line.rstrip("\n"))
            continue
        name = canonicalize_name(Requirement(text).name)
        seen.add(name)
        out.append(f"{text}; {marked[name].marker}" if name in marked else text)
    for name, requirement in marked.items():
        if name in seen:
            continue
        if requirement.marker.evaluate():
            raise SystemExit(f"{requirement.name} applies to this machine but pip freeze did not list it")
        if not any(spec.operator == "==" for spec in requirement.specifier):
            raise SystemExit(f"{requirement.name}: pin it with == in direct.txt (it cannot be frozen here)")
        after = [i for i, line in enumerate(out) if _name(line) is not None and _name(line) <= name]
        out.insert(after[-1] + 1 if after else len(out), str(requirement))  # where pip freeze would list it
    return out


def _name(line: str) -> str | None:
    text = line.strip()
    return None if not text or text.startswith("#") else canonicalize_name(Requirement(text).name)


def main() -> None:
    direct = Path(sys.argv[1]).read_text(encoding="utf-8").splitlines()
    print("\n".join(with_markers(sys.stdin.read().splitlines(), direct)))


if __name__ == "__main__":
    main()
