class SegtrainError(Exception):
    """A problem with the user's input (config, files, checkpoint): printed as one line, exit code 2."""


def one_line(error: BaseException) -> str:
    """An error as one line. One re-raised from a DataLoader worker carries the worker's traceback in its message
    ("Caught OSError in DataLoader worker process 0. Original Traceback ..."): the line is the worker's own
    exception, a SegtrainError's message as it is."""
    text = str(error).strip()
    if "SegtrainError: " in text:
        return text.rsplit("SegtrainError: ", 1)[1].splitlines()[0]
    if "Original Traceback" in text:  # the worker's exception is the traceback's last line
        return f"in a DataLoader worker: {text.splitlines()[-1].strip()}"
    first = text.splitlines()[0] if text else ""
    return first if isinstance(error, SegtrainError) else f"{type(error).__name__}: {first}"
