"""birdclef's benchmark harness: every modelling choice measured, outside the product.

    python -m birdclef_bench --dataset realdev      # the real-audio benchmark (birdclef_bench.realbench)
    python -m birdclef_bench --out /tmp/quality     # the synthetic datasets (birdclef_bench.experiments)

:mod:`~birdclef_bench.heldout` builds held-out tasks from real recordings (whole sessions out,
test soundscapes like the competition's), :mod:`~birdclef_bench.realbench` trains and submits every
variant on them through birdclef's own stage functions, :mod:`~birdclef_bench.experiments` is the
command line and the synthetic benchmark. It imports birdclef; nothing in birdclef imports it.
"""
