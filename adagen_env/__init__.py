"""adagen-env: Gymnasium environments over the step schedules of frozen image generators (AdaGen).

Importing the package registers `AdaGen/DiT-v0`, `AdaGen/SiT-v0`, `AdaGen/MaskGIT-v0` and `AdaGen/VAR-v0`.
Paper: "AdaGen: Learning Adaptive Policy for Image Synthesis", arXiv 2603.06993.
"""

from adagen_env.envs.registration import register_envs

__version__ = "0.1.0"

register_envs()

__all__ = ["__version__", "register_envs"]
