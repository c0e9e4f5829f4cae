"""JSON as segtrain writes it (metrics.json, reports, sweep summaries): strict, with NaN and infinities as null."""
import json
import math


def strict_json(value, **kwargs) -> str:
    """`value` as JSON text, NaN and infinities written as null (bare NaN is not JSON)."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), allow_nan=False, **kwargs)
