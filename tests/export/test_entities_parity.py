# ruff: noqa: RUF001 (the sentences mix scripts and typographic marks on purpose)
"""Token classification in numpy against transformers' own pipeline.

A tagger built from the all-MiniLM-L6-v2 weights with a seeded random 9-label BIO head
(and a tiny RoBERTa under a byte-level BPE, for the other sub-word rule) runs in PyTorch;
its logits go through `service.tasks.entities` and must give what
`pipeline("token-classification", aggregation_strategy=S)` gives for every S: the same
groups, labels and offsets, scores within 1e-4. Long inputs are checked cut to their first
window (the pipeline's truncation) and split with a stride (the pipeline's `stride`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from service.runtime.windows import TokenWindows, Window
from service.tasks.entities.post import DEFAULT_STRATEGY, STRATEGIES, Entity, TagOptions, check_options, tag_batch
from tests.taggers import BIO_LABELS, make_bpe_tagger, make_minilm_tagger

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

AGGREGATED = STRATEGIES[1:]
SHORT_MAX, TOLERANCE = 32, 1e-4

SENTENCES = [
    "Tom Hanks starred in a film shot in Paris in 1994.",
    "Angela Merkel met Emmanuel Macron in Berlin on Tuesday.",
    "Apple Inc. reported revenue of $89.5 billion for Q3 2023.",
    "The United Nations Educational, Scientific and Cultural Organization is based in Paris.",
    "Dr. Jane O'Connor-Smith (MIT) co-authored the paper with Prof. Li Wei.",
    "Unbelievably, the Zürich-based conglomerate's CEO résumé costs $3,499.99!",
    "Microsoft and OpenAI announced a multibillion-dollar partnership.",
    "She flew from São Paulo to Reykjavík via Frankfurt am Main.",
    "Ángel Di María scored twice for Argentina at the Estadio Monumental.",
    "Владимир Набоков родился в Санкт-Петербурге в 1899 году.",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "東京タワーは1958年に完成しました。",
    "北京大学 and Tsinghua University are in Beijing.",
    "한국어 텍스트와 서울특별시에 대한 문장입니다.",
    "محمد صلاح يلعب لنادي ليفربول.",
    "The naïve café owner in İstanbul served crème brûlée.",
    "Straße, Fußball and Größe are German words with ß.",
    "The ﬁnal ﬂight of the Concorde was in 2003.",
    "Call +1 (555) 010-9999 or email info@example.com before 5:30 p.m.",
    "Version 3.11.7 of Python was released on 2023-12-04.",
    "Pneumonoultramicroscopicsilicovolcanoconiosis is a very long word.",
    "Antidisestablishmentarianism and floccinaucinihilipilification appear in dictionaries.",
    "The quick brown fox jumps over the lazy dog.",
    "I love New York, but Los Angeles has better weather.",
    "Barack Obama was born in Honolulu, Hawaii, on August 4, 1961.",
    "The Eiffel Tower, the Louvre and Notre-Dame attract millions.",
    "Nvidia's H100 GPUs power ChatGPT's training runs.",
    "¡Hola! ¿Cómo estás, Señor Martínez?",
    "Ça va? Très bien, merci. À bientôt!",
    "J.R.R. Tolkien wrote The Lord of the Rings.",
    "U.S.A., U.K. and E.U. officials met in Geneva.",
    "It's 25°C in Cairo and −5°C in Oslo today.",
    "The price rose 12.5% to €1,234.56 (about £1,050).",
    "Emoji test 🙂 with Elon Musk 🚀 and Tesla ⚡.",
    "Literal [MASK] and [UNK] tokens appear in this text about Google.",
    "   Leading and trailing spaces around Amazon   ",
    "Tabs\tand\nnewlines\r\nbetween Netflix and Hulu.",
    "Multiple     spaces    between    Sony    and    Nintendo.",
    "ALL CAPS SENTENCE ABOUT IBM AND INTEL CORPORATION.",
    "lowercase sentence about amazon and ebay in seattle.",
    "Hyphenated-words like state-of-the-art and well-known names.",
    "Shakespeare's Hamlet, Macbeth, and Othello are tragedies.",
    "The Mississippi River flows through Minneapolis and New Orleans.",
    "COVID-19 vaccines from Pfizer-BioNTech and Moderna were approved in 2020.",
    "Mr. Smith's dog, Rex, barked at 3 a.m.",
    "Zhang Wei and Nguyễn Văn An met Ólafur Arnalds in Hanoi.",
    "ReLU, GELU and SwiGLU are activation functions used in BERT and LLaMA.",
    "Ω, µ, ™, ©, ® and ½ are symbols; so are → and ∞.",
    "a",
    "Paris.",
    "...!!!???",
    "1234567890 0987654321 3.14159",
    "Kraków, Łódź and Gdańsk are Polish cities.",
    "The Ñandú lives in South America; the Œuvre was complète.",
    "Wikipedia’s “smart quotes” and em—dashes… are tricky.",
    # Characters the normaliser drops inside a word (zero-width space, soft hyphen, BEL, a
    # combining accent) make a token's span longer than its spelling: the pipeline then takes
    # "berlin" (spanning "Ber\u00adlin") for a sub-word of "in", and so must we.
    "Zero\u200bwidth and soft\u00adhyphen in Ber\u00adlin.",
    "\u200bParis and \ufeffLondon",
    "Control\x07char Mu\u0308\u0301nchen e\u0301te\u0301",
    "\u01c4emal and \u01c5emal",
    "  \u00a0Nonbreaking\u00a0space Tokyo",
]
# Over 32 tokens, most of them several windows long.
LONG_TEXTS = [
    " ".join(SENTENCES[0:8]),
    " ".join(SENTENCES[8:16]),
    " ".join(SENTENCES[16:26]),
    " ".join(SENTENCES[26:40]),
    "Pneumonoultramicroscopicsilicovolcanoconiosis " * 6 + "in London.",
    "Zürich Genève Bern Basel Lausanne Luzern Lugano " * 5,
    SENTENCES[3] + " " + SENTENCES[21],
]


@dataclass
class Tagger:
    model: Any
    directory: Path
    max_length: int
    pipes: dict[tuple[int, str], Any] = field(default_factory=dict)
    cache: dict[bytes, np.ndarray] = field(default_factory=dict)

    def windows(self, max_length: int) -> TokenWindows:
        return TokenWindows(Tokenizer.from_file(str(self.directory / "tokenizer.json")), max_length)

    def pipe(self, max_length: int, strategy: str) -> Any:
        from transformers import AutoTokenizer, pipeline

        if (max_length, strategy) not in self.pipes:
            tokenizer = AutoTokenizer.from_pretrained(str(self.directory), model_max_length=max_length)
            self.pipes[max_length, strategy] = pipeline(
                "token-classification", model=self.model, tokenizer=tokenizer, aggregation_strategy=strategy
            )
        return self.pipes[max_length, strategy]

    def logits(self, window: Window) -> np.ndarray:
        """The model on this window alone, as the pipeline runs it (batch size 1)."""
        key = window.ids.tobytes()
        if key not in self.cache:
            with torch.no_grad():
                out = self.model(
                    input_ids=torch.from_numpy(window.ids)[None],
                    attention_mask=torch.ones(1, len(window), dtype=torch.long),
                    token_type_ids=torch.from_numpy(window.type_ids)[None],
                )
            self.cache[key] = out.logits[0].numpy()
        return self.cache[key]

    def ours(
        self, texts: Sequence[str], strategy: str | None, max_length: int, stride: int | None = None
    ) -> list[list[Entity]]:
        """With the strategy None, the options' default."""
        tw = self.windows(max_length)
        splits = tw.split(texts, stride)
        windows = [s.windows for s in splits]
        logits = [[self.logits(w) for w in ws] for ws in windows]
        if strategy is None:
            options = TagOptions(BIO_LABELS, tw.traits)
        else:
            options = TagOptions(BIO_LABELS, tw.traits, check_options(strategy, stride, tw.max_stride))
        return tag_batch(texts, windows, logits, options)

    def theirs(self, texts: Sequence[str], strategy: str, max_length: int, **kwargs: Any) -> list[list[dict[str, Any]]]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [self.pipe(max_length, strategy)(text, **kwargs) for text in texts]


def assert_same(
    texts: Sequence[str], ours: list[list[Entity]], theirs: list[list[dict[str, Any]]], strategy: str
) -> None:
    worst = 0.0
    for text, mine, expected in zip(texts, ours, theirs, strict=True):
        got = [(e["label"], e["start"], e["end"], e["text"]) for e in mine]
        if strategy == "none":
            want = [(e["entity"], e["start"], e["end"], e["word"]) for e in expected]
        else:
            want = [(e["entity_group"], e["start"], e["end"], text[e["start"] : e["end"]]) for e in expected]
        assert got == want, text
        for e, x in zip(mine, expected, strict=True):
            worst = max(worst, abs(e["score"] - float(x["score"])))
            if strategy != "none":
                assert e["start"] is not None and text[e["start"] : e["end"]] == e["text"]
    assert worst <= TOLERANCE, f"largest |score - pipeline score| {worst:.2e} ({strategy})"


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Sentences of a few dozen tokens run several times faster on one torch thread than on
    threads that contend for two shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> Tagger:
    from transformers import AutoModelForTokenClassification

    directory = make_minilm_tagger(tmp_path_factory.mktemp("minilm-tagger"))
    model = AutoModelForTokenClassification.from_pretrained(str(directory)).eval()
    return Tagger(model, directory, 512)


@pytest.fixture(scope="module")
def bpe(tmp_path_factory: pytest.TempPathFactory) -> Tagger:
    from transformers import AutoModelForTokenClassification

    directory = make_bpe_tagger(tmp_path_factory.mktemp("bpe-tagger"), SENTENCES[:40])
    model = AutoModelForTokenClassification.from_pretrained(str(directory)).eval()
    return Tagger(model, directory, 128)


@pytest.mark.parametrize("name", ["minilm", "bpe"])
def test_windows_are_the_pipeline_tokenizers(request: pytest.FixtureRequest, name: str) -> None:
    """The same windows as the pipeline's tokenizer: ids and offsets (byte-level offsets are
    trimmed once), cut to the first window or split with strides up to the largest."""
    from transformers import AutoTokenizer

    tagger: Tagger = request.getfixturevalue(name)
    hf = AutoTokenizer.from_pretrained(str(tagger.directory), model_max_length=SHORT_MAX)
    for stride in (None, 0, 7, SHORT_MAX - 3):
        splits = tagger.windows(SHORT_MAX).split(SENTENCES + LONG_TEXTS, stride)
        for text, split in zip(SENTENCES + LONG_TEXTS, splits, strict=True):
            extra = {"return_overflowing_tokens": True, "stride": stride} if stride is not None else {}
            encoded = hf(text, truncation=True, return_offsets_mapping=True, **extra)
            rows = encoded["input_ids"] if stride is not None else [encoded["input_ids"]]
            offsets = encoded["offset_mapping"] if stride is not None else [encoded["offset_mapping"]]
            assert [w.ids.tolist() for w in split.windows] == rows
            assert [[tuple(o) for o in w.offsets.tolist()] for w in split.windows if w.offsets is not None] == [
                [tuple(o) for o in row] for row in offsets
            ]


def test_the_set_is_varied(minilm: Tagger) -> None:
    """The random head gives entities of every type, several-token groups and ignored tokens."""
    found = [e for es in minilm.ours(SENTENCES, "simple", 512) for e in es]
    assert {e["label"] for e in found} == {"PER", "ORG", "LOC", "MISC"}
    assert sum(len(e["text"].split()) > 1 for e in found) >= 10
    none = [e for es in minilm.ours(SENTENCES, "none", 512) for e in es]
    tokens = sum(len(w) - 2 for s in minilm.windows(512).split(SENTENCES, None) for w in s.windows)
    assert 0.3 * tokens < len(none) < 0.9 * tokens, "the head should leave a fair share of tokens 'O'"
    assert any(e["text"].startswith("##") for e in none)
    assert any(e["text"] == "[MASK]" for e in none)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sentences(minilm: Tagger, strategy: str) -> None:
    ours = minilm.ours(SENTENCES, strategy, 512)
    assert_same(SENTENCES, ours, minilm.theirs(SENTENCES, strategy, 512), strategy)


@pytest.mark.parametrize("name", ["minilm", "bpe"])
def test_the_default_is_the_pipelines_first(request: pytest.FixtureRequest, name: str) -> None:
    """The default is a word strategy, "first": the pipeline's answer with it, on both
    sub-word rules, which "simple" is not on these sentences (it cuts words)."""
    tagger: Tagger = request.getfixturevalue(name)
    size = 512 if name == "minilm" else 128
    ours = tagger.ours(SENTENCES, None, size)
    assert DEFAULT_STRATEGY == "first"
    assert_same(SENTENCES, ours, tagger.theirs(SENTENCES, "first", size), "first")
    assert ours != tagger.ours(SENTENCES, "simple", size)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_long_inputs_cut_to_their_first_window(minilm: Tagger, strategy: str) -> None:
    texts = LONG_TEXTS + SENTENCES[:12]
    ours = minilm.ours(texts, strategy, SHORT_MAX)
    assert_same(texts, ours, minilm.theirs(texts, strategy, SHORT_MAX), strategy)
    for text, split, found in zip(texts, minilm.windows(SHORT_MAX).split(texts, None), ours, strict=True):
        assert split.covered is not None and split.covered <= len(text)
        assert all(e["end"] is not None and e["end"] <= split.covered for e in found)
        if len(split.windows[0]) < SHORT_MAX:
            assert split.covered == len(text)
    assert all(
        s.covered is not None and s.covered < len(t)
        for t, s in zip(LONG_TEXTS, minilm.windows(SHORT_MAX).split(LONG_TEXTS, None), strict=True)
    )


@pytest.mark.parametrize("stride", [0, 8, 20])
@pytest.mark.parametrize("strategy", AGGREGATED)
def test_long_inputs_with_a_stride(minilm: Tagger, strategy: str, stride: int) -> None:
    texts = LONG_TEXTS + SENTENCES[:4]
    ours = minilm.ours(texts, strategy, SHORT_MAX, stride)
    assert_same(texts, ours, minilm.theirs(texts, strategy, SHORT_MAX, stride=stride), strategy)


def test_batched_and_single_calls_agree(minilm: Tagger) -> None:
    texts = SENTENCES + LONG_TEXTS
    tw = minilm.windows(SHORT_MAX)
    for strategy in AGGREGATED:
        options = TagOptions(BIO_LABELS, tw.traits, strategy)
        splits = tw.split(texts, 8)
        batched = minilm.ours(texts, strategy, SHORT_MAX, 8)
        singles = [
            tag_batch([t], [s.windows], [[minilm.logits(w) for w in s.windows]], options)[0]
            for t, s in zip(texts, splits, strict=True)
        ]
        assert batched == singles
        assert [minilm.ours([t], strategy, SHORT_MAX, 8)[0] for t in texts[:5]] == batched[:5]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_bpe_without_a_subword_prefix(bpe: Tagger, strategy: str) -> None:
    assert not bpe.windows(128).traits.prefix
    ours = bpe.ours(SENTENCES, strategy, 128)
    assert_same(SENTENCES, ours, bpe.theirs(SENTENCES, strategy, 128), strategy)


@pytest.mark.parametrize("strategy", AGGREGATED)
def test_bpe_with_a_stride(bpe: Tagger, strategy: str) -> None:
    ours = bpe.ours(LONG_TEXTS, strategy, SHORT_MAX, 5)
    assert_same(LONG_TEXTS, ours, bpe.theirs(LONG_TEXTS, strategy, SHORT_MAX, stride=5), strategy)


def test_merging_windows_is_the_pipelines(minilm: Tagger) -> None:
    """On random overlapping spans, as the pipeline's own merge resolves them; it differs
    only where the first entity has an empty span, which it lists twice."""
    from service.tasks.entities.post import merge_windows

    pipeline = minilm.pipe(SHORT_MAX, "simple")
    rng = np.random.default_rng(0)
    for _ in range(300):
        found: list[list[Entity]] = [[] for _ in range(3)]
        for _ in range(int(rng.integers(1, 12))):
            start = int(rng.integers(1, 40))
            end = start + int(rng.integers(0, 8))
            score = float(rng.choice([0.25, 0.5, 0.75]))
            found[int(rng.integers(3))].append({"label": "PER", "score": score, "text": "", "start": start, "end": end})
        theirs = pipeline.aggregate_overlapping_entities([e for window in found for e in window])
        ours = merge_windows(found)
        first = min((e for window in found for e in window), key=lambda e: e["start"] or 0)
        if first["start"] == first["end"] and theirs[:1] * 2 == theirs[:2]:
            theirs = theirs[1:]
        assert ours == theirs
