"""Compilation: store every pruned layer in a real format (Dense, CSR or BSR), chosen or measured.

Pruning leaves Dense weights pinned by ``Parameter.mask``; `sparsenet.prune.compiled` (this pass,
`_store_formats`, run on a copy) turns each layer's pattern into the storage it names, so that a
pruned model really is smaller and faster. With ``formats="auto"`` each layer is timed on this CPU
as the compiled inference plan runs it (`sparsenet.plan`), with every plausible format, and the
fastest is kept: dense is always a candidate, so
compiling never makes a layer slower than dense (within measurement noise).

Format specs are strings: ``"dense"``, ``"csr"``, ``"bsrRxC"`` (e.g. ``"bsr4x4"``, ``"bsr16x1"``),
and ``"auto"``.
"""

from __future__ import annotations

import copy
import re
import time
from functools import partial

import numpy as np

from .._checks import check_int, check_nonnegative, check_seed
from .._deprecation import warn_deprecated
from ..errors import ConfigError, ShapeError, SparsenetError
from ..formats import BSR, CSR, NM, Dense, WeightFormat
from ..formats.nm import CODE_DTYPES, nm_fits
from ..nn import Embedding, Graph, Sequential, inference, model_dtype
from ..nn._weighted import WeightedLayer
from ..plan import build_plan
from ..runtime import predict
from ..timing import compare
from .masks import get_layer, prunable_layers, set_layer
from .trace import layer_shapes, model_input_shape

__all__ = ["parse_format_spec"]

DEFAULT_BLOCKSIZES = ((4, 4), (8, 1), (16, 1), (1, 4))
# A format that stores more than this fraction of the matrix cannot beat dense (it moves more bytes
# for indices and runs a less regular loop), so "auto" does not time it.
_MAX_SPARSE_DENSITY = 0.7
# A block shape that stores more than this many times the kept entries wastes most of its work.
_MAX_BLOCK_FILL = 1.5

# Candidates within this fraction of the fastest count as equally fast; the smallest of them wins.
_NOISE = 0.03
_BSR_RE = re.compile(r"bsr(\d+)x(\d+)")
_NM_RE = re.compile(r"nm(\d+):(\d+)")
_VALID_SPECS = ("'auto', 'dense', 'csr', 'bsrRxC' with R, C >= 1 (e.g. 'bsr4x4', 'bsr16x1') or 'nmN:M' (e.g. "
                "'nm2:4', 'nm4:8')")
# N:M shapes "auto" tries, for a pattern that keeps at most N of every M columns (the fewest N of
# each M that the pattern fits, up to half of the columns)
_NM_SHAPES = (4, 8)


# -- specs ----------------------------------------------------------------------------------------
def parse_format_spec(spec) -> tuple[str, tuple[int, int] | None]:
    """Split a format spec into (name, blocksize): name is 'auto', 'dense', 'csr' or 'bsr'; the
    blocksize (R, C) is given for 'bsr' only. Case and surrounding spaces are ignored.

    >>> parse_format_spec("bsr16x1"), parse_format_spec("csr")
    (('bsr', (16, 1)), ('csr', None))
    """
    if not isinstance(spec, str):
        raise ConfigError(f"format spec: expected a string, one of {_VALID_SPECS}; found {spec!r}")
    s = spec.strip().lower()
    if s in ("auto", "dense", "csr"):
        return s, None
    m = _BSR_RE.fullmatch(s)
    if m and int(m.group(1)) >= 1 and int(m.group(2)) >= 1:
        return "bsr", (int(m.group(1)), int(m.group(2)))
    m = _NM_RE.fullmatch(s)
    if m and int(m.group(2)) in CODE_DTYPES and 1 <= int(m.group(1)) < int(m.group(2)):
        return "nm", (int(m.group(1)), int(m.group(2)))
    raise ConfigError(f"format spec: expected {_VALID_SPECS}; found {spec!r}")


def _spec(name: str, blocksize) -> str:
    if name == "nm":
        return f"nm{blocksize[0]}:{blocksize[1]}"
    return f"bsr{blocksize[0]}x{blocksize[1]}" if name == "bsr" else name


def format_spec_of(weight: WeightFormat) -> str:
    """Deprecated: use ``weight.spec`` ('dense', 'csr', 'bsr4x4', 'qbsr4x4'...)."""
    warn_deprecated("sparsenet.prune.compiler.format_spec_of(weight)", "weight.spec")
    return weight.spec


def _check_blocksizes(blocksizes) -> tuple[tuple[int, int], ...]:
    out = []
    for b in blocksizes:
        try:
            r, c = (int(v) for v in b)
        except (TypeError, ValueError):
            raise ConfigError(f"compiled blocksizes: expected (rows, cols) pairs, found {b!r}") from None
        if r < 1 or c < 1:
            raise ConfigError(f"compiled blocksizes: expected positive block dimensions, found {b!r}")
        out.append((r, c))
    return tuple(dict.fromkeys(out))


def _layer_specs(formats, names: list[str]) -> dict[str, str]:
    """{layer name: normalised spec} for the layers to convert (a dict leaves the others alone)."""
    if isinstance(formats, dict):
        specs = {}
        for key, spec in formats.items():
            name = str(key)
            if name not in names:
                raise ConfigError(f"compiled formats: {key!r} is not a weighted layer; "
                                     f"expected one of {names}")
            specs[name] = _spec(*parse_format_spec(spec))
        return specs
    spec = _spec(*parse_format_spec(formats))
    return {name: spec for name in names}


# -- patterns and conversion -----------------------------------------------------------------------
def _pattern(layer: WeightedLayer) -> np.ndarray:
    """Kept entries as a [out, fan_in] bool array: the Parameter mask if set (shaped like the weight's
    stored values: [out, fan_in] for Dense, [nnz] for CSR, [nblocks, R, C] for BSR), else the nonzeros."""
    w, mask = layer.weight, layer.weight_param.mask
    if mask is None:
        return w.to_dense() != 0
    if np.shape(mask) != w.data.shape:
        raise ShapeError(f"{layer.name}: expected a weight mask of shape {w.data.shape} (the stored "
                             f"values'), found {np.shape(mask)}")
    return w.with_data(np.asarray(mask, dtype=bool).astype(w.dtype)).to_dense() != 0


def _density(pattern: np.ndarray) -> float:
    return round(float(pattern.sum()) / pattern.size, 6) if pattern.size else 0.0


def _block_mask(pattern: np.ndarray, blocksize) -> np.ndarray:
    """[ceil(M/R), ceil(K/C)] bool: blocks holding at least one kept entry."""
    r, c = blocksize
    m, k = pattern.shape
    mb, nbc = -(-m // r), -(-k // c)
    padded = np.zeros((mb * r, nbc * c), dtype=bool)
    padded[:m, :k] = pattern
    return padded.reshape(mb, r, nbc, c).any(axis=(1, 3))


def _convert(values: np.ndarray, pattern: np.ndarray, name: str, blocksize):
    """(weight, mask or None) storing exactly the kept entries of `values` ([out, fan_in], zero off
    the pattern). The mask has the shape of the weight's data and pins pruned entries that the
    format stores anyway (a Dense weight, or BSR blocks only partly kept)."""
    if name == "dense":
        return Dense(values), (None if pattern.all() else pattern.copy())
    if name == "csr":
        return CSR.from_mask(values, pattern), None
    if name == "nm":  # (n, m) in place of a block shape; a pattern that does not fit raises ShapeError
        n, m = blocksize
        weight = NM.from_mask(values, pattern, n, m)
        kept = NM.from_mask(pattern.astype(values.dtype), pattern, n, m).data != 0
        inside = np.zeros(kept.shape, dtype=bool)  # every slot of the logical rows
        inside.reshape(-1, inside.shape[-1])[:] = True
        rows = pattern.shape[0]
        if rows % inside.shape[-1]:
            inside[-1, :, rows % inside.shape[-1]:] = False
        return weight, (None if np.array_equal(kept, inside) else kept)
    bmask = _block_mask(pattern, blocksize)
    weight = BSR.from_block_mask(values, bmask, blocksize)
    kept = BSR.from_block_mask(pattern.astype(values.dtype), bmask, blocksize).data != 0
    # Edge entries beyond the logical shape are False here and zero in data, as BSR requires.
    inside = BSR.from_block_mask(np.ones(pattern.shape, dtype=values.dtype), bmask, blocksize).data != 0
    return weight, (None if np.array_equal(kept, inside) else kept)


# -- timing -----------------------------------------------------------------------------------------
# "auto" times what inference runs: each layer's candidates as the kernels of its one-layer compiled
# plan (a Linear's product with the bias fused), the whole model through its plan. OpenBLAS threads
# keep spinning for a while after a call (about 0.1 s) and slow down a parallel Numba kernel that
# runs meanwhile (PERF-NOTES, pitfalls); plans stop them before a parallel kernel (`kernels._blas`),
# but only in a process of one Python thread, so every sample still waits that long (`settle`) and
# each candidate is measured as it runs in a model of its own kind.
_BLAS_SETTLE = 0.12


def _lazy(make):
    """A function that builds its runner (`make()`) at its first call, inside the candidate's own
    warm-up, then runs it: plans are built while their candidate is timed, not before the others."""
    state = []

    def run():
        if not state:
            state.append(make())
        state[0]()
    return run


def _random_input(layer: WeightedLayer, in_shape, batch_size: int, rng) -> np.ndarray:
    """A [batch_size, *in_shape] input as the layer gets it in a model: a 2-D input is the transposed
    view of a feature-major array (what a preceding Linear returns), so that no copy is timed; an
    Embedding's, indices into its table."""
    if isinstance(layer, Embedding):
        return rng.integers(0, layer.num_embeddings, (batch_size, *in_shape))
    if len(in_shape) == 1:
        return rng.standard_normal((in_shape[0], batch_size)).astype(layer.dtype).T
    return rng.standard_normal((batch_size, *in_shape)).astype(layer.dtype)


def _candidates(pattern, blocksizes, allowed=None) -> list[tuple[str, tuple[int, int] | None]]:
    """[(format name, blocksize)] worth timing: dense always, CSR and the BSR shapes that are not
    hopeless, and N:M ((n, m) in place of a block shape) when the pattern keeps at most half of every
    group of m columns and N:M would not store more than `_MAX_BLOCK_FILL` times its entries; of
    those, the formats in `allowed` (a layer's `float_formats`; None: all)."""
    if allowed is not None:
        return [c for c in _candidates(pattern, blocksizes) if c[0] in allowed]
    size = pattern.size
    density = _density(pattern)
    out = [("dense", None)]
    if density < _MAX_SPARSE_DENSITY:
        out.append(("csr", None))
    for bs in blocksizes:
        stored = float(_block_mask(pattern, bs).sum()) * bs[0] * bs[1] / size if size else 0.0
        if stored <= _MAX_BLOCK_FILL * density and stored < _MAX_SPARSE_DENSITY:
            out.append(("bsr", bs))
    rows, k = pattern.shape
    for m in _NM_SHAPES:
        if size and not nm_fits(pattern.shape, 1, m):
            n = max(1, int(pattern.reshape(rows, k // m, m).sum(axis=2).max()))
            if n <= m // 2 and n / m <= _MAX_BLOCK_FILL * density:  # (a scattered pattern: mostly zeros)
                out.append(("nm", (n, m)))
    return out


def _with_weight(layer: WeightedLayer, weight: WeightFormat) -> WeightedLayer:
    """A shallow copy of `layer` holding `weight`: candidates are timed side by side, `layer` untouched."""
    trial = copy.copy(layer)
    trial.weight = weight
    return trial


def _timed_forward(layer: WeightedLayer, weight: WeightFormat, x):
    """A function running `layer` with `weight` on `x` as a compiled plan runs it: the kernels of the
    layer's one-layer plan (a Linear's product with its bias fused; a convolution's forward; an
    Embedding's lookup, the step a plan binds)."""
    if isinstance(layer, Embedding):
        trial = _with_weight(layer, weight)

        def lookup():
            with inference(trial):
                trial.forward(x)
        return lookup
    plan = build_plan(_with_weight(layer, weight), x.shape[1:])
    return plan.kernels_only(np.ascontiguousarray(x))


def _plan_predict(model, x):
    if isinstance(model, Graph):  # any inputs (indices, several of them): as a user calls it
        return partial(predict, model, x)
    return partial(build_plan(model, x.shape[1:]).predict, x)


def _near_fastest(speedups: dict[str, float], names) -> list[str]:
    """The names whose speedup (over dense) is within `_NOISE` of the best of `names`."""
    best = max(speedups[n] for n in names)
    return [n for n in names if speedups[n] * (1 + _NOISE) >= best]


def _choose(layer, values, pattern, x, blocksizes, repeats, min_time, clock):
    """Time every candidate format of `layer`; return (spec, weight, mask, {spec: microseconds}, alternatives).

    The candidates are timed with `timing.compare` (alternating rounds, one sample of each per round,
    `repeats` rounds), so that a burst of load on a shared machine hits all of them alike; each is
    ranked by its speedup over dense (the median of per-round ratios). The fastest wins, except that
    a candidate within `_NOISE` of it and holding fewer bytes is preferred.
    """
    candidates = {_spec(name, bs): _convert(values, pattern, name, bs)
                  for name, bs in _candidates(pattern, blocksizes, layer.float_formats)}
    fns = {spec: _lazy(partial(_timed_forward, layer, weight, x)) for spec, (weight, _) in candidates.items()}
    settle = _BLAS_SETTLE if len(fns) > 1 else 0.0  # dense alone: no other pool to wait for
    measured = compare(fns, baseline="dense", rounds=repeats, min_time=min_time, settle=settle, **clock)
    speedups = measured.speedups()
    spec = min(_near_fastest(speedups, candidates), key=lambda s: (candidates[s][0].nbytes, -speedups[s]))
    sparse = [s for s in candidates if s != "dense"]
    alternatives = {"dense": candidates["dense"],
                    "sparse": candidates[max(sparse, key=speedups.get)] if sparse else candidates["dense"]}
    timings_us = {k: round(v * 1e6, 3) for k, v in measured.medians().items()}
    return (spec, *candidates[spec], timings_us, alternatives)


def _planned(model, assignment: dict):
    """A shallow copy of `model` (a Sequential or a Graph) whose layers named in `assignment`
    ({layer: (weight, mask)}) hold those weights; `model` is untouched."""
    planned = copy.copy(model)
    if isinstance(model, Sequential):
        planned.layers = list(model.layers)
    for name, (weight, _) in assignment.items():
        set_layer(planned, name, _with_weight(get_layer(model, name), weight))
    return planned


def _check_whole_model(model, plans: dict, x, repeats, min_time, clock) -> tuple[str, dict]:
    """Time the whole model under each plan ({plan: {layer: (weight, mask)}}) in alternating rounds.
    Plans whose speedup over all-dense (median of per-round ratios) is more than `_NOISE` below 1
    are out; of the rest, those within `_NOISE` of the fastest count as equally fast and the one
    holding the fewest bytes wins. The winning plan's weights and masks are set on `model`.

    Layers timed alone can mislead: in a model, a BLAS call and a parallel Numba kernel in a row
    compete for the cores (each pool's threads spin after a call), so a mix of dense and sparse
    layers can be slower than either alone. The all-dense plan is a candidate, so the compiled model
    is never slower than dense by more than the noise band."""
    fns = {plan: _lazy(partial(_plan_predict, _planned(model, plans[plan]), x)) for plan in ("sparse", "chosen", "dense")}
    measured = compare(fns, baseline="dense", rounds=repeats, min_time=min_time, settle=_BLAS_SETTLE, **clock)
    speedups = measured.speedups()
    nbytes = {plan: sum(w.nbytes for w, _ in assignment.values()) for plan, assignment in plans.items()}
    # never slower than dense beyond the noise band; among the plans as fast as the fastest of
    # those, the one holding the fewest bytes
    eligible = [p for p in fns if speedups[p] * (1 + _NOISE) >= 1.0]
    best = min(_near_fastest(speedups, eligible), key=lambda p: (nbytes[p], -speedups[p]))
    for name, (weight, mask) in plans[best].items():
        layer = get_layer(model, name)
        layer.weight = weight
        layer.weight_param.mask = mask
    return best, {plan: round(v * 1e6, 3) for plan, v in measured.medians().items()}


# -- the pass ---------------------------------------------------------------------------------------
def compile_model(model: Sequential, formats="auto", **options) -> dict:
    """Deprecated: use ``sparsenet.prune.compiled(model, formats, ...)``, which returns a compiled
    copy (dead units removed) and leaves `model` as it was; its record is ``meta["compile"]``.
    This name keeps the old behaviour for one release: `model` compiled in place, the record returned."""
    warn_deprecated("sparsenet.prune.compiler.compile_model", "sparsenet.prune.compiled (a compiled copy)")
    return _store_formats(model, formats, **options)


def _store_formats(model: Sequential, formats="auto", *, batch_size: int = 64,
                   blocksizes=DEFAULT_BLOCKSIZES, repeats: int = 5, min_time: float = 2e-3,
                   input_shape=None, seed: int = 0, timer=time.perf_counter,
                   sleep=time.sleep) -> dict:
    """Store every weighted layer of `model` in a real format, in place; return the record.
    (The pass behind `sparsenet.prune.compiled`, which runs it on a copy.)

    `formats`: ``"auto"`` (measure), one spec for every layer (``"dense"``, ``"csr"``,
    ``"bsrRxC"``), or ``{layer name: spec}`` (a Sequential's indices, a Graph's node names; layers not named
    stay as they are). A layer's pattern is its ``Parameter.mask`` if set, else its nonzeros; the new
    weight stores exactly the kept entries (BSR: every block holding one). Where the format also stores
    pruned entries (Dense with zeros, BSR blocks only partly kept), ``weight_param.mask`` (shaped like
    the stored values) pins them to zero during fine-tuning; otherwise the mask is cleared. Dtype,
    bias and shapes are unchanged. Each layer keeps its weight Parameter (new contents; optimisers
    reset that parameter's state, see `Optimizer`).

    "auto" times each layer on a random [batch_size, *input] batch (shapes from `trace_shapes`;
    `input_shape` defaults to ``model.input_shape``) as a plan runs it (a Linear's product kernel
    with its bias fused, a convolution's forward) for dense, CSR (density < 0.7) and each BSR block
    shape in `blocksizes` storing at most 1.5x the kept entries and < 0.7 of the matrix, with
    `sparsenet.timing.compare`: after a warm-up and a calibrated loop (samples of at least `min_time`
    seconds), `repeats` rounds in rotating order with a 0.12 s pause before every sample (BLAS
    threads spin after a call). Each candidate's speed is its speedup over dense, the median of the
    per-round ratios; the fastest wins, and a candidate within the noise band (3 %) of it holding
    fewer ``nbytes`` is preferred. Then the whole model is timed the same way with the per-layer
    choices, with every measured layer dense, and with every measured layer in its fastest sparse
    format, each through its compiled plan's `predict`: plans slower than all-dense beyond the noise band are out, and of the plans as fast as
    the fastest (within 3 %) the smallest wins, so that the compiled model is not slower than dense
    and, when speed does not decide, smaller. Cost: about (repeats + 4) * min_time + (repeats + 1) *
    0.12 s per candidate and per plan (no pause for a layer whose only candidate is dense).
    `timer` and `sleep` are the clock `compare` uses (tests pass a fake one).

    Returns ``{name: {"format", "density", "bytes", "converted"[, "timings_us"]}}`` ("density": kept
    fraction; "bytes": the weight's nbytes; "timings_us": median microseconds per candidate over the
    rounds, for layers measured). The same record is stored in ``model.meta["compile"]["layers"]``.

    >>> from sparsenet.nn import Linear, ReLU
    >>> m = Sequential(Linear(8, 8), ReLU(), Linear(8, 2))
    >>> _store_formats(m, "csr")["0"]["format"], m[0].weight.format_name
    ('csr', 'csr')
    """
    layers = prunable_layers(model)
    batch_size = check_int(batch_size, "batch_size", "compiled")
    repeats = check_int(repeats, "repeats", "compiled")
    min_time = check_nonnegative(min_time, "min_time (seconds)", "compiled")
    seed = check_seed(seed, "compiled")
    blocksizes = _check_blocksizes(blocksizes)
    specs = _layer_specs(formats, list(layers))

    shapes = None
    if "auto" in specs.values():
        try:
            shapes = layer_shapes(model, input_shape)
        except SparsenetError as e:
            raise ConfigError(f"compiled with 'auto' formats needs the layers' input shapes: {e}") from e
    rng = np.random.default_rng(seed)
    clock = {"timer": timer, "sleep": sleep}

    record, plans = {}, {"chosen": {}, "dense": {}, "sparse": {}}
    for name, layer in layers.items():
        spec = specs.get(name)
        if spec is None:
            w = layer.weight
            record[name] = {"format": w.spec, "density": _density(_pattern(layer)),
                            "bytes": int(w.nbytes), "converted": False}
            continue
        pattern = _pattern(layer)
        values = layer.weight.to_dense() * pattern
        entry = {}
        if spec == "auto":
            x = _random_input(layer, shapes[name][0], int(batch_size), rng)
            spec, weight, mask, entry["timings_us"], alternatives = _choose(
                layer, values, pattern, x, blocksizes, int(repeats), float(min_time), clock)
            plans["chosen"][name] = (weight, mask)
            plans["dense"][name], plans["sparse"][name] = alternatives["dense"], alternatives["sparse"]
        else:
            fmt, bs = parse_format_spec(spec)
            try:
                weight, mask = _convert(values, pattern, fmt, bs)
            except ShapeError as e:  # an N:M spec on a layer whose pattern or shape does not fit
                raise ConfigError(f"compiled: layer {name!r} cannot be stored as {spec}: {e}") from None
        layer.weight = weight
        layer.weight_param.mask = mask
        record[name] = {"format": spec, "density": _density(pattern),
                        "bytes": int(weight.nbytes), "converted": True, **entry}

    import numba  # already imported by the kernels; here only to report the thread count

    from ..bench import sample_inputs

    model.meta["compile"] = {
        "batch_size": int(batch_size),
        "formats": dict(specs) if isinstance(formats, dict) else _spec(*parse_format_spec(formats)),
        "layers": record,
        "threads": int(numba.get_num_threads()),
    }
    if plans["chosen"]:  # some layers were measured: check the whole model too
        if isinstance(model, Graph):
            x = sample_inputs(model, int(batch_size), rng)  # floats, or indices below their tables' sizes
        else:
            x = rng.standard_normal((int(batch_size), *model_input_shape(model, input_shape))).astype(model_dtype(model))
        plan, timings = _check_whole_model(model, plans, x, int(repeats), float(min_time), clock)
        for name in plans[plan]:
            weight = get_layer(model, name).weight
            record[name].update(format=weight.spec, bytes=int(weight.nbytes))
        model.meta["compile"].update(plan=plan, model_timings_us=timings)
    return record
