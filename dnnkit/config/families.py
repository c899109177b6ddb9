"""Each model family's own keys in a spec's ``[model]`` table: their typed configs and their readers."""

from __future__ import annotations

from dataclasses import dataclass

from dnnkit.config.tables import TableReader
from dnnkit.errors import SpecError

NORMS = ("none", "batch", "layer")


@dataclass(frozen=True)
class MLPConfig:
    units: tuple[int, ...] = (128, 64)
    norm: str = "none"


@dataclass(frozen=True)
class CNNConfig:
    conv: str = "2d"
    filters: tuple[int, ...] = (32, 64)
    kernel_size: tuple[int, ...] = (3, 3)
    strides: tuple[int, ...] = (1, 1)
    padding: str = "same"
    pool: str = "max"
    pool_size: int = 2
    batch_norm: bool = False
    global_pool: bool = False
    dense_units: tuple[int, ...] = (64,)


@dataclass(frozen=True)
class RNNConfig:
    input: str = "features"
    vocab_size: int | None = None
    embedding_dim: int = 32
    cell: str = "lstm"
    units: tuple[int, ...] = (64,)
    bidirectional: bool = False
    return_sequences: bool = False
    sequence_pooling: str = "mean"
    dense_units: tuple[int, ...] = ()
    attention: bool = False  # seq2seq: the decoder attends over the encoder's states (Luong, dot product)


@dataclass(frozen=True)
class TransformerConfig:
    input: str = "features"
    vocab_size: int | None = None
    d_model: int = 32
    num_blocks: int = 2
    num_heads: int = 4
    key_dim: int = 8
    ff_dim: int = 64
    norm: str = "pre"
    positional: str = "learned"
    pooling: str = "mean"
    causal: bool = False
    dense_units: tuple[int, ...] = ()


FamilyConfig = MLPConfig | CNNConfig | RNNConfig | TransformerConfig


def read_family(t: TableReader, family: str, input_shape: tuple[int, ...]) -> FamilyConfig:
    if family == "mlp":
        return MLPConfig(units=t.int_list("units", MLPConfig.units, allow_empty=False),
                         norm=t.choice("norm", NORMS, "none"))
    if family == "cnn":
        conv = t.choice("conv", ("1d", "2d"), "2d")
        want_rank = 3 if conv == "2d" else 2
        if len(input_shape) != want_rank:
            t.fail("input_shape", list(input_shape),
                   f"{want_rank} dimensions for a {conv} convolution "
                   f"({'height, width, channels' if conv == '2d' else 'steps, features'})")
        filters = t.int_list("filters", CNNConfig.filters, allow_empty=False)
        n = len(filters)
        return CNNConfig(
            conv=conv, filters=filters,
            kernel_size=t.int_list("kernel_size", 3, scalar_ok=True, length=n),
            strides=t.int_list("strides", 1, scalar_ok=True, length=n),
            padding=t.choice("padding", ("same", "valid"), "same"),
            pool=t.choice("pool", ("max", "avg", "none"), "max"),
            pool_size=t.integer("pool_size", 2),
            batch_norm=t.boolean("batch_norm", False),
            global_pool=t.boolean("global_pool", False),
            dense_units=t.int_list("dense_units", CNNConfig.dense_units))
    if family == "rnn":
        kind, vocab = _input_kind(t, input_shape, "an rnn")
        return RNNConfig(
            input=kind, vocab_size=vocab,
            embedding_dim=t.integer("embedding_dim", RNNConfig.embedding_dim) if kind == "tokens" else 32,
            cell=t.choice("cell", ("lstm", "gru"), "lstm"),
            units=t.int_list("units", RNNConfig.units, allow_empty=False),
            bidirectional=t.boolean("bidirectional", False),
            return_sequences=t.boolean("return_sequences", False),
            sequence_pooling=t.choice("sequence_pooling", ("mean", "max", "flatten"), "mean"),
            dense_units=t.int_list("dense_units", ()),
            attention=t.boolean("attention", False))
    # transformer
    kind, vocab = _input_kind(t, input_shape, "a transformer")
    return TransformerConfig(
        input=kind, vocab_size=vocab,
        d_model=t.integer("d_model", 32), num_blocks=t.integer("num_blocks", 2),
        num_heads=t.integer("num_heads", 4), key_dim=t.integer("key_dim", 8),
        ff_dim=t.integer("ff_dim", 64), norm=t.choice("norm", ("pre", "post"), "pre"),
        positional=t.choice("positional", ("learned", "sinusoidal"), "learned"),
        pooling=t.choice("pooling", ("mean", "cls"), "mean"),
        causal=t.boolean("causal", False),
        dense_units=t.int_list("dense_units", ()))


def _input_kind(t: TableReader, input_shape: tuple[int, ...], what: str) -> tuple[str, int | None]:
    """A sequence model's ``input`` (feature vectors or token ids) and its ``vocab_size``."""
    kind = t.choice("input", ("features", "tokens"), "features")
    want_rank = 2 if kind == "features" else 1
    if len(input_shape) != want_rank:
        t.fail("input_shape", list(input_shape),
               f"2 dimensions (steps, features) for {what} on feature input" if kind == "features"
               else f"1 dimension (sequence length) for {what} on token input")
    vocab = t.integer("vocab_size", None, minimum=2) if kind == "tokens" else None
    if kind == "tokens" and vocab is None:
        raise SpecError(f"{t.origin}: model.vocab_size: required field is missing "
                        "(token input needs a vocabulary size)")
    return kind, vocab
