"""The default tagger's pieces on real packages: spaCy's pipeline as the labeller, the
MiniLM tokenizer's alignment of its spans, and a token-classification fine-tune (of a tiny
checkpoint) that the exporter takes, gated on entity F1."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, AutoTokenizer

from service.export.exporter import ExportOptions, export_checkpoint
from service.export.finetune_tokens import TokenTrainConfig, encode_rows, finetune_tokens
from service.export.ner_data import bio_tags, label, load_labeller, write_jsonl
from tests.tiny import make_checkpoint

TYPES = ("PERSON", "GPE", "DATE")
SENTENCE = "Tom Hanks's new film was shot in Paris in 1994."


def test_spacy_labels_obvious_entities_with_character_spans() -> None:
    labeller = load_labeller()
    assert labeller.version.startswith("3.")
    (row,) = label(labeller, [SENTENCE])
    found = {(SENTENCE[e["start"] : e["end"]], e["label"]) for e in row["entities"]}
    assert found == {("Tom Hanks", "PERSON"), ("Paris", "GPE"), ("1994", "DATE")}  # "'s" trimmed


def test_encode_rows_tags_every_sub_token_of_an_entity(tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "base", "bert", head=False)
    tokenizer = AutoTokenizer.from_pretrained(str(ckpt))
    entities = [{"start": 0, "end": 9, "label": "PERSON"}, {"start": 33, "end": 38, "label": "GPE"}]
    (item,) = encode_rows(tokenizer, [{"text": SENTENCE, "entities": entities}], bio_tags(TYPES), 64)
    tokens = tokenizer.convert_ids_to_tokens(item["input_ids"])
    tags = [bio_tags(TYPES)[t] if t >= 0 else None for t in item["labels"]]
    tagged = [(tok, tag) for tok, tag in zip(tokens, tags, strict=True) if tag not in ("O", None)]
    assert tagged[0] == ("tom", "B-PERSON")
    assert [tag for _, tag in tagged[1:-1]] == ["I-PERSON"] * (len(tagged) - 2)  # "hanks" and its sub-tokens
    assert tagged[-1] == ("paris", "B-GPE")
    assert tags[0] is None and tags[-1] is None  # [CLS], [SEP]
    cut = encode_rows(tokenizer, [{"text": SENTENCE, "entities": entities}], bio_tags(TYPES), 6)
    assert len(cut[0]["input_ids"]) == len(cut[0]["labels"]) == 6


def test_finetuned_tagger_exports_with_its_tags_and_an_entity_f1(tmp_path: Path) -> None:
    base = make_checkpoint(tmp_path / "base", "bert", head=False)
    rows = [
        {"text": f"{name} lives in {place}.", "entities": [{"start": 0, "end": len(name), "label": "PERSON"}]}
        for name in ("Ann", "Bob Lee", "Maria", "Tom Hanks")
        for place in ("a house", "the town")
    ]
    cfg = TokenTrainConfig(labels=bio_tags(TYPES), batch_size=4, freeze_embeddings=True, frozen_layers=1)
    seconds = finetune_tokens(base, tmp_path / "ckpt", rows, cfg)
    assert seconds > 0
    config = AutoConfig.from_pretrained(str(tmp_path / "ckpt"))
    assert config.architectures == ["BertForTokenClassification"]
    assert [config.id2label[i] for i in range(len(cfg.labels))] == list(bio_tags(TYPES))
    write_jsonl(rows, tmp_path / "eval.jsonl")
    manifest = export_checkpoint(
        ExportOptions(tmp_path / "ckpt", tmp_path / "out", "entities", eval_data=tmp_path / "eval.jsonl"),
        log=lambda _: None,
    )
    assert manifest.labels == list(bio_tags(TYPES))
    assert manifest.evaluation["eval_rows"] == len(rows)
    assert 0.0 <= float(manifest.evaluation["eval_entity_f1_fp32"]) <= 1.0
