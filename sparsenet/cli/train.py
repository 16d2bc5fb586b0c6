"""`sparsenet train`: train a zoo model on a dataset, report its test figures, save it."""

from __future__ import annotations

import time

from ._common import add_json_flag, emit

__all__ = ["register", "run"]

from ..zoo import TRAINING


def register(subparsers) -> None:
    t = subparsers.add_parser("train", help="train a zoo model and save it",
                              epilog="example: sparsenet train --model lenet300 --dataset digits -o lenet.safetensors --json")
    t.add_argument("--model", required=True, choices=sorted(TRAINING), help="zoo model")
    t.add_argument("--dataset", default="digits", help="'digits' or a path to .npz arrays (default: digits)")
    t.add_argument("-o", "--output", help="model file to write")
    t.add_argument("--epochs", type=int, default=None, help="default: the model's recipe (sparsenet.zoo.TRAINING)")
    t.add_argument("--batch-size", type=int, default=None, help="default: the model's recipe")
    t.add_argument("--lr", type=float, default=None, help="default: the model's recipe")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--sparse-train", choices=["set", "rigl"], default=None,
                   help="train sparse from scratch (dynamic sparse training, sparsenet.prune.sparse_train)")
    t.add_argument("--sparsity", type=float, default=0.9, help="with --sparse-train (default: 0.9)")
    t.add_argument("--distribution", choices=["uniform", "er", "erk"], default="erk",
                   help="with --sparse-train: the layers' densities (default: erk)")
    t.add_argument("--delta-t", type=int, default=100, help="with --sparse-train: steps between pattern updates")
    add_json_flag(t, "print the run's figures as one JSON object")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=run)


def _train_model(model_name: str, dataset: str, *, epochs=None, batch_size=None, lr=None, seed=0, quiet=True,
                 sparse=None):
    """Build, train and evaluate a zoo model with its recipe (`zoo.TRAINING`; `epochs`, `batch_size`
    and `lr` override it); `sparse`: `sparse_train`'s settings ({"method": ..., "sparsity": ...})
    to train sparse from scratch. Returns (model, dataset, figures)."""
    from .. import build_model, fit, predict
    from ..data import load_dataset, random_shift
    from ..metrics import classification_report

    ds = load_dataset(dataset, seed=seed)
    model = build_model(model_name, seed=seed, num_classes=ds.num_classes, input_shape=ds.x_train.shape[1:])
    recipe = dict(TRAINING[model_name])
    recipe.update({k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)) if v is not None})
    pixels = recipe.pop("augment_pixels", None)
    if pixels and ds.x_train.ndim != 4:
        pixels = None  # shifts are for images
    t0 = time.perf_counter()
    augment = random_shift(pixels) if pixels else None
    dynamic = None
    if sparse:
        from ..prune import sparse_train

        dynamic = sparse_train(model, ds.x_train, ds.y_train, seed=seed, quiet=quiet, augment=augment,
                               **sparse, **recipe)
        history = dynamic.history
    else:
        history = fit(model, ds.x_train, ds.y_train, seed=seed, quiet=quiet, augment=augment, **recipe)
    epochs = recipe["epochs"]
    seconds = time.perf_counter() - t0
    report = classification_report(ds.y_test, predict(model, ds.x_test), num_classes=ds.num_classes)
    figures = {
        "model": model_name, "dataset": ds.name, "epochs": epochs, "seed": seed,
        "train_accuracy": history.accuracy[-1] if history.accuracy else None,
        "test_accuracy": report["accuracy"], "test_macro_f1": report["macro"]["f1"],
        "test_macro_precision": report["macro"]["precision"], "test_macro_recall": report["macro"]["recall"],
        "train_seconds": round(seconds, 3),
    }
    if dynamic is not None:
        figures["sparse_training"] = {"method": dynamic.method, "sparsity": dynamic.sparsity,
                                      "distribution": dynamic.distribution, "densities": dynamic.densities,
                                      "updates": len(dynamic.updates)}
    model.meta.update(dataset=ds.name, test_accuracy=report["accuracy"], seed=seed,
                      training=dict(recipe, augment_pixels=pixels))
    return model, ds, figures


def run(args) -> int:
    from ..io import save_model

    sparse = None
    if args.sparse_train:
        sparse = {"method": args.sparse_train, "sparsity": args.sparsity, "distribution": args.distribution,
                  "delta_t": args.delta_t}
    model, _, figures = _train_model(args.model, args.dataset, epochs=args.epochs, batch_size=args.batch_size,
                                     lr=args.lr, seed=args.seed, quiet=args.quiet or args.json, sparse=sparse)
    if args.output:
        save_model(model, args.output)
        figures["output"] = args.output
    how = f" ({args.sparse_train}, {args.sparsity:.0%} sparse)" if args.sparse_train else ""
    emit(args, figures, f"{args.model}{how} on {figures['dataset']}: test accuracy {figures['test_accuracy']:.4f} "
                        f"(macro F1 {figures['test_macro_f1']:.4f}) in {figures['train_seconds']:.1f} s"
                        + (f"; saved to {args.output}" if args.output else ""))
    return 0
