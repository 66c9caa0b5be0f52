"""Model families behind the protocol of :mod:`birdclef.family`: the MLP head on cached embeddings
(``head``, ``examples``, ``train``, ``pseudo``, ``softlabels``, ``valsoundscapes``; registered by
``head_family``), the context model over a file's windows (``context``) and the SED CNNs (``sed``).
"""
