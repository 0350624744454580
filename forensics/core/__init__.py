"""The framework: the evidence contract (:mod:`~forensics.core.evidence`), the line registry
(:mod:`~forensics.core.registry`), the audit context that computes shared results once
(:mod:`~forensics.core.context`), line configs and profiles (:mod:`~forensics.core.config`,
:mod:`~forensics.core.profiles`), the runner (:mod:`~forensics.core.runner`), the verdict rule
(:mod:`~forensics.core.verdict`) and the pipeline that ties them into one audit
(:mod:`~forensics.core.pipeline`). See ``docs/architecture.md``."""
