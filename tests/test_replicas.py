"""ReplicatedLSTMModel against the serial MultiTaskModel it replicates: losses, gradients, eval
probabilities, and optimizer steps with per-replica clipping, on variable-length batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlrun.config import BertConfig, EmbeddingsConfig, LSTMConfig, OptimizerConfig
from mtlrun.errors import ConfigError
from mtlrun.models import Batch, build_model
from mtlrun.tasks.spec import Kind, Metric, Split, Task
from mtlrun.training.optimizers import TaskOptimizers
from mtlrun.training.replicas import (
    ReplicatedLSTMModel,
    check_replicable,
    clip_grad_norm_per_replica,
    stack_batches,
)

VOCAB = [f"w{i}" for i in range(30)]
SEEDS = (11, 12, 13)


def task(name: str, classes: int, kind: Kind = Kind.CLASSIFICATION) -> Task:
    empty = Split([], [])
    return Task(name, kind, [str(c) for c in range(classes)], Metric.ACCURACY, empty, empty, empty)


TASKS = [task("two", 2), task("three", 3)]  # heads of different sizes


def model_cfg(layers=1, bidirectional=True) -> LSTMConfig:
    return LSTMConfig(embeddings=EmbeddingsConfig(dim=6), hidden_size=5, num_layers=layers,
                      bidirectional=bidirectional, dropout=0.0)  # fmt: skip


def serial_models(cfg: LSTMConfig):
    return [build_model(cfg, VOCAB, TASKS, s) for s in SEEDS]


def batch(rng: np.random.Generator, lengths: list[int], classes: int) -> Batch:
    """Token ids 1.. at the first `length` positions of each row, 0 (padding) after."""
    width = max(lengths)
    ids = np.zeros((len(lengths), width), np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(1, len(VOCAB), n)
    labels = rng.integers(0, classes, len(lengths))
    return Batch(torch.from_numpy(ids), torch.tensor(lengths), torch.from_numpy(labels))


def step_batches(seed: int, tasks: list[int]) -> list[Batch]:
    """One batch per replica, with different widths and row counts (replica 1 has fewer)."""
    rng = np.random.default_rng(seed)
    shapes = [[7, 1, 4, 6], [3, 5], [2, 8, 8, 1]]
    return [batch(rng, n, TASKS[k].num_labels) for n, k in zip(shapes, tasks, strict=True)]


ARCHITECTURES = [(1, True), (2, True), (1, False)]


@pytest.mark.parametrize("layers,bidirectional", ARCHITECTURES)
def test_losses_and_gradients_equal_the_serial_models(layers, bidirectional):
    cfg = model_cfg(layers, bidirectional)
    serial = serial_models(cfg)
    replicated = ReplicatedLSTMModel(serial)
    tasks = [1, 0, 1]
    batches = step_batches(0, tasks)
    losses = replicated(tasks, stack_batches(batches))
    losses.sum().backward()
    for i, (model, k, b) in enumerate(zip(serial, tasks, batches, strict=True)):
        loss = model(k, b).loss
        loss.backward()
        torch.testing.assert_close(losses[i], loss, atol=1e-5, rtol=0)
        grads = replicated.replica_state_dict(i, grads=True)
        for name, p in model.named_parameters():
            if p.grad is None:  # the heads of the other task: no gradient in either
                assert grads[name] is None, name
            else:
                torch.testing.assert_close(grads[name], p.grad, atol=1e-5, rtol=1e-4)
    # the serial model is only the starting point: the replica holds copies
    assert replicated.embedding.data_ptr() != serial[0].encoder.embedding.weight.data_ptr()


def test_replicas_start_from_the_serial_models_weights():
    serial = serial_models(model_cfg(2))
    replicated = ReplicatedLSTMModel(serial)
    for i, model in enumerate(serial):
        state = replicated.replica_state_dict(i)
        assert state.keys() == model.state_dict().keys()
        assert all(torch.equal(state[n], v) for n, v in model.state_dict().items())
    assert not torch.equal(replicated.embedding[0], replicated.embedding[1])  # seeds differ


@pytest.mark.parametrize("layers,bidirectional", ARCHITECTURES)
def test_eval_probabilities_equal_the_serial_softmax(layers, bidirectional):
    serial = serial_models(model_cfg(layers, bidirectional))
    replicated = ReplicatedLSTMModel(serial)
    b = batch(np.random.default_rng(3), [9, 2, 5, 1, 9], classes=3)
    replicas = [2, 0]  # a subset, out of order
    probs, ce = replicated.evaluate(1, b, replicas)
    assert probs.shape == (2, 5, 3) and ce.shape == (2, 5)
    for r, i in enumerate(replicas):
        out = serial[i].eval()(1, b)
        torch.testing.assert_close(probs[r], out.example_log_probs.exp(), atol=1e-6, rtol=0)
        torch.testing.assert_close(ce[r], out.example_losses, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "optimizer",
    [OptimizerConfig(grad_clip=0.05),
     OptimizerConfig(name="adamw", weight_decay=0.1, grad_clip=0.05),
     OptimizerConfig(name="sgd", lr=0.5, momentum=0.9, grad_clip=0.05)],
    ids=["adam", "adamw", "sgd"],
)  # fmt: skip
def test_optimizer_steps_with_per_replica_clipping_equal_separate_ones(optimizer):
    """Three steps on changing tasks: a head's optimizer state advances only when its replica
    trained that task, and each replica's gradient is clipped by its own norm."""
    serial = serial_models(model_cfg())
    replicated = ReplicatedLSTMModel(serial)
    heads = [replicated.head_parameters(k) for k in range(len(TASKS))]
    joint = TaskOptimizers(optimizer, replicated.stacked_parameters(), heads, [], "shared", "grad")
    separate = [
        TaskOptimizers(optimizer, list(m.encoder.parameters()),
                       [m.task_parameters(k) for k in range(len(TASKS))], [], "shared", "grad")
        for m in serial
    ]  # fmt: skip
    ones = np.ones(len(TASKS))
    for t, tasks in enumerate([[1, 0, 1], [0, 0, 1], [1, 1, 0]]):
        batches = step_batches(t, tasks)
        joint.zero_grad()
        replicated(tasks, stack_batches(batches)).sum().backward()
        norms = clip_grad_norm_per_replica(replicated, optimizer.grad_clip)
        joint.step(t, sorted(set(tasks)), ones)
        for i, (model, opt, k, b) in enumerate(zip(serial, separate, tasks, batches, strict=True)):
            opt.zero_grad()
            model(k, b).loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(opt.parameters, optimizer.grad_clip)
            torch.testing.assert_close(norms[i], norm, atol=1e-6, rtol=1e-5)
            assert norm > optimizer.grad_clip  # clipping is active
            opt.step(t, [k], ones)
    for i, model in enumerate(serial):
        state = replicated.replica_state_dict(i)
        for name, value in model.state_dict().items():
            torch.testing.assert_close(state[name], value, atol=1e-6, rtol=1e-5)


def test_padding_rows_do_not_count():
    """stack_batches pads replica 1's two rows to four; its loss is the mean over two rows."""
    batches = step_batches(0, [0, 1, 0])
    stacked = stack_batches(batches)
    assert stacked.ids.shape == (3, 4, 8)
    assert stacked.lengths[1].tolist() == [3, 5, 0, 0]
    assert stacked.labels[1, 2:].tolist() == [-100, -100]


def test_unsupported_models_and_tasks_are_refused():
    with pytest.raises(ConfigError, match="needs model=lstm"):
        check_replicable(BertConfig(), TASKS)
    with pytest.raises(ConfigError, match="needs model.pooling=last"):
        check_replicable(LSTMConfig(pooling="max"), TASKS)
    with pytest.raises(ConfigError, match="needs classification tasks; tags are not"):
        check_replicable(LSTMConfig(), [*TASKS, task("tags", 3, Kind.TAGGING)])
    check_replicable(LSTMConfig(), TASKS)
