"""Reference log densities for tests/pipeline/test_tpe.cpp (ParzenEstimatorMatchesOptuna).

Runs Optuna's own _ParzenEstimator on small fixed examples and prints the expected values.
Needs an Optuna with the 4.x estimator (prior kept out of the sigma rule, step/2-widened discrete
bounds); Debian bookworm's python3-optuna 3.1 is older and gives different numbers. The values in
the test were made with Optuna 5.0.0.dev (git 1d8ce7bb6) and numpy 1.24:
    PYTHONPATH=/path/to/optuna-checkout python3 tests/scripts/tpe_reference.py
"""
import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator, _ParzenEstimatorParameters
from optuna.samplers._tpe.sampler import default_weights


def params(consider_endpoints=False, consider_magic_clip=True):
    return _ParzenEstimatorParameters(
        prior_weight=1.0,
        consider_magic_clip=consider_magic_clip,
        consider_endpoints=consider_endpoints,
        weights=default_weights,
        multivariate=True,
    )


CASES = [
    ("float", {"x": FloatDistribution(0.0, 1.0)}, {"x": [0.1, 0.25, 0.9]}, params(),
     {"x": [0.0, 0.2, 0.5, 0.95]}),
    ("float_endpoints_noclip", {"x": FloatDistribution(0.0, 1.0)}, {"x": [0.1, 0.25, 0.9]},
     params(consider_endpoints=True, consider_magic_clip=False), {"x": [0.0, 0.2, 0.5, 0.95]}),
    ("float_one_obs", {"x": FloatDistribution(-2.0, 3.0)}, {"x": [0.5]}, params(),
     {"x": [-2.0, 0.5, 2.9]}),
    ("prior_only", {"x": FloatDistribution(-5.0, 5.0)}, {"x": []}, params(), {"x": [0.0, 4.0]}),
    ("log_float", {"x": FloatDistribution(1e-4, 1.0, log=True)}, {"x": [1e-3, 1e-2, 0.5]},
     params(), {"x": [1e-4, 3e-3, 0.1, 1.0]}),
    ("int", {"x": IntDistribution(1, 10)}, {"x": [2, 3, 9]}, params(), {"x": [1, 3, 6, 10]}),
    ("int_step3", {"x": IntDistribution(0, 9, step=3)}, {"x": [3, 3]}, params(),
     {"x": [0, 3, 6, 9]}),
    ("float_step", {"x": FloatDistribution(0.0, 1.0, step=0.25)}, {"x": [0.25, 0.5]}, params(),
     {"x": [0.0, 0.5, 1.0]}),
    ("categorical", {"x": CategoricalDistribution(["a", "b", "c"])}, {"x": [0, 2, 2]}, params(),
     {"x": [0, 1, 2]}),
    ("ramp_weights", {"x": FloatDistribution(0.0, 1.0)}, {"x": [i * 0.03 for i in range(30)]},
     params(), {"x": [0.05, 0.5, 0.86]}),
    ("joint", {"a": FloatDistribution(0.0, 1.0), "b": CategoricalDistribution(["p", "q"])},
     {"a": [0.2, 0.7], "b": [1, 0]}, params(), {"a": [0.2, 0.2, 0.7], "b": [0, 1, 0]}),
]

print(f"// optuna {optuna.__version__}")
for name, space, obs, p, xs in CASES:
    pe = _ParzenEstimator({k: np.asarray(v, dtype=float) for k, v in obs.items()}, space, p)
    lp = pe.log_pdf({k: np.asarray(v, dtype=float) for k, v in xs.items()})
    print(name, " ".join(f"{v:.15g}" for v in lp))
