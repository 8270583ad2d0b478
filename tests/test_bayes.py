"""Table 2's sequential Bayesian optimization (study.sweep.bayes): rounds, ranges, resume, Ray.

Ax's GP rounds cost seconds per proposed point on a 2-core CPU, so the fast tests use
small rounds (3 x 3) and the acquisition optimizer's "fast" effort; the full 12 rounds
of 10 against random search is marked slow (about 10 minutes here)."""
import dataclasses
import json
import math
import time

import numpy as np
import pandas as pd
import pytest

import search_spaces
from study.schema import MANIFEST_FILE
from study.sweep import bayes
from synthetic_trainable import synthetic_objective, synthetic_trainable

TABLE2 = search_spaces.get("table2")
GP_ARM = {"dataset": "digits", "scale": "tiny", "architecture": "sndcgan", "loss": "ns",
          "normalization": "spectral", "penalty": "gp"}
PLAIN_ARM = {**GP_ARM, "penalty": "none"}
L2_ARM = {**GP_ARM, "penalty": "l2"}


def _small(rounds=3, round_size=3):
    return dataclasses.replace(TABLE2, rounds=rounds, round_size=round_size)


def _complete_round(optimizer, proposals, objective=synthetic_objective):
    for proposal in proposals:
        optimizer.complete(proposal.index, objective(proposal.params))


# ------------------------------------------------------------------ ranges (Sobol round: instant)
def test_first_round_is_a_full_batch_inside_table2_ranges_on_log_scales():
    optimizer = bayes.RoundOptimizer(TABLE2, GP_ARM, seed=0)
    proposals = optimizer.propose_round()
    assert len(proposals) == 10 and {p.round for p in proposals} == {0}
    lrs = np.array([p.params["learning_rate"] for p in proposals])
    lams = np.array([p.params["penalty_weight"] for p in proposals])
    assert lrs.min() >= 1e-5 and lrs.max() <= 1e-2
    assert lams.min() >= 1e-1 and lams.max() <= 1e2
    for p in proposals:
        assert 0.0 <= p.params["beta1"] <= bayes.ADAM_BETA_MAX
        assert 0.0 <= p.params["beta2"] <= bayes.ADAM_BETA_MAX
        assert p.params["discriminator_steps"] in (1, 5)
    # Log scale: 10 Sobol points over 3 decades land in at least 3 different decades,
    # and fewer than half lie in the top decade (a linear sampler puts ~90% there).
    assert len(set(np.floor(np.log10(lrs)).astype(int))) >= 3
    assert (lrs > 1e-3).sum() < 5
    assert (lams > 10).sum() < 5


def test_lambda_range_follows_the_penalty_and_unweighted_penalties_fix_it_to_zero():
    plain = bayes.RoundOptimizer(TABLE2, PLAIN_ARM, seed=0)
    assert "penalty_weight" not in plain.ranges
    assert all(p.params["penalty_weight"] == 0.0 for p in plain.propose_round())
    l2 = bayes.RoundOptimizer(TABLE2, L2_ARM, seed=0)
    lams = [p.params["penalty_weight"] for p in l2.propose_round()]
    assert min(lams) >= 1e-4 and max(lams) <= 1e1 and min(lams) < 1e-1  # L2's own, lower range


def test_bad_inputs_give_one_line_errors():
    with pytest.raises(bayes.BayesError, match="not bayesian"):
        bayes.RoundOptimizer(search_spaces.get("table1"), GP_ARM)
    with pytest.raises(bayes.BayesError, match="seed"):
        bayes.RoundOptimizer(TABLE2, GP_ARM, seed=-1)
    optimizer = bayes.RoundOptimizer(TABLE2, GP_ARM)
    proposals = optimizer.propose_round()
    with pytest.raises(bayes.BayesError, match="without an objective"):
        optimizer.propose_round()
    with pytest.raises(bayes.BayesError, match="not proposed"):
        optimizer.complete(999, 1.0)
    optimizer.complete(proposals[0].index, 1.0)
    with pytest.raises(bayes.BayesError, match="already complete"):
        optimizer.complete(proposals[0].index, 2.0)
    with pytest.raises(bayes.BayesError, match="conflicts"):
        bayes._parse_overrides(["learning_rate=0.1"], {"learning_rate"})


# ------------------------------------------------------------------ diverged trials are data
def test_diverged_trials_are_fed_the_worst_finite_objective_of_the_arm():
    space = _small(rounds=2, round_size=3)
    optimizer = bayes.RoundOptimizer(space, GP_ARM, seed=0, effort="fast")
    first = optimizer.propose_round()
    optimizer.complete(first[0].index, 40.0)
    optimizer.complete(first[1].index, 70.0)
    optimizer.complete(first[2].index, float("nan"))  # diverged with no finite score
    optimizer.propose_round()
    records = {t["index"]: t for t in optimizer.trials}
    assert records[first[2].index]["fed"] == 70.0 and math.isnan(records[first[2].index]["objective"])
    data = optimizer.client._experiment.lookup_data().df
    assert len(data) == 3 and sorted(data["mean"]) == [40.0, 70.0, 70.0]  # none dropped


def test_an_arm_without_any_finite_objective_is_fed_the_fallback():
    optimizer = bayes.RoundOptimizer(_small(rounds=2, round_size=2), GP_ARM, seed=0, effort="fast")
    for proposal in optimizer.propose_round():
        optimizer.complete(proposal.index, None)
    optimizer.propose_round()
    assert [t["fed"] for t in optimizer.trials if t["round"] == 0] == [bayes.DIVERGED_FALLBACK_OBJECTIVE] * 2


# ------------------------------------------------------------------ save / load
def test_reloaded_optimizer_continues_exactly_like_an_uninterrupted_one(tmp_path):
    space = _small(rounds=2, round_size=3)
    straight = bayes.RoundOptimizer(space, GP_ARM, seed=7, effort="fast")
    interrupted = bayes.RoundOptimizer(space, GP_ARM, seed=7, effort="fast")
    first = straight.propose_round()
    assert [p.params for p in interrupted.propose_round()] == [p.params for p in first]
    _complete_round(straight, first)
    _complete_round(interrupted, first)
    interrupted.save(tmp_path / "state.json")
    json.loads((tmp_path / "state.json").read_text())  # strict JSON
    reloaded = bayes.RoundOptimizer.load(tmp_path / "state.json", space)
    assert reloaded.rounds_proposed == 1 and not reloaded.open_indices()
    # Ax's JSON snapshot does not restore the fitted state bit for bit: the first GP
    # point after the reload matches to floating-point noise (measured: relative 2e-6),
    # later points of the batch may drift (a fantasized pending point moved by 1e-6
    # moves the acquisition optimum). What must hold exactly: no round repeated or lost.
    for round_index in (1,):
        expected = straight.propose_round()
        got = reloaded.propose_round()
        assert [p.index for p in got] == [p.index for p in expected]
        assert {p.round for p in got} == {round_index}
        if round_index == 1:
            assert got[0].params == pytest.approx(expected[0].params, rel=1e-3, abs=1e-9)
        _complete_round(straight, expected)
        _complete_round(reloaded, got)
    # Round 0's completed trials survived the reload untouched, as Ax data too.
    assert [t for t in reloaded.trials if t["round"] == 0] == [t for t in straight.trials if t["round"] == 0]
    assert len(reloaded.client._experiment.lookup_data().df) == 6
    assert reloaded.finished and len(reloaded.trials) == 6
    with pytest.raises(bayes.BayesError, match="already proposed"):
        reloaded.propose_round()
    # A NaN objective survives the JSON round trip as NaN, and a mismatching space is refused.
    diverged = bayes.RoundOptimizer(_small(2, 2), GP_ARM, seed=0)
    p = diverged.propose_round()
    diverged.complete(p[0].index, float("nan"))
    diverged.save(tmp_path / "d.json")
    assert math.isnan(bayes.RoundOptimizer.load(tmp_path / "d.json", _small(2, 2)).trials[0]["objective"])
    with pytest.raises(bayes.BayesError, match="not 'table2'"):
        bayes.RoundOptimizer.load(tmp_path / "d.json", _small(3, 3))


# ------------------------------------------------------------------ 12 rounds of 10 vs random search
def _random_search_best(ranges, n, seed):
    rng = np.random.default_rng(seed)
    point_best = math.inf
    for _ in range(n):
        point = {name: spec.sample(rng) for name, spec in ranges.items()}
        point_best = min(point_best, synthetic_objective(point))
    return point_best


@pytest.mark.slow
def test_twelve_rounds_of_ten_beat_random_search_on_the_synthetic_objective():
    optimizer = bayes.RoundOptimizer(TABLE2, GP_ARM, seed=0, effort="fast")
    timings = []
    for round_index in range(TABLE2.rounds):
        started = time.perf_counter()
        proposals = optimizer.propose_round()
        timings.append(time.perf_counter() - started)
        assert len(proposals) == 10 and {p.round for p in proposals} == {round_index}
        _complete_round(optimizer, proposals)
    assert len(optimizer.trials) == 120 and optimizer.finished
    bo_best = optimizer.best()[0]
    # Random search over the paper's full ranges (beta up to 1), 120 settings, 10 seeds.
    random_best = [_random_search_best({**TABLE2.ranges, "penalty_weight": TABLE2.penalty_weight_ranges["gp"]},
                                       120, seed) for seed in range(10)]
    print(f"\nAx seconds per round: {[round(t, 1) for t in timings]}; BO best {bo_best:.3f}; "
          f"random best mean {np.mean(random_best):.3f} (min {np.min(random_best):.3f})")
    assert bo_best < np.mean(random_best)
    assert bo_best < 10.0 + 0.5 * (np.mean(random_best) - 10.0)  # closes at least half the gap to the optimum


# ------------------------------------------------------------------ Ray Tune integration
def test_two_rounds_of_three_through_ray_tune_with_a_synthetic_trainable(tmp_path):
    import argparse

    import ray

    from study.sweep import tune

    space = _small(rounds=2, round_size=3)
    args = argparse.Namespace(seeds=1, overrides=["train_steps=10", "eval_every=5"], pack=1, retries=0,
                              address=None, storage=None, resume=None, scale="tiny", dataset="digits",
                              architecture="sndcgan")
    arm = {**GP_ARM}
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        optimizers = bayes.run_bayesian(tmp_path, space, [arm], identity={"study": "t", "search": "bayesian",
                                        "round": 0}, resources=tune.Resources(), args=args,
                                        trainable=synthetic_trainable)
        results = pd.read_parquet(tmp_path / "results.parquet")
        final = results[results["final"]]
        assert len(final) == 6 and sorted(final["round"].tolist()) == [0, 0, 0, 1, 1, 1]
        assert set(final["train_steps"]) == {10}  # the --set overrides reached every trial
        optimizer = next(iter(optimizers.values()))
        assert optimizer.finished and len(optimizer.trials) == 6
        state = json.loads(bayes.state_path(tmp_path, arm).read_text())
        assert all(t["objective"] is not None or t["objective_nan"] for t in state["trials"])
        # The objective Ax got is each trial's min score (the first of its two evaluations).
        by_id = final.set_index("trial_id")
        for trial in optimizer.trials:
            trial_id = bayes._trial_id(bayes.trial_dict(arm, trial["params"], {"train_steps": "10",
                                                                               "eval_every": "5"}))
            expected = results[results["trial_id"] == trial_id]["score"].min()
            if np.isfinite(expected):
                assert trial["objective"] == pytest.approx(expected)
            assert trial_id in by_id.index

        # Resume of a finished study: nothing is proposed or run again.
        rows_before = sorted(p.stat().st_mtime_ns for p in tmp_path.glob("trials/*/rows.parquet"))
        again = bayes.run_bayesian(tmp_path, space, [arm], identity={"study": "t", "search": "bayesian",
                                   "round": 0}, resources=tune.Resources(), args=args,
                                   trainable=synthetic_trainable)
        assert [t["params"] for t in next(iter(again.values())).trials] == [t["params"] for t in optimizer.trials]
        assert sorted(p.stat().st_mtime_ns for p in tmp_path.glob("trials/*/rows.parquet")) == rows_before
    finally:
        ray.shutdown()


def test_resume_mid_round_runs_only_the_trials_without_a_finished_outcome(tmp_path):
    """A study killed after round 0 was proposed and one trial finished: resuming keeps
    round 0's proposals and runs only the two other trials (no Ray needed to check the plan)."""
    space = _small(rounds=1, round_size=3)
    optimizer = bayes.RoundOptimizer(space, GP_ARM, seed=0)
    proposals = optimizer.propose_round()
    optimizer.save(bayes.state_path(tmp_path, GP_ARM))
    from study.storage import store
    from study.trial.config import TrialConfig

    done = bayes.trial_dict(GP_ARM, proposals[0].params, {})
    config = TrialConfig.from_dict(done)
    rows = store.TrialRows(tmp_path / store.TRIALS_DIR / config.trial_id, {"round": 0}, config)
    rows.add(1, {"score": 12.5, "status": "running", "diverged": False, "error": ""})
    rows.mark_final("completed")
    assert bayes.trial_outcome(tmp_path, config.trial_id) == ("completed", 12.5)
    ran = []

    def fake_run_round(study_dir, round_index, to_run, optimizers, *rest, **kwargs):
        ran.extend(to_run)
        for key, index, _ in to_run.values():
            optimizers[key].complete(index, 20.0)

    import argparse

    from study.sweep import tune

    original, bayes._run_round = bayes._run_round, fake_run_round
    original_init, tune.init_ray = tune.init_ray, lambda *a, **k: None
    try:
        result = bayes.run_bayesian(tmp_path, space, [GP_ARM], identity={}, resources=tune.Resources(),
                                    args=argparse.Namespace(overrides=[], address=None, storage=None, retries=0))
    finally:
        bayes._run_round, tune.init_ray = original, original_init
    reloaded = next(iter(result.values()))
    assert [p.params for p in reloaded.proposals(0)] == [p.params for p in proposals]  # not re-proposed
    assert len(ran) == 2 and config.trial_id not in ran
    assert sorted(t["objective"] for t in reloaded.trials) == [12.5, 20.0, 20.0]


def test_a_bayesian_trial_that_leaves_no_rows_is_a_failed_row_and_counted_missing(tmp_path):
    """A trial whose rows never reach the study storage (its node was lost) must not vanish:
    as in a grid study it gets a failed final row with the reason and is listed in the
    manifest's trials_missing (study.run then exits 3); its arm's optimizer saw a failure."""
    import argparse

    import ray

    from study.storage import store
    from study.sweep import tune

    def lost_node_trainable(config):  # returns without writing anything to the study storage
        return None

    space = _small(rounds=1, round_size=2)
    args = argparse.Namespace(seeds=1, overrides=["train_steps=10", "eval_every=5"], pack=1, retries=0,
                              address=None, storage=None, resume=None, scale="tiny", dataset="digits",
                              architecture="sndcgan")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        optimizers = bayes.run_bayesian(tmp_path, space, [GP_ARM], identity={"study": "t", "search": "bayesian",
                                        "round": 0}, resources=tune.Resources(), args=args,
                                        trainable=lost_node_trainable)
    finally:
        ray.shutdown()
    missing = json.loads((tmp_path / MANIFEST_FILE).read_text())["trials_missing"]
    assert len(missing) == 2
    for trial_id in missing:
        rows, final = store.read_final(tmp_path / store.TRIALS_DIR / trial_id)
        assert final["status"] == "failed" and "no rows reached the study storage" in final["error"]
    assert all(math.isnan(t["objective"]) or t.get("objective_nan") for t in next(iter(optimizers.values())).trials)
