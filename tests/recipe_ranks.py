"""Run by test_accelerate_launch.py under ``accelerate launch`` (or plain python): recipes/train.py's own ``main``,
unchanged, with every rank also writing its final weights, which the recipe itself saves on rank 0 only.

    accelerate launch --config_file ... tests/recipe_ranks.py RANKS_DIR [recipe arguments ...]

Writes RANKS_DIR/weights.rank{r}.safetensors: the whole model's state (backbone, adapters, head and its input
statistics) as it stands when ``fit`` returns on rank r.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "recipes")]

from safetensors.torch import save_file  # noqa: E402

import llmhead  # noqa: E402


def main() -> None:
    ranks_dir, *argv = sys.argv[1:]
    fit = llmhead.Classifier.fit

    def fit_and_write(self, *args, **kwargs):
        result = fit(self, *args, **kwargs)
        # the launcher's rank, not the recipe's idea of it (a head-only fit starts no process group)
        rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("RANK", 0)))
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        Path(ranks_dir).mkdir(parents=True, exist_ok=True)
        save_file(state, Path(ranks_dir) / f"weights.rank{rank}.safetensors")
        return result

    llmhead.Classifier.fit = fit_and_write
    import train  # recipes/train.py

    train.main(argv)


if __name__ == "__main__":
    main()
