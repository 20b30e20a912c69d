"""Evaluation: scores of checkpoints and exported models on splits and on whole photos, their
reports, and distillation's teacher pass (a model's probabilities written as ``votes.csv``)."""
