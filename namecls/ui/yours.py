"""The model a visitor trains in their session ("Yours"): a store capped in number and age, and the lookup every
tab uses to offer it beside the committed RNN and GRU."""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import gradio as gr

from ..inference import Classifier

YOURS = "yours"
# Trained models kept per process (the least recently trained goes first) and how long one lives. A model is at
# most a 2-layer GRU of 256 with its training-name table: ≤ 4 MB. Worst case 20 × 4 MB = 80 MB.
MAX_TRAINED_MODELS = 20
TRAINED_SECONDS = 1800
# Sessions whose model the cap or the age took, remembered (a session id and a word each, a few MB at most) so
# that a tab can say why "Yours" is gone rather than act as if the session never trained one.
MAX_GONE = 10_000


@dataclass(frozen=True)
class Mine:
    """A session's trained model as a tab sees it: the classifier (None if none), a serial number that changes
    with every training (None without a model), and why it is gone ("age" or "cap"; None if it is there or the
    session never trained one)."""

    classifier: Classifier | None = None
    serial: int | None = None
    gone: str | None = None


class TrainedModels:
    """The sessions' trained classifiers, keyed by session: capped in number and in age."""

    def __init__(self, capacity: int = MAX_TRAINED_MODELS, seconds: float = TRAINED_SECONDS):
        self.capacity, self.seconds = capacity, seconds
        self._items: OrderedDict[str, tuple[float, int, Classifier]] = OrderedDict()
        self._gone: OrderedDict[str, str] = OrderedDict()
        self._serials = itertools.count(1)
        self._lock = threading.Lock()

    def _went(self, session: str, why: str) -> None:  # with the lock held
        del self._items[session]
        self._gone[session] = why
        while len(self._gone) > MAX_GONE:
            self._gone.popitem(last=False)

    def put(self, session: str, classifier) -> None:
        """Keep ``classifier`` for ``session``; models past their age and the oldest beyond the cap go."""
        now = time.monotonic()
        with self._lock:
            self._items.pop(session, None)
            self._gone.pop(session, None)
            for old in [s for s, (born, _, _) in self._items.items() if now - born > self.seconds]:
                self._went(old, "age")
            self._items[session] = (now, next(self._serials), classifier)
            while len(self._items) > self.capacity:
                self._went(next(iter(self._items)), "cap")

    def lookup(self, session: str) -> Mine:
        """The session's model with its serial number, or why it is gone."""
        with self._lock:
            if session not in self._items:
                return Mine(gone=self._gone.get(session))
            born, serial, classifier = self._items[session]
            if time.monotonic() - born > self.seconds:
                self._went(session, "age")
                return Mine(gone="age")
            return Mine(classifier, serial)

    def get(self, session: str):
        return self.lookup(session).classifier

    def drop(self, session: str) -> None:
        """Forget the session altogether (it ended)."""
        with self._lock:
            self._items.pop(session, None)
            self._gone.pop(session, None)

    def __len__(self) -> int:
        return len(self._items)


TRAINED = TrainedModels()


def _session(request: gr.Request | None) -> str | None:
    return request.session_hash if request is not None and request.session_hash else None


def session_mine(request: gr.Request | None) -> Mine:
    """The session's own trained model (:class:`Mine`), or why it has none."""
    session = _session(request)
    return TRAINED.lookup(session) if session else Mine()


def session_models(models: dict, request: gr.Request | None) -> dict:
    """``models`` plus the session's own trained model under "yours", if it has one."""
    mine = session_mine(request).classifier
    return models if mine is None else {**models, YOURS: mine}


def gone_message(why: str, store: TrainedModels = TRAINED) -> str:
    """Why the session's trained model is no longer on the server, and what to do (plain text)."""
    if why == "age":
        reason = f"this server keeps a trained model for {store.seconds / 60:g} minutes"
    else:
        reason = (f"this server keeps the {store.capacity} most recently trained models, and newer ones took "
                  f"its place")
    return (f"The model you trained is no longer on the server: {reason}. Train it again in “Train your own”, "
            f"or load the zip you downloaded with namecls.load.")


def picked_gone(kind, request: gr.Request | None) -> str | None:
    """Why a tab's model choice ``kind`` has no model behind it: :func:`gone_message` if it is "yours" and the cap
    or the age took the session's model; None otherwise (the model is there, another model was chosen, or the
    session never trained one: then the service's own error about an unknown model stands)."""
    if kind != YOURS:
        return None
    mine = session_mine(request)
    return gone_message(mine.gone) if mine.classifier is None and mine.gone else None


def forget(request: gr.Request) -> None:
    """When a session ends (the page is closed or reloaded), its trained model goes with it."""
    session = _session(request)
    if session:
        TRAINED.drop(session)
