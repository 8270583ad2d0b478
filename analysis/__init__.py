"""What a study found: results tables -> statistics, seaborn figures, an HTML report.

Reads only a study directory (results.parquet, manifest.json, trials/*/samples*.png) with
pandas, matplotlib/seaborn and scikit-learn; never imports JAX, Flax, Ray or the
`study`/`models` packages, so a report builds on a laptop without them.
Entry points: `analysis.report.build_report` and `python -m analysis.report STUDY_DIR`.
"""
