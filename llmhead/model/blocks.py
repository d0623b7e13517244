"""Which blocks of a backbone run and which of their outputs feed the head: plain arithmetic on the layer options,
with no torch, so that ``llmhead info`` can say it without loading anything."""

from __future__ import annotations


def block_plan(total: int, layer: int | float | None, layers: list[int] | None) -> tuple[int, list[int] | None]:
    """How many blocks to keep, and which ``hidden_states`` to pool (None: the final output).

    Blocks are numbered from 1 (``hidden_states[k]`` is the output of block k, ``hidden_states[0]`` the
    embeddings); negative numbers count from the top, -1 being the last of ``total`` blocks. A float ``layer`` in
    (0, 1) is a fraction of the depth, rounded half up: 0.75 of 30 blocks is block 23, of 18 blocks block 14.
    """

    def absolute(i: int, lowest: int) -> int:
        j = total + 1 + i if i < 0 else i
        if not lowest <= j <= total:
            raise ValueError(
                f"layer {i} is out of range: this model has {total} blocks (valid: {lowest}..{total} or -{total}..-1)"
            )
        return j

    if isinstance(layer, float):
        if not 0 < layer < 1:
            raise ValueError(f"a fractional layer is a share of the depth in (0, 1), got {layer!r}")
        return min(total, max(1, int(layer * total + 0.5))), None
    if layer is not None:
        return absolute(layer, 1), None
    if layers is not None:
        indices = [absolute(i, 0) for i in layers]
        return max(1, *indices), indices
    return total, None


def check_distinct(total: int, layers: list[int] | None) -> None:
    """A new fit's ``layers`` name each block once on a ``total``-block model: [2, -1] of 2 blocks would feed the
    head the same features twice. (Checked when training, not when loading: a model saved so still loads.)"""
    if layers is None:
        return
    indices = block_plan(total, None, layers)[1]
    twice = sorted({j for j in indices if indices.count(j) > 1})
    if twice:
        raise ValueError(
            f"layers {layers} name block{'s' if len(twice) > 1 else ''} {', '.join(map(str, twice))} more than once "
            f"on this {total}-block model (negative numbers count from the top): name each block once"
        )


def frozen_blocks(total: int, freeze_blocks: int | float) -> int:
    """How many of ``total`` blocks (from the bottom, with the embeddings) stay frozen: an int is a count, a float in
    [0, 1) a share of the depth, rounded down so that at least the rest trains: 0.5 of SmolLM2's 30 blocks is 15, of
    Gemma-3's 18 is 9, of 3 blocks 1, of a 1-block model none."""
    if isinstance(freeze_blocks, float):
        if not 0 <= freeze_blocks < 1:
            raise ValueError(f"a fractional freeze_blocks is a share of the depth in [0, 1), got {freeze_blocks!r}")
        return int(freeze_blocks * total)
    return freeze_blocks


def describe_training(total: int, freeze_blocks: int | float, mode: str) -> str:
    """Which blocks fine-tuning trains: "blocks 16-30 of 30 (the embeddings and blocks 1-15 frozen)" (full),
    "adapters on blocks 1-30 of 30" (LoRA)."""
    frozen = frozen_blocks(total, freeze_blocks)
    span = f"block {total} of {total}" if frozen == total - 1 else f"blocks {frozen + 1}-{total} of {total}"
    if mode != "full":
        return f"adapters on {span}"
    if frozen == 0:
        return f"{span} and the embeddings"
    trained = span if frozen < total else "no block (the final norm only)"
    return f"{trained} (the embeddings and block{'s 1-' if frozen > 1 else ' '}{frozen} frozen)"


def describe_blocks(total: int, layer: int | float | None, layers: list[int] | None) -> str:
    """What the head reads, in blocks of the base model: "block 23 of 30", "block 30 of 30 (the final output)",
    "blocks 0, 10, 30 of 30 (0: the embeddings)"."""
    keep, indices = block_plan(total, layer, layers)
    if indices is None:
        indices = [keep]
    said = ", ".join(str(i) for i in indices)
    notes = [
        note for note, shown in (("0: the embeddings", 0 in indices), ("the final output", total in indices)) if shown
    ]
    if len(indices) > 1 and total in indices:
        notes[-1] = f"{total}: the final output"
    return f"block{'s' if len(indices) > 1 else ''} {said} of {total}" + (f" ({'; '.join(notes)})" if notes else "")
