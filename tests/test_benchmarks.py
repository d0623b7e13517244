"""Benchmarks stay runnable: their --quick mode is a smoke test (no timing is asserted)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import model_cost  # noqa: E402


def test_model_cost_quick(tmp_path):
    result = model_cost.main(["--quick", "--repeats", "1", "--out", str(tmp_path / "r.json")])
    assert [r["blocks"] for r in result["by_layer"]] == [1, 2]
    assert result["by_layer"][0]["backbone_params_M"] < result["by_layer"][1]["backbone_params_M"]
    assert result["predict_vs_transformers"]["same_predictions"] == 1.0
    assert (tmp_path / "r.json").is_file()
