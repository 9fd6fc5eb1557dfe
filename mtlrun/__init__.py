"""mtlrun: an experiment runner for task scheduling in multi-task NLP."""

__version__ = "0.1.0"
