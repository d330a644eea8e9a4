import json

from dps_lens.studies.organism_steering import run_study


def test_organism_steering_study_writes_both_sweeps(tmp_path):
    report = run_study(
        "organism-planted", tmp_path, n_discovery_users=10, n_evaluation_users=40,
        gammas=(1.0, 4.0), ks=(1, 3), progress=False,
    )  # fmt: skip
    assert set(report["top_heads"][:2]) == {(1, 1), (1, 3)}
    rows = json.loads((tmp_path / "sweep.json").read_text())["rows"]
    rate = {(r["sweep"], r["method"], r["gamma"], r["k"]): r["personalization"] for r in rows}
    plain = rate[("gamma", "plain", None, None)]
    assert rate[("gamma", "dps", 1.0, 3)] > plain
    assert rate[("k", "dps", 1.0, 3)] >= rate[("k", "dps", 1.0, 1)]
    text = (tmp_path / "sweep.md").read_text()
    assert "γ sweep" in text and "| dps_shared_prefill |" in text and "k = 3" in text
