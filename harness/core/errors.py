"""The errors the harness raises: each names the method, the case and what is wrong."""


class HarnessError(AssertionError):
    """Base of every check failure the harness reports (an AssertionError, so pytest shows it as one)."""


class MethodFailed(HarnessError):
    """The method raised while computing per-sample gradients."""


class MethodOutputError(HarnessError):
    """The method returned the wrong names, shapes or non-finite values."""


class MethodLeftState(HarnessError):
    """The method left hooks, ``.grad``, ``grad_sample`` or changed values behind on the model."""


class ToleranceError(HarnessError):
    """The method's per-sample gradients are farther from the reference than the bound allows."""


class MethodUnavailable(Exception):
    """The method cannot run in this environment (for example, a missing package); the test is skipped."""


class EveryExampleExpected(Exception):
    """Every drawn example of a property test failed as the support matrix expects: the test is
    an expected failure (the pytest plugin shows it as XFAIL with the rows' reasons)."""


class BatchingRuleFallback(HarnessError):
    """vmap fell back to the slow per-sample path for an operator with no batching rule."""


class UnexpectedFailure(AssertionError):
    """A cell the support matrix expects to fail failed, but not in the way the matrix says.

    Deliberately not a :class:`HarnessError`, so the strict xfail does not swallow it.
    """


class UnexpectedPass(AssertionError):
    """A drawn case the support matrix expects to fail passed: the row is stale (fixed upstream?)."""


class ModelBroken(Exception):
    """A registered model cannot run on its own inputs as the oracle runs it (float64, on the CPU):
    building it, drawing its batch, its forward, its loss or the backward raised, or the batch is
    malformed. Every test on the model fails with this one message, naming the model and the
    error, not a method.

    Deliberately not a :class:`HarnessError`, so a support-matrix row's strict xfail does not swallow it.
    """


#: The errors whose message says all a reader needs (what failed, where, by how much): the pytest
#: plugin reports a harness test that failed with one of them by its message, without the traceback.
SELF_EXPLAINING: tuple[type[Exception], ...] = (HarnessError, ModelBroken, UnexpectedFailure, UnexpectedPass)
