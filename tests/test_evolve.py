"""Batched CMA-ES: hand-worked updates, invariants (batch independence, determinism, robustness to
flat and NaN scores) and objective values against pycma at the same budget."""

import math

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from signseg_core.optimize.evolve import (
    COVARIANCES,
    BatchedCMAES,
    CMAConfig,
    _mix32,
    lazy_eigen_interval,
    run_cmaes,
)
from signseg_core.optimize.evolve_pycma import run_pycma
from signseg_core.optimize.settings import COVARIANCE_NAMES, VisualizeSettings, describe_optimizer

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: a second thread only adds wake-up latency on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):  # pycma's NumPy BLAS too
        yield
    torch.set_num_threads(n)


def sphere(x):
    return (x**2).sum(-1)


def ellipsoid(x, cond=1e6):
    d = x.shape[-1]
    return (cond ** (torch.arange(d, dtype=x.dtype) / (d - 1)) * x**2).sum(-1)


def rosenbrock(x):
    return (100 * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (1 - x[..., :-1]) ** 2).sum(-1)


# ------------------------------------------------------------------------------ hand-worked values
def test_default_popsize_uses_log2_and_weights_are_log_ranked():
    cfg = CMAConfig()
    for d, lam in [(1, 4), (20, 16), (200, 26), (4096, 40)]:  # 4 + floor(3 log2 d)
        p = cfg.strategy_parameters(d)
        assert (p["popsize"], p["mu"]) == (lam, lam // 2)
        assert math.isclose(sum(p["weights"]), 1.0)
    w = CMAConfig(popsize=4).strategy_parameters(3)["weights"]  # ln 2.5 - ln i, i = 1, 2
    assert w == pytest.approx([0.916291 / 1.139434, 0.223144 / 1.139434], rel=1e-5)
    p = CMAConfig(step_size_rule="wang_ponce").strategy_parameters(4096)
    assert p["c_sigma"] == pytest.approx(math.sqrt(p["mueff"]) / (math.sqrt(p["mueff"]) + 64))
    assert 0.04 < p["c_sigma"] < 0.06 and CMAConfig().strategy_parameters(4096)["c_sigma"] < 0.004


@pytest.mark.parametrize("maximize, scores, top", [
    (True, [1.0, 3.0, 3.0, 0.0], (1, 2)),                    # tie: stable by sample index
    (False, [3.0, 1.0, 2.0, 0.0], (3, 1)),                   # minimisation
    (True, [math.nan, 1.0, math.inf, 2.0], (3, 1)),          # NaN and inf rank last
    (False, [-math.inf, 5.0, math.nan, 4.0], (3, 1)),
])
def test_tell_recombines_the_top_mu_codes(maximize, scores, top):
    cfg = CMAConfig(popsize=4, sigma0=0.7, maximize=maximize)
    es = BatchedCMAES(torch.tensor([0.5, -1.0, 2.0], dtype=F64), config=cfg, seeds=[11])
    codes = es.ask()[0]
    es.tell(torch.tensor([scores], dtype=F64))
    w1, w2 = 0.916291 / 1.139434, 0.223144 / 1.139434
    expected = w1 * codes[top[0]] + w2 * codes[top[1]]
    torch.testing.assert_close(es.mean[0], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(es.best_code[0], codes[top[0]], rtol=0, atol=0)
    assert es.best_score.item() == scores[top[0]] and es.generation == 1


def test_first_step_size_update_matches_csa_formula():
    cfg = CMAConfig(popsize=6, sigma0=0.3)
    x0 = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [0.0] * 5], dtype=F64)
    es = BatchedCMAES(x0, config=cfg, seeds=[1, 2])
    codes = es.ask()
    scores = -(codes**2).sum(-1)
    es.tell(scores)
    p = cfg.strategy_parameters(5)
    w = torch.tensor(p["weights"], dtype=F64)
    order = scores.argsort(dim=1, descending=True)[:, :3]
    z = (codes.gather(1, order[..., None].expand(-1, -1, 5)) - x0[:, None]) / 0.3
    cs = p["c_sigma"]
    ps = math.sqrt(cs * (2 - cs) * p["mueff"]) * (w[None, :, None] * z).sum(1)
    sigma = 0.3 * torch.exp(cs / p["d_sigma"] * (ps.norm(dim=1) / p["chi_n"] - 1))
    torch.testing.assert_close(es.sigma, sigma, rtol=1e-12, atol=0)


def test_mix32_is_a_bijection_and_agrees_on_ints_and_tensors():
    x = torch.arange(1 << 16, dtype=torch.int64) * 7919
    h = _mix32(x.clone())
    assert h.unique().numel() == x.numel() and int(h.min()) >= 0 and int(h.max()) < 2**32
    assert [int(v) for v in h[:5]] == [_mix32(int(v)) for v in x[:5]]


# ------------------------------------------------------------------------------------ the noise
def test_samples_are_standard_normal_and_independent():
    cfg = CMAConfig(popsize=50, sigma0=1.0)
    es = BatchedCMAES(torch.zeros(1001), config=cfg, seeds=range(8))  # odd d: Box-Muller padding
    z = es.ask().double()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs((z.abs() > 1.959964).double().mean() - 0.05) < 0.003
    assert abs((z**4).mean() - 3) < 0.05
    flat = z.reshape(8, -1)
    assert np.abs(np.corrcoef(flat.numpy())[np.triu_indices(8, 1)]).max() < 0.01
    pairs = torch.stack([z[..., :500].flatten(), z[..., 501:].flatten()])  # Box-Muller partners
    assert abs(torch.corrcoef(pairs)[0, 1]) < 0.01
    es.tell(torch.zeros(8, 50))  # flat scores: state unchanged, next generation's noise is new
    nxt = es.ask().double()
    assert abs(torch.corrcoef(torch.stack([z.flatten(), nxt.flatten()]))[0, 1]) < 0.01


def test_ask_is_pure_and_takes_device_dtype_from_x0():
    es = BatchedCMAES(torch.zeros(2, 7, dtype=F64), config=CMAConfig(), seeds=[0, 1])
    a, b = es.ask(), es.ask()
    assert a.shape == (2, es.popsize, 7) and a.dtype == F64 and torch.equal(a, b)
    assert not torch.equal(a[0], a[1])


# ------------------------------------------------------------------------------ determinism
def _target(x):
    return -((x - 0.3) ** 2 * torch.linspace(1, 100, x.shape[-1], dtype=x.dtype)).sum(-1)


@pytest.mark.parametrize("covariance, dtype", [
    ("none", torch.float32), ("none", F64), ("diagonal", torch.float32), ("diagonal", F64),
    ("full", F64),  # float32 full: BLAS picks kernels by batch size, so only ~1e-6 agreement
])
def test_each_evolution_is_independent_of_its_batch(covariance, dtype):
    seeds = [3, 17, 0, 2**40, 5, 99]
    x0 = torch.randn(6, 12, generator=torch.Generator().manual_seed(0), dtype=dtype)
    cfg = CMAConfig(covariance=covariance, sigma0=0.5)
    batch = run_cmaes(_target, x0, config=cfg, seeds=seeds, generations=30)
    again = run_cmaes(_target, x0, config=cfg, seeds=seeds, generations=30)
    assert torch.equal(batch.best_so_far, again.best_so_far)
    for b in (0, 3, 5):
        alone = run_cmaes(_target, x0[b], config=cfg, seeds=[seeds[b]], generations=30)
        assert torch.equal(alone.final_mean[0], batch.final_mean[b])
        assert torch.equal(alone.final_sigma[0], batch.final_sigma[b])
        assert torch.equal(alone.best_so_far[:, 0], batch.best_so_far[:, b])


def test_checkpoint_resume_continues_the_same_trajectory(tmp_path):
    cfg = CMAConfig(covariance="diagonal", sigma0=0.5)
    x0 = torch.zeros(3, 8)
    straight = BatchedCMAES(x0, config=cfg, seeds=[1, 2, 3])
    first = BatchedCMAES(x0, config=cfg, seeds=[1, 2, 3])
    for es, n in ((straight, 8), (first, 4)):
        for _ in range(n):
            es.tell(_target(es.ask().reshape(-1, 8)).reshape(3, -1))
    torch.save(first.state_dict(), tmp_path / "es.pt")
    resumed = BatchedCMAES(x0, config=cfg, seeds=[1, 2, 3])
    resumed.load_state_dict(torch.load(tmp_path / "es.pt", weights_only=True))
    for _ in range(4):
        resumed.tell(_target(resumed.ask().reshape(-1, 8)).reshape(3, -1))
    assert resumed.generation == 8
    for name in ("mean", "sigma", "best_code", "best_score"):
        assert torch.equal(getattr(resumed, name), getattr(straight, name))
    other = BatchedCMAES(x0, config=CMAConfig(sigma0=0.5), seeds=[1, 2, 3])
    with pytest.raises(ValueError, match="config"):
        other.load_state_dict(first.state_dict())


# ------------------------------------------------------------------------------ robustness
@pytest.mark.parametrize("covariance", ["none", "diagonal", "full"])
def test_flat_and_all_nan_evolutions_stay_put_while_others_move(covariance):
    cfg = CMAConfig(covariance=covariance, sigma0=0.5)
    x0 = torch.zeros(3, 6, dtype=F64)

    def score(codes):  # evolution 0 flat (ablated unit), 1 all NaN, 2 a real objective
        s = _target(codes).reshape(3, -1)
        s[0], s[1] = 1.5, math.nan
        return s.reshape(-1)

    runs = [run_cmaes(score, x0, config=cfg, seeds=[7, 8, 9], generations=30) for _ in range(2)]
    r = runs[0]
    assert torch.equal(r.final_mean[:2], x0[:2]) and (r.final_sigma[:2] == 0.5).all()
    assert not torch.equal(r.final_mean[2], x0[2]) and torch.isfinite(r.final_mean).all()
    assert r.best_score[0] == 1.5 and r.best_score[1] == -math.inf
    assert torch.equal(r.best_code[1], x0[1])
    assert torch.isnan(r.mean_per_gen[:, 1]).all() and (r.max_per_gen[:, 0] == 1.5).all()
    assert torch.equal(runs[1].best_code, r.best_code)
    assert torch.equal(runs[1].final_mean, r.final_mean)


def test_partly_nan_scores_do_not_stop_progress():
    def score(codes):
        s = -sphere(codes - 1.0)
        s[::3] = math.nan
        return s

    r = run_cmaes(score, torch.zeros(10, dtype=F64), config=CMAConfig(sigma0=0.5), seeds=[0, 1],
                  generations=150)
    assert torch.isfinite(r.final_mean).all() and (r.best_score > -1e-4).all()


def test_maximisation_rises_toward_the_peak_and_best_code_scores_best_score():
    c = torch.linspace(-2, 2, 10, dtype=F64)

    def score(codes):
        return -((codes - c) ** 2).sum(-1)

    r = run_cmaes(score, torch.zeros(10, dtype=F64), config=CMAConfig(), seeds=range(4),
                  generations=150)
    assert (r.best_so_far.diff(dim=0) >= 0).all() and (r.best_so_far[0] < -5).all()
    assert (r.best_score > -1e-6).all() and ((r.best_code - c).norm(dim=1) < 1e-3).all()
    torch.testing.assert_close(score(r.best_code), r.best_score, rtol=0, atol=0)


def test_wang_ponce_step_size_rule_grows_a_too_small_sigma_faster():
    sigmas = {}
    for rule in ("hansen", "wang_ponce"):
        cfg = CMAConfig(sigma0=1e-3, step_size_rule=rule, maximize=False)
        r = run_cmaes(sphere, torch.ones(200, dtype=F64), config=cfg, seeds=[0], generations=60)
        sigmas[rule] = r.final_sigma.item()
    growth = {rule: math.log(s / 1e-3) for rule, s in sigmas.items()}  # measured 1.9 and 1.0
    assert growth["wang_ponce"] > 1.5 * growth["hansen"] > 0.75


# ------------------------------------------------------------------------------ the run loop
def test_should_stop_cancels_and_progress_reports_every_generation():
    calls = []

    def progress(done, total, best):
        assert best.shape == (2,)
        calls.append((done, total))

    r = run_cmaes(_target, torch.zeros(5), config=CMAConfig(), seeds=[0, 1], generations=10,
                  progress=progress, should_stop=lambda: len(calls) >= 3)
    assert (r.generations_run, r.cancelled, calls) == (3, True, [(1, 10), (2, 10), (3, 10)])
    assert r.max_per_gen.shape == r.mean_per_gen.shape == r.best_so_far.shape == (3, 2)
    full = run_cmaes(_target, torch.zeros(5), config=CMAConfig(), seeds=[0, 1], generations=4)
    assert (full.generations_run, full.cancelled, full.best_so_far.shape) == (4, False, (4, 2))


def test_run_pycma_has_the_same_result_shape_and_leaves_numpy_alone():
    np.random.seed(5)
    expected = np.random.rand()
    np.random.seed(5)
    cfg = CMAConfig(maximize=False, covariance="diagonal")
    runs = [run_pycma(sphere, torch.ones(6, dtype=F64), config=cfg, seed=0, generations=30)
            for _ in range(2)]
    assert np.random.rand() == expected
    r = runs[0]
    assert r.best_code.shape == (1, 6) and r.best_so_far.shape == (30, 1) and r.best_score < 1e-2
    assert torch.equal(r.best_code, runs[1].best_code)
    torch.testing.assert_close(sphere(r.best_code), r.best_score, rtol=0, atol=0)


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("kwargs, match", [
    (dict(popsize=1), "popsize"), (dict(popsize=True), "popsize"), (dict(popsize=4.0), "popsize"),
    (dict(sigma0=0.0), "sigma0"), (dict(sigma0=-1.0), "sigma0"), (dict(sigma0=math.nan), "sigma0"),
    (dict(mu=0), "mu"), (dict(popsize=4, mu=5), "mu=5"), (dict(covariance="rank1"), "'rank1'"),
    (dict(step_size_rule="tpa"), "'tpa'"), (dict(maximize="yes"), "maximize"),
])
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CMAConfig(**kwargs)


def test_bad_inputs_raise_value_errors():
    cfg = CMAConfig()
    for x0, seeds, match in [
        (torch.zeros(2, 3, 4), [0, 1], "shape"), (torch.zeros(3, 4), [0, 1], "3 rows"),
        (torch.zeros(4, dtype=torch.int64), [0], "float"), (torch.zeros(4), [], "seeds"),
        (torch.zeros(4), [-1], "seeds"), (torch.tensor([0.0, math.nan]), [0], "NaN"),
        (torch.zeros(4), [2**64], "seeds"),
    ]:
        with pytest.raises(ValueError, match=match):
            BatchedCMAES(x0, config=cfg, seeds=seeds)
    with pytest.raises(ValueError, match="mu=50"):
        BatchedCMAES(torch.zeros(20), config=CMAConfig(mu=50), seeds=[0])
    es = BatchedCMAES(torch.zeros(4), config=cfg, seeds=[0, 1])
    with pytest.raises(ValueError, match="shape"):
        es.tell(torch.zeros(2, es.popsize + 1))
    with pytest.raises(ValueError, match="score_fn"):
        run_cmaes(lambda c: c.sum(), torch.zeros(4), config=cfg, seeds=[0], generations=2)
    with pytest.raises(ValueError, match="generations"):
        run_cmaes(sphere, torch.zeros(4), config=cfg, seeds=[0], generations=-1)


# ------------------------------------------------------------------------------ against pycma
# Same popsize, mu, sigma0 and budget; pycma runs with CMA_active=False (positive weights, as
# here) and the matching covariance (CMA_diagonal=True, plus CMA_on=0 for "none"). Ratios of the
# medians over 5 seeds (ours / pycma) measured when this was written: sphere-20 1.3, sphere-200 1.1,
# ellipsoid-50 diagonal 5e-5, ellipsoid-200 diagonal 0.3, ellipsoid-20 full 0.9 (500 generations)
# to 4.7 (800: both are in the fast-falling phase), Rosenbrock-20 full 1.3. The tolerance is a
# factor 10. Rosenbrock in 200-d needs ~1e5 evaluations before anything moves: left out.
CASES = [
    pytest.param(sphere, 20, "none", 150, id="sphere-20-none"),
    pytest.param(sphere, 200, "none", 300, id="sphere-200-none"),
    pytest.param(ellipsoid, 50, "diagonal", 600, id="ellipsoid-50-diagonal"),
    pytest.param(ellipsoid, 200, "diagonal", 1000, id="ellipsoid-200-diagonal",
                 marks=pytest.mark.slow),
    pytest.param(ellipsoid, 20, "full", 800, id="ellipsoid-20-full", marks=pytest.mark.slow),
    pytest.param(rosenbrock, 20, "full", 1000, id="rosenbrock-20-full", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("fn, d, covariance, generations", CASES)
def test_reaches_pycma_objective_values_at_the_same_budget(fn, d, covariance, generations):
    x0 = torch.zeros(d, dtype=F64) if fn is rosenbrock else torch.ones(d, dtype=F64)
    cfg = CMAConfig(sigma0=0.5 if fn is rosenbrock else 1.0, covariance=covariance,
                    maximize=False)
    ours = run_cmaes(fn, x0, config=cfg, seeds=range(5), generations=generations).best_score
    ref = [run_pycma(fn, x0, config=cfg, seed=s, generations=generations).best_score.item()
           for s in range(5)]
    assert ours.median().item() <= 10 * float(np.median(ref))
    assert ours.median().item() < 0.1 * fn(x0[None]).item()  # Rosenbrock traps some runs at 3.98


@pytest.mark.needs_cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_cuda_draw_the_same_codes():
    x0 = torch.randn(4, 300, generator=torch.Generator().manual_seed(0))
    cfg = CMAConfig(covariance="diagonal")
    cpu = BatchedCMAES(x0, config=cfg, seeds=[0, 1, 2, 3]).ask()
    gpu = BatchedCMAES(x0.cuda(), config=cfg, seeds=[0, 1, 2, 3]).ask()
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------ what runs, in words
def _mueff(mu: int) -> float:
    w = np.log(mu + 0.5) - np.log(np.arange(1, mu + 1))
    w = w / w.sum()
    return float(1 / np.sum(w * w))


def test_the_default_is_worded_as_an_isotropic_es_not_cma_es():
    d, lam, mu = 4096, 40, 20  # 4 + floor(3 log2 4096) = 40
    mueff = _mueff(mu)  # 11.31
    c_sigma = math.sqrt(mueff) / (math.sqrt(mueff) + math.sqrt(d))  # Wang & Ponce: 0.0499
    assert round(c_sigma, 3) == 0.05
    assert describe_optimizer(VisualizeSettings(), d) == (
        "isotropic (μ/μ_w, λ)-ES with cumulative step-size adaptation (Wang–Ponce rate "
        f"c_σ = 0.05), no covariance adaptation; λ = {lam}, μ = {mu} at d = 4096")
    hansen = describe_optimizer(CMAConfig(popsize=8, step_size_rule="hansen"), 100)
    # mu_eff = 2.60 for mu = 4; c_sigma = (2.60 + 2) / (100 + 2.60 + 5) = 0.0428
    assert hansen.startswith("isotropic") and "(Hansen's rate c_σ = 0.043)" in hansen
    assert hansen.endswith("λ = 8, μ = 4 at d = 100")


def test_diagonal_and_full_are_worded_as_cma_es_with_their_learning_rates():
    d, mueff = 4096, _mueff(20)
    sep_c1 = 1 / (d + 2 * math.sqrt(d) + mueff / d)  # pycma's separable rank-one rate
    full_c1 = 2 / ((d + 1.3) ** 2 + mueff)  # Hansen's tutorial, Table 1
    full_cmu = 2 * (mueff - 2 + 1 / mueff) / ((d + 2) ** 2 + mueff)
    diagonal = describe_optimizer(VisualizeSettings(covariance="diagonal"), d)
    assert diagonal.startswith("sep-CMA-ES: (μ/μ_w, λ)-ES with cumulative step-size adaptation")
    assert f"diagonal covariance adaptation (Ros & Hansen 2008; c_1 = {sep_c1:.1e}" in diagonal
    full = describe_optimizer(VisualizeSettings(covariance="full"), d)
    assert full.startswith("CMA-ES: ") and "rank-one + rank-μ" in full
    assert f"c_1 = {full_c1:.1e}, c_μ = {full_cmu:.1e})" in full and "1.2e-07" in full
    assert tuple(COVARIANCE_NAMES) == COVARIANCES
    with pytest.raises(ValueError, match="VisualizeSettings or CMAConfig"):
        describe_optimizer("none", d)


def test_lazy_eigen_interval_is_the_tutorials_bound():
    # d = 4096, lambda = 8: c_1 = 1.191e-7, c_mu = 1.173e-7, 1 / (10 d (c_1 + c_mu)) = 103.3
    assert lazy_eigen_interval(CMAConfig(popsize=8, covariance="full"), 4096) == 103
    assert lazy_eigen_interval(CMAConfig(covariance="full"), 4096) == 19  # lambda = 40
    assert lazy_eigen_interval(CMAConfig(covariance="full"), 10) == 1
    assert lazy_eigen_interval(CMAConfig(popsize=8, covariance="diagonal"), 4096) == 1
    with pytest.raises(ValueError, match="eigen_interval"):
        BatchedCMAES(torch.zeros(3), config=CMAConfig(covariance="full"), seeds=[0],
                     eigen_interval=0)


def test_full_samples_like_the_isotropic_es_until_its_first_eigendecomposition():
    x0, seeds = torch.zeros(6, dtype=F64), [3, 4]
    iso = BatchedCMAES(x0, config=CMAConfig(sigma0=0.5), seeds=seeds)
    lazy = BatchedCMAES(x0, config=CMAConfig(sigma0=0.5, covariance="full"), seeds=seeds,
                        eigen_interval=3)
    eager = BatchedCMAES(x0, config=CMAConfig(sigma0=0.5, covariance="full"), seeds=seeds)
    for generation in range(4):
        a, b, c = iso.ask(), lazy.ask(), eager.ask()
        # C = I at the start: the same codes; then the eager one rotates to C's eigenbasis
        # at once, the lazy one only after its third tell.
        assert torch.equal(a, b) == (generation < 3)
        assert torch.equal(a, c) == (generation == 0)
        for es, codes in ((iso, a), (lazy, b), (eager, c)):
            es.tell(sphere(codes - 1.0))

