"""unlearning-forensics: was the knowledge deleted, or only suppressed?

The package is offline by construction: it never contacts a model hub.
``forensics.audit(...)`` is :func:`forensics.core.pipeline.audit`.
"""

import os as _os

# Never reach a hub, whatever a dependency tries: models come from local folders only.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
_os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from forensics.core.errors import ForensicsInputError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["ForensicsInputError", "__version__", "audit"]


def audit(*args, **kwargs):
    """Audit an unlearned model against its original: :func:`forensics.core.pipeline.audit`
    (imported on first use: it pulls in torch)."""
    from forensics.core.pipeline import audit as run

    return run(*args, **kwargs)
