"""Console entry points. Hydra and argument parsing live here only; everything below takes plain arguments."""
import sys

from ..errors import SegtrainError


def exit_with_error(program: str, error: SegtrainError):
    print(f"{program}: error: {error}", file=sys.stderr)
    sys.exit(2)


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
