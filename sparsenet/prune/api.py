"""`prune`: importance -> selection -> application, driven by a schedule; `compiled`: masks -> formats.

>>> import sparsenet as sn
>>> model = sn.build_model("lenet300", seed=0)
>>> result = sn.prune.prune(model, method="magnitude", sparsity=0.9, scope="global")
>>> round(result.sparsity, 3)
0.9
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .._checks import check_fraction, check_int, check_seed
from .._deprecation import warn_deprecated
from ..errors import ConfigError
from ..train import evaluate, fit
from ..nn import Graph
from .granularity import make_granularity
from .channels import group_report
from .importance import Movement, make_importance
from .masks import apply_masks, layer_mask, prunable_layers, require_chain, sparsity_of
from .schedule import SCHEDULES, iterative_targets, polynomial_sparsity
from .selection import select_masks

__all__ = ["PruneResult", "prune", "prune_step", "compiled"]


@dataclass
class PruneResult:
    """What a pruning run did: the masks, per-layer targets and reached sparsities, and a history."""

    method: str
    granularity: str
    scope: str
    schedule: str
    target: object
    masks: dict = field(repr=False)
    layers: dict = field(default_factory=dict)
    history: list = field(default_factory=list)

    @property
    def sparsity(self) -> float:
        """Reached sparsity over all pruned layers' weights."""
        total = sum(m.size for m in self.masks.values())
        return 1.0 - sum(int(m.sum()) for m in self.masks.values()) / total if total else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("masks")
        d["sparsity"] = self.sparsity
        return d


def prune_step(model, importance, granularity, sparsity, *, scope="layer", normalize="none", exclude=(),
               data=None, group_reduce="mean") -> dict:
    """One importance -> selection -> application pass. Already-pruned weights stay pruned.
    Returns the masks applied. Structured granularities on a Graph prune the channels of its
    dependency groups (`sparsenet.prune.channels.prune_groups`; `group_reduce` combines the members'
    scores)."""
    from .channels import prune_groups

    if granularity.structured and isinstance(model, Graph):
        masks, _ = prune_groups(model, importance, granularity, sparsity, scope=scope, normalize=normalize,
                                exclude=exclude, data=data, reduce=group_reduce)
        return masks
    if granularity.structured:
        require_chain(model, "prune_step")  # before anything changes
        if granularity.kinds != ("filters", "neurons"):
            raise ConfigError(f"granularity {granularity.name!r}: a Sequential has only neurons and filters "
                              f"(heads and embedding dimensions are pruned on Graphs)")
    layers = prunable_layers(model, exclude)
    only = getattr(granularity, "only", None)
    if only is not None:  # a granularity of one kind of layer (embedding rows)
        layers = {n: l for n, l in layers.items() if isinstance(l, only)}
        if not layers:
            raise ConfigError(f"granularity {granularity.name!r} prunes {'/'.join(c.__name__ for c in only)} "
                              f"layers; the model has none (or all are excluded)")
    if importance.structured_only and not granularity.structured:
        raise ConfigError(f"method {importance.name!r} scores whole units: use granularity 'neuron'/'filter'")
    if granularity.structured:
        last = list(prunable_layers(model))[-1]
        if last in layers:  # a model's outputs cannot be removed
            layers.pop(last)
    if not layers:
        raise ConfigError("no layer left to prune (all excluded)")
    scores = importance(model, layers, data)
    prior = {n: layer_mask(l) for n, l in layers.items()}
    masks = select_masks(scores, granularity, sparsity, scope=scope, normalize=normalize, prior=prior)
    apply_masks(model, masks, remove_units=granularity.structured)
    return masks


def _finetune(model, train_data, epochs, lr, batch_size, seed, quiet, hook=None, on_step=None):
    if train_data is None or epochs <= 0:
        return None
    x, y = train_data
    return fit(model, x, y, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, quiet=quiet,
               after_backward=hook, on_step=on_step)


def prune(model, *, method="magnitude", granularity="unstructured", scope="layer", sparsity=0.5,
          schedule="oneshot", exclude=(), data=None, train_data=None, val_data=None, finetune_epochs=0,
          rounds=3, lr=1e-3, batch_size=32, normalize="mean", seed=0, gradual_frequency=None,
          quiet=True, group_reduce="mean") -> PruneResult:
    """Prune `model` in place: weights stay Dense with pinned masks until `compiled`.

    method: a criterion name (see `sparsenet.prune.CRITERIA`) or an Importance object.
    granularity: 'unstructured', 'blockRxC', 'N:M', or 'neuron'/'filter' (structured units), and on
    Graphs 'head' (attention heads), 'dim' (embedding dimensions) and 'embedding-row' (whole rows
    of embedding tables: tokens, users, items; only Embedding layers are pruned). On a Graph, structured pruning
    removes channels of dependency groups (`sparsenet.prune.groups`): a residual Add's branches, a
    depthwise convolution's inputs and outputs, Q/K/V and the output projection of a head go together;
    `sparsity` is the fraction of each group's channels (a dict: {group name: fraction}),
    `group_reduce` ('mean', 'sum', 'max') combines the scores of a channel's members, and
    ``result.layers`` describes each pruned group (kind, nodes, channels before and after).
    scope: 'layer' or 'global'; sparsity: a fraction, or {layer name: fraction} for per-layer targets.
    normalize: how global scope compares layers: 'mean' (default: each layer's scores divided by their
    mean, so that layers with smaller weights are not pruned away), 'l2' or 'none' (raw scores).
    schedule: 'oneshot' (prune, then fine-tune `finetune_epochs`), 'iterative' (`rounds` prune ->
    fine-tune rounds), 'gradual' (cubic ramp during `finetune_epochs` of training, Zhu & Gupta).
    Lottery tickets are `sparsenet.prune.lottery_ticket`.
    data: calibration (x, y) for data-driven criteria (defaults to train_data); train_data: (x, y)
    for fine-tuning; val_data: (x, y) to record accuracy in the history.
    """
    seed = check_seed(seed, "prune")
    batch_size = check_int(batch_size, "batch_size", "prune")
    finetune_epochs = check_int(finetune_epochs, "finetune_epochs", "prune", low=0)
    importance = make_importance(method, seed)
    gran = make_granularity(granularity)
    if schedule not in SCHEDULES or schedule == "lottery":
        raise ConfigError(f"unknown schedule {schedule!r}: expected 'oneshot', 'iterative' or 'gradual' "
                          f"(lottery tickets: sparsenet.prune.lottery_ticket)")
    for t in (sparsity.values() if isinstance(sparsity, dict) else [sparsity]):
        check_fraction(t, "sparsity", "prune")
    target = gran.sparsity if gran.local else sparsity  # N:M fixes its own sparsity
    step_options = {"scope": scope, "normalize": normalize, "exclude": exclude, "group_reduce": group_reduce}
    data = data if data is not None else train_data
    if importance.needs_data and data is None:
        raise ConfigError(f"method {importance.name!r} needs data: pass data=(x, y) or train_data=(x, y)")
    if isinstance(importance, Movement) and schedule != "gradual":  # gradual observes its own steps
        importance.require_observed(prunable_layers(model, exclude), "prune",
                                    f"schedule {schedule!r} scores before any training step")
    history = []

    def record(stage, **extra):
        entry = {"stage": stage, "sparsity": _model_sparsity(model, exclude), **extra}
        if val_data is not None:
            entry["val_accuracy"] = evaluate(model, *val_data)["accuracy"]
        history.append(entry)

    if schedule == "oneshot":
        masks = prune_step(model, importance, gran, target, data=data, **step_options)
        record("pruned")
        if _finetune(model, train_data, finetune_epochs, lr, batch_size, seed, quiet):
            record("fine-tuned")
    elif schedule == "iterative":
        targets = [target] if gran.local else _round_targets(target, rounds)
        for r, t in enumerate(targets):
            masks = prune_step(model, importance, gran, t, data=data, **step_options)
            record(f"round {r + 1} pruned", target=t if not isinstance(t, dict) else None)
            if _finetune(model, train_data, finetune_epochs, lr, batch_size, seed + r, quiet):
                record(f"round {r + 1} fine-tuned")
    else:  # gradual
        if train_data is None or finetune_epochs < 1:
            raise ConfigError("gradual schedule needs train_data=(x, y) and finetune_epochs >= 1")
        if isinstance(target, dict):
            raise ConfigError("gradual schedule takes one sparsity, not per-layer targets")
        steps_per_epoch = -(-len(train_data[0]) // batch_size)
        total = steps_per_epoch * finetune_epochs
        begin = 0
        end = max(int(total * 0.75), 1)  # ramp over the first 3/4 of training, then recover
        freq = gradual_frequency or max(steps_per_epoch // 2, 1)
        n_steps = max(end // freq, 1)
        tracker = importance.observe_layers(prunable_layers(model, exclude)) if isinstance(importance, Movement) else None
        state = {"masks": None}

        def on_step(step):
            if step % freq == 0 and step <= begin + n_steps * freq:
                s = polynomial_sparsity(step, initial=0.0, final=target, begin=begin, steps=n_steps, frequency=freq)
                state["masks"] = prune_step(model, importance, gran, s, data=None if tracker else data,
                                            **step_options)
                entry = {"stage": f"step {step}", "target": s, "sparsity": _model_sparsity(model, exclude)}
                if val_data is not None:
                    entry["val_accuracy"] = evaluate(model, *val_data)["accuracy"]
                history.append(entry)

        _finetune(model, train_data, finetune_epochs, lr, batch_size, seed, quiet,
                  hook=tracker.observe if tracker else None, on_step=on_step)
        if state["masks"] is None or _model_sparsity(model, exclude) < target - 1e-9:
            state["masks"] = prune_step(model, importance, gran, target, data=None if tracker else data,
                                        **step_options)
        masks = state["masks"]
        record("final")
    result = PruneResult(method=importance.name, granularity=gran.name, scope=scope, schedule=schedule,
                         target=target, masks=masks, history=history)
    if gran.structured and isinstance(model, Graph):  # per group: its channels before and after
        result.layers = {n: {**g, "target": float(target[n] if isinstance(target, dict) else target),
                             "reached": 1.0 - g["after"] / g["before"]}
                         for n, g in group_report(model, gran.kinds).items()
                         if not isinstance(target, dict) or n in target}
    else:
        result.layers = {n: {"target": float(target[n] if isinstance(target, dict) else target),
                             "reached": sparsity_of(m)} for n, m in masks.items()}
    model.meta["pruning"] = result.to_dict()
    return result


def _round_targets(target, rounds):
    if isinstance(target, dict):
        per = {n: iterative_targets(float(t), rounds) for n, t in target.items()}
        return [{n: v[r] for n, v in per.items()} for r in range(rounds)]
    return iterative_targets(float(target), rounds)


def _model_sparsity(model, exclude=()) -> float:
    masks = [layer_mask(l) for l in prunable_layers(model, exclude).values()]
    total = sum(m.size for m in masks)
    return 1.0 - sum(int(m.sum()) for m in masks) / total if total else 0.0


def compiled(model, formats="auto", *, batch_size: int = 64, **options):
    """A compiled copy of `model`, really smaller: dead units physically removed (structured pruning:
    `remove_dead_units` for a Sequential, `sparsenet.prune.channels.remove_dead_channels` for a Graph),
    then every weighted layer stored in a real format. `model` is left exactly
    as it was (weights, masks, mode), so the two can be compared; build the copy's optimiser on it.

    formats: ``"auto"`` (each layer's forward timed on this CPU in every plausible format, then the
    whole model checked, see `sparsenet.prune.compiler._store_formats`), one spec for every layer
    (``"dense"``, ``"csr"``, ``"bsrRxC"``), or ``{layer name: spec}``. options: `blocksizes`,
    `repeats`, `min_time`, `input_shape`, `seed` (of the "auto" timing inputs). The record of what was
    done is ``compiled.meta["compile"]`` (per layer: format, density, bytes, timings; removed units).

    >>> import sparsenet as sn
    >>> model = sn.build_model("lenet300", seed=0)
    >>> _ = sn.prune.prune(model, sparsity=0.9)
    >>> small = compiled(model, "csr")
    >>> small[1].weight.spec, model[1].weight.spec
    ('csr', 'dense')
    """
    from ..nn import Graph, Sequential
    from .compiler import _store_formats
    from .channels import remove_dead_channels
    from .surgery import remove_dead_units

    if isinstance(model, Graph):  # the dead channels of its dependency groups
        result, removed = remove_dead_channels(model)
    elif isinstance(model, Sequential):
        result, removed = remove_dead_units(model)
    else:
        raise ConfigError(f"compiled: expected a Sequential or a Graph, found {type(model).__name__}")
    _store_formats(result, formats, batch_size=batch_size, **options)
    result.meta["compile"]["removed_units"] = removed
    return result


def compile(model, formats="auto", *, batch_size: int = 64, **options):  # noqa: A001 - deprecated name
    """Deprecated (shadows the builtin): use `compiled`, which does the same."""
    warn_deprecated("sparsenet.prune.compile", "sparsenet.prune.compiled")
    return compiled(model, formats, batch_size=batch_size, **options)
