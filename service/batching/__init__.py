"""Dynamic batching: pure asyncio, no HTTP and no onnxruntime in here."""

from service.batching.batcher import Batcher, BatchObserver, NullObserver
from service.batching.policy import Item, Ticket, select_batch

__all__ = ["BatchObserver", "Batcher", "Item", "NullObserver", "Ticket", "select_batch"]
