"""The meta-evaluation bench (``forensics bench``): verdict accuracy, faithfulness and robustness over the zoo."""
