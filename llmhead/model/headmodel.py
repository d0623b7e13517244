"""The head-swapping model: a decoder backbone without its LM head -> pooling -> a new head on pooled vectors only.

It is a plain ``nn.Module`` with the contract of transformers' ``*ForSequenceClassification``:
``forward(input_ids, attention_mask, labels=None)`` returns an output with ``loss`` and ``logits``, so it trains in
HF ``Trainer``, in an Accelerate loop, under FSDP, or with its backbone wrapped by peft::

    model = HeadModel.from_backbone("smollm2-135m", task="classification", num_labels=2)
    out = model(input_ids, attention_mask, labels=labels)   # out.loss, out.logits (B, 2)
    model.save_pretrained("out")                            # safetensors + JSON
    clf = llmhead.from_model(HeadModel.from_pretrained("out"), tokenizer, labels=["neg", "pos"])  # a Classifier
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.utils import ModelOutput

from llmhead.io.folder import honour_umask
from llmhead.model.backbone import load_backbone, model_config, resolve
from llmhead.model.blocks import block_plan
from llmhead.model.heads import MLPHead
from llmhead.model.pooling import FIXED, Pooling, pool, pooled_width

CONFIG = "headmodel.json"
HEAD = "head.safetensors"
BACKBONE = "backbone"


@dataclasses.dataclass
class HeadOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


class HeadModel(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        pooling: Pooling = "last",
        layers: list[int] | None = None,
        task: str = "classification",
    ):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.pooling = pooling
        self.layers = layers  # indices into hidden_states (0 = embeddings); None = the final output
        self.task = task  # what `labels` mean in forward: classification | multilabel | regression

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) tokens -> (B, L, H) pooled float32 features, one row per selected layer; for attention
        pooling, whose query is trained, the (B, T, L, H) token states."""
        # Positions count real tokens only, so left padding does not shift them (models with absolute
        # position embeddings, such as GPT-2, would otherwise change their output with the padding side).
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
        out = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
            output_hidden_states=self.layers is not None,
        )
        states = [out.last_hidden_state] if self.layers is None else [out.hidden_states[i] for i in self.layers]
        if self.pooling not in FIXED:
            return torch.stack(states, 2).float()  # (B, T, L, H)
        return torch.stack([pool(h, attention_mask, self.pooling) for h in states], 1).float()  # (B, L, H)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> HeadOutput:
        """(B, T) -> logits (B, num_outputs); with ``labels`` also the loss: cross-entropy on class indices,
        BCE on 0/1 rows (multilabel), MSE on targets (regression)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = None if self.pooling in FIXED else attention_mask
        logits = self.head(self.features(input_ids, attention_mask), mask)
        return HeadOutput(loss=None if labels is None else task_loss(self.task, logits, labels), logits=logits)

    # ---- the module for users with their own training loop ---------------------------------------------------
    @classmethod
    def from_backbone(
        cls,
        model: str | nn.Module,
        *,
        task: str = "classification",
        num_labels: int,
        pooling: Pooling = "last",
        head_hidden: list[int] | tuple[int, ...] = (),
        layer: int | float | None = None,
        dropout: float = 0.0,
        input_norm: str = "layernorm",
        dtype: str | None = None,
        trust_remote_code: bool = False,
    ) -> HeadModel:
        """A backbone with a new head. ``model``: an alias, a .gguf file, a transformers folder, a hub id, or an
        already loaded transformers model (a ``*ForCausalLM`` gives up its LM head). ``layer``: pool block k's
        output (negative: from the top) instead of the last one's. ``input_norm`` defaults to a learned LayerNorm,
        which needs no statistics pass over the data. ``dtype`` (default float32) and ``trust_remote_code`` are
        for loading by name; a model you loaded keeps its own."""
        _check_options(
            model, task, num_labels, pooling, head_hidden, layer, dropout, input_norm, dtype, trust_remote_code
        )
        if isinstance(model, nn.Module):  # a *ForCausalLM's base_model is its body; a base model's is itself
            backbone = model.base_model
        else:
            source = resolve(model)
            total = model_config(source, trust_remote_code).num_hidden_layers
            keep, _ = block_plan(total, layer, None)
            backbone = load_backbone(source, dtype or "float32", trust_remote_code, keep_blocks=keep)
        width = pooled_width(backbone.get_input_embeddings().embedding_dim, pooling)
        head = MLPHead(width, num_labels, list(head_hidden), dropout=dropout, input_norm=input_norm)
        return cls(backbone, head, pooling, None, task=task)

    def head_config(self) -> dict:
        return {"task": self.task, "pooling": self.pooling, "layers": self.layers, "head": self.head.config()}

    def save_pretrained(self, folder: str | Path) -> Path:
        """``folder``/headmodel.json (task, pooling, layers, the head's shape), head.safetensors and backbone/ (a
        transformers folder, safetensors; LoRA adapters are merged into a copy first). Nothing pickled."""
        folder = Path(folder)
        created = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        backbone = self.backbone
        if hasattr(backbone, "merge_and_unload"):  # peft-wrapped: the merged weights, the user's model untouched
            import copy

            backbone = copy.deepcopy(backbone).merge_and_unload()
        backbone.save_pretrained(folder / BACKBONE, safe_serialization=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, folder / HEAD)
        (folder / CONFIG).write_text(json.dumps(self.head_config(), indent=2))
        honour_umask(folder / BACKBONE, folder / HEAD, folder / CONFIG, *([folder] if created else []))
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, trust_remote_code: bool = False) -> HeadModel:
        """A model written by ``save_pretrained``: JSON and safetensors only."""
        from transformers import AutoModel

        folder = Path(folder)
        try:
            config = json.loads((folder / CONFIG).read_text())
            _ = (config["task"], config["pooling"], config["layers"], config["head"])
        except FileNotFoundError:
            raise FileNotFoundError(f"{folder / CONFIG} is missing: not a folder written by save_pretrained") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{folder / CONFIG}: not a HeadModel configuration ({exc!r})") from None
        backbone = AutoModel.from_pretrained(
            folder / BACKBONE, use_safetensors=True, local_files_only=True, trust_remote_code=trust_remote_code
        ).eval()
        head = MLPHead(**config["head"])
        head.load_state_dict(load_file(folder / HEAD), strict=True)
        return cls(backbone, head.eval(), config["pooling"], config["layers"], task=config["task"])


def task_loss(task: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss a ``*ForSequenceClassification`` model computes for ``task``."""
    F = nn.functional
    logits = logits.float()
    if task == "classification":
        return F.cross_entropy(logits, labels.long())
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    return F.mse_loss(logits, labels.float().reshape(logits.shape))


def _check_options(model, task, num_labels, pooling, head_hidden, layer, dropout, input_norm, dtype, trusted) -> None:
    """from_backbone's options, all problems at once, before any weights load."""
    from llmhead.config import DTYPES, INPUT_NORMS, POOLINGS, TASKS, invalid, is_layer

    p = []
    if task not in TASKS:
        p.append(f"task must be one of {TASKS}, got {task!r}")
    least = 2 if task == "classification" else 1
    if not (isinstance(num_labels, int) and not isinstance(num_labels, bool) and num_labels >= least):
        p.append(f"num_labels must be an int >= {least} for task={task!r}, got {num_labels!r}")
    if pooling not in POOLINGS:
        p.append(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if input_norm not in INPUT_NORMS:
        p.append(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
    if not (isinstance(head_hidden, (list, tuple)) and all(isinstance(h, int) and h > 0 for h in head_hidden)):
        p.append(f"head_hidden must be a list of positive ints ([] for a linear head), got {head_hidden!r}")
    if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
        p.append(f"dropout must be a number in [0, 1), got {dropout!r}")
    if dtype is not None and dtype not in DTYPES:
        p.append(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if layer is not None and not is_layer(layer):
        p.append(f"layer must be a non-zero int or a fraction of the depth in (0, 1), got {layer!r}")
    if isinstance(model, nn.Module):
        if layer is not None:  # llmhead's layer=k cuts the blocks above k (the final norm then reads block k)
            p.append(
                "layer= cuts the blocks above it, which a model you loaded yourself cannot be: pass the model's "
                "alias, path or hub id, or load it with config.num_hidden_layers = k"
            )
        if dtype is not None or trusted:
            p.append(
                "dtype and trust_remote_code are for loading by name; a model you loaded keeps its own: remove them"
            )
    if p:
        raise invalid(p)
