"""Measuring (docs/design.md 1): runs the samplers on fixed labels and seeds and scores the images with the metrics.

`static` is the one batched, seeded runner of static schedules (zoo eval, `adagen eval`'s and `adagen bench`'s
static rows); `grids` holds each paradigm's benchmark grid and `zoo_eval` the benchmark of the zoo's generators
(`adagen zoo eval`).
"""

from adagen_env.evaluation.static import SEEDINGS, Generation, batch_seed, generate_static

__all__ = ["SEEDINGS", "Generation", "batch_seed", "generate_static"]
