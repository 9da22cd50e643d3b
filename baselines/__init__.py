"""Model adapters for cgcbench: one module per comparator system, all behind the task interface.

Adapters are registered by name in :mod:`benchmarks.registry`; import them from there
(``benchmarks.registry.build_model("pca-logreg", seed=0)``) rather than from this package.
"""
