"""One run of `bertserve run-batch`: check the input (duplicate custom_ids refuse the job
before it starts), read what the output already holds (those lines are skipped), then answer
the rest with a bounded pool of workers, one output line written as each answer comes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from service.batch_jobs.lines import Bad, Done, Output, Request, count_and_check, failed, numbered, parse, read_done
from service.batch_jobs.progress import Progress

log = logging.getLogger("bertserve.run_batch")

Answer = Callable[[Request], Awaitable[tuple[bytes, bool]]]  # the output line, and whether it is an error

# Requests in flight: enough to keep a service's batches full without holding much of its
# queue (a quarter of a CPU model's default 1,024 items at one input a line). On 2 cores the
# service runs two sessions a model, each a batch of 32 at a time with the next one queued:
# 64 in flight sent 0.80 x the lines/s that wrk's c=256 got answered, 128 sent 0.91-0.99 x.
DEFAULT_CONCURRENCY = 128


@dataclass(frozen=True)
class Job:
    input: Path
    output: Path
    url: str | None = None  # None: in this process, on `models`
    models: Path | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    api_key: str | None = None
    bar: bool | None = None  # None: a bar on a terminal, plain lines elsewhere


def requests(path: Path, urls: frozenset[str], done: Done) -> Iterator[Request | Bad]:
    """The input's lines not yet answered, parsed one at a time."""
    for number, raw in numbered(path):
        item = parse(number, raw, urls)
        if item not in done:
            yield item


async def pump(items: Iterable[Request | Bad], answer: Answer, workers: int, out: Output, progress: Progress) -> None:
    """Answer every item with at most `workers` at once; a bad line's error is written at once.
    Reading waits while the workers are busy: the input is never read ahead further than that."""
    queue: asyncio.Queue[Request | None] = asyncio.Queue(maxsize=workers * 2)

    async def work() -> None:
        while (request := await queue.get()) is not None:
            try:
                line, error = await answer(request)
            except Exception:  # any failure is the line's, never the job's
                log.exception("line %d failed", request.line)
                line, error = failed(request, "internal", "the line could not be answered: see the log"), True
            out.write(line)
            progress.advance(error)

    tasks = [asyncio.create_task(work()) for _ in range(workers)]
    try:
        for item in items:
            if isinstance(item, Bad):
                out.write(failed(item, "invalid_line", item.message))
                progress.advance(True)
            else:
                await queue.put(item)
        for _ in tasks:
            await queue.put(None)
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


async def run(job: Job) -> str:
    """The job, to its end; its summary. Raises DuplicateId before anything is written."""
    from service.tasks.registry import routes

    urls = frozenset(routes())  # a line may name any model route
    total = count_and_check(job.input)
    done = read_done(job.output)
    skipped = len(done.ids) + len(done.lines)
    out = Output(job.output)
    try:
        if job.url is not None:
            progress = await _remote(
                job, requests(job.input, urls, done), out, lambda: Progress(total, skipped, bar=job.bar)
            )
        else:
            progress = await _local(
                job, requests(job.input, urls, done), out, lambda: Progress(total, skipped, bar=job.bar)
            )
    finally:
        out.close()
    return progress.close()


async def _remote(job: Job, items: Iterator[Request | Bad], out: Output, progress: Callable[[], Progress]) -> Progress:
    from service.batch_jobs.remote import Sender, connections

    assert job.url is not None
    shown = progress()
    http = connections(job.url, job.concurrency, job.api_key)
    try:
        await pump(items, Sender(http), job.concurrency, out, shown)
    finally:
        for connection in http:
            connection.close()
    return shown


async def _local(job: Job, items: Iterator[Request | Bad], out: Output, progress: Callable[[], Progress]) -> Progress:
    """The models load first; the progress (and its rate) starts once they serve."""
    from service.batch_jobs.local import Answerer, serving, settings_for, sorted_chunks

    assert job.models is not None
    async with serving(settings_for(job.models, job.concurrency)) as state:
        shown = progress()
        await pump(sorted_chunks(items), Answerer(state), job.concurrency, out, shown)
    return shown
