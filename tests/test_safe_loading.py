"""Checkpoints and policy files are read with torch.load(weights_only=True), so a shared file never
runs code; every bad file gives one line naming it; a failed write gives its real cause and
leaves the previous file as it was. Real files and real failures (rlimits, signals), no mocks."""

import math
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter, OrderedDict, deque
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TAGGING, tiny_trainer

from mtlrun.atomic import remove_stale_temps, write_text_atomic
from mtlrun.errors import ConfigError, MtlrunError
from mtlrun.paths import config_dir
from mtlrun.schedulers import SCHEDULERS, TaskInfo
from mtlrun.schedulers.base import scheduler_rng
from mtlrun.schedulers.qls import POLICY_FORMAT
from mtlrun.training import checkpoint

STEPS = 4


def trainer_for(tmp: Path, cache: Path, *overrides):
    return tiny_trainer(tmp / "run", f"cache_dir={cache}", TAGGING, *overrides)


def same(a, b, where="state"):
    """Equal values of the same types and dtypes, all the way down (NaN equals NaN)."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        if a.dtype == object:
            same(list(a.ravel()), list(b.ravel()), where)
        else:
            assert a.tobytes() == b.tobytes(), where
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), where
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        assert getattr(a, "__dict__", {}) == getattr(b, "__dict__", {}), where  # _metadata
        for k in a:
            same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple | deque):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
        if isinstance(a, deque):
            assert a.maxlen == b.maxlen, where
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def qls_run(tmp_path_factory, cache):
    """A QLS trainer in its learning phase (DQN, replay buffer, numpy RNGs) after STEPS steps,
    and its real last.pt."""
    tmp = tmp_path_factory.mktemp("qls")
    tr = trainer_for(tmp, cache, "scheduler=qls")
    for t in range(STEPS):
        tr._train_step(t)
    path = tmp / "last.pt"
    checkpoint.save(path, tr._snapshot())
    return tr, path


@pytest.fixture(scope="module")
def last_pt(qls_run) -> Path:
    return qls_run[1]


# --- the codec ----------------------------------------------------------------------------------
def every_kind_of_value() -> dict:
    gen = np.random.default_rng(7)
    gen.random(3)
    legacy = np.random.RandomState(7)
    legacy.standard_normal()  # a cached gaussian in the state tuple
    meta = OrderedDict(w=torch.ones(2))
    meta._metadata = OrderedDict({"": {"version": 1}})
    dtypes = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
              "float16", "float32", "float64", "complex64", "complex128", "<U5", "S3",
              "datetime64[ns]", ">i4"]  # fmt: skip
    return {
        "arrays": {d: np.arange(6).astype(d).reshape(2, 3) for d in dtypes},
        "odd arrays": [
            np.float32(np.nan) * np.ones(3, np.float32),
            np.zeros((0, 3), np.uint32),
            np.array(5, np.uint64),
            np.arange(10)[::3],
            np.asfortranarray(np.eye(3)),
            np.array([(1, 2.5)], dtype=[("a", "<i4"), ("b", "<f8")]),
            np.array([None, (1, "x"), np.arange(2)], dtype=object),
        ],
        "scalars": [
            np.float64(np.nan),
            np.float32(1.5),
            np.uint64(2**64 - 1),
            np.int8(-3),
            np.bool_(True),
            np.str_("é"),
        ],
        "pcg64": gen.bit_generator.state,
        "mt19937": np.random.Generator(np.random.MT19937(3)).bit_generator.state,
        "legacy": legacy.get_state(),
        "python": [
            2**3000,
            -(2**70),
            1.5,
            math.inf,
            float("nan"),
            1 + 2j,
            b"\x00\xff",
            bytearray(b"ab"),
            None,
            True,
            "s",
        ],
        "containers": [
            {1, 2},
            {np.int64(3)},
            frozenset({"a"}),
            deque([1, np.int32(2)], maxlen=4),
            Counter("abca"),
            (1, (2, [3])),
            {(1, 2): "tuple key", 3: "int key"},
            {np.int64(4): "numpy key"},
            {"__mtlrun__": "a real key"},
        ],
        "tensors": [
            torch.arange(5),
            torch.nn.Parameter(torch.ones(2)),
            meta,
            torch.Size([2]),
            torch.float16,
            torch.device("cpu"),
        ],
    }


def test_every_kind_of_value_round_trips_exactly(tmp_path):
    state = every_kind_of_value()
    checkpoint.save(tmp_path / "c.pt", state)
    back = checkpoint.load(tmp_path / "c.pt")
    same(state, back)
    # a restored generator continues the same stream
    gen = np.random.default_rng()
    gen.bit_generator.state = back["pcg64"]
    original = np.random.default_rng(7)
    original.random(3)
    assert gen.random(4).tolist() == original.random(4).tolist()
    legacy = np.random.RandomState()
    legacy.set_state(back["legacy"])
    reference = np.random.RandomState(7)
    reference.standard_normal()
    assert legacy.standard_normal(3).tolist() == reference.standard_normal(3).tolist()


def test_the_file_needs_no_global_beyond_torch(tmp_path):
    checkpoint.save(tmp_path / "c.pt", every_kind_of_value())
    raw = torch.load(tmp_path / "c.pt", weights_only=True)  # refuses any numpy global
    assert raw["format"] == checkpoint.CHECKPOINT and raw["version"] == checkpoint.VERSION


def test_weights_only_is_what_loads(tmp_path):
    """A file with a pickled numpy array loads with plain torch.load but not here."""
    path = tmp_path / "numpy.pt"
    torch.save({"format": checkpoint.CHECKPOINT, "version": 1, "x": np.arange(3)}, path)
    assert torch.load(path, weights_only=False)["x"].tolist() == [0, 1, 2]
    with pytest.raises(MtlrunError, match="numpy.*never loaded for safety"):
        checkpoint.load(path)


def test_what_cannot_be_stored_is_refused_before_writing(tmp_path):
    for value in (Path("x"), np.random.default_rng(0), {"a": lambda: 0}):
        with pytest.raises(TypeError, match="cannot store"):
            checkpoint.save(tmp_path / "c.pt", {"x": value})
    assert list(tmp_path.iterdir()) == []


# --- real snapshots -----------------------------------------------------------------------------
def test_a_resumed_qls_trainer_continues_exactly(tmp_path, cache, qls_run):
    """The saved learning-phase snapshot, restored into a fresh trainer, trains on as the
    original does (wall-clock timings aside)."""
    original, path = qls_run
    fresh = trainer_for(tmp_path, cache, "scheduler=qls")
    snap = checkpoint.load(path)
    fresh._restore(snap)
    same(fresh._snapshot(), snap)
    for tr in (original, fresh):  # one after the other: they share torch's global generator
        checkpoint.set_rng_states(snap["rng"])
        for t in range(STEPS, STEPS + 2):
            tr._train_step(t)
    a, b = original._snapshot(), fresh._snapshot()
    for s in (a, b):
        s["progress"] = {k: v for k, v in s["progress"].items() if not k.endswith("_seconds")}
    same(b, a)


@pytest.mark.parametrize("scheduler", ["reinforce_policy", "dtp"])  # numpy scalars, arrays
def test_snapshots_round_trip_exactly(tmp_path, cache, scheduler):
    tr = trainer_for(tmp_path, cache, f"scheduler={scheduler}")
    for t in range(2):  # their steps are slow; two fill their states
        tr._train_step(t)
    snap = tr._snapshot()
    checkpoint.save(tmp_path / "last.pt", snap)
    same(checkpoint.load(tmp_path / "last.pt"), snap)


BASELINES = "scheduler.baselines={sent0: 0.8, sent1: 0.8, entities: 0.8}"
EXTRA = {"constant": ["scheduler.p=[0.3,0.3,0.4]"], "hand_crafted": ["scheduler.w=[1,1,1]"],
         "jean_explicit": [BASELINES], "jean_implicit": [BASELINES],
         "prioritize_easy": [BASELINES], "prioritize_hard": [BASELINES],
         "single": ["scheduler.task=sent0"]}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "scheduler",
    sorted(
        p.stem
        for p in (Path(config_dir()) / "scheduler").glob("*.yaml")
        if p.stem != "fixed_schedule"
    ),
)  # a fixed schedule needs a search run's file
def test_every_schedulers_snapshot_round_trips(tmp_path, cache, scheduler):
    tr = trainer_for(tmp_path, cache, f"scheduler={scheduler}", *EXTRA.get(scheduler, []))
    for t in range(STEPS):
        tr._train_step(t)
    snap = tr._snapshot()
    checkpoint.save(tmp_path / "last.pt", snap)
    same(checkpoint.load(tmp_path / "last.pt"), snap)


# --- bad files ----------------------------------------------------------------------------------
class Payload:
    """What a malicious file would hold: unpickling it creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def one_line_error(path: Path, match: str, expected=MtlrunError, **kwargs) -> str:
    with pytest.raises(expected) as e:
        checkpoint.load(path, **kwargs)
    message = str(e.value)
    assert str(path) in message and "\n" not in message, message
    assert re.search(match, message), message
    return message


def test_missing(tmp_path):
    one_line_error(tmp_path / "last.pt", r"^no checkpoint .*trainer\.checkpoints=true")


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (os.urandom(4096), "not a torch file"),
    (b"step,loss\n1,0.5\n", "not a torch file"),
    (b"PK\x03\x04" + os.urandom(300), "incomplete zip archive"),
])  # fmt: skip
def test_damaged(tmp_path, content, reason):
    path = tmp_path / "last.pt"
    path.write_bytes(content)
    one_line_error(path, rf"^{path}: not an mtlrun checkpoint \(truncated or damaged: {reason}")


def test_truncated_real_checkpoint(tmp_path, last_pt):
    data = last_pt.read_bytes()
    for size in (len(data) // 2, len(data) - 1, 100):
        path = tmp_path / f"cut{size}.pt"
        path.write_bytes(data[:size])
        one_line_error(path, r"not an mtlrun checkpoint \(truncated or damaged: incomplete zip")


def test_a_torch_file_that_is_not_ours(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"a": 1}, path)
    one_line_error(path, "not an mtlrun checkpoint .a torch file without mtlrun's format marker")
    torch.save(torch.zeros(3), path)
    one_line_error(path, "without mtlrun's format marker")


def test_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "new.pt"
    torch.save({"format": checkpoint.CHECKPOINT, "version": 2, "model": {}}, path)
    one_line_error(path, r"version 2, newer than this mtlrun reads \(1\); upgrade mtlrun")


@pytest.mark.parametrize("as_torch_zip", [False, True])
def test_a_malicious_file_does_not_run(tmp_path, as_torch_zip):
    marker, path = tmp_path / "pwned", tmp_path / "last.pt"
    pickle.loads(pickle.dumps(Payload(marker)))  # the payload is real: plain unpickling runs it
    assert marker.exists()
    marker.unlink()
    if as_torch_zip:
        torch.save({"format": checkpoint.CHECKPOINT, "version": 1, "x": Payload(marker)}, path)
        one_line_error(path, r"not an mtlrun checkpoint \(it would import posix\.system")
    else:  # the legacy (non-zip) torch format is a bare pickle: never unpickled at all
        path.write_bytes(pickle.dumps(Payload(marker), protocol=2))
        one_line_error(path, "truncated or damaged: not a torch file")
    assert not marker.exists()


def make_qls(**hparams):
    qls = SCHEDULERS["qls"]
    cfg = qls.Config(episodes=1, episode_steps=20, decision_every=5, hard_examples=4,
                     hard_after_steps=5, q_hidden=8, **hparams)  # fmt: skip
    infos = [TaskInfo(f"t{k}", 100, 10, "accuracy", n_dev=10) for k in range(2)]
    return qls(cfg, infos, 40, scheduler_rng(0, "qls"))


def test_policy_and_checkpoint_are_not_mixed_up(tmp_path, last_pt):
    make_qls().end_learning(tmp_path)  # writes policy.pt
    policy = tmp_path / "policy.pt"
    assert torch.load(policy, weights_only=True)["format"] == POLICY_FORMAT
    assert checkpoint.load(policy, format=POLICY_FORMAT)["tasks"] == ["t0", "t1"]
    one_line_error(policy, r"not an mtlrun checkpoint \(it is a QLS policy file\)$")
    with pytest.raises(ConfigError) as e:
        make_qls(policy=str(last_pt))
    assert str(e.value) == (
        f"scheduler.policy: {last_pt}: not a QLS policy file (it is an mtlrun checkpoint)"
    )
    reused = make_qls(policy=str(policy))  # the file itself is fine
    assert reused.learning_plan() is None


@pytest.mark.parametrize("content, match", [
    (b"", r"truncated or damaged: empty file\)$"),
    ({"format": POLICY_FORMAT, "version": 9}, r"version 9, newer than this mtlrun reads"),
    ({"format": "something else"}, r"without mtlrun's format marker"),
])  # fmt: skip
def test_bad_policy_files(tmp_path, content, match):
    path = tmp_path / "policy.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(ConfigError, match=rf"^scheduler\.policy: {path}: .*{match}"):
        make_qls(policy=str(path))


def test_a_malicious_policy_does_not_run(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "policy.pt"
    torch.save({"format": POLICY_FORMAT, "version": 1, "q": Payload(marker)}, path)
    with pytest.raises(ConfigError, match=r"^scheduler\.policy: .*it would import posix\.system"):
        make_qls(policy=str(path))
    assert not marker.exists()


# --- writes that fail ---------------------------------------------------------------------------
def run_python(code: str, *args) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc


def temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_a_write_past_the_file_size_limit_says_file_too_large(tmp_path):
    """RLIMIT_FSIZE makes write() fail with EFBIG (SIGXFSZ ignored): torch.save's own
    RuntimeError is replaced by the real cause, for a checkpoint and for a text file."""
    proc = run_python("""
        import resource, signal, sys
        from pathlib import Path
        import torch
        from mtlrun.atomic import write_text_atomic
        from mtlrun.errors import MtlrunError
        from mtlrun.training import checkpoint
        ckpt, text = Path(sys.argv[1]), Path(sys.argv[2])
        checkpoint.save(ckpt, {"x": torch.zeros(10)})
        write_text_atomic(text, "before\\n")
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        for write in (lambda: checkpoint.save(ckpt, {"x": torch.zeros(1 << 20)}),
                      lambda: write_text_atomic(text, "x" * (2 << 20))):
            try:
                write()
            except MtlrunError as e:
                print(e)
    """, tmp_path / "last.pt", tmp_path / "results.json")  # fmt: skip
    assert proc.stdout.splitlines() == [
        f"cannot write {tmp_path / 'last.pt'}: File too large",
        f"cannot write {tmp_path / 'results.json'}: File too large",
    ]
    assert checkpoint.load(tmp_path / "last.pt")["x"].tolist() == [0.0] * 10
    assert (tmp_path / "results.json").read_text() == "before\n"
    assert temps(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_says_permission_denied(tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        with pytest.raises(MtlrunError, match=r"^cannot write .*last\.pt: Permission denied$"):
            checkpoint.save(tmp_path / "ro" / "last.pt", {"x": 1})
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_an_interrupted_save_keeps_the_previous_file(tmp_path):
    """SIGALRM's handler raises KeyboardInterrupt 2 ms into saving 64 MiB: the interrupt comes
    out as itself, the previous checkpoint is intact and no temp file is left."""
    proc = run_python("""
        import signal, sys
        from pathlib import Path
        import torch
        from mtlrun.training import checkpoint
        path = Path(sys.argv[1])
        checkpoint.save(path, {"x": torch.zeros(10)})
        big = {"x": torch.ones(1 << 24)}
        def interrupt(*_):
            raise KeyboardInterrupt
        signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, 0.002)
        try:
            checkpoint.save(path, big)
            print("saved")
        except KeyboardInterrupt:
            print("KeyboardInterrupt")
    """, tmp_path / "last.pt")  # fmt: skip
    assert proc.stdout == "KeyboardInterrupt\n", proc.stderr
    assert checkpoint.load(tmp_path / "last.pt")["x"].tolist() == [0.0] * 10
    assert temps(tmp_path) == []


def test_stale_temps_of_a_killed_writer_are_removed(tmp_path):
    """A writer killed mid-write leaves `.<name>.<random>.tmp`; remove_stale_temps deletes
    such files, and nothing else."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from mtlrun.atomic import write_atomic
        def forever(f):
            while True:
                f.write(b"x" * 4096)
                f.flush()
                time.sleep(0.01)
        write_atomic(sys.argv[1], forever, mode="wb")
    """), str(tmp_path / "last.pt")])  # fmt: skip
    deadline = time.time() + 60
    while not temps(tmp_path) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [left] = temps(tmp_path)
    assert left.startswith(".last.pt.")
    keep = [tmp_path / "best.pt", tmp_path / "notes.tmp", tmp_path / ".hidden"]
    for p in keep:
        p.write_text("keep")
    (tmp_path / ".dir.tmp").mkdir()
    write_text_atomic(tmp_path / "results.json", "{}")  # a finished write leaves no temp
    assert remove_stale_temps(tmp_path) == [tmp_path / left]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".dir.tmp", "results.json", *(p.name for p in keep)]
    )
    assert remove_stale_temps(tmp_path / "absent") == []


def test_atomic_files_get_the_mode_of_any_new_file(tmp_path):
    """Not the temp file's private 0600: a results file reads like one `open` would make."""
    import os

    from mtlrun.atomic import write_text_atomic

    mask = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "results.md", "x")
        (tmp_path / "plain.md").write_text("x")
    finally:
        os.umask(mask)
    modes = [(tmp_path / n).stat().st_mode & 0o777 for n in ("results.md", "plain.md")]
    assert modes == [0o640, 0o640] and temps(tmp_path) == []
