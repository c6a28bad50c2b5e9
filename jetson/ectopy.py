"""Ectopic sequences of one kind (S or V) in a stream of beat kinds: isolated beats, couplets,
runs and bigeminy (definitions: holter.py). Python 3.6+, no dependencies.
"""
import collections

OTHER, S, V = 0, 1, 2        # a classified beat that is neither S nor V; S; V (other values: breaks)
ECTOPIC = {"S": S, "V": V}
MIN_RUN = 3
MIN_BIGEMINY = 3


class Sequences(object):
    """Runs, couplets and bigeminy of one ectopic kind, fed one beat kind at a time."""

    def __init__(self, kind):
        self.kind = kind
        self.lengths = collections.Counter()     # run length -> how many
        self.run, self.run_at = 0, None
        self.longest = (0, None)                 # (beats, time of the first)
        self.alt, self.alt_at = 0, None          # beats in the current non-ectopic/ectopic chain
        self.bigeminy, self.bigeminy_v = 0, 0    # episodes, ectopic beats in them
        self.longest_bigeminy = (0, None)        # (pairs, time of the first beat)

    def push(self, kind, t, broken):
        """The next beat: its kind, time, and whether a break (gap, unreadable beat) comes before it."""
        if broken or kind != self.kind:
            self._close_run()
        if kind == self.kind:
            if self.run == 0:
                self.run_at = t
            self.run += 1
        # bigeminy: a chain N K N K ..., N = OTHER
        expected = OTHER if self.alt % 2 == 0 else self.kind
        if not broken and self.alt and kind == expected:
            self.alt += 1
        else:
            self._close_bigeminy()
            self.alt, self.alt_at = (1, t) if kind == OTHER else (0, None)

    def _close_run(self):
        if self.run:
            self.lengths[self.run] += 1
            if self.run > self.longest[0]:
                self.longest = (self.run, self.run_at)
        self.run = 0

    def _close_bigeminy(self):
        pairs = self.alt // 2
        if pairs >= MIN_BIGEMINY:
            self.bigeminy += 1
            self.bigeminy_v += pairs
            if pairs > self.longest_bigeminy[0]:
                self.longest_bigeminy = (pairs, self.alt_at)
        self.alt = 0

    def result(self):
        self._close_run()
        self._close_bigeminy()
        runs = {n: k for n, k in self.lengths.items() if n >= MIN_RUN}
        return {"isolated": self.lengths.get(1, 0), "couplets": self.lengths.get(2, 0), "runs": sum(runs.values()),
                "beats_in_runs": sum(n * k for n, k in runs.items()),
                "longest_run_beats": self.longest[0] if self.longest[0] >= MIN_RUN else 0,
                "longest_run_at_s": self.longest[1] if self.longest[0] >= MIN_RUN else None,
                "bigeminy_episodes": self.bigeminy, "beats_in_bigeminy": self.bigeminy_v,
                "longest_bigeminy_pairs": self.longest_bigeminy[0], "longest_bigeminy_at_s": self.longest_bigeminy[1]}
