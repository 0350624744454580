"""Activation patching (the ``patching`` line) and its patching machinery."""
