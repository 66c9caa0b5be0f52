"""Window probabilities for test soundscapes from an ensemble of any model families, within a time
budget (``predict``)."""
