"""Benchmarks stay runnable: their --quick mode is a smoke test (no timing is asserted)."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import model_cost  # noqa: E402, I001


def test_model_cost_quick(tmp_path):
    result = model_cost.main(["--quick", "--repeats", "1", "--out", str(tmp_path / "r.json")])
    assert [r["blocks"] for r in result["by_layer"]] == [1, 2]
    assert result["by_layer"][0]["backbone_params_M"] < result["by_layer"][1]["backbone_params_M"]
    assert result["predict_vs_transformers"]["same_predictions"] == 1.0
    assert (tmp_path / "r.json").is_file()


def test_peer_quick(tmp_path):
    import peer

    result = peer.main(["--quick", "--out", str(tmp_path / "peer.json")])
    keys = [row["key"] for row in result["rows"]]
    assert keys == ["head5", "head10", "lora", "full", "predict"]
    for row in result["rows"][:-1]:
        assert row["llmhead"]["train_examples_per_s"] > 0 and row["peer"]["train_examples_per_s"] > 0
    assert result["ratios"]["predict_speedup"] > 0  # prediction alone, both sides
    assert "head10_train_speedup" in result["ratios"] and (tmp_path / "peer.json").is_file()
    assert 0 <= result["baselines"]["tfidf_logreg_accuracy"] <= 1


def test_peer_mirrors_repeated_rows(monkeypatch):
    """--repeats runs the sides as peer, ours, ours, peer, ... and reports medians, the highest peak and every run."""
    import peer

    calls = []

    def fake(fn, *shape, inline=False):
        who = "peer" if fn is peer.peer_phase else "llmhead"
        calls.append(who)
        rate = {"peer": [8.0, 7.0, 9.0], "llmhead": [16.0, 18.0, 14.0]}[who][calls.count(who) - 1]
        return {"train_examples_per_s": rate, "test_accuracy": 0.5, "trainable_params": 3, "peak_rss_mb": rate * 100}

    monkeypatch.setattr(peer, "isolated", fake)
    theirs, ours = peer.mirrored(("lora",), 3, inline=False)
    assert calls == ["peer", "llmhead", "llmhead", "peer", "peer", "llmhead"]
    assert theirs["train_examples_per_s"] == 8.0 and ours["train_examples_per_s"] == 16.0
    assert theirs["peak_rss_mb"] == 900.0 and ours["peak_rss_mb"] == 1800.0
    assert [r["train_examples_per_s"] for r in ours["runs"]] == [16.0, 18.0, 14.0]
    calls.clear()
    one, _ = peer.mirrored(("lora",), 1, inline=False)
    assert "runs" not in one


def test_limits_quick(tmp_path):
    import limits

    result = limits.main(["--quick", "--out", str(tmp_path / "limits.json")])
    assert result["matmul_peak"]["peak_flops"] > 0
    assert 0 < result["at_16x128"]["forward_fraction_of_peak"] and 0 < result["at_16x128"]["lora_step_fraction_of_peak"]
    assert [r["blocks"] for r in result["by_layer"]] == [1, 2] and len(result["by_examples"]) == 2


def test_smalldata_quick(tmp_path):
    import smalldata

    result = smalldata.main(["--quick", "--out", str(tmp_path / "s.json")])
    routes = [r["route"] for r in result["rows"]]
    assert routes[0] == "majority class" and any(r.startswith("ICL") for r in routes)
    assert all(0 <= r["test_accuracy"] <= 1 for r in result["rows"])


def test_pass_tokens_quick(tmp_path):
    import pass_tokens

    result = pass_tokens.main(["--quick", "--out", str(tmp_path / "p.json")])
    whole, cut = result["runs"]
    assert (whole["max_pass_tokens"], cut["max_pass_tokens"]) == (None, 16)
    # the same optimizer steps either way: the final validation losses agree to (bf16) rounding
    assert abs(whole["val_loss"] - cut["val_loss"]) < 0.05 * whole["val_loss"]
    assert "| quick | whole batches |" in pass_tokens.format_table(result["runs"])


def test_allocator_quick(tmp_path, monkeypatch):
    import platform

    import allocator

    monkeypatch.setenv("LLMHEAD_MALLOC", "default")  # the parent's settings do not reach the rows
    result = allocator.main(["--quick", "--out", str(tmp_path / "a.json")])
    runs = result["runs"]  # each in a spawned process, which reads the thresholds from its environment
    expected = [
        ("llmhead", "glibc defaults"),
        ("peer", "glibc defaults"),
        ("llmhead", "environment"),
        ("peer", "environment"),
    ]
    expected += [("llmhead", "llmhead command")] if platform.libc_ver()[0] == "glibc" else []
    assert [(r["side"], r["allocator"]) for r in runs] == expected
    assert all(r["rows"] == 8 and r["seconds"] >= 0 and r["peak_rss_mb"] > 0 for r in runs)
    assert os.environ["LLMHEAD_MALLOC"] == "default" and "MALLOC_MMAP_THRESHOLD_" not in os.environ  # put back
    assert "| 1 | llmhead | environment | 8 |" in allocator.format_table(runs)


def test_lora_dropout_quick(tmp_path):
    import lora_dropout

    result = lora_dropout.main(["--quick", "--out", str(tmp_path / "d.json")])
    assert [r["dropout"] for r in result["runs"]] == [0.05, 0.0]
    assert all(r["fit_seconds"] > 0 and 0 <= r["test_accuracy"] <= 1 for r in result["runs"])
    assert result["ratios"]["fit_time_ratio"] > 0 and (tmp_path / "d.json").is_file()


def test_digests_quick():
    import digests

    result = digests.main(["--quick"])
    assert result["fingerprint_s_per_gib"] > 0 and result["file_digest_s_per_gib"] > 0


def test_baseline_quick(tmp_path):
    import baseline

    result = baseline.main(["--quick", "--out", str(tmp_path / "baseline.json")])
    (data,) = result["datasets"]
    assert [r["route"] for r in data["routes"]] == ["tfidf", "probe", "head", "hybrid"]
    assert all(0 <= r["test"] <= 1 for r in data["routes"]) and data["auto"]["winner"] in baseline.ROUTES
    cv = data["auto"]["cv"]
    assert cv[data["auto"]["winner"]] >= cv["tfidf"]  # the ladder never picks below the baseline
    assert (tmp_path / "baseline.json").is_file()


def test_time_to_accuracy_quick(tmp_path):
    import time_to_accuracy as tta

    out = tmp_path / "tta.json"
    result = tta.main(["--quick", "--mode", "lora", "--peer-epochs", "3", "--out", str(out)])
    ours, peer = result["runs"]
    # the peer's epoch budget is the one asked for (the default is 2 in quick mode), and the JSON says so
    assert peer["epochs"] == result["setup"]["peer_epochs"] == 3
    assert max(p["examples"] for p in peer["curve"]) == 3 * tta.DATASETS["quick"]["n_train"]
    assert ours["who"] == "llmhead" and peer["who"] == "peer" and peer["lr"] == tta.MODES["lora"]["lrs"][-1]
    for run in (ours, peer):  # each evaluation: elapsed time growing, a metric, the evaluations' time within it
        times = [p["elapsed_s"] for p in run["curve"]]
        assert times and times == sorted(times) and all(0 <= p["metric"] <= 1 for p in run["curve"])
        assert all(p["elapsed_without_evals_s"] <= p["elapsed_s"] for p in run["curve"])
    # the peer's epoch ends are evaluated once each, even where eval_steps lands on them
    assert len({p["examples"] for p in peer["curve"]}) == len(peer["curve"])
    assert result["target"] == round(0.98 * max(ours["best_val"], peer["best_val"]), 4)
    assert "this run" in result["target_source"]
    assert out.is_file() and out.with_suffix(".png").stat().st_size > 10_000
    # time to target: the first evaluation at or above it
    curve = [{"elapsed_s": 1.0, "metric": 0.5}, {"elapsed_s": 2.0, "metric": 0.9}, {"elapsed_s": 3.0, "metric": 0.95}]
    assert tta.time_to(curve, 0.9) == 2.0 and tta.time_to(curve, 0.96) is None and tta.best_by(curve, 2.5) == 0.9

    # --peer-from: llmhead rerun, the peer's runs taken from that table, and the JSON says where from
    again = tta.main(["--quick", "--mode", "lora", "--peer-epochs", "3", "--peer-from", str(out), "--out", str(out)])
    assert [r["who"] for r in again["runs"]] == ["llmhead", "peer"]
    assert again["runs"][1]["curve"] == peer["curve"] and again["runs"][1]["reused_from"] == str(out)
    assert str(out) in again["setup"]["peer_runs_from"]
    # ... a larger grid: the rate that table has is taken from it, the other one runs here
    grid = ["--lrs", "1e-3", "2e-4", "--peer-from", str(out), "--out", str(tmp_path / "grid.json")]
    wider = tta.main(["--quick", "--mode", "lora", "--peer-epochs", "3", *grid])
    assert [(r["who"], r["lr"], "reused_from" in r) for r in wider["runs"][1:]] == [
        ("peer", 1e-3, True),
        ("peer", 2e-4, False),
    ]
    # ... and refused for another table: here the peer's epoch budget differs
    with pytest.raises(SystemExit, match="peer_epochs: 3 there, 2 here"):
        tta.main(["--quick", "--mode", "lora", "--peer-from", str(out), "--out", str(tmp_path / "other.json")])


@pytest.mark.parametrize("bad", [["--peer-epochs", "0"], ["--quick", "--model", "gemma3-270m"]])
def test_time_to_accuracy_refuses_what_it_cannot_use(bad, capsys):
    import time_to_accuracy as tta

    with pytest.raises(SystemExit):
        tta.main(bad)
    assert ("--peer-epochs" if "0" in bad else "--model") in capsys.readouterr().err


def test_layer_probe_quick(tmp_path):
    import layer_probe

    result = layer_probe.main(["--quick", "--out", str(tmp_path / "layers.json")])["quick"]
    blocks = result["blocks"]
    for pooling in ("last", "mean"):  # every block scored, on validation and test, as an accuracy
        assert [r["block"] for r in result[pooling]] == list(range(1, blocks + 1))
        assert all(0 <= r["val"] <= 1 and 0 <= r["test"] <= 1 for r in result[pooling])
    assert (tmp_path / "layers.json").is_file()
    # the states come from one forward pass per batch: block k's last-token state differs from block k+1's
    states, _ = layer_probe.pooled_states(layer_probe.load("quick")[0], ["a short text", "another one"], 16)
    assert states.shape[:2] == (2, blocks) and not (states[:, 0] == states[:, 1]).all()


def test_head_features_quick(tmp_path):
    import head_features

    result = head_features.main(["--quick", "--out", str(tmp_path / "features.json")])
    rows = result["rows"]
    assert [r["features"] for r in rows] == list(head_features.SETTINGS)  # every setting, the default included
    assert all(0 <= r["test"] <= 1 and r["first_eval_s"] > 0 for r in rows)
    assert head_features.SETTINGS["last+mean, 3/4 depth (default)"] == {}  # run as users get it, with no options
    from llmhead.config import ModelConfig

    default = ModelConfig(mode="head")
    assert (default.pooling, default.layer) == ("last+mean", 0.75)  # what that row's label says
    assert (tmp_path / "features.json").is_file()
