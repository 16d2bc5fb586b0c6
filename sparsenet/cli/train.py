"""`sparsenet train`: train a zoo model on a dataset, report its test figures, save it."""

from __future__ import annotations

import time

from ._common import add_json_flag, emit

__all__ = ["register", "run"]

# epochs that meet each zoo model's accuracy target on digits (tests/test_zoo.py)
_EPOCHS = {"mlp": 40, "lenet300": 40, "cnn": 30}


def register(subparsers) -> None:
    t = subparsers.add_parser("train", help="train a zoo model and save it",
                              epilog="example: sparsenet train --model lenet300 --dataset digits -o lenet.safetensors --json")
    t.add_argument("--model", required=True, choices=sorted(_EPOCHS), help="zoo model")
    t.add_argument("--dataset", default="digits", help="'digits' or a path to .npz arrays (default: digits)")
    t.add_argument("-o", "--output", help="model file to write")
    t.add_argument("--epochs", type=int, default=None, help="default: a per-model setting that meets the targets")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    add_json_flag(t, "print the run's figures as one JSON object")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=run)


def _train_model(model_name: str, dataset: str, *, epochs=None, batch_size=32, lr=1e-3, seed=0, quiet=True):
    """Build, train and evaluate a zoo model; returns (model, dataset, figures)."""
    from .. import build_model, fit, predict
    from ..data import load_dataset
    from ..metrics import classification_report

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


def run(args) -> int:
    from ..io import save_model

    model, _, figures = _train_model(args.model, args.dataset, epochs=args.epochs, batch_size=args.batch_size,
                                     lr=args.lr, seed=args.seed, quiet=args.quiet or args.json)
    if args.output:
        save_model(model, args.output)
        figures["output"] = args.output
    emit(args, figures, f"{args.model} on {figures['dataset']}: test accuracy {figures['test_accuracy']:.4f} "
                        f"(macro F1 {figures['test_macro_f1']:.4f}) in {figures['train_seconds']:.1f} s"
                        + (f"; saved to {args.output}" if args.output else ""))
    return 0
