"""How well /rerank ranks out of the box (tests/rerank_quality.py says how it is measured):

    python -m loadtest.rerank_quality --url http://127.0.0.1:8000 [--queries 200]

Prints top-1 rate and MRR over the sample.
"""

from __future__ import annotations

import argparse

from tests.rerank_quality import measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--model")
    parser.add_argument("--sentences", type=int, help="sentences after the query that make its passage (all)")
    args = parser.parse_args()
    q = measure(args.url, args.queries, args.candidates, args.model, args.sentences)
    print(f"{q.queries} queries x {q.candidates} candidates: top-1 {q.top1:.3f}, MRR {q.mrr:.3f}")


if __name__ == "__main__":
    main()
