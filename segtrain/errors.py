class SegtrainError(Exception):
    """A problem with the user's input (config, files, checkpoint): printed as one line, exit code 2."""
