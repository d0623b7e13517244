"""The head-swapping module in the user's own training loop (HF Trainer, Accelerate, peft), and back into llmhead:
``HeadModel`` trains, saves and reloads with identical logits; ``llmhead.from_model`` makes a Classifier that
predicts what the model computes and whose save loads with the same probabilities; the losses are torch's own."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import CORPUS

import llmhead
from llmhead import HeadModel
from llmhead.model.pooling import pool

TEXTS = CORPUS * 2  # 16 examples
TARGETS = [1, 0] * 8  # CORPUS alternates positive, negative
NAMES = ["neg", "pos"]


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Trainer and Accelerator set accelerate's process-wide singletons; other tests get them back as they were."""
    from accelerate.state import AcceleratorState, GradientState

    saved = [(cls, dict(cls._shared_state)) for cls in (AcceleratorState, GradientState)]
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    yield
    for cls, state in saved:
        cls._shared_state.clear()
        cls._shared_state.update(state)


def tokenizer_of(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def dataset(tokenizer):
    from datasets import Dataset

    rows = Dataset.from_dict({"text": TEXTS, "labels": TARGETS})
    return rows.map(lambda b: tokenizer(b["text"]), batched=True, remove_columns=["text"])


def head_state(model: HeadModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.head.state_dict().items()}


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before)


@torch.no_grad()
def own_probabilities(model: HeadModel, tokenizer, texts: list[str]) -> np.ndarray:
    """softmax of the HeadModel's own logits, one text at a time (no padding)."""
    model.eval()
    rows = [model(**tokenizer(t, return_tensors="pt")).logits.softmax(-1) for t in texts]
    return torch.cat(rows).numpy()


def check_classifier_round_trip(model: HeadModel, tokenizer, folder, merged: bool = False) -> None:
    """from_model predicts what the model computes; its save loads with the same probabilities. ``merged``: a
    peft backbone, which from_model merges into a copy (merged weights round differently from the adapters)."""
    clf = llmhead.from_model(model, tokenizer, labels=NAMES)
    assert set(clf.predict(TEXTS)) <= set(NAMES)
    proba = clf.predict_proba(TEXTS)
    assert proba.shape == (len(TEXTS), 2)
    own = own_probabilities(model, tokenizer, TEXTS)
    one_by_one = clf.predict_proba(TEXTS, batch_size=1)
    if merged:
        np.testing.assert_allclose(one_by_one, own, atol=1e-6, rtol=0)
    else:
        np.testing.assert_array_equal(one_by_one, own)  # the same forward passes
    np.testing.assert_allclose(proba, own, atol=1e-6, rtol=0)  # batched by length: padding rounds
    clf.save(folder)
    assert clf.config.freeze_blocks == 0  # trained in the caller's loop: no frozen blocks are claimed
    loaded = llmhead.load(folder)
    np.testing.assert_array_equal(loaded.predict_proba(TEXTS), proba)
    assert loaded.predict(TEXTS) == clf.predict(TEXTS)
    np.testing.assert_array_equal(llmhead.load(folder).predict_proba(TEXTS), loaded.predict_proba(TEXTS))


def test_trainer_trains_saves_and_becomes_a_classifier(tiny_llama, tmp_path):
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    torch.manual_seed(0)
    tokenizer = tokenizer_of(tiny_llama)
    model = HeadModel.from_backbone(tiny_llama, task="classification", num_labels=2)
    before = head_state(model)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=dataset(tokenizer), data_collator=DataCollatorWithPadding(tokenizer)
    )
    result = trainer.train()
    assert math.isfinite(result.training_loss)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert changed(before, head_state(model))

    model.eval()
    model.save_pretrained(tmp_path / "hm")
    reloaded = HeadModel.from_pretrained(tmp_path / "hm")
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits, atol=0, rtol=0)
    check_classifier_round_trip(reloaded, tokenizer, tmp_path / "clf")


def test_accelerate_loop_with_a_peft_backbone(tiny_llama, tmp_path):
    from accelerate import Accelerator
    from peft import LoraConfig, PeftModel, get_peft_model
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    torch.manual_seed(0)
    tokenizer = tokenizer_of(tiny_llama)
    model = HeadModel.from_backbone(tiny_llama, task="classification", num_labels=2)
    model.backbone = get_peft_model(model.backbone, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    before_head = head_state(model)
    before_lora = {k: v.detach().clone() for k, v in model.backbone.named_parameters() if "lora_B" in k}
    assert before_lora and all(not v.any() for v in before_lora.values())  # LoRA's B starts at zero

    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loader = DataLoader(dataset(tokenizer), batch_size=4, shuffle=True, collate_fn=DataCollatorWithPadding(tokenizer))
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    model.train()
    losses = []
    for batch in loader:
        out = model(**batch)
        accelerator.backward(out.loss)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(out.loss.item())
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    model = accelerator.unwrap_model(model).eval()
    assert changed(before_head, head_state(model))
    assert any(v.any() for k, v in model.backbone.named_parameters() if "lora_B" in k)

    peft_model = model.backbone
    state = {k: v.detach().clone() for k, v in peft_model.state_dict().items()}
    trainable = {k for k, p in peft_model.named_parameters() if p.requires_grad}
    check_classifier_round_trip(model, tokenizer, tmp_path / "clf", merged=True)
    assert model.backbone is peft_model and isinstance(peft_model, PeftModel)  # not merged, not unwrapped
    assert peft_model.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in peft_model.state_dict().items())
    assert {k for k, p in peft_model.named_parameters() if p.requires_grad} == trainable

    model.save_pretrained(tmp_path / "hm")  # merged into a copy: the peft model stays as it was
    assert all(torch.equal(v, state[k]) for k, v in peft_model.state_dict().items())
    reloaded = HeadModel.from_pretrained(tmp_path / "hm")
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits, atol=1e-5, rtol=1e-5)


def test_multilabel_and_regression_losses_are_torchs(tiny_llama):
    F = torch.nn.functional
    tokenizer = tokenizer_of(tiny_llama)
    batch = tokenizer(TEXTS[:4], padding=True, return_tensors="pt")

    multi = HeadModel.from_backbone(tiny_llama, task="multilabel", num_labels=3)
    rows = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=torch.float32)
    out = multi(**batch, labels=rows)
    assert out.logits.shape == (4, 3)
    torch.testing.assert_close(out.loss, F.binary_cross_entropy_with_logits(out.logits, rows))
    out.loss.backward()  # a loss that trains
    assert next(multi.head.parameters()).grad is not None

    single = HeadModel.from_backbone(tiny_llama, task="regression", num_labels=1)
    targets = torch.tensor([0.5, -1.0, 2.0, 0.0])  # (B,)
    out = single(**batch, labels=targets)
    assert out.logits.shape == (4, 1)
    torch.testing.assert_close(out.loss, F.mse_loss(out.logits[:, 0], targets))
    torch.testing.assert_close(single(**batch, labels=targets[:, None]).loss, out.loss)  # (B, 1) too

    two = HeadModel.from_backbone(tiny_llama, task="regression", num_labels=2)
    targets = torch.tensor([[0.5, 1.0], [-1.0, 0.0], [2.0, 3.0], [0.0, -2.0]])
    out = two(**batch, labels=targets)
    assert out.logits.shape == (4, 2)
    torch.testing.assert_close(out.loss, F.mse_loss(out.logits, targets))


def test_from_a_loaded_causal_lm_uses_its_body(tiny_llama, tmp_path):
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    model = HeadModel.from_backbone(lm, task="classification", num_labels=2).eval()
    assert model.backbone is lm.base_model
    names = [n for n, _ in model.named_parameters()]
    assert not any("lm_head" in n for n in names)
    body = {id(p) for p in lm.base_model.parameters()}
    assert all(id(p) in body for p in model.backbone.parameters())
    if not lm.config.tie_word_embeddings:  # an untied LM head is not among the HeadModel's parameters
        assert id(lm.lm_head.weight) not in {id(p) for p in model.parameters()}
    tokenizer = tokenizer_of(tiny_llama)
    batch = tokenizer(TEXTS[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = pool(lm.base_model(**batch).last_hidden_state, batch["attention_mask"], "last")
        got = model.features(batch["input_ids"], batch["attention_mask"])
        torch.testing.assert_close(got[:, 0], expected, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(model(**batch).logits, model.head(got, None))
    check_classifier_round_trip(model, tokenizer, tmp_path / "clf")


def test_layer_cuts_the_blocks_as_the_classifier_does_and_is_refused_on_a_loaded_model(tiny_llama):
    """layer=k means what it means for a Classifier: the blocks above k are never loaded, and block k's output goes
    through the final norm. A model the user loaded cannot be cut, so layer= is refused there, not reinterpreted."""
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    with pytest.raises(ValueError, match="layer= cuts the blocks above it"):
        HeadModel.from_backbone(lm, num_labels=2, layer=1)
    cut = HeadModel.from_backbone(tiny_llama, num_labels=2, layer=1).eval()
    assert len(cut.backbone.layers) == 1
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32", layer=1, pooling="last", speedups=[])
    batch = tokenizer_of(tiny_llama)(TEXTS[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(cut.features(**batch), clf.model.features(**batch))


def test_from_model_save_loads_bit_identical(tiny_llama, tmp_path):
    torch.manual_seed(0)
    tokenizer = tokenizer_of(tiny_llama)
    clf = llmhead.from_model(HeadModel.from_backbone(tiny_llama, num_labels=2), tokenizer, labels=NAMES)
    clf.save(tmp_path / "clf")
    np.testing.assert_array_equal(llmhead.load(tmp_path / "clf").predict_proba(TEXTS), clf.predict_proba(TEXTS))


def test_from_backbone_refuses_bad_options(tiny_llama, tmp_path):
    with pytest.raises(ValueError) as err:
        HeadModel.from_backbone(tiny_llama, task="clasification", num_labels=0, pooling="first", dropout=1.5)
    for expected in ("task must be one of", "num_labels must be an int", "pooling must be one of", "dropout must be"):
        assert expected in str(err.value)
    with pytest.raises(ValueError, match="num_labels must be an int >= 2 for task='classification'"):
        HeadModel.from_backbone(tiny_llama, num_labels=1)
    with pytest.raises(FileNotFoundError, match="headmodel.json is missing"):
        HeadModel.from_pretrained(tmp_path)
    (tmp_path / "headmodel.json").write_text("{not json")
    with pytest.raises(ValueError, match="headmodel.json: not a HeadModel configuration"):
        HeadModel.from_pretrained(tmp_path)


def test_a_loaded_model_keeps_its_own_dtype(tiny_llama):
    from transformers import AutoModel

    base = AutoModel.from_pretrained(tiny_llama, dtype=torch.float32)
    with pytest.raises(ValueError, match="dtype and trust_remote_code are for loading by name"):
        HeadModel.from_backbone(base, num_labels=2, dtype="bfloat16")
    assert HeadModel.from_backbone(base, num_labels=2).backbone is base
