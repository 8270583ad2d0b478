"""Many trials: the `python -m study.run` command line (cli), the Ray Tune launch (tune), Bayesian
rounds with Ax (bayes), signal handling (interrupt) and the live report."""
