"""How a trial and a study run. Sub-packages by layer; each imports only the layers below it:

    study.schema    column names, statuses, ablation and trick defaults (no imports; analysis reads it too)
    study.runtime   process settings (JAX compilation cache, Ray driver environment)
    study.storage   where a study lives (local, NFS, s3://, gs://), the results store, output paths
    study.data      datasets: CIFAR-10, CelebA-HQ, LSUN, the embedded digits; batch streams
    study.metrics   FID / IS / KID and the other scores, the Evaluator and its reference points
    study.trial     one trial: TrialConfig, the train step, the trial loop, its hooks, checkpoints
    study.sweep     many trials: the `study.run` CLI, Ray Tune launch, Bayesian rounds, interrupts
"""
