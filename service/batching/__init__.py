"""Dynamic batching: pure asyncio, no HTTP and no onnxruntime in here."""

from service.batching.batcher import Batcher, BatchObserver, NullObserver
from service.batching.policy import Item, select_batch

__all__ = ["BatchObserver", "Batcher", "Item", "NullObserver", "select_batch"]
