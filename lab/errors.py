"""The one exception type for bad user input (its message is a single clear line), and the integer check
the data modules share."""
import numbers


class LabError(ValueError):
    """Bad input: the message names the bad value and the allowed values."""


class DivergenceError(LabError):
    """Training diverged (a non-finite or exploding loss, gradient, parameter or optimiser state).

    Raised before anything bad is written: the run folder keeps its last good checkpoint."""

    def __init__(self, step: int, term: str, detail: str):
        self.step, self.term, self.detail = int(step), term, detail
        super().__init__(f"training diverged at step {step}: {term} {detail}")


def check_int(name: str, value, low: int, high: int | None = None) -> int:
    """``value`` as an int if it is an integer (not a bool) in ``low..high``, else a one-line LabError naming
    ``name``, the allowed range and the value (shortened)."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low
            or (high is not None and value > high)):
        allowed = f"an integer >= {low}" + ("" if high is None else f" (at most {high:_})")
        r = repr(value)
        raise LabError(f"{name} must be {allowed}, got {r if len(r) <= 60 else r[:57] + '...'}")
    return int(value)
