"""Our jit-compiled train step vs a PyTorch eager reference of the same GAN, side by side.

    python -m benchmarks.train_step [--quick] [--width W] [--cases sndcgan1,sndcgan5,resnet5] [--repeats N]

One "step" is one call of study.trial.train's train step: n_dis D updates + 1 G update, batch 64,
32x32x3. Ours and torch's repetitions alternate (ours, torch, ours, ...) so that load
from other processes on a shared machine hits both sides alike. ratio = ours / torch
(below 1: we are faster); compile time is reported apart (about 0 for a case whose program
an earlier case compiled: n_dis 1 and 5 share one). Both sides use 2 threads. On a 2-core
CPU the full-width resnet5 case takes over 15 minutes; pass --cases to skip it.

Profile by difference (`--profile`): D update alone = (t[n_dis=5] - t[n_dis=1]) / 4,
G update alone = t[n_dis=1] - D update (both sides run G forward once for the first D update
and the G update, so this is the G update without G's forward); spectral norm = t[SN] - t[no SN]; penalty = t[GP] - t[none].
"""
from __future__ import annotations

import statistics
import time

from benchmarks.common import alternating_medians, parser, pin_threads, result_line

CASES = {
    # name: (architecture, normalization, penalty, n_dis)
    "sndcgan1": ("sndcgan", "spectral", "none", 1),
    "sndcgan5": ("sndcgan", "spectral", "none", 5),
    "resnet5": ("resnet_cifar", "spectral", "gp", 5),
    # profile-only variants
    "sndcgan1_nosn": ("sndcgan", "none", "none", 1),
    "sndcgan1_gp": ("sndcgan", "spectral", "gp", 1),
}


def ours(case: str, width: float, batch: int, image_size: int, seed: int = 0):
    """Returns (step() -> None that blocks, compile seconds)."""
    import jax
    import numpy as np

    from study.trial import train as training
    from study.trial.config import TrialConfig

    architecture, normalization, penalty, n_dis = CASES[case]
    config = TrialConfig(
        dataset="cifar10", architecture=architecture, loss="ns", normalization=normalization, penalty=penalty,
        discriminator_steps=n_dis, batch_size=batch, image_size=image_size, width_multiplier=width,
        scale="small", train_steps=1000, eval_every=1000, seed=seed,
    )
    program = training.get_program(config)
    state = training.init_state(program, config, jax.random.PRNGKey(seed))
    # The program's real-batch slots (5, shared by n_dis 1 and 5); a group reads the first n_dis.
    real = jax.device_put(np.random.default_rng(seed).integers(
        0, 256, (program.batch_slots, batch, image_size, image_size, 3), dtype=np.uint8))
    key = jax.random.PRNGKey(1)
    holder = [state]

    def step():
        # The trial loop's path (study.trial.train.run_group): one call at these shapes, split calls at tiny ones.
        holder[0], metrics = training.run_group(program, holder[0], real, key, n_dis)
        jax.block_until_ready((holder[0], metrics))

    start = time.perf_counter()
    step()  # compiles (or loads from the persistent cache) both calls
    compile_s = time.perf_counter() - start

    return step, compile_s


def reference(case: str, width: float, batch: int, image_size: int, seed: int = 0):
    import torch

    from benchmarks.torch_reference import TorchGAN

    architecture, normalization, penalty, n_dis = CASES[case]
    torch.manual_seed(seed)
    gan = TorchGAN(architecture, penalty, width, image_size=image_size, spectral=normalization == "spectral")
    real = torch.randint(0, 256, (n_dis, batch, image_size, image_size, 3), dtype=torch.uint8)
    return lambda: gan.train_step(real)


def measure(case: str, width: float, batch: int, image_size: int, repeats: int) -> dict:
    step_ours, compile_s = ours(case, width, batch, image_size)
    step_torch = reference(case, width, batch, image_size)
    ours_s, torch_s = alternating_medians(step_ours, step_torch, repeats)
    ours_ms, torch_ms = 1000 * ours_s, 1000 * torch_s
    return {"ours_ms": ours_ms, "torch_ms": torch_ms, "compile_s": compile_s, "ratio": ours_ms / torch_ms}


def main(argv=None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--width", type=float, default=None, help="width multiplier (default 1.0; --quick: 0.125)")
    p.add_argument("--cases", default=None, help="comma-separated of: " + ", ".join(CASES))
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--profile", action="store_true", help="add the cases that isolate D, G, SN and GP")
    args = p.parse_args(argv)
    pin_threads(2)
    if args.quick:
        width, batch, image_size, repeats = args.width or 0.125, 16, 16, args.repeats or 2
        cases = (args.cases or "sndcgan1").split(",")
    else:
        width, batch, image_size, repeats = args.width or 1.0, 64, 32, args.repeats or 5
        cases = (args.cases or "sndcgan1,sndcgan5,resnet5").split(",")
        if args.profile:
            cases += [c for c in ("sndcgan1_nosn", "sndcgan1_gp") if c not in cases]
    results = {}
    for case in cases:
        results[case] = measure(case, width, batch, image_size, repeats)
        r = results[case]
        print(f"{case}: width {width} batch {batch} {image_size}px ours {r['ours_ms']:.1f} ms torch "
              f"{r['torch_ms']:.1f} ms ratio {r['ratio']:.2f} compile {r['compile_s']:.1f} s", flush=True)
    if {"sndcgan1", "sndcgan5"} <= set(results):
        for side in ("ours_ms", "torch_ms"):
            d = (results["sndcgan5"][side] - results["sndcgan1"][side]) / 4
            g = results["sndcgan1"][side] - d
            print(f"profile {side}: SNDCGAN D update {d:.1f} ms, G update (its D fwd/bwd, G bwd) {g:.1f} ms")
    for variant, label in (("sndcgan1_nosn", "spectral norm"), ("sndcgan1_gp", "WGAN-GP penalty")):
        if variant in results and "sndcgan1" in results:
            for side in ("ours_ms", "torch_ms"):
                base = results["sndcgan1"][side]
                delta = base - results[variant][side] if variant.endswith("nosn") else results[variant][side] - base
                print(f"profile {side}: {label} costs {delta:.1f} ms per n_dis=1 step")
    headline = [c for c in cases if c.startswith("sndcgan") and c in CASES and "_" not in c] or cases
    # The headline ratio is SNDCGAN's (the CPU goal); every case's figures follow it.
    ratio = statistics.geometric_mean([results[c]["ratio"] for c in headline])
    figures = {}
    for case in cases:
        for key in ("ours_ms", "torch_ms", "compile_s", "ratio"):
            figures[f"{case}_{key}"] = results[case][key]
    print(result_line("train_step", ratio, width=width, batch=batch, **figures))


if __name__ == "__main__":
    main()
