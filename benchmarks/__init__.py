"""pytest-benchmark suites: estimators, HVP modes and peers side by side (``make bench``)."""
