"""Per-task post-processing, vectorised over the batch in numpy."""
