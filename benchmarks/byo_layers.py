"""Custom layers of the bring-your-own matrix's keras-io-style models (benchmarks/byo_matrix.py).

They are given to dnnkit the way a user gives theirs: ``--custom-objects benchmarks/byo_layers.py``
(here ``dnnkit.sources.keras_file.use_custom_objects``), so the conversion workers import them too.
"""

import keras


@keras.saving.register_keras_serializable(package="byo")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Token embedding plus a learned position embedding indexed by ``keras.ops.arange`` (keras-io
    "Text classification with Transformer")."""

    def __init__(self, maxlen: int, vocab_size: int, embed_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.maxlen, self.vocab_size, self.embed_dim = maxlen, vocab_size, embed_dim
        self.token_emb = keras.layers.Embedding(vocab_size, embed_dim)
        self.pos_emb = keras.layers.Embedding(maxlen, embed_dim)

    def call(self, x):
        positions = keras.ops.arange(0, keras.ops.shape(x)[-1], 1)
        return self.token_emb(x) + self.pos_emb(positions)

    def get_config(self):
        return {**super().get_config(), "maxlen": self.maxlen, "vocab_size": self.vocab_size,
                "embed_dim": self.embed_dim}
