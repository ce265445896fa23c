"""One folder per task (wire schemas, route, handler, post-processing) and the registry
that lists them. The steps every task shares are in common.py."""
