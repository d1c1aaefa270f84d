"""Fixtures for the evaluation library's tests: the tiny-model zoo, test packs, and a runner.

Pure tests: nothing here touches the database. Models are trained once per cache (see zoo.py)
and shared by every test of the session.
"""

from __future__ import annotations

# No HF_HUB_OFFLINE here: the library loads models with local_files_only=True, and setting it
# in this process would put the whole session's Hub client tests offline.
import pytest

from evaluations.library import EvalContext, EvalOutput, load_pack, run_eval
from tests.evaluations import corpora
from tests.evaluations.zoo import Zoo


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread():
    """Evals in this process use one thread: tiny matrices gain nothing from a second one, and
    on a busy machine its spinning costs more than it gives (the zoo trains in two processes)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def zoo(model_cache) -> Zoo:
    zoo = Zoo(model_cache)
    zoo.build_all()
    return zoo


@pytest.fixture(scope="session")
def test_packs() -> dict:
    built = [load_pack(make()) for make in (corpora.heldout_pack, corpora.probe_pack,
                                            corpora.refusal_pack, corpora.bias_pack,
                                            corpora.mc_pack, corpora.attack_pack)]
    return {pack.name: pack for pack in built}


@pytest.fixture(scope="session")
def evaluate(test_packs):
    """evaluate(name, model_dir, params=..., **context fields) -> EvalOutput."""

    def run(name: str, model_dir, *, params: dict | None = None, **fields) -> EvalOutput:
        return run_eval(name, EvalContext(model_dir=model_dir, packs=test_packs,
                                          params=dict(params or {}), **fields))

    return run


@pytest.fixture(scope="session")
def canary_runs(zoo, evaluate):
    """{seed: (output on the model that saw the canary 10 times, output on the 0x model)}."""
    from tests.evaluations.zoo import SEEDS

    canary = corpora.secret_canary()
    return {seed: (evaluate("canary_exposure", zoo.variant("canary", seed), canaries=[canary]),
                   evaluate("canary_exposure", zoo.variant("plain", seed), canaries=[canary]))
            for seed in SEEDS}
