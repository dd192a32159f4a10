"""One shared suite over every registered method (scikit-learn conventions).

``__init__`` only stores hyperparameters; ``get_params``/``set_params`` round-trip; ``fit``
returns self; discrete methods ``predict`` (N,) labels and (N, K) probabilities,
continuous ones ``transform`` (N, Z); the same seed gives the same answer; ``fit`` leaves
the parameters as they were and stores only public ``name_`` attributes; outputs follow
one contract (:meth:`tomohet.methods.base.HeterogeneityMethod._fitted_output`).
"""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest
import torch

from tomohet.methods import REGISTRY, load_all

load_all()
NAMES = sorted(REGISTRY)


@pytest.fixture(scope="module")
def tiny():
    from tomohet.sim import simulate
    from tomohet.sim.presets import get_preset

    cfg = get_preset("demo", n_particles=40, n_tomograms=2, box=16, n_tilts=11)
    return simulate(cfg, seed=5).particles


def test_every_builtin_family_registered():
    for name in ("ml2d", "ml3d", "occupancy", "shc", "wmdpca", "ccmatrix", "multiscale",
                 "ppca2d", "vae", "vae-et"):
        assert name in REGISTRY, name


@pytest.mark.parametrize("name", NAMES)
def test_init_only_stores_parameters(name):
    cls = REGISTRY[name]
    sig = inspect.signature(cls.__init__)
    defaults = {k: p.default for k, p in sig.parameters.items()
                if k != "self" and p.default is not inspect.Parameter.empty}
    assert "random_state" in sig.parameters, f"{name} takes no random_state"
    m = cls()
    params = m.get_params()
    assert set(params) == set(sig.parameters) - {"self"}
    for k, v in defaults.items():
        assert params[k] is v or params[k] == v, f"{name}.{k} changed in __init__"
    assert not [a for a in vars(m) if a.endswith("_") and not a.startswith("_")], \
        f"{name} sets fitted attributes in __init__"
    m.set_params(random_state=3)
    assert m.get_params()["random_state"] == 3
    with pytest.raises(ValueError):
        m.set_params(no_such_parameter=1)


def _make(name: str, seed: int):
    """A quick configuration of method ``name`` (its bench parameters, few iterations)."""
    cls = REGISTRY[name]
    params = dict(cls.bench_params)
    names = cls._param_names()
    if "progress" in names:
        params["progress"] = False
    if "n_classes" in names:
        params["n_classes"] = 2
    for key, small in (("n_iter", 3), ("n_runs", 2), ("epochs", 1), ("n_epochs", 1)):
        if key in names:
            params[key] = min(params.get(key, small), small)
    return cls(**params, random_state=seed)


def _fit(name: str, particles, seed: int):
    model = _make(name, seed)
    torch.manual_seed(0)  # a method must not depend on this: the seed decides
    return model, model.fit(particles)


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_and_outputs_have_shapes(name, tiny):
    model, fitted = _fit(name, tiny, seed=0)
    assert fitted is model
    n = tiny.n_particles
    if model.kind == "discrete":
        labels = model.predict()
        assert labels.shape == (n,) and labels.dtype.kind in "iu"
        proba = model.predict_proba()
        assert proba.shape[0] == n and proba.ndim == 2
    else:
        z = model.transform()
        assert z.ndim == 2 and z.shape[0] == n
    again, _ = _fit(name, tiny, seed=0)
    out = model.predict() if model.kind == "discrete" else model.transform()
    out2 = again.predict() if model.kind == "discrete" else again.transform()
    np.testing.assert_allclose(out, out2, rtol=1e-4, atol=1e-5, err_msg=f"{name} not seeded")


def _output(model, particles=None):
    return model.predict(particles) if model.kind == "discrete" else model.transform(particles)


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("name", NAMES)
def test_fit_keeps_params_and_sets_only_public_fitted_attributes(name, tiny):
    """scikit-learn's checks: fit does not change a constructor parameter (same values,
    the same objects for containers), and all it stores is ``name_`` attributes: no
    hidden ``_x`` state."""
    model = _make(name, seed=0)
    before = copy.deepcopy(model.get_params())
    ids = {k: id(v) for k, v in model.get_params().items()}
    attrs_before = dict(vars(model))
    assert model.fit(tiny) is model
    after = model.get_params()
    for k, v in before.items():
        assert _same(after[k], v), f"{name}.fit changed parameter {k}: {v!r} -> {after[k]!r}"
        if isinstance(v, (list, dict, np.ndarray)):
            assert id(after[k]) == ids[k], f"{name}.fit replaced parameter {k}"
    added = [a for a in vars(model) if a not in attrs_before]
    bad = [a for a in added if not (a.endswith("_") and not a.startswith("_"))]
    assert not bad, f"{name}.fit stores state that is not a public name_ attribute: {bad}"


@pytest.mark.parametrize("name", NAMES)
def test_outputs_have_one_contract(name, tiny):
    """predict/transform: before fit a NotFittedError (a ValueError); after fit, no
    argument and the fitted set give the training outputs; a set of another size is a
    ValueError."""
    from tomohet.methods.base import NotFittedError

    cls = REGISTRY[name]
    unfitted = cls()
    calls = [unfitted.predict, unfitted.predict_proba] if cls.kind == "discrete" else [
        unfitted.transform]
    for call in calls:
        with pytest.raises(NotFittedError):
            call()
    model, _ = _fit(name, tiny, seed=0)
    np.testing.assert_array_equal(_output(model, tiny), _output(model))
    other = tiny.subset(np.arange(tiny.n_particles - 3))
    with pytest.raises(ValueError, match="fitted"):
        _output(model, other)
    if model.kind == "discrete":
        np.testing.assert_array_equal(model.predict_proba(tiny), model.predict_proba())
        with pytest.raises(ValueError, match="fitted"):
            model.predict_proba(other)
