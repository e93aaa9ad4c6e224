"""``python -m recsys_workshop.kube build|validate|diff|context|write-config``.

- ``build OVERLAY``: print the rendered manifests of an overlay;
- ``validate [OVERLAY ...]``: schema and policy checks of overlays (all by default), exit 1 on problems;
- ``diff [LEFT] [RIGHT]``: unified diff between two overlays (default ``kind gke``);
- ``context``: which cluster kubectl points at, and whether it answers (exit 1 if none does);
- ``write-config BASE OUT KEY=VALUE ...``: what Katib trials run to merge their hyperparameters into the
  shared training config.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from recsys_workshop.kube.cluster import cluster_context
from recsys_workshop.kube.diff import _to_yaml, diff_overlays
from recsys_workshop.kube.manifests import OVERLAYS, Finding, kustomize_build, overlay_dir
from recsys_workshop.kube.validation import validate_all


def _print_findings(name: str, groups: Mapping[str, list[Finding]]) -> int:
    total = sum(len(findings) for findings in groups.values())
    for check, findings in groups.items():
        print(f"{name}: {check}: {'ok' if not findings else f'{len(findings)} problem(s)'}")
        for finding in findings:
            print(f"  {finding}")
    return total


def _parser() -> argparse.ArgumentParser:
    from recsys_workshop import kube

    parser = argparse.ArgumentParser(prog="python -m recsys_workshop.kube", description=kube.__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="print the rendered manifests of an overlay")
    build.add_argument("overlay", choices=OVERLAYS)
    check = commands.add_parser("validate", help="schema and policy checks of overlays (exit 1 on problems)")
    check.add_argument("overlays", nargs="*", metavar="OVERLAY", help=f"one of {', '.join(OVERLAYS)} (default: all)")
    diff = commands.add_parser("diff", help="unified diff between two overlays")
    diff.add_argument("left", nargs="?", choices=OVERLAYS, default="kind")
    diff.add_argument("right", nargs="?", choices=OVERLAYS, default="gke")
    commands.add_parser("context", help="which cluster kubectl points at, and whether it answers")
    write = commands.add_parser("write-config", help="write BASE (JSON) with KEY=VALUE overrides to OUT")
    write.add_argument("base")
    write.add_argument("out")
    write.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "build":
        print(_to_yaml(kustomize_build(overlay_dir(args.overlay))), end="")
    elif args.command == "validate":
        problems = sum(
            _print_findings(name, validate_all(kustomize_build(overlay_dir(name))))
            for name in args.overlays or OVERLAYS
        )
        return 1 if problems else 0
    elif args.command == "diff":
        print(diff_overlays(args.left, args.right), end="")
    elif args.command == "context":
        info = cluster_context()
        print("no kubeconfig context" if info is None else info)
        return 0 if info is not None and info.reachable else 1
    elif args.command == "write-config":
        # The training job's own merge (dotted keys, typed values); imported here because it pulls in pandas.
        from recsys_workshop.train.job import merge_config

        config = merge_config(json.loads(Path(args.base).read_text(encoding="utf-8")), args.assignments)
        Path(args.out).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(json.dumps(config, sort_keys=True))
    return 0
