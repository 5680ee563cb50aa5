"""The one exception type for bad user input: its message is a single clear line."""


class LabError(ValueError):
    """Bad input: the message names the bad value and the allowed values."""


class DivergenceError(LabError):
    """Training diverged (a non-finite or exploding loss, gradient, parameter or optimiser state).

    Raised before anything bad is written: the run folder keeps its last good checkpoint."""

    def __init__(self, step: int, term: str, detail: str):
        self.step, self.term, self.detail = int(step), term, detail
        super().__init__(f"training diverged at step {step}: {term} {detail}")
