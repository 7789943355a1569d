"""Print the regressor's parameter counts for a config, without allocating the weights.

    python -m facelift_jax.model --config configs/default.py
    python -m facelift_jax.model --config configs/paper.py      # FaRL ViT-B/16: encoder ≈ 86M
"""

from __future__ import annotations

import numpy as np
from absl import app
from flax import nnx
from ml_collections import config_flags

from facelift_jax.model import build_model, parameter_counts

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file (configs/*.py)")


def main(argv) -> None:
    del argv
    config = _CONFIG.value
    if config is None:
        raise app.UsageError("--config is required, e.g. --config configs/default.py")
    template = np.zeros((98, 3), np.float32)  # shapes only
    model = nnx.eval_shape(lambda: build_model(config.model, template, rngs=nnx.Rngs(0)))
    counts = parameter_counts(model)
    print(f"encoder {config.model.encoder}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))


if __name__ == "__main__":
    app.run(main)
