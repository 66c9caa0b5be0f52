"""Audio → features: speech removal (``speech``), the cached embedding pass of a backbone (``embeddings``;
``distributed`` runs it on a cluster), the preprocess stage (``preprocess``), the backbone's own species
scores mapped onto the taxonomy (``zeroshot``) and the labelled train soundscapes' windows (``soundscapes``).
"""
