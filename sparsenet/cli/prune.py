"""`sparsenet prune`: prune a model file, optionally fine-tune, compile to real formats, save."""

from __future__ import annotations

import argparse

from ..errors import ConfigError
from ._common import add_json_flag, emit, sparsity_targets

__all__ = ["register", "run"]

_EPILOG = """examples:
  sparsenet prune lenet.safetensors -o lenet90.safetensors --sparsity 0.9 --scope global --finetune-epochs 40 --dataset digits
  sparsenet prune cnn.safetensors -o cnn-half.safetensors --granularity filter --sparsity 0.5 --format dense
  sparsenet prune lenet.safetensors -o lenet24.safetensors --granularity 2:4 --method wanda --dataset digits
  sparsenet prune lenet.safetensors -o lenet-b.safetensors --granularity block4x4 --sparsity 0.8 --format bsr4x4"""


def register(subparsers) -> None:
    pr = subparsers.add_parser("prune", help="prune a model file, compile it to real formats and save it",
                               formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG)
    pr.add_argument("model", help="model file")
    pr.add_argument("-o", "--output", required=True, help="pruned model file to write")
    pr.add_argument("--method", default="magnitude", help="magnitude, l2, random, taylor, snip, synflow, movement, "
                                                           "obd, slimming, wanda (default: magnitude)")
    pr.add_argument("--granularity", default="unstructured",
                    help="unstructured, neuron/filter, head, dim (embedding dimensions), embedding-row, "
                         "blockRxC (e.g. block4x4), "
                         "N:M (e.g. 2:4); on a graph, neurons, filters, heads and dimensions follow its dependency "
                         "groups")
    pr.add_argument("--group-reduce", default="mean", choices=["mean", "sum", "max"],
                    help="how a dependency group's channel score combines its members' scores (default: mean)")
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
    add_json_flag(pr)
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=run)


def run(args) -> int:
    import copy

    from ..data import classification_dataset
    from ..io import load_model, save_model
    from ..prune import compiled as compiled_copy, prune
    from ..prune.report import format_groups, format_report, pruning_report
    from ..train import evaluate

    model = load_model(args.model)
    before = copy.deepcopy(model)
    ds = classification_dataset(args.dataset, "sparsenet prune --dataset", seed=args.seed) if args.dataset else None
    if args.finetune_epochs and ds is None:
        raise ConfigError("--finetune-epochs needs --dataset to fine-tune on")
    train = (ds.x_train, ds.y_train) if ds is not None else None
    result = prune(model, method=args.method, granularity=args.granularity, scope=args.scope,
                   sparsity=sparsity_targets(args.sparsity), schedule=args.schedule, rounds=args.rounds,
                   exclude=args.exclude or (), normalize=args.normalize, train_data=train,
                   data=(ds.x_train[: args.calibration], ds.y_train[: args.calibration]) if ds is not None else None,
                   finetune_epochs=args.finetune_epochs, lr=args.lr, seed=args.seed, group_reduce=args.group_reduce,
                   quiet=args.quiet or args.json)
    compiled = compiled_copy(model, args.format, batch_size=args.batch_size)
    report = pruning_report(before, compiled)
    payload = {"pruning": result.to_dict(), "report": report, "format": args.format}
    if ds is not None:
        payload["accuracy_before"] = evaluate(before, ds.x_test, ds.y_test)["accuracy"]
        payload["accuracy_after"] = evaluate(compiled, ds.x_test, ds.y_test)["accuracy"]
        compiled.meta["test_accuracy"] = payload["accuracy_after"]
    save_model(compiled, args.output)
    payload["output"] = args.output
    text = format_report(report)
    groups = format_groups(compiled.meta["compile"].get("removed_units"))
    payload["removed_units"] = compiled.meta["compile"].get("removed_units")
    text += f"\n{groups}" if groups else ""
    if ds is not None:
        text += f"\ntest accuracy {payload['accuracy_before']:.4f} -> {payload['accuracy_after']:.4f}"
    emit(args, payload, text + f"\nsaved to {args.output}")
    return 0
