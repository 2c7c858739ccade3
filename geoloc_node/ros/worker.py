"""The inference thread: builds the pipeline (so the encoder and any CUDA context are created on it), then runs
``pipeline.process_pending()`` each time a frame is submitted, and releases the pipeline on the same thread.

Frames reach it through the pipeline's one-slot latest-frame buffer (``submit_frame``): a frame that arrives while
one is being encoded replaces the waiting one and the pipeline counts the drop, so a slow encoder never builds a
backlog. GPS and odometry go to the pipeline directly from the executor's threads; they never wait for inference.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable


class WorkerStartError(RuntimeError):
    """The pipeline could not be built on the worker thread (bad table, encoder, fingerprint mismatch...)."""


class InferenceWorker:
    def __init__(self, build: Callable[[], object], on_results: Callable[[list], None],
                 on_error: Callable[[BaseException], None], name: str = "geoloc_inference"):
        self._build = build
        self._on_results = on_results
        self._on_error = on_error
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.pipeline = None

    def start(self, timeout_s: float = 1200.0) -> object:
        """Start the thread and wait until the pipeline is built; raise :class:`WorkerStartError` if it failed.

        Generous by default: the first configure on a Jetson may build the TensorRT engine (minutes; cached after).
        """
        self._thread.start()
        if not self._ready.wait(timeout_s):
            self._stop.set()
            raise WorkerStartError(f"building the pipeline took more than {timeout_s:.0f} s")
        if self._start_error is not None:
            self._thread.join(timeout=5.0)
            raise WorkerStartError(str(self._start_error)) from self._start_error
        return self.pipeline

    def submit(self, frame) -> None:
        """Hand a frame over (latest wins) and wake the thread."""
        pipeline = self.pipeline
        if pipeline is None:
            return
        pipeline.submit_frame(frame)
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop the thread; the pipeline (and the encoder's GPU memory) is released on it. True if it ended."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            self.pipeline = self._build()
            warm_up = getattr(self.pipeline, "warm_up", None)
            if callable(warm_up):  # before data flows: a first-frame stall would hold the GIL over every callback
                warm_up()
        except BaseException as e:  # noqa: BLE001 - reported to on_configure, which fails the transition
            self._start_error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                self._wake.wait()
                self._wake.clear()
                if self._stop.is_set():
                    break
                try:
                    results = self.pipeline.process_pending()
                except Exception as e:  # noqa: BLE001 - one bad frame never ends the thread
                    self._on_error(e)
                    results = []
                if results:
                    try:
                        self._on_results(results)
                    except Exception as e:  # noqa: BLE001
                        self._on_error(e)
                try:
                    self.pipeline.run_deferred()  # after publishing: off the image -> ~/fix latency
                except Exception as e:  # noqa: BLE001
                    self._on_error(e)
        finally:
            try:
                self.pipeline.close()  # the encoder's GPU memory, released on the thread that made it
            except Exception as e:  # noqa: BLE001
                self._on_error(e)
            self.pipeline = None
            gc.collect()
