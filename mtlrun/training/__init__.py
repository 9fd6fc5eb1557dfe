"""Training: the loop, batching, evaluation, checkpoints and run logs."""
