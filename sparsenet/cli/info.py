"""`sparsenet info`: per-layer formats, shapes, nonzeros and true bytes of a model file."""

from __future__ import annotations

from ._common import add_json_flag, emit

__all__ = ["register", "run"]


def register(subparsers) -> None:
    i = subparsers.add_parser("info", help="per-layer formats, shapes, nonzeros and true bytes of a model file",
                              epilog="example: sparsenet info lenet.safetensors --json")
    i.add_argument("model", help="model file")
    add_json_flag(i)
    i.set_defaults(func=run)


def run(args) -> int:
    from ..io import load_model
    from ..prune.report import format_groups
    from ..summary import summarize

    model = load_model(args.model)
    s = summarize(model)
    payload = {"layers": [{k: r[k] for k in ("name", "kind", "format", "shape", "nnz", "stored", "bytes")}
                          for r in s["layers"]], **s["totals"], "metadata": model.meta}
    wn = max([6] + [len(str(r["name"])) + 2 for r in s["layers"]])  # a graph's node names can be long
    lines = [f"{'layer':<{wn}}{'kind':<14}{'format':<10}{'shape':<14}{'stored':>10}{'nnz':>10}{'bytes':>12}"]
    for r in s["layers"]:
        shape = "x".join(map(str, r["shape"])) if r["shape"] else "-"
        lines.append(f"{r['name']:<{wn}}{r['kind']:<14}{r['format'] or '-':<10}{shape:<14}"
                     f"{r['stored']:>10}{r['nnz']:>10}{r['bytes']:>12}")
    t = s["totals"]
    lines.append(f"total: {t['params']} parameters, {t['stored_params']} stored, {t['nonzero_params']} nonzero; "
                 f"{t['total_bytes']} bytes ({t['total_bytes'] / max(t['dense_bytes'], 1):.1%} of dense "
                 f"{t['dense_bytes']})")
    groups = format_groups(model.meta.get("compile", {}).get("removed_units"))
    emit(args, payload, "\n".join(lines) + (f"\n{groups}" if groups else ""))
    return 0
