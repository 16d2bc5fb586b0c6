"""Layer <-> (JSON spec, named arrays) codecs. Layers know nothing of files; this module knows both.

Every decoder validates what it reads: JSON field types, array dtypes and shapes, and sparse formats
with their full O(nnz) check, so a kernel never sees unvalidated data from a file.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelFileError, SparsenetError
from ..formats import BSR, CSR, Dense, WeightFormat
from ..formats.quantized import QBSR, QCSR, QDense, QuantizedFormat
from .. import nn

__all__ = ["encode_layer", "decode_layer", "LAYER_KINDS"]


# -- weights ---------------------------------------------------------------------------------------
def _encode_weight(w: WeightFormat):
    spec = {"format": w.format_name, "shape": list(w.shape), "dtype": str(w.dtype)}
    if isinstance(w, QuantizedFormat):  # int8 values + float32 per-row scales
        if isinstance(w, QBSR):
            spec["blocksize"] = list(w.blocksize)
        if isinstance(w, QDense):
            return spec, {"data": w.data, "scales": w.scales}
        return spec, {"data": w.data, "indices": w.indices, "indptr": w.indptr, "scales": w.scales}
    if isinstance(w, Dense):
        return spec, {"data": w.data}
    if isinstance(w, BSR):
        spec["blocksize"] = list(w.blocksize)
    return spec, {"data": w.data, "indices": w.indices, "indptr": w.indptr}


def _decode_weight(spec, arrays, where) -> WeightFormat:
    fmt = _field(spec, "format", str, where)
    shape = tuple(_int_list(spec, "shape", 2, where))
    data = _array(arrays, "data", where)
    if fmt in ("dense", "qdense"):
        if data.shape != shape:
            raise ModelFileError(f"{where}: dense weight declared shape {shape}, found array {data.shape}")
        if fmt == "qdense":
            return QDense(data, _array(arrays, "scales", where), check=True)
        dense = Dense(data)
        dense.check()
        return dense
    if fmt not in ("csr", "bsr", "qcsr", "qbsr"):
        raise ModelFileError(f"{where}: expected weight format dense, csr, bsr, qdense, qcsr or qbsr, "
                             f"found {fmt!r}")
    indices, indptr = _array(arrays, "indices", where), _array(arrays, "indptr", where)
    if fmt in ("bsr", "qbsr"):
        blocksize = tuple(_int_list(spec, "blocksize", 2, where))
        if data.ndim != 3 or data.shape[1:] != blocksize:
            raise ModelFileError(f"{where}: BSR blocks declared {blocksize}, found data shape {data.shape}")
        if fmt == "qbsr":
            return QBSR(data, indices, indptr, _array(arrays, "scales", where), shape, check=True)
        return BSR(data, indices, indptr, shape, check=True)
    if fmt == "qcsr":
        return QCSR(data, indices, indptr, _array(arrays, "scales", where), shape, check=True)
    return CSR(data, indices, indptr, shape, check=True)


# -- helpers that turn malformed JSON into ModelFileError -----------------------------------------
def _field(spec, key, typ, where):
    if not isinstance(spec, dict) or key not in spec:
        raise ModelFileError(f"{where}: missing field {key!r}")
    value = spec[key]
    types = typ if isinstance(typ, tuple) else (typ,)
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        expected = " or ".join(t.__name__ for t in types)
        raise ModelFileError(f"{where}: field {key!r} should be {expected}, found {type(value).__name__}")
    return value


def _int_list(spec, key, length, where):
    value = _field(spec, key, list, where)
    if len(value) != length or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ModelFileError(f"{where}: field {key!r} should be {length} non-negative integers, found {value!r}")
    return value


def _array(arrays, key, where):
    if key not in arrays:
        raise ModelFileError(f"{where}: missing array {key!r}")
    return arrays[key]


def _float_vector(arrays, key, n, where):
    a = _array(arrays, key, where)
    if a.dtype.kind != "f" or a.shape != (n,):
        raise ModelFileError(f"{where}: array {key!r} should be float of shape ({n},), found {a.dtype} {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ModelFileError(f"{where}: array {key!r} holds NaN or inf")
    return a


# -- per-layer codecs ------------------------------------------------------------------------------
def _enc_weighted(layer, config):
    wspec, warrays = _encode_weight(layer.weight)
    spec = dict(config, bias=layer.bias is not None, weight=wspec)
    arrays = {f"weight.{k}": v for k, v in warrays.items()}
    if layer.bias is not None:
        arrays["bias"] = layer.bias.data
    return spec, arrays


def _dec_weighted(make, spec, arrays, where):
    weight = _decode_weight(_field(spec, "weight", dict, where),
                            {k[7:]: v for k, v in arrays.items() if k.startswith("weight.")}, where)
    has_bias = _field(spec, "bias", bool, where)
    bias = _float_vector(arrays, "bias", weight.shape[0], where) if has_bias else None
    return make(weight, bias, has_bias)


def _enc_linear(layer):
    return _enc_weighted(layer, {"in_features": layer.in_features, "out_features": layer.out_features})


def _dec_linear(spec, arrays, where):
    i, o = _field(spec, "in_features", int, where), _field(spec, "out_features", int, where)
    return _dec_weighted(lambda w, b, hb: nn.Linear(i, o, hb, weight=w, bias_value=b, dtype=w.dtype),
                         spec, arrays, where)


def _enc_conv(layer):
    return _enc_weighted(layer, {"in_channels": layer.in_channels, "out_channels": layer.out_channels,
                                 "kernel_size": list(layer.kernel_size), "stride": layer.stride,
                                 "padding": layer.padding})


def _dec_conv(spec, arrays, where):
    args = (_field(spec, "in_channels", int, where), _field(spec, "out_channels", int, where),
            tuple(_int_list(spec, "kernel_size", 2, where)))
    stride, padding = _field(spec, "stride", int, where), _field(spec, "padding", int, where)
    if padding > max(args[2]):  # more padding than kernel computes only zeros, and can request gigabytes
        raise ModelFileError(f"{where}: padding {padding} should be at most the kernel size {args[2]}")
    return _dec_weighted(lambda w, b, hb: nn.Conv2d(*args, stride=stride, padding=padding, bias=hb, weight=w,
                                                    bias_value=b, dtype=w.dtype), spec, arrays, where)


def _enc_bn(layer):
    spec = {"num_features": layer.num_features, "eps": layer.eps, "momentum": layer.momentum}
    return spec, {"weight": layer.weight.data, "bias": layer.bias.data,
                  "running_mean": layer.running_mean, "running_var": layer.running_var}


def _dec_bn(cls):
    def dec(spec, arrays, where):
        n = _field(spec, "num_features", int, where)
        layer = cls(n, eps=float(_field(spec, "eps", (int, float), where)),
                    momentum=float(_field(spec, "momentum", (int, float), where)),
                    dtype=_float_vector(arrays, "weight", n, where).dtype)
        layer.weight.data[:] = arrays["weight"]
        layer.bias.data[:] = _float_vector(arrays, "bias", n, where)
        layer.running_mean[:] = _float_vector(arrays, "running_mean", n, where)
        var = _float_vector(arrays, "running_var", n, where)
        if np.any(var < 0):
            raise ModelFileError(f"{where}: running_var holds negative values")
        layer.running_var[:] = var
        return layer
    return dec


def _enc_pool(layer):
    return {"kernel_size": list(layer.kernel_size), "stride": list(layer.stride), "padding": layer.padding}, {}


def _dec_pool(cls):
    def dec(spec, arrays, where):
        return cls(tuple(_int_list(spec, "kernel_size", 2, where)), tuple(_int_list(spec, "stride", 2, where)),
                   _field(spec, "padding", int, where))
    return dec


def _plain(cls):
    return (lambda layer: ({}, {})), (lambda spec, arrays, where: cls())


LAYER_KINDS = {
    "Linear": (nn.Linear, _enc_linear, _dec_linear),
    "Conv2d": (nn.Conv2d, _enc_conv, _dec_conv),
    "BatchNorm1d": (nn.BatchNorm1d, _enc_bn, _dec_bn(nn.BatchNorm1d)),
    "BatchNorm2d": (nn.BatchNorm2d, _enc_bn, _dec_bn(nn.BatchNorm2d)),
    "MaxPool2d": (nn.MaxPool2d, _enc_pool, _dec_pool(nn.MaxPool2d)),
    "AvgPool2d": (nn.AvgPool2d, _enc_pool, _dec_pool(nn.AvgPool2d)),
    "LeakyReLU": (nn.LeakyReLU, lambda l: ({"negative_slope": l.negative_slope}, {}),
                  lambda s, a, w: nn.LeakyReLU(float(_field(s, "negative_slope", (int, float), w)))),
    "Softmax": (nn.Softmax, lambda l: ({"axis": l.axis}, {}),
                lambda s, a, w: nn.Softmax(_field(s, "axis", int, w))),
    "Dropout": (nn.Dropout, lambda l: ({"p": l.p, "seed": l.seed}, {}),
                lambda s, a, w: nn.Dropout(float(_field(s, "p", (int, float), w)), seed=_field(s, "seed", int, w))),
    "Concat": (nn.Concat, lambda l: ({"axis": l.axis}, {}), lambda s, a, w: nn.Concat(_field(s, "axis", int, w))),
}
for _cls in (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.Identity, nn.Flatten, nn.GlobalAvgPool2d, nn.Add):
    LAYER_KINDS[_cls.__name__] = (_cls, *_plain(_cls))


def encode_layer(layer) -> tuple[dict, dict]:
    """(spec with 'kind', arrays by name) for one layer."""
    kind = type(layer).__name__
    if kind not in LAYER_KINDS or type(layer) is not LAYER_KINDS[kind][0]:
        raise SparsenetError(f"cannot save layer {layer.name}: kind {kind} has no file codec")
    spec, arrays = LAYER_KINDS[kind][1](layer)
    for pname, p in layer.own_parameters().items():  # pruning masks pinned for fine-tuning
        if p.mask is not None:
            arrays[f"{pname}.mask"] = p.mask
    return dict(spec, kind=kind), arrays


def decode_layer(spec, arrays, where: str):
    """Rebuild one layer; any inconsistency raises ModelFileError naming `where`."""
    kind = _field(spec, "kind", str, where)
    if kind not in LAYER_KINDS:
        raise ModelFileError(f"{where}: unknown layer kind {kind!r}")
    where = f"{where} ({kind})"
    try:
        layer = LAYER_KINDS[kind][2](spec, arrays, where)
    except ModelFileError:
        raise
    except SparsenetError as e:  # a format or shape check failed on file data
        raise ModelFileError(f"{where}: {e}") from None
    for pname, p in layer.own_parameters().items():
        mask = arrays.get(f"{pname}.mask")
        if mask is None:
            continue
        if mask.dtype != np.bool_ or mask.shape != p.data.shape:
            raise ModelFileError(f"{where}: {pname}.mask should be bool of shape {p.data.shape}, "
                                 f"found {mask.dtype} {mask.shape}")
        p.mask = mask.copy()
        p.apply_mask()
    return layer
