"""The per-request baseline, as most tutorials write it: a FastAPI route that calls the
transformers pipeline once per request, on the fine-tuned PyTorch checkpoint.

Run: BASELINE_CHECKPOINT=.build/minilm-sentiment-checkpoint uvicorn loadtest.baseline_app:app
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline

app = FastAPI()
classifier = pipeline("text-classification", model=os.environ["BASELINE_CHECKPOINT"], device="cpu")


class Body(BaseModel):
    inputs: str


@app.post("/classify")
def classify(body: Body) -> list[dict[str, object]]:
    result: list[dict[str, object]] = classifier(body.inputs, truncation=True, max_length=256)
    return result
