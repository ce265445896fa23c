"""`bertserve serve --model SOURCE`: a checkpoint folder, an exported model directory or a hub
id, turned into a model directory to serve. The task is read from the checkpoint (detect.py),
a hub id resolved by huggingface_hub (hub.py), and each checkpoint exported once, in a child
process, into a cache keyed by its content (cache.py, export.py). Nothing here imports torch:
the export runs in the child."""
