"""The library's name tables, in a module that imports nothing: the `adagen` command line offers them as choices.

Importing any module of `adagen_env` runs the package's `__init__` (Gymnasium registration, hence torch through
`adagen_env.envs`), so the command line reads this file without that: `agents.names.library()` executes it on its
own. Keep it that way: constants only, no imports (`tests/house/test_names.py` checks both).

The tables that are only names live here and nowhere else (`ENVIRONMENTS`, `REWARD_MODELS`, `OBSERVATIONS`,
`FEATURE_DTYPE_NAMES`); the modules that use them import them from here. The zoo's names are the keys of a table of
recipes that needs torch (`adagen_env.zoo.ZOO`), so `ZOO_NAMES` and `GENERATORS` repeat them, and a test keeps them
equal to `ZOO` and `adagen_env.zoo.GENERATORS`.
"""

ENVIRONMENTS = {
    "AdaGen/MaskGIT-v0": "adagen_env.envs.maskgit:MaskGIT",
    "AdaGen/VAR-v0": "adagen_env.envs.var:VAR",
    "AdaGen/DiT-v0": "adagen_env.envs.diffusion:DiT",
    "AdaGen/SiT-v0": "adagen_env.envs.flow:SiT",
}
"""Env id -> the prefix of its entry points (`<prefix>Env`, `<prefix>VectorEnv`; `adagen_env.envs.registration`)."""

DEFAULT_REWARD_MODEL = "adversarial-projected"
"""The reward every env and `adagen train` use unless told otherwise."""
REWARD_MODELS = (
    "adversarial",
    "adversarial-ns",
    "adversarial-conv",
    "adversarial-projected",
    "adversarial-projected-tokenizer",
    "adversarial-projected-ensemble",
    "adversarial-projected+classifier",
    "batch-fid",
    "classifier",
)
"""The names `adagen_env.rewards.make_reward_model` builds ("adversarial-projected-tokenizer": the projected
discriminator on the VAR tokenizer's encoder; "adversarial-projected-ensemble": on both it and the classifier; "adversarial-projected+classifier": the fidelity reward
of a blend's fidelity policy, `adagen_env.rewards.FidelityReward`)."""

OBSERVATIONS = ("features", "image", "step-only")
"""What the `features` observation holds: the generator's features, the sampler's raw intermediate image, or
zeros (the policy then sees only the step: a learnable but not adaptive schedule)."""
FEATURE_DTYPE_NAMES = ("float32", "float16")
"""Dtypes of the `features` observation (NumPy names; `adagen_env.envs.base.FEATURE_DTYPES` maps them)."""

ZOO_NAMES = (
    "diffusion",
    "flow",
    "maskgit",
    "var",
    "shapes-classifier",
    "reward-classifier",
    "shapes-factors",
    "shapes-ssl",
)
"""The keys of `adagen_env.zoo.ZOO`, in its order (a test keeps them equal)."""
GENERATORS = ("diffusion", "flow", "maskgit", "var")
"""The zoo models that make images (`adagen_env.zoo.GENERATORS`; a test keeps them equal)."""
