"""`bertserve run-batch`: a file of requests in OpenAI's batch format, answered line by line
into an output file in the same format, either by a running service (`--url`, at batch
priority) or in this process on a local model repository. It streams both files, resumes
from what the output already holds, and never stops for a bad line."""
