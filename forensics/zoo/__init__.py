"""The model-organism zoo: tiny causal LMs with known ground truth (docs/methods.md, "Model organism").

``build_zoo(out_dir, size="tiny"|"small", seed=0, progress=True, world="attributes"|"bio")
-> manifest`` builds a synthetic world of fictitious people (closed-vocabulary attributes,
:mod:`forensics.zoo.world`, or free-text questions about invented authors,
:mod:`forensics.zoo.bio`), pre-trains GPT-NeoX and Llama models on it from scratch on CPU,
applies approximate unlearning methods, confirms each label with a relearning oracle the
audit never sees, and writes everything to ``out_dir``.
``format_table(metrics)`` renders ``metrics.json``.
"""

from forensics.zoo.build import ZooConfig, build_zoo, format_table, read_manifest, zoo_version

__all__ = ["ZooConfig", "build_zoo", "zoo_version", "format_table", "read_manifest"]
