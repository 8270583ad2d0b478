"""What a study found: results tables -> statistics, seaborn figures, an HTML report.

Reads only a study directory (results.parquet, manifest.json, trials/*/samples*.png) with
pandas, matplotlib/seaborn and scikit-learn. Of the project it imports only study.schema (the
record contract, plain data) and study.storage (locations and paths, pyarrow filesystems for
studies at URIs); never JAX, Flax, Ray or `models`, so a report builds on a laptop without them
(tests/test_layout.py checks it).
Entry points: `analysis.report.build_report` and `python -m analysis.report STUDY_DIR`.
"""
