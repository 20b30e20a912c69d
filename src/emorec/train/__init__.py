"""Training: data in memory -> batch augmentation -> two-stage fine-tuning."""
