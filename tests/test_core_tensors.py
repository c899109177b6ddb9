"""Predicting a model's outputs: large samples through a compiled call, small ones eagerly."""


import numpy as np


def test_large_samples_are_predicted_by_a_compiled_call():
    import gc

    import keras

    from dnnkit.core import tensors as signature

    keras.utils.set_random_seed(0)
    inp = keras.Input((128, 128, 3))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, activation="relu")(inp))
    model = keras.Model(inp, keras.layers.Dense(4)(h))
    x = np.random.default_rng(0).uniform(0, 1, (10, 128, 128, 3)).astype("float32")
    assert x[:1].nbytes >= signature.COMPILED_SAMPLE_BYTES
    got = signature.predict(model, x, batch_size=4)[0]
    assert model in signature._COMPILED  # noqa: SLF001
    want = np.concatenate([np.asarray(model(x[i:i + 4], training=False)) for i in range(0, 10, 4)])
    assert got.shape == (10, 4) and np.allclose(got, want, rtol=1e-5, atol=1e-6)
    digits = np.zeros((5, 64), "float32")  # small samples stay eager (tracing would cost more)
    dense = keras.Sequential([keras.Input((64,)), keras.layers.Dense(3)])
    signature.predict(dense, digits)
    assert dense not in signature._COMPILED  # noqa: SLF001
    count = len(signature._COMPILED)  # noqa: SLF001
    del model
    gc.collect()
    assert len(signature._COMPILED) == count - 1  # the compiled call does not keep its model alive  # noqa: SLF001


def test_a_sequential_models_output_is_named_by_its_last_layer():
    import keras

    from dnnkit.core.tensors import output_names

    model = keras.Sequential([keras.Input((4,), name="feats"), keras.layers.Dense(3, name="hidden"),
                              keras.layers.Dense(2, name="logits")])
    assert not getattr(model, "output_names", None)  # Keras gives a Sequential none
    assert output_names(model) == ["logits"]
    inp = keras.Input((4,))
    twin = keras.Model(inp, [keras.layers.Dense(1, name="a")(inp), keras.layers.Dense(1, name="b")(inp)])
    assert output_names(twin) == ["a", "b"]
