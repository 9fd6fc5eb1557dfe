"""QLS's sample-efficiency and run-phase options: n-step returns, Double DQN, reward and state
normalisation, the task-equivariant Q-network, the scaled punishment, the Boltzmann run phase,
parallel actors and the Q diagnostics."""

import math

import numpy as np
import pytest
import torch
from test_qls import QLS, drive_episode, make, signals_for
from torch import nn

from mtlrun.errors import ConfigError
from mtlrun.schedulers.base import softmax
from mtlrun.schedulers.dqn import (
    DQN,
    EquivariantQNetwork,
    NStepAccumulator,
    RunningNorm,
)
from mtlrun.schedulers.qls import run_distribution


def test_n_step_returns_oracle():
    acc = NStepAccumulator(n=2, gamma=0.5)
    s = [np.full(2, i, np.float32) for i in range(4)]
    assert acc.push(s[0], 0, 1.0, s[1], False) == []  # one reward pending
    (t0,) = acc.push(s[1], 1, 2.0, s[2], False)  # G = 1 + 0.5·2 from S0, bootstraps at S2
    assert (t0.action, t0.reward, t0.steps, t0.done) == (0, 2.0, 2, False)
    np.testing.assert_array_equal(t0.next_state, s[2])
    t1, t2 = acc.push(s[2], 2, 3.0, s[3], True)  # the episode ends: everything is flushed
    assert (t1.action, t1.reward, t1.steps, t1.done) == (1, 3.5, 2, True)
    assert (t2.action, t2.reward, t2.steps, t2.done) == (2, 3.0, 1, True)
    assert acc.pending == type(acc.pending)()


def test_one_step_accumulator_passes_transitions_through():
    acc = NStepAccumulator(n=1, gamma=0.99)
    (t,) = acc.push(np.zeros(1), 3, -1.5, np.ones(1), False)
    assert (t.action, t.reward, t.steps) == (3, -1.5, 1)


class Fixed(nn.Module):
    """A Q-function with fixed outputs per state row (rows tell states apart by their sum)."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.tensor(table, dtype=torch.float32)
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, s):
        return self.table[s.sum(1).long()] + 0 * self.w


def dqn_with(q_table, target_table, **cfg):
    settings = {"q_network": "flat", "double": False, "reward_norm": False, **cfg}
    dqn = DQN(1, 3, QLS.Config(learning_starts=1, replay_batch=1, **settings), 0)
    dqn.q, dqn.target = Fixed(q_table), Fixed(target_table)
    s, s_next = np.zeros(3, np.float32), np.ones(3, np.float32) / 3  # rows 0 and 1
    dqn.replay.add(s, 0, -1.0, s_next, 0, False)
    return dqn


def test_double_dqn_values_the_online_argmax_with_the_target_network():
    q = [[0, 0, 0], [5.0, 1.0, 0.0]]  # online Q at S': argmax 0
    target = [[0, 0, 0], [-3.0, -1.0, -2.0]]  # target at S': max at 1
    y_dqn = dqn_with(q, target)._targets(np.array([0]))
    y_double = dqn_with(q, target, double=True)._targets(np.array([0]))
    assert y_dqn[0] == pytest.approx(-1.0 + 0.99 * -1.0)
    assert y_double[0] == pytest.approx(-1.0 + 0.99 * -3.0)


def test_n_step_targets_discount_by_gamma_to_the_m():
    dqn = dqn_with([[0, 0, 0], [0, 0, 0]], [[0, 0, 0], [2.0, 1.0, 0.0]])
    dqn.replay.steps[0] = 3
    assert dqn._targets(np.array([0]))[0] == pytest.approx(-1.0 + 0.99**3 * 2.0)


def test_reward_normalisation_z_scores_the_m_step_return():
    dqn = dqn_with([[0, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]], reward_norm=True)
    for r in (-2.0, -4.0, -6.0):
        dqn.observe(np.zeros(3), r)
    mean, std = -4.0, math.sqrt(8 / 3)
    dqn.replay.rewards[0], dqn.replay.steps[0] = -7.0, 2  # G of two rewards
    expected = (-7.0 - mean * (1 + 0.99)) / std
    assert dqn._targets(np.array([0]))[0] == pytest.approx(expected, rel=1e-6)


def test_running_norm_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(3, 2, size=(50, 4))
    norm = RunningNorm(4)
    for row in x:
        norm.add(row)
    np.testing.assert_allclose(norm.mean, x.mean(0))
    np.testing.assert_allclose(norm.std, x.std(0))
    np.testing.assert_allclose(norm.normalise(x), (x - x.mean(0)) / x.std(0), rtol=1e-5)


def test_equivariant_network_permutes_with_the_tasks():
    torch.manual_seed(0)
    net = EquivariantQNetwork(n_bins=5, num_actions=4, hidden=8)
    state = torch.rand(3, 4, 5)
    perm = torch.tensor([2, 0, 3, 1])
    q = net(state.reshape(3, 20))
    q_perm = net(state[:, perm].reshape(3, 20))
    torch.testing.assert_close(q_perm, q[:, perm])


def test_equivariant_network_generalises_a_lesson_to_every_task():
    """Transitions only ever take action 0; what they teach (a task whose histogram sits in the
    last bin is worth more) transfers to task 1 when task 1 is the one in that state."""
    torch.manual_seed(0)
    cfg = QLS.Config(q_network="equivariant", q_hidden=16, q_lr=1e-2, learning_starts=4,
                     replay_batch=8, target_sync=0)  # fmt: skip
    dqn = DQN(2, 2, cfg, seed=0)
    hot, cold = np.array([0, 1, 1, 0], np.float32), np.array([1, 0, 0, 1], np.float32)
    rng = np.random.default_rng(0)
    for i in range(300):
        s = hot if i % 2 else cold
        dqn.replay.add(s, 0, 1.0 if i % 2 else -1.0, s, 0, True)
        dqn.update(rng)
    assert dqn.values(hot)[0] > dqn.values(cold)[0] + 1
    assert dqn.values(cold)[1] > dqn.values(hot)[1] + 1  # never trained on action 1


def test_scaled_punishment_is_below_the_reward_for_any_number_of_tasks():
    for K in (2, 16):
        qls = make(K=K, state_subset="all", reward="loss",
                   baselines={f"t{k}": 0.9 for k in range(K)})  # fmt: skip
        losses = {k: 0.8 for k in range(K)}  # above ln 2: worse than chance
        sig = signals_for(qls, [np.tile([[0.6, 0.4]], (4, 1))] * K, losses=losses,
                          scores={k: 0.5 for k in range(K)})  # fmt: skip
        r = qls.reward(sig, t=0)
        assert r == pytest.approx(-0.8 * K - K * math.log(2))
        assert r < -sum(losses.values())
        fixed = make(K=K, state_subset="all", punishment_mode="fixed",
                     baselines={f"t{k}": 0.9 for k in range(K)})  # fmt: skip
        assert fixed.reward(sig, t=0) == -10.0


def test_boltzmann_run_phase_draws_at_a_temperature_in_units_of_the_td_error(tmp_path):
    learner = make(run_policy="boltzmann", run_tau=0.5)
    rng = np.random.default_rng(0)
    for e in range(2):
        learner.begin_episode(e)
        drive_episode(learner, rng)
    learner.end_learning(tmp_path)
    sigma = learner.dqn.td_rms
    assert sigma > 0
    reused = make(policy=str(tmp_path / "policy.pt"), run_policy="boltzmann", run_tau=0.5)
    assert reused.dqn.td_rms == sigma  # saved with the policy
    probs = [np.tile([[0.7, 0.3]], (10, 1))] * 2
    counts = np.zeros(2)
    for t in range(0, 2000, 5):
        learner.observe_signals(t, signals_for(learner, probs))
        counts[learner.next_task(t)] += 1
    expected = softmax(learner.last_q / (0.5 * sigma))
    np.testing.assert_allclose(learner.task_distribution(0), expected)
    np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.06)


def test_run_distribution_is_uniform_when_q_differs_by_less_than_its_error():
    q = np.array([-10.0, -10.5, -13.0])
    np.testing.assert_allclose(run_distribution(q, None, 1.0), np.full(3, 1 / 3))
    flat = run_distribution(q, 100.0, 1.0)  # error far above the differences: near uniform
    assert np.ptp(flat) < 0.03
    sharp = run_distribution(q, 0.1, 1.0)  # error far below: greedy
    assert sharp[0] > 0.99
    np.testing.assert_allclose(run_distribution(q, 2.0, 0.5), softmax(q))


def test_parallel_actors_share_one_dqn_and_keep_their_own_episodes():
    serial, parallel = make(seed=4, state_subset="all"), make(seed=4, state_subset="all")
    for e in range(2):
        serial.begin_episode(e)
        drive_episode(serial, None)
    parallel.begin_episodes(0, 2)
    probs = [np.tile([[0.6, 0.4]], (10, 1))] * 2
    for t in range(21):
        for i in range(2):
            parallel.use_actor(i)
            if parallel.wants_signals(t) is not None:
                parallel.observe_signals(t, signals_for(parallel, probs))
            if t < 20:
                parallel.next_task(t)
    assert [a.episode for a in parallel.actors] == [0, 1]
    assert parallel.decisions == serial.decisions == 8
    assert len(parallel.dqn.replay) == len(serial.dqn.replay) == 8
    assert parallel.dqn.replay.done[:8].sum() == 2
    assert all(a.previous is None for a in parallel.actors)  # both episodes ended


def test_log_state_reports_the_dqn_and_q_spreads(tmp_path):
    qls = make(state_subset="all")
    qls.begin_episode(0)
    drive_episode(qls, None)
    state = qls.log_state()
    assert state["replay"] == 4 and state["tau"] == pytest.approx(qls.tau())
    assert "td_loss" in state
    qls.end_learning(tmp_path)
    probs = [np.tile([[0.7, 0.3]], (10, 1)), np.tile([[0.9, 0.1]], (10, 1))]
    qls.observe_signals(0, signals_for(qls, probs))
    state = qls.log_state()
    assert state["greedy_actions"] == 1 and state["q_spread_states"] == 0.0
    assert state["q_spread_actions"] == pytest.approx(np.ptp(qls.last_q), rel=1e-5)
    assert set(state["learned"]) == {"q_spread_actions", "q_spread_states", "greedy_actions"}


def test_option_errors():
    with pytest.raises(ConfigError, match="sarsa"):
        QLS.Config(target="sarsa", n_step=3)
    with pytest.raises(ConfigError, match="q_network"):
        QLS.Config(q_network="resnet")
    with pytest.raises(ConfigError, match="run_policy"):
        QLS.Config(run_policy="epsilon")


def test_improvement_reward_is_the_drop_in_summed_dev_loss():
    qls = make(state_subset="all", reward="improvement")
    probs = [np.tile([[0.6, 0.4]], (10, 1))] * 2
    assert qls.wants_signals(0).scores  # the first decision measures the loss too
    qls.observe_signals(0, signals_for(qls, probs, losses={0: 0.7, 1: 0.6}))
    qls.observe_signals(5, signals_for(qls, probs, losses={0: 0.5, 1: 0.6}))
    assert qls.dqn.replay.rewards[0] == pytest.approx(0.2)
    punished = make(state_subset="all", reward="improvement", baselines={"t0": 1, "t1": 1})
    assert punished.reward(signals_for(punished, probs, losses={0: 0.5, 1: 0.6}), 5, 1.3) == (
        pytest.approx(0.2 - 2 * math.log(2)))  # fmt: skip


@pytest.mark.parametrize("network", ["flat", "equivariant"])
def test_learns_to_avoid_a_task_whose_training_raises_the_loss(network, tmp_path):
    """A made-up environment where training task 2 raises the summed dev loss and the others
    lower it: after learning, the Boltzmann run phase gives task 2 less than the uniform 1/3,
    and the greedy policy avoids it."""
    qls = make(K=3, state_subset="all", episodes=40, episode_steps=50, decision_every=5,
               q_network=network, run_policy="boltzmann", n_step=3, reward_norm=True, reward="loss",
               learning_starts=16, replay_batch=16, target_sync=20, q_hidden=32)  # fmt: skip
    rng = np.random.default_rng(0)
    for e in range(40):
        qls.begin_episode(e)
        drive_episode(qls, rng, steps=50, bad_task=2)
    qls.end_learning(tmp_path)
    probs = [np.tile([[0.6, 0.4]], (10, 1))] * 3
    qls.observe_signals(0, signals_for(qls, probs))
    p = qls.task_distribution(0)
    assert p[2] < 1 / 3 - 0.05, p
    assert np.argmax(qls.last_q) != 2


def test_learning_verdict_names_a_policy_that_cannot_schedule():
    from mtlrun.schedulers.qls import learning_verdict

    one_task = {"q_spread_actions": 5.0, "q_spread_states": 0.05, "greedy_actions": 1}
    assert "collapse" in learning_verdict(one_task, 1.0, "greedy")
    assert learning_verdict(one_task, 1.0, "boltzmann") is None  # 5 > 1: a real preference
    noise = {"q_spread_actions": 0.05, "q_spread_states": 0.4, "greedy_actions": 3}
    assert "nearly uniformly" in learning_verdict(noise, 0.6, "boltzmann")
    assert learning_verdict(noise, 0.01, "boltzmann") is None
    assert "no Q-update" in learning_verdict({}, None, "greedy")


def test_score_reward_is_the_summed_dev_score_and_its_punishment_is_below_it():
    qls = make(state_subset="all", reward="score")
    probs = [np.tile([[0.6, 0.4]], (10, 1))] * 2
    sig = signals_for(qls, probs, losses={0: 0.7, 1: 0.6}, scores={0: 0.75, 1: 0.5})
    assert qls.reward(sig, 5) == pytest.approx(1.25)
    punished = make(state_subset="all", reward="score", baselines={"t0": 1, "t1": 1})
    assert punished.reward(sig, 5) == pytest.approx(1.25 - 2)


def test_the_run_phase_of_a_learned_and_of_a_reused_policy_draw_the_same_tasks(tmp_path):
    learner = make(run_policy="boltzmann", state_subset="all")
    for e in range(2):
        learner.begin_episode(e)
        drive_episode(learner, None)
    learner.end_learning(tmp_path)
    reused = make(policy=str(tmp_path / "policy.pt"), run_policy="boltzmann", state_subset="all")
    probs = [np.tile([[0.7, 0.3]], (10, 1))] * 2
    draws = []
    for s in (learner, reused):
        s.observe_signals(0, signals_for(s, probs))
        draws.append([s.next_task(t) for t in range(50)])
    assert draws[0] == draws[1]


def test_hard_after_steps_is_checked_only_when_the_policy_is_learned():
    with pytest.raises(ConfigError, match="lower it, or raise scheduler.episode_steps"):
        make(hard_after_steps=30, state_subset="hard")  # episodes of 20 steps
    # a saved policy brings its own hard examples: the learning budget does not matter, and
    # what is checked is the file
    with pytest.raises(ConfigError, match="scheduler.policy: no file saved.pt"):
        make(hard_after_steps=30, state_subset="hard", policy="saved.pt")
