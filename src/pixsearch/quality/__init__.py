"""Quality tools, apart from the serving core: ``pixsearch eval`` (measure retrieval) and ``pixsearch train``.

Serving (index, search, the API) never imports this package. ``datasets`` reads the
data both tools use, ``metrics`` scores rankings, ``eval`` and ``chart`` measure and
draw, ``train`` with ``examples``, ``checkpoint`` and ``trainkit`` fine-tunes a model.
"""
