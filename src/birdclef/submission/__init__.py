"""The submission stage (``submit``: 04_submit's entry point, the CSV, its local score) and the Kaggle
bundle and kernel (``kaggle``)."""
