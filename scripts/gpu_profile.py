"""Where the GPU time of the Fig 2 sweep goes: DeePSiM, AlexNet, resizing, per layout and dtype.

Run on a CUDA machine: ``python scripts/gpu_profile.py [--sweep-generations 8]``. Prints one line
per measurement and, last, one JSON object. Random weights: compute is what matters.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from signseg_core.bench import configure_cuda, time_sweep  # noqa: E402
from signseg_core.deepsim import make_untrained  # noqa: E402
from signseg_core.generators import DeePSiMGenerator  # noqa: E402
from signseg_core.registry import load_model  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def rate(fn, n_images: int, reps: int = 8) -> float:
    fn()
    _sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    _sync()
    return reps * n_images / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--sweep-generations", type=int, default=8, help="0: no sweep")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--reps", type=int, default=8)
    args = parser.parse_args()
    configure_cuda()
    dev = torch.device(args.device)
    B = args.batch
    out: dict[str, float] = {}
    rng = torch.Generator(device=dev).manual_seed(0)
    codes = torch.randn(B, 4096, device=dev, generator=rng) * 3
    base = make_untrained(seed=0).to(dev)
    forms = {"deconv": base}
    for form, net in forms.items():
        for layout in ("nchw", "cl"):
            fmt = torch.channels_last if layout == "cl" else torch.contiguous_format
            net = net.to(memory_format=fmt)
            for dt, dtype in DTYPES.items():
                with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype):
                    key = f"deepsim_{form}_{layout}_{dt}"
                    out[key] = rate(lambda: net(codes), B, args.reps)
                    print(f"{key:32s} {out[key]:10.0f} img/s", flush=True)
    model = load_model("alexnet", device=dev, untrained=True)
    imgs = torch.rand(B, 3, 256, 256, device=dev)
    with torch.inference_mode():
        out["resize_normalise"] = rate(lambda: model.preprocess(imgs, validate=False), B, args.reps)
        for dt, dtype in DTYPES.items():
            with torch.autocast(dev.type, dtype=dtype):
                out[f"alexnet_{dt}"] = rate(lambda: model.features(imgs, validate=False), B,
                                            args.reps)
    for k in ("resize_normalise", "alexnet_bf16", "alexnet_fp16"):
        print(f"{k:32s} {out[k]:10.0f} img/s", flush=True)

    best = max((k for k in out if k.startswith("deepsim_") and k.endswith("bf16")), key=out.get)
    form, layout = best.split("_")[1:3]
    print(f"sweep with DeePSiM {form}/{layout}, bf16", flush=True)
    net = forms[form].to(memory_format=torch.channels_last if layout == "cl"
                         else torch.contiguous_format)
    gen = DeePSiMGenerator(net, fingerprint=f"deepsim-random-{form}")
    if args.sweep_generations:
        sweep = time_sweep(model, gen, generations=args.sweep_generations, batch_size=B,
                           precision="bf16")
        print(f"sweep {sweep['sweep_generations_run']} generations: {sweep['sweep_seconds']:.1f}"
              f" s, 100 projected {sweep['sweep_projected_seconds']:.0f} s", flush=True)
        out.update(sweep)
    cuda = dev.type == "cuda"
    out.update({"best_deepsim": best, "torch": torch.__version__, "batch": B,
                "device_name": torch.cuda.get_device_name(dev) if cuda else "cpu",
                "peak_gib": torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else 0.0})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
