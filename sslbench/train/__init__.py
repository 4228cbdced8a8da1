"""The one training loop shared by every method, and what it needs (device, optimizer, LR)."""
