"""Independent components, one region at a time (issue 12).

When the residual variance found by :mod:`tomohet.methods.discovery` sits in separate
regions (two caps, a factor and a lid), the states are most often combinations of
components that come and go independently. Users then classify each component with its
own mask (present / absent) and combine the answers. Joint K-class EM over the union of
the regions must estimate K class maps from about N / K particles each; at low SNR it
drifts away even from a correct partition (ladder ``m05-snr0.05``: ARI 0.36 -> 0.15 from
the true labels), while a 2-class split per region estimates each map from about N / 2
particles, inside that region's mask only.

1. :func:`~tomohet.methods.regions.candidate_regions` -- the regions of the z-map: the
   most significant cluster (at the detection's ``alpha``, as
   :func:`~tomohet.methods.discovery.region_from`),
   then further separate clusters whose peak is significant at ``alpha_more`` against
   the same null of the maximum (conservative for a single cluster: the null is the
   maximum over the whole box), by decreasing peak.
2. Each region is classified in two (:class:`~tomohet.methods.ml.MLClassifier` with
   ``n_classes=2`` on an :class:`~tomohet.methods.em.EMEngine` focused on it, the whole
   consensus subtracted: the class maps are differences from the consensus, so the
   Wiener filter shrinks a noisy class towards the consensus, not towards zero). The
   region's mask is then redrawn from the split itself (where the two classes'
   residual maps differ above their half-set noise:
   :mod:`tomohet.methods.region_refine`) and the region split again from its labels,
   until the mask stops changing (:data:`MAX_REDRAWS`).
3. :func:`combine_posteriors` -- joint classes ``c = sum_r b_r 2^r`` with posteriors the
   product of the regions' posteriors (independence).
4. Fewer classes than K (one region, or states that differ inside one region): the
   largest class whose own particles still vary above noise (the same calibrated test
   on their residual maps, :func:`~tomohet.methods.discovery.local_region`) is split in
   two the same way, until K classes or no class varies (hierarchical two-class splits).

:func:`combine_posteriors` is pure; :func:`region_posteriors` runs steps 2-4 with any
two-class solver (:mod:`tomohet.methods.shc` uses hill climbing); :func:`classify_regions`
with focused EM, for an ML classifier.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tomohet.methods.discovery import (
    local_region,
)
from tomohet.methods.em import EMEngine, EMState
from tomohet.methods.region_refine import refine_region, same_region
from tomohet.methods.region_test import RegionTest, em_region_test, focused_fit

if TYPE_CHECKING:
    from tomohet.methods.discovery import Setup

__all__ = ["combine_posteriors", "classify_regions", "region_posteriors", "Split"]


# Family-wise level of the held-out tests over a run's candidates (Bonferroni). 0.05, not
# 0.01: against the split's own mean (region_test) the test has less power than it had
# against a one-class fit, and at 0.01 / 3 it rejected component B of the ladder's
# 30% / 18% cell at SNR 0.02 (p 0.0116; ARI 0.57 -> 0.41); one-state data stay below it
# (benchmarks/README.md, tenth session).
CANDIDATE_ALPHA = 0.05


def combine_posteriors(region_posteriors: list[np.ndarray], k: int) -> np.ndarray:
    """Joint class posteriors from independent two-class posteriors per region.

    region_posteriors: R arrays (N, 2); joint class ``c = sum_r b_r 2^r`` has posterior
    ``prod_r p_r[:, b_r]``. Classes ``2^R .. k - 1`` (when the data supported fewer
    regions than K can hold) get posterior 0. -> (N, k), rows summing to 1.
    """
    if not region_posteriors:
        raise ValueError("combine_posteriors needs at least one region")
    r = len(region_posteriors)
    if 2**r > k:
        raise ValueError(f"{r} regions make {2**r} classes, more than K = {k}")
    n = region_posteriors[0].shape[0]
    out = np.zeros((n, k))
    for c in range(2**r):
        prob = np.ones(n)
        for i, post in enumerate(region_posteriors):
            prob = prob * np.asarray(post, dtype=float)[:, (c >> i) & 1]
        out[:, c] = prob
    return out / out.sum(1, keepdims=True).clip(1e-300)


def _class_model(setup: Setup, members: np.ndarray, halves: np.ndarray,
                 sigma2: torch.Tensor) -> tuple[EMEngine, torch.Tensor, Any]:
    """(engine of the class's particles, the class's own map, noise) for the streamed
    test inside a class (:func:`~tomohet.methods.discovery.local_region`): residual
    maps against the class's own map, not the consensus, whose constant difference from
    the class, seen through each particle's own missing wedge, varies with orientation
    and would pass for heterogeneity."""
    plain = setup.plain
    engine = EMEngine(plain.particles, dataclasses.replace(plain.cfg, n_classes=1),
                      plain.index[members], plain.reference_mask, progress=plain.progress)
    bp = engine.reconstruct_pass(np.ones((len(members), 1)), None, halves[members])
    own = engine.volumes_from(bp)[0][0]
    noise = engine.new_noise()
    noise.sigma2 = sigma2.to(engine.device)
    return engine, own, noise


def _split(binary: Any, setup: Setup, particles, members: np.ndarray, halves: np.ndarray,
           mask: torch.Tensor, init: np.ndarray
           ) -> tuple[np.ndarray, list[dict[str, Any]], torch.Tensor]:
    """Two-class focused EM of the particles at positions ``members`` (into
    ``setup.plain.index``) inside ``mask``, the whole consensus subtracted, from
    ``init``. -> (posteriors (len(members), 2), EM history, noise sigma2)."""
    state = focused_fit(binary, setup, particles, members, mask, init, halves[members],
                        setup.plain.progress)
    return state.posteriors, state.history, state.sigma2


# A region's mask is redrawn from its split until it stops changing, at most this often
# (ladder m30 / 18%, SNR 0.02: B's mask grew 0.004 -> 0.0098 -> 0.0127 -> 0.0129 of the
# box; ARI 0.470 without, 0.543 after one redraw, 0.563 after three)
MAX_REDRAWS = 3


def _refined_split(setup: Setup, split: Split, mask: torch.Tensor, init: np.ndarray,
                   redraw: Redraw | None, exclude: list[torch.Tensor],
                   max_redraws: int = MAX_REDRAWS
                   ) -> tuple[np.ndarray, list[dict[str, Any]], torch.Tensor, torch.Tensor]:
    """A region's two-class split of every particle; then, with ``redraw``, while the
    mask redrawn from the split (kept out of the ``exclude`` masks) differs from the
    one split in (:func:`~tomohet.methods.region_refine.same_region`), at most
    ``max_redraws`` times, the split again from its own labels inside the new mask.
    -> (posteriors (N, 2), history: the last split's entries with ``stage`` "region
    split" (``redrawn``: how many times the mask was), the earlier splits' "region
    search", each with the fraction of the box its mask covers; noise sigma2, the final
    mask (D, D, D))."""
    everyone = np.arange(len(setup.plain.index))
    post, hist, sigma2 = split(everyone, mask, init)
    history: list[dict[str, Any]] = []
    for r in range(max_redraws + 1):
        history += [dict(h, stage="region split", region_fraction_of_box=float(mask.mean()),
                         redrawn=r) for h in hist]
        new = None if redraw is None or r == max_redraws else redraw(post, mask, exclude)
        if new is None or same_region(new, mask):
            break
        history = [dict(h, stage="region search") for h in history]
        mask = new
        post, hist, sigma2 = split(everyone, mask, post.argmax(1))
    return post, history, sigma2, mask


def _drop_empty(post: np.ndarray, n_combos: int, min_fraction: float
                ) -> tuple[np.ndarray, int]:
    """Combinations of region states that (almost) no particle takes, such as "neither
    subunit" when the regions are two subunits, mean the components are not
    independent: their posterior mass goes to the other combinations and their columns
    are freed for the class splits that follow. -> (posteriors with the combinations
    kept first, number kept)."""
    counts = np.bincount(post[:, :n_combos].argmax(1), minlength=n_combos)
    keep = np.nonzero(counts >= max(min_fraction * len(post), 1))[0]
    out = np.zeros_like(post)
    out[:, : len(keep)] = post[:, keep]
    out[:, : len(keep)] /= out[:, : len(keep)].sum(1, keepdims=True).clip(1e-300)
    return out, len(keep)


# (members: positions into setup.plain.index, full-box mask, two-class start) ->
# (posteriors (len(members), 2), history with "log_likelihood" when it has one, sigma2)
Split = Callable[[np.ndarray, torch.Tensor, np.ndarray],
                 tuple[np.ndarray, list[dict[str, Any]], torch.Tensor]]
# (full-box mask, (N,) two-class start from each particle's own half) -> held-out test
Test = Callable[[torch.Tensor, np.ndarray], RegionTest]
# (a split's posteriors (N, 2), its mask, other regions' masks) -> redrawn mask or None
Redraw = Callable[[np.ndarray, torch.Tensor, list[torch.Tensor]], torch.Tensor | None]


def classify_regions(clf: Any, setup: Setup, particles, halves: np.ndarray
                     ) -> EMState | None:
    """Steps 2-4 for an ML classifier ``clf`` (:class:`~tomohet.methods.ml.MLClassifier`):
    :func:`region_posteriors` with a two-class focused EM per split (started from the
    k-means labels, not annealed). -> the final state, with class maps reconstructed by
    ``setup.plain`` (full maps, no subtraction) and the EM histories one after the other
    (``stage`` "region split" or "class split", ``region`` or ``class``; iterations
    numbered on).
    """
    plain = setup.plain
    binary = clf.__class__(**{**clf.get_params(), "n_classes": 2, "focus_mask": None,
                              "checkpoint_dir": None, "progress": False, "n_restarts": 1})

    def split(members: np.ndarray, mask: torch.Tensor, init: np.ndarray):
        return _split(binary, setup, particles, members, halves, mask, init)

    def test(mask: torch.Tensor, fold_labels: np.ndarray) -> RegionTest:
        return em_region_test(clf, setup, particles, mask, fold_labels, halves, clf._seed())

    def redraw(post: np.ndarray, mask: torch.Tensor, exclude: list[torch.Tensor]):
        return refine_region(setup, post, halves, mask, exclude)

    result = region_posteriors(setup, split, clf.n_classes, halves, clf.min_class_fraction,
                               clf._seed(), test, redraw=redraw)
    if result is None:
        return None
    post, history, sigma2 = result
    # each split's final log evidence (its last history entry)
    last = [h["log_likelihood"] for h, after in zip(history, history[1:] + [{}], strict=True)
            if _split_of(after) != _split_of(h) and h.get("stage") != "region search"]
    noise = plain.new_noise()
    noise.sigma2 = sigma2.to(plain.device)  # estimated on every particle (a region split)
    vols, curves, res = plain.volumes_from(plain.reconstruct_pass(post, noise, halves))
    priors = torch.as_tensor(post.mean(0), dtype=torch.float32)
    return EMState(volumes=vols, priors=priors, sigma2=noise.sigma2.cpu(), posteriors=post,
                   iteration=len(history), log_likelihood=float(sum(last)),
                   fsc=curves, resolution_A=res, particles=plain.fingerprint,
                   history=history)


def _redundant(post: np.ndarray, posts: list[np.ndarray], limit: float = 0.5
               ) -> int | None:
    """The first region whose two-class split the split ``post`` (N, 2) repeats: |phi|
    (the correlation of the two hard labels) above ``limit``; None when independent.
    Components are modelled as independent, so a further region that sorts the
    particles as an earlier one did (an earlier component's signal reaching into it)
    adds no state."""
    a = post.argmax(1).astype(float)
    for i, other in enumerate(posts):
        b = other.argmax(1).astype(float)
        if a.std() == 0 or b.std() == 0:
            continue
        if abs(float(np.corrcoef(a, b)[0, 1])) > limit:
            return i
    return None


def _split_of(h: dict[str, Any]) -> tuple[Any, ...]:
    """Which split a history entry belongs to."""
    return h.get("stage"), h.get("region"), h.get("split_class"), h.get("new_class")


@dataclasses.dataclass
class _Splits:
    """The region splits kept so far by :func:`region_posteriors`, in order."""

    posts: list[np.ndarray] = dataclasses.field(default_factory=list)  # (N, 2) each
    masks: list[torch.Tensor] = dataclasses.field(default_factory=list)  # as redrawn
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    sigma2: torch.Tensor | None = None  # the last split's, kept or not

    def add(self, post: np.ndarray, hist: list[dict[str, Any]], mask: torch.Tensor,
            **extra: Any) -> None:
        self.posts.append(post)
        self.masks.append(mask)
        self.history += [dict(h, iteration=len(self.history) + j + 1,
                              region=len(self.posts) - 1, **extra)
                         for j, h in enumerate(hist)]


def region_posteriors(setup: Setup, split: Split, k: int, halves: np.ndarray,
                      min_fraction: float, seed: int, test: Test | None = None,
                      alpha: float = CANDIDATE_ALPHA, redraw: Redraw | None = None
                      ) -> tuple[np.ndarray, list[dict[str, Any]], torch.Tensor] | None:
    """Steps 2-4 with any two-class solver ``split`` (EM, hill climbing): one split per
    region of ``setup.discovery`` (started from its two-class k-means labels); then,
    while K can hold another region, the discovery's further candidates (below the
    variance test's threshold) in turn, each split only when ``test``
    (:mod:`tomohet.methods.region_test`, held out) finds it real at ``alpha`` divided
    over the candidates; the joint posteriors; then, while there are fewer classes than
    K, the largest class whose particles still vary above noise (:func:`_split_classes`)
    is split in two the same way (several states in one region). -> (posteriors (N, k),
    the splits' histories one after the other, the noise sigma2 of the region splits);
    None when discovery found no region and no candidate held (the caller falls back).
    The candidates' test results are appended to ``setup.discovery.region_tests``, the
    masks the regions were finally split in go to ``setup.discovery.split_regions``.
    ``redraw`` (:func:`~tomohet.methods.region_refine.refine_region`): each region's
    mask is redrawn from its split and the region split again (:func:`_refined_split`)."""
    found = setup.discovery
    assert found is not None
    kept = _Splits()
    for i, (mask, init) in enumerate(zip(found.regions, found.region_labels, strict=True)):
        # kept out of the earlier regions as redrawn (where their splits differ), not
        # as discovered: a large component's discovered mask can reach over a small
        # neighbour's (ladder 30% / 18%, SNR 0.1, 1,000 particles: B's split 0.86 ->
        # 0.42 redrawn outside A's discovered mask, A's redrawn one a third of it)
        post_r, hist, kept.sigma2, mask = _refined_split(
            setup, split, mask, init, redraw, kept.masks + found.regions[i + 1:])
        if kept.posts and _redundant(post_r, kept.posts) is not None:
            continue  # one component's peaks drawn as two regions: the same split
        kept.add(post_r, hist, mask)
    if test is not None:
        _tested_candidates(setup, split, k, test, alpha, redraw, kept)
    found.split_regions = [m.detach().cpu() for m in kept.masks]
    if not kept.posts:  # no region and no candidate held: nothing found
        return None
    if not found.regions:  # the first region came from the held-out test
        found.region, found.focus = "local", kept.masks[0].detach().cpu()
    assert kept.sigma2 is not None
    post, n_used = _drop_empty(combine_posteriors(kept.posts, k), 2 ** len(kept.posts),
                               min_fraction)
    post = _split_classes(setup, split, post, n_used, k, halves, kept.sigma2, seed,
                          kept.history)
    return post / post.sum(1, keepdims=True).clip(1e-300), kept.history, kept.sigma2


def _tested_candidates(setup: Setup, split: Split, k: int, test: Test, alpha: float,
                       redraw: Redraw | None, kept: _Splits) -> None:
    """:func:`region_posteriors`' step for discovery's further candidates: while K can
    hold another region, each is split when ``test`` accepts it at ``alpha`` over the
    candidates (Bonferroni) and its split repeats no kept region's; appended to
    ``kept``, the tests recorded in ``setup.discovery.region_tests``."""
    found = setup.discovery
    assert found is not None
    level = alpha / max(len(found.candidates), 1)  # Bonferroni over the candidates
    for c, (mask, fold_labels, init) in enumerate(found.candidates):
        if 2 ** (len(kept.posts) + 1) > k:
            break
        result = test(mask, fold_labels)
        record = next((t for t in found.region_tests if t["candidate"] == c), None)
        if record is None:  # once per candidate (shc runs this once per seed)
            record = {"candidate": c, **result.summary()}
            found.region_tests.append(record)
        record["accepted"] = result.accepts(level)
        if not record["accepted"]:
            continue
        post_r, hist, kept.sigma2, mask = _refined_split(setup, split, mask, init, redraw,
                                                         kept.masks)
        same = _redundant(post_r, kept.posts)
        if same is not None:  # the split repeats a region's (its signal leaked in)
            record.update(accepted=False, repeats_region=same)
            continue
        record["refined_fraction_of_box"] = round(float(mask.mean()), 5)
        kept.add(post_r, hist, mask, held_out_z=round(result.z, 2))


def _split_classes(setup: Setup, split: Split, post: np.ndarray, n_used: int, k: int,
                   halves: np.ndarray, sigma2: torch.Tensor, seed: int,
                   history: list[dict[str, Any]]) -> np.ndarray:
    """:func:`region_posteriors`' step 4: while fewer than ``k`` of the joint classes
    are used, the largest untested class (>= 8 particles) whose particles still vary
    above noise (:func:`~tomohet.methods.discovery.local_region`) is split in two by
    ``split``. post (N, k) -> (N, k), changed in place and not renormalised; the
    splits' iterations are appended to ``history``."""
    found = setup.discovery
    assert found is not None
    tested: set[int] = set()
    while n_used < k:
        labels = post.argmax(1)
        counts = np.bincount(labels, minlength=k)
        open_ = [c for c in np.argsort(-counts, kind="stable") if c not in tested
                 and counts[c] >= 8]
        if not open_:
            break
        c = int(open_[0])
        tested.add(c)
        members = np.nonzero(labels == c)[0]
        # Bonferroni over the classes that could be tested (at most K - 1 of them)
        # the calibrated test on the class's residual maps, streamed (no (n, d^3) array)
        leaf = local_region(*_class_model(setup, members, halves, sigma2), found.small_box,
                            seed, alpha=0.01 / max(k - 1, 1))
        if leaf is None:
            continue
        post_c, hist, _ = split(members, *leaf)
        # members: the class's mass shared by the split; others keep it in class c
        post[members, n_used] = post[members, c] * post_c[:, 1]
        post[members, c] = post[members, c] * post_c[:, 0]
        history += [dict(h, iteration=len(history) + j + 1, split_class=c, new_class=n_used,
                         stage="class split", region_fraction_of_box=float(leaf[0].mean()))
                    for j, h in enumerate(hist)]
        tested.discard(c)
        n_used += 1
    return post
