"""od/errors.py: every error od raises on bad input is an OdError (the CLI prints it as one line)."""
import od
from od import errors


def test_every_error_is_an_od_error_and_exported():
    kinds = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert len(kinds) >= 9 and all(issubclass(k, errors.OdError) for k in kinds)
    assert issubclass(errors.MissingImageError, errors.ImageError)
    for k in kinds:
        assert k.__name__ in od.__all__ and getattr(od, k.__name__) is k
