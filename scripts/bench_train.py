"""Training throughput: charwright's trainer against the TF tutorial's plain recipe.

Same model (Embedding -> GRU -> Dense), same data (a slice of tinyshakespeare), same machine,
one process. Each runs two epochs; the second is timed (the first includes tracing), and
throughput is training characters per second (batches x batch size x sequence length / time).
The two recipes alternate for --rounds rounds and the median is compared: on a shared machine a
single pair of runs varies by +-15%, more than the difference being measured.

    python scripts/bench_train.py                      # GRU 512, embedding 64, 300k chars
    python scripts/bench_train.py --units 64 --chars 200000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import header, table  # noqa: E402

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def tutorial_recipe(text: str, units: int, emb: int, seq_len: int, batch: int) -> float:
    """tensorflow/text docs/tutorials/text_generation.ipynb, training part, as written there
    (StringLookup ids, batch(seq_len+1), map(split), shuffle(10000), batch, prefetch; a
    subclassed model with GRU(return_sequences, return_state); Adam; fit)."""
    import tensorflow as tf

    vocab = sorted(set(text))
    ids_from_chars = tf.keras.layers.StringLookup(vocabulary=list(vocab), mask_token=None)
    all_ids = ids_from_chars(tf.strings.unicode_split(text, "UTF-8"))
    ids_dataset = tf.data.Dataset.from_tensor_slices(all_ids)
    sequences = ids_dataset.batch(seq_len + 1, drop_remainder=True)

    def split_input_target(sequence):
        return sequence[:-1], sequence[1:]

    dataset = (sequences.map(split_input_target).shuffle(10000)
               .batch(batch, drop_remainder=True).prefetch(tf.data.experimental.AUTOTUNE))

    class MyModel(tf.keras.Model):
        def __init__(self, vocab_size, embedding_dim, rnn_units):
            super().__init__()
            self.embedding = tf.keras.layers.Embedding(vocab_size, embedding_dim)
            self.gru = tf.keras.layers.GRU(rnn_units, return_sequences=True, return_state=True)
            self.dense = tf.keras.layers.Dense(vocab_size)

        def call(self, inputs, states=None, return_state=False, training=False):
            x = self.embedding(inputs, training=training)
            if states is None:
                x, states = self.gru(x, training=training)
            else:
                x, states = self.gru(x, initial_state=states, training=training)
            x = self.dense(x, training=training)
            return (x, states) if return_state else x

    model = MyModel(len(ids_from_chars.get_vocabulary()), emb, units)
    model.compile(optimizer="adam",
                  loss=tf.losses.SparseCategoricalCrossentropy(from_logits=True))
    times = []

    class T(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, e, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(dataset, epochs=2, verbose=0, callbacks=[T()])
    steps = sum(1 for _ in dataset)
    return steps * batch * seq_len / times[1]


def charwright_trainer(corpus: Path, units: int, emb: int, seq_len: int, batch: int) -> float:
    from charwright.trainer import ModelConfig, TrainConfig
    from charwright.trainer.train import train

    with tempfile.TemporaryDirectory() as d:
        train([corpus], Path(d) / "run", ModelConfig("gru", 1, units, emb),
              TrainConfig(seq_len=seq_len, batch_size=batch, epochs=2, probe_chars=200,
                          greedy_chars=10, sample_chars=0))
        hist = json.loads((Path(d) / "run" / "history.json").read_text())
    return hist[1]["chars_per_second"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--chars", type=int, default=300_000, help="corpus slice (0 = all)")
    ap.add_argument("--units", type=int, default=512)
    ap.add_argument("--embedding-dim", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs of each recipe")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    text = a.corpus.read_text(encoding="utf-8")
    text = text[: a.chars] if a.chars else text
    with tempfile.TemporaryDirectory() as d:
        sliced = Path(d) / "corpus.txt"
        sliced.write_text(text, encoding="utf-8")
        # the trainer trains on the first 90% (the rest is its validation split); give the
        # tutorial the same 90% so both see the same number of training characters
        ours_all, theirs_all = [], []
        for _ in range(a.rounds):
            theirs_all.append(tutorial_recipe(text[: int(len(text) * 0.9)], a.units,
                                              a.embedding_dim, a.seq_len, a.batch_size))
            ours_all.append(charwright_trainer(sliced, a.units, a.embedding_dim, a.seq_len,
                                               a.batch_size))
    ours, theirs = float(np.median(ours_all)), float(np.median(theirs_all))

    def runs(xs):
        return ", ".join(f"{x:,.0f}" for x in xs)

    rows = [["TF tutorial recipe (model.fit on its tf.data pipeline)", f"{theirs:,.0f}",
             runs(theirs_all), "1.00"],
            ["charwright trainer (checkpoints, validation, progress)", f"{ours:,.0f}",
             runs(ours_all), f"{ours / theirs:.2f}"]]
    import tensorflow as tf

    print(header(f"Training throughput: GRU {a.units}, embedding {a.embedding_dim}, seq "
                 f"{a.seq_len}, batch {a.batch_size}, {len(text):,} chars", tf.config.threading
                 .get_intra_op_parallelism_threads() or os.cpu_count()))
    print(table(["recipe", "median train chars/s (epoch 2)", "each round", "ratio"], rows))
    if a.json:
        print(json.dumps({"tutorial": theirs, "charwright": ours, "ratio": ours / theirs}))


if __name__ == "__main__":
    main()
