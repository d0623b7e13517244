from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import llmhead
from llmhead.config import ModelConfig, TrainConfig, build


def test_unknown_keys_name_the_nearest():
    with pytest.raises(ValueError, match=r"unknown key 'epoch': did you mean 'epochs'"):
        build(TrainConfig, {"epoch": 3})
    with pytest.raises(ValueError, match=r"unknown key 'poolin'.*'pooling'"):
        llmhead.from_pretrained("smollm2-135m", poolin="mean")


def test_unknown_fit_option(tiny_llama):
    from conftest import sentiment_rows

    with pytest.raises(ValueError, match=r"'batchsize'.*did you mean 'batch_size'"):
        llmhead.from_pretrained(tiny_llama).fit(sentiment_rows(1), batchsize=4)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("task", "clasification", "task must be one of"),
        ("mode", "adapter", "mode must be one of"),
        ("pooling", "first", "pooling must be one of"),
        ("head_hidden", [0], "head_hidden must be a list of positive ints"),
        ("dropout", 1.0, r"dropout must be a number in \[0, 1\)"),
        ("dtype", "float16", "dtype must be one of"),
        ("template", "no placeholder", "template must be a string containing"),
        ("labels", ["a"], "labels needs >= 2 classes"),
    ],
)
def test_invalid_values_are_named(field, value, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{field: value})


def test_problems_are_collected():
    with pytest.raises(ValueError) as err:
        TrainConfig(epochs=-1, lr=-1)  # (epochs=0 is allowed: the head as initialised)
    assert "epochs" in str(err.value) and "lr" in str(err.value)


def test_model_sources_fail_early(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'smollm2-135m'"):
        llmhead.from_pretrained("smollm2")
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        llmhead.from_pretrained(str(tmp_path / "model.gguf"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        llmhead.from_pretrained(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        llmhead.from_pretrained("./not/here")


def test_boolean_options_take_only_booleans():
    """A YAML or CLI "false" arrives as a string, which Python reads as true: it is refused, not guessed."""
    with pytest.raises(ValueError, match=r"icl_calibrate must be true or false, got 'false'"):
        ModelConfig(mode="icl", icl_calibrate="false")
    with pytest.raises(ValueError, match=r"trust_remote_code must be true or false, got 1"):
        ModelConfig(trust_remote_code=1)
    with pytest.raises(ValueError) as err:
        TrainConfig(progress="no", warm_start=None)
    assert "progress must be true or false, got 'no'" in str(err.value)
    assert "warm_start must be true or false, got None" in str(err.value)
    assert ModelConfig(mode="icl", icl_calibrate=False).icl_calibrate is False


def test_a_renamed_key_names_the_key_that_replaced_it():
    with pytest.raises(ValueError, match=r"'short_attention' was renamed: use speedups"):
        build(ModelConfig, {"short_attention": False})
    assert build(ModelConfig, {"speedups": []}).speedups == []
    with pytest.raises(ValueError, match=r"speedups must be a list from"):
        build(ModelConfig, {"speedups": ["turbo"]})
    with pytest.raises(ValueError, match=r"'train.precision' was renamed: use mixed_precision \(the training autocast"):
        build(TrainConfig, {"precision": "bf16"}, where="train.")
    assert build(TrainConfig, {"mixed_precision": "bf16"}).mixed_precision == "bf16"
    with pytest.raises(ValueError, match=r"unknown key 'precision'"):  # a renamed key belongs to its own section
        build(ModelConfig, {"precision": "bf16"})


def test_a_renamed_value_names_the_value_that_replaced_it():
    with pytest.raises(
        ValueError, match=r"^invalid configuration: head_init='verbalizer' was renamed: use head_init='lmhead'$"
    ):
        ModelConfig(head_init="verbalizer", head_hidden=[])
    ModelConfig(head_init="lmhead", head_hidden=[], verbalizers={"pos": "good"})
    with pytest.raises(ValueError, match=r"head_init='lmhead' needs a linear head: head_hidden=\[\]"):
        ModelConfig(head_init="lmhead")


def test_probe_c_is_c_and_probe_alpha_is_ridges_penalty():
    assert ModelConfig(mode="probe", probe="svm", probe_c=0.5).probe_c == 0.5
    assert ModelConfig(mode="probe", probe="ridge", task="regression", probe_alpha=10).probe_alpha == 10
    with pytest.raises(ValueError, match=r"probe='ridge' takes probe_alpha \(its penalty\): use probe_alpha=10"):
        ModelConfig(mode="probe", probe="ridge", task="regression", probe_c=10)
    with pytest.raises(ValueError, match=r"probe_alpha is the penalty of probe='ridge'; probe='logreg' takes probe_c"):
        ModelConfig(mode="probe", probe_alpha=10)
    with pytest.raises(ValueError, match=r"probe_alpha is not used by mode='lora'"):
        ModelConfig(mode="lora", probe="ridge", task="regression", probe_alpha=10)


def test_options_written_under_old_names_upgrade():
    from llmhead.config import upgrade

    old = {"head_init": "verbalizer", "probe": "ridge", "probe_c": 3.0, "short_attention": False, "mode": "probe"}
    new = upgrade(ModelConfig, old)
    assert new == {
        "head_init": "lmhead",
        "probe": "ridge",
        "probe_c": None,
        "probe_alpha": 3.0,
        "mode": "probe",
        "speedups": ["mapped_load"],
    }
    assert upgrade(ModelConfig, {"short_attention": True}) == {}
    assert upgrade(ModelConfig, {"probe": "svm", "probe_c": 3.0}) == {"probe": "svm", "probe_c": 3.0}
    assert upgrade(TrainConfig, {"precision": "no", "lr": 0.1}) == {"mixed_precision": "no", "lr": 0.1}
    assert upgrade(ModelConfig, new) == new  # today's names are left as they are


def _run(code: str) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)


def test_the_schema_imports_neither_torch_nor_peft():
    """The config package on its own (the package's __init__, which imports the Classifier, stubbed out)."""
    code = (
        "import sys, types\n"
        "pkg = types.ModuleType('llmhead'); pkg.__path__ = ['llmhead']; sys.modules['llmhead'] = pkg\n"
        "from llmhead.config import ModelConfig, TrainConfig, build, for_mode\n"
        "for_mode(build(TrainConfig, {'mixed_precision': 'bf16'}), 'lora'); ModelConfig(mode='lora')\n"
        "assert 'torch' not in sys.modules and 'peft' not in sys.modules, sorted(sys.modules)"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr


def test_importing_llmhead_config_imports_no_torch():
    result = _run("import llmhead.config, sys; assert 'torch' not in sys.modules")
    assert result.returncode == 0, result.stderr


def test_the_choices_are_those_the_modules_act_on():
    from llmhead import config
    from llmhead.model import heads

    assert tuple(heads.ACTIVATIONS) == config.ACTIVATIONS


def test_peft_config_is_recognised_without_importing_peft():
    import peft

    ModelConfig(mode="lora", peft_config=peft.LoraConfig(r=4))
    with pytest.raises(ValueError, match=r"peft_config must be a peft.PeftConfig"):
        ModelConfig(mode="lora", peft_config={"r": 4})
