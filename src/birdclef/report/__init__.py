"""What the notebooks show: tables (``tables``), figures (``plots``) and the data card and EDA (``eda``)."""
