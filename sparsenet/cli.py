"""The `sparsenet` command line. Exit codes: 0 success, 1 bad input (one-line error; traceback with
--debug), 2 usage error."""

from __future__ import annotations

import argparse
import json
import sys
import time

from .errors import SparsenetError

__all__ = ["main"]

_EPOCHS = {"mlp": 40, "lenet300": 40, "cnn": 30}


def _emit(args, payload: dict, text: str) -> None:
    print(json.dumps(payload) if getattr(args, "json", False) else text)


def _train_model(model_name: str, dataset: str, *, epochs=None, batch_size=32, lr=1e-3, seed=0, quiet=True):
    """Build, train and evaluate a zoo model; returns (model, dataset, figures)."""
    from . import build_model, fit, predict
    from .data import load_dataset
    from .metrics import classification_report

    ds = load_dataset(dataset, seed=seed)
    model = build_model(model_name, seed=seed, num_classes=ds.num_classes, input_shape=ds.x_train.shape[1:])
    epochs = _EPOCHS.get(model_name, 30) if epochs is None else epochs
    t0 = time.perf_counter()
    history = fit(model, ds.x_train, ds.y_train, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                  quiet=quiet)
    seconds = time.perf_counter() - t0
    report = classification_report(ds.y_test, predict(model, ds.x_test), num_classes=ds.num_classes)
    figures = {
        "model": model_name, "dataset": ds.name, "epochs": epochs, "seed": seed,
        "train_accuracy": history.accuracy[-1] if history.accuracy else None,
        "test_accuracy": report["accuracy"], "test_macro_f1": report["macro"]["f1"],
        "test_macro_precision": report["macro"]["precision"], "test_macro_recall": report["macro"]["recall"],
        "train_seconds": round(seconds, 3),
    }
    model.meta.update(dataset=ds.name, test_accuracy=report["accuracy"], seed=seed)
    return model, ds, figures


def cmd_train(args) -> int:
    from .io import save_model

    model, _, figures = _train_model(args.model, args.dataset, epochs=args.epochs, batch_size=args.batch_size,
                                     lr=args.lr, seed=args.seed, quiet=args.quiet or args.json)
    if args.output:
        save_model(model, args.output)
        figures["output"] = args.output
    _emit(args, figures, f"{args.model} on {figures['dataset']}: test accuracy {figures['test_accuracy']:.4f} "
                         f"(macro F1 {figures['test_macro_f1']:.4f}) in {figures['train_seconds']:.1f} s"
                         + (f"; saved to {args.output}" if args.output else ""))
    return 0


def cmd_info(args) -> int:
    from .io import load_model
    from .summary import summarize

    model = load_model(args.model)
    s = summarize(model)
    payload = {"layers": [{k: r[k] for k in ("name", "kind", "format", "shape", "nnz", "stored", "bytes")}
                          for r in s["layers"]], **s["totals"], "metadata": model.meta}
    lines = [f"{'layer':<6}{'kind':<14}{'format':<10}{'shape':<14}{'stored':>10}{'nnz':>10}{'bytes':>12}"]
    for r in s["layers"]:
        shape = "x".join(map(str, r["shape"])) if r["shape"] else "-"
        lines.append(f"{r['name']:<6}{r['kind']:<14}{r['format'] or '-':<10}{shape:<14}"
                     f"{r['stored']:>10}{r['nnz']:>10}{r['bytes']:>12}")
    t = s["totals"]
    lines.append(f"total: {t['params']} parameters, {t['stored_params']} stored, {t['nonzero_params']} nonzero; "
                 f"{t['total_bytes']} bytes ({t['total_bytes'] / max(t['dense_bytes'], 1):.1%} of dense "
                 f"{t['dense_bytes']})")
    _emit(args, payload, "\n".join(lines))
    return 0


def _parse_sparsity(text: str):
    """'0.9' -> 0.9; '1=0.8,3=0.9' -> per-layer targets."""
    if "=" not in text:
        try:
            return float(text)
        except ValueError:
            raise SparsenetError(f"--sparsity: expected a fraction or NAME=FRACTION,..., found {text!r}") from None
    targets = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            targets[name.strip()] = float(value)
        except ValueError:
            raise SparsenetError(f"--sparsity: expected NAME=FRACTION, found {part!r}") from None
    return targets


def cmd_prune(args) -> int:
    import copy

    from .data import load_dataset
    from .io import load_model, save_model
    from .prune import compiled as compile_model, prune
    from .prune.report import format_report, pruning_report
    from .train import evaluate

    model = load_model(args.model)
    before = copy.deepcopy(model)
    ds = load_dataset(args.dataset, seed=args.seed) if args.dataset else None
    if args.finetune_epochs and ds is None:
        raise SparsenetError("--finetune-epochs needs --dataset to fine-tune on")
    train = (ds.x_train, ds.y_train) if ds is not None else None
    result = prune(model, method=args.method, granularity=args.granularity, scope=args.scope,
                   sparsity=_parse_sparsity(args.sparsity), schedule=args.schedule, rounds=args.rounds,
                   exclude=args.exclude or (), normalize=args.normalize, train_data=train,
                   data=(ds.x_train[: args.calibration], ds.y_train[: args.calibration]) if ds is not None else None,
                   finetune_epochs=args.finetune_epochs, lr=args.lr, seed=args.seed,
                   quiet=args.quiet or args.json)
    compiled = compile_model(model, args.format, batch_size=args.batch_size)
    report = pruning_report(before, compiled)
    payload = {"pruning": result.to_dict(), "report": report, "format": args.format}
    if ds is not None:
        payload["accuracy_before"] = evaluate(before, ds.x_test, ds.y_test)["accuracy"]
        payload["accuracy_after"] = evaluate(compiled, ds.x_test, ds.y_test)["accuracy"]
        compiled.meta["test_accuracy"] = payload["accuracy_after"]
    save_model(compiled, args.output)
    payload["output"] = args.output
    text = format_report(report)
    if ds is not None:
        text += f"\ntest accuracy {payload['accuracy_before']:.4f} -> {payload['accuracy_after']:.4f}"
    _emit(args, payload, text + f"\nsaved to {args.output}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, quick=args.quick, seed=args.seed, quiet=args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparsenet", description="Train, prune and run sparse neural networks.")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="train on the embedded digits, prune several ways, report accuracy, "
                                    "size and measured speed",
                       epilog="example: sparsenet demo --quick --out demo-out")
    d.add_argument("--quick", action="store_true", help="small settings (CI)")
    d.add_argument("--out", default="sparsenet-demo", help="output directory (default: %(default)s)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", help="train a zoo model and save it",
                       epilog="example: sparsenet train --model lenet300 --dataset digits -o lenet.npz --json")
    t.add_argument("--model", required=True, choices=sorted(_EPOCHS), help="zoo model")
    t.add_argument("--dataset", default="digits", help="'digits' or a path to .npz arrays (default: digits)")
    t.add_argument("-o", "--output", help="model file to write")
    t.add_argument("--epochs", type=int, default=None, help="default: a per-model setting that meets the targets")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--json", action="store_true", help="print the run's figures as one JSON object")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser("prune", help="prune a model file, compile it to real formats and save it",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog="""examples:
  sparsenet prune lenet.npz -o lenet90.npz --sparsity 0.9 --scope global --finetune-epochs 40 --dataset digits
  sparsenet prune cnn.npz -o cnn-half.npz --granularity filter --sparsity 0.5 --format dense
  sparsenet prune lenet.npz -o lenet24.npz --granularity 2:4 --method wanda --dataset digits
  sparsenet prune lenet.npz -o lenet-b.npz --granularity block4x4 --sparsity 0.8 --format bsr4x4""")
    pr.add_argument("model", help="model file")
    pr.add_argument("-o", "--output", required=True, help="pruned model file to write")
    pr.add_argument("--method", default="magnitude", help="magnitude, l2, random, taylor, snip, synflow, movement, "
                                                           "obd, slimming, wanda (default: magnitude)")
    pr.add_argument("--granularity", default="unstructured",
                    help="unstructured, neuron/filter, blockRxC (e.g. block4x4), N:M (e.g. 2:4)")
    pr.add_argument("--scope", default="layer", choices=["layer", "global"])
    pr.add_argument("--normalize", default="mean", choices=["none", "mean", "l2"],
                    help="how the global scope compares layers (default: mean)")
    pr.add_argument("--sparsity", default="0.5", help="a fraction, or per-layer NAME=FRACTION,... (default 0.5)")
    pr.add_argument("--schedule", default="oneshot", choices=["oneshot", "iterative", "gradual"])
    pr.add_argument("--rounds", type=int, default=3, help="rounds of the iterative schedule")
    pr.add_argument("--exclude", nargs="*", help="layer names (or first/last) not to prune")
    pr.add_argument("--finetune-epochs", type=int, default=0)
    pr.add_argument("--dataset", help="'digits' or .npz: fine-tuning, calibration and accuracy")
    pr.add_argument("--calibration", type=int, default=512, help="calibration samples for data-driven methods")
    pr.add_argument("--format", default="auto", help="auto (measured on this CPU), dense, csr or bsrRxC")
    pr.add_argument("--batch-size", type=int, default=64, help="batch size the automatic format choice times")
    pr.add_argument("--lr", type=float, default=1e-3)
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--json", action="store_true")
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=cmd_prune)

    from .onnx import add_onnx_parsers
    from .quantize import add_quantize_parser

    from .bench import add_bench_parser
    from .sweep.cli import add_sweep_parser
    from .runtime import add_predict_parser

    add_quantize_parser(sub)
    add_onnx_parsers(sub)
    add_predict_parser(sub)
    add_bench_parser(sub)
    add_sweep_parser(sub)

    i = sub.add_parser("info", help="per-layer formats, shapes, nonzeros and true bytes of a model file",
                       epilog="example: sparsenet info lenet.npz --json")
    i.add_argument("model", help="model file")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SparsenetError as e:
        if args.debug:
            raise
        print(f"sparsenet {args.command}: error: {e}", file=sys.stderr)
        return 1
    except (OSError, KeyboardInterrupt) as e:
        if args.debug:
            raise
        print(f"sparsenet {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
