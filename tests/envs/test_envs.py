"""The registered suite: env checkers, native vector envs, the zero-action identity, seeding and errors."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import adagen_env
from adagen_env import zoo
from adagen_env.envs import ENVIRONMENTS, AdaGenEnv, AdaGenVectorEnv, SiTEnv, SiTVectorEnv
from adagen_env.errors import CheckpointError, InvalidArgument, InvalidKnobValue
from adagen_env.samplers import make_generator

ENV_IDS = sorted(ENVIRONMENTS)


def _shipped(env_id: str) -> bool:
    vector_cls = gym.spec(env_id).vector_entry_point
    cls = gym.envs.registration.load_env_creator(vector_cls)
    return zoo.weights_path(cls.default_generator).exists()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_checkers_pass_on_shipped_generator(env_id: str) -> None:
    if not _shipped(env_id):
        pytest.skip(f"{env_id}: shipped weights not present")
    cls = gym.envs.registration.load_env_creator(gym.spec(env_id).vector_entry_point)
    steps = {} if cls.default_num_steps is None else {"num_steps": 3}  # VAR: one step per scale
    env = gym.make(env_id, **steps)
    gym_check_env(env.unwrapped, skip_render_check=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # SB3 advises normalised boxes; ours are residual logits
        sb3_check_env(env.unwrapped)
    envs = gym.make_vec(env_id, num_envs=3, reward_model=None, **steps)
    assert isinstance(envs, AdaGenVectorEnv)
    obs, _ = envs.reset(seed=0)
    assert obs["features"].shape == (3, *envs.single_observation_space["features"].shape)


def test_zero_action_reproduces_baseline_bit_for_bit(tiny_case) -> None:
    env_cls, sampler = tiny_case
    envs = env_cls(num_envs=5, generator=sampler, reward_model=None, return_images=True)
    envs.reset(seed=3, options={"labels": [0, 1, 2, 3, 4]})
    for _ in range(sampler.horizon):
        _, _, terminated, _, info = envs.step(np.zeros((5, len(sampler.knob_specs)), np.float32))
    assert terminated.all()
    expected = sampler.sample(torch.arange(5), make_generator(3))
    assert torch.equal(torch.from_numpy(info["final_images"]), expected)


def test_single_lane_env_passes_checkers(tiny_case) -> None:
    env_cls, sampler = tiny_case
    single = type("Single", (AdaGenEnv,), {"vector_cls": env_cls})(generator=sampler)
    gym_check_env(single, skip_render_check=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sb3_check_env(single)


def _rollout(envs: AdaGenVectorEnv, seed: int, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    obs, _ = envs.reset(seed=seed)
    features = [obs["features"]]
    for k in range(envs.horizon):
        obs, rewards, _, _, info = envs.step(actions[k])
        features.append(obs["features"])
    return np.stack(features), rewards


def test_seeds_reproduce_episodes(tiny_case) -> None:
    env_cls, sampler = tiny_case
    k = len(sampler.knob_specs)
    actions = np.random.default_rng(0).normal(size=(sampler.horizon, 4, k)).astype(np.float32)
    make = lambda: env_cls(num_envs=4, generator=sampler, reward_model="adversarial", return_images=True)  # noqa: E731
    f1, r1 = _rollout(make(), 7, actions)
    f2, r2 = _rollout(make(), 7, actions)
    f3, r3 = _rollout(make(), 8, actions)
    assert np.array_equal(f1, f2) and np.array_equal(r1, r2)
    assert not np.array_equal(r1, r3)


def test_step_info_and_rewards(tiny_case) -> None:
    env_cls, sampler = tiny_case
    envs = env_cls(num_envs=2, generator=sampler, reward_model="adversarial")
    envs.reset(seed=0)
    k_all, nfe = len(sampler.knob_specs), 0
    for k in range(envs.horizon):
        obs, rewards, terminated, truncated, info = envs.step(np.zeros((2, k_all), np.float32))
        nfe += int(info["nfe"][0])
        assert info["knobs"].shape == (2, k_all) and info["_knobs"].all()
        if k < envs.horizon - 1:
            assert not terminated.any() and (rewards == 0).all()
    assert terminated.all() and not truncated.any()
    assert ((rewards > 0) & (rewards < 1)).all()  # sigmoid of the discriminator's logit
    assert {"disc/loss", "disc/acc_real", "disc/acc_fake"} <= set(info)
    assert nfe == sampler.episode_nfe
    # Next-step autoreset: the following call starts new episodes and ignores its action.
    obs, rewards, terminated, _, _ = envs.step(np.zeros((2, k_all), np.float32))
    assert (obs["step"] == 0).all() and not terminated.any() and (rewards == 0).all()


def test_controlled_knobs_pool_and_dtype(tiny_ode_sampler) -> None:
    envs = SiTVectorEnv(
        num_envs=2,
        generator=tiny_ode_sampler,
        knobs=["cfg"],
        reward_model=None,
        feature_pool=2,
        feature_dtype="float16",
    )
    assert envs.single_action_space.shape == (1,)
    obs, _ = envs.reset(seed=0)
    c, h, w = tiny_ode_sampler.feature_shape
    assert obs["features"].shape == (2, c, h // 2, w // 2) and obs["features"].dtype == np.float16
    _, _, _, _, info = envs.step(np.array([[0.0], [3.0]], np.float32))
    baseline = tiny_ode_sampler.baseline_schedule()[0]  # step 0: (time, cfg)
    assert info["knobs"][0, 0] == info["knobs"][1, 0]  # the uncontrolled time follows the baseline in both lanes
    assert info["knobs"][0, 1] == pytest.approx(float(baseline[1]))  # u = 0: the baseline cfg
    assert info["knobs"][1, 1] > info["knobs"][0, 1] + 1  # u = 3 raises it


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"bogus": 1}, InvalidArgument, "unexpected keyword argument 'bogus'.*valid"),
        ({"knobs": ["tiem"]}, InvalidArgument, "'tiem'.*valid.*time.*Did you mean 'time'"),
        ({"num_steps": 0}, InvalidArgument, "num_steps must be an int >= 1, got 0"),
        ({"generator": "/nowhere/model.safetensors"}, CheckpointError, "/nowhere/model.safetensors"),
        ({"generator": "flwo"}, InvalidArgument, "unknown flow generator 'flwo'.*Did you mean 'flow'"),
        ({"reward_model": "fid"}, InvalidArgument, "unknown reward model 'fid'.*valid"),
        ({"feature_dtype": "int8"}, InvalidArgument, "feature_dtype"),
        ({"observation": "pixels"}, InvalidArgument, "observation must be one of"),
        ({"num_envs": 2}, InvalidArgument, "make_vec"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        gym.make("AdaGen/SiT-v0", **kwargs)


def test_observation_modes_show_the_image_or_only_the_step(tiny_case) -> None:
    env_cls, sampler = tiny_case
    image_env = env_cls(num_envs=2, generator=sampler, reward_model=None, observation="image")
    blind_env = env_cls(num_envs=2, generator=sampler, reward_model=None, observation="step-only")
    assert image_env.single_observation_space["features"].shape == sampler.image_shape
    assert blind_env.single_observation_space["features"].shape == sampler.feature_shape
    obs, _ = image_env.reset(seed=1)
    blind, _ = blind_env.reset(seed=1)
    actions = np.zeros((2, len(sampler.knob_specs)), np.float32)
    for _ in range(sampler.horizon - 1):
        obs, *_ = image_env.step(actions)
        blind, *_ = blind_env.step(actions)
        expected = sampler.intermediate(image_env._state).numpy()
        np.testing.assert_array_equal(obs["features"], expected)
        assert not blind["features"].any() and (blind["step"] == obs["step"]).all()
    single = type("Single", (AdaGenEnv,), {"vector_cls": env_cls})(generator=sampler, observation="image")
    gym_check_env(single, skip_render_check=True)


def test_var_step_count_is_fixed() -> None:
    with pytest.raises(InvalidArgument, match="one step per scale"):
        gym.make_vec("AdaGen/VAR-v0", num_envs=2, num_steps=4)


def test_bad_actions_raise(tiny_ode_sampler) -> None:
    env = SiTEnv(generator=tiny_ode_sampler, reward_model=None)
    env.reset(seed=0)
    with pytest.raises(InvalidKnobValue, match="not finite in lane 0, knob 'cfg'"):
        env.step(np.array([0.0, np.nan], np.float32))
    with pytest.raises(InvalidKnobValue, match=r"shape \(1, 2\)"):
        env.step(np.zeros(3, np.float32))


def test_package_registers_every_paradigm() -> None:
    assert set(ENV_IDS) <= set(gym.registry)
    assert adagen_env.__version__


def test_unknown_keywords_raise_a_type_error_as_python_does() -> None:
    from adagen_env.errors import UnknownArgument

    with pytest.raises(
        TypeError, match="unexpected keyword argument 'frameskip'"
    ):  # what TorchRL's GymEnv probe catches
        gym.make("AdaGen/SiT-v0", frameskip=1)
    with pytest.raises(UnknownArgument):
        gym.make_vec("AdaGen/SiT-v0", num_envs=2, bogus=1)


def test_num_steps_takes_integers_and_var_takes_its_own_scale_count() -> None:
    env = gym.make_vec("AdaGen/VAR-v0", num_envs=2, num_steps=6, reward_model=None)  # its scales: 1, 2, 3, 4, 6, 8
    assert env.unwrapped.sampler.horizon == 6
    with pytest.raises(InvalidArgument, match=r"one step per scale of its tokenizer \(6\).*got 5"):
        gym.make_vec("AdaGen/VAR-v0", num_envs=2, num_steps=5)
    assert gym.make_vec("AdaGen/SiT-v0", num_envs=2, num_steps=np.int64(3), reward_model=None).unwrapped.horizon == 4
    with pytest.raises(InvalidArgument, match="num_steps must be an int >= 1, got True"):
        gym.make_vec("AdaGen/SiT-v0", num_envs=2, num_steps=True)


@pytest.mark.parametrize(("env_id", "steps"), [("AdaGen/SiT-v0", 1), ("AdaGen/DiT-v0", 1), ("AdaGen/MaskGIT-v0", 2)])
def test_shortest_horizons_pass_the_checkers_and_every_step_owns_its_arrays(env_id: str, steps: int) -> None:
    env = gym.make(env_id, num_steps=steps, reward_model=None, render_mode="rgb_array")
    gym_check_env(env.unwrapped, skip_render_check=False)
    first, _ = env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3  # a frame before the first episode ends
    last = first
    done = False
    while not done:
        obs, _, done, _, _ = env.step(env.action_space.sample() * 0)
        assert not np.shares_memory(obs["features"], last["features"])
        last = obs
    assert env.metadata["render_fps"] > 0 and env.render().shape == frame.shape


def test_damaged_generator_weights_are_refused_on_load(tmp_path) -> None:
    import json

    from safetensors.torch import load_file, save_file

    from adagen_env import zoo

    state = load_file(str(zoo.weights_path("flow")))
    name = next(iter(state))
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")  # the bytes damaged, the header intact
    path = tmp_path / "flow.safetensors"
    save_file(state, str(path))
    path.with_suffix(".json").write_text(
        json.dumps(json.loads(zoo.weights_path("flow").with_suffix(".json").read_text()))
    )
    with pytest.raises(CheckpointError, match=f"NaN or infinite values in.*{name}"):
        gym.make_vec("AdaGen/SiT-v0", num_envs=2, generator=str(path))


@pytest.mark.parametrize(
    ("make_kwargs", "reset_kwargs", "match"),
    [
        ({"knobs": "cfg"}, None, "list of knob names.*'cfg'"),
        ({"device": "cuda"}, None, "CUDA is not available"),
        ({}, {"seed": 2**64}, r"seed must be an int in \[0, 2\*\*63\)"),
        ({}, {"options": {"labels": [0.5, 1.0]}}, "integer class ids"),
    ],
)
def test_arguments_that_meant_nothing_now_name_the_problem(make_kwargs, reset_kwargs, match) -> None:
    if make_kwargs.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InvalidArgument, match=match):
        envs = gym.make_vec("AdaGen/SiT-v0", num_envs=2, reward_model=None, **make_kwargs)
        envs.reset(**(reset_kwargs or {}))


def test_float_labels_that_are_whole_numbers_are_accepted() -> None:
    envs = gym.make_vec("AdaGen/SiT-v0", num_envs=2, reward_model=None)
    envs.reset(seed=0, options={"labels": [3.0, 5.0]})
    assert envs.unwrapped.labels.tolist() == [3, 5]


def test_group_lanes_share_label_and_noise_and_differ_only_by_their_actions(tiny_case) -> None:
    env_cls, sampler = tiny_case
    envs = env_cls(num_envs=6, generator=sampler, reward_model=None, return_images=True, group_size=3)
    envs.reset(seed=5)
    labels = envs.labels
    assert (labels[:3] == labels[0]).all() and (labels[3:] == labels[3]).all()
    zeros = np.zeros((6, len(sampler.knob_specs)), np.float32)
    for _ in range(sampler.horizon):
        *_, info = envs.step(zeros)
    images = info["final_images"]
    if env_cls.paradigm in ("diffusion", "flow"):  # deterministic given the noise: the group's images are equal
        assert np.array_equal(images[0], images[1]) and np.array_equal(images[0], images[2])
        assert not np.array_equal(images[0], images[3])
    envs.reset(seed=5)
    nudged = zeros.copy()
    nudged[1] = 0.5
    for _ in range(sampler.horizon):
        *_, info = envs.step(nudged)
    assert not np.array_equal(info["final_images"][1], info["final_images"][0])


def test_group_size_must_divide_the_lanes_and_fixed_labels_must_agree_in_a_group(tiny_ode_sampler) -> None:
    with pytest.raises(InvalidArgument, match="group_size must be an int >= 1 that divides num_envs"):
        SiTVectorEnv(num_envs=6, generator=tiny_ode_sampler, reward_model=None, group_size=4)
    envs = SiTVectorEnv(num_envs=4, generator=tiny_ode_sampler, reward_model=None, group_size=2)
    envs.reset(seed=0, options={"labels": [3, 3, 1, 1]})
    assert envs.labels.tolist() == [3, 3, 1, 1]
    with pytest.raises(InvalidArgument, match="equal within each group of 2 lanes"):
        envs.reset(seed=0, options={"labels": [3, 1, 1, 1]})


def test_single_lane_env_warns_that_its_own_discriminator_sees_one_image(tiny_ode_sampler) -> None:
    single = type("Single", (AdaGenEnv,), {"vector_cls": SiTVectorEnv})
    with pytest.warns(UserWarning, match="trains its own online discriminator on batches of one image"):
        single(generator=tiny_ode_sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        single(generator=tiny_ode_sampler, reward_model=None)
        single(generator=tiny_ode_sampler, reward_model="classifier")


def test_sync_vector_env_lanes_share_one_given_reward_model() -> None:
    from adagen_env.rewards import AdversarialReward

    shared = AdversarialReward(8, 16, architecture="conv")
    envs = gym.make_vec("AdaGen/SiT-v0", num_envs=3, vectorization_mode="sync", num_steps=1, reward_model=shared)
    assert all(env.unwrapped.vector_env.reward_model is shared for env in envs.envs)
    envs.reset(seed=0)
    for _ in range(2):
        envs.step(np.zeros(envs.action_space.shape, np.float32))
    assert shared.num_updates == 3 * 2  # every lane's final image trained the one discriminator


def test_module_prefixed_id_works_in_a_fresh_process() -> None:
    import subprocess
    import sys

    code = (
        "import gymnasium as gym; env = gym.make('adagen_env:AdaGen/SiT-v0', num_steps=1, reward_model=None); "
        "obs, _ = env.reset(seed=0); print(sorted(obs))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "['features', 'step']"


def test_a_lanes_episode_does_not_depend_on_how_many_lanes_run_beside_it(tiny_case) -> None:
    env_cls, sampler = tiny_case
    images = {}
    for lanes in (2, 5):
        envs = env_cls(num_envs=lanes, generator=sampler, reward_model=None, return_images=True)
        envs.reset(seed=11, options={"labels": np.arange(lanes) % sampler.num_classes})
        for _ in range(sampler.horizon):
            *_, info = envs.step(np.zeros((lanes, len(sampler.knob_specs)), np.float32))
        images[lanes] = info["final_images"]
    if env_cls.paradigm in ("maskgit", "var"):  # the sampling draws themselves: exactly equal
        assert np.array_equal(images[2], images[5][:2])
    else:  # the same noise; batched kernels may round differently at another batch size
        np.testing.assert_allclose(images[2], images[5][:2], atol=1e-4)
    assert not np.array_equal(images[5][0], images[5][2])


def test_autoreset_modes_follow_gymnasium(tiny_ode_sampler) -> None:
    zeros = np.zeros((2, 2), np.float32)
    same = SiTVectorEnv(num_envs=2, generator=tiny_ode_sampler, reward_model=None, autoreset_mode="same_step")
    assert same.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    same.reset(seed=0)
    for _ in range(tiny_ode_sampler.horizon):
        obs, _, terminated, _, info = same.step(zeros)
    assert terminated.all() and (obs["step"] == 0).all()  # already the next episodes
    assert info["_final_obs"].all() and info["final_obs"][1]["step"] == tiny_ode_sampler.horizon - 1
    disabled = SiTVectorEnv(num_envs=2, generator=tiny_ode_sampler, reward_model=None, autoreset_mode="Disabled")
    disabled.reset(seed=0)
    for _ in range(tiny_ode_sampler.horizon):
        disabled.step(zeros)
    with pytest.raises(gym.error.ResetNeeded):
        disabled.step(zeros)
    with pytest.raises(InvalidArgument, match="reset_mask must select every lane"):
        disabled.reset(options={"reset_mask": np.array([True, False])})
    obs, _ = disabled.reset(options={"reset_mask": np.array([True, True])})
    assert (obs["step"] == 0).all()
    with pytest.raises(InvalidArgument, match="autoreset_mode must be one of"):
        SiTVectorEnv(num_envs=2, generator=tiny_ode_sampler, reward_model=None, autoreset_mode="sometimes")


def test_zero_action_on_a_base_schedule_runs_that_schedule(tiny_case, tmp_path) -> None:
    from adagen_env.samplers import activate_all, inverse_all
    from adagen_env.samplers.schedules import save_schedule

    env_cls, sampler = tiny_case
    offsets = torch.linspace(-0.6, 0.6, sampler.horizon)[:, None].expand(-1, len(sampler.knob_specs))
    table = activate_all(sampler.knob_specs, sampler.prior() + offsets)  # a static schedule other than the baseline
    path = save_schedule(tmp_path / "table.json", sampler, table)
    for base in (table, table.tolist(), str(path)):
        envs = env_cls(num_envs=3, generator=sampler, reward_model=None, return_images=True, base_schedule=base)
        envs.reset(seed=3, options={"labels": [0, 1, 2]})
        for _ in range(sampler.horizon):
            _, _, terminated, _, info = envs.step(np.zeros((3, len(sampler.knob_specs)), np.float32))
        assert terminated.all() and torch.equal(envs.base_schedule, table)
        # The env runs activate(inverse(table) + u): the table itself up to the activations' round trip.
        run = activate_all(sampler.knob_specs, inverse_all(sampler.knob_specs, table))
        assert torch.allclose(run, table, rtol=1e-5, atol=1e-6)
        expected = sampler.sample(torch.arange(3), make_generator(3), schedule=run)
        assert torch.equal(torch.from_numpy(info["final_images"]), expected)
    assert not torch.equal(expected, sampler.sample(torch.arange(3), make_generator(3)))  # not the baseline


def test_bad_base_schedules_are_refused_naming_the_problem(tiny_ode_sampler, tmp_path) -> None:
    sampler = tiny_ode_sampler
    with pytest.raises(InvalidArgument, match=r"base_schedule must have shape \(5, 2\)"):
        SiTVectorEnv(generator=sampler, reward_model=None, base_schedule=[[0.5, 1.0]])
    table = sampler.baseline_schedule().clone()
    table[1, 1] = -1.0
    with pytest.raises(InvalidArgument, match="knob 'cfg' at step 1 is -1.0"):
        SiTVectorEnv(generator=sampler, reward_model=None, base_schedule=table)
    with pytest.raises(CheckpointError, match="does not exist"):
        SiTVectorEnv(generator=sampler, reward_model=None, base_schedule=str(tmp_path / "none.json"))
