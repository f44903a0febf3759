"""The report's matplotlib figure (the [report] extra), one panel per function: bits/char,
the learning rate, and for a bundle each file's parity. Drawn headless (Agg)."""

from __future__ import annotations

from charwright.runtime.errors import require

from charwright.trainer.report.read import finite, fmt, shown

BPC_STYLES = {"train_bpc_interval": dict(color="tab:blue", alpha=0.45, lw=1,
                                         label="training, per checkpoint interval"),
              "train_bpc_epoch": dict(color="tab:blue", marker="o", lw=2,
                                      label="training, per epoch"),
              "val_bpc_epoch": dict(color="tab:orange", marker="o", lw=2,
                                    label="validation, per epoch"),
              "best_val_bpc": dict(color="tab:orange", marker="*", ms=14, ls="none",
                                   label="best validation (training summary)")}


def plain(text: str) -> str:
    """Text drawn as is: matplotlib reads $...$ as mathtext, and a bad formula is an error."""
    return text.replace("$", r"\$")


def figure(data: dict):
    """collect()'s dict -> a matplotlib Figure (not attached to pyplot)."""
    require("matplotlib", "report")
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    panels = ["bpc", "lr"] + (["parity"] if data["parity"] else [])
    fig = Figure(figsize=(9, 3.2 * len(panels) + 0.8), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    fig.suptitle(plain(data["title"] + "\n" + " | ".join(data["facts"][1:3])), fontsize=9)
    _bpc_panel(axes[0], data)
    _learning_rate_panel(axes[1], data["series"])
    if data["parity"]:
        _parity_panel(axes[2], data["parity"])
    return fig


def _bpc_panel(ax, data: dict) -> None:
    s = data["series"]
    drawn = False
    for name, st in BPC_STYLES.items():
        if name in s:
            ax.plot(s[name]["x"], s[name]["y"], **st)
            drawn = True
    if not drawn:
        ax.text(0.5, 0.5, plain("no training history (" + "; ".join(data["facts"][1:2]) + ")"),
                ha="center", va="center", transform=ax.transAxes, fontsize=9)
    ax.set_ylabel("bits/char")
    ax.set_xlabel("optimizer step")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)


def _learning_rate_panel(ax, s: dict) -> None:
    if "learning_rate" in s:
        ax.plot(s["learning_rate"]["x"], s["learning_rate"]["y"], color="tab:green",
                marker=".", label="learning rate")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no learning rate recorded", ha="center", va="center",
                transform=ax.transAxes, fontsize=9)
    ax.set_ylabel("learning rate")
    ax.set_xlabel("optimizer step")
    ax.grid(alpha=0.3)


def _parity_panel(ax, rows: list[dict]) -> None:
    names = [plain(r["file"]) for r in rows]
    top1 = [(finite(r.get("top1")) or 0.0) * 100 for r in rows]
    colors = ["tab:green" if r.get("verdict", "pass") == "pass" or r.get("passed")
              else "tab:red" for r in rows]
    bars = ax.barh(range(len(rows)), top1, color=colors)
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(min(90.0, min(top1) - 1), 100.5)
    ax.axvline(97.0, color="grey", ls="--", lw=1)
    ax.set_xlabel("top-1 agreement with the reference (%)   [labels: bits/char file vs "
                  "reference]")
    for b, r in zip(bars, rows):
        ax.text(b.get_width() - 0.1, b.get_y() + b.get_height() / 2,
                plain(f"{top1[bars.index(b)]:.2f}%  {fmt(r.get('bpc'))} vs "
                      f"{fmt(r.get('ref_bpc'))}  {shown(r.get('verdict', ''))}"),
                ha="right", va="center", fontsize=8, color="white")
    ax.set_title("parity per file (measured at export)", fontsize=9)
