"""What an audit reads: fact and sequence sets (:mod:`~forensics.inputs.data`), public-format
importers (:mod:`~forensics.inputs.importers`), chat templates (:mod:`~forensics.inputs.chat`),
checkpoints loaded into TransformerLens (:mod:`~forensics.inputs.loading`,
:mod:`~forensics.inputs.families`) with a logit agreement check
(:mod:`~forensics.inputs.agreement`), and the audit's inputs loaded and validated together
(:mod:`~forensics.inputs.prepare`)."""
