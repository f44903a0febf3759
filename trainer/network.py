"""The Keras sequence model used for training: Embedding|one-hot -> N x cell -> Dense logits."""

from __future__ import annotations

from charwright.trainer.config import ModelConfig

CELL_CLASSES = {"gru": "GRU", "lstm": "LSTM", "rnn": "SimpleRNN"}


def build_sequence_model(cfg: ModelConfig, batch_size: int | None = None, stateful: bool = False):
    """Builds (not compiles) the model.

    Inputs: int32 [batch, time]. Outputs: float32 logits [batch, time, vocab_size].
    Layer names are fixed ("embedding", "rnn_0".., "logits") because the step graph and the
    weights file find the weights by them. Dropout sits after each recurrent layer as its own
    layer, so the GRU/LSTM keep their cuDNN kernel on a GPU (recurrent dropout would lose it).
    With embedding_dim 0 the input is one-hot: an identity embedding that is not trained.
    """
    import keras

    if cfg.vocab_size < 1:
        raise ValueError("ModelConfig.vocab_size must be set before building the model")
    one_hot = cfg.embedding_dim == 0
    layers = [
        keras.Input(shape=(None,), batch_size=batch_size, dtype="int32", name="token"),
        keras.layers.Embedding(
            cfg.vocab_size,
            cfg.vocab_size if one_hot else cfg.embedding_dim,
            embeddings_initializer="identity" if one_hot else "uniform",
            trainable=not one_hot,
            name="embedding",
        ),
    ]
    for i, spec in enumerate(cfg.layer_specs()):
        layers.append(keras_layer(keras, spec, return_sequences=True, stateful=stateful,
                                  name=f"rnn_{i}"))
        if cfg.dropout > 0:
            layers.append(keras.layers.Dropout(cfg.dropout, name=f"dropout_{i}"))
    layers.append(keras.layers.Dense(cfg.vocab_size, name="logits"))
    return keras.Sequential(layers, name=f"charwright_{cfg.cell}")


def keras_layer(keras, spec: dict, **kw):
    """The Keras recurrent layer of one layer spec (config.layer_spec)."""
    cls = getattr(keras.layers, CELL_CLASSES[spec["cell"]])
    opts = {"activation": spec["activation"]}
    if spec["cell"] != "rnn":
        opts["recurrent_activation"] = spec["recurrent_activation"]
    if spec["cell"] == "gru":
        opts["reset_after"] = spec["reset_after"]
    return cls(spec["units"], **opts, **kw)


def export_weights(model, cfg: ModelConfig) -> dict:
    """The model's weights as float32 numpy arrays under stable names (the weights.npz contract).

    Names: embedding [V, E]; layer{i}.kernel [in, G*H]; layer{i}.recurrent_kernel [H, G*H];
    layer{i}.bias ([2, 3H] for GRU with reset_after, [3H] GRU without, [4H] LSTM, [H]
    SimpleRNN); dense.kernel [H, V]; dense.bias [V]. G = 3 (GRU), 4 (LSTM), 1 (SimpleRNN); gate
    order is Keras's: GRU z, r, h; LSTM i, f, c, o. H and the cell are each layer's own.
    """
    import numpy as np

    out = {"embedding": model.get_layer("embedding").embeddings.numpy()}
    for i in range(cfg.layers):
        out.update(cell_weights(model.get_layer(f"rnn_{i}").cell, i))
    dense = model.get_layer("logits")
    out["dense.kernel"] = dense.kernel.numpy()
    out["dense.bias"] = dense.bias.numpy()
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def cell_weights(cell, i: int) -> dict:
    """layer{i}.kernel, .recurrent_kernel, .bias of a Keras GRU/LSTM/SimpleRNN cell (a zero
    bias of the contract's shape when the layer has use_bias=False)."""
    import numpy as np

    k = np.asarray(cell.kernel.numpy(), np.float32)
    out = {f"layer{i}.kernel": k,
           f"layer{i}.recurrent_kernel": np.asarray(cell.recurrent_kernel.numpy(), np.float32)}
    if getattr(cell, "bias", None) is not None:
        out[f"layer{i}.bias"] = np.asarray(cell.bias.numpy(), np.float32)
    else:
        two = getattr(cell, "reset_after", False)
        out[f"layer{i}.bias"] = np.zeros((2, k.shape[1]) if two else (k.shape[1],), np.float32)
    return out
