"""`sparsenet datasets`: every embedded dataset with its task, size, split and licence."""

from __future__ import annotations

from ._common import add_json_flag, emit

__all__ = ["register", "run"]


def register(subparsers) -> None:
    d = subparsers.add_parser("datasets", help="list the embedded datasets (task, size, licence)",
                              epilog="example: sparsenet datasets --json")
    add_json_flag(d, "print the list as one JSON object")
    d.set_defaults(func=run)


def run(args) -> int:
    from importlib import resources

    from ..data import DATASETS

    rows = {}
    for name, info in DATASETS.items():
        licence = resources.files("sparsenet.data").joinpath(info["licence_file"])
        rows[name] = dict(info, licence_path=str(licence))
    lines = []
    for name, info in rows.items():
        lines.append(f"{name}: {info['task']}\n  {info['samples']} samples; split {info['split']}\n"
                     f"  licence: {info['licence']} ({info['licence_path']})\n"
                     f"  default of: {', '.join(info['default_for'])}")
    emit(args, {"datasets": rows}, "\n".join(lines))
    return 0
