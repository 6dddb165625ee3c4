"""The one exception for what a caller got wrong.

:class:`InputError` is raised for input a person or a script can put right: a name, ``k``, a model, a prior, a
coverage, a file, a training setting. Its message says what is wrong and how to fix it, and the app shows it as it
is. Anything else that goes wrong while answering is a fault of namecls: the app logs it with its traceback and
shows a generic message (:func:`namecls.ui.common.user_errors`). It is a ``ValueError``, so code that catches
``ValueError`` still catches it.
"""


class InputError(ValueError):
    """Input the caller can put right; the message says how."""
