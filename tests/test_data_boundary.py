"""Hostile input at the data boundary: every damaged, unreadable or misplaced user file (data,
pretrained vectors, a local model directory, the encode cache) is one DataError naming the path
and, where there is one, the line; through the `mtlrun` command, one line and exit status 2.

The files are real bad files: bytes flipped inside a valid gzip, archives cut short, modes
that deny access. Root ignores file modes, so the permission cases run their reading step in a
subprocess that permissions apply to (see `unprivileged`)."""

from __future__ import annotations

import bz2
import functools
import gzip
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY

from mtlrun.config import ConllTasksConfig
from mtlrun.errors import ConfigError, DataError
from mtlrun.models.embeddings import read_vectors
from mtlrun.models.pretrained import resolve_pretrained
from mtlrun.tasks import conll_suite, glue, treebank
from mtlrun.tasks.encode import check_cache_writable
from mtlrun.tasks.multidomain import load_domain
from mtlrun.tasks.text_files import find_file, read_lines

DATA = b"".join(b"%d\tline %d of a review with some words\n" % (i % 2, i) for i in range(2000))
TEST = b"1\tfine\n0\tpoor\n"


def flipped(data: bytes, at: int = 12) -> bytes:
    """`data` with 60 bytes inverted from `at`: past a gzip header (10 bytes), in the first
    compressed block."""
    return data[:at] + bytes(b ^ 0xFF for b in data[at : at + 60]) + data[at + 60 :]


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)  # the same bytes every time


def domain_dir(root: Path, train_name: str, train: bytes) -> Path:
    """A 16-domain data directory (fdu_mtl_16domain/) holding books' train and test files."""
    directory = root / "fdu_mtl_16domain"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / train_name).write_bytes(train)
    (directory / "books.task.test").write_bytes(TEST)
    return directory


# --- compressed files ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "train, message",
    [
        (flipped(gz(DATA)), r"corrupted gzip data \(Error -3 while decompressing"),
        (gz(DATA)[:-300], r"truncated gzip data \(Compressed file ended"),
        (b"plain text, not gzip\n", r"corrupted gzip data \(Not a gzipped file"),
    ],
    ids=["flipped", "truncated", "not-gzip"],
)
def test_damaged_gzip_names_the_file(tmp_path, train, message):
    directory = domain_dir(tmp_path, "books.task.train.gz", train)
    path = directory / "books.task.train.gz"
    with pytest.raises(DataError, match=f"^{path}: {message}"):
        load_domain(directory, "books", dev_size=2)


def test_damaged_xz_names_the_file(tmp_path):
    path = tmp_path / "mnli_dev_matched.jsonl.xz"
    record = {"sentence1": "a cat", "sentence2": "an animal", "gold_label": "entailment"}
    packed = lzma.compress((json.dumps(record) + "\n").encode() * 500)
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match=f"^{path}: truncated xz data"):
        glue.read_mnli(path)
    path.write_bytes(flipped(packed, len(packed) // 2))
    with pytest.raises(DataError, match=f"^{path}: corrupted xz data"):
        glue.read_mnli(path)
    path.write_bytes(lzma.compress(b'{"sentence1": "ok"}\n{"sentence1": "caf\xe9"}\n'))
    with pytest.raises(DataError, match=f"^{path}:2: not UTF-8 text"):
        glue.read_mnli(path)


def write_treebank(directory: Path) -> bytes:
    with zipfile.ZipFile(directory / "dependency_treebank.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("dependency_treebank/wsj_0001.dp", "Pierre\tNNP\t2\nVinken\tNNP\t0\n" * 500)
    return (directory / "dependency_treebank.zip").read_bytes()


def test_damaged_zip_names_the_archive_or_member(tmp_path):
    data = write_treebank(tmp_path)
    path = tmp_path / "dependency_treebank.zip"
    path.write_bytes(data[: len(data) - 40])  # the central directory is cut off
    with pytest.raises(DataError, match=f"^{path}: cannot read: not a valid zip archive"):
        treebank.read_ptb_files(tmp_path)
    start = data.index(b"wsj_0001.dp") + 20  # inside the member's deflated bytes
    path.write_bytes(data[:start] + bytes(b ^ 0xFF for b in data[start : start + 30])
                     + data[start + 30 :])  # fmt: skip
    with pytest.raises(DataError, match=rf"^{path}/dependency_treebank/wsj_0001\.dp: corrupted"):
        treebank.read_ptb_files(tmp_path)


# --- misplaced, vanished, empty and binary files ---------------------------------------------
def test_a_directory_where_a_file_belongs(tmp_path):
    directory = domain_dir(tmp_path, "books.task.test.unused", b"")
    (directory / "books.task.train").mkdir()
    with pytest.raises(DataError, match=f"^{directory}/books.task.train: is a directory"):
        load_domain(directory, "books", dev_size=2)
    with pytest.raises(DataError, match=f"^{tmp_path}: is a directory, not a file"):
        read_vectors(tmp_path, {"good"})


def test_a_file_that_vanishes_before_it_is_read(tmp_path):
    directory = domain_dir(tmp_path, "books.task.train", DATA)
    path = find_file(directory, "books.task.train")
    path.unlink()
    with pytest.raises(DataError, match=f"^{path}: no such file"):
        list(read_lines(path))


def test_empty_files(tmp_path):
    directory = domain_dir(tmp_path / "a", "books.task.train.gz", gz(b""))
    with pytest.raises(DataError, match=r"books\.task\.train\.gz: 0 examples"):
        load_domain(directory, "books", dev_size=2)
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_bytes(b"")
    with pytest.raises(DataError, match=r"SST-2/train\.tsv:1: header \[\] lacks"):
        glue.read_glue_tsv(tmp_path / "SST-2" / "train.tsv", "sst2")


def test_a_binary_file_given_as_text(tmp_path):
    binary = b"1\tgood\n0\tbad\n" + bytes(range(256)) * 4
    directory = domain_dir(tmp_path, "books.task.train", binary)
    with pytest.raises(DataError, match=r"books\.task\.train:3: binary data \(a NUL byte\)"):
        load_domain(directory, "books", dev_size=1)


def test_a_path_that_is_not_utf8(tmp_path):
    root = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9"))  # a Latin-1 directory name
    directory = domain_dir(root, "books.task.train.gz", flipped(gz(DATA)))
    with pytest.raises(DataError, match="corrupted gzip data") as caught:
        load_domain(directory, "books", dev_size=2)
    message = str(caught.value)
    assert "caf\\xe9/fdu_mtl_16domain/books.task.train.gz: " in message
    message.encode("utf-8")  # printable and writable as it is: no lone surrogates


# --- pretrained vectors ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "content, message",
    [
        (b"good 1 2 3\nbad 1 2\n", r":2: expected a word and 3 numbers .* got 2 numbers"),
        (b"3 3\ngood 1 2 3\nbad 1 x 3\n", r":3: 'x' in the vector of 'bad' is not a number"),
        (b"good 1 2 3\nbad 1 nan 3\n", r":2: the vector of 'bad' is not finite"),
    ],
    ids=["columns", "not-a-number", "nan"],
)
def test_malformed_vectors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "vectors.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=f"^{path}{message}"):
        read_vectors(path, {"good", "bad"})


def test_damaged_compressed_vectors_name_the_line_reached(tmp_path):
    lines = b"".join(b"w%d 0.1 0.2 0.3\n" % i for i in range(50_000))
    path = tmp_path / "vectors.txt.gz"
    path.write_bytes(gz(lines)[:-5000])
    with pytest.raises(DataError, match=rf"^{path}:\d+: truncated gzip data"):
        read_vectors(path, {"w1"})
    path = tmp_path / "vectors.txt.bz2"
    path.write_bytes(flipped(bz2.compress(lines)))
    with pytest.raises(DataError, match=rf"^{path}(:\d+)?: corrupted bzip2 data"):
        read_vectors(path, {"w1"})
    (tmp_path / "glove.zip").write_bytes(b"PK")
    with pytest.raises(DataError, match="a zip archive; unzip it"):
        read_vectors(tmp_path / "glove.zip", {"w1"})


# --- a local model directory -----------------------------------------------------------------
def model_dir(directory: Path) -> Path:
    """A directory with what save_pretrained writes, small and fake: config, weights, vocab."""
    from safetensors.numpy import save_file

    directory.mkdir()
    (directory / "config.json").write_text('{"model_type": "bert"}')
    save_file({"w": np.zeros(1000, np.float32)}, str(directory / "model.safetensors"))
    (directory / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    return directory


def test_local_model_directory_missing_or_damaged_files(tmp_path):
    path = model_dir(tmp_path / "m")
    assert resolve_pretrained(str(path)) == str(path)
    weights = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(weights[:-100])
    with pytest.raises(DataError, match=r"model\.safetensors: truncated"):
        resolve_pretrained(str(path))
    (path / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="no weights there"):
        resolve_pretrained(str(path))
    (path / "model.safetensors").write_bytes(weights)
    (path / "vocab.txt").unlink()
    with pytest.raises(ConfigError, match="no tokenizer files there"):
        resolve_pretrained(str(path))
    (path / "vocab.txt").write_text("[PAD]\n")
    (path / "config.json").write_text('{"model_type": ')
    with pytest.raises(DataError, match=r"config\.json:1: not valid JSON"):
        resolve_pretrained(str(path))


# --- errors that are bugs stay tracebacks; hub data keeps its fingerprint ---------------------
def test_programming_errors_are_not_turned_into_data_errors():
    with pytest.raises(TypeError):
        list(read_lines(None))


def test_hub_data_keeps_its_fingerprint(monkeypatch):
    rows = [(["a", "b"], ["X", "Y"])]
    monkeypatch.setattr(conll_suite, "_from_hub",
                        lambda *a, **k: {"train": rows, "dev": rows, "test": rows})  # fmt: skip
    (task,) = conll_suite.load_conll(ConllTasksConfig(tasks=["ner"]), None)
    assert task.fingerprint["files"] == {"hub": True}


# --- permissions -----------------------------------------------------------------------------
@functools.cache
def unprivileged() -> tuple[list[str], dict]:
    """(command prefix, subprocess options) that make file modes apply to a subprocess. As
    root: user 65534 when it can run this Python; else root without the two capabilities that
    bypass file modes (setpriv); else the test is skipped."""
    if os.geteuid() != 0:
        return [], {}
    probe = [sys.executable, "-c", "import mtlrun"]
    try:
        subprocess.run(probe, user=65534, group=65534, check=True, capture_output=True, cwd="/")
        return [], {"user": 65534, "group": 65534}
    except (OSError, subprocess.CalledProcessError):
        pass  # this Python lives where user 65534 cannot reach (under /root, say)
    setpriv = shutil.which("setpriv")
    drop = "-dac_override,-dac_read_search"
    prefix = [setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}", "--"] if setpriv else []
    if prefix and subprocess.run(prefix + probe, capture_output=True).returncode == 0:
        return prefix, {}
    pytest.skip("running as root: user 65534 cannot run this Python and setpriv cannot drop "
                "CAP_DAC_OVERRIDE, so file modes cannot be made to apply")  # fmt: skip


@pytest.fixture
def shared_tmp():
    """A temp directory under /tmp that user 65534 can enter (pytest's tmp_path is 0700)."""
    directory = Path(tempfile.mkdtemp(dir="/tmp"))
    directory.chmod(0o755)
    yield directory
    for d, subdirs, _ in os.walk(directory):
        for s in subdirs:
            os.chmod(os.path.join(d, s), 0o755)
    shutil.rmtree(directory)


def readable_tree(root: Path, writable: Path) -> None:
    for d, subdirs, files in os.walk(root):
        for s in subdirs:
            os.chmod(os.path.join(d, s), 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
    writable.mkdir(exist_ok=True)
    writable.chmod(0o777)


def run_unprivileged(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run `code` in Python where file modes apply; it prints the DataError and exits 3."""
    prefix, options = unprivileged()
    head = "import sys\nfrom pathlib import Path\nfrom mtlrun.errors import DataError\n"
    wrapped = f"{head}try:\n    {code}\nexcept DataError as e:\n    print(e)\n    sys.exit(3)\n"
    return subprocess.run([*prefix, sys.executable, "-c", wrapped, *args], capture_output=True,
                          text=True, cwd="/", **options)  # fmt: skip


def test_unreadable_data_directory_and_file(shared_tmp):
    unprivileged()
    directory = domain_dir(shared_tmp / "data", "books.task.train", DATA)
    readable_tree(shared_tmp, shared_tmp / "w")
    load = ("from mtlrun.tasks.multidomain import load_domain; "
            "load_domain(Path(sys.argv[1]), 'books', 1)")  # fmt: skip
    (directory / "books.task.train").chmod(0o000)
    proc = run_unprivileged(load, str(directory))
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.strip() == f"{directory}/books.task.train: permission denied"
    directory.chmod(0o000)
    proc = run_unprivileged(load, str(directory))
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.strip() == (
        f"{directory}: permission denied (needed to reach {directory}/books.task.train)"
    )


def test_cache_dir_not_writable(tmp_path, shared_tmp):
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match=rf"^cache_dir={tmp_path}/file/cache: not writable \("):
        check_cache_writable(tmp_path / "file" / "cache")
    assert check_cache_writable(tmp_path / "cache") == tmp_path / "cache"
    assert list((tmp_path / "cache" / "encoded").iterdir()) == []  # the probe is gone
    unprivileged()
    readable_tree(shared_tmp, shared_tmp / "w")
    (shared_tmp / "w" / "cache").mkdir(mode=0o555)
    (shared_tmp / "w" / "cache").chmod(0o555)
    proc = run_unprivileged(
        "from mtlrun.tasks.encode import check_cache_writable; check_cache_writable(sys.argv[1])",
        str(shared_tmp / "w" / "cache"),
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.strip() == (f"cache_dir={shared_tmp}/w/cache: not writable (Permission "
                                   "denied); set cache_dir=<a writable directory>")  # fmt: skip


# --- through the mtlrun command --------------------------------------------------------------
def start_mtlrun(args: list[str], cwd: Path, prefix=(), **options) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("mtlrun")
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "HOME": str(cwd)}
    return subprocess.Popen([*prefix, str(exe), *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)  # fmt: skip


def multidomain_args(root: Path) -> list[str]:
    return ["tasks=multidomain16", "tasks.domains=[books]", "tasks.dev_size=2",
            f"data_dir={root / 'data'}", f"cache_dir={root / 'w' / 'cache'}",
            f"hydra.run.dir={root / 'w' / 'run'}"]  # fmt: skip


@pytest.mark.slow
def test_mtlrun_reports_each_bad_input_in_one_line(tmp_path, shared_tmp):
    """A corrupted gzip, a data directory without permission, an unwritable cache_dir: exit
    status 2, one line on stderr, no traceback. The three runs go side by side: each spends
    its ~7 s of CPU importing, so two cores finish them in about half the time."""
    gzipped = domain_dir(tmp_path / "data", "books.task.train.gz", flipped(gz(DATA)))
    (tmp_path / "w").mkdir()
    (tmp_path / "file").write_text("")
    runs = {
        "gzip": (start_mtlrun(multidomain_args(tmp_path), tmp_path / "w"),
                 f"{gzipped}/books.task.train.gz: corrupted gzip data (Error -3"),
        "cache": (start_mtlrun([*TINY, f"cache_dir={tmp_path / 'file' / 'cache'}",
                                f"hydra.run.dir={tmp_path / 'run'}"], tmp_path),
                  f"cache_dir={tmp_path}/file/cache: not writable (a file is in the way); "
                  "set cache_dir=<a writable directory>"),
    }  # fmt: skip
    skipped = None
    try:
        prefix, options = unprivileged()
    except pytest.skip.Exception as e:
        skipped = str(e)
    else:
        locked = domain_dir(shared_tmp / "data", "books.task.train", DATA)
        readable_tree(shared_tmp, shared_tmp / "w")
        locked.chmod(0o000)
        proc = start_mtlrun(multidomain_args(shared_tmp), shared_tmp / "w", prefix, **options)
        runs["permission"] = (proc, f"{locked}: permission denied (needed to reach {locked}/")
    for case, (proc, expected) in runs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 2, f"{case}: {err}"
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mtlrun: error: "), f"{case}: {err}"
        assert expected in lines[0], f"{case}: {err}"
        assert "Traceback" not in out + err, case
    if skipped:
        pytest.skip(f"the permission case: {skipped}")
