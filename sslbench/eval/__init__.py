"""Evaluation protocols on a frozen or fine-tuned encoder."""
