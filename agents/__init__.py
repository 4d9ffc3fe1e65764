"""The Stable-Baselines3 side of adagen-env (docs/design.md 6): VecEnv adapter, policy network, presets,
callbacks, training and evaluation. `adagen_env` never imports this package; it needs SB3 and sb3-contrib.
"""

from agents.callbacks import Checkpointer, PolicyEvaluation, ProgressBar, StdSchedule, TrainingLogger, knob_figure
from agents.checkpoint import CHECKPOINT, STATE, read_meta
from agents.policies import AdaGenExtractor, AdaGenPolicy, AdaGenRecurrentPolicy, zero_actor_output
from agents.presets import ALGORITHMS, make_model, resolve_hyperparameters, timesteps_per_update
from agents.rollout import Generation, ZeroPolicy, batch_seed, generate
from agents.vec_env import SB3VecEnv

__all__ = [
    "ALGORITHMS",
    "CHECKPOINT",
    "STATE",
    "AdaGenExtractor",
    "AdaGenPolicy",
    "AdaGenRecurrentPolicy",
    "Checkpointer",
    "Generation",
    "PolicyEvaluation",
    "ProgressBar",
    "SB3VecEnv",
    "StdSchedule",
    "TrainingLogger",
    "ZeroPolicy",
    "batch_seed",
    "generate",
    "knob_figure",
    "make_model",
    "read_meta",
    "resolve_hyperparameters",
    "timesteps_per_update",
    "zero_actor_output",
]
