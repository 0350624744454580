"""Probing, the library several evidence lines share: linear and MLP classifiers with
cross-validated strength (:mod:`forensics.probing.classifiers`), their batched torch solver
(:mod:`forensics.probing.batched`) and the leave-one-out memorisation probe against a
random-init twin (:mod:`forensics.probing.leave_one_out`, also the ``forensics memprobe``
command)."""
