"""The report's pictures: ECG strips with every beat's label, one beat's waveform beside its
scalogram. Python 3.6+, numpy; matplotlib imported only when a picture is drawn (optional on the
device: `pyplot()` says what to install). Returned as PNG bytes; report.py places them in files.
"""
import io
import math

import numpy as np

MATPLOTLIB_HINT = ("plots need matplotlib, which is not installed here: pip3 install matplotlib "
                   "(JetPack 4.6 / Python 3.6: sudo apt-get install python3-matplotlib)")
# class colours by class index; red is kept for disagreements
PALETTE = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
WRONG = "#d62728"
MISSED = "#ff7f0e"


class ReportError(Exception):
    """Bad input for a report (the callers turn it into their one-line error, exit status 2)."""


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no window), or a ReportError saying what to install."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportError(MATPLOTLIB_HINT)
    return plt


UNREADABLE_COLOUR = "#9e9e9e"   # a beat the quality gate marked U (class index -1 in a log)


def colour(k):
    return UNREADABLE_COLOUR if k < 0 else PALETTE[k % len(PALETTE)]


def letter(letters, k):
    return "U" if k < 0 else letters[k]


def _png(fig, plt, dpi):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def _mmss(seconds):
    return "{:d}:{:04.1f}".format(int(seconds // 60), seconds % 60)


def strip_pages(x, fs, beats, letters, title, missed=None, seconds_per_row=10.0, rows_per_page=6, dpi=72):
    """PNG pages (bytes) of the signal `x` at `fs` Hz, `seconds_per_row` per row: each beat's
    predicted class as a coloured letter above the trace, its reference symbol below where there
    is one (red, on a red band, where the two disagree), reference beats no detection matched as
    orange symbols with an x. beats: dict of equal-length sequences sample, pred (class index; -1:
    unreadable, drawn as a grey U),
    ref (reference symbol, '' for none), wrong (bool); missed: (samples, symbols)."""
    plt = pyplot()
    from matplotlib.patches import Patch
    from matplotlib.lines import Line2D

    x = np.asarray(x, dtype=np.float64)
    samples, pred = np.asarray(beats["sample"], dtype=np.int64), np.asarray(beats["pred"], dtype=np.int64)
    ref, wrong = list(beats["ref"]), np.asarray(beats["wrong"], dtype=bool)
    m_samples, m_symbols = (np.zeros(0, np.int64), []) if missed is None else (np.asarray(missed[0]), list(missed[1]))
    lo, hi = np.percentile(x, [0.5, 99.9]) if len(x) else (0.0, 1.0)
    span = (hi - lo) or 1.0
    top, bottom = hi + 0.32 * span, lo - 0.3 * span
    per_row = int(round(seconds_per_row * fs))
    n_rows = max(int(math.ceil(len(x) / float(per_row))), 1)
    n_pages = int(math.ceil(n_rows / float(rows_per_page)))
    handles = [Patch(color=colour(k), label=name) for k, name in enumerate(letters)]
    if (pred < 0).any():
        handles.append(Patch(color=colour(-1), label="U (unreadable)"))
    if any(ref) or len(m_samples):
        handles += [Line2D([], [], ls="", marker="$R$", color="#555555", label="reference"),
                    Patch(color=WRONG, alpha=0.25, label="disagreement"),
                    Line2D([], [], ls="", marker="x", color=MISSED, label="missed reference beat")]
    pages = []
    for pg in range(n_pages):
        rows = range(pg * rows_per_page, min((pg + 1) * rows_per_page, n_rows))
        fig, axes = plt.subplots(len(rows), 1, figsize=(16, 1.55 * len(rows) + 0.75), squeeze=False)
        fig.subplots_adjust(left=0.055, right=0.995, top=1 - 0.55 / (1.55 * len(rows) + 0.75),
                            bottom=0.45 / (1.55 * len(rows) + 0.75), hspace=0.12)
        for r, ax in zip(rows, axes[:, 0]):
            a, b = r * per_row, min((r + 1) * per_row, len(x))
            t0 = a / float(fs)
            ax.plot(np.arange(a, b) / float(fs) - t0, x[a:b], color="black", lw=0.6)
            ax.set_xlim(0, seconds_per_row)
            ax.set_ylim(bottom - 0.12 * span, top + 0.12 * span)
            ax.set_xticks(np.arange(0, seconds_per_row + 1e-9, 1.0))
            ax.set_xticks(np.arange(0, seconds_per_row, 0.2), minor=True)
            ax.grid(which="major", axis="x", color="#f2a0a0", lw=0.7)
            ax.grid(which="minor", axis="x", color="#fbdada", lw=0.4)
            ax.tick_params(axis="x", labelsize=7, length=2, labelbottom=r == rows[-1])
            ax.set_yticks([])
            ax.set_ylabel(_mmss(t0), rotation=0, ha="right", va="center", fontsize=8)
            for i in np.flatnonzero((samples >= a) & (samples < b)):
                t = samples[i] / float(fs) - t0
                if wrong[i]:
                    ax.axvspan(t - 0.14, t + 0.14, color=WRONG, alpha=0.18, lw=0)
                ax.text(t, top, letter(letters, pred[i]), color="white", fontsize=7.5, fontweight="bold", ha="center",
                        va="center", bbox=dict(boxstyle="round,pad=0.18", fc=colour(pred[i]), ec="none"))
                if ref[i]:
                    ax.text(t, bottom, ref[i], fontsize=7.5, ha="center", va="center",
                            color=WRONG if wrong[i] else "#555555", fontweight="bold" if wrong[i] else "normal")
            for i in np.flatnonzero((m_samples >= a) & (m_samples < b)):
                t = m_samples[i] / float(fs) - t0
                ax.plot([t], [top], marker="x", color=MISSED, ms=5)
                ax.text(t, bottom, m_symbols[i], fontsize=7.5, ha="center", va="center", color=MISSED)
        axes[-1, 0].set_xlabel("seconds in the row (grid 0.2 s)", fontsize=8)
        fig.text(0.005, 1 - 0.12 / (1.55 * len(rows) + 0.75), "{}  (page {}/{})".format(title, pg + 1, n_pages),
                 fontsize=9, va="top")
        fig.legend(handles=handles, loc="upper right", ncol=len(handles), fontsize=8, frameon=False,
                   bbox_to_anchor=(0.995, 1.0))
        pages.append(_png(fig, plt, dpi))
    return pages


def beat_picture(wave, fs, r_index, scalogram, title, dpi=72):
    """PNG (bytes) of one beat: its waveform (R peak marked) beside its scalogram."""
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(5.2, 2.0), gridspec_kw={"width_ratios": [1.7, 1]})
    fig.subplots_adjust(left=0.03, right=0.99, top=0.84, bottom=0.17, wspace=0.08)
    t = (np.arange(len(wave)) - r_index) * 1000.0 / fs
    a1.plot(t, wave, color="black", lw=0.8)
    a1.axvline(0, color="#999999", lw=0.6, ls=":")
    a1.set_yticks([])
    a1.tick_params(labelsize=6, length=2)
    a1.set_xlabel("ms from R", fontsize=6, labelpad=1)
    a2.imshow(scalogram, cmap="magma", aspect="auto", interpolation="nearest")
    a2.set_xticks([])
    a2.set_yticks([])
    fig.suptitle(title, fontsize=7)
    return _png(fig, plt, dpi)


# -- the device's report ------------------------------------------------------------------------
