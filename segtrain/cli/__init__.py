"""Console entry points. Hydra and argument parsing live here only; everything below takes plain arguments."""
import logging
import sys

from ..errors import SegtrainError


def one_line(error: BaseException) -> str:
    """An error as one line; a SegtrainError re-raised from a DataLoader worker (whose message carries the
    worker's traceback) as its original message."""
    text = str(error).strip()
    if "SegtrainError: " in text:
        text = text.rsplit("SegtrainError: ", 1)[1]
    first = text.splitlines()[0] if text else ""
    return first if isinstance(error, SegtrainError) else f"{type(error).__name__}: {first}"


def exit_with_error(program: str, error: BaseException):
    print(f"{program}: error: {one_line(error)}", file=sys.stderr)
    sys.exit(2)


def log_error_to_file(line: str) -> None:
    """The fatal error as the last line of the run's log file (segtrain.log), not again on the console."""
    record = logging.LogRecord("segtrain", logging.ERROR, __file__, 0, line, None, None)
    for handler in logging.getLogger().handlers + logging.getLogger("segtrain").handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def parse_key_values(argv, own_keys, usage: str, doc: str):
    """`KEY=VALUE` arguments split into this program's own keys (a dict) and config overrides (a list)."""
    own, overrides = {}, []
    for arg in argv:
        if arg in ("-h", "--help"):
            print(doc.strip())
            sys.exit(0)
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise SegtrainError(f"argument {arg!r} is not KEY=VALUE; {usage}")
        if key in own_keys:
            own[key] = value
        else:
            overrides.append(arg)
    if "ckpt" not in own:
        raise SegtrainError(f"ckpt=PATH is required; {usage}")
    return own, overrides
