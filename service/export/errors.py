class ExportError(Exception):
    """A problem with the user's input or a failed gate: reported as one line, exit code 2."""
