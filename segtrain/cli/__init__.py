"""Console entry points. Hydra and argument parsing live here only; everything below takes plain arguments."""
import sys

from ..errors import SegtrainError


def exit_with_error(program: str, error: SegtrainError):
    print(f"{program}: error: {error}", file=sys.stderr)
    sys.exit(2)
