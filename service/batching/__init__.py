"""Dynamic batching: pure asyncio, no HTTP and no onnxruntime in here."""

from service.batching.batcher import Batcher, BatchObserver, NullObserver
from service.batching.policy import Item, Ticket, select_batch
from service.priorities import BATCH, INTERACTIVE, LEVELS, Priority

__all__ = [
    "BATCH",
    "INTERACTIVE",
    "LEVELS",
    "BatchObserver",
    "Batcher",
    "Item",
    "NullObserver",
    "Priority",
    "Ticket",
    "select_batch",
]
