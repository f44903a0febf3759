"""trainer.progress: `charwright train`'s stderr lines, one per event (no TensorFlow here)."""

import io

from charwright.trainer.progress import LINES, TrainProgress


def _lines(*events) -> list[str]:
    out = io.StringIO()
    p = TrainProgress(out)
    for ev in events:
        p(ev)
    return out.getvalue().splitlines()


def test_event_lines_are_exact():
    assert _lines({"event": "resume", "path": "R/ckpt-3", "epoch": 2, "step": 5,
                   "global_step": 15}) == [
        "resuming from R/ckpt-3 (epoch 2, step 5, 15 optimizer steps done)"]
    assert _lines({"event": "nothing_to_do", "run_dir": "R", "epochs": 2, "of": 2}) == [
        "nothing to do: R finished 2 of 2 epochs"]
    assert _lines({"event": "new_run", "run_dir": "R"}) == [
        "nothing to resume in R: starting a new run"]
    assert _lines({"event": "epoch", "epoch": 1, "train_bpc": 2.5, "val_bpc": 2.25, "best": True,
                   "chars_per_second": 12345.6, "epoch_seconds": 3.2}) == [
        "epoch 1: train 2.5000 bits/char, val 2.2500 bits/char (best), 12,346 chars/s, 3s"]
    assert _lines({"event": "sample", "text": "a\nb"}) == ["sample: a", "        b"]


def test_start_warns_of_truncated_lines_and_batches_are_throttled_off_a_tty():
    start = {"event": "start", "params": 1234, "vocab": 40, "train_chars": 9000,
             "val_chars": 1000, "steps_per_epoch": 7, "mode": "lines", "strategy": "default",
             "truncated_lines": 3}
    batch = {"event": "batch", "epoch": 1, "epochs": 2, "step": 7, "steps": 7, "loss": 0.6931471805599453,
             "elapsed": 4.0}
    got = _lines(start, dict(batch, step=1), dict(batch, step=2), batch, {"event": "interrupt"},
                 {"event": "unknown"})
    assert got[:2] == ["training 1,234 parameters, vocab 40, 9,000 train / 1,000 val chars, "
                       "7 steps/epoch, mode lines, strategy default",
                       "warning: 3 lines longer than --seq-len were truncated"]
    # the first batch line is printed, the next within 10 s is not, the epoch's last always is
    assert len(got) == 4 and got[3] == ("epoch 1/2 [########################] 7/7 loss 0.6931 "
                                        "(1.000 bits/char) 4s")


def test_every_table_event_renders():
    ev = {"path": "p", "epoch": 1, "step": 1, "global_step": 1, "train_bpc": 1.0, "val_bpc": 1.0,
          "best": False, "chars_per_second": 1.0, "epoch_seconds": 1.0, "text": "t", "chars": 5,
          "run_dir": "R", "epochs": 1, "of": 1, "best_epoch": 1, "task_type": "worker",
          "task_index": 1, "optimizer_steps": 3, "best_val_bpc": 1.0,
          "step_check_max_abs_diff": 0.0, "device": "cpu"}
    for kind in LINES:
        assert len(_lines(dict(ev, event=kind))) == 1, kind
