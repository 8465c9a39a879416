"""Image generators: codes ``(B, d)`` to images ``(B, 3, H, W)`` in [0, 1].

Five generators, built by name with :func:`make_generator`:

``deepsim``  DeePSiM fc6 (Dosovitskiy & Brox 2016), d = 4096, sigma0 = 3.0, 256 px (paper).
``biggan``   BigGAN-deep (Brock et al. 2019) via ``pytorch_pretrained_biggan``: d = 256 = 128 noise
             + 128 class embedding fed straight to the generator, truncation 0.7, sigma0 = 0.2.
``fourier``  weight-free low-frequency Fourier image with decorrelated colour (Lucid style).
``pixel``    weight-free pyramid of coarse pixel grids (4, 8, 16, 32) with the same colour model.
``maco``     weight-free phases of a fixed natural spectrum (:mod:`~signseg_core.generators.maco`).

A generator is an ``nn.Module`` that is always in eval mode and whose weights never need grad;
``forward`` is differentiable w.r.t. the codes, :meth:`Generator.generate` is the no-grad batched
path the optimiser uses. ``fingerprint`` names weights and parameterisation for cache keys.
The GANs' weights are found and loaded by :mod:`signseg_core.generators.deepsim` and
:mod:`signseg_core.generators.biggan`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from signseg_core.checks import check_int
from signseg_core.errors import UnknownNameError
from signseg_core.generators import biggan, deepsim, maco
from signseg_core.generators.options import (
    MAX_FREQ,
    MAX_IMAGE_SIZE,
    OPTION_CHECKS,
    check_decay,
    check_grids,
)

# Lucid's colour_correlation_svd_sqrt (ImageNet colour covariance, square root), rows R, G, B.
COLOR_CORRELATION_SVD_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))


class Generator(nn.Module):
    """Base class. Subclasses set the attributes below and implement ``_render``.

    Attributes
    ----------
    name : str
    dim : int
        Length d of a code.
    sigma0 : float
        CMA-ES initial step size.
    image_size : int
        Output side H = W in pixels.
    fingerprint : str
        Weights hash or parameterisation description, for cache keys.
    init_std : float
        Std of the small-norm codes :meth:`initial_code` draws (near the origin, as in the paper).
    batch_size : int
        Default chunk size of :meth:`generate`.
    """

    init_std = 0.1
    batch_size = 64

    def __init__(self, *, name: str, dim: int, sigma0: float, image_size: int, fingerprint: str):
        super().__init__()
        self.name, self.dim, self.sigma0 = name, int(dim), float(sigma0)
        self.image_size, self.fingerprint = int(image_size), fingerprint
        self.train(False)

    def train(self, mode: bool = True):
        """Stay in eval mode (training mode would update BigGAN's spectral-norm buffers)."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        """Where the generator computes: the device of its first parameter or buffer."""
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, image_size, image_size)`` in [0, 1] from codes ``(B, d)``.

        Codes are moved to the generator's device and cast to float32 (both differentiable).
        """
        if codes.ndim != 2 or codes.shape[1] != self.dim:
            raise ValueError(f"codes must have shape (B, {self.dim}); got {tuple(codes.shape)}")
        return self._render(codes.to(device=self.device, dtype=torch.float32))

    def _render(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def initial_code(self, batch: int, *, seed: int) -> torch.Tensor:
        """Start codes ``(batch, d)`` near the origin: N(0, init_std**2), seeded, float32."""
        gen = torch.Generator().manual_seed(int(seed))
        codes = torch.randn(check_int("batch", batch, low=1), self.dim, generator=gen)
        return (codes * self.init_std).to(self.device)

    def generate(self, codes, *, batch_size: int | None = None) -> torch.Tensor:
        """:meth:`forward` without grad, ``batch_size`` (default ``self.batch_size``) at a time.

        ``codes``: Tensor or ndarray ``(B, d)``; returns ``(B, 3, H, W)`` in [0, 1] on the
        generator's device.
        """
        step = check_int("batch_size", self.batch_size if batch_size is None else batch_size, low=1)
        codes = torch.as_tensor(codes)
        with torch.no_grad():
            return torch.cat([self(codes[i:i + step]) for i in range(0, max(len(codes), 1), step)])


def colour_matrix() -> torch.Tensor:
    """Lucid's colour matrix ``(3, 3)`` scaled so its largest column norm is 1 (float32, CPU)."""
    mat = torch.tensor(COLOR_CORRELATION_SVD_SQRT)
    return mat / mat.norm(dim=0).max()


def decorrelate_colour(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Map decorrelated channels ``(B, 3, H, W)`` to RGB logits with ``matrix`` (3, 3), e.g.
    :func:`colour_matrix` made once, not per batch."""
    return torch.einsum("ij,bjhw->bihw", matrix.to(x.dtype), x)


class DeePSiMGenerator(Generator):
    """DeePSiM fc6: codes (B, 4096) to 256-px images; ``net`` from :func:`deepsim.load_deepsim`.

    ``initial_code``: N(0, 0.1**2) per unit, norm about 6.4, small against the first CMA-ES step
    (sigma0 * sqrt(4096) = 192): "small norm vectors ... close to the origin".
    """

    batch_size = 32
    sigma0_default = 3.0

    def __init__(self, net: deepsim.DeePSiMFc6, *, fingerprint: str):
        super().__init__(name="deepsim", dim=deepsim.CODE_DIM, sigma0=self.sigma0_default,
                         image_size=256, fingerprint=fingerprint)
        self.net = net.eval().requires_grad_(False)

    def _render(self, codes):
        return deepsim.raw_to_rgb01(self.net(codes))


class BigGANGenerator(Generator):
    """BigGAN-deep with the 256-d code ``[noise (z_dim) | class embedding (z_dim)]``.

    The code goes straight to ``model.generator(code, truncation)``, bypassing the one-hot class
    embedding (as the Ponce lab's ``BigGAN_wrapper``); output [-1, 1] is mapped to [0, 1].
    """

    batch_size = 16
    sigma0_default = 0.2

    def __init__(self, model, *, truncation: float = 0.7, fingerprint: str):
        if not 0.0 < truncation <= 1.0:
            raise ValueError(f"truncation must be in (0, 1]; got {truncation!r}")
        cfg = model.config
        size = 4 * 2 ** sum(1 for layer in cfg.layers if layer[0])
        super().__init__(name="biggan", dim=2 * cfg.z_dim, sigma0=self.sigma0_default,
                         image_size=size,
                         fingerprint=f"{fingerprint}:truncation={truncation}")
        self.model = model.eval().requires_grad_(False)
        self.truncation = float(truncation)

    def _render(self, codes):
        return ((self.model.generator(codes, self.truncation) + 1.0) / 2.0).clamp(0.0, 1.0)

    def initial_code(self, batch: int, *, seed: int) -> torch.Tensor:
        """Paper A.1: noise = 0.7 * N(0, 1) truncated to (-2, 2), i.e. in (-1.4, 1.4), the
        package's ``truncated_noise_sample(truncation=0.7)``; class half all zeros."""
        gen = torch.Generator().manual_seed(int(seed))
        half = self.dim // 2
        noise = torch.randn(check_int("batch", batch, low=1), half, generator=gen)
        while (bad := noise.abs() >= 2.0).any():  # rejection sampling keeps it seeded
            noise[bad] = torch.randn(int(bad.sum()), generator=gen)
        return torch.cat([0.7 * noise, torch.zeros_like(noise)], 1).to(self.device)

    def class_code(self, class_index: int) -> torch.Tensor:
        """The class-embedding half ``(z_dim,)`` for an ImageNet class index."""
        return self.model.embeddings.weight[:, class_index].detach().clone()


class FourierGenerator(Generator):
    """Low-frequency Fourier image, decorrelated colour, sigmoid (after Lucid's ``fft_image``).

    Per decorrelated channel the code holds one real number per lattice frequency (fy, fx) with
    |f| <= K = ``max_freq`` cycles per image (a disc, so no direction is favoured), without the
    Hermitian duplicates: DC real; fx = 0, fy > 0 and fx > 0 complex. Coefficients are scaled by
    1 / max(|f|, 1)**decay, inverse-FFT'd on a small canvas, normalised so N(0, 1) codes give
    unit-variance channels, mixed to RGB logits with the colour matrix, bilinearly upsampled to
    ``size`` and sigmoided. Code layout ``(B, 3, n)`` flattened; d = 1323 for K = 12.
    decay = 1.5 (not Lucid's 1.0): within a 12-cycle band 1.0 looks like mid-frequency noise.

    sigma0 = 1.5: codes N(0, sigma0**2) around the near-zero start give a mean per-image pixel
    std of about 0.19 with virtually no pixel within 0.02 of 0 or 1 (tested).
    """

    batch_size = 256
    sigma0_default = 1.5

    def __init__(self, *, size: int = 224, max_freq: int = 12, decay: float = 1.5):
        k = check_int("max_freq", max_freq, low=1, high=MAX_FREQ)
        if check_int("size", size, low=1, high=MAX_IMAGE_SIZE) < 2 * k + 2:
            raise ValueError(f"size {size} is too small for max_freq {k}; need >= {2 * k + 2}")
        check_decay(decay)
        self.canvas = min(size, max(32, 8 * k))
        n_real = sum(1 for fy in range(-k, k + 1) for fx in range(-k, k + 1)
                     if fx * fx + fy * fy <= k * k)
        super().__init__(name="fourier", dim=3 * n_real, sigma0=self.sigma0_default,
                         image_size=size,
                         fingerprint=f"fourier:v1:size={size}:max_freq={k}:decay={decay}")
        n, width = self.canvas, self.canvas // 2 + 1
        dest, src, sign, scale = [], [], [], []

        def put(fy, fx, part, source, s=1.0):
            dest.append((((fy % n) * width + fx) * 2) + part)
            src.append(source)
            sign.append(s)

        freqs = [(0, 0)] + [(fy, 0) for fy in range(1, k + 1)]
        freqs += [(fy, fx) for fx in range(1, k + 1) for fy in range(-k, k + 1)
                  if fx * fx + fy * fy <= k * k]  # a disc: a square band favours diagonals
        for fy, fx in freqs:
            for part in ((0,) if fx == fy == 0 else (0, 1)):
                put(fy, fx, part, len(scale))
                if fx == 0 and fy > 0:  # mirror onto -fy with the conjugate: real image
                    put(-fy, 0, part, len(scale), -1.0 if part else 1.0)
                scale.append(1.0 / max(math.hypot(fy, fx), 1.0) ** decay)
        scale = torch.tensor(scale)
        # irfft2 ("backward"): DC part has mean square 1/n**4, every other real number 2/n**4.
        variance = (scale[0] ** 2 + 2 * (scale[1:] ** 2).sum()) / n**4
        self.register_buffer("scale", scale / variance.sqrt(), persistent=False)
        self.register_buffer("dest", torch.tensor(dest), persistent=False)
        self.register_buffer("src", torch.tensor(src), persistent=False)
        self.register_buffer("sign", torch.tensor(sign), persistent=False)
        self.register_buffer("colour", colour_matrix(), persistent=False)

    def _render(self, codes):
        b, n = codes.shape[0], self.canvas
        coeffs = codes.reshape(b, 3, -1) * self.scale
        values = coeffs[:, :, self.src] * self.sign
        flat = codes.new_zeros(b, 3, n * (n // 2 + 1) * 2)
        flat = flat.scatter(2, self.dest.expand(b, 3, -1), values)
        spectrum = torch.view_as_complex(flat.view(b, 3, n, n // 2 + 1, 2))
        logits = decorrelate_colour(torch.fft.irfft2(spectrum, s=(n, n)), self.colour)
        if n != self.image_size:
            logits = nn.functional.interpolate(logits, size=(self.image_size,) * 2,
                                               mode="bilinear", align_corners=False)
        return torch.sigmoid(logits)


class PixelPyramidGenerator(Generator):
    """Sum of coarse pixel grids (default 4, 8, 16, 32 per side), each bilinearly upsampled to
    ``size`` and weighted (grid / grids[0])**-decay, normalised to about unit variance, then the
    Fourier generator's colour decorrelation and sigmoid. Code layout: grid by grid, each
    ``(3, g, g)`` flattened. d = 3 * sum(g**2) (4080 by default).

    sigma0 = 1.5, chosen as for :class:`FourierGenerator` (pixel std about 0.2, tested).
    """

    batch_size = 256
    sigma0_default = 1.5

    def __init__(self, *, size: int = 224, grids: tuple[int, ...] = (4, 8, 16, 32),
                 decay: float = 1.0):
        grids = check_grids(grids)
        if max(grids) > check_int("size", size, low=1, high=MAX_IMAGE_SIZE):
            raise ValueError(f"grids must be at most size={size}; got {grids}")
        check_decay(decay)
        super().__init__(name="pixel", dim=3 * sum(g * g for g in grids),
                         sigma0=self.sigma0_default, image_size=size,
                         fingerprint=f"pixel:v1:size={size}:grids={list(grids)}:decay={decay}")
        self.grids = grids
        weights = torch.tensor([(g / grids[0]) ** -decay for g in grids])
        # Bilinear upsampling of white noise keeps about (2/3)**2 of its variance.
        self.register_buffer("weights", weights / (weights.square().sum() * 4 / 9).sqrt(),
                             persistent=False)
        self.register_buffer("colour", colour_matrix(), persistent=False)

    def _render(self, codes):
        b, start = codes.shape[0], 0
        total = codes.new_zeros(b, 3, self.image_size, self.image_size)
        for g, w in zip(self.grids, self.weights):
            grid = codes[:, start:start + 3 * g * g].reshape(b, 3, g, g)
            start += 3 * g * g
            total = total + w * nn.functional.interpolate(
                grid, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        return torch.sigmoid(decorrelate_colour(total, self.colour))


def check_generator_options(name: str, options: dict) -> dict:
    """``options`` of generator ``name`` checked against the names it takes and each option's
    bounds (:data:`MAX_IMAGE_SIZE`, :data:`MAX_FREQ`, ...), without building anything: the
    command line checks them before a model loads. Returns the options with checked values."""
    if name not in _REGISTRY:
        raise UnknownNameError("generator", name, _REGISTRY)
    allowed = _REGISTRY[name][1]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"generator {name!r} takes no option {unknown}; allowed: {list(allowed)}")
    return {key: OPTION_CHECKS[key](value) for key, value in options.items()}


# ---------------------------------------------------------------- registry

def _make_deepsim(*, weights, untrained, seed):
    if untrained:
        net = deepsim.make_untrained(seed=seed)
        return DeePSiMGenerator(net, fingerprint=f"deepsim:untrained:seed={seed}")
    net = deepsim.load_deepsim(weights)
    return DeePSiMGenerator(net, fingerprint=f"deepsim:sha256={net.weights_sha256}")


def _make_biggan(*, weights, untrained, seed, truncation=0.7, resolution=256):
    if resolution not in (128, 256, 512):
        raise ValueError(f"resolution must be 128, 256 or 512; got {resolution!r}")
    if untrained:
        model = biggan.untrained_biggan(resolution=resolution, seed=seed)
        fingerprint = f"biggan-deep-{resolution}:untrained:seed={seed}"
    else:
        model, digest = biggan.load_biggan(weights, resolution=resolution)
        fingerprint = f"biggan-deep:sha256={digest}"
    return BigGANGenerator(model, truncation=truncation, fingerprint=fingerprint)


def _weight_free(cls):
    def make(*, weights, untrained, seed, **options):  # untrained, seed: nothing to draw
        if weights is not None:
            raise ValueError(f"{cls.__name__} has no weights; got weights={weights!r}")
        return cls(**options)
    return make


_REGISTRY = {  # name: (builder, allowed options, needs weights)
    "deepsim": (_make_deepsim, (), True),
    "biggan": (_make_biggan, ("truncation", "resolution"), True),
    "fourier": (_weight_free(FourierGenerator), ("size", "max_freq", "decay"), False),
    "pixel": (_weight_free(PixelPyramidGenerator), ("size", "grids", "decay"), False),
    "maco": (_weight_free(maco.MacoGenerator), ("size",), False),  # gradient ascent only
}


def generator_method(name: str) -> str:
    """How generator ``name`` is optimised, without building it: ``"gradient"`` (maco: gradient
    ascent, so a settings' ``generations`` count steps) or ``"evolution"`` (CMA-ES)."""
    return maco.MacoGenerator.method if name == "maco" else "evolution"


#: Generators optimised by gradient ascent.
GRADIENT_GENERATORS = frozenset(n for n in _REGISTRY if generator_method(n) == "gradient")


def make_generator(name: str, *, device="cpu", weights=None, untrained: bool = False,
                   seed: int = 0, **options) -> Generator:
    """Build a generator by name.

    Parameters
    ----------
    name : {"deepsim", "biggan", "fourier", "pixel", "maco"}
    device : str or torch.device
    weights : path, optional
        DeePSiM: a state-dict file; BigGAN: a folder with pytorch_model.bin and config.json.
    untrained : bool
        GANs only: seeded random weights instead of the published ones (tests, offline demos).
    seed : int
        Seed of the untrained weights.
    **options
        biggan: truncation (0.7), resolution (256); fourier: size (224), max_freq (12),
        decay (1.5); pixel: size (224), grids ((4, 8, 16, 32)), decay (1.0); maco: size
        (224, at most 427; :mod:`signseg_core.generators.maco`, optimised by gradient ascent).

    Raises
    ------
    UnknownNameError
        Unknown name; the message lists the choices.
    ValueError
        An option the generator does not take.
    WeightsNotFoundError, CheckpointError
        From the weight loaders.
    """
    options = check_generator_options(name, options)
    if untrained and weights is not None:
        raise ValueError(f"give weights={weights!r} or untrained=True, not both")
    builder = _REGISTRY[name][0]
    return builder(weights=weights, untrained=untrained, seed=seed, **options).to(device)


def list_generators() -> list[dict]:
    """One dict per generator: name, dim, sigma0, image_size, needs_weights, weights_present,
    and method (``"evolution"``, or ``"gradient"`` for one optimised by gradient ascent)."""
    present = {"deepsim": deepsim.find_deepsim_weights() is not None,
               "biggan": biggan.find_biggan_files(256) is not None}
    fourier, pixel = FourierGenerator(), PixelPyramidGenerator()
    shape = {"deepsim": (deepsim.CODE_DIM, DeePSiMGenerator.sigma0_default, 256),
             "biggan": (256, BigGANGenerator.sigma0_default, 256),
             "fourier": (fourier.dim, fourier.sigma0, fourier.image_size),
             "pixel": (pixel.dim, pixel.sigma0, pixel.image_size),
             "maco": (maco.code_dim(224), maco.MacoGenerator.sigma0, 224)}
    return [dict(name=name, dim=shape[name][0], sigma0=shape[name][1], image_size=shape[name][2],
                 needs_weights=needs, weights_present=present.get(name, True),
                 method=generator_method(name))
            for name, (_builder, _options, needs) in _REGISTRY.items()]
