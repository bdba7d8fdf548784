"""Stage 5, a study run: the loop that takes trials from the queue and trains them
(:mod:`.runner`, :mod:`.attempt`), the Optuna study as the queue (:mod:`.queue`,
:mod:`.storage`, :mod:`.liveness`), seeds added as the answer needs them (:mod:`.seeds`),
worker processes and GPUs (:mod:`.workers`, :mod:`.gpus`), and ``ablate status``
(:mod:`.status`)."""
