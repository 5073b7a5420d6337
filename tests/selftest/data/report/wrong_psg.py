"""A deliberately wrong third-party method, to give the report's example data real failures.

    PYTHONPATH=tests/selftest/data/report python -m pytest -p wrong_psg ...

``my-wrong-method`` returns every sample the batch's summed gradient (as in
tests/selftest/test_installed_suite.py's plugin): right at B=1, wrong beyond.
"""

from harness import get_method, register_method


@register_method("my-wrong-method")
def my_wrong_method(case):
    grads = get_method("vmap")(case)
    return {name: g.sum(0, keepdim=True).expand_as(g) for name, g in grads.items()}
