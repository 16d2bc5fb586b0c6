"""`sparsenet convert`: rewrite a model file (e.g. a .npz of sparsenet 0.1) in the current format."""

from __future__ import annotations

from ._common import add_json_flag, emit

__all__ = ["register", "run"]


def register(subparsers) -> None:
    c = subparsers.add_parser("convert", help="rewrite a model file (e.g. sparsenet 0.1's .npz) as the current "
                                              "safetensors format",
                              epilog="example: sparsenet convert lenet90.npz lenet90.safetensors --json")
    c.add_argument("input", help="model file to read (any schema this sparsenet reads)")
    c.add_argument("output", help="where to write it (may be the input: replaced atomically)")
    add_json_flag(c)
    c.set_defaults(func=run)


def run(args) -> int:
    from ..io import convert_model

    versions = convert_model(args.input, args.output)
    emit(args, {"input": args.input, "output": args.output, "from_schema": versions["from"],
                "to_schema": versions["to"]},
         f"{args.input} (schema {versions['from']}) -> {args.output} (schema {versions['to']})")
    return 0
