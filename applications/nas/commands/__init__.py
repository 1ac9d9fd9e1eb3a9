"""The command lines: each module's ``build_parser``, ``main`` and ``cli`` (one-line errors, exit status 2).

They run as ``python -m applications.nas.{search,lookup,train,report}`` through the entry-point modules
of the same names one folder up. :mod:`.arguments` holds the argparse types and error handling they
share, :mod:`.plots` the figures of a search.
"""
