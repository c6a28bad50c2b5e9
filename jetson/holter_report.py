"""The Holter section of the device's --report page (--holter) and, for a long recording, the
hourly overview strips that stand in for its strip pages. Python 3.6+, numpy; matplotlib for
the pictures. Every number printed from <out>.holter.json carries data-key="holter.<its path
in that JSON>", as the rest of the page does for the --score JSON.
"""
from . import holter_figures
from .holter_figures import hms
from .report import cell, esc, image, table


def _key(path):
    return "holter." + path


def _n(summary, path, digits=None):
    obj = summary
    for part in path.split("."):
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return cell(obj, _key(path), digits)


def _at(seconds):
    return "n/a" if seconds is None else hms(seconds)


def figures_table(s, letters=None):
    """The headline figures: beats, burden, heart rate, ectopy, pauses, unreadable time; letters:
    what the report writes for each class (records.class_letters)."""
    named = dict(zip(s["classes"], letters or s["classes"]))
    rows = [["recording length", hms(s["duration_s"])],
            ["beats found", _n(s, "beats.total")],
            ["classified", _n(s, "beats.classified")],
            ["unreadable (U)", _n(s, "beats.unreadable")],
            ["found, not classified (signal edges; symbols the model does not take)", _n(s, "beats.not_classified")]]
    rows += [["class {}".format(c) + (" ({})".format(named[c]) if named[c] != c else ""), _n(s, "beats.per_class." + c)]
             for c in s["classes"]]
    hr = s["heart_rate"]
    rows += [["heart rate, mean (bpm)", _n(s, "heart_rate.mean_bpm", 1)],
             ["heart rate, minimum (bpm; 8 RR) at " + _at(hr["min_at_s"]), _n(s, "heart_rate.min_bpm", 1)],
             ["heart rate, maximum (bpm; 8 RR) at " + _at(hr["max_at_s"]), _n(s, "heart_rate.max_bpm", 1)],
             ["pauses (RR > {:g} s)".format(s["settings"]["pause_s"]), _n(s, "pauses.count")],
             ["gaps (RR > {:g} s: lost signal or asystole)".format(s["settings"]["gap_s"]), _n(s, "gaps.count")],
             ["unreadable time (s)", _n(s, "unreadable.seconds", 1)],
             ["unreadable share of the recording (%)", _n(s, "unreadable.pct", 2)]]
    return table(["", ""], rows)


def ectopy_table(s):
    header = ["", "S", "V"]
    fields = [("burden (% of classified beats)", "burden_pct.{}", 2), ("isolated", "ectopy.{}.isolated", None),
              ("couplets (exactly 2)", "ectopy.{}.couplets", None), ("runs (3 or more)", "ectopy.{}.runs", None),
              ("beats in runs", "ectopy.{}.beats_in_runs", None),
              ("longest run (beats)", "ectopy.{}.longest_run_beats", None),
              ("bigeminy episodes (3+ pairs)", "ectopy.{}.bigeminy_episodes", None),
              ("longest bigeminy (pairs)", "ectopy.{}.longest_bigeminy_pairs", None)]
    rows = []
    for title, path, digits in fields:
        rows.append([title] + [_n(s, path.format(k), digits) if s["ectopy"][k] is not None else cell(None)
                               for k in ("S", "V")])
    rows.append(["longest run at"] + [_at(s["ectopy"][k]["longest_run_at_s"]) if s["ectopy"][k] else "n/a"
                                      for k in ("S", "V")])
    rows.append(["longest bigeminy at"] + [_at(s["ectopy"][k]["longest_bigeminy_at_s"]) if s["ectopy"][k] else "n/a"
                                           for k in ("S", "V")])
    return table(header, rows)


def listed_table(s, what):
    rows = [[hms(p["at_s"]), _n(s, "{}.longest.{}.rr_s".format(what, i), 2)]
            for i, p in enumerate(s[what]["longest"])]
    return table(["at (h:mm:ss)", "RR (s)"], rows)


def trend_table(s, which):
    head = ["from", "to", "beats", "HR mean", "HR min", "HR max", "S", "V", "pauses", "unreadable %"]
    rows = []
    for i, r in enumerate(s[which]):
        p = "{}.{}.".format(which, i)
        rows.append([hms(r["start_s"]), hms(r["end_s"]), _n(s, p + "beats"), _n(s, p + "hr_mean_bpm", 1),
                     _n(s, p + "hr_min_bpm", 1), _n(s, p + "hr_max_bpm", 1), _n(s, p + "S"), _n(s, p + "V"),
                     _n(s, p + "pauses"), _n(s, p + "unreadable_pct", 1)])
    return table(head, rows)


def holter_section(s, title, json_name, letters=None):
    """(HTML parts, files) of the Holter summary read from the file json_name."""
    st = s["settings"]
    parts = ["<h2>Holter summary</h2>",
             '<p class="note">From <code>{}</code>. Heart rate from RR intervals between consecutive readable '
             'beats (RR over {:g} s: gaps, left out); minimum and maximum over sliding windows of {} RR intervals; '
             'couplet: exactly 2 consecutive S (V) beats, run: {} or more, bigeminy: {} or more consecutive '
             '(non-ectopic, ectopic) pairs; unreadable and unclassified beats and gaps end a sequence; burden: '
             'percent of the classified beats. Times from the start of the recording (h:mm:ss). S or V is n/a '
             'where the model has no such class.</p>'.format(esc(json_name), st["gap_s"], st["hr_window_rr"],
                                                             st["run_min_beats"], st["bigeminy_min_pairs"]),
             figures_table(s, letters), "<h3>Ectopic beats</h3>", ectopy_table(s),
             image("holter_trend.png", "heart rate and ectopic beats per 5 minutes"),
             "<h3>Per hour</h3>", trend_table(s, "trend_hourly")]
    if s["duration_s"] <= 3600:
        parts += ["<h3>Per 5 minutes</h3>", trend_table(s, "trend_5min")]
    parts += ["<h3>Longest pauses (RR > {:g} s)</h3>".format(st["pause_s"]),
              listed_table(s, "pauses") if s["pauses"]["longest"] else '<p class="note">None.</p>']
    if s["gaps"]["longest"]:
        parts += ["<h3>Longest gaps (RR > {:g} s)</h3>".format(st["gap_s"]), listed_table(s, "gaps")]
    files = {"holter_trend.png": holter_figures.hr_trend_png(s, "{}: heart rate and ectopic beats".format(title))}
    return parts, files


def overview_section(log, fs, letters, title):
    """(HTML parts, files) of the hourly overview pages of a long recording's log."""
    env = log.envelope
    pages = holter_figures.overview_pages(env.lo.values(), env.hi.values(), env.bin, fs, log.sample.values(),
                                          log.pred.values(), letters, log.n_in, title)
    parts = ["<h2>ECG overview, one page per hour</h2>",
             '<p class="note">A long recording: the strip pages below show its first {:g} minutes; here every hour '
             'as one page, a minute a row, the signal as its range (minimum to maximum) every {:.0f} ms, S and V '
             'beats marked above the trace. The beats to look at show their own waveforms.</p>'.format(
                 len(log.head) / float(fs) / 60.0, env.bin / float(fs) * 1000)]
    files = {}
    for k, png in enumerate(pages):
        name = "overview_h{:02d}.png".format(k + 1)
        files[name] = png
        parts.append(image(name, "ECG overview, hour {}".format(k + 1)))
    return parts, files


def sections(log, fs, letters, summary, title, json_name=""):
    """The extra report sections: the Holter summary (summary: the --holter dict written to
    json_name, or None) and the hourly overview of a long recording."""
    out = []
    if summary is not None:
        out.append(holter_section(summary, title, json_name, letters))
    if getattr(log, "long", False):
        out.append(overview_section(log, fs, letters, title))
    return out
