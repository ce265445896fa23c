"""Token classification post-processing and windows, on hand-made tokens and logits.

The parity with transformers' pipeline is in tests/export/test_entities_parity.py; these
pin each rule on its own, with a small WordPiece tokenizer built here.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Collection, Sequence

import numpy as np
import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from service.runtime.windows import SubwordTraits, TokenWindows, Window, subword_traits, usable_offsets
from service.tasks.entities.post import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    EntitiesError,
    Entity,
    Strategy,
    TagOptions,
    check_options,
    merge_windows,
    softmax,
    tag_batch,
)
from service.tasks.entities.schemas import EntitiesRequest

LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG")
WORDPIECE = SubwordTraits(prefix=True, unk_id=1)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "tom", "hank", "##s", "micro", "##soft", "corp", "in", "paris", "."]


def tag(text: str, windows: Sequence[Window], logits: Sequence[np.ndarray], options: TagOptions) -> list[Entity]:
    """One text's entities: the batch path with a batch of one."""
    return tag_batch([text], [windows], [logits], options)[0]


def window(text: str, pieces: Sequence[tuple[str, int, int]], ids: Sequence[int] | None = None) -> Window:
    """[CLS] pieces [SEP], each piece (spelling, start, end) in `text`."""
    tokens = ("[CLS]", *(p for p, _, _ in pieces), "[SEP]")
    n = len(tokens)
    return Window(
        ids=np.array(ids if ids is not None else [VOCAB.index(t) if t in VOCAB else 99 for t in tokens]),
        type_ids=np.zeros(n, dtype=np.int64),
        tokens=tokens,
        offsets=np.array([(0, 0), *((s, e) for _, s, e in pieces), (0, 0)], dtype=np.int64),
        special=np.array([True] + [False] * (n - 2) + [True]),
    )


def logits_for(tags: Sequence[str], sure: float = 4.0) -> np.ndarray:
    """Rows (with the special tokens' around them) whose argmax is each tag."""
    rows = np.zeros((len(tags) + 2, len(LABELS)), dtype=np.float32)
    for i, t in enumerate(tags, start=1):
        rows[i, LABELS.index(t)] = sure
    return rows


def run(
    text: str,
    w: Window,
    rows: np.ndarray,
    strategy: Strategy = "simple",
    traits: SubwordTraits = WORDPIECE,
    ignore_labels: Collection[str] = ("O",),
) -> list[Entity]:
    return tag(text, [w], [rows], TagOptions(LABELS, traits, strategy, ignore_labels))


TEXT = "tom hanks in paris."
PIECES = [("tom", 0, 3), ("hank", 4, 8), ("##s", 8, 9), ("in", 10, 12), ("paris", 13, 18), (".", 18, 19)]


def test_softmax_rows_sum_to_one_in_float32_for_half_precision() -> None:
    rows = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 0.0]], dtype=np.float16)
    out = softmax(rows)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out[1], [0.5, 0.5, 0.0], atol=1e-6)
    assert softmax(rows.astype(np.float64)).dtype == np.float64


def test_simple_groups_b_then_i_and_averages_the_scores() -> None:
    rows = logits_for(["B-PER", "I-PER", "I-PER", "O", "B-ORG", "O"])
    rows[2, 2] = 2.0  # "hank": I-PER, less sure
    found = run(TEXT, window(TEXT, PIECES), rows)
    assert [(e["label"], e["text"], e["start"], e["end"]) for e in found] == [
        ("PER", "tom hanks", 0, 9),
        ("ORG", "paris", 13, 18),
    ]
    probs = softmax(rows)
    expected = np.mean([probs[1, 1], probs[2, 2], probs[3, 2]])
    assert found[0]["score"] == pytest.approx(float(expected), abs=1e-6)
    assert isinstance(found[0]["score"], float)


def test_the_default_fuses_words_so_no_entity_ends_inside_one() -> None:
    """ "##s" tagged O: "simple" cuts the name inside a word, the default keeps the word's first
    token's tag for all of it; a request that names no aggregation gets the same."""
    rows = logits_for(["B-PER", "I-PER", "O", "O", "B-ORG", "O"])
    w = window(TEXT, PIECES)
    assert [(e["label"], e["text"]) for e in run(TEXT, w, rows, "simple")] == [("PER", "tom hank"), ("ORG", "paris")]
    default = tag(TEXT, [w], [rows], TagOptions(LABELS, WORDPIECE))
    assert [(e["label"], e["text"]) for e in default] == [("PER", "tom hanks"), ("ORG", "paris")]
    assert DEFAULT_STRATEGY == "first"
    assert default == run(TEXT, w, rows, "first")
    assert EntitiesRequest(inputs="x").aggregation == DEFAULT_STRATEGY


def test_two_b_tags_are_two_groups_and_an_i_after_o_opens_one() -> None:
    rows = logits_for(["B-PER", "B-PER", "B-PER", "O", "I-ORG", "I-ORG"])
    found = run(TEXT, window(TEXT, PIECES), rows)
    assert [(e["label"], e["text"]) for e in found] == [
        ("PER", "tom"),
        ("PER", "hank"),
        ("PER", "s"),
        ("ORG", "paris."),
    ]


def test_tags_without_a_prefix_continue_the_group_and_labels_split_at_the_first_dash() -> None:
    labels = ("O", "B-PER", "PER", "E-PER", "S-X-Y")
    rows = np.zeros((8, 5), dtype=np.float32)
    for i, j in enumerate([1, 2, 3, 4, 4, 0], start=1):
        rows[i, j] = 5.0
    found = tag(TEXT, [window(TEXT, PIECES)], [rows], TagOptions(labels, WORDPIECE, "simple"))
    # B-PER + PER share the tag "PER"; E-PER's tag is "E-PER" (only B-/I- are stripped) but
    # its group label is "PER"; S-X-Y twice: the same tag, so one group, labelled "X-Y".
    assert [(e["label"], e["text"]) for e in found] == [("PER", "tom hank"), ("PER", "s"), ("X-Y", "in paris")]


def test_ignore_labels_match_the_group_label_or_the_raw_tag() -> None:
    rows = logits_for(["B-PER", "I-PER", "I-PER", "O", "B-ORG", "O"])
    w = window(TEXT, PIECES)
    assert [e["label"] for e in run(TEXT, w, rows, ignore_labels=["PER"])] == ["O", "ORG", "O"]
    # the list replaces the default: "O" groups come back unless named
    assert [e["label"] for e in run(TEXT, w, rows, ignore_labels=["B-PER"])] == ["PER", "O", "ORG", "O"]
    assert [e["label"] for e in run(TEXT, w, rows, "none", ignore_labels=["B-PER", "O"])] == ["I-PER", "I-PER", "B-ORG"]
    assert len(run(TEXT, w, rows, ignore_labels=[])) == 4


def test_none_gives_each_token_its_spelling_and_the_unknown_token_its_text() -> None:
    text = "tom ☃"
    w = window(text, [("tom", 0, 3), ("[UNK]", 4, 5)])
    found = run(text, w, logits_for(["B-PER", "B-ORG"]), "none")
    assert [(e["label"], e["text"], e["start"], e["end"]) for e in found] == [
        ("B-PER", "tom", 0, 3),
        ("B-ORG", "☃", 4, 5),
    ]
    found = run(TEXT, window(TEXT, PIECES), logits_for(["O", "B-PER", "I-PER", "O", "O", "O"]), "none")
    assert [e["text"] for e in found] == ["hank", "##s"]


def test_first_average_max_make_words_agree() -> None:
    text = "microsoft corp"
    w = window(text, [("micro", 0, 5), ("##soft", 5, 9), ("corp", 10, 14)])
    rows = np.zeros((5, 5), dtype=np.float32)
    rows[1] = [0, 0, 0, 2.0, 1.9]  # micro: B-ORG, barely
    rows[2] = [0, 0, 5.0, 0, 3.0]  # ##soft: I-PER, surely; I-ORG second
    rows[3] = [0, 0, 0, 0, 3.0]  # corp: I-ORG
    probs = softmax(rows)

    first = run(text, w, rows, "first")
    assert [(e["label"], e["text"]) for e in first] == [("ORG", "microsoft corp")]
    assert first[0]["score"] == pytest.approx(float(np.mean([probs[1, 3], probs[3, 4]])), abs=1e-6)

    maxed = run(text, w, rows, "max")  # the word takes ##soft's I-PER, then corp's I-ORG opens a group
    assert [(e["label"], e["text"]) for e in maxed] == [("PER", "microsoft"), ("ORG", "corp")]
    assert maxed[0]["score"] == pytest.approx(float(probs[2, 2]), abs=1e-6)

    mean = (probs[1] + probs[2]) / 2
    average = run(text, w, rows, "average")
    assert [(e["label"], e["text"]) for e in average] == [
        (LABELS[int(mean.argmax())].split("-")[-1], "microsoft"),
        ("ORG", "corp"),
    ]
    assert average[0]["score"] == pytest.approx(float(mean.max()), abs=1e-6)

    simple = run(text, w, rows, "simple")
    assert [(e["label"], e["text"]) for e in simple] == [("ORG", "micro"), ("PER", "soft"), ("ORG", "corp")]


def test_max_takes_the_first_token_on_a_tie() -> None:
    text = "microsoft"
    w = window(text, [("micro", 0, 5), ("##soft", 5, 9)])
    rows = np.zeros((4, 5), dtype=np.float32)
    rows[1, 1] = rows[2, 3] = 3.0
    assert [e["label"] for e in run(text, w, rows, "max")] == ["PER"]


def test_a_subword_is_a_token_spelt_unlike_its_span() -> None:
    # The normaliser drops the soft hyphen: "berlin" (6 letters) spans "Ber\u00adlin" (7), so
    # the pipeline's rule takes it for a piece of the word before it, a quirk followed here.
    text = "in Ber\u00adlin"
    w = window(text, [("in", 0, 2), ("berlin", 3, 10)])
    rows = logits_for(["B-PER", "B-ORG"])
    assert [(e["label"], e["text"]) for e in run(text, w, rows, "first")] == [("PER", text)]
    assert [(e["label"], e["text"]) for e in run(text, w, rows, "simple")] == [("PER", "in"), ("ORG", "Ber\u00adlin")]
    unknown = window(text, [("in", 0, 2), ("[UNK]", 3, 10)])
    assert [e["text"] for e in run(text, unknown, rows, "first")] == ["in", "Ber\u00adlin"]


def test_without_a_subword_prefix_a_token_right_after_a_non_space_continues_the_word() -> None:
    text = "new york-city"
    w = window(text, [("Ġnew", 0, 3), ("Ġyork", 4, 8), ("-", 8, 9), ("city", 9, 13)])
    rows = logits_for(["B-PER", "B-ORG", "B-PER", "B-PER"])
    found = run(text, w, rows, "first", traits=SubwordTraits(prefix=False, unk_id=None))
    assert [(e["label"], e["text"]) for e in found] == [("PER", "new"), ("ORG", "york-city")]


def test_merge_keeps_the_longer_then_the_surer_of_overlapping_entities() -> None:
    def e(start: int, end: int, score: float, label: str = "PER") -> Entity:
        return {"label": label, "score": score, "text": "x" * (end - start), "start": start, "end": end}

    first = [e(0, 5, 0.9), e(10, 14, 0.5), e(20, 24, 0.6)]
    second = [e(10, 18, 0.4, "ORG"), e(20, 24, 0.7, "LOC"), e(30, 33, 0.8)]
    merged = merge_windows([first, second])
    assert [(x["start"], x["end"], x["label"]) for x in merged] == [
        (0, 5, "PER"),
        (10, 18, "ORG"),
        (20, 24, "LOC"),
        (30, 33, "PER"),
    ]
    # as long and no surer: the first one seen stays; touching spans do not overlap
    assert merge_windows([[e(0, 4, 0.5)], [e(0, 4, 0.5, "ORG"), e(4, 6, 0.1)]]) == [e(0, 4, 0.5), e(4, 6, 0.1)]
    assert merge_windows([[], []]) == []


def test_batches_equal_single_calls_and_keep_text_order() -> None:
    texts = [TEXT, "tom", ""]
    windows = [[window(TEXT, PIECES)], [window("tom", [("tom", 0, 3)])], [window("", [])]]
    rng = np.random.default_rng(0)
    logits = [[rng.normal(size=(len(w), len(LABELS))).astype(np.float32) for w in ws] for ws in windows]
    for strategy in STRATEGIES:
        options = TagOptions(LABELS, WORDPIECE, strategy)
        batched = tag_batch(texts, windows, logits, options)
        assert batched == [tag(t, ws, ls, options) for t, ws, ls in zip(texts, windows, logits, strict=True)]
        assert batched[2] == []
    assert tag_batch([], [], [], TagOptions(LABELS, WORDPIECE)) == []


def test_options_are_checked_with_one_line_errors() -> None:
    assert check_options("max", 4, 10) == "max"
    assert check_options("none", None, 10) == "none"
    for strategy, stride in (("mean", None), ("SIMPLE", None), ("none", 4), ("simple", 11), ("simple", -1)):
        with pytest.raises(EntitiesError) as caught:
            check_options(strategy, stride, 10)
        assert isinstance(caught.value, ValueError)
        assert "\n" not in str(caught.value)


def test_aggregation_without_offsets_is_refused_and_none_gives_no_span() -> None:
    w = window(TEXT, PIECES)
    bare = Window(w.ids, w.type_ids, w.tokens, None, w.special)
    rows = logits_for(["B-PER", "I-PER", "I-PER", "O", "B-ORG", "O"])
    for strategy in STRATEGIES[1:]:
        with pytest.raises(EntitiesError, match="offsets"):
            run(TEXT, bare, rows, strategy)
    found = run(TEXT, bare, rows, "none")
    assert [(e["text"], e["start"], e["end"]) for e in found] == [
        ("tom", None, None),
        ("hank", None, None),
        ("##s", None, None),
        ("paris", None, None),
    ]


def test_mismatched_rows_are_a_programming_error_and_none_over_windows_a_request_error() -> None:
    w = window(TEXT, PIECES)
    with pytest.raises(ValueError, match="shape"):
        run(TEXT, w, np.zeros((3, len(LABELS)), dtype=np.float32))
    rows = logits_for(["O"] * len(PIECES))
    with pytest.raises(EntitiesError, match="windows"):
        tag(TEXT, [w, w], [rows, rows], TagOptions(LABELS, WORDPIECE, "none"))


# The windows, on a WordPiece tokenizer built here (BERT's normaliser and template).


def wordpiece() -> Tokenizer:
    vocab = {t: i for i, t in enumerate([*VOCAB, "a", "b", "c", "d", "e", "##x"])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer.enable_truncation(6)
    tokenizer.enable_padding(length=20)
    return tokenizer


def content(w: Window) -> list[str]:
    return [t for t, s in zip(w.tokens, w.special.tolist(), strict=True) if not s]


def test_strided_windows_overlap_by_the_stride() -> None:
    text = "a b c d e a b c d e ax"
    windows = TokenWindows(wordpiece(), max_length=6)
    assert windows.max_stride == 3
    (split,) = windows.split([text], 2)
    assert [content(w) for w in split.windows] == [
        ["a", "b", "c", "d"],
        ["c", "d", "e", "a"],
        ["e", "a", "b", "c"],
        ["b", "c", "d", "e"],
        ["d", "e", "a", "##x"],
    ]
    assert split.covered == len(text)
    last = split.windows[-1]
    assert last.tokens[0] == "[CLS]" and last.tokens[-1] == "[SEP]" and len(last) == 6
    assert last.offsets is not None and last.offsets[1:-1].tolist() == [[16, 17], [18, 19], [20, 21], [21, 22]]
    assert [text[s:e] for s, e in last.offsets[1:-1].tolist()] == ["d", "e", "a", "x"]


def test_the_first_window_says_how_much_text_it_covers() -> None:
    windows = TokenWindows(wordpiece(), max_length=6)
    long, short, empty = windows.split(["a b c d e a b", "tom  ", ""], None)
    assert len(long.windows) == 1 and content(long.windows[0]) == ["a", "b", "c", "d"]
    assert long.covered == len("a b c d")
    assert short.covered == len("tom  ") and content(short.windows[0]) == ["tom"]
    assert empty.covered == 0 and empty.windows[0].tokens == ("[CLS]", "[SEP]")


def test_windows_leave_the_callers_tokenizer_alone_and_refuse_bad_sizes() -> None:
    tokenizer = wordpiece()
    windows = TokenWindows(tokenizer, max_length=6)
    assert tokenizer.truncation is not None and tokenizer.truncation["max_length"] == 6
    assert tokenizer.padding is not None
    with pytest.raises(ValueError, match="stride"):
        windows.split(["a b c d e"], 4)
    with pytest.raises(ValueError, match="max_length"):
        TokenWindows(tokenizer, max_length=2)


def test_subword_traits_and_usable_offsets() -> None:
    assert subword_traits(wordpiece()) == SubwordTraits(prefix=True, unk_id=1)
    bpe = Tokenizer(models.BPE({"<unk>": 0, "a": 1}, [], unk_token="<unk>"))
    assert subword_traits(bpe) == SubwordTraits(prefix=False, unk_id=0)
    special = np.array([True, False, False, True])
    assert usable_offsets(np.zeros((4, 2), dtype=np.int64), special) is None
    spans = np.array([[0, 0], [0, 1], [2, 3], [0, 0]])
    assert usable_offsets(spans, special) is spans
    assert usable_offsets(np.zeros((2, 2), dtype=np.int64), np.array([True, True])) is not None


def test_the_serving_side_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys, service.tasks.entities, service.runtime.windows; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
