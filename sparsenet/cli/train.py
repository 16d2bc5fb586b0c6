"""`sparsenet train`: train a zoo model on a dataset, report its test figures, save it."""

from __future__ import annotations

from ._common import add_json_flag, emit

__all__ = ["register", "run"]

from ..zoo import TRAINING, train_recipe


def register(subparsers) -> None:
    t = subparsers.add_parser("train", help="train a zoo model and save it",
                              epilog="example: sparsenet train --model lenet300 --dataset digits -o lenet.safetensors --json")
    t.add_argument("--model", required=True, choices=sorted(TRAINING), help="zoo model")
    t.add_argument("--dataset", default=None,
                   help="a dataset of `sparsenet datasets` or a path to .npz arrays (default: the model's: "
                        "digits; names for transformer, movielens for recommender)")
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
    t.add_argument("--no-baselines", action="store_true",
                   help="skip the classical baselines (bag-of-n-grams for text; popularity and matrix "
                        "factorisation for ratings)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=run)


def run(args) -> int:
    from ..io import save_model

    sparse = None
    if args.sparse_train:
        sparse = {"method": args.sparse_train, "sparsity": args.sparsity, "distribution": args.distribution,
                  "delta_t": args.delta_t}
    model, _, figures = train_recipe(args.model, args.dataset, epochs=args.epochs, batch_size=args.batch_size,
                                     lr=args.lr, seed=args.seed, quiet=args.quiet or args.json, sparse=sparse,
                                     baselines=not args.no_baselines)
    if args.output:
        save_model(model, args.output)
        figures["output"] = args.output
    emit(args, figures, _text(args, figures))
    return 0


def _text(args, f) -> str:
    how = f" ({args.sparse_train}, {args.sparsity:.0%} sparse)" if args.sparse_train else ""
    saved = f"; saved to {args.output}" if args.output else ""
    if "test_rmse" in f:
        lines = [f"{f['model']} on {f['dataset']} ({f['split']}, {f['test_users']} test users): RMSE "
                 f"{f['test_rmse']:.4f}, HR@{f['k']} {f['test_hit_rate']:.4f}, NDCG@{f['k']} {f['test_ndcg']:.4f} "
                 f"(each test item among {f['negatives']} unrated) in {f['train_seconds']:.1f} s{saved}"]
        for name, b in f.get("baselines", {}).items():
            lines.append(f"  baseline {name}: RMSE {b['test_rmse']:.4f}, HR@{f['k']} {b['test_hit_rate']:.4f}, "
                         f"NDCG@{f['k']} {b['test_ndcg']:.4f}")
        return "\n".join(lines)
    lines = [f"{f['model']}{how} on {f['dataset']}: test accuracy {f['test_accuracy']:.4f} "
             f"(macro F1 {f['test_macro_f1']:.4f}, precision {f['test_macro_precision']:.4f}, recall "
             f"{f['test_macro_recall']:.4f}; {f['test_samples']} test samples) in {f['train_seconds']:.1f} s{saved}"]
    for name, b in f.get("baselines", {}).items():
        lines.append(f"  baseline {name}: test accuracy {b['test_accuracy']:.4f} (macro F1 {b['test_macro_f1']:.4f})")
    return "\n".join(lines)
