"""A byte-level BPE tokenizer trained offline with the ``tokenizers`` library.

The zoo trains it on a separate "shadow" world of other invented names (see
``build.py``), so F, R and H names are spelt with the same syllable pieces rather than
F and R names merging into whole-name tokens that H names lack. It is wrapped as a
``transformers`` ``PreTrainedTokenizerFast`` with ``<pad>``, ``<unk>`` and ``<eos>`` so
every model folder carries a loadable tokenizer. Byte-level BPE is deterministic for a
given corpus. The tests and benchmarks reuse :func:`train_tokenizer` for their own
small checkpoints.
"""

from __future__ import annotations

SPECIAL_TOKENS = ["<pad>", "<unk>", "<eos>"]


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on ``texts`` with at most ``vocab_size`` tokens (the
    special tokens included), as a ``PreTrainedTokenizerFast`` with ``<pad>``, ``<unk>``, ``<eos>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")
