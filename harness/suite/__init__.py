"""The harness's test suite, installed with the package: ``python -m pytest --pyargs harness``.

Every check (oracle, sum, batching rules, norms, clipped step, property suite, seeds) on every
registered method, third-party ones added with ``-p MODULE`` included; ``-m benchmark`` runs the
speed guard. Markers, options and Hypothesis profiles come from the plugin
(:mod:`harness.pytest_plugin`, loaded through the ``pytest11`` entry point).
"""
