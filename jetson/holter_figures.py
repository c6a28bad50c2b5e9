"""The Holter section's pictures: the heart-rate and ectopy trend of a recording, and one
overview page per hour of a long recording drawn from its envelope (long_log.Envelope). Python
3.6+, numpy; matplotlib through figures.pyplot(). Returned as PNG bytes.
"""
import math

import numpy as np

from .figures import _png, colour, pyplot

ROW_S = 60.0          # overview: one minute a row
PAGE_S = 3600.0       # one hour a page
MARKED = ("S", "V")   # overview: beats of these class letters are marked


def _nan(values):
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def hr_trend_png(summary, title, dpi=72):
    """Heart rate per 5-minute window (mean; band: min to max of the 8-RR windows) over the
    S and V counts per window."""
    plt = pyplot()
    rows = summary["trend_5min"]
    mid = np.asarray([(r["start_s"] + r["end_s"]) / 2.0 for r in rows]) / 3600.0
    edges = np.asarray([r["start_s"] for r in rows] + [rows[-1]["end_s"]]) / 3600.0
    width = summary["settings"]["trend_s"] / 3600.0
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(12, 4.2), sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})
    fig.subplots_adjust(left=0.07, right=0.99, top=0.9, bottom=0.13, hspace=0.08)
    # each window's value held over the window (steps from its start to its end)
    lo, hi, mean = (np.append(v, v[-1:]) for v in (_nan(r[k] for r in rows)
                                                  for k in ("hr_min_bpm", "hr_max_bpm", "hr_mean_bpm")))
    a1.fill_between(edges, lo, hi, color="#9ecae1", lw=0, step="post", label="min to max (8 RR)")
    a1.plot(edges, mean, color="#08519c", lw=1.2, drawstyle="steps-post", label="mean")
    a1.set_ylabel("heart rate (bpm)", fontsize=8)
    a1.legend(loc="upper right", fontsize=7, frameon=False, ncol=2)
    a1.grid(color="#dddddd", lw=0.5)
    bottom = np.zeros(len(rows))
    for k, c in (("V", "#ff7f0e"), ("S", "#2ca02c")):
        counts = _nan(r[k] for r in rows)
        if np.all(np.isnan(counts)):
            continue
        a2.bar(mid, np.nan_to_num(counts), width=np.diff(edges), bottom=bottom, color=c, lw=0, label=k)
        bottom += np.nan_to_num(counts)
    a2.set_ylabel("beats / 5 min", fontsize=8)
    a2.set_xlabel("hours from the start of the recording", fontsize=8)
    a2.legend(loc="upper right", fontsize=7, frameon=False, ncol=2)
    for ax in (a1, a2):
        ax.tick_params(labelsize=7)
    a2.set_xlim(0, max(edges[-1], width))
    fig.suptitle(title, fontsize=9)
    return _png(fig, plt, dpi)


def hms(seconds):
    """Elapsed time as h:mm:ss."""
    s = int(round(seconds))
    return "{:d}:{:02d}:{:02d}".format(s // 3600, s // 60 % 60, s % 60)


def overview_pages(lo, hi, bin_len, fs, samples, pred, letters, n_samples, title, dpi=72):
    """One PNG per hour: a minute a row, the signal as its minimum-to-maximum envelope (lo, hi:
    one value per `bin_len` samples), the beats whose class letter is S or V marked above the
    trace. samples, pred: every beat's sample number and class index (numpy arrays)."""
    plt = pyplot()
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    bin_s = bin_len / float(fs)
    marked = [k for k, letter in enumerate(letters) if letter in MARKED]
    seconds = n_samples / float(fs)
    pages = []
    for page in range(int(math.ceil(seconds / PAGE_S))):
        t_page = page * PAGE_S
        n_rows = int(math.ceil(min(PAGE_S, seconds - t_page) / ROW_S))
        k0, k1 = int(t_page / bin_s), min(int(math.ceil((t_page + PAGE_S) / bin_s)), len(lo))
        if k1 <= k0:
            break
        p_lo, p_hi = np.percentile(lo[k0:k1], 1), np.percentile(hi[k0:k1], 99)
        span = (p_hi - p_lo) or 1.0
        pitch = 1.15 * span
        fig, ax = plt.subplots(figsize=(16, 0.22 * n_rows + 0.9))
        fig.subplots_adjust(left=0.05, right=0.995, top=1 - 0.45 / (0.22 * n_rows + 0.9),
                            bottom=0.45 / (0.22 * n_rows + 0.9))
        for r in range(n_rows):
            t0 = t_page + r * ROW_S
            a, b = int(t0 / bin_s), min(int(math.ceil((t0 + ROW_S) / bin_s)), len(lo))
            if b <= a:
                continue
            mid = np.median((lo[a:b] + hi[a:b]) / 2.0)
            y_lo = np.clip(lo[a:b] - mid, -0.75 * span, 0.75 * span) - r * pitch
            y_hi = np.clip(hi[a:b] - mid, -0.75 * span, 0.75 * span) - r * pitch
            ax.fill_between(np.arange(a, b) * bin_s - t0, y_lo, y_hi, color="black", lw=0.3)
        in_page = (samples >= t_page * fs) & (samples < (t_page + PAGE_S) * fs)
        for k in marked:
            t = samples[in_page & (pred == k)] / float(fs) - t_page
            ax.plot(t % ROW_S, -(t // ROW_S) * pitch + 0.5 * span, ls="", marker="v", ms=3.5, color=colour(k),
                    label="{} ({})".format(letters[k], int(len(t))))
        ax.set_xlim(0, ROW_S)
        ax.set_ylim(-(n_rows - 0.4) * pitch, 0.8 * span)
        ax.set_yticks([-r * pitch for r in range(0, n_rows, 5)])
        ax.set_yticklabels([hms(t_page + r * ROW_S) for r in range(0, n_rows, 5)], fontsize=7)
        ax.set_xticks(np.arange(0, ROW_S + 1e-9, 5.0))
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel("seconds in the row (one minute a row)", fontsize=8)
        ax.grid(axis="x", color="#f2a0a0", lw=0.5)
        if marked:
            ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(marked), fontsize=8, frameon=False)
        ax.set_title("{}: hour {} ({} to {}), signal range every {:.0f} ms".format(
            title, page + 1, hms(t_page), hms(min(t_page + PAGE_S, seconds)), bin_s * 1000), fontsize=9, loc="left")
        pages.append(_png(fig, plt, dpi))
    return pages
