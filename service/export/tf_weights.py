"""TensorFlow checkpoints: `tf_model.h5` as transformers' TF `save_pretrained` writes it, read
with h5py (TensorFlow is never imported) and loaded into the PyTorch model of the same class.

transformers 5 reads no TF weights, and the most common tutorial path to a fine-tuned BERT
still ends in a folder holding only `tf_model.h5`. The Keras names map onto PyTorch's through
one table per architecture below. Every PyTorch parameter must be filled exactly once, by a
weight of the right shape: a weight that is missing, left over or of the wrong shape is
refused by name. A layer is never left at its random initialisation, and a weight is never dropped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.export.errors import ExportError

TF_WEIGHTS = "tf_model.h5"

# How each kind of Keras layer names its weights, and what each becomes in PyTorch:
# keras leaf -> (torch leaf, transposed). A Keras Dense kernel is (in, out); nn.Linear's
# weight is (out, in). TF BERT's word embeddings are a plain `weight`; its position and
# segment embeddings are Keras Embedding layers (`embeddings`).
Leaves = dict[str, tuple[str, bool]]
DENSE: Leaves = {"kernel": ("weight", True), "bias": ("bias", False)}
NORM: Leaves = {"gamma": ("weight", False), "beta": ("bias", False)}
WORDS: Leaves = {"weight": ("weight", False)}
EMBEDDING: Leaves = {"embeddings": ("weight", False)}

# (Keras layer path, PyTorch module path, leaves); {n} is an encoder layer's index.
Row = tuple[str, str, Leaves]

BERT_ENCODER: tuple[Row, ...] = (
    ("embeddings/word_embeddings", "embeddings.word_embeddings", WORDS),
    ("embeddings/position_embeddings", "embeddings.position_embeddings", EMBEDDING),
    ("embeddings/token_type_embeddings", "embeddings.token_type_embeddings", EMBEDDING),
    ("embeddings/LayerNorm", "embeddings.LayerNorm", NORM),
    ("encoder/layer_._{n}/attention/self/query", "encoder.layer.{n}.attention.self.query", DENSE),
    ("encoder/layer_._{n}/attention/self/key", "encoder.layer.{n}.attention.self.key", DENSE),
    ("encoder/layer_._{n}/attention/self/value", "encoder.layer.{n}.attention.self.value", DENSE),
    ("encoder/layer_._{n}/attention/output/dense", "encoder.layer.{n}.attention.output.dense", DENSE),
    ("encoder/layer_._{n}/attention/output/LayerNorm", "encoder.layer.{n}.attention.output.LayerNorm", NORM),
    ("encoder/layer_._{n}/intermediate/dense", "encoder.layer.{n}.intermediate.dense", DENSE),
    ("encoder/layer_._{n}/output/dense", "encoder.layer.{n}.output.dense", DENSE),
    ("encoder/layer_._{n}/output/LayerNorm", "encoder.layer.{n}.output.LayerNorm", NORM),
)
POOLER: tuple[Row, ...] = (("pooler/dense", "pooler.dense", DENSE),)
DISTILBERT_ENCODER: tuple[Row, ...] = (
    ("embeddings/word_embeddings", "embeddings.word_embeddings", WORDS),
    ("embeddings/position_embeddings", "embeddings.position_embeddings", EMBEDDING),
    ("embeddings/LayerNorm", "embeddings.LayerNorm", NORM),
    ("transformer/layer_._{n}/attention/q_lin", "transformer.layer.{n}.attention.q_lin", DENSE),
    ("transformer/layer_._{n}/attention/k_lin", "transformer.layer.{n}.attention.k_lin", DENSE),
    ("transformer/layer_._{n}/attention/v_lin", "transformer.layer.{n}.attention.v_lin", DENSE),
    ("transformer/layer_._{n}/attention/out_lin", "transformer.layer.{n}.attention.out_lin", DENSE),
    ("transformer/layer_._{n}/sa_layer_norm", "transformer.layer.{n}.sa_layer_norm", NORM),
    ("transformer/layer_._{n}/ffn/lin1", "transformer.layer.{n}.ffn.lin1", DENSE),
    ("transformer/layer_._{n}/ffn/lin2", "transformer.layer.{n}.ffn.lin2", DENSE),
    ("transformer/layer_._{n}/output_layer_norm", "transformer.layer.{n}.output_layer_norm", NORM),
)
CLASSIFIER: tuple[Row, ...] = (("classifier", "classifier", DENSE),)
ROBERTA_HEAD: tuple[Row, ...] = (
    ("classifier/dense", "classifier.dense", DENSE),
    ("classifier/out_proj", "classifier.out_proj", DENSE),
)
DISTILBERT_HEAD: tuple[Row, ...] = (("pre_classifier", "pre_classifier", DENSE), *CLASSIFIER)


@dataclass(frozen=True)
class Architecture:
    """`main` is the Keras main layer's name, and the PyTorch attribute holding the encoder in
    the head classes; `heads`: class suffix -> (with a pooler, the head's rows outside it)."""

    prefix: str
    main: str
    encoder: tuple[Row, ...]
    heads: dict[str, tuple[bool, tuple[Row, ...]]]


_BERT_HEADS = {"Model": (True, ()), "ForSequenceClassification": (True, CLASSIFIER)}
_ROBERTA_HEADS = {"Model": (True, ()), "ForSequenceClassification": (False, ROBERTA_HEAD)}
_TOKENS = {"ForTokenClassification": (False, CLASSIFIER)}
ARCHITECTURES = {
    "bert": Architecture("Bert", "bert", BERT_ENCODER, {**_BERT_HEADS, **_TOKENS}),
    "distilbert": Architecture(
        "DistilBert",
        "distilbert",
        DISTILBERT_ENCODER,
        {"Model": (False, ()), "ForSequenceClassification": (False, DISTILBERT_HEAD), **_TOKENS},
    ),
    "roberta": Architecture("Roberta", "roberta", BERT_ENCODER, {**_ROBERTA_HEADS, **_TOKENS}),
    "xlm-roberta": Architecture("XLMRoberta", "roberta", BERT_ENCODER, {**_ROBERTA_HEADS, **_TOKENS}),
}
# transformers' TF RoBERTa (and XLM-RoBERTa) embeddings fix it at 1, whatever the config says.
ROBERTA_PADDING_INDEX = 1
AUTO_CLASSES = {
    "Model": "AutoModel",
    "ForSequenceClassification": "AutoModelForSequenceClassification",
    "ForTokenClassification": "AutoModelForTokenClassification",
}


@dataclass(frozen=True)
class KerasWeight:
    stored_name: str  # as in the file: "<model scope>/bert/embeddings/LayerNorm/gamma:0"
    value: np.ndarray


def check_config(model_type: str, config: dict[str, Any]) -> tuple[Architecture, str]:
    """What config.json alone can tell, before any loading: the table and head suffix (see
    `model_class`), and whether PyTorch would compute what TensorFlow did."""
    found = model_class(model_type, config.get("architectures"))
    pad = config.get("pad_token_id", ROBERTA_PADDING_INDEX)  # PyTorch's RobertaConfig default when unsaid
    if model_type in ("roberta", "xlm-roberta") and pad != ROBERTA_PADDING_INDEX:
        # TF RoBERTa numbers positions after a fixed padding index; PyTorch's after pad_token_id.
        raise ExportError(
            f"TF RoBERTa numbers positions after padding index {ROBERTA_PADDING_INDEX}, but config.json's "
            f"pad_token_id is {pad}: the PyTorch model would not compute what TensorFlow did"
        )
    return found


def model_class(model_type: str, architectures: list[str] | None) -> tuple[Architecture, str]:
    """The PyTorch class for the checkpoint's TF class (config.json names it without "TF"),
    and its head's suffix. No architecture named: the base model, whose check refuses a head's
    weights as left over."""
    arch = ARCHITECTURES.get(model_type)
    if arch is None:
        raise ExportError(f"{TF_WEIGHTS} of a {model_type!r} model is not supported: {', '.join(ARCHITECTURES)} are")
    name = (architectures or [f"{arch.prefix}Model"])[0].removeprefix("TF")
    head = name.removeprefix(arch.prefix)
    if not name.startswith(arch.prefix) or head not in arch.heads:
        known = ", ".join(f"TF{arch.prefix}{h}" for h in arch.heads)
        raise ExportError(f"{TF_WEIGHTS} of TF{name} is not supported: {known} are")
    return arch, head


def expected_weights(arch: Architecture, head: str, layers: int) -> dict[str, tuple[str, bool]]:
    """Keras name (under the model's scope, no ":0") -> (PyTorch parameter, transposed)."""
    pooled, head_rows = arch.heads[head]
    torch_main = "" if head == "Model" else f"{arch.main}."
    rows = [(f"{arch.main}/{k}", f"{torch_main}{t}", leaves) for k, t, leaves in arch.encoder]
    rows += [(f"{arch.main}/{k}", f"{torch_main}{t}", leaves) for k, t, leaves in (POOLER if pooled else ())]
    rows += list(head_rows)
    out: dict[str, tuple[str, bool]] = {}
    for keras, torch_path, leaves in rows:
        for n in range(layers) if "{n}" in keras else [0]:
            for keras_leaf, (torch_leaf, transposed) in leaves.items():
                out[f"{keras.format(n=n)}/{keras_leaf}"] = (f"{torch_path.format(n=n)}.{torch_leaf}", transposed)
    return out


def read_keras_weights(path: Path) -> dict[str, KerasWeight]:
    """Every weight the Keras weight lists name, by its name under the model's own scope
    (which carries a counter, e.g. tf_bert_model_1, when a session built several models)."""
    try:
        import h5py
    except ImportError as exc:
        raise ExportError(f"reading {TF_WEIGHTS} needs h5py: pip install 'bertserve[export]'") from exc
    out: dict[str, KerasWeight] = {}
    try:
        with h5py.File(path, "r") as f:
            for layer in _names(f.attrs, "layer_names", path):
                if layer not in f:
                    raise ExportError(f"{path} lists layer {layer} but holds no group for it")
                for stored in _names(f[layer].attrs, "weight_names", path):
                    if stored not in f[layer]:
                        raise ExportError(f"{path} lists weight {stored} but holds no data for it")
                    short = _short_name(stored)
                    if short in out:
                        raise ExportError(f"{path} holds {short} twice: {out[short].stored_name} and {stored}")
                    out[short] = KerasWeight(stored, np.asarray(f[layer][stored]))
    except OSError as exc:
        raise ExportError(f"{path} cannot be read as HDF5: {exc}") from exc
    if not out:
        raise ExportError(f"{path} holds no weights")
    return out


def _names(attrs: Any, key: str, path: Path) -> list[str]:
    if key not in attrs:
        raise ExportError(f"{path} has no Keras {key}: not a weights file as TF save_pretrained writes it")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in attrs[key]]


def _short_name(stored: str) -> str:
    """What transformers' own TF loader matches on: the name without the model's scope and ':0'."""
    name = stored.split("/", 1)[1] if "/" in stored else stored
    return name.removesuffix(":0")


def convert(
    weights: dict[str, KerasWeight],
    expected: dict[str, tuple[str, bool]],
    params: dict[str, tuple[int, ...]],
    owner: str,
) -> dict[str, np.ndarray]:
    """PyTorch parameter -> value; `params` the model's parameter shapes, `owner` its class in
    messages. The table must cover the model exactly, and the file must match the table."""
    uncovered = sorted(set(params) - {t for t, _ in expected.values()})
    unknown = sorted({t for t, _ in expected.values()} - set(params))
    if uncovered or unknown:
        which = f"{owner}'s {uncovered[0]}" if uncovered else f"{unknown[0]}, which {owner} lacks"
        raise ExportError(f"the {TF_WEIGHTS} name table does not fit this transformers' {owner}: {which}")
    scope = _scope(weights)
    left_over = [w.stored_name for name, w in weights.items() if name not in expected]
    if left_over:
        raise ExportError(f"{TF_WEIGHTS}: weight {left_over[0]} has no place in {owner}{_more(left_over)}")
    missing = [name for name in expected if name not in weights]
    if missing:
        name = missing[0]
        raise ExportError(
            f"{TF_WEIGHTS} has no weight {scope}{name}:0 ({owner}'s {expected[name][0]}){_more(missing)}: "
            "refusing to leave it at random"
        )
    out: dict[str, np.ndarray] = {}
    for name, (torch_name, transposed) in expected.items():
        weight = weights[name]
        want = params[torch_name][::-1] if transposed else params[torch_name]
        if tuple(weight.value.shape) != tuple(want):
            raise ExportError(
                f"{TF_WEIGHTS}: weight {weight.stored_name} has shape {tuple(weight.value.shape)} where "
                f"{owner} (config.json) needs {tuple(want)}"
            )
        if not np.issubdtype(weight.value.dtype, np.floating):
            raise ExportError(f"{TF_WEIGHTS}: weight {weight.stored_name} is {weight.value.dtype}, not floating point")
        value = weight.value.T if transposed else weight.value
        out[torch_name] = np.ascontiguousarray(value, dtype=np.float32)
    return out


def _scope(weights: dict[str, KerasWeight]) -> str:
    """The model's own scope, to name a missing weight as the file would have named it."""
    scopes = {w.stored_name.split("/", 1)[0] for w in weights.values() if "/" in w.stored_name}
    return f"{scopes.pop()}/" if len(scopes) == 1 else ""


def _more(names: list[str]) -> str:
    return f" (and {len(names) - 1} more)" if len(names) > 1 else ""


def load_tf_model(path: Path, model_type: str, config_json: dict[str, Any]) -> Any:
    """The PyTorch model of the checkpoint's own class (eager attention, eval mode), every
    parameter from `path/tf_model.h5`."""
    import torch
    import transformers

    arch, head = check_config(model_type, config_json)
    config = transformers.AutoConfig.from_pretrained(str(path))
    auto = getattr(transformers, AUTO_CLASSES[head])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = auto.from_config(config, attn_implementation="eager")
    params = dict(model.named_parameters())
    state = convert(
        read_keras_weights(path / TF_WEIGHTS),
        expected_weights(arch, head, int(config.num_hidden_layers)),
        {name: tuple(p.shape) for name, p in params.items()},
        type(model).__name__,
    )
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(torch.from_numpy(value))
    return model.eval()
