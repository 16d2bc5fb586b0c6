"""`sparsenet quantize`: int8 weights (symmetric, per output channel) for inference."""

from __future__ import annotations

from ._common import add_json_flag, emit

__all__ = ["register", "run"]


def register(subparsers) -> None:
    q = subparsers.add_parser("quantize", help="int8 weights (symmetric, per output channel) for inference",
                              epilog="example: sparsenet quantize lenet90.safetensors -o lenet90-int8.safetensors --dataset digits")
    q.add_argument("model", help="model file")
    q.add_argument("-o", "--output", required=True, help="quantized model file to write")
    q.add_argument("--dataset", help="'digits' or .npz: report test accuracy before and after")
    q.add_argument("--seed", type=int, default=0, help="seed of the dataset's train/test split")
    add_json_flag(q, "print the figures as one JSON object")
    q.set_defaults(func=run)


def run(args) -> int:
    """`sparsenet quantize MODEL -o OUT [--dataset NAME] [--json]`: load, quantise, save, report."""
    import os

    from ..data import classification_dataset
    from ..io import load_model, save_model
    from ..quantize import SCHEME, quantize_model
    from ..summary import summarize
    from ..train import evaluate

    model = load_model(args.model)
    ds = (classification_dataset(args.dataset, "sparsenet quantize --dataset", seed=getattr(args, "seed", 0))
          if getattr(args, "dataset", None) else None)
    quantized = quantize_model(model)
    payload = {"input": args.model, "output": args.output, "scheme": SCHEME,
               "bytes_before": summarize(model)["totals"]["total_bytes"],
               "bytes_after": summarize(quantized)["totals"]["total_bytes"],
               "layers": quantized.meta["quantization"]["layers"]}
    if ds is not None:
        payload["dataset"] = ds.name
        payload["accuracy_before"] = evaluate(model, ds.x_test, ds.y_test)["accuracy"]
        payload["accuracy_after"] = evaluate(quantized, ds.x_test, ds.y_test)["accuracy"]
        quantized.meta["test_accuracy"] = payload["accuracy_after"]
    save_model(quantized, args.output)
    payload["file_bytes_before"] = os.path.getsize(args.model)
    payload["file_bytes_after"] = os.path.getsize(args.output)
    b0, b1 = payload["bytes_before"], payload["bytes_after"]
    text = [f"quantized {len(payload['layers'])} layers ({SCHEME})",
            f"bytes {b0} -> {b1} ({b0 / max(b1, 1):.2f}x smaller); file {payload['file_bytes_before']} -> "
            f"{payload['file_bytes_after']} bytes"]
    if ds is not None:
        text.append(f"test accuracy on {ds.name} {payload['accuracy_before']:.4f} -> {payload['accuracy_after']:.4f}")
    text.append(f"saved to {args.output}")
    emit(args, payload, "\n".join(text))
    return 0
