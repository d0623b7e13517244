"""Hooks that apply while the fine-tuning loop trains, and are removed when it stops."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def while_training(accelerator, model, cfg):
    """What applies while training only: no peft input casts under autocast, NEFTune noise on the embeddings."""
    with contextlib.ExitStack() as stack:
        if accelerator.mixed_precision != "no":
            # peft casts each adapter's input to the adapter's float32 and autocast casts it straight back: a
            # lossless round trip per adapted projection, forward and backward, that costs ~4% of a step.
            from peft.helpers import disable_input_dtype_casting

            stack.enter_context(disable_input_dtype_casting(model))
        if cfg.neftune_alpha:  # noise on the input embeddings while training (Jain et al. 2023), off in eval
            from transformers.integrations.neftune import neftune_post_forward_hook

            embeddings = accelerator.unwrap_model(model).backbone.get_input_embeddings()
            embeddings.neftune_noise_alpha = cfg.neftune_alpha
            hook = embeddings.register_forward_hook(neftune_post_forward_hook)
            stack.callback(hook.remove)
        yield
