from mtlrun.config import SyntheticTasksConfig
from mtlrun.tasks import Kind, load_tasks


def test_suite_shape():
    cfg = SyntheticTasksConfig()
    tasks = load_tasks(cfg, seed=0)
    classification = [t for t in tasks if t.kind == Kind.CLASSIFICATION]
    tagging = [t for t in tasks if t.kind == Kind.TAGGING]
    assert len(classification) >= 4 and len(tagging) >= 1
    sizes = [len(t.train) for t in classification]
    assert max(sizes) >= 10 * min(sizes)
    assert len(set(cfg.label_noise)) == len(cfg.label_noise)  # different noise per task
    for t in tagging:
        assert all(len(w) == len(y) for w, y in zip(t.train.tokens, t.train.labels, strict=True))
        assert any(t.label_names[y].startswith("B-") for ys in t.train.labels for y in ys)


def test_tasks_share_words_and_have_their_own():
    tasks = load_tasks(SyntheticTasksConfig(), seed=0)
    words = [{w for s in t.train.tokens for w in s} for t in tasks[:4]]
    shared = set.intersection(*words)
    assert any(w.startswith("s") for w in shared)  # the common lexicon
    assert all(any(w.startswith(f"t{k}_") for w in words[k]) for k in range(4))


def test_generated_from_the_seed():
    a = load_tasks(SyntheticTasksConfig(), seed=1)
    b = load_tasks(SyntheticTasksConfig(), seed=1)
    c = load_tasks(SyntheticTasksConfig(), seed=2)
    assert [t.train.tokens for t in a] == [t.train.tokens for t in b]
    assert [t.train.labels for t in a] == [t.train.labels for t in b]
    assert a[0].train.tokens != c[0].train.tokens


def test_label_noise_is_applied():
    clean = SyntheticTasksConfig(train_sizes=[2000], label_noise=[0.0], tagging_train_size=0)
    noisy = SyntheticTasksConfig(train_sizes=[2000], label_noise=[0.3], tagging_train_size=0)
    a, b = load_tasks(clean, 0)[0], load_tasks(noisy, 0)[0]
    assert a.train.tokens == b.train.tokens  # same texts: noise only flips labels
    flipped = sum(x != y for x, y in zip(a.train.labels, b.train.labels, strict=True)) / 2000
    assert 0.25 < flipped < 0.35
