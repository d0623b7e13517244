"""Saving never damages what is already there; loading never runs code and never loads what was not saved."""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import sentiment_rows
from safetensors.torch import load_file, save_file

import llmhead
from llmhead.io import folder as folder_module
from llmhead.io import save as checkpoint
from llmhead.io.save import LoadError

TEXTS = ["the film was wonderful", "a dull boring mess", "great acting", "awful dialogue"]


def head_clf(model: str, **options):
    return llmhead.from_pretrained(model, dtype="float32", **options).fit(sentiment_rows(1), epochs=2, progress=False)


@pytest.fixture(scope="module")
def saved_head(tiny_llama, tmp_path_factory) -> tuple[Path, torch.Tensor]:
    """A head-mode save and its probabilities on TEXTS."""
    folder = tmp_path_factory.mktemp("saved") / "m"
    clf = head_clf(tiny_llama)
    clf.save(folder)
    return folder, torch.as_tensor(clf.predict_proba(TEXTS))


@pytest.fixture(scope="module")
def saved_lora(tiny_llama, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("saved-lora") / "m"
    clf = llmhead.from_pretrained(tiny_llama, mode="lora", lora_r=4, head_hidden=[8], dtype="float32")
    clf.fit(sentiment_rows(1), epochs=1, batch_size=4, warm_start=False, progress=False).save(folder)
    return folder


def copy_of(folder: Path, tmp_path: Path) -> Path:
    shutil.copytree(folder, tmp_path / "copy")
    return tmp_path / "copy"


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / checkpoint.MANIFEST).read_text())


def reseal(folder: Path, edit) -> None:
    """Edit the manifest and seal it again, as someone who knows the format would: the digests then match."""
    manifest = manifest_of(folder)
    for key in ("format", "files", "digest"):
        manifest.pop(key)
    edit(manifest)
    checkpoint.seal(folder, manifest)


# ---- saving --------------------------------------------------------------------------------------
def test_refuses_to_overwrite_a_folder_that_is_not_a_model(tiny_llama, tmp_path):
    clf = head_clf(tiny_llama)
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a saved llmhead model"):
        clf.save(precious)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_failed_save_keeps_the_previous_model(tiny_llama, tmp_path, monkeypatch):
    clf = head_clf(tiny_llama)
    clf.save(tmp_path / "m")
    before = (tmp_path / "m" / "head.safetensors").read_bytes()

    def broken(folder, manifest):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "seal", broken)
    clf.fit(sentiment_rows(1), epochs=3, lr=0.1, progress=False)
    with pytest.raises(OSError, match="disk full"):
        clf.save(tmp_path / "m")
    assert (tmp_path / "m" / "head.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folders left behind
    assert llmhead.load(tmp_path / "m").labels.names == ["neg", "pos"]


def test_non_finite_weights_are_never_saved(tiny_llama, tmp_path):
    clf = head_clf(tiny_llama)
    with torch.no_grad():
        clf.model.head.mlp[-1].weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite"):
        clf.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_resave_keeps_every_file_the_save_did_not_write(tiny_llama, tmp_path):
    clf = head_clf(tiny_llama)
    folder = clf.save(tmp_path / "m")
    (folder / "notes.txt").write_text("my notes")
    (folder / "eval").mkdir()
    (folder / "eval" / "report.md").write_text("# report")
    clf.fit(sentiment_rows(1), epochs=3, lr=0.1, progress=False)
    clf.save(folder)
    assert (folder / "notes.txt").read_text() == "my notes"
    assert (folder / "eval" / "report.md").read_text() == "# report"
    assert llmhead.load(folder).predict(TEXTS) == clf.predict(TEXTS)
    # a file the user put where this save writes is never replaced
    lora = llmhead.from_pretrained(tiny_llama, mode="lora", lora_r=4, head_hidden=[8], dtype="float32")
    lora.fit(sentiment_rows(1), epochs=1, batch_size=4, warm_start=False, progress=False)
    (folder / checkpoint.ADAPTER).write_text("mine")
    with pytest.raises(FileExistsError, match="adapter.safetensors.*llmhead did not write"):
        lora.save(folder)
    assert (folder / checkpoint.ADAPTER).read_text() == "mine" and llmhead.load(folder).config.mode == "head"


def test_the_next_save_removes_temporary_folders_of_killed_saves(tiny_llama, tmp_path):
    parent = tmp_path / "models"
    parent.mkdir()
    code = (
        "import os, sys, llmhead; sys.path.insert(0, 'tests'); from conftest import sentiment_rows; "
        f"clf = llmhead.from_pretrained({tiny_llama!r}, dtype='float32').fit(sentiment_rows(1), epochs=1, "
        "progress=False); import llmhead.io.save as c; real = c.seal; "
        "c.seal = lambda folder, m: (real(folder, m), os.kill(os.getpid(), 9)); "
        f"clf.save({str(parent / 'm')!r})"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    left = [p.name for p in parent.iterdir()]
    assert len(left) == 1 and left[0].startswith(".m.tmp-")  # what a killed save leaves behind
    old_style = parent / ".m.tmp-abcd1234"  # left by a version that wrote no writer file, an hour ago
    old_style.mkdir()
    os.utime(old_style, (time.time() - 3600,) * 2)
    starting = parent / ".n.tmp-abcd5678"  # no writer file yet, just made: a save that is starting
    starting.mkdir()
    running = parent / ".other.tmp-wxyz5678"  # a save in progress (its writer holds the lock): kept
    running.mkdir()
    lock = open(running / checkpoint.WRITER, "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    user = parent / ".m.tmp-mine"  # not a name a save makes: kept
    user.mkdir()
    head_clf(tiny_llama).save(parent / "m")
    lock.close()
    assert sorted(p.name for p in parent.iterdir()) == sorted(["m", starting.name, running.name, user.name])


def test_a_save_left_aside_by_the_two_rename_fallback_is_put_back(saved_head, tmp_path, tiny_llama):
    parent = tmp_path / "models"
    aside = parent / ".m.old-abcd1234"  # killed between the fallback's two renames: no m, the old save aside
    aside.mkdir(parents=True)
    shutil.copytree(saved_head[0], aside / "x")
    head_clf(tiny_llama).save(parent / "other")  # any later save into the same parent
    assert sorted(p.name for p in parent.iterdir()) == ["m", "other"]
    assert torch.equal(torch.as_tensor(llmhead.load(parent / "m").predict_proba(TEXTS)), saved_head[1])


def test_exporting_twice_replaces_the_export_and_keeps_other_files(tiny_llama, tmp_path):
    exportable = dict(head_hidden=[], head_bias=False, input_norm="none", pooling="last")
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32", **exportable)
    clf.fit(sentiment_rows(1), epochs=2, progress=False)
    folder = clf.export(tmp_path / "hf")
    (folder / "notes.txt").write_text("mine")
    clf.export(folder)
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "config.json").is_file()


def test_a_save_is_in_place_of_the_old_one_in_one_exchange(tiny_llama, tmp_path, monkeypatch):
    clf = head_clf(tiny_llama)
    folder = clf.save(tmp_path / "m")
    old = clf.predict_proba(TEXTS)
    seen = []
    real_seal, real_exchange = checkpoint.seal, folder_module._exchange

    def seal(tmp, manifest):  # while the new save is written, the old one is complete
        seen.append(llmhead.load(folder).predict_proba(TEXTS))
        real_seal(tmp, manifest)

    def exchange(a, b):
        done = real_exchange(a, b)
        seen.append(done)
        return done

    monkeypatch.setattr(checkpoint, "seal", seal)
    monkeypatch.setattr(folder_module, "_exchange", exchange)
    clf.fit(sentiment_rows(1), epochs=3, lr=0.1, progress=False)
    clf.save(folder)
    assert (seen[0] == old).all()
    assert seen[1] is True  # renameat2(RENAME_EXCHANGE) on this machine: never a moment without the folder
    assert (llmhead.load(folder).predict_proba(TEXTS) == clf.predict_proba(TEXTS)).all()


# ---- loading: every file checked ---------------------------------------------------------------------
def flip_bits(path: Path, n: int = 1000) -> None:
    data = bytearray(path.read_bytes())
    rng = random.Random(0)
    for _ in range(n):
        i = rng.randrange(len(data) // 2, len(data))  # the tensor bytes, after the header
        data[i] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def edit_manifest(edit):
    def apply(folder: Path):
        manifest = manifest_of(folder)
        edit(manifest)
        (folder / checkpoint.MANIFEST).write_text(json.dumps(manifest, indent=2))

    return apply


def wrong_shape(folder: Path):
    state = load_file(folder / checkpoint.HEAD)
    key = next(k for k in state if k.endswith("weight") and state[k].ndim == 2)
    state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
    save_file(state, folder / checkpoint.HEAD)
    reseal(folder, lambda m: None)


def _set(section: str, key: str, value):
    def edit(m):
        m[section][key] = value

    return edit


CORRUPTIONS = {
    "head-1000-bit-flips": (lambda f: flip_bits(f / checkpoint.HEAD), "head.safetensors: damaged or changed"),
    "head-truncated": (lambda f: truncate(f / checkpoint.HEAD), "head.safetensors: damaged or changed"),
    "head-missing": (lambda f: (f / checkpoint.HEAD).unlink(), "head.safetensors: missing"),
    "head-wrong-shape-resealed": (wrong_shape, "head.safetensors: does not fit the model"),
    "tokenizer-file-missing": (
        lambda f: (f / "tokenizer" / "tokenizer.json").unlink(),
        "tokenizer.json: missing",
    ),
    "tokenizer-edited": (
        lambda f: (f / "tokenizer" / "tokenizer_config.json").write_text("{}"),
        "tokenizer_config.json: damaged or changed",
    ),
    "manifest-pooling-edited": (edit_manifest(_set("model", "pooling", "mean")), "was changed after it was saved"),
    "manifest-template-edited": (
        edit_manifest(_set("model", "template", "Review: {text}")),
        "was changed after it was saved",
    ),
    "manifest-label-order-edited": (
        edit_manifest(lambda m: m["labels"]["names"].reverse()),
        "was changed after it was saved",
    ),
    "manifest-digest-removed": (
        edit_manifest(lambda m: (m.pop("digest"), m.pop("files"))),
        "list of files and their digests is missing",
    ),
    "manifest-truncated-json": (lambda f: truncate(f / checkpoint.MANIFEST), "llmhead.json: not valid JSON at line"),
    "manifest-not-utf8": (lambda f: (f / checkpoint.MANIFEST).write_bytes(b'{"a": "\xe9"}'), "not UTF-8"),
    "manifest-a-list": (lambda f: (f / checkpoint.MANIFEST).write_text("[1, 2]"), "expected a JSON object, got list"),
    "manifest-format-3": (edit_manifest(lambda m: m.update(format=3)), "format 3 is not supported"),
    "manifest-without-labels-resealed": (
        lambda f: reseal(f, lambda m: m.pop("labels")),
        "the key 'labels' is missing",
    ),
    "tokenizer-extra-file": (
        lambda f: (f / "tokenizer" / "special_tokens_map.json").write_text('{"pad_token": "the"}'),
        "special_tokens_map.json: not written by the save",
    ),
    "tokenizer-symlink": (
        lambda f: (f / "tokenizer" / "chat_template.jinja").symlink_to("/etc/hostname"),
        "chat_template.jinja: not written by the save",
    ),
    "manifest-format-1-with-digests": (
        edit_manifest(lambda m: m.update(format=1)),
        "says format 1 but carries format 2's digests",
    ),
    "manifest-format-true": (edit_manifest(lambda m: m.update(format=True)), "format True is not supported"),
    "manifest-bad-option-resealed": (
        lambda f: reseal(f, _set("model", "pooling", "nope")),
        "not a manifest this version can load",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_a_damaged_or_edited_save_is_refused_naming_the_file(saved_head, tmp_path, case):
    folder = copy_of(saved_head[0], tmp_path)
    damage, expected = CORRUPTIONS[case]
    damage(folder)
    with pytest.raises((LoadError, FileNotFoundError)) as err:
        llmhead.load(folder)
    assert expected in str(err.value) and str(folder) in str(err.value)


def test_a_listed_file_outside_the_folder_is_refused(saved_head, tmp_path):
    folder = copy_of(saved_head[0], tmp_path)
    manifest = manifest_of(folder)
    manifest["files"]["../outside.txt"] = "0" * 64
    manifest["digest"] = checkpoint.manifest_digest(manifest)
    (folder / checkpoint.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(LoadError, match="outside the model folder"):
        llmhead.load(folder)


def test_a_pickle_beside_a_full_save_is_never_read(tiny_llama, tmp_path):
    clf = llmhead.from_pretrained(tiny_llama, mode="full", head_hidden=[8], dtype="float32")
    clf.fit(sentiment_rows(1), epochs=1, batch_size=4, warm_start=False, progress=False)
    folder = clf.save(tmp_path / "m")
    (folder / "backbone" / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    with pytest.raises(LoadError, match="adapter_config.json: not written by the save"):
        llmhead.load(folder)
    (folder / "backbone" / "adapter_config.json").unlink()
    assert llmhead.load(folder).predict(TEXTS) == clf.predict(TEXTS)


def test_damaged_adapters_are_refused(saved_lora, tmp_path):
    folder = copy_of(saved_lora, tmp_path)
    flip_bits(folder / checkpoint.ADAPTER, 100)
    with pytest.raises(LoadError, match="adapter.safetensors: damaged or changed"):
        llmhead.load(folder)


def test_an_intact_or_resealed_save_loads_to_the_same_probabilities(saved_head, saved_lora, tmp_path):
    folder = copy_of(saved_head[0], tmp_path)
    assert torch.equal(torch.as_tensor(llmhead.load(folder).predict_proba(TEXTS)), saved_head[1])
    reseal(folder, lambda m: None)  # the helper the cases above use changes nothing by itself
    assert torch.equal(torch.as_tensor(llmhead.load(folder).predict_proba(TEXTS)), saved_head[1])
    assert llmhead.load(saved_lora).config.mode == "lora"


def test_a_save_from_before_digests_loads_with_a_warning(saved_head, tmp_path, caplog):
    folder = copy_of(saved_head[0], tmp_path)
    manifest = manifest_of(folder)
    for key in ("files", "digest"):
        manifest.pop(key)
    manifest["format"] = 1
    (folder / checkpoint.MANIFEST).write_text(json.dumps(manifest))
    assert torch.equal(torch.as_tensor(llmhead.load(folder).predict_proba(TEXTS)), saved_head[1])
    assert "without file digests" in caplog.text


# ---- the base weights a save depends on ------------------------------------------------------------
def test_load_refuses_base_weights_changed_anywhere(tiny_llama, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_llama, base)
    clf = head_clf(str(base))
    clf.save(tmp_path / "m")
    state = load_file(base / "model.safetensors")
    key = next(k for k in state if "layers.1.mlp.down_proj" in k)
    middle = state[key].shape[0] // 2
    state[key][middle : middle + 2] *= 3  # a slice in the middle: not among the first or last values
    save_file(state, base / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(LoadError, match="differ from those this classifier was trained on"):
        llmhead.load(tmp_path / "m")


def test_load_refuses_a_base_whose_configuration_changed(tiny_llama, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_llama, base)
    head_clf(str(base)).save(tmp_path / "m")
    config = json.loads((base / "config.json").read_text())
    config["rms_norm_eps"] = 1e-2  # the same weights, other outputs
    (base / "config.json").write_text(json.dumps(config))
    with pytest.raises(LoadError, match="differ from those this classifier was trained on"):
        llmhead.load(tmp_path / "m")


# ---- no code runs on load --------------------------------------------------------------------------
def remote_code_model(folder: Path, marker: Path) -> Path:
    """A model folder whose config names its own Python classes (auto_map); importing them creates ``marker``."""
    folder.mkdir()
    code = f"open({str(marker)!r}, 'w').write('ran')\nfrom transformers import LlamaConfig as EvilConfig\n"
    (folder / "configuration_evil.py").write_text(code)
    (folder / "modeling_evil.py").write_text(code.replace("LlamaConfig as EvilConfig", "LlamaModel as EvilModel"))
    config = {
        "model_type": "llama",
        "auto_map": {"AutoConfig": "configuration_evil.EvilConfig", "AutoModel": "modeling_evil.EvilModel"},
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("saved_trust", [True, False])
def test_trust_remote_code_in_a_saved_manifest_runs_nothing(saved_head, tmp_path, saved_trust):
    marker = tmp_path / "ran"
    evil = remote_code_model(tmp_path / "evil", marker)
    folder = copy_of(saved_head[0], tmp_path)

    def point_at_evil(m):
        m["model"]["trust_remote_code"] = saved_trust
        m["backbone"]["source"] = str(evil)

    reseal(folder, point_at_evil)
    with pytest.raises((LoadError, ValueError, OSError)) as err:
        llmhead.load(folder)
    if saved_trust:
        assert "trust_remote_code=True" in str(err.value) and "Nothing was loaded" in str(err.value)
    assert not marker.exists()
