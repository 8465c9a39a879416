"""A synthetic neuron data set to try the neuron-model workflow offline (paper §4.6, A.1).

:func:`write_demo_dataset` writes, into one folder:

* ``images/img_000.png`` ... — ``n_images`` square RGB images of ``image_size`` px: crops, flips,
  zooms and colour shifts of scikit-learn's two sample photographs (``china.jpg``,
  ``flower.jpg``, shipped with scikit-learn, so no download) and smooth random colour textures.
* ``responses.csv`` — columns ``image, neuron, response, session, area, monkey`` in the format
  of :func:`~signseg_core.neurons.data.load_neuron_data`; ``image`` is ``images/img_000.png``
  (relative to the CSV's folder, the loader's default image folder).
* ``planted_weights.npz`` — the ground truth (see below), so a fit can be checked.

How a synthetic neuron responds
-------------------------------
Let ``x`` be the model's penultimate features of an image (:func:`dataset_features`) and ``z`` the
features standardised over the demo images. Neuron ``n`` reads a sparse set of features ``S_n``::

    signal_n = z[S_n] @ v_n                  scaled to SD 1 over the images
    latent_n = signal_n + noise * eps        eps ~ N(0, 1), independent per image and neuron
    response = BASELINE + GAIN * (latent_n - min over images of latent_n)    (spikes/s)

so responses are non-negative, firing-rate-like (minimum ``BASELINE`` = 2 spikes/s, SD about
``GAIN * sqrt(1 + noise²)``), and exactly linear in the features: the best possible r² is
``1 / (1 + noise²)`` (0.8 at ``noise=0.5``). ``S_n`` holds ``N_CONSISTENT`` features that every
neuron weights positively, ``N_CONSISTENT`` that every neuron weights negatively (the planted
"Dale-like" features, Fig. 23; stronger than the rest), and ``N_PRIVATE`` features of its own
whose signs are positive with probability 0.8 for every third neuron ("mostly positive") and 0.5
for the others. Features are drawn from those that vary most over the images.

A one-component PLS fit (:func:`~signseg_core.neurons.fitting.fit_pls`) of the default data
(120 images, EfficientNet-Lite0's 1280 features) reaches test r² of about 0.4-0.75, below the
ceiling: with many more features than images it recovers the weights' signs (about 80 % on each
neuron's support) better than the responses. With ``m`` neurons no feature can pass the
Bonferroni-corrected sign test of Fig. 23 unless ``2 * 0.5**m * n_features < 0.05`` (m >= 16 for
1280 features), so use ``n_neurons=24`` or more to see the planted Dale-like features.

``planted_weights.npz`` holds ``weights (n_neurons, n_features)`` and ``bias (n_neurons,)`` in the
raw feature space (``x @ weights[n] + bias[n]`` is the noise-free response), ``support`` (bool,
same shape as ``weights``), ``consistent_positive`` / ``consistent_negative`` (feature indices),
``neurons``, ``noise``, ``r2_ceiling``, ``gain``, ``baseline``, ``model`` and
``model_fingerprint``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from signseg_core.checks import check_int
from signseg_core.models.registry import load_model
from signseg_core.neurons.data import NeuronDataset, dataset_features

__all__ = ["BASELINE", "GAIN", "N_CONSISTENT", "N_PRIVATE", "write_demo_dataset"]

BASELINE = 2.0  # spikes/s: the lowest response of every neuron
GAIN = 8.0  # spikes/s per SD of the noise-free signal
N_CONSISTENT = 2  # features per sign shared by every neuron
N_PRIVATE = 6  # features of each neuron's own
CONSISTENT_WEIGHT = (1.0, 1.5)  # |v| of a shared feature, before scaling to SD 1
PRIVATE_WEIGHT = (0.3, 1.0)  # |v| of a neuron's own feature
AREAS = ("V1", "V4", "IT")
MONKEYS = ("C", "D")
_PHOTO_FRACTION = 2 / 3


# -- images -------------------------------------------------------------------------------------

def _photo_crop(rng: np.random.Generator, photos: list[np.ndarray], size: int) -> np.ndarray:
    """A random square crop (20-90 % of the short side), flipped, colour-shifted, resized."""
    photo = photos[rng.integers(len(photos))]
    h, w = photo.shape[:2]
    side = int(rng.uniform(0.2, 0.9) * min(h, w))
    top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = photo[top:top + side, left:left + side].astype(np.float64) / 255.0
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = np.clip(crop * rng.uniform(0.75, 1.25, size=3), 0, 1) ** rng.uniform(0.7, 1.4)
    im = Image.fromarray(np.round(crop * 255).astype(np.uint8))
    return np.asarray(im.resize((size, size), Image.Resampling.BICUBIC))


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour noise: a luminance field plus weaker colour fields, each a sum of
    bicubically upsampled random grids, squashed to [0, 1] by a logistic."""
    def field() -> np.ndarray:
        total = np.zeros((size, size))
        for grid, weight in ((2, 1.0), (4, 0.7), (8, 0.5), (16, 0.35), (32, 0.2)):
            coarse = rng.standard_normal((grid, grid)).astype(np.float32)
            fine = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
            total += weight * rng.uniform(0.3, 1.5) * np.asarray(fine)
        return total

    luminance = field()
    rgb = np.stack([luminance + 0.4 * field() for _ in range(3)], axis=-1)
    out = 1.0 / (1.0 + np.exp(-rgb))
    return np.round(out * 255).astype(np.uint8)


def _write_images(folder: Path, n: int, size: int, rng: np.random.Generator) -> list[str]:
    from sklearn.datasets import load_sample_images  # deferred: sklearn takes ~1 s to import

    photos = list(load_sample_images().images)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        rgb = _photo_crop(rng, photos, size) if rng.random() < _PHOTO_FRACTION \
            else _texture(rng, size)
        name = f"img_{i:03d}.png"
        Image.fromarray(rgb).save(folder / name)
        names.append(f"{folder.name}/{name}")
    return names


# -- neurons ------------------------------------------------------------------------------------

def _candidates(features: np.ndarray) -> np.ndarray:
    """Features that vary over the images: active on >= 20 % of them, upper half of the SDs."""
    sd = features.std(axis=0)
    active = (features > 0).mean(axis=0) >= 0.2
    ok = np.flatnonzero(active & (sd > 0))
    if ok.size < 2 * N_CONSISTENT + 2:
        ok = np.flatnonzero(sd > 0)
    if ok.size < 2 * N_CONSISTENT + 2:
        raise ValueError(f"only {ok.size} features vary over the demo images; need at least "
                         f"{2 * N_CONSISTENT + 2}")
    keep = max(ok.size // 2, 2 * N_CONSISTENT + N_PRIVATE)
    return ok[np.argsort(-sd[ok], kind="stable")][:keep]


def _decorrelated(order: np.ndarray, corr: np.ndarray, n: int) -> np.ndarray:
    """``n`` features taken in ``order``, each with |correlation| below a limit to every one
    already taken; the limit rises from 0.3 until ``n`` are found."""
    for limit in (0.3, 0.5, 0.7, 0.9, 1.01):
        picked: list[int] = []
        for f in order:
            if all(abs(corr[f, g]) < limit for g in picked):
                picked.append(int(f))
                if len(picked) == n:
                    return np.array(picked)
    return order[:n]


def _plant(features: np.ndarray, n_neurons: int, noise: float, rng: np.random.Generator):
    """Planted weights, biases, consistent features and the noisy responses.

    The shared features are picked to correlate weakly with each other over the images
    (|r| < 0.3 where the feature space allows), so the positive and negative ones do not cancel.
    """
    x = features.astype(np.float64)
    mean, sd = x.mean(axis=0), x.std(axis=0)
    cand = rng.permutation(_candidates(x))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.nan_to_num(np.corrcoef(x.T))
    cons = _decorrelated(cand, corr, 2 * N_CONSISTENT)
    cons_pos, cons_neg = np.sort(cons[:N_CONSISTENT]), np.sort(cons[N_CONSISTENT:])
    rest = cand[~np.isin(cand, cons)]
    n_img, n_feat = x.shape
    weights = np.zeros((n_neurons, n_feat))
    bias = np.zeros(n_neurons)
    responses = np.zeros((n_img, n_neurons))
    for j in range(n_neurons):
        v = np.zeros(n_feat)
        v[cons_pos] = rng.uniform(*CONSISTENT_WEIGHT, N_CONSISTENT)
        v[cons_neg] = -rng.uniform(*CONSISTENT_WEIGHT, N_CONSISTENT)
        own = rng.choice(rest, size=min(N_PRIVATE, rest.size), replace=False)
        p_positive = 0.8 if j % 3 == 0 else 0.5
        v[own] = np.where(rng.random(own.size) < p_positive, 1.0, -1.0) \
            * rng.uniform(*PRIVATE_WEIGHT, own.size)
        support = v != 0
        z = (x[:, support] - mean[support]) / sd[support]
        signal = z @ v[support]
        scale = signal.std()
        v, signal = v / scale, signal / scale
        latent = signal + noise * rng.standard_normal(n_img)
        shift = latent.min()
        responses[:, j] = BASELINE + GAIN * (latent - shift)
        weights[j, support] = GAIN * v[support] / sd[support]
        bias[j] = BASELINE - GAIN * shift - weights[j, support] @ mean[support]
    return weights, bias, cons_pos, cons_neg, responses


def write_demo_dataset(out_dir: str | Path, *, n_images: int = 120, n_neurons: int = 12,
                       n_sessions: int = 3, noise: float = 0.5, seed: int = 0,
                       model_name: str = "efficientnet_lite0", image_size: int = 128,
                       device: str = "cpu", store=None,
                       progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the demo images, ``responses.csv`` and ``planted_weights.npz`` into ``out_dir``.

    Parameters
    ----------
    out_dir : folder to write (created; existing demo files are overwritten).
    n_images : images, >= 10. n_neurons : synthetic neurons, >= 1, spread round-robin over
        ``n_sessions`` (>= 1, <= n_neurons) sessions; session ``k`` is area
        ``("V1", "V4", "IT")[k % 3]`` of monkey ``("C", "D")[k % 2]``.
    noise : SD of the response noise relative to the signal's SD, >= 0 (r² ceiling
        ``1 / (1 + noise²)``).
    seed : seeds the images, the planted weights and the noise (``np.random.default_rng``).
    model_name : the zoo model whose penultimate features the neurons read.
    image_size : side of the square images in px, >= 16.
    device, store, progress : passed to ``load_model`` / :func:`dataset_features` (features are
        kept in the store, so a later fit of the demo reads them back).

    Returns
    -------
    Path of ``responses.csv``; the images are in ``out_dir / "images"``.
    """
    n_images = check_int("n_images", n_images, low=10)
    n_neurons = check_int("n_neurons", n_neurons, low=1)
    n_sessions = check_int("n_sessions", n_sessions, low=1)
    check_int("seed", seed, low=0)
    image_size = check_int("image_size", image_size, low=16)
    if n_sessions > n_neurons:
        raise ValueError(f"n_sessions={n_sessions} exceeds n_neurons={n_neurons}; every session "
                         "needs a neuron")
    if not (isinstance(noise, (int, float)) and np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    out = Path(out_dir).expanduser()
    rng = np.random.default_rng(seed)
    names = _write_images(out / "images", n_images, image_size, rng)
    model = load_model(model_name, device=device)
    probe = NeuronDataset(tuple(out / n for n in names), ("probe",), np.zeros((n_images, 1)))
    features = dataset_features(model, probe, store=store, progress=progress)
    weights, bias, cons_pos, cons_neg, responses = _plant(features, n_neurons, float(noise), rng)
    neurons = [f"n{j:02d}" for j in range(n_neurons)]
    csv_path = out / "responses.csv"
    _write_responses(csv_path, names, neurons, responses, n_sessions)
    np.savez(out / "planted_weights.npz", weights=weights, bias=bias, support=weights != 0,
             consistent_positive=cons_pos, consistent_negative=cons_neg,
             neurons=np.array(neurons, dtype=str), noise=float(noise),
             r2_ceiling=1.0 / (1.0 + float(noise) ** 2), gain=GAIN, baseline=BASELINE,
             model=np.array(model.name, dtype=str),
             model_fingerprint=np.array(model.fingerprint, dtype=str))
    return csv_path


def _write_responses(csv_path: Path, names: list[str], neurons: list[str],
                     responses: np.ndarray, n_sessions: int) -> None:
    """``responses.csv``: one row per (image, neuron), neurons spread round-robin over the
    sessions, session ``k`` in area ``AREAS[k % 3]`` of monkey ``MONKEYS[k % 2]``."""
    session = [j % n_sessions for j in range(len(neurons))]
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["image", "neuron", "response", "session", "area", "monkey"])
        for i, name in enumerate(names):
            for j, neuron in enumerate(neurons):
                k = session[j]
                writer.writerow([name, neuron, f"{responses[i, j]:.6f}", f"s{k + 1}",
                                 AREAS[k % len(AREAS)], MONKEYS[k % len(MONKEYS)]])
