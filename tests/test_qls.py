"""QLS against SCHEDULERS.md §6.3 (Appendix B item 17): reward and punishment, TD target,
Boltzmann–Gumbel choices, temperature, state vectors, the learn/run protocol, policy files and
checkpoints."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from mtlrun.errors import ConfigError
from mtlrun.schedulers import SCHEDULERS, Signals, TaskInfo, TaskOutputs
from mtlrun.schedulers.base import scheduler_rng, softmax
from mtlrun.schedulers.dqn import DQN, bge_index, td_target, temperature, zscore
from mtlrun.schedulers.qls import qls_reward

QLS = SCHEDULERS["qls"]


def infos(K=2, n_dev=10):
    return [TaskInfo(f"t{k}", 100, 10, "accuracy", n_dev=n_dev) for k in range(K)]


# the paper's DQN (the protocol tests below); the practical preset's options have their own tests
PAPER = {"q_network": "flat", "double": False, "n_step": 1, "reward_norm": False,
         "updates_per_decision": 1, "run_policy": "greedy", "reward": "loss"}  # fmt: skip


def make(K=2, seed=0, total=40, **hparams):
    cfg = QLS.Config(**{"episodes": 2, "episode_steps": 20, "decision_every": 5,
                        "hard_examples": 4, "hard_after_steps": 5, "learning_starts": 2,
                        "replay_batch": 4, "target_sync": 3, "q_hidden": 8,
                        "reward_examples": None, **PAPER, **hparams})  # fmt: skip
    return QLS(cfg, infos(K), total, scheduler_rng(seed, "qls"))


# --- oracles (§6.3.10) -------------------------------------------------------------------------
def test_reward_and_punishment_oracle():
    V = np.array([0.4, 0.6, 0.5])
    assert qls_reward(V, np.full(3, 0.8), None, 0.95, -10) == pytest.approx(-1.5)
    assert qls_reward(V, np.full(3, 0.80), np.full(3, 0.86), 0.95, -10) == -10
    assert qls_reward(V, np.full(3, 0.82), np.full(3, 0.86), 0.95, -10) == pytest.approx(-1.5)
    # punish_after_steps mutes it
    assert qls_reward(V, np.full(3, 0.8), np.full(3, 0.86), 0.95, -10, active=False) == -1.5


def test_td_target_oracle():
    q_next = np.array([-3.0, -2.5, -4.0])
    y = td_target(np.array([-1.2, -1.2]), np.array([q_next.max()] * 2), np.array([False, True]),
                  0.99)  # fmt: skip
    np.testing.assert_allclose(y, [-3.675, -1.2], atol=1e-9)


def test_bge_oracle_raw_and_zscored():
    Q, Z = np.array([1.0, 0.5, 0.2]), np.array([0.1, 1.5, -0.3])
    common = Q + 0.5 * Z  # one common scale 0.5
    np.testing.assert_allclose(common, [1.05, 1.25, 0.05])
    assert np.argmax(common) == 1
    idx = bge_index(Q, np.array([4, 1, 9]), Z, tau=1.0, c=1.0)
    np.testing.assert_allclose(idx, [1.05, 2.0, 0.1], atol=1e-6)
    assert np.argmax(idx) == 1
    assert np.argmax(Q) == 0  # greedy at run time
    qz = zscore(Q)
    np.testing.assert_allclose(qz, [1.313194, -0.202030, -1.111164], atol=1e-6)
    idx = bge_index(qz, np.array([4, 1, 9]), Z, tau=1.0)
    np.testing.assert_allclose(idx, [1.363194, 1.297970, -1.211164], atol=1e-6)
    assert np.argmax(idx) == 0


def test_exploration_is_a_draw_from_the_boltzmann_distribution_of_q():
    """explore() is Gumbel-max: with equal visit counts and a fixed τ, its action is a draw from
    softmax(Q / (τ·c)); Q = [1, 0.5, 0.2], τ = 0.5: [0.637034, 0.234352, 0.128615]."""
    qls = make(K=3, q_normalization="none", tau0=0.5, tau_min=0.5, bge_c=1.0)
    q = np.array([1.0, 0.5, 0.2])
    qls.dqn.values = lambda state: q  # a fixed Q-function: only the exploration is under test
    state = np.zeros(1, np.float32)  # any state: the Q-function above ignores it
    n = 20_000
    actions = []
    for _ in range(n):
        qls.action_counts[:] = 1  # equal counts: one common noise scale for every action
        actions.append(qls.explore(state))
    assert qls.decisions == n
    boltzmann = softmax(q / 0.5)
    np.testing.assert_allclose(boltzmann, [0.637034, 0.234352, 0.128615], atol=1e-6)
    np.testing.assert_allclose(np.bincount(actions, minlength=3) / n, boltzmann, atol=0.01)


def test_temperature_oracle():
    assert temperature(0, 1000, 10, 0.01, 0.8) == pytest.approx(10)
    assert temperature(400, 1000, 10, 0.01, 0.8) == pytest.approx(0.316228, abs=1e-6)
    assert temperature(800, 1000, 10, 0.01, 0.8) == pytest.approx(0.01)
    assert temperature(1000, 1000, 10, 0.01, 0.8) == pytest.approx(0.01)


def test_zscore_of_equal_values_is_zero():
    np.testing.assert_array_equal(zscore(np.full(3, 2.5)), np.zeros(3))


# --- the DQN ---------------------------------------------------------------------------------
def test_dqn_learns_a_one_step_bandit():
    """Terminal transitions with action 1 worth more: Q(S, 1) ends above Q(S, 0)."""
    cfg = QLS.Config(q_hidden=16, q_lr=1e-2, learning_starts=8, replay_batch=8, target_sync=5)
    dqn = DQN(2, 2, cfg, seed=0)  # 2 bins x 2 tasks
    rng = np.random.default_rng(0)
    s = np.array([0.25, 0.25, 0.25, 0.25], np.float32)
    for i in range(200):
        a = i % 2
        dqn.replay.add(s, a, -1.0 if a == 0 else -0.2, s, a, True)
        dqn.update(rng)
    q = dqn.values(s)
    assert q[1] > q[0]
    np.testing.assert_allclose(q, [-1.0, -0.2], atol=0.1)


def test_dqn_target_network_is_a_lagged_copy():
    cfg = QLS.Config(q_hidden=8, learning_starts=1, replay_batch=2, target_sync=3,
                     q_network="flat")  # fmt: skip
    dqn = DQN(1, 2, cfg, seed=1)
    rng = np.random.default_rng(0)
    s = np.ones(2, np.float32)
    dqn.replay.add(s, 0, -1.0, s, 0, False)
    for _ in range(2):
        dqn.update(rng)
    assert not torch.equal(dqn.q.net[0].weight, dqn.target.net[0].weight)
    dqn.update(rng)  # the third gradient step syncs
    assert torch.equal(dqn.q.net[0].weight, dqn.target.net[0].weight)


# --- state, protocol, files --------------------------------------------------------------------
def signals_for(qls, probs_per_task, losses=None, scores=None):
    outputs = {}
    for k, probs in enumerate(probs_per_task):
        probs = np.asarray(probs, float)
        outputs[k] = TaskOutputs(np.arange(len(probs)), np.zeros(len(probs), int), probs, None)
    K = len(probs_per_task)
    return Signals(outputs, scores or {k: 0.9 for k in range(K)},
                   losses or {k: 0.5 for k in range(K)})  # fmt: skip


def test_state_is_the_concatenated_margin_histograms():
    qls = make(state_subset="all")
    # margins 0.63 (bin 12) and 1.0 (bin 19) for task 0; 0 (bin 0) twice for task 1
    sig = signals_for(qls, [[[0.62, 0.25, 0.13], [0.5, 0.5, 0]], [[1, 0, 0], [1, 0, 0]]])
    state = qls.state_vector(sig)
    assert state.shape == (40,)
    expected = np.zeros(40)
    expected[[12, 19]] = 0.5
    expected[20] = 1.0
    np.testing.assert_allclose(state, expected)


def test_hard_subset_is_the_most_uncertain_dev_examples():
    qls = make(hard_examples=2)
    rng = np.random.default_rng(0)
    p = rng.uniform(0.5, 1.0, size=(10, 1))
    probs = np.hstack([p, 1 - p])
    assert qls.wants_signals(0) is None  # warm-up of episode 1: nothing measured
    request = qls.wants_signals(5)
    assert request.outputs == {0: None, 1: None}
    qls.observe_signals(5, signals_for(qls, [probs, probs]))
    hardest = np.sort(np.argsort(p[:, 0])[:2])  # p closest to 0.5 = largest margin ζ
    np.testing.assert_array_equal(qls.hard[0], hardest)


def drive_episode(qls, rng, t0=0, steps=20, bad_task=None):
    """Play one learning episode with made-up dev signals; training task `bad_task` raises
    the loss. Returns the tasks chosen."""
    chosen = []
    loss = 1.0
    for t in range(t0, steps + 1):
        request = qls.wants_signals(t)
        if request is not None:
            probs = [np.tile([[0.6, 0.4]], (10, 1)) for _ in range(qls.K)]
            qls.observe_signals(
                t, signals_for(qls, probs, losses=dict.fromkeys(range(qls.K), loss))
            )
        if t < steps:
            k = qls.next_task(t)
            chosen.append(k)
            loss += 0.05 if k == bad_task else -0.01
    return chosen


def test_learning_protocol_and_greedy_run():
    qls = make()
    assert qls.learning_plan() == (2, 20)
    rng = np.random.default_rng(0)
    for e in range(2):
        qls.begin_episode(e)
        drive_episode(qls, rng)
    # decisions at 5, 10, 15 in episode 1 (H_k fixed at 5); 0, 5, 10, 15 in episode 2
    assert qls.decisions == 7
    assert len(qls.dqn.replay) == 7  # each decision's transition, the last one done
    assert qls.dqn.replay.done[:7].sum() == 2
    assert qls.dqn.updates > 0


def test_policy_file_round_trip_and_greedy_runs(tmp_path):
    qls = make()
    rng = np.random.default_rng(0)
    for e in range(2):
        qls.begin_episode(e)
        drive_episode(qls, rng)
    qls.end_learning(tmp_path)
    assert qls.learning_plan() is None
    reused = make(policy=str(tmp_path / "policy.pt"))
    assert reused.learning_plan() is None
    np.testing.assert_array_equal(reused.hard[0], qls.hard[0])
    probs = [np.tile([[0.7, 0.3]], (10, 1))] * 2
    for s in (qls, reused):
        s.observe_signals(0, signals_for(s, probs))
    assert qls.current == reused.current == int(np.argmax(qls.last_q))
    assert reused.wants_signals(0).scores == {}  # the run phase needs no reward
    assert reused.wants_signals(3) is None and reused.wants_signals(40) is None


def test_policy_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no file"):
        make(policy=str(tmp_path / "missing.pt"))
    qls = make()
    qls.end_learning(tmp_path)
    with pytest.raises(ConfigError, match="n_bins"):
        make(policy=str(tmp_path / "policy.pt"), n_bins=10)
    with pytest.raises(ConfigError, match="tasks"):
        make(K=3, policy=str(tmp_path / "policy.pt"))


def test_config_errors():
    with pytest.raises(ConfigError, match="uncertainty"):
        QLS.Config(uncertainty="accuracy")
    with pytest.raises(ConfigError, match="hard_after_steps"):
        make(hard_after_steps=20)
    with pytest.raises(ConfigError, match="gamma"):
        QLS.Config(gamma=1.5)


def test_state_round_trip_mid_learning_continues_identically():
    a = make(seed=3)
    rng = np.random.default_rng(0)
    a.begin_episode(0)
    drive_episode(a, rng)
    a.begin_episode(1)
    b = make(seed=3)
    b.load_state_dict(a.state_dict())
    assert drive_episode(a, rng) == drive_episode(b, rng)
    for x, y in zip(a.dqn.q.parameters(), b.dqn.q.parameters(), strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("mode, expected", [("fixed", -10.0), ("scaled", -4 * np.log(2))])
def test_nan_reward_is_punished_and_ends_the_episode(mode, expected):
    qls = make(state_subset="all", punishment_mode=mode)
    probs = [np.tile([[0.6, 0.4]], (10, 1))] * 2
    qls.observe_signals(0, signals_for(qls, probs))
    qls.observe_signals(5, signals_for(qls, probs, losses={0: float("nan"), 1: 0.1}))
    assert qls.dqn.replay.rewards[0] == pytest.approx(expected) and qls.dqn.replay.done[0]


def test_seeds_change_the_exploration():
    runs = []
    for seed in (0, 0, 1):
        qls = make(seed=seed, state_subset="all")
        qls.begin_episode(0)
        runs.append(drive_episode(qls, np.random.default_rng(0)))
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_faithful_preset_values():
    from hydra import compose, initialize_config_dir

    from mtlrun.config import register_configs, validate
    from mtlrun.paths import config_dir

    register_configs()
    with initialize_config_dir(str(config_dir()), version_base=None):
        c = validate(compose("config", overrides=["scheduler=qls_faithful"]))
    s = c.scheduler
    assert (s.episodes * s.episode_steps, s.episode_steps, s.decision_every) == (
        1_000_000, 10_000, 1)  # fmt: skip
    assert (s.gamma, s.n_bins, s.punishment, s.punish_ratio) == (0.99, 20, -10.0, 0.95)
    assert replace(s, name="qls").uncertainty == "margin"


def test_sarsa_stores_the_next_action_taken():
    qls = make(state_subset="all", target="sarsa")
    probs = [np.tile([[0.6, 0.4]], (10, 1))] * 2
    for t in (0, 5, 10):
        qls.observe_signals(t, signals_for(qls, probs))
    taken = qls.dqn.replay.actions[:2]
    assert qls.dqn.replay.next_actions[0] == taken[1]
    assert qls.dqn.replay.next_actions[1] == qls.current


def test_without_a_target_network_the_target_is_q_itself():
    cfg = QLS.Config(q_hidden=8, learning_starts=1, replay_batch=2, target_sync=0)
    dqn = DQN(1, 2, cfg, seed=1)
    assert dqn.target is None
    s = np.ones(2, np.float32)
    dqn.replay.add(s, 0, -1.0, s, 0, False)
    before = dqn.values(s)
    assert dqn.update(np.random.default_rng(0)) is not None
    assert not np.allclose(before, dqn.values(s))
