"""Training and hyperparameter search past one machine, on Ray.

Three ways to use more than one process or machine, each on an existing engine:

- :func:`fit_distributed` trains one :class:`~sksiamese.SiameseClassifier`
  data-parallel with Ray Train (PyTorch ``DistributedDataParallel`` underneath)
  and returns an ordinary fitted estimator.
- :func:`tune_search` searches hyperparameters with Ray Tune and Optuna, and
  stops unpromising trials early (ASHA) from their per-epoch scores.
- :func:`ray_backend` runs scikit-learn's own ``GridSearchCV``,
  ``RandomizedSearchCV`` or ``cross_validate`` on a Ray cluster through joblib,
  with one torch thread per job.

Ray and Optuna are optional dependencies: ``pip install "sksiamese[ray]"``.
Nothing here starts or joins a cluster by itself: call ``ray.init()`` (or
``ray.init(address=...)``) first, or Ray starts a local one on first use.
Every node of a cluster needs sksiamese installed.
"""

import builtins
import contextlib
import json
import math
import numbers
import os
import re
import tempfile

import numpy as np
import torch
from sklearn.base import clone
from sklearn.metrics import balanced_accuracy_score
from sklearn.utils import Bunch, check_random_state
from skorch.callbacks import Callback
from skorch.history import History
from torch import nn

from ._base import restore_on_failure
from ._classifier import SiameseClassifier
from ._persistence import _history_default
from ._references import select_references
from ._sampling import batch_layout
from ._training import seeded, to_cpu, warn_if_not_converged

__all__ = ["fit_distributed", "ray_backend", "tune_search"]

_INSTALL_HINT = 'pip install "sksiamese[ray]"'
_STATE_FILE = "sksiamese_state.pt"
_HISTORY_FILE = "sksiamese_history.json"


def _require(module, feature):
    """Import an optional dependency, or explain how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{feature} needs the optional dependency {module.split('.')[0]!r}; "
            f"install it with: {_INSTALL_HINT}"
        ) from exc


def _keep_builtin_print():
    """Stop Ray from replacing ``builtins.print`` in this process.

    Ray's driver swaps ``builtins.print`` for a wrapper of its own (to draw
    progress bars) when it first shows a worker's log. skorch keeps the
    built-in as the log sink of every net; pickle stores it by name and refuses
    it once the name means something else, so a fitted estimator would no
    longer pickle. ``RAY_TQDM_PATCH_PRINT=0`` is Ray's switch for this
    (honoured when set by the user); a swap already made is undone.
    """
    if os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0") != "0":
        return
    try:
        from ray.experimental import tqdm_ray
    except ImportError:
        return
    original = getattr(tqdm_ray, "_print", None)
    if builtins.print is getattr(tqdm_ray, "safe_print", None) and original:
        builtins.print = original


def _check_trainable(estimator, caller):
    if not isinstance(estimator, SiameseClassifier):
        raise TypeError(
            f"{caller} trains a sksiamese SiameseClassifier; got "
            f"{type(estimator).__name__}."
        )


def _check_positive(value, name, integral, above=0):
    """``value`` a finite int (``integral``) or number greater than
    ``above``, or a ``ValueError`` naming ``name``."""
    kind = numbers.Integral if integral else numbers.Real
    if (
        isinstance(value, bool)
        or not isinstance(value, kind)
        # NaN and infinity too: CPUs are counted, and torch threads derived.
        or not above < value < math.inf
    ):
        if above:
            what = f"a finite number greater than {above}"
        else:
            what = "a positive int" if integral else "a positive, finite number"
        raise ValueError(f"{name} must be {what}; got {value!r}.")


def _torch_threads(cpus):
    """Intra-op threads for a worker granted ``cpus`` CPUs (at least 1)."""
    return max(1, math.floor(cpus))


# -- data-parallel training ------------------------------------------------------


class _UnwrapDDP(nn.Module):
    """Hand the loss the twin module itself, not its DDP wrapper.

    The in-batch losses call ``module.pairwise``; ``DistributedDataParallel``
    only forwards ``forward``. Gradients of parameters used in the loss (the
    ``"bce"`` head) are still averaged: DDP hooks every parameter.
    """

    def __init__(self, criterion):
        super().__init__()
        self.criterion = criterion

    def forward(self, emb, y, module):
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        return self.criterion(emb, y, module)


class _RayTrainSync(Callback):
    """Average each batch loss over the workers and report every epoch.

    With the losses averaged before skorch sums them up, every worker sees the
    same epoch losses, so early stopping stops all of them at the same epoch
    (a worker that stopped alone would leave the others waiting forever).
    """

    def __init__(self, world_size):
        self.world_size = world_size

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if self.world_size == 1:
            return
        key = "train_loss" if training else "valid_loss"
        # A tensor on the training device until the end of the epoch.
        value = torch.tensor(
            float(net.history[-1, "batches", -1, key]), dtype=torch.float64
        )
        torch.distributed.all_reduce(value)
        net.history.record_batch(key, value.item() / self.world_size)

    def on_epoch_end(self, net, **kwargs):
        import ray.train

        ray.train.report(_epoch_metrics(net))


def _epoch_metrics(net):
    row = net.history[-1]
    keys = ("epoch", "train_loss", "valid_loss")
    return {k: float(row[k]) if k != "epoch" else row[k] for k in keys if k in row}


def _train_worker(config):
    """The per-worker loop of :func:`fit_distributed` (runs in a Ray actor)."""
    import ray
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(config["threads"])
    net = ray.get(config["net"])
    # A writable copy: arrays from the object store are read-only.
    Z, codes = (np.array(a) for a in ray.get(config["shards"][rank]))
    sampler_seed, torch_seed = config["seeds"][rank]

    # The device Ray Train gave this worker, whatever the driver's was.
    net.device = str(ray.train.torch.get_device())
    net.iterator_train__pin_memory = net.device.startswith("cuda")
    for name in ("iterator_train__device", "iterator_valid__device"):
        if getattr(net, name, None) is not None:
            setattr(net, name, net.device)  # data kept on the driver's GPU
    module = net.module_
    net.module_ = ray.train.torch.prepare_model(module)
    net.criterion_ = _UnwrapDDP(net.criterion_)
    # Plain attributes: skorch's set_params refuses iterator parameters on an
    # initialised net, but reads them from the attributes for every epoch.
    net.iterator_train__random_state = int(sampler_seed)
    net.iterator_train__n_batches = config["n_batches"]
    # First among the callbacks that act on the epoch, so that early stopping
    # and the user's callbacks see losses averaged over the workers.
    net.callbacks = [("ray_train_sync", _RayTrainSync(world)), *net.callbacks]
    net.initialize_callbacks()
    if rank != 0:
        net.verbose = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch_seed))
        net.partial_fit(Z, codes)
    # The trained state goes back as a Ray Train checkpoint (rank 0's; the
    # others hold the same weights), written to the run's storage.
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            state = {
                "module": to_cpu(module.state_dict()),
                "optimizer": to_cpu(net.optimizer_.state_dict()),
            }
            torch.save(state, os.path.join(tmp, _STATE_FILE))
            with open(os.path.join(tmp, _HISTORY_FILE), "w") as f:
                json.dump(list(net.history), f, default=_history_default)
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(_epoch_metrics(net), checkpoint=checkpoint)


def _shards(codes, train, num_workers, seed):
    """Stratified shards of the training indices, one per worker.

    Each class is dealt round-robin, so every shard holds about
    ``1 / num_workers`` of each class.
    """
    rng = np.random.RandomState(seed)
    shards = [[] for _ in range(num_workers)]
    for c in np.unique(codes[train]):
        idx = rng.permutation(train[codes[train] == c])
        for w in range(num_workers):
            shards[w].append(idx[w::num_workers])
    shards = [np.sort(np.concatenate(s)) for s in shards]
    for w, s in enumerate(shards):
        if len(np.unique(codes[s])) < 2:
            raise ValueError(
                f"Too few training samples for num_workers={num_workers}: worker "
                f"{w}'s share holds fewer than 2 classes. Use fewer workers or "
                "more data."
            )
    return shards


def fit_distributed(
    estimator,
    X,
    y,
    *,
    num_workers=2,
    cpus_per_worker=1,
    use_gpu=False,
    storage_path=None,
    name=None,
):
    """Train a Siamese classifier data-parallel on Ray Train.

    The data are validated, scaled and split on the driver exactly as
    :meth:`SiameseClassifier.fit <sksiamese.SiameseClassifier.fit>` does. Each of
    ``num_workers`` Ray workers then trains a copy of the same initial network on
    its own stratified share of the training samples, with class-balanced
    batches drawn from that share; PyTorch ``DistributedDataParallel`` averages
    the gradients after every batch, so the copies stay identical. The held-out
    loss (for early stopping) is computed by every worker on the whole held-out
    split. Rank 0's trained weights are loaded back on the driver, which embeds
    the references and calibrates the probabilities as ``fit`` does.

    The result is an ordinary fitted estimator: it predicts, pickles and saves
    like one trained by ``fit``, with no Ray needed afterwards, and as ``fit``
    it warns (``ConvergenceWarning``) when early stopping ran all
    ``max_epochs`` epochs while the held-out loss was still improving. It is not
    identical to ``fit`` with the same ``random_state``: the batches are drawn
    differently. Each worker draws batches of ``batch_size`` samples, so a step
    sees ``num_workers * batch_size`` samples and an epoch takes about
    ``1 / num_workers`` as many steps; pairs are formed within each worker's
    batch. The estimator's ``callbacks`` run in every worker, and see the
    losses averaged over the workers.

    Parameters
    ----------
    estimator : SiameseClassifier
        The estimator to train, with its hyperparameters set. It is fitted in
        place, as by ``estimator.fit(X, y)``.
    X : array-like of shape (n_samples, n_features)
        Training samples; blanks (NaN) allowed.
    y : array-like of shape (n_samples,)
        Class labels.
    num_workers : int, default=2
        Number of training processes (Ray Train workers).
    cpus_per_worker : float, default=1
        CPUs reserved for each worker; fractions are allowed (several workers on
        one core). Each worker uses ``max(1, floor(cpus_per_worker))`` torch
        threads.
    use_gpu : bool, default=False
        Give each worker one GPU (and the "nccl" backend instead of "gloo").
    storage_path : str or path-like, default=None
        Where Ray Train writes its run directory; Ray's default
        (``~/ray_results``) when None. On a cluster of several machines, a
        location every node can reach.
    name : str, default=None
        Name of the run directory; generated by Ray when None.

    Returns
    -------
    estimator : SiameseClassifier
        The fitted estimator. ``history_`` is rank 0's log, with losses
        averaged over the workers.

    See Also
    --------
    tune_search : Hyperparameter search with Ray Tune and Optuna.

    Examples
    --------
    >>> import ray  # doctest: +SKIP
    >>> from sklearn.datasets import load_iris
    >>> from sksiamese import SiameseClassifier
    >>> from sksiamese.distributed import fit_distributed
    >>> X, y = load_iris(return_X_y=True)
    >>> ray.init(num_cpus=2)  # doctest: +SKIP
    >>> clf = fit_distributed(  # doctest: +SKIP
    ...     SiameseClassifier(max_epochs=20, random_state=0), X, y, num_workers=2
    ... )
    >>> clf.predict(X[:3])  # doctest: +SKIP
    array([0, 0, 0])
    """
    _check_trainable(estimator, "fit_distributed")
    _check_positive(num_workers, "num_workers", integral=True)
    _check_positive(cpus_per_worker, "cpus_per_worker", integral=False)
    ray = _require("ray", "fit_distributed")
    train = _require("ray.train", "fit_distributed")
    ray_torch = _require("ray.train.torch", "fit_distributed")
    _keep_builtin_print()

    estimator._validate_params()
    with restore_on_failure(estimator):
        plan = estimator._fit_setup(X, y)
        shards = _shards(plan.codes, plan.train, num_workers, plan.seed)
        n_batches = max(
            math.ceil(len(s) / math.prod(_layout(estimator, plan.codes[s])))
            for s in shards
        )
        seeds = np.random.RandomState(plan.seed).randint(
            np.iinfo(np.int32).max, size=(num_workers, 2)
        )
        config = {
            "net": ray.put(plan.net),
            "shards": [ray.put((plan.Z[s], plan.targets[s])) for s in shards],
            "seeds": seeds.tolist(),
            "n_batches": max(1, n_batches),
            "threads": _torch_threads(cpus_per_worker),
        }
        resources = {"CPU": cpus_per_worker}
        if use_gpu:
            resources["GPU"] = 1
        trainer = ray_torch.TorchTrainer(
            _train_worker,
            train_loop_config=config,
            scaling_config=train.ScalingConfig(
                num_workers=num_workers,
                use_gpu=bool(use_gpu),
                resources_per_worker=resources,
            ),
            run_config=train.RunConfig(
                name=name,
                storage_path=None if storage_path is None else str(storage_path),
                **_train_logging(train, estimator.verbose),
            ),
        )
        result = trainer.fit()
        with result.checkpoint.as_directory() as path:
            trained = torch.load(
                os.path.join(path, _STATE_FILE), map_location="cpu", weights_only=True
            )
            with open(os.path.join(path, _HISTORY_FILE)) as f:
                history = json.load(f)
        net = plan.net
        net.module_.load_state_dict(trained["module"])
        net.optimizer_.load_state_dict(trained["optimizer"])
        net.history = History(history)
        # As fit warns: early stopping ran out of epochs while still improving.
        warn_if_not_converged(estimator, net)
        return estimator._fit_finish(plan)


def _train_logging(train, verbose):
    """Ray Train's own per-epoch log lines only when ``verbose`` asks for logs."""
    if verbose or not hasattr(train, "LoggingConfig"):
        return {}
    return {"logging_config": train.LoggingConfig(log_level="WARNING")}


def _layout(estimator, codes):
    counts = np.unique(codes, return_counts=True)[1]
    return batch_layout(
        len(counts),
        estimator.batch_size_,
        estimator.samples_per_class,
        largest_class=counts.max(),
    )


# -- hyperparameter search with Ray Tune --------------------------------------------


class _TuneReport(Callback):
    """Report the epoch's losses and held-out balanced accuracy to Ray Tune.

    The accuracy is that of nearest-reference prediction, as ``predict`` makes
    it, against references drawn from (at most ``max_per_class`` samples of each
    class of) the training split; the probabilities are not calibrated yet.
    """

    def __init__(self, estimator, plan, max_per_class=500):
        self.estimator = estimator
        self.plan = plan
        rng = np.random.RandomState(plan.seed)
        train, codes = plan.train, plan.codes
        self.ref_idx = np.concatenate(
            [
                rng.permutation(train[codes[train] == c])[:max_per_class]
                for c in np.unique(codes[train])
            ]
        )

    def on_epoch_end(self, net, **kwargs):
        import ray.tune

        plan, est = self.plan, self.estimator
        metrics = _epoch_metrics(net)
        refs = select_references(
            net.embed(plan.Z[self.ref_idx]),
            plan.codes[self.ref_idx],
            est.references,
            check_random_state(0),
            device=net.device,
        )
        S = refs.dissimilarity(
            net, net.embed(plan.Z[plan.held]), len(plan.classes), est.n_neighbors
        )
        metrics["valid_balanced_accuracy"] = float(
            balanced_accuracy_score(plan.codes[plan.held], np.argmin(S, axis=1))
        )
        ray.tune.report(metrics)


_TUNE_METRICS = {"valid_balanced_accuracy", "valid_loss", "train_loss"}


def _tune_trial(config, estimator, X, y, threads):
    """One Ray Tune trial: fit ``estimator`` with ``config``, reporting epochs."""
    torch.set_num_threads(threads)
    est = clone(estimator).set_params(**config)
    est._validate_params()
    plan = est._fit_setup(X, y)
    if plan.held is None:
        raise ValueError(
            "tune_search scores trials on the held-out split of early stopping; "
            "set early_stopping=True and validation_fraction > 0 (and give "
            "enough samples of every class)."
        )
    net = plan.net
    # First, so that the epoch early stopping ends on is reported too.
    net.callbacks = [("tune_report", _TuneReport(est, plan)), *net.callbacks]
    net.initialize_callbacks()
    with seeded(plan.seed, plan.device):
        net.partial_fit(plan.Z[plan.train], plan.targets[plan.train])


def tune_search(
    estimator,
    X,
    y,
    param_space,
    *,
    num_samples=10,
    metric="valid_balanced_accuracy",
    mode=None,
    scheduler="asha",
    grace_period=2,
    reduction_factor=3,
    cpus_per_trial=1,
    max_concurrent_trials=None,
    refit=True,
    storage_path=None,
    name=None,
    random_state=None,
):
    """Search hyperparameters with Ray Tune and Optuna, stopping bad trials early.

    Each trial clones ``estimator``, sets the sampled parameters and trains it as
    ``fit`` does, reporting after every epoch its training and held-out loss and
    its balanced accuracy on the held-out split (``validation_fraction``).
    Optuna's TPE sampler proposes the parameters; the ASHA scheduler stops
    trials whose scores trail the others' at the same epoch. Within a trial,
    the estimator's own early stopping still applies.

    ``X`` and ``y`` are checked once, as ``fit`` checks them, before any trial
    starts. When every trial fails, the first trial's own error is raised.

    Parameters
    ----------
    estimator : SiameseClassifier
        Template with the fixed hyperparameters; it is not modified.
        ``early_stopping`` must be True and ``validation_fraction`` positive.
        ``max_epochs`` is the longest a trial runs (and ASHA's ``max_t``).
    X : array-like of shape (n_samples, n_features)
        Training samples.
    y : array-like of shape (n_samples,)
        Class labels.
    param_space : dict
        Parameter names of ``estimator`` mapped to Ray Tune search spaces
        (``ray.tune.loguniform(1e-4, 1e-2)``, ``ray.tune.choice([...])``, ...)
        or to fixed values; at least one a search space. Optuna samples the
        spaces, so ``ray.tune.grid_search`` (``tune.choice``, or
        :class:`~sklearn.model_selection.GridSearchCV` with
        :func:`ray_backend`, instead) and ``ray.tune.sample_from`` are
        refused.
    num_samples : int, default=10
        Number of trials.
    metric : {"valid_balanced_accuracy", "valid_loss", "train_loss"}, \
            default="valid_balanced_accuracy"
        Reported value to optimise. Held-out losses of different ``loss`` or
        ``margin`` settings are not comparable; the accuracy is.
    mode : {"max", "min"}, default=None
        Whether ``metric`` is to be maximised; by default "min" for losses and
        "max" otherwise.
    scheduler : "asha", None or a ray.tune scheduler, default="asha"
        Early stopping of trials. ``"asha"``: asynchronous successive halving
        on epochs; None: every trial runs until its own early stopping.
    grace_period : int, default=2
        Epochs every trial runs before ASHA may stop it (at least 1).
    reduction_factor : float, default=3
        ASHA keeps the best ``1 / reduction_factor`` of trials at each rung;
        greater than 1.
    cpus_per_trial : float, default=1
        CPUs reserved for each trial; it uses ``max(1, floor(cpus_per_trial))``
        torch threads.
    max_concurrent_trials : int, default=None
        Trials run at the same time; by default as many as the CPUs allow.
    refit : bool, default=True
        Fit a clone of ``estimator`` with the best parameters on all of ``X``
        in this process.
    storage_path : str or path-like, default=None
        Where Ray Tune writes the results; Ray's default when None.
    name : str, default=None
        Name of the experiment directory; generated by Ray when None.
    random_state : int or None, default=None
        Seed of the Optuna sampler.

    Returns
    -------
    result : sklearn.utils.Bunch
        With ``best_params`` (dict), ``best_score`` (the best value of
        ``metric`` reported by the best trial at any epoch), ``best_estimator``
        (fitted, or None without ``refit``), ``results`` (a pandas DataFrame,
        one row per trial: its parameters under ``config/`` and its last
        report) and ``result_grid`` (Ray Tune's ``ResultGrid``).

    See Also
    --------
    fit_distributed : Train one estimator on several workers.
    ray_backend : scikit-learn's own searches on Ray.

    Examples
    --------
    >>> from ray import tune  # doctest: +SKIP
    >>> from sklearn.datasets import load_iris
    >>> from sksiamese import SiameseClassifier
    >>> from sksiamese.distributed import tune_search
    >>> X, y = load_iris(return_X_y=True)
    >>> found = tune_search(  # doctest: +SKIP
    ...     SiameseClassifier(max_epochs=20, early_stopping=True, random_state=0),
    ...     X,
    ...     y,
    ...     {
    ...         "lr": tune.loguniform(1e-4, 1e-2),
    ...         "weight_decay": tune.loguniform(1e-5, 1e-2),
    ...     },
    ...     num_samples=8,
    ...     random_state=0,
    ... )
    >>> sorted(found.best_params)  # doctest: +SKIP
    ['lr', 'weight_decay']
    """
    _check_trainable(estimator, "tune_search")
    _check_positive(num_samples, "num_samples", integral=True)
    _check_positive(cpus_per_trial, "cpus_per_trial", integral=False)
    _check_positive(grace_period, "grace_period", integral=True)
    _check_positive(reduction_factor, "reduction_factor", integral=False, above=1)
    unknown = sorted(set(param_space) - set(estimator.get_params(deep=False)))
    if unknown:
        raise ValueError(
            f"param_space names parameters that {type(estimator).__name__} does "
            f"not have: {unknown}."
        )
    if metric not in _TUNE_METRICS:
        raise ValueError(
            f"metric must be one of {sorted(_TUNE_METRICS)}; got {metric!r}."
        )
    if mode is None:
        mode = "min" if metric.endswith("loss") else "max"
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min', 'max' or None; got {mode!r}.")
    if not estimator.early_stopping or estimator.validation_fraction == 0:
        raise ValueError(
            "tune_search scores trials on the held-out split of early stopping; "
            "set early_stopping=True and validation_fraction > 0 on the estimator."
        )
    # The data once, here, as fit checks them: otherwise every trial would
    # find the same problem and fail with it, one after the other.
    clone(estimator)._check_fit_data(X, y, None)
    tune = _require("ray.tune", "tune_search")
    _require("optuna", "tune_search")
    optuna_search = _require("ray.tune.search.optuna", "tune_search")
    _check_search_space(param_space)
    _keep_builtin_print()

    if isinstance(scheduler, str):
        if scheduler != "asha":
            raise ValueError(
                f"scheduler must be 'asha', None or a ray.tune scheduler; got "
                f"{scheduler!r}."
            )
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(
            max_t=estimator.max_epochs,
            grace_period=min(grace_period, estimator.max_epochs),
            reduction_factor=reduction_factor,
        )
    seed = None
    if random_state is not None:
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    trainable = tune.with_resources(
        tune.with_parameters(
            _tune_trial,
            estimator=clone(estimator),
            X=X,
            y=y,
            threads=_torch_threads(cpus_per_trial),
        ),
        {"cpu": cpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        param_space=dict(param_space),
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            search_alg=optuna_search.OptunaSearch(seed=seed),
            scheduler=scheduler,
            num_samples=num_samples,
            max_concurrent_trials=max_concurrent_trials,
            # Trials set their threads and seeds themselves, so a process can
            # run one after another without the start-up cost (importing torch).
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=None if storage_path is None else str(storage_path),
            verbose=0,
        ),
    )
    grid = tuner.fit()
    errors = grid.errors
    if len(errors) == len(grid):
        _raise_trial_error(errors[0], len(grid))
    best = grid.get_best_result(metric=metric, mode=mode, scope="all")
    history = best.metrics_dataframe[metric]
    best_params = {k: best.config[k] for k in param_space}
    best_estimator = None
    if refit:
        best_estimator = clone(estimator).set_params(**best_params).fit(X, y)
    return Bunch(
        best_params=best_params,
        best_score=float(history.max() if mode == "max" else history.min()),
        best_estimator=best_estimator,
        results=grid.get_dataframe(),
        result_grid=grid,
    )


def _check_search_space(param_space):
    """Optuna samples the search spaces of ``param_space`` (``tune.uniform``,
    ``tune.choice``, ...); it refuses a space of fixed values alone, and
    Ray's ``grid_search``, with messages that do not say which parameter."""
    from ray.tune.search.sample import Domain, Function

    grids = sorted(
        name
        for name, value in param_space.items()
        if isinstance(value, dict) and "grid_search" in value
    )
    if grids:
        raise ValueError(
            f"param_space gives tune.grid_search for {grids}; tune_search samples "
            "with Optuna, which takes no grid: use tune.choice([...]) instead, or "
            "scikit-learn's GridSearchCV with ray_backend."
        )
    functions = sorted(
        name for name, value in param_space.items() if isinstance(value, Function)
    )
    if functions:
        raise ValueError(
            f"param_space gives tune.sample_from for {functions}; Optuna samples "
            "only its own spaces: use tune.uniform, tune.loguniform, tune.randint "
            "or tune.choice instead."
        )
    if not any(isinstance(value, Domain) for value in param_space.values()):
        raise ValueError(
            "param_space holds fixed values only, nothing to search; give at "
            "least one parameter a Ray Tune search space, such as "
            "tune.loguniform(1e-4, 1e-2) or tune.choice([...])."
        )


def _raise_trial_error(error, n_trials):
    """Raise the error of a trial, when every trial failed.

    Ray wraps what a trial raised in a ``RayTaskError`` whose message holds
    the remote traceback in terminal colours; its ``cause`` is the trial's own
    exception (a ``ValueError`` from the estimator's checks, say), raised
    here as it is. Other failures (a worker process lost, ...) give a
    ``RuntimeError`` that starts with Ray's message, without the colours.
    """
    from ray.exceptions import RayError, RayTaskError

    while isinstance(error, RayTaskError) and isinstance(error.cause, BaseException):
        error = error.cause
    note = (
        f"Every trial of tune_search failed ({n_trials}); this is the first "
        "trial's error."
    )
    if isinstance(error, Exception) and not isinstance(error, RayError):
        if hasattr(error, "add_note"):  # Python 3.11
            error.add_note(note)
        raise error from None
    message = _ANSI_ESCAPE.sub("", str(error))
    raise RuntimeError(f"{message}\n{note}") from error


# Terminal colour codes, as in Ray's messages.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


# -- scikit-learn's searches through joblib -------------------------------------------


@contextlib.contextmanager
def ray_backend(n_jobs=-1, threads_per_job=1):
    """Run scikit-learn's parallel tools on Ray, with bounded torch threads.

    Inside the block, ``GridSearchCV``, ``RandomizedSearchCV``,
    ``cross_validate`` and anything else that runs on joblib send their jobs
    (one fit each) to the Ray cluster. Each job reserves ``threads_per_job``
    CPUs and its worker process starts with ``OMP_NUM_THREADS`` and
    ``MKL_NUM_THREADS`` set to that number, which torch reads at import: two
    jobs on a core each running torch with one thread per core would otherwise
    slow each other down.

    Parameters
    ----------
    n_jobs : int, default=-1
        Jobs at the same time; -1 for as many as fit on the cluster's CPUs
        (its CPUs divided by ``threads_per_job``; where that is 1, joblib
        runs the jobs one after another in this process). The ``n_jobs``
        given to the search itself overrides it: more jobs than fit wait for
        CPUs that never come free.
    threads_per_job : int, default=1
        CPUs reserved for, and torch threads used by, each job.

    Yields
    ------
    None

    Examples
    --------
    >>> import ray  # doctest: +SKIP
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sksiamese import SiameseClassifier
    >>> from sksiamese.distributed import ray_backend
    >>> X, y = load_iris(return_X_y=True)
    >>> ray.init(num_cpus=2)  # doctest: +SKIP
    >>> search = GridSearchCV(
    ...     SiameseClassifier(max_epochs=20, random_state=0),
    ...     {"lr": [1e-3, 1e-2]},
    ...     cv=3,
    ... )
    >>> with ray_backend():  # doctest: +SKIP
    ...     search.fit(X, y)
    """
    _check_positive(threads_per_job, "threads_per_job", integral=True)
    if not (n_jobs == -1 or (isinstance(n_jobs, numbers.Integral) and n_jobs > 0)):
        raise ValueError(f"n_jobs must be -1 or a positive int; got {n_jobs!r}.")
    import joblib

    ray_joblib = _require("ray.util.joblib", "ray_backend")
    _keep_builtin_print()
    ray_joblib.register_ray()
    threads = str(threads_per_job)
    remote_args = {
        "num_cpus": threads_per_job,
        "runtime_env": {
            "env_vars": {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        },
    }
    if n_jobs == -1:
        # As many jobs as fit at once: Ray's pool would start one per CPU of
        # the cluster, and wait for ever for CPUs to place the jobs beyond
        # cpus // threads_per_job.
        import ray

        if not ray.is_initialized():
            ray.init()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n_jobs = max(1, cpus // threads_per_job)
    with joblib.parallel_config(
        backend="ray", n_jobs=n_jobs, ray_remote_args=remote_args
    ):
        yield
