"""`sparsenet import-onnx` and `sparsenet export-onnx`: ONNX files to and from sparsenet model files
(the onnx package is imported only when one of them runs)."""

from __future__ import annotations

from ._common import add_json_flag, emit

__all__ = ["register", "run_import", "run_export"]


def register(subparsers) -> None:
    imp = subparsers.add_parser("import-onnx", help="convert an ONNX chain (PyTorch, Keras/tf2onnx MLPs and CNNs) "
                                                    "to a sparsenet model file",
                                epilog="example: sparsenet import-onnx model.onnx -o model.safetensors --json")
    imp.add_argument("model", help="ONNX file")
    imp.add_argument("-o", "--output", required=True, help="sparsenet model file to write")
    imp.add_argument("--no-fold-batchnorm", action="store_true",
                     help="keep BatchNormalization as BatchNorm layers instead of folding it into Gemm/Conv")
    add_json_flag(imp)
    imp.set_defaults(func=run_import)

    exp = subparsers.add_parser("export-onnx", help="write a sparsenet model file as ONNX (runs in onnxruntime)",
                                epilog="example: sparsenet export-onnx lenet90.safetensors -o lenet90.onnx "
                                       "--sparse-initializers")
    exp.add_argument("model", help="sparsenet model file")
    exp.add_argument("-o", "--output", required=True, help="ONNX file to write")
    exp.add_argument("--sparse-initializers", action="store_true",
                     help="store CSR/BSR weights as sparse tensors (smaller file; onnxruntime densifies them on load)")
    exp.add_argument("--opset", type=int, default=17, help="ONNX opset, 13 or later (default: %(default)s)")
    add_json_flag(exp)
    exp.set_defaults(func=run_export)


def run_import(args) -> int:
    from ..io import save_model
    from ..onnx import import_onnx
    from ..prune.masks import named_layers

    model = import_onnx(args.model, fold_batchnorm=not args.no_fold_batchnorm)
    save_model(model, args.output)
    kinds = [type(layer).__name__ for layer in named_layers(model).values()]
    payload = {"input": args.model, "output": args.output, "layers": kinds, "kind": type(model).__name__,
               "input_shape": list(model.input_shape) if model.input_shape else None,
               "params": int(sum(p.data.size for p in model.parameters())),
               "folded": model.meta["onnx"]["folded"], "opset": model.meta["onnx"]["opset"]}
    folded = f"; folded {len(payload['folded'])} nodes into the layer before" if payload["folded"] else ""
    emit(args, payload, f"imported {len(kinds)} layers ({', '.join(kinds)}) from {args.model}{folded}; "
                        f"saved to {args.output}")
    return 0


def run_export(args) -> int:
    import os

    from ..io import load_model
    from ..onnx import export_onnx
    from ..prune.masks import named_layers

    model = load_model(args.model)
    proto = export_onnx(model, args.output, sparse_initializers=args.sparse_initializers, opset=args.opset)
    g = proto.graph
    payload = {"input": args.model, "output": args.output, "opset": args.opset, "nodes": len(g.node),
               "initializers": len(g.initializer), "sparse_initializers": len(g.sparse_initializer),
               "bytes": os.path.getsize(args.output)}
    sparse = f", {len(g.sparse_initializer)} sparse initializers" if g.sparse_initializer else ""
    emit(args, payload, f"exported {len(named_layers(model))} layers as {len(g.node)} ONNX nodes (opset {args.opset}"
                        f"{sparse}) to {args.output} ({payload['bytes']} bytes)")
    return 0
