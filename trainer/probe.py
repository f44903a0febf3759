"""The reference probe: what the trained model says about held-out text, on the training device.

probe.npz (loaded with allow_pickle=False):
    tokens         int32 [N]        validation text (N = probe_chars, or all there is)
    logits         float32 [N, V]   reference logits after tokens[:i+1], from the sequence model
    prompt         int32 [P]        a prompt (the start of the validation text)
    greedy         int32 [G]        the reference's greedy continuation of the prompt
    device         str              where the reference ran ("GPU:0 NVIDIA H100..." or "CPU ...")
    tf32           bool             whether TensorFloat-32 was on while it was recorded: always
                                    False from this version on (older probes lack the field)
    format_version int32            1

The reference is recorded in exact float32: TensorFlow turns TF32 on by default on Ampere and
later GPUs, where matmuls then round their inputs to a 10-bit mantissa (logits ~1e-3 from
float32, ten times the float32 parity bound); `exact_float32()` turns it off for the recording.
"""

from __future__ import annotations

import contextlib
import platform

import numpy as np

PROBE_FORMAT_VERSION = 1
PROMPT_CHARS = 100


def describe_device() -> str:
    """The device the reference ran on, in words (the first GPU if there is one)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        try:
            name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "")
        except Exception:  # details are best effort; the device kind is what matters
            name = ""
        return f"GPU:0 {name}".strip() + f" ({len(gpus)} visible)"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU {cpu}"


@contextlib.contextmanager
def exact_float32():
    """TF32 off for the block (TensorFlow's default turns it on for matmuls and convolutions on
    Ampere and later GPUs; a no-op on CPU), put back as it was afterwards."""
    import tensorflow as tf

    cfg = tf.config.experimental
    before = cfg.tensor_float_32_execution_enabled()
    cfg.enable_tensor_float_32_execution(False)
    try:
        yield
    finally:
        cfg.enable_tensor_float_32_execution(before)


def record_probe(seq_model, step_fn, val_ids: np.ndarray, probe_chars: int, greedy_chars: int,
                 state_size: int, eos_id: int | None) -> dict:
    """Runs the reference model over validation text and greedy-decodes from a prompt.

    Args:
        seq_model: the trained Keras sequence model (not stateful, batch 1 allowed).
        step_fn: the single-step tf.function built from the same weights.
        val_ids: int32 [n] validation ids (in line mode, lines separated by EOS).
    """
    with exact_float32():
        return _record(seq_model, step_fn, val_ids, probe_chars, greedy_chars, state_size, eos_id)


def _record(seq_model, step_fn, val_ids, probe_chars, greedy_chars, state_size, eos_id) -> dict:
    import tensorflow as tf

    tokens = np.asarray(val_ids[:probe_chars], np.int32)
    if eos_id is not None and (len(tokens) == 0 or tokens[0] != eos_id):
        tokens = np.concatenate([[eos_id], tokens[: probe_chars - 1]]).astype(np.int32)
    logits = seq_model(tokens[None, :], training=False)
    logits = np.asarray(logits, np.float32)[0]
    prompt = tokens[: min(PROMPT_CHARS, len(tokens))]
    state = tf.zeros([1, state_size], tf.float32)
    for t in prompt:
        r = step_fn(tf.constant([int(t)], tf.int32), state)
        state = r["new_state"]
    greedy = []
    nxt = int(np.argmax(r["logits"].numpy()[0]))
    for _ in range(greedy_chars):
        greedy.append(nxt)
        r = step_fn(tf.constant([nxt], tf.int32), state)
        state = r["new_state"]
        nxt = int(np.argmax(r["logits"].numpy()[0]))
    return {
        "tokens": tokens,
        "logits": logits,
        "prompt": prompt.astype(np.int32),
        "greedy": np.asarray(greedy, np.int32),
        "device": np.array(describe_device()),
        "tf32": np.array(bool(tf.config.experimental.tensor_float_32_execution_enabled())),
        "format_version": np.array(PROBE_FORMAT_VERSION, np.int32),
    }
