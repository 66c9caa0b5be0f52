"""The competition's data: its layout and tables (``competition``), audio reading and cleaning (``audio``),
recording sessions (``sessions``), the metric (``metric``), test-like soundscapes mixed from recordings
(``mixing``), and the synthetic demo dataset (``demo``, with offline speech from ``tts``).

The first stage: nothing here imports a later one (``tests/test_layout.py``).
"""
