"""In-context learning: the causal LM (LM head kept) scores each label's words after a few-shot prompt.

    prompt = instruction + k demonstrations per class + the query, ending where the label would come
    score(label) = sum of log p(label tokens | prompt)          (multi-token label words included)
    calibrated   = score - log p_cf(label)                       (contextual calibration, Zhao et al. 2021)

p_cf is the label distribution the prompt gives content-free inputs ("N/A", "", "[MASK]"): dividing it out
removes the prompt's bias towards some labels. The demonstrations are the same for every query, so their
keys/values are computed once and reused (a KV-cache prefix); each query costs only its own tokens.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np
import torch

from llmhead import budget
from llmhead.progress import bar as progress_bar

log = logging.getLogger(__name__)

CONTENT_FREE = ("N/A", "", "[MASK]")
SENTINEL = "\u0000QUERY\u0000"


@dataclass
class Prompt:
    prefix: str  # instruction + demonstrations + the query's lead-in
    suffix: str  # after the query, up to where the label starts
    label_lead: str  # whitespace the template puts before the label word
    chat: bool


def verbalizer_words(names: list, verbalizers: dict | None) -> list[str]:
    """The word(s) naming each label: ``verbalizers[label]`` or the label itself."""
    verbalizers = verbalizers or {}
    missing = [n for n in verbalizers if n not in names and str(n) not in map(str, names)]
    if missing:
        raise ValueError(f"verbalizers name labels the data does not have: {missing}; labels are {names}")
    by_str = {str(k): v for k, v in verbalizers.items()}
    words = [by_str.get(str(n), str(n)) for n in names]
    if len(set(words)) != len(words):
        raise ValueError(f"two labels share a verbalizer: {dict(zip(map(str, names), words))}")
    return words


def pick_demonstrations(targets: np.ndarray, shots: int, seed: int) -> list[int]:
    """``shots`` training rows per class, drawn with ``seed``, interleaved by class (no label runs)."""
    rng = np.random.default_rng(seed)
    per_class = []
    for c in np.unique(targets):
        rows = np.flatnonzero(targets == c)
        per_class.append(rng.permutation(rows)[: min(shots, len(rows))].tolist())
    order = [rows[i] for i in range(max(map(len, per_class), default=0)) for rows in per_class if i < len(rows)]
    return order


def build_prompt(tokenizer, config, demos: list[tuple[str, str]], words: list[str], use_chat: bool) -> Prompt:
    template = config.icl_template.rstrip()
    lead_in, after = template.split("{text}")
    before_label = after[: after.rindex("{label}")]
    stripped = before_label.rstrip(" ")
    label_lead = before_label[len(stripped) :]
    instruction = config.icl_instruction or f"Classify each text as one of: {', '.join(words)}."
    if use_chat:
        if not tokenizer.chat_template:
            raise ValueError("chat_template='on' but this tokenizer has no chat template")
        messages = [{"role": "system", "content": instruction}]
        for text, word in demos:
            messages += [{"role": "user", "content": lead_in + text}, {"role": "assistant", "content": word}]
        messages.append({"role": "user", "content": lead_in + SENTINEL})
        full = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prefix, suffix = full.split(SENTINEL)
        return Prompt(prefix, suffix, "", True)
    sep = config.icl_separator
    shown = [lead_in + text + before_label + word + after[after.rindex("{label}") + 7 :] for text, word in demos]
    prefix = sep.join([instruction, *shown]) + sep + lead_in
    return Prompt(prefix, stripped, label_lead, False)


class ICLScorer:
    """Label log-probabilities from a causal LM for a fixed prompt; ``scores`` returns (N, C) float32."""

    def __init__(self, lm, tokenizer, prompt: Prompt, words: list[str], dtype: torch.dtype, batch_size: int = 8):
        self.lm, self.tokenizer, self.prompt, self.dtype, self.batch_size = lm, tokenizer, prompt, dtype, batch_size
        self.label_ids = [tokenizer(prompt.label_lead + w, add_special_tokens=False)["input_ids"] for w in words]
        if any(not ids for ids in self.label_ids):
            raise ValueError(f"a verbalizer tokenizes to nothing: {words}")
        self.prefix_ids = tokenizer(prompt.prefix, add_special_tokens=not prompt.chat)["input_ids"]
        self._prefix_cache = None
        self._head_weight: torch.Tensor | None = None

    def _cache(self, device):
        if self._prefix_cache is None:
            from transformers import DynamicCache

            cache = DynamicCache(config=self.lm.config)
            ids = torch.tensor([self.prefix_ids], device=device)
            with torch.inference_mode(), _autocast(device, self.dtype):
                self.lm.base_model(input_ids=ids, use_cache=True, **_cache_kwarg(self.lm.base_model, cache))
            self._prefix_cache = cache
        return self._prefix_cache

    @torch.inference_mode()
    def scores(self, texts: list[str], progress: bool = True) -> torch.Tensor:
        device = next(self.lm.parameters()).device
        queries = [self.tokenizer(t + self.prompt.suffix, add_special_tokens=False)["input_ids"] for t in texts]
        if any(not q for q in queries):
            raise ValueError("an empty query with an empty template suffix leaves nothing to score")
        single = all(len(ids) == 1 for ids in self.label_ids)
        out = torch.zeros(len(texts), len(self.label_ids))
        order = np.argsort([-len(q) for q in queries], kind="stable")
        bar = progress_bar(progress, total=len(texts), desc="icl", unit="ex", leave=False)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size].tolist()
            if single:  # every label is one token: one pass gives all of them
                first = [ids[0] for ids in self.label_ids]
                logp = self._run([queries[i] for i in batch], 0, device)[:, 0]  # (B, V): the next token
                out[batch] = logp[:, first]
            else:
                for c, ids in enumerate(self.label_ids):
                    logp = self._run([queries[i] + ids for i in batch], len(ids), device)  # (B, m, V)
                    target = torch.tensor(ids).expand(len(batch), -1)
                    out[batch, c] = logp.gather(-1, target[..., None])[..., 0].sum(-1)
            bar.update(len(batch))
            budget.check("in-context scoring")
        bar.close()
        return out

    def _run(self, rows: list[list[int]], n_label: int, device) -> torch.Tensor:
        """Log-probabilities predicting each row's last ``n_label`` tokens (B, n_label, V), or, with
        ``n_label=0``, the token after the row (B, 1, V).

        Rows are right-padded, so every row's tokens follow the cached prefix without a gap (a gap of pads
        would eat into a sliding attention window) and the pads, coming last, are never attended to."""
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1
        n_prefix = len(self.prefix_ids)
        cache = copy.deepcopy(self._cache(device))
        cache.batch_repeat_interleave(len(rows))
        full_mask = torch.cat([torch.ones(len(rows), n_prefix, dtype=torch.long), mask], 1).to(device)
        positions = (n_prefix + torch.arange(width)).expand(len(rows), -1).to(device)
        with _autocast(device, self.dtype):
            hidden = self.lm.base_model(
                input_ids=ids.to(device),
                attention_mask=full_mask,
                position_ids=positions,
                use_cache=True,
                **_cache_kwarg(self.lm.base_model, cache),
            ).last_hidden_state
        # the states that predict the label tokens (or the next token): positions len-1-n_label .. len-2 (or len-1)
        lengths = torch.tensor([len(r) for r in rows])
        offsets = torch.arange(max(n_label, 1)) - (n_label if n_label else 0)
        index = (lengths[:, None] - 1 + offsets[None, :]).to(device)  # (B, m)
        picked = hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))
        return self._lm_logits(picked.float()).log_softmax(-1).cpu()

    def _lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The LM head in float32: bf16 logits are rounded to steps of 0.125-0.25, coarser than the
        differences between label scores."""
        if self._head_weight is None:
            self._head_weight = self.lm.get_output_embeddings().weight.detach().float()
        logits = hidden @ self._head_weight.T
        config = self.lm.config.get_text_config() if hasattr(self.lm.config, "get_text_config") else self.lm.config
        cap = getattr(config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    def content_free_bias(self) -> torch.Tensor:
        """log p_cf(label): the prompt's label distribution on content-free inputs, averaged."""
        probs = self.scores(list(CONTENT_FREE), progress=False).log_softmax(-1).exp()
        return probs.mean(0).log()


def _cache_kwarg(model, cache) -> dict:
    """transformers renamed ``past_key_values`` to ``cache`` (5.2x); pass it under the name this version takes."""
    import inspect

    return {"cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values": cache}


def _autocast(device, dtype):
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)


class ICLHead(torch.nn.Module):
    """What an ICL classifier learns from data: the calibration vector (the demonstrations are in the
    manifest). Saved as safetensors like any head."""

    def __init__(self, num_labels: int):
        super().__init__()
        self.register_buffer("log_cf", torch.zeros(num_labels))

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return (scores - self.log_cf).log_softmax(-1)
