"""Preferred images by gradient ascent on the ablated readout row, for generators whose
``method`` is ``"gradient"`` (:class:`~signseg_core.generators.maco.MacoGenerator`).

The objective is the CMA-ES one (:mod:`signseg_core.optimize.visualize`): for condition c with
ablated readout row w_c and bias b_c (:func:`~signseg_core.ablation.ablated_readout`),

    s_c(x) = w_c · f(T(x)) + b_c

with f the model's readout features and T a random transform, drawn anew at every step (Lucent's
transformation robustness: a grey border of ``pad`` px, a shift of up to ``jitter`` px, a scale
and a rotation, :func:`~signseg_core.optimize.gradvis.draw_transforms`). Adam
(``torch.optim.Adam``, the generator's ``lr``, default betas) raises s_c of every restart's code
(for MACO: the phases) for ``settings.generations`` steps, one transformed image per restart per
step. Restart r of condition c starts from ``generator.initial_code(1, seed=evolution_seed(key,
r))`` and draws its transforms from a generator seeded by (that seed, 1); Adam acts elementwise
and each image's gradient depends on that image alone (eval mode), so a condition's images do
not depend on what else is batched with it (up to float rounding).

What a :class:`~signseg_core.optimize.results.ConditionResult` holds here: ``images`` the final
codes rendered without a transform; ``best_scores`` the ablated objective s_c of that final clean
image (float, before 8-bit rounding; not the best seen: clean images are not scored while
running); ``intact_scores`` the intact logit of the unit on the same image; ``max_per_gen`` and
``mean_per_gen`` (steps, R) both the objective of each step's one transformed image;
``best_codes`` and ``final_means`` both the final codes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
from torch import Tensor

from signseg_core.ablation import ablated_readout
from signseg_core.optimize.gradvis import affine_matrices, draw_transforms, transform_images
from signseg_core.optimize.results import ConditionResult, to_uint8
from signseg_core.optimize.settings import evolution_seed

_HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class AscentState:
    """What ``observe`` sees after each step (the attributes live previews read).

    best_score : Tensor (N,), the latest step's objective of each restart (transformed image);
    best_code : Tensor (N, d), each restart's current code (detached). N = conditions x restarts,
    condition-major, as in :func:`~signseg_core.optimize.visualize.evolve_conditions`.
    """

    best_score: Tensor
    best_code: Tensor


def restart_generator(seed: int) -> torch.Generator:
    """The transforms' random generator of the restart whose start seed is ``seed``."""
    mixed = int(np.random.SeedSequence([int(seed), 1]).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(mixed)


def _autocast(device: torch.device, precision: str):
    if precision in _HALF and device.type == "cuda":
        return torch.autocast("cuda", dtype=_HALF[precision])
    return contextlib.nullcontext()


def ascend_conditions(model, generator, todo, settings, precision, batch_size, progress,
                      should_stop, compile=False, *, on_batch=None, observe=None):
    """:func:`~signseg_core.optimize.visualize.evolve_conditions` by gradient ascent (module
    docstring): ``todo`` pairs of Condition and ConditionKey → one ConditionResult each, in
    order, marked ``cancelled`` when ``should_stop()`` (asked before every chunk of
    ``batch_size`` images through the backbone) said True; then the codes are those after the
    last whole step. ``progress(done, total)`` after each step, ``on_batch(n)`` after each chunk
    (n images through the backbone, forward and backward), ``observe(step, state, images_of)``
    after each step with an :class:`AscentState`. ``compile`` is not used here."""
    device = model.device
    R, steps = settings.restarts, settings.generations
    conds = [c for c, _ in todo]
    seeds = [evolution_seed(k, r) for _, k in todo for r in range(R)]
    units = torch.tensor([c.unit for c in conds], device=device).repeat_interleave(R)
    cond_of = torch.arange(len(conds), device=device).repeat_interleave(R)
    with torch.inference_mode(False), torch.enable_grad():
        rows, biases = ablated_readout(model.readout.weight, model.readout.bias, conds)
        rows, biases = rows.to(device, torch.float32).clone(), biases.to(device,
                                                                         torch.float32).clone()
        codes = torch.cat([generator.initial_code(1, seed=s) for s in seeds]).to(device)
        plan = SimpleNamespace(steps=steps, jitter=generator.jitter, scales=generator.scales,
                               rotate_degrees=generator.rotate_degrees)
        canvas = generator.image_size + 2 * generator.pad
        thetas = affine_matrices(*draw_transforms(plan, [restart_generator(s) for s in seeds]),
                                 size=generator.image_size, canvas=canvas).to(device)
        ascent = _Ascent(model, generator, rows[cond_of], biases[cond_of], precision, batch_size,
                         canvas)
        trajectory, cancelled = ascent.run(codes, thetas, generator.lr, progress, should_stop,
                                           on_batch, observe)
        with torch.no_grad():
            images, best, intact = ascent.clean(codes.detach(), units)
    traj = torch.stack(trajectory).cpu().numpy() if trajectory else np.empty((0, len(seeds)))
    final = codes.detach().float().cpu().numpy()
    return [ConditionResult(key, images[i * R:(i + 1) * R], best[i * R:(i + 1) * R],
                            intact[i * R:(i + 1) * R], traj[:, i * R:(i + 1) * R],
                            traj[:, i * R:(i + 1) * R].copy(), final[i * R:(i + 1) * R],
                            final[i * R:(i + 1) * R].copy(), cancelled=cancelled)
            for i, (_, key) in enumerate(todo)]


class _Ascent:
    """One run's scoring: each image's objective under its own row, chunk by chunk."""

    def __init__(self, model, generator, rows: Tensor, biases: Tensor, precision: str,
                 batch_size: int, canvas: int):
        self.model, self.generator, self.rows, self.biases = model, generator, rows, biases
        self.precision, self.batch_size, self.canvas = precision, batch_size, canvas

    def score(self, images: Tensor, rows: slice) -> Tensor:
        """Ablated objective (n,) float32 of images (n, 3, H, W) under ``self.rows[rows]``."""
        with _autocast(self.model.device, self.precision):
            feats = self.model.features(images, validate=False).float()
        return (feats * self.rows[rows]).sum(1) + self.biases[rows]

    def run(self, codes: Tensor, thetas: Tensor, lr: float, progress, should_stop, on_batch,
            observe) -> tuple[list[Tensor], bool]:
        """Adam on ``codes`` (N, d) in place; each step's objective (N,) and whether stopped."""
        optimizer = torch.optim.Adam([codes.requires_grad_(True)], lr=lr)
        steps, n = thetas.shape[0], codes.shape[0]
        trajectory: list[Tensor] = []
        images_of = self.images_of
        for step in range(steps):
            optimizer.zero_grad(set_to_none=False)
            objective = torch.empty(n, device=codes.device)
            for start in range(0, n, self.batch_size):
                if should_stop is not None and should_stop():
                    return trajectory, True
                part = slice(start, min(start + self.batch_size, n))
                image = transform_images(self.generator(codes[part]), thetas[step, part],
                                         self.canvas)
                value = self.score(image, part)
                (-value.sum()).backward()
                objective[part] = value.detach()
                if on_batch is not None:
                    on_batch(part.stop - part.start)
            optimizer.step()
            trajectory.append(objective.double())
            if progress is not None:
                progress(step + 1, steps)
            if observe is not None:
                observe(step + 1, AscentState(objective.double(), codes.detach()), images_of)
        return trajectory, False

    def images_of(self, codes: Tensor) -> np.ndarray:
        """Codes (n, d) → uint8 images (n, H, W, 3), no transform (live previews)."""
        with torch.no_grad():
            return to_uint8(self.generator(codes.to(self.model.device)).float())

    def clean(self, codes: Tensor, units: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The final images untransformed: uint8 (N, H, W, 3), their ablated objective (N,) and
        the intact logit of each one's unit (N,), both float64, from the float images."""
        images, best, intact = [], [], []
        for start in range(0, codes.shape[0], self.batch_size):
            part = slice(start, min(start + self.batch_size, codes.shape[0]))
            imgs = self.generator(codes[part]).float()
            with _autocast(self.model.device, self.precision):
                feats = self.model.features(imgs, validate=False).float()
            best.append((feats * self.rows[part]).sum(1) + self.biases[part])
            logits = self.model.logits_from_features(feats).float()
            intact.append(logits.gather(1, units[part, None])[:, 0])
            images.append(to_uint8(imgs))
        return (np.concatenate(images), torch.cat(best).double().cpu().numpy(),
                torch.cat(intact).double().cpu().numpy())
