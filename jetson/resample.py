"""Sampling-rate conversion of a stream (Python 3.6+, numpy, scipy): scipy's resample_poly
computed chunk by chunk, the same numbers as the one-shot call (streaming.py, quality_stream.py)."""
from fractions import Fraction

import numpy as np
from scipy.signal import firwin, upfirdn

from .common import DeviceError


def rate_ratio(fs_in, fs_out):
    """(up, down) with fs_out / fs_in = up / down, for the polyphase resampler."""
    r = Fraction(str(float(fs_out))) / Fraction(str(float(fs_in)))
    if r.numerator > 10000 or r.denominator > 10000:
        raise DeviceError("sampling rate {:g} Hz: the ratio {:g}/{:g} is too complex to resample; round the rate "
                          "to a whole number of Hz".format(fs_in, fs_out, fs_in))
    return r.numerator, r.denominator


class Resampler(object):
    """scipy.signal.resample_poly(x, up, down) (Kaiser window, beta 5, zero padding) computed chunk
    by chunk: each output sample comes from upfirdn over a buffer that holds all its inputs and
    starts at a multiple of `down`, so the products and sums are those of the one-shot call."""

    def __init__(self, fs_in, fs_out):
        self.up, self.down = rate_ratio(fs_in, fs_out)
        self.n_in, self.start, self.out_done = 0, 0, 0
        self.buf = np.zeros(0)
        if self.up == self.down == 1:
            return
        max_rate = max(self.up, self.down)
        half_len = 10 * max_rate
        h = firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * self.up
        pre_pad = self.down - half_len % self.down
        self.pre = (half_len + pre_pad) // self.down
        self.h = np.concatenate([np.zeros(pre_pad), h])

    def push(self, x, final=False):
        x = np.asarray(x, dtype=np.float64)
        if self.up == self.down == 1:
            return x
        self.buf = np.concatenate([self.buf, x])
        self.n_in += len(x)
        up, down, pre = self.up, self.down, self.pre
        n_total = -(-self.n_in * up // down)
        # output m needs the inputs up to floor((m + pre) * down / up)
        end = n_total if final else min(n_total, -(-self.n_in * up // down) - pre)
        if end <= self.out_done:
            return np.zeros(0)
        z = upfirdn(self.h, self.buf, up, down)
        offset = self.start * up // down
        need = end + pre - offset
        if len(z) < need:
            z = np.concatenate([z, np.zeros(need - len(z))])
        out = z[self.out_done + pre - offset:need]
        self.out_done = end
        # the oldest input any later output needs, rounded down to a multiple of down
        first = max(((end + pre) * down - len(self.h) + 1) // up, 0) // down * down
        if first > self.start:
            self.buf = self.buf[first - self.start:]
            self.start = first
        return out
