"""Run directories: both engines name, find and refuse runs by the same rules."""

from __future__ import annotations

import pytest

from adagen_env.errors import CheckpointError, InvalidArgument
from agents.args import Args
from agents.runs import find_run_dir


@pytest.mark.parametrize(("checkpoint", "tag"), [("checkpoint.zip", "ppo"), ("latest.json", "rllib-ppo")])
def test_new_runs_are_named_by_tag_and_resume_takes_the_latest_with_a_checkpoint(tmp_path, checkpoint, tag) -> None:
    args = Args(logdir=str(tmp_path), seed=3)
    new, found = find_run_dir(args, checkpoint, tag)
    assert new.name.startswith(f"AdaGen-SiT-v0__{tag}__3__") and not found
    for stamp, saved in (("20250101-000000", True), ("20250102-000000", True), ("20250103-000000", False)):
        run = tmp_path / f"AdaGen-SiT-v0__{tag}__3__{stamp}"
        run.mkdir()
        if saved:
            (run / checkpoint).write_text("")
    resume = Args(logdir=str(tmp_path), seed=3, resume=True)
    assert find_run_dir(resume, checkpoint, tag) == (tmp_path / f"AdaGen-SiT-v0__{tag}__3__20250102-000000", True)
    (tmp_path / checkpoint).write_text("")
    assert find_run_dir(resume, checkpoint, tag) == (tmp_path, True)  # --logdir itself holds one


def test_a_named_run_is_refused_without_a_checkpoint_to_resume_or_over_an_old_run(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="nothing to resume"):
        find_run_dir(Args(logdir=str(tmp_path), resume=True), "checkpoint.zip", "ppo")
    with pytest.raises(CheckpointError, match="nothing to resume"):
        find_run_dir(Args(logdir=str(tmp_path), run_name="named", resume=True), "checkpoint.zip", "ppo")
    (tmp_path / "named").mkdir()
    (tmp_path / "named" / "progress.csv").write_text("")
    with pytest.raises(InvalidArgument, match="already holds a run; pass --resume"):
        find_run_dir(Args(logdir=str(tmp_path), run_name="named"), "latest.json", "rllib-ppo")
    (tmp_path / "named" / "latest.json").write_text("")
    assert find_run_dir(Args(logdir=str(tmp_path), run_name="named", resume=True), "latest.json", "rllib-ppo") == (
        tmp_path / "named",
        True,
    )
