"""The work behind every route, without HTTP: one module per task (classify, embed), each
running the same steps in the same order (see `common.py`)."""
