import math

import pytest
import torch

from dps_lens.errors import DpsLensError
from dps_lens.steering import ContrastRule


def test_gamma_zero_keeps_the_full_models_ranking():
    pref, gen = torch.randn(3, 11), torch.randn(3, 11)
    combined = ContrastRule(gamma=0.0).combine(pref, gen)
    torch.testing.assert_close(combined, pref.log_softmax(-1))


def test_fixed_gamma_matches_the_formula_and_can_flip_the_winner():
    pref = torch.log(torch.tensor([[0.40, 0.56, 0.04]]))  # popular token 1 wins greedily
    gen = torch.log(torch.tensor([[0.05, 0.90, 0.05]]))  # heads masked: only the prior remains
    combined = ContrastRule(gamma=1.0).combine(pref, gen)
    torch.testing.assert_close(combined, 2 * pref.log_softmax(-1) - gen.log_softmax(-1))
    assert int(pref.argmax()) == 1 and int(combined.argmax()) == 0


def test_adaptive_gamma_is_the_capped_entropy():
    uniform = torch.zeros(1, 8)  # entropy ln 8 ≈ 2.08 nats
    peaked = torch.tensor([[10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    rule = ContrastRule(adaptive=True, gamma_cap=1.5)
    gammas = rule.gammas(torch.cat([uniform, peaked]).log_softmax(-1))
    assert gammas[0] == pytest.approx(1.5)
    assert 0 < float(gammas[1]) < 0.01
    assert ContrastRule(adaptive=True, gamma_cap=5).gammas(uniform.log_softmax(-1))[
        0
    ] == pytest.approx(math.log(8))


def test_plausibility_constraint_blocks_unlikely_tokens():
    pref = torch.log(torch.tensor([[0.70, 0.29, 0.01]]))
    gen = torch.log(torch.tensor([[0.90, 0.09, 0.01 * 1e-6]]))  # token 2 would win the contrast
    assert int(ContrastRule(gamma=4.0).combine(pref, gen).argmax()) == 2
    constrained = ContrastRule(gamma=4.0, beta=0.1).combine(pref, gen)
    assert torch.isinf(constrained[0, 2]) and int(constrained.argmax()) == 1


@pytest.mark.parametrize("kwargs", [{"gamma": -1.0}, {"beta": 0.0}, {"beta": 1.5}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(DpsLensError):
        ContrastRule(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"gamma": math.nan}, "gamma must be a finite number"),
        ({"gamma": math.inf}, "gamma must be a finite number"),
        ({"gamma_cap": math.nan}, "gamma_cap must be a finite number"),
        ({"gamma_cap": -1.0}, "gamma_cap must be >= 0"),
        ({"beta": math.nan}, "beta must be a finite number"),
        ({"beta": -math.inf}, "beta must be a finite number"),
    ],
)
def test_non_finite_settings_are_refused_by_name(kwargs, error):
    with pytest.raises(DpsLensError, match=error):
        ContrastRule(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"temperature": math.inf}, "temperature must be a finite number"),
        ({"temperature": math.nan}, "temperature must be a finite number"),
        ({"temperature": -0.5}, "temperature must be >= 0"),
        ({"top_p": math.nan}, "top_p must be a finite number"),
        ({"top_p": 0.0}, "top_p must be > 0"),
        ({"top_p": 1.5}, "top_p must be <= 1"),
    ],
)
def test_sampling_settings_are_checked(kwargs, error):
    from dps_lens.steering import Sampling

    with pytest.raises(DpsLensError, match=error):
        Sampling(**kwargs)
