"""One trial: its config (TrialConfig), the train step, the trial loop, periodic hooks and checkpoints.

`python -m study.trial KEY=VALUE ...` runs one in-process (study.trial.cli)."""
