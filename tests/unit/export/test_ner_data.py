"""The default tagger's data: sentences, spaCy spans made tags, the held-out split (spaCy
stood in for by a fake pipeline: these tests need neither spaCy nor a model)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from service.export.ner_data import (
    Labeller,
    align_tags,
    bio_tags,
    build_split,
    io_tags,
    label,
    only_types,
    review_sentences,
    split_sentences,
    trim_entity,
)


@dataclass
class _Span:
    start_char: int
    end_char: int
    label_: str


@dataclass
class _Doc:
    ents: list[_Span]


class _FakeNlp:
    """Every capitalised word after the first is a PERSON, "1994" a DATE, "Acme" an ORG."""

    def pipe(self, texts: Sequence[str], batch_size: int) -> Iterator[_Doc]:
        for text in texts:
            ents, at = [], 0
            for i, word in enumerate(text.split(" ")):
                start = text.index(word, at)
                at = start + len(word)
                bare = word.rstrip(".")
                kind = "ORG" if bare == "Acme" else "DATE" if bare == "1994" else "PERSON"
                if (i and bare[:1].isupper()) or bare == "1994":
                    ents.append(_Span(start, start + len(bare), kind))
            yield _Doc(ents)


FAKE = Labeller(_FakeNlp(), "0", "fake")


def test_tags_are_o_then_b_and_i_of_each_type() -> None:
    assert bio_tags(("PERSON", "GPE")) == ("O", "B-PERSON", "I-PERSON", "B-GPE", "I-GPE")


def test_io_tags_are_o_then_i_of_each_type() -> None:
    assert io_tags(("PERSON", "GPE")) == ("O", "I-PERSON", "I-GPE")


def test_a_trailing_possessive_is_trimmed() -> None:
    text = "Mel Brooks's film and Hanks' and Jones\u2019s and 's"
    assert trim_entity(text, 0, 12) == (0, 10)
    assert trim_entity(text, 22, 28) == (22, 27)
    assert trim_entity(text, 33, 40) == (33, 38)
    assert trim_entity(text, 0, 3) == (0, 3)
    assert trim_entity(text, 45, 47) == (45, 47)  # nothing would be left


def test_review_sentences_drop_markup_and_keep_sentences_of_the_word_range() -> None:
    reviews = ["A fine film.<br /><br />It   starred Tom Hanks in Paris! Too short. " + "word " * 50 + "end."]
    assert review_sentences(reviews, min_words=3, max_words=40) == [["A fine film.", "It starred Tom Hanks in Paris!"]]


def test_sentences_do_not_end_at_initials_or_abbreviations() -> None:
    text = "I saw Richard E. Grant in the U.S. last year. Mr. Smith was great! Was it? It was No. 1 in L.A. today."
    assert split_sentences(text) == [
        "I saw Richard E. Grant in the U.S. last year.",
        "Mr. Smith was great!",
        "Was it?",
        "It was No. 1 in L.A. today.",
    ]


def test_every_sub_token_of_an_entity_is_tagged_and_special_tokens_are_not() -> None:
    # "[CLS] tom hank ##s starred [SEP]" over "Tom Hanks starred"
    offsets = [(0, 0), (0, 3), (4, 8), (8, 9), (10, 17), (0, 0)]
    special = [True, False, False, False, False, True]
    ids = {tag: i for i, tag in enumerate(bio_tags(("PERSON",)))}
    tags = align_tags(offsets, special, [{"start": 0, "end": 9, "label": "PERSON"}], ids)
    assert tags == [-100, 1, 2, 2, 0, -100]
    # A token that starts before the entity (straddling it) is not part of it.
    assert align_tags(offsets, special, [{"start": 5, "end": 9, "label": "PERSON"}], ids) == [-100, 0, 0, 1, 0, -100]
    # IO tags: every token of the entity the same.
    io = {tag: i for i, tag in enumerate(io_tags(("GPE", "PERSON")))}
    assert align_tags(offsets, special, [{"start": 0, "end": 9, "label": "PERSON"}], io) == [-100, 2, 2, 2, 0, -100]


def test_only_types_leaves_out_sentences_with_another_type() -> None:
    rows = [
        {"text": "a", "entities": [{"start": 0, "end": 1, "label": "PERSON"}]},
        {"text": "b", "entities": [{"start": 0, "end": 1, "label": "ORG"}]},
        {"text": "c", "entities": []},
    ]
    assert [r["text"] for r in only_types(rows, ("PERSON",))] == ["a", "c"]


def test_label_gives_character_spans() -> None:
    (row,) = label(FAKE, ["We saw Tom Hanks's film in 1994."])
    found = [(row["text"][e["start"] : e["end"]], e["label"]) for e in row["entities"]]
    assert found == [("Tom", "PERSON"), ("Hanks", "PERSON"), ("1994", "DATE")]


def test_split_holds_out_whole_reviews_and_samples_empty_training_sentences() -> None:
    reviews = [f"Review {i} names Ann Lee here. Then nothing at all here. It was made by Acme." for i in range(40)]
    split = build_split(FAKE, reviews, ("PERSON",), heldout_reviews=5, train_rows=30, empty_share=0.5, seed=1, chunk=4)
    # Held out: every sentence of the first five reviews but those with an ORG.
    assert [r["text"] for r in split.heldout[:2]] == ["Review 0 names Ann Lee here.", "Then nothing at all here."]
    assert len(split.heldout) == 10
    assert split.heldout_reviews == 5
    assert not {r["text"] for r in split.train} & {"Review 0 names Ann Lee here.", "Review 4 names Ann Lee here."}
    assert len(split.train) == 30
    named = [r for r in split.train if r["entities"]]
    assert 0 < len(split.train) - len(named) < len(named)  # some, not all, entity-less sentences
    assert split.dropped == split.labelled // 3
    again = build_split(FAKE, reviews, ("PERSON",), heldout_reviews=5, train_rows=30, empty_share=0.5, seed=1, chunk=4)
    assert again == split
