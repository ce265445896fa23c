"""Tokenization alone: the tokens a model is fed for a text or a pair, without running it.
The same checks as every task up to the model (steps 1-5 of common.py); nothing is queued."""

from __future__ import annotations

import asyncio

from service.engine.tokenizing import INLINE_TOKENIZE_CHARS
from service.runtime.tokenizer import Token
from service.state import AppState
from service.tasks.common import Call, Texts, admit


async def tokenize(
    state: AppState, call: Call, texts: Texts, model_name: str | None, add_special_tokens: bool, truncate: bool
) -> tuple[str, list[list[Token]]]:
    admitted = admit(state, call, "tokenize", model_name, texts)
    encoder = admitted.model.encoder
    size = sum(len(text) for _, text in texts.strings())
    if size <= INLINE_TOKENIZE_CHARS:
        rows = encoder.tokens(texts.items, truncate, add_special_tokens)
    else:
        rows = await asyncio.to_thread(encoder.tokens, texts.items, truncate, add_special_tokens)
    return admitted.model.name, rows
