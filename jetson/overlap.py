"""A stream's images and model in a second process, while the beat engine goes on (Python 3.6+,
numpy, multiprocessing).

A stream classifies one or two beats at a time, and for each the engine's own steps (detection,
baseline, template, features: numpy on small arrays, Python between them) cost about as much as
the scalograms and the model. Batch mode spreads its large products and model batches over the
cores; a stream can use the second core only by running the two halves side by side. Threads
cannot: the engine holds the GIL almost all the time, so a thread waits for it at every step
(measured here: the scalograms of a beat 35 ms instead of 0.3 ms). So the scalograms and the
model run in a child process (ModelProcess); the engine sends each push's windows and features
and goes on with the next push; the labels come back in order (Pipeline) and leave with the
first push after they are done (all of them with the final push). The child starts beside the
engine (~0.9 s to import numpy, OpenCV and ONNX Runtime and load the model, on the other core);
until it is up the engine labels the beats itself, so a short input loses nothing. The CSV is
the same as without it, byte for byte; what changes is when a beat leaves the engine (a few
chunks later, at most MAX_PENDING jobs).

Only for ONNX Runtime (TensorRT's CUDA context belongs to the process and thread that made it)
and only for a stream replayed at full speed (--stream without --realtime): paced at real time
the engine is idle most of the time and a beat's label should leave at once.
"""
import multiprocessing
from collections import deque

from .common import DeviceError
from .runners import OrtRunner, softmax_classifier
from .scalograms import beat_images, kernels_of
from .streaming import labelled

MAX_PENDING = 16   # jobs the model process may be behind (~15 s of ECG): bounds the memory and the delay


def serve(conn, onnx, with_template, batch):
    """The child: take the CWT operator's kernels, load the model, then answer (windows,
    features, n) with (labels, confidences) until None. Errors go back as text."""
    try:
        conn.send(("ready", None))
        kernels, image_size = conn.recv()
        op = {"operator_kernels": kernels, "image_size": image_size}
        classify = softmax_classifier(OrtRunner(onnx, threads=1), batch)
    except Exception as e:   # DeviceError (or onnxruntime missing): the parent reports it
        conn.send(("error", str(e)))
        return
    while True:
        job = conn.recv()
        if job is None:
            return
        windows, feats, n = job
        try:
            labels, conf = classify(beat_images(windows, op, n, with_template), feats)
        except Exception as e:
            conn.send(("error", "the model process: {}".format(e)))
            return
        conn.send(("ok", (labels, conf)))


class ModelProcess(object):
    """The child process of `serve`, started with the model (an ONNX file) and the CWT operator."""

    def __init__(self, onnx, op, with_template, batch):
        ctx = multiprocessing.get_context("spawn")   # a fresh interpreter: no inherited threads or CUDA
        self.conn, child = ctx.Pipe()
        # small arguments only: multiprocessing writes them to the child before it runs, and would
        # wait forever on a child that died first; the operator (0.3 MB) goes over the pipe
        self.proc = ctx.Process(target=serve, args=(child, onnx, bool(with_template), int(batch)), daemon=True)
        self.proc.start()
        child.close()
        # nothing big to write before the child reads (a pipe holds 64 kB): the operator (0.3 MB)
        # and the first jobs wait here until it says it is up (it imports numpy, OpenCV, ONNX Runtime)
        self.up, self.backlog = False, [(kernels_of(op), int(op["image_size"]))]

    def _send(self, message):
        try:
            self.conn.send(message)
        except (OSError, ValueError):   # BrokenPipeError: the child is gone
            raise DeviceError("the model process ended unexpectedly{}".format(self._why()))

    def _why(self):
        if self.conn.poll():   # it may have said why
            try:
                kind, value = self.conn.recv()
                if kind == "error":
                    return ": " + value
            except (EOFError, OSError):
                pass
        return " (its messages, if any, are above)"

    def _recv(self):
        try:
            kind, value = self.conn.recv()
        except (EOFError, OSError):
            raise DeviceError("the model process ended unexpectedly (its messages, if any, are above)")
        if kind == "error":
            raise DeviceError(value)
        if kind == "ready":
            self.up = True
            for message in self.backlog:
                self._send(message)
            self.backlog = []
        return kind, value

    def submit(self, windows, feats, n):
        if self.up:
            self._send((windows, feats, n))
        else:
            self.backlog.append((windows, feats, n))
            self.poll()

    def poll(self):
        """Is the oldest job's result there (without waiting)?"""
        if not self.up and self.conn.poll():
            self._recv()   # "ready" (or an error)
        return self.up and self.conn.poll()

    def receive(self):
        """The oldest job's (labels, confidences), waiting for them."""
        while True:
            kind, value = self._recv()
            if kind == "ok":
                return value

    def accepting(self):
        """Is the child up (without waiting)? Until it is, the engine labels beats itself."""
        if not self.up and self.conn.poll():
            self._recv()   # "ready" (or an error)
        return self.up

    def close(self):
        if self.proc is None:
            return
        if not self.up:   # still starting (a short input): nothing to finish
            self.proc.terminate()
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.terminate()
        self.conn.close()
        self.proc = None


class Pipeline(object):
    """The beats a stream found, in time order, each job's labels from the model process when
    they come back: put() after each push, take() what can leave now."""

    def __init__(self, model):
        self.model, self.pending, self.jobs = model, deque(), 0
        self.sent = 0   # jobs the model process took (0: it never came up in time)

    def accepting(self):
        return self.model.accepting()

    def put(self, found, job):
        """found: the engine's beat tuples; job: (beat numbers, windows, features) for the model
        process, or None (the beats are labelled already, or have no label)."""
        if job is not None:
            numbers, windows, feats = job
            self.model.submit(windows, feats, len(numbers))
            self.pending.append((found, numbers))
            self.jobs += 1
            self.sent += 1
        elif found:
            self.pending.append((found, None))

    def oldest(self):
        """The model-rate R peak of the oldest beat not yet taken (None: none)."""
        for found, _ in self.pending:
            if found:
                return found[0][1]
        return None

    def take(self, final=False):
        """The beats that can leave: the labelled ones at the head (waiting for the oldest job
        only when MAX_PENDING are out, or at the signal's end)."""
        out = []
        while self.pending:
            found, numbers = self.pending[0]
            if numbers is not None:
                if not (final or self.jobs > MAX_PENDING or self.model.poll()):
                    break
                labels, conf = self.model.receive()
                self.jobs -= 1
                found = labelled(found, numbers, labels, conf)
            self.pending.popleft()
            out += found
        return out

    def close(self):
        self.model.close()
