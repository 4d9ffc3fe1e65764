"""The schedule MDP over any paradigm sampler: a native batched VectorEnv and its single-lane view.

Each paradigm module (`adagen_env/envs/{diffusion,flow,maskgit,var}.py`) subclasses these two with its
sampler and defaults; the transition is written once, here, over the `Sampler` interface (docs/design.md 2):

* observation: `features` (C, h, w) of the generator at this step, `step` k (Discrete(H));
* action: raw residuals u, one per controlled knob; knob values = activation(u + prior[k]) then the
  sampler's validity projection, so u = 0 reproduces the baseline schedule bit for bit;
* reward: 0 until the last step, then the reward model's score of each final image.

All lanes run in lock step (fixed horizon), so episodes end together; with next-step autoreset the
call after the last step resets every lane and ignores its actions.

Compute-aware episodes (`stop_knob=True`, DiT / SiT): the action gains a last entry, `stop`. A running lane whose
stop exceeds `STOP_THRESHOLD` at a step 1 .. H-2 takes the sampler's last step there instead (the guided update
straight to the data end, its NFE that step's unconditional pass) and is then frozen: it keeps its state, spends no
more NFE and its actions are ignored (`info["knobs"]` is NaN for it). Lanes stay in lock step: the episode ends for
all at the horizon, or at the step where the last running lane stops. At the end the reward is the reward model's
score minus `nfe_cost` times the NFE the lane spent, `info["episode_nfe"]`; `info["nfe"]` is each lane's NFE of the
step and `info["stopped"]` which lanes have stopped. While no lane has stopped, the step is the usual one, bit for
bit; afterwards only the running lanes run through the network (a batch of another size, so their values may differ
from the usual env's in the last float digits).

Letters: B lanes (num_envs), K knobs of the paradigm, A controlled knobs, H horizon.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
from functools import cached_property
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from adagen_env.errors import CheckpointError, InvalidArgument, InvalidKnobValue, UnknownArgument
from adagen_env.names import FEATURE_DTYPE_NAMES, OBSERVATIONS
from adagen_env.rewards import DEFAULT_REWARD_MODEL, RewardModel, make_reward_model
from adagen_env.samplers.base import Sampler, activate_all, inverse_all, make_generator
from adagen_env.samplers.ode import ODESampler
from adagen_env.samplers.schedules import check_schedule, load_schedule

ACTION_LIMIT = 10.0
"""Raw residuals are clipped to [-10, 10] (in pre-activation units: a wide range)."""
STOP_THRESHOLD = 1.5
"""A lane stops when its `stop` action exceeds this: a policy whose mean starts at 0 then starts by never stopping,
and PPO's initial exploration (std 0.6) stops a lane at a given step with probability 0.6 %."""
FEATURE_DTYPES = {name: getattr(np, name) for name in FEATURE_DTYPE_NAMES}
"""Feature dtype name -> NumPy scalar type."""


class AdaGenVectorEnv(VectorEnv):
    """Batched schedule env over a paradigm sampler; subclasses set the class attributes below.

    Args:
        num_envs: lanes B; one generator forward serves them all.
        generator: a zoo name, a path to a `.safetensors` file with its `.json` config beside it, a local diffusers
            directory (`adagen_env.adapters`: a DiT-XL/2-style pipeline for `AdaGen/DiT-v0`, SD3 for `AdaGen/SiT-v0`,
            aMUSEd for `AdaGen/MaskGIT-v0`; docs/diffusers.md), a
            ready model (a module with the paradigm model's interface, e.g. `DiffusersDiT`; its `sampler_cls`, if it
            has one, is the sampler built around it), or a ready `Sampler` (then `num_steps` and `sampler_kwargs`
            must be left unset).
        num_steps: the paradigm's step count (NFE for DiT/SiT, decoding steps for MaskGIT); the
            paradigm's default when None.
        device: where the generator runs.
        knobs: names of the knobs the policy controls (the rest follow the baseline); all when None.
        base_schedule: the static schedule a zero action runs, (H, K) knob values of every knob (a tensor, nested
            lists, or a schedule file's path, `adagen_env.samplers.schedules.save_schedule`); the paradigm's baseline
            when None. With a tuned one (e.g. `adagen bench`'s CMA-ES row) a policy learns residuals on top of it.
        reward_model: a name of `adagen_env.rewards.REWARD_MODELS` (`DEFAULT_REWARD_MODEL`, the projected discriminator, by default), a `RewardModel`,
            or None for zero rewards.
        feature_pool: average-pool factor on the feature grid (1 keeps it), to keep RL buffers small.
        feature_dtype: "float32" or "float16" for the `features` observation.
        observation: "features" (the generator's, default), "image" (the sampler's raw intermediate image,
            (3, R, R), for the policy-input ablation) or "step-only" (zero features of the usual shape: the policy
            can only learn a per-step schedule, not adapt to the sample).
        return_images: put the final images (B, 3, R, R) float32 in `info["final_images"]` at the last step.
        group_size: G lanes in a row form a group that shares one label and one initial noise, so they differ
            only by their actions (and, in the token paradigms, by their later sampling draws); 1 (default): every
            lane is its own. Pair it with `adagen_env.wrappers.GroupRelativeReward` for a group baseline.
        sampler_kwargs: extra keyword arguments of the paradigm's sampler (e.g. `solver`, `cfg_scale`).
        autoreset_mode: Gymnasium's `AutoresetMode` (or its value): "next_step" (default: the call after the last
            step resets every lane and ignores its actions), "same_step" (the last step already returns the new
            episodes' first observation, the terminal one in `info["final_obs"]`) or "disabled" (call `reset`; a
            `reset_mask` option must select every lane, since lanes run in lock step).
        stop_knob: add the `stop` action of compute-aware episodes (module docstring; DiT and SiT only).
        nfe_cost: with `stop_knob`, the reward's cost per NFE a lane spent (>= 0).
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": ["rgb_array"], "render_fps": 4}
    paradigm: str
    """Zoo paradigm this env drives."""
    sampler_cls: type[Sampler]
    """Sampler class built around a zoo model."""
    default_generator: str
    """Zoo name used when `generator` is not given."""
    default_num_steps: int | None
    """Step count used when `num_steps` is not given (None: the sampler decides)."""
    default_smoothing: float
    """Anchor's EMA beta for this paradigm (docs/design.md 4): the default of the trainers' smoothing wrapper."""

    def __init__(
        self,
        num_envs: int = 1,
        generator: str | Path | Sampler | torch.nn.Module | None = None,
        num_steps: int | None = None,
        device: str | torch.device = "cpu",
        knobs: tuple[str, ...] | list[str] | None = None,
        base_schedule: torch.Tensor | list | str | Path | None = None,
        reward_model: str | RewardModel | None = DEFAULT_REWARD_MODEL,
        feature_pool: int = 1,
        feature_dtype: str = "float32",
        observation: str = "features",
        return_images: bool = False,
        group_size: int = 1,
        sampler_kwargs: dict[str, Any] | None = None,
        render_mode: str | None = None,
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
        stop_knob: bool = False,
        nfe_cost: float = 0.0,
        **unknown: Any,
    ) -> None:
        if unknown:
            names = ", ".join(repr(name) for name in sorted(unknown))
            plural = (
                f"unexpected keyword arguments {names}"
                if len(unknown) > 1
                else f"an unexpected keyword argument {names}"
            )
            raise UnknownArgument(  # worded as Python's own TypeError, which wrappers such as TorchRL's GymEnv parse
                f"{type(self).__name__}.__init__() got {plural} (unknown arguments of this env); valid: "
                "num_envs, generator, num_steps, device, knobs, base_schedule, reward_model, feature_pool, feature_dtype, "
                "observation, return_images, group_size, sampler_kwargs, render_mode, autoreset_mode, stop_knob, nfe_cost"
            )
        if not isinstance(num_envs, int) or num_envs < 1:
            raise InvalidArgument(f"num_envs must be an int >= 1, got {num_envs!r}")
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1 or num_envs % group_size:
            raise InvalidArgument(
                f"group_size must be an int >= 1 that divides num_envs ({num_envs}), got {group_size!r}"
            )
        if not isinstance(feature_pool, int) or feature_pool < 1:
            raise InvalidArgument(f"feature_pool must be an int >= 1, got {feature_pool!r}")
        if feature_dtype not in FEATURE_DTYPES:
            raise InvalidArgument(f"feature_dtype must be one of {sorted(FEATURE_DTYPES)}, got {feature_dtype!r}")
        if observation not in OBSERVATIONS:
            raise InvalidArgument(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
        if not isinstance(stop_knob, bool):
            raise InvalidArgument(f"stop_knob must be True or False, got {stop_knob!r}")
        if (
            isinstance(nfe_cost, bool)
            or not isinstance(nfe_cost, numbers.Real)
            or not (math.isfinite(nfe_cost) and nfe_cost >= 0)
        ):
            raise InvalidArgument(f"nfe_cost must be a finite number >= 0, got {nfe_cost!r}")
        if nfe_cost and not stop_knob:
            raise InvalidArgument("nfe_cost needs stop_knob=True: without a stop every lane spends the same NFE")
        if render_mode not in (None, "rgb_array"):
            raise InvalidArgument(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        modes = {m.value.lower(): m for m in AutoresetMode}  # "NextStep", "next_step" and NEXT_STEP all name one
        key = autoreset_mode.value if isinstance(autoreset_mode, AutoresetMode) else str(autoreset_mode)
        if key.lower().replace("_", "") not in modes:
            raise InvalidArgument(
                f"autoreset_mode must be one of {[m.value for m in AutoresetMode]} (or "
                f"'next_step', 'same_step', 'disabled'), got {autoreset_mode!r}"
            )
        self.autoreset_mode = modes[key.lower().replace("_", "")]
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        if isinstance(knobs, str):
            raise InvalidArgument(f"knobs must be a list of knob names, got the string {knobs!r}; use [{knobs!r}]")
        self.num_envs, self.group_size = num_envs, group_size
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise InvalidArgument(f"device {str(device)!r} requested but CUDA is not available; use device='cpu'")
        self.sampler = self._build_sampler(generator, num_steps, sampler_kwargs or {})
        self.horizon = self.sampler.horizon
        if stop_knob and not isinstance(self.sampler, ODESampler):
            raise InvalidArgument(
                f"stop_knob is offered for the ODE paradigms (DiT, SiT), whose last step can follow "
                f"any step; not for {self.paradigm}"
            )
        self.stop_knob, self.nfe_cost = stop_knob, float(nfe_cost)
        self.feature_pool, self.feature_dtype = feature_pool, FEATURE_DTYPES[feature_dtype]
        self.observation = observation
        self.return_images, self.render_mode = return_images, render_mode

        # Knobs: which of the paradigm's knobs the action controls.
        names = self.sampler.knob_names
        chosen = tuple(names) if knobs is None else tuple(knobs)
        for name in chosen:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise InvalidArgument(f"knob {name!r} is not a knob of {self.paradigm}; valid: {list(names)}.{hint}")
        if not chosen or len(set(chosen)) != len(chosen):
            raise InvalidArgument(f"knobs must name at least one knob, each once; got {list(chosen)}")
        self.controlled = chosen
        self.controlled_index = torch.tensor([names.index(n) for n in chosen], device=self.device)
        if isinstance(base_schedule, str | Path):
            base_schedule = load_schedule(base_schedule, self.sampler)
        elif base_schedule is not None:
            base_schedule = check_schedule(self.sampler, base_schedule, what="base_schedule")
        self.base_schedule: torch.Tensor | None = base_schedule
        """(H, K) CPU knob values a zero action runs; None: the paradigm's baseline."""
        specs = self.sampler.knob_specs
        self.prior = (self.sampler.prior() if base_schedule is None else inverse_all(specs, base_schedule)).to(
            self.device
        )

        # Reward model.
        resolution = self.sampler.image_shape[-1]
        if isinstance(reward_model, str):
            reward_model = make_reward_model(reward_model, self.sampler.num_classes, resolution, self.device)
        elif reward_model is not None and not isinstance(reward_model, RewardModel):
            raise InvalidArgument(
                f"reward_model must be a name, a RewardModel or None, got {type(reward_model).__name__}"
            )
        self.reward_model = reward_model

        # Spaces.
        c, h, w = self.sampler.image_shape if observation == "image" else self.sampler.feature_shape
        pooled = (c, h // feature_pool, w // feature_pool)
        if min(pooled[1:]) < 1:
            raise InvalidArgument(f"feature_pool {feature_pool} is larger than the feature grid {h}x{w}")
        self.single_observation_space = spaces.Dict(
            {
                "features": spaces.Box(-np.inf, np.inf, pooled, dtype=self.feature_dtype),
                "step": spaces.Discrete(self.horizon),
            }
        )
        self.single_action_space = spaces.Box(-ACTION_LIMIT, ACTION_LIMIT, (len(chosen) + stop_knob,), dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

        self._state = None
        self._needs_reset = False
        self._generator: torch.Generator | None = None
        self._episode_rng: dict[str, Any] | None = None
        self._last_images: torch.Tensor | None = None
        self._running = torch.ones(num_envs, dtype=torch.bool, device=self.device)
        """(B,) lanes that have not stopped (compute-aware episodes)."""
        self._spent = np.zeros(num_envs, dtype=np.int64)
        """(B,) NFE each lane spent in the current episodes."""

    # -- construction helpers -----------------------------------------------------------------
    def _build_sampler(
        self, generator: str | Path | Sampler | torch.nn.Module | None, num_steps: int | None, sampler_kwargs: dict
    ) -> Sampler:
        if isinstance(generator, Sampler):
            if num_steps is not None or sampler_kwargs:
                raise InvalidArgument("num_steps and sampler_kwargs must be unset when generator is a ready Sampler")
            return generator
        if num_steps is not None:
            if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or num_steps < 1:
                raise InvalidArgument(f"num_steps must be an int >= 1, got {num_steps!r}")
            num_steps = int(num_steps)
        if isinstance(generator, torch.nn.Module):
            model = generator.to(self.device).eval().requires_grad_(False)
        else:
            model = self._load_model(self.default_generator if generator is None else generator)
        paradigm = getattr(model, "paradigm", self.paradigm)
        if paradigm != self.paradigm:
            raise InvalidArgument(
                f"generator {type(model).__name__} is a {paradigm!r} model; this env needs {self.paradigm!r}"
            )
        sampler_cls = getattr(model, "sampler_cls", self.sampler_cls)
        if num_steps is not None and self.default_num_steps is None:  # the model fixes the step count (VAR's scales)
            scales = len(model.scales)
            if num_steps != scales:
                raise InvalidArgument(
                    f"{self.paradigm} takes one step per scale of its tokenizer ({scales}); "
                    f"num_steps cannot be set to another count (got {num_steps})"
                )
            num_steps = None
        steps = self.default_num_steps if num_steps is None else num_steps
        kwargs = dict(sampler_kwargs)
        if steps is not None:
            kwargs["num_steps"] = steps
        try:
            return sampler_cls(model, device=self.device, **kwargs)
        except TypeError as exc:
            raise InvalidArgument(
                f"bad sampler_kwargs {sorted(sampler_kwargs)} for {sampler_cls.__name__}: {exc}"
            ) from exc

    def _load_model(self, generator: str) -> torch.nn.Module:
        from adagen_env import zoo

        if not isinstance(generator, str | Path):
            raise InvalidArgument(
                f"generator must be a zoo name, a .safetensors path, a diffusers directory, a model "
                f"or a Sampler, got {type(generator).__name__}"
            )
        path = Path(generator)
        if path.suffix == ".safetensors":
            meta = path.with_suffix(".json")
            if not path.exists() or not meta.exists():
                raise CheckpointError(f"checkpoint {str(path)!r} or its config {str(meta)!r} does not exist")
            info = json.loads(meta.read_text())
            if info.get("paradigm") != self.paradigm:
                raise CheckpointError(
                    f"checkpoint {str(path)!r} is a {info.get('paradigm')!r} model, this env needs {self.paradigm!r}"
                )
            recipe = next(e for e in zoo.ZOO.values() if e.paradigm == self.paradigm)
            model = recipe.model_cls(type(recipe.config)(**info["config"]))
            zoo.load_state(model, path)
            return model.eval().requires_grad_(False)
        names = [n for n, e in zoo.ZOO.items() if e.paradigm == self.paradigm]
        if generator not in names and path.is_dir():  # a zoo name wins over a folder of that name
            from adagen_env.adapters import load_pretrained

            return load_pretrained(path, paradigm=self.paradigm, device=self.device)
        if generator not in names:
            close = difflib.get_close_matches(str(generator), names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise InvalidArgument(
                f"unknown {self.paradigm} generator {generator!r}; zoo models: {names}, a .safetensors "
                f"path or a diffusers directory.{hint}"
            )
        return zoo.load(generator, device=self.device)

    @cached_property
    def generator_digest(self) -> str:
        """`zoo.weights_digest` of the frozen generator (computed on first use): policies record it at training."""
        from adagen_env.zoo import weights_digest

        return weights_digest(self.sampler.model)

    # -- gymnasium API ---------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        """Start every lane. `options={"labels": (B,) ints}` fixes the classes (equal within each group of
        `group_size` lanes); random otherwise. A `reset_mask` option (Gymnasium's, for `autoreset_mode="disabled"`)
        must select every lane."""
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is not None and not np.asarray(mask, dtype=bool).all():
            raise InvalidArgument(
                "reset_mask must select every lane: the lanes of this env run in lock step and "
                "end together, so they reset together"
            )
        if seed is not None and not 0 <= seed < 2**63:  # before Gymnasium seeds np_random with it
            raise InvalidArgument(f"seed must be an int in [0, 2**63), got {seed}")
        super().reset(seed=seed)
        if seed is not None or self._generator is None:
            if seed is None:
                seed = int(self.np_random.integers(2**31))
            self._generator = make_generator(seed, self.device if self.device.type == "cuda" else "cpu")
        self._episode_rng = self._streams()  # what `get_rng_state` returns until the next reset
        labels = options.get("labels")
        groups = self.num_envs // self.group_size
        if labels is None:
            labels = torch.randint(
                self.sampler.num_classes, (groups,), generator=self._generator, device=self._generator.device
            )
        else:
            given = np.asarray(labels)
            if given.dtype.kind not in "iu" and not (given.dtype.kind == "f" and np.all(given == np.round(given))):
                raise InvalidArgument(f"options['labels'] must be integer class ids, got {given.tolist()[:8]}")
            labels = torch.as_tensor(given.astype(np.int64)).reshape(-1)
            if labels.shape != (self.num_envs,):
                raise InvalidArgument(
                    f"options['labels'] must have {self.num_envs} entries, got shape {tuple(labels.shape)}"
                )
            grouped = labels.reshape(groups, self.group_size)
            if not bool((grouped == grouped[:, :1]).all()):
                raise InvalidArgument(
                    f"options['labels'] must be equal within each group of {self.group_size} lanes "
                    f"(group_size), got {labels.tolist()[:16]}"
                )
            labels = grouped[:, 0]
        # One start per group (its label and noise), repeated to the group's lanes.
        self._state = self.sampler.reset(labels.to(self.device), self._generator)
        if self.group_size > 1:
            self._state = self.sampler.repeat_lanes(self._state, self.group_size)
        self._needs_reset = False
        self._running = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._spent = np.zeros(self.num_envs, dtype=np.int64)
        return self._observe(), {}

    def step(self, actions: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, dict]:
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self._needs_reset:
            if self.autoreset_mode == AutoresetMode.DISABLED:
                raise gym.error.ResetNeeded("the episodes have ended; call reset() (autoreset_mode is disabled)")
            obs, info = self.reset()  # next-step autoreset: this call's actions are ignored
            zeros = np.zeros(self.num_envs, dtype=bool)
            return obs, np.zeros(self.num_envs, dtype=np.float32), zeros, zeros.copy(), info
        state = self._state
        k = state.step
        stopping = None
        if self.stop_knob:
            actions, stop = self._split_stop(actions)
            stopping = (stop > STOP_THRESHOLD) & self._running & (0 < k < self.horizon - 1)  # (B,)
        knobs = self.knob_values(actions)
        if stopping is not None and (bool(stopping.any()) or not bool(self._running.all())):
            applied, nfe = self._step_running(knobs, stopping)
        else:
            applied = self.sampler.project(state, knobs)
            self._state = self.sampler.step(state, applied)
            nfe = np.full(self.num_envs, self.sampler.step_nfe(k), dtype=np.int64)
        self._spent += nfe
        infos: dict[str, Any] = {"knobs": applied.cpu().numpy(), "nfe": nfe}
        if self.stop_knob:
            infos["stopped"] = (~self._running).cpu().numpy()
        rewards = np.zeros(self.num_envs, dtype=np.float32)
        terminal = k == self.horizon - 1 or not bool(self._running.any())
        if terminal:
            if self._state.step != self.horizon:  # the last running lane stopped: every lane is at the data end
                self._state = dataclasses.replace(self._state, step=self.horizon)
            images = self.sampler.decode(self._state)
            finite = torch.isfinite(images).flatten(1).all(dim=1)
            if not bool(finite.all()):
                raise InvalidKnobValue(
                    f"step {k}: the generator made NaN or infinite images in lanes "
                    f"{(~finite).nonzero().flatten().tolist()[:8]} (check its weights)"
                )
            self._last_images = images
            if self.reward_model is not None:
                labels = self._state.labels
                rewards = self.reward_model.score(images, labels).cpu().numpy().astype(np.float32)
                if not np.isfinite(rewards).all():
                    raise InvalidKnobValue(
                        f"step {k}: the reward model gave NaN or infinite rewards in lanes "
                        f"{np.flatnonzero(~np.isfinite(rewards))[:8].tolist()}"
                    )
                for key, value in self.reward_model.update(images, labels).items():
                    infos[key] = np.full(self.num_envs, value, dtype=np.float32)
            if self.nfe_cost:
                rewards = rewards - np.float32(self.nfe_cost) * self._spent.astype(np.float32)
            if self.return_images:
                infos["final_images"] = images.float().cpu().numpy()
            if self.stop_knob:
                infos["episode_nfe"] = self._spent.copy()
            self._needs_reset = True
        infos.update({f"_{key}": np.ones(self.num_envs, dtype=bool) for key in list(infos)})
        terminations = np.full(self.num_envs, terminal, dtype=bool)
        obs = self._observe()
        if terminal and self.autoreset_mode == AutoresetMode.SAME_STEP:  # Gymnasium's layout of the terminal step
            final_obs = np.empty(self.num_envs, dtype=object)
            final_obs[:] = [{key: value[i] for key, value in obs.items()} for i in range(self.num_envs)]
            obs, reset_info = self.reset()
            every = np.ones(self.num_envs, dtype=bool)
            infos = {
                **reset_info,
                "final_obs": final_obs,
                "_final_obs": every,
                "final_info": infos,
                "_final_info": every,
            }
        return obs, rewards, terminations, np.zeros(self.num_envs, dtype=bool), infos

    def _split_stop(self, actions: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, A + 1) actions -> (B, A) knob residuals and the (B,) stop entries (on the env's device)."""
        u = torch.as_tensor(np.asarray(actions, dtype=np.float32) if not torch.is_tensor(actions) else actions)
        u = u.to(self.device, torch.float32)
        expected = (self.num_envs, len(self.controlled) + 1)
        if tuple(u.shape) != expected:
            raise InvalidKnobValue(
                f"actions must have shape {expected} (lanes, knobs {list(self.controlled)} and "
                f"'stop'), got {tuple(u.shape)}"
            )
        bad = ~torch.isfinite(u[:, -1])
        if bool(bad.any()):
            lane = int(bad.nonzero()[0])
            raise InvalidKnobValue(
                f"action is not finite in lane {lane}, knob 'stop' (index {expected[1] - 1}): got "
                f"{float(u[lane, -1])}; actions must be finite"
            )
        return u[:, :-1], u[:, -1]

    def _step_running(self, knobs: torch.Tensor, stopping: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """One step of the running lanes only: the (B,) `stopping` ones take the sampler's last step now, the others
        this step; stopped lanes keep their state. Returns the (B, K) applied knobs (NaN for lanes stopped before)
        and the (B,) NFE of the step."""
        state, k = self._state, self._state.step
        applied = torch.full_like(knobs, float("nan"))
        nfe = np.zeros(self.num_envs, dtype=np.int64)
        new = dataclasses.replace(state, step=k + 1)
        for lanes, at in ((self._running & ~stopping, k), (stopping, self.horizon - 1)):
            index = lanes.nonzero().flatten()
            if index.numel() == 0:
                continue
            part = dataclasses.replace(self.sampler.select_lanes(state, index), step=at)
            applied[index] = self.sampler.project(part, knobs[index])
            new = _write_lanes(new, index, self.sampler.step(part, applied[index]), self.num_envs)
            nfe[index.cpu().numpy()] = self.sampler.step_nfe(at)
        self._running = self._running & ~stopping
        self._state = new
        return applied, nfe

    def knob_values(self, actions: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(B, A) raw residuals -> (B, K) knob values of the current step (before projection)."""
        u = torch.as_tensor(np.asarray(actions, dtype=np.float32) if not torch.is_tensor(actions) else actions)
        u = u.to(self.device, torch.float32)
        expected = (self.num_envs, len(self.controlled))
        if tuple(u.shape) != expected:
            raise InvalidKnobValue(
                f"actions must have shape {expected} (lanes, knobs {list(self.controlled)}), got {tuple(u.shape)}"
            )
        bad = ~torch.isfinite(u)
        if bool(bad.any()):
            lane, a = (int(i) for i in bad.nonzero()[0])
            raise InvalidKnobValue(
                f"action is not finite in lane {lane}, knob {self.controlled[a]!r} (index {a}): got {float(u[lane, a])}; "
                f"actions must be finite. Got shape {tuple(u.shape)}, expected {expected}."
            )
        z = self.prior[self._state.step].expand(self.num_envs, -1).clone()  # (B, K)
        z[:, self.controlled_index] += u.clamp(-ACTION_LIMIT, ACTION_LIMIT)
        return activate_all(self.sampler.knob_specs, z)

    def _observe(self) -> dict[str, np.ndarray]:
        state = self._state
        if self.observation == "image":
            feats = self.sampler.intermediate(state)  # (B, 3, R, R)
        elif self.observation == "step-only":
            feats = torch.zeros(self.num_envs, *self.sampler.feature_shape, device=self.device)
        else:
            feats = self.sampler.features(state)  # (B, C, h, w)
        if self.feature_pool > 1:
            feats = F.avg_pool2d(feats, self.feature_pool)
        step = min(state.step, self.horizon - 1)
        return {
            "features": feats.cpu().numpy().astype(self.feature_dtype, copy=True),  # every step owns its arrays
            "step": np.full(self.num_envs, step, dtype=np.int64),
        }

    def render(self) -> tuple[np.ndarray, ...] | None:
        """The current frame of every lane as (R, R, 3) uint8 arrays: the finished images after an episode's last
        step, the paradigm's intermediate image (`Sampler.intermediate`) while it runs; None before `reset`."""
        if self.render_mode != "rgb_array" or self._state is None:
            return None
        images = self._last_images if self._needs_reset else self.sampler.intermediate(self._state)
        frames = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return tuple(frames)

    def _streams(self) -> dict[str, Any]:
        return {
            "generator": None if self._generator is None else self._generator.get_state(),
            "np_random": self.np_random.bit_generator.state,
        }

    def get_rng_state(self) -> dict[str, Any]:
        """The env's random streams (episode generator and `np_random`) as they were when the current episodes were
        reset (the current ones before any reset), to checkpoint a run: after `set_rng_state`, an unseeded `reset()`
        with the same options starts those same episodes again, so a run resumed at an update boundary (every lane
        at its first step) continues exactly as if it had never stopped."""
        return self._episode_rng if self._episode_rng is not None else self._streams()

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Restore what `get_rng_state` returned; the next unseeded `reset()` draws from those streams."""
        self._episode_rng = state
        self.np_random.bit_generator.state = state["np_random"]
        if state["generator"] is not None:
            self._generator = make_generator(0, self.device if self.device.type == "cuda" else "cpu")
            self._generator.set_state(state["generator"])

    def select_lanes(self, index: np.ndarray | torch.Tensor) -> None:
        """Lane i continues from the current state of lane `index[i]`, for (B,) lane indices (value lookahead: each
        lane of a candidate set takes the chosen candidate's state, noise stream included); between steps only.

        Raises:
            InvalidArgument: not B indices in [0, B), or the episodes have not started or have ended.
        """
        if self._state is None or self._needs_reset:
            raise InvalidArgument("select_lanes needs running episodes: call it after reset() or a non-final step()")
        index = torch.as_tensor(np.asarray(index)).reshape(-1)
        if (
            index.dtype.is_floating_point
            or index.shape != (self.num_envs,)
            or not bool(((index >= 0) & (index < self.num_envs)).all())
        ):
            raise InvalidArgument(
                f"select_lanes needs {self.num_envs} integer lane indices in [0, {self.num_envs}), "
                f"got {index.tolist()[:16]}"
            )
        self._state = self.sampler.select_lanes(self._state, index.long().to(self.device))
        self._running, self._spent = self._running[index.long().to(self.device)], self._spent[index.long().numpy()]

    @property
    def labels(self) -> np.ndarray:
        """(B,) class ids of the current episodes."""
        return self._state.labels.cpu().numpy()


class AdaGenEnv(gym.Env):
    """One lane of an `AdaGenVectorEnv` (for `gym.make` and `check_env`); same arguments but `num_envs`.

    The transition is the vector env's; this view only drops and adds the batch axis.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    vector_cls: type[AdaGenVectorEnv]

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        if "num_envs" in kwargs:
            raise InvalidArgument(
                "num_envs is not an argument of the single-lane env; use gym.make_vec(id, num_envs=N)"
            )
        self.vector_env = self.vector_cls(num_envs=1, render_mode=render_mode, **kwargs)
        reward_model = self.vector_env.reward_model
        built_here = not isinstance(kwargs.get("reward_model"), RewardModel)  # a given one may be shared on purpose
        if built_here and reward_model is not None and reward_model.online:
            gym.logger.warn(
                "this single-lane env trains its own online discriminator on batches of one image; to train, use "
                "the native batched env (gym.make_vec(id, num_envs=N): one discriminator for every lane), or build one "
                "RewardModel and pass it as reward_model= so that the envs of a sync vector env share it"
            )
        self.render_mode = render_mode
        self.observation_space = self.vector_env.single_observation_space
        self.action_space = self.vector_env.single_action_space

    @property
    def sampler(self) -> Sampler:
        return self.vector_env.sampler

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        if seed is None and self.vector_env._generator is None:
            seed = int(self.np_random.integers(2**31))
        if options and "label" in options:
            options = {**options, "labels": [options["label"]]}
        obs, info = self.vector_env.reset(seed=seed, options=options)
        return _unbatch(obs), info

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        obs, rewards, terms, truncs, infos = self.vector_env.step(np.asarray(action, dtype=np.float32)[None])
        info = {key: value[0] for key, value in infos.items() if not key.startswith("_")}
        return _unbatch(obs), float(rewards[0]), bool(terms[0]), bool(truncs[0]), info

    def render(self) -> np.ndarray | None:
        frames = self.vector_env.render()
        return None if frames is None else frames[0]


def _write_lanes(state: Any, index: torch.Tensor, part: Any, lanes: int) -> Any:
    """`state` (a sampler state of B = `lanes` lanes) with lanes (n,) `index` replaced by the n lanes of `part` in
    every tensor field; a field `state` does not hold yet (None) is zeros in its other lanes."""
    fields = {}
    for field in dataclasses.fields(part):
        value = getattr(part, field.name)
        if torch.is_tensor(value):
            old = getattr(state, field.name)
            old = value.new_zeros((lanes, *value.shape[1:])) if old is None else old
            fields[field.name] = old.index_copy(0, index, value)
    return dataclasses.replace(state, **fields)


def _unbatch(obs: dict[str, np.ndarray]) -> dict[str, Any]:
    return {"features": obs["features"][0], "step": int(obs["step"][0])}
