"""The exception for what a caller got wrong, and the one a saved part raises to name its faulty file.

:class:`InputError` is raised for input a person or a script can put right: a name, ``k``, a model, a prior, a
coverage, a file, a training setting. Its message says what is wrong and how to fix it, and the app shows it as it
is. Anything else that goes wrong while answering is a fault of namecls: the app logs it with its traceback and
shows a generic message (:func:`namecls.ui.common.user_errors`). It is a ``ValueError``, so code that catches
``ValueError`` still catches it.
"""


class InputError(ValueError):
    """Input the caller can put right; the message says how."""


class SavedPartError(ValueError):
    """A saved post-training part whose file ``file`` (a checkpoint file name) is wrong: raised by a part's
    ``from_saved``, so that the checkpoint loader names the file at fault (:mod:`namecls.checkpoint.parts`)."""

    def __init__(self, file: str, problem: str):
        super().__init__(problem)
        self.file = file
