"""The model a visitor trains in their session ("Yours"): a store capped in number and age, and the lookup every
tab uses to offer it beside the committed RNN and GRU."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import gradio as gr

YOURS = "yours"
# Trained models kept per process (the least recently trained goes first) and how long one lives. A model is at
# most a 2-layer GRU of 256 with its training-name table: ≤ 4 MB. Worst case 20 × 4 MB = 80 MB.
MAX_TRAINED_MODELS = 20
TRAINED_SECONDS = 1800


class TrainedModels:
    """The sessions' trained classifiers, keyed by session: capped in number and in age."""

    def __init__(self, capacity: int = MAX_TRAINED_MODELS, seconds: float = TRAINED_SECONDS):
        self.capacity, self.seconds = capacity, seconds
        self._items: OrderedDict[str, tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, session: str, classifier) -> None:
        """Keep ``classifier`` for ``session``; models past their age and the oldest beyond the cap go."""
        now = time.monotonic()
        with self._lock:
            self._items.pop(session, None)
            for old in [s for s, (born, _) in self._items.items() if now - born > self.seconds]:
                del self._items[old]
            self._items[session] = (now, classifier)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, session: str):
        with self._lock:
            born, classifier = self._items.get(session, (0.0, None))
            if classifier is not None and time.monotonic() - born > self.seconds:
                del self._items[session]
                return None
            return classifier

    def drop(self, session: str) -> None:
        with self._lock:
            self._items.pop(session, None)

    def __len__(self) -> int:
        return len(self._items)


TRAINED = TrainedModels()


def session_models(models: dict, request: gr.Request | None) -> dict:
    """``models`` plus the session's own trained model under "yours", if it has one."""
    mine = TRAINED.get(request.session_hash) if request is not None and request.session_hash else None
    return models if mine is None else {**models, YOURS: mine}


def forget(request: gr.Request) -> None:
    """When a session ends (the page is closed or reloaded), its trained model goes with it."""
    if request is not None and request.session_hash:
        TRAINED.drop(request.session_hash)
