"""ONNX import and export. Needs the optional onnx package (``pip install 'sparsenet[onnx]'``),
imported only when a function here runs, so that ``import sparsenet`` never needs it.

`import_onnx` reads chains (one input, one output, no branches) of the ops in `SUPPORTED_OPS`, as
PyTorch's legacy and dynamo exporters and tf2onnx write MLPs and CNNs; `export_onnx` writes every
sparsenet layer kind as standard ops that onnxruntime runs. Not supported: branches and skip
connections, grouped/dilated convolutions, asymmetric padding, exact (erf) GELU, NHWC inputs.

>>> from sparsenet.onnx import export_onnx, import_onnx  # doctest: +SKIP
>>> export_onnx(model, "model.onnx"); model2 = import_onnx("model.onnx")  # doctest: +SKIP
"""

from ._proto import OnnxImportError
from .exporter import export_onnx
from .importer import SUPPORTED_OPS, import_onnx

__all__ = ["import_onnx", "export_onnx", "OnnxImportError", "SUPPORTED_OPS"]
