"""QLS's learning phase with parallel episodes (scheduler.parallel_episodes > 1), in-process on a
tiny synthetic suite: the same transitions and DQN updates as serial episodes, the serial
meter's signals per replica, resume at a group boundary, and the refused settings."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from mtlrun.config import register_configs, validate
from mtlrun.errors import ConfigError
from mtlrun.experiment import learn, make_trainer, prepare
from mtlrun.models import build_model
from mtlrun.paths import config_dir
from mtlrun.schedulers import SignalRequest
from mtlrun.training import parallel_learning
from mtlrun.training.parallel_learning import EpisodeGroup, ReplicaMeter, episode_seed
from mtlrun.training.replicas import ReplicatedLSTMModel
from mtlrun.training.signals import SignalMeter

register_configs()

EPISODES, STEPS, D = 4, 20, 5
TINY_QLS = [
    "tasks.train_sizes=[120,80]", "tasks.label_noise=[0.0,0.1]", "tasks.tagging_train_size=0",
    "tasks.dev_size=30", "tasks.test_size=20", "model.hidden_size=8", "model.embeddings.dim=8",
    f"trainer.max_steps={STEPS}", "trainer.eval_every=10", "trainer.progress=false",
    "trainer.plots=false",
    "scheduler=qls", f"scheduler.episodes={EPISODES}", f"scheduler.decision_every={D}",
    "scheduler.hard_after_steps=5", "scheduler.hard_examples=8", "scheduler.reward_examples=10",
    "scheduler.learning_starts=2", "scheduler.replay_batch=4", "scheduler.target_sync=3",
    "scheduler.q_hidden=16",
]  # fmt: skip


def config(tmp_path, *overrides):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=[*TINY_QLS, *overrides,
                                           f"cache_dir={tmp_path / 'cache'}"])  # fmt: skip
    return validate(cfg)


def learn_and_count(tmp_path, name, *overrides) -> dict:
    """Run the learning phase; the replay buffer's and DQN's counters just before
    end_learning frees the buffer, and the saved policy."""
    c = config(tmp_path, *overrides)
    p = prepare(c)
    counts = {}
    end_learning = p.scheduler.end_learning

    def counting_end(run_dir):
        replay = p.scheduler.dqn.replay
        counts.update(transitions=len(replay), done=int(replay.done[: len(replay)].sum()),
                      updates=p.scheduler.dqn.updates, decisions=p.scheduler.decisions,
                      actions=int(p.scheduler.action_counts.sum()))  # fmt: skip
        end_learning(run_dir)

    p.scheduler.end_learning = counting_end
    run_dir = tmp_path / name
    timing = learn(c, p, run_dir, resume=False)
    counts["policy"] = torch.load(run_dir / "policy.pt", weights_only=False)
    counts["timing"] = timing
    return counts


def test_parallel_episodes_store_what_serial_episodes_store(tmp_path):
    """state_subset=all: every episode decides from its first step, so 2 x 2 parallel episodes
    make exactly the decisions, transitions and DQN updates of 4 serial ones. One-step returns
    and learning_starts=1: every stored transition is followed by the same number of updates
    however the actors interleave (with n-step returns the buffer fills a few calls later)."""
    same = ("scheduler.state_subset=all", "scheduler.n_step=1", "scheduler.learning_starts=1")
    serial = learn_and_count(tmp_path, "serial", *same)
    parallel = learn_and_count(tmp_path, "parallel", *same, "scheduler.parallel_episodes=2")
    per_episode = STEPS // D
    assert parallel["decisions"] == serial["decisions"] == EPISODES * per_episode
    assert parallel["actions"] == parallel["decisions"]
    assert parallel["transitions"] == serial["transitions"] == EPISODES * per_episode
    assert parallel["done"] == serial["done"] == EPISODES  # every episode's final reward stored
    per_transition = config(tmp_path).scheduler.updates_per_decision
    assert parallel["updates"] == serial["updates"] == parallel["transitions"] * per_transition
    timing = parallel["timing"]
    assert 0 < timing["learn_signal_seconds"] < timing["learn_seconds"]
    assert 0 < timing["learn_policy_seconds"] < timing["learn_seconds"]
    assert not (tmp_path / "parallel" / "checkpoints" / "learn.pt").exists()


def test_a_killed_learning_phase_resumes_at_its_last_group(tmp_path, monkeypatch):
    """Interrupted in the second group of two: the resumed phase (a fresh process: new
    scheduler, learn.pt) saves the same policy as an uninterrupted one. H_k is fixed in the
    first group (state_subset=hard), and dropout is on."""
    args = ("scheduler.parallel_episodes=2",)
    whole = learn_and_count(tmp_path, "whole", *args)
    # both episodes of the first group wait for H_k (fixed at step 5): one decision fewer each
    assert whole["decisions"] == EPISODES * (STEPS // D) - 2

    train_step = EpisodeGroup.train_step

    def killed_in_group_two(self, t, tasks):
        if self.first == 2 and t == 7:
            raise KeyboardInterrupt
        train_step(self, t, tasks)

    c = config(tmp_path, *args)
    run_dir = tmp_path / "killed"
    monkeypatch.setattr(EpisodeGroup, "train_step", killed_in_group_two)
    with pytest.raises(KeyboardInterrupt):
        learn(c, prepare(c), run_dir, resume=False)
    saved = torch.load(run_dir / "checkpoints" / "learn.pt", weights_only=False)
    assert saved["episode"] == 2 and saved["timing"]["learn_seconds"] > 0
    monkeypatch.setattr(EpisodeGroup, "train_step", train_step)

    learn(c, prepare(c), run_dir, resume=True)
    resumed = torch.load(run_dir / "policy.pt", weights_only=False)
    assert resumed["decisions"] == whole["policy"]["decisions"]
    assert all(np.array_equal(a, b) for a, b in zip(resumed["hard"], whole["policy"]["hard"],
                                                    strict=True))  # fmt: skip
    for name, value in whole["policy"]["q"].items():
        assert torch.equal(resumed["q"][name], value), name


def test_replica_i_starts_as_serial_episode_first_plus_i(tmp_path):
    """Same initial weights and the same minibatches, in order, as the serial episode's
    Trainer (make_trainer with the episode's seed)."""
    c = config(tmp_path)
    p = prepare(c)
    group = EpisodeGroup(c, p, first=1, n=2)
    for i, episode in enumerate((1, 2)):
        serial = make_trainer(replace(c, seed=episode_seed(c.seed, episode)), p, tmp_path,
                              episode=True)  # fmt: skip
        state = group.model.replica_state_dict(i)
        assert all(torch.equal(state[n], v) for n, v in serial.model.state_dict().items())
        for k, stream in enumerate(serial.streams):
            for _ in range(3):
                np.testing.assert_array_equal(group.streams[i][k].next(), stream.next())


def test_replica_meter_gives_each_replica_the_serial_meters_signals(tmp_path):
    c = config(tmp_path, "model.num_layers=2")
    p = prepare(c)
    seeds = [episode_seed(c.seed, e) for e in range(3)]
    models = [build_model(c.model, p.vocab, p.tasks, s) for s in seeds]
    replicated = ReplicatedLSTMModel(models)
    request = SignalRequest(outputs={0: np.array([1, 4, 7, 20]), 1: None},
                            scores={0: None, 1: np.array([3, 4, 28])})  # fmt: skip
    # a small row budget: several forward passes per task
    answers = ReplicaMeter(p.encoded, 2, p.device).measure(replicated, request, [2, 0])
    serial = SignalMeter(p.encoded, 4, p.device)
    for answer, i in zip(answers, [2, 0], strict=True):
        expected = serial.measure(models[i], request, seed=0)
        for k, out in expected.outputs.items():
            np.testing.assert_array_equal(answer.outputs[k].example, out.example)
            np.testing.assert_array_equal(answer.outputs[k].labels, out.labels)
            np.testing.assert_allclose(answer.outputs[k].probs, out.probs, atol=1e-6)
        assert answer.scores == expected.scores
        assert answer.losses == pytest.approx(expected.losses, abs=1e-6)
    assert not np.allclose(answers[0].outputs[1].probs, answers[1].outputs[1].probs)


@pytest.mark.parametrize(
    "overrides,message",
    [(["tasks.tagging_train_size=40"], "needs classification tasks; entities are not"),
     (["optimizer.layout=per_task", "optimizer.scale_mode=lr"],
      "needs optimizer.layout=shared")],
)  # fmt: skip
def test_unsupported_settings_are_refused_before_training(tmp_path, overrides, message):
    c = config(tmp_path, "scheduler.parallel_episodes=2", *overrides)
    p = prepare(c)
    with pytest.raises(ConfigError, match=message):
        learn(c, p, tmp_path / "run", resume=False)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_requests_for_the_same_rows_are_measured_once():
    hard = [np.array([1, 2]), np.array([3])]
    same = SignalRequest(outputs=dict(enumerate(hard)), scores={0: None, 1: None})
    copy = SignalRequest(outputs={0: np.array([1, 2]), 1: np.array([3])},
                         scores={0: None, 1: None})  # fmt: skip
    first = SignalRequest(outputs={0: None, 1: None})
    groups = parallel_learning._distinct({0: same, 1: first, 2: copy})
    assert [actors for actors, _ in groups] == [[0, 2], [1]]
