"""Training one fold: the only package that imports Keras or TensorFlow.

Runs inside worker processes (or in-process with ``isolation: inline``);
reached from the parent only through :mod:`gridcv.execution.worker`, inside
functions. Importing this package itself imports nothing heavy.

- :mod:`~gridcv.training.fold`: one fold, prepare -> fit -> score.
- :mod:`~gridcv.training.building`: the user's builder, called and compiled.
- :mod:`~gridcv.training.checking`: the up-front check, on one real batch, before any fold trains.
- :mod:`~gridcv.training.compiling`: ``compile:`` and gradient accumulation.
- :mod:`~gridcv.training.callbacks`: callbacks by name, and their state across a resume.
- :mod:`~gridcv.training.fitting`: Keras's fit loop, able to start inside an epoch.
- :mod:`~gridcv.training.checkpointing`: checkpoints of the whole training state, at and inside epochs.
- :mod:`~gridcv.training.batches`: the generator that feeds ``fit``.
- :mod:`~gridcv.training.timing`: where a fold's time goes, by phase.
- :mod:`~gridcv.training.preload`: what the fork server imports once for every worker.
- :mod:`~gridcv.training.outputs`: what a model's outputs mean (softmax, sigmoid, logits).
- :mod:`~gridcv.training.scoring`: scikit-learn scorers on the model's predictions.
- :mod:`~gridcv.training.history`: best epochs and best values of a Keras history.
- :mod:`~gridcv.training.saving`: saving and loading ``.keras`` files atomically.
- :mod:`~gridcv.training.devices`: GPU memory growth, determinism, GPU memory telemetry.
- :mod:`~gridcv.training.models`: the built-in builders (``gridcv.models:small_cnn``).
"""
