"""Ground truth on the shipped organisms: discovery recovers the planted heads, and masking them
removes personalization while masking other heads does not."""

import pytest

from dps_lens.interventions import reference_means
from dps_lens.models import load_model
from dps_lens.organism.bundled import BUNDLED_ORGANISMS
from dps_lens.organism.planted import designated_heads
from dps_lens.organism.rates import masking_curve, personalization_rates
from dps_lens.organism.train import read_card, trained_world
from dps_lens.organism.validate import TOLERANCE, precision_at_k, smallest_k_at_level
from dps_lens.organism.world import World, WorldConfig
from dps_lens.scoring import ScanConfig, score_heads

WORLD = World()


@pytest.fixture(scope="module")
def free():
    return load_model("organism-free", device="cpu")


@pytest.fixture(scope="module")
def discovery():
    return WORLD.split_examples("discovery", 60, queries_per_user=2)


@pytest.fixture(scope="module")
def evaluation():
    return WORLD.split_examples("evaluation", 150, queries_per_user=2)


@pytest.mark.parametrize("name", BUNDLED_ORGANISMS)
def test_bundled_organisms_load_offline_with_their_card(name):
    from dps_lens.organism.bundled import organism_dir

    model = load_model(name, device="cpu")
    card = read_card(organism_dir(name))
    assert (
        card["name"] == name
        and card["personalization"]["full"] > card["personalization"]["no_profile"]
    )
    assert (len(designated_heads(model)) > 0) == (name != "organism-free")
    assert int(model.cfg.n_layers) * int(model.cfg.n_heads) >= 8


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_pcs_ranks_the_planted_heads_first(planted, discovery, mode):
    scores = score_heads(planted, discovery, ScanConfig(mode=mode, batch_size=64), progress=False)
    truth = list(designated_heads(planted))
    assert precision_at_k(scores.top_k(len(truth)), truth) == 1.0


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_masking_planted_heads_removes_personalization_and_random_heads_do_not(
    planted, discovery, evaluation, mode
):
    truth = list(designated_heads(planted))
    others = [(l, h) for l in range(3) for h in range(4) if (l, h) not in truth]
    rates = personalization_rates(planted, evaluation)
    assert rates["full"] - rates["no_profile"] > 0.2
    means = reference_means(planted, discovery) if mode == "mean" else None
    row = masking_curve(
        planted, evaluation, truth + others, [len(truth)], mode, n_random=10, means=means
    )[0]
    assert abs(row["top_k"] - rates["no_profile"]) <= TOLERANCE
    assert abs(row["random_mean"] - rates["full"]) <= TOLERANCE


def test_heads_found_on_discovery_users_transfer_to_new_users(planted, discovery, evaluation):
    ranking = score_heads(planted, discovery, ScanConfig(batch_size=64), progress=False).top_k(12)
    for examples in (discovery, evaluation):
        rates = personalization_rates(planted, examples)
        row = masking_curve(planted, examples, ranking, [3], n_random=2)[0]
        assert abs(row["top_k"] - rates["no_profile"]) <= TOLERANCE


def test_free_organism_personalizes_and_some_head_set_removes_it(free, discovery, evaluation):
    rates = personalization_rates(free, evaluation)
    assert rates["full"] - rates["no_profile"] > 0.2
    n_heads = int(free.cfg.n_layers) * int(free.cfg.n_heads)
    ranking = score_heads(free, discovery, ScanConfig(batch_size=64), progress=False).top_k(n_heads)
    curve = masking_curve(free, evaluation, ranking, range(1, n_heads + 1), n_random=1)
    assert smallest_k_at_level(curve, rates["no_profile"]) is not None
    assert curve[0]["top_k"] < rates["full"]  # the best head alone already matters


def test_validation_uses_the_world_of_the_model_card(monkeypatch):
    """organism-groups is validated on the grouped world it was trained on (group 1 users too)."""
    from dps_lens.organism import validate

    seen = []

    class Seen(Exception):
        pass

    def record(model, examples):
        seen.extend(examples)
        raise Seen

    monkeypatch.setattr(validate, "personalization_rates", record)
    with pytest.raises(Seen):
        validate.validate_organism(
            load_model("organism-groups", device="cpu"), n_discovery_users=20
        )
    assert {e.meta.get("group") for e in seen} == {0, 1}
    assert trained_world(load_model("organism-free", device="cpu")).config == WorldConfig()
