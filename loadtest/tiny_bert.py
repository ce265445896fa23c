"""A near-free classifier for the front-end-bound row of `make bench`: a random BERT of 2
layers and hidden size 64 (fixed seed), exported by `bertserve export` (fp32). Its inference
costs almost nothing, so the HTTP front ends are the bound, as on a GPU.

  python -m loadtest.tiny_bert        # build it if missing, print the model folder
"""

from __future__ import annotations

from loadtest.bert_base import CONFIG, MAX_LENGTH
from loadtest.random_bert import RandomBert

NAME = "tiny-random"
MODEL = RandomBert(
    NAME,
    {**CONFIG, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128},
    ("--task", "classify", "--max-length", str(MAX_LENGTH), "--name", NAME),
    "tiny-bert",
)

if __name__ == "__main__":
    print(MODEL.ensure())
