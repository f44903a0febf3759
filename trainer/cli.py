"""`charwright train`: parse options, call trainer.train.train, draw progress on stderr."""

from __future__ import annotations

import json
import math

import click

from charwright.runtime.errors import ConfigError

from charwright.trainer.config import CELLS, ModelConfig, TrainConfig
from charwright.trainer.progress import TrainProgress

_M, _T = ModelConfig(), TrainConfig()


def _load_config(ctx, param, value):
    """--config FILE: a JSON object of option values (names as on the command line, - or _)."""
    if value is None:
        return None
    try:
        with open(value, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise click.BadParameter(f"cannot read {value}: {e}") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{value} must hold a JSON object")
    params = {p.name: p for p in ctx.command.params if p.name in CONFIG_KEYS}
    cleaned = {k.replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(cleaned) - set(params))
    if unknown:
        raise click.BadParameter(f"{value}: unknown option(s) {', '.join(unknown)}")
    for name, v in cleaned.items():
        _check_config_value(value, name, v, params[name])
    ctx.default_map = {**(ctx.default_map or {}), **cleaned}
    return value


# options a --config file may set (not where the run goes, nor what to do with it)
CONFIG_KEYS = ("cell", "layers", "units", "embedding_dim", "dropout", "seq_len", "batch_size",
               "epochs", "learning_rate", "val_fraction", "seed", "stateful", "lines",
               "checkpoint_every", "probe_chars", "greedy_chars", "sample_chars", "clipnorm",
               "distribute", "cpu_devices")


def _check_config_value(path, name, v, param) -> None:
    """JSON gives floats for 3.0 and inf for 1e400, and click would quietly truncate 3.5 to 3:
    an int option takes an integer, a float option a finite number, a flag true or false."""
    opt = "--" + name.replace("_", "-")
    if param.is_flag:
        if not isinstance(v, bool):
            raise click.BadParameter(f"{path}: {opt} must be true or false, not {v!r}")
    elif isinstance(param.type, (click.types.IntParamType, click.IntRange)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise click.BadParameter(f"{path}: {opt} must be an integer, not {v!r}")
    elif isinstance(param.type, (click.types.FloatParamType, click.FloatRange)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise click.BadParameter(f"{path}: {opt} must be a finite number, not {v!r}")
    elif not isinstance(v, str):
        raise click.BadParameter(f"{path}: {opt} must be a string, not {v!r}")


class _Finite(click.FloatRange):
    """FloatRange that also refuses nan and inf (click lets nan through every range check)."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


def _differing(run_dir, given: list[str], model_cfg: ModelConfig,
               train_cfg: TrainConfig) -> list[str]:
    """The options in `given` whose values differ from the saved run's (all of them if it
    cannot be read; none where there is no run, which --resume then starts with them): the
    same command can be run again and again (a restart loop) without a warning each time."""
    from charwright.runtime.errors import CharwrightError

    from charwright.trainer import run_dir as rd
    from charwright.trainer.config import config_to_dict

    if not rd.has_run(run_dir):
        return []
    try:
        run = rd.read_run(run_dir)
        saved = {**(run.get("model") or {}), **(run.get("train") or {})}
    except (CharwrightError, TypeError):
        return given
    mine = {**config_to_dict(model_cfg), **config_to_dict(train_cfg)}
    key = {"stateful": "mode", "lines": "mode"}
    return [g for g in given if saved.get(key.get(g, g), object()) != mine.get(key.get(g, g))]


@click.command("train")
@click.argument("corpus", nargs=-1, type=click.Path(dir_okay=False))
@click.option("-o", "--output", "run_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory to create (or to continue with --resume).")
@click.option("--config", type=click.Path(dir_okay=False), callback=_load_config, is_eager=True,
              expose_value=False, help="JSON file of option values; flags given here win.")
@click.option("--cell", type=click.Choice(CELLS), default=_M.cell, show_default=True,
              help="Recurrent cell (rnn = SimpleRNN).")
@click.option("--layers", type=click.IntRange(1, 8), default=_M.layers, show_default=True)
@click.option("--units", type=click.IntRange(1, 8192), default=_M.units, show_default=True,
              help="Hidden units per layer.")
@click.option("--embedding-dim", type=click.IntRange(0, 8192), default=_M.embedding_dim,
              show_default=True, help="Embedding size; 0 = one-hot input.")
@click.option("--dropout", type=_Finite(0, 1, max_open=True), default=_M.dropout,
              show_default=True, help="Dropout after each recurrent layer.")
@click.option("--seq-len", type=click.IntRange(2, 100_000), default=_T.seq_len, show_default=True,
              help="Characters per training window.")
@click.option("--batch-size", type=click.IntRange(1, 65_536), default=_T.batch_size,
              show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=_T.epochs, show_default=True)
@click.option("--learning-rate", type=_Finite(0, 1, min_open=True, max_open=True),
              default=_T.learning_rate, show_default=True)
@click.option("--val-fraction", type=_Finite(0, 0.5, min_open=True, max_open=True),
              default=_T.val_fraction, show_default=True,
              help="Contiguous tail of the corpus held out for validation.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=_T.seed, show_default=True)
@click.option("--stateful", is_flag=True,
              help="Train on B equidistant streams, carrying state across batches.")
@click.option("--lines", is_flag=True,
              help="One sample per line, ending in an end-of-sequence symbol.")
@click.option("--checkpoint-every", type=click.IntRange(0), default=_T.checkpoint_every,
              show_default=True, help="Also checkpoint every N optimizer steps (0 = epoch ends).")
@click.option("--probe-chars", type=click.IntRange(1), default=_T.probe_chars, show_default=True,
              help="Validation characters recorded with reference logits.")
@click.option("--greedy-chars", type=click.IntRange(1), default=_T.greedy_chars,
              show_default=True, help="Length of the reference greedy continuation.")
@click.option("--sample-chars", type=click.IntRange(0), default=_T.sample_chars,
              show_default=True, help="Characters sampled after each epoch (0 = none).")
@click.option("--clipnorm", type=_Finite(0), default=_T.clipnorm, show_default=True,
              help="Clip gradients to this global norm (0 = off).")
@click.option("--resume", is_flag=True, help="Continue or finish the run in RUN_DIR (safe to repeat: a complete run is \"nothing to do\"; with CORPUS and no run yet, start one).")
@click.option("--force", is_flag=True, help="Replace the run in RUN_DIR.")
@click.option("--distribute", type=click.Choice(["auto", "mirrored", "none"]), default="auto",
              show_default=True, help="tf.distribute: mirrored when several devices are visible.")
@click.option("--cpu-devices", type=click.IntRange(0, 64), default=0, show_default=True,
              help="Split the CPU into N logical devices (to use MirroredStrategy on CPU).")
@click.option("--json", "as_json", is_flag=True, help="Print run.json to stdout at the end.")
@click.option("-v", "--verbose", is_flag=True,
              help="Also show TensorFlow's own log lines and warnings on stderr.")
@click.pass_context
def train(ctx, corpus, run_dir, cell, layers, units, embedding_dim, dropout, seq_len, batch_size,
          epochs, learning_rate, val_fraction, seed, stateful, lines, checkpoint_every,
          probe_chars, greedy_chars, sample_chars, clipnorm, resume, force, distribute,
          cpu_devices, as_json, verbose):
    """Train a character-level model on CORPUS files (UTF-8) into RUN_DIR.

    \b
    charwright train ../shared/data/tinyshakespeare.txt -o RUN --units 64 --epochs 1
    charwright train names.txt -o RUN --lines --cell lstm --layers 2
    charwright train -o RUN --resume
    charwright train -o RUN --resume --epochs 20     (train a finished run further)
    """
    from charwright.runtime.quiet import quiet_stderr

    from charwright.trainer.interrupt import TrainingInterrupted
    from charwright.trainer.train import train as run_training

    if stateful and lines:
        raise ConfigError("--stateful and --lines are different data schemes; pass one")
    if not corpus and not resume:
        raise click.UsageError("give at least one CORPUS file (or --resume)")
    mode = "stateful" if stateful else "lines" if lines else "windows"
    model_cfg = ModelConfig(cell=cell, layers=layers, units=units, embedding_dim=embedding_dim,
                            dropout=dropout)
    train_cfg = TrainConfig(seq_len=seq_len, batch_size=batch_size, epochs=epochs,
                            learning_rate=learning_rate, val_fraction=val_fraction, seed=seed,
                            mode=mode, checkpoint_every=checkpoint_every, probe_chars=probe_chars,
                            greedy_chars=greedy_chars, sample_chars=sample_chars,
                            clipnorm=clipnorm)
    new_epochs = None
    if resume:
        cmdline = click.core.ParameterSource.COMMANDLINE
        if ctx.get_parameter_source("epochs") == cmdline:
            new_epochs = epochs
        given = [p.name for p in ctx.command.params
                 if p.name not in ("corpus", "run_dir", "resume", "as_json", "distribute",
                                   "cpu_devices", "epochs", "verbose")
                 and ctx.get_parameter_source(p.name) == cmdline]
        ignored = _differing(run_dir, given, model_cfg, train_cfg)
        if ignored:
            click.echo(f"warning: --resume uses the run's saved configuration; ignoring "
                       f"{', '.join('--' + g.replace('_', '-') for g in ignored)}", err=True)
    with quiet_stderr(verbose) as err:
        try:
            # with --resume, the options given only start a new run where there is none
            run = run_training(list(corpus), run_dir, model_cfg, train_cfg, resume=resume,
                               force=force,
                               epochs=new_epochs, cpu_devices=cpu_devices,
                               distribute=distribute, on_progress=TrainProgress(err))
        except TrainingInterrupted as e:
            err.write(f"{e}\n")
            err.flush()
            ctx.exit(e.exit_code)
    if as_json:
        click.echo(json.dumps(run, indent=2, sort_keys=True))
