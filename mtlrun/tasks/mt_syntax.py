"""`tasks=mt_syntax`: translation as the target task with POS tagging and dependency parsing of
the English source language as auxiliary sequence-to-sequence tasks (the QLS paper §5.3,
Table 6, after Kiperwasser & Ballesteros 2018, "Scheduled Multi-Task Learning: From Syntax to
Translation", TACL 6).

The paper setting: WMT'14 English->German (4.5M pairs) with POS tagging and dependency parsing
of WSJ (Penn Treebank tags, Stanford dependencies). Scaled to our data:

- the translation task (primary) from `tasks=multi30k` (default, 29,000 pairs) or
  `tasks=wmt14_en_de` (`mt:`; that suite's keys nest under `multi30k:` / `wmt14_en_de:`);
- `pos`: English words -> their PTB (XPOS) tags, from UD English-EWT
  (`ud_english_ewt/en_ewt-ud-{train,dev,test}.conllu.gz`; 12,544 / 2,001 / 2,077 sentences);
  a symbol output: labels index `label_names` (the tags seen in train, sorted, then any tag
  seen only in dev/test); metric token accuracy;
- `parse`: English words -> their dependency tree (UD relations, subtypes kept) as a sequence
  of symbols (`parse_scheme`, below); metric token accuracy over the symbols.

Both auxiliary tasks read the syntactic words of CoNLL-U: multi-word token ranges (`3-4`) and
empty nodes (`8.1`) are skipped, so word i is the i-th syntactic word and HEAD indexes them.

How Kiperwasser & Ballesteros linearise the tree. We could not read their own section on it
(the searchable copies of the paper open only on its first page). The one statement we found
is secondary: Liu, Amini, Sachan & Cotterell 2023 ("Linear-Time Modeling of Linguistic
Structure: An Order-Theoretic Perspective", §6.3 Tagging-Based Parsing): "Li et al. (2018) and
Kiperwasser and Ballesteros (2018) predict the relative position of the dependent with respect
to its head in a sequence-to-sequence manner." So the default, `parse_scheme: relative_head`,
outputs one symbol per word: the signed offset from the word to its head and the relation,
`+1/nsubj` (head one word to the right), `-2/obj`, and `0/root` for the root (offset 0, as no
word heads itself); the relative positional encoding of Strzyz et al. 2019. It encodes every
tree, projective or not; scored position by position, its token accuracy is the labelled
attachment score when the output has one symbol per word. How they joined offset and label
into output tokens (one symbol, as here, or two) is our choice.
`parse_scheme: arc_standard` is the alternative of transition-based parsing as a sequence
(our choice, offered for comparison): the 2n arc-standard transitions (Nivre 2004) of the gold
tree, `SHIFT`, `LEFT-ARC_<rel>` (top of the stack heads the word below it),
`RIGHT-ARC_<rel>` (the word below heads the top), read off by the static oracle; only
projective trees have one, so non-projective sentences are dropped (counted in one log line;
288 of EWT's 12,544 train sentences). `linearise` / `delinearise` convert both ways.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mtlrun.errors import ConfigError, DataError
from mtlrun.tasks.sources import load_hub_split, local_dir
from mtlrun.tasks.spec import Kind, Metric, Split, Task
from mtlrun.tasks.text_files import file_digests, is_dir, read_lines, shown
from mtlrun.tasks.translation import (
    Multi30kConfig,
    Wmt14EnDeConfig,
    find_text,
    load_multi30k,
    load_wmt14_en_de,
)

log = logging.getLogger(__name__)

MT_SUITES = {"multi30k": load_multi30k, "wmt14_en_de": load_wmt14_en_de}
AUX = ("pos", "parse")
RELATIVE_HEAD, ARC_STANDARD = "relative_head", "arc_standard"
SCHEMES = (RELATIVE_HEAD, ARC_STANDARD)
SPLITS = ("train", "dev", "test")
UD_HUB = "universal-dependencies/universal_dependencies"
UD_HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
SHIFT, LEFT, RIGHT = "SHIFT", "LEFT-ARC_", "RIGHT-ARC_"


@dataclass
class TaskSizes:
    """The first N training examples of each task (null: all)."""

    mt: int | None = None
    pos: int | None = None
    parse: int | None = None


@dataclass
class MtSyntaxConfig:
    name: str = "mt_syntax"
    mt: str = "multi30k"  # the translation task: multi30k or wmt14_en_de (the keys below)
    multi30k: Multi30kConfig = field(default_factory=Multi30kConfig)
    wmt14_en_de: Wmt14EnDeConfig = field(default_factory=Wmt14EnDeConfig)
    aux: list[str] = field(default_factory=lambda: list(AUX))  # auxiliary tasks, in this order
    ud_path: str = "ud_english_ewt"  # under data_dir: en_ewt-ud-{train,dev,test}.conllu(.gz)
    parse_scheme: str = RELATIVE_HEAD  # relative_head or arc_standard
    max_train: TaskSizes = field(default_factory=TaskSizes)  # per task (CPU budgets)
    max_eval: int | None = None  # the first N examples of each dev and test split

    def __post_init__(self) -> None:
        if self.mt not in MT_SUITES:
            raise ConfigError(f"tasks.mt must be one of {list(MT_SUITES)} (got {self.mt!r})")
        if not self.aux or set(self.aux) - set(AUX) or len(set(self.aux)) < len(self.aux):
            raise ConfigError(f"tasks.aux: a non-empty list of distinct names from {list(AUX)} "
                              f"(got {self.aux})")  # fmt: skip
        if self.parse_scheme not in SCHEMES:
            raise ConfigError(f"tasks.parse_scheme must be one of {list(SCHEMES)} "
                              f"(got {self.parse_scheme!r})")  # fmt: skip
        for key, value in dataclasses.asdict(self.max_train).items():
            if value is not None and not value > 0:
                raise ConfigError(f"tasks.max_train.{key} must be > 0 or null (got {value})")
        if self.max_eval is not None and not self.max_eval > 0:
            raise ConfigError(f"tasks.max_eval must be > 0 or null (got {self.max_eval})")
        for suite in MT_SUITES:
            nested = getattr(self, suite)
            for key in ("max_train", "max_eval"):
                if getattr(nested, key) is not None:
                    where = "max_train.mt" if key == "max_train" else "max_eval"
                    raise ConfigError(f"tasks.{suite}.{key}: set tasks.{where} instead (one "
                                      "place for the sizes of every task)")  # fmt: skip


# --- CoNLL-U trees -----------------------------------------------------------------------------
@dataclass
class Tree:
    """A sentence's syntactic words with PTB tags and its dependency tree: heads[i] is the
    1-based index of word i+1's head, 0 for the root."""

    words: list[str]
    xpos: list[str]
    heads: list[int]
    deprels: list[str]


def _tree(path, rows: list[tuple[int, list[str]]]) -> Tree:
    n = len(rows)
    heads = []
    for position, (number, fields) in enumerate(rows, start=1):
        if fields[0] != str(position):
            raise DataError(f"{shown(path)}:{number}: word id {fields[0]!r}, expected "
                            f"{position} (ids count 1, 2, ... within a sentence)")  # fmt: skip
        if not fields[6].isdigit() or int(fields[6]) > n or int(fields[6]) == position:
            raise DataError(f"{shown(path)}:{number}: HEAD {fields[6]!r} is not 0 or the id of "
                            f"another word of this {n}-word sentence")  # fmt: skip
        heads.append(int(fields[6]))
    return Tree([f[1] for _, f in rows], [f[4] for _, f in rows], heads,
                [f[7] for _, f in rows])  # fmt: skip


def read_conllu_trees(path: Path) -> list[Tree]:
    """The sentences of a CoNLL-U file (plain or compressed) as Trees. Comments, multi-word
    token ranges and empty nodes are skipped; a malformed line is a DataError naming it."""
    trees: list[Tree] = []
    rows: list[tuple[int, list[str]]] = []
    for number, line in read_lines(path):
        if not line.strip():
            if rows:
                trees.append(_tree(path, rows))
                rows = []
            continue
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            raise DataError(f"{shown(path)}:{number}: a CoNLL-U line has 10 tab-separated "
                            f"fields, this one {len(fields)}")  # fmt: skip
        if "-" in fields[0] or "." in fields[0]:
            continue
        rows.append((number, fields))
    if rows:
        trees.append(_tree(path, rows))
    return trees


# --- linearisations ------------------------------------------------------------------------------
class NonProjective(ValueError):
    """A tree with crossing arcs: it has no arc-standard transition sequence."""


def is_projective(heads: Sequence[int]) -> bool:
    """No two arcs cross (with the root's arc from position 0): every word strictly between a
    head and its dependent descends from that head."""
    arcs = [(min(h, d), max(h, d)) for d, h in enumerate(heads, start=1)]
    for i, (a, b) in enumerate(arcs):
        for c, d in arcs[i + 1 :]:
            if a < c < b < d or c < a < d < b:
                return False
    return True


def relative_head_encode(heads: Sequence[int], deprels: Sequence[str]) -> list[str]:
    """One symbol per word: `<head - word:+d>/<rel>`, `0/<rel>` for the root."""
    return [f"{h - d:+d}/{r}" if h else f"0/{r}"
            for d, (h, r) in enumerate(zip(heads, deprels, strict=True), start=1)]  # fmt: skip


def relative_head_decode(symbols: Sequence[str]) -> tuple[list[int], list[str]]:
    """(heads, deprels) of a relative-head sequence; ValueError for a malformed symbol or a
    head outside the sentence. Makes no tree-shape checks (cycles, several roots)."""
    n, heads, deprels = len(symbols), [], []
    for d, symbol in enumerate(symbols, start=1):
        offset, sep, rel = symbol.partition("/")
        try:
            step = int(offset)
        except ValueError:
            raise ValueError(f"symbol {d} {symbol!r} is not <offset>/<relation>") from None
        head = 0 if step == 0 else d + step
        if not sep or not rel or not 0 <= head <= n:
            raise ValueError(f"symbol {d} {symbol!r}: head {head} outside 0..{n}")
        heads.append(head)
        deprels.append(rel)
    return heads, deprels


def arc_standard_encode(heads: Sequence[int], deprels: Sequence[str]) -> list[str]:
    """The 2n arc-standard transitions that build the tree (static oracle: LEFT-ARC when the
    top of the stack heads the word below it; RIGHT-ARC when the word below heads the top and
    the top has all its dependents; else SHIFT); NonProjective when there is none."""
    n = len(heads)
    missing = [0] * (n + 1)  # dependents not yet attached, per word (0 = the root)
    for h in heads:
        missing[h] += 1
    stack, buffer, actions = [0], 1, []
    while buffer <= n or len(stack) > 1:
        if len(stack) >= 2:
            s1, s0 = stack[-2], stack[-1]
            if s1 != 0 and heads[s1 - 1] == s0:
                actions.append(LEFT + deprels[s1 - 1])
                missing[s0] -= 1
                del stack[-2]
                continue
            if heads[s0 - 1] == s1 and missing[s0] == 0:
                actions.append(RIGHT + deprels[s0 - 1])
                missing[s1] -= 1
                stack.pop()
                continue
        if buffer > n:
            raise NonProjective("the tree is not projective: no arc-standard derivation")
        actions.append(SHIFT)
        stack.append(buffer)
        buffer += 1
    return actions


def arc_standard_decode(actions: Sequence[str], n: int) -> tuple[list[int], list[str]]:
    """(heads, deprels) built by running `actions` over n words; ValueError for an unknown
    action, one whose precondition fails, or a sequence that does not end in the final state
    (empty buffer, only the root on the stack)."""
    heads, deprels = [-1] * n, [""] * n
    stack, buffer = [0], 1
    for i, action in enumerate(actions):
        if action == SHIFT:
            if buffer > n:
                raise ValueError(f"action {i}: SHIFT with an empty buffer")
            stack.append(buffer)
            buffer += 1
            continue
        for prefix in (LEFT, RIGHT):
            if action.startswith(prefix) and len(action) > len(prefix):
                break
        else:
            raise ValueError(f"action {i}: unknown action {action!r}")
        if len(stack) < 2 or (prefix == LEFT and stack[-2] == 0):
            raise ValueError(f"action {i}: {action} needs two words on the stack")
        head, dependent = (stack[-1], stack[-2]) if prefix == LEFT else (stack[-2], stack[-1])
        heads[dependent - 1], deprels[dependent - 1] = head, action[len(prefix) :]
        stack.remove(dependent)
    if buffer <= n or stack != [0]:
        raise ValueError("the actions end before the tree is complete")
    return heads, deprels


def linearise(tree: Tree, scheme: str = RELATIVE_HEAD) -> list[str]:
    """The symbols of `tree` under `scheme` (NonProjective for arc_standard on a
    non-projective tree)."""
    encode = relative_head_encode if scheme == RELATIVE_HEAD else arc_standard_encode
    return encode(tree.heads, tree.deprels)


def delinearise(symbols: Sequence[str], n: int,
                scheme: str = RELATIVE_HEAD) -> tuple[list[int], list[str]]:  # fmt: skip
    """(heads, deprels) of n words from their symbols: the inverse of `linearise`."""
    if scheme == RELATIVE_HEAD:
        if len(symbols) != n:
            raise ValueError(f"{len(symbols)} symbols for {n} words")
        return relative_head_decode(symbols)
    return arc_standard_decode(symbols, n)


# --- the suite -----------------------------------------------------------------------------------
def _ud_local(directory: Path) -> tuple[dict[str, list[Tree]], list[Path]]:
    data, paths = {}, []
    for split in SPLITS:
        name = f"en_ewt-ud-{split}.conllu"
        path = find_text(directory, name)
        if path is None:
            raise DataError(f"UD English-EWT: missing {directory}/{name}(.gz); put the "
                            "UD_English-EWT release files there, or set data_dir=null to use "
                            "the hub")  # fmt: skip
        data[split] = read_conllu_trees(path)
        paths.append(path)
    return data, paths


def hub_trees(ds, what: str) -> list[Tree]:
    """Trees of a hub UD dataset (columns tokens, xpos, head, deprel); rows of multi-word
    tokens (head None) are left out."""
    trees = []
    for i, row in enumerate(ds):
        keep = [j for j, h in enumerate(row["head"]) if h is not None and str(h).isdigit()]
        words, xpos, heads, deprels = (
            [row[column][j] for j in keep] for column in ("tokens", "xpos", "head", "deprel")
        )
        tree = Tree(words, [x or "_" for x in xpos], [int(h) for h in heads], deprels)
        if any(h > len(keep) for h in tree.heads):
            raise DataError(f"{what} row {i}: a HEAD outside the sentence")
        trees.append(tree)
    return trees


def _ud_hub(ud_path: str) -> dict[str, list[Tree]]:
    out = {}
    for split, theirs in UD_HUB_SPLITS.items():
        what = f"UD English-EWT {theirs}"
        local = f"{ud_path}/en_ewt-ud-*"
        ds = load_hub_split(UD_HUB, "en_ewt", theirs, what=what, local=local,
                            revision="refs/convert/parquet")  # fmt: skip
        out[split] = hub_trees(ds, what)
    return out


def _symbol_task(name: str, data: dict[str, list[tuple[list[str], list[str]]]],
                 fingerprint: dict) -> Task:  # fmt: skip
    """A seq2seq task with a symbol output: label_names = the symbols of train, sorted, then
    those seen only in dev/test (never dropped)."""
    train_symbols = sorted({s for _, out in data["train"] for s in out})
    unseen = sorted({s for split in ("dev", "test") for _, out in data[split] for s in out}
                    - set(train_symbols))  # fmt: skip
    names = train_symbols + unseen
    index = {s: i for i, s in enumerate(names)}
    splits = [Split([w for w, _ in data[s]], [[index[x] for x in out] for _, out in data[s]])
              for s in SPLITS]  # fmt: skip
    return Task(name, Kind.SEQ2SEQ, names, Metric.TOKEN_ACCURACY, *splits,
                fingerprint=fingerprint, primary=False)  # fmt: skip


def _cut(examples: list, split: str, max_train: int | None, max_eval: int | None) -> list:
    limit = max_train if split == "train" else max_eval
    return examples if limit is None else examples[:limit]


def parse_examples(trees: dict[str, list[Tree]], scheme: str) -> dict[str, list]:
    """(words, symbols) per sentence and split; with arc_standard, non-projective sentences
    are dropped and counted in one log line."""
    data, dropped = {}, {}
    for split, sentences in trees.items():
        data[split], dropped[split] = [], 0
        for tree in sentences:
            try:
                data[split].append((tree.words, linearise(tree, scheme)))
            except NonProjective:
                dropped[split] += 1
    if any(dropped.values()):
        log.warning("parse (%s): dropped the non-projective sentences, which have no "
                    "arc-standard derivation: %s", scheme,
                    ", ".join(f"{s} {dropped[s]} of {len(trees[s])}" for s in trees))  # fmt: skip
    return data


def load_mt_syntax(cfg: MtSyntaxConfig, data_dir: str | None) -> list[Task]:
    mt_cfg = dataclasses.replace(getattr(cfg, cfg.mt), max_train=cfg.max_train.mt,
                                 max_eval=cfg.max_eval)  # fmt: skip
    tasks = MT_SUITES[cfg.mt](mt_cfg, data_dir)
    directory = local_dir(data_dir, cfg.ud_path)
    if directory is not None:
        if not is_dir(directory):
            raise DataError(f"no UD English-EWT data: {directory} does not exist; set "
                            "data_dir=... or null")  # fmt: skip
        trees, paths = _ud_local(directory)
        source = {"files": file_digests(paths)}
    else:
        trees, source = _ud_hub(cfg.ud_path), {"hub": UD_HUB, "config": "en_ewt"}
    for name in cfg.aux:
        if name == "pos":
            data = {s: [(t.words, t.xpos) for t in trees[s]] for s in SPLITS}
            settings = {"tagset": "xpos"}
        else:
            data = parse_examples(trees, cfg.parse_scheme)
            settings = {"scheme": cfg.parse_scheme}
        limit = getattr(cfg.max_train, name)
        data = {s: _cut(data[s], s, limit, cfg.max_eval) for s in SPLITS}
        fingerprint = {"source": source, **settings, "max_train": limit,
                       "max_eval": cfg.max_eval}  # fmt: skip
        tasks.append(_symbol_task(name, data, fingerprint))
    return tasks
