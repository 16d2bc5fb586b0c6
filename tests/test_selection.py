"""`select_masks` and the granularities on hand-made scores: the pruned groups are a prefix of the
documented order (already pruned first, then by score, then layer, then group index), the prefix is
the one whose size is nearest the target, N:M keeps the best N of every run, and bad input raises."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from sparsenet.errors import SparsenetError
from sparsenet.prune import NM, Block, Unstructured, Units, iterative_targets, make_granularity, select_masks
from sparsenet.prune.selection import NORMALIZATIONS

SETTINGS = settings(max_examples=60, deadline=None)


# -- strategies ---------------------------------------------------------------------------------------

granularities = st.one_of(
    st.just(Unstructured()),
    st.just(Units()),
    st.builds(Block, st.integers(1, 4), st.integers(1, 4)),
)


@st.composite
def layer_scores(draw, max_side=10):
    """A [rows, cols] score array with many ties (a few distinct values)."""
    rows, cols = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    values = draw(st.lists(st.integers(0, 3), min_size=rows * cols, max_size=rows * cols))
    return np.array(values, dtype=np.float64).reshape(rows, cols)


def _groups(scores, gran, prior=None):
    """(ids, sizes, mean score per group, already-pruned groups), as documented."""
    ids = gran.group_ids(scores.shape)
    sizes = np.bincount(ids.ravel())
    gs = np.bincount(ids.ravel(), weights=scores.ravel(), minlength=len(sizes)) / sizes
    dead = np.zeros(len(sizes), dtype=bool)
    if prior is not None:
        dead = np.bincount(ids.ravel(), weights=(~prior).ravel(), minlength=len(sizes)) >= sizes
    return ids, sizes, gs, dead


def _pruned_groups(mask, ids, n):
    """Groups a mask prunes, checking each group is all kept or all pruned."""
    kept = np.bincount(ids.ravel(), weights=mask.ravel().astype(float), minlength=n)
    sizes = np.bincount(ids.ravel(), minlength=n)
    assert np.all((kept == 0) | (kept == sizes)), "a group is partly pruned"
    return kept == 0


def _check_prefix(pruned_in_order, sizes_in_order, target, cap):
    """The pruned groups are the first k of the order and k is the prefix nearest the target
    (at most `cap` groups)."""
    k = int(pruned_in_order.sum())
    assert pruned_in_order[:k].all() and not pruned_in_order[k:].any(), "pruned groups are not a prefix"
    assert k <= cap
    cum = np.concatenate([[0], np.cumsum(sizes_in_order)])
    best = np.min(np.abs(cum[: cap + 1] - target))
    assert abs(cum[k] - target) <= best + 1e-9, f"pruned {cum[k]} of target {target}; {best} off was possible"


# -- layer scope ---------------------------------------------------------------------------------------

@SETTINGS
@given(scores=layer_scores(), gran=granularities, sparsity=st.floats(0, 1))
def test_layer_scope_prunes_nearest_prefix_of_the_order(scores, gran, sparsity):
    mask = select_masks({"0": scores}, gran, sparsity)["0"]
    assert mask.shape == scores.shape and mask.dtype == bool
    ids, sizes, gs, _ = _groups(scores, gran)
    n = len(sizes)
    pruned = _pruned_groups(mask, ids, n)
    order = np.lexsort((np.arange(n), gs))  # lowest score first, lower index first on ties
    _check_prefix(pruned[order], sizes[order], sparsity * scores.size, cap=n - 1)
    assert mask.any()


@SETTINGS
@given(scores=layer_scores(), sparsity=st.floats(0, 1))
def test_unstructured_count_is_exact(scores, sparsity):
    mask = select_masks({"0": scores}, Unstructured(), sparsity)["0"]
    x = sparsity * scores.size
    assume(abs(x - np.floor(x) - 0.5) > 1e-9)  # x.5: either neighbour is as near
    assert int((~mask).sum()) == min(round(x), scores.size - 1)


@SETTINGS
@given(scores=layer_scores(), gran=granularities, first=st.floats(0, 1), extra=st.floats(0, 1), seed=st.integers(0, 99))
def test_already_pruned_groups_go_first(scores, gran, first, extra, seed):
    """Re-pruning with other scores to a higher target keeps what was pruned and stays exact."""
    prior = select_masks({"0": np.random.default_rng(seed).random(scores.shape)}, gran, first)["0"]
    reached = 1 - prior.mean()
    target = reached + (1 - reached) * extra
    mask = select_masks({"0": scores}, gran, target, prior={"0": prior})["0"]
    assert not np.any(mask & ~prior), "an already-pruned weight is kept"
    ids, sizes, gs, dead = _groups(scores, gran, prior)
    n = len(sizes)
    order = np.lexsort((np.arange(n), gs, ~dead))
    _check_prefix(_pruned_groups(mask, ids, n)[order], sizes[order], target * scores.size, cap=n - 1)


def test_all_equal_scores_prune_lowest_indices_first():
    scores = np.ones((4, 6))
    mask = select_masks({"0": scores}, Unstructured(), 0.5)["0"]
    np.testing.assert_array_equal(mask.ravel(), np.arange(24) >= 12)
    mask = select_masks({"0": scores}, Units(), 0.5)["0"]
    np.testing.assert_array_equal(mask[:, 0], [False, False, True, True])
    mask = select_masks({"0": scores}, Block(2, 3), 0.25)["0"]  # 2 x 2 blocks, the first goes
    np.testing.assert_array_equal(mask, ~((np.arange(4)[:, None] < 2) & (np.arange(6)[None, :] < 3)))


def test_edge_blocks_compete_by_mean_score():
    """A 3-wide edge block of weights as large as the others is not pruned first for being small."""
    scores = np.ones((4, 7))  # block 4x4: a full block (16) and an edge block (12)
    scores[:, 4:] = 2.0
    mask = select_masks({"0": scores}, Block(4, 4), 0.5)["0"]
    np.testing.assert_array_equal(mask, np.arange(7)[None, :].repeat(4, 0) >= 4)


@pytest.mark.parametrize("gran", [Unstructured(), Units(), Block(2, 2)])
def test_layer_keeps_its_best_group(gran):
    scores = np.arange(24, dtype=np.float64).reshape(4, 6)
    for scope in ("layer", "global"):
        mask = select_masks({"0": scores, "1": scores[::-1].copy()}, gran, 1.0, scope=scope)
        for n, s in (("0", scores), ("1", scores[::-1])):
            ids = gran.group_ids(s.shape)
            best = np.argmax(np.bincount(ids.ravel(), weights=s.ravel()) / np.bincount(ids.ravel()))
            np.testing.assert_array_equal(mask[n], ids == best, err_msg=f"{scope} {n}")


# -- global scope --------------------------------------------------------------------------------------

@SETTINGS
@given(layers=st.lists(layer_scores(max_side=6), min_size=1, max_size=3), gran=granularities,
       sparsity=st.floats(0, 0.9), normalize=st.sampled_from(NORMALIZATIONS),
       scale=st.lists(st.sampled_from([0.5, 1.0, 3.0]), min_size=3, max_size=3))
def test_global_scope_prunes_nearest_prefix_of_the_order(layers, gran, sparsity, normalize, scale):
    """One order across layers on normalised group scores (ties: earlier layer, lower group)."""
    scores = {str(i): s * scale[i] for i, s in enumerate(layers)}
    masks = select_masks(scores, gran, sparsity, scope="global", normalize=normalize)
    keys, pruned = [], []
    for i, (n, s) in enumerate(scores.items()):
        ids, sizes, gs, _ = _groups(s, gran)
        d = {"none": 1.0, "mean": np.abs(gs).mean(), "l2": np.sqrt(np.sum(gs ** 2))}[normalize]
        keys.append((gs / (d if d > 0 else 1.0), np.full(len(gs), i), np.arange(len(gs)), sizes))
        pruned.append(_pruned_groups(masks[n], ids, len(sizes)))
        # a layer emptied by the order gets its best group back, which is not a prefix: not checked here
        assume((~pruned[-1]).sum() >= 2)
    score, layer, group, sizes = (np.concatenate(k) for k in zip(*keys))
    order = np.lexsort((group, layer, score))
    total = sum(s.size for s in scores.values())
    _check_prefix(np.concatenate(pruned)[order], sizes[order], sparsity * total, cap=len(order))


def test_global_ties_go_to_the_earlier_layer():
    masks = select_masks({"0": np.ones((2, 3)), "1": np.ones((3, 3))}, Unstructured(), 0.2, scope="global")
    np.testing.assert_array_equal(masks["0"].ravel(), np.arange(6) >= 3)
    assert masks["1"].all()


# -- N:M -----------------------------------------------------------------------------------------------

@SETTINGS
@given(scores=layer_scores(max_side=13), nm=st.sampled_from([(2, 4), (4, 8), (1, 3), (3, 3)]), seed=st.integers(0, 9))
def test_nm_keeps_best_n_of_every_run(scores, nm, seed):
    n, m = nm
    forced = np.random.default_rng(seed).random(scores.shape) < 0.2
    for prior in (None, ~forced):
        mask = select_masks({"0": scores}, NM(n, m), 0.0, prior=None if prior is None else {"0": prior})["0"]
        rows, k = scores.shape
        for r in range(rows):
            for start in range(0, k, m):
                run, keep = scores[r, start:start + m], mask[r, start:start + m]
                allowed = np.ones(len(run), bool) if prior is None else prior[r, start:start + m]
                assert not np.any(keep & ~allowed), "an already-pruned entry is kept"
                assert keep.sum() == min(n, allowed.sum()), f"row {r}, run at {start}"
                # the kept ones are the best allowed ones, lower columns first on ties
                key = sorted(np.flatnonzero(allowed), key=lambda j: (-run[j], j))
                np.testing.assert_array_equal(np.flatnonzero(keep), sorted(key[: keep.sum()]))


def test_nm_sparsity_and_names():
    g = make_granularity("2:4")
    assert isinstance(g, NM) and g.sparsity == 0.5 and g.name == "2:4"
    assert make_granularity("4:8").sparsity == 0.5 and make_granularity("1:4").sparsity == 0.75
    assert make_granularity("block8x1").group_ids((16, 2)).max() == 3
    assert isinstance(make_granularity("filter"), Units) and isinstance(make_granularity("neuron"), Units)


# -- errors --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    dict(sparsity=1.01), dict(sparsity=-0.01), dict(sparsity=0.5, scope="channel"),
    dict(sparsity={"0": 0.5}, scope="global"), dict(sparsity={"9": 0.5}),
    dict(sparsity=0.5, scope="global", normalize="median"),
])
def test_selection_errors(kwargs):
    with pytest.raises(SparsenetError):
        select_masks({"0": np.ones((3, 4))}, Unstructured(), **kwargs)


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_scores_raise(bad, scope):
    scores = np.ones((3, 4))
    scores[1, 2] = bad
    with pytest.raises(SparsenetError):
        select_masks({"0": scores}, Unstructured(), 0.5, scope=scope)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_all_non_finite_scores_raise(scope):
    with pytest.raises(SparsenetError):
        select_masks({"0": np.full((3, 4), np.nan)}, Unstructured(), 0.5, scope=scope)


@pytest.mark.parametrize("gran,shape,sparsity", [(Unstructured(), (1, 2), 0.125), (Unstructured(), (10, 10), 0.004),
                                                 (Units(), (16, 9), 0.03), (Block(4, 4), (8, 8), 0.1)])
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_small_target_prunes_nothing(gran, shape, sparsity, scope):
    """round(sparsity * weights) == 0 (or below half of one group): nothing is pruned."""
    scores = np.random.default_rng(0).random(shape)
    mask = select_masks({"0": scores}, gran, sparsity, scope=scope)["0"]
    assert mask.all(), f"{int((~mask).sum())} weights pruned for a target of {sparsity * mask.size:.2f}"


@pytest.mark.parametrize("spec", ["block0x2", "0:4", "5:4", "blocks", "3x3", ""])
def test_bad_granularity_specs(spec):
    with pytest.raises(SparsenetError):
        make_granularity(spec)


def test_iterative_targets_end_exactly_at_final():
    for final in (0.1, 0.3, 0.7, 0.95):
        assert iterative_targets(final, 4)[-1] == final
