"""The backends' fast step paths (onnx: an IOBinding over preallocated buffers per thread and
batch size; litert: the wrapped interpreter's own calls) give what the plain API gives, hand
out arrays the caller owns, and leave odd inputs to the plain path and its errors."""

import threading

import numpy as np
import pytest

from charwright.runtime.backends import open_backend
from charwright.runtime.bundle.reader import load_bundle
from charwright.runtime.errors import BundleError
from charwright.runtime.model import DEMO_BUNDLE


def _backend(fmt):
    b = load_bundle(DEMO_BUNDLE)
    return open_backend(b, b.find(fmt))


def _inputs(be, n, seed):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, be.vocab_size, n).astype(np.int32)
    state = rng.normal(0, 0.5, (n, be.state_size)).astype(np.float32)
    return tokens, state


def _plain_onnx(be, tokens, state):
    return be.session.run([be._logits, be._new_state], {be._token: tokens, be._state: state})


def test_onnx_bound_step_equals_session_run_across_batch_sizes():
    be = _backend("onnx")
    kept = []
    for i, n in enumerate([1, 3, 3, 1, 7, 40, 2, 40]):  # a new batch size rebinds; the same
        #                                             reuses; 40 > BIND_MAX_BATCH runs run()
        tokens, state = _inputs(be, n, i)
        logits, new_state = be.step(tokens, state)
        want_logits, want_state = _plain_onnx(be, tokens, state)
        np.testing.assert_array_equal(logits, want_logits)
        np.testing.assert_array_equal(new_state, want_state)
        assert logits.shape == (n, be.vocab_size) and new_state.shape == (n, be.state_size)
        kept.append((logits.copy(), new_state.copy(), logits, new_state))
    # the caller owns what it got: later steps do not write into earlier results
    for copy_l, copy_s, logits, new_state in kept:
        np.testing.assert_array_equal(logits, copy_l)
        np.testing.assert_array_equal(new_state, copy_s)
        logits[...] = 0  # and may write into them without touching the next step
    tokens, state = _inputs(be, 2, 99)
    np.testing.assert_array_equal(be.step(tokens, state)[0], _plain_onnx(be, tokens, state)[0])


def test_onnx_state_fed_back_in_place_still_steps_right():
    """The generator passes the state it got back, and writes rows of it in place."""
    be = _backend("onnx")
    tokens, state = _inputs(be, 4, 1)
    ref_state = state.copy()
    for _ in range(5):
        _, state = be.step(tokens, state)
        _, ref_state = _plain_onnx(be, tokens, ref_state)
        np.testing.assert_array_equal(state, ref_state)


@pytest.mark.parametrize("bad", ["int64 tokens", "narrow state", "state rows", "2-d tokens"])
def test_onnx_odd_inputs_take_the_plain_path_and_its_error(bad):
    be = _backend("onnx")
    tokens, state = _inputs(be, 3, 0)
    be.step(tokens, state)  # a binding for batch 3 exists: the odd input must not use it
    if bad == "int64 tokens":
        tokens = tokens.astype(np.int64)
    elif bad == "narrow state":
        state = state[:, :-1].copy()
    elif bad == "state rows":
        state = state[:1].copy()  # would broadcast into a [3, S] buffer
    else:
        tokens = tokens.reshape(3, 1)
    try:
        want = _plain_onnx(be, tokens, state)
    except Exception:  # noqa: BLE001 - onnxruntime's own types
        with pytest.raises(BundleError, match="onnxruntime cannot run this file"):
            be.step(tokens, state)
    else:  # what session.run accepts, step gives alike
        got = be.step(tokens, state)
        np.testing.assert_array_equal(got[0], want[0])


def test_onnx_threads_sharing_one_session_each_get_their_own_binding():
    be = _backend("onnx")
    assert be.thread_safe
    jobs = [_inputs(be, n, n) for n in (1, 2, 5, 8)]
    want = [_plain_onnx(be, t, s) for t, s in jobs]
    errors, barrier = [], threading.Barrier(len(jobs))

    def work(i):
        try:
            barrier.wait(10)
            tokens, state = jobs[i]
            for _ in range(200):
                logits, new_state = be.step(tokens, state)
                np.testing.assert_array_equal(logits, want[i][0])
                np.testing.assert_array_equal(new_state, want[i][1])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    assert not any(t.is_alive() for t in threads)


def _plain_litert():
    plain = _backend("tflite")
    plain._raw_ok = False
    plain._resize(1)  # drops the views: set_tensor / invoke / get_tensor only
    assert plain._views is None
    return plain


@pytest.mark.litert
def test_litert_views_and_raw_invoke_equal_the_public_api():
    fast, plain = _backend("tflite"), _plain_litert()
    assert fast._raw_ok and fast._views is not None
    for i, n in enumerate([1, 4, 4, 2, 1]):  # resizes between steps still work
        tokens, state = _inputs(fast, n, i)
        for _ in range(3):  # the state fed back, as the generator does
            got, want = fast.step(tokens, state), plain.step(tokens, state)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
            state = got[1]
        held = (got[0].copy(), got[1].copy())
        fast.step(*_inputs(fast, n, i + 50))
        np.testing.assert_array_equal(got[0], held[0])  # copies, not views into the arena
        np.testing.assert_array_equal(got[1], held[1])
        got[1][...] = 7  # and writing into them leaves the next step alone
        tokens, state = _inputs(fast, n, i + 60)
        np.testing.assert_array_equal(fast.step(tokens, state)[0], plain.step(tokens, state)[0])


@pytest.mark.litert
@pytest.mark.parametrize("bad", ["int64 tokens", "float64 state", "state rows"])
def test_litert_odd_inputs_are_refused_as_before_not_cast_or_broadcast(bad):
    fast, plain = _backend("tflite"), _plain_litert()
    tokens, state = _inputs(fast, 3, 0)
    fast.step(tokens, state)
    plain.step(tokens, state)
    if bad == "int64 tokens":
        tokens = tokens.astype(np.int64)
    elif bad == "float64 state":
        state = state.astype(np.float64)
    else:
        state = state[:1].copy()
    with pytest.raises(Exception) as want:
        plain.step(tokens, state)
    with pytest.raises(type(want.value)):
        fast.step(tokens, state)


def test_onnx_keeps_one_binding_per_batch_size_when_sizes_alternate(monkeypatch):
    """Serving alternates batch sizes (a prompt primes beside the running rows; a fresh request
    merges as n-1 then n): each size binds once per thread, not at every change of size."""
    from charwright.runtime.backends import onnx

    made = []
    real = onnx._Bound

    def counting(step, n):
        made.append(n)
        return real(step, n)

    monkeypatch.setattr(onnx, "_Bound", counting)
    be = _backend("onnx")
    for i, n in enumerate([1, 4, 1, 4, 1, 4, 40, 1, 40, 4]):
        tokens, state = _inputs(be, n, i)
        logits, new_state = be.step(tokens, state)
        want_logits, want_state = _plain_onnx(be, tokens, state)
        np.testing.assert_array_equal(logits, want_logits)
        np.testing.assert_array_equal(new_state, want_state)
    assert sorted(made) == [1, 4]  # 40 > BIND_MAX_BATCH takes run(), and binds nothing


DATA = __import__("pathlib").Path(__file__).parent / "data"


@pytest.mark.litert
def test_litert_refuses_a_file_with_quantized_step_tensors_at_load():
    """data/int8_state.tflite: a tiny step-contract file (token int32 [None], state [None, 8],
    logits [None, 5]) converted with inference_input_type = inference_output_type = tf.int8
    (full-integer quantization), 2,480 bytes. Its state, logits and new_state are int8: the
    view path would cast a float32 state into it and hand back int8 'logits'. Refused at load,
    one BundleError line naming the tensor and its dtype."""
    from charwright.runtime.backends.litert import LiteRTStep

    with pytest.raises(BundleError) as e:
        LiteRTStep(str(DATA / "int8_state.tflite"), 8, 5, "int8")
    msg = str(e.value)
    assert "\n" not in msg and "int8_state.tflite" in msg
    assert "state tensor is int8" in msg and "float32" in msg
