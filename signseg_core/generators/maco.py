"""MACO: a fixed natural amplitude spectrum, only the phases optimised (Fel et al. 2023).

Fel, Boissin, Boutin, Picard, Novello, Colin, Linsley, Rousseau, Cadène, Goetschalckx, Gardes and
Serre (2023), "Unlocking Feature Visualization for Deeper Networks with MAgnitude Constrained
Optimization", NeurIPS (MACO; reference code in the Xplique and Horama libraries).

The image. Per decorrelated colour channel c (three of them), the image before colour mixing is

    z_c = irfft2(M ⊙ exp(i φ'_c))                           (S × S, real, torch's 1/S² norm)
    image = sigmoid(gain · C z)                              (3, S, S) in [0, 1]

with M (S, S//2 + 1) a FIXED amplitude spectrum, φ (3, S, S//2 + 1) the code (phases in radians,
d = 3 S (S//2 + 1): 75,936 at S = 224) and C Lucid's colour matrix (ImageNet colour covariance
square root, largest column norm 1, as :func:`signseg_core.generators.catalog.colour_matrix`).
The half-spectrum columns kx = 0 (and kx = S/2 for even S) hold both ky and -ky, whose
coefficients must be conjugate for a real image: those columns use the antisymmetrised phase
φ'(ky) = (φ(ky) - φ(-ky)) / 2, so φ'(-ky) = -φ'(ky) and φ' = 0 at the self-conjugate ky = 0, S/2.
Hence rfft2(z_c) = M ⊙ exp(i φ'_c) exactly: every image has the same amplitude spectrum and only
its phases (where edges, contours and objects sit) can change. As in MACO the magnitude is never
optimised; MACO's per-image standardisation is the constant scale of M below (a fixed amplitude
fixes the variance, by Parseval).

The magnitude (:func:`natural_magnitude`). MACO uses the mean amplitude spectrum of ImageNet
photos. Offline we take scikit-learn's two sample photos (``load_sample_images``: china.jpg, a
temple, and flower.jpg; inside the scikit-learn wheel, nothing is downloaded): 64 square crops
(numpy seed 0; crop i from photo i mod 2; side uniform between S and the photo's shorter side,
so a crop is only ever shrunk; position uniform; mirrored when i // 2 is odd), resized to S
(bilinear, antialiased), each RGB channel's mean removed, times a 2-D Hann window (without it
the crops' borders add a cross of energy along the axes, which renders as a fine grid). M is the
mean over crops and channels of |rfft2|, made symmetric in ky where kx = 0 (and S/2), with DC
set to 0 and scaled so that each z_c has unit variance: Σ over the full spectrum of M² = S⁴
(Parseval with irfft2's 1/S²). At S = 224 it falls as about 1/f^1.5 and still holds more energy
along the horizontal and vertical axes than diagonally, as photos of buildings do. The
fingerprint names this recipe and the first 12 hex digits of the SHA-256 of M (float32), so a
different spectrum (e.g. another JPEG decoder) is a different cache key.

The generator is weight-free and is optimised by gradient ascent (``method = "gradient"``,
:mod:`signseg_core.optimize.readout_gradient`), never by CMA-ES: ``lr`` and the transformation
robustness (``pad``, ``jitter``, ``scales``, ``rotate_degrees``, as Lucent's standard
transforms) are the optimiser's, described by :meth:`MacoGenerator.optimizer_key`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from signseg_core.checks import check_int

# Lucid's colour_correlation_svd_sqrt, the catalog's COLOR_CORRELATION_SVD_SQRT (catalog imports
# this module, so it is not imported from there; tests/test_maco.py checks the two agree).
COLOR_CORRELATION_SVD_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))
#: Lucent's random scales 0.9 .. 1.1 and rotations -10 .. 10 degrees (0 weighted six times).
LUCENT_SCALES = tuple(1 + (i - 5) / 50 for i in range(11))
LUCENT_ROTATIONS = tuple(float(d) for d in range(-10, 11)) + (0.0,) * 5
SPECTRUM_RECIPE = "sklearn-sample-photos:crops=64:seed=0:hann"


def code_dim(size: int) -> int:
    """Length of a MACO code at image side ``size``: 3 channels x size x (size // 2 + 1)."""
    return 3 * size * (size // 2 + 1)


def sample_photos() -> list[np.ndarray]:
    """scikit-learn's two sample photos (china.jpg, flower.jpg), uint8 (427, 640, 3) each, read
    from the installed package's ``datasets/images`` folder with PIL as ``load_sample_images``
    does (without importing scikit-learn, which takes seconds). FileNotFoundError when absent."""
    from PIL import Image  # deferred: only the spectrum's photos need PIL

    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("scikit-learn is not installed: its sample photos give the "
                                "maco generator's spectrum (pip install scikit-learn)")
    folder = Path(spec.origin).parent / "datasets" / "images"
    out = []
    for name in ("china.jpg", "flower.jpg"):
        with Image.open(folder / name) as image:
            out.append(np.asarray(image.convert("RGB")))
    return out


def photo_crops(size: int, *, n: int = 64, seed: int = 0) -> torch.Tensor:
    """The :func:`natural_magnitude` crops: Tensor (n, 3, size, size) in [0, 1] (see the module
    docstring for the draw). Raises ValueError when ``size`` exceeds the photos' 427 px."""
    photos = sample_photos()
    if size > min(min(p.shape[:2]) for p in photos):
        raise ValueError(f"size {size} is larger than the sample photos (427 px)")
    rng = np.random.default_rng(seed)
    tensors = [torch.from_numpy(p.copy()).permute(2, 0, 1)[None].float() / 255.0 for p in photos]
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        photo = tensors[i % len(photos)]
        h, w = photo.shape[-2:]
        side = int(rng.integers(size, min(h, w) + 1))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = photo[..., top:top + side, left:left + side]
        if (i // 2) % 2:  # half of each photo's crops
            crop = crop.flip(-1)
        out[i] = nn.functional.interpolate(crop, size=(size, size), mode="bilinear",
                                           align_corners=False, antialias=True)[0]
    return out


def conjugate_rows(size: int) -> torch.Tensor:
    """Index of -ky for each row ky of a (size, ·) spectrum: ``(-arange(size)) % size``."""
    return (-torch.arange(size)) % size


def hermitian_columns(size: int) -> list[int]:
    """The rfft2 columns that hold their own conjugates: kx = 0, and kx = size/2 for even size."""
    return [0, size // 2] if size % 2 == 0 else [0]


def scale_to_unit_variance(magnitude: torch.Tensor, size: int) -> torch.Tensor:
    """``magnitude`` (S, S//2+1) scaled so irfft2 of it (any phases) has unit variance:
    Σ_full M² = S⁴, where the full spectrum counts every column but the Hermitian ones twice."""
    weight = torch.full((magnitude.shape[1],), 2.0, dtype=magnitude.dtype)
    weight[hermitian_columns(size)] = 1.0
    power = (magnitude.square() * weight).sum()
    return magnitude * (size**2 / power.sqrt())


@functools.lru_cache(maxsize=4)
def natural_magnitude(size: int) -> np.ndarray:
    """The fixed amplitude spectrum M, float32 (size, size//2+1), read-only (module docstring)."""
    crops = photo_crops(check_int("size", size, low=8))
    crops = crops - crops.mean(dim=(2, 3), keepdim=True)
    window = torch.hann_window(size, periodic=False)
    crops = crops * (window[:, None] * window[None, :])  # no spectral cross from crop borders
    mag = torch.fft.rfft2(crops).abs().double().mean(dim=(0, 1))
    neg = conjugate_rows(size)
    for col in hermitian_columns(size):
        mag[:, col] = (mag[:, col] + mag[neg, col]) / 2
    mag[0, 0] = 0.0
    out = scale_to_unit_variance(mag, size).float().numpy()
    out.setflags(write=False)
    return out


def spectrum_digest(magnitude: np.ndarray) -> str:
    """First 12 hex digits of the SHA-256 of ``magnitude`` as contiguous float32."""
    return hashlib.sha256(np.ascontiguousarray(magnitude, np.float32).tobytes()).hexdigest()[:12]


class MacoGenerator(nn.Module):
    """Phase-only natural-spectrum images (module docstring): codes (B, 3 S (S//2+1)) of phases
    in radians to (B, 3, S, S) in [0, 1]; the generator interface of
    :class:`signseg_core.generators.catalog.Generator` (name, dim, sigma0, image_size,
    fingerprint, forward, initial_code, generate), optimised by gradient ascent only.

    Parameters
    ----------
    size : int >= 8, at most 427 (the sample photos' side); 224 by default (Lite0's input).
    gain : float > 0
        Scale of the colour-mixed channels before the sigmoid (unit-variance channels times
        Lucid's matrix give RGB logits of std about 0.6, MACO's contrast at gain 1). The default
        2 and lr 0.2 were picked on six units outside the paper's default eleven (1, 409, 430,
        817, 937, 954; 80 steps), against gain 1 and lr 0.05, 0.1 and 1
        (``docs/generator_quality.md``).
    magnitude : array (S, S//2+1), optional
        Another fixed spectrum (tests); the default is :func:`natural_magnitude`.
    lr, pad, jitter, scales, rotate_degrees :
        The optimiser's: Adam's step on the phases (radians) and the random transforms of each
        step (grey border and shift in px, scale and rotation choices), as Lucent's defaults.
    """

    name = "maco"
    method = "gradient"
    images_per_step = 1  # backbone images per restart per step
    sigma0 = 1.0  # unused: never evolved by CMA-ES; set for code that reads it
    batch_size = 64

    def __init__(self, *, size: int = 224, gain: float = 2.0, magnitude=None, lr: float = 0.2,
                 pad: int = 12, jitter: int = 8, scales: tuple[float, ...] = LUCENT_SCALES,
                 rotate_degrees: tuple[float, ...] = LUCENT_ROTATIONS):
        super().__init__()
        size = check_int("size", size, low=8, high=427)
        if not (isinstance(gain, (int, float)) and math.isfinite(gain) and gain > 0):
            raise ValueError(f"gain must be a finite number > 0; got {gain!r}")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0; got {lr!r}")
        mag = natural_magnitude(size) if magnitude is None else np.asarray(magnitude, np.float32)
        if mag.shape != (size, size // 2 + 1):
            raise ValueError(f"magnitude must have shape {(size, size // 2 + 1)}; got {mag.shape}")
        self.image_size, self.dim, self.gain = size, code_dim(size), float(gain)
        self.lr, self.pad, self.jitter = float(lr), check_int("pad", pad, low=0), \
            check_int("jitter", jitter, low=0)
        self.scales = tuple(float(s) for s in scales)
        self.rotate_degrees = tuple(float(r) for r in rotate_degrees)
        recipe = SPECTRUM_RECIPE if magnitude is None else "custom"
        self.fingerprint = (f"maco:v1:size={size}:gain={self.gain:g}:spectrum={recipe}:"
                            f"sha256={spectrum_digest(mag)}")
        self.register_buffer("magnitude", torch.from_numpy(mag.copy()), persistent=False)
        self.register_buffer("neg", conjugate_rows(size), persistent=False)
        colour = torch.tensor(COLOR_CORRELATION_SVD_SQRT)
        self.register_buffer("colour", colour / colour.norm(dim=0).max(), persistent=False)
        self.train(False)

    def train(self, mode: bool = True):
        """Stay in eval mode (nothing here trains)."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        """Where the generator computes (its buffers' device)."""
        return self.magnitude.device

    def phases(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, d) → the Hermitian-consistent phases φ' (B, 3, S, S//2+1) (docstring)."""
        if codes.ndim != 2 or codes.shape[1] != self.dim:
            raise ValueError(f"codes must have shape (B, {self.dim}); got {tuple(codes.shape)}")
        phi = codes.to(self.device, torch.float32).reshape(len(codes), 3, self.image_size, -1)
        columns = hermitian_columns(self.image_size)
        fixed = (phi[..., columns] - phi[..., self.neg, :][..., columns]) / 2
        return phi.index_copy(-1, torch.tensor(columns, device=phi.device), fixed)

    def latent(self, codes: torch.Tensor) -> torch.Tensor:
        """The decorrelated channels z (B, 3, S, S) before colour mixing: unit variance each, and
        amplitude spectrum exactly ``magnitude`` (up to float rounding)."""
        phi = self.phases(codes)
        spectrum = torch.polar(self.magnitude.expand_as(phi), phi)
        return torch.fft.irfft2(spectrum, s=(self.image_size,) * 2)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, S, S) in [0, 1]: sigmoid(gain · C z); differentiable in the codes."""
        z = self.latent(codes)
        return torch.sigmoid(self.gain * torch.einsum("ij,bjhw->bihw", self.colour, z))

    def initial_code(self, batch: int, *, seed: int) -> torch.Tensor:
        """Start phases (batch, d), uniform in [-π, π), seeded: a random-phase image with the
        natural spectrum (a texture without objects)."""
        gen = torch.Generator().manual_seed(int(seed))
        codes = torch.rand(check_int("batch", batch, low=1), self.dim, generator=gen)
        return ((codes * 2 - 1) * math.pi).to(self.device)

    def generate(self, codes, *, batch_size: int | None = None) -> torch.Tensor:
        """:meth:`forward` without grad, ``batch_size`` (default 64) codes at a time."""
        step = check_int("batch_size", batch_size or self.batch_size, low=1)
        codes = torch.as_tensor(codes)
        with torch.no_grad():
            return torch.cat([self(codes[i:i + step]) for i in range(0, max(len(codes), 1), step)])

    def optimizer_key(self, settings) -> str:
        """JSON of the optimiser that ``settings`` run on this generator, for store keys: Adam on
        the phases, steps = ``settings.generations``, ``settings.restarts``, lr and transforms."""
        return json.dumps({
            "method": "adam-phase-ascent", "steps": settings.generations,
            "restarts": settings.restarts, "lr": self.lr, "images_per_step": self.images_per_step,
            "transforms": {"pad": self.pad, "jitter": self.jitter, "scales": list(self.scales),
                           "rotate_degrees": list(self.rotate_degrees)}}, sort_keys=True)

    def describe(self, settings) -> str:
        """The optimiser in words (CLI, captions)."""
        return (f"gradient ascent (Adam, lr {self.lr:g} rad) on the phases of a fixed natural "
                f"spectrum (MACO), {settings.generations} steps, one randomly padded, shifted, "
                f"scaled and rotated copy per restart per step")
