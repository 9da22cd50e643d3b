"""cgcbench's harness: task interface, suites, dataset registry, runner, tracking and CLI."""

__version__ = "0.1.0"
